"""The image side's user-facing error."""

from __future__ import annotations

from prodcat.errors import ProdcatError


class ImageError(ProdcatError):
    """An image cannot be used (unreadable, corrupt, too large), or the image encoder is unavailable.

    ``kind`` is a short category (``"no image"``, ``"not found"``, ``"not an image"``,
    ``"corrupt"``, ``"too large"``, ``"unreadable"``, ``"encoder"``) that batch jobs count by.
    """

    def __init__(self, message: str, kind: str = "encoder"):
        super().__init__(message)
        self.kind = kind
