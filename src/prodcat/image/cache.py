"""The image side's embedding cache: :mod:`prodcat.embedding_cache`, raising :class:`ImageError`.

Key: ``(encoder id, sha256 of the image file's bytes)``. The encoder id names the network, its
export version and a fingerprint of the preprocessing, so changing any of them never serves a
stale vector, and a photo that two listings share (or that was renamed) is encoded once. The
text side's sentence embeddings live in the same file under their own encoder ids (see
:mod:`prodcat.embedding_cache` for why one SQLite file).
"""

from __future__ import annotations

import os

from prodcat.embedding_cache import CACHE_ENV, CACHE_FILE, content_digest, default_cache_dir
from prodcat.embedding_cache import EmbeddingCache as _EmbeddingCache
from prodcat.embedding_cache import open_cache as _open_cache
from prodcat.image.errors import ImageError

__all__ = ["CACHE_ENV", "CACHE_FILE", "EmbeddingCache", "content_digest", "default_cache_dir",
           "open_cache"]


class EmbeddingCache(_EmbeddingCache):
    """Embeddings on disk in one SQLite file; safe to share between threads and processes.

    ``EmbeddingCache()`` opens ``<cache dir>/embeddings.sqlite``; pass a path to put it
    elsewhere. Vectors are stored as float32 bytes, exactly as the encoder returned them. A
    damaged file raises :class:`ImageError`.
    """

    error = ImageError


def open_cache(cache: _EmbeddingCache | str | os.PathLike | bool | None) -> _EmbeddingCache | None:
    """``True`` → the default cache; a path → a cache there; an EmbeddingCache as is;
    ``False``/``None`` → no cache."""
    return _open_cache(cache, factory=EmbeddingCache)
