"""OCR engines by name: ``create_engine("rapidocr")``, ``create_engine("tesseract")``.

An engine reads the words on one photo (:meth:`OcrEngine.read`). What every engine shares is
here: the photo is decoded with the image side's safe loader (:func:`prodcat.image.load_image`:
truncated, non-image and decompression-bomb files are refused, huge JPEGs decoded small, EXIF
rotation applied), shrunk to ``max_side`` pixels on its long side, and skipped when it is tiny or
blank; the engine runs under a per-photo time budget (``budget_s``); words under
``min_confidence`` are dropped. A bad photo gives an empty :class:`OcrResult` whose ``status``
says why, never an exception. Only a missing engine (its package or language data not
installed) raises :class:`OcrError`, on first use, saying what to install.

Nothing is downloaded at run time: RapidOCR's PP-OCR ONNX weights ship inside its wheel,
Tesseract's language data comes from Debian's packages (``scripts/install-tesseract.sh``).
"""

from __future__ import annotations

import hashlib
import json
import threading
import time
from abc import ABC, abstractmethod
from typing import Any, ClassVar

from PIL import Image, ImageStat

from prodcat.errors import ProdcatError
from prodcat.ocr.result import OcrResult, RawWord
from prodcat.registry import Registry

#: Bumped when prodcat's own handling (decoding, resizing, filtering, ordering) changes, so that
#: cached results computed the old way are not served.
OCR_PIPELINE_VERSION = 1
EXTRA_HINT = "pip install -e '.[ocr]'"
DEFAULT_ENGINE = "rapidocr"
#: Photos whose short side is under this many pixels carry no readable text.
MIN_SIDE = 10
#: A photo whose grey levels span less than this is blank (a flat colour).
BLANK_RANGE = 12


class OcrError(ProdcatError):
    """An OCR engine cannot be used (its package or language data is not installed)."""


class OcrTimeout(Exception):
    """Raised inside an engine when the photo's time budget is spent."""


class Deadline:
    """A per-photo time budget, checked by engines between their steps."""

    def __init__(self, budget_s: float | None):
        self.budget_s = budget_s
        self.at = None if not budget_s else time.perf_counter() + budget_s

    def remaining(self) -> float | None:
        return None if self.at is None else self.at - time.perf_counter()

    def check(self) -> None:
        if self.at is not None and time.perf_counter() > self.at:
            raise OcrTimeout(f"past the {self.budget_s:g} s budget")


class OcrEngine(ABC):
    """Reads words on photos. Subclasses implement :meth:`_load` (the heavy part, done on first
    use and left out of pickles) and :meth:`_recognise`."""

    name: ClassVar[str] = ""
    #: The default ``min_confidence`` of this engine (its scores are not on one scale).
    default_min_confidence: ClassVar[float] = 0.5

    def __init__(self, *, min_confidence: float | None = None, max_side: int = 1600,
                 budget_s: float | None = 5.0):
        self.min_confidence = self.default_min_confidence if min_confidence is None else float(min_confidence)
        self.max_side = int(max_side)
        self.budget_s = budget_s
        self._model: Any = None
        self._lock = threading.Lock()

    # --- identity --------------------------------------------------------------------------

    @property
    @abstractmethod
    def version(self) -> str:
        """The engine's library and model version (raises :class:`OcrError` when not installed)."""

    def config(self) -> dict[str, Any]:
        """What changes the words read, besides the version (part of :attr:`engine_id`)."""
        return {"min_confidence": self.min_confidence, "max_side": self.max_side}

    @property
    def engine_id(self) -> str:
        """Cache key prefix: name, version and a fingerprint of the configuration."""
        conf = json.dumps({**self.config(), "pipeline": OCR_PIPELINE_VERSION}, sort_keys=True)
        return f"ocr:{self.name}:{self.version}:{hashlib.sha256(conf.encode()).hexdigest()[:12]}"

    def __repr__(self) -> str:
        opts = ", ".join(f"{k}={v!r}" for k, v in self.config().items())
        return f"{type(self).__name__}({opts})"

    # --- loading ---------------------------------------------------------------------------

    @classmethod
    def status(cls) -> str:
        """``"ok"`` when the engine can run here, else what is missing."""
        try:
            cls().version  # noqa: B018  (imports the library, finds the data)
        except OcrError as exc:
            return str(exc)
        return "ok"

    @abstractmethod
    def _load(self) -> Any:
        """The engine object (imports the library, reads the weights)."""

    def load(self) -> Any:
        with self._lock:
            if self._model is None:
                self._model = self._load()
            return self._model

    def __getstate__(self) -> dict[str, Any]:
        state = self.__dict__.copy()
        state["_model"] = None  # reloaded where it is unpickled (a Dask worker)
        del state["_lock"]
        return state

    def __setstate__(self, state: dict[str, Any]) -> None:
        self.__dict__.update(state)
        self._lock = threading.Lock()

    # --- reading ---------------------------------------------------------------------------

    @abstractmethod
    def _recognise(self, model: Any, image: Image.Image, deadline: Deadline) -> list[RawWord]:
        """Every word the engine sees on ``image`` (RGB), in reading order, confidences 0–1."""

    def prepare(self, source: Any) -> tuple[Image.Image | None, str]:
        """``source`` (a path, bytes or a PIL image) → an RGB image at most ``max_side`` on its
        long side, or ``(None, reason)``."""
        from prodcat.image import ImageError, load_image

        if isinstance(source, Image.Image):
            image = source.convert("RGB")
        else:
            try:
                image = load_image(source, target_size=self.max_side)
            except ImageError as exc:
                return None, exc.kind
            except Exception:  # the loader's promise is ImageError; keep ours whatever happens
                return None, "corrupt"
        if min(image.size) < MIN_SIDE:
            return None, "too small"
        if max(image.size) > self.max_side:
            image = image.copy()
            image.thumbnail((self.max_side, self.max_side), Image.Resampling.LANCZOS)
        small = image.convert("L")
        small.thumbnail((128, 128))
        low, high = ImageStat.Stat(small).extrema[0]
        if high - low < BLANK_RANGE:
            return None, "blank"
        return image, "ok"

    def read(self, source: Any, *, budget_s: float | None = ...) -> OcrResult:  # type: ignore[assignment]
        """The words on one photo (a path, the file's bytes or a PIL image). Never raises for
        a bad photo; raises :class:`OcrError` when the engine itself is not installed."""
        model = self.load()
        started = time.perf_counter()
        version = self.version
        image, reason = self.prepare(source)
        if image is None:
            return OcrResult.empty(self.name, version, reason, time.perf_counter() - started)
        deadline = Deadline(self.budget_s if budget_s is ... else budget_s)
        try:
            words = self._recognise(model, image, deadline)
        except OcrTimeout:
            return OcrResult.empty(self.name, version, "timeout", time.perf_counter() - started)
        except Exception:  # an engine crashing on one odd photo must not stop a batch (MemoryError too)
            return OcrResult.empty(self.name, version, "failed", time.perf_counter() - started)
        if deadline.at is not None and time.perf_counter() > deadline.at:
            return OcrResult.empty(self.name, version, "timeout", time.perf_counter() - started)
        kept = [w for w in words if w.text.strip() and w.confidence >= self.min_confidence]
        return OcrResult.from_words(kept, self.name, version, time.perf_counter() - started)


#: ``n_threads`` is shared: engines that do not take it (Tesseract, one thread each) never get it.
ENGINES: Registry[type[OcrEngine]] = Registry("OCR engine", shared=("n_threads",))


def register_engine(name: str):
    """``@register_engine("name")`` over an :class:`OcrEngine` subclass."""
    def wrap(cls: type[OcrEngine]) -> type[OcrEngine]:
        cls.name = name
        return ENGINES.register(name, cls)

    return wrap


def list_engines() -> list[str]:
    return list(ENGINES)


def engine_status() -> dict[str, str]:
    """Each registered engine → ``"ok"`` or what is missing to run it here."""
    return {name: cls.status() for name, cls in ENGINES.items()}


def create_engine(name: str = DEFAULT_ENGINE, **params: Any) -> OcrEngine:
    """An engine by registered name; nothing heavy happens until it first reads. An unknown
    name is a ConfigError listing the choices."""
    return ENGINES.create(name, **params)


def resolve_engine(engine: str | OcrEngine, **params: Any) -> OcrEngine:
    return create_engine(engine, **params) if isinstance(engine, str) else engine
