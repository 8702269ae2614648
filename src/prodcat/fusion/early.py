"""Early fusion: one calibrated linear head over text TF-IDF and image embeddings side by side."""

from __future__ import annotations

import numpy as np
import scipy.sparse as sp
from sklearn.base import BaseEstimator
from sklearn.utils.validation import check_is_fitted

from prodcat.text.heads import create_head


class EarlyFusion(BaseEstimator):
    """Concatenates the fitted text model's TF-IDF rows and the image model's standardised
    embeddings, each row of the latter scaled to norm ``image_weight`` (TF-IDF blocks have unit
    norm, so without this the 1,280 dense dimensions would drown the words), and fits one head.
    Listings without a usable photo get a zero image block.
    """

    def __init__(self, head="linear-svm", image_weight=1.0, random_state=0):
        self.head = head
        self.image_weight = image_weight
        self.random_state = random_state

    def _features(self, text_model, image_model, X, images):
        Z_text = text_model.transform(X)
        emb = np.zeros((len(images.ok), images.embeddings.shape[1]), dtype=np.float32)
        if images.ok.any():
            z = image_model.scaler_.transform(images.embeddings[images.ok].astype(np.float64))
            z /= np.maximum(np.linalg.norm(z, axis=1, keepdims=True), 1e-12)
            emb[images.ok] = self.image_weight * z
        return sp.hstack([Z_text, sp.csr_matrix(emb)], format="csr", dtype=np.float32)

    def fit(self, text_model, image_model, X, images, y):
        self.text_model_, self.image_model_ = text_model, image_model
        _, counts = np.unique(y, return_counts=True)
        self.head_ = create_head(self.head, calibration_cv=int(max(2, min(3, counts.min()))),
                                 random_state=self.random_state)
        self.head_.fit(self._features(text_model, image_model, X, images), y)
        self.classes_ = np.asarray(self.head_.classes_)
        return self

    def predict_proba(self, X, images) -> np.ndarray:
        check_is_fitted(self, "head_")
        return self.head_.predict_proba(self._features(self.text_model_, self.image_model_, X, images))
