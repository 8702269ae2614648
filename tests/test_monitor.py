"""Monitoring: PSI, the server's /metrics series, and ``prodcat monitor`` on a SQLite review store."""

from __future__ import annotations

import json
import math
import shutil
from datetime import datetime, timedelta, timezone

import numpy as np
import pytest

from prodcat.cli import main
from prodcat.evaluation.drift import (
    CONFIDENCE_EDGES,
    category_drift,
    confidence_counts,
    psi,
    reference_distribution,
    served_from_prometheus,
)


def test_psi_formula_and_epsilon():
    assert psi([50, 50], [10, 10])[0] == 0.0
    total, terms = psi([0.5, 0.5], [0.9, 0.1])
    expected = 0.4 * math.log(0.9 / 0.5) + (-0.4) * math.log(0.1 / 0.5)
    assert total == pytest.approx(expected) and terms.sum() == pytest.approx(expected)
    assert (terms >= 0).all()  # each term (a - e) ln(a / e) is never negative
    # an empty bin stays finite thanks to the epsilon
    total, terms = psi([1, 1, 0], [0, 1, 1])
    assert np.isfinite(total) and total > 1
    assert psi([1, 1, 0], [0, 1, 1], eps=1e-2)[0] < total
    with pytest.raises(ValueError):
        psi([1, 2], [1, 2, 3])


def test_category_drift_ranks_the_classes_that_moved():
    d = category_drift({"a": 50, "b": 50}, {"a": 50, "b": 10, "c": 40})
    assert d["level"] == "significant shift"
    assert [r["category"] for r in d["per_class"]][:1] == ["c"]
    assert d["n_served"] == 100
    assert category_drift({"a": 5}, {})["psi"] is None


def test_confidence_bins_follow_prometheus_le_buckets():
    counts = confidence_counts([0.0, 0.1, 0.1000001, 0.95, 0.999, 1.0])
    assert len(counts) == len(CONFIDENCE_EDGES) - 1 and sum(counts) == 6
    assert counts[0] == 2 and counts[1] == 1  # (0, 0.1] holds 0 and 0.1
    assert counts[-3] == 1 and counts[-1] == 2  # 0.95 in (0.9, 0.95]; 0.999 and 1.0 in (0.99, 1]


def test_reference_distribution_splits_at_the_threshold():
    proba = np.array([[0.9, 0.1], [0.6, 0.4], [0.2, 0.8], [0.45, 0.55]])
    ref = reference_distribution(proba, ["x", "y"], 0.7, source="test")
    assert ref["n"] == 4 and ref["predicted"] == {"x": 2, "y": 2}
    assert ref["below_threshold"]["predicted"] == {"x": 1, "y": 1}
    assert ref["needs_review_share"] == 0.5
    assert sum(ref["confidence_counts"]) == 4


# --- the server ----------------------------------------------------------------------------

pytest.importorskip("fastapi")
pytest.importorskip("prometheus_client")


@pytest.fixture(scope="module")
def served_metrics(trained_bundle):
    from fastapi.testclient import TestClient

    from prodcat.serving import ModelService, ServingSettings, create_app

    service = ModelService.load(trained_bundle)
    with TestClient(create_app(ServingSettings(model_dir=str(trained_bundle)), service=service)) as c:
        items = [{"title": t} for t in ("carte pokémon holo rare", "drone hélice brushless",
                                       "cahier stylo agenda", "pompe piscine filtre", "truc bidule")]
        assert c.post("/v1/predict/batch", json={"items": items}).status_code == 200
        assert c.post("/v1/predict", json={"title": "carte magic deck"}).status_code == 200
        text = c.get("/metrics").text
    return text, service


def test_metrics_expose_categories_confidence_and_review_share(served_metrics):
    text, service = served_metrics
    assert "prodcat_predicted_category_total{category=" in text
    assert "prodcat_prediction_confidence_bucket{le=\"0.95\"}" in text
    assert "prodcat_needs_review_ratio" in text
    served = served_from_prometheus(text)
    assert served["n"] == 6 and sum(served["confidence_counts"]) == 6
    assert set(served["predicted"]) <= set(service.classes)
    assert 0 <= served["needs_review_share"] <= 1
    with pytest.raises(ValueError):
        served_from_prometheus("# nothing here\n")


# --- prodcat monitor -------------------------------------------------------------------------


def bundle_with_reference(trained, trained_bundle, folder):
    """A copy of ``trained_bundle`` whose manifest has an out-of-fold reference, as train --cv writes."""
    model, catalog = trained
    shutil.copytree(trained_bundle, folder)
    manifest = json.loads((folder / "manifest.json").read_text())
    proba = model.predict_proba(catalog.X)  # (in-sample here: a test stand-in)
    manifest["metrics"]["monitoring"] = reference_distribution(proba, model.classes_, float(np.median(proba.max(axis=1))),
                                                               source="test")
    (folder / "manifest.json").write_text(json.dumps(manifest))
    return folder


def test_monitor_on_a_sqlite_review_store(capsys, monkeypatch, tmp_path, trained, trained_bundle, served_metrics):
    from prodcat.review import NewItem, open_store
    from prodcat.review import store as S

    url = f"sqlite:///{tmp_path / 'reviews.db'}"
    store = open_store(url)
    top = [[{"code": "1160", "probability": 0.4}, {"code": "1300", "probability": 0.3}],
           [{"code": "2522", "probability": 0.55}, {"code": "2583", "probability": 0.2}],
           [{"code": "1160", "probability": 0.35}, {"code": "2522", "probability": 0.3}]]
    ids = store.add([NewItem("low_confidence", title=f"t{i}", top_k=t, model_id="m") for i, t in enumerate(top)]
                    + [NewItem("feedback", title="f", given_label="1300")])
    day1 = datetime(2026, 3, 1, 10, tzinfo=timezone.utc)
    for item, label, when in ((ids[0], "1160", day1), (ids[1], "2583", day1),
                              (ids[2], "1160", day1 + timedelta(days=1)), (ids[3], "1300", day1)):
        monkeypatch.setattr(S, "utcnow", lambda when=when: when)
        store.decide(item, label, "ana")
    store.close()
    monkeypatch.undo()
    bundle = bundle_with_reference(trained, trained_bundle, tmp_path / "model")
    (tmp_path / "metrics.txt").write_text(served_metrics[0])
    code = main(["monitor", "--db", url, "--model", str(bundle), "--metrics", str(tmp_path / "metrics.txt"),
                 "--out", str(tmp_path / "report")])
    out, err = capsys.readouterr()
    assert code == 0, err
    summary = json.loads(out)
    assert summary["agreement"] == {"decided": 4, "judged": 3, "agreed": 2, "agreement": pytest.approx(2 / 3)}
    assert summary["store_drift"]["n"] == 3 and summary["store_drift"]["category_psi"] is not None
    assert summary["metrics_drift"]["n"] == 6 and summary["metrics_drift"]["confidence_psi"] is not None
    assert "queued for review" in err  # says the store does not hold every prediction
    report = json.loads((tmp_path / "report" / "monitor.json").read_text())
    days = report["agreement"]["per_day"]
    assert [(d["day"], d["decided"], d["judged"], d["agreed"]) for d in days] == [
        ("2026-03-01", 3, 2, 1), ("2026-03-02", 1, 1, 1)]
    assert report["store_drift"]["reasons"] == {"low_confidence": 3, "feedback": 1}
    md = (tmp_path / "report" / "monitor.md").read_text()
    assert "PSI of predicted categories" in md and "| 2026-03-02 | 1 | 1 | 1 | 100.0% |" in md


def test_monitor_without_a_reference_falls_back_to_training_labels(capsys, tmp_path, trained_bundle):
    from prodcat.review import NewItem, open_store

    url = f"sqlite:///{tmp_path / 'r.db'}"
    store = open_store(url)
    store.add([NewItem("low_confidence", title="x", top_k=[{"code": "1160", "probability": 0.3}])])
    store.close()
    bundle = tmp_path / "model"
    shutil.copytree(trained_bundle, bundle)
    manifest = json.loads((bundle / "manifest.json").read_text())
    manifest["training"]["class_counts"] = {"1160": 15, "1300": 15, "2522": 16, "2583": 15}
    (bundle / "manifest.json").write_text(json.dumps(manifest))
    code = main(["monitor", "--db", url, "--model", str(bundle)])
    out, err = capsys.readouterr()
    assert code == 0, err
    assert json.loads(out)["store_drift"]["category_psi"] is not None
    assert json.loads(out)["store_drift"]["confidence_psi"] is None
    assert "reference: training labels" in err
    assert main(["monitor"]) == 2


def test_train_with_cv_writes_the_reference_monitor_reads(capsys, tmp_path, rakuten_session_dir, served_metrics):
    out = tmp_path / "model"
    code = main(["train", "--data", str(rakuten_session_dir), "--out", str(out), "--cv", "2", "--text-model",
                 "single", "--image-encoder", "none", "--no-track"])
    assert code == 0, capsys.readouterr().err
    from prodcat.model import read_manifest

    ref = read_manifest(out)["metrics"]["monitoring"]
    assert ref["source"] == "out-of-fold answers (2-fold CV)"
    n = ref["n"]
    assert n == sum(ref["predicted"].values()) == sum(ref["confidence_counts"]) > 50
    assert ref["below_threshold"]["n"] == round(ref["needs_review_share"] * n)
    (tmp_path / "metrics.txt").write_text(served_metrics[0])
    capsys.readouterr()
    assert main(["monitor", "--model", str(out), "--metrics", str(tmp_path / "metrics.txt")]) == 0
    out_text, err = capsys.readouterr()
    assert json.loads(out_text)["metrics_drift"]["category_psi"] is not None
    assert "reference: out-of-fold answers" in err
