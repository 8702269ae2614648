"""Reading the words on listing photos (OCR): book and magazine covers, game and DVD boxes,
brand names on packaging, labels on bottles.

* engines by name (:data:`ENGINES`, :func:`create_engine`): ``rapidocr`` (PP-OCR on
  onnxruntime, weights inside the pip package) and ``tesseract`` (tesserocr + Debian's French
  and English data); both optional (extra ``ocr``), nothing downloaded at run time;
* :class:`OcrResult`: text, words with confidences and boxes in reading order, engine, version,
  seconds, and a ``status`` saying why a result is empty; a bad photo never raises;
* :class:`OcrCache`: results as JSON in the embedding cache's SQLite file, keyed by engine id
  and the photo bytes' sha256;
* :func:`read_photos`, :func:`ocr_text_for`: many photos, cached, with progress;
  ``prodcat ocr`` and :func:`prodcat.batch.ocr.run_ocr_job` (Dask) for catalogues.

Importing this package imports neither onnxruntime nor Tesseract.
"""

from prodcat.ocr import rapid as _rapid  # noqa: F401  (registers "rapidocr")
from prodcat.ocr import tess as _tess  # noqa: F401  (registers "tesseract")
from prodcat.ocr.cache import OcrCache, open_ocr_cache
from prodcat.ocr.engines import (
    DEFAULT_ENGINE,
    ENGINES,
    OCR_PIPELINE_VERSION,
    OcrEngine,
    OcrError,
    create_engine,
    engine_status,
    list_engines,
    register_engine,
)
from prodcat.ocr.rapid import RapidOcrEngine
from prodcat.ocr.reading import ocr_text_for, read_photo, read_photos
from prodcat.ocr.result import OcrResult, RawWord
from prodcat.ocr.tess import TesseractEngine

__all__ = [
    "DEFAULT_ENGINE", "ENGINES", "OCR_PIPELINE_VERSION", "OcrCache", "OcrEngine", "OcrError",
    "OcrResult", "RapidOcrEngine", "RawWord", "TesseractEngine", "create_engine", "engine_status",
    "list_engines", "ocr_text_for", "open_ocr_cache", "read_photo", "read_photos",
    "register_engine",
]
