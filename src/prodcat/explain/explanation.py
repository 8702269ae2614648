"""One listing's whole explanation: its answer, the words (the photo's among them, for a model
that reads them), the photo's regions, the modalities."""

from __future__ import annotations

import json
import os
import time
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from prodcat.errors import ConfigError
from prodcat.explain.modality import modality_contributions
from prodcat.explain.text import TextExplanation, explain_text

HEATMAP_FILE = "heatmap.png"
EXPLANATION_FILE = "explanation.json"


@dataclass
class Explanation:
    """What :func:`explain_listing` returns; :meth:`to_dict` is what the CLI and API write."""

    answer: list[dict]
    text: TextExplanation | None
    image: Any  # prodcat.explain.image.ImageExplanation or None
    modalities: dict[str, Any]
    notes: list[str] = field(default_factory=list)
    seconds: float = 0.0
    heatmap_path: str | None = None
    #: The words read on the photo with their boxes and weights
    #: (:func:`prodcat.explain.photo_words.photo_words`); None for a model without OCR.
    ocr: dict[str, Any] | None = None

    def to_dict(self, n_words: int = 10) -> dict[str, Any]:
        return {
            "answer": self.answer,
            "text": self.text.to_dict(n_words) if self.text is not None else None,
            "image": ({**self.image.to_dict(), "heatmap_path": self.heatmap_path}
                      if self.image is not None else None),
            "modalities": self.modalities,
            "ocr": self.ocr,
            "notes": self.notes,
            "seconds": round(self.seconds, 4),
        }

    def save(self, out: str | os.PathLike, n_words: int = 10) -> Path:
        """Write ``explanation.json`` (and ``heatmap.png`` when the photo was explained) into
        the folder ``out``; return the JSON's path."""
        out = Path(out)
        try:
            out.mkdir(parents=True, exist_ok=True)
            if self.image is not None:
                self.heatmap_path = str(self.image.save_overlay(out / HEATMAP_FILE))
            path = out / EXPLANATION_FILE
            path.write_text(json.dumps(self.to_dict(n_words), indent=2, ensure_ascii=False) + "\n",
                            encoding="utf-8")
        except OSError as exc:
            raise ConfigError(f"cannot write the explanation into {out}: {exc.strerror or exc}") from None
        return path


def explain_listing(model, listing: Mapping[str, Any], k: int = 3, *, text_method: str = "auto",
                    image_method: str = "auto", lime_samples: int = 500, seed: int = 0,
                    **image_options) -> Explanation:
    """Explain a fitted :class:`~prodcat.model.Classifier`'s answer for one listing.

    ``listing`` has ``title``, ``description`` and ``image`` (a path, bytes, or None). The text
    explanation covers the final answer's top-``k`` classes; the photo's heat map its top class
    (or, when the image model never saw a photo of that class, the image model's own top class).
    A part that cannot be explained (no text, no usable photo, no torch for Grad-CAM…) is left
    out with a note, never an error, unless the options themselves are wrong.

    For a model that reads the photo's words (``ocr_``) they are among the explained words,
    marked as the photo's, and ``ocr`` holds them as read, with their boxes and weights.
    """
    from prodcat.explain.image import METHODS

    if image_method not in METHODS:
        raise ConfigError(f"unknown image explanation method {image_method!r}; "
                          f"choose one of {', '.join(METHODS)}")
    started = time.perf_counter()
    from prodcat.explain.photo_words import photo_words

    mods = model.predict_modalities(dict(listing))
    read = mods.get("ocr_text")
    ocr_text = str(read[0]) if read is not None else None
    answer = model.describe(mods["fused"], k)[0]
    targets = [int(np.flatnonzero(np.asarray(model.classes_).astype(str) == a["code"])[0]) for a in answer]
    notes: list[str] = []
    text = None
    if mods["has_text"][0]:
        text = explain_text(model, listing, k, method=text_method, proba=mods["text"][0],
                            lime_samples=lime_samples, seed=seed, targets=[a["code"] for a in answer],
                            ocr_text=ocr_text)
    else:
        notes.append("the listing has no text: only its photo was used")
    image = None
    if getattr(model, "image_", None) is None:
        notes.append("the model has no image side")
    elif not mods["has_image"][0]:
        notes.append("no usable photo: the answer comes from the text alone")
    else:
        image = _explain_photo(model, listing["image"], answer[0]["code"], image_method, notes, image_options)
    ocr = photo_words(model, listing.get("image"), text, ocr_text)
    if ocr is not None and not ocr["words"]:
        notes.append(f"no words were read on the photo ({ocr['status']})")
    return Explanation(answer, text, image, modality_contributions(model, mods, targets), notes,
                       time.perf_counter() - started, ocr=ocr)


def _explain_photo(model, photo, code: str, method: str, notes: list[str], options: dict):
    from prodcat.explain.image import explain_image
    from prodcat.image.errors import ImageError

    image_classes = np.asarray(model.image_.classes_).astype(str)
    head_classes = set(image_classes[getattr(model.image_, "head_columns_", np.arange(len(image_classes)))])
    target = code
    if code not in head_classes:
        target = None
        notes.append(f"the image model saw no photo of {code}: the heat map shows its own top class")
    try:
        return explain_image(model, photo, target, method=method, **options)
    except ImageError as exc:  # an unusable photo or no PyTorch for Grad-CAM: the rest stands
        notes.append(f"the photo could not be explained: {exc}")
        return None
