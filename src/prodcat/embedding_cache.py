"""A disk cache of embeddings (image and text), keyed by the input's content and the encoder.

Key: ``(encoder id, sha256 digest of the input)``: an image file's bytes, or the exact text a
sentence encoder was given. The encoder id names the network, its version and a fingerprint of
the preprocessing, so changing any of them never serves a stale vector, and an input that two
listings share (a photo reused, a title repeated) is encoded once.

Why one SQLite file rather than one ``.npy`` per input or ``.npz`` shards: the full Rakuten set
has about 85,000 photos and as many texts, that is 85,000 tiny files (slow to list, copy and
delete, and heavy on inodes) or shards that need rewriting and locking to add to. SQLite gives
an indexed lookup, atomic batched inserts (a crash loses at most the batch being written, never
corrupts earlier ones), safe use by several processes at once (WAL journal + busy timeout) and
one file to move or delete. 85,000 × 1,280 float32 is about 440 MB; 85,000 × 512 about 175 MB.

Each side raises its own error class: :class:`prodcat.image.cache.EmbeddingCache` is this
cache with :class:`~prodcat.image.errors.ImageError`.
"""

from __future__ import annotations

import hashlib
import os
import sqlite3
import threading
from collections.abc import Callable, Iterable, Sequence
from pathlib import Path

import numpy as np

from prodcat.errors import ProdcatError

#: Environment variable that moves every prodcat cache (exported encoders, embeddings).
CACHE_ENV = "PRODCAT_CACHE_DIR"
CACHE_FILE = "embeddings.sqlite"


class CacheError(ProdcatError):
    """The embedding cache file cannot be created or read."""


def default_cache_dir() -> Path:
    """``$PRODCAT_CACHE_DIR``, else ``$XDG_CACHE_HOME/prodcat``, else ``~/.cache/prodcat``."""
    env = os.environ.get(CACHE_ENV)
    if env:
        return Path(env).expanduser()
    xdg = os.environ.get("XDG_CACHE_HOME")
    return (Path(xdg).expanduser() if xdg else Path.home() / ".cache") / "prodcat"


def content_digest(data: bytes | str) -> str:
    """sha256 hex digest of an input (bytes as they are, text as UTF-8): its embedding's key."""
    if isinstance(data, str):
        data = data.encode("utf-8")
    return hashlib.sha256(data).hexdigest()


class SqliteStore:
    """One table in the cache's SQLite file, with the connection handling every cache shares:
    one connection per store, serialised by a lock (safe between threads), WAL journal and a busy
    timeout (safe between processes), reopened lazily after pickling (a Dask worker's copy).

    Subclasses give ``SCHEMA`` (a ``CREATE TABLE IF NOT EXISTS``), ``KIND`` (for messages) and
    ``error`` (the exception class of their side).
    """

    SCHEMA = ""
    KIND = "cache"
    #: What a damaged or unusable cache file raises (a subclass may name its own side's error).
    error: Callable[[str], Exception] = CacheError

    def __init__(self, path: str | os.PathLike | None = None):
        self.path = Path(path).expanduser() if path is not None else default_cache_dir() / CACHE_FILE
        self._lock = threading.Lock()
        self._conn: sqlite3.Connection | None = None

    def _connect(self) -> sqlite3.Connection:
        if self._conn is not None:
            return self._conn
        try:
            self.path.parent.mkdir(parents=True, exist_ok=True)
            conn = sqlite3.connect(self.path, timeout=60, check_same_thread=False)
            conn.execute("PRAGMA journal_mode=WAL")
            conn.execute("PRAGMA synchronous=NORMAL")
            conn.execute(self.SCHEMA)
            conn.commit()
        except sqlite3.DatabaseError as exc:
            raise self.error(f"the {self.KIND} {self.path} cannot be used ({exc}); delete the file "
                             "to start an empty cache") from None
        except OSError as exc:
            raise self.error(f"cannot create the {self.KIND} at {self.path}: {exc}") from None
        self._conn = conn
        return conn

    def close(self) -> None:
        with self._lock:
            if self._conn is not None:
                self._conn.close()
                self._conn = None

    def __enter__(self):
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def __getstate__(self) -> dict[str, object]:
        # A connection cannot be pickled; the copy reopens the same file when first used.
        return {"path": self.path}

    def __setstate__(self, state: dict[str, object]) -> None:
        self.path = Path(state["path"])  # type: ignore[arg-type]
        self._lock = threading.Lock()
        self._conn = None

    def __repr__(self) -> str:
        return f"{type(self).__name__}({str(self.path)!r})"

    def _select_by_digest(self, sql: str, key: str, digests: Sequence[str]) -> list[tuple]:
        """The rows of ``sql`` (a SELECT ending ``WHERE <key column> = ? AND digest IN
        ({marks})``) for ``key`` and the distinct ``digests``, queried in chunks SQLite accepts."""
        unique = list(dict.fromkeys(digests))
        rows: list[tuple] = []
        with self._lock:
            conn = self._connect()
            for start in range(0, len(unique), 500):  # SQLite caps the number of parameters
                chunk = unique[start:start + 500]
                rows += conn.execute(sql.format(marks=",".join("?" * len(chunk))), (key, *chunk)).fetchall()
        return rows


class EmbeddingCache(SqliteStore):
    """Embeddings on disk in one SQLite file; safe to share between threads and processes.

    ``EmbeddingCache()`` opens ``<cache dir>/embeddings.sqlite``; pass a path to put it
    elsewhere. Vectors are stored as float32 bytes, exactly as the encoder returned them.
    """

    SCHEMA = ("CREATE TABLE IF NOT EXISTS embeddings ("
              " encoder TEXT NOT NULL, digest TEXT NOT NULL, dim INTEGER NOT NULL,"
              " vector BLOB NOT NULL, PRIMARY KEY (encoder, digest)) WITHOUT ROWID")
    KIND = "embedding cache"

    # --- reading and writing ---------------------------------------------------------------

    def get(self, encoder_id: str, digest: str) -> np.ndarray | None:
        """The cached embedding, or None."""
        with self._lock:
            row = self._connect().execute(
                "SELECT dim, vector FROM embeddings WHERE encoder = ? AND digest = ?",
                (encoder_id, digest),
            ).fetchone()
        return None if row is None else self._decode(row[0], row[1])

    def get_many(self, encoder_id: str, digests: Sequence[str]) -> dict[str, np.ndarray]:
        """The cached embeddings among ``digests``, by digest."""
        rows = self._select_by_digest(
            "SELECT digest, dim, vector FROM embeddings WHERE encoder = ? AND digest IN ({marks})",
            encoder_id, digests)
        return {digest: self._decode(dim, blob) for digest, dim, blob in rows}

    def put_many(self, encoder_id: str, items: Iterable[tuple[str, np.ndarray]]) -> int:
        """Store ``(digest, vector)`` pairs in one transaction; returns how many were given."""
        rows = []
        for digest, vector in items:
            vec = np.ascontiguousarray(vector, dtype=np.float32).ravel()
            rows.append((encoder_id, digest, int(vec.size), vec.tobytes()))
        if not rows:
            return 0
        with self._lock:
            conn = self._connect()
            with conn:  # one transaction: all of the batch or none of it
                conn.executemany(
                    "INSERT OR REPLACE INTO embeddings (encoder, digest, dim, vector) VALUES (?, ?, ?, ?)",
                    rows,
                )
        return len(rows)

    def put(self, encoder_id: str, digest: str, vector: np.ndarray) -> None:
        self.put_many(encoder_id, [(digest, vector)])

    def count(self, encoder_id: str | None = None) -> int:
        """How many embeddings are stored (for one encoder, or all)."""
        with self._lock:
            conn = self._connect()
            if encoder_id is None:
                return int(conn.execute("SELECT COUNT(*) FROM embeddings").fetchone()[0])
            return int(conn.execute("SELECT COUNT(*) FROM embeddings WHERE encoder = ?",
                                    (encoder_id,)).fetchone()[0])

    def __len__(self) -> int:
        return self.count()

    def encoders(self) -> list[str]:
        """The encoder ids that have embeddings here."""
        with self._lock:
            rows = self._connect().execute("SELECT DISTINCT encoder FROM embeddings").fetchall()
        return sorted(r[0] for r in rows)

    def clear(self, encoder_id: str | None = None) -> int:
        """Delete the embeddings of one encoder (or all); returns how many were deleted."""
        with self._lock:
            conn = self._connect()
            with conn:
                if encoder_id is None:
                    cur = conn.execute("DELETE FROM embeddings")
                else:
                    cur = conn.execute("DELETE FROM embeddings WHERE encoder = ?", (encoder_id,))
        return int(cur.rowcount)

    def _decode(self, dim: int, blob: bytes) -> np.ndarray:
        vec = np.frombuffer(blob, dtype=np.float32)
        if vec.size != dim:
            raise self.error(f"a cached embedding has {vec.size} values instead of {dim}; the "
                             "embedding cache is damaged: clear it")
        return vec


def open_cache(cache: EmbeddingCache | str | os.PathLike | bool | None, *,
               factory: Callable[..., EmbeddingCache] = EmbeddingCache) -> EmbeddingCache | None:
    """``True`` → the default cache; a path → a cache there; an EmbeddingCache as is;
    ``False``/``None`` → no cache. ``factory`` makes the new ones (a side's own subclass)."""
    if cache is None or cache is False:
        return None
    if isinstance(cache, EmbeddingCache):
        return cache
    if cache is True:
        return factory()
    return factory(cache)
