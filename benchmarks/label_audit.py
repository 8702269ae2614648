"""Label audit recall: flip a share of the labels at random (seeded), audit, and see how many
of the flipped rows are among the worst-ranked suspects.

    python benchmarks/label_audit.py [--flip 0.05] [--seed 0] [--save]

For each real data set (Flipkart level 0, Rakuten): the audit of ``prodcat audit`` (cleanlab
confident learning on 5-fold out-of-fold probabilities of the default Classifier) on the
flipped labels; precision and recall of the flipped rows within the top 2×(number flipped) of
the label-quality ranking, and within cleanlab's own issue set. The figure to beat: recall
≥ 70 % on Flipkart.
"""

from __future__ import annotations

import sys
import time
from dataclasses import replace

import numpy as np

from _common import (
    SHARED_DATA,
    base_parser,
    data_missing,
    load_labelled,
    machine_info,
    machine_line,
    markdown_table,
    save_results,
)

TARGET_RECALL = 0.70


def flip_labels(labels: np.ndarray, share: float, seed: int) -> tuple[np.ndarray, np.ndarray]:
    """Labels with ``share`` of them moved to another class (uniformly), and the flipped mask."""
    rng = np.random.default_rng(seed)
    classes = np.unique(labels)
    n = int(round(share * len(labels)))
    rows = rng.choice(len(labels), size=n, replace=False)
    flipped = labels.copy()
    for r in rows:
        flipped[r] = rng.choice(classes[classes != labels[r]])
    mask = np.zeros(len(labels), dtype=bool)
    mask[rows] = True
    return flipped, mask


def measure(name: str, catalog, share: float, seed: int) -> dict:
    from prodcat.audit import run_audit

    labels = catalog.frame["label"].astype(str).to_numpy()
    noisy, mask = flip_labels(labels, share, seed)
    frame = catalog.frame.copy()
    frame["label"] = noisy
    t0 = time.perf_counter()
    result = run_audit(replace(catalog, frame=frame), seed=seed)
    seconds = time.perf_counter() - t0
    flipped_ids = set(frame["id"].astype(str)[mask])
    k = 2 * len(flipped_ids)
    top = result.issues["id"].head(k)
    hits = int(top.isin(flipped_ids).sum())
    issue_ids = set(result.issues.loc[result.issues["is_label_issue"], "id"])
    cl_hits = len(issue_ids & flipped_ids)
    return {"data": name, "listings": len(labels), "classes": len(np.unique(labels)), "flipped": len(flipped_ids),
            "top_k": k, "precision_top_k": hits / k, "recall_top_k": hits / len(flipped_ids),
            "cleanlab_issues": len(issue_ids), "cleanlab_precision": cl_hits / max(len(issue_ids), 1),
            "cleanlab_recall": cl_hits / len(flipped_ids),
            "out_of_fold_accuracy_noisy": result.summary["out_of_fold_accuracy"],
            "conflicting_duplicate_pairs": result.summary["conflicting_duplicate_pairs"],
            "seconds": round(seconds, 1)}


def main(argv=None) -> int:
    parser = base_parser(__doc__.splitlines()[0], data=False, out=False)
    parser.add_argument("--flip", type=float, default=0.05, help="share of labels flipped")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--sets", default="flipkart,rakuten", help="comma-separated data sets")
    args = parser.parse_args(argv)
    rows = []
    for name in args.sets.split(","):
        path = SHARED_DATA / name
        if data_missing(path):
            print(f"{name}: data not found at {path}; skipped", file=sys.stderr)
            continue
        rows.append(measure(name, load_labelled(path), args.flip, args.seed))
        print(rows[-1], file=sys.stderr, flush=True)
    if not rows:
        return 0
    info = machine_info()
    table = markdown_table(
        ["data", "listings", "classes", "flipped", "top 2×flipped: precision", "recall", "cleanlab issues",
         "their precision", "their recall", "seconds"],
        [[r["data"], r["listings"], r["classes"], r["flipped"], f"{r['precision_top_k']:.1%}",
          f"{r['recall_top_k']:.1%}", r["cleanlab_issues"], f"{r['cleanlab_precision']:.1%}",
          f"{r['cleanlab_recall']:.1%}", r["seconds"]] for r in rows])
    md = (f"# Label audit: finding {args.flip:.0%} flipped labels (seed {args.seed})\n\n{table}\n\n"
          f"Target: recall ≥ {TARGET_RECALL:.0%} on Flipkart within the top 2×flipped suspects (precision can be "
          f"at most 50 % there).\n\n{machine_line(info)}\n")
    print(md)
    if args.save:
        save_results("label_audit", {"flip": args.flip, "seed": args.seed, "results": rows, "machine": info}, md)
    return 0


if __name__ == "__main__":
    sys.exit(main())
