"""Comparing two bundles on the same labelled listings, with paired bootstrap intervals.

Both models answer the same listings; each bootstrap resample draws listings with replacement
(seeded) and scores *both* models on that one draw, so the interval is of the difference — the
listings that are hard for one model are hard for the other, and that shared difficulty cancels.
The metrics are computed from per-class counts with one matrix product per chunk of resamples, so
1,000 resamples of a few thousand listings take well under a second.

The promotion rule (:func:`verdict`): the new model is *not worse* when the lower bound of the
95 % interval of its weighted-F1 difference is above ``-margin`` (half a point by default).
"""

from __future__ import annotations

import os
import shutil
import tempfile
from collections.abc import Sequence
from pathlib import Path

import numpy as np

#: The metrics compared, in report order.
METRICS = ("weighted_f1", "macro_f1", "accuracy", "coverage_at_95")
#: What each metric is called in reports.
METRIC_NAMES = {"weighted_f1": "weighted F1", "macro_f1": "macro F1", "accuracy": "accuracy",
                "coverage_at_95": "coverage at 95 % precision"}
DEFAULT_RESAMPLES = 1000
#: Weighted F1 may drop at most this much (in points, at the lower end of the 95 % interval).
DEFAULT_MARGIN_POINTS = 0.5
_CHUNK = 128
#: Resamples are scored in chunks of at most this many (resample, listing) cells.
_CELLS = 2_000_000


class Answers:
    """One model's answers on the listings: predicted code and confidence (top probability)."""

    def __init__(self, pred: Sequence[object], confidence: Sequence[float]):
        self.pred = np.asarray([str(p) for p in pred], dtype=object)
        self.confidence = np.asarray(confidence, dtype=np.float64)
        if self.pred.shape != self.confidence.shape:
            raise ValueError("one prediction and one confidence per listing")

    @classmethod
    def from_proba(cls, proba: np.ndarray, classes: Sequence[object]) -> Answers:
        proba = np.asarray(proba, dtype=np.float64)
        cls_arr = np.asarray([str(c) for c in classes], dtype=object)
        top = proba.argmax(axis=1)
        return cls(cls_arr[top], proba[np.arange(len(proba)), top])


def model_answers(model, X, chunk: int = 4096) -> Answers:
    """``model``'s answers on the listings ``X`` (predicted in chunks)."""
    parts = [model.predict_proba(X.iloc[i:i + chunk]) for i in range(0, len(X), chunk)]
    proba = np.concatenate(parts) if parts else np.zeros((0, len(model.classes_)))
    return Answers.from_proba(proba, model.classes_)


class _Scorer:
    """Weighted metrics of one model's answers, for many weight vectors at once (a weight is how
    many times a resample drew the listing)."""

    def __init__(self, y: np.ndarray, answers: Answers, labels: list[str], target: float):
        index = {c: i for i, c in enumerate(labels)}
        n, k = len(y), len(labels)
        y_idx = np.array([index[c] for c in y])
        p_idx = np.array([index[c] for c in answers.pred])
        self.correct = (y_idx == p_idx).astype(np.float64)
        self.onehot_true = np.zeros((n, k))
        self.onehot_true[np.arange(n), y_idx] = 1.0
        self.onehot_pred = np.zeros((n, k))
        self.onehot_pred[np.arange(n), p_idx] = 1.0
        self.onehot_hit = self.onehot_true * self.correct[:, None]
        self.order = np.argsort(-answers.confidence, kind="stable")
        conf = answers.confidence[self.order]
        self.last_of_run = np.r_[conf[1:] != conf[:-1], True] if n else np.zeros(0, bool)
        self.target = target

    def scores(self, W: np.ndarray) -> dict[str, np.ndarray]:
        """``{metric: array of one value per row of W}``; ``W`` is (resamples × listings)."""
        total = W.sum(axis=1)
        support = W @ self.onehot_true
        predicted = W @ self.onehot_pred
        tp = W @ self.onehot_hit
        denom = support + predicted
        f1 = np.divide(2 * tp, denom, out=np.zeros_like(tp), where=denom > 0)
        present = denom > 0
        out = {"weighted_f1": (f1 * support).sum(axis=1) / total,
               "macro_f1": f1.sum(axis=1) / np.maximum(present.sum(axis=1), 1),
               "accuracy": (W @ self.correct) / total}
        # Coverage at the target precision: the best threshold on the resample itself (as
        # automation.coverage_at_precision), cut only between different confidences.
        filed = np.cumsum(W[:, self.order], axis=1)
        hits = np.cumsum(W[:, self.order] * self.correct[self.order], axis=1)
        precision = np.divide(hits, filed, out=np.zeros_like(hits), where=filed > 0)
        ok = (precision >= self.target) & self.last_of_run & (filed > 0)
        out["coverage_at_95"] = np.where(ok, filed, 0).max(axis=1, initial=0) / total
        return out


def compare_answers(y_true: Sequence[object], old: Answers, new: Answers, *,
                    resamples: int = DEFAULT_RESAMPLES, seed: int = 0, target_precision: float = 0.95,
                    margin_points: float = DEFAULT_MARGIN_POINTS) -> dict:
    """Side-by-side metrics of two models' answers on the same labelled listings, and paired
    bootstrap 95 % intervals of each difference (new − old).

    Returns ``{"n", "resamples", "seed", "metrics": {name: {"old", "new", "difference",
    "ci_low", "ci_high", "p_new_better"}}, "verdict": ...}``; metric values are fractions
    (0.8312), the margin is in points (0.5 = half a point of weighted F1).
    """
    y = np.asarray([str(v) for v in y_true], dtype=object)
    n = len(y)
    if n == 0:
        raise ValueError("nothing to compare: no labelled listings")
    if len(old.pred) != n or len(new.pred) != n:
        raise ValueError("both models must answer every listing")
    labels = sorted(set(y.tolist()) | set(old.pred.tolist()) | set(new.pred.tolist()))
    scorers = [_Scorer(y, a, labels, target_precision) for a in (old, new)]
    point = [s.scores(np.ones((1, n))) for s in scorers]
    rng = np.random.default_rng(seed)
    diffs: dict[str, list[np.ndarray]] = {m: [] for m in METRICS}
    chunk = max(1, min(_CHUNK, _CELLS // n))
    for start in range(0, resamples, chunk):
        b = min(chunk, resamples - start)
        draws = rng.integers(0, n, size=(b, n)) + (np.arange(b) * n)[:, None]
        W = np.bincount(draws.ravel(), minlength=b * n).reshape(b, n).astype(np.float64)
        s_old, s_new = (s.scores(W) for s in scorers)
        for m in METRICS:
            diffs[m].append(s_new[m] - s_old[m])
    metrics = {}
    for m in METRICS:
        d = np.concatenate(diffs[m]) if resamples else np.zeros(0)
        o, w = float(point[0][m][0]), float(point[1][m][0])
        lo, hi = (np.percentile(d, [2.5, 97.5]) if d.size else (np.nan, np.nan))
        metrics[m] = {"old": o, "new": w, "difference": w - o, "ci_low": float(lo), "ci_high": float(hi),
                      "p_new_better": float((d > 0).mean()) if d.size else None}
    out = {"n": n, "resamples": int(resamples), "seed": int(seed), "target_precision": target_precision,
           "agreement": float((old.pred == new.pred).mean()), "metrics": metrics}
    out["verdict"] = verdict(metrics, margin_points)
    return out


def verdict(metrics: dict, margin_points: float = DEFAULT_MARGIN_POINTS) -> dict:
    """``not_worse``: the lower 95 % bound of the weighted-F1 difference is above ``-margin``."""
    low = metrics["weighted_f1"]["ci_low"]
    not_worse = bool(np.isfinite(low) and low > -margin_points / 100)
    better = bool(not_worse and low > 0)
    word = "better" if better else "not worse" if not_worse else "worse"
    return {"not_worse": not_worse, "better": better, "margin_points": margin_points, "label": word,
            "rule": f"not worse when the lower bound of the 95 % interval of the weighted-F1 "
                    f"difference (new - old) is above -{margin_points:g} points"}


def comparison_markdown(result: dict, *, old: str = "old", new: str = "new", title: str | None = None) -> str:
    """The comparison as a Markdown report."""
    v = result["verdict"]
    lines = [f"# {title or 'prodcat model comparison'}", "",
             f"- old: `{old}`", f"- new: `{new}`",
             f"- {result['n']} labelled listings; paired bootstrap with {result['resamples']} resamples "
             f"(seed {result['seed']}); the models give the same answer on {result['agreement']:.1%} of them",
             "", "| metric | old | new | new − old | 95 % interval | P(new better) |",
             "|---|--:|--:|--:|--:|--:|"]
    for m in METRICS:
        r = result["metrics"][m]
        p = "" if r["p_new_better"] is None else f"{r['p_new_better']:.1%}"
        lines.append(f"| {METRIC_NAMES[m]} | {100 * r['old']:.2f} | {100 * r['new']:.2f} | "
                     f"{100 * r['difference']:+.2f} | [{100 * r['ci_low']:+.2f}, {100 * r['ci_high']:+.2f}] | {p} |")
    lines += ["", "Values in points (percent). Coverage at 95 % precision is the best threshold on these "
              "very listings (a ceiling), as in `prodcat evaluate`.", "",
              f"**Verdict: {v['label']}** ({v['rule']})."]
    promo = result.get("promotion")
    if promo:
        lines += ["", f"Promotion: {promo['message']}"]
    reg = result.get("registry")
    if reg:
        lines += ["", f"MLflow registry: {reg['message']}"]
    return "\n".join(lines) + "\n"


def promote_bundle(bundle: str | os.PathLike, dest: str | os.PathLike) -> Path:
    """Copy the bundle folder to ``dest``: copied beside it first, checked, then renamed into
    place, so ``dest`` is never a half-copied bundle. A previous bundle at ``dest`` is replaced."""
    from prodcat.model import read_manifest
    from prodcat.model.bundle import check_bundle_target

    src, dest = Path(bundle), Path(dest)
    check_bundle_target(dest)
    dest.parent.mkdir(parents=True, exist_ok=True)
    tmp = Path(tempfile.mkdtemp(prefix=f".{dest.name}.", dir=dest.parent))
    old = None
    try:
        staged = tmp / "bundle"
        shutil.copytree(src, staged)
        read_manifest(staged)  # the copy is a bundle (and its signature, if required, holds)
        if dest.exists():
            old = tmp / "previous"
            os.replace(dest, old)
        os.replace(staged, dest)
    except BaseException:
        if old is not None and old.exists() and not dest.exists():
            os.replace(old, dest)
        raise
    finally:
        shutil.rmtree(tmp, ignore_errors=True)
    return dest
