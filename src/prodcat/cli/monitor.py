"""``prodcat monitor``: drift of the served model's answers against its training (PSI per category
and for confidence), and reviewers' agreement with the model per day."""

from __future__ import annotations

import json
from datetime import datetime, timezone
from pathlib import Path

import click

from prodcat.cli.common import check_out_folder, echo
from prodcat.errors import ConfigError, DataError


@click.command()
@click.option("--db", "url", default=None, metavar="URL",
              help="review store of the server (sqlite:///reviews.db, postgresql://...): queued answers "
                   "and reviewers' decisions")
@click.option("--model", "model_dir", default=None, type=click.Path(),
              help="the served bundle: its manifest holds the out-of-fold reference")
@click.option("--metrics", "metrics_src", default=None, metavar="URL|FILE",
              help="a prodcat server's /metrics (http://host:8000/metrics, or a saved copy): every answer "
                   "since it started")
@click.option("--since", default=None, help="only queued items and decisions from this date on (ISO 8601, UTC)")
@click.option("--out", default=None, type=click.Path(), help="folder for monitor.json and monitor.md")
def monitor(url, model_dir, metrics_src, since, out):
    """Report drift of served answers vs training, and reviewers' agreement with the model."""
    from prodcat.review.monitoring import (
        agreement_by_day,
        label_reference,
        metrics_drift,
        monitor_markdown,
        queued_answers,
        store_drift,
    )

    if url is None and metrics_src is None:
        raise ConfigError("give --db URL (review store) and/or --metrics URL|FILE (server metrics)")
    if out is not None:
        check_out_folder(Path(out))
    when = _since(since)
    report: dict = {"generated_at": datetime.now(timezone.utc).isoformat(timespec="seconds")}
    reference = None
    if model_dir is not None:
        from prodcat.model import read_manifest

        reference, report["reference_source"] = label_reference(read_manifest(model_dir))
        report["model"] = str(model_dir)
        echo(f"reference: {report['reference_source']}")
    if metrics_src is not None:
        from prodcat.evaluation.drift import served_from_prometheus

        try:
            served = served_from_prometheus(_read_metrics(metrics_src))
        except ValueError as exc:
            raise DataError(f"--metrics {metrics_src}: {exc}") from None
        report["metrics_drift"] = metrics_drift(served, reference)
    if url is not None:
        from prodcat.review import open_store

        store = open_store(url)
        try:
            items, decisions = store.items(), store.decisions(when)
        finally:
            store.close()
        report["store_drift"] = store_drift(queued_answers(items, when), reference)
        report["agreement"] = agreement_by_day(decisions)
    _print(report)
    if out is not None:
        folder = Path(out)
        folder.mkdir(parents=True, exist_ok=True)
        (folder / "monitor.json").write_text(json.dumps(report, indent=2) + "\n", encoding="utf-8")
        (folder / "monitor.md").write_text(monitor_markdown(report), encoding="utf-8")
        echo(f"report: {folder / 'monitor.md'}")
    click.echo(json.dumps(_summary(report)))


def _since(text: str | None) -> datetime | None:
    if not text:
        return None
    try:
        when = datetime.fromisoformat(text)
    except ValueError:
        raise ConfigError(f"--since {text!r} is not an ISO 8601 date or time") from None
    return when if when.tzinfo else when.replace(tzinfo=timezone.utc)


def _read_metrics(src: str) -> str:
    if src.startswith(("http://", "https://")):
        import httpx

        try:
            response = httpx.get(src, timeout=10)
            response.raise_for_status()
        except httpx.HTTPError as exc:
            raise DataError(f"--metrics {src}: {exc}") from None
        return response.text
    path = Path(src)
    if not path.is_file():
        raise DataError(f"--metrics {src} is neither an http(s) URL nor a file")
    return path.read_text(encoding="utf-8")


def _psi(drift: dict | None, key: str):
    return ((drift or {}).get(key) or {}).get("psi")


def _summary(report: dict) -> dict:
    out = {}
    for name in ("metrics_drift", "store_drift"):
        if name in report:
            out[name] = {"category_psi": _psi(report[name], "categories"),
                         "confidence_psi": _psi(report[name], "confidence"),
                         "n": (report[name].get("categories") or {}).get("n_served")}
    if "agreement" in report:
        out["agreement"] = report["agreement"]["overall"]
    return out


def _print(report: dict) -> None:
    from prodcat.evaluation.drift import psi_level

    for name, title in (("metrics_drift", "served (/metrics)"), ("store_drift", "queued (review store)")):
        d = report.get(name)
        if d is None:
            continue
        for key in ("categories", "confidence"):
            v = _psi(d, key)
            echo(f"{title}: PSI of {key} " + ("n/a" if v is None else f"{v:.3f} ({psi_level(v)})"))
        for note in d.get("notes", []):
            echo(f"note: {note}")
    agreement = report.get("agreement")
    if agreement is not None:
        o = agreement["overall"]
        share = "n/a" if o["agreement"] is None else f"{o['agreement']:.1%}"
        echo(f"reviewers kept the model's answer on {share} of {o['judged']} decided items "
             f"({len(agreement['per_day'])} days)")
