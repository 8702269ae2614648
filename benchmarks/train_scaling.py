"""Training time and peak memory of prodcat's default Classifier against a plain baseline.

For each size, synthetic scaling data is generated once (in its own process, written to Parquet
under ``--out``), then each model is trained in a fresh process that reports its fit wall time
and peak RSS (``ru_maxrss``) as JSON. Data generation and reading are not timed. The baseline is
the seeds' recipe (``_common.baseline_pipeline``) on ``title + " " + description``. prodcat's
first fit starts from an empty embedding cache (sentence encodings are part of its time).

Targets (from the issue): 85,000 listings trained in under 180 s and under 4 GB on 2 cores.

    python benchmarks/train_scaling.py --sizes 2500,5000
"""

from __future__ import annotations

import argparse
import shutil
import sys
from pathlib import Path
from typing import Any

from _common import (
    BENCH_DIR,
    NOISE_NOTE,
    SYNTHETIC_NOTE,
    base_parser,
    baseline_pipeline,
    baseline_texts,
    data_missing,
    emit_json,
    limit_cpus,
    machine_info,
    machine_line,
    markdown_table,
    mb,
    parse_int_list,
    peak_rss_mb,
    ratio,
    run_child,
    save_results,
    timer,
    verdict,
    vm_hwm_mb,
)

MODELS = ("prodcat", "prodcat-rerun", "baseline")
DEFAULT_SIZES = "2500,25000,85000"


# --- child: one (size, model) run --------------------------------------------------------------


def fit_once(model: str, data: Path, cpus: int | None, fit_cache: Path | None = None) -> dict[str, Any]:
    """Train ``model`` on the Parquet file ``data`` in this process; time and peak memory.

    ``prodcat`` fits with an empty fit cache in ``fit_cache`` (filling it is part of its time);
    ``prodcat-rerun`` is the same training again in a new process, loading from that cache."""
    import gc
    import warnings

    import pandas as pd

    cpus_used = limit_cpus(cpus)
    frame = pd.read_parquet(data)
    if model.startswith("prodcat"):
        from prodcat.model import Classifier

        estimator: Any = Classifier(memory=str(fit_cache) if fit_cache else None)
        X: Any = frame.loc[:, ["title", "description", "image"]]
        y: Any = frame["label"]
    else:
        estimator = baseline_pipeline()
        X, y = frame, frame["label"].astype(str).to_numpy()
    gc.collect()
    rss_before = peak_rss_mb()
    with warnings.catch_warnings(record=True) as caught, timer() as elapsed:
        warnings.simplefilter("always")
        if model.startswith("prodcat"):
            estimator.fit(X, y)
        else:  # building the baseline's text is part of its work, like prodcat's cleaning
            estimator.fit(baseline_texts(X), y)
    n_features = (_text_features(estimator.text_) if model.startswith("prodcat")
                  else sum(len(v.vocabulary_) for _, v in estimator[0].transformer_list))
    return {
        "model": model,
        "n": len(frame),
        "fit_s": elapsed(),
        "peak_rss_mb": peak_rss_mb(),
        "vm_hwm_mb": vm_hwm_mb(),
        "peak_rss_before_fit_mb": rss_before,
        "n_features": int(n_features),
        "cpus": cpus_used,
        "warnings": sorted({f"{w.category.__name__}: {str(w.message)[:150]}" for w in caught}),
    }


def _text_features(text: Any) -> int:
    """Features of the text model, summed over an ensemble's members."""
    members = getattr(text, "members_", None)
    models = members.values() if members else [text]
    return sum(getattr(m, "n_features_", 0) for m in models)


# --- parent: orchestration (standard library only, so children inherit a small peak RSS) -------


def run_size(size: int, args: Any) -> dict[str, Any]:
    path = args.out / f"scaling_{size}_seed{args.seed}_dropout{args.dropout:g}.parquet"
    generated = run_child([BENCH_DIR / "scaling_data.py", "--data", args.data, "--n", size,
                           "--seed", args.seed, "--dropout", args.dropout, "--write", path, "--json"],
                          timeout=args.timeout)
    row: dict[str, Any] = {"size": size, "data": generated}
    if "error" in generated:
        return row
    threads = str(args.cpus or "")
    env = {k: threads for k in ("OMP_NUM_THREADS", "OPENBLAS_NUM_THREADS", "MKL_NUM_THREADS")} if threads else {}
    fit_cache = args.out / f"fits_{size}"
    shutil.rmtree(fit_cache, ignore_errors=True)
    # An empty embedding cache: the first prodcat fit encodes every text (cold), the re-run reads.
    cache = args.out / f"cache_{size}"
    shutil.rmtree(cache, ignore_errors=True)
    env["PRODCAT_CACHE_DIR"] = str(cache)
    for model in MODELS:
        print(f"  n={size:,}: training {model} …", file=sys.stderr, flush=True)
        child = ["-W", "ignore", Path(__file__).resolve(), "--child", model, "--child-data", path,
                 "--fit-cache", fit_cache]
        if args.cpus:
            child += ["--cpus", args.cpus]
        row[model] = run_child(child, timeout=args.timeout, env=env)
        if "error" in row[model]:
            print(f"  n={size:,}: {model} failed: {row[model]['error']}", file=sys.stderr)
        else:
            print(f"  n={size:,}: {model} {row[model]['fit_s']:.1f} s, "
                  f"{row[model]['peak_rss_mb']:.0f} MB", file=sys.stderr, flush=True)
    return row


def _get(row: dict[str, Any], model: str, key: str) -> Any:
    return row.get(model, {}).get(key)


def report(rows: list[dict[str, Any]], args: Any, info: dict[str, Any]) -> tuple[str, dict[str, Any]]:
    table = markdown_table(
        ["size", "prodcat fit s", "prodcat peak MB", "baseline fit s", "baseline peak MB",
         "prodcat/baseline time", "prodcat/baseline memory"],
        [[r["size"], _get(r, "prodcat", "fit_s"), mb(_get(r, "prodcat", "peak_rss_mb")),
          _get(r, "baseline", "fit_s"), mb(_get(r, "baseline", "peak_rss_mb")),
          ratio(_get(r, "prodcat", "fit_s"), _get(r, "baseline", "fit_s")),
          ratio(_get(r, "prodcat", "peak_rss_mb"), _get(r, "baseline", "peak_rss_mb"))]
         for r in rows])
    at = next((r for r in rows if r["size"] == args.target_size), None)
    fit_s = _get(at, "prodcat", "fit_s") if at else None
    peak = _get(at, "prodcat", "peak_rss_mb") if at else None
    cpus = _get(at, "prodcat", "cpus") if at else None
    # A run killed by --timeout (no shorter than the target) has missed the time target.
    timed_out = bool(at) and "timed out" in str(_get(at, "prodcat", "error"))
    time_pass = (fit_s < args.time_target if fit_s is not None
                 else False if timed_out and args.timeout >= args.time_target else None)
    if fit_s is not None:
        where = f"measured at n={args.target_size:,} on {cpus} CPU(s)"
    elif timed_out:
        where = f"n={args.target_size:,} timed out after {args.timeout:g} s"
    else:
        where = f"not measured: n={args.target_size:,} is not in --sizes or failed"
    targets = {
        "time": {"target_s": args.time_target, "value_s": fit_s, "pass": time_pass},
        "memory": {"target_mb": args.memory_target, "value_mb": peak,
                   "pass": None if peak is None else peak < args.memory_target},
    }
    target_table = markdown_table(
        ["target (prodcat Classifier)", "value", "result"],
        [[f"fit {args.target_size:,} listings in < {args.time_target:g} s", fit_s,
          verdict(targets["time"]["pass"])],
         [f"peak memory < {args.memory_target:g} MB", mb(peak), verdict(targets["memory"]["pass"])]])
    before = min((_get(r, m, "peak_rss_before_fit_mb") or float("inf") for r in rows for m in MODELS),
                 default=None)
    before = None if before == float("inf") else before
    errors = [f"- n={r['size']:,} {m}: {r[m]['error']}" for r in rows for m in ("data", *MODELS)
              if isinstance(r.get(m), dict) and "error" in r[m]]
    rerun = markdown_table(
        ["size", "first fit s (filling the fit cache)", "re-run s (same data, new process)", "first/re-run ×"],
        [[r["size"], _get(r, "prodcat", "fit_s"), _get(r, "prodcat-rerun", "fit_s"),
          ratio(_get(r, "prodcat", "fit_s"), _get(r, "prodcat-rerun", "fit_s"))] for r in rows])
    parts = [
        "## Training time and peak memory: prodcat Classifier() vs the seeds' recipe",
        f"Data: **{SYNTHETIC_NOTE}** (from {args.data}, seed {args.seed}, dropout {args.dropout:g}).",
        "Each (size, model) ran in a fresh process; fit wall time excludes data generation and "
        "reading; peak MB is that process's `ru_maxrss`, which includes the interpreter, imports "
        f"and the loaded data (about {mb(before) if before else '?'} MB before fitting).",
        table,
        f"Targets ({where}):",
        target_table,
        "Re-running the same training (`Classifier(memory=...)`, what `prodcat train` does by "
        "default): the second process hashes the listings and loads the fitted model from the fit "
        "cache instead of fitting it.",
        rerun,
        machine_line(info),
        NOISE_NOTE,
    ]
    if errors:
        parts.append("Failed runs:\n" + "\n".join(errors))
    markdown = "\n\n".join(parts)
    payload = {"benchmark": "train_scaling", "note": SYNTHETIC_NOTE, "data": str(args.data),
               "seed": args.seed, "dropout": args.dropout, "cpus": args.cpus, "machine": info,
               "targets": targets, "target_size": args.target_size, "runs": rows}
    return markdown, payload


def main(argv: list[str] | None = None) -> int:
    parser = base_parser(__doc__.split("\n\n")[0])
    parser.add_argument("--sizes", type=parse_int_list, default=DEFAULT_SIZES,
                        help="comma-separated numbers of listings")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--dropout", type=float, default=0.15, help="word dropout of the scaling data")
    parser.add_argument("--cpus", type=int, default=2,
                        help="pin each training process to this many CPUs (0: no pinning)")
    parser.add_argument("--timeout", type=float, default=3600, help="seconds allowed per run")
    parser.add_argument("--target-size", type=int, default=85_000)
    parser.add_argument("--time-target", type=float, default=180.0, help="seconds")
    parser.add_argument("--memory-target", type=float, default=4096.0, help="MB")
    parser.add_argument("--child", choices=MODELS, help=argparse.SUPPRESS)
    parser.add_argument("--child-data", type=Path, help=argparse.SUPPRESS)
    parser.add_argument("--fit-cache", type=Path, help=argparse.SUPPRESS)
    args = parser.parse_args(argv)

    if args.child:
        emit_json(fit_once(args.child, args.child_data, args.cpus, args.fit_cache))
        return 0
    if data_missing(args.data):
        return 0
    args.out.mkdir(parents=True, exist_ok=True)
    info = machine_info()
    rows = [run_size(size, args) for size in args.sizes]
    markdown, payload = report(rows, args, info)
    print(markdown)
    if args.save:
        for path in save_results("train_scaling", payload, markdown):
            print(f"wrote {path}", file=sys.stderr)
    return 0


if __name__ == "__main__":
    sys.exit(main())
