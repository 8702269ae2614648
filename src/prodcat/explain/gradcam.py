"""Grad-CAM on the PyTorch EfficientNet-Lite behind an ONNX encoder (see
:mod:`prodcat.explain.image` for the method): the feature map, the class gradients at the
embedding, and their product. PyTorch is imported only when a map is computed.
"""

from __future__ import annotations

import importlib.util
import threading
import time
from collections.abc import Sequence
from typing import Any

import numpy as np

from prodcat.image.encoders import ImageEncoder
from prodcat.image.errors import ImageError
from prodcat.image.preprocess import normalize

#: Largest tolerated difference between the PyTorch feature map's pooled mean and the ONNX
#: embedding, relative to the embedding's largest value (the export check uses the same).
CONSISTENCY_TOLERANCE = 1e-3

_TORCH_MODELS: dict[tuple[str, str, int], Any] = {}
_TORCH_LOCK = threading.Lock()


def gradcam_available(encoder: ImageEncoder | None = None) -> bool:
    """True when Grad-CAM can run for ``encoder`` (default: Lite0): PyTorch,
    efficientnet-lite-pytorch and the encoder's weights package are importable. Imports nothing."""
    if encoder is None:
        from prodcat.image.encoders import create_encoder

        encoder = create_encoder()
    modules = ("torch", "efficientnet_lite_pytorch", encoder.spec.weights_module)
    try:
        return all(importlib.util.find_spec(m) is not None for m in modules)
    except (ImportError, ValueError):
        return False


def torch_model(encoder: ImageEncoder):
    """The PyTorch model behind ``encoder``'s export, built once per process."""
    from prodcat.image.export import build_torch_model

    key = (encoder.spec.name, encoder.spec.weights_file, encoder.config.size)
    with _TORCH_LOCK:
        if key not in _TORCH_MODELS:
            _TORCH_MODELS[key] = build_torch_model(encoder.spec)
        return _TORCH_MODELS[key]


def feature_map(encoder: ImageEncoder, pixels: np.ndarray) -> np.ndarray:
    """The last convolution's output ``float64 [channels, h, w]`` for one preprocessed input
    (the map whose spatial mean is the embedding), from the PyTorch model; needs torch."""
    import torch

    net = torch_model(encoder)
    x = torch.from_numpy(normalize(pixels, encoder.config))
    with torch.inference_mode():
        features = net.extract_features(x)
    return features[0].double().numpy()


def gradcam(image_model, encoder: ImageEncoder, pixels: np.ndarray, embedding: np.ndarray,
            columns: list[int]) -> tuple[list[np.ndarray], dict[str, Any]]:
    """One raw Grad-CAM grid per head column, and the details of how it was made; refused
    (:class:`ImageError`) when the PyTorch network is not the deployed ONNX one."""
    tick = time.perf_counter()
    A = feature_map(encoder, pixels)
    forward_s = time.perf_counter() - tick
    pooled = A.mean(axis=(1, 2))
    diff = float(np.max(np.abs(pooled - embedding)))
    if not np.isfinite(diff) or diff > CONSISTENCY_TOLERANCE * max(1.0, float(np.max(np.abs(embedding)))):
        raise ImageError(f"the PyTorch {encoder.name} differs from the deployed ONNX encoder "
                         f"(pooled features differ by up to {diff:.3g}); the heat map would not "
                         "explain the deployed model")
    gradients, how = class_gradients(image_model, embedding, columns)
    grids = [np.maximum(np.tensordot(g, A, axes=1), 0.0) for g in gradients]
    details = {"feature_map_shape": list(A.shape), "torch_vs_onnx_max_abs": diff,
               "gradient": how, "score": "log-probability", "torch_forward_s": forward_s}
    return grids, details


def class_gradients(image_model, embedding: np.ndarray, columns: Sequence[int]) -> tuple[np.ndarray, str]:
    """``d log p_c / d z`` for each head column ``c``, at the raw (unstandardised) embedding ``z``:
    ``float64 [len(columns), dim]``, and how it was computed (``"analytic"`` or
    ``"finite differences (step …)"``)."""
    from sklearn.linear_model import LogisticRegression

    scaler, head = image_model.scaler_, image_model.head_
    z = np.asarray(embedding, np.float64)[None]
    x = scaler.transform(z)
    scale = getattr(scaler, "scale_", None)
    scale = np.ones(z.shape[1]) if scale is None else np.asarray(scale, np.float64)
    columns = list(columns)
    if isinstance(head, LogisticRegression):
        W = np.asarray(head.coef_, np.float64)
        p = head.predict_proba(x)[0]
        if W.shape[0] == 1:  # binary: p_1 = sigmoid(w x + b)
            w = W[0]
            grads = np.stack([(1.0 - p[1]) * w if c == 1 else -p[1] * w for c in columns])
        else:  # multinomial softmax
            grads = W[columns] - (p @ W)[None]
        return grads / scale[None], "analytic"
    d = x.shape[1]
    for step in (1e-3, 1e-1, 1.0):
        steps = np.eye(d) * step
        up = head.predict_proba(x + steps)[:, columns]
        down = head.predict_proba(x - steps)[:, columns]
        with np.errstate(divide="ignore"):
            grads = ((np.log(np.maximum(up, 1e-300)) - np.log(np.maximum(down, 1e-300)))
                     / (2 * step)).T
        if np.all(np.isfinite(grads)) and np.any(grads != 0):
            return grads / scale[None], f"finite differences (step {step:g})"
    return np.zeros((len(columns), d)), "finite differences (flat head)"
