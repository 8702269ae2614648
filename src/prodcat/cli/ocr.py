"""``prodcat ocr``: the words on a catalogue's photos, one row per listing (``id, ocr_text``)."""

from __future__ import annotations

import json
import time
from collections import Counter
from pathlib import Path

import click

from prodcat.batch.ocr import DEFAULT_PARTITION_ROWS as OCR_PARTITION_ROWS
from prodcat.cli.common import echo, read_data
from prodcat.cli.options import data_options, source_options, split_data_kwargs
from prodcat.ocr.engines import DEFAULT_ENGINE, list_engines

_ENGINES = list_engines()


def write_ocr_table(frame, out: Path) -> Path:
    """``.json`` → a JSON list of records, ``.jsonl`` → one record a line, else (CSV, Parquet)
    :func:`prodcat.data.files.write_table`."""
    from prodcat.data.files import write_table

    suffix = out.suffix.lower()
    if suffix not in (".json", ".jsonl"):
        return write_table(frame, out)
    out.parent.mkdir(parents=True, exist_ok=True)
    records = frame.to_dict(orient="records")
    with out.open("w", encoding="utf-8") as fh:
        if suffix == ".json":
            json.dump(records, fh, ensure_ascii=False, indent=1)
            fh.write("\n")
        else:
            for record in records:
                fh.write(json.dumps(record, ensure_ascii=False) + "\n")
    return out


@click.command()
@click.option("--data", required=True, type=click.Path(), help="catalogue whose photos to read")
@click.option("--out", required=True, type=click.Path(dir_okay=False, path_type=Path),
              help="output file: .csv, .json, .jsonl or .parquet (columns id, ocr_text)")
@click.option("--engine", "engine_name", type=click.Choice(_ENGINES), default=DEFAULT_ENGINE,
              show_default=True, help="OCR engine")
@click.option("--min-confidence", type=click.FloatRange(0, 1), default=None,
              help="drop words read with less confidence [the engine's default]")
@click.option("--budget", "budget_s", type=click.FloatRange(min=0, min_open=True), default=5.0,
              show_default=True, help="seconds per photo; past it the photo gives no text")
@click.option("--cache", "cache_file", default=None, type=click.Path(),
              help="cache file [the embedding cache: $PRODCAT_CACHE_DIR/embeddings.sqlite]")
@click.option("--no-cache", is_flag=True, help="read every photo again, store nothing")
@click.option("--scheduler", default=None, help="Dask scheduler address: read the photos on that cluster")
@click.option("--workers", type=click.IntRange(0, 256), default=None,
              help="Dask worker processes [none: this process]; 0: the batch machinery in this process")
@click.option("--partition-rows", type=click.IntRange(min=1), default=OCR_PARTITION_ROWS, show_default=True,
              help="listings per Dask task")
@data_options
def ocr(data, out, engine_name, min_confidence, budget_s, cache_file, no_cache, scheduler, workers,
        partition_rows, **kwargs):
    """Read the text on a catalogue's photos (covers, boxes, labels) into OUT, cached."""
    import pandas as pd

    from prodcat.errors import ConfigError
    from prodcat.ocr import create_engine, read_photos
    from prodcat.ocr.cache import OcrCache

    data_kw = split_data_kwargs(kwargs)
    params = {"budget_s": budget_s, **({"min_confidence": min_confidence} if min_confidence is not None else {})}
    if no_cache and (scheduler or workers is not None):
        raise ConfigError("--scheduler and --workers fill the cache; they cannot be combined with --no-cache")
    engine = create_engine(engine_name, **params)
    engine.load()  # a missing engine is one clear error, before reading the data
    cache = None if no_cache else OcrCache(cache_file)
    started = time.perf_counter()
    if scheduler or workers is not None:
        from prodcat.batch.ocr import run_ocr_job

        run_ocr_job(data, ocr_engine=engine_name, engine_params=params, cache=cache_file,
                    partition_rows=partition_rows, scheduler=scheduler, workers=workers,
                    data_options=source_options(data_kw), echo=echo)
    catalog = read_data(data, **data_kw)
    frame = catalog.frame
    results = read_photos(frame["image"].tolist(), engine=engine, cache=cache, progress=None)
    table = pd.DataFrame({"id": frame["id"].to_numpy(),
                          "ocr_text": [r.text for r in results]})
    written = write_ocr_table(table, out)
    seconds = time.perf_counter() - started
    photos = [r for r in results if r.status != "no image"]
    fresh = [r for r in photos if not r.cached]
    statuses = Counter(r.status for r in photos if r.status not in ("ok", "empty"))
    why = f"; {', '.join(f'{n} {k}' for k, n in statuses.most_common())}" if statuses else ""
    echo(f"read {len(photos):,} photo(s) of {len(frame):,} listings with {engine_name} in "
         f"{seconds:.1f} s: {sum(r.has_text for r in photos):,} with text, "
         f"{len(photos) - len(fresh):,} from the cache{why}; wrote {written}")
