"""Drift of what a served model answers against what it answered out of fold at training time.

The *reference* (:func:`reference_distribution`) is written by ``prodcat train`` into the bundle's
manifest (``metrics.monitoring``) from its cross-validation: the share of each predicted category
and a histogram of the top-1 probability, for all listings and for those below the threshold
(the ones a server sends to review). ``prodcat monitor`` compares the served answers with it by
the population stability index,

    PSI = Σ_i (a_i − e_i) · ln(a_i / e_i),

over categories (one term per category: its contribution) and over confidence bins, with the
shares clipped at a small epsilon so that an empty bin stays finite. The usual reading: below
0.1 stable, 0.1–0.25 a moderate shift, above 0.25 a significant one.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence

import numpy as np

#: Confidence bin edges: the same as the server's ``prodcat_prediction_confidence`` buckets.
CONFIDENCE_EDGES = (0.0, 0.1, 0.2, 0.3, 0.4, 0.5, 0.6, 0.7, 0.8, 0.9, 0.95, 0.99, 1.0)
PSI_EPSILON = 1e-4
#: PSI below this: stable; up to :data:`PSI_SHIFT`: moderate shift; above: significant shift.
PSI_STABLE, PSI_SHIFT = 0.1, 0.25


def confidence_counts(confidence: Sequence[float], edges: Sequence[float] = CONFIDENCE_EDGES) -> list[int]:
    """Counts per bin ``(e[i-1], e[i]]`` (the first bin includes 0), as Prometheus' ``le`` buckets."""
    conf = np.clip(np.asarray(confidence, dtype=np.float64), 0.0, 1.0)
    idx = np.searchsorted(np.asarray(edges[1:]), conf, side="left")
    return np.bincount(np.minimum(idx, len(edges) - 2), minlength=len(edges) - 1).astype(int).tolist()


def reference_distribution(proba: np.ndarray, classes: Sequence[object], threshold: float, *,
                           source: str) -> dict:
    """What a model answered on ``proba``'s listings (out of fold): predicted-category counts
    and confidence histogram, overall and below ``threshold``."""
    proba = np.asarray(proba, dtype=np.float64)
    cls = np.asarray([str(c) for c in classes], dtype=object)
    top = proba.argmax(axis=1)
    conf = proba[np.arange(len(proba)), top]
    below = conf < threshold

    def part(mask):
        codes, counts = np.unique(cls[top[mask]], return_counts=True)
        return {"n": int(mask.sum()), "predicted": {str(c): int(k) for c, k in zip(codes, counts, strict=True)},
                "confidence_counts": confidence_counts(conf[mask])}

    return {"source": source, "threshold": float(threshold), "confidence_edges": list(CONFIDENCE_EDGES),
            "needs_review_share": float(below.mean()) if len(below) else None,
            **part(np.ones(len(conf), bool)), "below_threshold": part(below)}


def psi(expected: Sequence[float], actual: Sequence[float], eps: float = PSI_EPSILON) -> tuple[float, np.ndarray]:
    """``(total PSI, per-bin terms)`` of two count (or share) vectors over the same bins."""
    e = np.asarray(expected, dtype=np.float64)
    a = np.asarray(actual, dtype=np.float64)
    if e.shape != a.shape:
        raise ValueError("expected and actual need the same bins")
    e = np.clip(e / max(e.sum(), 1e-300), eps, None)
    a = np.clip(a / max(a.sum(), 1e-300), eps, None)
    terms = (a - e) * np.log(a / e)
    return float(terms.sum()), terms


def psi_level(value: float | None) -> str:
    if value is None:
        return "n/a"
    return "stable" if value < PSI_STABLE else "moderate shift" if value < PSI_SHIFT else "significant shift"


def category_drift(reference: Mapping[str, int], served: Mapping[str, int], *, top: int = 10) -> dict:
    """PSI of the predicted-category distribution, with each category's term and shares."""
    codes = sorted(set(reference) | set(served))
    e = np.array([reference.get(c, 0) for c in codes], dtype=np.float64)
    a = np.array([served.get(c, 0) for c in codes], dtype=np.float64)
    if a.sum() == 0 or e.sum() == 0:
        return {"psi": None, "level": "n/a", "n_reference": int(e.sum()), "n_served": int(a.sum()),
                "per_class": []}
    total, terms = psi(e, a)
    rows = [{"category": c, "reference_share": float(e[i] / e.sum()), "served_share": float(a[i] / a.sum()),
             "psi": float(terms[i])} for i, c in enumerate(codes)]
    rows.sort(key=lambda r: -r["psi"])
    return {"psi": total, "level": psi_level(total), "n_reference": int(e.sum()), "n_served": int(a.sum()),
            "per_class": rows, "top": rows[:top]}


def confidence_drift(reference_counts: Sequence[int], served_counts: Sequence[int],
                     edges: Sequence[float] = CONFIDENCE_EDGES) -> dict:
    e, a = np.asarray(reference_counts, float), np.asarray(served_counts, float)
    if a.sum() == 0 or e.sum() == 0:
        return {"psi": None, "level": "n/a", "bins": []}
    total, terms = psi(e, a)
    bins = [{"bin": f"({edges[i]:g}, {edges[i + 1]:g}]", "reference_share": float(e[i] / e.sum()),
             "served_share": float(a[i] / a.sum()), "psi": float(terms[i])} for i in range(len(e))]
    return {"psi": total, "level": psi_level(total), "bins": bins}


def bins_below(edges: Sequence[float], threshold: float) -> int:
    """How many leading confidence bins lie (at least partly) below ``threshold``."""
    return max(1, int(np.searchsorted(np.asarray(edges), threshold, side="left")))


# --- served answers from a Prometheus /metrics page ---------------------------------------


def served_from_prometheus(text: str) -> dict:
    """Predicted-category counts, confidence histogram and review share from the text of a
    prodcat server's ``/metrics`` (counted since the server started)."""
    from prometheus_client.parser import text_string_to_metric_families

    categories: dict[str, int] = {}
    buckets: dict[float, float] = {}
    decisions: dict[str, float] = {}
    for family in text_string_to_metric_families(text):
        for s in family.samples:
            if s.name == "prodcat_predicted_category_total":
                categories[s.labels["category"]] = int(s.value)
            elif s.name == "prodcat_prediction_confidence_bucket":
                buckets[float(s.labels["le"])] = s.value
            elif s.name == "prodcat_predictions_total":
                decisions[s.labels["decision"]] = s.value
    if not categories and not buckets:
        raise ValueError("no prodcat_predicted_category_total or prodcat_prediction_confidence series: "
                         "is this a prodcat server's /metrics?")
    counts = None
    if buckets:
        cum = [buckets.get(e, 0.0) for e in CONFIDENCE_EDGES[1:]]
        counts = np.diff(np.r_[0.0, cum]).astype(int).tolist()
    total = sum(decisions.values())
    return {"source": "metrics", "n": int(sum(categories.values())), "predicted": categories,
            "confidence_counts": counts,
            "needs_review_share": decisions.get("needs review", 0.0) / total if total else None}


# --- the report -----------------------------------------------------------------------------


def _fmt(v: float | None) -> str:
    return "n/a" if v is None else f"{v:.3f}"


def drift_section(title: str, drift: dict) -> list[str]:
    cat, conf = drift.get("categories") or {}, drift.get("confidence") or {}
    lines = [f"## {title}", ""]
    for note in drift.get("notes", []):
        lines.append(f"> {note}")
    if drift.get("notes"):
        lines.append("")
    lines += [f"- listings: {cat.get('n_served', 0)} served vs {cat.get('n_reference', 0)} in the reference",
              f"- PSI of predicted categories: **{_fmt(cat.get('psi'))}** ({cat.get('level', 'n/a')})",
              f"- PSI of confidence: **{_fmt(conf.get('psi'))}** ({conf.get('level', 'n/a')})"]
    if drift.get("needs_review_share") is not None:
        ref = drift.get("reference_needs_review_share")
        lines.append(f"- share needing review: {drift['needs_review_share']:.1%}"
                     + ("" if ref is None else f" (out of fold at training: {ref:.1%})"))
    if cat.get("top"):
        lines += ["", "| category | reference share | served share | PSI term |", "|---|--:|--:|--:|"]
        lines += [f"| {r['category']} | {r['reference_share']:.1%} | {r['served_share']:.1%} | {r['psi']:.4f} |"
                  for r in cat["top"]]
    if conf.get("bins"):
        lines += ["", "| confidence | reference share | served share | PSI term |", "|---|--:|--:|--:|"]
        lines += [f"| {b['bin']} | {b['reference_share']:.1%} | {b['served_share']:.1%} | {b['psi']:.4f} |"
                  for b in conf["bins"]]
    return lines + [""]


def agreement_section(agreement: dict) -> list[str]:
    lines = ["## Reviewers' agreement with the model", ""]
    days = agreement.get("per_day") or []
    if not days:
        return lines + ["No decisions on items with a model answer yet.", ""]
    total = agreement["overall"]
    lines += [f"Over {total['judged']} decided items with a model answer, reviewers kept the model's "
              f"category on **{total['agreement']:.1%}**. Items reach reviewers because the model was "
              "unsure (or a seller disagreed): this is the model's precision where it is weakest, not "
              "on all traffic.", "", "| day (UTC) | decided | with model answer | agreed | agreement |",
              "|---|--:|--:|--:|--:|"]
    for d in days:
        share = "" if d["agreement"] is None else f"{d['agreement']:.1%}"
        lines.append(f"| {d['day']} | {d['decided']} | {d['judged']} | {d['agreed']} | {share} |")
    return lines + [""]
