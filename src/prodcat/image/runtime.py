"""Running an exported image encoder with onnxruntime: :class:`ImageEncoder`.

From its cached ONNX export (made once by :mod:`prodcat.image.export`) onnxruntime runs the
network, about 7x faster than PyTorch eager on 2 cores, and it is a small dependency. Decoding
and preprocessing run in threads beside it; an embedding cache keyed by the photo's bytes means a
photo is never encoded twice.
"""

from __future__ import annotations

import hashlib
import os
import threading
import time
import warnings
from collections import Counter, deque
from collections.abc import Iterable
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any, ClassVar

import numpy as np

from prodcat.errors import ConfigError
from prodcat.hashing import sha256_file
from prodcat.image import export
from prodcat.image.cache import EmbeddingCache, content_digest, default_cache_dir, open_cache
from prodcat.image.errors import ImageError
from prodcat.image.export import EXPORT_HINT, EXPORT_VERSION, INPUT_NAME, OUTPUT_NAMES, RUNTIME_HINT
from prodcat.image.loading import (
    DEFAULT_MAX_PIXELS,
    ImageSource,
    load_image,
    read_image_bytes,
)
from prodcat.image.preprocess import PreprocessConfig, preprocess_image
from prodcat.lazy import LazyLoaded
from prodcat.progress import progress_callback
from prodcat.system import usable_cpus

if TYPE_CHECKING:
    from prodcat.image.encoders import EncoderSpec


@dataclass
class EncodedImages:
    """What :meth:`ImageEncoder.encode_images` returns.

    Unpacks as ``embeddings, ok, errors``: ``embeddings`` float32 ``[n, dim]`` (zeros where the
    image was unusable), ``ok`` a bool mask, ``errors`` a reason or None per image.
    """

    embeddings: np.ndarray
    ok: np.ndarray
    errors: list[str | None]
    #: Per image, the :attr:`ImageError.kind` of its failure, or None.
    kinds: list[str | None] = field(default_factory=list)
    n_from_cache: int = 0
    n_encoded: int = 0
    #: Images whose bytes repeat an earlier image of the same run (encoded once, copied).
    n_duplicates: int = 0
    seconds: float = 0.0

    def subset(self, rows) -> EncodedImages:
        """The images at ``rows`` (indices or a bool mask); counters are not carried over."""
        rows = np.flatnonzero(rows) if np.asarray(rows).dtype == bool else np.asarray(rows)
        return EncodedImages(self.embeddings[rows], self.ok[rows], [self.errors[r] for r in rows],
                             [self.kinds[r] for r in rows] if self.kinds else [])

    def __iter__(self):
        return iter((self.embeddings, self.ok, self.errors))

    def __len__(self) -> int:
        return len(self.errors)

    @property
    def n_failed(self) -> int:
        return int((~self.ok).sum())

    def failure_counts(self) -> dict[str, int]:
        """How many images failed, by kind (``{"corrupt": 2, "no image": 5}``)."""
        return dict(Counter(k for k in self.kinds if k).most_common())

    def failure_summary(self) -> str:
        """E.g. ``"5 no image, 2 corrupt"``."""
        return ", ".join(f"{n} {kind}" for kind, n in self.failure_counts().items())


@dataclass
class _Prepared:
    pixels: np.ndarray | None = None
    vector: np.ndarray | None = None
    digest: str | None = None
    error: str | None = None
    kind: str | None = None


@dataclass(eq=False)
class ImageEncoder(LazyLoaded):
    """One pretrained network, run with onnxruntime from its cached ONNX export.

    Create with :func:`~prodcat.image.encoders.create_encoder`. Pickles without its onnxruntime
    session (it is rebuilt from the cached export on first use).
    """

    _lazy_attributes: ClassVar[tuple[str, ...]] = ("_session",)

    spec: EncoderSpec
    cache_dir: str | os.PathLike | None = None
    n_threads: int | None = None
    max_pixels: int = DEFAULT_MAX_PIXELS
    #: Images run through the network by this object (not served from a cache): tests and
    #: benchmarks read it.
    images_encoded: int = field(default=0, init=False)
    _session: Any = field(default=None, init=False, repr=False)
    _lock: threading.Lock = field(default_factory=threading.Lock, init=False, repr=False)

    # --- identity ----------------------------------------------------------------------------

    @property
    def name(self) -> str:
        return self.spec.name

    @property
    def dim(self) -> int:
        return self.spec.dim

    @property
    def config(self) -> PreprocessConfig:
        return self.spec.preprocess

    @property
    def encoder_id(self) -> str:
        """Names everything an embedding depends on: the embedding cache's key prefix."""
        return (f"{self.spec.name}/{self.spec.weights_file}/x{EXPORT_VERSION}"
                f"/p{self.config.fingerprint()}")

    @property
    def export_dir(self) -> Path:
        root = Path(self.cache_dir).expanduser() if self.cache_dir is not None else default_cache_dir()
        return root / "encoders"

    @property
    def onnx_path(self) -> Path:
        return self.export_dir / f"{self.spec.name}-x{EXPORT_VERSION}-p{self.config.fingerprint()}.onnx"

    @property
    def hash_path(self) -> Path:
        return self.onnx_path.with_name(self.onnx_path.name + ".sha256")

    # --- the export --------------------------------------------------------------------------

    def export_status(self) -> str:
        """``"ok"``, ``"missing"`` or ``"mismatch"`` (the file differs from its recorded sha256)."""
        if not self.onnx_path.is_file() or not self.hash_path.is_file():
            return "missing"
        recorded = self.hash_path.read_text().split()[0] if self.hash_path.read_text().strip() else ""
        return "ok" if recorded == sha256_file(self.onnx_path) else "mismatch"

    def ensure_export(self, *, force: bool = False) -> Path:
        """The checked ONNX export, made now if missing, tampered with, or ``force``.

        Raises :class:`ImageError` when it must be made and PyTorch (or the weights package) is
        not installed.
        """
        status = "missing" if force else self.export_status()
        if status == "ok":
            return self.onnx_path
        if status == "mismatch":
            if not export.torch_available():
                raise ImageError(
                    f"the exported encoder {self.onnx_path} does not match its recorded sha256 "
                    f"(changed or damaged since it was exported); delete it and re-export it "
                    f"with PyTorch installed ({EXPORT_HINT})"
                )
            warnings.warn(f"{self.onnx_path} does not match its recorded sha256; exporting it "
                          "again", stacklevel=2)
        export.export_onnx(self.spec, self.onnx_path)
        return self.onnx_path

    def _load_session(self):
        try:
            import onnxruntime as ort
        except ImportError:
            raise ImageError(f"image encoding needs onnxruntime: {RUNTIME_HINT}") from None
        path = self.ensure_export()
        # Hash the very bytes the session is built from, so a file swapped after the check is
        # never run.
        data = path.read_bytes()
        expected = self.hash_path.read_text().split()[0]
        if hashlib.sha256(data).hexdigest() != expected:
            raise ImageError(f"the exported encoder {path} changed while it was being loaded; retry")
        options = ort.SessionOptions()
        options.intra_op_num_threads = self.n_threads or usable_cpus()
        options.inter_op_num_threads = 1
        options.graph_optimization_level = ort.GraphOptimizationLevel.ORT_ENABLE_ALL
        # Decoding threads share the cores with inference: spinning onnxruntime threads would
        # take CPU time from them while waiting for work.
        options.add_session_config_entry("session.intra_op.allow_spinning", "0")
        options.log_severity_level = 3
        return ort.InferenceSession(data, options, providers=["CPUExecutionProvider"])

    @property
    def session(self):
        """The onnxruntime session (built on first use)."""
        return self._load_once("_session", self._load_session)

    # --- running the network ----------------------------------------------------------------

    def run(self, pixels: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """``uint8`` batch ``[n, size, size, 3]`` (from :meth:`prepare`) → ``(embeddings, logits)``."""
        batch = np.ascontiguousarray(pixels, dtype=np.uint8)
        if batch.ndim == 3:
            batch = batch[None]
        size = self.config.size
        if batch.shape[1:] != (size, size, 3):
            raise ImageError(f"{self.name} takes batches of shape [n, {size}, {size}, 3]; got "
                             f"{list(batch.shape)}")
        embeddings, logits = self.session.run(list(OUTPUT_NAMES), {INPUT_NAME: batch})
        self.images_encoded += len(batch)
        return embeddings.astype(np.float32, copy=False), logits.astype(np.float32, copy=False)

    def embed(self, pixels: np.ndarray) -> np.ndarray:
        """Embeddings ``float32 [n, dim]`` of a preprocessed ``uint8`` batch."""
        return self.run(pixels)[0]

    def imagenet_logits(self, pixels: np.ndarray) -> np.ndarray:
        """ImageNet-1k logits ``float32 [n, 1000]`` of a preprocessed ``uint8`` batch."""
        return self.run(pixels)[1]

    def prepare(self, source: ImageSource, *, name: str | None = None) -> np.ndarray:
        """Decode and preprocess one photo → ``uint8 [size, size, 3]``; :class:`ImageError` if unusable."""
        image = load_image(source, max_pixels=self.max_pixels, target_size=self.config.decode_size,
                           name=name)
        return preprocess_image(image, self.config)

    def _prepare_one(self, source: ImageSource, cache: EmbeddingCache | None) -> _Prepared:
        try:
            if cache is None:
                return _Prepared(pixels=self.prepare(source))
            data = read_image_bytes(source)
            digest = content_digest(data)
            vector = cache.get(self.encoder_id, digest)
            if vector is not None:
                return _Prepared(vector=vector, digest=digest)
            name = None if isinstance(source, (bytes, bytearray, memoryview)) else str(source)
            return _Prepared(pixels=self.prepare(data, name=name), digest=digest)
        except ImageError as exc:
            return _Prepared(error=str(exc), kind=exc.kind)

    def encode_images(
        self,
        sources: Iterable[ImageSource | None],
        *,
        batch_size: int = 32,
        n_workers: int | None = None,
        cache: EmbeddingCache | str | os.PathLike | bool | None = None,
        progress: bool = False,
        warn: bool = True,
    ) -> EncodedImages:
        """Embed many photos (paths or bytes; None for a listing without one).

        Decoding and preprocessing run in ``n_workers`` threads (Pillow and NumPy release the
        GIL, so they use the other cores) while the network runs batches of ``batch_size``.
        With a ``cache`` (see :func:`~prodcat.image.cache.open_cache`) an image whose bytes were
        embedded before is served from it and never decoded or encoded again.

        Unusable images (file missing, corrupt, not an image, too large) are skipped, counted
        and, with ``warn``, reported in one warning; they and the None entries get a zero
        embedding and ``ok = False``.
        """
        started = time.perf_counter()
        sources = list(sources)
        n = len(sources)
        if batch_size < 1:
            raise ConfigError("batch_size must be at least 1")
        store = open_cache(cache)
        embeddings = np.zeros((n, self.dim), dtype=np.float32)
        ok = np.zeros(n, dtype=bool)
        errors: list[str | None] = [None] * n
        result = EncodedImages(embeddings, ok, errors, kinds=[None] * n)
        if n == 0:
            return result
        workers = n_workers or max(2, usable_cpus())
        pending: list[tuple[int, np.ndarray, str | None]] = []
        # With a cache every image has a content digest: the same photo under several listings
        # (common in marketplaces) is encoded once per run. digest -> rows waiting for it.
        waiting: dict[str, list[int]] = {}
        done: dict[str, int] = {}  # digest -> a row already encoded in this run

        def flush() -> None:
            if not pending:
                return
            # The session is built here, lazily: a run served wholly from the cache needs no
            # export and no onnxruntime.
            vectors = self.embed(np.stack([p for _, p, _ in pending]))
            rows = [i for i, _, _ in pending]
            embeddings[rows] = vectors
            ok[rows] = True
            result.n_encoded += len(rows)
            for (_, _, digest), vector in zip(pending, vectors, strict=True):
                if digest is None:
                    continue
                rows_waiting = waiting.pop(digest, [])
                if rows_waiting:
                    done[digest] = rows_waiting[0]
                for copy in rows_waiting[1:]:
                    embeddings[copy] = vector
                    ok[copy] = True
            if store is not None:
                store.put_many(self.encoder_id, [(d, v) for (_, _, d), v in zip(pending, vectors, strict=True)
                                                 if d is not None])
            pending.clear()

        bar = progress_callback(n, progress, f"encoding images ({self.name})", unit="img")
        # A bounded window of submitted tasks: enough to keep every worker busy while a batch
        # runs, without holding all of a large catalogue's pixels in memory.
        window_size = 2 * batch_size + 2 * workers
        todo = iter(enumerate(sources))
        window: deque = deque()
        try:
            with ThreadPoolExecutor(max_workers=workers, thread_name_prefix="prodcat-image") as pool:
                def refill() -> None:
                    while len(window) < window_size:
                        item = next(todo, None)
                        if item is None:
                            return
                        window.append((item[0], pool.submit(self._prepare_one, item[1], store)))

                refill()
                while window:
                    i, future = window.popleft()
                    prepared: _Prepared = future.result()
                    refill()
                    if prepared.error is not None:
                        errors[i] = prepared.error
                        result.kinds[i] = prepared.kind
                    elif prepared.vector is not None:
                        embeddings[i] = prepared.vector
                        ok[i] = True
                        result.n_from_cache += 1
                    elif prepared.digest is not None and prepared.digest in waiting:
                        waiting[prepared.digest].append(i)  # a copy of a photo being encoded
                        result.n_duplicates += 1
                    elif prepared.digest is not None and prepared.digest in done:
                        embeddings[i] = embeddings[done[prepared.digest]]
                        ok[i] = True
                        result.n_duplicates += 1
                    else:
                        if prepared.digest is not None:
                            waiting[prepared.digest] = [i]
                        pending.append((i, prepared.pixels, prepared.digest))
                        if len(pending) >= batch_size:
                            flush()
                    bar(1)
                flush()
        finally:
            bar(None)
            if store is not None and store is not cache:
                store.close()
        result.seconds = time.perf_counter() - started
        # Listings without a photo are normal; photos given but unusable deserve a warning.
        given = n - result.kinds.count("no image")
        bad = result.n_failed - (n - given)
        if warn and bad:
            warnings.warn(f"{bad} of {given} images could not be used and were skipped "
                          f"({result.failure_summary()})", stacklevel=2)
        return result

    def usable(self, sources: Iterable[ImageSource | None], *, n_workers: int | None = None) -> np.ndarray:
        """Which photos decode (no encoding): a bool mask."""
        sources = list(sources)
        workers = n_workers or max(2, usable_cpus())

        def check(source: ImageSource | None) -> bool:
            try:
                load_image(source, max_pixels=self.max_pixels, target_size=self.config.decode_size)
                return True
            except ImageError:
                return False

        with ThreadPoolExecutor(max_workers=workers) as pool:
            return np.fromiter(pool.map(check, sources), dtype=bool, count=len(sources))

    def torch_model(self):
        """The PyTorch model behind the export, in eval mode (for comparisons; needs torch)."""
        return export.build_torch_model(self.spec)
