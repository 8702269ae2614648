"""How much the text and the photo each moved the final probabilities, and whether they agreed."""

from __future__ import annotations

from typing import Any

import numpy as np

from prodcat.fusion.fusers import LateFusion, _log


def modality_contributions(model, modalities: dict[str, Any], targets: list[int], row: int = 0) -> dict[str, Any]:
    """For one listing (``row`` of :meth:`Classifier.predict_modalities`) and classes ``targets``.

    Per class: the fused, text-only and image-only probabilities, and how far each modality moved
    the answer — ``photo_moved`` is fused minus text-only (what adding the photo changed),
    ``text_moved`` fused minus image-only. With late fusion (a log-linear pool) the fused
    log-odds of a class against the average class split exactly into a text and an image part,
    reported as ``log_odds``. ``decided_by`` names the modality whose own top class is the final
    one ("both" when they agree).
    """
    classes = np.asarray(model.classes_).astype(str)
    fused = modalities["fused"][row]
    p_text = modalities["text"][row]
    has_image = bool(modalities["has_image"][row])
    has_text = bool(modalities["has_text"][row])
    p_image = modalities["image"][row] if modalities.get("image") is not None and has_image else None
    out: dict[str, Any] = {"has_text": has_text, "has_image": has_image,
                           "fusion": (getattr(model, "fusion_", None) or {}).get("method")}
    top = int(np.argmax(fused))
    text_top = int(np.argmax(p_text)) if has_text else None
    image_top = int(np.argmax(p_image)) if p_image is not None else None
    out["text_top"] = str(classes[text_top]) if text_top is not None else None
    out["image_top"] = str(classes[image_top]) if image_top is not None else None
    out["agree"] = (text_top == image_top) if text_top is not None and image_top is not None else None
    if text_top is not None and image_top is not None:
        out["decided_by"] = ("both" if text_top == image_top == top else
                             "text" if text_top == top else "image" if image_top == top else "fusion")
    else:
        out["decided_by"] = "text" if has_text else "image" if has_image else None
    fuser = getattr(model, "fuser_", None)
    late = isinstance(fuser, LateFusion) and p_image is not None and has_text
    if late:
        out["weights"] = {"text": float(fuser.weights_[0]), "image": float(fuser.weights_[1])}
        centred = [w * (lp - lp.mean()) for w, lp in zip(fuser.weights_, (_log(p_text), _log(p_image)), strict=True)]
    per_class = []
    for t in targets:
        entry = {"code": str(classes[t]), "fused": float(fused[t]), "text": float(p_text[t]) if has_text else None,
                 "image": float(p_image[t]) if p_image is not None else None}
        if has_text and p_image is not None:
            entry["photo_moved"] = float(fused[t] - p_text[t])
            entry["text_moved"] = float(fused[t] - p_image[t])
        if late:
            entry["log_odds"] = {"text": float(centred[0][t]), "image": float(centred[1][t])}
        per_class.append(entry)
    out["classes"] = per_class
    return out
