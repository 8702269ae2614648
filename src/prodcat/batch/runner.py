"""Running a batch job on an engine: which engine (:func:`open_engine`), and the loop every job
shares (:func:`run_partitions`): install and warm the job's resource, submit the partitions with
a bounded window under a progress bar, and time it all.
"""

from __future__ import annotations

import sys
import time
from collections.abc import Callable, Iterable
from typing import Any, Protocol

import prodcat.batch.engine as _engines
from prodcat.batch.engine import EXTRA_HINT, Engine, InProcessEngine, run_bounded
from prodcat.batch.resources import Resource, peak_rss_mb
from prodcat.errors import ConfigError

#: ``(submit, on_done)`` pairs, as :func:`~prodcat.batch.engine.run_bounded` takes them.
Tasks = Iterable[tuple[Callable[[], Any], Callable[[Any], None]]]


class Timed(Protocol):
    """What :func:`run_partitions` fills in on a job's summary."""

    startup_s: float
    seconds: float
    client_peak_rss_mb: float | None
    workers: list[dict[str, Any]]


def open_engine(scheduler: str | None, workers: int | None, *, echo: Callable[[str], None] = print,
                quiet_fallback: bool = False) -> Engine:
    """The engine asked for: ``scheduler`` (a running Dask cluster), ``workers`` local Dask worker
    processes, ``workers=0`` this process; neither: a local Dask cluster with one worker per CPU
    (this process when Dask is not installed)."""
    if workers == 0:
        if scheduler is not None:
            raise ConfigError("--workers 0 runs in this process; it cannot be combined with --scheduler")
        return InProcessEngine()
    # Looked up on the module: tests stand in for a machine without Dask by replacing it there.
    if not _engines.dask_available():
        if scheduler is not None or workers is not None:
            raise ConfigError(f"--scheduler and --workers need Dask: {EXTRA_HINT}")
        if not quiet_fallback:
            echo(f"note: Dask is not installed ({EXTRA_HINT}); running in this process")
        return InProcessEngine()
    from prodcat.batch.cluster import DaskEngine  # imports Dask: only when it is wanted

    return DaskEngine.connect(scheduler, workers)


def run_partitions(engine: Engine, resource: Callable[[Engine], Resource],
                   tasks: Callable[[str, Any], Tasks], summary: Timed, *, heading: str, total: int,
                   desc: str, started: float, progress: bool | None = None,
                   echo: Callable[[str], None] = print) -> None:
    """Run a job's tasks on ``engine`` (closed at the end) and record its timings in ``summary``.

    ``resource(engine)`` builds what the tasks need (shipped or not, as the engine says);
    ``tasks(key, bar)`` yields the ``(submit, on_done)`` pairs, given the installed resource's key
    and the progress bar over ``total`` rows to advance. ``started`` is when the job began:
    ``summary.startup_s`` counts from there to the resource loaded on every worker.
    """
    from tqdm.auto import tqdm

    with engine:
        echo(f"{heading} on {engine.description}"
             + (f"; dashboard: {engine.dashboard}" if engine.dashboard else ""))
        res = resource(engine)
        engine.install(res)
        engine.warm(res.key)  # each worker loads it once, now: a broken bundle or encoder fails here
        summary.startup_s = round(time.perf_counter() - started, 2)
        # disable=None: a bar on a terminal only.
        bar = tqdm(total=total, desc=desc, unit="listing", file=sys.stderr,
                   disable=None if progress is None else not progress, dynamic_ncols=True)
        loop_started = time.perf_counter()
        try:
            run_bounded(engine, tasks(res.key, bar))
        finally:
            bar.close()
        summary.seconds = time.perf_counter() - loop_started
        summary.workers = engine.worker_stats()
    summary.client_peak_rss_mb = round(peak_rss_mb(), 1)
