"""Fusers combine per-modality class probabilities into one distribution.

A fuser is fitted on **out-of-fold** probabilities (each listing's text and image predictions
come from models that never saw it), so the weights it learns reflect how much each modality
can be trusted on new listings, not how well it memorised the training set.

Fusers only see the listings that have every modality; a listing without a usable image keeps
the text model's own calibrated probabilities.
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np
from sklearn.base import BaseEstimator
from sklearn.linear_model import LogisticRegression
from sklearn.pipeline import make_pipeline
from sklearn.preprocessing import StandardScaler
from sklearn.utils.validation import check_is_fitted

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


class LateFusion(BaseEstimator):
    """Weighted log-linear pool: ``P ∝ Π_m P_m ** w_m``.

    The weights are chosen on a grid to minimise the out-of-fold log loss, so they act both as
    modality weights (how much to trust the photo against the text) and as a temperature (the
    product of two calibrated opinions is over-confident unless the weights shrink).
    """

    def __init__(self, grid: Sequence[float] = tuple(np.round(np.arange(0.0, 2.01, 0.1), 2))):
        self.grid = grid

    def fit(self, probas: Sequence[np.ndarray], y_idx: np.ndarray):
        logs = np.stack([_log(p) for p in probas])
        grid = np.asarray(self.grid, dtype=float)

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

    def predict_proba(self, probas: Sequence[np.ndarray]) -> np.ndarray:
        check_is_fitted(self, "weights_")
        return _softmax(sum(w * _log(p) for w, p in zip(self.weights_, probas, strict=True)))

    def describe(self) -> dict:
        return {"method": "late", "weights": [float(w) for w in self.weights_]}


class StackedFusion(BaseEstimator):
    """A multinomial logistic regression over the modalities' log-probabilities."""

    def __init__(self, C: float = 0.1):
        self.C = C

    def fit(self, probas: Sequence[np.ndarray], y_idx: np.ndarray):
        n_classes = probas[0].shape[1]
        # Standardised inputs: raw log-probabilities span 0 to -14 and took lbfgs hundreds of
        # iterations; a small C because the meta-learner sees few listings and 2K features.
        self.model_ = make_pipeline(StandardScaler(), LogisticRegression(C=self.C, max_iter=500))
        self.model_.fit(np.hstack([_log(p) for p in probas]), y_idx)
        self.n_classes_ = n_classes
        return self

    def predict_proba(self, probas: Sequence[np.ndarray]) -> np.ndarray:
        check_is_fitted(self, "model_")
        partial = self.model_.predict_proba(np.hstack([_log(p) for p in probas]))
        # Classes absent from the fusion rows get no probability from the meta-learner; put its
        # columns back in the full class order.
        out = np.full((partial.shape[0], self.n_classes_), _EPS)
        out[:, self.model_[-1].classes_] = partial
        out /= out.sum(axis=1, keepdims=True)
        return out

    def describe(self) -> dict:
        return {"method": "stack", "C": self.C}


FUSERS: Registry[type] = Registry("fusion", extra_choices=("early", "auto"))
FUSERS.register("late", LateFusion)
FUSERS.register("stack", StackedFusion)


def cross_val_fused(fuser, probas: Sequence[np.ndarray], y_idx: np.ndarray, seed: int = 0,
                    folds: int = 5) -> np.ndarray:
    """Out-of-fold fused probabilities: the fuser itself is judged on listings it was not fitted on."""
    from sklearn.base import clone
    from sklearn.model_selection import KFold, StratifiedKFold

    counts = np.bincount(y_idx)
    folds = max(2, min(folds, len(y_idx)))
    splitter = (StratifiedKFold(folds, shuffle=True, random_state=seed)
                if counts[counts > 0].min() >= folds else KFold(folds, shuffle=True, random_state=seed))
    out = np.zeros_like(probas[0], dtype=float)
    for tr, te in splitter.split(np.zeros(len(y_idx)), y_idx):
        f = clone(fuser).fit([p[tr] for p in probas], y_idx[tr])
        out[te] = f.predict_proba([p[te] for p in probas])
    return out


def create_fuser(name: str, **params):
    return FUSERS.create(name, **params)
