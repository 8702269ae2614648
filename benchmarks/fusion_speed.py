"""Speed of the multimodal (text + photo) model: single-listing latency and cached re-training.

1. Training with empty, then warm caches: ``Classifier(image=ImageClassifier(), memory=...)
   .fit`` on Flipkart, first with ``PRODCAT_CACHE_DIR`` pointing at a new folder (every photo is
   decoded and encoded, every model fitted), then again (every embedding and every fitted model
   comes from the caches), then once more without the fit cache (embeddings cached only). The ONNX export is
   copied into the new folder beforehand, so exporting is not counted. The image-embedding step
   alone (``ImageClassifier().embed``, cold then warm, in another new folder) and a text-only
   ``Classifier().fit`` are timed too, and one more warm fit runs under cProfile (``--no-profile``
   skips it), to show which part of a fit dominates.
2. Single-listing latency, once loaded: p50/p95/p99 of ``predict_top_k`` on one listing (title,
   description and photo path) from the fused bundle trained in step 1, with a photo the model
   has never seen (read, hash, decode, preprocess, encode at batch 1, text model, fusion) and
   with one already in the embedding cache; and a text-only bundle on the same listings
   without photo, in the same run (the ratio is what to compare across runs).

Targets: fused p50 < 60 ms with a new photo; warm re-training >= 10× faster than cold.

    .venv/bin/python benchmarks/fusion_speed.py --save
"""

from __future__ import annotations

import argparse
import os
import shutil
import sys
import time
import warnings
from pathlib import Path
from typing import Any

from _common import (
    NOISE_NOTE,
    SHARED_DATA,
    base_parser,
    data_missing,
    limit_cpus,
    load_labelled,
    machine_info,
    machine_line,
    markdown_table,
    percentiles_ms,
    ratio,
    save_results,
    timer,
    verdict,
)

TARGET_P50_MS = 60.0
TARGET_CACHE_SPEEDUP = 10.0
CACHE_ENV = "PRODCAT_CACHE_DIR"


def fresh_cache_dir(root: Path, name: str, export: Path, export_hash: Path) -> Path:
    """An empty prodcat cache folder holding only a copy of the encoder export.

    Both the embedding cache (``<dir>/embeddings.sqlite``) and the export folder
    (``<dir>/encoders``) derive from ``$PRODCAT_CACHE_DIR``: copying the export in keeps its
    one-off cost (seconds of PyTorch tracing) out of the timings.
    """
    folder = root / name
    shutil.rmtree(folder, ignore_errors=True)
    (folder / "encoders").mkdir(parents=True)
    shutil.copy2(export, folder / "encoders" / export.name)
    shutil.copy2(export_hash, folder / "encoders" / export_hash.name)
    return folder


def use_cache(folder: Path) -> None:
    # Read by prodcat at each use (EmbeddingCache(), ImageEncoder.export_dir), not at import.
    os.environ[CACHE_ENV] = str(folder)


def timed_fit(make_model, catalog) -> tuple[Any, float]:
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # skipped photos and rare classes: counted elsewhere
        with timer() as elapsed:
            model = make_model().fit(catalog.X, catalog.y, taxonomy=catalog.taxonomy)
    return model, elapsed()


def training_times(catalog, scratch: Path, encoder: str, export: Path, export_hash: Path,
                   profile: bool = True) -> dict[str, Any]:
    """Fused fit cold and warm; the embedding step alone cold and warm; a text-only fit."""
    from prodcat.image import EmbeddingCache, ImageClassifier
    from prodcat.model import Classifier

    def fused(memory) -> Classifier:
        return Classifier(image=ImageClassifier(encoder=encoder), memory=memory)

    out: dict[str, Any] = {}
    train_cache = fresh_cache_dir(scratch, "train-cache", export, export_hash)
    fits = train_cache / "fits"
    use_cache(train_cache)
    print("fused fit, empty caches …", file=sys.stderr, flush=True)
    _, out["fit_cold_s"] = timed_fit(lambda: fused(fits), catalog)
    with EmbeddingCache(train_cache / "embeddings.sqlite") as cache:
        out["photos_encoded_cold"] = cache.count()
    out["fit_cache_mb"] = sum(f.stat().st_size for f in fits.rglob("*") if f.is_file()) / 2**20
    print("fused fit, warm caches …", file=sys.stderr, flush=True)
    model, out["fit_warm_s"] = timed_fit(lambda: fused(fits), catalog)
    out["fit_speedup"] = ratio(out["fit_cold_s"], out["fit_warm_s"])
    out["fusion"] = model.fusion_["method"]
    print("fused fit, warm embedding cache, no fit cache …", file=sys.stderr, flush=True)
    _, out["fit_warm_embeddings_only_s"] = timed_fit(lambda: fused(None), catalog)
    out["fit_speedup_embeddings_only"] = ratio(out["fit_cold_s"], out["fit_warm_embeddings_only_s"])

    embed_cache = fresh_cache_dir(scratch, "embed-cache", export, export_hash)
    use_cache(embed_cache)
    print("embedding step alone, cold then warm …", file=sys.stderr, flush=True)
    for phase in ("cold", "warm"):
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            encoded = ImageClassifier(encoder=encoder).embed(catalog.X)
        out[f"embed_{phase}_s"] = encoded.seconds
        out[f"embed_{phase}_encoded"] = encoded.n_encoded
        out[f"embed_{phase}_from_cache"] = encoded.n_from_cache
    out["embed_speedup"] = ratio(out["embed_cold_s"], out["embed_warm_s"])
    # What a fused fit does besides embedding (text models, image heads, fusion folds).
    out["rest_of_fit_s"] = out["fit_warm_s"] - out["embed_warm_s"]
    use_cache(train_cache)

    print("text-only fit …", file=sys.stderr, flush=True)
    text_model, out["text_only_fit_s"] = timed_fit(Classifier, catalog)
    if profile:
        print("warm fused fit under cProfile, for the breakdown …", file=sys.stderr, flush=True)
        out["warm_fit_breakdown"] = fit_breakdown(catalog, encoder, fits)
    return {"times": out, "fused_model": model, "text_model": text_model}


#: Parts of a fused fit, as (file suffix, function name) in prodcat, for the warm-fit breakdown.
FIT_PARTS = {
    "image embedding (cache reads)": ("image/model.py", "embed"),
    "text model fits": ("text/model.py", "fit"),
    "image head fits": ("image/model.py", "_fit_embeddings"),
    "early-fusion fits": ("fusion/early.py", "fit"),
    "stacked-fusion fits": ("fusion/fusers.py", "fit"),
    "remembered fits (hash inputs, load models)": ("joblib/memory.py", "__call__"),
}


def fit_breakdown(catalog, encoder: str, fits: Path) -> dict[str, Any]:
    """Cumulative seconds of each part of one more warm fused fit, under cProfile.

    A separate fit, because the profiler slows the code it watches (the timed fits stay clean).
    ``fusers.py:fit`` matches both fusers; the late one takes milliseconds.
    """
    import cProfile
    import pstats

    from prodcat.image import ImageClassifier
    from prodcat.model import Classifier

    profile = cProfile.Profile()
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        with timer() as elapsed:
            profile.runcall(lambda: Classifier(image=ImageClassifier(encoder=encoder), memory=fits).fit(
                catalog.X, catalog.y, taxonomy=catalog.taxonomy))
    stats = pstats.Stats(profile).stats  # type: ignore[attr-defined]
    out: dict[str, Any] = {"profiled_fit_s": elapsed()}
    for label, (suffix, func) in FIT_PARTS.items():
        out[label] = sum(ct for (file, _, name), (_, _, _, ct, _) in stats.items()
                         if name == func and file.endswith(suffix))
    return out


def latency(predict, listings: list[dict[str, Any]], calls: int, warmup: int) -> dict[str, Any]:
    """p50/p95/p99 of ``predict(listing)`` over ``calls`` listings (after ``warmup`` others)."""
    for listing in listings[calls:calls + warmup]:
        predict(listing)
    seconds = []
    for listing in listings[:calls]:
        with timer() as elapsed:
            predict(listing)
        seconds.append(elapsed())
    return {"calls": len(seconds), **percentiles_ms(seconds)}


def latencies(catalog, scratch: Path, fused_path: Path, text_path: Path, calls: int,
              warmup: int) -> dict[str, Any]:
    from prodcat.model import load_bundle

    frame = catalog.frame
    with_photo = frame[frame["image"].notna()]
    calls = min(calls, len(with_photo) - warmup)
    listings = [{"title": r.title, "description": r.description, "image": r.image}
                for r in with_photo.itertuples()]
    out: dict[str, Any] = {}
    with timer() as elapsed:
        fused, _ = load_bundle(fused_path)
        text, _ = load_bundle(text_path)
    out["load_both_s"] = elapsed()
    # An empty embedding cache: every timed photo is one the model has never seen, as for a new
    # listing (the default cache stays on, so each call also stores its embedding).
    use_cache(fresh_cache_dir(scratch, "serve-cache", *_bundle_export(fused_path)))
    fused.image_.encoder_.session  # noqa: B018 - build the onnxruntime session before timing
    print("latency: fused, new photos …", file=sys.stderr, flush=True)
    out["fused_new_photo"] = latency(lambda x: fused.predict_top_k(x, 3), listings, calls, warmup)
    print("latency: fused, cached photos …", file=sys.stderr, flush=True)
    out["fused_cached_photo"] = latency(lambda x: fused.predict_top_k(x, 3), listings, calls, warmup)
    no_photo = [{**x, "image": None} for x in listings]
    print("latency: fused model without photo, text-only model …", file=sys.stderr, flush=True)
    out["fused_no_photo"] = latency(lambda x: fused.predict_top_k(x, 3), no_photo, calls, warmup)
    out["text_only"] = latency(lambda x: text.predict_top_k(x, 3), no_photo, calls, warmup)
    out["ratio_new_photo_vs_text"] = ratio(out["fused_new_photo"]["p50"], out["text_only"]["p50"])
    out["ratio_cached_photo_vs_text"] = ratio(out["fused_cached_photo"]["p50"], out["text_only"]["p50"])
    return out


def _bundle_export(bundle: Path) -> tuple[Path, Path]:
    onnx = next((bundle / "encoders").glob("*.onnx"))
    return onnx, onnx.with_name(onnx.name + ".sha256")


def main(argv: list[str] | None = None) -> int:
    parser = base_parser(__doc__.split("\n\n")[0])
    parser.set_defaults(data=SHARED_DATA / "flipkart")
    parser.add_argument("--encoder", default=None, help="photo encoder (default: prodcat's default)")
    parser.add_argument("--cpus", type=int, default=2,
                        help="pin the process to this many CPUs (0: all it may use)")
    parser.add_argument("--calls", type=int, default=100, help="timed single-listing calls per case")
    parser.add_argument("--warmup", type=int, default=10, help="untimed calls before each case")
    parser.add_argument("--profile", action=argparse.BooleanOptionalAction, default=True,
                        help="one more warm fit under cProfile: which part of a fit dominates")
    args = parser.parse_args(argv)
    if data_missing(args.data):
        return 0
    cpus = limit_cpus(args.cpus or None)
    try:
        import onnxruntime  # noqa: F401

        from prodcat.image import ImageError, create_encoder
        from prodcat.image.encoders import DEFAULT_ENCODER
    except ImportError as exc:
        print(f"the image extra is not installed ({exc}): nothing to benchmark")
        return 0
    args.encoder = args.encoder or DEFAULT_ENCODER

    # The export, from the cache this process would normally use (made now if missing; its time
    # is reported, not counted).
    encoder = create_encoder(args.encoder)
    started = time.perf_counter()
    made = encoder.export_status() != "ok"
    try:
        export = encoder.ensure_export()
    except ImageError as exc:
        print(f"image encoder unavailable ({exc}): nothing to benchmark")
        return 0
    export_s = time.perf_counter() - started if made else None

    scratch = Path(args.out) / "fusion_speed"
    shutil.rmtree(scratch, ignore_errors=True)
    scratch.mkdir(parents=True)
    catalog = load_labelled(args.data)
    info = machine_info()
    print(f"{len(catalog):,} listings from {args.data}, {cpus} CPU(s)", file=sys.stderr)

    trained = training_times(catalog, scratch, args.encoder, export, encoder.hash_path, args.profile)
    t = trained["times"]
    fused_path = trained["fused_model"].save(scratch / "fused-model")
    text_path = trained["text_model"].save(scratch / "text-model")
    lat = latencies(catalog, scratch, fused_path, text_path, args.calls, args.warmup)

    checks = {"p50": lat["fused_new_photo"]["p50"] < TARGET_P50_MS,
              "speedup": (t["fit_speedup"] or 0) >= TARGET_CACHE_SPEEDUP}
    breakdown = t.get("warm_fit_breakdown")
    if breakdown:
        part = max(FIT_PARTS, key=lambda k: breakdown[k])
        dominant = (f"{part}, {breakdown[part]:.1f} s of the {breakdown['profiled_fit_s']:.1f} s "
                    "profiled warm fit")
    else:
        dominant = ("the image-embedding step" if t["embed_cold_s"] - t["embed_warm_s"] > t["rest_of_fit_s"]
                    else "the text models, image heads and fusion folds (not the embeddings)")
    lat_rows = [
        [name, lat[key]["p50"], lat[key]["p95"], lat[key]["p99"], ratio(lat[key]["p50"], lat["text_only"]["p50"])]
        for name, key in (("fused, new photo (encoded)", "fused_new_photo"),
                          ("fused, photo in the embedding cache", "fused_cached_photo"),
                          ("fused model, listing without photo", "fused_no_photo"),
                          ("text-only model", "text_only"))
    ]
    fit_rows = [
        ["fused fit, empty caches", t["fit_cold_s"]],
        ["fused fit, warm embedding and fit caches", t["fit_warm_s"]],
        ["fused fit, warm embedding cache only (no fit cache)", t["fit_warm_embeddings_only_s"]],
        ["image embedding alone, cold", t["embed_cold_s"]],
        ["image embedding alone, warm", t["embed_warm_s"]],
        ["rest of the fused fit (warm fit − warm embedding)", t["rest_of_fit_s"]],
        ["text-only fit", t["text_only_fit_s"]],
    ]
    markdown = "\n\n".join([
        f"## Multimodal speed on {args.data.name} ({len(catalog):,} listings, {cpus} CPU(s), {args.encoder})",
        f"### Single-listing latency, once loaded ({lat['fused_new_photo']['calls']} calls each)",
        "`predict_top_k(listing, 3)`; a new photo is read, hashed, decoded, preprocessed and encoded "
        "at batch 1. Ratio: p50 over the text-only model's p50, same run.",
        markdown_table(["case", "p50 ms", "p95 ms", "p99 ms", "p50 / text-only"], lat_rows, digits=1),
        f"Target fused p50 < {TARGET_P50_MS:g} ms with a new photo: "
        f"**{verdict(checks['p50'])}** ({lat['fused_new_photo']['p50']:.1f} ms).",
        "### Training with empty vs warm caches",
        f"`Classifier(image=ImageClassifier(), memory=<cache>/fits).fit` (fusion chosen: {t['fusion']}); "
        f"{t['photos_encoded_cold']:,} photos encoded on the cold fit, none on the warm one; the fit "
        f"cache (every text, image, fold and fusion model, remembered by joblib.Memory) holds "
        f"{t['fit_cache_mb']:.1f} MB after the cold fit.",
        markdown_table(["step", "seconds"], fit_rows, digits=2),
        markdown_table(["speed-up (cold / warm)", "×"],
                       [["whole fused fit", t["fit_speedup"]],
                        ["whole fused fit, embedding cache only", t["fit_speedup_embeddings_only"]],
                        ["image embedding alone", t["embed_speedup"]]],
                       digits=1),
        f"Target warm re-training >= {TARGET_CACHE_SPEEDUP:g}× faster: **{verdict(checks['speedup'])}**. "
        f"The largest part of the warm fit: {dominant}.",
        *([("Warm fused fit by part (cProfile cumulative seconds; the profiler adds overhead, and "
            "the early-fusion fits include the text features they transform):"),
           markdown_table(["part", "seconds", "share"],
                          [[k, breakdown[k], breakdown[k] / breakdown["profiled_fit_s"]] for k in FIT_PARTS]
                          + [["whole profiled fit", breakdown["profiled_fit_s"], 1.0]], digits=2)]
          if breakdown else []),
        (f"The ONNX export was made for this run in {export_s:.1f} s (not counted)."
         if export_s is not None else "The ONNX export was already cached (copied into each new cache "
                                      "folder, not counted)."),
        machine_line(info),
        NOISE_NOTE,
    ])
    print(markdown)
    if args.save:
        payload = {"benchmark": "fusion_speed", "data": str(args.data), "n_listings": len(catalog),
                   "encoder": args.encoder, "cpus": cpus, "export_seconds": export_s,
                   "targets": {"fused_new_photo_p50_ms": TARGET_P50_MS,
                               "cache_speedup": TARGET_CACHE_SPEEDUP},
                   "checks": checks, "training": t, "latency": lat, "machine": info}
        for path in save_results("fusion_speed", payload, markdown):
            print(f"wrote {path}", file=sys.stderr)
    return 0


if __name__ == "__main__":
    sys.exit(main())
