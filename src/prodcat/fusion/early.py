"""Early fusion: one calibrated linear head over text TF-IDF and image embeddings side by side.

:func:`early_features` builds the rows from the fitted text and image models;
:class:`EarlyFusion` is only the head over them, so it holds no other model and clones,
cross-validates and saves like any scikit-learn classifier.
"""

from __future__ import annotations

import numpy as np
import scipy.sparse as sp
from sklearn.base import BaseEstimator, ClassifierMixin
from sklearn.utils.validation import check_array, check_consistent_length, check_is_fitted

from prodcat.params import check_params
from prodcat.text.heads import create_head


def early_features(text_model, image_model, X, images, image_weight: float = 1.0) -> sp.csr_matrix:
    """Early fusion's ``X``: the text model's TF-IDF rows of the listings ``X`` and the image
    model's standardised embeddings of their ``images``, side by side (CSR, float32).

    Each image row is scaled to norm ``image_weight`` (TF-IDF blocks have unit norm, so without
    this the 1,280 dense dimensions would drown the words); listings without a usable photo get a
    zero image block.
    """
    Z_text = text_model.transform(X)
    emb = np.zeros((len(images.ok), images.embeddings.shape[1]), dtype=np.float32)
    if images.ok.any():
        z = image_model.scaler_.transform(images.embeddings[images.ok].astype(np.float64))
        z /= np.maximum(np.linalg.norm(z, axis=1, keepdims=True), 1e-12)
        emb[images.ok] = image_weight * z
    return sp.hstack([Z_text, sp.csr_matrix(emb)], format="csr", dtype=np.float32)


class EarlyFusion(ClassifierMixin, BaseEstimator):
    """A calibrated head fitted on the :func:`early_features` of the listings.

    Parameters
    ----------
    head : str, default "linear-svm"
        The text head registry's name of the head (see :func:`~prodcat.text.heads.create_head`);
        it is calibrated with 2 or 3 folds (fewer when a class has fewer listings).
    random_state : int, RandomState or None, default 0
        The head's and its calibration folds' seed.

    Attributes
    ----------
    head_ : estimator
        The fitted, calibrated head.
    classes_ : ndarray
        The labels of ``y``; the column order of :meth:`predict_proba`.
    n_features_in_ : int
        Columns of the ``X`` it was fitted on.
    """

    _parameter_constraints = {
        "head": [str],
        "random_state": ["random_state"],
    }

    def __init__(self, head="linear-svm", random_state=0):
        self.head = head
        self.random_state = random_state

    def fit(self, X, y):
        check_params(self)
        X = check_array(X, accept_sparse="csr", dtype=(np.float32, np.float64))
        check_consistent_length(X, y)
        _, counts = np.unique(np.asarray(y), return_counts=True)
        self.head_ = create_head(self.head, calibration_cv=int(max(2, min(3, counts.min()))),
                                 random_state=self.random_state)
        self.head_.fit(X, y)
        self.classes_ = np.asarray(self.head_.classes_)
        self.n_features_in_ = X.shape[1]
        return self

    def predict_proba(self, X) -> np.ndarray:
        check_is_fitted(self, "head_")
        return self.head_.predict_proba(X)

    def predict(self, X) -> np.ndarray:
        return self.classes_[np.argmax(self.predict_proba(X), axis=1)]

    def describe(self) -> dict:
        return {"method": "early", "head": self.head}
