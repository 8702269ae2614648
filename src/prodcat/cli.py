"""The ``prodcat`` command: train, evaluate, predict, info and demo."""

from __future__ import annotations

import json
import os
import sys
import time
import traceback
import warnings
from pathlib import Path

import click

from prodcat.errors import ConfigError, DataError, ProdcatError

# ---------------------------------------------------------------------------------------------
# shared options


def data_options(fn):
    """Options every command that reads a data set understands."""
    options = [
        click.option("--format", "fmt", default="auto", show_default=True,
                     help="auto, rakuten, flipkart or table"),
        click.option("--split", default=None, help="Rakuten split to read (train or test)"),
        click.option("--level", type=int, default=None, help="Flipkart category depth (0 = top level)"),
        click.option("--title-col", default=None, help="table: title column [title]"),
        click.option("--description-col", default=None, help="table: description column [description]"),
        click.option("--image-col", default=None, help="table: image path column [image]"),
        click.option("--label-col", default=None, help="table: label column [label]"),
        click.option("--id-col", default=None, help="table: id column [id]"),
        click.option("--image-root", default=None, type=click.Path(), help="folder image paths are relative to"),
        click.option("--categories", default=None, type=click.Path(), help="categories.csv (code,name,parent)"),
        click.option("--encoding", default="utf-8", show_default=True, help="text encoding of CSV files"),
    ]
    for opt in reversed(options):
        fn = opt(fn)
    return fn


MODEL_DEFAULTS = {"head": "linear-svm", "C": None, "class_weight": True, "calibration": "auto",
                  "max_description_chars": 1000, "threshold": 0.8, "seed": 0,
                  "image_encoder": "auto", "image_head": "logistic", "fusion": "auto", "unlabelled": None,
                  "text_encoder": "none", "fit_cache": True}
DATA_DEFAULTS = {"fmt": "auto", "split": None, "level": None, "title_col": None, "description_col": None,
                 "image_col": None, "label_col": None, "id_col": None, "image_root": None,
                 "categories": None, "encoding": "utf-8"}


def model_options(fn):
    """Options that choose and tune the model (train and evaluate --cv)."""
    from prodcat.text.encoders import list_text_encoders
    from prodcat.text.heads import CALIBRATIONS, list_heads

    d = MODEL_DEFAULTS
    options = [
        click.option("--head", default=d["head"], show_default=True, type=click.Choice(list_heads()),
                     help="text classifier head"),
        click.option("--C", "C", type=float, default=d["C"], help="regularisation strength of the head"),
        click.option("--class-weight/--no-class-weight", default=d["class_weight"], show_default=True,
                     help="weight classes inversely to their frequency"),
        click.option("--calibration", default=d["calibration"], show_default=True,
                     type=click.Choice(CALIBRATIONS)),
        click.option("--max-description-chars", type=int, default=d["max_description_chars"],
                     show_default=True, help="description characters read per listing"),
        click.option("--threshold", type=float, default=d["threshold"], show_default=True,
                     help="confidence needed to file a listing without review"),
        click.option("--seed", type=int, default=d["seed"], show_default=True),
        click.option("--image-encoder", default=d["image_encoder"], show_default=True,
                     help="auto (efficientnet-lite0 when the data has photos and the encoder is "
                          "installed), none, or an encoder name: efficientnet-lite0/1/2"),
        click.option("--image-head", default=d["image_head"], show_default=True,
                     help="image classifier head: logistic or mlp"),
        click.option("--unlabelled", default=None, type=click.Path(),
                     help="unlabelled listings with photos (any format): their photos teach the image "
                          "model under confident text pseudo-labels"),
        click.option("--fusion", default=d["fusion"], show_default=True,
                     type=click.Choice(["auto", "late", "stack", "early"]),
                     help="how text and image are combined; auto picks by cross-validation"),
        click.option("--text-encoder", default=d["text_encoder"], show_default=True,
                     type=click.Choice(["none", *list_text_encoders()]),
                     help="sentence embedding appended to the TF-IDF features (extra text-dense)"),
        click.option("--fit-cache/--no-fit-cache", default=d["fit_cache"], show_default=True,
                     help="remember fitted models in the prodcat cache folder, so training again on "
                          "the same data with the same options loads them instead of fitting"),
    ]
    for opt in reversed(options):
        fn = opt(fn)
    return fn


def read_data(path, fmt, split, level, title_col, description_col, image_col, label_col, id_col,
              image_root, categories, encoding, *, quiet=False):
    from prodcat.data import read_catalog

    catalog = read_catalog(path, fmt, split=split, level=level, title_col=title_col,
                           description_col=description_col, image_col=image_col, label_col=label_col,
                           id_col=id_col, image_root=image_root, categories=categories, encoding=encoding)
    if not quiet:
        echo(f"read {catalog.source} ({catalog.format}): {catalog.report.summary()}")
    return catalog


def build_classifier(head, C, class_weight, calibration, max_description_chars, threshold, seed,
                     image_encoder="none", image_head="logistic", fusion="auto", unlabelled=None,
                     catalog=None, text_encoder="none", fit_cache=False):
    from prodcat.model import Classifier
    from prodcat.model.fitcache import default_fit_cache_dir
    from prodcat.text import TextClassifier

    if not 0.0 <= threshold <= 1.0:
        raise ConfigError("--threshold must be between 0 and 1")
    text = TextClassifier(head=head, C=C, class_weight="balanced" if class_weight else None,
                          calibration=calibration, max_description_chars=max_description_chars,
                          random_state=seed, dense=_text_encoder(text_encoder))
    image = _image_model(image_encoder, image_head, seed, catalog)
    memory = str(default_fit_cache_dir()) if fit_cache else None
    return Classifier(text=text, image=image, fusion=fusion, threshold=threshold, memory=memory,
                      random_state=seed)


def _text_encoder(name: str) -> str | None:
    """The sentence encoder asked for, checked to be installed before any work; None for none."""
    if name in (None, "none"):
        return None
    from prodcat.text.encoders import TextEncoderError, create_text_encoder

    try:
        create_text_encoder(name).pin_version()
    except TextEncoderError as exc:
        raise ConfigError(f"text encoder {name} is unavailable: {exc}") from None
    return name


def fit_params(model, unlabelled: str | None) -> dict:
    """``fit`` keyword arguments: the unlabelled listings, when given and useful to ``model``."""
    if unlabelled is None:
        return {}
    if model.image is None:
        echo("note: --unlabelled only teaches the image model, and there is none; ignoring it")
        return {}
    from prodcat.data import read_catalog

    catalog = read_catalog(unlabelled)
    echo(f"read {catalog.source} ({catalog.format}) as unlabelled: {catalog.report.summary()}")
    return {"unlabelled": catalog.X}


def _image_model(encoder: str, head: str, seed: int, catalog):
    """The image model asked for, or None; ``auto`` quietly falls back to text only."""
    if encoder == "none":
        return None
    has_photos = catalog is not None and catalog.frame["image"].notna().any()
    if encoder == "auto" and not has_photos:
        return None
    from prodcat.image import ImageClassifier, ImageError, create_encoder

    name = "efficientnet-lite0" if encoder == "auto" else encoder
    try:
        create_encoder(name).ensure_export()
        import onnxruntime  # noqa: F401  (the encoder runs on it)
    except (ImageError, ImportError) as exc:
        if encoder != "auto":
            raise ConfigError(f"image encoder {name} is unavailable: {exc}") from None
        echo(f"note: image modality unavailable ({exc}); training on text only")
        return None
    return ImageClassifier(encoder=name, head=head, random_state=seed)


def echo(msg: str = "", **kw) -> None:
    click.echo(msg, err=True, **kw)


def _split_data_kwargs(kwargs: dict) -> dict:
    return {k: kwargs.pop(k) for k in DATA_DEFAULTS}


def _split_model_kwargs(kwargs: dict) -> dict:
    return {k: kwargs.pop(k) for k in MODEL_DEFAULTS}


TRACKING_DEFAULTS = {"track": None, "tracking_uri": None, "experiment": None}


def tracking_options(fn):
    """Options of the commands whose runs are recorded in MLflow (train, evaluate)."""
    options = [
        click.option("--track/--no-track", "track", default=None,
                     help="record the run in MLflow [default: on when the 'track' extra is installed, "
                          "unless PRODCAT_TRACKING=0]"),
        click.option("--tracking-uri", default=None,
                     help="MLflow tracking URI, or a folder for a local SQLite store [MLFLOW_TRACKING_URI, "
                          "else ./mlruns-prodcat or $PRODCAT_TRACKING_DIR]"),
        click.option("--experiment", default=None, envvar="PRODCAT_EXPERIMENT",
                     help="MLflow experiment name [prodcat]"),
    ]
    for opt in reversed(options):
        fn = opt(fn)
    return fn


def _split_tracking_kwargs(kwargs: dict) -> dict:
    return {k: kwargs.pop(k, None) for k in TRACKING_DEFAULTS}


def _start_tracking(options: dict, kind: str, catalog, model, *, data_kw: dict, cv: int | None = None,
                    unlabelled: str | None = None, tags: dict | None = None):
    """An MLflow run (prodcat.tracking) that ends with the command: FINISHED once the command calls
    ``run.finish()``, FAILED if it raises first. Never raises: a store problem is one warning."""
    from prodcat.tracking import Tracker

    tracker = Tracker(options["tracking_uri"], options["experiment"], options["track"],
                      warn=lambda msg: echo(f"warning: {msg}"), note=echo)
    params = {f"data.{'format' if k == 'fmt' else k}": v for k, v in data_kw.items()
              if v is not None and v != DATA_DEFAULTS.get(k)}
    params.update({"cv.folds": cv} if cv is not None else {})
    params.update({"unlabelled": unlabelled} if unlabelled is not None else {})
    run = tracker.start_run(kind, data=catalog, model=model, params=params, tags=tags, finish_required=True)
    return click.get_current_context().with_resource(run)


# ---------------------------------------------------------------------------------------------
# commands


@click.group(context_settings={"help_option_names": ["-h", "--help"], "max_content_width": 100})
@click.version_option(package_name="prodcat")
def cli():
    """prodcat: put marketplace listings into the right product category."""


@cli.command()
@click.option("--data", required=True, type=click.Path(), help="training data (folder or file)")
@click.option("--out", required=True, type=click.Path(), help="model bundle folder to write")
@click.option("--cv", "cv", default="auto", show_default=True,
              help="folds of cross-validation recorded in the bundle; 0 skips, auto = 5 up to 20k listings")
@data_options
@model_options
@tracking_options
def train(data, out, cv, **kwargs):
    """Train a classifier and save it as a bundle."""
    from prodcat.evaluation import compute_metrics
    from prodcat.evaluation.crossval import cross_val_proba
    from prodcat.model.bundle import check_bundle_target

    data_kw, model_kw = _split_data_kwargs(kwargs), _split_model_kwargs(kwargs)
    track_kw = _split_tracking_kwargs(kwargs)
    check_bundle_target(Path(out))
    catalog = read_data(data, **data_kw)
    labelled = catalog.labelled()
    if len(labelled) == 0:
        raise DataError(f"{data} has no labelled listings to train on")
    model = build_classifier(**model_kw, catalog=labelled)
    extra = fit_params(model, model_kw["unlabelled"])
    folds = _cv_folds(cv, labelled)
    run = _start_tracking(track_kw, "train", labelled, model, data_kw=data_kw, cv=folds,
                          unlabelled=model_kw["unlabelled"])
    metrics = {}
    if folds:
        t0 = time.perf_counter()
        res = cross_val_proba(model, labelled.X, labelled.y, folds=folds, seed=model_kw["seed"],
                              fit_params=extra)
        cvm = compute_metrics(res.y, res.proba, list(res.classes), labelled.taxonomy)
        metrics["cv"] = {"folds": folds, "seconds": round(time.perf_counter() - t0, 1),
                         **{k: cvm[k] for k in ("n", "weighted_f1", "macro_f1", "accuracy", "top3_accuracy",
                                                "ece", "log_loss", "coverage")},
                         "fold_scores": _fold_scores(res), **_cv_modalities(res, labelled.taxonomy)}
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
    training = {"source": catalog.source, "format": catalog.format, "fingerprint": labelled.fingerprint(),
                "n_listings": len(labelled), "n_classes": len(model.classes_),
                "class_counts": labelled.class_counts(), "read_report": catalog.report.to_dict(),
                "fit_seconds": round(seconds, 2), "tracking": run.bundle_reference()}
    path = model.save(out, training=training, metrics=metrics)
    echo(f"trained {len(model.classes_)} categories in {seconds:.1f} s; bundle written to {path}")
    run.log_bundle(path)
    run.finish()


def _cv_folds(cv: str, catalog) -> int:
    if str(cv).lower() == "auto":
        # Cross-validation costs k more fits: worth it by default only while training is quick.
        largest = max(catalog.class_counts().values())
        return min(5, largest) if len(catalog) <= 20_000 and largest >= 2 else 0
    try:
        folds = int(cv)
    except ValueError:
        raise ConfigError(f"--cv must be a number of folds or auto, got {cv!r}") from None
    if folds == 1 or folds < 0:
        raise ConfigError("--cv must be 0 (none) or at least 2")
    return folds


@cli.command()
@click.option("--model", "model_dir", type=click.Path(), default=None, help="bundle to evaluate")
@click.option("--data", required=True, type=click.Path(), help="labelled evaluation data")
@click.option("--out", required=True, type=click.Path(), help="report folder to write")
@click.option("--cv", "cv", type=int, default=0, help="cross-validate a new model on --data instead")
@click.option("--robustness/--no-robustness", default=None,
              help="also score the bundle with perturbed photos and without descriptions "
                   "[default: on when the model has an image modality; skipped with --cv]")
@data_options
@model_options
@tracking_options
def evaluate(model_dir, data, out, cv, robustness, **kwargs):
    """Evaluate a bundle on labelled data, or cross-validate on one data set (--cv 5)."""
    from prodcat.evaluation import compute_metrics, write_report
    from prodcat.evaluation.crossval import cross_val_proba
    from prodcat.evaluation.modalities import modality_metrics, modality_sections
    from prodcat.model import load_bundle
    from prodcat.tracking.values import bundle_tags

    data_kw, model_kw = _split_data_kwargs(kwargs), _split_model_kwargs(kwargs)
    track_kw = _split_tracking_kwargs(kwargs)
    if (model_dir is None) == (cv == 0):
        raise ConfigError("give either --model MODEL_DIR or --cv N (N >= 2)")
    if cv == 1 or cv < 0:
        raise ConfigError("--cv must be at least 2")
    _check_out_folder(Path(out))
    catalog = read_data(data, **data_kw)
    labelled = catalog.labelled()
    if len(labelled) == 0:
        raise DataError(f"{data} has no labelled listings: evaluation needs labels")
    if model_dir is not None:
        model, manifest = load_bundle(model_dir)
        run = _start_tracking(track_kw, "evaluate", labelled, model, data_kw=data_kw,
                              tags=bundle_tags(model_dir, manifest))
        parts = _modalities_in_chunks(model, labelled.X)
        y, classes = labelled.y.to_numpy(), [str(c) for c in model.classes_]
        taxonomy = model.taxonomy_.extended(labelled.taxonomy.categories)
        metrics = compute_metrics(y, parts["fused"], classes, taxonomy)
        metrics["model"] = {"path": str(model_dir), "created_at": manifest.get("created_at"),
                            "training_fingerprint": manifest.get("training", {}).get("fingerprint"),
                            "fusion": manifest.get("fusion")}
        title = f"prodcat evaluation of {Path(model_dir).name} on {Path(data).name}"
    else:
        model = build_classifier(**model_kw, catalog=labelled)
        run = _start_tracking(track_kw, "evaluate", labelled, model, data_kw=data_kw, cv=cv,
                              unlabelled=model_kw["unlabelled"])
        res = cross_val_proba(model, labelled.X, labelled.y, folds=cv, seed=model_kw["seed"],
                              fit_params=fit_params(model, model_kw["unlabelled"]))
        y, classes, taxonomy = res.y, list(res.classes), labelled.taxonomy
        metrics = compute_metrics(y, res.proba, classes, taxonomy)
        metrics["cv"] = {"folds": cv, "fold_scores": _fold_scores(res), "fit_seconds": res.fit_seconds,
                         "parameters": {k: v for k, v in model_kw.items()}}
        parts = {"fused": res.proba, **(res.modalities or {})}
        title = f"prodcat {cv}-fold cross-validation on {Path(data).name}"
    sections = []
    if parts.get("image") is not None:
        metrics["modalities"] = modality_metrics(y, parts["fused"], parts["text"], parts["image"],
                                                 parts["has_image"], classes, taxonomy)
        sections = modality_sections(metrics["modalities"])
    # Robustness re-scores one fitted model with perturbed inputs: the bundle. Under --cv it is
    # skipped (five more fits would double the run for a number the bundle gives directly).
    image_model = getattr(model, "image_" if model_dir is not None else "image", None)
    if robustness is not False and image_model is not None:
        from prodcat.evaluation.robustness import robustness_metrics, robustness_section

        if model_dir is not None:
            metrics["robustness"] = robustness_metrics(model, labelled.X, y, seed=model_kw["seed"],
                                                       taxonomy=taxonomy)
        else:
            metrics["robustness"] = {"skipped": "needs one fitted model: run evaluate --model on a "
                                                "bundle to measure it"}
            if robustness:
                echo(f"note: robustness skipped under --cv ({metrics['robustness']['skipped']})")
        sections.append(robustness_section(metrics["robustness"]))
    elif robustness:
        echo("note: robustness skipped: the model has no image modality")
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


def _check_out_folder(out: Path) -> None:
    if out.exists() and not out.is_dir():
        raise ConfigError(f"--out {out} is a file; give a folder for the report")


def _cv_modalities(res, taxonomy) -> dict:
    """``{"modalities": {"text"|"image"|"fused": headline scores}}`` of out-of-fold predictions
    with a photo model (the bundle's manifest keeps the headline, not the per-class detail)."""
    if not res.modalities:
        return {}
    from prodcat.evaluation.modalities import modality_metrics

    m = res.modalities
    if not (m["text"].sum(axis=1) > 0).all():  # a fold fitted without its image model: not filled
        return {}
    mod = modality_metrics(res.y, res.proba, m["text"], m["image"], m["has_image"], list(res.classes), taxonomy)
    keys = ("n", "weighted_f1", "macro_f1", "accuracy", "top3_accuracy", "ece", "log_loss")
    return {"modalities": {name: {k: mod[name][k] for k in keys} for name in ("text", "image", "fused")
                           if name in mod}}


def _fold_scores(res) -> list[dict]:
    from sklearn.metrics import accuracy_score, f1_score

    scores = []
    for f in range(int(res.folds.max()) + 1):
        m = res.folds == f
        pred = res.classes[res.proba[m].argmax(axis=1)]
        scores.append({"fold": f, "n": int(m.sum()),
                       "weighted_f1": float(f1_score(res.y[m], pred, average="weighted", zero_division=0)),
                       "macro_f1": float(f1_score(res.y[m], pred, average="macro", zero_division=0)),
                       "accuracy": float(accuracy_score(res.y[m], pred))})
    return scores


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


@cli.command()
@click.option("--model", "model_dir", required=True, type=click.Path(), help="bundle to use")
@click.option("--title", default=None, help="listing title")
@click.option("--description", default="", help="listing description")
@click.option("--image", default=None, type=click.Path(), help="listing photo")
@click.option("--top-k", type=click.IntRange(1, 100), default=3, show_default=True)
@click.option("--json", "as_json", is_flag=True, help="print JSON")
@click.option("--data", default=None, type=click.Path(), help="classify every listing of a data set")
@click.option("--out", default=None, type=click.Path(),
              help="predictions for --data: a .csv or .parquet file, or a folder (one Parquet part "
                   "per partition, resumable, on Dask)")
@click.option("--scheduler", default=None, help="Dask scheduler address: run --data on that cluster")
@click.option("--workers", type=click.IntRange(0, 256), default=None,
              help="local Dask worker processes for --data [one per CPU]; 0: in this process")
@click.option("--partition-rows", type=click.IntRange(min=1), default=None,
              help="listings per partition of a folder --out [5000]")
@click.option("--restart", is_flag=True, help="delete the partitions of another job in the --out folder")
@data_options
def predict(model_dir, title, description, image, top_k, as_json, data, out, scheduler, workers,
            partition_rows, restart, **kwargs):
    """Predict the top-k categories of one listing, or of a whole data set (--data, --out)."""
    from prodcat.model import load_bundle

    data_kw = _split_data_kwargs(kwargs)
    if (data is None) == (title is None):
        raise ConfigError("give either --title (one listing) or --data with --out (a data set)")
    if data is not None and out is None:
        raise ConfigError("--data needs --out (a .csv or .parquet file)")
    if _batch_out(out, scheduler, workers, partition_rows, restart):
        if data is None:
            raise ConfigError("--scheduler, --workers, --partition-rows and --restart need --data and "
                              "an --out folder")
        from prodcat.batch import DEFAULT_PARTITION_ROWS, run_predict_job

        run_predict_job(model_dir, data, out, k=top_k, partition_rows=partition_rows or DEFAULT_PARTITION_ROWS,
                        scheduler=scheduler, workers=workers, restart=restart,
                        data_options=_source_options(data_kw), echo=echo)
        return
    if image is not None and not Path(image).is_file():
        raise DataError(f"image not found: {image}")
    model, manifest = load_bundle(model_dir)
    if data is None:
        if not title.strip() and not description.strip():
            raise DataError("the listing needs a title or a description")
        t0 = time.perf_counter()
        parts = model.predict_modalities({"title": title, "description": description, "image": image})
        ms = (time.perf_counter() - t0) * 1000
        top = model.describe(parts["fused"], top_k)[0]
        by_modality = {"text": model.describe(parts["text"], top_k)[0]}
        if parts["image"] is not None:
            by_modality["image"] = model.describe(parts["image"], top_k)[0] if parts["has_image"][0] else None
        needs_review = top[0]["probability"] < model.threshold
        if as_json:
            click.echo(json.dumps({"top_k": top, "modalities": by_modality, "needs_review": needs_review,
                                   "threshold": model.threshold, "latency_ms": round(ms, 2)},
                                  ensure_ascii=False, indent=2))
            return
        for rank, p in enumerate(top, 1):
            bar = "█" * int(round(p["probability"] * 20))
            label = p["name"] if p["name"] == p["code"] else f"{p['name']} ({p['code']})"
            click.echo(f"{rank}. {label[:50]:<50} {p['probability']:6.1%} {bar}")
        for name, answer in by_modality.items():
            said = f"{answer[0]['name']} ({answer[0]['probability']:.0%})" if answer else "no usable photo"
            click.echo(f"   {name} alone: {said}")
        click.echo("needs review" if needs_review else f"confident (≥ {model.threshold:.0%})")
        return
    catalog = read_data(data, **data_kw)
    frame = _predict_frame_in_chunks(model, catalog, top_k)
    out = Path(out)
    out.parent.mkdir(parents=True, exist_ok=True)
    if out.suffix.lower() in (".parquet", ".pq"):
        frame.to_parquet(out, index=False)
    else:
        frame.to_csv(out, index=False)
    echo(f"wrote {len(frame)} predictions to {out} "
         f"({int(frame['needs_review'].sum())} need review at threshold {model.threshold:.0%})")


def _batch_out(out, scheduler, workers, partition_rows, restart) -> bool:
    """Whether ``predict`` writes a partitioned folder (on Dask): --out is a folder (existing, or a
    name without a suffix), or a batch option was given."""
    asked = any(v not in (None, False) for v in (scheduler, workers, partition_rows, restart))
    folder = out is not None and (Path(out).is_dir() or not Path(out).suffix)
    if asked and out is not None and not folder:
        raise ConfigError(f"--scheduler, --workers, --partition-rows and --restart write a folder of "
                          f"Parquet parts; --out {out} names a file")
    return asked or folder


def _source_options(data_kw: dict) -> dict:
    """Data options as :func:`prodcat.batch.open_source` takes them."""
    return {("format" if k == "fmt" else k): v for k, v in data_kw.items()}


def _predict_frame_in_chunks(model, catalog, k: int, chunk: int = 4096):
    import pandas as pd
    from tqdm.auto import tqdm

    parts = []
    X, ids = catalog.X, catalog.frame["id"]
    with tqdm(total=len(X), desc="predicting", unit="listing", disable=len(X) <= chunk, file=sys.stderr) as bar:
        for s in range(0, len(X), chunk):
            parts.append(model.predict_frame(X.iloc[s:s + chunk], k, ids=ids.iloc[s:s + chunk]))
            bar.update(min(chunk, len(X) - s))
    return pd.concat(parts, ignore_index=True)


@cli.command()
@click.option("--data", required=True, type=click.Path(), help="catalogue whose photos to encode")
@click.option("--encoder", default="efficientnet-lite0", show_default=True,
              help="image encoder: efficientnet-lite0, -lite1 or -lite2")
@click.option("--cache", "cache_file", default=None, type=click.Path(),
              help="embedding cache file [the one training reads: $PRODCAT_CACHE_DIR/embeddings.sqlite]")
@click.option("--scheduler", default=None, help="Dask scheduler address: encode on that cluster")
@click.option("--workers", type=click.IntRange(0, 256), default=None,
              help="local Dask worker processes [one per CPU]; 0: in this process")
@click.option("--partition-rows", type=click.IntRange(min=1), default=256, show_default=True,
              help="listings per task")
@data_options
def embed(data, encoder, cache_file, scheduler, workers, partition_rows, **kwargs):
    """Encode a catalogue's photos, on a Dask cluster, into the embedding cache training reads."""
    from prodcat.batch import run_embed_job

    run_embed_job(data, encoder=encoder, cache=cache_file, partition_rows=partition_rows,
                  scheduler=scheduler, workers=workers,
                  data_options=_source_options(_split_data_kwargs(kwargs)), echo=echo)


@cli.command()
@click.option("--model", "model_dir", required=True, type=click.Path(), help="bundle to use")
@click.option("--title", default="", help="listing title")
@click.option("--description", default="", help="listing description")
@click.option("--image", default=None, type=click.Path(), help="listing photo")
@click.option("--out", required=True, type=click.Path(),
              help="folder for explanation.json and heatmap.png")
@click.option("--top-k", type=click.IntRange(1, 20), default=3, show_default=True,
              help="classes whose word weights are explained")
@click.option("--text-method", type=click.Choice(["auto", "linear", "lime"]), default="auto", show_default=True,
              help="linear: exact word contributions of a linear head; lime: LIME, any head")
@click.option("--image-method", type=click.Choice(["auto", "gradcam", "occlusion"]), default="auto",
              show_default=True, help="gradcam needs PyTorch (extra image-export); occlusion runs on ONNX")
@click.option("--lime-samples", type=click.IntRange(10, 100_000), default=500, show_default=True,
              help="perturbed copies LIME classifies (its time grows with them)")
@click.option("--words", type=click.IntRange(1, 100), default=8, show_default=True,
              help="words listed per class")
def explain(model_dir, title, description, image, out, top_k, text_method, image_method, lime_samples, words):
    """Explain why the model files one listing where it does: word weights, photo heat map,
    and what text and photo each contributed."""
    from prodcat.explain import explain_listing
    from prodcat.model import load_bundle

    if not title.strip() and not description.strip() and image is None:
        raise DataError("the listing needs a title, a description or a photo")
    if image is not None and not Path(image).is_file():
        raise DataError(f"image not found: {image}")
    model, _ = load_bundle(model_dir)
    explanation = explain_listing(model, {"title": title, "description": description, "image": image},
                                  top_k, text_method=text_method, image_method=image_method,
                                  lime_samples=lime_samples)
    path = explanation.save(out, n_words=words)
    for rank, a in enumerate(explanation.answer, 1):
        label = a["name"] if a["name"] == a["code"] else f"{a['name']} ({a['code']})"
        click.echo(f"{rank}. {label[:50]:<50} {a['probability']:6.1%}")
        if explanation.text is not None:
            pro = explanation.text.top_words(rank - 1, words, sign=1)
            con = explanation.text.top_words(rank - 1, max(1, words // 2), sign=-1)
            click.echo("   for:     " + (", ".join(f"{w} {v:+.2f}" for w, v in pro) or "-"))
            click.echo("   against: " + (", ".join(f"{w} {v:+.2f}" for w, v in con) or "-"))
    if explanation.text is not None:
        click.echo(f"word weights: {explanation.text.unit} ({explanation.text.method})")
    m = explanation.modalities
    if m.get("agree") is not None:
        click.echo(f"text says {m['text_top']}, photo says {m['image_top']}: "
                   f"{'they agree' if m['agree'] else 'they disagree'} (decided by {m['decided_by']})")
    if explanation.image is not None:
        click.echo(f"heat map ({explanation.image.method}, class {explanation.image.target}): "
                   f"{explanation.heatmap_path}")
    for note in explanation.notes:
        click.echo(f"note: {note}")
    click.echo(f"explanation: {path} ({explanation.seconds:.2f} s)")


@cli.command()
@click.option("--model", "model_dir", required=True, type=click.Path())
def info(model_dir):
    """Show a bundle's manifest summary."""
    from prodcat.model import read_manifest

    m = read_manifest(model_dir)
    t = m.get("training", {})
    click.echo(f"created   {m.get('created_at')} with prodcat {m['versions'].get('prodcat')}")
    click.echo(f"classes   {len(m.get('classes', []))}")
    click.echo(f"trained   {t.get('n_listings')} listings from {t.get('source')} ({t.get('format')})")
    cvm = m.get("metrics", {}).get("cv")
    if cvm:
        click.echo(f"CV        {cvm['folds']}-fold weighted F1 {cvm['weighted_f1']:.4f}, "
                   f"accuracy {cvm['accuracy']:.4f}")
    tracked = t.get("tracking") or {}
    if tracked.get("mlflow_run_id"):
        click.echo(f"tracked   MLflow run {tracked['mlflow_run_id']} in {tracked.get('mlflow_tracking_uri')}")


@cli.command()
@click.option("--tracking-uri", default=None,
              help="MLflow tracking URI or store folder [MLFLOW_TRACKING_URI, else ./mlruns-prodcat "
                   "or $PRODCAT_TRACKING_DIR]")
@click.option("--experiment", default="prodcat", show_default=True, envvar="PRODCAT_EXPERIMENT")
@click.option("--kind", type=click.Choice(["train", "evaluate"]), default=None, help="only runs of this command")
@click.option("--metric", default="weighted_f1", show_default=True,
              help="metric shown first and sorted by (best first; lowest first for losses and ECE)")
@click.option("--limit", type=click.IntRange(1, 10_000), default=20, show_default=True,
              help="most recent runs listed")
@click.option("--compare", is_flag=True, help="compare the RUN_IDS given side by side")
@click.option("--all", "show_all", is_flag=True, help="with --compare: also parameters and metrics that are equal")
@click.option("--json", "as_json", is_flag=True, help="print JSON")
@click.argument("run_ids", nargs=-1)
def runs(tracking_uri, experiment, kind, metric, limit, compare, show_all, as_json, run_ids):
    """List tracked train/evaluate runs, or compare some: prodcat runs --compare ID1 ID2 (id prefixes do)."""
    from prodcat.tracking import resolve_uri
    from prodcat.tracking import runs as R

    if run_ids and not compare:
        raise ConfigError("run ids are compared: add --compare (prodcat runs --compare ID1 ID2)")
    if compare and not run_ids:
        raise ConfigError("--compare needs run ids (as listed by prodcat runs; a unique prefix is enough)")
    uri = resolve_uri(tracking_uri)
    try:
        client, experiment_id = R.connect(uri, experiment)
    except R.NoRuns as exc:
        if compare:
            raise ConfigError(f"cannot compare runs: {exc}") from None
        if as_json:
            click.echo("[]")
        echo(str(exc))
        return
    if compare:
        cmp = R.compare(R.find_runs(client, experiment_id, run_ids), show_all=show_all)
        click.echo(json.dumps(cmp, indent=2, ensure_ascii=False) if as_json else R.format_compare(cmp))
        return
    records = R.list_runs(client, experiment_id, kind=kind, limit=limit, metric=metric)
    if as_json:
        click.echo(json.dumps(records, indent=2, ensure_ascii=False))
    elif records:
        click.echo(R.format_runs(records, metric))
    if not records:
        echo(f"no {kind + ' ' if kind else ''}runs yet in experiment {experiment!r} ({uri})")


@cli.command()
@click.option("--data", default=None, type=click.Path(), help="real data instead of the demo catalogue")
@click.option("--out", default="demo-out", show_default=True, type=click.Path())
@data_options
def demo(data, out, **kwargs):
    """Train, evaluate and predict on the bundled demo catalogue (or --data) in one go."""
    from prodcat.demo import DEMO_EXAMPLE, demo_catalog_path

    data_kw = _split_data_kwargs(kwargs)
    if data is None:
        data = str(demo_catalog_path())
        echo(f"demo catalogue: {data}")
        example = DEMO_EXAMPLE
    else:
        example = None
    out = Path(out)
    ctx = click.get_current_context()
    ctx.invoke(train, data=data, out=str(out / "model"), cv="0", **data_kw, **MODEL_DEFAULTS)
    ctx.invoke(evaluate, model_dir=None, data=data, out=str(out / "report"), cv=5, **data_kw,
               **MODEL_DEFAULTS)
    if example is None:
        row = read_data(data, **data_kw, quiet=True).frame.iloc[0]
        example = {"title": row["title"], "description": row["description"]}
    echo(f"\nexample listing: {example['title']!r}")
    ctx.invoke(predict, model_dir=str(out / "model"), title=example["title"],
               description=example.get("description", ""), image=None, top_k=3, as_json=False, data=None,
               out=None, **DATA_DEFAULTS)


# ---------------------------------------------------------------------------------------------


@cli.command()
@click.option("--data", required=True, type=click.Path(), help="catalogue to explore (folder or file)")
@click.option("--out", required=True, type=click.Path(), help="report folder to write")
@click.option("--image-sample", type=click.IntRange(min=0), default=2000, show_default=True,
              help="images decoded for image statistics (a seeded random sample; 0 skips them)")
@click.option("--seed", type=int, default=0, show_default=True, help="seed of the image sample")
@data_options
def explore(data, out, image_sample, seed, **kwargs):
    """Explore a catalogue: classes, missing text, duplicates, languages, words, images."""
    from prodcat.explore import build_exploration, write_exploration_report

    data_kw = _split_data_kwargs(kwargs)
    _check_out_folder(Path(out))
    catalog = read_data(data, **data_kw)
    exploration = build_exploration(catalog, image_sample=image_sample, seed=seed)
    paths = write_exploration_report(exploration, out)
    dist, size = exploration["class_distribution"], exploration["size"]
    ratio = f", imbalance 1:{dist['imbalance_ratio']:.1f}" if dist["imbalance_ratio"] else ""
    echo(f"{size['listings']} listings, {size['classes']} classes{ratio}, "
         f"{exploration['missing_descriptions']['share']:.0%} without description, "
         f"{exploration['label_conflicts']['by_listing']['groups']} products under 2+ categories "
         f"({exploration['timings_s']['total']:.1f} s)")
    for section, reason in exploration["skipped"].items():
        echo(f"note: {section} left out: {reason}")
    echo(f"report: {paths['report_html']}")


@cli.command()
@click.option("--model", "model_dir", required=True, type=click.Path(), help="bundle to serve")
@click.option("--host", default="127.0.0.1", show_default=True, help="address to listen on")
@click.option("--port", type=click.IntRange(1, 65535), default=8000, show_default=True)
@click.option("--workers", type=click.IntRange(1, 64), default=1, show_default=True,
              help="processes, each with its own copy of the model")
@click.option("--api-key-file", type=click.Path(), default=None,
              help="file with one API key per line (also PRODCAT_API_KEYS=k1,k2); none: open API")
@click.option("--max-batch", type=click.IntRange(1, 10_000), default=64, show_default=True,
              help="most listings per /v1/predict/batch request")
@click.option("--max-image-mb", type=click.FloatRange(0.01, 100), default=8.0, show_default=True,
              help="largest photo accepted")
@click.option("--access-log/--no-access-log", default=False, show_default=True,
              help="log every request")
@click.option("--log-level", default="info", show_default=True,
              type=click.Choice(["critical", "error", "warning", "info", "debug"]))
def serve(model_dir, host, port, workers, api_key_file, max_batch, max_image_mb, access_log, log_level):
    """Serve a bundle over HTTP: POST /v1/predict, /v1/predict/batch, docs at /docs."""
    try:
        from prodcat.serving import ModelService, ServingSettings, read_api_keys
        from prodcat.serving.server import run_server
    except ImportError as exc:
        raise ConfigError(f"serving needs the 'serve' extra: pip install 'prodcat[serve]' ({exc})") from None

    keys = read_api_keys(api_key_file)
    image_bytes = int(max_image_mb * 1024 * 1024)
    settings = ServingSettings(model_dir=str(model_dir), max_batch=max_batch, max_image_bytes=image_bytes,
                               max_body_bytes=max(16 * 1024 * 1024, 2 * image_bytes), api_key_digests=keys)
    # Loaded here (once workers == 1) so a bad bundle is one clear error before the port opens.
    service = ModelService.load(model_dir) if workers == 1 else None
    if service is None:
        from prodcat.model import read_manifest

        read_manifest(model_dir)
    echo(f"serving {model_dir} on http://{host}:{port} (docs at /docs; "
         f"{'API keys required' if keys else 'no API key required'})")
    run_server(settings, host=host, port=port, workers=workers, log_level=log_level,
               access_log=access_log, service=service)


@cli.command()
@click.option("--model", "model_dir", required=True, type=click.Path(), help="bundle to use")
@click.option("--report", "report_dir", type=click.Path(), default=None,
              help="evaluation report folder for the model page [MODEL_DIR/report if present]")
@click.option("--host", default="127.0.0.1", show_default=True, help="address to listen on")
@click.option("--port", type=click.IntRange(1, 65535), default=8501, show_default=True)
@click.option("--max-image-mb", type=click.IntRange(1, 100), default=8, show_default=True,
              help="largest photo accepted")
@click.option("--data-report", "data_report", type=click.Path(), default=None,
              help="folder written by `prodcat explore`, shown on the Data page")
def ui(model_dir, report_dir, host, port, max_image_mb, data_report):
    """Start the seller web app (Streamlit) for a bundle."""
    import importlib.util

    from prodcat.model import read_manifest

    if importlib.util.find_spec("streamlit") is None:
        raise ConfigError("the web app needs the 'ui' extra: pip install 'prodcat[ui]'")
    read_manifest(model_dir)  # a missing or incompatible bundle is one clear error, here
    if report_dir is not None and not Path(report_dir).is_dir():
        raise DataError(f"--report {report_dir} is not a folder")
    if data_report is not None and not (Path(data_report) / "summary.json").is_file():
        raise DataError(f"--data-report {data_report} has no summary.json (write it with prodcat explore)")
    from prodcat.ui.launch import (
        DATA_REPORT_ENV,
        IMAGE_BYTES_ENV,
        MODEL_ENV,
        REPORT_ENV,
        streamlit_command,
    )

    env = dict(os.environ)
    env[MODEL_ENV] = str(Path(model_dir).resolve())
    env[IMAGE_BYTES_ENV] = str(max_image_mb * 1024 * 1024)
    if report_dir is not None:
        env[REPORT_ENV] = str(Path(report_dir).resolve())
    else:
        env.pop(REPORT_ENV, None)
    if data_report is not None:
        env[DATA_REPORT_ENV] = str(Path(data_report).resolve())
    else:
        env.pop(DATA_REPORT_ENV, None)
    cmd = streamlit_command(host=host, port=port, max_upload_mb=max_image_mb)
    echo(f"web app for {model_dir} on http://{host}:{port}")
    sys.stdout.flush()
    sys.stderr.flush()
    # Become the Streamlit server: signals (Ctrl-C, SIGTERM) then reach it directly.
    os.execve(cmd[0], cmd, env)


def _show_warning(message, category, filename, lineno, file=None, line=None):
    echo(f"warning: {message}")


def main(argv=None) -> int:
    """Entry point: user errors become one line and exit code 2, never a traceback."""
    warnings.showwarning = _show_warning
    try:
        cli.main(args=argv, prog_name="prodcat", standalone_mode=False)
    except ProdcatError as exc:
        echo(f"error: {exc}")
        return exc.exit_code
    except click.exceptions.Abort:
        echo("aborted")
        return 130
    except click.ClickException as exc:
        exc.show()
        return 2
    except KeyboardInterrupt:
        echo("interrupted")
        return 130
    except MemoryError:
        echo("error: out of memory; try a smaller --max-description-chars or fewer listings")
        return 1
    except Exception as exc:  # a bug: say so plainly, keep the traceback for PRODCAT_DEBUG=1
        if os.environ.get("PRODCAT_DEBUG"):
            traceback.print_exc()
        echo(f"internal error: {type(exc).__name__}: {exc} (set PRODCAT_DEBUG=1 for details; please report it)")
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())


