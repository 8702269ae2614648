"""Helpers every command shares: messages on stderr, reading a data set, checking --out."""

from __future__ import annotations

from pathlib import Path

import click

from prodcat.errors import ConfigError


def echo(msg: str = "", **kw) -> None:
    # Messages go to stderr so that stdout carries only results (JSON, tables) a script can read.
    click.echo(msg, err=True, **kw)


def read_data(path, fmt, split, level, title_col, description_col, image_col, label_col, id_col,
              image_root, categories, encoding, *, quiet=False):
    from prodcat.data import read_catalog

    catalog = read_catalog(path, fmt, split=split, level=level, title_col=title_col,
                           description_col=description_col, image_col=image_col, label_col=label_col,
                           id_col=id_col, image_root=image_root, categories=categories, encoding=encoding)
    if not quiet:
        echo(f"read {catalog.source} ({catalog.format}): {catalog.report.summary()}")
    return catalog


def check_out_folder(out: Path) -> None:
    if out.exists() and not out.is_dir():
        raise ConfigError(f"--out {out} is a file; give a folder for the report")
