"""``prodcat compare``: two bundles on the same labelled listings, with paired bootstrap intervals
of the differences, a verdict, and (``--promote-if-better``) promotion of the new bundle."""

from __future__ import annotations

import json
from pathlib import Path

import click

from prodcat.cli.common import check_out_folder, echo, read_data
from prodcat.cli.options import (
    bundle_trust_options,
    data_options,
    split_data_kwargs,
    split_tracking_kwargs,
    start_tracking,
    tracking_options,
)
from prodcat.errors import ConfigError, DataError
from prodcat.evaluation.comparison import DEFAULT_MARGIN_POINTS, DEFAULT_RESAMPLES


@click.command()
@click.option("--model", "models", multiple=True, required=True, type=click.Path(),
              help="bundle folder, given twice: the old (current) model first, then the new one")
@click.option("--data", required=True, type=click.Path(), help="labelled listings both models answer")
@click.option("--out", default=None, type=click.Path(), help="folder for comparison.json and comparison.md")
@click.option("--resamples", type=click.IntRange(100, 100_000), default=DEFAULT_RESAMPLES, show_default=True,
              help="paired bootstrap resamples of the listings")
@click.option("--seed", type=int, default=0, show_default=True, help="seed of the bootstrap")
@click.option("--margin", type=click.FloatRange(0, 100), default=DEFAULT_MARGIN_POINTS, show_default=True,
              help="points of weighted F1 the new model may lose at the lower end of the 95 %% interval "
                   "and still count as not worse")
@click.option("--promote-if-better", "promote", default=None, type=click.Path(), metavar="DEST",
              help="copy the new bundle to this folder when it is not worse (atomically; an old bundle "
                   "there is replaced)")
@click.option("--registered-model", default="prodcat", show_default=True,
              help="MLflow registered model the bundles become versions of when tracking is on "
                   "(aliases champion / challenger)")
@data_options
@tracking_options
@bundle_trust_options
def compare(models, data, out, resamples, seed, margin, promote, registered_model, **kwargs):
    """Compare an old and a new bundle on labelled data (--model OLD --model NEW)."""
    from prodcat.evaluation.comparison import (
        compare_answers,
        comparison_markdown,
        model_answers,
        promote_bundle,
    )
    from prodcat.model import load_bundle

    data_kw, track_kw = split_data_kwargs(kwargs), split_tracking_kwargs(kwargs)
    if len(models) != 2:
        raise ConfigError(f"give --model twice (old, then new); got {len(models)}")
    if out is not None:
        check_out_folder(Path(out))
    if promote is not None and Path(promote).resolve() == Path(models[1]).resolve():
        raise ConfigError("--promote-if-better must be another folder than the new bundle")
    labelled = read_data(data, **data_kw).labelled()
    if len(labelled) == 0:
        raise DataError(f"{data} has no labelled listings: comparing needs labels")
    answers = []
    for path in models:
        model, _ = load_bundle(path)
        echo(f"predicting {len(labelled)} listings with {path} ...")
        answers.append(model_answers(model, labelled.X))
        del model
    result = compare_answers(labelled.y.to_numpy(), answers[0], answers[1], resamples=resamples,
                             seed=seed, margin_points=margin)
    result.update(old=str(models[0]), new=str(models[1]), data=str(data))
    for name, r in result["metrics"].items():
        echo(f"{name:>15}  old {100 * r['old']:6.2f}  new {100 * r['new']:6.2f}  "
             f"diff {100 * r['difference']:+6.2f}  95% CI [{100 * r['ci_low']:+.2f}, {100 * r['ci_high']:+.2f}]")
    v = result["verdict"]
    echo(f"verdict: {v['label']} ({v['rule']})")
    if promote is not None:
        if v["not_worse"]:
            promote_bundle(models[1], promote)
            result["promotion"] = {"dest": str(promote), "done": True,
                                   "message": f"{models[1]} copied to {promote}"}
        else:
            result["promotion"] = {"dest": str(promote), "done": False,
                                   "message": f"not promoted: the new model is worse; {promote} unchanged"}
        echo(result["promotion"]["message"])
    _track(result, track_kw, labelled, data_kw, registered_model, models, out)
    if out is not None:
        folder = Path(out)
        folder.mkdir(parents=True, exist_ok=True)
        (folder / "comparison.json").write_text(json.dumps(result, indent=2) + "\n", encoding="utf-8")
        (folder / "comparison.md").write_text(
            comparison_markdown(result, old=models[0], new=models[1]), encoding="utf-8")
        echo(f"report: {folder / 'comparison.md'}")
    click.echo(json.dumps({"verdict": v["label"], "not_worse": v["not_worse"],
                           "promoted": (result.get("promotion") or {}).get("done", False)}))


def _track(result: dict, track_kw: dict, labelled, data_kw: dict, name: str, models, out) -> None:
    """Record the comparison as an MLflow run and register both bundles (when tracking is on)."""
    run = start_tracking(track_kw, "compare", labelled, None, data_kw=data_kw,
                         tags={"compare.old": models[0], "compare.new": models[1]})
    if not run.active:
        run.finish()
        return
    values = {f"{k}.{m}": r[k] for m, r in result["metrics"].items()
              for k in ("old", "new", "difference", "ci_low", "ci_high")}
    run.log_metrics({**values, "not_worse": float(result["verdict"]["not_worse"])})
    try:
        from prodcat.tracking.model_registry import register_comparison
        from prodcat.tracking.tracker import quiet_mlflow

        with quiet_mlflow():
            result["registry"] = register_comparison(run, name, models[0], models[1],
                                                     result["verdict"]["not_worse"])
        echo(f"MLflow registry: {result['registry']['message']}")
    except Exception as exc:  # the registry never fails the comparison
        from prodcat.tracking.tracker import one_line

        echo(f"warning: could not register the bundles in MLflow ({one_line(exc)})")
    run.log_dict(result, "comparison.json")
    run.finish()
