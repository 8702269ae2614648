"""Filing listings automatically at a promised precision.

A marketplace files the listings the model is sure of and sends the rest to people. The promise
it needs is about *precision* — "at least 95 % of what is filed without review is right" — and
the figure to maximise is *coverage*, the share filed. The threshold that keeps the promise is
chosen on out-of-fold probabilities at training time (never on the listings it is judged on),
and every evaluation checks whether it held.
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np

PRECISION_TARGETS = (0.90, 0.95, 0.98)


def threshold_for_precision(confidence: np.ndarray, correct: np.ndarray, target: float,
                            z: float = 0.0) -> dict:
    """The lowest confidence threshold whose filed listings are at least ``target`` correct.

    Listings are filed when their top probability is ``>= threshold``. Among the thresholds
    that keep the precision of what is filed at or above ``target`` — with ``z > 0``, the
    Wilson lower bound of that precision at ``z`` standard errors, so that a threshold chosen on
    a few hundred listings still holds on the next ones — the one filing the most is returned; when none does (not even the single most confident listing), the threshold is
    just above the highest confidence, so nothing is filed. Returns ``threshold``,
    ``coverage`` (share filed), ``precision`` (of those filed), ``n_filed`` and ``n``.
    """
    confidence = np.asarray(confidence, dtype=np.float64)
    correct = np.asarray(correct, dtype=bool)
    n = len(confidence)
    if n == 0:
        return {"threshold": 1.0, "coverage": 0.0, "precision": None, "n_filed": 0, "n": 0}
    order = np.argsort(-confidence, kind="stable")
    conf = confidence[order]
    hits = np.cumsum(correct[order])
    # Only the last listing of a run of equal confidences is a possible cut: a threshold files
    # every listing at or above it, ties included.
    last_of_run = np.r_[conf[1:] != conf[:-1], True]
    filed = np.arange(1, n + 1)
    precision = hits / filed
    ok = np.flatnonzero(last_of_run & (wilson_lower(precision, filed, z) >= target))
    if ok.size == 0:
        return {"threshold": float(np.nextafter(conf[0], np.inf)), "coverage": 0.0,
                "precision": None, "n_filed": 0, "n": n}
    k = ok[-1]
    return {"threshold": float(conf[k]), "coverage": float(filed[k] / n),
            "precision": float(precision[k]), "n_filed": int(filed[k]), "n": n}


def wilson_lower(p: np.ndarray, n: np.ndarray, z: float) -> np.ndarray:
    """Wilson score lower bound of a proportion ``p`` observed on ``n`` trials."""
    if z <= 0:
        return p
    z2 = z * z
    centre = p + z2 / (2 * n)
    spread = z * np.sqrt(p * (1 - p) / n + z2 / (4 * n * n))
    return (centre - spread) / (1 + z2 / n)


def coverage_at_precision(proba: np.ndarray, y_idx: np.ndarray,
                          targets: Sequence[float] = PRECISION_TARGETS) -> list[dict]:
    """For each target precision, the best threshold on these listings and what it files.

    This is the ceiling an oracle threshold reaches on the evaluated data itself; compare with
    :func:`threshold_promise` for what the threshold stored in the model actually does.
    """
    confidence = proba.max(axis=1)
    correct = proba.argmax(axis=1) == np.asarray(y_idx)
    return [{"target_precision": float(t), **threshold_for_precision(confidence, correct, t)}
            for t in targets]


def threshold_promise(proba: np.ndarray, y_idx: np.ndarray, threshold: float | np.ndarray,
                      target_precision: float | None = None) -> dict:
    """What a stored threshold does on these listings: the share filed and its precision,
    and whether the precision reached the target the threshold was chosen for."""
    confidence = proba.max(axis=1)
    correct = proba.argmax(axis=1) == np.asarray(y_idx)
    filed = confidence >= threshold
    n_filed = int(filed.sum())
    precision = float(correct[filed].mean()) if n_filed else None
    out = {"threshold": float(np.median(threshold)), "target_precision": target_precision,
           "coverage": float(filed.mean()) if len(filed) else 0.0, "precision": precision,
           "n_filed": n_filed, "n": int(len(filed))}
    if target_precision is not None:
        out["held"] = bool(precision is None or precision >= target_precision)
    return out


def automation_section(metrics: dict) -> tuple[str, str]:
    """The report's "Filing automatically" section: coverage at each target precision on these
    listings, and what the model's stored threshold did."""
    lines = ["Share of listings that can be filed without review while the filed ones stay at "
             "least this precise (the best threshold on these very listings: a ceiling).", "",
             "| target precision | threshold | filed | precision of filed |", "|--:|--:|--:|--:|"]
    for row in metrics.get("precision_coverage") or []:
        prec = row.get("precision")
        lines.append(f"| {row['target_precision']:.0%} | {row['threshold']:.3f} | "
                     f"{row['coverage']:.1%} | {'' if prec is None else f'{prec:.1%}'} |")
    promise = metrics.get("automation")
    if promise:
        prec = promise.get("precision")
        target = promise.get("target_precision")
        verdict = ("" if target is None else
                   f" — the promise of {target:.0%} **{'held' if promise.get('held') else 'did not hold'}**")
        where = "each fold's own threshold" if promise.get("per_fold") else \
            f"the model's threshold {promise['threshold']:.3f}"
        lines += ["", f"With {where} (chosen on training data only), "
                  f"{promise['coverage']:.1%} of these listings are filed automatically "
                  f"({promise['n_filed']} of {promise['n']}), "
                  f"{'none' if prec is None else f'{prec:.1%}'} of them correctly{verdict}."]
    return "Filing automatically", "\n".join(lines)


def model_promise(proba: np.ndarray, y_true, classes, thresholds, target_precision) -> dict:
    """:func:`threshold_promise` with labels (unseen labels count as errors) and either one
    threshold or one per row (cross-validation: each fold's model has its own)."""
    cls = np.asarray(classes, dtype=object).astype(str)
    y = np.asarray(y_true, dtype=object).astype(str)
    index = {c: i for i, c in enumerate(cls)}
    y_idx = np.array([index.get(c, -1) for c in y])
    per_fold = np.ndim(thresholds) > 0
    out = threshold_promise(proba, y_idx, thresholds if per_fold else float(thresholds),
                            target_precision)
    if per_fold:
        out["threshold"] = float(np.median(thresholds))
        out["per_fold"] = sorted({round(float(t), 4) for t in np.asarray(thresholds)})
    return out
