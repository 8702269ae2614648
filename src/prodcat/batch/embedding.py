"""Filling the embedding cache for a catalogue's photos on a cluster: ``prodcat embed``.

The client streams the catalogue, reads each photo's bytes and hashes them (the cache key), and
sends only photos the cache lacks, once each, to the workers, which decode, preprocess and run
the encoder. The vectors come back and the client writes them into the embedding cache, so the
workers need neither the photos' folder nor the cache file, and a later ``prodcat train`` or
``evaluate`` on the same photos encodes nothing. The cache is the checkpoint: an interrupted run
started again skips what was stored.
"""

from __future__ import annotations

import time
from collections import Counter
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from prodcat.batch.engine import Engine
from prodcat.batch.partitions import PhotoJobSummary, open_source, photo_tasks
from prodcat.batch.resources import EncoderResource
from prodcat.batch.runner import open_engine, run_partitions

DEFAULT_PARTITION_ROWS = 256


def encode_blobs(encoder, blobs: list[bytes]) -> dict[str, Any]:
    """Worker side: embeddings of photos given as bytes; ``ok`` and the failure kind per photo."""
    encoded = encoder.encode_images(blobs, cache=None, warn=False)
    return {"vectors": encoded.embeddings[encoded.ok], "ok": encoded.ok,
            "kinds": encoded.kinds or [None] * len(blobs)}


def _embed_task(engine: Engine, key: str, index: int, todo: list[tuple[str, bytes]], rows: int,
                stored: Callable[[list[str], int, dict[str, Any]], None]):
    """``(submit, on_done)`` for one partition's photos (see :func:`run_bounded`)."""
    digests = [d for d, _ in todo]
    blobs = [b for _, b in todo]
    return (lambda: engine.submit(key, encode_blobs, blobs, name=f"prodcat-embed-{index:05d}"),
            lambda result: stored(digests, rows, result))


@dataclass(kw_only=True)
class EmbedSummary(PhotoJobSummary):
    encoder: str
    encoded: int = 0
    failed: dict[str, int] = field(default_factory=dict)  # by kind: corrupt, not an image ...

    @property
    def photos_per_s(self) -> float:
        return (self.encoded + sum(self.failed.values())) / self.seconds if self.seconds > 0 else 0.0

    def line(self) -> str:
        failed = sum(self.failed.values())
        why = f" ({', '.join(f'{n} {k}' for k, n in self.failed.items())})" if failed else ""
        return (f"embedded {self.photos:,} photo(s) of {self.rows:,} listings with {self.encoder} in "
                f"{self.seconds:.1f} s ({self.photos_per_s:,.1f} photos/s encoded; {self.startup_s:.1f} s "
                f"to start): {self.encoded:,} "
                f"encoded, {self.cached:,} already cached, {self.duplicates:,} duplicate(s), "
                f"{failed + self.unreadable:,} unusable{why}, {self.photos_missing:,} not found; "
                f"cache {self.cache}")


def run_embed_job(data: str | Path, *, encoder: str | None = None,
                  cache: str | Path | None = None, partition_rows: int = DEFAULT_PARTITION_ROWS,
                  scheduler: str | None = None, workers: int | None = None,
                  data_options: dict[str, Any] | None = None, engine: Engine | None = None,
                  echo: Callable[[str], None] = print, progress: bool | None = None) -> EmbedSummary:
    """Embed every photo of ``data`` with ``encoder`` (default: the one training uses) into the
    embedding cache (``cache``: its SQLite file; default the one training uses)."""
    from prodcat.image import EmbeddingCache, create_encoder
    from prodcat.image.encoders import DEFAULT_ENCODER

    encoder = encoder or DEFAULT_ENCODER

    source = open_source(data, **(data_options or {}))
    encoder_id = create_encoder(encoder).encoder_id  # an unknown name fails here
    store = EmbeddingCache(cache)
    started = time.perf_counter()
    engine = engine or open_engine(scheduler, workers, echo=echo)
    summary = EmbedSummary(engine=engine.description, encoder=encoder, cache=str(store.path))
    failed: Counter[str] = Counter()

    def tasks(key: str, bar):
        def stored(digests: list[str], rows: int, result: dict[str, Any]) -> None:
            ok = np.asarray(result["ok"], bool)
            kept = [d for d, good in zip(digests, ok, strict=True) if good]
            store.put_many(encoder_id, zip(kept, result["vectors"], strict=True))
            summary.encoded += len(kept)
            failed.update(k or "unusable" for k, good in zip(result["kinds"], ok, strict=True) if not good)
            bar.update(rows)

        yield from photo_tasks(source, partition_rows, summary, store, encoder_id, bar,
                               lambda index, todo, rows: _embed_task(engine, key, index, todo, rows, stored))

    with store:
        run_partitions(engine, lambda e: EncoderResource.of(encoder, ship=e.ship, threads=e.threads_per_task),
                       tasks, summary, heading=f"embedding the photos of {source.path} with {encoder}",
                       total=source.n_rows, desc="embedding", started=started, progress=progress, echo=echo)
    summary.failed = dict(failed.most_common())
    echo(summary.line())
    return summary
