"""Load and validate SIIM-ISIC 2020 metadata and images into one normalised table.

Two layouts are accepted:

* the official release: ``ISIC_2020_Training_GroundTruth.csv`` (or ``_v2.csv``) plus a folder of
  ``<image_name>.jpg``;
* the widely used resized-JPEG layout: ``train.csv`` (the official columns, optionally ``tfrecord``,
  ``width``, ``height``) plus ``train/<image_name>.jpg``.

Both become one table with the columns of :data:`NORMALISED_COLUMNS`. Errors are :class:`DataError`
with a message that names the file, the column and the CSV line numbers (header = line 1), so a user
can act on them; soft problems (unknown categories mapped to ``unknown``) are collected as notes and
emitted as :class:`DataWarning`.
"""

from __future__ import annotations

import os
import warnings
from dataclasses import dataclass, field
from pathlib import Path
from typing import Literal, Sequence

import numpy as np
import pandas as pd

from .csvfiles import (  # noqa: F401  (re-exported: CSV files and the data error type live there)
    DataError,
    _lines,
    drop_duplicates,
    find_metadata_csv,
    numeric_column,
    read_csv,
    read_duplicates,
)
from .imagefiles import (  # noqa: F401  (re-exported: image files and folders live there)
    IMAGE_EXTENSIONS,
    attach_image_paths,
    missing_image_names,
    other_formats,
)
from .splits import sample_per_class  # noqa: F401  (re-exported: sampling lives there)

#: Columns every training CSV must have (official names).
REQUIRED_TRAIN_COLUMNS: tuple[str, ...] = (
    "image_name",
    "patient_id",
    "sex",
    "age_approx",
    "anatom_site_general_challenge",
    "target",
)
#: Columns a prediction CSV must have; everything else may be absent.
REQUIRED_PREDICT_COLUMNS: tuple[str, ...] = ("image_name",)

MISSING: str = "unknown"
SEX_CATEGORIES: tuple[str, ...] = ("female", "male")
SITE_CATEGORIES: tuple[str, ...] = (
    "head/neck",
    "upper extremity",
    "lower extremity",
    "torso",
    "palms/soles",
    "oral/genital",
)
#: Spellings from other ISIC releases (2019) that mean an official 2020 site.
SITE_ALIASES: dict[str, str] = {
    "anterior torso": "torso",
    "posterior torso": "torso",
    "lateral torso": "torso",
}
AGE_RANGE: tuple[float, float] = (0.0, 120.0)

#: The normalised table's columns, in order.
NORMALISED_COLUMNS: tuple[str, ...] = (
    "image_name",
    "patient_id",
    "sex",
    "age",
    "site",
    "diagnosis",
    "target",
    "tfrecord",
    "width",
    "height",
    "source",
    "image_path",
)
#: Columns kept when the CSV has them: ``source_copy``, which copy of a data set an image came from.
OPTIONAL_COLUMNS: tuple[str, ...] = ("source_copy",)



class DataWarning(UserWarning):
    """A soft data problem that was repaired (e.g. an unknown category mapped to ``unknown``)."""


@dataclass
class LoadReport:
    """What happened while loading: counts and human-readable notes."""

    source: str
    n_duplicates_dropped: int = 0
    missing_images: list[str] = field(default_factory=list)
    notes: list[str] = field(default_factory=list)

    def note(self, message: str) -> None:
        """Record a note and emit it as a :class:`DataWarning`."""
        self.notes.append(message)
        warnings.warn(message, DataWarning, stacklevel=3)


def default_images_dir(metadata_csv: str | os.PathLike[str]) -> Path | None:
    """``train/`` beside a resized-layout ``train.csv``; for a shard folder's manifest, the shards' JPEGs unpacked
    once (:func:`unpack_images`); else ``None`` (the caller must say)."""
    from .shards import MANIFEST, unpack_images  # (a shard folder's manifest only)

    if Path(metadata_csv).name == MANIFEST:
        return unpack_images(Path(metadata_csv).parent)
    candidate = Path(metadata_csv).parent / "train"
    return candidate if candidate.is_dir() else None


def _categorical(
    raw: pd.Series,
    allowed: Sequence[str],
    column: str,
    report: LoadReport,
    aliases: dict[str, str] | None = None,
) -> pd.Series:
    """Lower-case, strip, apply aliases; blanks and unknown values become :data:`MISSING`."""
    values = raw.astype("string").str.strip().str.lower()
    if aliases:
        values = values.replace(aliases)
    blank = values.isna() | (values == "") | (values == MISSING)
    unknown = ~blank & ~values.isin(list(allowed))
    if unknown.any():
        bad = values[unknown]
        kinds = ", ".join(repr(v) for v in sorted(bad.unique())[:5])
        report.note(
            f"{report.source}: column '{column}' has {int(unknown.sum())} row(s) with unknown value(s) "
            f"{kinds} (line(s) {_lines(np.flatnonzero(unknown.to_numpy()))}); mapped to '{MISSING}'. "
            f"Known values: {', '.join(allowed)}."
        )
    out = values.where(~(blank | unknown), MISSING)
    return out.astype(str)


def _image_names(raw: pd.DataFrame, source: str, require_target: bool) -> pd.Series:
    """The stripped ``image_name`` column; blank, duplicated or (for training data) unsafe names are a
    :class:`DataError` naming the lines."""
    names = raw["image_name"].astype("string").str.strip()
    if names.isna().any() or (names == "").any():
        raise DataError(
            f"{source}: column 'image_name' is blank at line(s) "
            f"{_lines(np.flatnonzero((names.isna() | (names == '')).to_numpy()))}"
        )
    from .imagefiles import unsafe_image_name

    unsafe = names.map(lambda n: unsafe_image_name(n) is not None).to_numpy(bool)
    if unsafe.any() and require_target:  # training data: refuse; rows to predict: each such row is an error of its own
        first = names[unsafe].iloc[0]
        raise DataError(
            f"{source}: column 'image_name' must hold plain file names (no path separators, '..' or control characters); "
            f"{first!r} {unsafe_image_name(first)} (line(s) {_lines(np.flatnonzero(unsafe))})"
        )
    dup = names.duplicated(keep=False)
    if dup.any():
        shown = ", ".join(sorted(names[dup].unique())[:5])
        raise DataError(
            f"{source}: duplicate image names in column 'image_name': {shown} "
            f"(line(s) {_lines(np.flatnonzero(dup.to_numpy()))})"
        )
    return names


def _ages(values: pd.Series, source: str) -> pd.Series:
    """``age_approx`` as numbers; a value outside :data:`AGE_RANGE` is a :class:`DataError` naming the lines."""
    age = numeric_column(values, "age_approx", source)
    out_of_range = age.notna() & ((age < AGE_RANGE[0]) | (age > AGE_RANGE[1]))
    if out_of_range.any():
        raise DataError(
            f"{source}: column 'age_approx' has value(s) outside {AGE_RANGE[0]:g}–{AGE_RANGE[1]:g} "
            f"such as {age[out_of_range].iloc[0]:g} (line(s) {_lines(np.flatnonzero(out_of_range.to_numpy()))})"
        )
    return age


def _targets(raw: pd.DataFrame, source: str, require_target: bool) -> pd.Series:
    """``target`` as 0/1 (NaN where absent); anything else is a :class:`DataError` for training data, missing else."""
    target = pd.Series(np.nan, index=raw.index)
    if "target" in raw.columns:
        target = numeric_column(raw["target"], "target", source)
        bad = ~target.isin([0.0, 1.0])
        if require_target and bad.any():
            raise DataError(
                f"{source}: column 'target' must be 0 or 1; found {raw['target'][bad].iloc[0]!r} "
                f"(line(s) {_lines(np.flatnonzero(bad.to_numpy()))})"
            )
        target = target.where(~bad)
    return target


def normalise_metadata(
    raw: pd.DataFrame,
    source: str = "<metadata>",
    *,
    require_target: bool = True,
    report: LoadReport | None = None,
) -> pd.DataFrame:
    """Validate an ISIC 2020 metadata table and return it normalised (no image paths yet).

    With ``require_target`` (training/evaluation) the official training columns are required;
    without it (prediction) only ``image_name`` is, and absent columns are treated as missing.
    """
    report = report or LoadReport(source=source)
    required = REQUIRED_TRAIN_COLUMNS if require_target else REQUIRED_PREDICT_COLUMNS
    missing_cols = [c for c in required if c not in raw.columns]
    if missing_cols:
        raise DataError(
            f"{source}: missing required column(s) {', '.join(repr(c) for c in missing_cols)}; "
            f"found: {', '.join(map(str, raw.columns))}"
        )
    if len(raw) == 0:
        raise DataError(f"{source}: no data rows")
    raw = raw.reset_index(drop=True)

    names = _image_names(raw, source, require_target)

    def col(name: str) -> pd.Series:
        return raw[name] if name in raw.columns else pd.Series([pd.NA] * len(raw), dtype="string")

    age = _ages(col("age_approx"), source)
    target = _targets(raw, source, require_target)
    patient = col("patient_id").astype("string").str.strip()
    if require_target and (patient.isna() | (patient == "")).any():
        blank = (patient.isna() | (patient == "")).to_numpy()
        raise DataError(
            f"{source}: column 'patient_id' is blank at line(s) {_lines(np.flatnonzero(blank))}; "
            "patient-grouped splits need it"
        )
    # Without a patient id every image is its own patient (prediction only).
    patient = patient.where(patient.notna() & (patient != ""), "nopatient_" + names)

    diagnosis = col("diagnosis").astype("string").str.strip().str.lower().fillna(MISSING)

    df = pd.DataFrame(
        {
            "image_name": names.astype(str),
            "patient_id": patient.astype(str),
            "sex": _categorical(col("sex"), SEX_CATEGORIES, "sex", report),
            "age": age,
            "site": _categorical(
                col("anatom_site_general_challenge"),
                SITE_CATEGORIES,
                "anatom_site_general_challenge",
                report,
                SITE_ALIASES,
            ),
            "diagnosis": diagnosis.astype(str),
            "target": target if not require_target else target.astype(int),
            "tfrecord": numeric_column(col("tfrecord"), "tfrecord", source).astype("Int64"),
            "width": numeric_column(col("width"), "width", source),
            "height": numeric_column(col("height"), "height", source),
            # which data set a row comes from (external training data: melanoma_utils.data.sources)
            "source": col("source").astype("string").str.strip().fillna("isic2020").replace("", "isic2020").astype(str),
        }
    )
    if OPTIONAL_COLUMNS[0] in raw.columns:  # which copy of a data set the image came from (data.confounds)
        df[OPTIONAL_COLUMNS[0]] = col(OPTIONAL_COLUMNS[0]).astype("string").str.strip().replace("", pd.NA).astype(object)
    return df


def _kept(df: pd.DataFrame) -> list[str]:
    return [*NORMALISED_COLUMNS, *(c for c in OPTIONAL_COLUMNS if c in df)]


@dataclass
class Dataset:
    """A normalised table plus what loading it reported."""

    frame: pd.DataFrame
    report: LoadReport

    @property
    def summary(self) -> dict[str, int]:
        """Counts a user checks first."""
        df = self.frame
        return {
            "rows": len(df),
            "patients": int(df["patient_id"].nunique()),
            "malignant": int((df["target"] == 1).sum()),
            "duplicates_dropped": self.report.n_duplicates_dropped,
            "missing_images": len(self.report.missing_images),
        }


def _read_metadata(
    metadata: str | os.PathLike[str],
    duplicates: str | os.PathLike[str] | None,
    require_target: bool,
) -> tuple[pd.DataFrame, LoadReport, Path]:
    """Read and normalise a metadata CSV (or a dataset folder's, or a TFRecord shard folder's), applying the
    duplicate list if given."""
    from .shards import MANIFEST, is_shard_folder, read_shard_table

    metadata = Path(metadata)
    if metadata.is_dir() and is_shard_folder(metadata):
        csv = metadata / MANIFEST
        raw = read_shard_table(metadata).astype(str).replace({"nan": None, "None": None})
    else:
        csv = find_metadata_csv(metadata) if metadata.is_dir() else metadata
        raw = read_csv(csv)
    report = LoadReport(source=str(csv))
    df = normalise_metadata(raw, str(csv), require_target=require_target, report=report)
    if duplicates is not None:
        df, n = drop_duplicates(df, read_duplicates(duplicates))
        report.n_duplicates_dropped = n
        if n:
            report.notes.append(f"{csv}: dropped {n} image(s) listed as duplicates in {duplicates}")
    return df, report, csv


def load_dataset(
    metadata: str | os.PathLike[str],
    images: str | os.PathLike[str] | None = None,
    *,
    duplicates: str | os.PathLike[str] | None = None,
    require_target: bool = True,
    on_missing: Literal["error", "drop", "keep"] = "error",
) -> Dataset:
    """Load a metadata CSV (or a dataset folder) and its images into a :class:`Dataset`.

    ``metadata`` is a CSV or a folder holding one (see :func:`find_metadata_csv`). ``images`` defaults
    to ``train/`` beside a resized-layout ``train.csv``. Missing image files raise (``"error"``), are
    dropped with a note (``"drop"``) or kept and listed in the report (``"keep"``, used by ``check``).
    """
    df, report, csv = _read_metadata(metadata, duplicates, require_target)
    images_dir = Path(images) if images is not None else default_images_dir(csv)
    if images_dir is None:
        raise DataError(
            f"{csv}: no image folder given and no 'train/' folder beside it; pass the folder of "
            "<image_name>.jpg files"
        )
    if not images_dir.is_dir():
        raise DataError(f"{images_dir}: image folder not found")
    df = attach_image_paths(df, images_dir)
    missing = missing_image_names(df)
    report.missing_images = missing
    if missing:
        msg = (
            f"{images_dir}: {len(missing)} of {len(df)} image file(s) listed in {csv} are missing, "
            f"e.g. {', '.join(missing[:5])} (looked for {'/'.join(IMAGE_EXTENSIONS)}{other_formats(images_dir, missing)})"
        )
        if on_missing == "error":
            raise DataError(msg + "; fix the folder or pass on_missing='drop'")
        if on_missing == "drop":
            df = df[~df["image_name"].isin(set(missing))].reset_index(drop=True)
            report.notes.append(msg + "; those rows were dropped")
    return Dataset(frame=df[_kept(df)], report=report)


def load_for_prediction(
    metadata: str | os.PathLike[str],
    images: str | os.PathLike[str] | None = None,
    *,
    needs_images: bool = True,
) -> Dataset:
    """Load rows to score (``target`` optional) for ``predict``; missing images stay in the table.

    Unlike :func:`load_dataset`, a missing or unreadable image is not dropped here: the prediction table
    keeps every input row and reports the error on its own row. ``images`` defaults to ``train/`` beside
    the CSV; a model without an image input (``needs_images=False``) does not need the folder at all.
    """
    df, report, csv = _read_metadata(metadata, None, require_target=False)
    images_dir = Path(images) if images is not None else default_images_dir(csv)
    if needs_images:
        if images_dir is None:
            raise DataError(f"{csv}: no image folder given and no 'train/' folder beside it; pass --images "
                            "(the folder of <image_name>.jpg files)")
        if not images_dir.is_dir():
            raise DataError(f"{images_dir}: image folder not found; pass --images")
    if images_dir is not None and images_dir.is_dir():
        df = attach_image_paths(df, images_dir)
    else:
        df["image_path"] = ""
    return Dataset(frame=df[_kept(df)], report=report)


def load_metadata(
    metadata: str | os.PathLike[str],
    *,
    duplicates: str | os.PathLike[str] | None = None,
    require_target: bool = True,
) -> Dataset:
    """Load a metadata CSV alone (no images): for metadata EDA and metadata-only models."""
    df, report, _ = _read_metadata(metadata, duplicates, require_target)
    df["image_path"] = ""
    return Dataset(frame=df[_kept(df)], report=report)
