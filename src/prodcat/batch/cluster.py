"""The Dask engine: a local cluster started for the job, or a running one (``--scheduler``).

Needs the ``batch`` extra (``dask[distributed]``). Each :class:`~prodcat.batch.resources.Resource`
travels to the workers as a ``WorkerPlugin``, also to workers that join (or restart) later; a
worker loads it on first use, once. Partitions are scattered to the workers by the client and
results come back to it, so the workers need no access to the client's output folder or
embedding cache. Model bundles and encoders are read from the same path when the worker sees
it, and shipped with the plugin otherwise (``--scheduler``).
"""

from __future__ import annotations

import contextlib
import importlib.util
import logging
import signal
from collections.abc import Iterator
from typing import Any

import dask
from distributed import Client, LocalCluster, WorkerPlugin, as_completed
from distributed.client import FutureCancelledError

from prodcat.batch.engine import Engine
from prodcat.batch.resources import Resource, call_with, install, preload, uninstall, worker_stats
from prodcat.errors import ConfigError, ProdcatError
from prodcat.system import usable_cpus


class ResourcePlugin(WorkerPlugin):
    """Installs one resource on each worker; the worker loads it when a task first asks."""

    idempotent = True

    def __init__(self, res: Resource):
        self.res = res

    def setup(self, worker) -> None:
        install(self.res, worker.local_directory)

    def teardown(self, worker) -> None:
        uninstall(self.res.key)


class DaskEngine(Engine):
    """Tasks run on Dask workers; ``slots`` is the cluster's total worker threads."""

    def __init__(self, client: Client, cluster: LocalCluster | None, *, ship: bool,
                 threads_per_task: int | None, description: str):
        self.client = client
        self.cluster = cluster
        self.ship = ship
        #: Threads an image encoder may use per worker (None: its default).
        self.threads_per_task = threads_per_task
        self.slots = max(1, sum(client.nthreads().values()))
        self.description = description
        self.dashboard = _dashboard(client, local=cluster is not None)
        self._data: dict[str, Any] = {}
        self._completed = as_completed(loop=client.loop)
        self._plugins: list[str] = []

    @classmethod
    def connect(cls, scheduler: str | None = None, workers: int | None = None, *,
                processes: bool = True) -> DaskEngine:
        """Connect to ``scheduler``, or start a local cluster of ``workers`` single-threaded
        worker processes (default: one per usable CPU)."""
        if scheduler is not None:
            if workers is not None:
                raise ConfigError("--workers starts a local cluster; with --scheduler the cluster "
                                  "decides how many workers there are")
            try:
                # Dask's own connect timeout (distributed.comm.timeouts.connect, 30 s by default).
                client = Client(scheduler, set_as_default=False)
            except (OSError, TimeoutError) as exc:
                raise ConfigError(f"cannot reach the Dask scheduler at {scheduler}: {exc}") from None
            n = len(client.nthreads())
            if n == 0:
                client.close()
                raise ConfigError(f"the Dask cluster at {scheduler} has no workers")
            return cls(client, None, ship=True, threads_per_task=None,
                       description=f"Dask cluster at {scheduler} ({n} workers, "
                                   f"{sum(client.nthreads().values())} threads)")
        n = workers or usable_cpus()
        # onnxruntime and liblinear do best with one task per process: parallelism comes from
        # processes; an image encoder gets this process's share of the CPUs.
        # Dask starts workers with MALLOC_TRIM_THRESHOLD_=65536, which also turns off glibc's
        # adaptive mmap threshold: every decoded photo's buffers are then mmapped and unmapped,
        # and photo batches ran at about two thirds of the speed (page faults, system time).
        with dask.config.set({"distributed.nanny.pre-spawn-environ.MALLOC_TRIM_THRESHOLD_": None}), \
                _children_ignore_ctrl_c():
            cluster = LocalCluster(n_workers=n, threads_per_worker=1, processes=processes,
                                   dashboard_address=":0" if _has_bokeh() else None,
                                   worker_dashboard_address=None, silence_logs=logging.ERROR)
        client = Client(cluster, set_as_default=False)
        kind = ("process" if processes else "thread") + ("es" if n > 1 and processes else "s" if n > 1 else "")
        return cls(client, cluster, ship=False, threads_per_task=max(1, usable_cpus() // n),
                   description=f"local Dask cluster ({n} worker {kind} × 1 thread)")

    def install(self, res: Resource) -> None:
        name = f"prodcat-{res.key}"
        self.client.register_plugin(ResourcePlugin(res), name=name)
        self._plugins.append(name)

    def warm(self, key: str) -> None:
        # One load task pinned to each worker, run in its task thread (not its event loop).
        futures = [self.client.submit(preload, key, workers=[addr], allow_other_workers=False,
                                      pure=False, key=f"prodcat-load-{key[:24]}-{i}")
                   for i, addr in enumerate(self.client.nthreads())]
        try:
            for future in futures:
                future.result()
        finally:
            for future in futures:
                future.release()

    def submit(self, key, fn, data, *args, name=""):
        [scattered] = self.client.scatter([data], hash=False)
        future = self.client.submit(call_with, key, fn, scattered, *args, pure=False,
                                    key=f"{name or fn.__name__}-{scattered.key[-12:]}")
        self._data[future.key] = scattered  # released when the task's result is taken
        self._completed.add(future)
        return future

    def wait_any(self, futures):
        # Every submitted future is tracked by one as_completed (bound to this client's loop,
        # not to a default client): the next finished one, and any others finished by then.
        done = {next(self._completed)}
        done.update(f for f in self._completed.next_batch(block=False))
        return done, set(futures) - done

    def result(self, future):
        from distributed.scheduler import KilledWorker

        try:
            return future.result()
        except KilledWorker as exc:
            raise ProdcatError(f"a worker died on every try of {future.key} (out of memory? try a "
                               f"smaller --partition-rows): {exc}") from None
        except FutureCancelledError as exc:
            raise ProdcatError(f"the cluster cancelled {future.key}: {exc}") from None
        finally:
            self._data.pop(future.key, None)
            future.release()

    def worker_stats(self) -> list[dict[str, Any]]:
        stats = self.client.run(worker_stats)
        return [{"worker": addr, **s} for addr, s in sorted(stats.items())]

    def close(self) -> None:
        self._data.clear()
        try:
            if self.cluster is None:
                for name in self._plugins:
                    # The cluster outlives the job: unregistering is best effort.
                    with contextlib.suppress(Exception):
                        self.client.unregister_worker_plugin(name)
            self.client.close()
        finally:
            if self.cluster is not None:
                self.cluster.close()


@contextlib.contextmanager
def _children_ignore_ctrl_c() -> Iterator[None]:
    """Worker processes started inside ignore SIGINT.

    Ctrl-C in a terminal signals the whole process group: each worker process would die of its
    own KeyboardInterrupt and print a traceback, while this process is stopping the cluster
    anyway (finished partitions are kept; running the job again resumes it). A process
    started with SIGINT ignored keeps it ignored (Python only installs its handler over the
    default). Ctrl-C is ignored for the second or two the cluster takes to start.
    """
    try:
        previous = signal.signal(signal.SIGINT, signal.SIG_IGN)
    except ValueError:  # not the main thread: signals are not ours to change
        yield
        return
    try:
        yield
    finally:
        signal.signal(signal.SIGINT, previous)


def _has_bokeh() -> bool:
    return importlib.util.find_spec("bokeh") is not None


def _dashboard(client: Client, *, local: bool) -> str | None:
    """The dashboard link; a local cluster has a dashboard only with bokeh installed."""
    if local and not _has_bokeh():
        return None
    try:
        info = client.scheduler_info()
        return client.dashboard_link if "dashboard" in info.get("services", {}) else None
    except Exception:  # informative only
        return None
