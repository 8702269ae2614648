"""TF-IDF features over cleaned listing text: word 1–2-grams plus character 3–5-grams, and
optionally a dense sentence embedding beside them."""

from __future__ import annotations

import copy
from collections.abc import Iterator
from contextlib import contextmanager
from contextvars import ContextVar

import numpy as np
import scipy.sparse as sp
from sklearn.base import BaseEstimator, TransformerMixin
from sklearn.feature_extraction.text import TfidfVectorizer
from sklearn.utils.validation import check_is_fitted

from prodcat.text.charngrams import WordCharTfidf
from prodcat.text.cleaning import frame_text_views
from prodcat.text.encoders import SentenceEncoder, create_text_encoder
from prodcat.text.wordngrams import transform_block

#: Fitted sparse blocks by (n-gram options, listings' digest), inside :func:`sharing_tfidf` only.
_SHARED: ContextVar[dict | None] = ContextVar("prodcat_shared_tfidf", default=None)
_DENSE_PARAMS = ("dense", "dense_weight", "dense_cache")


@contextmanager
def sharing_tfidf() -> Iterator[None]:
    """Inside this block, :class:`TfidfFeatures` with the same n-gram options fitted on (or
    transforming) the same listings compute their sparse blocks once and share them.

    An ensemble's TF-IDF members differ only in their head or dense block; on 85k listings each
    TF-IDF fit costs about a minute. Vectorisers are not mutated after fitting, so sharing them
    is safe; the matrices are released when the block ends.
    """
    token = _SHARED.set({})
    try:
        yield
    finally:
        _SHARED.reset(token)


def _listings_digest(X) -> int:
    # Python's own hash of the strings: pandas' hash_pandas_object cost ~0.5 ms on one listing
    # (more than the linear heads), and this is as fast on a batch. A key within one process.
    if hasattr(X, "columns"):
        columns = {c: X[c].tolist() for c in ("title", "description") if c in X.columns}
    else:
        columns = {None: np.asarray(X, dtype=object).ravel().tolist()}
    return hash((len(X), *((c, tuple(map(str, v))) for c, v in columns.items())))


def _shared_digest(shared: dict, X) -> int:
    """:func:`_listings_digest` of ``X``, hashed once per :func:`sharing_tfidf` block: every
    member asks for it, and on one listing hashing costs more than the linear heads. Kept with ``X`` itself, so its ``id`` cannot be reused."""
    entry = shared.get(("digest", id(X)))
    if entry is None or entry[0] is not X:
        entry = shared[("digest", id(X))] = (X, _listings_digest(X))
    return entry[1]


class TfidfFeatures(TransformerMixin, BaseEstimator):
    """Catalog frame (``title``, ``description``) → sparse TF-IDF matrix.

    Blocks, stacked side by side:

    - ``word``: word n-grams of title + description, for exact product vocabulary;
    - ``char``: character n-grams within word boundaries, for misspellings, inflections, glued
      tokens and model numbers (``ps4``, ``x-box``), over the title and the first
      ``char_description_chars`` characters of the description (they are most of the matrix's
      non-zeros, so this bound sets training time and memory);
    - ``title``: word n-grams of the title alone (``title_ngrams``), because the title names the
      product while a long description dilutes it with shipping and care instructions;
    - ``dense`` (off by default): a sentence encoder's embedding (``dense="use-multilingual"``,
      see :mod:`prodcat.text.encoders`), L2-normalised and scaled to norm ``dense_weight`` (each
      TF-IDF block has unit norm), as ``dim`` dense columns after the sparse ones, so a linear
      head learns from words and meaning together. ``dense_cache``: ``True`` for the default
      on-disk embedding cache, a path or an EmbeddingCache, ``False`` for none.
    """

    def __init__(self, word_ngrams=(1, 2), char_ngrams=(3, 5), title_ngrams=(1, 2), min_df_word=1,
                 min_df_char=2, max_features_word=None, max_features_char=None,
                 max_description_chars=1000, char_description_chars=None, strip_accents=True,
                 sublinear_tf=True, dense=None, dense_weight=1.0, dense_cache=True):
        self.word_ngrams = word_ngrams
        self.char_ngrams = char_ngrams
        self.title_ngrams = title_ngrams
        self.min_df_word = min_df_word
        self.min_df_char = min_df_char
        self.max_features_word = max_features_word
        self.max_features_char = max_features_char
        self.max_description_chars = max_description_chars
        self.char_description_chars = char_description_chars
        self.strip_accents = strip_accents
        self.sublinear_tf = sublinear_tf
        self.dense = dense
        self.dense_weight = dense_weight
        self.dense_cache = dense_cache

    def _sources(self, X) -> dict[str, list[str]]:
        # Each field is cleaned once for every view: a description limit of 0 is the title alone.
        limits = {"text": self.max_description_chars}
        if self.char_ngrams and self.char_description_chars is not None:
            limits["chars"] = self.char_description_chars
        if self.title_ngrams:
            limits["title"] = 0
        views = dict(zip(limits, frame_text_views(X, list(limits.values()), strip_accents=self.strip_accents),
                         strict=True))
        views.setdefault("chars", views["text"])
        return views

    def _blocks(self, n_docs: int) -> list[tuple[str, str, TransformerMixin]]:
        common = {"lowercase": False, "sublinear_tf": self.sublinear_tf, "dtype": np.float32}
        blocks = []
        if self.word_ngrams:
            blocks.append(("word", "text", TfidfVectorizer(
                analyzer="word", ngram_range=tuple(self.word_ngrams), token_pattern=r"(?u)\b\w+\b",
                min_df=min(self.min_df_word, n_docs), max_features=self.max_features_word, **common)))
        if self.char_ngrams:
            blocks.append(("char", "chars", WordCharTfidf(
                ngram_range=tuple(self.char_ngrams), min_df=min(self.min_df_char, n_docs),
                max_features=self.max_features_char, sublinear_tf=self.sublinear_tf, dtype=np.float32)))
        if self.title_ngrams:
            blocks.append(("title", "title", TfidfVectorizer(
                analyzer="word", ngram_range=tuple(self.title_ngrams), token_pattern=r"(?u)\b\w+\b",
                min_df=min(self.min_df_word, n_docs), **common)))
        if not blocks:
            raise ValueError("TfidfFeatures needs at least one of word_ngrams, char_ngrams, title_ngrams")
        return blocks

    def _new_dense_encoder(self) -> SentenceEncoder | None:
        if self.dense is None or self.dense == "none":
            return None
        if not self.dense_weight > 0:
            raise ValueError("dense_weight must be positive")
        # A copy of an encoder object: fitting pins its version and must not change a parameter.
        encoder = copy.deepcopy(self.dense) if isinstance(self.dense, SentenceEncoder) \
            else create_text_encoder(self.dense)
        encoder.pin_version()  # a missing package fails here, before any TF-IDF work
        return encoder

    def _dense_block(self, X, *, fitting: bool) -> sp.csr_matrix | None:
        encoder = getattr(self, "dense_encoder_", None)
        if encoder is None:
            return None
        emb = encoder.unit_embeddings(X, cache=self.dense_cache, fitting=fitting)
        return sp.csr_matrix(emb * np.float32(self.dense_weight), dtype=np.float32)

    def fit(self, X, y=None):
        self.fit_transform(X)
        return self

    def _shared_key(self, X, stage: str):
        """This transformer's key in the :func:`sharing_tfidf` memo, or None outside one."""
        if _SHARED.get() is None:
            return None
        options = sorted((k, repr(v)) for k, v in self.get_params().items() if k not in _DENSE_PARAMS)
        fitted = getattr(self, "n_sparse_features_", None) if stage == "transform" else None
        return stage, tuple(options), fitted, _shared_digest(_SHARED.get(), X)

    def _sparse(self, X, key, compute):
        """The sparse blocks of ``X``: from the memo under ``key`` when there, else computed
        (and remembered inside :func:`sharing_tfidf`)."""
        shared = _SHARED.get()
        if key is not None and key in shared:
            return shared[key]
        value = compute()
        if key is not None:
            shared[key] = value
        return value

    def fit_transform(self, X, y=None):
        self.dense_encoder_ = self._new_dense_encoder()

        def fit_blocks():
            sources = self._sources(X)
            blocks = self._blocks(len(sources["text"]))
            return blocks, sp.hstack([vec.fit_transform(sources[src]) for _, src, vec in blocks],
                                     format="csr", dtype=np.float32)

        self.blocks_, sparse = self._sparse(X, self._shared_key(X, "fit"), fit_blocks)
        self.n_sparse_features_ = sparse.shape[1]
        dense = self._dense_block(X, fitting=True)
        return sparse if dense is None else sp.hstack([sparse, dense], format="csr", dtype=np.float32)

    def transform(self, X):
        check_is_fitted(self, "blocks_")

        def transform_blocks():
            sources = self._sources(X)
            return sp.hstack([transform_block(vec, sources[src]) for _, src, vec in self.blocks_],
                             format="csr", dtype=np.float32)

        sparse = self._sparse(X, self._shared_key(X, "transform"), transform_blocks)
        dense = self._dense_block(X, fitting=False)
        return sparse if dense is None else sp.hstack([sparse, dense], format="csr", dtype=np.float32)

    def get_feature_names_out(self, input_features=None):
        check_is_fitted(self, "blocks_")
        names = [[f"{name}__{f}" for f in vec.get_feature_names_out()] for name, _, vec in self.blocks_]
        encoder = getattr(self, "dense_encoder_", None)
        if encoder is not None:
            names.append([f"dense__{encoder.name}_{i}" for i in range(encoder.dim)])
        return np.concatenate(names).astype(object)
