"""Batch classification on local Dask clusters and its resumption: two workers give the single
process's answer, a killed run resumes to the same bytes, workers ignore Ctrl-C, and
``prodcat embed`` fills the embedding cache that training reads.
"""

from __future__ import annotations

import contextlib
import json
import os
import shutil
import subprocess
import sys
import time

import pandas as pd
import pytest
from PIL import Image

from conftest import RAKUTEN_CLASSES, real_catalog
from prodcat.batch import JOB_FILE, InProcessEngine, result_columns, run_predict_job
from prodcat.cli import main
from prodcat.data import read_catalog
from prodcat.model import load_bundle
from prodcat.text import encoders as encoders_module
from test_batch import answered, dask_installed, run, single_process, synthetic_table

# ---------------------------------------------------------------------------------------------
# on local Dask clusters


@dask_installed
def test_two_worker_processes_give_the_single_process_answer(trained, trained_bundle, rakuten_dir,
                                                           tmp_path, capsys):
    model, _ = trained
    out = tmp_path / "preds"
    code, _, err = run(capsys, "predict", "--model", trained_bundle, "--data", rakuten_dir, "--out", out,
                       "--workers", "2", "--partition-rows", "8")
    assert code == 0, err
    assert "local Dask cluster (2 worker processes × 1 thread)" in err
    result = pd.read_parquet(out)
    assert list(result.columns) == result_columns(3) and len(result) == 61
    pd.testing.assert_frame_equal(answered(result), single_process(model, read_catalog(rakuten_dir)))
    summary = json.loads((out / JOB_FILE).read_text())["summary"]
    assert summary["partitions"] == 8 and summary["rows_run"] == 61
    # Each worker process loaded the bundle exactly once, whatever the number of partitions.
    workers = summary["workers"]
    assert len(workers) == 2 and len({w["pid"] for w in workers}) == 2
    assert all(list(w["loads"].values()) == [1] for w in workers)
    assert all(w["peak_rss_mb"] > 0 for w in workers)


@dask_installed
def test_scheduler_address_runs_on_that_cluster(trained, trained_bundle, rakuten_dir, tmp_path, capsys):
    from distributed import LocalCluster

    model, _ = trained
    with LocalCluster(n_workers=1, threads_per_worker=2, processes=False, dashboard_address=None) as cluster:
        out = tmp_path / "preds"
        code, _, err = run(capsys, "predict", "--model", trained_bundle, "--data", rakuten_dir, "--out", out,
                           "--scheduler", cluster.scheduler_address, "--partition-rows", "20")
        assert code == 0, err
        assert f"Dask cluster at {cluster.scheduler_address} (1 workers, 2 threads)" in err
        pd.testing.assert_frame_equal(answered(pd.read_parquet(out)),
                                      single_process(model, read_catalog(rakuten_dir)))
        code, _, err = run(capsys, "predict", "--model", trained_bundle, "--data", rakuten_dir,
                           "--out", tmp_path / "p1", "--scheduler", cluster.scheduler_address, "--workers", "2")
        assert code == 2 and "--workers starts a local cluster" in err
    import dask

    with dask.config.set({"distributed.comm.timeouts.connect": "1s"}):
        code, _, err = run(capsys, "predict", "--model", trained_bundle, "--data", rakuten_dir,
                           "--out", tmp_path / "p2", "--scheduler", "tcp://127.0.0.1:9")
    assert code == 2 and "cannot reach the Dask scheduler" in err


def test_a_bundle_travels_to_workers_without_the_path(trained_bundle, tmp_path):
    from prodcat.batch import BundleResource

    res = BundleResource.of(trained_bundle, ship=True)
    res.path = str(tmp_path / "not-on-this-worker")
    model = res.load(str(tmp_path))
    assert list(model.classes_) == sorted(RAKUTEN_CLASSES)
    res.files = None
    with pytest.raises(Exception, match="not readable on this worker"):
        res.load(str(tmp_path))


def _children(pid: int) -> list[int]:
    import psutil

    try:
        return [c.pid for c in psutil.Process(pid).children(recursive=True)]
    except psutil.NoSuchProcess:
        return []


@dask_installed
@pytest.mark.slow
def test_a_killed_run_resumes_to_the_same_bytes(trained_bundle, tmp_path):
    data = synthetic_table(tmp_path / "in" / "listings.parquet", 12_000)
    out, reference = tmp_path / "out", tmp_path / "reference"
    args = ["predict", "--model", str(trained_bundle), "--data", str(data), "--partition-rows", "300"]
    cmd = [sys.executable, "-m", "prodcat.cli", *args, "--out", str(out), "--workers", "1"]
    env = {**os.environ, "PYTHONUNBUFFERED": "1"}
    with open(tmp_path / "killed.log", "w") as log:
        proc = subprocess.Popen(cmd, stdout=log, stderr=subprocess.STDOUT, env=env)
        children: set[int] = set()
        deadline = time.monotonic() + 120
        while not list(out.glob("part-*.parquet")) and proc.poll() is None and time.monotonic() < deadline:
            children.update(_children(proc.pid))
            time.sleep(0.01)
        children.update(_children(proc.pid))
        proc.kill()  # SIGKILL: no cleanup of any kind
        proc.wait()
    for pid in children:  # the worker processes it started, should any outlive it
        with contextlib.suppress(ProcessLookupError):
            os.kill(pid, 9)
    done_when_killed = len(list(out.glob("part-*.parquet")))
    assert 1 <= done_when_killed < 40, (tmp_path / "killed.log").read_text()

    resumed = subprocess.run(cmd, capture_output=True, text=True, env=env, timeout=300)
    assert resumed.returncode == 0, resumed.stderr
    assert "resuming the job" in resumed.stderr
    assert f"{done_when_killed} already done" in resumed.stderr
    # The uninterrupted run reads every text's embedding from the disk cache the two runs above
    # filled, as they did; not from this process's memory, where earlier tests left vectors
    # computed beside other texts (a product's last bits depend on its neighbours in the batch).
    encoders_module._RECENT.clear()
    assert main([*args, "--out", str(reference), "--workers", "0"]) == 0  # uninterrupted
    parts = sorted(p.name for p in reference.glob("part-*.parquet"))
    assert len(parts) == 40
    assert sorted(p.name for p in out.glob("part-*.parquet")) == parts
    assert not list(out.glob(".*.tmp"))
    for name in parts:
        assert (out / name).read_bytes() == (reference / name).read_bytes(), name
    pd.testing.assert_frame_equal(pd.read_parquet(out), pd.read_parquet(reference))


@pytest.fixture
def encoder_cache(tmp_path, monkeypatch):
    """A fresh prodcat cache folder that holds the EfficientNet-Lite0 export (skip without one)."""
    pytest.importorskip("onnxruntime")
    from prodcat.image import ImageError, create_encoder

    encoder = create_encoder("efficientnet-lite0")
    try:
        onnx = encoder.ensure_export()
    except ImageError as exc:
        pytest.skip(f"image encoder unavailable: {exc}")
    cache = tmp_path / "prodcat-cache"
    (cache / "encoders").mkdir(parents=True)
    for src in (onnx, encoder.hash_path):
        shutil.copyfile(src, cache / "encoders" / src.name)
    monkeypatch.setenv("PRODCAT_CACHE_DIR", str(cache))
    return cache


@dask_installed
def test_embed_fills_the_cache_that_training_reads(make_rakuten, encoder_cache, tmp_path, capsys):
    from prodcat.image import EmbeddingCache, ImageClassifier, create_encoder

    data = make_rakuten("photos", per_class=6)
    # Photos with distinct content (the fixture's photos repeat per class), one corrupt.
    images = sorted((data / "images" / "image_train").glob("*.jpg"))
    for i, path in enumerate(images):
        Image.new("RGB", (40, 40), (i * 9 % 255, 255 - i * 5 % 255, 60)).save(path, quality=95)
    images[0].write_bytes(b"not an image")
    code, _, err = run(capsys, "embed", "--data", data, "--workers", "1", "--partition-rows", "5")
    assert code == 0, err
    assert f"{len(images) - 1:,} encoded" in err and "1 unusable (1 not an image)" in err
    encoder_id = create_encoder().encoder_id  # the default encoder: the one training uses
    with EmbeddingCache() as cache:
        assert cache.count(encoder_id) == len(images) - 1
    # Training reads them from the cache: no photo is encoded again.
    catalog = read_catalog(data)
    encoded = ImageClassifier().embed(catalog.X, warn=False)
    assert encoded.n_encoded == 0 and encoded.n_from_cache == len(images) - 1
    # A second run finds everything cached.
    code, _, err = run(capsys, "embed", "--data", data, "--workers", "0")
    assert code == 0 and " 0 encoded" in err and f"{len(images) - 1} already cached" in err


# ---------------------------------------------------------------------------------------------
# real data


@pytest.mark.realdata
@pytest.mark.slow
def test_real_unlabelled_listings_match_the_single_process_answer(tmp_path):
    from prodcat.model import Classifier

    train = real_catalog("rakuten").labelled()
    unlabelled = real_catalog("rakuten_unlabelled")
    model = Classifier().fit(train.X, train.y, taxonomy=train.taxonomy)
    bundle = model.save(tmp_path / "model")
    summary = run_predict_job(bundle, unlabelled.source, tmp_path / "out", partition_rows=600,
                              engine=InProcessEngine(), echo=lambda m: None, progress=False)
    # Every row gets an output row; the ones read_catalog skips (no text) have no answer.
    assert summary.rows == 2000 and summary.partitions == 4
    assert summary.failed == unlabelled.report.rows_without_text
    loaded, _ = load_bundle(bundle)
    pd.testing.assert_frame_equal(answered(pd.read_parquet(tmp_path / "out")),
                                  single_process(loaded, unlabelled))


def _sigint_handler_name() -> str:
    import signal

    handler = signal.getsignal(signal.SIGINT)
    return "ignored" if handler == signal.SIG_IGN else "default"


def test_local_dask_workers_ignore_ctrl_c():
    """Ctrl-C reaches the whole process group: worker processes started for a local cluster must
    leave it to the client (one line, no worker tracebacks), and this process keeps its handler."""
    import multiprocessing
    import signal

    pytest.importorskip("distributed")
    from prodcat.batch.cluster import _children_ignore_ctrl_c

    before = signal.getsignal(signal.SIGINT)
    with _children_ignore_ctrl_c(), multiprocessing.get_context("spawn").Pool(1) as pool:
        assert pool.apply(_sigint_handler_name) == "ignored"
    assert signal.getsignal(signal.SIGINT) is before
