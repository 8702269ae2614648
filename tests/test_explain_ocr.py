"""Explanations of a model that reads the photo's words (``Classifier(ocr=...)``): those words
are explained with the listing's, marked as the photo's, add up exactly with them, carry their
boxes, and reach ``prodcat explain``, the API and ``explanation.json``. The OCR engine is the
stand-in of ``ocr_fakes`` (words by photo colour), so no RapidOCR is needed."""

from __future__ import annotations

import json

import pandas as pd
import pytest

from ocr_fakes import PHOTOS, ocr_model, photo_bytes, use_fake_engine
from prodcat.explain import explain_listing, explain_text
from prodcat.explain.photo_words import mark_photo_tokens
from prodcat.explain.text import Token, listing_without
from prodcat.model.ocr_channel import with_ocr_words
from test_explain import _platt_logits


@pytest.fixture
def fake(monkeypatch, tmp_path):
    return use_fake_engine(monkeypatch, tmp_path / "cache")


@pytest.fixture
def model(fake, tmp_path):
    folder = tmp_path / "photos"
    folder.mkdir()
    return ocr_model(folder)


@pytest.fixture
def red(tmp_path):
    path = tmp_path / "red.png"
    path.write_bytes(photo_bytes(PHOTOS["livre"][0], (200, 140)))
    return str(path)


def test_photo_words_are_explained_marked_and_add_up_exactly(model, red):
    assert model.ocr_["engine"] == "rapidocr" and model.ocr_["version"] == "fake-ocr-1"
    listing = {"title": "article neuf", "description": "Très bon état, envoi rapide", "image": red}
    e = explain_text(model, listing, k=3)
    fields = [t.field for t in e.tokens]
    assert fields == ["title"] * 2 + ["marker"] * 3 + ["photo"] * 3 + ["marker"] + ["description"] * 5
    photo = [t for t in e.tokens if t.field == "photo"]
    assert [t.text for t in photo] == ["le", "petit", "prince"] and [t.position for t in photo] == [0, 1, 2]
    assert {t.source for t in e.tokens if t.field in ("photo", "marker")} == {"photo"}
    assert {t.source for t in e.tokens if t.field in ("title", "description")} == {"listing"}
    # Spans: the photo's words into the words read, the description's into what the seller typed.
    read = "LE PETIT PRINCE"
    assert [read[slice(*t.span)] for t in photo] == ["LE", "PETIT", "PRINCE"]
    desc = [t for t in e.tokens if t.field == "description"]
    assert [t.position for t in desc] == [0, 1, 2, 3, 4]
    assert [listing["description"][slice(*t.span)] for t in desc] == listing["description"].split()
    # Every word, the photo's included, adds up to the text model's log-odds on what it read.
    logits = _platt_logits(model.text_, with_ocr_words(pd.DataFrame([listing]), [read]).iloc[0].to_dict())
    for i, c in enumerate(e.classes):
        assert c.score == pytest.approx(logits[list(model.classes_).index(c.code)], abs=1e-3)
        shares = e.source_weights(i)
        assert shares["listing"] + shares["photo"] + c.bias + c.dense == pytest.approx(c.score, abs=1e-9)
    # The photo's words decide: they speak for "livre" and are ranked apart from the listing's.
    assert e.classes[0].code == "livre" and e.source_weights(0)["photo"] > 0
    top = e.top_words_by_source(0, 3, sign=1)
    assert top[0][2] == "photo" and top[0][0] in {"le", "petit", "prince"}
    assert "texte" not in e.word_weights(0) and set(e.word_weights(0, "photo")) == {"le", "petit", "prince"}
    out = e.to_dict()
    assert out["tokens"][5] == {"text": "le", "field": "photo", "source": "photo", "position": 0, "span": [0, 2]}
    assert out["classes"][0]["top_words"][0]["source"] == "photo"
    assert set(out["classes"][0]["sources"]) == {"listing", "photo"}


def test_explain_listing_carries_the_words_with_their_boxes(model, red, tmp_path, fake):
    e = explain_listing(model, {"title": "article neuf", "description": "", "image": red})
    assert e.answer[0]["code"] == "livre"
    ocr = e.ocr
    assert ocr["status"] == "ok" and ocr["text"] == "LE PETIT PRINCE" and ocr["size"] == [200, 140]
    assert [w["text"] for w in ocr["words"]] == ["LE", "PETIT", "PRINCE"]
    assert all(len(w["box"]) == 4 and w["box"][0] < w["box"][2] <= 200 for w in ocr["words"])
    # A word's weight is its tokens' weight for the answer's top class.
    by_word = e.text.word_weights(0, "photo")
    for w in ocr["words"]:
        assert w["weight"] == pytest.approx(by_word[w["text"].lower()])
    saved = json.loads(e.save(tmp_path / "why").read_text())
    assert saved["ocr"]["words"][0]["text"] == "LE"
    assert any(t["source"] == "photo" for t in saved["text"]["tokens"])
    # Without the disk cache (uploads), classifying then explaining a photo reads it once.
    from prodcat.model import ocr_channel

    reads = []
    recognise = type(fake)._recognise
    fake._recognise = lambda *a: reads.append(1) or recognise(fake, *a)
    model.ocr_cache_ = False
    model.predict_modalities(pd.DataFrame([{"title": "x", "description": "", "image": red}]))
    explain_listing(model, {"title": "article neuf", "description": "", "image": red})
    assert len(reads) == 1 and len(ocr_channel._RECENT) == 1


def test_a_listing_without_photo_words_is_explained_as_before(model, tmp_path):
    e = explain_listing(model, {"title": "article neuf", "description": "lot", "image": None})
    assert {t.field for t in e.text.tokens} == {"title", "description"} and e.ocr is None
    grey = tmp_path / "flat.png"
    grey.write_bytes(photo_bytes((128, 128, 128))[:60])  # a truncated file: nothing read
    e = explain_listing(model, {"title": "article neuf", "description": "", "image": str(grey)})
    assert e.ocr["words"] == [] and e.ocr["status"] != "ok"
    assert any("no words were read" in n for n in e.notes)
    assert {t.source for t in e.text.tokens} == {"listing"}


def test_a_model_without_ocr_marks_every_word_as_the_listings(trained):
    model, _ = trained
    e = explain_listing(model, {"title": "Carte pokémon holo", "description": "deck", "image": None})
    out = e.to_dict()
    assert out["ocr"] is None
    assert {t["source"] for t in out["text"]["tokens"]} == {"listing"}
    assert {w["source"] for w in out["text"]["classes"][0]["top_words"]} == {"listing"}
    assert out["text"]["classes"][0]["sources"]["photo"] == 0


def test_deleting_words_keeps_the_photo_words_where_the_model_reads_them():
    tokens = [Token("carte", "title", 0), Token("texte", "marker", 0), Token("photo", "marker", 1),
              Token(":", "marker", 2), Token("prince", "photo", 0), Token("|", "marker", 3),
              Token("neuf", "description", 0)]
    assert listing_without(tokens, {"neuf"}) == {"title": "carte", "description": "texte photo : prince |"}
    assert listing_without(tokens, {"prince", "photo"})["description"] == "texte photo : | neuf"


def test_tokens_are_left_alone_when_the_description_does_not_start_with_the_words():
    tokens = [Token("neuf", "description", 0, (0, 4))]
    assert not mark_photo_tokens(tokens, "PRINCE", "neuf", True)
    assert tokens[0].field == "description" and tokens[0].span == (0, 4)


def test_cli_and_api_explanations_show_the_photo_words(model, red, tmp_path, capsys):
    from fastapi.testclient import TestClient

    from prodcat.cli import main
    from prodcat.serving import ModelService, ServingSettings, create_app

    bundle = model.save(tmp_path / "bundle")
    capsys.readouterr()
    assert main(["explain", "--model", str(bundle), "--title", "article neuf", "--image", red,
                 "--out", str(tmp_path / "why")]) == 0
    printed = capsys.readouterr().out
    assert "[photo]" in printed and "words read on the photo: LE PETIT PRINCE" in printed
    saved = json.loads((tmp_path / "why" / "explanation.json").read_text())
    assert [w["text"] for w in saved["ocr"]["words"]] == ["LE", "PETIT", "PRINCE"]

    service = ModelService.load(bundle)
    with TestClient(create_app(ServingSettings(model_dir=str(bundle)), service=service)) as client:
        with open(red, "rb") as fh:
            r = client.post("/v1/explain", data={"title": "article neuf"},
                            files={"image": ("p.png", fh.read(), "image/png")})
        assert r.status_code == 200, r.text
        body = r.json()
        assert body["ocr"]["text"] == "LE PETIT PRINCE" and body["ocr"]["words"][2]["weight"] is not None
        assert any(w["source"] == "photo" for w in body["text"]["classes"][0]["top_words"])
        plain = client.post("/v1/explain", json={"title": "article neuf"}).json()
        assert plain["ocr"] is None
