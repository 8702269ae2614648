"""Image statistics that never fail: sizes, white borders, mean colour, content hashes.

Every image goes through :func:`inspect_image`, which turns any decoding problem (missing file,
truncated or corrupt data, a text file named ``.jpg``, a decompression bomb, an exotic mode) into
a status, so one bad file among 85,000 costs a count, never the report. JPEGs are decoded with
PIL's ``draft`` at 1/2 to 1/8 scale: the statistics need ~128 px, and skipping most of the IDCT
makes a 500×500 photo several times cheaper to read.
"""

from __future__ import annotations

import os
import warnings
from collections import Counter
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from prodcat.hashing import file_digest

#: Side (px) of the downscaled copy the statistics are computed on.
STAT_SIZE = 128
#: Side (px) of the thumbnails shown in the report.
THUMB_SIZE = 96
#: A pixel is near-white when all three channels reach this value (JPEG noise keeps pure white
#: from being exactly 255).
WHITE_LEVEL = 235
#: A row or column belongs to a border when at least this share of its pixels is near-white.
BORDER_ROW_SHARE = 0.98
#: Above this many pixels (after ``draft``) an image is not decoded but counted as too large: a
#: 20,000 × 20,000 PNG would take gigabytes.
MAX_PIXELS = 50_000_000

OK, MISSING, CORRUPT, TOO_LARGE = "ok", "missing", "corrupt", "too_large"


@dataclass
class ImageInfo:
    """What one image file turned out to be; fields other than ``status`` are None unless ok."""

    status: str
    reason: str = ""
    format: str | None = None
    mode: str | None = None
    width: int | None = None
    height: int | None = None
    file_bytes: int | None = None
    white_border: float | None = None
    mean_rgb: tuple[float, float, float] | None = None  # inside the white borders
    thumbnail: object | None = None  # a small RGB PIL image

    @property
    def has_alpha(self) -> bool:
        return self.mode in ("RGBA", "LA", "PA", "La", "RGBa")


def content_box(rgb: np.ndarray, *, level: int = WHITE_LEVEL,
                row_share: float = BORDER_ROW_SHARE) -> tuple[int, int, int, int] | None:
    """``(top, bottom, left, right)`` of the rectangle inside the near-white edge bands.

    Peels near-white rows off the top and bottom, then near-white columns off the left and right
    of what remains. None for a blank (all near-white) image. White inside the product does not
    count: only uniform bands touching the edges do, which is what wastes a model's input pixels.
    """
    white = rgb.min(axis=2) >= level
    height, width = white.shape
    rows = white.mean(axis=1) >= row_share
    top = _leading_true(rows)
    if top == height:
        return None
    bottom = height - _leading_true(rows[::-1])
    cols = white[top:bottom].mean(axis=0) >= row_share
    left = _leading_true(cols)
    right = width - _leading_true(cols[::-1])
    return top, bottom, left, right


def white_border_share(rgb: np.ndarray, *, level: int = WHITE_LEVEL,
                       row_share: float = BORDER_ROW_SHARE) -> float:
    """Share of the image area taken by near-white bands along its four edges.

    1 - (area inside the bands / image area): a blank image is 1.0, a product photographed edge
    to edge 0.0. See :func:`content_box`.
    """
    if rgb.ndim != 3 or rgb.shape[0] == 0 or rgb.shape[1] == 0:
        return 0.0
    box = content_box(rgb, level=level, row_share=row_share)
    if box is None:
        return 1.0
    top, bottom, left, right = box
    return float(1.0 - (bottom - top) * (right - left) / (rgb.shape[0] * rgb.shape[1]))


def _leading_true(flags: np.ndarray) -> int:
    """How many values at the start of ``flags`` are True."""
    false = np.flatnonzero(~flags)
    return int(false[0]) if len(false) else len(flags)


def _to_rgb(im):
    """RGB whatever the mode: CMYK and palettes are converted, transparency is laid on white.

    Transparent areas show as white on every marketplace page, so white is what a model or a
    shopper sees there.
    """
    from PIL import Image

    if im.mode in ("RGBA", "LA", "PA", "La", "RGBa") or (im.mode == "P" and "transparency" in im.info):
        rgba = im.convert("RGBA")
        background = Image.new("RGBA", rgba.size, (255, 255, 255, 255))
        return Image.alpha_composite(background, rgba).convert("RGB")
    if im.mode in ("I", "I;16", "I;16B", "I;16L", "F"):
        # 16-bit and float greyscale: rescale to 8 bits before converting.
        arr = np.asarray(im, dtype=np.float64)
        span = float(arr.max() - arr.min()) or 1.0
        return Image.fromarray(((arr - arr.min()) / span * 255).astype(np.uint8)).convert("RGB")
    return im.convert("RGB")


def inspect_image(path: str | os.PathLike, *, max_pixels: int = MAX_PIXELS,
                  stat_size: int = STAT_SIZE, thumb_size: int = THUMB_SIZE) -> ImageInfo:
    """Decode one image (fast, at reduced scale) and measure it; never raises for bad files."""
    from PIL import Image

    path = Path(path)
    try:
        file_bytes = path.stat().st_size
    except OSError:
        return ImageInfo(MISSING, "file not found")
    try:
        with warnings.catch_warnings():
            # Pillow warns above MAX_IMAGE_PIXELS and raises at twice that; the raise is caught
            # below, and draft() makes big JPEGs cheap, so the warning is noise here.
            warnings.simplefilter("ignore", Image.DecompressionBombWarning)
            with Image.open(path) as im:
                fmt, mode = im.format, im.mode
                width, height = im.size
                if width <= 0 or height <= 0:
                    return ImageInfo(CORRUPT, "empty image", fmt, mode, file_bytes=file_bytes)
                if im.format == "JPEG":
                    # draft keeps CMYK as CMYK; asking it for RGB on YCbCr saves a conversion.
                    im.draft("RGB" if mode in ("RGB", "YCbCr") else mode, (stat_size, stat_size))
                if im.size[0] * im.size[1] > max_pixels:
                    return ImageInfo(TOO_LARGE, f"{width}x{height} pixels", fmt, mode, width, height,
                                     file_bytes)
                im.load()
                rgb = _to_rgb(im)
    except Image.DecompressionBombError:
        return ImageInfo(TOO_LARGE, "larger than Pillow's decompression-bomb limit",
                         file_bytes=file_bytes)
    except MemoryError:
        return ImageInfo(TOO_LARGE, "out of memory while decoding", file_bytes=file_bytes)
    except Exception as exc:  # PIL raises OSError, SyntaxError, ValueError, struct.error, ...
        return ImageInfo(CORRUPT, f"{type(exc).__name__}: {exc}"[:200], file_bytes=file_bytes)

    rgb.thumbnail((stat_size, stat_size))
    arr = np.asarray(rgb, dtype=np.uint8)
    box = content_box(arr)
    # The mean colour of what is inside the borders: with them, every class averages to grey.
    inner = arr if box is None else arr[box[0]:box[1], box[2]:box[3]]
    mean = inner.reshape(-1, 3).mean(axis=0)
    thumb = rgb.copy()
    thumb.thumbnail((thumb_size, thumb_size))
    return ImageInfo(OK, "", fmt, mode, width, height, file_bytes, white_border_share(arr),
                     (float(mean[0]), float(mean[1]), float(mean[2])), thumb)


def content_keys(paths: Sequence[str | None], progress: Callable | None = None) -> list[str | None]:
    """A key per path such that two paths share a key exactly when their bytes are identical.

    Only files whose byte size another file also has are hashed (blake2b): different sizes mean
    different content, so on a real catalogue most files are never read. Rows that name the same
    path share its key. None for no path or an unreadable file.
    """
    unique = list(dict.fromkeys(p for p in paths if p))
    sizes: dict[str, int | None] = {}
    for p in unique:
        try:
            sizes[p] = os.stat(p).st_size
        except OSError:
            sizes[p] = None
    per_size = Counter(s for s in sizes.values() if s is not None)
    to_hash = [p for p in unique if sizes[p] is not None and per_size[sizes[p]] > 1]
    keys: dict[str, str | None] = {
        p: (f"file:{p}" if sizes[p] is not None else None) for p in unique
    }
    for p in progress(to_hash) if progress else to_hash:
        try:
            keys[p] = "blake2b:" + _digest(p)
        except OSError:
            keys[p] = None
    return [keys[p] if p else None for p in paths]


def _digest(path: str) -> str:
    return file_digest(path, "blake2b")
