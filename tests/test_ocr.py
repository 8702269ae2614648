"""OCR (``prodcat.ocr``): engines read words rendered here, bad photos give empty text, the
cache serves results without running the engine again, the registry names its choices.

Every photo is rendered in code with a TTF font; no real data is used. Engine tests skip when
the engine is not installed (extra ``ocr``; Tesseract's data: ``scripts/install-tesseract.sh``).
"""

from __future__ import annotations

import io
import json
import pickle
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
from PIL import Image, ImageDraw, ImageFont

from prodcat.cli import main
from prodcat.errors import ConfigError
from prodcat.ocr import (
    ENGINES,
    OcrCache,
    OcrResult,
    RawWord,
    create_engine,
    engine_status,
    list_engines,
    ocr_text_for,
    read_photos,
)
from prodcat.ocr.engines import Deadline, OcrEngine, OcrTimeout

FONT_PATHS = ("/usr/share/fonts/truetype/dejavu/DejaVuSans-Bold.ttf",
              "/usr/share/fonts/truetype/dejavu/DejaVuSans.ttf")
STATUS = engine_status()


def font(size: int) -> ImageFont.FreeTypeFont:
    for path in FONT_PATHS:
        if Path(path).is_file():
            return ImageFont.truetype(path, size)
    return ImageFont.load_default(size)  # Pillow's own TTF (Aileron): no accents, fine for ASCII


def render(lines: list[str], size=(480, 200), fg=(20, 20, 20), bg=(250, 248, 240), px=40) -> Image.Image:
    image = Image.new("RGB", size, bg)
    draw = ImageDraw.Draw(image)
    for i, line in enumerate(lines):
        draw.text((20, 20 + i * int(px * 1.6)), line, fill=fg, font=font(px))
    return image


def jpeg(image: Image.Image, quality: int = 85) -> bytes:
    buf = io.BytesIO()
    image.save(buf, "JPEG", quality=quality)
    return buf.getvalue()


def needs(name: str):
    return pytest.mark.skipif(STATUS.get(name) != "ok", reason=f"{name}: {STATUS.get(name)}")


ENGINE_PARAMS = [pytest.param("rapidocr", marks=needs("rapidocr")),
                 pytest.param("tesseract", marks=needs("tesseract"))]


@pytest.fixture(scope="module")
def engines() -> dict[str, OcrEngine]:
    return {}


def engine_of(engines: dict[str, OcrEngine], name: str) -> OcrEngine:
    if name not in engines:
        engines[name] = create_engine(name, n_threads=2)
    return engines[name]


# --- the registry --------------------------------------------------------------------------------


def test_registry_names_both_engines_and_refuses_unknown_ones():
    assert list_engines() == ["rapidocr", "tesseract"]
    assert "rapidocr" in ENGINES
    with pytest.raises(ConfigError, match="unknown OCR engine 'easyocr'; choose one of rapidocr, tesseract"):
        create_engine("easyocr")
    with pytest.raises(ConfigError, match="does not take colour"):
        create_engine("rapidocr", colour=True)
    # Tesseract runs one thread per instance: the shared n_threads is dropped, not refused.
    assert create_engine("tesseract", n_threads=4).config()["psm"] == 3


def test_engine_id_changes_with_settings_and_engines_pickle_unloaded():
    a, b = create_engine("rapidocr"), create_engine("rapidocr", min_confidence=0.9)
    if STATUS["rapidocr"] == "ok":
        assert a.engine_id != b.engine_id and a.engine_id.startswith("ocr:rapidocr:rapidocr-")
    clone = pickle.loads(pickle.dumps(a))
    assert clone._model is None and clone.config() == a.config()


# --- results and the cache -----------------------------------------------------------------------


def test_result_json_round_trip_and_reading_order_text():
    words = [RawWord("Les", 0.99, (1, 2, 3, 4), 0), RawWord("Misérables", 0.9, (5, 2, 9, 4), 0),
             RawWord("12,99", 0.8, (1, 8, 4, 10), 1)]
    result = OcrResult.from_words(words, "x", "1", 0.25)
    assert result.text == "Les Misérables\n12,99" and result.status == "ok" and len(result) == 3
    back = OcrResult.from_json(result.to_json(), cached=True)
    assert back == result and back.cached and back.boxes[1] == (5, 2, 9, 4)
    assert "Misérables" in result.to_json()  # UTF-8 JSON, not escaped
    assert OcrResult.from_words([], "x", "1", 0.1).status == "empty"


class CountingEngine(OcrEngine):
    """Reads one fixed word on every photo that is not blank, counting its runs."""

    name = "counting"

    def __init__(self, **kw):
        super().__init__(**kw)
        self.runs = 0

    @property
    def version(self) -> str:
        return "1"

    def _load(self):
        return object()

    def _recognise(self, model, image, deadline):
        self.runs += 1
        return [RawWord("BONJOUR", 0.9, (0, 0, 10, 10), 0), RawWord("bruit", 0.1, (0, 0, 1, 1), 0)]


def test_cache_hit_returns_the_same_result_without_running_the_engine(tmp_path):
    engine = CountingEngine()
    photo = jpeg(render(["ABC"]))
    path = tmp_path / "a.jpg"
    path.write_bytes(photo)
    cache_file = tmp_path / "embeddings.sqlite"
    first = read_photos([path, photo, None, b"not an image"], engine=engine, cache=cache_file,
                        progress=False)
    assert engine.runs == 1  # the same bytes twice: read once
    assert [r.status for r in first] == ["ok", "ok", "no image", "not an image"]
    assert first[0].text == "BONJOUR" and not first[0].cached  # under min_confidence: dropped
    again = read_photos([path], engine=engine, cache=cache_file, progress=False)
    assert engine.runs == 1 and again[0].cached and again[0] == first[0]
    with OcrCache(cache_file) as cache:
        assert cache.count(engine.engine_id) == 2  # the photo and the non-image
        assert cache.engines() == [engine.engine_id]
        raw = cache._connect().execute("SELECT result FROM ocr_results").fetchall()
        assert all(json.loads(r[0])["engine"] == "counting" for r in raw)  # JSON, not pickles
    # The embeddings' table lives in the same file, untouched.
    from prodcat.embedding_cache import EmbeddingCache

    with EmbeddingCache(cache_file) as emb:
        emb.put("enc", "d" * 64, np.ones(3, np.float32))
        assert OcrCache(emb).count() == 2 and emb.count() == 1


def test_timeouts_and_failures_are_not_cached(tmp_path):
    class Slow(CountingEngine):
        def _recognise(self, model, image, deadline):
            self.runs += 1
            raise OcrTimeout("slow")

    engine = Slow()
    photo = jpeg(render(["ABC"]))
    for _ in range(2):
        (result,) = read_photos([photo], engine=engine, cache=tmp_path / "c.sqlite", progress=False)
        assert result.status == "timeout" and result.text == ""
    assert engine.runs == 2
    deadline = Deadline(1e-9)
    with pytest.raises(OcrTimeout):
        deadline.check()


@pytest.mark.filterwarnings("ignore::PIL.Image.DecompressionBombWarning")
def test_bad_photos_give_empty_text_never_an_exception(tmp_path):
    engine = CountingEngine()
    truncated = jpeg(render(["TEXTE"]))[:300]
    bomb = io.BytesIO()
    Image.new("1", (12_000, 12_000)).save(bomb, "PNG")  # 144 Mpx: refused from its header
    cases = {
        "blank": jpeg(Image.new("RGB", (400, 300), (255, 255, 255))),
        "blank ": jpeg(Image.new("RGB", (400, 300), (30, 90, 200))),
        "tiny": jpeg(render(["A"], size=(8, 8), px=6)),
        "corrupt": truncated,
        "not an image": b"<html>404</html>",
        "missing": str(tmp_path / "nope.jpg"),
        "huge": bomb.getvalue(),
    }
    results = dict(zip(cases, read_photos(list(cases.values()), engine=engine, progress=False), strict=True))
    assert all(r.text == "" for r in results.values()), results
    assert results["blank"].status == results["blank "].status == "blank"
    assert results["tiny"].status == "too small"
    assert results["corrupt"].status in ("corrupt", "not an image")
    assert results["not an image"].status == "not an image"
    assert results["missing"].status == "not found"
    assert results["huge"].status == "too large"
    assert engine.runs == 0


def test_ocr_text_for_a_catalog_frame(tmp_path):
    frame = pd.DataFrame({"id": ["a", "b", "c"], "title": ["x", "y", "z"], "description": ["", "", ""],
                          "image": [jpeg(render(["ABC"])), None, np.nan]}, index=[10, 11, 12])
    text = ocr_text_for(frame, CountingEngine(), None)
    assert text.name == "ocr_text" and list(text.index) == [10, 11, 12]
    assert text.tolist() == ["BONJOUR", "", ""]


# --- the real engines ----------------------------------------------------------------------------


@pytest.mark.parametrize("name", ENGINE_PARAMS)
def test_engine_reads_rendered_french_words_in_reading_order(engines, name):
    engine = engine_of(engines, name)
    result = engine.read(jpeg(render(["Les Misérables", "Prix 12,99"])))
    assert result.status == "ok" and result.engine == name and result.version == engine.version
    assert result.words[:2] == ("Les", "Misérables"), result
    assert "12,99" in result.text and result.text.index("Les") < result.text.index("12,99")
    assert len(result.boxes) == len(result.words) == len(result.confidences)
    assert all(c >= engine.min_confidence for c in result.confidences)
    left, top, right, bottom = result.boxes[0]
    assert 0 <= left < right <= 480 and 0 <= top < bottom <= 200
    assert result.seconds > 0


@pytest.mark.parametrize("name", ENGINE_PARAMS)
def test_engine_copes_with_blank_rotated_tiny_and_large_photos(engines, name):
    engine = engine_of(engines, name)
    photo = render(["SOLDES"], size=(400, 120), px=48)
    assert engine.read(jpeg(Image.new("RGB", (300, 300), "white"))).text == ""
    assert isinstance(engine.read(jpeg(photo.rotate(90, expand=True))).text, str)
    assert engine.read(jpeg(photo.resize((9, 3)))).status == "too small"
    noise = Image.fromarray(np.random.default_rng(0).integers(0, 256, (64, 64, 3), dtype=np.uint8))
    assert engine.read(jpeg(noise)).status in ("ok", "empty")
    big = photo.resize((4000, 1200))  # shrunk to max_side before the engine sees it
    assert "SOLDES" in engine.read(jpeg(big)).text.upper()


@needs("rapidocr")
def test_rapidocr_time_budget_gives_an_empty_result(engines):
    engine = engine_of(engines, "rapidocr")
    result = engine.read(jpeg(render(["Les Misérables"])), budget_s=1e-6)
    assert result.status == "timeout" and result.text == ""


@needs("rapidocr")
def test_cli_writes_id_and_ocr_text(tmp_path, capsys, monkeypatch):
    monkeypatch.setenv("PRODCAT_CACHE_DIR", str(tmp_path / "cache"))
    photo = tmp_path / "p1.jpg"
    photo.write_bytes(jpeg(render(["CAHIER"], px=56)))
    table = tmp_path / "listings.csv"
    pd.DataFrame({"id": ["a1", "a2"], "title": ["cahier", "stylo"], "description": ["", ""],
                  "image": [str(photo), ""]}).to_csv(table, index=False)
    out = tmp_path / "ocr.json"
    code = main(["ocr", "--data", str(table), "--out", str(out)])
    err = capsys.readouterr().err
    assert code == 0, err
    rows = json.loads(out.read_text(encoding="utf-8"))
    assert [r["id"] for r in rows] == ["a1", "a2"]
    assert "CAHIER" in rows[0]["ocr_text"] and rows[1]["ocr_text"] == ""
    assert "1 with text" in err
    assert main(["ocr", "--data", str(table), "--out", str(tmp_path / "o.csv")]) == 0
    assert "1 from the cache" in capsys.readouterr().err
    assert main(["ocr", "--data", str(table), "--out", str(out), "--engine", "nope"]) == 2


@needs("rapidocr")
def test_batch_job_fills_the_cache_the_command_then_reads(tmp_path, capsys):
    from prodcat.batch.ocr import run_ocr_job

    photos = []
    for i, word in enumerate(["CAHIER", "STYLO", "CAHIER"]):
        path = tmp_path / f"p{i}.jpg"
        path.write_bytes(jpeg(render([word], px=56)) if i < 2 else (tmp_path / "p0.jpg").read_bytes())
        photos.append(str(path))
    table = tmp_path / "listings.csv"
    pd.DataFrame({"id": ["a", "b", "c", "d"], "title": ["t"] * 4, "description": [""] * 4,
                  "image": [*photos, ""]}).to_csv(table, index=False)
    cache = tmp_path / "c.sqlite"
    summary = run_ocr_job(table, cache=cache, workers=0, partition_rows=2, echo=lambda m: None,
                          progress=False)
    assert (summary.rows, summary.photos, summary.read, summary.duplicates) == (4, 3, 2, 1)
    assert summary.with_text == 2
    results = read_photos(photos, cache=cache, progress=False)
    assert all(r.cached for r in results) and "STYLO" in results[1].text
    again = run_ocr_job(table, cache=cache, workers=0, echo=lambda m: None, progress=False)
    assert (again.cached, again.read) == (2, 0)
