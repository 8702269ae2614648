"""A batch job's output folder: one Parquet file per partition, written atomically, and a manifest.

Layout::

    OUT/
      _prodcat_job.json     what the job is (input and bundle fingerprints, partitioning, k,
                            threshold), its state, and the summary of the last run
      part-00000.parquet    partition 0's rows, in input order
      part-00001.parquet    ...

A part file appears only complete (written to a hidden temporary file, then renamed), so after
a crash or a kill every ``part-*.parquet`` present is a finished partition; a restart with the
same command skips those. A restart against a different input, bundle or partitioning refuses
(naming what changed) unless asked to start clean. Names starting with ``_`` or ``.`` are ignored
by Parquet dataset readers: ``pandas.read_parquet(OUT)`` reads just the predictions.
"""

from __future__ import annotations

import datetime as _dt
import json
import os
import re
from collections.abc import Callable
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

import prodcat
from prodcat.errors import ConfigError

JOB_FILE = "_prodcat_job.json"
JOB_FORMAT = "prodcat-batch-job"
JOB_VERSION = 1
_PART = re.compile(r"part-(\d{5,})\.parquet")
_TEMP = re.compile(r"\.part-\d{5,}\.parquet\..*\.tmp")

#: Manifest entries that must match for a job to be resumed, and how to name them to a user.
RESUME_KEYS = {
    ("kind",): "the job kind",
    ("input", "sha256"): "the input file's content (sha256)",
    ("input", "path"): "the input file",
    ("input", "columns"): "the input columns",
    ("input", "image_root"): "the image folder",
    ("model", "fingerprint"): "the model bundle",
    ("partition_rows",): "--partition-rows",
    ("top_k",): "--top-k",
    ("threshold",): "the review threshold",
    ("columns",): "the output columns",
}


def part_name(index: int) -> str:
    return f"part-{index:05d}.parquet"


def _get(d: dict, path: tuple[str, ...]) -> Any:
    for key in path:
        d = d.get(key) if isinstance(d, dict) else None
    return d


def _short(value: Any) -> str:
    text = json.dumps(value, ensure_ascii=False) if not isinstance(value, str) else value
    return text[:12] + "…" if len(text) == 64 and re.fullmatch(r"[0-9a-f]+", text) else text


class OutputFolder:
    """The output folder of one job."""

    def __init__(self, path: str | os.PathLike):
        self.path = Path(path)
        self.job_file = self.path / JOB_FILE

    def parts(self) -> dict[int, Path]:
        """The finished partitions present, by index."""
        if not self.path.is_dir():
            return {}
        found = {}
        for p in self.path.iterdir():
            m = _PART.fullmatch(p.name)
            if m:
                found[int(m.group(1))] = p
        return dict(sorted(found.items()))

    def read_job(self) -> dict[str, Any] | None:
        if not self.job_file.is_file():
            return None
        try:
            job = json.loads(self.job_file.read_text(encoding="utf-8"))
        except (ValueError, UnicodeDecodeError, OSError):
            return {}
        return job if isinstance(job, dict) and job.get("format") == JOB_FORMAT else {}

    def prepare(self, spec: dict[str, Any], *, restart: bool = False,
                echo: Callable[[str], None] = print) -> set[int]:
        """Check the folder against ``spec``, record the job and return the partitions already done.

        A new or empty folder starts a job; a folder holding the same job resumes it; anything
        else is refused with a message, except with ``restart`` for an earlier prodcat job,
        whose files are then deleted.
        """
        if self.path.exists() and not self.path.is_dir():
            raise ConfigError(f"--out {self.path} is a file; batch output is a folder of Parquet parts")
        old = self.read_job()
        if old is None:
            if self.path.is_dir() and any(self.path.iterdir()):
                raise ConfigError(f"--out {self.path} exists and is not a prodcat batch output folder; "
                                  "not writing into it (give a new or empty folder)")
            return self._start(spec)
        differences = self.differences(old, spec)
        if not differences and not restart:
            self._clean_temp()
            done = self._check_parts()
            self._write_job({**spec, "state": "running", "created_at": old.get("created_at"),
                             "summary": old.get("summary")})
            if done:
                echo(f"resuming the job in {self.path}: {len(done)} partition(s) already done")
            return done
        if not restart:
            n = len(self.parts())
            raise ConfigError(f"{self.path} holds {n} partition(s) of another job ({'; '.join(differences)}); "
                              "rerun with --restart to delete them and start again, or choose another --out")
        n = self.clear()
        if n:
            echo(f"--restart: deleted {n} partition(s) of the earlier job in {self.path}")
        return self._start(spec)

    @staticmethod
    def differences(old: dict[str, Any], spec: dict[str, Any]) -> list[str]:
        """What differs between the recorded job and this one, in words."""
        if not old:
            return ["its manifest is unreadable"]
        out = []
        for path, label in RESUME_KEYS.items():
            before, now = _get(old, path), _get(spec, path)
            if before != now:
                out.append(f"{label} changed: {_short(before)} → {_short(now)}")
        return out

    def _start(self, spec: dict[str, Any]) -> set[int]:
        self.path.mkdir(parents=True, exist_ok=True)
        self._write_job({**spec, "state": "running", "created_at": _now(), "summary": None})
        return set()

    def _check_parts(self) -> set[int]:
        """Finished partitions; one whose footer cannot be read (damaged since) is done again."""
        import pyarrow.parquet as pq

        done = set()
        for index, path in self.parts().items():
            try:
                pq.read_metadata(path)
                done.add(index)
            except Exception:
                path.unlink(missing_ok=True)
        return done

    def _clean_temp(self) -> None:
        for p in self.path.iterdir():
            if _TEMP.fullmatch(p.name):
                p.unlink(missing_ok=True)

    def clear(self) -> int:
        """Delete this folder's prodcat files (parts, temporaries, manifest); returns the parts deleted."""
        parts = self.parts()
        for p in parts.values():
            p.unlink(missing_ok=True)
        if self.path.is_dir():
            self._clean_temp()
        self.job_file.unlink(missing_ok=True)
        return len(parts)

    def write_part(self, index: int, table) -> Path:
        """Write a ``pyarrow.Table`` as partition ``index``: a temporary file, then a rename."""
        import pyarrow.parquet as pq

        final = self.path / part_name(index)
        tmp = self.path / f".{final.name}.{os.getpid()}.tmp"
        try:
            pq.write_table(table, tmp)
            os.replace(tmp, final)
        finally:
            tmp.unlink(missing_ok=True)
        return final

    def _write_job(self, job: dict[str, Any]) -> None:
        job = {"format": JOB_FORMAT, "format_version": JOB_VERSION, "prodcat": prodcat.__version__,
               **{k: v for k, v in job.items() if k not in ("format", "format_version", "prodcat")}}
        tmp = self.job_file.with_name(f".{JOB_FILE}.{os.getpid()}.tmp")
        tmp.write_text(json.dumps(job, indent=2, ensure_ascii=False), encoding="utf-8")
        os.replace(tmp, self.job_file)

    def finish(self, summary: dict[str, Any]) -> None:
        job = self.read_job() or {}
        self._write_job({**job, "state": "complete", "finished_at": _now(), "summary": summary})


def _now() -> str:
    return _dt.datetime.now(_dt.timezone.utc).isoformat(timespec="seconds")


@dataclass
class JobSummary:
    """What a run did; printed at the end and stored in the job manifest."""

    kind: str
    engine: str
    rows: int = 0              # input rows in the output, this run and earlier ones
    rows_run: int = 0          # rows processed by this run
    partitions: int = 0
    partitions_run: int = 0
    partitions_skipped: int = 0
    startup_s: float = 0.0     # starting or joining the cluster, each worker loading the bundle
    seconds: float = 0.0       # wall time of the partition loop (startup excluded)
    failed: int = 0            # rows without an answer (no text and no photo, or the model failed)
    needs_review: int = 0
    photos_missing: int = 0    # named by a row, not on disk
    photos_unusable: int = 0   # on disk but corrupt, not an image, too large ...
    client_peak_rss_mb: float | None = None
    workers: list[dict[str, Any]] = field(default_factory=list)
    extra: dict[str, Any] = field(default_factory=dict)

    @property
    def rows_per_s(self) -> float:
        return self.rows_run / self.seconds if self.seconds > 0 else 0.0

    def to_dict(self) -> dict[str, Any]:
        return {**asdict(self), "rows_per_s": round(self.rows_per_s, 1), "seconds": round(self.seconds, 3)}

    def worker_memory(self) -> str:
        peaks = [w.get("peak_rss_mb") for w in self.workers if w.get("peak_rss_mb") is not None]
        return "/".join(f"{p:.0f}" for p in peaks) + " MB" if peaks else "n/a"
