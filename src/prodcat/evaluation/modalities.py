"""Text-only, image-only (OCR-only) and fused scores side by side, so a reader sees where each
modality helps."""

from __future__ import annotations

import numpy as np

from prodcat.evaluation.metrics import compute_metrics


def modality_metrics(y, fused: np.ndarray, text: np.ndarray, image: np.ndarray | None,
                     has_image: np.ndarray, classes, taxonomy=None, *, ocr: np.ndarray | None = None,
                     has_ocr: np.ndarray | None = None) -> dict:
    """``{"text", "image", "fused"}`` metrics plus the fused scores of listings with and without
    a photo. Each modality is scored on the listings it could see (the image model on listings
    with a usable photo), with that ``n``. With a model that reads the photos' words, ``ocr``
    (the OCR channel alone) is scored on the listings whose photo had words (``has_ocr``).
    """
    y = np.asarray(y, dtype=object).astype(str)
    has_image = np.asarray(has_image, dtype=bool)
    out = {"text": compute_metrics(y, text, classes, taxonomy),
           "fused": compute_metrics(y, fused, classes, taxonomy)}
    if ocr is not None and has_ocr is not None and np.asarray(has_ocr, dtype=bool).any():
        rows = np.asarray(has_ocr, dtype=bool)
        out["ocr"] = compute_metrics(y[rows], ocr[rows], classes, taxonomy)
    if image is not None and has_image.any():
        out["image"] = compute_metrics(y[has_image], image[has_image], classes, taxonomy)
        out["groups"] = {
            "with_image": _both(y, fused, text, has_image, classes, taxonomy),
            "without_image": (_both(y, fused, text, ~has_image, classes, taxonomy)
                              if (~has_image).any() else None),
        }
    return out


def _both(y, fused, text, rows, classes, taxonomy) -> dict:
    keys = ("n", "weighted_f1", "macro_f1", "accuracy", "top3_accuracy", "ece")
    f = compute_metrics(y[rows], fused[rows], classes, taxonomy)
    t = compute_metrics(y[rows], text[rows], classes, taxonomy)
    return {"fused": {k: f[k] for k in keys}, "text": {k: t[k] for k in keys}}


def modality_sections(mod: dict) -> list[tuple[str, str]]:
    """Markdown sections for the report: the side-by-side table and per-class F1 deltas."""
    keys = [("n", "Listings"), ("weighted_f1", "Weighted F1"), ("macro_f1", "Macro F1"),
            ("accuracy", "Accuracy"), ("top3_accuracy", "Top-3 accuracy"), ("ece", "ECE")]
    names = [m for m in ("text", "image", "ocr", "fused") if m in mod]
    lines = ["Each column is scored on the listings that modality could see.", "",
             "| Metric | " + " | ".join(names) + " |", "| --- |" + " ---: |" * len(names)]
    for key, label in keys:
        cells = [_fmt(mod[m].get(key)) for m in names]
        lines.append(f"| {label} | " + " | ".join(cells) + " |")
    sections = [("Text, image" + (", OCR" if "ocr" in mod else "") + " and fused", "\n".join(lines))]
    groups = mod.get("groups")
    if groups:
        rows = ["| Listings | n | text weighted F1 | fused weighted F1 | text accuracy | fused accuracy |",
                "| --- | ---: | ---: | ---: | ---: | ---: |"]
        for name, g in groups.items():
            if g:
                rows.append(f"| {name.replace('_', ' ')} | {g['fused']['n']} | {_fmt(g['text']['weighted_f1'])} | "
                            f"{_fmt(g['fused']['weighted_f1'])} | {_fmt(g['text']['accuracy'])} | "
                            f"{_fmt(g['fused']['accuracy'])} |")
        sections.append(("Listings with and without a photo", "\n".join(rows)))
    if "image" in mod:
        t, i, f = (mod[m]["per_class"] for m in ("text", "image", "fused"))
        deltas = []
        for code, row in f.items():
            if row.get("support"):
                deltas.append((row["f1"] - t[code]["f1"], code, row.get("name", code), t[code]["f1"],
                               i.get(code, {}).get("f1"), row["f1"], row["support"]))
        deltas.sort(reverse=True)
        rows = ["| Code | Name | text F1 | image F1 | fused F1 | fused − text | Support |",
                "| --- | --- | ---: | ---: | ---: | ---: | ---: |"]
        for d, code, name, tf, imf, ff, sup in deltas:
            rows.append(f"| {code} | {name} | {_fmt(tf)} | {_fmt(imf)} | {_fmt(ff)} | {d:+.3f} | {sup} |")
        sections.append(("Per-class F1: where the photo helps", "\n".join(rows)))
    return sections


def _fmt(v) -> str:
    if v is None:
        return "–"
    return str(v) if isinstance(v, int) else f"{v:.3f}"
