"""Fusion: learnt on out-of-fold probabilities, fused answers for listings with a photo only."""

from __future__ import annotations

import json

import numpy as np
import pytest

from prodcat.fusion import LateFusion, StackedFusion
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
    useful = LateFusion().fit([text, image], y)
    assert useful.weights_[1] > 0 and useful.oof_log_loss_ < log_loss_of(text, y)
    useless = LateFusion().fit([text, noise], y)
    assert useless.weights_[1] <= 0.2  # a photo that says nothing gets (almost) no say
    fused = useful.predict_proba([text, image])
    np.testing.assert_allclose(fused.sum(axis=1), 1.0)


def test_stacked_fusion_and_out_of_fold_fused_probabilities():
    rng = np.random.default_rng(1)
    y = rng.integers(0, 4, 400)
    probas = [_noisy(rng, y, 4, 1.5), _noisy(rng, y, 4, 1.0)]
    oof = cross_val_fused(StackedFusion(), probas, y)
    assert oof.shape == (400, 4)
    np.testing.assert_allclose(oof.sum(axis=1), 1.0)
    assert (oof.argmax(axis=1) == y).mean() > (probas[0].argmax(axis=1) == y).mean()


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
