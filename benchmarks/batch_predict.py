"""Batch classification on Dask (``prodcat predict --out FOLDER``) against the single-process
``prodcat predict --out file.parquet``, measured in the same run.

Every measured run is the real command in a fresh process (interpreter start, imports, bundle
load, reading, cluster start and writing included), one after the other:

1. **photos**: the 2,000 real listings of ``--unlabelled`` (``rakuten_unlabelled``, every one with
   its photo) with a text + photo model trained here on ``--data``; single process, 1 and 2
   local workers. Each run starts with an empty embedding cache, so every photo is encoded.
2. **text at scale**: ``--big`` (200,000) text-only listings of synthetic scaling data (real
   Rakuten listings resampled, see ``scaling_data.py``) in a Parquet file, with a text-only
   model; single process, 1 and 2 workers.
3. **memory as the input grows**: ``--sizes`` listings, single process and 2 workers: the peak
   memory of the single process grows with the input (it reads it all), a worker's stays flat.
4. **engine overhead at small sizes**: ``--small`` listings; single process, the partitioned job
   in one process (``--workers 0``), 1 and 2 workers.
5. **photo embedding** (``prodcat embed``, ``--embed``): the 2,000 photos into an empty cache in
   one process and with 1 and 2 workers.

Runs 1, 2 and 5 are repeated ``--repeats`` times in rotation and the fastest of each counts: the
machine is shared, and other people's load comes and goes during a run.

Rates are listings (or photos) per second of the whole command; the Dask job's own rate (the
partition loop, cluster start excluded) is reported next to it. Peak memory: the command's
process (``VmHWM``), and each Dask worker's own peak (reported by the workers into the job's
``_prodcat_job.json``).

    python benchmarks/batch_predict.py --save
"""

from __future__ import annotations

import argparse
import json
import shutil
import sys
import time
from pathlib import Path
from typing import Any

from _common import (
    NOISE_NOTE,
    SHARED_DATA,
    SYNTHETIC_NOTE,
    base_parser,
    data_missing,
    emit_json,
    load_labelled,
    machine_info,
    machine_line,
    markdown_table,
    parse_int_list,
    ratio,
    run_child,
    save_results,
    vm_hwm_mb,
)

JOB_FILE = "_prodcat_job.json"


# --- the child: one prodcat command -------------------------------------------------------------


def child(argv: list[str]) -> dict[str, Any]:
    """Run ``prodcat <argv>`` in this (fresh) process; its wall time and peak memory."""
    from prodcat.cli import main

    start = time.perf_counter()
    code = main(argv)
    return {"rc": code, "wall_s": time.perf_counter() - start, "peak_rss_mb": vm_hwm_mb()}


def run_prodcat(argv: list[str], *, env: dict[str, str] | None = None, timeout: float = 900) -> dict[str, Any]:
    result = run_child([Path(__file__).resolve(), "--child", "--", *argv], env=env, timeout=timeout)
    if "error" in result:
        raise RuntimeError(f"prodcat {' '.join(argv)} failed: {result['error']}")
    if result.get("rc") != 0:
        raise RuntimeError(f"prodcat {' '.join(argv)} exited with {result.get('rc')}")
    return result


def predict(model: Path, data: Path, mode: str, out_dir: Path, n: int, *,
            env: dict[str, str] | None = None, partition_rows: int) -> dict[str, Any]:
    """One ``prodcat predict`` over ``data`` (``n`` listings): mode ``single``, or ``wN``."""
    if mode == "single":
        out = out_dir / "predictions.parquet"
        args = ["predict", "--model", str(model), "--data", str(data), "--out", str(out)]
    else:
        out = out_dir / f"predictions-{mode}"
        args = ["predict", "--model", str(model), "--data", str(data), "--out", str(out),
                "--workers", mode[1:], "--partition-rows", str(partition_rows)]
    shutil.rmtree(out, ignore_errors=True) if out.is_dir() else out.unlink(missing_ok=True)
    res = run_prodcat(args, env=env)
    row: dict[str, Any] = {"mode": mode, "n": n, "wall_s": res["process_wall_s"],
                           "listings_per_s": n / res["process_wall_s"], "client_peak_mb": res["peak_rss_mb"]}
    if mode != "single":
        summary = json.loads((out / JOB_FILE).read_text())["summary"]
        row.update({"job_listings_per_s": summary["rows_per_s"], "startup_s": summary["startup_s"],
                    "loop_s": summary["seconds"], "partitions": summary["partitions"],
                    "failed": summary["failed"],
                    "worker_peak_mb": [w["peak_rss_mb"] for w in summary["workers"]],
                    "worker_loads": [sum(w["loads"].values()) for w in summary["workers"]]})
    shutil.rmtree(out, ignore_errors=True) if out.is_dir() else out.unlink(missing_ok=True)
    return row


def best_of(modes: list[str], repeats: int, run: Any) -> list[dict[str, Any]]:
    """``run(mode)`` for every mode, ``repeats`` rounds in rotation (single, w1, w2, single, ...);
    per mode the fastest run, with every run's wall time in ``walls_s``. Other people's load
    comes and goes on a shared machine: the least disturbed run is the best estimate, and
    rotating spreads the disturbance over the modes instead of onto one of them."""
    runs: dict[str, list[dict[str, Any]]] = {m: [] for m in modes}
    for _ in range(repeats):
        for mode in modes:
            runs[mode].append(run(mode))
    best = []
    for mode in modes:
        fastest = min(runs[mode], key=lambda r: r["wall_s"])
        best.append({**fastest, "walls_s": [round(r["wall_s"], 2) for r in runs[mode]]})
    return best


# --- models and data -----------------------------------------------------------------------------


def train_models(args: argparse.Namespace, catalog) -> dict[str, Path]:
    """A text-only bundle and a text + photo bundle trained on ``catalog`` (or the ones given)."""
    from prodcat.model import Classifier

    models = {}
    text = args.model or args.out / "model-text"
    if args.model is None:
        print(f"training a text-only model on {len(catalog):,} listings ...", file=sys.stderr)
        Classifier().fit(catalog.X, catalog.y, taxonomy=catalog.taxonomy).save(text)
    models["text"] = Path(text)
    if not args.skip_photos:
        photo = args.image_model or args.out / "model-photo"
        if args.image_model is None:
            from prodcat.image import ImageClassifier, create_encoder

            create_encoder().ensure_export()
            print("training a text + photo model ...", file=sys.stderr)
            Classifier(image=ImageClassifier()).fit(
                catalog.X, catalog.y, taxonomy=catalog.taxonomy).save(photo)
        models["photo"] = Path(photo)
    return models


def write_scaled(catalog, n: int, path: Path, seed: int) -> Path:
    """``n`` text-only synthetic listings as Parquet (row groups of 10,000, as a data lake writes)."""
    from scaling_data import make_scaled_catalog

    if path.is_file():
        return path
    frame, _ = make_scaled_catalog(catalog, n, seed=seed)
    path.parent.mkdir(parents=True, exist_ok=True)
    frame[["id", "title", "description"]].to_parquet(path, index=False, row_group_size=10_000)
    return path


def fresh_cache(root: Path, name: str) -> dict[str, str]:
    """An empty embedding cache that still holds the exported encoder: every photo is encoded."""
    from prodcat.image import create_encoder

    encoder = create_encoder()
    onnx = encoder.ensure_export()
    cache = root / name
    shutil.rmtree(cache, ignore_errors=True)
    (cache / "encoders").mkdir(parents=True)
    for src in (onnx, encoder.hash_path):
        shutil.copyfile(src, cache / "encoders" / src.name)
    return {"PRODCAT_CACHE_DIR": str(cache)}


# --- the measurements ----------------------------------------------------------------------------


def measure(args: argparse.Namespace) -> dict[str, Any]:
    catalog = load_labelled(args.data)
    args.out.mkdir(parents=True, exist_ok=True)
    models = train_models(args, catalog)
    scratch = args.out / "runs"
    scratch.mkdir(exist_ok=True)
    modes = ["single", *(f"w{w}" for w in args.workers)]
    res: dict[str, Any] = {"models": {k: str(v) for k, v in models.items()}}

    def log(row: dict[str, Any], what: str) -> None:
        extra = f", workers {row.get('worker_peak_mb')} MB" if "worker_peak_mb" in row else ""
        print(f"  {what} {row['mode']:>6} n={row['n']:,}: {row['wall_s']:.1f} s, "
              f"{row['listings_per_s']:,.0f}/s, client {row['client_peak_mb']:.0f} MB{extra}", file=sys.stderr)

    if "photo" in models and not data_missing(args.unlabelled):
        from prodcat.data import read_catalog

        n = len(read_catalog(args.unlabelled).frame)
        print(f"photos: {n:,} listings of {args.unlabelled}", file=sys.stderr)

        def photo_run(mode: str) -> dict[str, Any]:
            env = fresh_cache(args.out, f"cache-{mode}")
            row = predict(models["photo"], args.unlabelled, mode, scratch, n, env=env,
                          partition_rows=args.photo_partition_rows)
            log(row, "photos")
            return row

        res["photos"] = {"data": str(args.unlabelled), "n": n,
                         "runs": best_of(modes, args.repeats, photo_run)}

    big = write_scaled(catalog, args.big, args.out / f"batch_text_{args.big}_seed{args.seed}.parquet", args.seed)
    print(f"text at scale: {args.big:,} synthetic listings", file=sys.stderr)

    def text_run(mode: str) -> dict[str, Any]:
        row = predict(models["text"], big, mode, scratch, args.big, partition_rows=args.partition_rows)
        log(row, "text")
        return row

    rows = best_of(modes, args.repeats, text_run)
    res["text"] = {"n": args.big, "runs": rows}

    growth = []
    for n in args.sizes:
        if n == args.big:
            growth += [r for r in rows if r["mode"] in ("single", f"w{max(args.workers)}")]
            continue
        path = write_scaled(catalog, n, args.out / f"batch_text_{n}_seed{args.seed}.parquet", args.seed)
        for mode in ("single", f"w{max(args.workers)}"):
            growth.append(predict(models["text"], path, mode, scratch, n, partition_rows=args.partition_rows))
            log(growth[-1], "growth")
    res["growth"] = growth

    small = []
    for n in args.small:
        path = write_scaled(catalog, n, args.out / f"batch_text_{n}_seed{args.seed}.parquet", args.seed)
        for mode in ("single", "w0", *(f"w{w}" for w in args.workers)):
            small.append(predict(models["text"], path, mode, scratch, n, partition_rows=args.partition_rows))
            log(small[-1], "small")
    res["small"] = small

    if args.embed and "photo" in models and not data_missing(args.unlabelled):
        from prodcat.image import EmbeddingCache

        def embed_run(mode: str) -> dict[str, Any]:
            env = fresh_cache(args.out, f"cache-embed-{mode}")
            r = run_prodcat(["embed", "--data", str(args.unlabelled), "--workers", mode[1:]], env=env)
            with EmbeddingCache(Path(env["PRODCAT_CACHE_DIR"]) / "embeddings.sqlite") as cache:
                stored = cache.count()
            print(f"  embed {mode}: {stored} photos in {r['process_wall_s']:.1f} s", file=sys.stderr)
            return {"mode": mode, "wall_s": r["process_wall_s"], "photos": stored,
                    "photos_per_s": stored / r["process_wall_s"], "client_peak_mb": r["peak_rss_mb"]}

        res["embed"] = best_of(["w0", *(f"w{w}" for w in args.workers)], args.repeats, embed_run)
    shutil.rmtree(scratch, ignore_errors=True)
    return res


# --- the report ----------------------------------------------------------------------------------


def _mb(values: list[float] | None) -> str:
    return "–" if not values else " / ".join(f"{v:.0f}" for v in values)


def speed_table(runs: list[dict[str, Any]]) -> str:
    base = next(r for r in runs if r["mode"] == "single")
    rows = []
    for r in runs:
        rows.append([_mode_name(r["mode"]), r["wall_s"], r["listings_per_s"],
                     ratio(r["listings_per_s"], base["listings_per_s"]),
                     r.get("job_listings_per_s"), r.get("startup_s"), r["client_peak_mb"],
                     _mb(r.get("worker_peak_mb"))])
    return markdown_table(["run", "wall (s)", "listings/s", "× single process", "job loop listings/s",
                           "start (s)", "command peak MB", "peak MB per worker"], rows)


def _mode_name(mode: str) -> str:
    return {"single": "single process (`--out file.parquet`)",
            "w0": "partitioned, in one process (`--workers 0`)"}.get(mode, f"Dask, `--workers {mode[1:]}`")


def report(res: dict[str, Any], args: argparse.Namespace, info: dict[str, Any]) -> tuple[str, dict[str, Any]]:
    parts = ["## Batch classification on Dask vs single-process `prodcat predict`",
             f"Partitions of {args.partition_rows:,} listings for text ({args.photo_partition_rows:,} with "
             f"photos); local workers are processes with one thread each. Rates are for the whole "
             f"command (interpreter start, imports, bundle load, cluster start, reading, writing); "
             f"'job loop' is the partition loop alone. Photo, 200k and embed runs: the fastest of "
             f"{args.repeats} rounds run in rotation (every wall time in the JSON)."]
    if "photos" in res:
        p = res["photos"]
        parts += [f"### {p['n']:,} real listings with photos ({Path(p['data']).name}), text + photo model, "
                  "every photo encoded (empty embedding cache)", speed_table(p["runs"])]
    t = res["text"]
    parts += [f"### {t['n']:,} text-only listings of {SYNTHETIC_NOTE}, text-only model",
              speed_table(t["runs"])]
    growth = res["growth"]
    rows = []
    for n in sorted({r["n"] for r in growth}):
        single = next(r for r in growth if r["n"] == n and r["mode"] == "single")
        dask = next(r for r in growth if r["n"] == n and r["mode"] != "single")
        rows.append([n, single["client_peak_mb"], dask["client_peak_mb"], _mb(dask.get("worker_peak_mb")),
                     single["listings_per_s"], dask["listings_per_s"]])
    parts += ["### Peak memory as the input grows (text only)",
              markdown_table(["listings", "single process peak MB", "Dask client peak MB",
                              "peak MB per worker", "single listings/s", "Dask listings/s"], rows),
              "The single process reads the whole catalogue; the Dask client streams it in partitions "
              "(a few in flight) and each worker holds the model and one partition."]
    rows = []
    for n in args.small:
        runs = [r for r in res["small"] if r["n"] == n]
        single = next(r for r in runs if r["mode"] == "single")
        for r in runs:
            rows.append([n, _mode_name(r["mode"]), r["wall_s"],
                         r["wall_s"] - single["wall_s"] if r["mode"] != "single" else None,
                         r.get("startup_s")])
    parts += ["### Engine overhead at small sizes",
              markdown_table(["listings", "run", "wall (s)", "overhead vs single process (s)",
                              "cluster start + bundle load (s)"], rows)]
    if "embed" in res:
        base = next(r for r in res["embed"] if r["mode"] == "w0")
        rows = [[_mode_name(r["mode"]).replace("partitioned", "embedding"), r["photos"], r["wall_s"],
                 r["photos_per_s"], ratio(r["photos_per_s"], base["photos_per_s"])] for r in res["embed"]]
        parts += ["### `prodcat embed`: the 2,000 photos into an empty embedding cache",
                  markdown_table(["run", "photos stored", "wall (s)", "photos/s", "× one process"], rows)]
    parts += [machine_line(info), NOISE_NOTE]
    markdown = "\n\n".join(parts)
    payload = {"benchmark": "batch_predict", "note": SYNTHETIC_NOTE, "data": str(args.data),
               "unlabelled": str(args.unlabelled), "partition_rows": args.partition_rows,
               "photo_partition_rows": args.photo_partition_rows, "machine": info, "results": res}
    return markdown, payload


def main(argv: list[str] | None = None) -> int:
    parser = base_parser(__doc__.split("\n\n")[0])
    parser.add_argument("--unlabelled", type=Path, default=SHARED_DATA / "rakuten_unlabelled",
                        help="real listings with photos to classify")
    parser.add_argument("--model", type=Path, default=None, help="a text-only bundle (else trained on --data)")
    parser.add_argument("--image-model", type=Path, default=None,
                        help="a text + photo bundle (else trained on --data)")
    parser.add_argument("--skip-photos", action="store_true", help="text-only measurements only")
    parser.add_argument("--big", type=int, default=200_000, help="listings of the text-only catalogue")
    parser.add_argument("--sizes", type=parse_int_list, default=[20_000, 50_000, 200_000],
                        help="input sizes for the memory-growth table")
    parser.add_argument("--small", type=parse_int_list, default=[100, 1_000], help="sizes for the overhead table")
    parser.add_argument("--workers", type=parse_int_list, default=[1, 2], help="local worker counts")
    parser.add_argument("--partition-rows", type=int, default=5_000)
    parser.add_argument("--photo-partition-rows", type=int, default=250)
    parser.add_argument("--embed", action=argparse.BooleanOptionalAction, default=True,
                        help="also time prodcat embed on the photos")
    parser.add_argument("--repeats", type=int, default=2,
                        help="rounds of the photo, 200k and embed runs (in rotation; the fastest counts)")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--child", action="store_true", help=argparse.SUPPRESS)
    parser.add_argument("rest", nargs=argparse.REMAINDER, help=argparse.SUPPRESS)
    args = parser.parse_args(argv)
    if args.child:
        emit_json(child([a for a in args.rest if a != "--"]))
        return 0
    if data_missing(args.data):
        return 0
    args.out = args.out / "batch"
    info = machine_info()
    started = time.perf_counter()
    res = measure(args)
    res["total_s"] = round(time.perf_counter() - started, 1)
    markdown, payload = report(res, args, info)
    print(markdown)
    if args.save:
        for path in save_results("batch_predict", payload, markdown):
            print(f"wrote {path}", file=sys.stderr)
    return 0


if __name__ == "__main__":
    sys.exit(main())
