"""The embedding cache, the batch encoding pipeline and the ImageClassifier, with a stand-in
encoder: the real networks are tested in test_image_encoders.py.

``ColourEncoder`` runs the real decode → preprocess → batch → cache pipeline and replaces only
the network by a few colour statistics, so these tests need neither torch nor onnxruntime.
"""

from __future__ import annotations

import io
import pickle
import threading

import numpy as np
import pandas as pd
import pytest
from PIL import Image

from conftest import RAKUTEN_CLASSES, write_rakuten
from prodcat.data import read_catalog
from prodcat.errors import ConfigError, DataError
from prodcat.image import (
    EmbeddingCache,
    EncoderSpec,
    ImageClassifier,
    ImageEncoder,
    ImageError,
    PreprocessConfig,
    content_digest,
    image_column,
    list_image_heads,
)


class ColourEncoder(ImageEncoder):
    """Mean and spread of each channel over the photo: 6 numbers that tell the fixture classes apart."""

    def run(self, pixels):
        batch = np.asarray(pixels, np.float32) / 255.0
        self.images_encoded += len(batch)
        emb = np.concatenate([batch.mean(axis=(1, 2)), batch.std(axis=(1, 2))], axis=1)
        return emb.astype(np.float32), np.zeros((len(batch), 1000), np.float32)


SPEC = EncoderSpec(name="colour-test", arch="none", weights_module="none", weights_class="none",
                   weights_file="none", dim=6, preprocess=PreprocessConfig(size=16))


def colour_encoder() -> ColourEncoder:
    return ColourEncoder(SPEC)


@pytest.fixture(autouse=True)
def cache_dir(tmp_path, monkeypatch):
    """Every cache these tests open lives in tmp_path."""
    path = tmp_path / "cache"
    monkeypatch.setenv("PRODCAT_CACHE_DIR", str(path))
    return path


def solid_jpeg(path, colour, size=(24, 24)):
    Image.new("RGB", size, colour).save(path, format="JPEG", quality=95)
    return path


# --- the cache -----------------------------------------------------------------------------------


def test_cache_round_trip_counts_and_clear(tmp_path):
    vectors = {f"d{i}": np.arange(4, dtype=np.float32) + i for i in range(3)}
    with EmbeddingCache(tmp_path / "e.sqlite") as cache:
        assert cache.get("enc", "d0") is None
        assert cache.put_many("enc", vectors.items()) == 3
        cache.put("other", "d0", np.ones(2, np.float32))
        np.testing.assert_array_equal(cache.get("enc", "d1"), vectors["d1"])
        found = cache.get_many("enc", ["d0", "d2", "nope", "d0"])
        assert set(found) == {"d0", "d2"}
        assert len(cache) == 4 and cache.count("enc") == 3
        assert cache.encoders() == ["enc", "other"]
        assert cache.clear("other") == 1 and len(cache) == 3
    # Reopened (and pickled) caches see the same file.
    again = pickle.loads(pickle.dumps(EmbeddingCache(tmp_path / "e.sqlite")))
    assert again.count("enc") == 3


def test_cache_default_location_follows_env(cache_dir):
    cache = EmbeddingCache()
    cache.put("enc", "d", np.zeros(3, np.float32))
    assert cache.path == cache_dir / "embeddings.sqlite" and cache.path.exists()
    cache.close()


def test_damaged_cache_file_is_a_clear_error(tmp_path):
    path = tmp_path / "bad.sqlite"
    path.write_bytes(b"this is not a database" * 100)
    with pytest.raises(ImageError, match="delete the file"):
        EmbeddingCache(path).get("enc", "d")


def test_cache_is_safe_from_threads(tmp_path):
    cache = EmbeddingCache(tmp_path / "t.sqlite")

    def work(k):
        for i in range(20):
            cache.put("enc", f"{k}-{i}", np.full(8, k, np.float32))
            assert cache.get("enc", f"{k}-{i}")[0] == k

    threads = [threading.Thread(target=work, args=(k,)) for k in range(4)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert cache.count() == 80


# --- the encoding pipeline -----------------------------------------------------------------------


def test_encode_keeps_order_and_counts_bad_images(tmp_path):
    colours = [(10 * i, 255 - 10 * i, 100) for i in range(20)]
    paths = [str(solid_jpeg(tmp_path / f"{i}.jpg", c)) for i, c in enumerate(colours)]
    (tmp_path / "html.jpg").write_text("<html></html>")
    sources = [*paths[:10], None, str(tmp_path / "html.jpg"), str(tmp_path / "gone.jpg"), *paths[10:]]
    encoder = colour_encoder()
    with pytest.warns(UserWarning, match="2 of 22 images could not be used"):
        result = encoder.encode_images(sources, batch_size=4, n_workers=3)
    embeddings, ok, errors = result  # unpacks like a tuple
    assert embeddings.shape == (23, 6) and embeddings.dtype == np.float32
    assert ok.tolist() == [True] * 10 + [False] * 3 + [True] * 10
    assert errors[10] == "no image" and "not an image" in errors[11] and "not found" in errors[12]
    assert result.failure_counts() == {"no image": 1, "not an image": 1, "not found": 1}
    assert np.all(embeddings[~ok] == 0)
    # Row order survives the thread pool: red channel means follow the colours.
    red = embeddings[ok][:, 0] * 255
    np.testing.assert_allclose(red, [c[0] for c in colours], atol=4)
    assert encoder.images_encoded == 20


def test_encode_accepts_bytes_and_empty_input(tmp_path):
    buf = io.BytesIO()
    Image.new("RGB", (8, 8), (0, 0, 255)).save(buf, format="PNG")
    result = colour_encoder().encode_images([buf.getvalue()], warn=False)
    assert result.ok.all() and result.embeddings[0, 2] > 0.9
    empty = colour_encoder().encode_images([])
    assert empty.embeddings.shape == (0, 6)
    with pytest.raises(ConfigError):
        colour_encoder().encode_images([buf.getvalue()], batch_size=0)


def test_cache_hit_never_re_encodes(tmp_path):
    paths = [str(solid_jpeg(tmp_path / f"{i}.jpg", (i * 12, 40, 200))) for i in range(12)]
    cache = EmbeddingCache(tmp_path / "c.sqlite")
    encoder = colour_encoder()
    first = encoder.encode_images(paths, batch_size=5, cache=cache)
    assert first.n_encoded == 12 and encoder.images_encoded == 12 and cache.count() == 12

    # A new encoder object (a new process, say) finds them all in the cache.
    again = colour_encoder()
    second = again.encode_images(paths[::-1], batch_size=5, cache=cache)
    assert again.images_encoded == 0 and second.n_from_cache == 12 and second.n_encoded == 0
    np.testing.assert_array_equal(second.embeddings, first.embeddings[::-1])

    # The key is the content: a renamed copy is a hit; a changed file is not.
    (tmp_path / "renamed.jpg").write_bytes((tmp_path / "3.jpg").read_bytes())
    solid_jpeg(tmp_path / "0.jpg", (0, 255, 0))
    third = again.encode_images([str(tmp_path / "renamed.jpg"), paths[0]], cache=cache)
    assert third.n_from_cache == 1 and third.n_encoded == 1 and again.images_encoded == 1


def test_identical_photos_in_one_run_are_encoded_once(tmp_path):
    data = (solid_jpeg(tmp_path / "a.jpg", (1, 2, 3))).read_bytes()
    for i in range(5):
        (tmp_path / f"copy{i}.jpg").write_bytes(data)
    sources = [str(tmp_path / f"copy{i}.jpg") for i in range(5)]
    encoder = colour_encoder()
    result = encoder.encode_images(sources, batch_size=2, cache=tmp_path / "d.sqlite")
    assert result.ok.all() and encoder.images_encoded <= 2
    assert result.n_encoded + result.n_duplicates + result.n_from_cache == 5
    assert np.ptp(result.embeddings, axis=0).max() == 0


def test_cache_keys_depend_on_the_encoder(tmp_path):
    path = str(solid_jpeg(tmp_path / "a.jpg", (9, 9, 9)))
    cache = EmbeddingCache(tmp_path / "k.sqlite")
    colour_encoder().encode_images([path], cache=cache)
    other = ColourEncoder(EncoderSpec(**{**SPEC.__dict__, "preprocess": PreprocessConfig(size=20)}))
    assert other.encoder_id != colour_encoder().encoder_id
    assert other.encode_images([path], cache=cache).n_encoded == 1
    digest = content_digest((tmp_path / "a.jpg").read_bytes())
    assert cache.get(colour_encoder().encoder_id, digest) is not None


def test_encoder_pickles_without_its_session():
    encoder = colour_encoder()
    encoder._session = object()  # stands for an onnxruntime session, which cannot be pickled
    copy = pickle.loads(pickle.dumps(encoder))
    assert copy._session is None and copy.name == "colour-test"


# --- the classifier ------------------------------------------------------------------------------


@pytest.fixture
def catalog(tmp_path):
    return read_catalog(write_rakuten(tmp_path / "rakuten", per_class=12)).labelled()


def test_classifier_fits_on_rows_with_images_and_uses_the_prior_elsewhere(catalog):
    model = ImageClassifier(encoder=colour_encoder(), calibration_cv=2)
    assert model.get_params()["head"] == "logistic"  # __init__ only stores
    X, y = catalog.X, catalog.y
    assert model.fit(X, y) is model
    has = model.has_image(X)
    assert has.tolist() == [p is not None for p in X["image"]]
    assert model.n_images_used_ == int(has.sum()) and model.n_images_skipped_ == int((~has).sum())
    assert list(model.classes_) == sorted(RAKUTEN_CLASSES)

    proba, mask = model.predict_proba_masked(X)
    np.testing.assert_array_equal(mask, has)
    assert proba.shape == (len(X), len(RAKUTEN_CLASSES))
    np.testing.assert_allclose(proba.sum(axis=1), 1.0, atol=1e-9)
    prior = y.value_counts(normalize=True).sort_index().to_numpy()
    np.testing.assert_allclose(proba[~has], np.tile(prior, ((~has).sum(), 1)))
    # The colours tell the classes apart: photos are classified right.
    assert (model.predict(X)[has] == y.to_numpy()[has]).mean() >= 0.9
    np.testing.assert_array_equal(model.predict_proba(X), proba)


def test_classifier_pickles_and_takes_lists_and_series(catalog):
    model = ImageClassifier(encoder=colour_encoder(), head="mlp", calibration_cv=2).fit(catalog.X, catalog.y)
    copy = pickle.loads(pickle.dumps(model))
    paths = catalog.X["image"].tolist()
    np.testing.assert_allclose(copy.predict_proba(paths), model.predict_proba(pd.Series(paths)))
    assert copy.transform(catalog.X).shape == (len(paths), 6)
    assert "mlp" in list_image_heads()


def test_classifier_with_a_class_without_photos(catalog):
    X, y = catalog.X.copy(), catalog.y.to_numpy().copy()
    X.loc[y == "2583", "image"] = None  # this class has no usable photo at all
    model = ImageClassifier(encoder=colour_encoder(), calibration_cv=2).fit(X, y)
    assert "2583" in model.classes_
    proba = model.predict_proba(X)
    col = list(model.classes_).index("2583")
    has = model.has_image(X)
    assert (proba[has, col] == 0).all() and (proba[~has, col] > 0).all()


def test_classifier_errors(catalog, tmp_path):
    X, y = catalog.X.copy(), catalog.y.to_numpy()
    with pytest.raises(ConfigError, match="unknown image head"):
        ImageClassifier(encoder=colour_encoder(), head="forest").fit(X, y)
    no_images = X.assign(image=None)
    with pytest.raises(DataError, match="at least two categories"):
        ImageClassifier(encoder=colour_encoder()).fit(no_images, y)
    with pytest.raises(DataError, match="labels"):
        ImageClassifier(encoder=colour_encoder()).fit(X, y[:-1])
    with pytest.raises(DataError, match="'image' column"):
        image_column(X.drop(columns=["image"]))
    with pytest.raises(ConfigError, match="unknown image encoder"):
        ImageClassifier(encoder="resnet-9000").fit(X, y)


def test_classifier_cache_means_refit_does_not_re_encode(catalog, tmp_path):
    encoder = colour_encoder()
    model = ImageClassifier(encoder=encoder, cache=str(tmp_path / "m.sqlite"), calibration_cv=2)
    model.fit(catalog.X, catalog.y)
    used = model.encoder_.images_encoded
    assert used > 0
    model.fit(catalog.X, catalog.y)
    model.predict_proba(catalog.X)
    assert model.encoder_.images_encoded == 0  # a fresh copy each fit, and every photo cached


def test_image_classifier_checks_its_parameters_first():
    from prodcat.errors import ConfigError
    from prodcat.image import ImageClassifier

    emb = np.zeros((4, 8), dtype=np.float32)
    with pytest.raises(ConfigError, match="'C' parameter of ImageClassifier"):
        ImageClassifier(C=-1.0).fit_embeddings(emb, np.ones(4, bool), ["a", "b", "a", "b"])
    with pytest.raises(ConfigError, match="'batch_size' parameter"):
        ImageClassifier(batch_size=0).fit_embeddings(emb, np.ones(4, bool), ["a", "b", "a", "b"])
