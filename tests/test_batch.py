"""Batch classification in partitions (``prodcat.batch``) in this process: the output equals
``Classifier.predict_frame``, bad rows get an ``error``, a changed input is refused (local Dask
clusters, killed runs and ``prodcat embed``: ``test_batch_dask.py``).
"""

from __future__ import annotations

import dataclasses
import json
import shutil
import time
import types
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from conftest import RAKUTEN_CLASSES, write_table
from prodcat.batch import (
    JOB_FILE,
    Engine,
    InProcessEngine,
    Resource,
    open_source,
    predict_partition,
    result_columns,
    run_partitions,
    run_predict_job,
)
from prodcat.batch.resources import get_resource
from prodcat.cli import main
from prodcat.data import read_catalog
from prodcat.errors import ConfigError

dask_installed = pytest.mark.skipif(
    __import__("importlib").util.find_spec("distributed") is None, reason="needs the batch extra (dask)")


def run(capsys, *argv) -> tuple[int, str, str]:
    code = main([str(a) for a in argv])
    out, err = capsys.readouterr()
    return code, out, err


def norm(frame: pd.DataFrame) -> pd.DataFrame:
    """Text columns as Python strings (pandas may infer its string dtype for them)."""
    frame = frame.reset_index(drop=True)
    return frame.astype({c: object for c in frame.columns if c.startswith(("id", "code_", "name_"))})


def single_process(model, catalog, k: int = 3) -> pd.DataFrame:
    """What ``prodcat predict --out file`` computes: predict_frame over the catalogue."""
    return norm(model.predict_frame(catalog.X, k, ids=catalog.frame["id"]))


def answered(frame: pd.DataFrame) -> pd.DataFrame:
    """Rows with an answer, without the batch-only ``error`` column."""
    return norm(frame[frame["code_1"].notna()].drop(columns="error"))


def synthetic_table(path: Path, n: int, seed: int = 0) -> Path:
    """``n`` text-only listings in the fixture's categories, as Parquet."""
    rng = np.random.default_rng(seed)
    words = [w for _, _, ws, _ in RAKUTEN_CLASSES.values() for w in ws]
    frame = pd.DataFrame({"id": [f"L{i:06d}" for i in range(n)],
                          "title": [" ".join(rng.choice(words, 4)) for _ in range(n)],
                          "description": [" ".join(rng.choice(words, 6)) if i % 3 else "" for i in range(n)]})
    path.parent.mkdir(parents=True, exist_ok=True)
    frame.to_parquet(path, index=False, row_group_size=777)
    return path


# ---------------------------------------------------------------------------------------------
# reading in partitions


@pytest.mark.parametrize("kind", ["rakuten", "flipkart", "table", "parquet"])
def test_partitions_stream_the_rows_read_catalog_reads(kind, rakuten_dir, flipkart_csv, tmp_path):
    options = {}
    if kind == "rakuten":
        path = rakuten_dir
    elif kind == "flipkart":
        path = flipkart_csv
    else:
        csv = write_table(tmp_path / "table")
        options = {"title_col": "name", "description_col": "body", "image_col": "pic", "id_col": "sku"}
        path = csv
        if kind == "parquet":
            path = csv.with_suffix(".parquet")
            import pyarrow as pa
            import pyarrow.parquet as pq

            # Row groups of 4 and partitions of 5: partitions are re-cut across row groups.
            pq.write_table(pa.Table.from_pandas(pd.read_csv(csv, dtype=str, keep_default_na=False)),
                           path, row_group_size=4)
    catalog = read_catalog(path, **options)
    source = open_source(path, **options)
    parts = list(source.partitions(5))
    assert [p.index for p in parts] == list(range(len(parts)))
    assert all(len(p) == 5 for p in parts[:-1])
    assert [p.start for p in parts] == [5 * i for i in range(len(parts))]
    streamed = pd.concat([p.frame for p in parts], ignore_index=True)
    has_text = (streamed["title"].str.strip() != "") | (streamed["description"].str.strip() != "")
    expected = catalog.frame[["id", "title", "description", "image"]]
    pd.testing.assert_frame_equal(streamed[has_text.to_numpy()].reset_index(drop=True), expected,
                                  check_dtype=False)
    assert sum(p.images_missing for p in parts) == catalog.report.images_missing
    # Without photos (a text-only model) nothing is looked up on disk.
    assert all(p.frame["image"].isna().all() for p in source.partitions(5, images=False))


def test_source_errors_are_clear(table_csv, rakuten_dir, tmp_path):
    with pytest.raises(ConfigError, match="--title-col"):
        open_source(rakuten_dir, title_col="name")
    with pytest.raises(Exception, match="'nope'"):
        open_source(table_csv, title_col="nope")
    with pytest.raises(Exception, match="not found"):
        open_source(tmp_path / "missing.csv")


def test_a_csv_line_with_extra_fields_is_read(tmp_path):
    path = tmp_path / "listings.csv"
    path.write_text("id,title\n1,stylo bleu\n2,cahier,EXTRA,FIELDS\n3,piscine\n", encoding="utf-8")
    [part] = open_source(path).partitions(10)
    assert list(part.frame["title"]) == ["stylo bleu", "cahier", "piscine"]


# ---------------------------------------------------------------------------------------------
# predicting


def test_predict_partition_equals_predict_frame_and_marks_rows_without_text(trained, rakuten_dir):
    model, _ = trained
    source = open_source(rakuten_dir)
    frame = pd.concat([p.frame for p in source.partitions(1000, images=False)], ignore_index=True)
    out = predict_partition(model, frame, 3)
    assert list(out.columns) == result_columns(3)
    assert len(out) == len(frame)  # every input row gets a row
    no_text = out[out["code_1"].isna()]
    assert list(no_text["id"]) == ["7"]
    assert no_text["error"].iloc[0] == "no title, description or usable photo"
    assert bool(no_text["needs_review"].iloc[0])
    expected = single_process(model, read_catalog(rakuten_dir))
    pd.testing.assert_frame_equal(answered(out), expected)


class Fragile:
    """A model that raises on some rows, as a real one might on input nobody foresaw."""

    def __init__(self, model):
        self.model = model
        self.classes_ = model.classes_
        self.calls = 0

    def predict_frame(self, X, k, ids=None):
        self.calls += 1
        if X["title"].str.contains("BOOM").any():
            raise ValueError("cannot handle BOOM")
        return self.model.predict_frame(X, k, ids=ids)


def test_a_bad_row_never_sinks_its_partition(trained):
    model, catalog = trained
    frame = catalog.frame[["id", "title", "description", "image"]].head(40).copy()
    frame.loc[[3, 17], "title"] = "BOOM BOOM"
    out = predict_partition(Fragile(model), frame, 3)
    failed = out[out["code_1"].isna()]
    assert list(failed["id"]) == [frame["id"][3], frame["id"][17]]
    assert (failed["error"] == "ValueError: cannot handle BOOM").all()
    assert failed["needs_review"].all()
    good = frame.drop(index=[3, 17])
    expected = model.predict_frame(good[["title", "description", "image"]], 3, ids=good["id"])
    pd.testing.assert_frame_equal(answered(out), norm(expected))


def test_non_string_titles_are_read_as_text(trained, tmp_path):
    model, _ = trained
    path = tmp_path / "numbers.parquet"
    pd.DataFrame({"id": [1, 2], "title": [12345, 678], "description": [None, "stylo cahier"]}).to_parquet(path)
    frame = next(open_source(path).partitions(10)).frame
    assert list(frame["title"]) == ["12345", "678"] and list(frame["id"]) == ["1", "2"]
    out = predict_partition(model, frame, 2)
    assert out["code_1"].notna().all() and out["error"].isna().all()


def _colour_encoder():
    """Stand-in for the network: a photo's per-channel mean and spread (the real decode,
    preprocess and cache pipeline runs around it)."""
    from prodcat.image import EncoderSpec, ImageEncoder, PreprocessConfig

    class Colour(ImageEncoder):
        def run(self, pixels):
            batch = np.asarray(pixels, np.float32) / 255.0
            emb = np.concatenate([batch.mean(axis=(1, 2)), batch.std(axis=(1, 2))], axis=1)
            return emb.astype(np.float32), np.zeros((len(batch), 1000), np.float32)

    spec = EncoderSpec(name="colour-test", arch="none", weights_module="none", weights_class="none",
                       weights_file="none", dim=6, preprocess=PreprocessConfig(size=16))
    return Colour(spec)


def test_unusable_photos_are_noted_and_answered_from_the_text(make_rakuten, tmp_path):
    from prodcat.image import ImageClassifier
    from prodcat.model import Classifier

    data = make_rakuten("photos", per_class=12)
    catalog = read_catalog(data).labelled()
    image = ImageClassifier(encoder=_colour_encoder(), cache=str(tmp_path / "emb.sqlite"))
    model = Classifier(image=image, min_images=10, fusion="late").fit(catalog.X, catalog.y,
                                                                      taxonomy=catalog.taxonomy)
    assert model.image_ is not None
    frame = catalog.frame[["id", "title", "description", "image"]].copy()
    with_photo = frame.index[frame["image"].notna()]
    corrupt, corrupt_no_text = with_photo[0], with_photo[1]
    bad = tmp_path / "corrupt.jpg"
    bad.write_bytes(b"\xff\xd8\xff\xe0 this is not really a JPEG")
    frame.loc[[corrupt, corrupt_no_text], "image"] = str(bad)
    frame.loc[corrupt_no_text, ["title", "description"]] = ""
    out = predict_partition(model, frame, 3)
    assert out.loc[corrupt, "code_1"] is not None
    assert out.loc[corrupt, "error"].startswith("photo unusable (")
    assert out.loc[corrupt_no_text, "error"] == "no title, description or usable photo"
    assert out["error"].notna().sum() == 2
    # Elsewhere the answer is the fused model's, exactly as predict_frame gives it.
    keep = frame.index.difference([corrupt, corrupt_no_text])
    expected = model.predict_frame(frame.loc[keep, ["title", "description", "image"]], 3,
                                   ids=frame.loc[keep, "id"])
    pd.testing.assert_frame_equal(answered(out.loc[keep]), norm(expected))


@dataclasses.dataclass
class _Offset(Resource):
    """A resource that is a number: what a task gets in place of a loaded model."""

    value: int = 0

    def load(self, scratch):
        return self.value


def _add(offset: int, data: int, extra: int) -> int:
    return offset + data + extra


def test_engines_are_abstract_and_run_partitions_times_a_job():
    with pytest.raises(TypeError, match="abstract"):
        Engine()
    engine = InProcessEngine()
    summary = types.SimpleNamespace(startup_s=-1.0, seconds=-1.0, client_peak_rss_mb=None, workers=[])
    results, lines, advanced = [], [], []

    def tasks(key, bar):
        advanced.append(bar)
        for i in range(6):
            yield (lambda i=i: engine.submit(key, _add, i, 1), results.append)

    run_partitions(engine, lambda e: _Offset(key="test-offset", value=10), tasks, summary, heading="adding",
                   total=6, desc="adding", started=time.perf_counter(), progress=False, echo=lines.append)
    assert sorted(results) == [11, 12, 13, 14, 15, 16]
    assert lines == ["adding on this process (no Dask)"] and len(advanced) == 1
    assert summary.startup_s >= 0 and summary.seconds >= 0 and summary.client_peak_rss_mb > 0
    assert summary.workers[0]["loads"]["test-offset"] == 1  # loaded once for the six tasks
    with pytest.raises(ConfigError, match="not installed"):  # the engine was closed: uninstalled
        get_resource("test-offset")


def test_the_engine_never_imports_the_dask_engine():
    """cluster imports engine; engine (or resources) importing cluster back would be a circle."""
    import ast

    import prodcat.batch as batch

    folder = Path(batch.__file__).parent
    for name in ("engine", "resources"):
        tree = ast.parse((folder / f"{name}.py").read_text())
        imported = {n.module for n in ast.walk(tree) if isinstance(n, ast.ImportFrom)}
        imported |= {a.name for n in ast.walk(tree) if isinstance(n, ast.Import) for a in n.names}
        assert not {m for m in imported if m and m.startswith(("prodcat.batch.cluster", "distributed",
                                                                 "dask"))}, name


def test_job_in_this_process_resumes_and_refuses_a_changed_input(trained, trained_bundle, tmp_path, capsys):
    model, _ = trained
    data = synthetic_table(tmp_path / "in" / "listings.parquet", 500)
    out = tmp_path / "out"

    def job(**kw):
        return run_predict_job(trained_bundle, data, out, partition_rows=120, engine=InProcessEngine(),
                               echo=lambda m: None, progress=False, **kw)

    first = job()
    assert (first.partitions, first.partitions_run, first.rows_run, first.failed) == (5, 5, 500, 0)
    parts = sorted(p.name for p in out.glob("part-*.parquet"))
    assert parts == [f"part-{i:05d}.parquet" for i in range(5)]
    result = pd.read_parquet(out)  # the folder reads as one table; the manifest is ignored
    catalog = read_catalog(data)
    pd.testing.assert_frame_equal(answered(result), single_process(model, catalog))
    manifest = json.loads((out / JOB_FILE).read_text())
    assert manifest["state"] == "complete" and manifest["summary"]["rows"] == 500
    assert manifest["partition_rows"] == 120 and manifest["top_k"] == 3

    before = {p: p.stat().st_mtime_ns for p in out.glob("part-*.parquet")}
    again = job()
    assert (again.partitions_run, again.partitions_skipped, again.rows) == (0, 5, 500)
    assert {p: p.stat().st_mtime_ns for p in out.glob("part-*.parquet")} == before
    assert again.needs_review == first.needs_review

    # A changed input: refused, naming what changed, then restarted on request.
    frame = pd.read_parquet(data)
    frame.loc[0, "title"] = "stylo cahier"
    frame.to_parquet(data, index=False)
    with pytest.raises(ConfigError, match="input file's content.*--restart"):
        job()
    with pytest.raises(ConfigError, match="--partition-rows changed"):
        run_predict_job(trained_bundle, data, out, partition_rows=50, engine=InProcessEngine(),
                        echo=lambda m: None, progress=False)
    restarted = job(restart=True)
    assert restarted.partitions_run == 5 and restarted.partitions_skipped == 0


def test_cli_folder_output_and_its_errors(trained_bundle, rakuten_dir, tmp_path, capsys):
    out = tmp_path / "preds"
    code, _, err = run(capsys, "predict", "--model", trained_bundle, "--data", rakuten_dir, "--out", out,
                       "--workers", "0", "--partition-rows", "25")
    assert code == 0, err
    assert "predicted 61 listings in 3 partition(s)" in err and "listings/s" in err
    assert "1 row(s) without an answer" in err
    assert len(pd.read_parquet(out)) == 61
    # A file name with a batch option, a folder that is not a job, options without --data.
    code, _, err = run(capsys, "predict", "--model", trained_bundle, "--data", rakuten_dir,
                       "--out", tmp_path / "p.csv", "--workers", "2")
    assert code == 2 and "names a file" in err
    (tmp_path / "taken").mkdir()
    (tmp_path / "taken" / "notes.txt").write_text("mine")
    code, _, err = run(capsys, "predict", "--model", trained_bundle, "--data", rakuten_dir,
                       "--out", tmp_path / "taken", "--workers", "0")
    assert code == 2 and "not a prodcat batch output" in err
    assert (tmp_path / "taken" / "notes.txt").read_text() == "mine"
    code, _, err = run(capsys, "predict", "--model", trained_bundle, "--title", "stylo", "--workers", "1")
    assert code == 2 and "--data" in err
    # A different model on the same folder is refused.
    other = tmp_path / "other-model"
    shutil.copytree(trained_bundle, other)
    manifest = json.loads((other / "manifest.json").read_text())
    manifest["threshold"] = 0.5
    (other / "manifest.json").write_text(json.dumps(manifest))
    code, _, err = run(capsys, "predict", "--model", other, "--data", rakuten_dir, "--out", out,
                       "--workers", "0", "--partition-rows", "25")
    assert code == 2 and "the model bundle changed" in err and "Traceback" not in err


def test_without_dask_the_options_name_the_extra(trained_bundle, rakuten_dir, tmp_path, capsys, monkeypatch):
    import prodcat.batch.engine as engine

    monkeypatch.setattr(engine, "dask_available", lambda: False)
    code, _, err = run(capsys, "predict", "--model", trained_bundle, "--data", rakuten_dir,
                       "--out", tmp_path / "o", "--workers", "2")
    assert code == 2 and "prodcat[batch]" in err
    code, _, err = run(capsys, "predict", "--model", trained_bundle, "--data", rakuten_dir,
                       "--out", tmp_path / "o")
    assert code == 0 and "Dask is not installed" in err and "running in this process" in err
