"""Outer-fold quality of prodcat's default Classifier against the seeds' recipe, same folds.

Stratified ``--folds``-fold CV (shuffled, ``--seed``). prodcat runs through
``prodcat.evaluation.crossval.cross_val_proba``: every choice its ``auto`` options make (ensemble
weights and sharpening, fusion, automation threshold) is made inside ``fit`` on the outer
training fold only, so the outer folds report honestly (nested CV). The baseline is the seeds'
recipe (``_common.baseline_pipeline``) fitted on exactly the same folds. Both are scored by the
same functions, per fold and overall, on every field layout of the test listings
(``prodcat.evaluation.layouts``), with the coverage each reaches at 95 % precision and what
prodcat's stored threshold really filed. Rakuten's frozen final-check split
(``prodcat.evaluation.protocol.frozen_split``) is left out unless ``--all-rows``: it is looked at
once, by ``benchmarks/final_check.py``.

    python benchmarks/quality.py                                   # Rakuten sample, text only
    python benchmarks/quality.py --repeats 3                       # the same on 3 shuffles, with means
    python benchmarks/quality.py --image                           # with photos (fused)
    python benchmarks/quality.py --data ../shared/data/flipkart    # Flipkart, level-0 categories
    python benchmarks/quality.py --image --ocr rapidocr            # + the photos' words, vs without
    python benchmarks/quality.py --image --ocr auto                # OCR kept where fit says so

With ``--ocr ENGINE|auto`` the same outer folds are run twice, without and with
``Classifier(ocr=...)`` (a shared fit cache: the second run fits only what OCR changes), and
the report compares them on the listings with a photo, on those whose title is short (≤ 4
words), and per class.
"""

from __future__ import annotations

import sys
from pathlib import Path
from typing import Any

from _common import (
    NOISE_NOTE,
    base_parser,
    baseline_pipeline,
    baseline_texts,
    classification_scores,
    data_missing,
    dataset_name,
    layouts_table,
    load_development,
    load_labelled,
    machine_info,
    machine_line,
    markdown_table,
    precision_coverage_table,
    save_results,
    timer,
)

METRICS = (("weighted_f1", "weighted F1"), ("macro_f1", "macro F1"), ("accuracy", "accuracy"))


#: Rakuten's classes of books, magazines and games (it has no DVD class), for the OCR report.
PRINTED_AND_BOXED = ("10", "2705", "2280", "2403", "40", "50", "60", "2462", "2905")


def build_model(image: bool, seed: int, ocr: str | None = None, memory: str | None = None,
                members: tuple[str, ...] | None = None, image_options: dict | None = None):
    """prodcat's default Classifier; ``members``: its text ensemble's members instead of the
    default ones, ``image_options``: ImageClassifier parameters other than the defaults, such as
    another photo encoder or head C (ablations)."""
    from prodcat.model import Classifier

    text = None
    if members:
        from prodcat.text.ensemble import TextEnsemble

        text = TextEnsemble(members=members, random_state=seed)
    image_model = None
    if image:
        from prodcat.image import ImageClassifier

        image_model = ImageClassifier(random_state=seed, **(image_options or {}))
    return Classifier(text=text, image=image_model, random_state=seed, ocr=ocr, memory=memory)


def run_prodcat(catalog: Any, folds: int, seed: int, image: bool, ocr: str | None = None,
                memory: str | None = None, X: Any = None, layouts: bool = True,
                unlabelled: Any = None, members: tuple[str, ...] | None = None,
                image_options: dict | None = None):
    """prodcat's outer-fold result (probabilities, layouts, per-row thresholds).

    ``unlabelled``: listings without labels given to every outer training fold's fit, as
    ``prodcat train --unlabelled`` does (their photos teach the image model through the text
    model's confident answers; their labels are never known)."""
    from prodcat.evaluation.crossval import cross_val_proba

    fit_params = {"taxonomy": catalog.taxonomy}
    if unlabelled is not None:
        fit_params["unlabelled"] = unlabelled
    with timer() as elapsed:
        cv = cross_val_proba(build_model(image, seed, ocr, memory, members, image_options), catalog.X if X is None else X,
                             catalog.y, folds=folds, seed=seed, progress=False,
                             fit_params=fit_params, layouts=layouts)
    return cv, elapsed()


def ocr_comparison(cv: Any, without: Any, texts: Any, titles: Any, classes: Any) -> dict:
    """With vs without OCR on the listings with a photo: weighted F1 (all, short titles, with
    words read), per outer fold, per class of :data:`PRINTED_AND_BOXED`."""
    import numpy as np
    from sklearn.metrics import f1_score

    y = cv.y
    has = without.modalities["has_image"] if without.modalities is not None else np.zeros(len(y), bool)
    short = np.array([len(str(t).split()) <= 4 for t in titles])
    words = np.array([bool(t) for t in texts])
    groups = {"photo": has, "photo_short_title": has & short, "photo_with_words": has & words,
              "all": np.ones(len(y), bool)}
    out: dict[str, Any] = {"groups": {}, "per_fold": [], "per_class": {}}
    for name, mask in groups.items():
        a = classification_scores(y[mask], classes[without.proba[mask].argmax(1)])["weighted_f1"]
        b = classification_scores(y[mask], classes[cv.proba[mask].argmax(1)])["weighted_f1"]
        out["groups"][name] = {"n": int(mask.sum()), "without": a, "with": b,
                               "delta_points": 100 * (b - a)}
    for f in np.unique(cv.folds):
        m = has & (cv.folds == f)
        a = classification_scores(y[m], classes[without.proba[m].argmax(1)])["weighted_f1"]
        b = classification_scores(y[m], classes[cv.proba[m].argmax(1)])["weighted_f1"]
        out["per_fold"].append({"fold": int(f), "without": a, "with": b, "delta_points": 100 * (b - a)})
    labels = [c for c in PRINTED_AND_BOXED if c in set(classes.tolist())]
    f_without = f1_score(y[has], classes[without.proba[has].argmax(1)], labels=labels, average=None, zero_division=0)
    f_with = f1_score(y[has], classes[cv.proba[has].argmax(1)], labels=labels, average=None, zero_division=0)
    for c, a, b in zip(labels, f_without, f_with, strict=True):
        out["per_class"][c] = {"n": int((y[has] == c).sum()), "without": float(a), "with": float(b),
                               "delta_points": float(100 * (b - a))}
    return out


def ocr_markdown(comp: dict, engine: str, design: str, taxonomy: Any, seconds: tuple) -> list[str]:
    labels = {"photo": "with a photo", "photo_short_title": "with a photo, title ≤ 4 words",
              "photo_with_words": "with a photo on which words were read", "all": "all listings"}
    rows = [[labels[k], g["n"], g["without"], g["with"], f"{g['delta_points']:+.2f}"]
            for k, g in comp["groups"].items()]
    deltas = [r["delta_points"] for r in comp["per_fold"]]
    fold_line = ", ".join(f"{d:+.2f}" for d in deltas)
    cls_rows = [[f"{c} {taxonomy.name(c)}", r["n"], r["without"], r["with"], f"{r['delta_points']:+.2f}"]
                for c, r in comp["per_class"].items()]
    return [f"### OCR ({engine}, {design}): fused weighted F1 without vs with, same outer folds",
            markdown_table(["listings", "n", "without OCR", "with OCR", "delta (points)"], rows, digits=4),
            f"Per outer fold, listings with a photo: {fold_line} points "
            f"(better on {sum(d > 0 for d in deltas)} of {len(deltas)}). CV wall time without "
            f"{seconds[0]:.0f} s, with {seconds[1]:.0f} s (a shared fit cache: the second run fits "
            "only what OCR changes; OCR itself read from its cache after the first pass).",
            "Per class, listings with a photo (F1; Rakuten has no DVD class):",
            markdown_table(["class", "n", "without OCR", "with OCR", "delta (points)"], cls_rows, digits=3)]


def run_baseline(catalog: Any, fold_of: Any, classes: Any):
    """The recipe's out-of-fold probabilities (columns in ``classes``), per layout."""
    import numpy as np

    from prodcat.evaluation.layouts import layout_frames

    y = catalog.y.astype(str).to_numpy()
    frame = catalog.frame.reset_index(drop=True)
    out: dict[str, Any] = {}
    with timer() as elapsed:
        for f in np.unique(fold_of):
            tr, te = np.flatnonzero(fold_of != f), np.flatnonzero(fold_of == f)
            pipe = baseline_pipeline().fit(baseline_texts(frame.iloc[tr]), y[tr])
            cols = np.searchsorted(classes, pipe.classes_)
            for name, layout in layout_frames(frame.iloc[te].reset_index(drop=True)).items():
                proba = out.setdefault(name, np.zeros((len(y), len(classes))))
                proba[np.ix_(te, cols)] = pipe.predict_proba(baseline_texts(layout))
    return out, elapsed()


def fusion_table(fusions: list) -> str:
    names = list(dict.fromkeys(k for f in fusions if f for k in f["oof_log_loss"]))
    rows = [[i, f["method"], *(f["oof_log_loss"].get(n) for n in names)] if f else [i, "–", *([None] * len(names))]
            for i, f in enumerate(fusions)]
    return markdown_table(["fold", "chosen", *names], rows, digits=3)


def fold_table(y, fold_of, p_prodcat, p_base, classes) -> tuple[list[dict], dict]:
    import numpy as np

    rows = []
    for f in np.unique(fold_of):
        te = fold_of == f
        a = classification_scores(y[te], classes[p_prodcat[te].argmax(1)])["weighted_f1"]
        b = classification_scores(y[te], classes[p_base[te].argmax(1)])["weighted_f1"]
        rows.append({"fold": int(f), "prodcat": a, "recipe": b, "delta_points": 100 * (a - b)})
    deltas = np.array([r["delta_points"] for r in rows])
    return rows, {"mean": float(deltas.mean()), "sd": float(deltas.std(ddof=1)) if len(deltas) > 1 else 0.0,
                  "folds_better": int((deltas > 0).sum()), "folds": len(deltas)}


def parse_args(argv: list[str] | None):
    parser = base_parser(__doc__.split("\n\n")[0], out=False)
    parser.add_argument("--folds", type=int, default=5)
    parser.add_argument("--seed", type=int, default=0, help="seed of the fold shuffle")
    parser.add_argument("--repeats", type=int, default=1,
                        help="repeat the whole nested CV on this many shuffles (seeds --seed, "
                             "--seed+1, …) and report every figure per shuffle and their mean")
    parser.add_argument("--level", type=int, default=None,
                        help="category level for Flipkart data (default: the reader's, 0)")
    parser.add_argument("--image", action="store_true", help="prodcat with its image model (fused)")
    parser.add_argument("--ocr", default=None, metavar="ENGINE",
                        help="compare with and without the OCR channel (rapidocr, tesseract, auto)")
    parser.add_argument("--unlabelled", type=Path, default=None,
                        help="unlabelled listings with photos for the image model's pseudo-labels "
                             "(e.g. ../shared/data/rakuten_unlabelled; with --image)")
    parser.add_argument("--members", default=None,
                        help="comma-separated text ensemble members instead of the default ones "
                             "(an ablation, e.g. tfidf-svm)")
    parser.add_argument("--image-encoder", default=None,
                        help="photo encoder instead of the default (an ablation, e.g. efficientnet-lite2)")
    parser.add_argument("--image-C", type=float, default=None,
                        help="inverse regularisation of the photo head instead of its default (an ablation)")
    parser.add_argument("--all-rows", action="store_true",
                        help="include Rakuten's frozen final-check split (off: it is looked at once)")
    parser.add_argument("--name", default=None,
                        help="name in the results file quality_<name> (default: the data folder's)")
    args = parser.parse_args(argv)
    if args.repeats < 1:
        parser.error("--repeats must be at least 1")
    if args.ocr and args.repeats > 1:
        parser.error("--ocr compares two models on one shuffle; leave --repeats at 1")
    return args


def image_ablation(args: Any) -> dict:
    """The ImageClassifier parameters the ablation options ask for (none: the defaults)."""
    options = {"encoder": args.image_encoder, "C": args.image_C}
    return {k: v for k, v in options.items() if v is not None}


def run_shuffle(catalog: Any, args: Any, seed: int, members: tuple[str, ...] | None) -> dict:
    """Every figure of one nested CV (outer folds shuffled by ``seed``), prodcat against the
    recipe on the same folds."""
    import numpy as np

    from prodcat.evaluation.automation import coverage_at_precision, model_promise
    from prodcat.evaluation.layouts import layout_scores

    ocr_run = None
    if args.ocr:
        from prodcat.model.fitcache import default_fit_cache_dir
        from prodcat.model.ocr_channel import ocr_texts, resolve_ocr

        engine = resolve_ocr(args.ocr)
        memory = str(default_fit_cache_dir())
        with timer() as read_s:
            texts = ocr_texts(catalog.X, engine, progress=True)
        print(f"OCR of {int(catalog.X['image'].notna().sum())} photos: {read_s():.0f} s", file=sys.stderr)
        without, without_s = run_prodcat(catalog, args.folds, seed, args.image, memory=memory,
                                         layouts=False)
        cv, prodcat_s = run_prodcat(catalog, args.folds, seed, args.image,
                                    ocr="auto" if args.ocr == "auto" else engine, memory=memory)
        ocr_run = (engine, texts, without, without_s)
    else:
        unlabelled = None
        if args.unlabelled is not None:
            from prodcat.data import read_catalog

            unlabelled = read_catalog(args.unlabelled).X
        cv, prodcat_s = run_prodcat(catalog, args.folds, seed, args.image, unlabelled=unlabelled,
                                    members=members, image_options=image_ablation(args))
    classes = np.asarray(cv.classes).astype(str)
    base, base_s = run_baseline(catalog, cv.folds, classes)
    y = cv.y
    y_idx = np.searchsorted(classes, y)

    res = {"prodcat": classification_scores(y, classes[cv.proba.argmax(1)]),
           "recipe": classification_scores(y, classes[base["given"].argmax(1)])}
    res["prodcat"]["seconds"], res["recipe"]["seconds"] = prodcat_s, base_s
    folds, spread = fold_table(y, cv.folds, cv.proba, base["given"], classes)
    layouts = {"prodcat": layout_scores(y, cv.layouts, classes),
               "recipe": layout_scores(y, base, classes)}
    layout_folds = {name: fold_table(y, cv.folds, cv.layouts[name], base[name], classes)[1]
                    for name in layouts["prodcat"]}
    cover = {"prodcat": coverage_at_precision(cv.proba, y_idx),
             "recipe": coverage_at_precision(base["given"], y_idx)}
    promise = model_promise(cv.proba, y, classes, cv.thresholds, 0.95) if cv.thresholds is not None else None
    photo = None
    if cv.modalities is not None:
        has = cv.modalities["has_image"]
        photo = {"n": int(has.sum()),
                 "fused": classification_scores(y[has], classes[cv.proba[has].argmax(1)]),
                 "text": classification_scores(y[has], classes[cv.modalities["text"][has].argmax(1)]),
                 "image": classification_scores(y[has], classes[cv.modalities["image"][has].argmax(1)]),
                 "recipe": classification_scores(y[has], classes[base["given"][has].argmax(1)])}
    ocr_comp = None
    if ocr_run is not None:
        engine, texts, without, without_s = ocr_run
        ocr_comp = ocr_comparison(cv, without, texts, catalog.X["title"], classes)
        ocr_comp.update(engine=engine, requested=args.ocr, seconds_without=without_s,
                        seconds_with=prodcat_s)
    return {"seed": seed, "prodcat": res["prodcat"], "baseline": res["recipe"],
            "delta_points": {key: 100 * (res["prodcat"][key] - res["recipe"][key]) for key, _ in METRICS},
            "per_fold": folds, "fold_delta": spread, "layouts": layouts, "layout_folds": layout_folds,
            "precision_coverage": cover, "threshold_promise": promise, "photo": photo,
            "ocr": ocr_comp, "fusions": cv.fusions}


def shuffle_markdown(r: dict, args: Any, name: str, catalog: Any) -> list[str]:
    """The full report of one shuffle."""
    delta = r["delta_points"]
    rows = [[label, r["prodcat"][key], r["baseline"][key], f"{delta[key]:+.2f}"] for key, label in METRICS]
    rows.append(["CV wall time (s)", f"{r['prodcat']['seconds']:.1f}", f"{r['baseline']['seconds']:.1f}", "–"])
    fold_rows = [[f["fold"], f["prodcat"], f["recipe"], f"{f['delta_points']:+.2f}"] for f in r["per_fold"]]
    spread = r["fold_delta"]
    parts = [
        f"## Quality on {name}: prodcat Classifier() vs the seeds' recipe",
        f"{args.folds}-fold stratified CV (shuffled, seed {r['seed']}), the same outer folds for both; "
        f"every prodcat choice made inside each outer training fold. {len(catalog):,} real labelled "
        f"listings, {catalog.y.nunique()} categories, from {args.data}"
        + (f"; {args.unlabelled} given as unlabelled listings to every training fold"
           if args.unlabelled else "")
        + ("" if args.all_rows or catalog.format != "rakuten" else " (frozen final-check split left out)") + ".",
        markdown_table(["metric", "prodcat", "recipe", "delta (points)"], rows, digits=4),
        f"Per outer fold (weighted F1): delta {spread['mean']:+.2f} ± {spread['sd']:.2f} points, "
        f"prodcat better on {spread['folds_better']} of {spread['folds']} folds.",
        markdown_table(["fold", "prodcat", "recipe", "delta (points)"], fold_rows, digits=4),
        "Field layouts (the same test listings as other feeds deliver them), weighted F1:",
        layouts_table(r["layouts"], r["layout_folds"]),
        "Share filed automatically at a target precision (best threshold on the outer-fold answers):",
        precision_coverage_table(r["precision_coverage"]),
    ]
    promise = r["threshold_promise"]
    if promise is not None:
        prec = promise["precision"]
        parts.append(f"prodcat's stored thresholds (chosen in each outer training fold for 95 % precision) "
                     f"filed {promise['coverage']:.1%} of the held-out listings at "
                     f"{'–' if prec is None else f'{prec:.1%}'} precision.")
    photo = r["photo"]
    if photo is not None:
        parts.append(f"Listings with a photo ({photo['n']}): fused weighted F1 {photo['fused']['weighted_f1']:.4f}, "
                     f"text alone {photo['text']['weighted_f1']:.4f} "
                     f"({100 * (photo['fused']['weighted_f1'] - photo['text']['weighted_f1']):+.2f} points), "
                     f"image alone {photo['image']['weighted_f1']:.4f}, recipe {photo['recipe']['weighted_f1']:.4f}.")
    if r["fusions"]:
        parts += ["Fusion chosen in each outer training fold, and the out-of-fold log loss there "
                  "(inner folds, listings with a photo) of every candidate and of each modality alone:",
                  fusion_table(r["fusions"])]
    if r["ocr"] is not None:
        comp = r["ocr"]
        parts += ocr_markdown(comp, comp["engine"],
                              f"ocr={'auto' if args.ocr == 'auto' else comp['engine']!r}: the words in the description",
                              catalog.taxonomy, (comp["seconds_without"], comp["seconds_with"]))
    return parts


def repeat_figures(r: dict) -> dict[str, float]:
    """One shuffle's headline figures (points or percent), by row label of the repeat table."""
    out = {"weighted F1, prodcat": r["prodcat"]["weighted_f1"], "weighted F1, recipe": r["baseline"]["weighted_f1"],
           "weighted F1 delta (points)": r["delta_points"]["weighted_f1"],
           "outer folds better (of each shuffle's)": r["fold_delta"]["folds_better"]}
    for name, scores in r["layouts"]["prodcat"].items():
        if name != "given":
            recipe = r["layouts"]["recipe"][name]["weighted_f1"]
            out[f"layout {name}: delta (points)"] = 100 * (scores["weighted_f1"] - recipe)
    for mine, theirs in zip(r["precision_coverage"]["prodcat"], r["precision_coverage"]["recipe"], strict=True):
        t = f"{mine['target_precision']:.0%}"
        out[f"filed at {t} precision, prodcat (%)"] = 100 * mine["coverage"]
        out[f"filed at {t} precision, recipe (%)"] = 100 * theirs["coverage"]
        out[f"filed at {t} precision, delta (points)"] = 100 * (mine["coverage"] - theirs["coverage"])
    promise = r["threshold_promise"]
    if promise is not None:
        out["stored threshold: filed (%)"] = 100 * promise["coverage"]
        out["stored threshold: precision of what was filed (%)"] = (
            float("nan") if promise["precision"] is None else 100 * promise["precision"])
    if r["photo"] is not None:
        out["listings with a photo: fused − text (points)"] = 100 * (
            r["photo"]["fused"]["weighted_f1"] - r["photo"]["text"]["weighted_f1"])
    return out


def repeat_summary(results: list[dict]) -> tuple[dict, str]:
    """Every headline figure per shuffle and its mean over shuffles (JSON part, markdown)."""
    import numpy as np

    figures = [repeat_figures(r) for r in results]
    summary = {label: {"per_shuffle": [f[label] for f in figures], "mean": float(np.mean([f[label] for f in figures]))}
               for label in figures[0]}
    seeds = [r["seed"] for r in results]
    rows = [[label, *(figure(label, v) for v in s["per_shuffle"]), figure(label, s["mean"])]
            for label, s in summary.items()]
    markdown = "\n\n".join([
        f"## Repeated over {len(results)} shuffles of the outer folds (seeds {', '.join(map(str, seeds))})",
        "The same nested CV, prodcat and the recipe refitted on every shuffle's folds: which listings "
        "share a test fold moves single-shuffle figures by points (coverage at a precision most), so "
        "decisions read the mean. The first shuffle's full report follows.",
        markdown_table(["figure", *(f"seed {s}" for s in seeds), "mean"], rows)])
    return summary, markdown


def figure(label: str, value: float) -> str:
    """A repeat-table cell: scores with 4 digits, points and percentages with 2."""
    if value != value:
        return "–"
    return f"{value:.4f}" if label.startswith("weighted F1,") else f"{value:.2f}"


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    if data_missing(args.data):
        return 0
    name = (args.name or dataset_name(args.data)) + ("_image" if args.image else "") + (
        "" if not args.ocr else "_ocr_auto" if args.ocr == "auto" else "_ocr") + (
        "_unlabelled" if args.unlabelled else "") + (
        "_members_" + args.members.replace(",", "_") if args.members else "") + (
        "_" + args.image_encoder if args.image_encoder else "") + (
        f"_C{args.image_C:g}" if args.image_C is not None else "")
    members = tuple(m for m in args.members.split(",") if m) if args.members else None
    catalog = (load_labelled if args.all_rows else load_development)(args.data, level=args.level)
    results = []
    for seed in range(args.seed, args.seed + args.repeats):
        print(f"{args.folds}-fold CV on {len(catalog):,} listings of {name}, seed {seed} …", file=sys.stderr)
        results.append(run_shuffle(catalog, args, seed, members))
    parts = shuffle_markdown(results[0], args, name, catalog)
    summary = None
    if len(results) > 1:
        summary, table = repeat_summary(results)
        parts = [parts[0], table, *parts[1:]]
    parts += [machine_line(info := machine_info()), NOISE_NOTE]
    markdown = "\n\n".join(parts)
    print(markdown)
    if args.save:
        first = results[0]
        payload = {"benchmark": "quality", "name": name, "data": str(args.data), "n": len(catalog),
                   "n_classes": int(catalog.y.nunique()), "folds": args.folds, **first,
                   "repeats": summary, "shuffles": results[1:] if len(results) > 1 else None,
                   "unlabelled": str(args.unlabelled) if args.unlabelled else None,
                   "members": list(members) if members else None,
                   "image_encoder": args.image_encoder, "image_C": args.image_C, "machine": info}
        for path in save_results(f"quality_{name}", payload, markdown):
            print(f"wrote {path}", file=sys.stderr)
    return 0


if __name__ == "__main__":
    sys.exit(main())
