"""What batch tasks need that is expensive to load (a model bundle, an image encoder): a
:class:`Resource`, installed on every worker once and loaded there by the first task that asks.

An engine (:mod:`prodcat.batch.engine`, :mod:`prodcat.batch.cluster`) installs resources; this
module is the worker side, so it knows no engine: on a Dask worker it runs inside the worker
process, where a bundle is then unpickled once per process, not once per partition.
"""

from __future__ import annotations

import os
import resource as _rusage
import sys
import tempfile
import threading
from abc import ABC, abstractmethod
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from prodcat.errors import BundleError, ConfigError
from prodcat.hashing import sha256_file


def peak_rss_mb() -> float:
    """This process's own peak resident memory in MiB (Linux ``VmHWM``, else ``ru_maxrss``)."""
    try:
        for line in Path("/proc/self/status").read_text().splitlines():
            if line.startswith("VmHWM:"):
                return int(line.split()[1]) / 1024
    except OSError:
        pass
    peak = _rusage.getrusage(_rusage.RUSAGE_SELF).ru_maxrss
    return peak / (1024 * 1024) if sys.platform == "darwin" else peak / 1024


def files_of(folder: Path) -> dict[str, bytes]:
    """Every file under ``folder`` by relative path: a bundle shipped to workers without a shared disk."""
    return {str(p.relative_to(folder)): p.read_bytes() for p in sorted(folder.rglob("*")) if p.is_file()}


def materialise(files: dict[str, bytes], parent: str | os.PathLike | None, prefix: str) -> Path:
    """Write shipped ``files`` into a new folder under ``parent`` (a worker's scratch space)."""
    root = Path(tempfile.mkdtemp(prefix=prefix, dir=parent))
    for rel, data in files.items():
        target = root / rel
        target.parent.mkdir(parents=True, exist_ok=True)
        target.write_bytes(data)
    return root


def bundle_fingerprint(path: str | os.PathLike) -> str:
    """The sha256 of a bundle's ``manifest.json``: it records the sha256 of every part, so it
    names the whole bundle."""
    from prodcat.model.bundle import MANIFEST, read_manifest

    read_manifest(path)  # a missing or incompatible bundle fails here, clearly
    return sha256_file(Path(path) / MANIFEST)


@dataclass
class Resource(ABC):
    """Something a worker loads once: subclasses say how (``load``) and name it (``key``)."""

    key: str
    #: Files shipped to workers that may not see ``path`` (no shared disk); None: read ``path``.
    files: dict[str, bytes] | None = field(default=None, repr=False)

    @abstractmethod
    def load(self, scratch: str | None) -> Any:
        """The loaded thing; ``scratch`` is a folder of the worker's for files shipped with it."""


@dataclass
class BundleResource(Resource):
    """A model bundle; ``threads`` caps the image encoder's threads on each worker."""

    path: str = ""
    fingerprint: str = ""
    threads: int | None = None

    @classmethod
    def of(cls, path: str | os.PathLike, *, ship: bool = False, threads: int | None = None) -> BundleResource:
        fingerprint = bundle_fingerprint(path)
        return cls(key=f"bundle-{fingerprint[:16]}", files=files_of(Path(path)) if ship else None,
                   path=str(Path(path).resolve()), fingerprint=fingerprint, threads=threads)

    def load(self, scratch: str | None) -> Any:
        from prodcat.model import load_bundle
        from prodcat.model.bundle import MANIFEST

        path = Path(self.path)
        local = path.is_dir() and (path / MANIFEST).is_file() and sha256_file(path / MANIFEST) == self.fingerprint
        if not local:
            if self.files is None:
                raise BundleError(f"the model bundle {self.path} is not readable on this worker (or "
                                  "differs from the client's copy); give the workers the same path")
            path = materialise(self.files, scratch, "prodcat-bundle-")
        model, _ = load_bundle(path)
        if sha256_file(path / MANIFEST) != self.fingerprint:
            raise BundleError(f"the model bundle {self.path} changed while the job was running")
        image = getattr(model, "image_", None)
        encoder = getattr(image, "encoder_", None) if image is not None else None
        if encoder is not None and self.threads:
            encoder.n_threads = self.threads
        return model


@dataclass
class EncoderResource(Resource):
    """An image encoder by registered name, with its ONNX export."""

    name: str = ""
    threads: int | None = None

    @classmethod
    def of(cls, name: str, *, ship: bool = False, threads: int | None = None) -> EncoderResource:
        from prodcat.image import create_encoder

        encoder = create_encoder(name)
        onnx = encoder.ensure_export()  # made here, once, rather than by every worker
        files = None
        if ship:
            files = {f"encoders/{onnx.name}": onnx.read_bytes(),
                     f"encoders/{encoder.hash_path.name}": encoder.hash_path.read_bytes()}
        return cls(key=f"encoder-{encoder.encoder_id}", files=files, name=name, threads=threads)

    def load(self, scratch: str | None) -> Any:
        from prodcat.image import create_encoder

        cache_dir = None if self.files is None else materialise(self.files, scratch, "prodcat-encoder-")
        encoder = create_encoder(self.name, cache_dir=cache_dir, n_threads=self.threads)
        if encoder.export_status() != "ok":
            encoder.ensure_export()  # exports (with PyTorch) or says what is missing
        return encoder


_REGISTERED: dict[str, tuple[Resource, str | None]] = {}
_LOADED: dict[str, Any] = {}
_LOAD_COUNTS: dict[str, int] = {}
_LOCK = threading.Lock()


def install(res: Resource, scratch: str | None = None) -> None:
    """Make ``res`` available to tasks in this process (loaded lazily, on first use)."""
    with _LOCK:
        _REGISTERED[res.key] = (res, scratch)


def uninstall(key: str) -> None:
    with _LOCK:
        _REGISTERED.pop(key, None)
        _LOADED.pop(key, None)


def get_resource(key: str) -> Any:
    """The loaded resource ``key``: loaded by the first task that asks, then shared."""
    with _LOCK:
        if key in _LOADED:
            return _LOADED[key]
        if key not in _REGISTERED:
            raise ConfigError(f"batch resource {key} was not installed on this worker")
        res, scratch = _REGISTERED[key]
        # Loading under the lock: threads of one worker wait for the one load.
        _LOADED[key] = res.load(scratch)
        _LOAD_COUNTS[key] = _LOAD_COUNTS.get(key, 0) + 1
        return _LOADED[key]


def preload(key: str) -> int:
    """Load resource ``key`` in this worker now; returns the worker's pid (not the resource)."""
    get_resource(key)
    return os.getpid()


def load_counts() -> dict[str, int]:
    """How many times each resource was loaded in this process (1 per worker process)."""
    with _LOCK:
        return dict(_LOAD_COUNTS)


def worker_stats() -> dict[str, Any]:
    """What a worker reports at the end of a job: its peak memory and resource loads."""
    return {"pid": os.getpid(), "peak_rss_mb": round(peak_rss_mb(), 1), "loads": load_counts()}


def call_with(key: str, fn: Callable[..., Any], *args: Any) -> Any:
    """Run ``fn(resource, *args)`` on a worker: what every batch task is."""
    return fn(get_resource(key), *args)
