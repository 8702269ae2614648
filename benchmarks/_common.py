"""Helpers shared by the benchmark scripts.

Only the standard library is imported at module level: ``train_scaling.py`` runs its parent
process on these helpers alone, so that the children it starts do not inherit a large peak RSS
(on Linux ``ru_maxrss`` survives ``exec``: a child reports at least its parent's peak).
"""

from __future__ import annotations

import argparse
import html
import json
import os
import platform
import re
import resource
import subprocess
import sys
import time
from collections.abc import Callable, Iterator, Sequence
from contextlib import contextmanager
from pathlib import Path
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    import pandas as pd
    from sklearn.pipeline import Pipeline

    from prodcat.data import Catalog

BENCH_DIR = Path(__file__).resolve().parent
REPO_DIR = BENCH_DIR.parent
RESULTS_DIR = BENCH_DIR / "results"
#: ``../shared/data`` next to the checkout (``/work/shared/data`` for ``/work/main``).
SHARED_DATA = REPO_DIR.parent / "shared" / "data"
DEFAULT_DATA = SHARED_DATA / "rakuten"
DEFAULT_OUT = Path("/tmp/prodcat-bench")

SYNTHETIC_NOTE = (
    "synthetic scaling data: real listings resampled with replacement (stratified by label) "
    "with word dropout, so copies differ; not new real listings"
)
NOISE_NOTE = (
    "The machine is shared and noisy: compare the prodcat/baseline ratios measured in the same "
    "run rather than absolute seconds across runs."
)


# --- arguments ---------------------------------------------------------------------------------


def base_parser(description: str, *, data: bool = True, out: bool = True,
                save: bool = True) -> argparse.ArgumentParser:
    """An argument parser with the options every benchmark shares."""
    parser = argparse.ArgumentParser(description=description,
                                     formatter_class=argparse.ArgumentDefaultsHelpFormatter)
    if data:
        parser.add_argument("--data", type=Path, default=DEFAULT_DATA,
                            help="labelled data set (any format prodcat.data.read_catalog reads)")
    if out:
        parser.add_argument("--out", type=Path, default=DEFAULT_OUT,
                            help="scratch folder for generated data, models and logs (outside the repo)")
    if save:
        parser.add_argument("--save", action="store_true",
                            help=f"also write a JSON + Markdown summary to {RESULTS_DIR}")
    return parser


def parse_int_list(text: str) -> list[int]:
    """``"2500,25_000, 85000"`` → ``[2500, 25000, 85000]`` (for ``argparse`` ``type=``)."""
    try:
        values = [int(part.strip().replace("_", "")) for part in text.split(",") if part.strip()]
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected comma-separated integers, got {text!r}") from None
    if not values or any(v <= 0 for v in values):
        raise argparse.ArgumentTypeError(f"expected positive integers, got {text!r}")
    return values


def data_missing(path: Path) -> bool:
    """True (after saying so) when the data set is absent; the caller then exits with 0."""
    if Path(path).expanduser().exists():
        return False
    print(f"Data not found at {path}: nothing to benchmark. Pass --data to point at a labelled "
          "data set (for example ../shared/data/rakuten).")
    return True


def load_labelled(path: Path, **options: Any) -> Catalog:
    """The labelled listings of the data set at ``path``."""
    from prodcat.data import read_catalog

    return read_catalog(path, **options).labelled()


def load_development(path: Path, **options: Any) -> Catalog:
    """The labelled listings at ``path`` that choices may be made on: on Rakuten, all but the
    frozen final-check split (``prodcat.evaluation.protocol.frozen_split``), which only
    ``final_check.py`` looks at."""
    from prodcat.evaluation.protocol import frozen_split

    catalog = load_labelled(path, **options)
    if catalog.format == "rakuten":
        catalog = catalog.subset(~frozen_split(catalog.frame["id"]))
    return catalog


def dataset_name(path: Path) -> str:
    path = Path(path)
    return (path.stem if path.is_file() else path.name) or "data"


# --- measuring ---------------------------------------------------------------------------------


def peak_rss_mb() -> float:
    """Peak resident set size of this process in MiB (``ru_maxrss``; KiB on Linux, bytes on macOS)."""
    peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    return peak / (1024 * 1024) if sys.platform == "darwin" else peak / 1024


def vm_hwm_mb() -> float | None:
    """Linux ``VmHWM`` (this address space's own peak RSS, reset by ``exec``), or None."""
    try:
        status = Path("/proc/self/status").read_text()
    except OSError:
        return None
    for line in status.splitlines():
        if line.startswith("VmHWM:"):
            return int(line.split()[1]) / 1024
    return None


def limit_cpus(n: int | None) -> int:
    """Pin this process to its first ``n`` allowed CPUs (Linux); return the CPUs it may use."""
    if hasattr(os, "sched_getaffinity"):
        allowed = sorted(os.sched_getaffinity(0))
        if n and n < len(allowed):
            os.sched_setaffinity(0, allowed[:n])
        return len(os.sched_getaffinity(0))
    return os.cpu_count() or 1


@contextmanager
def timer() -> Iterator[Callable[[], float]]:
    """``with timer() as elapsed: ...``; ``elapsed()`` gives seconds so far, frozen at exit."""
    start = time.perf_counter()
    end: list[float] = []
    yield lambda: (end[0] if end else time.perf_counter()) - start
    end.append(time.perf_counter())


def percentiles_ms(seconds: Sequence[float], qs: Sequence[float] = (50, 95, 99)) -> dict[str, float]:
    import numpy as np

    values = np.percentile(np.asarray(seconds) * 1000.0, qs)
    return {f"p{q:g}": float(v) for q, v in zip(qs, values, strict=True)}


def run_child(args: Sequence[str], *, timeout: float | None = None,
              env: dict[str, str] | None = None) -> dict[str, Any]:
    """Run ``python <args>`` in a fresh process; it prints one JSON object as its last stdout line.

    Returns that object plus ``process_wall_s``; on failure an object with ``error``.
    """
    cmd = [sys.executable, *map(str, args)]
    start = time.perf_counter()
    try:
        proc = subprocess.run(cmd, capture_output=True, text=True, timeout=timeout,
                              env={**os.environ, **(env or {})})
    except subprocess.TimeoutExpired:
        return {"error": f"timed out after {timeout:g} s", "process_wall_s": time.perf_counter() - start}
    wall = time.perf_counter() - start
    lines = [line for line in proc.stdout.splitlines() if line.strip()]
    if proc.returncode != 0 or not lines:
        tail = (proc.stderr or proc.stdout).strip().splitlines()[-5:]
        return {"error": f"exit {proc.returncode}: " + " | ".join(tail), "process_wall_s": wall}
    try:
        result = json.loads(lines[-1])
    except ValueError:
        return {"error": f"no JSON on the last line: {lines[-1][:200]}", "process_wall_s": wall}
    result["process_wall_s"] = wall
    return result


def emit_json(payload: dict[str, Any]) -> None:
    """The child side of :func:`run_child`."""
    sys.stdout.write(json.dumps(payload) + "\n")
    sys.stdout.flush()


# --- the plain baseline ------------------------------------------------------------------------


def baseline_pipeline() -> Pipeline:
    """The seeds' recipe, the baseline of every quality table: word 1–2-grams ⊕ char_wb
    3–5-grams (sublinear TF-IDF) on title + description, ``LinearSVC(C=0.5)``,
    sigmoid-calibrated (``CalibratedClassifierCV(cv=3)``, scikit-learn's defaults otherwise).
    Feed it :func:`baseline_texts`."""
    from sklearn.calibration import CalibratedClassifierCV
    from sklearn.feature_extraction.text import TfidfVectorizer
    from sklearn.pipeline import make_pipeline, make_union
    from sklearn.svm import LinearSVC

    features = make_union(
        TfidfVectorizer(ngram_range=(1, 2), sublinear_tf=True),
        TfidfVectorizer(analyzer="char_wb", ngram_range=(3, 5), sublinear_tf=True, min_df=2))
    return make_pipeline(features, CalibratedClassifierCV(LinearSVC(C=0.5), method="sigmoid", cv=3))


_TAG = re.compile(r"<[^>]*>")
_SPACE = re.compile(r"\s+")


def baseline_texts(frame: pd.DataFrame) -> list[str]:
    """``title + " " + description`` per listing, HTML unescaped and tags removed: the
    recipe's only input."""
    title = frame["title"].fillna("").astype(str)
    description = frame["description"].fillna("").astype(str)
    return [_SPACE.sub(" ", _TAG.sub(" ", html.unescape(t + " " + d))).strip()
            for t, d in zip(title, description, strict=True)]


def layouts_table(layouts: dict[str, dict[str, dict]], spreads: dict[str, dict] | None = None) -> str:
    """Markdown: weighted F1 per field layout, prodcat against the recipe (``layouts`` as
    ``{"prodcat": layout_scores(...), "recipe": layout_scores(...)}``); with ``spreads`` (per
    layout: the per-fold delta's mean, sd and folds better), a column saying how sure each
    delta is."""
    headers = ["layout", "prodcat", "recipe", "delta (points)"]
    if spreads:
        headers.append("per fold: delta mean ± sd (folds better)")
    rows = []
    for name, p in layouts["prodcat"].items():
        recipe = layouts["recipe"][name]["weighted_f1"]
        row = [name, p["weighted_f1"], recipe, f"{100 * (p['weighted_f1'] - recipe):+.2f}"]
        if spreads:
            s = spreads[name]
            row.append(f"{s['mean']:+.2f} ± {s['sd']:.2f} ({s['folds_better']}/{s['folds']})")
        rows.append(row)
    return markdown_table(headers, rows, digits=4)


def precision_coverage_table(cover: dict[str, list[dict]]) -> str:
    """Markdown: share filed at each target precision, prodcat against the recipe (``cover`` as
    ``{"prodcat": coverage_at_precision(...), "recipe": coverage_at_precision(...)}``)."""
    rows = [[f"{c['target_precision']:.0%}", f"{c['coverage']:.1%}", f"{r['coverage']:.1%}",
             f"{100 * (c['coverage'] - r['coverage']):+.1f}"]
            for c, r in zip(cover["prodcat"], cover["recipe"], strict=True)]
    return markdown_table(["precision", "prodcat", "recipe", "delta (points)"], rows)


def classification_scores(y_true: Sequence[object], y_pred: Sequence[object]) -> dict[str, float]:
    """Weighted F1, macro F1 and accuracy, computed the same way for every model."""
    import numpy as np
    from sklearn.metrics import accuracy_score, f1_score

    t = np.asarray(y_true, dtype=object).astype(str)
    p = np.asarray(y_pred, dtype=object).astype(str)
    return {
        "weighted_f1": float(f1_score(t, p, average="weighted", zero_division=0)),
        "macro_f1": float(f1_score(t, p, average="macro", zero_division=0)),
        "accuracy": float(accuracy_score(t, p)),
    }


# --- reporting ---------------------------------------------------------------------------------


def fmt(value: object, digits: int = 2) -> str:
    if value is None:
        return "–"
    if isinstance(value, bool):
        return "yes" if value else "no"
    if isinstance(value, int):
        return f"{value:,}"
    if isinstance(value, float):
        if abs(value) >= 1000:
            digits = 0
        elif abs(value) >= 100:
            digits = min(digits, 1)
        return f"{value:,.{digits}f}"
    return str(value)


def markdown_table(headers: Sequence[str], rows: Sequence[Sequence[object]], digits: int = 2) -> str:
    cells = [[fmt(v, digits) for v in row] for row in rows]
    lines = ["| " + " | ".join(headers) + " |",
             "|" + "|".join("---" if i == 0 else "--:" for i in range(len(headers))) + "|"]
    lines += ["| " + " | ".join(row) + " |" for row in cells]
    return "\n".join(lines)


def mb(value: float | None) -> int | None:
    """Megabytes rounded for a table."""
    return None if value is None else round(value)


def verdict(ok: bool | None) -> str:
    return "n/a" if ok is None else ("PASS" if ok else "FAIL")


def ratio(a: float | None, b: float | None) -> float | None:
    return None if a is None or not b else a / b


def machine_info() -> dict[str, Any]:
    """Where the numbers come from: they mean little without it."""
    info: dict[str, Any] = {
        "python": platform.python_version(),
        "platform": platform.platform(),
        "cpu_count": os.cpu_count(),
        "processor": platform.processor() or platform.machine(),
        "time": time.strftime("%Y-%m-%dT%H:%M:%S%z"),
    }
    if hasattr(os, "sched_getaffinity"):
        info["cpus_allowed"] = len(os.sched_getaffinity(0))
    if hasattr(os, "getloadavg"):
        info["load_average"] = [round(x, 2) for x in os.getloadavg()]
    try:
        from importlib.metadata import version

        info["versions"] = {lib: version(lib) for lib in ("prodcat", "scikit-learn", "numpy", "pandas")}
    except Exception:  # informative only: never fail a benchmark over it
        pass
    return info


def save_results(name: str, payload: dict[str, Any], markdown: str) -> list[Path]:
    """Write ``benchmarks/results/<name>.json`` and ``.md`` (a small summary, never data)."""
    RESULTS_DIR.mkdir(parents=True, exist_ok=True)
    json_path = RESULTS_DIR / f"{name}.json"
    md_path = RESULTS_DIR / f"{name}.md"
    json_path.write_text(json.dumps(payload, indent=2, ensure_ascii=False) + "\n", encoding="utf-8")
    md_path.write_text(markdown.rstrip() + "\n", encoding="utf-8")
    return [json_path, md_path]


def machine_line(info: dict[str, Any]) -> str:
    load = info.get("load_average")
    return (f"Machine: {info.get('cpus_allowed', info.get('cpu_count'))} CPU(s) usable, "
            f"Python {info['python']}, load average {load if load else 'n/a'} at {info['time']}.")
