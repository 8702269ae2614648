"""Explanations: exact word contributions, LIME, modality contributions, CLI and API, and
faithfulness on real listings (deleting the words the explanation ranks first must hurt most)."""

from __future__ import annotations

import base64
import json
import time

import numpy as np
import pandas as pd
import pytest

from conftest import real_catalog
from prodcat.cli import main
from prodcat.errors import ConfigError
from prodcat.explain import explain_listing, explain_text, linear_head
from prodcat.explain.text import linear_contributions, listing_tokens, listing_without
from prodcat.text.cleaning import clean_text


@pytest.fixture(scope="session")
def trained_single(rakuten_session_dir):
    """A Classifier whose text model is one TextClassifier: the exact per-head decompositions
    below are checked against that head; the default ensemble has its own test. (A fixture of
    its own: overriding ``trained`` would leak into the session's ``trained_bundle``.)"""
    from prodcat.data import read_catalog
    from prodcat.model import Classifier
    from prodcat.text import TextClassifier

    catalog = read_catalog(rakuten_session_dir).labelled()
    return Classifier(text=TextClassifier()).fit(catalog.X, catalog.y, taxonomy=catalog.taxonomy), catalog


LISTING = {"title": "Carte Pokémon holo rare - Booster",
           "description": "<p>Tr&egrave;s bel article&nbsp;: <b>deck</b> dresseur, pompe.</p> Édition 2020"}


def _platt_logits(text_model, listing) -> np.ndarray:
    """Each class's sigmoid log-odds, from the head itself (the quantity explained)."""
    estimator, columns, a, b = text_model.sigmoids_
    scores = estimator.decision_function(text_model.transform(pd.DataFrame([listing])))[0]
    out = np.full(len(text_model.classes_), np.nan)
    out[columns] = -(a * scores + b)
    return out


def test_word_contributions_add_up_to_the_class_score_exactly(trained_single):
    model, catalog = trained_single
    listings = [LISTING] + [{"title": r.title, "description": r.description}
                            for r in catalog.X.iloc[:20].itertuples()]
    for listing in listings:
        e = explain_text(model, listing, k=len(model.classes_))
        assert e.method == "linear" and e.unit == "log-odds"
        logits = _platt_logits(model.text_, listing)
        for c in e.classes:
            j = list(model.classes_).index(c.code)
            assert c.score == pytest.approx(logits[j], abs=1e-3)
        # Probabilities are the model's own, best first.
        probs = [c.probability for c in e.classes]
        assert probs == sorted(probs, reverse=True)


def test_ensemble_words_add_up_to_its_members_weighted_scores(trained):
    model, catalog = trained  # the default Classifier: its text model is the ensemble
    ens = model.text_
    if not hasattr(ens, "members_"):
        pytest.skip("the default text model is a single model here (no sentence encoder)")
    for listing in [LISTING] + [{"title": r.title, "description": r.description}
                                for r in catalog.X.iloc[:5].itertuples()]:
        e = explain_text(model, listing, k=len(model.classes_))
        assert e.method == "linear" and "ensemble" in e.unit
        X = pd.DataFrame([listing])
        expected = np.zeros(len(model.classes_))
        for name, m in ens.members_.items():
            if hasattr(m, "sigmoids_"):
                est, cols, a, b = m.sigmoids_
                expected[cols] += ens.weights_[name] * -(a * est.decision_function(m.transform(X))[0] + b)
            else:
                expected += ens.weights_[name] * m.head_.decision_function(m.transform(X))[0]
        for c in e.classes:
            assert c.score == pytest.approx(expected[list(model.classes_).index(c.code)], abs=1e-3)


def test_character_ngrams_are_folded_onto_the_words_they_come_from(trained_single):
    model, _ = trained_single
    text = model.text_
    # A misspelt word no word n-gram knows still gets weight through its character n-grams.
    listing = {"title": "pokémonn boosterr", "description": ""}
    tokens, contrib, _, _ = linear_contributions(text, listing, [list(text.classes_).index("1160")])
    assert [t.text for t in tokens] == ["pokemonn", "boosterr"]
    assert (contrib[0] > 0).all()


def test_tokens_point_back_into_the_raw_text(trained_single):
    model, _ = trained_single
    tokens = listing_tokens(LISTING["title"], LISTING["description"], model.text_.features_)
    assert tokens[0].text == "carte" and tokens[0].field == "title"
    for t in tokens:
        if t.span is not None:
            raw = LISTING[t.field][t.span[0]:t.span[1]]
            assert t.text in clean_text(raw).split()
    assert all(t.span is not None for t in tokens if t.field == "title")
    # Removing words keeps the rest of the listing as the model reads it.
    kept = listing_without(tokens, {"pokemon"})
    assert "pokemon" not in kept["title"] and kept["title"].startswith("carte holo")


def test_lime_agrees_with_the_exact_weights_on_the_strongest_word(trained_single):
    pytest.importorskip("lime")
    model, _ = trained_single
    exact = explain_text(model, LISTING, k=1)
    started = time.perf_counter()
    lime = explain_text(model, LISTING, k=1, method="lime", lime_samples=200)
    assert time.perf_counter() - started < 30
    assert lime.method == "lime" and lime.details["lime_samples"] == 200
    best_exact = exact.top_words(0, 1, sign=1)[0][0]
    assert lime.word_weights(0)[best_exact] > 0
    with pytest.raises(ConfigError):
        explain_text(model, LISTING, method="lime", lime_samples=5)
    with pytest.raises(ConfigError):
        explain_text(model, LISTING, method="shap")


def test_non_linear_heads_fall_back_to_lime(trained_single):
    from prodcat.model import Classifier
    from prodcat.text import TextClassifier

    pytest.importorskip("lime")
    model, catalog = trained_single
    nb = Classifier(text=TextClassifier(head="complement-nb", calibration="isotonic")).fit(catalog.X, catalog.y)
    auto = explain_text(nb, LISTING, k=2, lime_samples=50)
    assert auto.method == ("linear" if linear_head(nb.text_) is not None else "lime")
    assert len(auto.classes) == 2


def test_explain_listing_text_only_model(trained_single, tmp_path):
    model, _ = trained_single
    e = explain_listing(model, LISTING)
    assert [a["code"] for a in e.answer] == [c.code for c in e.text.classes]
    assert e.image is None and any("no image side" in n for n in e.notes)
    assert e.modalities["decided_by"] == "text" and e.modalities["agree"] is None
    path = e.save(tmp_path / "out")
    data = json.loads(path.read_text(encoding="utf-8"))
    assert data["text"]["classes"][0]["top_words"][0]["weight"] > 0
    assert data["image"] is None


def test_cli_explain(trained_bundle, tmp_path, capsys):
    out = tmp_path / "why"
    assert main(["explain", "--model", str(trained_bundle), "--title", LISTING["title"],
                 "--description", LISTING["description"], "--out", str(out)]) == 0
    printed = capsys.readouterr().out
    assert "for:" in printed and "log-odds" in printed
    data = json.loads((out / "explanation.json").read_text(encoding="utf-8"))
    assert data["answer"][0]["code"] == "1160"
    assert {"text", "image", "modalities", "notes"} <= set(data)
    # Bad input: a clear error, exit status 2.
    assert main(["explain", "--model", str(trained_bundle), "--out", str(out)]) == 2
    assert main(["explain", "--model", str(trained_bundle), "--title", "x", "--image",
                 str(tmp_path / "missing.jpg"), "--out", str(out)]) == 2
    assert "image not found" in capsys.readouterr().err


# --- with a photo -------------------------------------------------------------------------------


@pytest.fixture(scope="module")
def fused(tmp_path_factory):
    pytest.importorskip("onnxruntime")
    from prodcat.data import read_catalog
    from prodcat.demo import write_demo_catalog
    from prodcat.image import ImageClassifier, ImageError, create_encoder
    from prodcat.model import Classifier

    try:
        create_encoder("efficientnet-lite0").ensure_export()
    except ImageError as exc:
        pytest.skip(f"image encoder unavailable: {exc}")
    catalog = read_catalog(write_demo_catalog(tmp_path_factory.mktemp("demo") / "cat", n_listings=200, seed=4))
    model = Classifier(image=ImageClassifier(), fusion="late").fit(catalog.X, catalog.y, taxonomy=catalog.taxonomy)
    return model, catalog


@pytest.mark.slow
def test_fused_explanation_has_heat_map_and_modality_shares(fused, tmp_path):
    model, catalog = fused
    row = catalog.X[catalog.X["image"].notna()].iloc[0]
    listing = {"title": row.title, "description": row.description, "image": row.image}
    e = explain_listing(model, listing, image_method="occlusion")
    assert e.image is not None and e.image.method == "occlusion"
    assert e.image.target == e.answer[0]["code"] or any("saw no photo" in n for n in e.notes)
    m = e.modalities
    assert m["has_image"] and m["fusion"] == "late" and set(m["weights"]) == {"text", "image"}
    first = m["classes"][0]
    assert first["photo_moved"] == pytest.approx(first["fused"] - first["text"])
    # Late fusion: the two log-odds parts rebuild the fused distribution exactly.
    fused_p = model.predict_modalities(listing)["fused"][0]
    logits = np.zeros(len(model.classes_))
    for c in m["classes"]:
        logits[list(model.classes_).index(c["code"])] = c["log_odds"]["text"] + c["log_odds"]["image"]
    codes = [list(model.classes_).index(c["code"]) for c in m["classes"]]
    expected = np.log(fused_p[codes]) - np.log(fused_p[codes[0]])
    np.testing.assert_allclose(logits[codes] - logits[codes[0]], expected, atol=1e-6)
    path = e.save(tmp_path / "out")
    assert (tmp_path / "out" / "heatmap.png").is_file()
    assert json.loads(path.read_text())["image"]["heatmap_path"].endswith("heatmap.png")
    # No usable photo: the text explanation stands, with a note.
    e = explain_listing(model, {**listing, "image": str(tmp_path / "missing.jpg")})
    assert e.image is None and e.text is not None and any("no usable photo" in n for n in e.notes)


@pytest.mark.slow
def test_api_explain(fused, tmp_path):
    pytest.importorskip("fastapi")
    from fastapi.testclient import TestClient

    from prodcat.serving.app import create_app
    from prodcat.serving.config import ServingSettings
    from prodcat.serving.service import ModelService

    model, catalog = fused
    bundle = model.save(tmp_path / "model")
    row = catalog.X[catalog.X["image"].notna()].iloc[1]
    photo = open(row.image, "rb").read()  # noqa: SIM115
    with TestClient(create_app(ServingSettings(model_dir=str(bundle)), ModelService.load(bundle))) as client:
        r = client.post("/v1/explain", json={"title": row.title, "description": row.description,
                                             "image": base64.b64encode(photo).decode(),
                                             "image_method": "occlusion"})
        assert r.status_code == 200, r.text
        body = r.json()
        assert body["answer"][0]["code"] == body["text"]["classes"][0]["code"]
        assert base64.b64decode(body["heatmap_png"]).startswith(b"\x89PNG")
        r = client.post("/v1/explain", data={"title": row.title, "heatmap": "false"},
                        files={"image": ("p.jpg", photo, "image/jpeg")})
        assert r.status_code == 200 and r.json()["heatmap_png"] is None
        assert r.json()["image"] is not None
        # Bad options and inputs: clear 4xx errors.
        assert client.post("/v1/explain", json={"title": "x", "image_method": "magic"}).status_code == 422
        assert client.post("/v1/explain", json={"title": "x", "lime_samples": 10**7}).status_code == 422
        r = client.post("/v1/explain", json={"title": "x", "image": base64.b64encode(b"not a photo").decode()})
        assert r.status_code in (415, 422) and "error" in r.json()


# --- faithfulness on real listings --------------------------------------------------------------


@pytest.mark.slow
@pytest.mark.realdata
def test_deleting_the_top_words_hurts_more_than_deleting_random_words():
    from prodcat.model import Classifier

    catalog = real_catalog("rakuten").labelled()
    rng = np.random.default_rng(0)
    order = rng.permutation(len(catalog))
    train, test = order[:1700], order[1700:]
    model = Classifier().fit(catalog.X.iloc[train], catalog.y[train])
    drops_top, drops_random, n = [], [], 0
    for i in test:
        row = catalog.X.iloc[i]
        listing = {"title": row.title, "description": row.description}
        e = explain_text(model, listing, k=1)
        words = list(e.word_weights(0))
        if len(words) < 10:
            continue
        target = list(model.classes_).index(e.classes[0].code)
        base = model.text_.predict_proba(pd.DataFrame([listing_without(e.tokens, set())]))[0, target]
        top = {w for w, _ in e.top_words(0, 5, sign=1)}
        rand = set(rng.choice(words, 5, replace=False))
        p_top, p_rand = model.text_.predict_proba(pd.DataFrame(
            [listing_without(e.tokens, top), listing_without(e.tokens, rand)]))[:, target]
        drops_top.append(base - p_top)
        drops_random.append(base - p_rand)
        n += 1
        if n == 150:
            break
    assert n >= 100
    assert np.mean(drops_top) > np.mean(drops_random) + 0.05, (np.mean(drops_top), np.mean(drops_random))
    assert np.mean(np.array(drops_top) > np.array(drops_random)) > 0.7
