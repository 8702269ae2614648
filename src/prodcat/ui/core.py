"""What the web app's pages compute, kept free of Streamlit so it can be tested directly."""

from __future__ import annotations

import html
import json
import math
from pathlib import Path
from typing import Any

import pandas as pd

from prodcat.errors import ProdcatError
from prodcat.serving.errors import ServingError
from prodcat.serving.images import ImageStore, check_image
from prodcat.serving.service import ModelService, Query
from prodcat.text.cleaning import is_blank

#: Figures of an evaluation report (``prodcat evaluate --out DIR``) shown on the model page.
CONFUSION_PNG = "confusion_matrix.png"
RELIABILITY_PNG = "reliability.png"

HEADLINE = (("weighted_f1", "Weighted F1"), ("macro_f1", "Macro F1"), ("accuracy", "Accuracy"),
            ("top3_accuracy", "Top-3 accuracy"), ("ece", "ECE"))


def default_report_dir(model_dir: str | Path, report: str | Path | None) -> Path | None:
    """``report`` if given, else ``MODEL_DIR/report`` when it exists, else None."""
    if report:
        return Path(report)
    candidate = Path(model_dir) / "report"
    return candidate if candidate.is_dir() else None


def load_report(report_dir: str | Path | None) -> dict[str, Any] | None:
    """The metrics of an evaluation report folder, or None when there is none to read."""
    if report_dir is None:
        return None
    path = Path(report_dir) / "metrics.json"
    if not path.is_file():
        return None
    try:
        data = json.loads(path.read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return None
    return data if isinstance(data, dict) else None


def headline(metrics: dict[str, Any]) -> list[tuple[str, float]]:
    out = []
    for key, label in HEADLINE:
        value = metrics.get(key)
        if isinstance(value, int | float) and not (isinstance(value, float) and math.isnan(value)):
            out.append((label, float(value)))
    return out


def per_class_frame(metrics: dict[str, Any]) -> pd.DataFrame:
    """Per-class precision/recall/F1/support, worst F1 first (where the model needs work)."""
    rows = [{"code": code, "name": v.get("name", code), "parent": v.get("parent"),
             "f1": v.get("f1"), "precision": v.get("precision"), "recall": v.get("recall"),
             "support": v.get("support")}
            for code, v in (metrics.get("per_class") or {}).items()]
    frame = pd.DataFrame(rows, columns=["code", "name", "parent", "f1", "precision", "recall", "support"])
    return frame.sort_values(["f1", "support"], ascending=[True, False]).reset_index(drop=True)


def coverage_frame(metrics: dict[str, Any]) -> pd.DataFrame:
    """Accuracy against coverage at each threshold: what automating at that threshold gives."""
    rows = [{"threshold": c.get("threshold"), "coverage": c.get("coverage"),
             "accuracy": c.get("accuracy"), "automated": c.get("n_automated")}
            for c in metrics.get("coverage") or []]
    return pd.DataFrame(rows, columns=["threshold", "coverage", "accuracy", "automated"])


def coverage_curve(metrics: dict[str, Any]) -> pd.DataFrame:
    """Accuracy against coverage at every confidence-bin edge of the reliability diagram.

    Automating the predictions whose confidence is at least ``t`` covers the listings in the
    bins at or above ``t``; their accuracy is the count-weighted accuracy of those bins. This
    gives the whole trade-off curve from the report alone, not just the three thresholds.
    """
    bins = sorted((b for b in metrics.get("reliability") or [] if b.get("count")),
                  key=lambda b: b["lower"], reverse=True)
    total = sum(int(b["count"]) for b in bins)
    rows, covered, correct = [], 0, 0.0
    for b in bins:
        covered += int(b["count"])
        correct += float(b["accuracy"]) * int(b["count"])
        rows.append({"threshold": float(b["lower"]), "coverage": covered / total,
                     "accuracy": correct / covered})
    return pd.DataFrame(rows, columns=["threshold", "coverage", "accuracy"])


def coverage_figure(curve: pd.DataFrame, points: pd.DataFrame):
    """The accuracy-vs-coverage curve, with the report's thresholds marked."""
    from matplotlib.backends.backend_agg import FigureCanvasAgg
    from matplotlib.figure import Figure

    fig = Figure(figsize=(6.0, 3.6), layout="constrained")
    FigureCanvasAgg(fig)
    ax = fig.subplots()
    ax.plot(curve["coverage"], curve["accuracy"], "-o", color="#4c72b0", markersize=3,
            label="automate at confidence ≥ t")
    marked = points.dropna(subset=["accuracy"])
    ax.plot(marked["coverage"], marked["accuracy"], "s", color="#dd8452", label="report thresholds")
    # Thresholds that give the same point share one label instead of overprinting each other.
    labels: dict[tuple[float, float], list[str]] = {}
    for _, row in marked.iterrows():
        key = (round(float(row["coverage"]), 4), round(float(row["accuracy"]), 4))
        labels.setdefault(key, []).append(f"{row['threshold']:.2f}")
    for (x, y), ts in labels.items():
        ax.annotate("t=" + ", ".join(ts), (x, y), textcoords="offset points", xytext=(-6, -14),
                    fontsize=8, ha="right")
    ax.set_xlim(0, 1.02)
    low = min([0.5, *curve["accuracy"].tolist(), *marked["accuracy"].tolist()])
    ax.set_ylim(max(0.0, low - 0.05), 1.02)
    ax.set_xlabel("coverage (share of listings filed automatically)")
    ax.set_ylabel("accuracy of those")
    ax.grid(alpha=0.3)
    ax.legend(loc="lower left", fontsize=8)
    return fig


def classify(service: ModelService, title: str, description: str = "", image: bytes | None = None,
             *, top_k: int = 3, max_image_bytes: int = 8 * 1024 * 1024,
             max_image_pixels: int = 40_000_000, explain: bool = False) -> dict[str, Any]:
    """Check the inputs as the API does, then classify. Raises ServingError with a message for
    the seller when the input cannot be used. With ``explain``, the answer carries its
    explanation under ``explanation`` (see :meth:`ModelService.explain`)."""
    if is_blank(title):
        raise ServingError(422, "title_required", "A title is required.")
    path = None
    store = None
    try:
        if image is not None:
            # Decoded once at the encoder's size, as the API does: both then answer alike.
            checked = check_image(image, max_bytes=max_image_bytes, max_pixels=max_image_pixels,
                                  target_size=service.decode_size, name="The photo")
            store = ImageStore()
            path = store.write(checked)
        query = Query(title=title, description=description or "", image=str(path) if path else None,
                      top_k=top_k)
        result = service.predict([query])[0]
        if explain:
            try:
                result["explanation"] = service.explain(query)
            except ProdcatError as exc:  # the answer stands without its explanation
                result["explanation"] = {"error": str(exc)}
        return result
    finally:
        if store is not None:
            store.close()


def highlight_html(raw: str, tokens: list[dict], weights: list[float], field: str,
                   scale: float | None = None) -> str:
    """``raw`` (a title or description) as HTML, each word explained in ``tokens`` marked green
    when it speaks for the class and red when against, more opaque the more it weighs.

    ``tokens``/``weights`` are an explanation's ``tokens`` and one class's ``token_weights``;
    words without a known ``span`` in ``raw`` are left unmarked.
    """
    marks = [(t["span"], w) for t, w in zip(tokens, weights, strict=True)
             if t["field"] == field and t.get("span") and w != 0]
    if scale is None:
        scale = max((abs(w) for _, w in marks), default=0.0)
    out, at = [], 0
    for (start, end), w in sorted(marks, key=lambda m: m[0][0]):
        if start < at:  # a raw word split into several cleaned words: mark it once
            continue
        out.append(html.escape(raw[at:start]))
        out.append(_mark(raw[start:end], w, scale))
        at = end
    out.append(html.escape(raw[at:]))
    return "".join(out)


def _mark(text: str, weight: float, scale: float) -> str:
    alpha = min(1.0, abs(weight) / scale) * 0.6 + 0.1 if scale else 0.0
    colour = f"rgba(46, 160, 67, {alpha:.2f})" if weight > 0 else f"rgba(218, 54, 51, {alpha:.2f})"
    return (f'<mark title="{weight:+.2f}" style="background:{colour};padding:0 2px;border-radius:3px">'
            f"{html.escape(text)}</mark>")


#: Outline colours of the words boxed on the photo: for the answer, against it, weight unknown.
BOX_FOR, BOX_AGAINST, BOX_PLAIN = (46, 160, 67), (218, 54, 51), (30, 110, 230)


def photo_words_html(ocr: dict[str, Any]) -> str:
    """The words read on the photo (an explanation's ``ocr``), in reading order, marked like the
    listing's words by their weight for the answer; unmarked when their weight is unknown."""
    words = ocr.get("words") or []
    scale = max((abs(w["weight"]) for w in words if w.get("weight")), default=0.0)
    return " ".join(_mark(w["text"], w["weight"], scale) if w.get("weight") else html.escape(w["text"])
                    for w in words)


def boxed_photo(photo: bytes, ocr: dict[str, Any], max_side: int = 480):
    """The seller's photo (upright, at most ``max_side`` pixels) with each word read on it boxed:
    green when it speaks for the answer, red against, blue when its weight is unknown.

    Boxes are in the frame the engine read (``ocr["size"]``: the upload as decoded, upright);
    that frame and the photo differ only in scale."""
    from PIL import ImageDraw

    from prodcat.image import load_image

    image = load_image(photo, target_size=max_side).copy()
    image.thumbnail((max_side, max_side))
    frame = ocr.get("size") or list(image.size)
    sx, sy = image.width / frame[0], image.height / frame[1]
    draw = ImageDraw.Draw(image)
    width = max(2, round(max(image.size) / 200))
    for word in ocr.get("words") or []:
        left, top, right, bottom = word["box"]
        weight = word.get("weight")
        colour = BOX_PLAIN if not weight else BOX_FOR if weight > 0 else BOX_AGAINST
        draw.rectangle((left * sx - width, top * sy - width, right * sx + width, bottom * sy + width),
                       outline=colour, width=width)
    return image
