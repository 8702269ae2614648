"""Retraining with reviewed corrections: how much 200 reviews improve held-out weighted F1.

    python benchmarks/retraining_gain.py [--data ../shared/data/rakuten] [--seeds 0,1,2]
                                         [--corrections 200] [--save]

Per seed, on the real labelled listings: a stratified test split (25 %) is held out; of the rest,
a third is the initial training set and the other two thirds the pool of unreviewed listings.
The model trained on the initial set answers the pool; every pool listing goes to a real review
store (SQLite, in a temporary folder), reviewers take 200 of them in ``uncertain`` order
(smallest margin between the two best answers first: active learning) or ``oldest`` order
(arrival: a seeded shuffle of the pool), and decide them with the listings' true labels. The
decisions are exported (``corrections_frame``, what ``prodcat corrections export`` writes) and
applied to the initial training set (``apply_corrections``, what ``prodcat train --corrections``
does): the 200 listings are added. The model is retrained and scored on the held-out split, and
the gain (after − before) gets a paired bootstrap 95 % interval (``prodcat compare``'s).

To keep it fast, prodcat's model is ``Classifier(text=TextClassifier())`` — one text model, not
the default ensemble. The seeds' recipe (``_common.baseline_pipeline``) runs the same protocol
in the same run, choosing its own 200 uncertain listings by its own margins.
"""

from __future__ import annotations

import argparse
import sys
import tempfile
import time

import numpy as np

from _common import (
    base_parser,
    baseline_pipeline,
    baseline_texts,
    classification_scores,
    data_missing,
    dataset_name,
    load_labelled,
    machine_info,
    machine_line,
    markdown_table,
    save_results,
)

ORDERS = ("uncertain", "oldest")


def _margins(proba: np.ndarray) -> np.ndarray:
    part = np.sort(proba, axis=1)
    return part[:, -1] - part[:, -2]


def _prodcat(catalog, seed: int):
    from prodcat.model import Classifier
    from prodcat.text import TextClassifier

    return Classifier(text=TextClassifier(), random_state=seed).fit(catalog.X, catalog.y.to_numpy(),
                                                                    taxonomy=catalog.taxonomy)


def _reviewed(catalog, pool_rows: np.ndarray, proba: np.ndarray, classes, order: str, n: int, tmp: str):
    """Queue the pool in a review store (arrival order), let a simulated reviewer decide ``n``
    items in ``order`` with the true labels; returns the exported corrections."""
    from prodcat.review import NewItem, ReviewStore
    from prodcat.review.corrections import corrections_frame

    frame = catalog.frame
    tops = [[{"code": str(classes[j]), "probability": float(p[j])} for j in np.argsort(-p)[:3]] for p in proba]
    store = ReviewStore.open(f"sqlite:///{tmp}/{order}.db")
    try:
        ids = store.add([NewItem("low_confidence", title=str(frame["title"].iat[r]),
                                 description=str(frame["description"].iat[r] or ""),
                                 listing_id=str(frame["id"].iat[r]), top_k=top, model_id="initial")
                         for r, top in zip(pool_rows, tops, strict=True)])
        truth = dict(zip(ids, catalog.y.to_numpy()[pool_rows], strict=True))
        for _ in range(n):
            item = store.claim_next("simulated reviewer", order=order, lease_seconds=3600)
            store.decide(item["id"], str(truth[item["id"]]), "simulated reviewer")
        return corrections_frame(store)
    finally:
        store.close()


def one_seed(catalog, seed: int, n_corrections: int) -> dict:
    from sklearn.model_selection import train_test_split

    from prodcat.evaluation.comparison import Answers, compare_answers
    from prodcat.review.corrections import apply_corrections

    idx = np.arange(len(catalog))
    y = catalog.y.astype(str).to_numpy()
    rest, test = train_test_split(idx, test_size=0.25, stratify=y, random_state=seed)
    initial, pool = train_test_split(rest, test_size=2 / 3, stratify=y[rest], random_state=seed)
    pool = np.random.default_rng(seed).permutation(pool)  # arrival order: "oldest" takes the first
    start = catalog.subset(initial)
    X_test, y_test = catalog.subset(test).X, y[test]
    texts = np.asarray(baseline_texts(catalog.frame), dtype=object)
    out: dict = {"seed": seed, "initial": len(initial), "pool": len(pool), "test": len(test)}

    t0 = time.perf_counter()
    base = _prodcat(start, seed)
    before = Answers.from_proba(base.predict_proba(X_test), base.classes_)
    out["prodcat"] = {"before": classification_scores(y_test, before.pred), "after": {}, "gain_ci": {}}
    pool_proba = base.predict_proba(catalog.subset(pool).X)
    with tempfile.TemporaryDirectory() as tmp:
        for order in ORDERS:
            corrections = _reviewed(catalog, pool, pool_proba, base.classes_, order, n_corrections, tmp)
            trained, counts = apply_corrections(start, corrections)
            assert counts["added"] == n_corrections, counts
            model = _prodcat(trained.labelled(), seed)
            after = Answers.from_proba(model.predict_proba(X_test), model.classes_)
            out["prodcat"]["after"][order] = classification_scores(y_test, after.pred)
            wf1 = compare_answers(y_test, before, after, seed=seed)["metrics"]["weighted_f1"]
            out["prodcat"]["gain_ci"][order] = [wf1["ci_low"], wf1["ci_high"]]
            print(f"seed {seed} prodcat {order}: {out['prodcat']['after'][order]['weighted_f1']:.4f}",
                  file=sys.stderr, flush=True)
    out["prodcat"]["seconds"] = round(time.perf_counter() - t0, 1)

    t0 = time.perf_counter()
    recipe = baseline_pipeline().fit(list(texts[initial]), y[initial])
    out["recipe"] = {"before": classification_scores(y_test, recipe.predict(list(texts[test]))), "after": {}}
    chosen = {"uncertain": pool[np.argsort(_margins(recipe.predict_proba(list(texts[pool]))),
                                           kind="stable")[:n_corrections]],
              "oldest": pool[:n_corrections]}
    for order in ORDERS:
        rows = np.concatenate([initial, chosen[order]])
        model = baseline_pipeline().fit(list(texts[rows]), y[rows])
        out["recipe"]["after"][order] = classification_scores(y_test, model.predict(list(texts[test])))
    out["recipe"]["seconds"] = round(time.perf_counter() - t0, 1)
    return out


def _gain(runs: list[dict], model: str, order: str) -> list[float]:
    return [r[model]["after"][order]["weighted_f1"] - r[model]["before"]["weighted_f1"] for r in runs]


def summarise(runs: list[dict]) -> dict:
    out = {}
    for model in ("prodcat", "recipe"):
        out[model] = {"before": float(np.mean([r[model]["before"]["weighted_f1"] for r in runs]))}
        for order in ORDERS:
            g = _gain(runs, model, order)
            out[model][order] = {"after": float(np.mean([r[model]["after"][order]["weighted_f1"] for r in runs])),
                                 "gain_mean": float(np.mean(g)), "gain_min": float(min(g)),
                                 "gain_max": float(max(g))}
    return out


def markdown(runs: list[dict], summary: dict, args, info: dict) -> str:
    r0 = runs[0]
    rows = []
    for model, name in (("prodcat", "prodcat (single TextClassifier)"), ("recipe", "seeds' recipe")):
        s = summary[model]
        for order in ORDERS:
            per_seed = ", ".join(f"{100 * g:+.2f}" for g in _gain(runs, model, order))
            rows.append([name, order, f"{100 * s['before']:.2f}", f"{100 * s[order]['after']:.2f}",
                         f"{100 * s[order]['gain_mean']:+.2f}", per_seed])
    cis = [[r["seed"], order, f"[{100 * r['prodcat']['gain_ci'][order][0]:+.2f}, "
            f"{100 * r['prodcat']['gain_ci'][order][1]:+.2f}]"] for r in runs for order in ORDERS]
    return (f"# Retraining gain with {args.corrections} reviewed corrections ({dataset_name(args.data)})\n\n"
            f"Per seed ({', '.join(str(s) for s in args.seeds)}): {r0['test']} listings held out (stratified), "
            f"{r0['initial']} initial training listings, a pool of {r0['pool']}. {args.corrections} pool "
            "listings are reviewed (true labels) in `uncertain` order (smallest margin of the initial model "
            "first) or `oldest` order (a seeded shuffle: arrival), through a real SQLite review store, "
            "exported and applied as `prodcat train --corrections` does, then the model is retrained. "
            "prodcat runs one TextClassifier (`Classifier(text=TextClassifier())`, not the default "
            "ensemble) to keep the run short; the seeds' recipe picks its own uncertain listings by its "
            "own margins.\n\n"
            "Held-out weighted F1 (points; mean over seeds; gain per seed in the last column):\n\n"
            + markdown_table(["model", "order", "before", "after", "gain", "gain per seed"], rows)
            + "\n\nPaired bootstrap 95 % interval of prodcat's weighted-F1 gain on the test split "
              "(1,000 resamples of the test listings):\n\n"
            + markdown_table(["seed", "order", "95 % interval (points)"], cis)
            + f"\n\n{machine_line(info)}\n")


def _seeds(text: str) -> list[int]:
    try:
        return [int(s) for s in text.split(",") if s.strip()]
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected comma-separated integers, got {text!r}") from None


def main(argv=None) -> int:
    parser = base_parser(__doc__.splitlines()[0], out=False)
    parser.add_argument("--seeds", type=_seeds, default=[0, 1, 2], help="comma-separated split seeds")
    parser.add_argument("--corrections", type=int, default=200)
    args = parser.parse_args(argv)
    if data_missing(args.data):
        return 0
    catalog = load_labelled(args.data)
    t0 = time.perf_counter()
    runs = [one_seed(catalog, seed, args.corrections) for seed in args.seeds]
    summary = summarise(runs)
    info = machine_info()
    md = markdown(runs, summary, args, info)
    print(md)
    if args.save:
        save_results("retraining_gain", {"data": dataset_name(args.data), "corrections": args.corrections,
                                         "model": "Classifier(text=TextClassifier())", "runs": runs,
                                         "summary": summary, "seconds": round(time.perf_counter() - t0, 1),
                                         "machine": info}, md)
    return 0


if __name__ == "__main__":
    sys.exit(main())
