"""Reading tabular files with errors a user can act on."""

from __future__ import annotations

from pathlib import Path

import pandas as pd

from prodcat.errors import DataError

TABLE_SUFFIXES = (".csv", ".tsv", ".txt", ".parquet", ".pq")


def read_table(path: Path, *, encoding: str = "utf-8", **kwargs) -> pd.DataFrame:
    """Read a CSV/TSV or Parquet file; bad encodings and parse errors become :class:`DataError`."""
    path = Path(path)
    if not path.exists():
        raise DataError(f"file not found: {path}")
    if path.is_dir():
        raise DataError(f"expected a file, got a folder: {path}")
    suffix = path.suffix.lower()
    try:
        if suffix in (".parquet", ".pq"):
            return pd.read_parquet(path)
        sep = "\t" if suffix == ".tsv" else ","
        enc = "utf-8-sig" if encoding.lower().replace("_", "-") in ("utf-8", "utf8") else encoding
        return pd.read_csv(path, sep=sep, encoding=enc, dtype=str, keep_default_na=False,
                           na_values=[""], **kwargs)
    except UnicodeDecodeError as exc:
        raise DataError(
            f"{path} is not valid {encoding} text (byte {exc.start}: {exc.reason}); "
            "save it as UTF-8 or pass --encoding (for example --encoding cp1252)"
        ) from None
    except LookupError:
        raise DataError(f"unknown text encoding {encoding!r}") from None
    except (pd.errors.ParserError, pd.errors.EmptyDataError, ValueError, OSError) as exc:
        raise DataError(f"cannot read {path}: {exc}") from None


def require_columns(frame: pd.DataFrame, columns: dict[str, str | None], path: Path) -> None:
    """Fail naming every expected column that is missing, and what the file does have.

    ``columns`` maps a role (``title``) to the column name asked for; None means "not used".
    """
    missing = {role: col for role, col in columns.items() if col is not None and col not in frame.columns}
    if missing:
        wanted = ", ".join(f"{col!r} ({role})" for role, col in missing.items())
        have = ", ".join(repr(c) for c in frame.columns[:30])
        raise DataError(f"{path}: expected column(s) {wanted} not found; the file has {have}")


def write_table(frame: pd.DataFrame, out: str | Path) -> Path:
    """``frame`` to Parquet (``.parquet``/``.pq``) or else CSV, creating the folder; the path."""
    out = Path(out)
    out.parent.mkdir(parents=True, exist_ok=True)
    if out.suffix.lower() in (".parquet", ".pq"):
        frame.to_parquet(out, index=False)
    else:
        frame.to_csv(out, index=False)
    return out
