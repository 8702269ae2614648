"""Uploaded photos: checked and decoded safely before the model sees them.

A photo is decoded with Pillow under a pixel limit (the header alone tells the size, so a
decompression bomb is refused before any pixel is decoded); anything Pillow cannot identify is
415, a damaged file 422, a too-large one 413. A valid photo is written, as uploaded, to a
temporary file whose path goes into the listing's ``image`` field: that is what the Classifier
reads (the text model ignores it today; the fused text+image model will open it).
"""

from __future__ import annotations

import contextlib
import io
import os
import tempfile
import uuid
import warnings
from dataclasses import dataclass
from pathlib import Path

from PIL import Image

from prodcat.serving.errors import ServingError

#: Formats a seller's photo may come in; others are refused (415) even if Pillow reads them.
ALLOWED_FORMATS = {"JPEG": ".jpg", "PNG": ".png", "WEBP": ".webp", "GIF": ".gif", "BMP": ".bmp"}
#: Decoding is done at a reduced scale when possible: the model looks at about 224-300 px.
_CHECK_SIZE = 512


@dataclass(frozen=True)
class CheckedImage:
    """A photo that decoded cleanly: its bytes, format, size and the suffix to store it under."""

    data: bytes
    format: str
    width: int
    height: int

    @property
    def suffix(self) -> str:
        return ALLOWED_FORMATS[self.format]


def check_image(data: bytes, *, max_bytes: int, max_pixels: int, name: str = "image") -> CheckedImage:
    """Decode ``data`` once to prove it is a usable photo; raise :class:`ServingError` if not."""
    if not data:
        raise ServingError(422, "empty_image", f"{name}: the uploaded file is empty")
    if len(data) > max_bytes:
        raise ServingError(413, "image_too_large",
                           f"{name}: {len(data):,} bytes is more than the {max_bytes:,} bytes accepted")
    try:
        with warnings.catch_warnings():
            # Pillow warns (DecompressionBombWarning) between its own limits; ours is stricter.
            warnings.simplefilter("ignore")
            with Image.open(io.BytesIO(data)) as im:
                fmt = im.format or ""
                if fmt not in ALLOWED_FORMATS:
                    raise ServingError(415, "unsupported_image",
                                       f"{name}: {fmt or 'this'} format is not accepted; send "
                                       f"{', '.join(sorted(ALLOWED_FORMATS))}")
                width, height = im.size
                if width < 1 or height < 1:
                    raise ServingError(422, "corrupt_image", f"{name}: the image has no pixels")
                if width * height > max_pixels:
                    raise ServingError(413, "image_too_large",
                                       f"{name}: {width}×{height} pixels is more than the "
                                       f"{max_pixels:,} accepted")
                if fmt == "JPEG":
                    # Decode from the DCT coefficients at 1/2..1/8 scale: same checks, far cheaper.
                    im.draft("RGB", (_CHECK_SIZE, _CHECK_SIZE))
                im.load()
    except ServingError:
        raise
    except Image.DecompressionBombError:
        raise ServingError(413, "image_too_large", f"{name}: refused as a decompression bomb") from None
    except Image.UnidentifiedImageError:
        raise ServingError(415, "unsupported_image",
                           f"{name}: not an image file (send {', '.join(sorted(ALLOWED_FORMATS))})") from None
    except MemoryError:
        raise ServingError(413, "image_too_large", f"{name}: too large to decode") from None
    except Exception as exc:  # Pillow raises OSError, SyntaxError, ValueError... on damaged files
        raise ServingError(422, "corrupt_image",
                           f"{name}: corrupt or truncated image ({str(exc) or type(exc).__name__})") from None
    return CheckedImage(data=data, format=fmt, width=width, height=height)


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
