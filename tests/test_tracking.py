"""Experiment tracking (MLflow): what train/evaluate record, `prodcat runs`, and failing stores."""

from __future__ import annotations

import json
import sqlite3
import sys
from pathlib import Path
from types import SimpleNamespace

import pytest

from prodcat.cli import main
from prodcat.model import read_manifest
from prodcat.tracking import tracker as T
from prodcat.tracking import values as V

mlflow = pytest.importorskip("mlflow", reason="the 'track' extra is not installed")
from mlflow.tracking import MlflowClient  # noqa: E402

FAST = ("--image-encoder", "none")


def run(capsys, *argv) -> tuple[int, str, str]:
    code = main([str(a) for a in argv])
    out, err = capsys.readouterr()
    return code, out, err


def uri_of(folder: Path) -> str:
    return T.sqlite_uri(folder / T.DB_NAME)


def runs_of(uri: str, experiment: str = "prodcat") -> list:
    client = MlflowClient(uri)
    exp = client.get_experiment_by_name(experiment)
    return [] if exp is None else list(client.search_runs([exp.experiment_id], order_by=["attributes.start_time ASC"]))


def artifact_paths(client: MlflowClient, run_id: str, path: str) -> set[str]:
    return {Path(a.path).name for a in client.list_artifacts(run_id, path)}


@pytest.fixture(scope="module")
def tracked(tmp_path_factory, rakuten_session_dir):
    """One store with a train run, an evaluate run of its bundle and an evaluate --cv run."""
    root = tmp_path_factory.mktemp("tracked")
    store = root / "store"
    opts = ["--tracking-uri", str(store), "--experiment", "tests"]
    data = str(rakuten_session_dir)
    codes = [
        main(["train", "--data", data, "--out", str(root / "model"), "--cv", "3", "--text-model",
              "single", *FAST, *opts]),
        main(["evaluate", "--model", str(root / "model"), "--data", data, "--out", str(root / "report"),
              *opts]),
        main(["evaluate", "--cv", "2", "--data", data, "--out", str(root / "report-cv"), "--C", "0.5",
              *FAST, *opts]),
    ]
    uri = uri_of(store)
    train, evaluate, cv = runs_of(uri, "tests")
    return SimpleNamespace(root=root, store=store, uri=uri, opts=opts, codes=codes, client=MlflowClient(uri),
                           train=train, evaluate=evaluate, cv=cv)


# ---------------------------------------------------------------------------------------------
# what a run records


def test_train_records_params_metrics_tags_and_bundle(tracked):
    assert tracked.codes == [0, 0, 0]
    r = tracked.train
    assert r.info.status == "FINISHED"
    assert r.info.run_name.startswith("train ")
    manifest = read_manifest(tracked.root / "model")
    p, m, t = r.data.params, r.data.metrics, r.data.tags
    # parameters: the Classifier's get_params with dotted names, plus the CLI's own choices
    assert p["text.head"] == "linear-svm" and p["text"] == "TextClassifier"
    assert p["image"] == "None" and p["fusion"] == "auto" and p["threshold"] == "auto"
    assert p["target_precision"] == "0.95"
    assert p["cv.folds"] == "3"
    assert p["text.word_ngrams"] == "[1, 2]"
    # metrics: the manifest's CV scores under the same names evaluate uses, per fold as steps
    cv = manifest["metrics"]["cv"]
    for key in ("weighted_f1", "macro_f1", "accuracy", "top3_accuracy", "ece", "log_loss"):
        assert m[key] == pytest.approx(cv[key]), key
    assert m["n"] == cv["n"] and m["cv.folds"] == 3
    assert {"coverage.80", "coverage.80.accuracy", "fit_seconds", "cv_seconds"} <= set(m)
    history = tracked.client.get_metric_history(r.info.run_id, "fold.weighted_f1")
    assert sorted(h.step for h in history) == [0, 1, 2]
    assert [h.value for h in sorted(history, key=lambda h: h.step)] == pytest.approx(
        [f["weighted_f1"] for f in cv["fold_scores"]])
    # tags: kind, data fingerprint and counts, code version
    assert t["prodcat.kind"] == "train"
    assert t["data.fingerprint"] == manifest["training"]["fingerprint"]
    assert t["data.n_listings"] == str(manifest["training"]["n_listings"])
    assert t["data.rows_without_text"] == "1"
    assert t["prodcat.version"] and "python.version" in t
    # the bundle, and the bundle knows its run
    assert {"manifest.json", "classifier.json.gz", "classifier.npz"} <= artifact_paths(tracked.client, r.info.run_id, "bundle")
    assert manifest["training"]["tracking"]["mlflow_run_id"] == r.info.run_id


def test_evaluate_records_report_and_links_the_train_run(tracked):
    r = tracked.evaluate
    assert r.info.status == "FINISHED"
    metrics = json.loads((tracked.root / "report" / "metrics.json").read_text(encoding="utf-8"))
    for key in ("weighted_f1", "macro_f1", "accuracy", "top3_accuracy", "ece", "log_loss"):
        assert r.data.metrics[key] == pytest.approx(metrics[key]), key
    assert r.data.metrics["unseen_labels"] == 0
    assert r.data.tags["prodcat.kind"] == "evaluate"
    assert r.data.tags["model.train_run_id"] == tracked.train.info.run_id
    assert r.data.tags["model.path"] == str((tracked.root / "model").resolve())
    assert r.data.params["text.head"] == "linear-svm"  # the evaluated bundle's parameters
    files = artifact_paths(tracked.client, r.info.run_id, "report")
    assert {"metrics.json", "report.md", "report.html", "confusion_matrix.png", "reliability.png"} <= files


def test_evaluate_cv_records_options_and_folds(tracked):
    r = tracked.cv
    assert r.data.params["text.C"] == "0.5" and r.data.params["cv.folds"] == "2"
    history = tracked.client.get_metric_history(r.info.run_id, "fold.accuracy")
    assert sorted(h.step for h in history) == [0, 1]


# ---------------------------------------------------------------------------------------------
# prodcat runs


def test_runs_lists_sorts_and_filters(tracked, capsys):
    code, out, _ = run(capsys, "runs", *tracked.opts)
    assert code == 0
    lines = out.splitlines()
    assert lines[0].split()[:6] == ["run", "started", "kind", "status", "data", "n"]
    assert "weighted_f1" in lines[0]
    for r in (tracked.train, tracked.evaluate, tracked.cv):
        assert r.info.run_id[:8] in out
    code, out, _ = run(capsys, "runs", *tracked.opts, "--kind", "train", "--json")
    listed = json.loads(out)
    assert [x["run_id"] for x in listed] == [tracked.train.info.run_id]
    assert listed[0]["params"]["text.head"] == "linear-svm" and "weighted_f1" in listed[0]["metrics"]
    # sorted by the metric asked for; lower first for ECE
    code, out, _ = run(capsys, "runs", *tracked.opts, "--metric", "ece", "--json")
    eces = [x["metrics"]["ece"] for x in json.loads(out)]
    assert eces == sorted(eces)
    code, out, _ = run(capsys, "runs", *tracked.opts, "--metric", "ece")
    assert out.splitlines()[0].split()[9] == "ece"  # the chosen metric comes first


def test_runs_compare_shows_what_differs(tracked, capsys):
    a, b = tracked.train.info.run_id, tracked.cv.info.run_id
    code, out, err = run(capsys, "runs", *tracked.opts, "--compare", a[:8], b[:10])
    assert code == 0, err
    assert a[:8] in out.splitlines()[0] and b[:8] in out.splitlines()[0]
    row = next(line for line in out.splitlines() if line.strip().startswith("text.C"))
    assert row.split()[1:] == ["None", "0.5"]
    assert not any(line.strip().startswith("text.head") for line in out.splitlines())  # equal: hidden
    assert "equal in every run" in out
    code, out, _ = run(capsys, "runs", *tracked.opts, "--compare", a, b, "--json", "--all")
    cmp = json.loads(out)
    assert cmp["runs"] == [a, b]
    assert cmp["params"]["text.C"] == ["None", "0.5"]
    assert cmp["params"]["text.head"] == ["linear-svm", "linear-svm"]
    assert cmp["tags"]["prodcat.kind"] == ["train", "evaluate"]


def test_runs_messages(tracked, tmp_path, capsys):
    # no store yet: a message, exit 0, and nothing is created
    empty = tmp_path / "nothing"
    code, out, err = run(capsys, "runs", "--tracking-uri", empty)
    assert code == 0 and "no tracking store" in err and not empty.exists()
    code, out, err = run(capsys, "runs", "--tracking-uri", empty, "--json")
    assert code == 0 and json.loads(out) == []
    # a store without that experiment
    code, out, err = run(capsys, "runs", "--tracking-uri", tracked.store, "--experiment", "other")
    assert code == 0 and "no experiment 'other'" in err and "tests" in err
    # unknown run, ambiguous use
    code, out, err = run(capsys, "runs", *tracked.opts, "--compare", "ffffffffff")
    assert code == 2 and "error: no run 'ffffffffff'" in err
    code, out, err = run(capsys, "runs", *tracked.opts, "--compare")
    assert code == 2 and "needs run ids" in err
    code, out, err = run(capsys, "runs", *tracked.opts, tracked.train.info.run_id)
    assert code == 2 and "--compare" in err


# ---------------------------------------------------------------------------------------------
# where runs go, and when they do not


def test_default_store_follows_the_environment(rakuten_dir, tmp_path, capsys, monkeypatch,
                                               tracking_store_dir):
    monkeypatch.chdir(tmp_path)
    folder = tmp_path / "env-store"
    monkeypatch.setenv(T.DIR_ENV, str(folder))
    code, _, err = run(capsys, "train", "--data", rakuten_dir, "--out", tmp_path / "m", "--cv", "0", *FAST)
    assert code == 0, err
    assert "tracking: MLflow run" in err
    assert len(runs_of(uri_of(folder))) == 1
    assert not (tmp_path / T.DEFAULT_DIR).exists()  # never the working folder when the env says otherwise
    # MLFLOW_TRACKING_URI wins over PRODCAT_TRACKING_DIR, --tracking-uri over both
    other = tmp_path / "mlflow-env"
    monkeypatch.setenv("MLFLOW_TRACKING_URI", uri_of(other))
    assert T.resolve_uri() == uri_of(other)
    assert T.resolve_uri(str(tmp_path / "x")) == uri_of(tmp_path / "x")
    assert T.resolve_uri(str(tmp_path / "runs.db")) == T.sqlite_uri(tmp_path / "runs.db")
    assert T.resolve_uri("http://example.invalid:5000") == "http://example.invalid:5000"
    monkeypatch.delenv("MLFLOW_TRACKING_URI")
    monkeypatch.delenv(T.DIR_ENV)
    assert T.resolve_uri() == T.sqlite_uri(tmp_path / T.DEFAULT_DIR / T.DB_NAME)


def test_no_track_records_nothing(rakuten_dir, tmp_path, capsys, monkeypatch):
    store = tmp_path / "store"
    code, _, err = run(capsys, "train", "--data", rakuten_dir, "--out", tmp_path / "m", "--cv", "0", *FAST,
                       "--tracking-uri", store, "--no-track")
    assert code == 0, err
    assert not store.exists() and "tracking" not in err
    assert (tmp_path / "m" / "manifest.json").is_file()
    assert read_manifest(tmp_path / "m")["training"]["tracking"] == {}
    # PRODCAT_TRACKING=0 turns the default off; --track turns it back on
    folder = tmp_path / "env-store"
    monkeypatch.setenv(T.DIR_ENV, str(folder))
    monkeypatch.setenv(T.SWITCH_ENV, "0")
    code, _, err = run(capsys, "train", "--data", rakuten_dir, "--out", tmp_path / "m2", "--cv", "0", *FAST)
    assert code == 0 and not folder.exists()
    code, _, err = run(capsys, "train", "--data", rakuten_dir, "--out", tmp_path / "m3", "--cv", "0", *FAST,
                       "--track")
    assert code == 0 and len(runs_of(uri_of(folder))) == 1


def _one_warning(err: str) -> str:
    lines = [line for line in err.splitlines() if line.startswith("warning:")]
    assert len(lines) == 1, err
    assert "experiment tracking" in lines[0] and "going on without it" in lines[0]
    assert "Traceback" not in err and "tracking: MLflow run" not in err
    return lines[0]


@pytest.mark.parametrize("store", ["file-as-folder", "garbage-scheme", "refused-http", "bad-sqlite"])
def test_unavailable_store_warns_and_the_run_goes_on(store, rakuten_dir, tmp_path, capsys):
    blocker = tmp_path / "a-file"
    blocker.write_text("not a folder")
    uri = {"file-as-folder": T.sqlite_uri(blocker / "mlflow.db"),
           "garbage-scheme": "nonsense://nowhere",
           "refused-http": "http://127.0.0.1:9",  # the discard port: connection refused at once
           "bad-sqlite": T.sqlite_uri(blocker)}[store]  # a file that is not a database
    code, _, err = run(capsys, "train", "--data", rakuten_dir, "--out", tmp_path / "m", "--cv", "0", *FAST,
                       "--tracking-uri", uri)
    assert code == 0, err
    _one_warning(err)
    assert (tmp_path / "m" / "manifest.json").is_file()
    assert "trained 4 categories" in err


@pytest.mark.slow
def test_locked_store_warns_and_the_run_goes_on(trained_bundle, rakuten_dir, tmp_path, capsys):
    store = tmp_path / "store"
    code, _, err = run(capsys, "evaluate", "--model", trained_bundle, "--data", rakuten_dir,
                       "--out", tmp_path / "r1", "--tracking-uri", store)
    assert code == 0 and len(runs_of(uri_of(store))) == 1
    lock = sqlite3.connect(store / T.DB_NAME, isolation_level=None, timeout=1)
    try:
        lock.execute("BEGIN EXCLUSIVE")
        code, _, err = run(capsys, "evaluate", "--model", trained_bundle, "--data", rakuten_dir,
                           "--out", tmp_path / "r2", "--tracking-uri", store)
    finally:
        lock.close()
    assert code == 0, err
    assert "locked" in _one_warning(err)
    assert (tmp_path / "r2" / "metrics.json").is_file()


def test_without_mlflow(rakuten_dir, tmp_path, capsys, monkeypatch):
    monkeypatch.setitem(sys.modules, "mlflow", None)  # `import mlflow` now fails as if not installed
    folder = tmp_path / "env-store"
    monkeypatch.setenv(T.DIR_ENV, str(folder))
    # not asked for: quietly untracked
    code, _, err = run(capsys, "train", "--data", rakuten_dir, "--out", tmp_path / "m", "--cv", "0", *FAST)
    assert code == 0 and "warning" not in err and not folder.exists()
    # asked for: one warning naming the extra
    code, _, err = run(capsys, "train", "--data", rakuten_dir, "--out", tmp_path / "m2", "--cv", "0", *FAST,
                       "--track")
    assert code == 0 and "prodcat[track]" in _one_warning(err)
    code, _, err = run(capsys, "runs")
    assert code == 2 and "'track' extra" in err


def test_a_failing_command_ends_its_run_failed(rakuten_dir, tmp_path, capsys, monkeypatch):
    from prodcat.model import Classifier

    def broken_save(self, *args, **kwargs):
        raise OSError("disk full")

    monkeypatch.setattr(Classifier, "save", broken_save)
    store = tmp_path / "store"
    code, _, err = run(capsys, "train", "--data", rakuten_dir, "--out", tmp_path / "m", "--cv", "0", *FAST,
                       "--tracking-uri", store)
    assert code == 1 and "disk full" in err
    (r,) = runs_of(uri_of(store))
    assert r.info.status == "FAILED"


# ---------------------------------------------------------------------------------------------
# the tracker on its own, and the names it logs


def test_tracker_context_manager(tmp_path):
    uri = uri_of(tmp_path / "store")
    warnings = []
    tracker = T.Tracker(uri, "direct", warn=warnings.append)
    with tracker.start_run("train", params={"a": {"b": 1, "c": [1, 2]}, "d": None}) as r:
        r.log_metrics({"x": 0.5}, steps=[("fold.x", 0.4, 0), ("fold.x", 0.6, 1)])
        r.set_tags({"note": "hello"})
        run_id = r.run_id
    with pytest.raises(RuntimeError), tracker.start_run("evaluate") as r2:
        failed_id = r2.run_id
        raise RuntimeError("boom")
    client = MlflowClient(uri)
    done = client.get_run(run_id)
    assert done.info.status == "FINISHED"
    assert done.data.params == {"a.b": "1", "a.c": "[1, 2]", "d": "None"}
    assert done.data.metrics == {"x": 0.5, "fold.x": 0.6}
    assert done.data.tags["note"] == "hello" and done.data.tags["prodcat.kind"] == "train"
    assert client.get_run(failed_id).info.status == "FAILED"
    assert warnings == []
    # off: every call is a no-op
    with T.Tracker(uri, enabled=False).start_run("train") as off:
        off.log_metrics({"x": 1.0})
        assert not off.active and off.bundle_reference() == {}


def test_metric_names_cover_modalities_groups_and_robustness():
    scores = {"n": 10, "weighted_f1": 0.8, "macro_f1": 0.7, "accuracy": 0.8, "top3_accuracy": 0.9,
              "log_loss": 0.5, "ece": 0.05}
    metrics = {**scores, "coverage": [{"threshold": 0.8, "coverage": 0.6, "n_automated": 6, "accuracy": 0.95}],
               "unseen_labels": {"count": 2, "labels": {"x": 2}},
               "per_class": {"a": {"f1": 0.5}}, "confusion": {"labels": [], "matrix": []},
               "modalities": {"text": scores, "image": {**scores, "n": 7}, "fused": scores,
                              "groups": {"with_image": {"fused": scores, "text": scores}, "without_image": None}},
               "robustness": {"conditions": {"blur": {"fused": scores, "text": scores, "image": scores,
                                                      "changed": {"fused": 0.1}}}},
               "cv": {"folds": 2, "fit_seconds": [1.0, 2.0],
                      "fold_scores": [{"fold": 0, "weighted_f1": 0.7, "macro_f1": 0.6, "accuracy": 0.7},
                                      {"fold": 1, "weighted_f1": 0.9, "macro_f1": 0.8, "accuracy": 0.9}]}}
    values, steps, _ = V.evaluation_values(metrics)
    assert values["weighted_f1"] == 0.8 and values["coverage.80"] == 0.6 and values["coverage.80.accuracy"] == 0.95
    assert values["unseen_labels"] == 2
    assert values["text.weighted_f1"] == 0.8 and values["image.n"] == 7 and values["fused.log_loss"] == 0.5
    assert values["with_image.fused.accuracy"] == 0.8 and "without_image.fused.accuracy" not in values
    assert values["robustness.blur.image.weighted_f1"] == 0.8
    assert values["cv.folds"] == 2 and values["cv_seconds"] == 3.0
    assert not any("per_class" in k or "confusion" in k for k in values)
    assert ("fold.weighted_f1", 0.9, 1) in steps and len(steps) == 6


def test_model_params_from_estimator_and_manifest_agree(tracked, trained, trained_bundle):
    from prodcat.model import load_bundle

    model, manifest = load_bundle(tracked.root / "model")
    live, saved = V.model_params(model), V.model_params(manifest["parameters"])
    assert live == saved
    assert live["text.head"] == "linear-svm" and live["text"] == "TextClassifier"
    # The default text model (text=None) is recorded as the model it stands for, alike live
    # and in the bundle.
    default, default_manifest = V.model_params(trained[0]), read_manifest(trained_bundle)
    assert default == V.model_params(default_manifest["parameters"])
    assert default["text"] == type(trained[0].text_).__name__
    assert tracked.train.data.params.items() >= live.items()
    long = V.flatten_params({"x": "y" * 10_000, "bad key!": 1})
    assert len(long["x"]) == V.MAX_PARAM_CHARS and long["bad key_"] == "1"
