"""Prediction speed of a saved prodcat bundle against the plain baseline, measured in one run.

1. Load time: median of ``--loads`` in-process loads (after one warm-up) of ``load_bundle``, and
   one cold load in a fresh process, imports included.
2. Batch throughput: ``predict_frame`` over ``--batch`` listings of synthetic scaling data (made
   from the real listings), in chunks of ``--chunk``, ``--rounds`` times on new listings, each
   round right before the baseline's (median round reported); beside it, the sentence encoder
   alone on the same listings' texts (no cache, every core), which bounds what a model that
   embeds every listing can reach.
3. Single-listing latency: p50/p95/p99 of ``--calls`` calls of
   ``predict_top_k(dict(title=..., description=...), 3)``.

The baseline (``TfidfVectorizer`` + ``LinearSVC``, saved with ``joblib``) does the same three
(top-3 classes from its decision values) so the ratios come from the same machine and moment.

Targets: batch >= 2,000 listings/s, single p50 < 10 ms, load < 2 s.

    python benchmarks/predict_speed.py --batch 2000 --calls 100
"""

from __future__ import annotations

import argparse
import statistics
import sys
from collections.abc import Callable
from pathlib import Path
from typing import TYPE_CHECKING, Any

from _common import (
    NOISE_NOTE,
    SYNTHETIC_NOTE,
    base_parser,
    baseline_pipeline,
    baseline_texts,
    data_missing,
    emit_json,
    load_labelled,
    machine_info,
    machine_line,
    markdown_table,
    peak_rss_mb,
    percentiles_ms,
    ratio,
    run_child,
    save_results,
    timer,
    verdict,
)

if TYPE_CHECKING:
    import pandas as pd

KINDS = ("prodcat", "baseline")
BASELINE_FILE = "baseline.joblib"
PRODCAT_DIR = "prodcat-model"


# --- loading -----------------------------------------------------------------------------------


def load_model(kind: str, path: Path) -> Any:
    if kind == "prodcat":
        from prodcat.model import load_bundle

        return load_bundle(path)[0]
    import joblib

    return joblib.load(path)


def cold_load(kind: str, path: Path) -> dict[str, Any]:
    """Child side: import the libraries and load once, timed from before the first import."""
    with timer() as elapsed:
        load_model(kind, path)
    return {"kind": kind, "load_s": elapsed(), "peak_rss_mb": peak_rss_mb()}


def warm_loads(kind: str, path: Path, repeats: int) -> dict[str, Any]:
    load_model(kind, path)  # warm-up: imports, page cache
    seconds = []
    for _ in range(repeats):
        with timer() as elapsed:
            load_model(kind, path)
        seconds.append(elapsed())
    return {"median_s": statistics.median(seconds), "all_s": seconds}


# --- predicting --------------------------------------------------------------------------------


def predictors(kind: str, model: Any, k: int) -> tuple[Callable[[pd.DataFrame], Any],
                                                       Callable[[dict[str, str]], Any]]:
    """(batch, single) prediction functions for ``kind``, doing comparable work: top-``k`` labels."""
    from prodcat.model import top_k_indices

    if kind == "prodcat":
        return (lambda frame: model.predict_frame(frame, k=k),
                lambda listing: model.predict_top_k(listing, k))
    classes = model.classes_

    def batch(frame: pd.DataFrame) -> Any:
        return classes[top_k_indices(model.predict_proba(baseline_texts(frame)), k)]

    def single(listing: dict[str, str]) -> Any:
        text = f"{listing.get('title', '')} {listing.get('description', '')}"
        return classes[top_k_indices(model.predict_proba([text]), k)][0]

    return batch, single


def batch_throughput(batch: Callable[[pd.DataFrame], Any], frame: pd.DataFrame,
                     chunk: int) -> dict[str, Any]:
    batch(frame.iloc[: min(len(frame), 100)])  # warm-up
    with timer() as elapsed:
        for start in range(0, len(frame), chunk):
            batch(frame.iloc[start:start + chunk])
    return {"n": len(frame), "chunk": chunk, "seconds": elapsed(),
            "listings_per_s": len(frame) / elapsed()}


def encoder_ceiling(model: Any, frame: pd.DataFrame, chunk: int) -> dict[str, Any] | None:
    """The sentence encoder alone on the batch's texts (no cache, every core): a batch of a model
    that embeds every listing cannot go faster than this, whatever the rest of it does."""
    encoders = {id(e): e for m in getattr(getattr(model, "text_", None), "members_", {}).values()
                if (e := getattr(getattr(m, "features_", None), "dense_encoder_", None)) is not None}
    if not encoders:
        return None
    texts_per_s = []
    for encoder in encoders.values():
        texts = encoder.texts(frame.iloc[: min(len(frame), 2 * chunk)])
        encoder.encode(texts[:100], cache=False)  # warm-up
        with timer() as elapsed:
            encoder.encode(texts[100:], cache=False)
        texts_per_s.append((len(texts) - 100) / elapsed())
    # A small batch's vectors stay in the encoders' in-memory cache of recent texts: the batch
    # measured next must find its texts new.
    from prodcat.text import encoders as text_encoders

    text_encoders._RECENT.clear()
    # Members that embed different texts add up their costs.
    return {"encoders": len(texts_per_s), "listings_per_s": 1 / sum(1 / t for t in texts_per_s)}


def single_latency(single: Callable[[dict[str, str]], Any], listings: list[dict[str, str]],
                   calls: int) -> dict[str, Any]:
    for listing in listings[-10:]:  # warm-up, on listings the timed calls do not repeat
        single(listing)
    seconds = []
    for i in range(calls):
        listing = listings[i % len(listings)]
        with timer() as elapsed:
            single(listing)
        seconds.append(elapsed())
    return {"calls": calls, **percentiles_ms(seconds)}


# --- the run -----------------------------------------------------------------------------------


def prepare_models(args: argparse.Namespace, catalog: Any) -> dict[str, dict[str, Any]]:
    """Train (or take) the prodcat bundle and train the baseline; both saved under ``--out``."""
    import joblib

    from prodcat.model import Classifier

    out: dict[str, dict[str, Any]] = {"prodcat": {}, "baseline": {}}
    if args.model:
        out["prodcat"]["path"] = args.model
    else:
        print(f"training prodcat Classifier() on {len(catalog):,} real listings …", file=sys.stderr)
        with timer() as elapsed:
            model = Classifier().fit(catalog.X, catalog.y, taxonomy=catalog.taxonomy)
        out["prodcat"]["train_s"] = elapsed()
        out["prodcat"]["path"] = model.save(args.out / PRODCAT_DIR,
                                            training={"source": str(args.data), "n": len(catalog)})
    with timer() as elapsed:
        pipe = baseline_pipeline().fit(baseline_texts(catalog.frame), catalog.y.astype(str).to_numpy())
    out["baseline"]["train_s"] = elapsed()
    path = args.out / BASELINE_FILE
    joblib.dump(pipe, path, compress=3)  # the same compression as a prodcat bundle
    out["baseline"]["path"] = path
    for info in out.values():
        p = Path(info["path"])
        files = list(p.rglob("*")) if p.is_dir() else [p]
        info["size_mb"] = sum(f.stat().st_size for f in files if f.is_file()) / 2**20
    return out


def measure(kind: str, path: Path, frame: pd.DataFrame, singles: pd.DataFrame,
            args: argparse.Namespace) -> tuple[dict[str, Any], Callable[[pd.DataFrame], Any]]:
    """Load times, single-listing latency (and for prodcat the encoder's ceiling on ``frame``);
    with the batch prediction function, measured by :func:`interleaved_batches`."""
    print(f"measuring {kind} …", file=sys.stderr, flush=True)
    result: dict[str, Any] = {"load": warm_loads(kind, path, args.loads)}
    cold = run_child([Path(__file__).resolve(), "--child-cold-load", kind, "--child-path", path],
                     timeout=600)
    result["cold_load"] = cold
    model = load_model(kind, path)
    batch, single = predictors(kind, model, args.k)
    if kind == "prodcat":
        result["encoder_ceiling"] = encoder_ceiling(model, frame, args.chunk)
    # Listings the batch did not contain: each one's text is new to the sentence encoder.
    listings = singles.loc[:, ["title", "description"]].to_dict("records")
    result["single"] = single_latency(single, listings, args.calls)
    return result, batch


def interleaved_batches(batches: dict[str, Callable[[pd.DataFrame], Any]], frames: list[pd.DataFrame],
                        chunk: int) -> dict[str, dict[str, Any]]:
    """Batch throughput of every kind, round by round on the same frames (a new one each round:
    no text is new to the encoder twice), kinds alternating: on a host whose speed drifts within
    minutes, each round's two figures share its moment. The median round is reported."""
    rounds: dict[str, list[float]] = {kind: [] for kind in batches}
    for frame in frames:
        for kind, batch in batches.items():
            rounds[kind].append(batch_throughput(batch, frame, chunk)["listings_per_s"])
    return {kind: {"n": len(frames[0]), "chunk": chunk, "rounds": r,
                   "listings_per_s": statistics.median(r)} for kind, r in rounds.items()}


def report(res: dict[str, dict[str, Any]], models: dict[str, dict[str, Any]],
           args: argparse.Namespace, info: dict[str, Any], n_train: int) -> tuple[str, dict[str, Any]]:
    p, b = res["prodcat"], res["baseline"]
    load_target, batch_target, p50_target = args.load_target, args.batch_target, args.p50_target
    checks = {
        "load_warm": p["load"]["median_s"] < load_target,
        "load_cold": p["cold_load"].get("load_s") is not None and p["cold_load"]["load_s"] < load_target,
        "batch": p["batch"]["listings_per_s"] >= batch_target,
        "single_p50": p["single"]["p50"] < p50_target,
    }

    def row(name: str, key: Callable[[dict[str, Any]], Any], target: str,
            check: str | None) -> list[object]:
        pv, bv = key(p), key(b)
        return [name, pv, bv, ratio(pv, bv), target, verdict(checks[check]) if check else ""]

    table = markdown_table(
        ["measure", "prodcat", "baseline", "prodcat/baseline", "target", "result"],
        [row("bundle load, median of warm loads (s)", lambda r: r["load"]["median_s"],
             f"< {load_target:g} s", "load_warm"),
         row("cold load in a fresh process, imports included (s)",
             lambda r: r["cold_load"].get("load_s"), f"< {load_target:g} s", "load_cold"),
         row("cold process wall time, interpreter start included (s)",
             lambda r: r["cold_load"].get("process_wall_s"), "", None),
         row(f"batch throughput, chunks of {args.chunk:,}, median of {args.rounds} interleaved "
             "rounds (listings/s)",
             lambda r: r["batch"]["listings_per_s"], f">= {batch_target:,.0f}/s", "batch"),
         ["the sentence encoder alone on the same listings, no cache (listings/s): the batch's "
          "ceiling", (p.get("encoder_ceiling") or {}).get("listings_per_s"), None, None, "", ""],
         row("single listing p50 (ms)", lambda r: r["single"]["p50"], f"< {p50_target:g} ms",
             "single_p50"),
         row("single listing p95 (ms)", lambda r: r["single"]["p95"], "", None),
         row("single listing p99 (ms)", lambda r: r["single"]["p99"], "", None),
         ["saved model size (MB)", models["prodcat"]["size_mb"], models["baseline"]["size_mb"],
          ratio(models["prodcat"]["size_mb"], models["baseline"]["size_mb"]), "", ""]],
        digits=3)
    source = (f"loaded from {args.model}" if args.model
              else f"trained here on {n_train:,} real listings from {args.data}")
    markdown = "\n\n".join([
        "## Prediction speed: prodcat bundle vs TF-IDF + LinearSVC (joblib)",
        f"prodcat model {source}; baseline trained on the {n_train:,} real listings of "
        f"{args.data}. "
        f"Batch and latency inputs: {args.batch:,} listings of **{SYNTHETIC_NOTE}** "
        f"(seed {args.seed}); latency over {args.calls:,} calls of top-{args.k}; "
        f"load median of {args.loads} after one warm-up.",
        table,
        "prodcat/baseline: above 1 means prodcat takes longer (or, for throughput, does more per "
        "second).",
        machine_line(info),
        NOISE_NOTE,
    ])
    payload = {"benchmark": "predict_speed", "note": SYNTHETIC_NOTE, "data": str(args.data),
               "n_train": n_train, "model": str(args.model) if args.model else None,
               "batch_n": args.batch, "chunk": args.chunk, "rounds": args.rounds,
               "calls": args.calls, "k": args.k,
               "machine": info, "checks": {k: bool(v) for k, v in checks.items()},
               "targets": {"load_s": load_target, "batch_listings_per_s": batch_target,
                           "single_p50_ms": p50_target},
               "models": {k: {**v, "path": str(v["path"])} for k, v in models.items()},
               "results": res}
    return markdown, payload


def main(argv: list[str] | None = None) -> int:
    parser = base_parser(__doc__.split("\n\n")[0])
    parser.add_argument("--model", type=Path, default=None,
                        help="an existing prodcat bundle to measure instead of training one")
    parser.add_argument("--batch", type=int, default=20_000, help="listings for batch throughput")
    parser.add_argument("--chunk", type=int, default=4096, help="listings per predict_frame call")
    parser.add_argument("--rounds", type=int, default=3,
                        help="interleaved batch rounds (prodcat, then the baseline, on a new batch "
                             "each round); the median is reported")
    parser.add_argument("--calls", type=int, default=500, help="single-listing calls for latency")
    parser.add_argument("--loads", type=int, default=5, help="timed warm loads (after one warm-up)")
    parser.add_argument("--k", type=int, default=3, help="top-k categories per listing")
    parser.add_argument("--seed", type=int, default=0, help="seed of the synthetic batch data")
    parser.add_argument("--load-target", type=float, default=2.0, help="seconds")
    parser.add_argument("--batch-target", type=float, default=2000.0, help="listings/s")
    parser.add_argument("--p50-target", type=float, default=10.0, help="milliseconds")
    parser.add_argument("--warm-cache", action="store_true",
                        help="keep the user's embedding cache (off: a fresh one, so every batch "
                             "listing's text is new to the sentence encoder, as in production)")
    parser.add_argument("--tag", default=None,
                        help="saved as predict_speed_TAG (with --save; e.g. for a --model other than the default)")
    parser.add_argument("--child-cold-load", choices=KINDS, help=argparse.SUPPRESS)
    parser.add_argument("--child-path", type=Path, help=argparse.SUPPRESS)
    args = parser.parse_args(argv)

    if args.child_cold_load:
        emit_json(cold_load(args.child_cold_load, args.child_path))
        return 0
    if data_missing(args.data):
        return 0
    from scaling_data import make_scaled_catalog

    args.out.mkdir(parents=True, exist_ok=True)
    if not args.warm_cache:
        # The synthetic batch is the same on every run (seeded): a cache filled by an earlier run
        # would turn the measure into cache lookups.
        import os
        import shutil

        fresh = args.out / "predict-speed-cache"
        shutil.rmtree(fresh, ignore_errors=True)
        os.environ["PRODCAT_CACHE_DIR"] = str(fresh)
    info = machine_info()
    catalog = load_labelled(args.data)
    models = prepare_models(args, catalog)
    frames = [make_scaled_catalog(catalog, args.batch, seed=args.seed + 1000 * r)[0]
              for r in range(args.rounds)]
    singles, _ = make_scaled_catalog(catalog, args.calls + 10, seed=args.seed + 1)
    measured = {kind: measure(kind, Path(models[kind]["path"]), frames[0], singles, args) for kind in KINDS}
    res = {kind: result for kind, (result, _) in measured.items()}
    for kind, batch in interleaved_batches({k: b for k, (_, b) in measured.items()}, frames,
                                           args.chunk).items():
        res[kind]["batch"] = batch
    markdown, payload = report(res, models, args, info, len(catalog))
    print(markdown)
    if args.save:
        for path in save_results("predict_speed" + (f"_{args.tag}" if args.tag else ""), payload, markdown):
            print(f"wrote {path}", file=sys.stderr)
    return 0


if __name__ == "__main__":
    sys.exit(main())
