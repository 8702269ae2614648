"""Screen candidate text-ensemble members under the quality benchmark's nested CV, cheaply.

Each candidate is fitted once per outer training fold; every member set is then pooled by
prodcat's own :class:`~prodcat.text.ensemble.TextEnsemble` (greedy selection on the members'
out-of-fold answers inside the training fold, sharpening, abstention of title embedders) from
those fits, so screening ten candidates against the default members costs ten member fits per
fold, not ten ensembles. The outer folds, the recipe and the scores are those of
``benchmarks/quality.py`` (the same seed gives the same folds and, for the default members, the
same figures). The frozen final-check split of Rakuten is left out.

    python benchmarks/member_screen.py --save                     # every candidate below
    python benchmarks/member_screen.py --candidates knn-tfidf,tfidf-svm-C1 --repeats 3

Candidates are variations that a reader of the issue would try next: the SVMs' C, class
weights, calibration folds, the sentence embedding's weight, a non-linear map of the embedding,
nearest neighbours, an IDF fitted with unlabelled listings, and training on labels that
confident learning (cleanlab) does not flag.
"""

from __future__ import annotations

import contextvars
import sys
from collections.abc import Callable
from pathlib import Path
from typing import Any

from sklearn.base import BaseEstimator, ClassifierMixin

from _common import (
    NOISE_NOTE,
    base_parser,
    classification_scores,
    data_missing,
    load_development,
    machine_info,
    machine_line,
    markdown_table,
    save_results,
    timer,
)
from prodcat.text.ensemble import MEMBER_TFIDF
from quality import fold_table, run_baseline

#: The default members' settings, which every candidate varies.
TFIDF = dict(MEMBER_TFIDF)
USE = {**TFIDF, "dense": "use-multilingual"}
UNLABELLED = Path(__file__).resolve().parents[2] / "shared" / "data" / "rakuten_unlabelled"

#: Fitted candidates by (seed, fold, name), read by :class:`Prefitted`.
_FITTED: dict[tuple, Any] = {}


class Prefitted(ClassifierMixin, BaseEstimator):
    """A member fitted beforehand (``_FITTED[key]``): ``fit`` takes it over instead of fitting.

    Its answers are computed outside the ensemble's shared TF-IDF memo: candidates with the
    same n-gram options but another fit (an IDF with unlabelled listings) must not share rows."""

    def __init__(self, key=None):
        self.key = key

    def fit(self, X, y):
        self.model_ = _FITTED[self.key]
        self.classes_ = self.model_.classes_
        self.oof_proba_ = self.model_.oof_proba_
        if hasattr(self.model_, "features_"):  # the ensemble asks what the member embeds
            self.features_ = self.model_.features_
        return self

    def predict_proba(self, X):
        return contextvars.Context().run(self.model_.predict_proba, X)


class NeighbourClassifier(ClassifierMixin, BaseEstimator):
    """k nearest training listings by cosine similarity of the members' features, votes weighted
    by similarity ** ``power``; ``alpha`` spreads a little mass over every class. ``dense_only``:
    the sentence embedding alone."""

    def __init__(self, k=10, power=4.0, alpha=0.02, dense=None, dense_only=False, cv=3):
        self.k, self.power, self.alpha = k, power, alpha
        self.dense, self.dense_only, self.cv = dense, dense_only, cv

    def _rows(self, X):
        from sklearn.preprocessing import normalize

        rows = self.features_.transform(X).tocsr()
        return normalize(rows[:, -512:] if self.dense_only else rows)

    def _vote(self, similarity, labels):
        import numpy as np

        s = similarity.toarray() if hasattr(similarity, "toarray") else np.asarray(similarity)
        k = min(self.k, s.shape[1])
        idx = np.argpartition(-s, k - 1, axis=1)[:, :k]
        weight = np.take_along_axis(s, idx, 1).clip(0, None) ** self.power
        votes = np.full((s.shape[0], len(self.classes_)), self.alpha / len(self.classes_))
        np.add.at(votes, (np.repeat(np.arange(s.shape[0]), k), labels[idx].ravel()), weight.ravel())
        return votes / votes.sum(axis=1, keepdims=True)

    def fit(self, X, y):
        import numpy as np
        from sklearn.model_selection import StratifiedKFold

        from prodcat.text.features import TfidfFeatures

        y = np.asarray(y).astype(str)
        self.classes_ = np.unique(y)
        labels = np.searchsorted(self.classes_, y)
        params = {k: v for k, v in TFIDF.items() if k != "class_weight"}
        self.features_ = TfidfFeatures(**params, dense=self.dense).fit(X)
        self.rows_, self.labels_ = self._rows(X), labels
        self.oof_proba_ = np.zeros((len(y), len(self.classes_)))
        for tr, te in StratifiedKFold(self.cv, shuffle=True, random_state=0).split(np.zeros(len(y)), y):
            self.oof_proba_[te] = self._vote(self.rows_[te] @ self.rows_[tr].T, labels[tr])
        return self

    def predict_proba(self, X):
        return self._vote(self._rows(X) @ self.rows_.T, self.labels_)


class PrunedClassifier(ClassifierMixin, BaseEstimator):
    """A member refitted without the training labels confident learning flags on its own
    out-of-fold answers (``cleanlab.filter.find_label_issues``, ``frac_noise`` of its estimate).
    Rows left out keep the first fit's out-of-fold answers, so the pool sees every listing."""

    def __init__(self, member="tfidf-use-title-svm", frac_noise=0.25):
        self.member = member
        self.frac_noise = frac_noise

    def fit(self, X, y):
        import numpy as np
        from cleanlab.filter import find_label_issues

        y = np.asarray(y).astype(str)
        first = create(self.member).fit(X, y)
        self.classes_ = np.asarray(first.classes_).astype(str)
        labels = np.searchsorted(self.classes_, y)
        flagged = find_label_issues(labels, first.oof_proba_, frac_noise=self.frac_noise)
        self.n_flagged_ = int(flagged.sum())
        keep = np.flatnonzero(~flagged)
        self.model_ = create(self.member).fit(X.iloc[keep].reset_index(drop=True), y[keep])
        self.features_ = self.model_.features_
        self.oof_proba_ = first.oof_proba_.copy()
        self.oof_proba_[keep] = self._place(self.model_.oof_proba_)
        return self

    def _place(self, proba):
        import numpy as np

        out = np.zeros((proba.shape[0], len(self.classes_)))
        out[:, np.searchsorted(self.classes_, np.asarray(self.model_.classes_).astype(str))] = proba
        return out

    def predict_proba(self, X):
        return self._place(self.model_.predict_proba(X))


def _text(**options) -> Callable[[], Any]:
    def build():
        from prodcat.text.model import TextClassifier

        return TextClassifier(**options, random_state=0)
    return build


def _with_unlabelled_idf(**options) -> Callable[[], Any]:
    """The member with its vocabulary and IDF fitted on the training and the unlabelled listings."""
    def build():
        import pandas as pd

        from prodcat.data import read_catalog
        from prodcat.text.features import TfidfFeatures
        from prodcat.text.model import TextClassifier

        extra = read_catalog(UNLABELLED).X[["title", "description"]]

        class Features(TfidfFeatures):
            def fit_transform(self, X, y=None):
                super().fit_transform(pd.concat([X[["title", "description"]], extra], ignore_index=True))
                return self.transform(X)

        class Model(TextClassifier):
            def _make_features(self):
                return Features(**super()._make_features().get_params())

        return Model(**options, random_state=0)
    return build


def _with_fourier(gamma: float, weight: float) -> Callable[[], Any]:
    """The title-USE member whose embedding is followed by 1,024 random Fourier features of it
    (an RBF kernel's map, unit norm, scaled to ``weight``): a non-linear view for the SVM."""
    def build():
        import numpy as np
        import scipy.sparse as sp
        from sklearn.kernel_approximation import RBFSampler

        from prodcat.text.features import TfidfFeatures
        from prodcat.text.model import TextClassifier

        class Features(TfidfFeatures):
            def _dense_block(self, X, *, fitting):
                emb = self.dense_encoder_.unit_embeddings(X, cache=self.dense_cache, fitting=fitting)
                if fitting:
                    self.fourier_ = RBFSampler(gamma=gamma, n_components=1024, random_state=0).fit(emb)
                f = self.fourier_.transform(emb)
                f /= np.maximum(np.linalg.norm(f, axis=1, keepdims=True), 1e-9)
                return sp.csr_matrix(np.hstack([emb * self.dense_weight, f * weight]).astype(np.float32))

        class Model(TextClassifier):
            def _make_features(self):
                return Features(**super()._make_features().get_params())

        return Model(**USE, random_state=0)
    return build


#: name → builder of an unfitted candidate.
CANDIDATES: dict[str, Callable[[], Any]] = {
    "use-title-w0.5": _text(**USE, dense_weight=0.5),
    "use-title-w2": _text(**USE, dense_weight=2.0),
    "use-title-C0.25": _text(**USE, C=0.25),
    "use-title-C1": _text(**USE, C=1.0),
    "use-title-balanced": _text(**{**USE, "class_weight": "balanced"}),
    "use-title-cv5": _text(**USE, calibration_cv=5),
    "tfidf-svm-C0.25": _text(**TFIDF, C=0.25),
    "tfidf-svm-C1": _text(**TFIDF, C=1.0),
    "tfidf-svm-balanced": _text(**{**TFIDF, "class_weight": "balanced"}),
    "tfidf-svm-cv5": _text(**TFIDF, calibration_cv=5),
    "use-title-fourier": _with_fourier(1.0, 0.5),
    "knn-tfidf": lambda: NeighbourClassifier(),
    "knn-tfidf-use": lambda: NeighbourClassifier(dense="use-multilingual"),
    "knn-use": lambda: NeighbourClassifier(dense="use-multilingual", dense_only=True),
    "tfidf-svm-unlabelled-idf": _with_unlabelled_idf(**TFIDF),
    "use-title-unlabelled-idf": _with_unlabelled_idf(**USE),
    "use-title-pruned": lambda: PrunedClassifier("tfidf-use-title-svm"),
    # Reading more of the description (the recipe reads all of it): the members' own limits are
    # 2,000 characters for words and 1,000 for character n-grams.
    "tfidf-svm-chars2000": _text(**{**TFIDF, "char_description_chars": 2000}),
    "use-title-chars2000": _text(**{**USE, "char_description_chars": 2000}),
    "tfidf-svm-whole": _text(**{**TFIDF, "max_description_chars": None, "char_description_chars": None}),
    "use-title-whole": _text(**{**USE, "max_description_chars": None, "char_description_chars": None}),
}


def create(name: str):
    """A candidate, or a registered ensemble member, by name (unfitted)."""
    from prodcat.text.ensemble import MEMBERS

    return CANDIDATES[name]() if name in CANDIDATES else MEMBERS.create(name, random_state=0)


def screen(catalog, seed: int, folds: int, sets: list[tuple[str, ...]]) -> list[dict]:
    """Outer-fold scores of every member set on one shuffle, with the recipe on the same folds."""
    import numpy as np
    from sklearn.model_selection import StratifiedKFold

    from prodcat.evaluation.automation import coverage_at_precision
    from prodcat.evaluation.layouts import layout_frames, layout_scores
    from prodcat.text.ensemble import TextEnsemble

    X, y = catalog.X, catalog.y.astype(str).to_numpy()
    classes = np.unique(y)
    splits = list(StratifiedKFold(folds, shuffle=True, random_state=seed).split(np.zeros(len(y)), y))
    fold_of = np.zeros(len(y), dtype=int)
    names = list(dict.fromkeys(n for s in sets for n in s))
    probas = {s: {} for s in sets}
    weights = {s: [] for s in sets}
    seconds = dict.fromkeys(names, 0.0)
    for f, (tr, te) in enumerate(splits):
        fold_of[te] = f
        X_train, X_test = X.iloc[tr].reset_index(drop=True), X.iloc[te].reset_index(drop=True)
        for name in names:
            with timer() as elapsed:
                _FITTED[(seed, f, name)] = create(name).fit(X_train, y[tr])
            seconds[name] += elapsed()
        frames = layout_frames(X_test)
        for s in sets:
            ensemble = TextEnsemble(members={n: Prefitted((seed, f, n)) for n in s}).fit(X_train, y[tr])
            weights[s].append(ensemble.weights_)
            cols = np.searchsorted(classes, ensemble.classes_.astype(str))
            for layout, frame in frames.items():
                probas[s].setdefault(layout, np.zeros((len(y), len(classes))))[np.ix_(te, cols)] = \
                    ensemble.predict_proba(frame)
        for name in names:
            del _FITTED[(seed, f, name)]
    recipe, _ = run_baseline(catalog, fold_of, classes)
    recipe_layouts = layout_scores(y, recipe, classes)
    y_idx = np.searchsorted(classes, y)
    recipe_cover = [c["coverage"] for c in coverage_at_precision(recipe["given"], y_idx)]
    rows = []
    for s in sets:
        scores = layout_scores(y, probas[s], classes)
        spread = fold_table(y, fold_of, probas[s]["given"], recipe["given"], classes)[1]
        cover = [c["coverage"] for c in coverage_at_precision(probas[s]["given"], y_idx)]
        rows.append({
            "members": list(s), "seed": seed,
            "weighted_f1": scores["given"]["weighted_f1"],
            "recipe_weighted_f1": recipe_layouts["given"]["weighted_f1"],
            "layout_delta_points": {k: 100 * (v["weighted_f1"] - recipe_layouts[k]["weighted_f1"])
                                    for k, v in scores.items()},
            "folds_better": spread["folds_better"],
            "coverage": cover, "recipe_coverage": recipe_cover,
            "mean_weights": {n: float(np.mean([w[n] for w in weights[s]])) for n in s},
            "accuracy": classification_scores(y, classes[probas[s]["given"].argmax(1)])["accuracy"],
            "member_seconds": {n: seconds[n] for n in s}})
    return rows


def summary_table(rows: list[dict]) -> str:
    """Markdown: one row per member set, means over the shuffles screened."""
    import numpy as np

    by_set: dict[tuple, list[dict]] = {}
    for r in rows:
        by_set.setdefault(tuple(r["members"]), []).append(r)
    layouts = list(rows[0]["layout_delta_points"])
    out = []
    for s, rs in by_set.items():
        def mean(key, rs=rs):
            return float(np.mean([key(r) for r in rs]))

        weights = ", ".join(f"{n} {mean(lambda r, n=n: r['mean_weights'][n]):.2f}" for n in s)
        out.append([" + ".join(s), mean(lambda r: r["weighted_f1"]),
                    *(f"{mean(lambda r, k=k: r['layout_delta_points'][k]):+.2f}" for k in layouts),
                    f"{sum(r['folds_better'] for r in rs)}/{5 * len(rs)}",
                    " / ".join(f"{100 * mean(lambda r, i=i: r['coverage'][i]):.1f}" for i in range(3)),
                    weights])
    recipe = " / ".join(f"{100 * float(np.mean([r['recipe_coverage'][i] for r in rows])):.1f}" for i in range(3))
    headers = ["members", "weighted F1", *(f"Δ {k}" for k in layouts), "folds better",
               f"filed at 90/95/98 % (recipe {recipe})", "mean weights"]
    return markdown_table(headers, out, digits=4)


def main(argv: list[str] | None = None) -> int:
    from prodcat.text.ensemble import DEFAULT_MEMBERS, MEMBERS

    parser = base_parser(__doc__.split("\n\n")[0], out=False)
    parser.add_argument("--candidates", default=",".join(CANDIDATES),
                        help="comma-separated candidates (default: all of CANDIDATES)")
    parser.add_argument("--alone", action="store_true", help="also score every candidate alone")
    parser.add_argument("--sets", default=None,
                        help="member sets to screen instead of each candidate added to the default "
                             "members: 'a+b' each, comma-separated (candidates or registered members)")
    parser.add_argument("--tag", default=None, help="saved as member_screen_DATA_TAG (with --save)")
    parser.add_argument("--folds", type=int, default=5)
    parser.add_argument("--seed", type=int, default=0, help="seed of the first shuffle")
    parser.add_argument("--repeats", type=int, default=1, help="shuffles (seeds --seed, --seed+1, …)")
    args = parser.parse_args(argv)
    candidates = [c for c in args.candidates.split(",") if c]
    sets_given = [tuple(s.split("+")) for s in (args.sets or "").split(",") if s]
    known = set(CANDIDATES) | set(MEMBERS.names())
    unknown = [c for c in [*candidates, *(n for s in sets_given for n in s)] if c not in known]
    if unknown:
        parser.error(f"unknown candidates {unknown}; known: {', '.join(sorted(known))}")
    if data_missing(args.data):
        return 0
    catalog = load_development(args.data)
    sets = [tuple(DEFAULT_MEMBERS)]
    sets += sets_given if sets_given else [(*DEFAULT_MEMBERS, c) for c in candidates]
    if args.alone:
        sets += [(c,) for c in candidates]
    rows = []
    with timer() as elapsed:
        for seed in range(args.seed, args.seed + args.repeats):
            print(f"seed {seed}: {len(sets)} member sets on {len(catalog):,} listings …", file=sys.stderr)
            rows += screen(catalog, seed, args.folds, sets)
    seeds = ", ".join(str(s) for s in range(args.seed, args.seed + args.repeats))
    markdown = "\n\n".join([
        f"## Text ensemble members screened on {args.data.name}",
        f"Nested {args.folds}-fold CV (seeds {seeds}; the folds of `benchmarks/quality.py`), "
        f"{len(catalog):,} listings; each set pooled by `TextEnsemble` inside every outer training "
        "fold; Δ: weighted F1 points against the seeds' recipe on the same folds, per field layout; "
        "coverage: share filed at each precision (best threshold on the outer-fold answers), means "
        "over the shuffles. The first row is the default.",
        summary_table(rows),
        f"Screen wall time {elapsed():.0f} s.", machine_line(info := machine_info()), NOISE_NOTE])
    print(markdown)
    if args.save:
        payload = {"benchmark": "member_screen", "data": str(args.data), "n": len(catalog),
                   "folds": args.folds, "seeds": list(range(args.seed, args.seed + args.repeats)),
                   "rows": rows, "machine": info}
        name = f"member_screen_{args.data.name}" + (f"_{args.tag}" if args.tag else "")
        for path in save_results(name, payload, markdown):
            print(f"wrote {path}", file=sys.stderr)
    return 0


if __name__ == "__main__":
    sys.exit(main())
