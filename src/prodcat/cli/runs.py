"""``prodcat runs``: the tracked train/evaluate runs, listed or compared."""

from __future__ import annotations

import json

import click

from prodcat.cli.common import echo
from prodcat.errors import ConfigError


@click.command()
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
