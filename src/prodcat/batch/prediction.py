"""Classifying a catalogue of any size in partitions: ``prodcat predict --data ... --out FOLDER``.

The client streams the input (:mod:`prodcat.batch.partitions`), sends each unfinished partition
to a worker and writes what comes back as one Parquet part (:mod:`prodcat.batch.job`). A worker
runs :func:`predict_partition` with the bundle it loaded once: the same
:meth:`Classifier.predict_frame` as ``prodcat predict`` in one process, plus an ``error`` column.
One bad row never sinks its partition: rows the model cannot answer are found by halving the
partition and get an ``error`` instead of an answer.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from prodcat.batch.engine import Engine
from prodcat.batch.job import JobSummary, OutputFolder
from prodcat.batch.partitions import open_source
from prodcat.batch.resources import BundleResource, bundle_fingerprint
from prodcat.batch.runner import open_engine, run_partitions
from prodcat.errors import ProdcatError

#: Partition size when none is given: a few seconds of text-only work per task.
DEFAULT_PARTITION_ROWS = 5_000
NO_INPUT = "no title, description or usable photo"


def result_columns(k: int) -> list[str]:
    cols = ["id"]
    for r in range(1, k + 1):
        cols += [f"code_{r}", f"name_{r}", f"probability_{r}"]
    return [*cols, "needs_review", "error"]


def result_schema(k: int):
    """The Arrow schema of every part file: fixed, so parts with only failed rows still match."""
    import pyarrow as pa

    fields = [pa.field("id", pa.string())]
    for r in range(1, k + 1):
        fields += [pa.field(f"code_{r}", pa.string()), pa.field(f"name_{r}", pa.string()),
                   pa.field(f"probability_{r}", pa.float64())]
    return pa.schema([*fields, pa.field("needs_review", pa.bool_()), pa.field("error", pa.string())])


def to_table(frame: pd.DataFrame, k: int):
    import pyarrow as pa

    return pa.Table.from_pandas(frame, schema=result_schema(k), preserve_index=False).replace_schema_metadata(None)


# ---------------------------------------------------------------------------------------------
# the worker side


def predict_partition(model, frame: pd.DataFrame, k: int) -> pd.DataFrame:
    """``id``, top-``k`` ``code_i``/``name_i``/``probability_i``, ``needs_review`` and ``error`` for
    every row of ``frame`` (columns ``id, title, description, image``), in order.

    ``error`` says why a row has no answer (no text and no usable photo, or the model raised on
    it) or a text-only one (its photo is unusable); such rows need review.
    """
    from prodcat.model.classifier import as_listings

    k = min(k, len(model.classes_))
    n = len(frame)
    X = as_listings(frame.reset_index(drop=True))
    ids = frame["id"].astype(object).to_numpy()
    errors = np.full(n, None, dtype=object)
    usable = np.array((X["title"].str.strip() != "") | (X["description"].str.strip() != ""), dtype=bool)
    image = getattr(model, "image_", None)
    if image is not None and X["image"].notna().any():
        photos = _photo_problems(image, X)
        if photos is not None:
            ok, problems = photos
            usable |= ok
            has_problem = np.array([p is not None for p in problems])
            errors[has_problem] = [f"photo unusable ({p}); answered from the text" for p in
                                   np.asarray(problems, dtype=object)[has_problem]]
        else:
            usable |= np.array(X["image"].notna(), dtype=bool)  # the model decides; no notes without a cache
    errors[~usable] = NO_INPUT
    out = {col: np.full(n, None, dtype=object) for col in result_columns(k)}
    out["id"] = ids
    for r in range(1, k + 1):
        out[f"probability_{r}"] = np.full(n, np.nan)
    out["needs_review"] = np.ones(n, dtype=bool)
    rows = np.flatnonzero(usable)
    for positions, answer, failure in _predict_safely(model, X, ids, rows, k):
        if failure is not None:
            errors[positions] = failure
            continue
        for col in answer.columns:
            if col != "id":
                out[col][positions] = answer[col].to_numpy()
    out["error"] = errors
    return pd.DataFrame(out, columns=result_columns(k))


def _photo_problems(image, X: pd.DataFrame) -> tuple[np.ndarray, list[str | None]] | None:
    """Which photos are usable and, for the unusable ones given, why; None when the image model
    keeps no embedding cache (asking would encode every photo twice)."""
    if not image.cache:
        return None
    # Encoded here once and cached: predict_frame below reads the embeddings from the cache.
    encoded = image.embed(X, warn=False)
    kinds = encoded.kinds or [None] * len(X)
    return encoded.ok, [None if ok or kind in (None, "no image") else kind
                        for ok, kind in zip(encoded.ok, kinds, strict=True)]


def _predict_safely(model, X: pd.DataFrame, ids: np.ndarray, rows: np.ndarray,
                    k: int) -> Iterator[tuple[np.ndarray, pd.DataFrame | None, str | None]]:
    """``predict_frame`` on ``rows``; when it raises, the rows are halved until the bad ones are
    alone. Yields ``(positions, answer, None)`` or ``(positions, None, error)``.

    A :class:`ProdcatError` (a broken bundle, a missing encoder) is not about one row and stops
    the job, as do out-of-memory and import errors.
    """
    if rows.size == 0:
        return
    try:
        answer = model.predict_frame(X.iloc[rows], k, ids=ids[rows])
    except (ProdcatError, MemoryError, ImportError):
        raise
    except Exception as exc:
        if rows.size == 1:
            yield rows, None, f"{type(exc).__name__}: {exc}"[:500]
            return
        half = rows.size // 2
        yield from _predict_safely(model, X, ids, rows[:half], k)
        yield from _predict_safely(model, X, ids, rows[half:], k)
        return
    yield rows, answer, None


# ---------------------------------------------------------------------------------------------
# the client side


def run_predict_job(model_dir: str | Path, data: str | Path, out: str | Path, *, k: int = 3,
                    partition_rows: int = DEFAULT_PARTITION_ROWS, scheduler: str | None = None,
                    workers: int | None = None, restart: bool = False,
                    data_options: dict[str, Any] | None = None, engine: Engine | None = None,
                    echo: Callable[[str], None] = print, progress: bool | None = None) -> JobSummary:
    """Classify every row of ``data`` with the bundle ``model_dir`` into the folder ``out``.

    ``engine`` (tests, benchmarks) replaces the one ``scheduler``/``workers`` would open; it is
    closed at the end either way.
    """
    from prodcat.model import read_manifest

    manifest = read_manifest(model_dir)
    source = open_source(data, **(data_options or {}))
    k = min(k, len(manifest.get("classes", [])) or k)
    uses_photos = "image" in manifest.get("modalities", [])
    spec = {"kind": "predict", "input": source.describe(),
            "model": {"path": str(Path(model_dir).resolve()), "fingerprint": bundle_fingerprint(model_dir)},
            "partition_rows": partition_rows, "top_k": k, "threshold": manifest.get("threshold"),
            "columns": result_columns(k)}
    folder = OutputFolder(out)
    done = folder.prepare(spec, restart=restart, echo=echo)
    started = time.perf_counter()
    engine = engine or open_engine(scheduler, workers, echo=echo)
    summary = JobSummary(kind="predict", engine=engine.description)

    def tasks(key: str, bar):
        def finished(part, result: pd.DataFrame) -> None:
            folder.write_part(part.index, to_table(result, k))
            summary.partitions_run += 1
            summary.rows_run += len(result)
            failed = result["code_1"].isna() if k else pd.Series(True, index=result.index)
            summary.failed += int(failed.sum())
            summary.photos_unusable += int((result["error"].notna() & ~failed).sum())
            summary.needs_review += int(result["needs_review"].sum())
            bar.update(len(result))

        for part in source.partitions(partition_rows, images=uses_photos):
            summary.partitions += 1
            summary.rows += len(part)
            if part.index in done:
                summary.partitions_skipped += 1
                bar.update(len(part))
                continue
            summary.photos_missing += part.images_missing
            yield (lambda p=part: engine.submit(key, predict_partition, p.frame, k,
                                                name=f"prodcat-predict-{p.index:05d}"),
                   lambda result, p=part: finished(p, result))

    run_partitions(engine, lambda e: BundleResource.of(model_dir, ship=e.ship, threads=e.threads_per_task),
                   tasks, summary, heading=f"classifying {source.path} in partitions of {partition_rows:,} rows",
                   total=source.n_rows, desc="predicting", started=started, progress=progress, echo=echo)
    if summary.partitions_skipped:
        summary.needs_review += _count_review(folder, done)
    folder.finish(summary.to_dict())
    echo(predict_summary_line(summary, folder.path))
    return summary


def _count_review(folder: OutputFolder, indices: set[int]) -> int:
    """Listings needing review in parts written by an earlier run."""
    import pyarrow.parquet as pq

    parts = folder.parts()
    return sum(int(pq.read_table(parts[i], columns=["needs_review"]).column(0).to_numpy().sum())
               for i in indices if i in parts)


def predict_summary_line(s: JobSummary, out: Path) -> str:
    skipped = f", {s.partitions_skipped} already done" if s.partitions_skipped else ""
    problems = [f"{s.failed:,} row(s) without an answer"]
    if s.photos_unusable:
        problems.append(f"{s.photos_unusable:,} unusable photo(s)")
    if s.photos_missing:
        problems.append(f"{s.photos_missing:,} photo(s) not found")
    return (f"predicted {s.rows_run:,} listings in {s.partitions_run} partition(s){skipped} in "
            f"{s.seconds:.1f} s ({s.rows_per_s:,.0f} listings/s; {s.startup_s:.1f} s to start); "
            f"{', '.join(problems)}; "
            f"{s.needs_review:,} of {s.rows:,} need review; peak memory per worker "
            f"{s.worker_memory()}; written to {out}")
