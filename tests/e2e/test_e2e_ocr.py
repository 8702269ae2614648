"""End to end with a model that reads the photo's words: a small model trained with
``ocr="rapidocr"`` (the real engine, on photos rendered here with large printed words), ``prodcat
ui`` as a real process on loopback, and headless Chromium uploading a photo on the seller page:
the words read are listed, the photo is shown with them boxed, and they decide the answer.

Shares the browser, the process helpers and the skips of ``test_e2e_browser`` (Debian's chromium
and chromedriver, ``scripts/install-browser.sh``); skips without RapidOCR (extra ``ocr``).
Screenshots go to ``$PRODCAT_TEST_ARTIFACTS`` like that test's.
"""

from __future__ import annotations

import io
import urllib.request
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
from PIL import Image, ImageDraw, ImageFont

# Selenium comes through that module, whose import skips this one without selenium/streamlit.
from test_e2e_browser import (  # noqa: F401  (browser: the shared fixture)
    CHROMEDRIVER,
    CHROMIUM,
    EC,
    LOOPBACK,
    By,
    WebDriverWait,
    browser,
    free_port,
    save_shot,
    settled,
    shots_kept,
    start,
    stop,
    submit_until,
    wait_http,
)

from prodcat.ocr import engine_status

# That module's marks are its own: the browser skips are repeated here.
pytestmark = [
    pytest.mark.slow,
    pytest.mark.skipif(not CHROMIUM.exists() or not CHROMEDRIVER.exists(),
                       reason="/usr/bin/chromium or chromedriver is absent: run "
                              "`bash scripts/install-browser.sh` to run the browser tests"),
    pytest.mark.skipif(engine_status().get("rapidocr") != "ok",
                       reason="rapidocr is not installed (extra 'ocr')"),
]

FONT = "/usr/share/fonts/truetype/dejavu/DejaVuSans-Bold.ttf"
#: class → the word on its photos; the titles say nothing of the class, so only the words read
#: can decide it.
WORDS = {"livre": "ROMAN", "piscine": "PISCINE", "jeu": "CONSOLE"}
#: The same 2-core budget as the other browser test: a cold Streamlit run, the model and the
#: engine loaded on the first page, then OCR + explanation of the upload, all on busy cores.
WAIT_S = 120


def render(path: Path, lines: list[str], size: int = 64, offset: int = 0) -> Path:
    """Large black capitals on white: what any OCR engine reads without doubt."""
    font = ImageFont.truetype(FONT, size) if Path(FONT).is_file() else ImageFont.load_default(size)
    image = Image.new("RGB", (480, 320), (255, 255, 255))
    draw = ImageDraw.Draw(image)
    for i, line in enumerate(lines):
        draw.text((30 + offset, 50 + offset + i * (size + 40)), line, fill=(0, 0, 0), font=font)
    image.save(path, "JPEG", quality=92)
    return path


def listings(folder: Path) -> tuple[pd.DataFrame, np.ndarray]:
    """12 listings per class with alike titles, two renderings of the class word (six photos to
    read), every fourth listing without a photo."""
    fillers = ["article neuf", "lot occasion", "très bon état", "vendu sans boîte"]
    rows, y = [], []
    for cls, word in WORDS.items():
        photos = [render(folder / f"{cls}{k}.jpg", [word], size=60 + 8 * k, offset=20 * k)
                  for k in range(2)]
        for i in range(12):
            rows.append({"title": f"{fillers[i % 4]} {i}", "description": "",
                         "image": None if i % 4 == 3 else str(photos[i % 2])})
            y.append(cls)
    return pd.DataFrame(rows), np.array(y)


def coloured_pixels(png: bytes) -> int:
    """Pixels far from grey: the boxes' outlines (green, red or blue), as the upload is black
    on white. Counted loosely because Streamlit may serve the image as JPEG."""
    rgb = np.asarray(Image.open(io.BytesIO(png)).convert("RGB")).astype(int)
    return int(((rgb.max(axis=2) - rgb.min(axis=2)) > 60).sum())


def boxed_image(driver):
    """The ``<img>`` captioned as the boxed photo, once it is on the page."""
    for element in driver.find_elements(By.CSS_SELECTOR, "[data-testid='stImage']"):
        if "Words read, boxed" in element.text:
            imgs = element.find_elements(By.TAG_NAME, "img")
            if imgs and imgs[0].get_attribute("src"):
                return imgs[0]
    return False


def test_seller_page_lists_and_boxes_the_words_read_on_an_uploaded_photo(
        browser, tmp_path, monkeypatch):  # noqa: F811
    from prodcat.model import Classifier
    from prodcat.text.model import TextClassifier

    # The training's OCR cache, and the server's (which only reads it), stay in this test.
    monkeypatch.setenv("PRODCAT_CACHE_DIR", str(tmp_path / "cache"))
    (tmp_path / "photos").mkdir()
    X, y = listings(tmp_path / "photos")
    model = Classifier(text=TextClassifier(calibration_cv=2), min_images=4, ocr="rapidocr").fit(X, y)
    assert model.ocr_["engine"] == "rapidocr" and model.ocr_["n_with_words"] == 27
    model_dir = model.save(tmp_path / "model")
    # A new photo: the class word and a word never seen in training, on two lines.
    pic = render(tmp_path / "upload.jpg", ["PISCINE", "JARDIN"], size=72)
    title = "article neuf 99"
    expected = model.predict_top_k({"title": title, "description": "", "image": str(pic)}, 3)[0][0]
    assert expected["code"] == "piscine"  # the words decide: the title is every class's

    port, log = free_port(), tmp_path / "ui.log"
    ui = start(["ui", "--model", str(model_dir), "--host", LOOPBACK, "--port", str(port)], log)
    try:
        with shots_kept(browser, tmp_path, "e2e-ocr-failure") as shots:
            assert wait_http(f"http://{LOOPBACK}:{port}/_stcore/health", ui, log, timeout=WAIT_S) == b"ok"
            wait = WebDriverWait(browser, WAIT_S, poll_frequency=0.5)
            browser.get(f"http://{LOOPBACK}:{port}/")
            field = wait.until(EC.element_to_be_clickable((By.CSS_SELECTOR,
                                                           "input[aria-label='Title (required)']")))
            field.send_keys(title)
            browser.find_element(By.CSS_SELECTOR, "input[type='file']").send_keys(str(pic))
            wait.until(EC.text_to_be_present_in_element((By.CSS_SELECTOR, "[data-testid='stFileUploader']"),
                                                        "upload.jpg"))
            submit_until(browser, "Find categories", "Words read on the photo", timeout=WAIT_S)
            wait.until(boxed_image)
            wait.until(EC.text_to_be_present_in_element((By.TAG_NAME, "body"), "Why this category"))
            wait.until(settled)
            src = wait.until(boxed_image).get_attribute("src")  # found again: the page has settled

            page = browser.find_element(By.TAG_NAME, "body").text
            assert f"1. {expected['name']} ({expected['code']})" in page
            assert "reads the words on the photo" in page
            # Both words are listed; the class word is marked by its weight for the answer.
            assert "PISCINE" in page and "JARDIN" in page
            assert any("PISCINE" in m.text for m in browser.find_elements(By.CSS_SELECTOR, "mark"))
            # The boxed photo is the upload with outlines drawn on it: the upload has no colour.
            with urllib.request.urlopen(src, timeout=30) as resp:
                boxed = resp.read()
            assert coloured_pixels(pic.read_bytes()) == 0
            assert coloured_pixels(boxed) > 200
            save_shot(browser, tmp_path / "e2e-ocr-seller-page.png", shots)
    finally:
        rc = stop(ui)
    assert rc in (0, -15), log.read_text()[-2000:]
    assert "Traceback" not in log.read_text()
