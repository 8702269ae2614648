"""``prodcat info``: a bundle's manifest in a few lines."""

from __future__ import annotations

import click

from prodcat.cli.options import bundle_trust_options


@click.command()
@click.option("--model", "model_dir", required=True, type=click.Path())
@bundle_trust_options
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
