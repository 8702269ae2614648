"""``prodcat demo``: train, evaluate and predict in one go."""

from __future__ import annotations

from pathlib import Path

import click

from prodcat.cli.common import echo, read_data
from prodcat.cli.evaluate import evaluate
from prodcat.cli.options import DATA_DEFAULTS, MODEL_DEFAULTS, data_options, split_data_kwargs
from prodcat.cli.predict import predict
from prodcat.cli.train import train


@click.command()
@click.option("--data", default=None, type=click.Path(), help="real data instead of the demo catalogue")
@click.option("--out", default="demo-out", show_default=True, type=click.Path())
@data_options
def demo(data, out, **kwargs):
    """Train, evaluate and predict on the bundled demo catalogue (or --data) in one go."""
    from prodcat.demo import DEMO_EXAMPLE, demo_catalog_path

    data_kw = split_data_kwargs(kwargs)
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
