"""The image model: pretrained embeddings, standardised, and a calibrated head.

It reads the ``image`` column of a Catalog frame (a path, or None). Listings without a usable
photo are common (the Rakuten sample has photos for 338 of 2,457 listings), so:

* ``fit`` learns from the rows whose photo loads, and records the class prior of *all* rows;
* ``predict_proba`` answers for every row: the head's probabilities where the photo loads, the
  training class prior elsewhere (no evidence, so no opinion beyond the base rates);
* ``has_image`` says which rows had a usable photo, so a fusion can weight the image model
  only where it saw something.
"""

from __future__ import annotations

import copy
import os
import warnings
from collections.abc import Sequence

import numpy as np
import pandas as pd
from sklearn.base import BaseEstimator, ClassifierMixin
from sklearn.preprocessing import StandardScaler
from sklearn.utils.validation import check_is_fitted

from prodcat.embedding_cache import EmbeddingCache as BaseEmbeddingCache
from prodcat.errors import DataError
from prodcat.heads import CALIBRATIONS
from prodcat.image.cache import EmbeddingCache
from prodcat.image.encoders import DEFAULT_ENCODER, EncodedImages, ImageEncoder, create_encoder
from prodcat.image.heads import IMAGE_HEADS, create_image_head
from prodcat.params import Integral, Interval, Real, StrOptions, check_params


def image_column(X) -> list[object]:
    """The photo of each row: from a frame's ``image`` column, a Series, or a list of paths."""
    if hasattr(X, "frame") and isinstance(X.frame, pd.DataFrame):  # a Catalog
        X = X.frame
    if isinstance(X, pd.DataFrame):
        if "image" not in X.columns:
            raise DataError("the image model reads an 'image' column (a path or None per row); "
                            f"the data has {list(X.columns)[:20]}")
        values = X["image"]
    elif isinstance(X, pd.Series):
        values = X
    elif isinstance(X, (str, os.PathLike, bytes)):
        raise DataError("expected one image per row (a frame, a Series or a list), got a single value")
    else:
        values = pd.Series(list(X), dtype=object)
    return [None if v is None or (isinstance(v, float) and v != v) else v for v in values]


class ImageClassifier(ClassifierMixin, BaseEstimator):
    """Catalog frame (``image``) → calibrated class probabilities from the photo.

    Parameters
    ----------
    encoder : str
        A registered encoder (:func:`~prodcat.image.encoders.list_encoders`).
    head : str
        ``"logistic"`` (default) or ``"mlp"`` (:data:`~prodcat.image.heads.IMAGE_HEADS`).
    C : float or None
        Inverse regularisation strength; None takes the head's default.
    cache : bool, str or EmbeddingCache
        ``True``: the default on-disk embedding cache; a path: a cache there; ``False``: none.
        With a cache, refitting or cross-validating never encodes a photo twice.
    batch_size, n_workers
        Encoder batch size and decoding threads (None: one per usable CPU, at least 2).
    calibration, calibration_cv
        As for the text model; ``calibration_cv`` is lowered when a class has fewer photos.
    """

    _parameter_constraints = {
        "encoder": "no_validation",  # a registered name or an ImageEncoder
        "head": [str],
        "C": [Interval(Real, 0, None, closed="neither"), None],
        "class_weight": [StrOptions({"balanced"}), dict, None],
        "calibration": [StrOptions(set(CALIBRATIONS))],
        "calibration_cv": [Interval(Integral, 2, None, closed="left")],
        "cache": "no_validation",
        "batch_size": [Interval(Integral, 1, None, closed="left")],
        "n_workers": [Interval(Integral, 1, None, closed="left"), None],
        "random_state": ["random_state"],
        "n_jobs": [Integral, None],
    }

    def __init__(self, encoder=DEFAULT_ENCODER, head="logistic", C=None, class_weight="balanced",
                 calibration="auto", calibration_cv=3, cache=True, batch_size=32, n_workers=None,
                 random_state=0, n_jobs=None):
        self.encoder = encoder
        self.head = head
        self.C = C
        self.class_weight = class_weight
        self.calibration = calibration
        self.calibration_cv = calibration_cv
        self.cache = cache
        self.batch_size = batch_size
        self.n_workers = n_workers
        self.random_state = random_state
        self.n_jobs = n_jobs

    # --- embeddings ----------------------------------------------------------------------------

    def _new_encoder(self) -> ImageEncoder:
        # A copy of an encoder object: fitting must not change the parameters it was given.
        if isinstance(self.encoder, ImageEncoder):
            return copy.deepcopy(self.encoder)
        return create_encoder(self.encoder)

    def _encoder(self) -> ImageEncoder:
        # The fitted encoder once there is one: a model unpickled elsewhere keeps its own.
        enc = getattr(self, "encoder_", None)
        return enc if enc is not None else self._new_encoder()

    def embed(self, X, *, warn: bool = True) -> EncodedImages:
        """Raw (unstandardised) embeddings of the rows' photos, with the ok mask and reasons."""
        cache = self.cache
        if isinstance(cache, BaseEmbeddingCache):  # any cache object, the text side's too
            pass
        elif cache is True or isinstance(cache, (str, os.PathLike)):
            cache = EmbeddingCache(None if cache is True else cache)
        else:
            cache = None
        try:
            return self._encoder().encode_images(image_column(X), batch_size=self.batch_size,
                                                 n_workers=self.n_workers, cache=cache, warn=warn)
        finally:
            if cache is not None and cache is not self.cache:
                cache.close()

    # --- fitting -------------------------------------------------------------------------------

    def _make_head(self, y: np.ndarray):
        if self.head not in IMAGE_HEADS:
            create_image_head(self.head)  # raises the ConfigError that lists the heads
        params = {"class_weight": self.class_weight, "random_state": self.random_state}
        if self.C is not None:
            params["C"] = self.C
        calibration = self.calibration
        _, counts = np.unique(y, return_counts=True)
        needs = calibration in ("sigmoid", "isotonic") or (
            calibration == "auto" and IMAGE_HEADS[self.head].needs_calibration)
        if needs and counts.min() < 2:
            warnings.warn("a class has a single usable photo: the image head is left uncalibrated",
                          stacklevel=3)
            calibration = "none"
        cv = int(max(2, min(self.calibration_cv, counts.min())))
        return create_image_head(self.head, calibration=calibration, calibration_cv=cv,
                                 n_jobs=self.n_jobs, **params)

    def fit(self, X, y):
        y = np.asarray(y, dtype=object)
        if len(y) != len(image_column(X)):
            raise DataError(f"{len(image_column(X))} rows but {len(y)} labels")
        y = y.astype(str)
        self.encoder_ = self._new_encoder()
        encoded = self.embed(X)
        return self._fit_embeddings(encoded.embeddings, encoded.ok, y)

    def fit_embeddings(self, embeddings: np.ndarray, ok: np.ndarray, y: Sequence[object]):
        """Fit from embeddings already computed with this model's encoder (rows with ``ok``)."""
        self.encoder_ = self._new_encoder()
        return self._fit_embeddings(np.asarray(embeddings, np.float32), np.asarray(ok, bool),
                                    np.asarray(y, dtype=object).astype(str))

    def _fit_embeddings(self, embeddings: np.ndarray, ok: np.ndarray, y: np.ndarray):
        check_params(self)  # every fit path (photos, cached embeddings) goes through here
        self.classes_, counts = np.unique(y, return_counts=True)
        self.class_prior_ = counts / counts.sum()
        usable_classes = np.unique(y[ok])
        if ok.sum() == 0 or usable_classes.size < 2:
            raise DataError(
                f"the image model needs usable photos of at least two categories; {int(ok.sum())} "
                f"of {len(y)} rows have one, in {usable_classes.size} categor"
                f"{'y' if usable_classes.size == 1 else 'ies'}"
            )
        Z = embeddings[ok].astype(np.float64)  # float64 probabilities that sum to 1 exactly
        self.scaler_ = StandardScaler().fit(Z)
        self.head_ = self._make_head(y[ok])
        self.head_.fit(self.scaler_.transform(Z), y[ok])
        # The head knows only the classes that had photos; map its columns into classes_.
        self.head_columns_ = np.searchsorted(self.classes_, np.asarray(self.head_.classes_).astype(str))
        self.n_images_used_ = int(ok.sum())
        self.n_images_skipped_ = int((~ok).sum())
        self.n_features_ = Z.shape[1]
        return self

    # --- predicting ----------------------------------------------------------------------------

    def proba_from_embeddings(self, embeddings: np.ndarray, ok: np.ndarray) -> np.ndarray:
        """Probabilities for every row: the head's where ``ok``, the class prior elsewhere."""
        check_is_fitted(self, "head_")
        ok = np.asarray(ok, bool)
        proba = np.tile(self.class_prior_, (len(ok), 1))
        if ok.any():
            rows = np.flatnonzero(ok)
            proba[rows] = 0.0
            Z = np.asarray(embeddings)[ok].astype(np.float64)
            head = self.head_.predict_proba(self.scaler_.transform(Z))
            proba[np.ix_(rows, self.head_columns_)] = head
        return proba

    def predict_proba_masked(self, X) -> tuple[np.ndarray, np.ndarray]:
        """``(probabilities, has_image mask)`` in one pass over the photos."""
        check_is_fitted(self, "head_")
        encoded = self.embed(X)
        return self.proba_from_embeddings(encoded.embeddings, encoded.ok), encoded.ok.copy()

    def predict_proba(self, X) -> np.ndarray:
        return self.predict_proba_masked(X)[0]

    def predict(self, X) -> np.ndarray:
        return self.classes_[np.argmax(self.predict_proba(X), axis=1)]

    def has_image(self, X) -> np.ndarray:
        """Bool mask: rows whose photo exists and decodes (decoding only, no encoding)."""
        sources = image_column(X)
        return self._encoder().usable(sources, n_workers=self.n_workers)

    def transform(self, X) -> np.ndarray:
        """Standardised embeddings (what the head sees); zeros for rows without a usable photo."""
        check_is_fitted(self, "scaler_")
        encoded = self.embed(X)
        Z = np.zeros_like(encoded.embeddings)
        if encoded.ok.any():
            Z[encoded.ok] = self.scaler_.transform(encoded.embeddings[encoded.ok].astype(np.float64))
        return Z
