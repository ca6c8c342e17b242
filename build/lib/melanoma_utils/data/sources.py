"""External training data in its own schema, mapped onto the ISIC 2020 table (:data:`data.NORMALISED_COLUMNS`).

Two sources are read, as the strongest SIIM-ISIC 2020 solutions added them to ISIC 2020:

* **HAM10000** (Tschandl et al. 2018; Vienna and Queensland): ``HAM10000_metadata.csv`` (``lesion_id, image_id,
  dx, dx_type, age, sex, localization``) and a folder of ``<image_id>.jpg`` (``images/``, or the official
  ``HAM10000_images_part_1/``, ``_part_2/``);
* **ISIC 2019** (HAM10000 + BCN20000 + MSK): ``ISIC_2019_Training_Metadata.csv`` (``image, age_approx,
  anatom_site_general, lesion_id, sex``) + ``ISIC_2019_Training_GroundTruth.csv`` (one-hot ``MEL, NV, BCC, AK, BKL,
  DF, VASC, SCC, UNK``) and ``ISIC_2019_Training_Input/<image>.jpg``.

Mapping: ``target`` = melanoma; the diagnosis in ISIC 2020's words; sites onto ISIC 2020's six categories;
``patient_id`` = ``"<source>:<lesion_id>"`` (neither source has patient ids: the lesion is the grouping unit, so no
lesion lands on both sides of a split; an ISIC 2019 image without a lesion id is its own group); ``source`` names
the data set; ``width``/``height`` the original size where the source states it (HAM10000: 600 × 450). Errors are
:class:`~melanoma_utils.data.isic.DataError` naming the file, the column and the CSV lines.
"""

from __future__ import annotations

import os
from pathlib import Path

import numpy as np
import pandas as pd

from .isic import (
    AGE_RANGE,
    NORMALISED_COLUMNS,
    SEX_CATEGORIES,
    SITE_ALIASES,
    SITE_CATEGORIES,
    DataError,
    Dataset,
    LoadReport,
    _categorical,
    _lines,
    attach_image_paths,
    missing_image_names,
    numeric_column,
    read_csv,
)

#: The ``source`` of ISIC 2020 rows (the population every reported metric is on).
ISIC2020 = "isic2020"
HAM10000 = "ham10000"
ISIC2019 = "isic2019"
EXTERNAL_SOURCES: tuple[str, ...] = (HAM10000, ISIC2019)

HAM_METADATA = "HAM10000_metadata.csv"
HAM_COLUMNS: tuple[str, ...] = ("lesion_id", "image_id", "dx", "age", "sex", "localization")
#: HAM10000 ``dx`` -> diagnosis in ISIC 2020's vocabulary (melanoma is the target).
HAM_DIAGNOSES: dict[str, str] = {
    "mel": "melanoma",
    "nv": "nevus",
    "bkl": "benign keratosis",
    "bcc": "basal cell carcinoma",
    "akiec": "actinic keratosis",
    "vasc": "vascular lesion",
    "df": "dermatofibroma",
}
#: HAM10000 ``localization`` -> ISIC 2020 site (``unknown`` -> missing).
HAM_SITES: dict[str, str] = {
    "back": "torso", "trunk": "torso", "chest": "torso", "abdomen": "torso",
    "face": "head/neck", "scalp": "head/neck", "ear": "head/neck", "neck": "head/neck",
    "upper extremity": "upper extremity", "hand": "upper extremity",
    "lower extremity": "lower extremity", "foot": "lower extremity",
    "acral": "palms/soles", "genital": "oral/genital",
}
#: HAM10000's images were 600 x 450 before any resizing (the data set's paper).
HAM_ORIGINAL_SIZE: tuple[int, int] = (600, 450)

ISIC2019_METADATA = "ISIC_2019_Training_Metadata.csv"
ISIC2019_GROUND_TRUTH = "ISIC_2019_Training_GroundTruth.csv"
ISIC2019_COLUMNS: tuple[str, ...] = ("image", "age_approx", "anatom_site_general", "lesion_id", "sex")
#: ISIC 2019 ground-truth columns -> diagnosis in ISIC 2020's vocabulary.
ISIC2019_DIAGNOSES: dict[str, str] = {
    "MEL": "melanoma", "NV": "nevus", "BCC": "basal cell carcinoma", "AK": "actinic keratosis",
    "BKL": "benign keratosis", "DF": "dermatofibroma", "VASC": "vascular lesion",
    "SCC": "squamous cell carcinoma", "UNK": "unknown",
}


def detect_source(folder: str | os.PathLike[str]) -> str:
    """Which external schema a folder holds (:data:`HAM10000` or :data:`ISIC2019`); an error says what was expected."""
    folder = Path(folder)
    if not folder.is_dir():
        raise DataError(f"{folder}: external data folder not found")
    if (folder / HAM_METADATA).is_file():
        return HAM10000
    if (folder / ISIC2019_METADATA).is_file() or (folder / ISIC2019_GROUND_TRUTH).is_file():
        return ISIC2019
    raise DataError(f"{folder}: no external data set recognised: expected {HAM_METADATA} (HAM10000) or "
                    f"{ISIC2019_METADATA} + {ISIC2019_GROUND_TRUTH} (ISIC 2019)")


def external_folder(path: str | os.PathLike[str]) -> Path | None:
    """The external data set folder ``path`` is (or whose schema CSV it is), else ``None``."""
    path = Path(path)
    folder = path.parent if path.is_file() and path.name in (HAM_METADATA, ISIC2019_METADATA, ISIC2019_GROUND_TRUTH) else path
    if folder.is_dir() and any((folder / n).is_file() for n in (HAM_METADATA, ISIC2019_METADATA, ISIC2019_GROUND_TRUTH)):
        return folder
    return None


def _require(raw: pd.DataFrame, columns: tuple[str, ...], source: str) -> None:
    missing = [c for c in columns if c not in raw.columns]
    if missing:
        raise DataError(f"{source}: missing required column(s) {', '.join(repr(c) for c in missing)}; "
                        f"found: {', '.join(map(str, raw.columns))}")
    if len(raw) == 0:
        raise DataError(f"{source}: no data rows")


def _names(raw: pd.Series, column: str, source: str) -> pd.Series:
    """Image names: no blanks, no duplicates, plain file stems (an error names the lines)."""
    names = raw.astype("string").str.strip()
    blank = (names.isna() | (names == "")).to_numpy()
    if blank.any():
        raise DataError(f"{source}: column '{column}' is blank at line(s) {_lines(np.flatnonzero(blank))}")
    bad = names.str.contains(r"[/\\]|\.\.|[\x00-\x1f]", regex=True).to_numpy()
    if bad.any():
        raise DataError(f"{source}: column '{column}' must hold plain file names without folders; found "
                        f"{names[bad].iloc[0]!r} (line(s) {_lines(np.flatnonzero(bad))})")
    dup = names.duplicated(keep=False).to_numpy()
    if dup.any():
        raise DataError(f"{source}: duplicate image names in column '{column}': "
                        f"{', '.join(sorted(names[dup].unique())[:5])} (line(s) {_lines(np.flatnonzero(dup))})")
    return names.astype(str)


def _age(raw: pd.Series, column: str, source: str) -> pd.Series:
    age = numeric_column(raw, column, source)
    bad = (age.notna() & ((age < AGE_RANGE[0]) | (age > AGE_RANGE[1]))).to_numpy()
    if bad.any():
        raise DataError(f"{source}: column '{column}' has value(s) outside {AGE_RANGE[0]:g}–{AGE_RANGE[1]:g} such "
                        f"as {age[bad].iloc[0]:g} (line(s) {_lines(np.flatnonzero(bad))})")
    return age


def _groups(lesion: pd.Series, names: pd.Series, prefix: str) -> pd.Series:
    """``"<source>:<lesion_id>"``; a blank lesion id makes the image its own group."""
    lesion = lesion.astype("string").str.strip()
    own = lesion.isna() | (lesion == "")
    return (prefix + ":" + lesion.where(~own, "image_" + names)).astype(str)


def normalise_ham10000(raw: pd.DataFrame, source: str = HAM_METADATA,
                       report: LoadReport | None = None) -> pd.DataFrame:
    """HAM10000's metadata table as an ISIC 2020 table (no image paths yet)."""
    report = report or LoadReport(source=source)
    _require(raw, HAM_COLUMNS, source)
    raw = raw.reset_index(drop=True)
    names = _names(raw["image_id"], "image_id", source)
    dx = raw["dx"].astype("string").str.strip().str.lower()
    unknown = (~dx.isin(list(HAM_DIAGNOSES))).to_numpy()
    if unknown.any():
        raise DataError(f"{source}: column 'dx' has unknown value(s) such as {str(dx[unknown].iloc[0])!r} "
                        f"(line(s) {_lines(np.flatnonzero(unknown))}); known: {', '.join(HAM_DIAGNOSES)}")
    lesion = raw["lesion_id"].astype("string").str.strip()
    blank = (lesion.isna() | (lesion == "")).to_numpy()
    if blank.any():
        raise DataError(f"{source}: column 'lesion_id' is blank at line(s) {_lines(np.flatnonzero(blank))}; "
                        "lesion-grouped splits need it")
    site = raw["localization"].astype("string").str.strip().str.lower().replace(HAM_SITES)
    return pd.DataFrame({
        "image_name": names,
        "patient_id": _groups(lesion, names, HAM10000),
        "sex": _categorical(raw["sex"], SEX_CATEGORIES, "sex", report),
        "age": _age(raw["age"], "age", source),
        "site": _categorical(site, SITE_CATEGORIES, "localization", report),
        "diagnosis": dx.map(HAM_DIAGNOSES).astype(str),
        "target": (dx == "mel").astype(int).to_numpy(),
        "tfrecord": pd.array([pd.NA] * len(raw), dtype="Int64"),
        "width": float(HAM_ORIGINAL_SIZE[0]),
        "height": float(HAM_ORIGINAL_SIZE[1]),
        "source": HAM10000,
    })


def normalise_isic2019(meta: pd.DataFrame, truth: pd.DataFrame, meta_source: str = ISIC2019_METADATA,
                       truth_source: str = ISIC2019_GROUND_TRUTH, report: LoadReport | None = None) -> pd.DataFrame:
    """ISIC 2019's metadata joined with its one-hot ground truth, as an ISIC 2020 table (no image paths yet)."""
    report = report or LoadReport(source=meta_source)
    _require(meta, ISIC2019_COLUMNS, meta_source)
    _require(truth, ("image", *ISIC2019_DIAGNOSES), truth_source)
    meta, truth = meta.reset_index(drop=True), truth.reset_index(drop=True)
    names = _names(meta["image"], "image", meta_source)
    truth_names = _names(truth["image"], "image", truth_source)
    onehot = np.column_stack([numeric_column(truth[c], c, truth_source).to_numpy() for c in ISIC2019_DIAGNOSES])
    valid = np.isin(onehot, (0.0, 1.0)).all(axis=1) & (np.nansum(onehot, axis=1) == 1)
    if not valid.all():
        bad = np.flatnonzero(~valid)
        raise DataError(f"{truth_source}: columns {', '.join(ISIC2019_DIAGNOSES)} must hold exactly one 1 (the rest 0) "
                        f"per row; line(s) {_lines(bad)} do not")
    diagnosis = pd.Series(np.array(list(ISIC2019_DIAGNOSES.values()))[onehot.argmax(axis=1)], index=truth_names.to_numpy())
    absent = ~names.isin(set(truth_names))
    if absent.any():
        raise DataError(f"{meta_source}: {int(absent.sum())} image(s) have no row in {truth_source}, e.g. "
                        f"{', '.join(names[absent].iloc[:5])} (line(s) {_lines(np.flatnonzero(absent.to_numpy()))})")
    extra = ~truth_names.isin(set(names))
    if extra.any():
        report.note(f"{truth_source}: {int(extra.sum())} image(s) have no metadata row in {meta_source} and are left "
                    f"out, e.g. {', '.join(truth_names[extra].iloc[:5])}")
    dx = diagnosis.loc[names.to_numpy()].to_numpy()
    return pd.DataFrame({
        "image_name": names,
        "patient_id": _groups(meta["lesion_id"], names, ISIC2019),
        "sex": _categorical(meta["sex"], SEX_CATEGORIES, "sex", report),
        "age": _age(meta["age_approx"], "age_approx", meta_source),
        "site": _categorical(meta["anatom_site_general"], SITE_CATEGORIES, "anatom_site_general", report, SITE_ALIASES),
        "diagnosis": dx.astype(str),
        "target": (dx == "melanoma").astype(int),
        "tfrecord": pd.array([pd.NA] * len(meta), dtype="Int64"),
        # the ORIGINAL size where `make data` recorded it (the official CSV has none)
        "width": numeric_column(meta["width"], "width", meta_source) if "width" in meta else np.nan,
        "height": numeric_column(meta["height"], "height", meta_source) if "height" in meta else np.nan,
        "source": ISIC2019,
    })


def _images_dir(folder: Path, source: str) -> Path:
    """The image folder of an external data set (``images/`` or the official names), made one folder if split."""
    candidates = (["images", "ISIC_2019_Training_Input"] if source == ISIC2019 else
                  ["images", "HAM10000_images", "HAM10000_images_part_1"])
    for name in candidates:
        if (folder / name).is_dir():
            return folder / name
    raise DataError(f"{folder}: no image folder found (expected one of {', '.join(c + '/' for c in candidates)})")


def load_external(folder: str | os.PathLike[str], on_missing: str = "error") -> Dataset:
    """Load an external data set folder (HAM10000 or ISIC 2019, see :func:`detect_source`) with its images.

    Images of HAM10000's official two-part layout are found in ``HAM10000_images_part_2/`` too. Missing image files
    raise (``"error"``), are dropped with a note (``"drop"``) or kept and listed in the report (``"keep"``).
    """
    folder = Path(folder)
    source = detect_source(folder)
    if source == HAM10000:
        csv = folder / HAM_METADATA
        report = LoadReport(source=str(csv))
        df = normalise_ham10000(read_csv(csv), str(csv), report)
    else:
        meta_csv, truth_csv = folder / ISIC2019_METADATA, folder / ISIC2019_GROUND_TRUTH
        for path in (meta_csv, truth_csv):
            if not path.is_file():
                raise DataError(f"{path}: ISIC 2019 needs both {ISIC2019_METADATA} and {ISIC2019_GROUND_TRUTH}")
        report = LoadReport(source=str(meta_csv))
        df = normalise_isic2019(read_csv(meta_csv), read_csv(truth_csv), str(meta_csv), str(truth_csv), report)
    images = _images_dir(folder, source)
    df = attach_image_paths(df, images)
    part2 = folder / "HAM10000_images_part_2"
    if source == HAM10000 and part2.is_dir():
        other = attach_image_paths(df, part2)["image_path"]
        df["image_path"] = np.where([os.path.isfile(p) for p in df["image_path"]], df["image_path"], other)
    missing = missing_image_names(df)
    report.missing_images = missing
    if missing:
        msg = f"{images}: {len(missing)} of {len(df)} image file(s) listed in {report.source} are missing, e.g. {', '.join(missing[:5])}"
        if on_missing == "error":
            raise DataError(msg + "; fix the folder")
        if on_missing == "drop":
            df = df[~df["image_name"].isin(set(missing))].reset_index(drop=True)
            report.notes.append(msg + "; those rows were dropped")
    return Dataset(frame=df[list(NORMALISED_COLUMNS)].reset_index(drop=True), report=report)


def combine_external(main: pd.DataFrame, externals: list[Dataset]) -> tuple[pd.DataFrame, list[str]]:
    """The external tables as one, less images already in ``main`` or in an earlier external set (HAM10000 is part of
    ISIC 2019); returns ``(table, notes)``."""
    seen = set(main["image_name"])
    parts, notes = [], []
    for ds in externals:
        df = ds.frame
        dup = df["image_name"].isin(seen)
        if dup.any():
            notes.append(f"{ds.report.source}: {int(dup.sum())} image(s) already in the training data or an earlier "
                         f"external set were left out (e.g. {', '.join(df['image_name'][dup].iloc[:3])})")
        df = df[~dup]
        seen |= set(df["image_name"])
        parts.append(df)
    table = pd.concat(parts, ignore_index=True) if parts else main.iloc[:0]
    return table, notes


def source_counts(df: pd.DataFrame) -> dict[str, dict[str, int]]:
    """Rows, malignant (melanoma) and nevi per ``source``: what ``config.json`` and the model card record."""
    col = df["source"] if "source" in df else pd.Series(ISIC2020, index=df.index)
    out = {}
    for name, part in df.groupby(col, sort=True):
        out[str(name)] = {"rows": len(part), "melanoma": int(part["target"].sum()),
                          "nevus": int((part["diagnosis"] == "nevus").sum()), "groups": int(part["patient_id"].nunique())}
    return out


def hold_out_external(external: pd.DataFrame, fraction: float, seed: int = 0) -> tuple[pd.DataFrame, pd.DataFrame]:
    """``(training rows, held-out rows)`` of an external table, split by lesion (its ``patient_id`` groups) and
    stratified by melanoma: the held-out lesions test a model on another data set's lesions it never trained on (not necessarily
    another clinic: HAM10000's two clinics also contributed to ISIC 2020).
    ``fraction`` 0 holds out nothing."""
    from .splits import holdout_split

    if not fraction or not len(external):
        return external, external.iloc[:0]
    tr, ho = holdout_split(external, fraction, seed=seed)
    return external.iloc[tr].reset_index(drop=True), external.iloc[ho].reset_index(drop=True)
