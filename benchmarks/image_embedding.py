"""Image embedding throughput, end to end: read + decode + preprocess + encode (+ cache).

1. Cold: every photo of each data set through ``ImageEncoder.encode_images`` with an empty
   embedding cache (so each is hashed, decoded, preprocessed, run through the ONNX model and
   stored). Images per second, wall clock.
2. Warm: the same call again; every photo is now read, hashed and served from the cache.
   The ratio warm/cold is what re-training or re-scoring a catalogue gains.
3. Runtime: the network alone on one preprocessed batch, onnxruntime vs PyTorch eager
   (``--eager-batch`` photos, best of ``--repeats``), the reason for the ONNX export.

The ONNX export is made first if the cache folder has none (its time is reported, not counted).
Target: >= 80 images/s cold on 2 cores.

    python benchmarks/image_embedding.py --cpus 2 --save
"""

from __future__ import annotations

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
    limit_cpus,
    machine_info,
    machine_line,
    markdown_table,
    ratio,
    save_results,
    verdict,
)

TARGET_COLD = 80.0
DATASETS = {
    "flipkart": SHARED_DATA / "flipkart" / "Images",
    "rakuten_unlabelled": SHARED_DATA / "rakuten_unlabelled" / "images" / "image_test",
}


def photo_paths(folder: Path, limit: int | None) -> list[str]:
    paths = sorted(str(p) for p in folder.iterdir() if p.is_file())
    return paths[:limit] if limit else paths


def _cpu_seconds() -> float:
    """CPU time of this process, all threads: less sensitive than wall time to other users."""
    t = os.times()
    return t.user + t.system


def throughput(encoder, paths: list[str], cache_path: Path, batch_size: int,
               workers: int | None) -> dict[str, Any]:
    """Cold then warm ``encode_images`` over ``paths`` with a new cache at ``cache_path``."""
    from prodcat.image import EmbeddingCache

    cache_path.unlink(missing_ok=True)
    out: dict[str, Any] = {"n": len(paths)}
    with EmbeddingCache(cache_path) as cache, warnings.catch_warnings():
        warnings.simplefilter("ignore")  # skipped photos are counted below instead
        for phase in ("cold", "warm"):
            start, cpu_start = time.perf_counter(), _cpu_seconds()
            result = encoder.encode_images(paths, batch_size=batch_size, n_workers=workers, cache=cache)
            seconds = time.perf_counter() - start
            cpu = _cpu_seconds() - cpu_start
            out[phase] = {"seconds": seconds, "images_per_s": len(paths) / seconds,
                          "cpu_seconds": cpu, "cpu_ms_per_image": 1000 * cpu / max(1, len(paths)),
                          "encoded": result.n_encoded, "from_cache": result.n_from_cache,
                          "duplicates": result.n_duplicates, "failed": result.n_failed}
    out["warm_over_cold"] = ratio(out["warm"]["images_per_s"], out["cold"]["images_per_s"])
    return out


def runtime_comparison(encoder, paths: list[str], batch: int, repeats: int) -> dict[str, Any]:
    """Seconds per image of the network alone: onnxruntime vs PyTorch eager, same batch."""
    import numpy as np

    pixels = np.stack([encoder.prepare(p) for p in paths[:batch]])
    encoder.embed(pixels)  # warm-up: session built, buffers allocated

    def best(fn) -> float:
        times = []
        for _ in range(repeats):
            start = time.perf_counter()
            fn()
            times.append(time.perf_counter() - start)
        return min(times) / len(pixels)

    onnx_s = best(lambda: encoder.embed(pixels))
    out: dict[str, Any] = {"batch": len(pixels), "repeats": repeats,
                           "onnx_images_per_s": 1.0 / onnx_s}
    try:
        import torch

        from prodcat.image import normalize
    except ImportError:
        out["eager_images_per_s"] = None
        out["note"] = "torch not installed: no eager comparison"
        return out
    torch.set_num_threads(encoder.n_threads or limit_cpus(None))
    model = encoder.torch_model()
    x = torch.from_numpy(normalize(pixels, encoder.config))

    def eager() -> None:
        with torch.no_grad():
            model.extract_features(x).mean(dim=(2, 3))

    eager()
    out["eager_images_per_s"] = 1.0 / best(eager)
    out["onnx_over_eager"] = ratio(out["onnx_images_per_s"], out["eager_images_per_s"])
    return out


def main(argv: list[str] | None = None) -> int:
    parser = base_parser(__doc__.split("\n\n")[0], data=False)
    parser.add_argument("--encoder", default=None, help="photo encoder (default: prodcat's default)")
    parser.add_argument("--cpus", type=int, default=2,
                        help="pin the process to this many CPUs (0: all it may use)")
    parser.add_argument("--batch-size", type=int, default=32)
    parser.add_argument("--workers", type=int, default=None,
                        help="decoding threads (default: one per CPU, at least 2)")
    parser.add_argument("--limit", type=int, default=None, help="at most this many photos per data set")
    parser.add_argument("--eager-batch", type=int, default=16)
    parser.add_argument("--repeats", type=int, default=3)
    args = parser.parse_args(argv)

    cpus = limit_cpus(args.cpus or None)
    from prodcat.image import create_encoder
    from prodcat.image.encoders import DEFAULT_ENCODER

    args.encoder = args.encoder or DEFAULT_ENCODER
    encoder = create_encoder(args.encoder, n_threads=cpus)
    start = time.perf_counter()
    made = encoder.export_status() != "ok"
    encoder.ensure_export()
    export_s = time.perf_counter() - start if made else None
    encoder.session  # noqa: B018 - build it outside the timings

    scratch = Path(args.out) / "image_embedding"
    shutil.rmtree(scratch, ignore_errors=True)
    scratch.mkdir(parents=True, exist_ok=True)
    results: dict[str, Any] = {}
    for name, folder in DATASETS.items():
        if not folder.is_dir():
            print(f"{folder} not found: {name} skipped", file=sys.stderr)
            continue
        paths = photo_paths(folder, args.limit)
        print(f"{name}: {len(paths):,} photos …", file=sys.stderr)
        results[name] = throughput(encoder, paths, scratch / f"{name}.sqlite", args.batch_size, args.workers)
    if not results:
        print(f"No photos found under {SHARED_DATA}: nothing to benchmark.")
        return 0
    some = photo_paths(next(f for f in DATASETS.values() if f.is_dir()), args.eager_batch)
    runtime = runtime_comparison(encoder, some, args.eager_batch, args.repeats)

    rows = []
    for name, res in results.items():
        cold, warm = res["cold"], res["warm"]
        rows.append([name, res["n"], cold["images_per_s"], cold["cpu_ms_per_image"], warm["images_per_s"],
                     res["warm_over_cold"], cold["failed"], cold["duplicates"],
                     verdict(cold["images_per_s"] >= TARGET_COLD)])
    runtime_rows = [[f"network only, batch {runtime['batch']}", runtime["onnx_images_per_s"],
                     runtime.get("eager_images_per_s"), runtime.get("onnx_over_eager")]]
    info = machine_info()
    markdown = "\n\n".join([
        f"## Image embedding throughput ({args.encoder}, {cpus} CPU(s))",
        "End to end: read, sha256, decode, crop/pad/resize, ONNX encode, cache write (cold) or "
        "read, sha256, cache hit (warm); images per second, wall clock. "
        f"Batch {args.batch_size}, {args.workers or 'default'} decoding threads. "
        f"Target: >= {TARGET_COLD:g} images/s cold. CPU ms/img is the process's CPU time (all "
        "threads) per photo: on idle cores, cold img/s approaches CPUs × 1000 / that.",
        markdown_table(["data set", "photos", "cold img/s", "cold CPU ms/img", "warm img/s", "warm/cold",
                        "unusable", "duplicates", "cold target"], rows, digits=1),
        markdown_table(["runtime", "onnxruntime img/s", "PyTorch eager img/s", "ONNX/eager"],
                       runtime_rows, digits=1),
        (f"The ONNX export was made for this run in {export_s:.1f} s (once per machine)."
         if export_s is not None else "The ONNX export was already cached."),
        machine_line(info),
        NOISE_NOTE,
    ])
    print(markdown)
    if args.save:
        payload = {"benchmark": "image_embedding", "encoder": args.encoder, "cpus": cpus,
                   "batch_size": args.batch_size, "workers": args.workers, "limit": args.limit,
                   "target_cold_images_per_s": TARGET_COLD, "export_seconds": export_s,
                   "datasets": results, "runtime": runtime, "machine": info}
        for path in save_results("image_embedding", payload, markdown):
            print(f"wrote {path}", file=sys.stderr)
    return 0


if __name__ == "__main__":
    sys.exit(main())
