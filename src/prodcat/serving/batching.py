"""Micro-batching: concurrent requests share one model call, off the event loop.

One listing costs the text model about 8 ms, 32 listings about 10 ms: the fixed cost of a call
dominates. So requests are queued, and a single consumer hands *everything waiting* (up to
``max_batch``) to the model on a dedicated inference thread. Nothing waits on a timer: alone, a
request is served at once; under load, the requests that arrive during one model call form the
next batch. The event loop only moves items between the queue and futures.
"""

from __future__ import annotations

import asyncio
import collections
import concurrent.futures
import contextlib
import logging
import time
from collections.abc import Callable, Sequence
from typing import Generic, TypeVar

from prodcat.serving.errors import ServingError

T = TypeVar("T")
R = TypeVar("R")

log = logging.getLogger("prodcat.serving")


class MicroBatcher(Generic[T, R]):
    """``await submit(item)`` → ``fn([... item ...])[i]``; ``fn`` may return an exception per item.

    ``on_batch(size, seconds)`` is told about each model call (for metrics).
    """

    def __init__(self, fn: Callable[[Sequence[T]], Sequence[R | Exception]], *, max_batch: int = 64,
                 threads: int = 1, on_batch: Callable[[int, float], None] | None = None):
        self.fn = fn
        self.max_batch = max_batch
        self.on_batch = on_batch
        # One thread by default: the model computes under the GIL for the most part, so more
        # threads would only add contention; batching gives the throughput instead.
        self._executor = concurrent.futures.ThreadPoolExecutor(max_workers=threads,
                                                               thread_name_prefix="prodcat-infer")
        self._threads = threads
        self._queue: collections.deque[tuple[T, asyncio.Future]] = collections.deque()
        self._wakeup: asyncio.Event | None = None
        self._workers: list[asyncio.Task] = []
        self._closed = False

    async def start(self) -> None:
        self._wakeup = asyncio.Event()
        self._workers = [asyncio.create_task(self._run(), name=f"prodcat-batcher-{i}")
                         for i in range(self._threads)]

    async def submit(self, item: T) -> R:
        if self._closed or self._wakeup is None:
            raise ServingError(503, "not_ready", "the model is not loaded (starting or shutting down)")
        fut: asyncio.Future = asyncio.get_running_loop().create_future()
        self._queue.append((item, fut))
        self._wakeup.set()
        return await fut

    @property
    def pending(self) -> int:
        return len(self._queue)

    async def _run(self) -> None:
        loop = asyncio.get_running_loop()
        assert self._wakeup is not None
        while True:
            await self._wakeup.wait()
            self._wakeup.clear()
            while self._queue:
                batch = []
                while self._queue and len(batch) < self.max_batch:
                    item, fut = self._queue.popleft()
                    if not fut.done():  # a client that went away needs no answer
                        batch.append((item, fut))
                if not batch:
                    continue
                if self._queue:  # let a sibling worker take the rest
                    self._wakeup.set()
                t0 = time.perf_counter()
                try:
                    results = await loop.run_in_executor(self._executor, self.fn, [i for i, _ in batch])
                except asyncio.CancelledError:
                    for _, fut in batch:
                        if not fut.done():
                            fut.set_exception(ServingError(503, "not_ready", "the server is shutting down"))
                    raise
                except Exception as exc:
                    log.exception("model call failed for a batch of %d", len(batch))
                    results = [exc] * len(batch)
                if self.on_batch is not None:
                    self.on_batch(len(batch), time.perf_counter() - t0)
                for (_, fut), res in zip(batch, results, strict=True):
                    if fut.done():
                        continue
                    if isinstance(res, Exception):
                        fut.set_exception(res)
                    else:
                        fut.set_result(res)

    async def stop(self, drain_seconds: float = 10.0) -> None:
        """Refuse new work, finish what is queued (for up to ``drain_seconds``), end the thread."""
        self._closed = True
        deadline = asyncio.get_running_loop().time() + drain_seconds
        while self._queue and asyncio.get_running_loop().time() < deadline:
            await asyncio.sleep(0.01)
        for task in self._workers:
            task.cancel()
        for task in self._workers:
            with contextlib.suppress(asyncio.CancelledError, Exception):
                await task
        while self._queue:
            _, fut = self._queue.popleft()
            if not fut.done():
                fut.set_exception(ServingError(503, "not_ready", "the server is shutting down"))
        self._executor.shutdown(wait=True, cancel_futures=True)
