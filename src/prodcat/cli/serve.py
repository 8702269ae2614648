"""``prodcat serve`` (the REST API) and ``prodcat ui`` (the Streamlit web app)."""

from __future__ import annotations

import dataclasses
import os
import sys
from pathlib import Path

import click

from prodcat.cli.common import echo
from prodcat.cli.options import bundle_trust_options
from prodcat.errors import ConfigError, DataError
from prodcat.serving.config import DECODE_QUEUE_PER_SLOT, ServingSettings

_SERVING = {f.name: f.default for f in dataclasses.fields(ServingSettings)}
_MB = 1024 * 1024


@click.command()
@click.option("--model", "model_dir", required=True, type=click.Path(),
              help="bundle to serve: a folder, or an MLflow registered version (models:/NAME@champion, "
                   "models:/NAME/3), downloaded once into the prodcat cache folder")
@click.option("--tracking-uri", default=None,
              help="MLflow store that resolves --model models:/... [MLFLOW_TRACKING_URI, else "
                   "./mlruns-prodcat or $PRODCAT_TRACKING_DIR]")
@click.option("--host", default="127.0.0.1", show_default=True, help="address to listen on")
@click.option("--port", type=click.IntRange(1, 65535), default=8000, show_default=True)
@click.option("--workers", type=click.IntRange(1, 64), default=1, show_default=True,
              help="processes, each with its own copy of the model")
@click.option("--api-key-file", type=click.Path(), default=None,
              help="file with one API key per line (also PRODCAT_API_KEYS=k1,k2); none: open API")
@click.option("--max-batch", type=click.IntRange(1, 10_000), default=_SERVING["max_batch"], show_default=True,
              help="most listings per /v1/predict/batch request")
@click.option("--max-image-mb", type=click.FloatRange(0.01, 100), default=_SERVING["max_image_bytes"] / _MB,
              show_default=True, help="largest photo accepted")
@click.option("--decode-budget", "decode_budget", type=click.FloatRange(0.1, 1000),
              default=_SERVING["max_decode_samples"] / 1e6, show_default=True,
              help="most millions of samples (pixels × bands) one photo's decode may hold")
@click.option("--decode-concurrency", type=click.IntRange(1, 256), default=None,
              help="photos decoded at once [one per CPU]; twice as many may wait, more get 503")
@click.option("--protect-ops", is_flag=True,
              help="/metrics, /docs and /openapi.json need the API key too")
@click.option("--access-log/--no-access-log", default=False, show_default=True,
              help="log every request")
@click.option("--log-level", default="info", show_default=True,
              type=click.Choice(["critical", "error", "warning", "info", "debug"]))
@click.option("--review-db", default=None, metavar="URL",
              help="review store (sqlite:///reviews.db, postgresql://...): queue unsure answers and "
                   "text/photo disagreements; adds /v1/feedback and /v1/review/*")
@click.option("--review-order", type=click.Choice(["uncertain", "oldest"]), default="uncertain",
              show_default=True, help="default order of /v1/review/next (uncertain: margin sampling)")
@bundle_trust_options
def serve(model_dir, tracking_uri, host, port, workers, api_key_file, max_batch, max_image_mb, decode_budget,
          decode_concurrency, protect_ops, access_log, log_level, review_db, review_order):
    """Serve a bundle over HTTP: POST /v1/predict, /v1/predict/batch, docs at /docs."""
    try:
        from prodcat.serving import ModelService, read_api_keys
        from prodcat.serving.server import run_server
    except ImportError as exc:
        raise ConfigError(f"serving needs the 'serve' extra: pip install 'prodcat[serve]' ({exc})") from None

    from prodcat.tracking.model_registry import is_model_uri, resolve_model_uri

    if is_model_uri(model_dir):
        registered = model_dir
        model_dir = str(resolve_model_uri(registered, tracking_uri))
        echo(f"{registered} is {model_dir}")
    keys = read_api_keys(api_key_file)
    image_bytes = int(max_image_mb * _MB)
    # A body carries the photo base64-encoded (4/3 of its size) beside the text fields.
    body_bytes = max(_SERVING["max_body_bytes"], 2 * image_bytes)
    decoding = {"max_decode_samples": int(decode_budget * 1e6)}
    if decode_concurrency is not None:
        decoding.update(decode_concurrency=decode_concurrency,
                        decode_queue=DECODE_QUEUE_PER_SLOT * decode_concurrency)
    settings = ServingSettings(model_dir=str(model_dir), max_batch=max_batch, max_image_bytes=image_bytes,
                               max_body_bytes=body_bytes, api_key_digests=keys, review_db=review_db,
                               review_order=review_order, protect_ops=protect_ops, **decoding)
    if not keys and not _is_loopback(host):
        echo(f"warning: serving on {host} without API keys: anyone who can reach this address can use "
             "the API (set PRODCAT_API_KEYS or --api-key-file)")
    if review_db:
        from prodcat.review import open_store

        open_store(review_db).close()  # migrated once here: a bad URL is one clear error
    # Loaded here (once workers == 1) so a bad bundle is one clear error before the port opens.
    service = ModelService.load(model_dir) if workers == 1 else None
    if service is None:
        from prodcat.model import read_manifest

        read_manifest(model_dir)
    echo(f"serving {model_dir} on http://{host}:{port} (docs at /docs; "
         f"{'API keys required' if keys else 'no API key required'})")
    run_server(settings, host=host, port=port, workers=workers, log_level=log_level,
               access_log=access_log, service=service)


def _is_loopback(host: str) -> bool:
    import ipaddress

    if host.strip().lower() == "localhost":
        return True
    try:
        return ipaddress.ip_address(host.strip("[]")).is_loopback
    except ValueError:  # a host name: it may resolve to anything
        return False


@click.command()
@click.option("--model", "model_dir", required=True, type=click.Path(), help="bundle to use")
@click.option("--report", "report_dir", type=click.Path(), default=None,
              help="evaluation report folder for the model page [MODEL_DIR/report if present]")
@click.option("--host", default="127.0.0.1", show_default=True, help="address to listen on")
@click.option("--port", type=click.IntRange(1, 65535), default=8501, show_default=True)
@click.option("--max-image-mb", type=click.IntRange(1, 100), default=8, show_default=True,
              help="largest photo accepted")
@click.option("--data-report", "data_report", type=click.Path(), default=None,
              help="folder written by `prodcat explore`, shown on the Data page")
@click.option("--review-db", default=None, metavar="URL",
              help="review store for the Review page (sqlite:///reviews.db, postgresql://...), "
                   "the one `prodcat serve --review-db` fills")
@click.option("--review-order", type=click.Choice(["uncertain", "oldest"]), default="uncertain",
              show_default=True, help="order the Review page takes items in (uncertain: margin sampling)")
@bundle_trust_options
def ui(model_dir, report_dir, host, port, max_image_mb, data_report, review_db, review_order):
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
    if review_db:
        from prodcat.review import open_store

        open_store(review_db).close()  # created or migrated once here: a bad URL is one clear error
    from prodcat.ui.launch import (
        DATA_REPORT_ENV,
        IMAGE_BYTES_ENV,
        MODEL_ENV,
        REPORT_ENV,
        REVIEW_DB_ENV,
        REVIEW_ORDER_ENV,
        streamlit_command,
    )

    env = dict(os.environ)
    env[MODEL_ENV] = str(Path(model_dir).resolve())
    env[IMAGE_BYTES_ENV] = str(max_image_mb * _MB)
    for name, folder in ((REPORT_ENV, report_dir), (DATA_REPORT_ENV, data_report)):
        if folder is not None:
            env[name] = str(Path(folder).resolve())
        else:
            env.pop(name, None)
    if review_db:
        env[REVIEW_DB_ENV] = _absolute_sqlite(review_db)
    else:
        env.pop(REVIEW_DB_ENV, None)
    env[REVIEW_ORDER_ENV] = review_order
    cmd = streamlit_command(host=host, port=port, max_upload_mb=max_image_mb)
    echo(f"web app for {model_dir} on http://{host}:{port}")
    sys.stdout.flush()
    sys.stderr.flush()
    # Become the Streamlit server: signals (Ctrl-C, SIGTERM) then reach it directly.
    os.execve(cmd[0], cmd, env)


def _absolute_sqlite(url: str) -> str:
    """A relative SQLite path made absolute (Streamlit's working folder may differ)."""
    from sqlalchemy.engine import make_url

    u = make_url(url)
    if u.get_backend_name() == "sqlite" and u.database and u.database != ":memory:":
        return u.set(database=str(Path(u.database).resolve())).render_as_string(hide_password=False)
    return url
