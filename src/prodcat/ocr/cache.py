"""OCR results on disk, in the embedding cache's SQLite file (its own table, ``ocr_results``).

Key: ``(engine id, sha256 of the photo file's bytes)`` — the same digest the embeddings use, so
a photo two listings share is read once. The engine id names the engine, its library and model
version and a fingerprint of its settings (:attr:`~prodcat.ocr.engines.OcrEngine.engine_id`),
so a new model or another confidence threshold never serves a stale result. Values are the
results as JSON text (never pickles: a cache file is data, not code). Same file, same WAL
journal and busy timeout as :class:`prodcat.embedding_cache.EmbeddingCache`, so the two can be
used side by side by several processes.
"""

from __future__ import annotations

import os
from collections.abc import Iterable, Sequence

from prodcat.embedding_cache import EmbeddingCache, SqliteStore
from prodcat.ocr.engines import OcrError
from prodcat.ocr.result import OcrResult

TABLE = "ocr_results"


class OcrCache(SqliteStore):
    """OCR results by ``(engine id, photo digest)``; safe to share between threads and processes.

    ``OcrCache()`` opens ``<cache dir>/embeddings.sqlite`` (the file the embeddings use); pass a
    path, or an :class:`EmbeddingCache` to use its file.
    """

    SCHEMA = (f"CREATE TABLE IF NOT EXISTS {TABLE} ("
              " engine TEXT NOT NULL, digest TEXT NOT NULL, result TEXT NOT NULL,"
              " PRIMARY KEY (engine, digest)) WITHOUT ROWID")
    KIND = "OCR cache"
    error = OcrError

    def __init__(self, path: str | os.PathLike | EmbeddingCache | None = None):
        super().__init__(path.path if isinstance(path, EmbeddingCache) else path)

    def get_many(self, engine_id: str, digests: Sequence[str]) -> dict[str, OcrResult]:
        """The cached results among ``digests``, by digest (marked ``cached``)."""
        found: dict[str, OcrResult] = {}
        rows = self._select_by_digest(
            f"SELECT digest, result FROM {TABLE} WHERE engine = ? AND digest IN ({{marks}})",
            engine_id, digests)
        for digest, text in rows:
            try:
                found[digest] = OcrResult.from_json(text, cached=True)
            except (ValueError, KeyError, TypeError):
                continue  # a damaged row is read again, never served
        return found

    def get(self, engine_id: str, digest: str) -> OcrResult | None:
        return self.get_many(engine_id, [digest]).get(digest)

    def put_many(self, engine_id: str, items: Iterable[tuple[str, OcrResult]]) -> int:
        """Store ``(digest, result)`` pairs in one transaction (results whose status depends on
        the moment, a timeout or a failure, are left out); returns how many were stored."""
        rows = [(engine_id, digest, result.to_json()) for digest, result in items if result.cacheable]
        if not rows:
            return 0
        with self._lock:
            conn = self._connect()
            with conn:
                conn.executemany(f"INSERT OR REPLACE INTO {TABLE} (engine, digest, result) "
                                 "VALUES (?, ?, ?)", rows)
        return len(rows)

    def put(self, engine_id: str, digest: str, result: OcrResult) -> int:
        return self.put_many(engine_id, [(digest, result)])

    def count(self, engine_id: str | None = None) -> int:
        with self._lock:
            conn = self._connect()
            if engine_id is None:
                return int(conn.execute(f"SELECT COUNT(*) FROM {TABLE}").fetchone()[0])
            return int(conn.execute(f"SELECT COUNT(*) FROM {TABLE} WHERE engine = ?",
                                    (engine_id,)).fetchone()[0])

    def __len__(self) -> int:
        return self.count()

    def engines(self) -> list[str]:
        with self._lock:
            rows = self._connect().execute(f"SELECT DISTINCT engine FROM {TABLE}").fetchall()
        return sorted(r[0] for r in rows)

    def clear(self, engine_id: str | None = None) -> int:
        with self._lock:
            conn = self._connect()
            with conn:
                if engine_id is None:
                    cur = conn.execute(f"DELETE FROM {TABLE}")
                else:
                    cur = conn.execute(f"DELETE FROM {TABLE} WHERE engine = ?", (engine_id,))
        return int(cur.rowcount)


def open_ocr_cache(cache: OcrCache | EmbeddingCache | str | os.PathLike | bool | None) -> OcrCache | None:
    """``True`` → the default cache file; a path → a cache there; an OcrCache as is; an
    EmbeddingCache → its file; ``False``/``None`` → no cache."""
    if cache is None or cache is False:
        return None
    if isinstance(cache, OcrCache):
        return cache
    if cache is True:
        return OcrCache()
    return OcrCache(cache)
