"""Readers: each turns one kind of source into a :class:`~prodcat.data.catalog.Catalog`.

Readers are looked up by name in a registry (``read_catalog(path, format="rakuten")``), and
``format="auto"`` asks each reader's detector in turn.
"""

from __future__ import annotations

import json
import re
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import pandas as pd

from prodcat.data.catalog import Catalog, ReadReport, make_catalog
from prodcat.data.files import TABLE_SUFFIXES, read_table, require_columns
from prodcat.data.taxonomy import Category, Taxonomy
from prodcat.errors import ConfigError, DataError
from prodcat.registry import Registry


@dataclass(frozen=True)
class Reader:
    name: str
    read: Callable[..., Catalog]
    detect: Callable[[Path], bool]
    description: str


READERS: Registry[Reader] = Registry("data format", build=lambda reader: reader.read,
                                     extra_choices=("auto",))


def register_reader(name: str, detect: Callable[[Path], bool], description: str):
    def wrap(fn: Callable[..., Catalog]) -> Callable[..., Catalog]:
        READERS.register(name, Reader(name, fn, detect, description))
        return fn

    return wrap


def list_formats() -> list[str]:
    return ["auto", *READERS]


def detect_format(path: Path) -> str:
    path = Path(path)
    for reader in READERS.values():
        if reader.name != "table" and reader.detect(path):
            return reader.name
    if READERS["table"].detect(path):
        return "table"
    raise DataError(
        f"cannot tell what {path} is: expected a Rakuten folder (X_*_update.csv), a Flipkart CSV "
        "(with product_category_tree) or a CSV/Parquet table; pass --format"
    )


def resolve_source(path: str | Path, format: str = "auto") -> tuple[Path, str]:
    """``path`` checked to exist, and its format (detected when ``"auto"``)."""
    path = Path(path).expanduser()
    if not path.exists():
        raise DataError(f"data path not found: {path}")
    return path, detect_format(path) if format == "auto" else format


def read_catalog(path: str | Path, format: str = "auto", **options) -> Catalog:
    """Read any supported source into a Catalog. Unused options for a format are an error."""
    path, format = resolve_source(path, format)
    options = {k: v for k, v in options.items() if v is not None}
    return READERS.create(format, path, **options)


# ---------------------------------------------------------------------------------------------
# Rakuten challenge layout


def _rakuten_x_files(path: Path) -> list[Path]:
    return sorted(path.glob("X_*_update.csv")) if path.is_dir() else []


def _is_rakuten(path: Path) -> bool:
    return bool(_rakuten_x_files(path))


def _taxonomy_file(path: Path, encoding: str = "utf-8") -> Taxonomy | None:
    """Read ``categories.csv`` (code,name,parent; the Rakuten column ``prdtypecode`` also works)."""
    if not path.exists():
        return None
    frame = read_table(path, encoding=encoding)
    code_col = next((c for c in ("code", "prdtypecode", "category", "label") if c in frame.columns), None)
    if code_col is None:
        raise DataError(f"{path}: expected a 'code' column (then 'name', 'parent')")
    frame = frame.rename(columns={code_col: "code"})
    return Taxonomy.from_records(frame.to_dict("records"))


def rakuten_split_file(path: Path, split: str | None) -> tuple[str, Path]:
    """The split to read in a Rakuten folder (``train`` when present) and its X file."""
    if not path.is_dir():
        raise DataError(f"a Rakuten data set is a folder holding X_train_update.csv; got {path}")
    x_files = {re.sub(r"^X_|_update\.csv$", "", f.name): f for f in _rakuten_x_files(path)}
    if not x_files:
        raise DataError(f"{path}: expected X_train_update.csv (or X_test_update.csv) in this folder")
    split = split or ("train" if "train" in x_files else sorted(x_files)[0])
    if split not in x_files:
        raise DataError(f"{path}: no X_{split}_update.csv; found {sorted(f.name for f in x_files.values())}")
    return split, x_files[split]


@register_reader("rakuten", _is_rakuten, "folder laid out like the Rakuten France challenge download")
def read_rakuten(path: Path, *, split: str | None = None, encoding: str = "utf-8",
                 categories: str | Path | None = None) -> Catalog:
    path = Path(path)
    split, x_path = rakuten_split_file(path, split)
    x = read_table(x_path, encoding=encoding)
    x = x.rename(columns={x.columns[0]: "row"}) if x.columns[0] in ("", "Unnamed: 0") else x
    require_columns(x, {"title": "designation", "description": "description",
                        "product id": "productid", "image id": "imageid"}, x_path)
    if "row" not in x.columns:
        x["row"] = [str(i) for i in range(len(x))]
    frame = pd.DataFrame({"id": x["row"], "title": x["designation"], "description": x["description"]})

    y_files = sorted(path.glob(f"Y_{split}*.csv"))
    if y_files:
        y = read_table(y_files[0], encoding=encoding)
        y = y.rename(columns={y.columns[0]: "row"}) if y.columns[0] in ("", "Unnamed: 0") else y
        require_columns(y, {"label": "prdtypecode"}, y_files[0])
        if "row" in y.columns:
            frame["label"] = frame["id"].map(dict(zip(y["row"], y["prdtypecode"], strict=False)))
        elif len(y) == len(frame):
            frame["label"] = y["prdtypecode"].to_numpy()
        else:
            raise DataError(f"{y_files[0]}: {len(y)} labels for {len(frame)} listings")

    image_dir = path / "images" / f"image_{split}"
    names = "image_" + x["imageid"].astype(str) + "_product_" + x["productid"].astype(str) + ".jpg"
    report = ReadReport(rows_read=len(frame))
    frame["image"] = _existing_images(names, image_dir, report)
    taxonomy = _taxonomy_file(Path(categories) if categories else path / "categories.csv", encoding)
    return make_catalog(frame, taxonomy, source=str(path), format="rakuten", report=report)


def _existing_images(names: pd.Series, root: Path, report: ReadReport) -> list[str | None]:
    """Resolve image file names under ``root``; missing files become None and are counted."""
    present = {p.name for p in root.iterdir()} if root.is_dir() else set()
    out: list[str | None] = []
    for name in names:
        if name is None or (isinstance(name, float) and name != name) or str(name).strip() == "":
            out.append(None)
            continue
        name = str(name).strip()
        report.images_expected += 1
        candidate = Path(name) if Path(name).is_absolute() else root / name
        if candidate.name in present and candidate.parent == root or candidate.is_file():
            out.append(str(candidate))
        else:
            report.images_missing += 1
            out.append(None)
    if report.images_missing:
        report.notes.append(f"{report.images_missing} of {report.images_expected} images are missing")
    return out


# ---------------------------------------------------------------------------------------------
# Flipkart product CSV


def _flipkart_csv(path: Path) -> Path | None:
    if path.is_file():
        return path if path.suffix.lower() == ".csv" else None
    files = sorted(path.glob("flipkart*.csv")) or sorted(path.glob("*.csv"))
    return files[0] if len(files) >= 1 else None


def _is_flipkart(path: Path) -> bool:
    csv = _flipkart_csv(path)
    if csv is None:
        return False
    try:
        with open(csv, encoding="utf-8", errors="replace") as fh:
            header = fh.readline()
    except OSError:
        return False
    return "product_category_tree" in header


def parse_category_path(value: object) -> list[str]:
    """``'["Watches >> Wrist Watches >> X"]'`` → ``["Watches", "Wrist Watches", "X"]``."""
    if value is None or (isinstance(value, float) and value != value):
        return []
    text = str(value).strip()
    try:
        loaded = json.loads(text)
        if isinstance(loaded, list) and loaded:
            text = str(loaded[0])
    except ValueError:
        text = text.strip('[]"')
    return [part.strip() for part in text.split(">>") if part.strip()]


@register_reader("flipkart", _is_flipkart, "Flipkart CSV with product_category_tree paths")
def read_flipkart(path: Path, *, level: int = 0, encoding: str = "utf-8",
                  image_dir: str | Path | None = None) -> Catalog:
    path = Path(path)
    csv = _flipkart_csv(path)
    if csv is None:
        raise DataError(f"{path}: expected a Flipkart CSV file (or a folder holding one)")
    level = int(level)
    if level < 0:
        raise ConfigError("--level must be 0 or more")
    raw = read_table(csv, encoding=encoding)
    require_columns(raw, {"title": "product_name", "category": "product_category_tree"}, csv)
    paths = raw["product_category_tree"].map(parse_category_path)
    categories: dict[str, Category] = {}
    labels: list[str | None] = []
    for parts in paths:
        if len(parts) <= level:
            labels.append(None)
            continue
        for depth in range(level + 1):
            code = " >> ".join(parts[: depth + 1])
            parent = " >> ".join(parts[:depth]) or None
            if depth == level:
                categories.setdefault(code, Category(code, parts[depth], parent))
        labels.append(" >> ".join(parts[: level + 1]))
    frame = pd.DataFrame({
        "id": raw["uniq_id"] if "uniq_id" in raw.columns else [str(i) for i in range(len(raw))],
        "title": raw["product_name"],
        "description": raw["description"] if "description" in raw.columns else "",
        "label": labels,
    })
    report = ReadReport(rows_read=len(frame))
    unlabelled = sum(label is None for label in labels)
    if unlabelled:
        report.notes.append(f"{unlabelled} rows have a category path shorter than level {level}")
    root = Path(image_dir) if image_dir else _flipkart_image_dir(csv.parent)
    frame["image"] = (_existing_images(raw["image"], root, report) if "image" in raw.columns
                      else None)
    return make_catalog(frame, Taxonomy(categories), source=str(csv), format="flipkart", report=report)


def _flipkart_image_dir(folder: Path) -> Path:
    for name in ("Images", "images"):
        if (folder / name).is_dir():
            return folder / name
    return folder


# ---------------------------------------------------------------------------------------------
# Any table


#: How the note about a table without its label column starts (see :func:`missing_label_note`).
MISSING_LABEL_NOTE = "no label column"


def missing_label_note(label_col: str, columns: list[str]) -> str:
    """What to tell a user whose table has no ``label_col``: training then has nothing to learn
    from, and the usual cause is a label column under another name."""
    shown = ", ".join(map(str, columns[:12])) + (", ..." if len(columns) > 12 else "")
    return (f"{MISSING_LABEL_NOTE} {label_col!r} (the table has: {shown}); name it with --label-col")


def _is_table(path: Path) -> bool:
    return path.is_file() and path.suffix.lower() in TABLE_SUFFIXES


@register_reader("table", _is_table, "any CSV or Parquet file with named columns")
def read_table_catalog(path: Path, *, title_col: str = "title", description_col: str | None = "description",
                       image_col: str | None = "image", label_col: str | None = "label",
                       id_col: str | None = "id", image_root: str | Path | None = None,
                       categories: str | Path | None = None, encoding: str = "utf-8") -> Catalog:
    path = Path(path)
    if path.is_dir():
        tables = [p for p in sorted(path.iterdir()) if _is_table(p) and p.name != "categories.csv"]
        if len(tables) != 1:
            raise DataError(f"{path}: expected one CSV/Parquet file in this folder, found {len(tables)}; "
                            "pass the file itself")
        path = tables[0]
    raw = read_table(path, encoding=encoding)
    # Columns named explicitly must exist; the defaults are optional except the title.
    asked = {"title": title_col}
    optional = {"description": description_col, "image": image_col, "label": label_col, "id": id_col}
    defaults = {"description": "description", "image": "image", "label": "label", "id": "id"}
    for role, col in optional.items():
        if col is not None and (col != defaults[role] or col in raw.columns):
            asked[role] = col
    require_columns(raw, asked, path)
    frame = pd.DataFrame({role: raw[col] for role, col in asked.items()})
    report = ReadReport(rows_read=len(frame))
    if "label" not in asked and label_col is not None:
        report.notes.append(missing_label_note(label_col, list(raw.columns)))
    if "image" in frame.columns:
        root = Path(image_root) if image_root else path.parent
        frame["image"] = _existing_images(frame["image"], root, report)
    taxonomy = _taxonomy_file(Path(categories) if categories else path.parent / "categories.csv", encoding)
    return make_catalog(frame, taxonomy, source=str(path), format="table", report=report)
