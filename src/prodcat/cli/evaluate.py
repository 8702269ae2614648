"""``prodcat evaluate``: score a bundle on labelled data, or cross-validate a new model."""

from __future__ import annotations

import sys
from pathlib import Path

import click

from prodcat.cli.common import check_out_folder, echo, read_data
from prodcat.cli.modelling import build_classifier, fit_params, fold_scores
from prodcat.cli.options import (
    bundle_trust_options,
    fitting_options,
    split_fitting_kwargs,
    start_tracking,
)
from prodcat.errors import ConfigError, DataError


@click.command()
@click.option("--model", "model_dir", type=click.Path(), default=None, help="bundle to evaluate")
@click.option("--data", required=True, type=click.Path(), help="labelled evaluation data")
@click.option("--out", required=True, type=click.Path(), help="report folder to write")
@click.option("--cv", "cv", type=int, default=0, help="cross-validate a new model on --data instead")
@click.option("--robustness/--no-robustness", default=None,
              help="also score the bundle with perturbed photos and without descriptions "
                   "[default: on when the model has an image modality; skipped with --cv]")
@fitting_options
@bundle_trust_options
def evaluate(model_dir, data, out, cv, robustness, **kwargs):
    """Evaluate a bundle on labelled data, or cross-validate on one data set (--cv 5)."""
    from prodcat.evaluation import compute_metrics, write_report
    from prodcat.evaluation.automation import automation_section, model_promise
    from prodcat.evaluation.crossval import cross_val_proba
    from prodcat.evaluation.layouts import layout_frames, layout_scores, layouts_section
    from prodcat.evaluation.modalities import modality_metrics, modality_sections
    from prodcat.model import load_bundle
    from prodcat.tracking.values import bundle_tags

    data_kw, model_kw, track_kw = split_fitting_kwargs(kwargs)
    if (model_dir is None) == (cv == 0):
        raise ConfigError("give either --model MODEL_DIR or --cv N (N >= 2)")
    if cv == 1 or cv < 0:
        raise ConfigError("--cv must be at least 2")
    check_out_folder(Path(out))
    catalog = read_data(data, **data_kw)
    labelled = catalog.labelled()
    if len(labelled) == 0:
        raise DataError(f"{data} has no labelled listings: evaluation needs labels")
    if model_dir is not None:
        model, manifest = load_bundle(model_dir)
        run = start_tracking(track_kw, "evaluate", labelled, model, data_kw=data_kw,
                             tags=bundle_tags(model_dir, manifest))
        parts = _modalities_in_chunks(model, labelled.X)
        y, classes = labelled.y.to_numpy(), [str(c) for c in model.classes_]
        taxonomy = model.taxonomy_.extended(labelled.taxonomy.categories)
        metrics = compute_metrics(y, parts["fused"], classes, taxonomy)
        layouts = {name: parts["fused"] if name == "given"
                   else _modalities_in_chunks(model, frame)["fused"]
                   for name, frame in layout_frames(labelled.X).items()}
        thresholds = model.threshold_
        metrics["model"] = {"path": str(model_dir), "created_at": manifest.get("created_at"),
                            "training_fingerprint": manifest.get("training", {}).get("fingerprint"),
                            "fusion": manifest.get("fusion")}
        title = f"prodcat evaluation of {Path(model_dir).name} on {Path(data).name}"
    else:
        model = build_classifier(**model_kw, catalog=labelled)
        run = start_tracking(track_kw, "evaluate", labelled, model, data_kw=data_kw, cv=cv,
                             unlabelled=model_kw["unlabelled"])
        res = cross_val_proba(model, labelled.X, labelled.y, folds=cv, seed=model_kw["seed"],
                              fit_params=fit_params(model, model_kw["unlabelled"]), layouts=True)
        y, classes, taxonomy = res.y, list(res.classes), labelled.taxonomy
        metrics = compute_metrics(y, res.proba, classes, taxonomy)
        metrics["cv"] = {"folds": cv, "fold_scores": fold_scores(res), "fit_seconds": res.fit_seconds,
                         "parameters": dict(model_kw)}
        parts = {"fused": res.proba, **(res.modalities or {})}
        layouts, thresholds = res.layouts, res.thresholds
        title = f"prodcat {cv}-fold cross-validation on {Path(data).name}"
    target = getattr(model, "automation_", {}).get("target_precision", model.target_precision)
    metrics["automation"] = model_promise(parts["fused"], y, classes, thresholds, target)
    metrics["layouts"] = layout_scores(y, layouts, classes, threshold=thresholds)
    sections = [automation_section(metrics), layouts_section(metrics["layouts"])]
    if parts.get("image") is not None or parts.get("ocr") is not None:
        has_ocr = parts.get("has_ocr")
        if has_ocr is None and parts.get("ocr_text") is not None:
            has_ocr = [bool(t) for t in parts["ocr_text"]]
        metrics["modalities"] = modality_metrics(y, parts["fused"], parts["text"], parts.get("image"),
                                                 parts["has_image"], classes, taxonomy,
                                                 ocr=parts.get("ocr"), has_ocr=has_ocr)
        sections += modality_sections(metrics["modalities"])
    sections += _robustness(metrics, model, labelled.X, y, taxonomy, robustness,
                            fitted=model_dir is not None, seed=model_kw["seed"])
    metrics["data"] = {"source": catalog.source, "format": catalog.format,
                       "read_report": catalog.report.to_dict()}
    paths = write_report(metrics, out, title=title, extra_sections=sections)
    echo(f"n={metrics['n']}  weighted F1 {metrics['weighted_f1']:.4f}  macro F1 {metrics['macro_f1']:.4f}  "
         f"accuracy {metrics['accuracy']:.4f}  top-3 {metrics['top3_accuracy']:.4f}  ECE {metrics['ece']:.4f}")
    if metrics["unseen_labels"]["count"]:
        echo(f"warning: {metrics['unseen_labels']['count']} listings have labels the model never saw "
             "(counted as errors)")
    echo(f"report: {paths['report_html']}")
    run.log_evaluation(metrics, out)
    run.finish()


def _robustness(metrics: dict, model, X, y, taxonomy, asked: bool | None, *, fitted: bool,
                seed: int) -> list:
    """``metrics["robustness"]`` and its report section, when the model has a photo model."""
    image_model = getattr(model, "image_" if fitted else "image", None)
    if asked is False or image_model is None:
        if asked:
            echo("note: robustness skipped: the model has no image modality")
        return []
    from prodcat.evaluation.robustness import robustness_metrics, robustness_section

    if fitted:
        metrics["robustness"] = robustness_metrics(model, X, y, seed=seed, taxonomy=taxonomy)
    else:
        # Robustness re-scores one fitted model with perturbed inputs: under --cv five more fits
        # would double the run for a number the bundle gives directly.
        metrics["robustness"] = {"skipped": "needs one fitted model: run evaluate --model on a "
                                            "bundle to measure it"}
        if asked:
            echo(f"note: robustness skipped under --cv ({metrics['robustness']['skipped']})")
    return [robustness_section(metrics["robustness"])]


def _modalities_in_chunks(model, X, chunk: int = 4096) -> dict:
    """``model.predict_modalities`` over ``X`` in chunks, with a progress bar."""
    import numpy as np
    from tqdm.auto import tqdm

    parts = []
    with tqdm(total=len(X), desc="predicting", unit="listing", disable=len(X) <= chunk, file=sys.stderr) as bar:
        for start in range(0, len(X), chunk):
            parts.append(model.predict_modalities(X.iloc[start:start + chunk]))
            bar.update(min(chunk, len(X) - start))
    return {k: (None if parts[0][k] is None else np.concatenate([p[k] for p in parts]))
            for k in parts[0]}
