"""Robustness: a fitted multimodal model re-scored with perturbed photos and no descriptions."""

from __future__ import annotations

import json

import numpy as np
import pytest

from prodcat.evaluation.robustness import (
    CLEAN,
    KEYS,
    NO_DESCRIPTION,
    PERTURBATIONS,
    robustness_metrics,
    robustness_section,
)

CONDITIONS = [CLEAN, *PERTURBATIONS, NO_DESCRIPTION]


@pytest.fixture(scope="session")
def robust_catalog(tmp_path_factory):
    from prodcat.data import read_catalog
    from prodcat.demo import write_demo_catalog

    return read_catalog(write_demo_catalog(tmp_path_factory.mktemp("robust") / "cat", n_listings=200))


@pytest.fixture(scope="session")
def robust_bundle(robust_catalog, tmp_path_factory):
    """``(model, bundle path)``: text + image, late fusion on 2 folds (the fusion method is not
    what is tested here, and this keeps the fit to a few seconds)."""
    pytest.importorskip("onnxruntime")
    from prodcat.image import ImageClassifier, ImageError, create_encoder
    from prodcat.model import Classifier

    try:
        create_encoder("efficientnet-lite0").ensure_export()
    except ImageError as exc:
        pytest.skip(f"image encoder unavailable: {exc}")
    model = Classifier(image=ImageClassifier(), fusion="late", fusion_cv=2).fit(
        robust_catalog.X, robust_catalog.y, taxonomy=robust_catalog.taxonomy)
    return model, model.save(tmp_path_factory.mktemp("robust-bundle") / "model")


@pytest.fixture(scope="session")
def robust_result(robust_bundle, robust_catalog):
    model, _ = robust_bundle
    return robustness_metrics(model, robust_catalog.X, robust_catalog.y, seed=0, progress=False)


@pytest.mark.slow
def test_every_condition_is_scored_on_the_same_listings(robust_result, robust_catalog):
    r = robust_result
    n_photos = int(robust_catalog.frame["image"].notna().sum())
    assert r["n"] == n_photos and r["n_listings"] == len(robust_catalog) and not r["sampled"]
    assert list(r["conditions"]) == CONDITIONS
    for name, entry in r["conditions"].items():
        for modality in ("fused", "text", "image"):
            assert set(entry[modality]) == set(KEYS), (name, modality)
            assert entry[modality]["n"] == n_photos
        assert entry["n_failed"] == 0 and entry["n_without_photo"] == 0
    json.dumps(r)  # plain Python types only: it goes into metrics.json


@pytest.mark.slow
def test_photo_perturbations_move_only_the_image_side(robust_result):
    conditions = robust_result["conditions"]
    # A sideways photo is another picture to the encoder: some image answers change.
    assert conditions["rotate90"]["changed"]["image"] > 0
    assert conditions["noise"]["image"]["accuracy"] < conditions[CLEAN]["image"]["accuracy"]
    for name in PERTURBATIONS:
        assert conditions[name]["text"] == conditions[CLEAN]["text"]
        assert conditions[name]["changed"]["text"] == 0


@pytest.mark.slow
def test_dropping_descriptions_leaves_image_scores_unchanged(robust_bundle, robust_catalog, robust_result):
    entry = robust_result["conditions"][NO_DESCRIPTION]
    assert entry["image"] == robust_result["conditions"][CLEAN]["image"]
    assert entry["changed"]["image"] == 0
    # The probabilities themselves, not just the scores.
    model, _ = robust_bundle
    X = robust_catalog.X.iloc[:40]
    clean = model.predict_modalities(X)
    bare = model.predict_modalities(X.assign(description=""))
    np.testing.assert_array_equal(bare["image"], clean["image"])
    assert robust_catalog.frame["description"].iloc[:40].str.strip().ne("").any()


@pytest.mark.slow
def test_sample_is_bounded_and_deterministic(robust_bundle, robust_catalog):
    model, _ = robust_bundle
    kwargs = {"perturbations": ("noise",), "drop_descriptions": False, "max_listings": 25,
              "progress": False}
    a = robustness_metrics(model, robust_catalog.X, robust_catalog.y, seed=1, **kwargs)
    b = robustness_metrics(model, robust_catalog.X, robust_catalog.y, seed=1, **kwargs)
    assert a["sampled"] and a["n"] == 25 and list(a["conditions"]) == [CLEAN, "noise"]
    assert a["conditions"] == b["conditions"]
    from prodcat.errors import ConfigError

    with pytest.raises(ConfigError, match="unknown perturbation"):
        robustness_metrics(model, robust_catalog.X, robust_catalog.y, perturbations=("sepia",))


def test_text_only_model_is_refused(trained):
    from prodcat.errors import ConfigError

    model, catalog = trained
    with pytest.raises(ConfigError, match="image modality"):
        robustness_metrics(model, catalog.X, catalog.y)


def test_section_table_has_a_row_per_condition():
    entry = {m: {k: 0.5 for k in KEYS} for m in ("fused", "text", "image")}
    entry["changed"] = {"fused": 0.1, "text": 0.0, "image": 0.2}
    entry["n_failed"] = 0
    result = {"n": 10, "sampled": False, "conditions": {c: entry for c in CONDITIONS}}
    heading, md = robustness_section(result)
    assert heading == "Robustness"
    rows = [line for line in md.splitlines() if line.startswith("| ") and "---" not in line]
    assert len(rows) == 1 + len(CONDITIONS)  # header + one per condition
    assert "Fused F1" in rows[0] and "Image acc." in rows[0]
    assert robustness_section({"skipped": "no listing has a photo"})[1].startswith("Not measured")


@pytest.mark.slow
def test_cli_evaluate_bundle_writes_robustness(robust_bundle, robust_catalog, tmp_path):
    from prodcat.cli import main

    _, path = robust_bundle
    out = tmp_path / "report"
    assert main(["evaluate", "--model", str(path), "--data", robust_catalog.source, "--out", str(out)]) == 0
    metrics = json.loads((out / "metrics.json").read_text())
    assert list(metrics["robustness"]["conditions"]) == CONDITIONS
    assert metrics["robustness"]["n"] == int(robust_catalog.frame["image"].notna().sum())
    report = (out / "report.md").read_text()
    assert "## Robustness" in report and "rotate90" in report
    out2 = tmp_path / "plain"
    assert main(["evaluate", "--model", str(path), "--data", robust_catalog.source, "--out", str(out2),
                 "--no-robustness"]) == 0
    assert "robustness" not in json.loads((out2 / "metrics.json").read_text())
