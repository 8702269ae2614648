"""The Classifier: one estimator over Catalog frames that the CLI, API, UI and batch jobs share."""

from __future__ import annotations

import warnings
from collections.abc import Mapping, Sequence
from pathlib import Path

import numpy as np
import pandas as pd
from sklearn.base import BaseEstimator, ClassifierMixin, clone
from sklearn.utils.validation import check_is_fitted

from prodcat.data.catalog import FEATURE_COLUMNS, label_to_code
from prodcat.data.taxonomy import Taxonomy
from prodcat.errors import DataError
from prodcat.text.model import TextClassifier


def as_listings(X) -> pd.DataFrame:
    """Accept a Catalog frame, one listing as a dict, or a list of dicts; return the model's frame.

    Missing columns are added empty, so callers may pass only a title.
    """
    if isinstance(X, Mapping):
        X = [X]
    frame = X.copy() if isinstance(X, pd.DataFrame) else pd.DataFrame(list(X))
    for col in FEATURE_COLUMNS:
        if col not in frame.columns:
            frame[col] = None
    for col in ("title", "description"):
        frame[col] = frame[col].astype("string").fillna("").astype(object)
    frame["image"] = frame["image"].astype(object).where(frame["image"].notna(), None)
    return frame.loc[:, list(FEATURE_COLUMNS)]


def top_k_indices(proba: np.ndarray, k: int) -> np.ndarray:
    """Column indices of the ``k`` largest probabilities per row, best first."""
    k = min(k, proba.shape[1])
    part = np.argpartition(-proba, k - 1, axis=1)[:, :k]
    order = np.argsort(-np.take_along_axis(proba, part, axis=1), axis=1, kind="stable")
    return np.take_along_axis(part, order, axis=1)


class Classifier(ClassifierMixin, BaseEstimator):
    """Listing → category probabilities, with the taxonomy to name them.

    Parameters
    ----------
    text : estimator, default ``TextClassifier()``
        The text model; any estimator with ``fit``/``predict_proba`` over a Catalog frame.
    threshold : float
        Confidence at or above which a prediction may be filed without review.
    min_class_count : int
        Classes with fewer training listings are left out (and recorded): a category seen once
        cannot be calibrated or cross-validated.
    """

    def __init__(self, text=None, threshold=0.8, min_class_count=3):
        self.text = text
        self.threshold = threshold
        self.min_class_count = min_class_count

    def fit(self, X, y, taxonomy: Taxonomy | None = None):
        X = as_listings(X)
        y = pd.Series([label_to_code(v) for v in np.asarray(y, dtype=object)], dtype=object)
        known = y.notna().to_numpy()
        counts = y[known].value_counts()
        rare = counts[counts < self.min_class_count]
        keep = known & ~y.isin(rare.index).to_numpy()
        if rare.size:
            warnings.warn(f"left out {rare.size} class(es) with fewer than {self.min_class_count} "
                          f"listings: {', '.join(map(str, rare.index[:10]))}", stacklevel=2)
        if keep.sum() == 0 or y[keep].nunique() < 2:
            raise DataError("training needs at least two categories with "
                            f"{self.min_class_count} or more labelled listings each")
        self.dropped_classes_ = {str(k): int(v) for k, v in rare.items()}
        self.text_ = clone(self.text if self.text is not None else TextClassifier())
        self.text_.fit(X[keep].reset_index(drop=True), y[keep].to_numpy())
        self.classes_ = np.asarray(self.text_.classes_, dtype=object)
        self.taxonomy_ = (taxonomy or Taxonomy()).extended(self.classes_)
        self.n_train_ = int(keep.sum())
        return self

    def predict_proba(self, X) -> np.ndarray:
        check_is_fitted(self, "text_")
        return self.text_.predict_proba(as_listings(X))

    def predict(self, X) -> np.ndarray:
        return self.classes_[np.argmax(self.predict_proba(X), axis=1)]

    def describe(self, proba: np.ndarray, k: int = 3) -> list[list[dict]]:
        """Top-``k`` categories per row of ``proba``, each with code, name, parent, probability."""
        idx = top_k_indices(proba, k)
        out = []
        for row, cols in zip(proba, idx, strict=True):
            out.append([{"code": str(self.classes_[c]), "name": self.taxonomy_.name(self.classes_[c]),
                         "parent": self.taxonomy_.parent(self.classes_[c]),
                         "probability": float(row[c])} for c in cols])
        return out

    def predict_top_k(self, X, k: int = 3) -> list[list[dict]]:
        return self.describe(self.predict_proba(X), k)

    def predict_frame(self, X, k: int = 3, ids: Sequence[object] | None = None) -> pd.DataFrame:
        """Batch output: id, then code/name/probability for ranks 1..k, then ``needs_review``."""
        proba = self.predict_proba(X)
        idx = top_k_indices(proba, k)
        names = np.array([self.taxonomy_.name(c) for c in self.classes_], dtype=object)
        frame = pd.DataFrame({"id": list(ids) if ids is not None else np.arange(len(proba))})
        for r in range(idx.shape[1]):
            frame[f"code_{r + 1}"] = self.classes_[idx[:, r]]
            frame[f"name_{r + 1}"] = names[idx[:, r]]
            frame[f"probability_{r + 1}"] = np.round(proba[np.arange(len(proba)), idx[:, r]], 6)
        # Decided on the unrounded probability, exactly as for a single listing.
        frame["needs_review"] = proba[np.arange(len(proba)), idx[:, 0]] < self.threshold
        return frame

    # Bundles -----------------------------------------------------------------------------------

    def save(self, path: str | Path, **manifest_extra) -> Path:
        from prodcat.model.bundle import save_bundle

        return save_bundle(self, path, **manifest_extra)

    @classmethod
    def load(cls, path: str | Path) -> Classifier:
        from prodcat.model.bundle import load_bundle

        model, _ = load_bundle(path)
        return model
