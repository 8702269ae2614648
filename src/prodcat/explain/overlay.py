"""Heat-map geometry and drawing: where the photo lies in the encoder's input square, the map
brought back onto the photo, and the map drawn over it.

Imports neither matplotlib nor PyTorch until an overlay is drawn (a server explaining in JSON
never needs them).
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np
from PIL import Image

from prodcat.errors import ConfigError
from prodcat.image.preprocess import PreprocessConfig, white_border_box


@dataclass(frozen=True)
class Placement:
    """Where the photo lies in the encoder's input square.

    ``box`` ``(left, top, right, bottom)``: the part of the decoded photo kept by the white-border
    crop; ``region`` ``(left, top, right, bottom)``: where that part lies in the square, after
    the resize (the rest of the square is white padding).
    """

    photo_size: tuple[int, int]
    box: tuple[int, int, int, int]
    region: tuple[int, int, int, int]
    size: int


def input_placement(photo: Image.Image, config: PreprocessConfig) -> Placement:
    """Where :func:`~prodcat.image.preprocess.preprocess_image` puts ``photo`` in the input square
    (the same white-border crop, resize and centring)."""
    width, height = photo.size
    box = (0, 0, width, height)
    if config.crop_borders:
        found = white_border_box(np.asarray(photo.convert("RGB")), config.border_tolerance,
                                 config.border_noise)
        if found is not None:
            box = found
    cw, ch = box[2] - box[0], box[3] - box[1]
    size = config.size
    scale = size / max(cw, ch)
    nw, nh = max(1, round(cw * scale)), max(1, round(ch * scale))
    x0, y0 = (size - nw) // 2, (size - nh) // 2
    return Placement(photo_size=(width, height), box=box, region=(x0, y0, x0 + nw, y0 + nh), size=size)


def heatmap_on_photo(heatmap: np.ndarray, placement: Placement) -> np.ndarray:
    """A heat map on the input square → ``float32 [height, width]`` in ``[0, 1]`` on the decoded
    photo; 0 on the white margins the preprocessing cropped away."""
    width, height = placement.photo_size
    out = np.zeros((height, width), np.float32)
    left, top, right, bottom = placement.box
    x0, y0, x1, y1 = placement.region
    part = heatmap[y0:y1, x0:x1]
    if part.size == 0 or right <= left or bottom <= top:
        return out
    resized = Image.fromarray(np.ascontiguousarray(part, dtype=np.float32)).resize(
        (right - left, bottom - top), Image.Resampling.BILINEAR)
    out[top:bottom, left:right] = np.clip(np.asarray(resized, np.float32), 0.0, 1.0)
    return out


def draw_overlay(base: np.ndarray, heat: np.ndarray, *, alpha: float = 0.6, cmap: str = "turbo",
                 max_side: int | None = 1024) -> Image.Image:
    """``heat`` (``[0, 1]``, the shape of ``base``'s first two axes) drawn over the RGB ``base`` in
    ``cmap`` colours, opaque up to ``alpha`` where the heat is 1; longest side at most
    ``max_side``."""
    from matplotlib import colormaps

    if cmap not in colormaps:
        raise ConfigError(f"unknown matplotlib colormap {cmap!r}")
    if not 0.0 <= alpha <= 1.0:
        raise ConfigError(f"alpha must be between 0 and 1, got {alpha}")
    colours = colormaps[cmap](heat)[..., :3].astype(np.float32) * 255.0
    a = (alpha * heat)[..., None]
    image = Image.fromarray(np.clip(base * (1.0 - a) + colours * a, 0, 255).astype(np.uint8))
    if max_side and max(image.size) > max_side:
        scale = max_side / max(image.size)
        image = image.resize((max(1, round(image.width * scale)), max(1, round(image.height * scale))),
                             Image.Resampling.LANCZOS)
    return image


def normalise(grid: np.ndarray) -> np.ndarray:
    """A map clipped at 0 and scaled to a maximum of 1 (all zeros when nothing is positive)."""
    grid = np.nan_to_num(np.maximum(np.asarray(grid, np.float64), 0.0))
    top = float(grid.max()) if grid.size else 0.0
    return grid / top if top > 0 and math.isfinite(top) else np.zeros_like(grid)


def upsample(grid: np.ndarray, size: int) -> np.ndarray:
    """A coarse map in ``[0, 1]`` → ``float32 [size, size]``, bilinear, scaled back to a maximum
    of 1 (interpolation lowers the peak a little)."""
    resized = Image.fromarray(np.ascontiguousarray(grid, dtype=np.float32)).resize(
        (size, size), Image.Resampling.BILINEAR)
    return normalise(np.asarray(resized, np.float64)).astype(np.float32)
