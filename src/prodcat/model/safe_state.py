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
import gzip
import hashlib
import io
import json
import pathlib
import zipfile
from collections import OrderedDict
from pathlib import Path
from typing import Any

import numpy as np

from prodcat.hashing import sha256_file
from prodcat.model.state_reader import load_state  # noqa: F401  (the reading half)
from prodcat.model.trust import (  # noqa: F401  (re-exported: the format's public names)
    _BIT_GENERATORS,
    _FUNCTION_TYPES,
    _MODULE,
    _PATH_TYPES,
    _PLAIN,
    _QUALNAME,
    _SPARSE_TYPES,
    _TRUSTED_VALUE_TYPES,
    CONSTRUCTED_TYPES,
    FORMAT,
    FORMAT_VERSION,
    PRODCAT_PACKAGES,
    TAG,
    TRUSTED_TYPES,
    UnsafeStateError,
    _check_class,
    _constructed_types,
    _memoised,
    _own_state,
    _prodcat_class_allowed,
    _prodcat_module_allowed,
    _rebuilt_by_reduce,
    _resolve,
    _third_party_types,
    class_name,
    trusted_class,
)


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
