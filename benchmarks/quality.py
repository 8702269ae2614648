"""Cross-validated quality of prodcat's default Classifier against a plain baseline, same folds.

Stratified ``--folds``-fold CV (shuffled, ``--seed``) on a labelled data set: prodcat through
``prodcat.evaluation.crossval.cross_val_proba``, the baseline
(``make_pipeline(TfidfVectorizer(), LinearSVC())`` on ``title + " " + description``) through
scikit-learn's ``cross_val_predict`` on exactly the folds prodcat used. Both are scored by the
same function: weighted F1, macro F1 and accuracy, and the difference in points.

    python benchmarks/quality.py                                   # Rakuten sample
    python benchmarks/quality.py --data ../shared/data/flipkart    # Flipkart, level-0 categories
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
    load_labelled,
    machine_info,
    machine_line,
    markdown_table,
    save_results,
    timer,
)

METRICS = (("weighted_f1", "weighted F1"), ("macro_f1", "macro F1"), ("accuracy", "accuracy"))


def run_prodcat(catalog: Any, folds: int, seed: int) -> tuple[dict[str, Any], Any]:
    """prodcat's out-of-fold scores and the fold number of every listing."""
    from prodcat.evaluation.crossval import cross_val_proba
    from prodcat.model import Classifier

    with timer() as elapsed:
        cv = cross_val_proba(Classifier(), catalog.X, catalog.y, folds=folds, seed=seed,
                             progress=False, fit_params={"taxonomy": catalog.taxonomy})
    pred = cv.classes[cv.proba.argmax(axis=1)]
    scores = classification_scores(cv.y, pred)
    return {**scores, "seconds": elapsed(), "fit_seconds": cv.fit_seconds}, cv.folds


def run_baseline(catalog: Any, fold_of: Any) -> dict[str, Any]:
    """The baseline's out-of-fold scores on the folds given by ``fold_of``."""
    import numpy as np
    from sklearn.model_selection import cross_val_predict

    splits = [(np.flatnonzero(fold_of != f), np.flatnonzero(fold_of == f))
              for f in np.unique(fold_of)]
    y = catalog.y.astype(str).to_numpy()
    with timer() as elapsed:
        pred = cross_val_predict(baseline_pipeline(), baseline_texts(catalog.frame), y, cv=splits)
    return {**classification_scores(y, pred), "seconds": elapsed()}


def main(argv: list[str] | None = None) -> int:
    parser = base_parser(__doc__.split("\n\n")[0], out=False)
    parser.add_argument("--folds", type=int, default=5)
    parser.add_argument("--seed", type=int, default=0, help="seed of the fold shuffle")
    parser.add_argument("--level", type=int, default=None,
                        help="category level for Flipkart data (default: the reader's, 0)")
    parser.add_argument("--name", default=None,
                        help="name in the results file quality_<name> (default: the data folder's)")
    args = parser.parse_args(argv)
    if data_missing(args.data):
        return 0

    name = args.name or dataset_name(args.data)
    catalog = load_labelled(args.data, level=args.level)
    print(f"{args.folds}-fold CV on {len(catalog):,} listings of {name} …", file=sys.stderr)
    prodcat_res, fold_of = run_prodcat(catalog, args.folds, args.seed)
    baseline_res = run_baseline(catalog, fold_of)

    delta = {key: 100 * (prodcat_res[key] - baseline_res[key]) for key, _ in METRICS}
    rows: list[list[object]] = [[label, prodcat_res[key], baseline_res[key], f"{delta[key]:+.2f}"]
                                for key, label in METRICS]
    rows.append(["CV wall time (s)", f"{prodcat_res['seconds']:.1f}",
                 f"{baseline_res['seconds']:.1f}", "–"])
    info = machine_info()
    markdown = "\n\n".join([
        f"## Quality on {name}: prodcat Classifier() vs TF-IDF + LinearSVC",
        f"{args.folds}-fold stratified CV (shuffled, seed {args.seed}), the same folds for both; "
        f"{len(catalog):,} real labelled listings, {catalog.y.nunique()} categories, from {args.data}.",
        markdown_table(["metric", "prodcat", "baseline", "delta (points)"], rows, digits=4),
        machine_line(info),
        NOISE_NOTE,
    ])
    print(markdown)
    if args.save:
        payload = {"benchmark": "quality", "name": name, "data": str(args.data), "n": len(catalog),
                   "n_classes": int(catalog.y.nunique()), "folds": args.folds, "seed": args.seed,
                   "prodcat": prodcat_res, "baseline": baseline_res,
                   "delta_points": delta,
                   "machine": info}
        for path in save_results(f"quality_{name}", payload, markdown):
            print(f"wrote {path}", file=sys.stderr)
    return 0


if __name__ == "__main__":
    sys.exit(main())
