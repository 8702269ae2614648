"""The ``tesseract`` engine: Tesseract 5 through ``tesserocr`` (whose wheel bundles the
library) with Debian's French and English language data (``tesseract-ocr-fra``,
``tesseract-ocr-eng``: ``bash scripts/install-tesseract.sh``). Fast, good on clean printed text
(covers, labels), weaker on photos.

Tesseract wants letters about 20–30 px high: photos smaller than ``upscale_to`` on their long
side are enlarged first. The time budget is Tesseract's own recognition timeout.
"""

from __future__ import annotations

import os
import threading
from importlib import metadata
from pathlib import Path
from typing import Any

from PIL import Image

from prodcat.ocr.engines import (
    EXTRA_HINT,
    Deadline,
    OcrEngine,
    OcrError,
    OcrTimeout,
    register_engine,
)
from prodcat.ocr.result import RawWord

INSTALL_HINT = "bash scripts/install-tesseract.sh (Debian tesseract-ocr-fra and tesseract-ocr-eng)"
#: Where Debian (and most distributions) put the language data; TESSDATA_PREFIX comes first.
TESSDATA_DIRS = ("/usr/share/tesseract-ocr/5/tessdata", "/usr/share/tesseract-ocr/4.00/tessdata",
                 "/usr/share/tessdata", "/usr/local/share/tessdata", "/opt/homebrew/share/tessdata")


def find_tessdata(languages: list[str], folder: str | os.PathLike | None = None) -> Path | None:
    """The first folder holding every ``<lang>.traineddata``, or None."""
    env = os.environ.get("TESSDATA_PREFIX")
    candidates = [folder] if folder else [*([env, Path(env) / "tessdata"] if env else []), *TESSDATA_DIRS]
    for cand in candidates:
        path = Path(cand)
        if all((path / f"{lang}.traineddata").is_file() for lang in languages):
            return path
    return None


@register_engine("tesseract")
class TesseractEngine(OcrEngine):
    """Tesseract through tesserocr (see the module docstring)."""

    default_min_confidence = 0.6

    def __init__(self, *, min_confidence: float | None = None, max_side: int = 1600,
                 budget_s: float | None = 5.0, languages: str = "fra+eng",
                 tessdata: str | None = None, psm: int = 3, upscale_to: int = 1000):
        super().__init__(min_confidence=min_confidence, max_side=max_side, budget_s=budget_s)
        self.languages = languages
        self.tessdata = tessdata
        self.psm = int(psm)
        self.upscale_to = int(upscale_to)
        self._version: str | None = None

    def config(self) -> dict[str, Any]:
        return {**super().config(), "languages": self.languages, "psm": self.psm,
                "upscale_to": self.upscale_to}

    def _data_dir(self) -> Path:
        langs = self.languages.split("+")
        found = find_tessdata(langs, self.tessdata)
        if found is None:
            raise OcrError(f"Tesseract's language data for {', '.join(langs)} is not installed: "
                           f"{INSTALL_HINT}")
        return found

    @property
    def version(self) -> str:
        if self._version is None:
            try:
                lib = metadata.version("tesserocr")
            except metadata.PackageNotFoundError:
                raise OcrError(f"the tesseract OCR engine is not installed: {EXTRA_HINT}, then "
                               f"{INSTALL_HINT}") from None
            folder = self._data_dir()
            # The language files' sizes stand for their versions (Debian ships them unversioned).
            sizes = "+".join(f"{lang}{(folder / f'{lang}.traineddata').stat().st_size}"
                             for lang in self.languages.split("+"))
            self._version = f"tesserocr-{lib}-{sizes}"
        return self._version

    def _load(self) -> Any:
        folder = self._data_dir()
        self.version  # noqa: B018
        try:
            import tesserocr
        except ImportError as exc:
            raise OcrError(f"tesserocr cannot be imported ({exc}): {EXTRA_HINT}") from None
        self._local = threading.local()
        self._apis: list[Any] = []
        return tesserocr, str(folder).rstrip("/") + "/"

    def _api(self, model: Any) -> Any:
        """One Tesseract instance per thread (they are not thread-safe)."""
        api = getattr(self._local, "api", None)
        if api is None:
            tesserocr, folder = model
            api = tesserocr.PyTessBaseAPI(path=folder, lang=self.languages, psm=self.psm)
            self._local.api = api
            self._apis.append(api)
        return api

    def __getstate__(self) -> dict[str, Any]:
        state = super().__getstate__()
        state.pop("_local", None)
        state.pop("_apis", None)
        return state

    def _recognise(self, model: Any, image: Image.Image, deadline: Deadline) -> list[RawWord]:
        from tesserocr import RIL, iterate_level

        scale = 1.0
        long_side = max(image.size)
        if long_side < self.upscale_to:
            scale = min(3.0, self.upscale_to / long_side)
            image = image.resize((round(image.width * scale), round(image.height * scale)),
                                 Image.Resampling.LANCZOS)
        api = self._api(model)
        api.SetImage(image.convert("L"))
        remaining = deadline.remaining()
        if remaining is not None and remaining <= 0:
            raise OcrTimeout("budget spent before recognition")
        timeout_ms = 0 if remaining is None else max(1, int(remaining * 1000))
        if not api.Recognize(timeout_ms):
            raise OcrTimeout("Tesseract stopped at its timeout")
        words: list[RawWord] = []
        line = -1
        for it in iterate_level(api.GetIterator(), RIL.WORD):
            try:
                text = it.GetUTF8Text(RIL.WORD)
            except RuntimeError:  # tesserocr's "No text returned" for an empty word
                continue
            if not text:
                continue
            if it.IsAtBeginningOf(RIL.TEXTLINE) or line < 0:
                line += 1
            bbox = it.BoundingBox(RIL.WORD)
            if bbox is None:
                continue
            box = tuple(int(round(v / scale)) for v in bbox)
            words.append(RawWord(text.strip(), float(it.Confidence(RIL.WORD)) / 100.0, box, line))  # type: ignore[arg-type]
        api.Clear()
        return words
