"""A stand-in OCR engine for tests of what surrounds OCR (explanations, the seller page): it
"reads" words chosen by the photo's colour, with boxes at fixed places, in milliseconds and
without RapidOCR. :func:`use_fake_engine` puts it behind the ``rapidocr`` name for one test.

Photos are flat colours with a dark band (a flat photo is "blank" and never read).
"""

from __future__ import annotations

import io
from pathlib import Path

import numpy as np
import pandas as pd
from PIL import Image, ImageDraw, ImageStat

from prodcat.ocr import OcrEngine, RawWord

#: class → (photo colour, words read on it); titles say nothing of the class.
PHOTOS = {"livre": ((215, 40, 40), ("LE", "PETIT", "PRINCE")),
          "jeu": ((40, 190, 60), ("CONSOLE",)),
          "dvd": ((40, 60, 215), ("FILM", "COFFRET"))}


class ColourWords(OcrEngine):
    """Words by the photo's mean colour (the nearest of :data:`PHOTOS`), one box each, side by
    side across the middle of the photo."""

    name = "fake-ocr"

    @property
    def version(self) -> str:
        return "fake-ocr-1"

    def _load(self):
        return object()

    def _recognise(self, model, image, deadline):
        mean = np.array(ImageStat.Stat(image.convert("RGB")).mean)
        _, words = min(PHOTOS.values(), key=lambda p: float(np.abs(np.array(p[0]) - mean).sum()))
        width, height = image.size
        step = width * 0.8 / len(words)
        return [RawWord(w, 0.9, (int(width * 0.1 + i * step), int(height * 0.35),
                                 int(width * 0.1 + (i + 0.9) * step), int(height * 0.65)), 0)
                for i, w in enumerate(words)]


def photo_bytes(colour: tuple[int, int, int], size: tuple[int, int] = (120, 80)) -> bytes:
    image = Image.new("RGB", size, colour)
    ImageDraw.Draw(image).rectangle((0, size[1] - 8, size[0], size[1]), fill=(10, 10, 10))
    buffer = io.BytesIO()
    image.save(buffer, "PNG")
    return buffer.getvalue()


def use_fake_engine(monkeypatch, cache_dir: Path) -> ColourWords:
    """For this test, ``ocr="rapidocr"`` trains, predicts and loads bundles with
    :class:`ColourWords` (whether RapidOCR is installed or not), caching in ``cache_dir``."""
    from prodcat.model import ocr_channel
    from prodcat.ocr import ENGINES

    monkeypatch.setenv("PRODCAT_CACHE_DIR", str(cache_dir))
    engine = ColourWords()
    monkeypatch.setattr(ENGINES.get("rapidocr"), "status", classmethod(lambda cls: "ok"))
    monkeypatch.setattr(ocr_channel, "engine_for", lambda name: engine)
    # Results read by another test's engine under the same name must not be served.
    monkeypatch.setattr(ocr_channel, "_RECENT", ocr_channel.RecentOcrResults())
    return engine


def listings(folder: Path, per_class: int = 12) -> tuple[pd.DataFrame, np.ndarray]:
    """Listings of the classes of :data:`PHOTOS` whose titles are alike; the class is on the
    photo only, and every fourth listing has none."""
    fillers = ["article neuf", "lot occasion", "très bon état", "vendu sans boîte"]
    rows, y = [], []
    for cls, (colour, _) in PHOTOS.items():
        path = folder / f"{cls}.png"
        path.write_bytes(photo_bytes(colour))
        for i in range(per_class):
            rows.append({"title": f"{fillers[i % 4]} {i}", "description": "",
                         "image": None if i % 4 == 3 else str(path)})
            y.append(cls)
    return pd.DataFrame(rows), np.array(y)


def ocr_model(folder: Path):
    """A small Classifier trained with ``ocr="rapidocr"`` (call under :func:`use_fake_engine`)."""
    from prodcat.model import Classifier
    from prodcat.text.model import TextClassifier

    X, y = listings(folder)
    return Classifier(text=TextClassifier(calibration_cv=2), min_images=4, ocr="rapidocr").fit(X, y)
