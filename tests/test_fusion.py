"""Fusion: learnt on out-of-fold probabilities, fused answers for listings with a photo only."""

from __future__ import annotations

import json

import numpy as np
import pytest

from prodcat.errors import ConfigError, DataError
from prodcat.fusion import LateFusion, StackedFusion, probability_blocks
from prodcat.fusion.early import EarlyFusion
from prodcat.fusion.fusers import cross_val_fused, log_loss_of


def _noisy(rng, y, n_classes, signal):
    z = rng.normal(0, 1, (len(y), n_classes))
    z[np.arange(len(y)), y] += signal
    e = np.exp(z)
    return e / e.sum(axis=1, keepdims=True)


def test_late_fusion_weights_follow_how_informative_each_modality_is():
    rng = np.random.default_rng(0)
    y = rng.integers(0, 5, 600)
    text, image, noise = _noisy(rng, y, 5, 2.0), _noisy(rng, y, 5, 1.0), _noisy(rng, y, 5, 0.0)
    useful = LateFusion().fit(probability_blocks([text, image]), y)
    assert useful.weights_[1] > 0 and useful.oof_log_loss_ < log_loss_of(text, y)
    useless = LateFusion().fit(probability_blocks([text, noise]), y)
    assert useless.weights_[1] <= 0.2  # a photo that says nothing gets (almost) no say
    fused = useful.predict_proba(probability_blocks([text, image]))
    np.testing.assert_allclose(fused.sum(axis=1), 1.0)
    # A list of arrays is not one X: refused with the fusers' own message.
    with pytest.raises(ValueError):
        LateFusion().fit([text, image], y)


def test_stacked_fusion_and_out_of_fold_fused_probabilities():
    rng = np.random.default_rng(1)
    y = rng.integers(0, 4, 400)
    probas = [_noisy(rng, y, 4, 1.5), _noisy(rng, y, 4, 1.0)]
    oof = cross_val_fused(StackedFusion(), probability_blocks(probas), y)
    assert oof.shape == (400, 4)
    np.testing.assert_allclose(oof.sum(axis=1), 1.0)
    assert (oof.argmax(axis=1) == y).mean() > (probas[0].argmax(axis=1) == y).mean()


def _fusion_problem(seed=2, n=300, n_classes=3):
    """Labels (strings), the two modalities' probabilities side by side, and early-fusion-like
    sparse features."""
    import scipy.sparse as sp

    rng = np.random.default_rng(seed)
    y_idx = rng.integers(0, n_classes, n)
    labels = np.array([f"c{i}" for i in range(n_classes)])
    X_blocks = probability_blocks([_noisy(rng, y_idx, n_classes, 1.5), _noisy(rng, y_idx, n_classes, 1.0)])
    features = rng.normal(0, 1, (n, 20))
    features[np.arange(n), y_idx] += 2.0
    return labels[y_idx], X_blocks, sp.csr_matrix(features.astype(np.float32))


@pytest.mark.parametrize("fuser", [LateFusion(), StackedFusion(), EarlyFusion(random_state=0)],
                         ids=["late", "stack", "early"])
def test_every_fuser_clones_and_cross_validates_on_one_X(fuser):
    from sklearn.base import clone
    from sklearn.model_selection import cross_val_predict

    y, X_blocks, features = _fusion_problem()
    X = features if isinstance(fuser, EarlyFusion) else X_blocks
    copy = clone(fuser)
    assert copy.get_params() == fuser.get_params() and not hasattr(copy, "classes_")
    assert copy.fit(X, y) is copy  # fit returns self
    np.testing.assert_array_equal(copy.classes_, ["c0", "c1", "c2"])
    assert copy.n_features_in_ == X.shape[1]
    assert set(copy.predict(X[:5])) <= set(y)
    oof = cross_val_predict(fuser, X, y, cv=3, method="predict_proba")
    assert oof.shape == (len(y), 3)
    np.testing.assert_allclose(oof.sum(axis=1), 1.0, atol=1e-6)
    assert (copy.classes_[oof.argmax(axis=1)] == y).mean() > 0.6
    assert not hasattr(fuser, "classes_")  # cross-validation fitted clones, not the fuser


def test_fusers_keep_every_class_column_given_and_refuse_mismatched_labels():
    y, X, _ = _fusion_problem()
    few = y != "c1"  # the fusion rows lack a class the base models know
    with pytest.raises(DataError, match="pass classes="):
        LateFusion().fit(X[few], y[few])
    for fuser in (LateFusion(classes=["c0", "c1", "c2"]), StackedFusion(classes=["c0", "c1", "c2"])):
        p = fuser.fit(X[few], y[few]).predict_proba(X)
        assert p.shape == (len(y), 3) and list(fuser.classes_) == ["c0", "c1", "c2"]
        np.testing.assert_allclose(p.sum(axis=1), 1.0)
        oof = cross_val_fused(fuser, X[few], y[few])
        assert oof.shape == (int(few.sum()), 3)
    with pytest.raises(DataError, match="not in classes"):
        LateFusion(classes=["c0", "c2", "c3"]).fit(X, y)
    with pytest.raises(DataError, match="blocks"):
        LateFusion(n_modalities=4).fit(X, y)
    with pytest.raises(DataError, match="fitted on 6"):
        LateFusion().fit(X, y).predict_proba(X[:, :3])
    with pytest.raises(ValueError, match="inconsistent numbers of samples"):
        StackedFusion().fit(X, y[:-1])


@pytest.mark.parametrize("fuser", [
    LateFusion(n_modalities=0), LateFusion(grid="wide"), LateFusion(classes=3),
    StackedFusion(C=0), StackedFusion(C="strong"), StackedFusion(n_modalities=1.5),
    EarlyFusion(head=3), EarlyFusion(random_state="seed"),
], ids=lambda f: repr(f))
def test_fuser_parameters_are_checked_first_thing_in_fit(fuser):
    y, X, features = _fusion_problem(n=30)
    with pytest.raises(ConfigError, match="parameter of"):
        fuser.fit(features if isinstance(fuser, EarlyFusion) else X, y)


def test_late_fusion_refuses_a_grid_without_weights():
    y, X, _ = _fusion_problem(n=30)
    with pytest.raises(DataError, match="grid"):
        LateFusion(grid=[-1.0, 1.0]).fit(X, y)


def test_a_state_saved_before_fusers_took_one_X_is_upgraded():
    """Bundles of the former format held ``early_`` (with the text and image models) beside
    ``fuser_`` (without classes): they load into one ``fuser_`` that reads one X."""
    from prodcat.model import Classifier

    y, X, features = _fusion_problem()
    classes = np.array(["c0", "c1", "c2"], dtype=object)
    late = LateFusion(classes=classes).fit(X, y)
    old_late = LateFusion.__new__(LateFusion)
    old_late.__dict__.update(grid=late.grid, weights_=late.weights_, oof_log_loss_=late.oof_log_loss_)
    model = Classifier.__new__(Classifier)
    model.__setstate__({"classes_": classes, "fuser_": old_late, "early_": None})
    assert not hasattr(model, "early_") and model.fuser_ is old_late
    np.testing.assert_array_equal(model.fuser_.predict_proba(X), late.predict_proba(X))
    assert model.fuser_.get_params()["n_modalities"] == 2

    early = EarlyFusion().fit(features, y)
    old_early = EarlyFusion.__new__(EarlyFusion)
    old_early.__dict__.update(early.__dict__, image_weight=1.0, text_model_=object(), image_model_=None)
    model = Classifier.__new__(Classifier)
    model.__setstate__({"classes_": classes, "fuser_": None, "early_": old_early})
    assert model.fuser_ is old_early and not hasattr(old_early, "text_model_")
    assert old_early.get_params() == early.get_params()
    np.testing.assert_array_equal(model.fuser_.predict_proba(features), early.predict_proba(features))


# --- the multimodal Classifier, on the demo catalogue's drawn photos ---------------------------


@pytest.fixture(scope="session")
def demo_catalog(tmp_path_factory):
    from prodcat.data import read_catalog
    from prodcat.demo import write_demo_catalog

    path = write_demo_catalog(tmp_path_factory.mktemp("demo") / "cat", n_listings=240, seed=3)
    return read_catalog(path)


@pytest.fixture(scope="session")
def fused_bundle(demo_catalog, tmp_path_factory):
    pytest.importorskip("onnxruntime")
    from prodcat.image import ImageClassifier, ImageError, create_encoder
    from prodcat.model import Classifier

    try:
        create_encoder("efficientnet-lite0").ensure_export()
    except ImageError as exc:
        pytest.skip(f"image encoder unavailable: {exc}")
    model = Classifier(image=ImageClassifier(), fusion="auto").fit(demo_catalog.X, demo_catalog.y,
                                                                    taxonomy=demo_catalog.taxonomy)
    path = model.save(tmp_path_factory.mktemp("bundle") / "model")
    return model, path


@pytest.mark.slow
def test_classifier_learns_a_fusion_and_records_it(fused_bundle, demo_catalog):
    model, path = fused_bundle
    info = model.fusion_
    assert info["method"] in ("late", "stack", "early") and info["requested"] == "auto"
    assert info["n_fused"] == int(demo_catalog.frame["image"].notna().sum())
    assert set(info["oof_log_loss"]) >= {"late", "stack", "early", "text", "image"}
    manifest = json.loads((path / "manifest.json").read_text())
    assert manifest["modalities"] == ["text", "image"] and manifest["fusion"]["method"] == info["method"]
    assert manifest["parts"]["image_encoder"]["file"].endswith(".onnx")


@pytest.mark.slow
def test_listings_without_photo_keep_the_text_answer(fused_bundle, demo_catalog):
    model, _ = fused_bundle
    X = demo_catalog.X.iloc[:40].reset_index(drop=True)
    parts = model.predict_modalities(X)
    no_photo = ~parts["has_image"]
    assert no_photo.any() and parts["has_image"].any()
    np.testing.assert_allclose(parts["fused"][no_photo], parts["text"][no_photo])
    np.testing.assert_allclose(parts["fused"].sum(axis=1), 1.0, atol=1e-6)
    # A photo without any text still gets an answer, from the photo.
    only_photo = X[parts["has_image"]].iloc[:3].assign(title="", description="")
    p = model.predict_modalities(only_photo)
    np.testing.assert_allclose(p["fused"], p["image"])


@pytest.mark.slow
def test_bundle_round_trip_ships_the_encoder(fused_bundle, demo_catalog, monkeypatch, tmp_path):
    from prodcat.errors import BundleError
    from prodcat.model import load_bundle

    model, path = fused_bundle
    # An empty encoder cache: the bundle's own ONNX export must be used.
    monkeypatch.setenv("PRODCAT_CACHE_DIR", str(tmp_path / "empty-cache"))
    loaded, _ = load_bundle(path)
    X = demo_catalog.X.iloc[:30]
    np.testing.assert_allclose(loaded.predict_proba(X), model.predict_proba(X), atol=1e-6)
    onnx = next((path / "encoders").glob("*.onnx"))
    original = onnx.read_bytes()
    try:
        onnx.write_bytes(original[:-1] + bytes([original[-1] ^ 1]))
        with pytest.raises(BundleError, match="sha256"):
            load_bundle(path)
    finally:
        onnx.write_bytes(original)


@pytest.mark.slow
def test_cli_cross_validation_reports_each_modality(demo_catalog, tmp_path):
    pytest.importorskip("onnxruntime")
    from prodcat.cli import main

    out = tmp_path / "report"
    assert main(["evaluate", "--data", demo_catalog.source, "--cv", "3", "--out", str(out)]) == 0
    metrics = json.loads((out / "metrics.json").read_text())
    mods = metrics["modalities"]
    assert set(mods) >= {"text", "image", "fused", "groups"}
    n_photos = int(demo_catalog.frame["image"].notna().sum())
    assert mods["image"]["n"] == n_photos and mods["text"]["n"] == metrics["n"] == len(demo_catalog)
    for key in ("weighted_f1", "macro_f1", "accuracy", "top3_accuracy", "per_class"):
        assert key in mods["image"] and key in mods["fused"]
    assert mods["fused"]["weighted_f1"] == pytest.approx(metrics["weighted_f1"])
    report = (out / "report.md").read_text()
    assert "Text, image and fused" in report and "where the photo helps" in report
