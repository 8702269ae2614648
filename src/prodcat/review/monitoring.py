"""``prodcat monitor``'s figures: drift of the served answers, and reviewers' agreement by day.

Two sources of served answers, each compared with the bundle's out-of-fold reference
(:mod:`prodcat.evaluation.drift`):

* a server's ``/metrics`` page (``--metrics``): every answer since the server started — the
  predicted-category counter and the confidence histogram;
* the review store (``--db``): it does **not** record every prediction, only the answers that
  were queued (below the threshold, or text and photo disagreeing). Its ``low_confidence`` items
  are compared with the reference's below-threshold part, so the comparison is like for like;
  the report says so.

Agreement: each decided item whose model answer is known counts as agreed when the reviewer's
label is the model's top-1, per day of decision (UTC).
"""

from __future__ import annotations

from collections import Counter, defaultdict
from collections.abc import Iterable, Mapping
from datetime import datetime

from prodcat.evaluation.drift import (
    CONFIDENCE_EDGES,
    agreement_section,
    bins_below,
    category_drift,
    confidence_counts,
    confidence_drift,
    drift_section,
)

STORE_NOTE = ("The review store keeps only the answers that were queued for review (below the "
              "threshold, or text and photo disagreeing), not every prediction: its low-confidence "
              "items are compared with the out-of-fold answers below the same threshold. For the "
              "whole traffic, give --metrics with the server's /metrics.")


def agreement_by_day(decisions: Iterable[Mapping]) -> dict:
    """Per day of decision: decided items, those with a model answer, and how many kept it."""
    days: dict[str, Counter] = defaultdict(Counter)
    by_reason: dict[str, Counter] = defaultdict(Counter)
    for d in decisions:
        day = d["decision"]["decided_at"][:10]
        days[day]["decided"] += 1
        if d.get("model_label"):
            agreed = d["decision"]["label"] == d["model_label"]
            for c in (days[day], by_reason[d["reason"]]):
                c["judged"] += 1
                c["agreed"] += agreed

    def row(c: Counter) -> dict:
        return {"decided": c["decided"], "judged": c["judged"], "agreed": c["agreed"],
                "agreement": c["agreed"] / c["judged"] if c["judged"] else None}

    overall = Counter()
    for c in days.values():
        overall.update(c)
    return {"per_day": [{"day": day, **row(c)} for day, c in sorted(days.items())],
            "by_reason": {r: row(c) for r, c in sorted(by_reason.items())}, "overall": row(overall)}


def queued_answers(items: Iterable[Mapping], since: datetime | None = None) -> dict:
    """The model answers among queued items: low-confidence ones (categories, confidences) and
    how many items each reason and model id brought."""
    predicted: Counter = Counter()
    conf: list[float] = []
    reasons: Counter = Counter()
    model_ids: Counter = Counter()
    for it in items:
        if since is not None and datetime.fromisoformat(it["created_at"]) < since:
            continue
        reasons[it["reason"]] += 1
        if it.get("model_id"):
            model_ids[it["model_id"]] += 1
        if it["reason"] == "low_confidence" and it.get("top_k"):
            predicted[str(it["top_k"][0]["code"])] += 1
            conf.append(float(it["top_k"][0]["probability"]))
    return {"n": sum(predicted.values()), "predicted": dict(predicted), "confidence": conf,
            "reasons": dict(reasons), "model_ids": dict(model_ids)}


#: Below this many served answers, PSI mostly measures sampling noise.
FEW_ANSWERS = 200


def _few(out: dict) -> dict:
    n = (out.get("categories") or {}).get("n_served") or 0
    if 0 < n < FEW_ANSWERS:
        out["notes"].append(f"only {n} answers: with so few, PSI is dominated by sampling noise "
                            f"(read it from {FEW_ANSWERS} or more)")
    return out


def store_drift(queued: Mapping, reference: Mapping | None) -> dict:
    """Drift of the queued low-confidence answers against the reference below its threshold."""
    out: dict = {"source": "review store (queued items only)", "notes": [STORE_NOTE],
                 "reasons": queued["reasons"], "model_ids": queued["model_ids"]}
    if not reference:
        out["notes"].append("no reference to compare with (give --model, a bundle trained with --cv): no PSI")
        out["categories"] = category_drift({}, queued["predicted"])
        return _few(out)
    below = reference.get("below_threshold")
    if below is None:  # training labels only: categories against them, no confidence reference
        out["categories"] = category_drift(reference.get("predicted") or {}, queued["predicted"])
        return _few(out)
    edges = reference.get("confidence_edges") or list(CONFIDENCE_EDGES)
    k = bins_below(edges, reference["threshold"])
    out["threshold"] = reference["threshold"]
    out["categories"] = category_drift(below.get("predicted") or {}, queued["predicted"])
    served = confidence_counts(queued["confidence"], edges)
    out["confidence"] = confidence_drift(below["confidence_counts"][:k], served[:k], edges)
    return _few(out)


def metrics_drift(served: Mapping, reference: Mapping | None) -> dict:
    """Drift of a server's answers (its /metrics) against the full out-of-fold reference."""
    out: dict = {"source": "server /metrics (every answer since the server started)", "notes": [],
                 "needs_review_share": served.get("needs_review_share")}
    if not reference:
        out["notes"].append("no reference to compare with (give --model, a bundle trained with --cv): no PSI")
        out["categories"] = category_drift({}, served["predicted"])
        return _few(out)
    out["reference_needs_review_share"] = reference.get("needs_review_share")
    out["categories"] = category_drift(reference.get("predicted") or {}, served["predicted"])
    if served.get("confidence_counts") is not None and reference.get("confidence_counts") is not None:
        out["confidence"] = confidence_drift(reference["confidence_counts"], served["confidence_counts"],
                                             reference.get("confidence_edges") or CONFIDENCE_EDGES)
    return _few(out)


def label_reference(manifest: Mapping) -> tuple[dict | None, str]:
    """The bundle's out-of-fold reference, else (categories only) its training label counts."""
    ref = (manifest.get("metrics") or {}).get("monitoring")
    if ref:
        return ref, ref.get("source", "out-of-fold answers")
    counts = (manifest.get("training") or {}).get("class_counts")
    if counts:
        return {"predicted": {str(k): int(v) for k, v in counts.items()}, "threshold": manifest.get("threshold"),
                "confidence_counts": None}, "training labels (the bundle has no out-of-fold reference)"
    return None, "none"


def monitor_markdown(report: Mapping) -> str:
    lines = ["# prodcat monitoring", ""]
    ref = report.get("reference_source")
    if ref:
        lines += [f"Reference: {ref}" + (f" of `{report['model']}`" if report.get("model") else "") + ".", ""]
    if report.get("metrics_drift"):
        lines += drift_section("Served answers (server /metrics)", report["metrics_drift"])
    if report.get("store_drift"):
        d = report["store_drift"]
        lines += drift_section("Queued answers (review store)", d)
        if d.get("reasons"):
            lines += ["Queued items by reason: " + ", ".join(f"{r} {n}" for r, n in d["reasons"].items()), ""]
    if report.get("agreement") is not None:
        lines += agreement_section(report["agreement"])
    return "\n".join(lines) + "\n"
