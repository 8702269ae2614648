"""``prodcat train``: fit a classifier (with cross-validated scores) and save it as a bundle."""

from __future__ import annotations

import time
import warnings
from pathlib import Path

import click

from prodcat.cli.common import echo, read_data
from prodcat.cli.modelling import build_classifier, cv_folds, cv_modalities, fit_params, fold_scores
from prodcat.cli.options import (
    fitting_options,
    signing_options,
    split_fitting_kwargs,
    start_tracking,
)
from prodcat.errors import DataError

#: The CV scores a bundle's manifest keeps (the full report is ``prodcat evaluate --cv``'s).
CV_HEADLINE = ("n", "weighted_f1", "macro_f1", "accuracy", "top3_accuracy", "ece", "log_loss", "coverage")


@click.command()
@click.option("--data", required=True, type=click.Path(), help="training data (folder or file)")
@click.option("--out", required=True, type=click.Path(), help="model bundle folder to write")
@click.option("--cv", "cv", default="auto", show_default=True,
              help="folds of cross-validation recorded in the bundle; 0 skips, auto = 5 up to 20k listings")
@click.option("--corrections", default=None, metavar="URL|FILE",
              help="reviewed labels (a review store URL or a `prodcat corrections export` file): they "
                   "override the given labels; reviewed listings the data lacks are added")
@fitting_options
@signing_options
def train(data, out, cv, corrections, **kwargs):
    """Train a classifier and save it as a bundle."""
    from prodcat.evaluation import compute_metrics
    from prodcat.evaluation.crossval import cross_val_proba
    from prodcat.model.bundle import check_bundle_target

    data_kw, model_kw, track_kw = split_fitting_kwargs(kwargs)
    check_bundle_target(Path(out))
    catalog = read_data(data, **data_kw)
    applied = None
    if corrections:
        from prodcat.review.corrections import apply_corrections, read_corrections

        catalog, applied = apply_corrections(catalog, read_corrections(corrections))
        echo(f"corrections: {applied['relabelled']} relabelled, {applied['confirmed']} confirmed, "
             f"{applied['added']} listings added ({applied['decisions']} decisions)")
    labelled = catalog.labelled()
    if len(labelled) == 0:
        from prodcat.data.readers import MISSING_LABEL_NOTE

        why = next((n for n in catalog.report.notes if n.startswith(MISSING_LABEL_NOTE)), None)
        raise DataError(f"{data} has no labelled listings to train on" + (f": {why}" if why else ""))
    model = build_classifier(**model_kw, catalog=labelled)
    extra = fit_params(model, model_kw["unlabelled"])
    folds = cv_folds(cv, labelled)
    run = start_tracking(track_kw, "train", labelled, model, data_kw=data_kw, cv=folds,
                         unlabelled=model_kw["unlabelled"])
    metrics = {}
    if folds:
        t0 = time.perf_counter()
        res = cross_val_proba(model, labelled.X, labelled.y, folds=folds, seed=model_kw["seed"],
                              fit_params=extra)
        cvm = compute_metrics(res.y, res.proba, list(res.classes), labelled.taxonomy)
        metrics["cv"] = {"folds": folds, "seconds": round(time.perf_counter() - t0, 1),
                         **{k: cvm[k] for k in CV_HEADLINE},
                         "fold_scores": fold_scores(res), **cv_modalities(res, labelled.taxonomy)}
        echo(f"{folds}-fold CV: weighted F1 {cvm['weighted_f1']:.4f}, accuracy {cvm['accuracy']:.4f}, "
             f"top-3 {cvm['top3_accuracy']:.4f}")
    echo(f"training on {len(labelled)} listings ...")
    t0 = time.perf_counter()
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        model.fit(labelled.X, labelled.y, taxonomy=labelled.taxonomy, **extra)
    for w in caught:
        echo(f"warning: {w.message}")
    seconds = time.perf_counter() - t0
    if folds:  # what the model answers out of fold: prodcat monitor's reference for drift
        from prodcat.evaluation.drift import reference_distribution

        metrics["monitoring"] = reference_distribution(res.proba, res.classes, model.threshold_,
                                                       source=f"out-of-fold answers ({folds}-fold CV)")
    training = {"source": catalog.source, "format": catalog.format, "fingerprint": labelled.fingerprint(),
                "n_listings": len(labelled), "n_classes": len(model.classes_),
                "class_counts": labelled.class_counts(), "read_report": catalog.report.to_dict(),
                "fit_seconds": round(seconds, 2), "tracking": run.bundle_reference()}
    if applied is not None:
        training["corrections"] = {"source": corrections, **applied}
    path = model.save(out, training=training, metrics=metrics)
    echo(f"trained {len(model.classes_)} categories in {seconds:.1f} s; bundle written to {path}")
    run.log_bundle(path)
    run.finish()
