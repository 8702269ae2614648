"""Decoding listing photos into RGB images, whatever shape the file is in.

Marketplace photos are messy: truncated uploads, HTML error pages saved as ``.jpg``, PNGs with
transparency, CMYK or 16-bit files, 1×1 tracking pixels, rotated phone pictures and the odd
100-megapixel original. :func:`load_image` turns each into an RGB :class:`PIL.Image.Image` or
raises :class:`ImageError` with a reason a user can act on; :func:`try_load_image` returns the
reason instead of raising, for batch jobs that count and skip.

Large images are decoded small: JPEGs are decoded at 1/2, 1/4 or 1/8 scale straight from the DCT
coefficients (``draft``), which costs a fraction of a full decode and bounds memory, so a 94 Mpx
photo is accepted and decoded at about 1.5 Mpx. Formats that cannot be drafted are decoded whole
and then box-reduced to the size the caller needs (``Image.reduce``), so the full-size pixels live
only for the moment of the decode. What that decode costs is known from the header alone
(:func:`probe_image`): images above ``max_pixels``, or whose decode would hold more than
``max_samples`` (pixels × bands), are refused before anything is decoded. A 140 KB PNG can
declare 6000×6000 RGBA, 144 M samples.
"""

from __future__ import annotations

import io
import os
from collections.abc import Collection
from dataclasses import dataclass
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


def decode_samples(im: Image.Image) -> int:
    """The samples (pixels × bands) decoding ``im`` at its current (possibly drafted) size holds.

    A palette or 1-bit image is counted at the bands it is converted to before it is reduced
    (``Image.reduce`` would average palette indices, not colours), a 16-bit or float one at 4
    (its conversion to 8 bits goes through a float array).
    """
    width, height = im.size
    if im.mode in ("P", "PA"):
        bands = 4 if im.mode == "PA" or "transparency" in im.info else 3
    elif im.mode in _HIGH_BIT_MODES:
        bands = 4
    else:
        bands = len(im.getbands())
    return width * height * bands


@dataclass(frozen=True)
class ImageProbe:
    """What an image's header says: format, stored size, the size it is decoded at and the
    samples that decode holds (:func:`decode_samples`)."""

    format: str
    mode: str
    width: int
    height: int
    decode_width: int
    decode_height: int
    samples: int


def _plan_decode(im: Image.Image, max_pixels: int, target_size: int | None) -> None:
    """Set a JPEG's DCT scale for ``target_size`` (a no-op for other formats)."""
    if im.format == "JPEG":
        width, height = im.size
        scale = _jpeg_scale(width, height, max_pixels, target_size)
        if scale > 1:
            im.draft(None, (max(1, width // scale), max(1, height // scale)))


def probe_image(
    source: ImageSource,
    *,
    max_pixels: int = DEFAULT_MAX_PIXELS,
    target_size: int | None = None,
    name: str | None = None,
) -> ImageProbe:
    """Read ``source``'s header only (no pixel is decoded): what :func:`load_image` with the same
    arguments would decode. :class:`ImageError` when it is not a readable image."""
    name = name or describe_source(source)
    try:
        with _opened(source, name) as im:
            width, height = im.size
            _plan_decode(im, max_pixels, target_size)
            return ImageProbe(im.format or "", im.mode, width, height, im.size[0], im.size[1],
                              decode_samples(im))
    except ImageError:
        raise
    except Exception as exc:
        raise _decode_error(exc, name) from None


def _opened(source: ImageSource, name: str) -> Image.Image:
    if is_missing(source):
        raise ImageError("no image", "no image")
    if isinstance(source, (bytes, bytearray, memoryview)):
        return Image.open(io.BytesIO(bytes(source)))
    path = Path(source)
    if not path.exists():
        raise ImageError(f"image file not found: {path}", "not found")
    if not path.is_file():
        raise ImageError(f"expected an image file, got a folder: {path}", "not found")
    return Image.open(path)


def _decode_error(exc: BaseException, name: str) -> ImageError:
    if isinstance(exc, Image.DecompressionBombError):
        return ImageError(f"{name}: refused as a possible decompression bomb ({exc})", "too large")
    if isinstance(exc, Image.UnidentifiedImageError):
        return ImageError(f"{name}: not an image file (or a format Pillow cannot read)", "not an image")
    if isinstance(exc, MemoryError):
        return ImageError(f"{name}: not enough memory to decode this image", "too large")
    # Pillow's decoders raise OSError, SyntaxError, ValueError, EOFError, struct.error,
    # zlib.error and more on damaged files; to a batch job they all mean "unusable".
    detail = str(exc) or type(exc).__name__
    return ImageError(f"{name}: corrupt or truncated image ({detail})", "corrupt")


def _reduced(im: Image.Image, target_size: int | None) -> Image.Image:
    """``im`` box-reduced by the largest integer factor that keeps its long side at least
    ``target_size``."""
    if not target_size:
        return im
    factor = int(max(im.size) // target_size)
    if factor < 2:
        return im
    try:
        return im.reduce(factor)
    except ValueError:  # palette, 1-bit and 16-bit modes: reduced as the colours they show
        return _to_rgb(im).reduce(factor)


def _to_rgb(im: Image.Image) -> Image.Image:
    """Any PIL mode → RGB, transparent parts white, 16-bit and float data scaled to 8 bits."""
    if im.mode == "RGB":
        return im
    if im.mode in _HIGH_BIT_MODES:
        # PIL's own I;16 → RGB conversion clips at 255, turning most 16-bit photos white.
        data = np.asarray(im, dtype=np.float32)
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
    max_samples: int | None = None,
    formats: Collection[str] | None = None,
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
        scale as long as the long side stays at least ``target_size`` (faster, less memory),
        and the decoded image is box-reduced to about that size.
    name
        What to call the image in error messages (default: the path, or ``<N bytes>``).
    max_samples
        The decode budget: the most samples (pixels × bands, see :func:`decode_samples`) the
        decode may hold, checked from the header. None: only ``max_pixels`` bounds it.
    formats
        Pillow format names accepted (``{"JPEG", "PNG"}``); others are refused as ``"not an
        image"`` before decoding. None: any format Pillow reads.

    Raises
    ------
    ImageError
        Missing or unreadable file, not an image, corrupt or truncated data, or too large;
        its ``kind`` says which.
    """
    name = name or describe_source(source)
    try:
        with _opened(source, name) as im:
            if formats is not None and im.format not in formats:
                raise ImageError(f"{name}: {im.format or 'this'} images are not accepted (send "
                                 f"{', '.join(sorted(formats))})", "not an image")
            width, height = im.size
            if width < 1 or height < 1:
                raise ImageError(f"{name}: image has no pixels ({width}×{height})", "corrupt")
            _plan_decode(im, max_pixels, target_size)
            if im.size[0] * im.size[1] > max_pixels:
                raise ImageError(
                    f"{name}: image is {width}×{height} ({width * height / 1e6:.0f} Mpx), more than "
                    f"the {max_pixels / 1e6:g} Mpx that are decoded (max_pixels)", "too large"
                )
            samples = decode_samples(im)
            if max_samples is not None and samples > max_samples:
                raise ImageError(
                    f"{name}: decoding this {width}×{height} {im.mode} image takes "
                    f"{samples / 1e6:.0f} M samples (pixels × bands), more than the decode budget "
                    f"of {max_samples / 1e6:g} M (max_samples)", "too large")
            im.load()
            small = _reduced(im, target_size)
            try:
                upright = ImageOps.exif_transpose(small)
            except Exception:  # a malformed EXIF block: keep the pixels as stored
                upright = small
            return _to_rgb(upright if upright is not None else small)
    except ImageError:
        raise
    except Exception as exc:
        raise _decode_error(exc, name) from None


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
