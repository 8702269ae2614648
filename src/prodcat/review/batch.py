"""Queueing a whole catalogue's unsure answers (``prodcat predict --data ... --review-db``)."""

from __future__ import annotations

from pathlib import Path

import numpy as np

from prodcat.review.store import NewItem, ReviewStore


def bundle_model_id(model_dir: str | Path, manifest: dict) -> str:
    """The id the API gives the same bundle (folder name + classifier digest), so items queued
    by a batch job and by the server name their model alike."""
    digest = str(manifest.get("parts", {}).get("classifier", {}).get("sha256", ""))[:12]
    name = Path(model_dir).name
    return f"{name}-{digest}" if digest else name


def review_reasons(model, parts: dict, k: int = 3) -> tuple[list[str | None], list[list[dict]]]:
    """Each row's reason to be reviewed (None: filed automatically) and its top-k, from the
    output of ``Classifier.predict_modalities``: unsure first, then text and photo disagreeing."""
    fused = np.asarray(parts["fused"])
    tops = model.describe(fused, k)
    unsure = fused.max(axis=1) < model.threshold_
    reasons: list[str | None] = ["low_confidence" if u else None for u in unsure]
    image = parts.get("image")
    if image is not None:
        has = np.asarray(parts.get("has_image"), dtype=bool)
        both = has & np.asarray(parts.get("has_text", np.ones(len(fused), bool)), dtype=bool)
        differ = both & (np.argmax(parts["text"], axis=1) != np.argmax(image, axis=1))
        reasons = [r or ("modalities_disagree" if d else None) for r, d in zip(reasons, differ, strict=True)]
    return reasons, tops


def _photo(path) -> bytes | None:
    if not isinstance(path, str) or not path:
        return None
    try:
        return Path(path).read_bytes()
    except OSError:
        return None


def queue_catalog(store: ReviewStore, model, catalog, *, model_id: str | None = None, k: int = 3,
                  chunk: int = 2048, source: str = "batch") -> dict[str, int]:
    """Predict ``catalog`` and queue the rows that need a person, one transaction per chunk; a
    listing already waiting for the same reason is not queued again (a job run twice)."""
    X, frame = catalog.X, catalog.frame
    counts = {"rows": len(X), "low_confidence": 0, "modalities_disagree": 0}
    for s in range(0, len(X), chunk):
        part = X.iloc[s:s + chunk]
        reasons, tops = review_reasons(model, model.predict_modalities(part), k)
        new = []
        for j, (reason, top) in enumerate(zip(reasons, tops, strict=True)):
            if reason is None:
                continue
            row = frame.iloc[s + j]
            counts[reason] += 1
            new.append(NewItem(reason, title=str(row.get("title") or ""),
                               description=str(row.get("description") or ""),
                               listing_id=str(row["id"]), photo=_photo(row.get("image")),
                               model_id=model_id, top_k=top, source=source))
        if new:
            store.add(new, skip_open_duplicates=True)
    counts["queued"] = counts["low_confidence"] + counts["modalities_disagree"]
    return counts
