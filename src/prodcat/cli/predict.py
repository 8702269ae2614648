"""``prodcat predict`` (one listing, a file of predictions, or a partitioned folder on Dask) and
``prodcat embed`` (photos into the embedding cache, on Dask)."""

from __future__ import annotations

import json
import sys
import time
from pathlib import Path

import click

from prodcat.batch.embedding import DEFAULT_PARTITION_ROWS as EMBED_PARTITION_ROWS
from prodcat.batch.prediction import DEFAULT_PARTITION_ROWS
from prodcat.cli.common import echo, read_data
from prodcat.cli.options import (
    DEFAULT_IMAGE_ENCODER,
    bundle_trust_options,
    data_options,
    source_options,
    split_data_kwargs,
)
from prodcat.data.files import write_table
from prodcat.errors import ConfigError, DataError
from prodcat.image import list_encoders


@click.command()
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
              help=f"listings per partition of a folder --out [{DEFAULT_PARTITION_ROWS}]")
@click.option("--restart", is_flag=True, help="delete the partitions of another job in the --out folder")
@click.option("--review-db", default=None, metavar="URL",
              help="with --data: queue the listings that need review (unsure, or text and photo "
                   "disagree) in this review store (sqlite:///reviews.db, postgresql://...)")
@data_options
@bundle_trust_options
def predict(model_dir, title, description, image, top_k, as_json, data, out, scheduler, workers,
            partition_rows, restart, review_db, **kwargs):
    """Predict the top-k categories of one listing, or of a whole data set (--data, --out)."""
    from prodcat.model import load_bundle

    data_kw = split_data_kwargs(kwargs)
    if (data is None) == (title is None):
        raise ConfigError("give either --title (one listing) or --data with --out (a data set)")
    if data is not None and out is None:
        raise ConfigError("--data needs --out (a .csv or .parquet file)")
    if review_db and data is None:
        raise ConfigError("--review-db needs --data (one listing is never queued)")
    if _batch_out(out, scheduler, workers, partition_rows, restart):
        if data is None:
            raise ConfigError("--scheduler, --workers, --partition-rows and --restart need --data and "
                              "an --out folder")
        from prodcat.batch import run_predict_job

        run_predict_job(model_dir, data, out, k=top_k, partition_rows=partition_rows or DEFAULT_PARTITION_ROWS,
                        scheduler=scheduler, workers=workers, restart=restart,
                        data_options=source_options(data_kw), echo=echo)
        if review_db:
            from prodcat.model import load_bundle

            _queue_for_review(review_db, model_dir, *load_bundle(model_dir), read_data(data, **data_kw), top_k)
        return
    if image is not None and not Path(image).is_file():
        raise DataError(f"image not found: {image}")
    model, manifest = load_bundle(model_dir)
    if data is None:
        _predict_one(model, title, description, image, top_k, as_json)
        return
    catalog = read_data(data, **data_kw)
    frame = _predict_frame_in_chunks(model, catalog, top_k)
    out = write_table(frame, out)
    echo(f"wrote {len(frame)} predictions to {out} "
         f"({int(frame['needs_review'].sum())} need review at threshold {model.threshold_:.0%})")
    if review_db:
        _queue_for_review(review_db, model_dir, model, manifest, catalog, top_k)


def _queue_for_review(url: str, model_dir, model, manifest: dict, catalog, top_k: int) -> None:
    """A second pass over the catalogue, per modality (photos' embeddings come from the cache the
    first pass filled): the Dask job's output lacks the per-modality answers."""
    from prodcat.review import open_store
    from prodcat.review.batch import bundle_model_id, queue_catalog

    store = open_store(url)
    try:
        counts = queue_catalog(store, model, catalog, model_id=bundle_model_id(model_dir, manifest),
                               k=max(top_k, 3))
    finally:
        store.close()
    echo(f"queued {counts['queued']} listings for review in {url} ({counts['low_confidence']} unsure, "
         f"{counts['modalities_disagree']} where text and photo disagree; already waiting ones not twice)")


def _predict_one(model, title: str, description: str, image: str | None, top_k: int, as_json: bool) -> None:
    from prodcat.text.cleaning import is_blank

    if is_blank(title) and is_blank(description):
        raise DataError("the listing needs a title or a description")
    t0 = time.perf_counter()
    parts = model.predict_modalities({"title": title, "description": description, "image": image})
    ms = (time.perf_counter() - t0) * 1000
    top = model.describe(parts["fused"], top_k)[0]
    by_modality = {"text": model.describe(parts["text"], top_k)[0]}
    image_error = None
    if parts["image"] is not None:
        by_modality["image"] = model.describe(parts["image"], top_k)[0] if parts["has_image"][0] else None
        if image is not None and not parts["has_image"][0]:
            image_error = _unreadable_reason(image)
    ocr_text = parts["ocr_text"][0] if "ocr_text" in parts else None  # a model reading photos' words
    if ocr_text is not None:
        by_modality["ocr"] = model.describe(parts["ocr"], top_k)[0] if ocr_text else None
    needs_review = top[0]["probability"] < model.threshold_
    if image_error:
        # The answer stands on the text alone: say so, and why, as the API's refusal would.
        echo(f"note: the photo could not be read ({image_error}); the answer is from the text alone")
    if as_json:
        click.echo(json.dumps({"top_k": top, "modalities": by_modality, "needs_review": needs_review,
                               "threshold": model.threshold_, "latency_ms": round(ms, 2),
                               **({"ocr_text": ocr_text} if ocr_text is not None else {}),
                               **({"image_error": image_error} if image_error else {})},
                              ensure_ascii=False, indent=2))
        return
    for rank, p in enumerate(top, 1):
        bar = "█" * int(round(p["probability"] * 20))
        label = p["name"] if p["name"] == p["code"] else f"{p['name']} ({p['code']})"
        click.echo(f"{rank}. {label[:50]:<50} {p['probability']:6.1%} {bar}")
    for name, answer in by_modality.items():
        said = f"{answer[0]['name']} ({answer[0]['probability']:.0%})" if answer else "no usable photo"
        click.echo(f"   {name} alone: {said}")
    if ocr_text:
        click.echo(f"   words on the photo: {' '.join(ocr_text.split())[:100]}")
    click.echo("needs review" if needs_review else f"confident (≥ {model.threshold_:.0%})")


def _unreadable_reason(image: str) -> str:
    """Why the photo at ``image`` gave the image model nothing (it loads with the encoder's
    settings, or the reason it does not)."""
    from prodcat.image.loading import try_load_image

    _, reason = try_load_image(image, target_size=512)
    return reason or "the image model could not use it"


def _batch_out(out, scheduler, workers, partition_rows, restart) -> bool:
    """Whether ``predict`` writes a partitioned folder (on Dask): --out is a folder (existing, or a
    name without a suffix), or a batch option was given."""
    asked = any(v not in (None, False) for v in (scheduler, workers, partition_rows, restart))
    folder = out is not None and (Path(out).is_dir() or not Path(out).suffix)
    if asked and out is not None and not folder:
        raise ConfigError(f"--scheduler, --workers, --partition-rows and --restart write a folder of "
                          f"Parquet parts; --out {out} names a file")
    return asked or folder


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


@click.command()
@click.option("--data", required=True, type=click.Path(), help="catalogue whose photos to encode")
@click.option("--encoder", default=DEFAULT_IMAGE_ENCODER, show_default=True,
              help=f"image encoder: {', '.join(list_encoders())}")
@click.option("--cache", "cache_file", default=None, type=click.Path(),
              help="embedding cache file [the one training reads: $PRODCAT_CACHE_DIR/embeddings.sqlite]")
@click.option("--scheduler", default=None, help="Dask scheduler address: encode on that cluster")
@click.option("--workers", type=click.IntRange(0, 256), default=None,
              help="local Dask worker processes [one per CPU]; 0: in this process")
@click.option("--partition-rows", type=click.IntRange(min=1), default=EMBED_PARTITION_ROWS, show_default=True,
              help="listings per task")
@data_options
def embed(data, encoder, cache_file, scheduler, workers, partition_rows, **kwargs):
    """Encode a catalogue's photos, on a Dask cluster, into the embedding cache training reads."""
    from prodcat.batch import run_embed_job

    run_embed_job(data, encoder=encoder, cache=cache_file, partition_rows=partition_rows,
                  scheduler=scheduler, workers=workers,
                  data_options=source_options(split_data_kwargs(kwargs)), echo=echo)
