"""The OCR channel of the Classifier (``Classifier(ocr=...)``, ``prodcat train --ocr``): the
photo's words join the listing's text, the category word only on the photo is learnt, bundles keep the engine, ``ocr=None`` changes
nothing, a server without the engine refuses the bundle, answers carry ``ocr_text``.

Photos are rendered here with PIL (a word in a large font); RapidOCR reads each distinct photo
once (results cached under the test's PRODCAT_CACHE_DIR). Tests that run an engine skip when it
is not installed (extra ``ocr``).
"""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
from PIL import Image, ImageDraw, ImageFont

from prodcat.errors import BundleError
from prodcat.model import Classifier
from prodcat.model.bundle import load_bundle
from prodcat.ocr import engine_status
from prodcat.text.model import TextClassifier

RAPID = pytest.mark.skipif(engine_status().get("rapidocr") != "ok", reason="rapidocr not installed")
FONT = "/usr/share/fonts/truetype/dejavu/DejaVuSans-Bold.ttf"
#: class → the word on its photos (titles say nothing of the class).
WORDS = {"livre": "ROMAN", "jeu": "CONSOLE", "dvd": "FILM"}


def _font(size: int):
    return ImageFont.truetype(FONT, size) if Path(FONT).is_file() else ImageFont.load_default(size)


def render_word(path: Path, word: str, shade: int) -> Path:
    image = Image.new("RGB", (260, 90), (250, 250 - shade, 240))
    ImageDraw.Draw(image).text((16, 18), word, fill=(20, 20, 20), font=_font(44))
    image.save(path, "JPEG", quality=90)
    return path


@pytest.fixture(scope="module")
def cache_dir(tmp_path_factory) -> Path:
    return tmp_path_factory.mktemp("ocr-cache")


@pytest.fixture(autouse=True)
def _cache(cache_dir, monkeypatch):
    monkeypatch.setenv("PRODCAT_CACHE_DIR", str(cache_dir))


@pytest.fixture(scope="module")
def frame(tmp_path_factory) -> tuple[pd.DataFrame, np.ndarray]:
    """48 listings of 3 classes whose titles are alike; the class word is only on the photo
    (two renderings per class, so OCR reads 6 photos); every fourth listing has no photo."""
    folder = tmp_path_factory.mktemp("ocr-photos")
    rows, y = [], []
    fillers = ["article neuf", "lot occasion", "très bon état", "vendu sans boîte"]
    for cls, word in WORDS.items():
        photos = [render_word(folder / f"{cls}{k}.jpg", word, 10 * k) for k in range(2)]
        for i in range(16):
            rows.append({"title": f"{fillers[i % 4]} {i}", "description": "",
                         "image": None if i % 4 == 3 else str(photos[i % 2])})
            y.append(cls)
    return pd.DataFrame(rows), np.array(y)


def small_model(**params) -> Classifier:
    return Classifier(text=TextClassifier(calibration_cv=2), min_images=4, fusion="late", **params)


def test_ocr_parameter_is_validated():
    with pytest.raises(ValueError, match="ocr"):
        Classifier(ocr="paddle").fit(pd.DataFrame({"title": ["a", "b"] * 3}), ["x", "y"] * 3)
    with pytest.raises(ValueError, match="ocr"):
        Classifier(ocr=True).fit(pd.DataFrame({"title": ["a", "b"] * 3}), ["x", "y"] * 3)
    assert Classifier().get_params()["ocr"] is None


def test_auto_without_an_installed_engine_trains_without_ocr(frame, monkeypatch):
    from prodcat.model import ocr_channel

    X, y = frame
    monkeypatch.setattr(ocr_channel, "installed_engines", lambda: [])
    with pytest.warns(UserWarning, match="no OCR engine"):
        model = small_model(ocr="auto").fit(X, y)
    assert model.ocr_ is None


def test_words_go_at_the_head_of_the_description_behind_a_marker():
    from prodcat.model.ocr_channel import with_ocr_words

    X = pd.DataFrame({"title": ["a", "b"], "description": ["long text", ""], "image": [None, None]})
    out = with_ocr_words(X, ["LE PETIT\nPRINCE", ""])
    assert list(out["description"]) == ["texte photo : LE PETIT PRINCE | long text", ""]
    assert list(out["title"]) == ["a", "b"]


def test_ocr_none_and_none_string_leave_the_model_as_it_was(frame):
    X, y = frame
    plain = small_model().fit(X, y)
    off = small_model(ocr="none").fit(X, y)
    assert plain.ocr_ is None and off.ocr_ is None and plain.image_ is None
    parts = plain.predict_modalities(X)
    assert "ocr_text" not in parts and parts["image"] is None
    np.testing.assert_array_equal(parts["fused"], off.predict_proba(X))
    np.testing.assert_array_equal(parts["fused"], parts["text"])


@RAPID
@pytest.mark.slow
def test_the_word_on_the_photo_is_learnt_and_survives_a_bundle(frame, tmp_path):
    X, y = frame
    model = small_model(ocr="rapidocr").fit(X, y)
    assert model.ocr_["engine"] == "rapidocr" and model.ocr_["version"].startswith("rapidocr")
    assert model.ocr_["n_with_words"] == 36 and model.fusion_ is None
    new = pd.DataFrame({"title": ["article neuf 99"] * 3, "description": [""] * 3,
                        "image": [str(render_word(tmp_path / f"n{w}.jpg", w, 30)) for w in WORDS.values()]})
    parts = model.predict_modalities(new)
    assert [t.upper() for t in parts["ocr_text"]] == list(WORDS.values())
    assert list(model.classes_[parts["fused"].argmax(1)]) == list(WORDS)
    assert list(model.classes_[parts["ocr"].argmax(1)]) == list(WORDS)  # the words alone
    # Without its photo a listing is read as before; the words alone say nothing (uniform).
    bare = model.predict_modalities(new.assign(image=None))
    np.testing.assert_allclose(bare["fused"], model.text_.predict_proba(new.assign(image=None)))
    assert bare["ocr_text"] == ["", "", ""]
    np.testing.assert_allclose(bare["ocr"], 1 / 3)

    path = model.save(tmp_path / "bundle")
    manifest = json.loads((path / "manifest.json").read_text())
    assert manifest["ocr"]["engine"] == "rapidocr" and "ocr" in manifest["modalities"]
    loaded, _ = load_bundle(path)
    np.testing.assert_allclose(loaded.predict_proba(new), parts["fused"])
    assert loaded.predict_modalities(new)["ocr_text"] == parts["ocr_text"]


@RAPID
@pytest.mark.slow
def test_auto_keeps_ocr_when_it_lowers_the_out_of_fold_log_loss(frame):
    X, y = frame
    model = small_model(ocr="auto").fit(X, y)
    scores = model.ocr_["oof_log_loss"]
    assert model.ocr_["engine"] == "rapidocr" and scores["with"] < scores["without"]


def test_a_bundle_whose_engine_is_missing_is_refused(tmp_path, monkeypatch):
    from prodcat.model import ocr_channel
    from prodcat.ocr import ENGINES

    manifest = {"ocr": {"engine": "rapidocr", "version": "rapidocr-3.10.0"}}
    monkeypatch.setattr(ENGINES.get("rapidocr"), "status", classmethod(lambda cls: "not installed: pip install"))
    with pytest.raises(BundleError, match="retrain with `prodcat train --ocr none`"):
        ocr_channel.check_bundle_ocr(tmp_path, manifest)
    with pytest.raises(BundleError, match="does not know"):
        ocr_channel.check_bundle_ocr(tmp_path, {"ocr": {"engine": "paddle"}})
    ocr_channel.check_bundle_ocr(tmp_path, {})  # no OCR: nothing to check


@RAPID
@pytest.mark.slow
def test_cli_train_predict_evaluate_and_api_show_the_words(frame, tmp_path, capsys):
    from fastapi.testclient import TestClient

    from prodcat.cli import main
    from prodcat.serving import ModelService, ServingSettings, create_app

    X, y = frame
    table = tmp_path / "listings.csv"
    X.assign(label=y).to_csv(table, index=False)
    out = tmp_path / "m"
    assert main(["train", "--data", str(table), "--out", str(out), "--cv", "0", "--head", "logistic",
                 "--image-encoder", "none", "--ocr", "rapidocr", "--no-fit-cache"]) == 0
    manifest = json.loads((out / "manifest.json").read_text())
    assert manifest["ocr"]["engine"] == "rapidocr" and manifest["ocr"]["on_missing"] == "refuse"
    assert manifest["parameters"]["params"]["ocr"] == "rapidocr"
    photo = render_word(tmp_path / "new.jpg", "CONSOLE", 20)
    capsys.readouterr()
    assert main(["predict", "--model", str(out), "--title", "article neuf", "--image", str(photo),
                 "--json"]) == 0
    answer = json.loads(capsys.readouterr().out)
    assert answer["ocr_text"].upper() == "CONSOLE" and answer["top_k"][0]["code"] == "jeu"
    assert answer["modalities"]["ocr"][0]["code"] == "jeu"

    report = tmp_path / "report"
    assert main(["evaluate", "--model", str(out), "--data", str(table), "--out", str(report)]) == 0
    metrics = json.loads((report / "metrics.json").read_text())
    assert metrics["modalities"]["ocr"]["n"] == 36 and "image" not in metrics["modalities"]

    service = ModelService.load(out)
    assert service.modalities == ["text", "ocr"]
    with TestClient(create_app(ServingSettings(model_dir=str(out)), service=service)) as client:
        r = client.post("/v1/predict", data={"title": "article neuf"},
                        files={"image": ("p.jpg", photo.read_bytes(), "image/jpeg")})
        assert r.status_code == 200, r.text
        assert r.json()["ocr_text"].upper() == "CONSOLE" and r.json()["top_k"][0]["code"] == "jeu"
        plain = client.post("/v1/predict", json={"title": "article neuf"}).json()
        assert plain["ocr_text"] == "" and plain["modalities"]["ocr"] is None


@RAPID
@pytest.mark.slow
def test_cross_validation_keeps_the_words_alone_per_listing(frame):
    from prodcat.evaluation.crossval import cross_val_proba

    X, y = frame
    res = cross_val_proba(small_model(ocr="rapidocr"), X, y, folds=2, progress=False)
    assert res.modalities["image"] is None and int(res.modalities["has_ocr"].sum()) == 36
    has = res.modalities["has_ocr"]
    assert (res.classes[res.modalities["ocr"][has].argmax(1)] == y[has]).mean() > 0.9
