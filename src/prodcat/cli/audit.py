"""``prodcat audit``: which labels of a data set look wrong, and what else its labels say."""

from __future__ import annotations

from pathlib import Path

import click

from prodcat.cli.common import check_out_folder, echo, read_data
from prodcat.cli.options import data_options, split_data_kwargs


@click.command()
@click.option("--data", required=True, type=click.Path(), help="labelled data set to audit")
@click.option("--out", required=True, type=click.Path(),
              help="folder for label_issues.csv, audit.json and audit.html")
@click.option("--folds", type=click.IntRange(2, 20), default=5, show_default=True,
              help="cross-validation folds of the out-of-fold probabilities")
@click.option("--seed", type=int, default=0, show_default=True)
@click.option("--duplicate-threshold", type=click.FloatRange(0.5, 1.0), default=0.9, show_default=True,
              help="cosine similarity above which two listings count as near-duplicates")
@click.option("--review-db", default=None, metavar="URL",
              help="queue the suspected label errors in this review store")
@click.option("--queue-limit", type=click.IntRange(min=1), default=500, show_default=True,
              help="most suspects queued, worst first")
@click.option("--fit-cache/--no-fit-cache", default=True, show_default=True,
              help="remember fitted fold models (a second audit of the same data fits nothing)")
@data_options
def audit(data, out, folds, seed, duplicate_threshold, review_db, queue_limit, fit_cache, **kwargs):
    """Audit the labels of a data set: confident learning (cleanlab) on out-of-fold probabilities,
    near-duplicates with different labels, most confused category pairs, label quality per class."""
    from prodcat.audit import queue_suspects, run_audit, write_audit
    from prodcat.model.fitcache import default_fit_cache_dir

    out = Path(out)
    check_out_folder(out)
    catalog = read_data(data, **split_data_kwargs(kwargs))
    result = run_audit(catalog, folds=folds, seed=seed, duplicate_threshold=duplicate_threshold, progress=True,
                       memory=str(default_fit_cache_dir()) if fit_cache else None)
    paths = write_audit(result, out)
    s = result.summary
    echo(f"{s['label_issues']} suspected label errors in {s['listings']} listings ({s['label_issue_share']:.1%}), "
         f"{s['conflicting_duplicate_pairs']} near-duplicate pairs with different labels; wrote "
         f"{', '.join(str(p) for p in paths.values())}")
    for r in result.issues[result.issues["is_label_issue"]].head(5).itertuples():
        echo(f"  {r.id}: {r.title[:60]!r} filed as {r.given_name}, looks like {r.suggested_name} "
             f"(quality {r.label_quality:.3f})")
    if review_db:
        from prodcat.review import open_store

        store = open_store(review_db)
        try:
            n = queue_suspects(result, catalog, store, limit=queue_limit)
        finally:
            store.close()
        echo(f"queued {n} suspects for review in {review_db}")
