"""The trust rules of bundle state: which classes may be rebuilt from a bundle, and how.

Only classes named here are ever instantiated when a bundle is read (see
:mod:`prodcat.model.safe_state` for the format): prodcat's own estimators, encoders and records
from a few packages, and a reviewed list of scikit-learn types whose state is plain data.
"""

from __future__ import annotations

import dataclasses
import functools
import importlib
import pathlib
import re
import types
from pathlib import Path
from typing import Any

import numpy as np
import scipy.sparse as sp

from prodcat.errors import BundleError

FORMAT = "prodcat-state"
FORMAT_VERSION = 1
TAG = "~"

#: scikit-learn (and SciPy) classes whose instances a bundle may hold, as ``module:name`` of a
#: public import. Reviewed: their state is arrays, numbers, strings and other listed objects;
#: their ``__setstate__`` (when they have one) only checks versions or rebuilds a derived
#: attribute from stored arrays. A name this scikit-learn lacks is skipped.
TRUSTED_TYPES = (
    "sklearn.feature_extraction.text:TfidfVectorizer",
    "sklearn.feature_extraction.text:TfidfTransformer",
    "sklearn.feature_extraction.text:CountVectorizer",
    "sklearn.linear_model:LogisticRegression",
    "sklearn.linear_model:SGDClassifier",
    "sklearn.linear_model:RidgeClassifier",
    "sklearn.svm:LinearSVC",
    "sklearn.naive_bayes:ComplementNB",
    "sklearn.naive_bayes:MultinomialNB",
    "sklearn.calibration:CalibratedClassifierCV",
    "sklearn.calibration:_CalibratedClassifier",
    "sklearn.calibration:_SigmoidCalibration",
    "sklearn.calibration:_TemperatureScaling",
    "sklearn.isotonic:IsotonicRegression",
    "sklearn.frozen:FrozenEstimator",
    "sklearn.preprocessing:StandardScaler",
    "sklearn.preprocessing:MaxAbsScaler",
    "sklearn.preprocessing:Normalizer",
    "sklearn.preprocessing:LabelBinarizer",
    "sklearn.preprocessing:LabelEncoder",
    "sklearn.pipeline:Pipeline",
    "sklearn.neural_network:MLPClassifier",
    "sklearn.neural_network._stochastic_optimizers:AdamOptimizer",
    "sklearn.neural_network._stochastic_optimizers:SGDOptimizer",
    "sklearn.model_selection:StratifiedKFold",
    "sklearn.model_selection:KFold",
    "sklearn._loss.loss:HalfBinomialLoss",
    "sklearn._loss.loss:HalfMultinomialLoss",
    "sklearn._loss.link:LogitLink",
    "sklearn._loss.link:MultinomialLogit",
    "sklearn._loss.link:Interval",
)
#: Compiled (Cython) scikit-learn classes that pickle as ``cls(*args)`` with plain arguments (a
#: loss function kept by a fitted SGD model): rebuilt by calling the class with those arguments.
CONSTRUCTED_TYPES = (
    "sklearn.linear_model._sgd_fast:ModifiedHuber",
    "sklearn.linear_model._sgd_fast:Hinge",
    "sklearn.linear_model._sgd_fast:SquaredHinge",
    "sklearn.linear_model._sgd_fast:EpsilonInsensitive",
    "sklearn.linear_model._sgd_fast:SquaredEpsilonInsensitive",
    "sklearn._loss._loss:CyHalfBinomialLoss",
    "sklearn._loss._loss:CyHalfMultinomialLoss",
    "sklearn._loss._loss:CyHalfSquaredError",
)
#: prodcat packages whose classes a bundle may hold, when they are estimators (scikit-learn
#: ``BaseEstimator``), lazily loaded encoders (:class:`prodcat.lazy.LazyLoaded`) or dataclass
#: records (taxonomy, encoder specs): the code that rebuilds them is prodcat's own.
PRODCAT_PACKAGES = ("text", "image", "fusion", "model", "data", "heads", "lazy")
#: Types a state may name as values (``dtype=np.float32`` in a vectorizer's parameters).
_TRUSTED_VALUE_TYPES = {f"builtins.{t.__name__}": t for t in (int, float, bool, str, bytes, complex, object)}
_TRUSTED_VALUE_TYPES.update({f"numpy.{t.__name__}": t for t in set(np.sctypeDict.values())})
_PATH_TYPES = {t.__name__: t for t in (pathlib.PurePosixPath, pathlib.PureWindowsPath, pathlib.PosixPath,
                                       pathlib.WindowsPath, Path)}
_SPARSE_TYPES = {t.__name__: t for t in (sp.csr_matrix, sp.csc_matrix, sp.coo_matrix, sp.bsr_matrix,
                                         sp.csr_array, sp.csc_array, sp.coo_array, sp.bsr_array)}
_BIT_GENERATORS = {t.__name__: t for t in (np.random.PCG64, np.random.PCG64DXSM, np.random.MT19937,
                                           np.random.Philox, np.random.SFC64)}
_PLAIN = (str, int, float, bool, type(None))
_MODULE = re.compile(r"prodcat(\.[a-z_][a-z0-9_]*)+")
_QUALNAME = re.compile(r"[A-Za-z_][A-Za-z0-9_]*(\.[A-Za-z_][A-Za-z0-9_]*)*")


class UnsafeStateError(BundleError):
    """An object cannot be written in the safe format, or a stored state names something that
    may not be loaded."""


def class_name(cls: type) -> str:
    return f"{cls.__module__}.{cls.__qualname__}"


def _resolve(entries: tuple[str, ...]) -> dict[str, type]:
    found = {}
    for entry in entries:
        module, name = entry.split(":")
        try:
            cls = getattr(importlib.import_module(module), name)
        except (ImportError, AttributeError):
            continue
        found[class_name(cls)] = cls
    return found


@functools.lru_cache(maxsize=1)
def _third_party_types() -> dict[str, type]:
    return _resolve(TRUSTED_TYPES)


@functools.lru_cache(maxsize=1)
def _constructed_types() -> dict[str, type]:
    return _resolve(CONSTRUCTED_TYPES)


def _prodcat_class_allowed(cls: type) -> bool:
    from sklearn.base import BaseEstimator

    from prodcat.lazy import LazyLoaded

    return issubclass(cls, (BaseEstimator, LazyLoaded)) or dataclasses.is_dataclass(cls)


def _prodcat_module_allowed(module: str) -> bool:
    parts = module.split(".")
    return (_MODULE.fullmatch(module) is not None and parts[1] in PRODCAT_PACKAGES
            and not any(p.startswith("__") for p in parts))


def trusted_class(name: str) -> type:
    """The class a state names, if it may be instantiated; :class:`UnsafeStateError` otherwise.

    Nothing is imported for a name outside the allowlist except a module of one of
    :data:`PRODCAT_PACKAGES` (prodcat's own code, which defines no side effects at import).
    """
    if not isinstance(name, str):
        raise UnsafeStateError(f"a stored class name must be a string, not {type(name).__name__}")
    cls = _third_party_types().get(name)
    if cls is not None:
        return cls
    parts = name.split(".")
    # The module is the longest allowed prefix that imports (a nested class has dots too).
    for split in range(len(parts) - 1, 1, -1):
        module, qualname = ".".join(parts[:split]), ".".join(parts[split:])
        if _prodcat_module_allowed(module) and _QUALNAME.fullmatch(qualname):
            try:
                found: Any = importlib.import_module(module)
            except ModuleNotFoundError as exc:
                if exc.name == module:
                    continue
                raise
            break
    else:
        raise UnsafeStateError(f"the stored state names {name!r}, which is not a class a prodcat "
                               "bundle may hold; refusing to load it")
    try:
        obj = found
        for part in qualname.split("."):
            obj = getattr(obj, part)
    except AttributeError:
        raise UnsafeStateError(f"the stored state names {name!r}, which this prodcat does not have; "
                               "retrain the model with this version") from None
    if not (isinstance(obj, type) and class_name(obj) == name and _prodcat_class_allowed(obj)):
        raise UnsafeStateError(f"the stored state names {name!r}, which is not an estimator, encoder "
                               "or record class; refusing to load it")
    return obj


def _check_class(cls: type, where: str) -> None:
    name = class_name(cls)
    if name in _third_party_types():
        return
    if cls.__module__.startswith("prodcat.") and _prodcat_module_allowed(cls.__module__) \
            and _prodcat_class_allowed(cls):
        return
    raise UnsafeStateError(
        f"cannot save {where}: {name} is not a type a safe bundle may hold (prodcat estimators, "
        "encoders and dataclasses, and the scikit-learn types listed in "
        "prodcat.model.trust.TRUSTED_TYPES)")


def _own_state(obj: Any) -> Any:
    """What pickle would store for ``obj`` (its ``__getstate__``, else its ``__dict__`` and slots)."""
    cls = type(obj)
    getstate = getattr(cls, "__getstate__", None)
    if getstate is not None and getstate is not getattr(object, "__getstate__", None):
        return obj.__getstate__()
    state = dict(obj.__dict__) if hasattr(obj, "__dict__") else None
    slots = {name: getattr(obj, name) for klass in cls.__mro__ for name in getattr(klass, "__slots__", ())
             if name not in ("__dict__", "__weakref__") and hasattr(obj, name)}
    return (state, slots) if slots else state


def _rebuilt_by_reduce(cls: type) -> bool:
    """Whether pickle rebuilds ``cls`` through something else than ``__new__`` and a state."""
    import copyreg

    return (cls in copyreg.dispatch_table or cls.__reduce_ex__ is not object.__reduce_ex__
            or cls.__reduce__ is not object.__reduce__)


_FUNCTION_TYPES = (types.FunctionType, types.MethodType, types.BuiltinFunctionType, types.ModuleType,
                   types.GeneratorType, functools.partial)


def _memoised(value: Any, kind: type) -> bool:
    """Whether a value keeps its identity through a round trip (values, tuples and names need not)."""
    return not (kind in (tuple, bytes, complex) or isinstance(value, (pathlib.PurePath, type, np.dtype)))
