"""CSV files at the boundary: reading a CSV with errors that name the file (and refusing duplicated columns), the
official duplicate list, finding a data set folder's metadata file. :class:`DataError` is every data error's type."""

from __future__ import annotations

import csv
import os
from pathlib import Path
from typing import Iterable

import pandas as pd


class DataError(ValueError):
    """Invalid input data; the message says which file, column and rows, and what to do."""


def _lines(index: Iterable[int], limit: int = 5) -> str:
    """CSV line numbers (header is line 1) of the first ``limit`` row positions."""
    pos = [int(i) + 2 for i in index]
    shown = ", ".join(str(p) for p in pos[:limit])
    return shown + (f" … ({len(pos)} rows)" if len(pos) > limit else "")


def read_csv(path: str | os.PathLike[str]) -> pd.DataFrame:
    """Read a CSV as strings, with a clear error if it is absent or not a CSV."""
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
    return table


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
