"""Groupings that are not the lesion — which copy of a data set an image came from, the camera (original image
size), the data set — how the label is spread over them, and training weights under which a grouping carries no
label information.

* :func:`attach_groups` — merge a ``image_name, <column>`` table (e.g. the shared subset's ``copies.csv``) into a
  data set, validated at the boundary (file, column and lines named);
* :func:`group_labels` — the grouping of each row: a metadata column, ``camera`` (``W×H`` of the original image)
  or ``source`` (the data set); missing values are a group of their own;
* :func:`label_by_group` — rows, patients, malignant share per group, with a warning where a group is (nearly) one
  class: a model that can tell the groups apart gets that share of its AUC without looking at a lesion;
* :func:`source_balanced_weights` — per-row weights under which every group has the same weighted malignant share
  and keeps its total weight; a group of one class cannot be balanced and gets weight 0.
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from .isic import DataError, _lines, read_csv

#: The copy/source column the shared ISIC subset's ``copies.csv`` holds (used by default when the data has it).
SOURCE_COPY = "source_copy"
#: Derived groupings :func:`group_labels` understands besides metadata columns.
DERIVED_GROUPS: tuple[str, ...] = ("camera", "source")
#: How training weights a grouping (:func:`source_balanced_weights`): ``none``; ``balanced`` (equal malignant share
#: per group, one-class groups weight 0); ``drop_single_class`` (one-class groups left out, others unweighted);
#: ``sources`` (every group the same total weight, its malignant share kept: no data set drowns another).
WEIGHTING_MODES: tuple[str, ...] = ("none", "balanced", "drop_single_class", "sources")
#: What a run may ask for: a mode, or ``auto`` — the one notebook 03's selection chose for the data at hand
#: (:func:`melanoma_utils.runs.source_weights.resolve_weighting`).
SOURCE_WEIGHTINGS: tuple[str, ...] = ("auto", *WEIGHTING_MODES)
#: A group whose minority class is below this share is "(nearly) all one class" in :func:`label_by_group`.
NEARLY_ONE_CLASS = 0.02
#: Smaller groups are not warned about one by one (a single image is always "one class"); camera sizes with fewer
#: images are pooled as ``other`` by :func:`group_labels`.
MIN_GROUP_ROWS = 20
MISSING_GROUP = "(missing)"
#: The file beside a metadata CSV that says which copy each image came from (the shared ISIC subset has one).
COPIES_CSV = "copies.csv"


def attach_groups(df: pd.DataFrame, path: str | os.PathLike[str], column: str = SOURCE_COPY) -> pd.DataFrame:
    """``df`` with ``column`` read from the CSV at ``path`` (``image_name, <column>``), joined on ``image_name``.

    Errors name the file: a missing column, blank or duplicated image names (with their lines). Images of ``df`` the
    file does not list get the value ``NaN`` (a group of its own in :func:`group_labels`)."""
    table = read_csv(path)
    missing = [c for c in ("image_name", column) if c not in table.columns]
    if missing:
        raise DataError(f"{path}: missing column(s) {', '.join(map(repr, missing))}; found {', '.join(map(str, table.columns))}")
    names = table["image_name"].astype("string").str.strip()
    blank = (names.isna() | (names == "")).to_numpy()
    if blank.any():
        raise DataError(f"{path}: column 'image_name' is blank at line(s) {_lines(np.flatnonzero(blank))}")
    dup = names.duplicated(keep=False).to_numpy()
    if dup.any():
        raise DataError(f"{path}: image name(s) listed twice, e.g. {names[dup].iloc[0]!r} (line(s) {_lines(np.flatnonzero(dup))})")
    values = table[column].astype("string").str.strip().replace("", pd.NA)
    mapping = pd.Series(values.to_numpy(), index=names.to_numpy())
    out = df.copy()
    out[column] = out["image_name"].map(mapping).astype(object)
    return out


def with_source_copies(df: pd.DataFrame, metadata_csv: str | os.PathLike[str], path: str | os.PathLike[str] | None = None
                       ) -> tuple[pd.DataFrame, str | None]:
    """``df`` with its ``source_copy`` column: from ``path`` if given, else from a :data:`COPIES_CSV` beside
    ``metadata_csv`` when the data has no such column yet. Returns ``(frame, note)``; ``note`` says where the column
    came from (``None``: nothing attached)."""
    if path is None:
        if SOURCE_COPY in df:
            return df, None
        beside = Path(metadata_csv)
        beside = (beside if beside.is_dir() else beside.parent) / COPIES_CSV
        if not beside.is_file():
            return df, None
        path = beside
    out = attach_groups(df, path, SOURCE_COPY)
    n = int(out[SOURCE_COPY].notna().sum())
    return out, f"{path}: source copy of {n:,} of {len(out):,} image(s) (column {SOURCE_COPY})"


def size_labels(width: Any, height: Any, missing: str = MISSING_GROUP) -> pd.Series:
    """The original image size ``W×H`` of each row (a proxy for camera and clinic); ``missing`` without width/height."""
    w = pd.to_numeric(pd.Series(np.asarray(width, dtype=object)), errors="coerce").to_numpy(float)
    h = pd.to_numeric(pd.Series(np.asarray(height, dtype=object)), errors="coerce").to_numpy(float)
    known = np.isfinite(w) & np.isfinite(h)
    out = pd.Series(missing, index=range(len(w)), dtype=object)
    out[known] = [f"{int(a)}x{int(b)}" for a, b in zip(w[known], h[known])]
    return out


def group_labels(df: pd.DataFrame, column: str) -> pd.Series:
    """The group of each row of ``df`` (strings; missing values are ``"(missing)"``).

    ``column``: a column of ``df``; ``"camera"`` = the original image size ``W×H`` (``width``/``height``);
    ``"source"`` = the data set (``isic2020``, ``ham10000``, ...); camera sizes of fewer than :data:`MIN_GROUP_ROWS`
    images are pooled as ``other``. External rows that lack the column take their data
    set's name, so a copy column of ISIC rows and external data combine into one grouping."""
    if column == "camera":
        nan = np.full(len(df), np.nan)
        out = size_labels(df["width"] if "width" in df else nan, df["height"] if "height" in df else nan).set_axis(df.index)
        known = out != MISSING_GROUP
        counts = out.value_counts()
        rare = out.isin(counts.index[counts < MIN_GROUP_ROWS]) & known
        return out.where(~rare, f"other (sizes with < {MIN_GROUP_ROWS} images)")
    if column not in df:
        known = ", ".join([*DERIVED_GROUPS, *[c for c in df.columns if c not in ("image_path",)]])
        raise DataError(f"no grouping column {column!r} in the data; use one of: {known}")
    values = df[column].astype("string").str.strip().replace("", pd.NA)
    if column != "source" and "source" in df:
        isic = df["source"].astype(str).eq("isic2020")
        values = values.where(values.notna() | isic, df["source"].astype("string"))
    return values.fillna(MISSING_GROUP).astype(str)


def label_by_group(target: Any, groups: Any, patients: Any | None = None) -> pd.DataFrame:
    """How the label is spread over groups: ``group, rows, patients, malignant, benign, malignant_share, warning``
    (largest group first). ``warning`` is set where a group of at least :data:`MIN_GROUP_ROWS` rows is all one class
    or its minority class is below :data:`NEARLY_ONE_CLASS` of its rows."""
    frame = pd.DataFrame({"y": np.asarray(target, int), "g": np.asarray(groups, object)})
    frame["p"] = np.asarray(patients, object) if patients is not None else np.arange(len(frame))
    rows = []
    for g, part in frame.groupby("g", sort=False):
        n, pos = len(part), int(part["y"].sum())
        share = pos / n
        warning = ""
        if n < MIN_GROUP_ROWS:
            pass
        elif pos in (0, n):
            warning = f"all {'malignant' if pos else 'benign'}: the group alone predicts the label"
        elif min(share, 1 - share) < NEARLY_ONE_CLASS:
            warning = f"nearly all {'benign' if share < 0.5 else 'malignant'} ({100 * min(share, 1 - share):.1f}% the other class)"
        rows.append({"group": str(g), "rows": n, "patients": int(part["p"].nunique()), "malignant": pos,
                     "benign": n - pos, "malignant_share": share, "warning": warning})
    out = pd.DataFrame(rows, columns=["group", "rows", "patients", "malignant", "benign", "malignant_share", "warning"])
    return out.sort_values("rows", ascending=False, kind="stable").reset_index(drop=True)


def source_balanced_weights(target: Any, groups: Any, mode: str = "balanced") -> np.ndarray:
    """Per-row training weights under which the grouping carries no label information.

    ``balanced``: in every group holding both classes, malignant rows get ``n_g·r / n_g1`` and benign rows
    ``n_g·(1 − r) / n_g0``, where ``r`` is the malignant share of all such groups pooled: each group keeps its total
    weight ``n_g`` and its weighted malignant share becomes ``r``. A group of one class cannot be balanced (any weight
    leaves it all one class) and gets weight 0. ``drop_single_class``: one-class groups weight 0, others 1.
    ``sources``: every row of group ``g`` gets ``n / (G · n_g)`` (``G`` groups, ``n`` rows): each group carries the same
    total weight ``n / G`` and keeps its own malignant share, so a large data set does not drown a small one; a group
    of one class keeps its rows. ``none``: all 1. Class weights (1/n per class) are applied on top by the trainer."""
    if mode not in WEIGHTING_MODES:
        raise ValueError(f"source weighting must be one of {', '.join(WEIGHTING_MODES)}; got {mode!r}")
    y = np.asarray(target, int)
    g = pd.Series(np.asarray(groups, object)).astype(str).to_numpy()
    w = np.ones(len(y), np.float64)
    if mode == "none":
        return w
    names, inverse = np.unique(g, return_inverse=True)
    n_g = np.bincount(inverse, minlength=len(names)).astype(float)
    if mode == "sources":
        return len(y) / (len(names) * n_g[inverse])
    pos_g = np.bincount(inverse, weights=y, minlength=len(names))
    mixed = (pos_g > 0) & (pos_g < n_g)
    w[~mixed[inverse]] = 0.0
    if mode == "drop_single_class" or not mixed.any():
        return w
    r = pos_g[mixed].sum() / n_g[mixed].sum()
    pos_w = n_g * r / np.maximum(pos_g, 1)
    neg_w = n_g * (1 - r) / np.maximum(n_g - pos_g, 1)
    rows = mixed[inverse]
    w[rows] = np.where(y[rows] == 1, pos_w[inverse][rows], neg_w[inverse][rows])
    return w


#: ITA bands (lower edge in degrees, name), lightest first (Del Bino & Bernerd 2013; Chardon et al. 1991).
ITA_BANDS: tuple[tuple[float, str], ...] = (
    (55.0, "very light (>55°)"),
    (41.0, "light (41–55°)"),
    (28.0, "intermediate (28–41°)"),
    (10.0, "tan (10–28°)"),
    (-30.0, "brown (−30–10°)"),
    (-np.inf, "dark (<−30°)"),
)


def ita_band_middles(top: float = 90.0, bottom_span: float = 30.0) -> dict[str, float]:
    """Each ITA band's short name (``"very light"``) and the middle of its range (:data:`ITA_BANDS`): where a figure
    writes the band's name. The open ends are closed at ``top`` (ITA's maximum, 90°) and ``bottom_span`` below the
    lowest edge."""
    edges = [top] + [e for e, _ in ITA_BANDS[:-1]]
    edges.append(edges[-1] - bottom_span)
    return {name.split(" (")[0]: (hi + lo) / 2 for (hi, lo), (_, name) in zip(zip(edges, edges[1:]), ITA_BANDS)}


def ita_band(ita: Any) -> pd.Series:
    """The ITA band of each value (:data:`ITA_BANDS`), an ordered categorical (lightest first); NaN stays NaN."""
    values = pd.Series(np.asarray(ita, float))
    names = [name for _, name in ITA_BANDS]
    out = pd.Series(pd.NA, index=values.index, dtype=object)
    for edge, name in reversed(ITA_BANDS):  # darkest first: each lighter band overwrites above its edge
        out[values > edge] = name
    out[values.isna()] = pd.NA
    return pd.Series(pd.Categorical(out, categories=names, ordered=True), index=values.index)
