"""Corrections: the reviewers' decisions as a table, and that table applied to training data.

A decided label overrides the label a listing came with (matched on the listing id); a decided
listing the data set does not have (a seller's listing from the API) is added to it. When one
listing was decided more than once, the latest decision counts.
"""

from __future__ import annotations

from dataclasses import replace
from datetime import datetime
from pathlib import Path

import pandas as pd

from prodcat.data.files import write_table
from prodcat.errors import DataError
from prodcat.review.store import ReviewStore

COLUMNS = ("id", "title", "description", "image", "label", "given_label", "model_label", "reason",
           "reviewer", "decided_at", "comment", "item_id", "model_id")


def corrections_frame(store: ReviewStore, since: datetime | None = None) -> pd.DataFrame:
    """Every decision (oldest first) with the listing it is about; ``image`` is the stored photo's
    path, ``id`` the listing id (``review-<item>`` for items queued without one)."""
    rows = []
    for item in store.decisions(since):
        d = item["decision"]
        photo = store.photo_path(item["photo_sha256"]) if item["photo_sha256"] else None
        rows.append({"id": item["listing_id"] or f"review-{item['id']}", "title": item["title"],
                     "description": item["description"],
                     "image": str(photo.resolve()) if photo is not None and photo.exists() else None,
                     "label": d["label"], "given_label": item["given_label"], "model_label": item["model_label"],
                     "reason": item["reason"], "reviewer": d["reviewer"], "decided_at": d["decided_at"],
                     "comment": d["comment"], "item_id": item["id"], "model_id": item["model_id"]})
    return pd.DataFrame(rows, columns=list(COLUMNS))


def write_corrections(frame: pd.DataFrame, out: str | Path) -> Path:
    return write_table(frame, out)


def read_corrections(source: str) -> pd.DataFrame:
    """Corrections from a review store URL (``sqlite:///…``, ``postgresql://…``) or from a file
    written by ``prodcat corrections export``."""
    if "://" in source:
        from prodcat.review.store import open_store

        store = open_store(source)
        try:
            return corrections_frame(store)
        finally:
            store.close()
    path = Path(source)
    if not path.is_file():
        raise DataError(f"corrections not found: {source} (a review store URL or an exported file)")
    frame = pd.read_parquet(path) if path.suffix.lower() in (".parquet", ".pq") else pd.read_csv(path, dtype=str)
    missing = {"id", "label"} - set(frame.columns)
    if missing:
        raise DataError(f"{source} lacks the column(s) {sorted(missing)} of a corrections export")
    return frame


def apply_corrections(catalog, corrections: pd.DataFrame):
    """``(catalog with the corrections applied, counts)``: relabelled, confirmed and added listings."""
    from prodcat.data.catalog import COLUMNS as CATALOG_COLUMNS

    counts = {"decisions": len(corrections), "relabelled": 0, "confirmed": 0, "added": 0}
    if corrections.empty:
        return catalog, counts
    latest = corrections.assign(id=corrections["id"].astype(str), label=corrections["label"].astype(str))
    latest = latest.drop_duplicates("id", keep="last").set_index("id")
    frame = catalog.frame.copy()
    ids = frame["id"].astype(str)
    known = ids.isin(latest.index)
    decided = ids[known].map(latest["label"])
    before = frame.loc[known, "label"].astype("string").fillna("")
    counts["relabelled"] = int((before != decided).sum())
    counts["confirmed"] = int((before == decided).sum())
    frame.loc[known, "label"] = decided.to_numpy()
    new = latest[~latest.index.isin(set(ids))].reset_index()
    if len(new):
        for col in CATALOG_COLUMNS:
            if col not in new.columns:
                new[col] = None
        new["description"] = new["description"].fillna("")
        new["title"] = new["title"].fillna("")
        new["image"] = new["image"].where(new["image"].notna() & (new["image"] != ""), None)
        frame = pd.concat([frame, new[list(CATALOG_COLUMNS)]], ignore_index=True)
        counts["added"] = len(new)
    taxonomy = catalog.taxonomy.extended(latest["label"])
    return replace(catalog, frame=frame, taxonomy=taxonomy), counts
