"""Uploaded photos: checked, and decoded once, before the model sees them.

A photo is first probed from its header alone (format, size, and what decoding it would hold):
anything Pillow cannot identify, or a format not accepted, is 415; a photo above the pixel limit
or the decode budget (pixels × bands: a 140 KB PNG can declare 6000×6000 RGBA, 144 M samples)
is 413 — all before a pixel is decoded. A photo within the limits is then decoded once, at the
size the encoder needs (JPEGs from their DCT coefficients at a reduced scale, other formats
box-reduced straight after the decode), and that small upright RGB image is what is stored, as
a PNG, for the model: the model's own decode of it is a few milliseconds. A damaged file is 422.

Decodes are bounded by a :class:`DecodeGate`: as many at once as there are CPUs, a short queue
behind them, and 503 with ``Retry-After`` beyond it, so a burst of photos cannot take the
memory or the cores that text requests need.
"""

from __future__ import annotations

import asyncio
import contextlib
import io
import math
import os
import tempfile
import uuid
import warnings
from collections.abc import AsyncIterator
from dataclasses import dataclass
from pathlib import Path

from PIL import Image

from prodcat.image.errors import ImageError
from prodcat.image.loading import ImageProbe, load_image, probe_image
from prodcat.serving.errors import ServingError

#: Formats a seller's photo may come in; others are refused (415) even if Pillow reads them.
ALLOWED_FORMATS = {"JPEG": ".jpg", "PNG": ".png", "WEBP": ".webp", "GIF": ".gif", "BMP": ".bmp"}
#: The long side photos are decoded at when the model has no image encoder to ask (text-only
#: models still check photos, so clients learn of a bad one).
DEFAULT_DECODE_SIZE = 512
#: The default decode budget, in samples (pixels × bands): a 12 Mpx RGB or a 9 Mpx RGBA photo.
DEFAULT_MAX_DECODE_SAMPLES = 36_000_000
#: The status each kind of unusable photo gets.
_STATUS = {"not an image": (415, "unsupported_image"), "too large": (413, "image_too_large")}


@dataclass(frozen=True)
class CheckedImage:
    """A photo that decoded cleanly: the decoded (reduced, upright RGB) image as PNG bytes, and
    the uploaded file's format and size."""

    data: bytes
    format: str
    width: int
    height: int

    @property
    def suffix(self) -> str:
        return ".png"


def _refusal(exc: ImageError) -> ServingError:
    status, code = _STATUS.get(exc.kind, (422, "corrupt_image"))
    return ServingError(status, code, str(exc))


def probe_upload(data: bytes, *, max_bytes: int, max_pixels: int,
                 max_samples: int = DEFAULT_MAX_DECODE_SAMPLES, target_size: int = DEFAULT_DECODE_SIZE,
                 name: str = "image") -> ImageProbe:
    """What decoding ``data`` would take, from its header: :class:`ServingError` (413, 415,
    422) when it is empty, not an accepted image, or over a limit. Nothing is decoded."""
    if not data:
        raise ServingError(422, "empty_image", f"{name}: the uploaded file is empty")
    if len(data) > max_bytes:
        raise ServingError(413, "image_too_large",
                           f"{name}: {len(data):,} bytes is more than the {max_bytes:,} bytes accepted")
    try:
        with warnings.catch_warnings():
            # Pillow warns (DecompressionBombWarning) between its own limits; ours are stricter.
            warnings.simplefilter("ignore")
            probe = probe_image(data, max_pixels=max_pixels, target_size=target_size, name=name)
    except ImageError as exc:
        if exc.kind == "not an image":
            raise ServingError(415, "unsupported_image",
                               f"{name}: not an image file (send {', '.join(sorted(ALLOWED_FORMATS))})") from None
        raise _refusal(exc) from None
    if probe.format not in ALLOWED_FORMATS:
        raise ServingError(415, "unsupported_image",
                           f"{name}: {probe.format or 'this'} format is not accepted; send "
                           f"{', '.join(sorted(ALLOWED_FORMATS))}")
    if probe.width < 1 or probe.height < 1:
        raise ServingError(422, "corrupt_image", f"{name}: the image has no pixels")
    if probe.decode_width * probe.decode_height > max_pixels:
        raise ServingError(413, "image_too_large",
                           f"{name}: {probe.width}×{probe.height} pixels is more than the "
                           f"{max_pixels:,} accepted (max_image_pixels)")
    if probe.samples > max_samples:
        raise ServingError(413, "image_too_large",
                           f"{name}: decoding this {probe.width}×{probe.height} {probe.mode} image takes "
                           f"{probe.samples:,} samples (pixels × bands), more than the decode budget of "
                           f"{max_samples:,} (max_decode_samples)")
    return probe


def decode_upload(data: bytes, *, max_pixels: int, max_samples: int = DEFAULT_MAX_DECODE_SAMPLES,
                  target_size: int = DEFAULT_DECODE_SIZE, name: str = "image") -> CheckedImage:
    """Decode an upload that passed :func:`probe_upload`, once, at ``target_size``."""
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            with Image.open(io.BytesIO(data)) as im:
                fmt, (width, height) = im.format or "", im.size
            image = load_image(data, max_pixels=max_pixels, max_samples=max_samples,
                               target_size=target_size, name=name, formats=ALLOWED_FORMATS)
    except ImageError as exc:
        raise _refusal(exc) from None
    except Exception as exc:  # Pillow raises OSError, SyntaxError, ValueError... on damaged files
        raise ServingError(422, "corrupt_image",
                           f"{name}: corrupt or truncated image ({str(exc) or type(exc).__name__})") from None
    buffer = io.BytesIO()
    # Lossless, so the model reads exactly these pixels; fast compression, the file lives
    # only while the request does.
    image.save(buffer, format="PNG", compress_level=1)
    return CheckedImage(data=buffer.getvalue(), format=fmt, width=width, height=height)


def check_image(data: bytes, *, max_bytes: int, max_pixels: int,
                max_samples: int = DEFAULT_MAX_DECODE_SAMPLES, target_size: int = DEFAULT_DECODE_SIZE,
                name: str = "image") -> CheckedImage:
    """Probe, then decode ``data`` once; raise :class:`ServingError` if it is not a usable photo."""
    probe_upload(data, max_bytes=max_bytes, max_pixels=max_pixels, max_samples=max_samples,
                 target_size=target_size, name=name)
    return decode_upload(data, max_pixels=max_pixels, max_samples=max_samples,
                         target_size=target_size, name=name)


class DecodeGate:
    """At most ``slots`` photo decodes at once and ``queue`` more waiting; past that, 503.

    A decode holds the full-size pixels of a photo (up to the decode budget) and a core for
    tens to hundreds of milliseconds: without a bound, a burst of large photos takes the memory
    and every core, and text requests wait behind it.
    """

    def __init__(self, slots: int, queue: int, retry_after: float = 1.0):
        self.slots = slots
        self.queue = queue
        self.retry_after = retry_after
        self._semaphore = asyncio.Semaphore(slots)
        self._waiting = 0
        self._running = 0

    @property
    def waiting(self) -> int:
        return self._waiting

    @property
    def running(self) -> int:
        return self._running

    @contextlib.asynccontextmanager
    async def slot(self) -> AsyncIterator[None]:
        if self._semaphore.locked() and self._waiting >= self.queue:
            raise ServingError(503, "busy",
                               f"{self.slots} photos are being decoded and {self._waiting} are waiting; "
                               f"retry in {math.ceil(self.retry_after)} s",
                               headers={"Retry-After": str(math.ceil(self.retry_after))})
        self._waiting += 1
        try:
            await self._semaphore.acquire()
        finally:
            self._waiting -= 1
        self._running += 1
        try:
            yield
        finally:
            self._running -= 1
            self._semaphore.release()


class ImageStore:
    """A private temporary folder for the photos of requests in flight.

    Each photo lives only while its prediction runs; the folder goes when the app shuts down.
    """

    def __init__(self, root: str | os.PathLike | None = None):
        self.root = Path(tempfile.mkdtemp(prefix="prodcat-serve-", dir=root))

    def write(self, image: CheckedImage) -> Path:
        path = self.root / f"{uuid.uuid4().hex}{image.suffix}"
        # O_EXCL: never follow or overwrite anything already there.
        fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
        with os.fdopen(fd, "wb") as fh:
            fh.write(image.data)
        return path

    @staticmethod
    def discard(paths: list[Path | None]) -> None:
        for p in paths:
            if p is not None:
                with contextlib.suppress(FileNotFoundError):
                    os.unlink(p)

    def close(self) -> None:
        import shutil

        shutil.rmtree(self.root, ignore_errors=True)
