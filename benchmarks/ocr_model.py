"""What the OCR channel (``Classifier(ocr=...)``) costs: one API request with a new photo, with
and without OCR, and the time it adds to training.

1. Two bundles trained on the same Rakuten listings (frozen final-check split left out): one
   TF-IDF text model + the photo model (the default image encoder), and the same with
   ``ocr=ENGINE``. The text model is one ``TextClassifier`` (not the ensemble) so that the run
   stays short; a request's text part costs a few ms either way.
2. API latency: ``POST /v1/predict`` (multipart, the photo uploaded) through Starlette's
   TestClient on each bundle, ``--requests`` different Rakuten photos, the two bundles
   alternating photo by photo. The server keeps no cache of uploads (embeddings nor OCR), so
   every request reads a new photo. The first request of each bundle (engine loading) is left out.
3. Training: the OCR of ``--cold`` photos into an empty cache (seconds per photo), and the fit
   time of both models with the OCR results cached (what a refit pays).

    python benchmarks/ocr_model.py --ocr rapidocr --requests 20 --save
"""

from __future__ import annotations

import statistics
import sys
import tempfile
import time
from pathlib import Path

from _common import (
    NOISE_NOTE,
    base_parser,
    data_missing,
    load_labelled,
    machine_info,
    machine_line,
    markdown_table,
    percentiles_ms,
    save_results,
    timer,
)


def build(ocr: str | None, seed: int = 0):
    from prodcat.image import ImageClassifier
    from prodcat.model import Classifier
    from prodcat.text.model import TextClassifier

    return Classifier(text=TextClassifier(random_state=seed), image=ImageClassifier(random_state=seed),
                      ocr=ocr, random_state=seed)


def cold_ocr(photos: list[str], engine: str) -> float:
    """Seconds per photo reading ``photos`` into an empty cache (the engine loaded first)."""
    from prodcat.model.ocr_channel import engine_for
    from prodcat.ocr import OcrCache, read_photos

    eng = engine_for(engine)
    eng.load()
    with tempfile.TemporaryDirectory() as tmp, OcrCache(Path(tmp) / "c.sqlite") as cache, timer() as t:
        read_photos(photos, eng, cache=cache, progress=False)
        return t() / len(photos)


def api_latency(bundles: dict[str, Path], photos: list[str]) -> dict[str, list[float]]:
    from fastapi.testclient import TestClient

    from prodcat.serving import ModelService, ServingSettings, create_app

    clients, seconds = {}, {name: [] for name in bundles}
    for name, path in bundles.items():
        service = ModelService.load(path)
        clients[name] = TestClient(create_app(ServingSettings(model_dir=str(path)), service=service))
        clients[name].__enter__()
        clients[name].post("/v1/predict", data={"title": "warm up"},
                           files={"image": ("w.jpg", Path(photos[0]).read_bytes(), "image/jpeg")})
    try:
        for photo in photos[1:]:
            blob = Path(photo).read_bytes()
            for name, client in clients.items():
                t0 = time.perf_counter()
                r = client.post("/v1/predict", data={"title": "article"},
                                files={"image": ("p.jpg", blob, "image/jpeg")})
                seconds[name].append(time.perf_counter() - t0)
                assert r.status_code == 200, r.text
    finally:
        for client in clients.values():
            client.__exit__(None, None, None)
    return seconds


def main(argv: list[str] | None = None) -> int:
    from prodcat.evaluation.protocol import frozen_split
    from prodcat.model.ocr_channel import engine_record, resolve_ocr

    parser = base_parser(__doc__.split("\n\n")[0])
    parser.add_argument("--ocr", default="rapidocr", help="OCR engine")
    parser.add_argument("--requests", type=int, default=20, help="API requests per bundle")
    parser.add_argument("--cold", type=int, default=30, help="photos read into an empty OCR cache")
    args = parser.parse_args(argv)
    if data_missing(args.data):
        return 0
    engine = resolve_ocr(args.ocr)
    catalog = load_labelled(args.data)
    catalog = catalog.subset(~frozen_split(catalog.frame["id"]))
    photos = [p for p in catalog.X["image"].dropna().astype(str)]
    cold_s = cold_ocr(photos[-args.cold:], engine)
    fits, bundles = {}, {}
    out = Path(args.out) / "ocr_model"
    for name, ocr in (("without OCR", None), (f"with OCR ({engine})", engine)):
        model = build(ocr)
        with timer() as t:
            model.fit(catalog.X, catalog.y, taxonomy=catalog.taxonomy)
        fits[name] = t()
        bundles[name] = model.save(out / ("ocr" if ocr else "plain"))
        print(f"{name}: fitted in {fits[name]:.1f} s", file=sys.stderr)
    seconds = api_latency(bundles, photos[: args.requests + 1])
    lat = {name: {**percentiles_ms(s, (50, 95)), "mean_ms": 1000 * statistics.fmean(s), "n": len(s)}
           for name, s in seconds.items()}
    rows = [[name, lat[name]["n"], lat[name]["p50"], lat[name]["p95"], fits[name]] for name in lat]
    info = machine_info()
    markdown = "\n\n".join([
        f"## The OCR channel's cost ({engine}): one API request with a new photo, and training",
        f"{len(catalog):,} Rakuten listings ({len(photos)} with a photo; frozen final-check split left "
        "out); one TF-IDF text model + the photo model, without and with OCR. API: POST /v1/predict "
        "with the photo uploaded (no cache on the server), the bundles alternating photo by photo.",
        markdown_table(["model", "requests", "p50 ms", "p95 ms", "fit s (OCR cached)"], rows, digits=1),
        f"OCR into an empty cache: {cold_s:.2f} s per photo ({args.cold} photos), i.e. "
        f"{cold_s * len(photos):.0f} s for this catalogue's {len(photos)} photos the first time; "
        "then each refit reads them from the cache.",
        f"Engine: {engine_record(engine)['version']}.",
        machine_line(info), NOISE_NOTE])
    print(markdown)
    if args.save:
        payload = {"benchmark": "ocr_model", "engine": engine, "n": len(catalog), "n_photos": len(photos),
                   "latency": lat, "fit_seconds": fits, "cold_seconds_per_photo": cold_s, "machine": info}
        for path in save_results("ocr_model", payload, markdown):
            print(f"wrote {path}", file=sys.stderr)
    return 0


if __name__ == "__main__":
    sys.exit(main())
