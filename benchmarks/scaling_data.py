"""Synthetic scaling data: real listings resampled with replacement, with word dropout.

The real Rakuten sample has 2,457 listings; the full challenge set has 84,916. To time training
and prediction at those sizes without the full download, :func:`make_scaled_catalog` draws ``n``
listings from the real ones (stratified: each label keeps its share) and drops each word of the
title and the description with probability ``dropout`` so that copies differ (a title is never
emptied). This is **synthetic scaling data**: good for time and memory, not for quality numbers
(near-duplicates make a model look better than it is).

As a script it writes one such set to a Parquet file outside the repository and prints a summary::

    python benchmarks/scaling_data.py --n 25000 --write /tmp/prodcat-bench/scaling_25000.parquet
"""

from __future__ import annotations

import sys
from pathlib import Path
from typing import TYPE_CHECKING

from _common import (
    DEFAULT_OUT,
    SYNTHETIC_NOTE,
    base_parser,
    data_missing,
    emit_json,
    load_labelled,
    markdown_table,
    timer,
)

if TYPE_CHECKING:
    import numpy as np
    import pandas as pd

    from prodcat.data import Catalog

COLUMNS = ("id", "title", "description", "image", "label")


def stratified_counts(counts: dict[str, int], n: int) -> dict[str, int]:
    """Split ``n`` over the labels in proportion to ``counts`` (largest remainders; sums to ``n``)."""
    total = sum(counts.values())
    exact = {label: n * c / total for label, c in counts.items()}
    out = {label: int(v) for label, v in exact.items()}
    short = n - sum(out.values())
    for label in sorted(exact, key=lambda lab: (out[lab] - exact[lab], lab))[:short]:
        out[label] += 1
    return out


def drop_words(text: str, dropout: float, rng: np.random.Generator, *, keep_one: bool) -> str:
    """Drop each whitespace-separated word with probability ``dropout``.

    With ``keep_one`` a text that had words keeps at least one (a random one).
    """
    words = text.split()
    if not words or dropout <= 0:
        return text
    keep = rng.random(len(words)) >= dropout
    if keep_one and not keep.any():
        keep[rng.integers(len(words))] = True
    return " ".join(w for w, k in zip(words, keep, strict=True) if k)


def make_scaled_catalog(catalog: Catalog | pd.DataFrame, n: int, seed: int = 0,
                        dropout: float = 0.15) -> tuple[pd.DataFrame, pd.Series]:
    """``n`` synthetic listings made from the labelled listings of ``catalog``.

    Returns ``(frame, labels)``: ``frame`` has the Catalog columns (``id``, ``title``,
    ``description``, ``image``, ``label``) in shuffled order with ids ``syn-<i>-<source id>``, and
    ``frame.attrs["note"]`` says it is synthetic scaling data; ``labels`` is ``frame["label"]``.
    Deterministic for a given ``seed``.
    """
    import numpy as np
    import pandas as pd

    if n <= 0:
        raise ValueError(f"n must be positive, got {n}")
    if not 0.0 <= dropout < 1.0:
        raise ValueError(f"dropout must be in [0, 1), got {dropout}")
    source = catalog if isinstance(catalog, pd.DataFrame) else catalog.frame
    source = source[source["label"].notna()].reset_index(drop=True)
    if source.empty:
        raise ValueError("the catalog has no labelled listings to resample")

    rng = np.random.default_rng(seed)
    labels = source["label"].astype(str).to_numpy()
    counts = {lab: int(c) for lab, c in zip(*np.unique(labels, return_counts=True), strict=True)}
    picks = []
    for label, k in stratified_counts(counts, n).items():
        if k:
            picks.append(rng.choice(np.flatnonzero(labels == label), size=k, replace=True))
    rows = rng.permutation(np.concatenate(picks))

    titles = source["title"].fillna("").astype(str).to_numpy()
    descriptions = source["description"].fillna("").astype(str).to_numpy()
    ids = source["id"].astype(str).to_numpy() if "id" in source else rows.astype(str)
    frame = pd.DataFrame({
        "id": [f"syn-{i}-{ids[r]}" for i, r in enumerate(rows)],
        "title": [drop_words(titles[r], dropout, rng, keep_one=True) for r in rows],
        "description": [drop_words(descriptions[r], dropout, rng, keep_one=False) for r in rows],
        "image": source["image"].to_numpy()[rows] if "image" in source else None,
        "label": labels[rows],
    }, columns=list(COLUMNS))
    frame["image"] = frame["image"].astype(object).where(frame["image"].notna(), None)
    frame.attrs["note"] = f"{SYNTHETIC_NOTE} (n={n}, seed={seed}, dropout={dropout})"
    return frame, frame["label"]


def summary_rows(frame: pd.DataFrame) -> list[list[object]]:
    title_words = frame["title"].str.split().str.len()
    desc_words = frame["description"].str.split().str.len()
    return [
        ["listings", len(frame)],
        ["labels", int(frame["label"].nunique())],
        ["distinct titles", int(frame["title"].nunique())],
        ["mean title words", float(title_words.mean())],
        ["mean description words", float(desc_words.mean())],
        ["empty descriptions", int((frame["description"] == "").sum())],
    ]


def main(argv: list[str] | None = None) -> int:
    parser = base_parser(__doc__.split("\n\n")[0], out=False, save=False)
    parser.add_argument("--n", type=int, default=25_000, help="listings to generate")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--dropout", type=float, default=0.15, help="word dropout probability")
    parser.add_argument("--write", type=Path, default=None,
                        help=f"Parquet file to write (outside the repo; default {DEFAULT_OUT}/"
                             "scaling_<n>_seed<seed>.parquet)")
    parser.add_argument("--json", action="store_true", help="print a JSON summary line instead")
    args = parser.parse_args(argv)
    if data_missing(args.data):
        return 0

    catalog = load_labelled(args.data)
    with timer() as elapsed:
        frame, _ = make_scaled_catalog(catalog, args.n, args.seed, args.dropout)
    target = args.write or DEFAULT_OUT / f"scaling_{args.n}_seed{args.seed}.parquet"
    target.parent.mkdir(parents=True, exist_ok=True)
    frame.to_parquet(target, index=False)
    if args.json:
        emit_json({"path": str(target), "n": len(frame), "generate_s": elapsed(),
                   "note": frame.attrs["note"]})
        return 0
    print(f"**{frame.attrs['note']}** — from {len(catalog):,} real listings in {args.data}\n")
    print(markdown_table(["", "value"], summary_rows(frame)))
    print(f"\nGenerated in {elapsed():.1f} s; written to {target}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
