"""The text model: TF-IDF features and a calibrated head, as one scikit-learn estimator."""

from __future__ import annotations

import numpy as np
from sklearn.base import BaseEstimator, ClassifierMixin
from sklearn.utils.validation import check_consistent_length, check_is_fitted

from prodcat.params import Integral, Interval, Real, StrOptions, check_params
from prodcat.text.features import TfidfFeatures
from prodcat.text.heads import CALIBRATIONS, HEADS, create_head
from prodcat.text.platt import cross_fit_platt, out_of_fold_folds, sigmoid_proba


class TextClassifier(ClassifierMixin, BaseEstimator):
    """Catalog frame (``title``, ``description``) → calibrated class probabilities.

    ``C=None`` takes the head's own default. ``calibration_cv="auto"`` is 3 folds up to 20k
    listings and 2 above; it is lowered when the rarest class has fewer examples than folds.
    ``average_folds`` (Platt-scaled linear heads): the head's coefficients are the average of
    the full fit's and the calibration folds' fits, whose scores the sigmoids were fitted on
    (see :func:`~prodcat.text.platt.cross_fit_platt`).
    ``n_jobs``: threads the head may use (-1: all cores). The n-gram options are those of
    :class:`~prodcat.text.features.TfidfFeatures`, and so are ``dense`` (a sentence encoder's
    name, e.g. ``"use-multilingual"``, whose embedding is appended to the TF-IDF rows; None:
    TF-IDF only), ``dense_weight`` and ``dense_cache``.
    """

    _parameter_constraints = {
        "head": [str],
        "C": [Interval(Real, 0, None, closed="neither"), None],
        "class_weight": [StrOptions({"balanced"}), dict, None],
        "calibration": [StrOptions(set(CALIBRATIONS))],
        "calibration_cv": [StrOptions({"auto"}), Interval(Integral, 2, None, closed="left")],
        "average_folds": ["boolean"],
        "word_ngrams": [tuple, list, None],
        "char_ngrams": [tuple, list, None],
        "title_ngrams": [tuple, list, None],
        "min_df_char": [Interval(Integral, 1, None, closed="left")],
        "max_description_chars": [Interval(Integral, 0, None, closed="left"), None],
        "char_description_chars": [Interval(Integral, 0, None, closed="left"), None],
        "strip_accents": ["boolean"],
        "random_state": ["random_state"],
        "n_jobs": [Integral, None],
        "dense": [str, object, None],
        "dense_weight": [Interval(Real, 0, None, closed="neither")],
        "dense_cache": ["boolean", str, object],
    }

    def __init__(self, head="linear-svm", C=None, class_weight="balanced", calibration="auto",
                 calibration_cv="auto", average_folds=True, word_ngrams=(1, 2), char_ngrams=(3, 5),
                 title_ngrams=(1, 2), min_df_char=2, max_description_chars=1000,
                 char_description_chars=300, strip_accents=True, random_state=0, n_jobs=-1,
                 dense=None, dense_weight=1.0, dense_cache=True):
        self.head = head
        self.C = C
        self.class_weight = class_weight
        self.calibration = calibration
        self.calibration_cv = calibration_cv
        self.average_folds = average_folds
        self.word_ngrams = word_ngrams
        self.char_ngrams = char_ngrams
        self.title_ngrams = title_ngrams
        self.min_df_char = min_df_char
        self.max_description_chars = max_description_chars
        self.char_description_chars = char_description_chars
        self.strip_accents = strip_accents
        self.random_state = random_state
        self.n_jobs = n_jobs
        self.dense = dense
        self.dense_weight = dense_weight
        self.dense_cache = dense_cache

    def _make_features(self) -> TfidfFeatures:
        return TfidfFeatures(word_ngrams=self.word_ngrams, char_ngrams=self.char_ngrams,
                             title_ngrams=self.title_ngrams, min_df_char=self.min_df_char,
                             max_description_chars=self.max_description_chars,
                             char_description_chars=self.char_description_chars,
                             strip_accents=self.strip_accents, dense=self.dense,
                             dense_weight=self.dense_weight, dense_cache=self.dense_cache)

    def _calibration_folds(self, y) -> int:
        return out_of_fold_folds(y, self.calibration_cv)

    def _head_params(self) -> dict:
        params = {"class_weight": self.class_weight, "random_state": self.random_state}
        if self.C is not None:
            params["C"] = self.C
        return params

    def _make_head(self, y):
        return create_head(self.head, calibration=self.calibration,
                           calibration_cv=self._calibration_folds(y), n_jobs=self.n_jobs,
                           **self._head_params())

    def _platt_head(self, y):
        """The uncalibrated head when it is to be Platt-scaled here (see :mod:`~prodcat.text.platt`),
        else None (other calibrations, two classes, heads without decision scores)."""
        sigmoid = self.calibration == "sigmoid" or (
            self.calibration == "auto" and HEADS.get(self.head).needs_calibration)
        if not sigmoid or len(np.unique(y)) < 3:
            return None
        head = create_head(self.head, calibration="none", n_jobs=self.n_jobs, **self._head_params())
        return head if hasattr(head, "decision_function") else None

    def fit(self, X, y):
        """Fit features and head; with Platt scaling also keep ``oof_proba_``: every training
        listing's calibrated probabilities from a head that did not see it."""
        check_params(self)
        y = np.asarray(y, dtype=object).astype(str)
        check_consistent_length(X, y)
        self.features_ = self._make_features()
        Z = self.features_.fit_transform(X)
        head = self._platt_head(y)
        if head is not None:
            head, a, b, self.oof_proba_ = cross_fit_platt(head, Z, y, self._calibration_folds(y),
                                                          average=self.average_folds)
            self.head_ = head
            self.classes_ = np.asarray(head.classes_)
            self.sigmoids_ = (head, np.arange(len(self.classes_)), a, b)
        else:
            self.head_ = self._make_head(y)
            self.head_.fit(Z, y)
            self.classes_ = np.asarray(self.head_.classes_)
            # Other calibrations (and two classes) answer through the head's own predict_proba.
            self.sigmoids_ = None
            self.oof_proba_ = None
        self.n_features_ = Z.shape[1]
        return self

    def transform(self, X):
        """TF-IDF (and dense, with ``dense``) features of ``X``: what the head sees."""
        check_is_fitted(self, "head_")
        return self.features_.transform(X)

    def predict_proba(self, X) -> np.ndarray:
        check_is_fitted(self, "head_")
        Z = self.features_.transform(X)
        if getattr(self, "sigmoids_", None) is None:
            return self.head_.predict_proba(Z)
        # The same arithmetic as CalibratedClassifierCV's Platt scaling, vectorised over classes:
        # its per-class loop of input checks took longer than the model itself for one listing.
        estimator, _, a, b = self.sigmoids_  # every class has its sigmoid: columns are all of them
        return sigmoid_proba(estimator.decision_function(Z), a, b)

    def predict(self, X) -> np.ndarray:
        return self.classes_[np.argmax(self.predict_proba(X), axis=1)]
