"""The model behind the API and the web app: loaded once, answering lists of listings.

:class:`ModelService` wraps a bundle's Classifier with what both front ends need: a model id,
the category list, the threshold decision and the per-modality answers. It is synchronous and
thread-safe for prediction (the fitted estimators are only read); the API runs it on an inference
thread through :class:`~prodcat.serving.batching.MicroBatcher`, the web app calls it directly.
"""

from __future__ import annotations

import logging
import threading
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

log = logging.getLogger("prodcat.serving")


@dataclass(frozen=True)
class Query:
    """One listing to classify: the Classifier's fields plus how many categories to return."""

    title: str
    description: str = ""
    image: str | None = None  # a path to the (checked) photo, or None
    top_k: int = 3

    def listing(self) -> dict[str, Any]:
        return {"title": self.title, "description": self.description, "image": self.image}


class _Parts(dict):
    """Modality name → probabilities (or None), plus which rows had a usable photo."""

    has_image: np.ndarray
    ocr_text: list[str] | None = None  # the words read on each photo, for a model that reads them


class ModelService:
    """A loaded bundle ready to answer; build it with :meth:`load`."""

    def __init__(self, model, manifest: dict, model_dir: str | Path | None = None):
        self.model = model
        self.manifest = manifest
        self.model_dir = Path(model_dir) if model_dir is not None else None
        self.threshold = float(model.threshold_)
        self.classes = [str(c) for c in model.classes_]
        self.categories = [{"code": str(c), "name": model.taxonomy_.name(c),
                            "parent": model.taxonomy_.parent(c)} for c in model.classes_]
        # The Classifier answers each modality on its own through predict_modalities (a model
        # without it is text-only: its answer *is* the text answer).
        self.has_modalities = callable(getattr(model, "predict_modalities", None))
        # Whether photos count: a Classifier trained without usable photos has no image model.
        self.has_image_model = self.has_modalities and getattr(model, "image_", "unknown") is not None
        self._no_upload_cache(model)
        digest = str(manifest.get("parts", {}).get("classifier", {}).get("sha256", ""))[:12]
        name = self.model_dir.name if self.model_dir is not None else "model"
        self.model_id = f"{name}-{digest}" if digest else name

    @classmethod
    def load(cls, model_dir: str | Path) -> ModelService:
        from prodcat.model.bundle import load_bundle

        model, manifest = load_bundle(model_dir)
        service = cls(model, manifest, model_dir)
        service.warm_up()
        return service

    def warm_up(self) -> None:
        """One prediction at start-up, so the first seller does not pay for lazy initialisation;
        the photo explainer (PyTorch for Grad-CAM: seconds) is prepared in the background."""
        self.predict([Query(title="warm up")])
        if getattr(self.model, "ocr_", None):  # the OCR engine's networks load in seconds
            from prodcat.model.ocr_channel import engine_for

            engine_for(self.model.ocr_["engine"]).load()
        if self.has_image_model:
            threading.Thread(target=self._prepare_explainer, name="prodcat-explainer-warm-up",
                             daemon=True).start()

    def _prepare_explainer(self) -> None:
        try:
            from prodcat.explain.image import prepare_image_explainer

            log.info("photo explanations: %s", prepare_image_explainer(self.model))
        except Exception:  # explanations then pay the set-up on first use, or note why they can't
            log.warning("could not prepare photo explanations", exc_info=True)

    @staticmethod
    def _no_upload_cache(model) -> None:
        """Sellers' photos are seen once: caching their embeddings on disk would only grow the
        cache without bound (and keep data the API has no reason to keep)."""
        image = getattr(model, "image_", None)
        try:
            if image is not None and "cache" in image.get_params(deep=False):
                image.set_params(cache=False)
        except Exception:  # an image model without sklearn parameters: leave it as it is
            log.debug("could not switch off the image embedding cache", exc_info=True)
        if getattr(model, "ocr_", None):
            model.ocr_cache_ = False  # nor the words read on them

    @property
    def decode_size(self) -> int:
        """The long side uploaded photos are decoded at: what the image encoder decodes to
        anyway (so its own decode of the stored photo changes nothing), or a small default
        for a model that only checks photos."""
        from prodcat.serving.images import DEFAULT_DECODE_SIZE

        image = getattr(self.model, "image_", None) if self.has_image_model else None
        try:
            encoder = getattr(image, "encoder_", None) or image._encoder()
            return int(encoder.config.decode_size)
        except Exception:  # no image model, or one without an encoder config
            return DEFAULT_DECODE_SIZE

    @property
    def modalities(self) -> list[str]:
        reads_words = ["ocr"] if getattr(self.model, "ocr_", None) else []
        return (["text", "image"] if self.has_image_model else ["text"]) + reads_words

    def predict(self, queries: Sequence[Query]) -> list[dict[str, Any]]:
        """Top-k, per-modality top-k and the review decision for each query, in order."""
        if not queries:
            return []
        listings = [q.listing() for q in queries]
        k_max = max(q.top_k for q in queries)
        parts, proba = self._modalities(listings, len(queries))
        tops = self.model.describe(proba, k_max)
        out = []
        for i, q in enumerate(queries):
            top = tops[i][: q.top_k]
            best = float(proba[i].max()) if proba.shape[1] else 0.0
            modal: dict[str, list[dict] | None] = {"text": top} if parts is None else {}
            for name, p in (parts or {}).items():
                # No usable photo: the image model would only repeat the base rates.
                usable = p is not None and (name != "image" or parts.has_image[i]) and (
                    name != "ocr" or bool(parts.ocr_text[i]))
                modal[name] = self.model.describe(p[i:i + 1], q.top_k)[0] if usable else None
            # Decided on the unrounded probability, exactly as Classifier.predict_frame does.
            needs_review = best < self.threshold
            out.append({"top_k": top, "modalities": modal, "needs_review": needs_review,
                        "decision": "needs review" if needs_review else "automatic",
                        "threshold": self.threshold,
                        **({"ocr_text": parts.ocr_text[i]} if parts is not None and parts.ocr_text
                           is not None else {})})
        return out

    def predict_each(self, queries: Sequence[Query]) -> list[dict[str, Any] | Exception]:
        """Like :meth:`predict`, but one failing listing does not fail the others in its batch."""
        try:
            return list(self.predict(queries))
        except Exception:
            if len(queries) == 1:
                raise
        results: list[dict[str, Any] | Exception] = []
        for q in queries:
            try:
                results.append(self.predict([q])[0])
            except Exception as exc:  # reported to that request alone
                log.exception("prediction failed for one listing")
                results.append(exc)
        return results

    def explain(self, query: Query, *, text_method: str = "auto", image_method: str = "auto",
                lime_samples: int = 300, heatmap: bool = True) -> dict[str, Any]:
        """The explanation of one listing's answer (:func:`prodcat.explain.explain_listing`),
        with the heat-map overlay as PNG bytes under ``heatmap_png`` when asked and available."""
        import io

        from prodcat.explain import explain_listing

        explanation = explain_listing(self.model, query.listing(), query.top_k, text_method=text_method,
                                      image_method=image_method, lime_samples=lime_samples)
        out = explanation.to_dict()
        png = None
        if heatmap and explanation.image is not None:
            buffer = io.BytesIO()
            explanation.image.overlay(max_side=512).save(buffer, format="PNG")
            png = buffer.getvalue()
        out["heatmap_png"] = png
        return out

    def _modalities(self, listings: list[dict], n: int) -> tuple[_Parts | None, np.ndarray]:
        """Each modality's probabilities (None for a text-only model) and the overall answer,
        from one call to the model where it can give both."""
        if not self.has_modalities:
            return None, np.asarray(self.model.predict_proba(listings))
        raw = dict(self.model.predict_modalities(listings))
        fused = raw.get("fused")
        proba = np.asarray(fused if fused is not None else self.model.predict_proba(listings), dtype=float)
        parts = _Parts()
        for name in ("text", "image", "ocr"):
            p = raw.get(name)
            if p is None:
                continue
            arr = np.asarray(p, dtype=float)
            if arr.shape != (n, len(self.classes)):
                log.warning("predict_modalities()[%r] has shape %s, expected %s; left out",
                            name, arr.shape, (n, len(self.classes)))
                continue
            parts[name] = arr
        if "image" in parts or self.has_image_model:
            parts.setdefault("image", None)
        texts = raw.get("ocr_text")
        if texts is not None and len(texts) == n:
            parts.ocr_text = [str(t) for t in texts]
        else:
            parts.pop("ocr", None)
        mask = raw.get("has_image")
        parts.has_image = (np.asarray(mask, dtype=bool) if mask is not None and np.shape(mask) == (n,)
                           else np.array([x.get("image") is not None for x in listings]))
        return parts, proba

    def summary(self) -> dict[str, Any]:
        """What ``GET /v1/model`` and the web app's model page show: the manifest without the
        bulky parts (taxonomy, parameters, per-class counts)."""
        m = self.manifest
        training = dict(m.get("training") or {})
        for bulky in ("class_counts", "read_report"):
            training.pop(bulky, None)
        return {
            "model_id": self.model_id,
            "created_at": m.get("created_at"),
            "format_version": m.get("format_version"),
            "versions": m.get("versions", {}),
            "n_classes": len(self.classes),
            "threshold": self.threshold,
            "modalities": self.modalities,
            "training": training,
            "metrics": m.get("metrics", {}),
            "dropped_classes": m.get("dropped_classes", {}),
            "notes": m.get("notes", []),
        }
