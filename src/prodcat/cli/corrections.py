"""``prodcat corrections export``: the reviewers' decisions as a CSV or Parquet file."""

from __future__ import annotations

from datetime import datetime, timezone

import click

from prodcat.cli.common import echo
from prodcat.errors import ConfigError


@click.group()
def corrections():
    """The review store's decisions (corrections)."""


@corrections.command("export")
@click.option("--db", "url", required=True, metavar="URL", help="review store (sqlite:///reviews.db, postgresql://...)")
@click.option("--out", required=True, type=click.Path(), help="a .csv or .parquet file")
@click.option("--since", default=None, help="only decisions from this date or time on (ISO 8601, UTC if no zone)")
def export(url, out, since):
    """Write every decision with its listing: id, title, description, image, label, reviewer..."""
    from prodcat.review import open_store
    from prodcat.review.corrections import corrections_frame, write_corrections

    when = None
    if since:
        try:
            when = datetime.fromisoformat(since)
        except ValueError:
            raise ConfigError(f"--since {since!r} is not an ISO 8601 date or time") from None
        when = when if when.tzinfo else when.replace(tzinfo=timezone.utc)
    store = open_store(url)
    try:
        frame = corrections_frame(store, when)
    finally:
        store.close()
    path = write_corrections(frame, out)
    echo(f"wrote {len(frame)} corrections to {path}")
