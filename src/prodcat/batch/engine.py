"""Where batch work runs: the :class:`Engine` interface, the in-process engine, and the bounded
submission loop every job uses.

An engine runs module-level functions on partitions and hands back futures. What a function
needs that is expensive to load is a :class:`~prodcat.batch.resources.Resource`: the engine
installs it on every worker once. The Dask engine is :mod:`prodcat.batch.cluster` (it imports
this module, never the other way round); :func:`prodcat.batch.runner.open_engine` picks one.

This module does not import Dask: the in-process engine is what runs when Dask is absent.
"""

from __future__ import annotations

import concurrent.futures
import importlib.util
from abc import ABC, abstractmethod
from collections.abc import Callable, Iterable
from typing import Any

from prodcat.batch.resources import (
    Resource,
    call_with,
    get_resource,
    install,
    uninstall,
    worker_stats,
)

#: The optional extra that brings Dask.
EXTRA_HINT = "pip install 'prodcat[batch]'"


def dask_available() -> bool:
    return importlib.util.find_spec("dask") is not None and importlib.util.find_spec("distributed") is not None


class Engine(ABC):
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

    @abstractmethod
    def install(self, res: Resource) -> None:
        """Make ``res`` available to every worker, including workers that join later."""

    @abstractmethod
    def warm(self, key: str) -> None:
        """Load resource ``key`` on every worker now (workers that join later load it on first use)."""

    @abstractmethod
    def submit(self, key: str, fn: Callable[..., Any], data: Any, *args: Any, name: str = "") -> Any:
        """Start ``fn(resource key, data, *args)`` on a worker; a future of its result."""

    @abstractmethod
    def wait_any(self, futures: set[Any]) -> tuple[set[Any], set[Any]]:
        """Block until at least one of ``futures`` is done: ``(done, pending)``."""

    def result(self, future: Any) -> Any:
        return future.result()

    def worker_stats(self) -> list[dict[str, Any]]:
        return [worker_stats()]

    def close(self) -> None:  # noqa: B027 - nothing to release unless a subclass holds something
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
