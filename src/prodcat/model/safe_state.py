"""Fitted objects as data: a JSON tree plus NumPy arrays, read back without running stored code.

A pickle names callables that the reader calls, so whoever can write a pickle runs code where it
is read. This format only names classes, and only classes from an allowlist are ever
instantiated: prodcat's own estimators, encoders and records, and a reviewed list of
scikit-learn types whose state is plain data. An instance is rebuilt as pickle would rebuild it
(``cls.__new__(cls)`` then ``__setstate__`` or ``__dict__.update``), from a state that only holds
JSON values, arrays, other allowlisted instances and the few tagged types below — never a
function, a module or a class outside :data:`TRUSTED_TYPES`.

The tree (``dump_state``) is JSON: ``None``, booleans, numbers and strings stand for themselves;
everything else is an object with a ``"~"`` tag:

- ``dict`` (string keys; ``pdict`` when every value is plain, so loading need not walk a
  vocabulary of a million entries), ``kvdict`` (other keys), ``list``/``plist``, ``tuple``,
  ``set``, ``frozenset``, ``bytes``, ``complex``, ``path``;
- ``array`` (a key of the ``.npz``, read with ``allow_pickle=False``), ``objarray`` (an object
  array, element by element), ``npscalar``, ``dtype``, ``type`` (a NumPy scalar type or a builtin
  number/str type), ``sparse`` (a SciPy matrix as its component arrays), ``randomstate`` and
  ``generator`` (NumPy random states as their state dicts);
- ``obj``: ``{"cls": "module.qualname", "state": …}``; ``new``: ``{"cls": …, "args": […]}`` for
  the few compiled classes of :data:`CONSTRUCTED_TYPES`;
- ``ref``: the node with the same ``id``, so an object shared by two owners (a head kept by its
  calibration and by its model) is one object again after loading.
"""

from __future__ import annotations

import base64
import dataclasses
import functools
import gzip
import hashlib
import importlib
import io
import json
import pathlib
import re
import types
import zipfile
from collections import OrderedDict
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import numpy as np
import scipy.sparse as sp

from prodcat.errors import BundleError
from prodcat.hashing import sha256_file

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
        "prodcat.model.safe_state.TRUSTED_TYPES)")


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


class _Encoder:
    def __init__(self) -> None:
        self.arrays: dict[str, np.ndarray] = {}
        self._array_keys: dict[int, str] = {}
        self._nodes: dict[int, dict] = {}   # id(object) -> its node, for shared references
        self._keep: list[Any] = []          # memoised objects stay alive, so no id is reused
        self._next_id = 0
        self._path: list[str] = ["model"]

    def fail(self, what: str) -> UnsafeStateError:
        return UnsafeStateError(f"cannot save {''.join(self._path)}: {what}; a bundle stores data, "
                                "never code")

    def encode(self, value: Any) -> Any:
        kind = type(value)
        if kind in _PLAIN:
            return value
        if kind is np.ndarray or isinstance(value, np.memmap):
            return self._array(value)
        if isinstance(value, np.generic):
            return self._npscalar(value)
        if not _memoised(value, kind):
            return self._node(value, kind)
        seen = self._nodes.get(id(value))
        if seen is not None:
            if "id" not in seen:
                seen["id"] = self._next_id
                self._next_id += 1
            return {TAG: "ref", "id": seen["id"]}
        # Registered before its contents are encoded: an object reachable from itself becomes a ref.
        node: dict = {}
        self._nodes[id(value)] = node
        self._keep.append(value)
        node.update(self._node(value, kind))
        return node

    def _node(self, value: Any, kind: type) -> dict:
        if kind is dict or kind is OrderedDict:
            return self._dict(value)
        if kind is list:
            if all(type(v) in _PLAIN for v in value):
                return {TAG: "plist", "v": list(value)}
            return {TAG: "list", "v": self._items(value)}
        if kind in (tuple, set, frozenset):
            return {TAG: kind.__name__, "v": self._items(value)}
        if kind is bytes:
            return {TAG: "bytes", "v": base64.b64encode(value).decode("ascii")}
        if kind is complex:
            return {TAG: "complex", "v": [value.real, value.imag]}
        if isinstance(value, pathlib.PurePath) and _PATH_TYPES.get(kind.__name__) is kind:
            return {TAG: "path", "cls": kind.__name__, "v": str(value)}
        if isinstance(value, np.dtype):
            return {TAG: "dtype", "v": self.encode(np.lib.format.dtype_to_descr(value))}
        if isinstance(value, type):
            name = class_name(value)
            if name not in _TRUSTED_VALUE_TYPES:
                raise self.fail(f"it is the class {name} (only NumPy scalar and builtin number "
                                "types can be stored as values)")
            return {TAG: "type", "v": name}
        if _SPARSE_TYPES.get(kind.__name__) is kind:
            return self._sparse(value)
        if kind is np.random.RandomState:
            return {TAG: "randomstate", "v": self.encode(value.get_state(legacy=True))}
        if kind is np.random.Generator:
            bit = type(value.bit_generator)
            if _BIT_GENERATORS.get(bit.__name__) is not bit:
                raise self.fail(f"its bit generator {class_name(bit)} is not supported")
            return {TAG: "generator", "bit": bit.__name__, "v": self.encode(value.bit_generator.state)}
        if isinstance(value, _FUNCTION_TYPES):
            raise self.fail(f"it is a {kind.__name__} ({value!r:.80})")
        if _constructed_types().get(class_name(kind)) is kind:
            return self._constructed(value, kind)
        return self._object(value, kind)

    def _constructed(self, value: Any, kind: type) -> dict:
        reduced = value.__reduce__()
        if not (isinstance(reduced, tuple) and len(reduced) == 2 and reduced[0] is kind
                and isinstance(reduced[1], tuple) and all(type(a) in _PLAIN for a in reduced[1])):
            raise self.fail(f"{class_name(kind)} no longer pickles as a call of its class")
        return {TAG: "new", "cls": class_name(kind), "args": list(reduced[1])}

    def _items(self, values) -> list:
        out = []
        for i, v in enumerate(values):
            self._path.append(f"[{i}]")
            out.append(self.encode(v))
            self._path.pop()
        return out

    def _entries(self, items) -> dict:
        out = {}
        for k, v in items:
            self._path.append(f".{k}" if self._path[-1] == "" else f"[{k!r}]")
            out[k] = self.encode(v)
            self._path.pop()
        return out

    def _dict(self, value: dict) -> dict:
        ordered = {"ordered": True} if type(value) is OrderedDict else {}
        if all(type(k) is str for k in value):
            if all(type(v) in _PLAIN for v in value.values()):
                return {TAG: "pdict", "v": dict(value), **ordered}
            return {TAG: "dict", "v": self._entries(value.items()), **ordered}
        items = []
        for k, v in value.items():
            self._path.append(f"[{k!r}]")
            items.append([self.encode(k), self.encode(v)])
            self._path.pop()
        return {TAG: "kvdict", "v": items, **ordered}

    def _array(self, value: np.ndarray) -> dict:
        if value.dtype.hasobject:
            if value.dtype != object:
                raise self.fail(f"it is an array of dtype {value.dtype} (objects inside records)")
            return {TAG: "objarray", "shape": list(value.shape), "v": self._items(value.ravel().tolist())}
        key = self._array_keys.get(id(value))
        if key is None:
            key = self._array_keys[id(value)] = f"a{len(self.arrays)}"
            self.arrays[key] = np.asarray(value)
            self._keep.append(value)
        return {TAG: "array", "k": key}

    def _npscalar(self, value: np.generic) -> dict:
        dtype = value.dtype
        if dtype.kind in "biu" or (dtype.kind == "f" and dtype.itemsize <= 8):
            return {TAG: "npscalar", "dtype": dtype.str, "v": value.item()}
        if dtype.kind == "U":
            return {TAG: "npscalar", "dtype": dtype.str, "v": str(value)}
        if dtype.hasobject:
            raise self.fail("it is a NumPy object scalar")
        return {TAG: "npscalar", "a": self._array(np.asarray(value))}

    def _sparse(self, value) -> dict:
        if value.format in ("csr", "csc", "bsr"):
            parts = {"data": value.data, "indices": value.indices, "indptr": value.indptr}
        else:
            parts = {"data": value.data, "row": value.row, "col": value.col}
        return {TAG: "sparse", "cls": type(value).__name__, "shape": list(value.shape),
                **{k: self._array(v) for k, v in parts.items()}}

    def _object(self, value: Any, kind: type) -> dict:
        _check_class(kind, "".join(self._path))
        if _rebuilt_by_reduce(kind):
            raise self.fail(f"{class_name(kind)} is pickled through __reduce__, which the safe "
                            "format cannot rebuild")
        state = _own_state(value)
        self._path.append("")  # the attributes of an object: ".name", not "['name']"
        try:
            if isinstance(state, dict):
                if not all(type(k) is str for k in state):
                    raise self.fail("its state has a non-string attribute name")
                encoded = {TAG: "dict", "v": self._entries(state.items())}
            else:
                encoded = self.encode(state)
        finally:
            self._path.pop()
        return {TAG: "obj", "cls": class_name(kind), "state": encoded}


def dump_state(obj: Any) -> tuple[dict, dict[str, np.ndarray]]:
    """``(tree, arrays)``: ``obj`` as a JSON-serialisable tree and the arrays it refers to.

    Raises :class:`UnsafeStateError` naming the attribute path of anything that is not data (a
    function, a lambda, an open file, a class outside the allowlist).
    """
    enc = _Encoder()
    tree = enc.encode(obj)
    return {"format": FORMAT, "format_version": FORMAT_VERSION, "root": tree}, enc.arrays


class _Decoder:
    def __init__(self, arrays: Mapping[str, np.ndarray]):
        self.arrays = arrays
        self._memo: dict[int, Any] = {}
        self._array_memo: dict[str, Any] = {}
        #: Every instance created, in order: the caller can check them (encoder specs…).
        self.instances: list[Any] = []

    def decode(self, node: Any) -> Any:
        if type(node) in _PLAIN:
            return node
        if type(node) is list:  # never written; a forged tree gets the same treatment as a tuple's
            return [self.decode(v) for v in node]
        if type(node) is not dict:
            raise UnsafeStateError(f"unexpected {type(node).__name__} in the stored state")
        tag = node.get(TAG)
        handler = _HANDLERS.get(tag) if isinstance(tag, str) else None
        if handler is None:
            raise UnsafeStateError(f"unknown node {str(tag)[:40]!r} in the stored state")
        return handler(self, node)

    def remember(self, node: dict, value: Any) -> Any:
        if "id" in node:
            if not isinstance(node["id"], int) or node["id"] in self._memo:
                raise UnsafeStateError("a stored state reuses an id")
            self._memo[node["id"]] = value
        return value

    def ref(self, node: dict) -> Any:
        try:
            return self._memo[node["id"]]
        except (KeyError, TypeError):
            raise UnsafeStateError("a stored state refers to an object defined nowhere before it") from None

    def array(self, node: dict) -> np.ndarray:
        key = node.get("k")
        if key in self._array_memo:
            return self._array_memo[key]
        if not isinstance(key, str) or key not in self.arrays:
            raise UnsafeStateError(f"the stored state refers to a missing array {str(key)[:40]!r}")
        value = self._array_memo[key] = self.arrays[key]
        return value

    def container(self, node: dict, make):
        values = node.get("v")
        if not isinstance(values, list):
            raise UnsafeStateError(f"a stored {node[TAG]} is malformed")
        return self.remember(node, make(self.decode(v) for v in values))

    def list_(self, node: dict) -> list:
        out = self.remember(node, [])
        values = node.get("v")
        if not isinstance(values, list):
            raise UnsafeStateError("a stored list is malformed")
        out.extend(self.decode(v) for v in values)
        return out

    def plain(self, node: dict, kind: type) -> Any:
        values = node.get("v")
        if not isinstance(values, kind):
            raise UnsafeStateError(f"a stored {node[TAG]} is malformed")
        if kind is dict and node.get("ordered"):
            values = OrderedDict(values)
        if kind is list:
            values = list(values)
        # A forged "plain" container holding tagged nodes stays inert data: nothing is decoded.
        return self.remember(node, values)

    def dict_(self, node: dict) -> dict:
        values = node.get("v")
        if not isinstance(values, dict):
            raise UnsafeStateError("a stored dict is malformed")
        out = self.remember(node, OrderedDict() if node.get("ordered") else {})
        for k, v in values.items():
            out[k] = self.decode(v)
        return out

    def kvdict(self, node: dict) -> dict:
        values = node.get("v")
        if not isinstance(values, list) or not all(isinstance(i, list) and len(i) == 2 for i in values):
            raise UnsafeStateError("a stored dict is malformed")
        out = self.remember(node, OrderedDict() if node.get("ordered") else {})
        for k, v in values:
            key = self.decode(k)
            try:
                out[key] = self.decode(v)
            except TypeError:
                raise UnsafeStateError("a stored dict has an unhashable key") from None
        return out

    def obj(self, node: dict) -> Any:
        cls = trusted_class(node.get("cls"))
        instance = cls.__new__(cls)
        self.remember(node, instance)
        state = self.decode(node.get("state"))
        if hasattr(instance, "__setstate__"):
            instance.__setstate__(state)
        elif isinstance(state, tuple) and len(state) == 2:
            plain, slots = state
            if plain:
                instance.__dict__.update(plain)
            for k, v in (slots or {}).items():
                object.__setattr__(instance, k, v)
        elif isinstance(state, dict):
            instance.__dict__.update(state)
        else:
            raise UnsafeStateError(f"the stored state of {class_name(cls)} is malformed")
        self.instances.append(instance)
        return instance

    def new(self, node: dict) -> Any:
        cls, args = _constructed_types().get(node.get("cls")), node.get("args")
        if cls is None or not (isinstance(args, list) and all(type(a) in _PLAIN for a in args)):
            raise UnsafeStateError(f"the stored state names {str(node.get('cls'))[:60]!r}, which "
                                   "may not be loaded")
        instance = cls(*args)
        self.instances.append(instance)
        return self.remember(node, instance)

    def objarray(self, node: dict) -> np.ndarray:
        shape, values = node.get("shape"), node.get("v")
        if not (isinstance(shape, list) and all(type(n) is int and n >= 0 for n in shape)
                and isinstance(values, list) and len(values) == int(np.prod(shape, dtype=np.int64))):
            raise UnsafeStateError("a stored object array is malformed")
        out = np.empty(len(values), dtype=object)
        for i, v in enumerate(values):
            out[i] = self.decode(v)
        return out.reshape(shape)

    def npscalar(self, node: dict) -> Any:
        if "a" in node:
            return self.decode(node["a"])[()]
        dtype = self.dtype_of(node.get("dtype"))
        if dtype.kind not in "biufU":
            raise UnsafeStateError("a stored NumPy scalar is malformed")
        try:
            return dtype.type(node.get("v"))
        except (TypeError, ValueError, OverflowError):
            raise UnsafeStateError("a stored NumPy scalar is malformed") from None

    @staticmethod
    def dtype_of(descr: Any) -> np.dtype:
        try:
            dtype = np.lib.format.descr_to_dtype(descr)
        except (TypeError, ValueError, KeyError):
            raise UnsafeStateError(f"a stored dtype {str(descr)[:40]!r} is malformed") from None
        return dtype

    def dtype(self, node: dict) -> np.dtype:
        return self.dtype_of(self.decode(node.get("v")))

    def type_(self, node: dict) -> type:
        try:
            return _TRUSTED_VALUE_TYPES[node.get("v")]
        except (KeyError, TypeError):
            raise UnsafeStateError(f"the stored state names the type {str(node.get('v'))[:60]!r}, "
                                   "which may not be loaded") from None

    def sparse(self, node: dict) -> Any:
        cls = _SPARSE_TYPES.get(node.get("cls"))
        shape = node.get("shape")
        if cls is None or not (isinstance(shape, list) and len(shape) == 2
                               and all(type(n) is int and n >= 0 for n in shape)):
            raise UnsafeStateError("a stored sparse matrix is malformed")
        try:
            if cls.__name__[:3] in ("csr", "csc", "bsr"):
                return self.remember(node, cls((self.decode(node["data"]), self.decode(node["indices"]),
                                                self.decode(node["indptr"])), shape=tuple(shape)))
            return self.remember(node, cls((self.decode(node["data"]), (self.decode(node["row"]),
                                                                        self.decode(node["col"]))),
                                           shape=tuple(shape)))
        except (KeyError, ValueError, TypeError) as exc:
            raise UnsafeStateError(f"a stored sparse matrix is malformed: {exc}") from None

    def randomstate(self, node: dict) -> np.random.RandomState:
        rs = np.random.RandomState()
        try:
            rs.set_state(self.decode(node.get("v")))
        except (TypeError, ValueError) as exc:
            raise UnsafeStateError(f"a stored random state is malformed: {exc}") from None
        return self.remember(node, rs)

    def generator(self, node: dict) -> np.random.Generator:
        bit = _BIT_GENERATORS.get(node.get("bit"))
        if bit is None:
            raise UnsafeStateError("a stored random generator is malformed")
        gen = bit()
        try:
            gen.state = self.decode(node.get("v"))
        except (TypeError, ValueError, KeyError) as exc:
            raise UnsafeStateError(f"a stored random generator is malformed: {exc}") from None
        return self.remember(node, np.random.Generator(gen))

    def path(self, node: dict) -> pathlib.PurePath:
        cls, value = _PATH_TYPES.get(node.get("cls")), node.get("v")
        if cls is None or not isinstance(value, str):
            raise UnsafeStateError("a stored path is malformed")
        return cls(value)

    def bytes_(self, node: dict) -> bytes:
        try:
            return base64.b64decode(node["v"], validate=True)
        except (KeyError, TypeError, ValueError):
            raise UnsafeStateError("stored bytes are malformed") from None

    def complex_(self, node: dict) -> complex:
        value = node.get("v")
        if not (isinstance(value, list) and len(value) == 2 and all(type(x) in (int, float) for x in value)):
            raise UnsafeStateError("a stored complex number is malformed")
        return complex(*value)


_HANDLERS = {
    "obj": _Decoder.obj,
    "ref": _Decoder.ref,
    "new": _Decoder.new,
    "array": _Decoder.array,
    "objarray": _Decoder.objarray,
    "npscalar": _Decoder.npscalar,
    "dtype": _Decoder.dtype,
    "type": _Decoder.type_,
    "sparse": _Decoder.sparse,
    "randomstate": _Decoder.randomstate,
    "generator": _Decoder.generator,
    "dict": _Decoder.dict_,
    "pdict": lambda d, node: d.plain(node, dict),
    "kvdict": _Decoder.kvdict,
    "list": _Decoder.list_,
    "plist": lambda d, node: d.plain(node, list),
    "tuple": lambda d, node: d.container(node, tuple),
    "set": lambda d, node: d.container(node, set),
    "frozenset": lambda d, node: d.container(node, frozenset),
    "path": _Decoder.path,
    "bytes": _Decoder.bytes_,
    "complex": _Decoder.complex_,
}


def load_state(tree: Any, arrays: Mapping[str, np.ndarray]) -> tuple[Any, list[Any]]:
    """The object :func:`dump_state` wrote, and every instance created on the way."""
    if not (isinstance(tree, dict) and tree.get("format") == FORMAT and "root" in tree):
        raise UnsafeStateError("the stored state is not a prodcat state")
    if tree.get("format_version") != FORMAT_VERSION:
        raise UnsafeStateError(f"stored state version {tree.get('format_version')!r} cannot be read "
                               f"(this prodcat reads version {FORMAT_VERSION}); retrain the model")
    decoder = _Decoder(arrays)
    try:
        root = decoder.decode(tree["root"])
    except RecursionError:
        raise UnsafeStateError("the stored state is nested too deeply") from None
    return root, decoder.instances


# --- files ------------------------------------------------------------------------------------


def write_state(obj: Any, tree_path: Path, arrays_path: Path, *, level: int = 3) -> None:
    """``obj`` as a gzipped JSON tree at ``tree_path`` and an ``.npz`` of its arrays.

    The tree records the arrays file's sha256, so the tree's own hash names the whole state.
    """
    tree, arrays = dump_state(obj)
    with zipfile.ZipFile(arrays_path, "w", zipfile.ZIP_DEFLATED, compresslevel=level) as zf:
        for key, arr in arrays.items():
            with zf.open(f"{key}.npy", "w", force_zip64=True) as fh:
                np.lib.format.write_array(fh, arr, allow_pickle=False)
    tree["arrays_sha256"] = sha256_file(arrays_path)
    # ASCII JSON: a lone surrogate in a vocabulary survives, where UTF-8 would refuse it.
    data = json.dumps(tree, ensure_ascii=True, separators=(",", ":")).encode("ascii")
    with open(tree_path, "wb") as raw, gzip.GzipFile(fileobj=raw, mode="wb", compresslevel=level,
                                                      mtime=0) as fh:
        fh.write(data)


def read_state(tree_bytes: bytes, arrays_bytes: bytes) -> tuple[Any, list[Any]]:
    """The object :func:`write_state` wrote, from the two files' bytes (read once, after their
    hashes were checked, so what is checked is what is loaded)."""
    try:
        tree = json.loads(gzip.decompress(tree_bytes))
    except (OSError, EOFError, ValueError, UnicodeDecodeError) as exc:
        raise UnsafeStateError(f"the stored state is corrupt: {exc}") from None
    if not isinstance(tree, dict) or tree.get("arrays_sha256") != hashlib.sha256(arrays_bytes).hexdigest():
        raise UnsafeStateError("the stored arrays are not the ones the stored state was written with")
    try:
        with np.load(io.BytesIO(arrays_bytes), allow_pickle=False) as npz:
            arrays = {name: npz[name] for name in npz.files}
    except (OSError, ValueError, EOFError, zipfile.BadZipFile) as exc:
        raise UnsafeStateError(f"the stored arrays are corrupt or not plain arrays: {exc}") from None
    return load_state(tree, arrays)
