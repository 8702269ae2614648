"""``prodcat explore``: a data-exploration report of a catalogue."""

from __future__ import annotations

from pathlib import Path

import click

from prodcat.cli.common import check_out_folder, echo, read_data
from prodcat.cli.options import data_options, split_data_kwargs


@click.command()
@click.option("--data", required=True, type=click.Path(), help="catalogue to explore (folder or file)")
@click.option("--out", required=True, type=click.Path(), help="report folder to write")
@click.option("--image-sample", type=click.IntRange(min=0), default=2000, show_default=True,
              help="images decoded for image statistics (a seeded random sample; 0 skips them)")
@click.option("--seed", type=int, default=0, show_default=True, help="seed of the image sample")
@data_options
def explore(data, out, image_sample, seed, **kwargs):
    """Explore a catalogue: classes, missing text, duplicates, languages, words, images."""
    from prodcat.explore import build_exploration, write_exploration_report

    data_kw = split_data_kwargs(kwargs)
    check_out_folder(Path(out))
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
