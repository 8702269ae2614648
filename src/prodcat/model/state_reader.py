"""Reading bundle state back: the JSON tree and arrays of :mod:`prodcat.model.safe_state` →
objects, instantiating only the classes :mod:`prodcat.model.trust` allows."""

from __future__ import annotations

import base64
import pathlib
from collections import OrderedDict
from collections.abc import Mapping
from typing import Any

import numpy as np

from prodcat.model.trust import (
    _BIT_GENERATORS,
    _PATH_TYPES,
    _PLAIN,
    _SPARSE_TYPES,
    _TRUSTED_VALUE_TYPES,
    FORMAT,
    FORMAT_VERSION,
    TAG,
    UnsafeStateError,
    _constructed_types,
    class_name,
    trusted_class,
)


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
