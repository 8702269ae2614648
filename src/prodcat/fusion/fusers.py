"""Fusers combine per-modality class probabilities into one distribution.

A late or stacked fuser is a scikit-learn classifier over **one** ``X``: the modalities' class
probabilities side by side (text, then image), each block one column per class in the order of
``classes``, built by :func:`probability_blocks`. Probabilities, not log-probabilities: the fusers
take the logarithm themselves, after clipping at ``1e-6``, so a zero from a base model is no
``-inf``. Early fusion (:mod:`prodcat.fusion.early`) reads the listings' features instead.

A fuser is fitted on **out-of-fold** probabilities (each listing's text and image predictions
come from models that never saw it), so the weights it learns reflect how much each modality
can be trusted on new listings, not how well it memorised the training set. Being estimators,
fusers clone and cross-validate like any other: ``cross_val_predict(LateFusion(), X, y,
method="predict_proba")``.

Fusers only see the listings that have every modality; a listing without a usable image keeps
the text model's own calibrated probabilities.
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np
from sklearn.base import BaseEstimator, ClassifierMixin, clone
from sklearn.linear_model import LogisticRegression
from sklearn.model_selection import KFold, StratifiedKFold
from sklearn.pipeline import make_pipeline
from sklearn.preprocessing import StandardScaler
from sklearn.utils.validation import check_array, check_consistent_length, check_is_fitted

from prodcat.errors import DataError
from prodcat.params import Integral, Interval, Real, check_params
from prodcat.registry import Registry

_EPS = 1e-6


def _log(p: np.ndarray) -> np.ndarray:
    return np.log(np.clip(p, _EPS, 1.0))


def _softmax(z: np.ndarray) -> np.ndarray:
    z = z - z.max(axis=1, keepdims=True)
    e = np.exp(z)
    return e / e.sum(axis=1, keepdims=True)


def log_loss_of(proba: np.ndarray, y_idx: np.ndarray) -> float:
    return float(-np.mean(_log(proba[np.arange(len(y_idx)), y_idx])))


def probability_blocks(probas: Sequence[np.ndarray]) -> np.ndarray:
    """Late and stacked fusion's ``X``: the modalities' probabilities side by side."""
    return np.hstack([np.asarray(p, dtype=float) for p in probas])


class _ProbabilityFuser(ClassifierMixin, BaseEstimator):
    """What late and stacked fusion share: reading ``X`` as ``n_modalities`` blocks of
    probabilities over ``classes``, and ``y`` as labels among them.
    """

    def _fit_input(self, X, y) -> tuple[np.ndarray, np.ndarray]:
        """``X`` as an array, ``y`` as column indices; sets ``classes_``, ``n_modalities_`` and
        ``n_features_in_``."""
        check_params(self)
        X = check_array(X, dtype=float)
        n_blocks = self.n_modalities
        check_consistent_length(X, y)
        y = np.asarray(y)
        if X.shape[1] % n_blocks:
            raise DataError(f"X has {X.shape[1]} columns, which are not {n_blocks} blocks of "
                            "class probabilities (set n_modalities)")
        width = X.shape[1] // n_blocks
        classes = np.asarray(self.classes) if self.classes is not None else np.unique(y)
        if classes.ndim != 1 or len(classes) != width or len(set(classes.tolist())) != width:
            raise DataError(f"X has blocks of {width} columns but {len(classes)} distinct classes "
                            "(y lacks some of the base models' classes: pass classes=, their "
                            "column order)")
        index = {c: i for i, c in enumerate(classes.tolist())}
        y_idx = np.array([index.get(v, -1) for v in y.tolist()], dtype=np.intp)
        if (y_idx < 0).any():
            raise DataError(f"y holds labels that are not in classes: {y[y_idx < 0][:5].tolist()}")
        self.classes_ = classes
        self.n_modalities_ = n_blocks
        self.n_features_in_ = X.shape[1]
        return X, y_idx

    def _predict_input(self, X) -> np.ndarray:
        check_is_fitted(self, "classes_")
        X = check_array(X, dtype=float)
        if X.shape[1] != self.n_features_in_:
            raise DataError(f"X has {X.shape[1]} columns; this fuser was fitted on "
                            f"{self.n_features_in_}")
        return X

    def predict(self, X) -> np.ndarray:
        return self.classes_[np.argmax(self.predict_proba(X), axis=1)]


class LateFusion(_ProbabilityFuser):
    """Weighted log-linear pool: ``P ∝ Π_m P_m ** w_m``.

    The weights are chosen on a grid to minimise the log loss of the (out-of-fold) inputs, so
    they act both as modality weights (how much to trust the photo against the text) and as a
    temperature (the product of two calibrated opinions is over-confident unless the weights
    shrink).

    Parameters
    ----------
    grid : array-like of float >= 0
        The weights tried for each modality (every pair for two modalities, coordinate descent
        from equal weights for more).
    n_modalities : int, default 2
        Blocks of class probabilities side by side in ``X`` (text, image, …).
    classes : array-like or None, default None
        The labels of each block's columns, in order. None: the sorted labels of ``y``, which
        must then hold every class.

    Attributes
    ----------
    weights_ : ndarray of shape (n_modalities,)
        The weight of each block.
    oof_log_loss_ : float
        The pool's log loss on the ``X`` it was fitted on.
    classes_ : ndarray
        The column order of :meth:`predict_proba` (``classes`` or the labels of ``y``).
    n_modalities_, n_features_in_ : int
        Blocks and columns of ``X``.
    """

    _parameter_constraints = {
        "grid": ["array-like"],
        "n_modalities": [Interval(Integral, 1, None, closed="left")],
        "classes": ["array-like", None],
    }

    def __init__(self, grid: Sequence[float] = tuple(np.round(np.arange(0.0, 2.01, 0.1), 2)),
                 n_modalities: int = 2, classes=None):
        self.grid = grid
        self.n_modalities = n_modalities
        self.classes = classes

    def fit(self, X, y):
        """Fit on ``X``, the modalities' probabilities side by side, and labels ``y``."""
        X, y_idx = self._fit_input(X, y)
        grid = np.asarray(self.grid, dtype=float)
        if grid.ndim != 1 or grid.size == 0 or not np.all(np.isfinite(grid)) or (grid < 0).any():
            raise DataError("grid must be a non-empty list of finite weights >= 0")
        logs = np.stack(np.hsplit(_log(X), self.n_modalities_))

        def loss(w: np.ndarray) -> float:
            return log_loss_of(_softmax(np.tensordot(w, logs, axes=1)), y_idx)

        if len(logs) == 2:  # the usual text + image case: the whole grid
            candidates = [np.array([a, b]) for a in grid for b in grid if a or b]
            best = min(candidates, key=loss)
        else:  # more modalities: coordinate descent from equal weights
            best = np.ones(len(logs))
            for _ in range(3):
                for m in range(len(logs)):
                    options = [np.where(np.arange(len(logs)) == m, w, best) for w in grid]
                    best = min((o for o in options if o.any()), key=loss)
        self.weights_ = best
        self.oof_log_loss_ = loss(best)
        return self

    def predict_proba(self, X) -> np.ndarray:
        check_is_fitted(self, "weights_")
        blocks = np.hsplit(self._predict_input(X), len(self.weights_))
        return _softmax(sum(w * _log(p) for w, p in zip(self.weights_, blocks, strict=True)))

    def describe(self) -> dict:
        return {"method": "late", "weights": [float(w) for w in self.weights_]}


class StackedFusion(_ProbabilityFuser):
    """A multinomial logistic regression over the modalities' log-probabilities.

    Parameters
    ----------
    C : float > 0, default 0.1
        Inverse regularisation strength (small: the meta-learner sees few listings and
        ``n_modalities × n_classes`` features).
    n_modalities, classes
        As :class:`LateFusion`'s.

    Attributes
    ----------
    model_ : Pipeline
        Standardisation and the logistic regression, over the log-probabilities.
    classes_ : ndarray
        The column order of :meth:`predict_proba`; classes absent from the rows it was fitted
        on get a probability of about ``1e-6``.
    n_modalities_, n_features_in_ : int
        Blocks and columns of ``X``.
    """

    _parameter_constraints = {
        "C": [Interval(Real, 0, None, closed="neither")],
        "n_modalities": [Interval(Integral, 1, None, closed="left")],
        "classes": ["array-like", None],
    }

    def __init__(self, C: float = 0.1, n_modalities: int = 2, classes=None):
        self.C = C
        self.n_modalities = n_modalities
        self.classes = classes

    def fit(self, X, y):
        """Fit on ``X``, the modalities' probabilities side by side, and labels ``y``."""
        X, y_idx = self._fit_input(X, y)
        # Standardised inputs: raw log-probabilities span 0 to -14 and took lbfgs hundreds of
        # iterations; a small C because the meta-learner sees few listings and 2K features.
        self.model_ = make_pipeline(StandardScaler(), LogisticRegression(C=self.C, max_iter=500))
        self.model_.fit(_log(X), y_idx)
        return self

    def predict_proba(self, X) -> np.ndarray:
        check_is_fitted(self, "model_")
        partial = self.model_.predict_proba(_log(self._predict_input(X)))
        # Classes absent from the fusion rows get no probability from the meta-learner; put its
        # columns back in the full class order.
        out = np.full((partial.shape[0], len(self.classes_)), _EPS)
        out[:, self.model_[-1].classes_] = partial
        out /= out.sum(axis=1, keepdims=True)
        return out

    def describe(self) -> dict:
        return {"method": "stack", "C": self.C}


FUSERS: Registry[type] = Registry("fusion", extra_choices=("early", "auto"))
FUSERS.register("late", LateFusion)
FUSERS.register("stack", StackedFusion)


def cross_val_fused(fuser, X, y, seed: int = 0, folds: int = 5) -> np.ndarray:
    """Out-of-fold fused probabilities: the fuser itself is judged on listings it was not fitted on.

    ``cross_val_predict(fuser, X, y, method="predict_proba")`` with shuffled (stratified when
    every class allows it) folds, except that each fold's fuser keeps every column of its
    ``classes`` (scikit-learn re-encodes ``y`` to the labels present, which a fuser whose
    blocks hold more classes than ``y`` cannot take).
    """
    y = np.asarray(y)
    _, counts = np.unique(y, return_counts=True)
    folds = max(2, min(folds, len(y)))
    splitter = (StratifiedKFold(folds, shuffle=True, random_state=seed)
                if counts.min() >= folds else KFold(folds, shuffle=True, random_state=seed))
    out = None
    for tr, te in splitter.split(np.zeros(len(y)), y):
        p = clone(fuser).fit(X[tr], y[tr]).predict_proba(X[te])
        out = np.zeros((len(y), p.shape[1])) if out is None else out
        out[te] = p
    return out


def create_fuser(name: str, **params):
    return FUSERS.create(name, **params)
