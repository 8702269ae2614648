"""Evaluation metrics for predicted category probabilities, as one JSON-ready dict.

Rows whose true label the model never saw stay in every metric as errors (except log loss,
which is undefined for them): dropping them would overstate how well the model does on the
listings it will actually receive.
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Sequence

import numpy as np
import pandas as pd
from sklearn.metrics import f1_score, precision_recall_fscore_support

from prodcat.data.taxonomy import Taxonomy
from prodcat.errors import ConfigError, DataError
from prodcat.evaluation.automation import PRECISION_TARGETS, threshold_for_precision

# Keeps log loss finite when the model gives the true class probability 0.
_EPS = 1e-15


def _as_codes(y_true: Sequence[object]) -> np.ndarray:
    arr = np.asarray(list(y_true), dtype=object)
    if arr.ndim != 1:
        raise DataError(f"true labels must be one-dimensional, got shape {arr.shape}")
    missing = pd.isna(arr)
    if missing.any():
        raise DataError(f"{int(missing.sum())} true labels are missing; drop those rows before evaluating")
    return np.array([str(v) for v in arr], dtype=object)


def _check_inputs(y_true: Sequence[object], proba, classes: Sequence[object]):
    codes = _as_codes(y_true)
    cls = [str(c) for c in classes]
    if len(set(cls)) != len(cls):
        raise DataError("classes contain duplicate codes")
    p = np.asarray(proba, dtype=np.float64)
    if p.ndim != 2:
        raise DataError(f"probabilities must be a 2-D (rows x classes) array, got shape {p.shape}")
    if p.shape != (len(codes), len(cls)):
        raise DataError(
            f"probabilities have shape {p.shape} but there are {len(codes)} labels "
            f"and {len(cls)} classes"
        )
    if len(codes) == 0:
        raise DataError("nothing to evaluate: no rows")
    if len(cls) == 0:
        raise DataError("nothing to evaluate: no classes")
    if not np.isfinite(p).all():
        raise DataError("probabilities contain NaN or infinite values")
    return codes, cls, p


def _topk_hits(codes: np.ndarray, p: np.ndarray, cls: list[str], k: int) -> np.ndarray:
    index = {c: i for i, c in enumerate(cls)}
    true_idx = np.array([index.get(c, -1) for c in codes])
    k = min(k, len(cls))
    # Stable sort so ties are broken by class order, the same way argmax breaks them.
    top = np.argsort(-p, axis=1, kind="stable")[:, :k]
    return (top == true_idx[:, None]).any(axis=1) & (true_idx >= 0)


def top_k_accuracy(y_true: Sequence[object], proba, classes: Sequence[object], k: int) -> float:
    """Share of rows whose true code is among the ``k`` most probable classes.

    Rows with a label outside ``classes`` count as misses.
    """
    if int(k) < 1:
        raise ConfigError(f"k must be at least 1, got {k}")
    codes, cls, p = _check_inputs(y_true, proba, classes)
    return float(_topk_hits(codes, p, cls, int(k)).mean())


def _reliability(conf: np.ndarray, correct: np.ndarray, n_bins: int) -> tuple[float, list[dict]]:
    edges = np.linspace(0.0, 1.0, n_bins + 1)
    # Bins are (lower, upper]; a confidence of exactly 0 falls in the first one.
    which = np.clip(np.searchsorted(edges[1:-1], conf, side="left"), 0, n_bins - 1)
    n = len(conf)
    ece = 0.0
    bins = []
    for b in range(n_bins):
        mask = which == b
        count = int(mask.sum())
        mean_conf = acc = None
        if count:
            mean_conf = float(conf[mask].mean())
            acc = float(correct[mask].mean())
            ece += count / n * abs(acc - mean_conf)
        bins.append({
            "lower": float(edges[b]),
            "upper": float(edges[b + 1]),
            "count": count,
            "mean_confidence": mean_conf,
            "accuracy": acc,
        })
    return float(ece), bins


def _parent_scores(codes: np.ndarray, pred: np.ndarray, taxonomy: Taxonomy | None) -> dict | None:
    """Scores one level up the taxonomy (a book filed under the wrong kind of book is still a
    book), when the taxonomy names parents."""
    if taxonomy is None:
        return None
    parents = {c: taxonomy.parent(c) for c in set(codes.tolist()) | set(pred.tolist())}
    if not any(parents.values()):
        return None
    true_p = np.array([parents[c] or c for c in codes], dtype=object)
    pred_p = np.array([parents[c] or c for c in pred], dtype=object)
    return {"n_parents": len(set(true_p.tolist())),
            "weighted_f1": float(f1_score(true_p, pred_p, average="weighted", zero_division=0)),
            "macro_f1": float(f1_score(true_p, pred_p, average="macro", zero_division=0)),
            "accuracy": float((true_p == pred_p).mean())}


def compute_metrics(
    y_true: Sequence[object],
    proba,
    classes: Sequence[object],
    taxonomy: Taxonomy | None = None,
    thresholds: Sequence[float] = (0.5, 0.8, 0.9),
    n_bins: int = 15,
) -> dict:
    """Score probabilities ``proba`` (columns in ``classes`` order) against ``y_true``.

    Returns plain Python types only, so the dict can go straight to ``json.dump``.
    """
    if int(n_bins) < 1:
        raise ConfigError(f"n_bins must be at least 1, got {n_bins}")
    thresholds = [float(t) for t in thresholds]
    if any(not 0.0 <= t <= 1.0 for t in thresholds):
        raise ConfigError(f"thresholds must lie between 0 and 1, got {thresholds}")
    codes, cls, p = _check_inputs(y_true, proba, classes)
    n = len(codes)
    cls_arr = np.array(cls, dtype=object)

    top = p.argmax(axis=1)
    pred = cls_arr[top]
    conf = p[np.arange(n), top]
    correct = pred == codes
    known = set(cls)
    seen = np.array([c in known for c in codes])

    unseen_counts = Counter(codes[~seen].tolist())
    unseen = dict(sorted(unseen_counts.items(), key=lambda kv: (-kv[1], kv[0])))

    # Only labels that occur (as truth or prediction) enter the averages: a class absent from
    # both has no defined F1 and would drag macro F1 down for no reason.
    present = set(codes.tolist()) | set(pred.tolist())
    labels = [c for c in cls if c in present] + list(unseen)

    weighted_f1 = f1_score(codes, pred, labels=labels, average="weighted", zero_division=0)
    macro_f1 = f1_score(codes, pred, labels=labels, average="macro", zero_division=0)

    if seen.any():
        col = {c: i for i, c in enumerate(cls)}
        idx = np.array([col[c] for c in codes[seen]])
        p_true = np.clip(p[np.flatnonzero(seen), idx], _EPS, 1.0)
        log_loss = float(-np.log(p_true).mean())
    else:
        log_loss = None

    ece, bins = _reliability(conf, correct, int(n_bins))

    per_labels = cls + list(unseen)
    prec, rec, f1, support = precision_recall_fscore_support(
        codes, pred, labels=per_labels, zero_division=0
    )
    n_pred = Counter(pred.tolist())
    per_class = {}
    for i, code in enumerate(per_labels):
        per_class[code] = {
            "name": taxonomy.name(code) if taxonomy is not None else code,
            "parent": taxonomy.parent(code) if taxonomy is not None else None,
            "precision": float(prec[i]),
            "recall": float(rec[i]),
            "f1": float(f1[i]),
            "support": int(support[i]),
            "n_predicted": int(n_pred.get(code, 0)),
            "in_model": code in known,
        }

    # Counted directly: sklearn's confusion_matrix warns on single-label input even with labels=.
    pos = {c: i for i, c in enumerate(labels)}
    cm = np.zeros((len(labels), len(labels)), dtype=np.int64)
    np.add.at(cm, ([pos[c] for c in codes], [pos[c] for c in pred]), 1)

    coverage = []
    for t in thresholds:
        auto = conf >= t
        n_auto = int(auto.sum())
        coverage.append({
            "threshold": t,
            "coverage": float(auto.mean()),
            "n_automated": n_auto,
            "accuracy": float(correct[auto].mean()) if n_auto else None,
        })

    precision_coverage = [{"target_precision": float(t), **threshold_for_precision(conf, correct, t)}
                          for t in PRECISION_TARGETS]

    return {
        "n": int(n),
        "n_classes": len(cls),
        "n_seen": int(seen.sum()),
        "weighted_f1": float(weighted_f1),
        "macro_f1": float(macro_f1),
        "accuracy": float(correct.mean()),
        "top3_accuracy": float(_topk_hits(codes, p, cls, 3).mean()),
        "log_loss": log_loss,
        "ece": ece,
        "reliability": bins,
        "per_class": per_class,
        "confusion": {"labels": labels, "matrix": cm.astype(int).tolist()},
        "coverage": coverage,
        "precision_coverage": precision_coverage,
        "parent": _parent_scores(codes, pred, taxonomy),
        "unseen_labels": {"count": int((~seen).sum()), "labels": {k: int(v) for k, v in unseen.items()}},
    }
