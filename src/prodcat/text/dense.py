"""A text model on sentence embeddings alone: logistic regression over a multilingual encoder.

TF-IDF models see words; this one sees meaning ("housse de couette" ≈ "duvet cover"), and it
fails on other listings than they do, which is what makes it worth a place in an ensemble even
though alone it is weaker.
"""

from __future__ import annotations

import numpy as np
from sklearn.base import BaseEstimator, ClassifierMixin, clone
from sklearn.linear_model import LogisticRegression
from sklearn.model_selection import StratifiedKFold, cross_val_predict
from sklearn.utils.validation import check_consistent_length, check_is_fitted

from prodcat.params import Integral, Interval, Real, StrOptions, check_params
from prodcat.text.encoders import create_text_encoder
from prodcat.text.platt import out_of_fold_folds


class DenseTextClassifier(ClassifierMixin, BaseEstimator):
    """Catalog frame → probabilities from a sentence encoder's L2-normalised embedding.

    Parameters
    ----------
    encoder : str
        A registered text encoder (:func:`~prodcat.text.encoders.list_text_encoders`).
    C : float
        Inverse regularisation of the multinomial logistic regression.
    cv : int or "auto"
        Folds of the out-of-fold probabilities kept in ``oof_proba_`` ("auto": 3 up to 20k
        listings, 2 above, as the TF-IDF model's calibration).
    cache : bool, str or EmbeddingCache
        Where embeddings are remembered (True: the default cache file).

    Attributes
    ----------
    classes_ : ndarray of str
    oof_proba_ : ndarray of shape (n_listings, n_classes)
        Every training listing's probabilities from a model that did not see it.
    """

    _parameter_constraints = {
        "encoder": [str],
        "C": [Interval(Real, 0, None, closed="neither")],
        "cv": [StrOptions({"auto"}), Interval(Integral, 2, None, closed="left")],
        "cache": ["boolean", str, object],
        "random_state": ["random_state"],
    }

    def __init__(self, encoder="use-multilingual-description", C=10.0, cv="auto", cache=True,
                 random_state=0):
        self.encoder = encoder
        self.C = C
        self.cv = cv
        self.cache = cache
        self.random_state = random_state

    def _embed(self, X, *, fitting: bool = False) -> np.ndarray:
        return self.encoder_.unit_embeddings(X, cache=self.cache, fitting=fitting, dtype=np.float64)

    def fit(self, X, y):
        check_params(self)
        y = np.asarray(y, dtype=object).astype(str)
        check_consistent_length(X, y)
        self.encoder_ = create_text_encoder(self.encoder)
        self.encoder_.pin_version()
        Z = self._embed(X, fitting=True)
        head = LogisticRegression(C=self.C, max_iter=1000, random_state=self.random_state)
        self.oof_proba_ = cross_val_predict(clone(head), Z, y,
                                            cv=StratifiedKFold(out_of_fold_folds(y, self.cv)),
                                            method="predict_proba")
        self.head_ = head.fit(Z, y)
        self.classes_ = np.asarray(self.head_.classes_)
        return self

    def transform(self, X) -> np.ndarray:
        """The L2-normalised embeddings of ``X``: what the head sees."""
        check_is_fitted(self, "head_")
        return self._embed(X)

    def predict_proba(self, X) -> np.ndarray:
        return self.head_.predict_proba(self.transform(X))

    def predict(self, X) -> np.ndarray:
        return self.classes_[np.argmax(self.predict_proba(X), axis=1)]
