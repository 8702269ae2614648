"""Reading many photos: :func:`read_photos` (paths or bytes → results, cached, with progress)
and :func:`ocr_text_for` (a Catalog frame → its listings' OCR text as a Series).

Each photo's bytes are read and hashed first; a photo already in the cache (same engine id, same
bytes) is not decoded again, and a photo several listings share is read once. New results are
written to the cache every ``flush_every`` photos, so an interrupted run keeps what it read.
"""

from __future__ import annotations

import os
import sys
from collections.abc import Iterable, Sequence
from concurrent.futures import ThreadPoolExecutor
from contextlib import nullcontext
from typing import Any

from prodcat.embedding_cache import EmbeddingCache, content_digest
from prodcat.ocr.cache import OcrCache, open_ocr_cache
from prodcat.ocr.engines import DEFAULT_ENGINE, OcrEngine, resolve_engine
from prodcat.ocr.result import OcrResult

CacheLike = OcrCache | EmbeddingCache | str | os.PathLike | bool | None


def read_photo(source: Any, engine: str | OcrEngine = DEFAULT_ENGINE, *,
               cache: CacheLike = None) -> OcrResult:
    """The text on one photo (a path or the file's bytes; None for a listing without one)."""
    return read_photos([source], engine=engine, cache=cache, progress=False)[0]


def read_photos(paths: Iterable[Any], engine: str | OcrEngine = DEFAULT_ENGINE, *,
                cache: CacheLike = None, progress: bool | None = True, n_workers: int = 1,
                flush_every: int = 32, **engine_params: Any) -> list[OcrResult]:
    """One :class:`OcrResult` per entry of ``paths`` (paths or bytes; None, NaN or "" for a
    listing without a photo), in order. Never raises for a bad photo: it gets an empty result
    whose ``status`` says why. ``engine`` is a registered name (built with ``engine_params``)
    or an engine; ``cache`` see :func:`~prodcat.ocr.cache.open_ocr_cache`; ``n_workers`` threads
    read photos at once (each Tesseract thread has its own instance; RapidOCR's networks already
    use every core)."""
    from tqdm.auto import tqdm

    from prodcat.image import ImageError, read_image_bytes
    from prodcat.image.loading import is_missing

    eng = resolve_engine(engine, **engine_params)
    store = open_ocr_cache(cache)
    sources = list(paths)
    eng.load()  # a missing engine fails here, before any photo
    version, engine_id = eng.version, eng.engine_id
    results: list[OcrResult | None] = [None] * len(sources)
    digests: list[str | None] = [None] * len(sources)
    blobs: dict[str, bytes] = {}
    for i, source in enumerate(sources):
        if is_missing(source):
            results[i] = OcrResult.empty(eng.name, version, "no image")
            continue
        try:
            blob = read_image_bytes(source)
        except ImageError as exc:
            results[i] = OcrResult.empty(eng.name, version, exc.kind)
            continue
        digests[i] = digest = content_digest(blob)
        blobs.setdefault(digest, blob)
    done: dict[str, OcrResult] = store.get_many(engine_id, list(blobs)) if store and blobs else {}
    todo = [d for d in blobs if d not in done]
    # progress None: a bar on a terminal only (tqdm's disable=None).
    disable = True if not todo or progress is False else (None if progress is None else False)
    bar = tqdm(total=len(todo), desc=f"OCR ({eng.name})", unit="photo", file=sys.stderr,
               disable=disable, dynamic_ncols=True)
    pending: list[tuple[str, OcrResult]] = []

    def flush() -> None:
        if store is not None and pending:
            store.put_many(engine_id, pending)
        pending.clear()

    try:
        parallel = n_workers > 1 and len(todo) > 1
        with ThreadPoolExecutor(n_workers, thread_name_prefix="prodcat-ocr") if parallel else nullcontext() as pool:
            # Each photo's bytes are dropped once read: a large catalogue never holds them all.
            read = (pool.map if pool is not None else map)(lambda d: eng.read(blobs.pop(d)), todo)
            for digest, result in zip(todo, read, strict=True):
                done[digest] = result
                pending.append((digest, result))
                bar.update(1)
                if len(pending) >= flush_every:
                    flush()
    finally:
        flush()
        bar.close()
    for i, digest in enumerate(digests):
        if digest is not None:
            results[i] = done[digest]
    return results  # type: ignore[return-value]


def ocr_text_for(frame: Any, engine: str | OcrEngine = DEFAULT_ENGINE, cache: CacheLike = None, *,
                 progress: bool = False, **options: Any):
    """The OCR text of each listing of a Catalog frame (columns ``id, title, description,
    image``) as a string Series on the frame's index, named ``ocr_text``: ``""`` for a listing
    without a photo, a bad photo or a photo without text."""
    import pandas as pd

    images: Sequence[Any] = frame["image"].tolist() if "image" in frame else [None] * len(frame)
    results = read_photos(images, engine=engine, cache=cache, progress=progress, **options)
    return pd.Series([r.text for r in results], index=frame.index, name="ocr_text", dtype=object)
