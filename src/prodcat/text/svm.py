"""A linear SVM whose one-vs-rest problems are solved on all cores.

``LinearSVC`` solves its K one-vs-rest problems one after the other on one core. Here they are
spread over worker processes. Processes, not threads: liblinear shuffles with the C library's
global ``rand()``, so threads interleave one random sequence and the same seed gives slightly
different models from run to run; each process has its own. joblib memory-maps the feature
matrix's arrays into the workers instead of copying them. Each binary problem is set up exactly
as liblinear's own multi-class loop does (positives weighted by their class weight, negatives by
1), so the model is the one ``LinearSVC`` would fit, up to solver tolerance.
"""

from __future__ import annotations

import numpy as np
import scipy.sparse as sp
from joblib import Parallel, delayed, effective_n_jobs
from sklearn.base import BaseEstimator, ClassifierMixin, clone
from sklearn.svm import LinearSVC
from sklearn.utils.class_weight import compute_class_weight
from sklearn.utils.validation import check_is_fitted


def _fit_one(X, positive, C, weight, tol, max_iter, random_state):
    svm = LinearSVC(C=C, class_weight={1: weight, 0: 1.0}, tol=tol, max_iter=max_iter,
                    random_state=random_state)
    svm.fit(X, positive.astype(np.int8))
    return svm.coef_.ravel().astype(np.float32), float(svm.intercept_[0])


#: Below this many non-zeros (over every problem of one call) a fit takes a second or two:
#: starting workers would cost more.
PARALLEL_MIN_NNZ = 2_000_000


class ParallelLinearSVC(ClassifierMixin, BaseEstimator):
    def __init__(self, C=0.5, class_weight="balanced", tol=1e-3, max_iter=1000, random_state=0,
                 n_jobs=-1):
        self.C = C
        self.class_weight = class_weight
        self.tol = tol
        self.max_iter = max_iter
        self.random_state = random_state
        self.n_jobs = n_jobs

    def _problems(self, X, y) -> list[tuple]:
        """The arguments of ``_fit_one`` for each binary problem; sets ``classes_``."""
        y = np.asarray(y)
        self.classes_ = np.unique(y)
        if len(self.classes_) < 2:
            raise ValueError("ParallelLinearSVC needs at least two classes")
        weights = (compute_class_weight(self.class_weight, classes=self.classes_, y=y)
                   if self.class_weight is not None else np.ones(len(self.classes_)))
        # One float64 CSR for every problem (LinearSVC would otherwise convert it per call).
        X = sp.csr_matrix(X, dtype=np.float64) if sp.issparse(X) else np.asarray(X, dtype=np.float64)
        self.n_features_in_ = X.shape[1]
        classes = self.classes_ if len(self.classes_) > 2 else self.classes_[1:]
        return [(X, y == c, self.C, w, self.tol, self.max_iter, self.random_state)
                for c, w in zip(classes, weights[-len(classes):], strict=True)]

    def _set_solutions(self, results: list[tuple]) -> None:
        # Fortran order makes ``coef_.T`` C-contiguous, so ``X @ coef_.T`` never copies the
        # (classes × features) matrix: that copy was most of a single listing's latency.
        self.coef_ = np.asfortranarray(np.vstack([r[0] for r in results]))
        self.intercept_ = np.array([r[1] for r in results], dtype=np.float32)

    def fit(self, X, y):
        return fit_clones(self, [(X, y)], into_self=True)[0]

    def decision_function(self, X):
        check_is_fitted(self, "coef_")
        scores = np.asarray(X @ self.coef_.T) + self.intercept_
        return scores.ravel() if len(self.classes_) == 2 else scores

    def predict(self, X):
        scores = self.decision_function(X)
        if scores.ndim == 1:
            return self.classes_[(scores > 0).astype(int)]
        return self.classes_[np.argmax(scores, axis=1)]


def fit_clones(estimator, datasets, into_self: bool = False) -> list:
    """``estimator`` fitted on each ``(X, y)`` of ``datasets`` (clones; with ``into_self`` the
    first one is ``estimator`` itself).

    For a :class:`ParallelLinearSVC` the binary problems of every fit go to one pool of workers
    together: the full fit and the cross-validation fits of a small catalogue are each too small
    to be worth starting workers for (``PARALLEL_MIN_NNZ``), but together they are — at 2,500
    listings they were a training's longest step, one problem after another on one core. Other
    estimators are fitted one after the other.
    """
    models = [estimator if into_self and i == 0 else clone(estimator) for i in range(len(datasets))]
    if not isinstance(estimator, ParallelLinearSVC):
        return [m.fit(X, y) for m, (X, y) in zip(models, datasets, strict=True)]
    problems = [m._problems(X, y) for m, (X, y) in zip(models, datasets, strict=True)]
    flat = [p for ps in problems for p in ps]
    nnz = sum(p[0].nnz if sp.issparse(p[0]) else p[0].size for p in (ps[0] for ps in problems))
    n_jobs = 1 if nnz < PARALLEL_MIN_NNZ else min(effective_n_jobs(estimator.n_jobs), len(flat))
    results = iter(Parallel(n_jobs=n_jobs, prefer="processes")(delayed(_fit_one)(*p) for p in flat))
    for model, ps in zip(models, problems, strict=True):
        model._set_solutions([next(results) for _ in ps])
    return models
