"""The Streamlit web app through Streamlit's AppTest (no browser), and its page logic."""

from __future__ import annotations

import copy
import io
import json
import shutil

import pytest
from PIL import Image

pytest.importorskip("streamlit")

from streamlit.testing.v1 import AppTest  # noqa: E402

from prodcat.serving import ModelService  # noqa: E402
from prodcat.serving.errors import ServingError  # noqa: E402
from prodcat.ui import core  # noqa: E402
from prodcat.ui.launch import (  # noqa: E402
    APP_PATH,
    DATA_REPORT_ENV,
    IMAGE_BYTES_ENV,
    MODEL_ENV,
    REPORT_ENV,
    streamlit_command,
)

TIMEOUT = 60


def jpeg() -> bytes:
    buf = io.BytesIO()
    Image.new("RGB", (60, 40), (20, 180, 200)).save(buf, "JPEG")
    return buf.getvalue()


@pytest.fixture(scope="module")
def report_dir(trained, tmp_path_factory):
    """An evaluation report of the fixture model, written by the project's own report writer."""
    from prodcat.evaluation import compute_metrics, write_report

    model, catalog = trained
    proba = model.predict_proba(catalog.X)
    metrics = compute_metrics(catalog.y.to_numpy(), proba, [str(c) for c in model.classes_],
                              catalog.taxonomy)
    out = tmp_path_factory.mktemp("report")
    write_report(metrics, out, title="fixture report")
    return out


@pytest.fixture
def app_env(monkeypatch, trained_bundle):
    monkeypatch.setenv(MODEL_ENV, str(trained_bundle))
    monkeypatch.delenv(REPORT_ENV, raising=False)
    monkeypatch.delenv(IMAGE_BYTES_ENV, raising=False)
    return monkeypatch


def run_app() -> AppTest:
    at = AppTest.from_file(str(APP_PATH), default_timeout=TIMEOUT)
    at.run()
    assert not at.exception, [e.value for e in at.exception]
    return at


def submit(at: AppTest, title: str, description: str = "", photo: bytes | None = None) -> AppTest:
    at.text_input(key="title").input(title)
    at.text_area(key="description").input(description)
    if photo is not None:
        at.file_uploader(key="photo").upload("photo.jpg", photo, "image/jpeg")
    at.button[0].click()
    at.run()
    assert not at.exception, [e.value for e in at.exception]
    return at


def test_seller_page_shows_top3(app_env):
    at = run_app()
    assert at.title[0].value == "Which category is my listing?"
    at = submit(at, "Carte pokémon holo rare booster", "deck dresseur édition")
    bars = [p.text for p in at.progress]
    # Top 3 plus the text modality's own top 3.
    assert len(bars) == 6
    assert bars[0].startswith("1. Cartes à collectionner (1160)") and "%" in bars[0]
    assert [s.value for s in at.subheader] == ["Top 3 categories", "What each part said", "Why this category"]
    marked = [m.value for m in at.markdown if "<mark" in m.value]
    assert marked and "pokémon" in marked[0]  # the raw words, highlighted
    assert at.success or at.warning  # the automation decision is always stated
    assert any("reads text only" in c.value for c in at.caption)


def test_seller_page_with_photo(app_env):
    at = submit(run_app(), "Pompe filtre piscine", photo=jpeg())
    assert len(at.progress) == 6 and at.progress[0].text.startswith("1. Piscine et spa")
    assert len(at.image) == 1


def test_seller_page_needs_review(app_env, trained, tmp_path):
    # A bundle whose threshold no answer reaches: the page must say the listing needs review.
    model = copy.deepcopy(trained[0])
    model.threshold_ = 1.0
    app_env.setenv(MODEL_ENV, str(model.save(tmp_path / "strict")))
    at = submit(run_app(), "lot neuf")
    assert at.warning and "Needs review" in at.warning[0].value
    assert not at.success


def test_seller_page_refuses_blank_title_and_bad_photo(app_env):
    at = submit(run_app(), "   ")
    assert at.error and "title is required" in at.error[0].value
    assert not at.progress
    # An unreadable photo: the text still answers, and the page says why the photo was left out.
    at = submit(run_app(), "Carte", photo=b"<html>not a photo</html>")
    assert not at.error and at.progress
    notes = [c.value for c in at.caption if "could not be read" in c.value]
    assert notes and notes[0].startswith("This photo could not be read (not an image file")
    assert not any("No photo given" in c.value for c in at.caption)
    tiff = io.BytesIO()
    Image.new("RGB", (16, 16), (10, 200, 30)).save(tiff, "TIFF")
    at = submit(run_app(), "Carte", photo=tiff.getvalue())
    notes = [c.value for c in at.caption if "could not be read" in c.value]
    assert notes and "TIFF format is not accepted" in notes[0]


def test_model_page_with_report(app_env, report_dir):
    app_env.setenv(REPORT_ENV, str(report_dir))
    at = run_app()
    at.sidebar.radio(key="page").set_value("Model").run()
    assert not at.exception
    assert at.title[0].value == "Model"
    labels = [m.label for m in at.metric]
    assert labels[:4] == ["Weighted F1", "Macro F1", "Accuracy", "Top-3 accuracy"]
    assert len(at.dataframe) == 2  # accuracy-vs-coverage and per-class F1
    per_class = at.dataframe[1].value
    assert set(per_class["code"]) == {"1160", "1300", "2522", "2583"}
    assert len(at.image) == 3  # accuracy-vs-coverage, reliability and confusion matrix
    assert any("Confusion matrix" in m.value for m in at.markdown)


def test_model_page_default_report_folder_and_fallback(app_env, trained_bundle, report_dir, tmp_path):
    # Without --report: MODEL_DIR/report is used when present ...
    bundle = tmp_path / "model"
    shutil.copytree(trained_bundle, bundle)
    shutil.copytree(report_dir, bundle / "report")
    app_env.setenv(MODEL_ENV, str(bundle))
    at = run_app()
    at.sidebar.radio(key="page").set_value("Model").run()
    assert len(at.metric) >= 4
    # ... and without any report, the manifest's cross-validation metrics are shown.
    bare = tmp_path / "bare"
    shutil.copytree(trained_bundle, bare)
    manifest = json.loads((bare / "manifest.json").read_text())
    manifest["metrics"] = {"cv": {"folds": 5, "weighted_f1": 0.91, "macro_f1": 0.9, "accuracy": 0.92,
                                  "top3_accuracy": 0.99, "ece": 0.03,
                                  "coverage": [{"threshold": 0.8, "coverage": 0.7, "accuracy": 0.98,
                                                "n_automated": 70}]}}
    (bare / "manifest.json").write_text(json.dumps(manifest))
    app_env.setenv(MODEL_ENV, str(bare))
    at = run_app()
    at.sidebar.radio(key="page").set_value("Model").run()
    assert not at.exception
    assert at.info and "No evaluation report" in at.info[0].value
    assert [(m.label, m.value) for m in at.metric][:2] == [("Weighted F1", "0.910"), ("Macro F1", "0.900")]
    assert "5 folds" in at.subheader[0].value and len(at.dataframe) == 1


def test_app_without_model_says_how_to_start(monkeypatch):
    monkeypatch.delenv(MODEL_ENV, raising=False)
    at = AppTest.from_file(str(APP_PATH), default_timeout=TIMEOUT)
    at.run()
    assert at.error and "prodcat ui --model" in at.error[0].value


def test_app_with_broken_bundle(monkeypatch, tmp_path):
    monkeypatch.setenv(MODEL_ENV, str(tmp_path / "absent"))
    at = AppTest.from_file(str(APP_PATH), default_timeout=TIMEOUT)
    at.run()
    assert at.error and "Cannot load the model" in at.error[0].value


# --- page logic without Streamlit -------------------------------------------------------------


def test_core_classify_and_refusals(trained_bundle):
    svc = ModelService.load(trained_bundle)
    res = core.classify(svc, "Carte pokémon", image=jpeg())
    assert len(res["top_k"]) == 3 and res["modalities"]["text"] == res["top_k"]
    with pytest.raises(ServingError, match="title is required"):
        core.classify(svc, " ")
    with pytest.raises(ServingError) as exc:
        core.classify(svc, "Carte", image=jpeg(), max_image_bytes=10)
    assert exc.value.status == 413


def test_core_report_helpers(report_dir, tmp_path):
    assert core.load_report(None) is None and core.load_report(tmp_path) is None
    (tmp_path / "metrics.json").write_text("{broken")
    assert core.load_report(tmp_path) is None
    metrics = core.load_report(report_dir)
    assert [k for k, _ in core.headline(metrics)] == ["Weighted F1", "Macro F1", "Accuracy",
                                                      "Top-3 accuracy", "ECE"]
    pc = core.per_class_frame(metrics)
    assert list(pc["f1"]) == sorted(pc["f1"])
    cov = core.coverage_frame(metrics)
    assert list(cov["threshold"]) == [0.5, 0.8, 0.9]
    curve = core.coverage_curve(metrics)
    assert curve["coverage"].is_monotonic_increasing and curve["coverage"].iloc[-1] == pytest.approx(1.0)
    assert curve["accuracy"].iloc[-1] == pytest.approx(metrics["accuracy"])
    fig = core.coverage_figure(curve, cov)
    assert fig.axes[0].get_xlabel().startswith("coverage")
    synthetic = {"reliability": [{"lower": 0.0, "upper": 0.5, "count": 2, "accuracy": 0.0},
                                 {"lower": 0.5, "upper": 1.0, "count": 8, "accuracy": 0.75}]}
    assert core.coverage_curve(synthetic).to_dict("records") == [
        {"threshold": 0.5, "coverage": 0.8, "accuracy": 0.75},
        {"threshold": 0.0, "coverage": 1.0, "accuracy": 0.6}]
    assert core.default_report_dir(tmp_path, None) is None
    (tmp_path / "report").mkdir()
    assert core.default_report_dir(tmp_path, None) == tmp_path / "report"
    assert core.default_report_dir(tmp_path, "x") == core.Path("x")


def test_streamlit_command_is_private_and_quiet():
    cmd = streamlit_command(port=8765)
    joined = " ".join(cmd)
    assert "--server.address 127.0.0.1" in joined and "--server.port 8765" in joined
    assert "--browser.gatherUsageStats false" in joined and "--server.fileWatcherType none" in joined
    assert "--server.headless true" in joined


def test_data_page_shows_the_exploration(app_env, trained, tmp_path):
    from prodcat.explore import build_exploration, write_exploration_report

    _, catalog = trained
    out = tmp_path / "explore"
    write_exploration_report(build_exploration(catalog, image_sample=20), out)
    app_env.delenv(DATA_REPORT_ENV, raising=False)
    at = run_app()
    at.sidebar.radio(key="page").set_value("Data").run()
    assert not at.exception and at.title[0].value == "Data"
    assert at.info and "prodcat explore" in at.info[0].value  # no report yet: how to make one
    app_env.setenv(DATA_REPORT_ENV, str(out))
    at = run_app()
    at.sidebar.radio(key="page").set_value("Data").run()
    assert not at.exception
    metrics = {m.label: m.value for m in at.metric}
    assert metrics["Listings"] == f"{len(catalog):,}" and int(metrics["Classes"]) == catalog.y.nunique()


# --- a model that reads the photo's words (OCR; the stand-in engine of ocr_fakes) ---------------


@pytest.fixture
def ocr_bundle(monkeypatch, tmp_path):
    from ocr_fakes import ocr_model, use_fake_engine

    use_fake_engine(monkeypatch, tmp_path / "cache")
    (tmp_path / "photos").mkdir()
    return ocr_model(tmp_path / "photos").save(tmp_path / "ocr-bundle")


def test_seller_page_boxes_the_words_read_on_the_photo(monkeypatch, ocr_bundle):
    from ocr_fakes import PHOTOS, photo_bytes

    monkeypatch.setenv(MODEL_ENV, str(ocr_bundle))
    at = submit(run_app(), "article neuf", photo=photo_bytes(PHOTOS["livre"][0], (300, 200)))
    assert at.progress[0].text.startswith("1. livre")
    assert "Words read on the photo" in [m.value.strip("*") for m in at.markdown]
    words = next(m.value for m in at.markdown if "PETIT" in m.value)
    assert words.count("<mark") == 3 and "PRINCE" in words  # each word marked by its weight
    assert any("reads the words on the photo" in c.value for c in at.caption)
    assert len(at.image) == 2  # the photo as uploaded, and boxed (the model has no image side)
    # The words alone answer too, and the strongest words say they come from the photo.
    assert sum(p.text.startswith("1. livre") for p in at.progress) >= 2
    assert any("[photo]" in c.value for c in at.caption if c.value.startswith("Strongest words"))
    # Without a photo the page says what a photo would add.
    at = submit(run_app(), "article neuf")
    assert any("No photo given: words printed" in c.value for c in at.caption)


def test_boxed_photo_draws_each_word_in_its_colour():
    from ocr_fakes import photo_bytes

    photo = photo_bytes((250, 250, 250), (400, 200))
    ocr = {"size": [200, 100], "words": [
        {"text": "POUR", "box": [10, 10, 60, 40], "weight": 1.5},
        {"text": "CONTRE", "box": [80, 10, 150, 40], "weight": -0.5},
        {"text": "INCONNU", "box": [10, 60, 150, 90], "weight": None}]}
    image = core.boxed_photo(photo, ocr, max_side=400)
    assert image.size == (400, 200)
    # Boxes are scaled from the frame the engine read (200×100) to the photo shown (400×200).
    # (An outline of width 2 drawn just outside each box: POUR's left edge is at x = 2·10 − 1.)
    assert image.getpixel((19, 30)) == core.BOX_FOR
    assert image.getpixel((301, 40)) == core.BOX_AGAINST
    assert image.getpixel((19, 150)) == core.BOX_PLAIN
    assert image.getpixel((100, 100)) == (250, 250, 250)  # between boxes: the photo itself
    html = core.photo_words_html(ocr)
    assert html.count("<mark") == 2 and html.endswith("INCONNU") and 'title="+1.50"' in html
