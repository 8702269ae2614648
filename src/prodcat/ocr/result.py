"""What reading one photo gives: :class:`OcrResult`, plain data that round-trips through JSON.

Words come in reading order (lines top to bottom, words left to right within a line, as each
engine groups them), each with its confidence (0–1) and its box ``(left, top, right, bottom)`` in
the pixels of the photo as stored (after EXIF rotation). ``text`` is the words joined by spaces,
lines by newlines. ``status`` says why a result is empty: ``"ok"`` (words were read), ``"empty"``
(the engine read nothing above the confidence), ``"blank"`` (a flat photo, not run), ``"too
small"``, ``"timeout"`` (past the per-photo time budget), ``"failed"`` (the engine raised) or the
image loader's reason (``"no image"``, ``"not found"``, ``"not an image"``, ``"corrupt"``, ``"too
large"``, ``"unreadable"``).
"""

from __future__ import annotations

import json
from dataclasses import dataclass, field, replace
from typing import Any

Box = tuple[int, int, int, int]

#: Statuses that depend on the photo and the engine only, so they may be cached; a timeout or a
#: failure depends on the moment (the machine's load, memory) and is tried again next time.
CACHEABLE_STATUSES = frozenset({"ok", "empty", "blank", "too small", "not an image", "corrupt",
                                "too large"})


@dataclass(frozen=True)
class RawWord:
    """One word as an engine reports it, before the confidence filter."""

    text: str
    confidence: float
    box: Box
    line: int


@dataclass(frozen=True)
class OcrResult:
    """The text read on one photo (see the module docstring)."""

    text: str
    words: tuple[str, ...]
    confidences: tuple[float, ...]
    boxes: tuple[Box, ...]
    engine: str
    version: str
    seconds: float
    status: str = "ok"
    #: True when this result came from the OCR cache (not part of equality).
    cached: bool = field(default=False, compare=False)

    def __len__(self) -> int:
        return len(self.words)

    @property
    def has_text(self) -> bool:
        return bool(self.text.strip())

    @property
    def cacheable(self) -> bool:
        return self.status in CACHEABLE_STATUSES

    @classmethod
    def empty(cls, engine: str, version: str, status: str, seconds: float = 0.0) -> OcrResult:
        return cls("", (), (), (), engine, version, round(seconds, 4), status)

    @classmethod
    def from_words(cls, words: list[RawWord], engine: str, version: str, seconds: float) -> OcrResult:
        """Words already filtered and in reading order → a result (``"empty"`` when none)."""
        if not words:
            return cls.empty(engine, version, "empty", seconds)
        lines: list[list[str]] = []
        last = None
        for w in words:
            if w.line != last:
                lines.append([])
                last = w.line
            lines[-1].append(w.text)
        text = "\n".join(" ".join(line) for line in lines)
        return cls(text, tuple(w.text for w in words),
                   tuple(round(float(w.confidence), 4) for w in words),
                   tuple(tuple(int(v) for v in w.box) for w in words),  # type: ignore[misc]
                   engine, version, round(seconds, 4), "ok")

    def to_dict(self) -> dict[str, Any]:
        return {"text": self.text, "words": list(self.words), "confidences": list(self.confidences),
                "boxes": [list(b) for b in self.boxes], "engine": self.engine,
                "version": self.version, "seconds": self.seconds, "status": self.status}

    def to_json(self) -> str:
        return json.dumps(self.to_dict(), ensure_ascii=False, separators=(",", ":"))

    @classmethod
    def from_dict(cls, data: dict[str, Any], *, cached: bool = False) -> OcrResult:
        return cls(str(data["text"]), tuple(str(w) for w in data["words"]),
                   tuple(float(c) for c in data["confidences"]),
                   tuple(tuple(int(v) for v in b) for b in data["boxes"]),  # type: ignore[misc]
                   str(data["engine"]), str(data["version"]), float(data["seconds"]),
                   str(data.get("status", "ok")), cached)

    @classmethod
    def from_json(cls, text: str, *, cached: bool = False) -> OcrResult:
        return cls.from_dict(json.loads(text), cached=cached)

    def as_cached(self) -> OcrResult:
        return replace(self, cached=True)
