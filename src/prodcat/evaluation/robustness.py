"""How much a fitted multimodal model's scores fall when its inputs get worse.

Sellers upload sideways phone pictures, blurry or grainy shots and photos re-compressed by
every platform they passed through, and many leave the description empty. This module re-scores
a fitted :class:`~prodcat.model.Classifier` (fused, text-only and image-only, with the keys of
:func:`~prodcat.evaluation.modalities.modality_metrics`) under each such condition:

* ``rotate90``: the photo turned 90° (counter-clockwise);
* ``blur``: Gaussian blur, radius 3 px;
* ``noise``: additive Gaussian noise, sigma 25 (on 0–255 values);
* ``jpeg20``: re-saved as JPEG at quality 20;
* ``no_description``: every description removed (the photo and title kept).

How: each listing's photo is decoded as the encoder decodes it (upright, RGB, long side at least
the encoder's decode size), perturbed with PIL/NumPy and written to a temporary folder (PNG, so
the named perturbation is the only change; JPEG for ``jpeg20``); the listings are then scored
with the ``image`` column pointing at the copies. A perturbed photo has new bytes, so it is
encoded again (the embedding cache keys by content): the work is bounded by ``max_listings``
photos per condition. The copies are deterministic for a seed (noise is seeded per listing), so
a re-run finds their embeddings in the model's cache.

Everything is scored on the same listings: those with a usable photo (a seeded sample of
``max_listings`` of them when there are more), since the photo perturbations change nothing on
the others. The ``clean`` condition is the reference.
"""

from __future__ import annotations

import sys
import tempfile
import time
from collections.abc import Callable, Sequence
from concurrent.futures import ThreadPoolExecutor
from functools import partial
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
from PIL import Image, ImageFilter
from tqdm.auto import tqdm

from prodcat.errors import ConfigError, DataError
from prodcat.evaluation.metrics import compute_metrics

#: Photos scored per condition unless told otherwise: each perturbed photo costs one encoder run
#: (about 25 ms of CPU), so 2,000 photos × 4 perturbations is a few minutes on 2 cores.
DEFAULT_MAX_LISTINGS = 2000
BLUR_RADIUS = 3.0
NOISE_SIGMA = 25.0
JPEG_QUALITY = 20

#: Metric keys kept per modality: the headline ones (per-class tables and confusion matrices of
#: every condition would make metrics.json many times larger for little use).
KEYS = ("n", "weighted_f1", "macro_f1", "accuracy", "top3_accuracy", "ece", "log_loss")

# Rows per predict call: bounds the perturbed copies on disk and keeps the progress bar moving.
_CHUNK = 256


def _rotate90(image: Image.Image, rng: np.random.Generator) -> Image.Image:
    return image.transpose(Image.Transpose.ROTATE_90)


def _blur(image: Image.Image, rng: np.random.Generator) -> Image.Image:
    return image.filter(ImageFilter.GaussianBlur(radius=BLUR_RADIUS))


def _noise(image: Image.Image, rng: np.random.Generator) -> Image.Image:
    pixels = np.asarray(image, dtype=np.float32)
    noisy = pixels + rng.normal(0.0, NOISE_SIGMA, pixels.shape).astype(np.float32)
    return Image.fromarray(np.clip(np.rint(noisy), 0, 255).astype(np.uint8), "RGB")


def _identity(image: Image.Image, rng: np.random.Generator) -> Image.Image:
    return image  # jpeg20: the change is the re-compression itself


#: name → (what it does, pixel transform, file format the copy is saved in).
PERTURBATIONS: dict[str, tuple[str, Callable[[Image.Image, np.random.Generator], Image.Image], str]] = {
    "rotate90": ("photo rotated 90°", _rotate90, "PNG"),
    "blur": (f"Gaussian blur, radius {BLUR_RADIUS:g} px", _blur, "PNG"),
    "noise": (f"Gaussian noise, sigma {NOISE_SIGMA:g}", _noise, "PNG"),
    "jpeg20": (f"re-saved as JPEG quality {JPEG_QUALITY}", _identity, "JPEG"),
}
NO_DESCRIPTION = "no_description"
CLEAN = "clean"
_LABELS = {CLEAN: "clean (as given)", NO_DESCRIPTION: "descriptions removed",
           **{name: f"{name}: {desc}" for name, (desc, _, _) in PERTURBATIONS.items()}}


def _write_perturbed(source: object, name: str, dest: Path, seed: int, row: int,
                     decode_size: int, max_pixels: int) -> str | None:
    """Write the perturbed copy of one photo; its path, or None when the photo does not load."""
    from prodcat.image import ImageError, load_image

    _, transform, fmt = PERTURBATIONS[name]
    try:
        # Decoded as the encoder decodes it, so a radius in pixels means the same thing for a
        # 500 px Rakuten photo and a 2,000 px Flipkart one.
        image = load_image(source, target_size=decode_size, max_pixels=max_pixels)
    except ImageError:
        return None
    # One generator per (seed, listing): the copies do not depend on thread scheduling or on
    # which other listings were sampled.
    rng = np.random.default_rng([seed, row, sorted(PERTURBATIONS).index(name)])
    out = transform(image, rng)
    if fmt == "JPEG":
        path = dest.with_suffix(".jpg")
        out.save(path, format="JPEG", quality=JPEG_QUALITY)
    else:
        path = dest.with_suffix(".png")
        out.save(path, format="PNG", compress_level=1)  # lossless; level 1 is fast to write
    return str(path)


def _scores(y: np.ndarray, proba: np.ndarray, classes: list[str], taxonomy) -> dict[str, Any]:
    m = compute_metrics(y, proba, classes, taxonomy)
    return {k: m[k] for k in KEYS}


def robustness_metrics(
    model,
    X: pd.DataFrame,
    y: Sequence[object],
    *,
    perturbations: Sequence[str] = ("rotate90", "blur", "noise", "jpeg20"),
    drop_descriptions: bool = True,
    seed: int = 0,
    max_listings: int | None = DEFAULT_MAX_LISTINGS,
    taxonomy=None,
    progress: bool = True,
    workers: int | None = None,
) -> dict[str, Any]:
    """Fused, text and image scores of a fitted ``model`` under each input perturbation.

    Parameters
    ----------
    model
        A fitted :class:`~prodcat.model.Classifier` with an image model.
    X, y
        Labelled listings (a Catalog frame) and their codes.
    perturbations
        Names from :data:`PERTURBATIONS`, each applied to every scored photo.
    drop_descriptions
        Also score with every description removed (the text side's robustness).
    seed
        Seeds the listing sample and the noise.
    max_listings
        At most this many listings (with a photo) are scored; None scores them all.
    taxonomy
        Category names for the metrics (optional).

    Returns
    -------
    dict
        ``conditions``: ``{condition: {"fused", "text", "image": metrics (keys :data:`KEYS`),
        "changed": share of listings whose top-1 answer differs from the clean one, per
        modality, "n_failed": photos that could not be perturbed}}`` with ``clean`` first; plus
        the counts, the sample and the settings.
    """
    from prodcat.image.encoders import usable_cpus
    from prodcat.model.classifier import as_listings

    started = time.perf_counter()
    image_model = getattr(model, "image_", None)
    if getattr(model, "text_", None) is None:
        raise ConfigError("robustness needs a fitted Classifier")
    if image_model is None:
        raise ConfigError("robustness needs a model with an image modality (this one is text only)")
    unknown = [p for p in perturbations if p not in PERTURBATIONS]
    if unknown:
        raise ConfigError(f"unknown perturbation(s) {', '.join(map(repr, unknown))}; choose from "
                          f"{', '.join(PERTURBATIONS)}")
    if max_listings is not None and int(max_listings) < 1:
        raise ConfigError("max_listings must be at least 1 (or None for all)")
    X = as_listings(X).reset_index(drop=True)
    y = np.asarray(y, dtype=object).astype(str)
    if len(y) != len(X):
        raise DataError(f"{len(X)} listings but {len(y)} labels")
    classes = [str(c) for c in model.classes_]

    # Candidates: listings that name a photo. Which of them decode is learnt from the clean pass.
    candidates = np.flatnonzero(X["image"].notna().to_numpy())
    sampled = max_listings is not None and candidates.size > int(max_listings)
    if sampled:
        rng = np.random.default_rng(seed)
        candidates = np.sort(rng.choice(candidates, size=int(max_listings), replace=False))
    result: dict[str, Any] = {
        "n_listings": int(len(X)), "n_with_photo_path": int(X["image"].notna().sum()),
        "sampled": bool(sampled), "max_listings": max_listings, "seed": int(seed),
        "settings": {"blur_radius": BLUR_RADIUS, "noise_sigma": NOISE_SIGMA,
                     "jpeg_quality": JPEG_QUALITY},
        "perturbations": {p: PERTURBATIONS[p][0] for p in perturbations},
        "conditions": {},
    }
    if candidates.size == 0:
        result.update(n=0, skipped="no listing has a photo")
        return result

    encoder = image_model._encoder()
    decode_size, max_pixels = encoder.config.decode_size, encoder.max_pixels
    conditions = [CLEAN, *perturbations] + ([NO_DESCRIPTION] if drop_descriptions else [])
    base = X.iloc[candidates].reset_index(drop=True)
    rows_in_data = candidates  # the listing's position in X: seeds its noise
    n_threads = workers or max(2, usable_cpus())
    probas: dict[str, dict[str, np.ndarray]] = {}
    failed: dict[str, int] = {}
    keep: np.ndarray | None = None

    bar = tqdm(total=len(conditions) * len(base), desc="robustness", unit="listing",
               disable=not progress, file=sys.stderr)
    try:
        with tempfile.TemporaryDirectory(prefix="prodcat-robustness-") as tmp, \
                ThreadPoolExecutor(max_workers=n_threads, thread_name_prefix="prodcat-perturb") as pool:
            for condition in conditions:
                bar.set_postfix_str(condition)
                if keep is not None:  # after the clean pass: only listings whose photo is usable
                    frame, data_rows = base[keep].reset_index(drop=True), rows_in_data[keep]
                else:
                    frame, data_rows = base, rows_in_data
                if condition == NO_DESCRIPTION:
                    frame = frame.assign(description="")
                parts: list[dict[str, np.ndarray]] = []
                failed[condition] = 0
                folder = Path(tmp) / condition
                folder.mkdir()
                for start in range(0, len(frame), _CHUNK):
                    chunk = frame.iloc[start:start + _CHUNK].reset_index(drop=True)
                    if condition in PERTURBATIONS:
                        sources = chunk["image"].tolist()
                        rows = data_rows[start:start + _CHUNK]
                        write = partial(_write_perturbed, name=condition, seed=seed,
                                        decode_size=decode_size, max_pixels=max_pixels)
                        paths = list(pool.map(
                            lambda source, row, write=write, folder=folder: write(
                                source, dest=folder / str(row), row=int(row)),
                            sources, rows))
                        failed[condition] += sum(p is None for p in paths)
                        chunk = chunk.assign(image=pd.Series(paths, dtype=object))
                    parts.append(model.predict_modalities(chunk))
                    if condition in PERTURBATIONS:
                        for p in paths:  # disk use stays at one chunk of copies
                            if p is not None:
                                Path(p).unlink(missing_ok=True)
                    bar.update(len(chunk))
                merged = {k: np.concatenate([p[k] for p in parts]) for k in ("fused", "text", "image",
                                                                              "has_image")}
                if keep is None:
                    keep = merged["has_image"].copy()
                    bar.total -= (len(conditions) - 1) * int((~keep).sum())
                    bar.refresh()
                    merged = {k: v[keep] for k, v in merged.items()}
                probas[condition] = merged
    finally:
        bar.close()

    y_rows = y[candidates][keep]
    result["n"] = int(keep.sum())
    result["n_photo_unusable"] = int((~keep).sum())
    if result["n"] == 0:
        result["skipped"] = "no listing has a usable photo"
        return result
    clean = probas[CLEAN]
    for condition in conditions:
        p = probas[condition]
        entry = {m: _scores(y_rows, p[m], classes, taxonomy) for m in ("fused", "text", "image")}
        entry["changed"] = {m: float((p[m].argmax(axis=1) != clean[m].argmax(axis=1)).mean())
                            for m in ("fused", "text", "image")}
        entry["n_failed"] = failed[condition]
        # A copy that would not load, or a perturbed photo the encoder refused, leaves the
        # listing without a photo: counted here, since those rows fall back to the text answer.
        entry["n_without_photo"] = int((~p["has_image"]).sum())
        result["conditions"][condition] = entry
    result["seconds"] = round(time.perf_counter() - started, 2)
    return result


def robustness_section(result: dict[str, Any]) -> tuple[str, str]:
    """``("Robustness", markdown)``: per condition, fused / text / image weighted F1 and accuracy."""
    heading = "Robustness"
    if result.get("skipped") or not result.get("conditions"):
        return heading, f"Not measured: {result.get('skipped', 'no conditions were scored')}."
    sample = (f"a seeded sample of {result['n']:,} of the listings with a photo"
              if result.get("sampled") else f"the {result['n']:,} listings with a usable photo")
    intro = (f"The same model re-scored on {sample} with each photo perturbed (then encoded "
             "again), or with every description removed. Weighted F1 / accuracy per modality; "
             "Δ is fused weighted F1 minus the clean one; *changed* is the share of listings whose "
             "top-1 answer (fused, image) differs from the clean one.")
    header = ["Condition", "Fused F1", "Fused acc.", "Text F1", "Text acc.", "Image F1",
              "Image acc.", "Δ fused F1", "Fused changed", "Image changed"]
    lines = ["| " + " | ".join(header) + " |", "| --- |" + " ---: |" * (len(header) - 1)]
    clean_f1 = result["conditions"][CLEAN]["fused"]["weighted_f1"]
    for name, entry in result["conditions"].items():
        f, t, i = entry["fused"], entry["text"], entry["image"]
        delta = "–" if name == CLEAN else f"{f['weighted_f1'] - clean_f1:+.3f}"
        lines.append(f"| {_LABELS.get(name, name)} | {f['weighted_f1']:.3f} | {f['accuracy']:.3f} | "
                     f"{t['weighted_f1']:.3f} | {t['accuracy']:.3f} | {i['weighted_f1']:.3f} | "
                     f"{i['accuracy']:.3f} | {delta} | {100 * entry['changed']['fused']:.1f}% | "
                     f"{100 * entry['changed']['image']:.1f}% |")
    failed = sum(e["n_failed"] for e in result["conditions"].values())
    notes = []
    if failed:
        notes.append(f"{failed} perturbed cop{'y' if failed == 1 else 'ies'} could not be made; those "
                     "listings were scored without a photo.")
    return heading, "\n\n".join([intro, "\n".join(lines), *notes])
