"""``prodcat compare``: paired bootstrap intervals, the verdict, promotion, the MLflow registry."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import numpy as np
import pytest

from prodcat.cli import main
from prodcat.evaluation.automation import coverage_at_precision
from prodcat.evaluation.comparison import Answers, compare_answers, promote_bundle, verdict
from prodcat.evaluation.metrics import compute_metrics


def synthetic(n: int = 600, k: int = 6, strength: float = 0.6, seed: int = 0):
    """Labels, and probabilities that favour the true label by ``strength`` (the labels depend on
    ``n`` and ``k`` only, so two calls give two models of the same listings)."""
    y = np.random.default_rng(0).integers(0, k, n)
    rng = np.random.default_rng(seed)
    p = rng.dirichlet(np.full(k, 0.5), n)
    p[np.arange(n), y] += strength * rng.random(n)
    p /= p.sum(axis=1, keepdims=True)
    return y.astype(str), p, [str(c) for c in range(k)]


def test_point_estimates_match_the_evaluation_metrics():
    y, p, cls = synthetic()
    _, q, _ = synthetic(strength=0.9, seed=1)
    res = compare_answers(y, Answers.from_proba(p, cls), Answers.from_proba(q, cls), resamples=200)
    m = compute_metrics(y, p, cls)
    old = {k: v["old"] for k, v in res["metrics"].items()}
    assert old["weighted_f1"] == pytest.approx(m["weighted_f1"])
    assert old["macro_f1"] == pytest.approx(m["macro_f1"])
    assert old["accuracy"] == pytest.approx(m["accuracy"])
    cov = coverage_at_precision(p, y.astype(int), [0.95])[0]["coverage"]
    assert old["coverage_at_95"] == pytest.approx(cov)


def test_bootstrap_is_deterministic_with_its_seed_and_paired():
    y, p, cls = synthetic()
    _, q, _ = synthetic(strength=0.9, seed=1)
    a, b = Answers.from_proba(p, cls), Answers.from_proba(q, cls)
    first = compare_answers(y, a, b, resamples=300, seed=7)
    assert compare_answers(y, a, b, resamples=300, seed=7) == first
    assert compare_answers(y, a, b, resamples=300, seed=8)["metrics"] != first["metrics"]
    for r in first["metrics"].values():
        assert r["ci_low"] <= r["difference"] + 1e-9 and r["difference"] <= r["ci_high"] + 1e-9
    # the same model twice: every paired difference is exactly zero
    same = compare_answers(y, a, a, resamples=300)
    assert all(r["ci_low"] == r["ci_high"] == 0 for r in same["metrics"].values())
    assert same["verdict"]["not_worse"] and not same["verdict"]["better"]
    # a clearly stronger new model: better, with an interval above zero
    assert first["metrics"]["weighted_f1"]["ci_low"] > 0 and first["verdict"]["label"] == "better"
    assert compare_answers(y, b, a, resamples=300)["verdict"]["label"] == "worse"


def test_verdict_margin_is_in_points():
    m = {"weighted_f1": {"ci_low": -0.004}}
    assert verdict(m, 0.5)["not_worse"]
    assert not verdict(m, 0.3)["not_worse"]
    assert not verdict({"weighted_f1": {"ci_low": float("nan")}})["not_worse"]


@pytest.fixture(scope="module")
def worse_bundle(trained, tmp_path_factory) -> Path:
    """A bundle trained on shuffled labels: much worse than ``trained_bundle``."""
    from prodcat.model import Classifier
    from prodcat.text import TextClassifier

    _, catalog = trained
    y = catalog.y.to_numpy().copy()
    np.random.default_rng(0).shuffle(y)
    model = Classifier(text=TextClassifier(), image=None).fit(catalog.X, y, taxonomy=catalog.taxonomy)
    return model.save(tmp_path_factory.mktemp("worse") / "model")


def run(capsys, *argv):
    code = main([str(a) for a in argv])
    out, err = capsys.readouterr()
    return code, out, err


def test_compare_refuses_to_promote_a_worse_model(capsys, tmp_path, trained_bundle, worse_bundle,
                                                  rakuten_session_dir):
    dest = tmp_path / "champion"
    promote_bundle(trained_bundle, dest)
    before = (dest / "manifest.json").read_bytes()
    code, out, err = run(capsys, "compare", "--model", trained_bundle, "--model", worse_bundle,
                         "--data", rakuten_session_dir, "--promote-if-better", dest, "--out", tmp_path / "r",
                         "--resamples", 200, "--no-track")
    assert code == 0, err
    assert json.loads(out) == {"verdict": "worse", "not_worse": False, "promoted": False}
    assert (dest / "manifest.json").read_bytes() == before
    report = json.loads((tmp_path / "r" / "comparison.json").read_text())
    assert report["metrics"]["weighted_f1"]["ci_high"] < 0
    assert report["promotion"]["done"] is False
    assert "**Verdict: worse**" in (tmp_path / "r" / "comparison.md").read_text()
    assert not [p for p in tmp_path.iterdir() if p.name.startswith(".champion")]  # no temp folder left


def test_compare_promotes_and_registers_a_not_worse_model(capsys, tmp_path, trained_bundle, worse_bundle,
                                                          rakuten_session_dir):
    from prodcat.tracking import tracker as T
    from prodcat.tracking.model_registry import resolve_model_uri

    store = tmp_path / "store"
    new = tmp_path / "new"
    shutil.copytree(trained_bundle, new)
    dest = tmp_path / "served"
    # the first comparison registers the worse model as champion (no champion yet): refused
    code, out, err = run(capsys, "compare", "--model", worse_bundle, "--model", new, "--data",
                         rakuten_session_dir, "--resamples", 100, "--tracking-uri", store,
                         "--registered-model", "cat", "--promote-if-better", dest)
    assert code == 0, err
    assert json.loads(out)["promoted"] is True
    assert read_classes(dest) == read_classes(trained_bundle)
    assert "made champion" in err
    uri = T.sqlite_uri(store / T.DB_NAME)
    path = resolve_model_uri("models:/cat@champion", uri, cache_dir=tmp_path / "cache")
    assert path.parent == tmp_path / "cache" / "models" / "cat" and path.name.startswith("2-")
    assert (path / "manifest.json").read_bytes() == (new / "manifest.json").read_bytes()
    assert resolve_model_uri("models:/cat/1", uri, cache_dir=tmp_path / "cache").name.startswith("1-")
    assert "Downloading" not in capsys.readouterr().err
    # comparing the champion with the worse one: the worse one becomes the challenger
    code, out, err = run(capsys, "compare", "--model", new, "--model", worse_bundle, "--data",
                         rakuten_session_dir, "--resamples", 100, "--tracking-uri", store,
                         "--registered-model", "cat")
    assert code == 0, err
    assert "registered as challenger; champion stays version 2" in err
    from mlflow.tracking import MlflowClient

    client = MlflowClient(uri, registry_uri=uri)
    assert str(client.get_model_version_by_alias("cat", "challenger").version) == "3"


def read_classes(bundle: Path) -> list:
    return json.loads((bundle / "manifest.json").read_text())["classes"]


def test_compare_needs_two_models(capsys, trained_bundle, rakuten_session_dir):
    code, _, err = run(capsys, "compare", "--model", trained_bundle, "--data", rakuten_session_dir)
    assert code == 2 and "give --model twice" in err


def test_serve_resolves_a_registered_model(monkeypatch, tmp_path):
    seen = {}
    monkeypatch.setattr("prodcat.tracking.model_registry.resolve_model_uri",
                        lambda uri, tracking=None: seen.setdefault("path", tmp_path / "nope"))
    code = main(["serve", "--model", "models:/cat@champion"])
    assert code != 0 and seen  # resolved first; the (missing) folder is then refused as usual
