"""Decoding listing photos into RGB images, whatever shape the file is in.

Marketplace photos are messy: truncated uploads, HTML error pages saved as ``.jpg``, PNGs with
transparency, CMYK or 16-bit files, 1×1 tracking pixels, rotated phone pictures and the odd
100-megapixel original. :func:`load_image` turns each into an RGB :class:`PIL.Image.Image` or
raises :class:`ImageError` with a reason a user can act on; :func:`try_load_image` returns the
reason instead of raising, for batch jobs that count and skip.

Large images are decoded small: JPEGs are decoded at 1/2, 1/4 or 1/8 scale straight from the DCT
coefficients (``draft``), which costs a fraction of a full decode and bounds memory, so a 94 Mpx
photo is accepted and decoded at about 1.5 Mpx. Formats that cannot be drafted are refused above
``max_pixels`` before anything is decoded (the header alone tells the size).
"""

from __future__ import annotations

import io
import os
from pathlib import Path

import numpy as np
from PIL import Image, ImageOps

from prodcat.image.errors import ImageError

#: What :func:`load_image` accepts: a path, or the file's bytes.
ImageSource = str | os.PathLike | bytes | bytearray | memoryview

#: The most pixels decoded for one image: 64 Mpx is about 192 MB as RGB. JPEGs larger than this
#: are decoded at a reduced scale instead of refused (see the module docstring).
DEFAULT_MAX_PIXELS = 64_000_000

# Modes whose alpha channel must be composited on white: a transparent product cut-out shows
# as black on an RGB convert, which a model reads as a black background.
_ALPHA_MODES = {"RGBA", "LA", "PA", "RGBa", "La"}
_HIGH_BIT_MODES = {"I", "F", "I;16", "I;16L", "I;16B", "I;16N"}


def describe_source(source: object) -> str:
    """A short name for messages: the file name, or ``<N bytes>``."""
    if isinstance(source, (bytes, bytearray, memoryview)):
        return f"<{len(source)} bytes>"
    return str(source)


def is_missing(source: object) -> bool:
    """True for None, NaN and blank strings: a listing without a photo."""
    if source is None:
        return True
    if isinstance(source, float) and source != source:
        return True
    return isinstance(source, str) and not source.strip()


def read_image_bytes(source: ImageSource) -> bytes:
    """The bytes of an image file (or the bytes given); :class:`ImageError` when unreadable."""
    if is_missing(source):
        raise ImageError("no image", "no image")
    if isinstance(source, (bytes, bytearray, memoryview)):
        return bytes(source)
    path = Path(source)
    try:
        return path.read_bytes()
    except FileNotFoundError:
        raise ImageError(f"image file not found: {path}", "not found") from None
    except IsADirectoryError:
        raise ImageError(f"expected an image file, got a folder: {path}", "not found") from None
    except OSError as exc:
        raise ImageError(f"cannot read image file {path}: {exc.strerror or exc}", "unreadable") from None


def _power_of_two_at_most(value: float, cap: int = 8) -> int:
    scale = 1
    while scale * 2 <= min(value, cap):
        scale *= 2
    return scale


def _jpeg_scale(width: int, height: int, max_pixels: int, target_size: int | None) -> int:
    """The DCT scale (1, 2, 4 or 8) to decode a JPEG at.

    As much reduction as keeps the long side at least ``target_size``, and at least as much as
    brings the image under ``max_pixels`` (when 1/8 cannot, the caller refuses the image).
    """
    scale = _power_of_two_at_most(max(width, height) / target_size) if target_size else 1
    while scale < 8 and width * height / (scale * scale) > max_pixels:
        scale *= 2
    return scale


def _to_rgb(im: Image.Image) -> Image.Image:
    """Any PIL mode → RGB, transparent parts white, 16-bit and float data scaled to 8 bits."""
    if im.mode == "RGB":
        return im
    if im.mode in _HIGH_BIT_MODES:
        # PIL's own I;16 → RGB conversion clips at 255, turning most 16-bit photos white.
        data = np.asarray(im, dtype=np.float64)
        top = float(np.nanmax(data)) if data.size else 0.0
        if top > 255:
            data = data * (255.0 / (65535.0 if top <= 65535 else top))
        grey = np.clip(np.nan_to_num(data), 0, 255).astype(np.uint8)
        return Image.fromarray(grey).convert("RGB")
    if im.mode in _ALPHA_MODES or "transparency" in im.info:
        rgba = im.convert("RGBA")
        white = Image.new("RGBA", rgba.size, (255, 255, 255, 255))
        return Image.alpha_composite(white, rgba).convert("RGB")
    return im.convert("RGB")


def load_image(
    source: ImageSource,
    *,
    max_pixels: int = DEFAULT_MAX_PIXELS,
    target_size: int | None = None,
    name: str | None = None,
) -> Image.Image:
    """Decode ``source`` (a path or the file's bytes) into an upright RGB image.

    Parameters
    ----------
    max_pixels
        The most pixels decoded. Larger JPEGs are decoded at 1/2, 1/4 or 1/8 scale; other
        formats above it are refused without being decoded. Files whose header declares more
        than twice ``PIL.Image.MAX_IMAGE_PIXELS`` are refused by Pillow itself (a
        decompression bomb); that process-wide setting is left as it is.
    target_size
        The size the caller will shrink the image to. Decoding may then be done at a reduced
        scale as long as the long side stays at least ``target_size`` (faster, less memory).
    name
        What to call the image in error messages (default: the path, or ``<N bytes>``).

    Raises
    ------
    ImageError
        Missing or unreadable file, not an image, corrupt or truncated data, or too large;
        its ``kind`` says which.
    """
    name = name or describe_source(source)
    if is_missing(source):
        raise ImageError("no image", "no image")
    if isinstance(source, (bytes, bytearray, memoryview)):
        fp: object = io.BytesIO(bytes(source))
    else:
        path = Path(source)
        if not path.exists():
            raise ImageError(f"image file not found: {path}", "not found")
        if not path.is_file():
            raise ImageError(f"expected an image file, got a folder: {path}", "not found")
        fp = path
    try:
        with Image.open(fp) as im:
            width, height = im.size
            if width < 1 or height < 1:
                raise ImageError(f"{name}: image has no pixels ({width}×{height})", "corrupt")
            if im.format == "JPEG":
                scale = _jpeg_scale(width, height, max_pixels, target_size)
                if scale > 1:
                    im.draft(None, (max(1, width // scale), max(1, height // scale)))
            if im.size[0] * im.size[1] > max_pixels:
                raise ImageError(
                    f"{name}: image is {width}×{height} ({width * height / 1e6:.0f} Mpx), more than "
                    f"the {max_pixels / 1e6:g} Mpx that are decoded (max_pixels)", "too large"
                )
            im.load()
            if target_size and im.format != "JPEG":
                # Integer box reduction: cheap, and keeps the long side >= target_size.
                factor = int(max(im.size) // target_size)
                if factor >= 2:
                    im = im.reduce(factor)
            try:
                upright = ImageOps.exif_transpose(im)
            except Exception:  # a malformed EXIF block: keep the pixels as stored
                upright = im
            return _to_rgb(upright if upright is not None else im)
    except ImageError:
        raise
    except Image.DecompressionBombError as exc:
        raise ImageError(f"{name}: refused as a possible decompression bomb ({exc})", "too large") from None
    except Image.UnidentifiedImageError:
        raise ImageError(f"{name}: not an image file (or a format Pillow cannot read)",
                         "not an image") from None
    except MemoryError:
        raise ImageError(f"{name}: not enough memory to decode this image", "too large") from None
    except Exception as exc:
        # Pillow's decoders raise OSError, SyntaxError, ValueError, EOFError, struct.error,
        # zlib.error and more on damaged files; to a batch job they all mean "unusable".
        detail = str(exc) or type(exc).__name__
        raise ImageError(f"{name}: corrupt or truncated image ({detail})", "corrupt") from None


def try_load_image(
    source: ImageSource,
    *,
    max_pixels: int = DEFAULT_MAX_PIXELS,
    target_size: int | None = None,
    name: str | None = None,
) -> tuple[Image.Image | None, str | None]:
    """Like :func:`load_image`, but returns ``(image, None)`` or ``(None, reason)``; never raises
    :class:`ImageError`."""
    try:
        return load_image(source, max_pixels=max_pixels, target_size=target_size, name=name), None
    except ImageError as exc:
        return None, str(exc)
