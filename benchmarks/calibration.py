"""Calibration methods of the TF-IDF SVM heads compared on outer folds, beside the seeds' recipe.

For each outer fold (stratified ``--folds``-fold CV on the development listings: Rakuten's frozen
final-check split is left out), each TF-IDF member of the default ensemble is fitted as
:class:`~prodcat.text.model.TextClassifier` fits it: features on the outer training fold, three
unshuffled calibration folds whose decision scores are kept, and a fit on the whole training
fold. Every calibration is then learnt on those out-of-fold scores only and applied to the
outer test fold:

- ``sigmoid``: one Platt sigmoid per class, normalised (the full fit's scores at test time);
- ``sigmoid, averaged head``: the same sigmoids on the head whose coefficients average the full
  and the fold fits (prodcat's default, ``average_folds=True``);
- ``sharpened``: the averaged head's sigmoid probabilities raised to a power fitted on the
  out-of-fold probabilities (the seeds' "probability sharpening");
- ``temperature``: a softmax of the averaged head's scores at one temperature;
- ``isotonic``: one isotonic regression per class, normalised (averaged head).

Reported per method: the out-of-fold log loss on the training folds (what a choice may look at)
and, on the outer test folds, log loss, weighted F1, expected calibration error of the top
answer and the share filed at 90/95/98 % precision. The recipe (``CalibratedClassifierCV``'s
own sigmoid ensemble) is fitted on the same folds in the same run.

    python benchmarks/calibration.py --save
"""

from __future__ import annotations

import sys
from typing import Any

from _common import (
    NOISE_NOTE,
    base_parser,
    baseline_pipeline,
    baseline_texts,
    classification_scores,
    data_missing,
    dataset_name,
    load_development,
    machine_info,
    machine_line,
    markdown_table,
    save_results,
)

MEMBERS = ("tfidf-svm", "tfidf-use-title-svm", "tfidf-use-svm")
METHODS = ("sigmoid", "sigmoid, averaged head", "sharpened", "temperature", "isotonic")


def _log_loss(proba, y_idx) -> float:
    import numpy as np

    return float(-np.log(np.clip(proba[np.arange(len(y_idx)), y_idx], 1e-12, 1.0)).mean())


def _normalise(proba):
    import numpy as np

    total = proba.sum(axis=1, keepdims=True)
    return np.divide(proba, total, out=np.full_like(proba, 1 / proba.shape[1]), where=total > 0)


def _softmax(z):
    import numpy as np

    z = z - z.max(axis=1, keepdims=True)
    e = np.exp(z)
    return e / e.sum(axis=1, keepdims=True)


def fit_calibrations(scores, y_idx) -> dict[str, Any]:
    """Each method's calibration map, learnt on out-of-fold ``scores`` only."""
    import numpy as np
    from scipy.optimize import minimize_scalar
    from sklearn.isotonic import IsotonicRegression

    from prodcat.text.ensemble import fit_power, sharpen
    from prodcat.text.platt import fit_sigmoid, sigmoid_proba

    n_classes = scores.shape[1]
    ab = [fit_sigmoid(scores[:, k], y_idx == k) for k in range(n_classes)]
    a, b = np.array([p[0] for p in ab]), np.array([p[1] for p in ab])
    power = fit_power(sigmoid_proba(scores, a, b), y_idx)
    temperature = minimize_scalar(lambda t: _log_loss(_softmax(scores / t), y_idx),
                                  bounds=(0.01, 10.0), method="bounded").x
    isotonic = [IsotonicRegression(out_of_bounds="clip", y_min=0.0, y_max=1.0)
                .fit(scores[:, k], (y_idx == k).astype(float)) for k in range(n_classes)]

    def iso(s):
        return _normalise(np.column_stack([m.predict(s[:, k]) for k, m in enumerate(isotonic)]))

    return {"sigmoid": lambda s: sigmoid_proba(s, a, b),
            "sigmoid, averaged head": lambda s: sigmoid_proba(s, a, b),
            "sharpened": lambda s: sharpen(sigmoid_proba(s, a, b), power),
            "temperature": lambda s: _softmax(s / temperature),
            "isotonic": iso}


def run_member(name: str, X_train, y_train, X_test) -> tuple[dict, dict]:
    """(out-of-fold probabilities per method, test probabilities per method) of one member."""
    import numpy as np
    from sklearn.base import clone
    from sklearn.model_selection import StratifiedKFold

    from prodcat.text.ensemble import MEMBERS as REGISTRY

    model = REGISTRY.create(name)
    features = model._make_features()
    Z = features.fit_transform(X_train)
    Z_test = features.transform(X_test)
    head = model._platt_head(y_train)
    classes = np.unique(y_train)
    y_idx = np.searchsorted(classes, y_train)
    scores = np.zeros((len(y_train), len(classes)))
    folds = []
    for tr, te in StratifiedKFold(3).split(np.zeros(len(y_train)), y_train):
        fold = clone(head).fit(Z[tr], y_train[tr])
        scores[np.ix_(te, np.searchsorted(classes, fold.classes_))] = fold.decision_function(Z[te])
        folds.append(fold)
    full = clone(head).fit(Z, y_train)
    test_full = full.decision_function(Z_test)
    test_averaged = np.mean([test_full] + [f.decision_function(Z_test) for f in folds], axis=0)
    maps = fit_calibrations(scores, y_idx)
    oof = {m: maps[m](scores) for m in METHODS}
    test = {m: maps[m](test_full if m == "sigmoid" else test_averaged) for m in METHODS}
    return oof, test


def top_label_ece(proba, y_idx, bins: int = 15) -> float:
    import numpy as np

    conf = proba.max(axis=1)
    correct = proba.argmax(axis=1) == y_idx
    edges = np.linspace(0, 1, bins + 1)
    which = np.clip(np.digitize(conf, edges[1:-1]), 0, bins - 1)
    return float(sum(abs(correct[which == b].mean() - conf[which == b].mean()) * (which == b).mean()
                     for b in range(bins) if (which == b).any()))


def main(argv: list[str] | None = None) -> int:
    import numpy as np
    from sklearn.model_selection import StratifiedKFold

    from prodcat.evaluation.automation import coverage_at_precision

    parser = base_parser(__doc__.split("\n\n")[0], out=False)
    parser.add_argument("--folds", type=int, default=5)
    parser.add_argument("--seed", type=int, default=0)
    args = parser.parse_args(argv)
    if data_missing(args.data):
        return 0
    name = dataset_name(args.data)
    catalog = load_development(args.data)
    X = catalog.X.reset_index(drop=True)
    frame = catalog.frame.reset_index(drop=True)
    y = catalog.y.astype(str).to_numpy()
    classes = np.unique(y)
    y_idx = np.searchsorted(classes, y)
    keys = [(m, c) for m in MEMBERS for c in METHODS] + [("recipe", "CalibratedClassifierCV")]
    test = {k: np.zeros((len(y), len(classes))) for k in keys}
    oof_loss: dict[tuple, list[float]] = {k: [] for k in keys}
    splitter = StratifiedKFold(args.folds, shuffle=True, random_state=args.seed)
    for f, (tr, te) in enumerate(splitter.split(np.zeros(len(y)), y)):
        print(f"outer fold {f + 1}/{args.folds} …", file=sys.stderr)
        for member in MEMBERS:
            oof, proba = run_member(member, X.iloc[tr], y[tr], X.iloc[te])
            for method in METHODS:
                cols = np.searchsorted(classes, np.unique(y[tr]))
                test[(member, method)][np.ix_(te, cols)] = proba[method]
                oof_loss[(member, method)].append(_log_loss(oof[method], np.searchsorted(np.unique(y[tr]), y[tr])))
        pipe = baseline_pipeline().fit(baseline_texts(frame.iloc[tr]), y[tr])
        test[keys[-1]][np.ix_(te, np.searchsorted(classes, pipe.classes_))] = \
            pipe.predict_proba(baseline_texts(frame.iloc[te]))

    results = []
    for key in keys:
        p = test[key]
        cover = {f"{c['target_precision']:.0%}": c["coverage"] for c in coverage_at_precision(p, y_idx)}
        results.append({"model": key[0], "calibration": key[1],
                        "oof_log_loss": float(np.mean(oof_loss[key])) if oof_loss[key] else None,
                        "log_loss": _log_loss(p, y_idx), "ece": top_label_ece(p, y_idx),
                        "weighted_f1": classification_scores(y, classes[p.argmax(1)])["weighted_f1"],
                        "coverage": cover})
    rows = [[r["model"], r["calibration"], r["oof_log_loss"], r["log_loss"], r["ece"], r["weighted_f1"],
             *(f"{v:.1%}" for v in r["coverage"].values())] for r in results]
    markdown = "\n\n".join([
        f"## Calibration methods on {name}: outer {args.folds}-fold CV, {len(y):,} listings",
        "Each calibration learnt on the members' out-of-fold scores inside the outer training fold; "
        "columns after 'out-of-fold log loss' are measured on the outer test folds.",
        markdown_table(["model", "calibration", "out-of-fold log loss", "test log loss", "ECE",
                        "weighted F1", "filed @90%", "filed @95%", "filed @98%"], rows, digits=4),
        machine_line(info := machine_info()), NOISE_NOTE])
    print(markdown)
    if args.save:
        payload = {"benchmark": "calibration", "name": name, "n": len(y), "folds": args.folds,
                   "seed": args.seed, "results": results, "machine": info}
        for path in save_results(f"calibration_{name}", payload, markdown):
            print(f"wrote {path}", file=sys.stderr)
    return 0


if __name__ == "__main__":
    sys.exit(main())
