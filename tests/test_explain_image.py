"""Image explanations (prodcat.explain.image): Grad-CAM and occlusion heat maps, their geometry,
the overlay, bad inputs, and faithfulness on real photos.

The occlusion machinery is tested with a stand-in encoder (no onnxruntime needed) whose
embedding reads only the top-left quarter of the input, so the right answer is known exactly.
Tests on the real EfficientNet-Lite0 need onnxruntime (and PyTorch for Grad-CAM) and reuse the
export in the prodcat cache when there is one; the real-data test reads ../shared/data/flipkart.
"""

from __future__ import annotations

import json
import random
import shutil
import warnings
from pathlib import Path
from types import SimpleNamespace

import numpy as np
import pytest
from PIL import Image, ImageDraw

from conftest import real_catalog
from prodcat.errors import ConfigError, ProdcatError
from prodcat.explain.image import (
    ImageExplanation,
    class_gradients,
    deletion_check,
    explain_image,
    explain_image_targets,
    gradcam_available,
    input_placement,
    prepare_image_explainer,
)
from prodcat.image import (
    EncoderSpec,
    ImageClassifier,
    ImageEncoder,
    ImageError,
    PreprocessConfig,
    create_encoder,
    preprocess_image,
)

# --- a stand-in encoder: the class is in the top-left quarter only ------------------------------


class QuarterEncoder(ImageEncoder):
    """Embedding: mean and spread of each channel over the input's top-left quarter, nothing else."""

    def run(self, pixels):
        batch = np.asarray(pixels, np.float32) / 255.0
        half = batch.shape[1] // 2
        quarter = batch[:, :half, :half]
        self.images_encoded += len(batch)
        return (np.concatenate([quarter.mean(axis=(1, 2)), quarter.std(axis=(1, 2))], axis=1).astype(np.float32),
                np.zeros((len(batch), 1000), np.float32))


QUARTER_SPEC = EncoderSpec(name="quarter-test", arch="none", weights_module="none",
                           weights_class="none", weights_file="none", dim=6,
                           preprocess=PreprocessConfig(size=32, crop_borders=False))


def quarter_photo(path: Path, colour, rng: random.Random) -> str:
    """A 64 px photo: the class colour in the top-left quarter, the same grey everywhere else."""
    image = Image.new("RGB", (64, 64), (128, 128, 128))
    jitter = tuple(min(255, max(0, c + rng.randint(-20, 20))) for c in colour)
    ImageDraw.Draw(image).rectangle([0, 0, 31, 31], fill=jitter)
    image.save(path, format="PNG")
    return str(path)


@pytest.fixture
def quarter_model(tmp_path):
    rng = random.Random(0)
    paths, labels = [], []
    for i in range(24):
        label = ("red", "blue")[i % 2]
        colour = (200, 40, 40) if label == "red" else (40, 40, 200)
        paths.append(quarter_photo(tmp_path / f"q{i}.png", colour, rng))
        labels.append(label)
    model = ImageClassifier(encoder=QuarterEncoder(QUARTER_SPEC), cache=False).fit(paths, labels)
    return model, paths, labels


def test_occlusion_heat_lies_where_the_encoder_looks(quarter_model):
    model, paths, labels = quarter_model
    e = explain_image(model, paths[0], method="occlusion")
    assert e.method == "occlusion" and e.target == labels[0] and e.predicted == labels[0]
    assert e.grid.shape == (8, 8) and e.heatmap.shape == (32, 32)
    assert e.heatmap.dtype == np.float32 and e.heatmap.min() >= 0 and e.heatmap.max() == 1
    # 2x2-cell windows starting at cell 3 still cover the quarter (cells 0-3): heat reaches cell 4
    # at most; nothing beyond it can change the embedding's quarter part.
    assert e.grid[5:, :].max() == 0 and e.grid[:, 5:].max() == 0
    assert e.grid[:4, :4].min() > 0
    assert e.details["occluded_copies"] == 49 and e.details["fill"] == "grey"
    check = deletion_check(model, e, fraction=0.2, n_random=6)
    assert check["top_drop"] > check["random_drop"]


def test_auto_uses_occlusion_when_grad_cam_cannot_run(quarter_model):
    model, paths, _ = quarter_model
    assert not gradcam_available(model.encoder_)  # no PyTorch model behind this encoder
    assert explain_image(model, paths[1]).method == "occlusion"
    assert prepare_image_explainer(model) == "occlusion"
    with pytest.raises(ImageError, match="Grad-CAM .*needs PyTorch"):
        explain_image(model, paths[1], method="gradcam")
    with pytest.raises(ImageError, match="Grad-CAM .*needs PyTorch"):
        prepare_image_explainer(model, "gradcam")


def test_grad_cam_refuses_a_torch_model_that_is_not_the_deployed_one(quarter_model, monkeypatch):
    import prodcat.explain.gradcam as gradcam_module
    import prodcat.explain.image as module

    model, paths, _ = quarter_model
    monkeypatch.setattr(module, "gradcam_available", lambda encoder=None: True)
    # A feature map whose pooled mean is not the (ONNX) embedding: other weights.
    monkeypatch.setattr(gradcam_module, "feature_map", lambda encoder, pixels: np.ones((6, 2, 2)) * 9.0)
    with pytest.raises(ImageError, match="differs from the deployed ONNX encoder"):
        explain_image(model, paths[0], method="gradcam")
    with pytest.warns(UserWarning, match="using occlusion"):
        assert explain_image(model, paths[0]).method == "occlusion"


def test_importing_the_module_loads_neither_torch_nor_onnxruntime():
    import subprocess
    import sys

    code = ("import sys, prodcat.explain.image; "
            "print([m for m in ('torch', 'onnxruntime', 'matplotlib') if m in sys.modules])")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert out.stdout.strip() == "[]"


def test_targets_by_code_index_and_several_at_once(quarter_model):
    model, paths, _ = quarter_model
    by_code = explain_image(model, paths[0], "blue", method="occlusion")
    by_index = explain_image(model, paths[0], list(model.classes_).index("blue"), method="occlusion")
    assert by_code.target == by_index.target == "blue"
    np.testing.assert_allclose(by_code.grid, by_index.grid)
    both = explain_image_targets(model, paths[0], ["red", "blue"], method="occlusion")
    assert [e.target for e in both] == ["red", "blue"]
    assert both[0].probability + both[1].probability == pytest.approx(1.0)
    np.testing.assert_allclose(both[1].grid, by_code.grid)


def test_inputs_other_than_paths(quarter_model, tmp_path):
    model, paths, _ = quarter_model
    from_path = explain_image(model, paths[0], method="occlusion")
    data = Path(paths[0]).read_bytes()
    with Image.open(paths[0]) as im:
        im.load()
        rgba = im.convert("RGBA")
        array = np.asarray(im.convert("RGB"))
    for source in (data, rgba, array):
        other = explain_image(model, source, method="occlusion")
        np.testing.assert_allclose(other.grid, from_path.grid, atol=1e-6)


def test_bad_inputs_give_clear_prodcat_errors(quarter_model, tmp_path):
    model, paths, _ = quarter_model
    with pytest.raises(ImageError, match="not found") as missing:
        explain_image(model, tmp_path / "nope.jpg")
    assert missing.value.kind == "not found"
    corrupt = tmp_path / "corrupt.jpg"
    corrupt.write_bytes(Path(paths[0]).read_bytes()[:60])
    with pytest.raises(ImageError) as bad:
        explain_image(model, corrupt)
    assert bad.value.kind in {"corrupt", "not an image"}
    html = tmp_path / "page.jpg"
    html.write_text("<html>404</html>")
    with pytest.raises(ImageError, match="not an image"):
        explain_image(model, html)
    with pytest.raises(ImageError, match="no image"):
        explain_image(model, None)
    with pytest.raises(ConfigError, match="unknown explanation method"):
        explain_image(model, paths[0], method="lime")
    with pytest.raises(ConfigError, match="unknown class 'green'"):
        explain_image(model, paths[0], "green")
    with pytest.raises(ConfigError, match="out of range"):
        explain_image(model, paths[0], 7)
    with pytest.raises(ConfigError, match="occlusion fill"):
        explain_image(model, paths[0], occlusion_fill="pink")
    with pytest.raises(ConfigError, match="not fitted"):
        explain_image(ImageClassifier(), paths[0])
    with pytest.raises(ConfigError, match="no image side"):
        explain_image(SimpleNamespace(image_=None), paths[0])
    # Every one of them is a ProdcatError: the CLI prints it as one line, exit code 2.
    assert issubclass(ImageError, ProdcatError) and issubclass(ConfigError, ProdcatError)


def test_a_fused_classifier_explains_through_its_image_side(quarter_model):
    model, paths, _ = quarter_model
    fused = SimpleNamespace(image_=model, classes_=model.classes_)
    np.testing.assert_allclose(explain_image(fused, paths[0], method="occlusion").grid,
                               explain_image(model, paths[0], method="occlusion").grid)


def test_a_class_without_training_photos_is_refused(tmp_path):
    rng = random.Random(1)
    paths = [quarter_photo(tmp_path / f"r{i}.png", c, rng)
             for i, c in enumerate([(200, 40, 40), (40, 40, 200)] * 4)]
    sources = paths + [None, None]  # a third class only on listings without a photo
    labels = ["red", "blue"] * 4 + ["grey", "grey"]
    model = ImageClassifier(encoder=QuarterEncoder(QUARTER_SPEC), cache=False).fit(sources, labels)
    with pytest.raises(ConfigError, match="saw no photo of class 'grey'"):
        explain_image(model, paths[0], "grey")


# --- geometry, overlay, JSON --------------------------------------------------------------------


def test_placement_matches_the_preprocessing(tmp_path):
    config = PreprocessConfig(size=64)
    photo = Image.new("RGB", (200, 120), (255, 255, 255))
    ImageDraw.Draw(photo).rectangle([50, 30, 149, 79], fill=(0, 0, 0))  # 100 x 50 content
    placement = input_placement(photo, config)
    assert placement.box == (50, 30, 150, 80)
    assert placement.region == (0, 16, 64, 48)
    square = preprocess_image(photo, config)
    dark = np.argwhere(square.min(axis=2) < 128)
    (y0, x0), (y1, x1) = dark.min(axis=0), dark.max(axis=0) + 1
    assert (x0, y0, x1, y1) == placement.region


def test_photo_heatmap_overlay_png_and_json(quarter_model, tmp_path):
    model, paths, _ = quarter_model
    e = explain_image(model, paths[0], method="occlusion")
    on_photo = e.photo_heatmap()
    assert on_photo.shape == (64, 64) and on_photo.min() >= 0 and on_photo.max() <= 1
    # The photo's top-left quarter is the input's: the heat is there, not bottom-right.
    # (Input cells are 4 px, photo cells 8 px: the heat stops within cells 0-4, plus the
    # bilinear interpolation's half cell.)
    assert on_photo[:32, :32].mean() > 0.3 and on_photo[48:, 48:].max() == 0
    path = e.save_overlay(tmp_path / "out" / "overlay.png")
    with Image.open(path) as im:
        assert im.format == "PNG" and im.mode == "RGB" and im.size == (64, 64)
        pixels = np.asarray(im)
    original = np.asarray(e.photo)
    assert not np.array_equal(pixels[:32, :32], original[:32, :32])  # coloured where hot
    np.testing.assert_array_equal(pixels[48:, 48:], original[48:, 48:])  # untouched where cold
    with Image.open(e.save_overlay(tmp_path / "input.png", on="input", cmap="inferno")) as im:
        assert im.size == (32, 32)
    with pytest.raises(ConfigError, match="colormap"):
        e.overlay(cmap="no-such-map")
    with pytest.raises(ConfigError, match="cannot write"):
        e.save_overlay(Path(paths[0]) / "inside-a-file.png")
    payload = json.loads(json.dumps(e.to_dict()))
    assert payload["method"] == "occlusion" and payload["target"] == e.target
    assert payload["heatmap"]["geometry"] == "input square"
    assert np.array(payload["heatmap"]["grid"]).shape == (8, 8)
    assert payload["heatmap"]["crop_box"] == [0, 0, 64, 64]
    assert 0 < payload["probability"] <= 1 and payload["seconds"] > 0


def test_empty_map_is_reported_not_divided_by_zero():
    e = ImageExplanation(heatmap=np.zeros((4, 4), np.float32), grid=np.zeros((2, 2), np.float32),
                         method="occlusion", target="a", target_index=0, probability=0.5,
                         predicted="a", predicted_probability=0.5, encoder="x", seconds=0.1)
    assert e.empty and e.to_dict()["heatmap"]["empty"] is True


# --- gradients of the head ----------------------------------------------------------------------


class _Opaque:
    """Hides a head's type, so class_gradients must use finite differences on it."""

    def __init__(self, head):
        self.head = head
        self.classes_ = head.classes_

    def predict_proba(self, X):
        return self.head.predict_proba(X)


@pytest.mark.parametrize("n_classes", [2, 4])
def test_analytic_gradient_of_logistic_head_matches_finite_differences(n_classes):
    rng = np.random.default_rng(0)
    y = np.repeat([f"c{i}" for i in range(n_classes)], 30)
    Z = rng.normal(size=(len(y), 16)) * 3 + 1 + np.repeat(rng.normal(size=(n_classes, 16)), 30, axis=0)
    model = ImageClassifier(calibration="none").fit_embeddings(Z.astype(np.float32), np.ones(len(y), bool), y)
    z = Z[0] + 0.5
    columns = list(range(n_classes))
    analytic, how = class_gradients(model, z, columns)
    assert how == "analytic" and analytic.shape == (n_classes, 16)
    model.head_ = _Opaque(model.head_)
    numeric, how = class_gradients(model, z, columns)
    assert how.startswith("finite differences")
    np.testing.assert_allclose(analytic, numeric, rtol=1e-4, atol=1e-6)


def test_mlp_and_calibrated_heads_get_finite_difference_gradients():
    rng = np.random.default_rng(1)
    y = np.repeat(["a", "b", "c"], 40)
    Z = (rng.normal(size=(120, 12)) + np.repeat(np.eye(3, 12) * 4, 40, axis=0)).astype(np.float32)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        mlp = ImageClassifier(head="mlp").fit_embeddings(Z, np.ones(120, bool), y)
    z = Z[0].astype(np.float64)
    grads, how = class_gradients(mlp, z, [0])
    assert how.startswith("finite differences") and np.any(grads != 0)
    # Moving the embedding along the gradient raises log p of that class.
    base = np.log(mlp.proba_from_embeddings(z[None], np.ones(1, bool))[0, 0])
    step = z + 1e-3 * grads[0] / np.linalg.norm(grads[0])
    assert np.log(mlp.proba_from_embeddings(step[None], np.ones(1, bool))[0, 0]) > base


# --- the real encoder -----------------------------------------------------------------------------


@pytest.fixture(scope="module")
def lite0_dir(tmp_path_factory) -> Path:
    """A cache folder with a Lite0 export: copied from the user's prodcat cache when it has a
    good one (exporting takes a while), made otherwise."""
    pytest.importorskip("onnxruntime")
    root = tmp_path_factory.mktemp("explain-cache")
    mine = create_encoder("efficientnet-lite0", cache_dir=root)
    existing = create_encoder("efficientnet-lite0")
    if existing.export_status() == "ok":
        mine.export_dir.mkdir(parents=True)
        shutil.copy2(existing.onnx_path, mine.onnx_path)
        shutil.copy2(existing.hash_path, mine.hash_path)
    else:
        pytest.importorskip("torch")
        pytest.importorskip("efficientnet_lite_pytorch")
        mine.ensure_export()
    return root


COLOURS = [(210, 30, 30), (30, 60, 210), (30, 170, 50)]


def shapes_photo(path: Path, label: int, rng: random.Random):
    """The class's shape (red disc, blue square, green triangle) in one half, the same dark bar
    in the other: ``(path, shape box, bar box)``."""
    image = Image.new("RGB", (320, 240), "white")
    draw = ImageDraw.Draw(image)
    left = rng.random() < 0.5
    x0, y0, s = rng.randint(10, 60) + (0 if left else 160), rng.randint(20, 120), rng.randint(70, 90)
    box = (x0, y0, x0 + s, y0 + s)
    if label == 0:
        draw.ellipse(box, fill=COLOURS[0])
    elif label == 1:
        draw.rectangle(box, fill=COLOURS[1])
    else:
        draw.polygon([(x0, y0 + s), (x0 + s, y0 + s), (x0 + s // 2, y0)], fill=COLOURS[2])
    bx, by = (200 if left else 30), rng.randint(30, 150)
    bar = (bx, by, bx + 90, by + 40)
    draw.rectangle(bar, fill=(40, 40, 40))
    image.save(path)
    return str(path), box, bar


@pytest.fixture(scope="module")
def shapes_model(lite0_dir, tmp_path_factory):
    folder = tmp_path_factory.mktemp("shapes")
    rng = random.Random(0)
    train = [shapes_photo(folder / f"t{i}.png", i % 3, rng) for i in range(30)]
    test = [shapes_photo(folder / f"e{i}.png", i % 3, rng) for i in range(6)]
    encoder = create_encoder("efficientnet-lite0", cache_dir=lite0_dir)
    model = ImageClassifier(encoder=encoder, cache=False).fit([t[0] for t in train],
                                                              [str(i % 3) for i in range(30)])
    return model, test


@pytest.mark.parametrize("method", ["occlusion", "gradcam"])
def test_lite0_heat_is_on_the_shape_not_on_the_shared_bar(shapes_model, method):
    if method == "gradcam":
        pytest.importorskip("torch")
        pytest.importorskip("efficientnet_lite_pytorch")
    model, test = shapes_model
    on_shape, on_bar = [], []
    for i, (path, box, bar) in enumerate(test):
        e = explain_image(model, path, method=method)
        assert e.method == method and e.predicted == str(i % 3) and e.target == e.predicted
        heat = e.photo_heatmap()
        assert heat.shape == (240, 320)
        on_shape.append(heat[box[1]:box[3], box[0]:box[2]].mean())
        on_bar.append(heat[bar[1]:bar[3], bar[0]:bar[2]].mean())
    # Measured: shape 0.54 vs bar 0.16 (Grad-CAM), 0.51 vs 0.005 (occlusion).
    assert np.mean(on_shape) > 2 * np.mean(on_bar), (on_shape, on_bar)


def test_grad_cam_explains_the_deployed_onnx_encoder(shapes_model):
    pytest.importorskip("torch")
    pytest.importorskip("efficientnet_lite_pytorch")
    from prodcat.explain.image import feature_map

    model, test = shapes_model
    encoder = model.encoder_
    assert gradcam_available(encoder)
    pixels = np.stack([encoder.prepare(path) for path, _, _ in test[:2]])
    for one in pixels:
        A = feature_map(encoder, one)
        assert A.shape == (1280, 7, 7)
        np.testing.assert_allclose(A.mean(axis=(1, 2)), encoder.embed(one[None])[0], atol=1e-3)
    assert prepare_image_explainer(model) == "gradcam"
    e = explain_image(model, test[0][0])  # auto: Grad-CAM with torch installed
    assert e.method == "gradcam" and e.grid.shape == (7, 7)
    assert e.details["torch_vs_onnx_max_abs"] < 1e-3 and e.details["gradient"] == "analytic"
    emb = encoder.embed(encoder.prepare(test[0][0])[None])
    assert e.probability == pytest.approx(model.proba_from_embeddings(emb, np.ones(1, bool))[0, e.target_index])


# --- faithfulness on real photos ------------------------------------------------------------------


@pytest.mark.slow
@pytest.mark.realdata
def test_occluding_the_hottest_fifth_hurts_more_than_a_random_fifth(lite0_dir, tmp_path):
    """Train Lite0 + logistic on Flipkart photos; on 30 held-out photos, occlude the 20 % of the
    input the heat map ranks hottest and 8 random 20 % (same grey fill): the predicted class's
    image probability must drop more, on average, for the hot fifth."""
    from sklearn.model_selection import train_test_split

    catalog = real_catalog("flipkart").labelled()
    frame = catalog.frame[catalog.frame["image"].notna()].reset_index(drop=True)
    y = frame["label"].astype(str).to_numpy()
    train, held_out = train_test_split(np.arange(len(frame)), test_size=30, stratify=y, random_state=0)
    encoder = create_encoder("efficientnet-lite0", cache_dir=lite0_dir)
    model = ImageClassifier(encoder=encoder, cache=str(tmp_path / "emb.sqlite"))
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        model.fit(frame.iloc[train], y[train])
    methods = ["occlusion"] + (["gradcam"] if gradcam_available(encoder) else [])
    measured = {}
    for method in methods:
        top, rand = [], []
        for i in held_out:
            e = explain_image(model, frame["image"][i], method=method)
            check = deletion_check(model, e, fraction=0.2, n_random=8, fill="grey")
            top.append(check["top_drop"])
            rand.append(check["random_drop"])
        measured[method] = (float(np.mean(top)), float(np.mean(rand)))
        print(f"{method}: mean drop top 20 % {measured[method][0]:.3f}, random 20 % {measured[method][1]:.3f}")
    # Measured (30 photos, 8 random draws each): occlusion 0.374 vs 0.171, Grad-CAM 0.307 vs 0.171.
    for method, (top_drop, random_drop) in measured.items():
        assert top_drop > random_drop + 0.05, (method, top_drop, random_drop)
