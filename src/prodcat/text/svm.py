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

from collections.abc import Sequence

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
        problems = self._problems(X, y)
        _solve([self], [problems], _nnz(problems[0][0]))
        return self

    def decision_function(self, X):
        check_is_fitted(self, "coef_")
        scores = np.asarray(X @ self.coef_.T) + self.intercept_
        return scores.ravel() if len(self.classes_) == 2 else scores

    def predict(self, X):
        scores = self.decision_function(X)
        if scores.ndim == 1:
            return self.classes_[(scores > 0).astype(int)]
        return self.classes_[np.argmax(scores, axis=1)]


def fit_clones(estimator, X, y, rows: Sequence[np.ndarray | None], into_self: bool = False) -> list:
    """``estimator`` fitted on each row subset ``rows`` of ``(X, y)`` (None: every row); clones,
    but with ``into_self`` the first one is ``estimator`` itself.

    For a :class:`ParallelLinearSVC` the binary problems are spread over worker processes. The
    fits of a small catalogue (the full fit and the cross-validation fits) are each too small to
    be worth starting workers for (``PARALLEL_MIN_NNZ``), but together they are, so their problems
    go to one pool together — at 2,500 listings they had been a training's longest step, one
    problem after another on one core. Fits that are big enough alone run one after the other,
    each on every core, so that only one subset of a large matrix is held at a time (all of
    them at once put 0.75 GB on the peak at 85,000 listings). Other estimators are fitted one
    after the other.
    """
    y = np.asarray(y)
    models = [estimator if into_self and i == 0 else clone(estimator) for i in range(len(rows))]

    def subset(r):
        return (X, y) if r is None else (X[r], y[r])

    sizes = [_nnz(X) * (len(y) if r is None else len(r)) / max(len(y), 1) for r in rows]
    if not isinstance(estimator, ParallelLinearSVC) or min(sizes) >= PARALLEL_MIN_NNZ:
        return [m.fit(*subset(r)) for m, r in zip(models, rows, strict=True)]
    _solve(models, [m._problems(*subset(r)) for m, r in zip(models, rows, strict=True)], sum(sizes))
    return models


def _nnz(X) -> int:
    return X.nnz if sp.issparse(X) else np.size(X)


def _solve(models: list[ParallelLinearSVC], problems: list[list[tuple]], nnz: float) -> None:
    """Every binary problem of every model, on worker processes when ``nnz`` (their matrices'
    non-zeros together) is worth it."""
    flat = [p for ps in problems for p in ps]
    n_jobs = 1 if nnz < PARALLEL_MIN_NNZ else min(effective_n_jobs(models[0].n_jobs), len(flat))
    results = iter(Parallel(n_jobs=n_jobs, prefer="processes")(delayed(_fit_one)(*p) for p in flat))
    for model, ps in zip(models, problems, strict=True):
        model._set_solutions([next(results) for _ in ps])
