"""Where batch work runs: in this process, or on a Dask cluster (:mod:`prodcat.batch.cluster`).

An :class:`Engine` runs module-level functions on partitions and hands back futures. What a
function needs that is expensive to load (a model bundle, an image encoder) is a
:class:`Resource`: the engine installs it on every worker once (a Dask ``WorkerPlugin`` on a
cluster), and a worker loads it on first use and keeps it for the life of its process, so a
bundle is unpickled once per worker, not once per partition.

This module does not import Dask: the in-process engine is what runs when Dask is absent.
"""

from __future__ import annotations

import concurrent.futures
import os
import resource as _rusage
import sys
import tempfile
import threading
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from prodcat.errors import BundleError, ConfigError
from prodcat.hashing import sha256_file

#: The optional extra that brings Dask.
EXTRA_HINT = "pip install 'prodcat[batch]'"


def dask_available() -> bool:
    import importlib.util

    return (importlib.util.find_spec("dask") is not None
            and importlib.util.find_spec("distributed") is not None)


def usable_cpus() -> int:
    if hasattr(os, "sched_getaffinity"):
        return max(1, len(os.sched_getaffinity(0)))
    return max(1, os.cpu_count() or 1)


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


# ---------------------------------------------------------------------------------------------
# resources: loaded once per worker process


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
class Resource:
    """Something a worker loads once: subclasses say how (``load``) and name it (``key``)."""

    key: str
    #: Files shipped to workers that may not see ``path`` (no shared disk); None: read ``path``.
    files: dict[str, bytes] | None = field(default=None, repr=False)

    def load(self, scratch: str | None) -> Any:  # pragma: no cover - abstract
        raise NotImplementedError


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


# ---------------------------------------------------------------------------------------------
# engines


class Engine:
    """Runs ``fn(resource, data, *args)`` tasks; subclasses choose where."""

    #: Tasks that can run at the same time (kept busy by :func:`run_bounded`).
    slots: int = 1
    #: One line for the user: where the work runs.
    description: str = ""
    #: The Dask dashboard, when there is one.
    dashboard: str | None = None
    #: Whether resources travel with their files (workers may not share this disk).
    ship: bool = False
    #: Threads an image encoder may use in one task (None: its default).
    threads_per_task: int | None = None

    def install(self, res: Resource) -> None:
        raise NotImplementedError

    def warm(self, key: str) -> None:
        """Load resource ``key`` on every worker now (workers that join later load it on first use)."""
        raise NotImplementedError

    def submit(self, key: str, fn: Callable[..., Any], data: Any, *args: Any, name: str = "") -> Any:
        raise NotImplementedError

    def wait_any(self, futures: set[Any]) -> tuple[set[Any], set[Any]]:
        raise NotImplementedError

    def result(self, future: Any) -> Any:
        return future.result()

    def worker_stats(self) -> list[dict[str, Any]]:
        return [worker_stats()]

    def close(self) -> None:
        pass

    def __enter__(self) -> Engine:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()


class InProcessEngine(Engine):
    """Tasks run one at a time in a thread of this process (no Dask needed)."""

    def __init__(self) -> None:
        self._pool = concurrent.futures.ThreadPoolExecutor(max_workers=1, thread_name_prefix="prodcat-batch")
        self._keys: list[str] = []
        self.slots = 1
        self.description = "this process (no Dask)"

    def install(self, res: Resource) -> None:
        install(res)
        self._keys.append(res.key)

    def warm(self, key: str) -> None:
        get_resource(key)

    def submit(self, key, fn, data, *args, name=""):
        return self._pool.submit(call_with, key, fn, data, *args)

    def wait_any(self, futures):
        done, pending = concurrent.futures.wait(futures, return_when=concurrent.futures.FIRST_COMPLETED)
        return set(done), set(pending)

    def close(self) -> None:
        self._pool.shutdown(wait=True, cancel_futures=True)
        for key in self._keys:
            uninstall(key)


def open_engine(scheduler: str | None, workers: int | None, *, echo: Callable[[str], None] = print,
                quiet_fallback: bool = False) -> Engine:
    """The engine asked for: ``scheduler`` (a running Dask cluster), ``workers`` local Dask worker
    processes, ``workers=0`` this process; neither: a local Dask cluster with one worker per CPU
    (this process when Dask is not installed)."""
    if workers == 0:
        if scheduler is not None:
            raise ConfigError("--workers 0 runs in this process; it cannot be combined with --scheduler")
        return InProcessEngine()
    if not dask_available():
        if scheduler is not None or workers is not None:
            raise ConfigError(f"--scheduler and --workers need Dask: {EXTRA_HINT}")
        if not quiet_fallback:
            echo(f"note: Dask is not installed ({EXTRA_HINT}); running in this process")
        return InProcessEngine()
    from prodcat.batch.cluster import DaskEngine

    return DaskEngine.connect(scheduler, workers)


def run_bounded(engine: Engine, tasks: Iterable[tuple[Callable[[], Any], Callable[[Any], None]]],
                window: int | None = None) -> None:
    """Submit tasks lazily, at most ``window`` in flight (twice the engine's slots, at least 4, by default),
    handing each result to its callback as it completes: the input is read as the work goes,
    so neither this process nor a worker ever holds more than a few partitions.

    ``tasks`` yields ``(submit, on_done)``: ``submit()`` returns a future, ``on_done(result)``
    consumes it. An exception in a task propagates (after the other tasks are cancelled).
    """
    window = window or max(4, 2 * engine.slots)
    pending: dict[Any, Callable[[Any], None]] = {}

    def drain(until: int) -> None:
        while len(pending) > until:
            done, _ = engine.wait_any(set(pending))
            for future in done:
                callback = pending.pop(future)
                callback(engine.result(future))

    try:
        for submit, on_done in tasks:
            pending[submit()] = on_done
            drain(window - 1)
        drain(0)
    except BaseException:
        for future in pending:
            future.cancel()
        raise
