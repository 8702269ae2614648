"""Stratified cross-validation that returns out-of-fold probabilities for honest metrics."""

from __future__ import annotations

import time
import warnings
from dataclasses import dataclass

import numpy as np
import pandas as pd
from sklearn.base import clone
from sklearn.model_selection import StratifiedKFold
from tqdm.auto import tqdm

from prodcat.errors import DataError
from prodcat.evaluation.layouts import layout_frames


@dataclass
class CrossValResult:
    classes: np.ndarray
    proba: np.ndarray  # out-of-fold, columns in ``classes`` order
    y: np.ndarray
    folds: np.ndarray  # fold number of each row
    fit_seconds: list[float]
    #: Out-of-fold per-modality probabilities when the estimator has ``predict_modalities``:
    #: ``text``, ``image`` and the ``has_image`` mask (image rows without a photo hold the prior);
    #: with an OCR channel also ``ocr`` and ``has_ocr`` (words were read on the photo).
    modalities: dict[str, np.ndarray] | None = None
    #: Each row's automation threshold: that of the fold model that predicted it (None when the
    #: estimator has no ``threshold_``).
    thresholds: np.ndarray | None = None
    #: With ``layouts=True``: out-of-fold probabilities of the same listings in every field
    #: layout (:mod:`prodcat.evaluation.layouts`), by layout name.
    layouts: dict[str, np.ndarray] | None = None
    #: Per fold, the fusion its model chose on its own training fold and every candidate's
    #: out-of-fold log loss there (``fusion_``'s ``method`` and ``oof_log_loss``; None for a model
    #: without photos).
    fusions: list[dict | None] | None = None


def cross_val_proba(estimator, X: pd.DataFrame, y, *, folds: int = 5, seed: int = 0,
                    progress: bool = True, fit_params: dict | None = None,
                    layouts: bool = False) -> CrossValResult:
    """Fit ``estimator`` on k-1 folds and predict the held-out fold, k times.

    Each fold's model may know fewer classes than the whole set (a rare class can be absent from
    its training part); its columns are placed into the global class order and the rest are 0.
    """
    y = np.asarray(y, dtype=object).astype(str)
    classes, counts = np.unique(y, return_counts=True)
    if len(classes) < 2:
        raise DataError("cross-validation needs at least two categories")
    if counts.max() < folds:
        raise DataError(f"{folds}-fold cross-validation needs a class with at least {folds} listings")
    skf = StratifiedKFold(n_splits=folds, shuffle=True, random_state=seed)
    proba = np.zeros((len(y), len(classes)), dtype=np.float64)
    fold_of = np.zeros(len(y), dtype=int)
    seconds = []
    modalities = {"text": np.zeros_like(proba), "image": np.zeros_like(proba),
                  "has_image": np.zeros(len(y), dtype=bool)}
    any_image = seen_image = False
    thresholds = np.full(len(y), np.nan)
    layout_proba = {}
    fusions: list[dict | None] = []
    # Stratification warns about classes rarer than the fold count; they are handled below.
    with warnings.catch_warnings():
        warnings.filterwarnings("ignore", message="The least populated class")
        splits = list(skf.split(np.zeros(len(y)), y))
    for i, (tr, te) in enumerate(tqdm(splits, desc="cross-validation", unit="fold", disable=not progress)):
        model = clone(estimator)
        t0 = time.perf_counter()
        with warnings.catch_warnings():
            warnings.filterwarnings("ignore", message="left out")
            model.fit(X.iloc[tr].reset_index(drop=True), y[tr], **(fit_params or {}))
        seconds.append(time.perf_counter() - t0)
        cols = np.searchsorted(classes, np.asarray(model.classes_).astype(str))
        if hasattr(model, "predict_modalities"):
            parts = model.predict_modalities(X.iloc[te].reset_index(drop=True))
            modalities["text"][np.ix_(te, cols)] = parts["text"]
            # A fold whose image model was left out (too few photos) saw no photo: its rows
            # count as listings without one, never as zero probabilities.
            if parts.get("image") is not None:
                any_image = seen_image = True
                modalities["image"][np.ix_(te, cols)] = parts["image"]
                modalities["has_image"][te] = parts["has_image"]
            if parts.get("ocr") is not None:  # a model reading the photos' words (OCR)
                any_image = True
                modalities.setdefault("ocr", np.zeros_like(proba))[np.ix_(te, cols)] = parts["ocr"]
                modalities.setdefault("has_ocr", np.zeros(len(y), bool))[te] = [
                    bool(t) for t in parts["ocr_text"]]
            p = parts["fused"]
        else:
            p = model.predict_proba(X.iloc[te].reset_index(drop=True))
        proba[np.ix_(te, cols)] = p
        fold_of[te] = i
        thresholds[te] = getattr(model, "threshold_", np.nan)
        fusion = getattr(model, "fusion_", None)
        fusions.append({"method": fusion["method"], "oof_log_loss": dict(fusion["oof_log_loss"])}
                       if fusion else None)
        if layouts:
            for name, frame in layout_frames(X.iloc[te].reset_index(drop=True)).items():
                out = layout_proba.setdefault(name, np.zeros_like(proba))
                out[np.ix_(te, cols)] = p if name == "given" else model.predict_proba(frame)
    if any_image and not seen_image:  # OCR without an image model
        modalities["image"] = None
    return CrossValResult(classes, proba, y, fold_of, seconds, modalities if any_image else None,
                          None if np.isnan(thresholds).any() else thresholds,
                          layout_proba or None, fusions if any(fusions) else None)
