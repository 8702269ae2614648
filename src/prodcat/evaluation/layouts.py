"""Field layouts: the same listings as other feeds would deliver them.

Catalogues do not agree on where text goes. Some feeds glue the description onto the title,
some send titles only, some descriptions only, some pre-clean everything to lower case without
punctuation. A model tuned to one layout can lose several points on another, so every
evaluation scores the same test listings in each of these shapes (``metrics["layouts"]``).
"""

from __future__ import annotations

import re
from collections.abc import Callable

import numpy as np
import pandas as pd

from prodcat.registry import Registry
from prodcat.text.cleaning import clean_text

#: name → function turning a listings frame into the same listings in another layout.
LAYOUTS: Registry[Callable[[pd.DataFrame], pd.DataFrame]] = Registry("field layout")

_NOT_WORD = re.compile(r"[^\w\s]+")
_SPACE = re.compile(r"\s+")


def _texts(frame: pd.DataFrame, column: str) -> pd.Series:
    return frame[column].fillna("").astype(str)


@LAYOUTS.register("given")
def _given(frame: pd.DataFrame) -> pd.DataFrame:
    """The listings as they are."""
    return frame


@LAYOUTS.register("merged")
def _merged(frame: pd.DataFrame) -> pd.DataFrame:
    """The description moved into the title (feeds that concatenate)."""
    out = frame.copy()
    out["title"] = (_texts(frame, "title") + " " + _texts(frame, "description")).str.strip()
    out["description"] = ""
    return out


@LAYOUTS.register("title_only")
def _title_only(frame: pd.DataFrame) -> pd.DataFrame:
    """No description."""
    out = frame.copy()
    out["description"] = ""
    return out


@LAYOUTS.register("description_only")
def _description_only(frame: pd.DataFrame) -> pd.DataFrame:
    """No title (listings with no description keep nothing: they are scored as such)."""
    out = frame.copy()
    out["title"] = ""
    return out


def _pre_cleaned(text: str) -> str:
    text = clean_text(text, lowercase=True, strip_accents=False)
    return _SPACE.sub(" ", _NOT_WORD.sub(" ", text)).strip()


@LAYOUTS.register("lower_nopunct")
def _lower_nopunct(frame: pd.DataFrame) -> pd.DataFrame:
    """Lower-cased, HTML and punctuation removed (feeds that pre-clean)."""
    out = frame.copy()
    for column in ("title", "description"):
        out[column] = [_pre_cleaned(t) for t in _texts(frame, column)]
    return out


def layout_frames(frame: pd.DataFrame) -> dict[str, pd.DataFrame]:
    """Every registered layout of ``frame`` (same rows, same order)."""
    return {name: LAYOUTS.get(name)(frame) for name in LAYOUTS}


def layout_scores(y_true, probas: dict[str, np.ndarray], classes, *,
                  threshold: float | np.ndarray | None = None) -> dict[str, dict]:
    """Weighted F1, accuracy and, with ``threshold``, the share filed automatically and its
    precision, per layout."""
    from sklearn.metrics import f1_score

    y = np.asarray(y_true, dtype=object).astype(str)
    cls = np.asarray(classes, dtype=object).astype(str)
    out = {}
    for name, proba in probas.items():
        pred = cls[proba.argmax(axis=1)]
        correct = pred == y
        row = {"weighted_f1": float(f1_score(y, pred, average="weighted", zero_division=0)),
               "accuracy": float(correct.mean())}
        if threshold is not None:
            filed = proba.max(axis=1) >= threshold
            row["coverage"] = float(filed.mean())
            row["filed_precision"] = float(correct[filed].mean()) if filed.any() else None
        out[name] = row
    return out


def layouts_section(layouts: dict[str, dict]) -> tuple[str, str]:
    """The report's "Field layouts" section: ``(title, markdown)``."""
    lines = ["The same listings as other feeds deliver them: description glued onto the title, "
             "title only, description only, lower-cased without punctuation.", "",
             "| layout | weighted F1 | accuracy | filed automatically | precision of filed |",
             "|---|--:|--:|--:|--:|"]
    for name, row in layouts.items():
        cov = row.get("coverage")
        prec = row.get("filed_precision")
        lines.append(f"| {name} | {row['weighted_f1']:.4f} | {row['accuracy']:.4f} | "
                     f"{'' if cov is None else f'{cov:.1%}'} | "
                     f"{'' if prec is None else f'{prec:.1%}'} |")
    return "Field layouts", "\n".join(lines)
