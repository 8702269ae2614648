"""Filling the OCR cache for a catalogue's photos on a cluster: ``prodcat ocr --workers N``.

The same shape as :mod:`prodcat.batch.embedding`: the client streams the catalogue, reads and
hashes each photo, and sends only the photos the OCR cache lacks, once each, to the workers,
which run the OCR engine (loaded once per worker) and send back the results as plain dicts
(JSON-ready). The client writes them into the OCR cache, so workers need neither the photos'
folder nor the cache file, and an interrupted run started again skips what was stored.
"""

from __future__ import annotations

import time
from collections import Counter
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from prodcat.batch.engine import Engine
from prodcat.batch.partitions import PhotoJobSummary, open_source, photo_tasks
from prodcat.batch.resources import Resource
from prodcat.batch.runner import open_engine, run_partitions

DEFAULT_PARTITION_ROWS = 64


@dataclass
class OcrEngineResource(Resource):
    """An OCR engine by registered name and parameters (its weights ship in its package)."""

    name: str = ""
    params: dict[str, Any] = field(default_factory=dict)

    @classmethod
    def of(cls, name: str, params: dict[str, Any] | None = None) -> OcrEngineResource:
        from prodcat.ocr import create_engine

        engine = create_engine(name, **(params or {}))  # an unknown name or option fails here
        return cls(key=f"ocr-{engine.engine_id}", name=name, params=dict(params or {}))

    def load(self, scratch: str | None) -> Any:
        from prodcat.ocr import create_engine

        engine = create_engine(self.name, **self.params)
        engine.load()  # a worker without the engine installed fails at warm-up, clearly
        return engine


def ocr_blobs(engine, blobs: list[bytes]) -> list[dict[str, Any]]:
    """Worker side: each photo's result as a dict (:meth:`OcrResult.to_dict`)."""
    return [engine.read(blob).to_dict() for blob in blobs]


@dataclass(kw_only=True)
class OcrJobSummary(PhotoJobSummary):
    ocr_engine: str
    read: int = 0
    with_text: int = 0
    statuses: dict[str, int] = field(default_factory=dict)

    @property
    def photos_per_s(self) -> float:
        return self.read / self.seconds if self.seconds > 0 else 0.0

    def line(self) -> str:
        return (f"read {self.photos:,} photo(s) of {self.rows:,} listings with {self.ocr_engine} in "
                f"{self.seconds:.1f} s ({self.photos_per_s:,.2f} photos/s; {self.startup_s:.1f} s to "
                f"start): {self.read:,} read ({self.with_text:,} with text), {self.cached:,} already "
                f"cached, {self.duplicates:,} duplicate(s), {self.unreadable:,} unreadable, "
                f"{self.photos_missing:,} not found; cache {self.cache}")


def run_ocr_job(data: str | Path, *, ocr_engine: str = "rapidocr",
                engine_params: dict[str, Any] | None = None, cache: str | Path | None = None,
                partition_rows: int = DEFAULT_PARTITION_ROWS, scheduler: str | None = None,
                workers: int | None = None, data_options: dict[str, Any] | None = None,
                engine: Engine | None = None, echo: Callable[[str], None] = print,
                progress: bool | None = None) -> OcrJobSummary:
    """Read every photo of ``data`` with ``ocr_engine`` into the OCR cache (``cache``: its
    SQLite file; default the embedding cache's)."""
    from prodcat.ocr import OcrCache, OcrResult

    source = open_source(data, **(data_options or {}))
    resource = OcrEngineResource.of(ocr_engine, engine_params)
    engine_id = resource.key.removeprefix("ocr-")
    store = OcrCache(cache)
    started = time.perf_counter()
    engine = engine or open_engine(scheduler, workers, echo=echo)
    summary = OcrJobSummary(engine=engine.description, ocr_engine=ocr_engine, cache=str(store.path))
    statuses: Counter[str] = Counter()

    def tasks(key: str, bar):
        def stored(digests: list[str], rows: int, result: list[dict[str, Any]]) -> None:
            results = [OcrResult.from_dict(r) for r in result]
            store.put_many(engine_id, zip(digests, results, strict=True))
            summary.read += len(results)
            summary.with_text += sum(r.has_text for r in results)
            statuses.update(r.status for r in results)
            bar.update(rows)

        yield from photo_tasks(source, partition_rows, summary, store, engine_id, bar,
                               lambda index, todo, rows: _ocr_task(engine, key, index, todo, rows, stored))

    with store:
        run_partitions(engine, lambda e: _with_threads(resource, e.threads_per_task), tasks, summary,
                       heading=f"reading the photos of {source.path} with {ocr_engine}",
                       total=source.n_rows, desc="OCR", started=started, progress=progress, echo=echo)
    summary.statuses = dict(statuses.most_common())
    echo(summary.line())
    return summary


def _with_threads(resource: OcrEngineResource, threads: int | None) -> OcrEngineResource:
    """``resource`` capped at ``threads`` per task (RapidOCR's onnxruntime threads), when set."""
    if not threads:
        return resource
    return OcrEngineResource(key=resource.key, name=resource.name,
                             params={**resource.params, "n_threads": threads})


def _ocr_task(engine: Engine, key: str, index: int, todo: list[tuple[str, bytes]], rows: int,
              stored: Callable[[list[str], int, list[dict[str, Any]]], None]):
    digests = [d for d, _ in todo]
    blobs = [b for _, b in todo]
    return (lambda: engine.submit(key, ocr_blobs, blobs, name=f"prodcat-ocr-{index:05d}"),
            lambda result: stored(digests, rows, result))
