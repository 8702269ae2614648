"""The Catalog: one schema for every source of listings."""

from __future__ import annotations

import hashlib
from dataclasses import dataclass, field

import numpy as np
import pandas as pd

from prodcat.data.taxonomy import Taxonomy
from prodcat.errors import DataError

#: The columns every reader produces, in this order. ``image`` is a path or None; ``label`` is a
#: string category code or None for unlabelled listings.
COLUMNS = ("id", "title", "description", "image", "label")
#: The columns a model reads; a model never sees ``label`` or ``id``.
FEATURE_COLUMNS = ("title", "description", "image")


@dataclass
class ReadReport:
    """What a reader saw, so users learn about skipped rows and missing images."""

    rows_read: int = 0
    rows_kept: int = 0
    rows_without_text: int = 0
    rows_without_label: int = 0
    images_expected: int = 0
    images_missing: int = 0
    notes: list[str] = field(default_factory=list)

    def to_dict(self) -> dict[str, object]:
        return {
            "rows_read": self.rows_read,
            "rows_kept": self.rows_kept,
            "rows_without_text": self.rows_without_text,
            "rows_without_label": self.rows_without_label,
            "images_expected": self.images_expected,
            "images_missing": self.images_missing,
            "notes": list(self.notes),
        }

    def summary(self) -> str:
        parts = [f"{self.rows_kept} listings"]
        if self.rows_without_text:
            parts.append(f"{self.rows_without_text} rows without title or description skipped")
        if self.rows_without_label:
            parts.append(f"{self.rows_without_label} without a label")
        if self.images_expected:
            found = self.images_expected - self.images_missing
            parts.append(f"{found}/{self.images_expected} images found")
        return ", ".join(parts)


@dataclass
class Catalog:
    """Listings in the fixed schema (:data:`COLUMNS`), with their taxonomy and read report."""

    frame: pd.DataFrame
    taxonomy: Taxonomy
    source: str = ""
    format: str = ""
    report: ReadReport = field(default_factory=ReadReport)

    def __post_init__(self) -> None:
        missing = [c for c in COLUMNS if c not in self.frame.columns]
        if missing:
            raise DataError(f"a Catalog needs the columns {list(COLUMNS)}; missing {missing}")
        self.frame = self.frame.loc[:, list(COLUMNS)].reset_index(drop=True)

    def __len__(self) -> int:
        return len(self.frame)

    @property
    def X(self) -> pd.DataFrame:  # noqa: N802 - the scikit-learn name
        return self.frame.loc[:, list(FEATURE_COLUMNS)]

    @property
    def y(self) -> pd.Series:
        return self.frame["label"]

    @property
    def is_labelled(self) -> bool:
        return bool(self.frame["label"].notna().any())

    def labelled(self) -> Catalog:
        """Only the listings that carry a label."""
        keep = self.frame["label"].notna()
        return self.subset(keep.to_numpy())

    def subset(self, rows) -> Catalog:
        """The listings at ``rows``: positional indices or a boolean mask."""
        rows = np.asarray(rows)
        frame = self.frame[rows] if rows.dtype == bool else self.frame.iloc[rows]
        return Catalog(frame.reset_index(drop=True), self.taxonomy, self.source, self.format, self.report)

    def fingerprint(self) -> str:
        """A sha256 over ids, texts and labels: identifies the training data in a bundle."""
        h = hashlib.sha256()
        hashed = pd.util.hash_pandas_object(
            self.frame[["id", "title", "description", "label"]].astype("string").fillna(""),
            index=False,
        )
        h.update(hashed.to_numpy().tobytes())
        return h.hexdigest()

    def class_counts(self) -> dict[str, int]:
        return {str(k): int(v) for k, v in self.frame["label"].value_counts().sort_index().items()}


def make_catalog(
    frame: pd.DataFrame,
    taxonomy: Taxonomy | None = None,
    *,
    source: str = "",
    format: str = "",
    report: ReadReport | None = None,
) -> Catalog:
    """Normalise a frame that has (some of) :data:`COLUMNS` into a Catalog.

    Text is coerced to strings (NaN to ""), labels to string codes, rows with neither title nor
    description are dropped and counted, and missing ids are numbered.
    """
    report = report or ReadReport()
    frame = frame.copy()
    n = len(frame)
    report.rows_read = report.rows_read or n
    if "id" not in frame.columns:
        frame["id"] = [str(i) for i in range(n)]
    for col in ("title", "description"):
        if col not in frame.columns:
            frame[col] = ""
        frame[col] = frame[col].astype("string").fillna("").astype(object)
    if "image" not in frame.columns:
        frame["image"] = None
    frame["image"] = frame["image"].astype(object).where(frame["image"].notna(), None)
    if "label" not in frame.columns:
        frame["label"] = None
    labels = frame["label"]
    frame["label"] = labels.map(label_to_code).astype(object)
    frame["id"] = frame["id"].astype("string").fillna("").astype(object)

    has_text = (frame["title"].str.strip() != "") | (frame["description"].str.strip() != "")
    report.rows_without_text += int((~has_text).sum())
    frame = frame[has_text.to_numpy()]
    report.rows_without_label = int(frame["label"].isna().sum())
    report.rows_kept = len(frame)
    if len(frame) == 0:
        raise DataError(
            f"no usable listings in {source or 'the data'}: "
            f"{report.rows_read} rows read, none has a title or a description"
        )
    codes = frame["label"].dropna().unique()
    taxonomy = (taxonomy or Taxonomy()).extended(sorted(codes))
    return Catalog(frame.reset_index(drop=True), taxonomy, source, format, report)


def label_to_code(value: object) -> str | None:
    """A label as its string code (``2905.0`` → ``"2905"``); None for a missing label."""
    if value is None or value is pd.NA or (isinstance(value, float) and value != value):
        return None
    if isinstance(value, float) and value.is_integer():
        value = int(value)
    text = str(value).strip()
    return text or None
