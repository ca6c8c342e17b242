"""CSV files at the boundary: reading a CSV with errors that name the file (and refusing duplicated columns), writing
one that a spreadsheet cannot execute (:func:`write_csv`), the official duplicate list, finding a data set folder's
metadata file. :class:`DataError` is every data error's type."""

from __future__ import annotations

import csv
import os
from pathlib import Path
from typing import Iterable

import pandas as pd

from ..atomic import atomic_write


class DataError(ValueError):
    """Invalid input data; the message says which file, column and rows, and what to do."""


def _lines(index: Iterable[int], limit: int = 5) -> str:
    """CSV line numbers (header is line 1) of the first ``limit`` row positions."""
    pos = [int(i) + 2 for i in index]
    shown = ", ".join(str(p) for p in pos[:limit])
    return shown + (f" … ({len(pos)} rows)" if len(pos) > limit else "")


#: A text cell starting with one of these is a formula to a spreadsheet (OWASP's CSV-injection list).
FORMULA_STARTS: tuple[str, ...] = ("=", "+", "-", "@", "\t", "\r")
#: What :func:`neutralise_cells` puts before such a cell (and :func:`restore_cells` takes away).
FORMULA_GUARD = "'"


def _is_text(values: pd.Series | pd.Index) -> bool:
    """Whether a column (or index) holds text: object or string dtype."""
    return values.dtype == object or pd.api.types.is_string_dtype(values.dtype)


def neutralise_cells(frame: pd.DataFrame) -> pd.DataFrame:
    """A copy of ``frame`` in which every text cell (and text index value or column name) that starts with a
    formula character (:data:`FORMULA_STARTS`) is prefixed with :data:`FORMULA_GUARD`, so that a spreadsheet shows
    it as text instead of executing it; one that already starts with the guard gets another, so that
    :func:`restore_cells` gives every value back. Numbers (a negative probability, say) stay as they are."""
    def guard(value: object) -> object:  # (a value already starting with the guard is guarded too: it round-trips)
        return (FORMULA_GUARD + value if isinstance(value, str) and value.startswith((*FORMULA_STARTS, FORMULA_GUARD))
                else value)

    out = frame.copy()
    for col in out.columns:
        if _is_text(out[col]):
            out[col] = out[col].map(guard)
    out.columns = [guard(c) for c in out.columns]
    if _is_text(out.index):
        out.index = out.index.map(guard)
    return out


def restore_cells(frame: pd.DataFrame) -> pd.DataFrame:
    """Undo :func:`neutralise_cells` on a table read back (a guarded cell gets its original text)."""
    def unguard(value: object) -> object:
        if isinstance(value, str) and value.startswith(FORMULA_GUARD) and value[1:].startswith((*FORMULA_STARTS, FORMULA_GUARD)):
            return value[1:]
        return value

    out = frame.copy()
    for col in out.columns:
        if _is_text(out[col]):
            out[col] = out[col].map(unguard)
    out.columns = [unguard(c) for c in out.columns]
    return out


def write_csv(frame: pd.DataFrame, path: str | os.PathLike[str], index: bool = False, exclusive: bool = False) -> Path:
    """Write ``frame`` to ``path`` atomically (a temporary name moved into place), its text cells neutralised for
    spreadsheets (:func:`neutralise_cells`); where a text cell holds a carriage return, every text cell is quoted so
    that it cannot split a row (the csv module quotes a line break, not a lone carriage return); :func:`read_csv` reads
    the original values back. ``exclusive``: refuse (a :class:`FileExistsError`) if ``path`` appeared meanwhile
    (:func:`~melanoma_utils.atomic.atomic_path`)."""
    safe = neutralise_cells(frame)
    has_cr = any(safe[c].map(lambda v: isinstance(v, str) and "\r" in v).any() for c in safe.columns if _is_text(safe[c]))
    quoting = csv.QUOTE_NONNUMERIC if has_cr else csv.QUOTE_MINIMAL
    return atomic_write(path, lambda tmp: safe.to_csv(tmp, index=index, quoting=quoting), exclusive)


def read_csv(path: str | os.PathLike[str]) -> pd.DataFrame:
    """Read a CSV as strings, with a clear error if it is absent or not a CSV; cells a package writer guarded against
    spreadsheet execution (:func:`write_csv`) get their original text back."""
    path = Path(path)
    if not path.is_file():
        raise DataError(f"{path}: metadata file not found")
    try:
        table = pd.read_csv(path, dtype=str, keep_default_na=True)
        with path.open(newline="", encoding="utf-8-sig", errors="replace") as fh:
            header = next(csv.reader(fh), [])
    except (pd.errors.ParserError, pd.errors.EmptyDataError, UnicodeDecodeError) as exc:
        raise DataError(f"{path}: not a readable CSV file ({exc})") from None
    names = [h.strip() for h in header]
    twice = sorted({n for n in names if names.count(n) > 1})
    if twice:
        raise DataError(f"{path}: column(s) {', '.join(map(repr, twice))} appear more than once in the header (line 1); "
                        "keep one of each")
    return restore_cells(table)


def find_metadata_csv(root: str | os.PathLike[str]) -> Path:
    """The training CSV of a dataset folder: ``train.csv`` or ``ISIC_2020_Training_GroundTruth*.csv``."""
    root = Path(root)
    for name in ("train.csv", "ISIC_2020_Training_GroundTruth_v2.csv", "ISIC_2020_Training_GroundTruth.csv"):
        if (root / name).is_file():
            return root / name
    raise DataError(
        f"{root}: no metadata CSV found (expected train.csv or ISIC_2020_Training_GroundTruth[_v2].csv)"
    )


def read_duplicates(path: str | os.PathLike[str]) -> pd.DataFrame:
    """The official duplicate list (``image_name_1, image_name_2``)."""
    dup = read_csv(path)
    need = [c for c in ("image_name_1", "image_name_2") if c not in dup.columns]
    if need:
        raise DataError(f"{path}: missing required column(s) {', '.join(repr(c) for c in need)}")
    return dup


def drop_duplicates(df: pd.DataFrame, duplicates: pd.DataFrame) -> tuple[pd.DataFrame, int]:
    """Drop the second image of each official duplicate pair where both are present; return the count."""
    names = set(df["image_name"])
    to_drop = {
        b for a, b in zip(duplicates["image_name_1"], duplicates["image_name_2"]) if a in names and b in names
    }
    kept = df[~df["image_name"].isin(to_drop)].reset_index(drop=True)
    return kept, len(to_drop)


def numeric_column(raw: pd.Series, column: str, source: str) -> pd.Series:
    """Parse numbers; a non-blank value that is not a number is an error naming its rows."""
    as_num = pd.to_numeric(raw, errors="coerce")
    bad = as_num.isna() & raw.notna() & (raw.astype("string").str.strip() != "")
    if bad.any():
        first = raw[bad].iloc[0]
        raise DataError(
            f"{source}: column '{column}' has non-numeric value(s) such as {first!r} "
            f"(line(s) {_lines([i for i, b in enumerate(bad.to_numpy()) if b])})"
        )
    return as_num.astype(float)
