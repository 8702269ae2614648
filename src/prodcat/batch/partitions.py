"""Reading a catalogue in partitions of a fixed number of rows, never all at once.

:func:`open_source` understands the same sources and options as :func:`prodcat.data.read_catalog`
(Rakuten folders, Flipkart CSVs, any CSV/Parquet table with ``--title-col`` and friends) and maps
their columns the same way, but streams the file: Parquet batch by batch (only the columns
needed), CSV in chunks. Partition ``i`` always holds input rows ``[i * rows, (i + 1) * rows)``
of the same file, so a job restarted on an unchanged input sees the same partitions.

Unlike ``read_catalog``, rows without any text are kept (a batch job answers for every input
row: the job marks them), and only the columns used are parsed (a CSV line with extra fields is
read, not refused).
"""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pandas as pd

from prodcat.data.files import TABLE_SUFFIXES, require_columns
from prodcat.data.readers import rakuten_split_file, resolve_source
from prodcat.errors import ConfigError, DataError
from prodcat.hashing import sha256_file

#: The columns of every partition frame.
LISTING_COLUMNS = ("id", "title", "description", "image")

#: The options each format takes (the others must be left unset), as in the readers.
FORMAT_OPTIONS = {
    "rakuten": {"split", "encoding", "categories"},
    "flipkart": {"level", "encoding"},
    "table": {"title_col", "description_col", "image_col", "label_col", "id_col", "image_root",
              "categories", "encoding"},
}


@dataclass
class Partition:
    """Rows ``[start, start + len(frame))`` of the input, in the columns :data:`LISTING_COLUMNS`."""

    index: int
    start: int
    frame: pd.DataFrame
    #: Photos named by a row but not found on disk (those rows get ``image = None``).
    images_missing: int = 0

    def __len__(self) -> int:
        return len(self.frame)

    def photos_to_process(self, summary: Any, seen: set[str], store: Any, key: str) -> list[tuple[str, bytes]]:
        """``(digest, bytes)`` of this partition's photos that ``store`` lacks under ``key`` and
        that no earlier partition of the job sent (``seen``, updated).

        Counts into ``summary`` (an embedding or OCR job's): rows, photos, missing, unreadable,
        duplicate and cached photos. ``store`` is any cache with ``get_many(key, digests)``.
        """
        from prodcat.image import ImageError, content_digest, read_image_bytes

        summary.rows += len(self)
        summary.photos_missing += self.images_missing
        digests, blobs = [], []
        for path in self.frame["image"]:
            if path is None:
                continue
            summary.photos += 1
            try:
                blob = read_image_bytes(path)
            except ImageError:
                summary.unreadable += 1
                continue
            digest = content_digest(blob)
            if digest in seen:
                summary.duplicates += 1
                continue
            seen.add(digest)
            digests.append(digest)
            blobs.append(blob)
        have = store.get_many(key, digests) if digests else {}
        summary.cached += len(have)
        return [(d, b) for d, b in zip(digests, blobs, strict=True) if d not in have]


@dataclass(kw_only=True)
class PhotoJobSummary:
    """What a job over a catalogue's photos counts (the embedding and OCR jobs): the fields
    :meth:`Partition.photos_to_process` fills and the run loop times."""

    engine: str
    cache: str
    rows: int = 0
    photos: int = 0            # photos named by the rows and found
    photos_missing: int = 0    # named, not on disk
    unreadable: int = 0        # found but could not be read
    duplicates: int = 0        # the same bytes as an earlier photo of this run
    cached: int = 0            # already in the cache
    startup_s: float = 0.0
    seconds: float = 0.0
    client_peak_rss_mb: float | None = None
    workers: list[dict[str, Any]] = field(default_factory=list)


def photo_tasks(source: CatalogSource, partition_rows: int, summary: Any, store: Any, key: str,
                bar, make_task):
    """One task per partition with photos still to process (:meth:`Partition.photos_to_process`):
    ``make_task(index, todo, rows)``; partitions with none only move the progress bar."""
    seen: set[str] = set()
    for part in source.partitions(partition_rows, images=True):
        todo = part.photos_to_process(summary, seen, store, key)
        if not todo:
            bar.update(len(part))
            continue
        yield make_task(part.index, todo, len(part))


@dataclass
class CatalogSource:
    """One table file read in partitions, and how its columns map onto a listing."""

    path: Path
    format: str
    #: role → column of the file: ``id``, ``title``, ``description``, ``image`` (a path) or, for
    #: Rakuten, ``imageid`` and ``productid`` (the photo's name is made from them).
    columns: dict[str, str]
    image_root: Path | None
    encoding: str = "utf-8"
    #: The options as asked (recorded in a job's manifest).
    options: dict[str, Any] = field(default_factory=dict)
    _fingerprint: str | None = field(default=None, repr=False)

    @property
    def is_parquet(self) -> bool:
        return self.path.suffix.lower() in (".parquet", ".pq")

    @property
    def n_rows(self) -> int | None:
        """Rows in the file when the file says so cheaply (Parquet), else None."""
        if not self.is_parquet:
            return None
        import pyarrow.parquet as pq

        return pq.ParquetFile(self.path).metadata.num_rows

    def fingerprint(self) -> str:
        """sha256 of the file's bytes (photos are not hashed: a job reads them as it goes)."""
        if self._fingerprint is None:
            self._fingerprint = sha256_file(self.path)
        return self._fingerprint

    def describe(self) -> dict[str, Any]:
        """What identifies this input in a job manifest."""
        return {"path": str(self.path.resolve()), "format": self.format, "sha256": self.fingerprint(),
                "bytes": self.path.stat().st_size, "columns": dict(self.columns),
                "image_root": str(self.image_root) if self.image_root else None,
                "options": {k: v for k, v in sorted(self.options.items()) if v is not None}}

    # --- reading ---------------------------------------------------------------------------------

    def partitions(self, rows: int, *, images: bool = True) -> Iterator[Partition]:
        """Partitions of ``rows`` input rows each (the last may be shorter). With ``images``
        false the photo column is left empty (a text-only model needs no disk lookups)."""
        if rows < 1:
            raise ConfigError("--partition-rows must be at least 1")
        resolver = ImageResolver(self.image_root) if images and self._has_images else None
        start = 0
        for index, raw in enumerate(self._chunks(rows)):
            images, missing = (resolver.resolve(self._image_names(raw)) if resolver is not None
                               else ([None] * len(raw), 0))
            frame = self._listings(raw, start, images)
            yield Partition(index, start, frame, images_missing=missing)
            start += len(raw)

    @property
    def _has_images(self) -> bool:
        return "image" in self.columns or "imageid" in self.columns

    def _needed(self) -> list[str]:
        return list(dict.fromkeys(self.columns.values()))

    def _chunks(self, rows: int) -> Iterator[pd.DataFrame]:
        yield from (self._parquet_chunks(rows) if self.is_parquet else self._csv_chunks(rows))

    def _parquet_chunks(self, rows: int) -> Iterator[pd.DataFrame]:
        import pyarrow as pa
        import pyarrow.parquet as pq

        try:
            metadata = pq.read_metadata(self.path)
            buffered: list[pa.RecordBatch] = []
            n = 0
            for group in range(metadata.num_row_groups):
                # A reader per row group: one ParquetFile read from start to end keeps memory
                # for every row group it has read (pyarrow 26: +0.3 KB a row), this stays flat.
                reader = pq.ParquetFile(self.path, metadata=metadata)
                # Batches end at row-group boundaries: re-cut them so partition i is always
                # the same rows whatever the file's row groups are.
                for batch in reader.iter_batches(batch_size=rows, columns=self._needed(), row_groups=[group]):
                    buffered.append(batch)
                    n += batch.num_rows
                    while n >= rows:
                        table = pa.Table.from_batches(buffered)
                        yield table.slice(0, rows).to_pandas()
                        rest = table.slice(rows)
                        buffered, n = rest.to_batches(), rest.num_rows
                reader.close()
            if n:
                yield pa.Table.from_batches(buffered).to_pandas()
        except (OSError, pa.ArrowException) as exc:
            raise DataError(f"cannot read {self.path}: {exc}") from None

    def _csv_chunks(self, rows: int) -> Iterator[pd.DataFrame]:
        sep = "\t" if self.path.suffix.lower() == ".tsv" else ","
        header = _csv_header(self.path, sep, self.encoding)
        positions = [header.index(col) for col in self._needed()]
        try:
            # Only the columns used are parsed: a line with extra fields is read, not refused.
            reader = pd.read_csv(self.path, sep=sep, encoding=_csv_encoding(self.encoding), dtype=str,
                                 keep_default_na=False, na_values=[""], usecols=positions,
                                 chunksize=rows)
            with reader:
                yield from reader
        except UnicodeDecodeError as exc:
            raise DataError(f"{self.path} is not valid {self.encoding} text (byte {exc.start}: "
                            f"{exc.reason}); pass --encoding (for example --encoding cp1252)") from None
        except (pd.errors.ParserError, ValueError, OSError) as exc:
            raise DataError(f"cannot read {self.path}: {exc}") from None

    def _listings(self, raw: pd.DataFrame, start: int, images: list[str | None]) -> pd.DataFrame:
        """The partition in :data:`LISTING_COLUMNS`, as Python objects (str, or None for no photo)."""
        n = len(raw)
        cols = self.columns

        def column(values) -> pd.Series:  # object dtype: pandas would infer its string dtype
            return pd.Series(list(values), index=range(n), dtype=object)

        return pd.DataFrame({
            "id": column(text_column(raw[cols["id"]]) if "id" in cols else map(str, range(start, start + n))),
            "title": column(text_column(raw[cols["title"]])),
            "description": column(text_column(raw[cols["description"]]) if "description" in cols else [""] * n),
            "image": column(images),
        }, columns=list(LISTING_COLUMNS))

    def _image_names(self, raw: pd.DataFrame) -> list[object]:
        if "imageid" in self.columns:  # Rakuten: image_<imageid>_product_<productid>.jpg
            ids = raw[self.columns["imageid"]].astype(str).to_numpy()
            products = raw[self.columns["productid"]].astype(str).to_numpy()
            return [f"image_{i}_product_{p}.jpg" for i, p in zip(ids, products, strict=True)]
        return list(raw[self.columns["image"]])


def text_column(values: pd.Series) -> pd.Series:
    """Text as Python strings, missing values as "" (as :func:`prodcat.data.make_catalog` does);
    a value that is not text (a number, a list) becomes its ``str``."""
    try:
        return values.astype("string").fillna("").astype(object)
    except (TypeError, ValueError):
        return values.map(lambda v: "" if v is None or (isinstance(v, float) and v != v) else str(v))


class ImageResolver:
    """Photo names → existing paths under ``root`` (None where absent), listing ``root`` once."""

    def __init__(self, root: Path | None):
        self.root = root
        self._present: set[str] | None = None

    def _listing(self) -> set[str]:
        if self._present is None:
            self._present = ({p.name for p in self.root.iterdir()}
                             if self.root is not None and self.root.is_dir() else set())
        return self._present

    def resolve(self, names: list[object]) -> tuple[list[str | None], int]:
        present = self._listing()
        out: list[str | None] = []
        missing = 0
        for name in names:
            if name is None or (isinstance(name, float) and name != name) or not str(name).strip():
                out.append(None)
                continue
            name = str(name).strip()
            candidate = Path(name) if Path(name).is_absolute() or self.root is None else self.root / name
            if (candidate.parent == self.root and candidate.name in present) or candidate.is_file():
                out.append(str(candidate))
            else:
                missing += 1
                out.append(None)
        return out, missing


# ---------------------------------------------------------------------------------------------
# finding the file and its columns


def open_source(path: str | Path, format: str = "auto", **options: Any) -> CatalogSource:
    """The catalogue at ``path`` as a :class:`CatalogSource` (same formats and options as
    :func:`prodcat.data.read_catalog`); reads only the header."""
    path, format = resolve_source(path, format)
    if format not in FORMAT_OPTIONS:
        raise ConfigError(f"unknown data format {format!r}; choose one of auto, {', '.join(FORMAT_OPTIONS)}")
    given = {k: v for k, v in options.items() if v is not None and not (k == "encoding" and v == "utf-8")}
    unused = sorted(set(given) - FORMAT_OPTIONS[format])
    if unused:
        raise ConfigError(f"format {format!r} does not take {', '.join('--' + u.replace('_', '-') for u in unused)}")
    encoding = options.get("encoding") or "utf-8"
    opener = {"rakuten": _rakuten, "flipkart": _flipkart, "table": _table}[format]
    source = opener(path, encoding=encoding, **{k: v for k, v in given.items() if k != "encoding"})
    source.options = {"format": format, **given}
    return source


def _header(path: Path, encoding: str) -> list[str]:
    if path.suffix.lower() in (".parquet", ".pq"):
        import pyarrow.parquet as pq

        try:
            return list(pq.ParquetFile(path).schema_arrow.names)
        except Exception as exc:
            raise DataError(f"cannot read {path}: {exc}") from None
    return _csv_header(path, "\t" if path.suffix.lower() == ".tsv" else ",", encoding)


def _csv_encoding(encoding: str) -> str:
    return "utf-8-sig" if encoding.lower().replace("_", "-") in ("utf-8", "utf8") else encoding


def _csv_header(path: Path, sep: str, encoding: str) -> list[str]:
    try:
        return list(pd.read_csv(path, sep=sep, encoding=_csv_encoding(encoding), nrows=0, dtype=str).columns)
    except UnicodeDecodeError as exc:
        raise DataError(f"{path} is not valid {encoding} text (byte {exc.start}: {exc.reason}); "
                        "pass --encoding (for example --encoding cp1252)") from None
    except LookupError:
        raise DataError(f"unknown text encoding {encoding!r}") from None
    except (pd.errors.ParserError, pd.errors.EmptyDataError, ValueError, OSError) as exc:
        raise DataError(f"cannot read {path}: {exc}") from None


def _check(header: list[str], asked: dict[str, str | None], path: Path) -> None:
    require_columns(pd.DataFrame(columns=header), asked, path)


def _rakuten(path: Path, *, encoding: str, split: str | None = None, categories=None) -> CatalogSource:
    split, x_path = rakuten_split_file(path, split)
    header = _header(x_path, encoding)
    _check(header, {"title": "designation", "description": "description", "product id": "productid",
                    "image id": "imageid"}, x_path)
    columns = {"title": "designation", "description": "description", "imageid": "imageid",
               "productid": "productid"}
    if header and header[0] in ("", "Unnamed: 0", "row"):
        columns["id"] = header[0]
    return CatalogSource(x_path, "rakuten", columns, path / "images" / f"image_{split}", encoding)


def _flipkart(path: Path, *, encoding: str, level: int | None = None) -> CatalogSource:
    csv = path if path.is_file() else next(iter(sorted(path.glob("flipkart*.csv")) or sorted(path.glob("*.csv"))), None)
    if csv is None or csv.suffix.lower() != ".csv":
        raise DataError(f"{path}: expected a Flipkart CSV file (or a folder holding one)")
    header = _header(csv, encoding)
    _check(header, {"title": "product_name"}, csv)
    columns = {"title": "product_name"}
    for role, col in (("description", "description"), ("id", "uniq_id"), ("image", "image")):
        if col in header:
            columns[role] = col
    root = next((csv.parent / n for n in ("Images", "images") if (csv.parent / n).is_dir()), csv.parent)
    return CatalogSource(csv, "flipkart", columns, root, encoding)


def _table(path: Path, *, encoding: str, title_col: str | None = None, description_col: str | None = None,
           image_col: str | None = None, label_col: str | None = None, id_col: str | None = None,
           image_root: str | Path | None = None, categories=None) -> CatalogSource:
    if path.is_dir():
        tables = [p for p in sorted(path.iterdir())
                  if p.is_file() and p.suffix.lower() in TABLE_SUFFIXES and p.name != "categories.csv"]
        if len(tables) != 1:
            raise DataError(f"{path}: expected one CSV/Parquet file in this folder, found {len(tables)}; "
                            "pass the file itself")
        path = tables[0]
    header = _header(path, encoding)
    # As in the table reader: columns named explicitly must exist; the defaults are optional
    # except the title.
    asked = {"title": title_col or "title"}
    defaults = {"description": "description", "image": "image", "id": "id"}
    named = {"description": description_col, "image": image_col, "id": id_col}
    for role, col in named.items():
        col = col or defaults[role]
        if named[role] is not None or col in header:
            asked[role] = col
    if label_col is not None:
        _check(header, {"label": label_col}, path)  # unused here, but a typo is still an error
    _check(header, asked, path)
    root = Path(image_root) if image_root else path.parent
    return CatalogSource(path, "table", asked, root, encoding)
