"""A locked test part: patients (and external lesions) set aside before any further selection, read once at the end.

Every choice of the study (variants, presets, calibrators, thresholds, the fine-tuning recipe) is made by
cross-validation on the other patients. The locked part is drawn once — patient-grouped and stratified by melanoma
in the main data set, lesion-grouped and stratified in each external source — and written to a file that is committed
with the reports. Selection code receives data through :func:`without_locked` (which removes it and says how much) and
:func:`check_unlocked` refuses a table that still holds a locked image; the final step of notebook 06 is the one reader
(:func:`locked_rows`).

The file, one row per image: ``image_name, patient_id, source, target`` (``source``: ``main`` or the external data set).
"""

from __future__ import annotations

import os
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pandas as pd

from ..data.confounds import size_labels
from ..data.csvfiles import read_csv, write_csv
from ..data.splits import holdout_split
from ..evaluation.metrics import MetricError, bootstrap_ci, melanoma_vs_nevus_mask
from ..evaluation.shortcuts import stratified_auc_ci

#: The share of patients (and of each external source's lesions) locked away.
LOCKED_SHARE = 0.15
#: The ``source`` of the main data set's rows in the file.
MAIN_SOURCE = "main"
COLUMNS: tuple[str, ...] = ("image_name", "patient_id", "source", "target")
#: The file's name in a report folder (notebook 03's ``locked_test`` parameter); :func:`find_locked` looks for it.
LOCKED_FILE = "locked_test.csv"


@dataclass(frozen=True)
class LockedTest:
    """The locked images (by name) with their patient/lesion and source, as read from the file."""

    table: pd.DataFrame

    @property
    def names(self) -> frozenset[str]:
        """Every locked image name."""
        return frozenset(self.table["image_name"].astype(str))

    def summary(self) -> str:
        """One line per source: images, patients or lesions, melanoma."""
        parts = []
        order = sorted(set(self.table["source"]), key=lambda v: (v != MAIN_SOURCE, v))  # the main data set first
        for source, t in ((v, self.table[self.table["source"] == v]) for v in order):
            parts.append(f"{source}: {len(t):,} images of {t['patient_id'].nunique():,} "
                         f"{'patients' if source == MAIN_SOURCE else 'lesions'}, {int(t['target'].astype(int).sum()):,} "
                         "melanoma")
        return "; ".join(parts)


def draw_locked(main: pd.DataFrame, externals: dict[str, pd.DataFrame] | None = None, share: float = LOCKED_SHARE,
                seed: int = 0) -> pd.DataFrame:
    """The locked part's rows (:data:`COLUMNS`): ``share`` of ``main``'s patients (target-stratified, whole patients:
    :func:`~melanoma_utils.data.splits.holdout_split`) and of each external table's lesions (its ``patient_id``)."""
    parts = []
    for source, frame in {MAIN_SOURCE: main, **dict(externals or {})}.items():
        if not len(frame):
            continue
        _, test = holdout_split(frame, share, seed=seed)
        rows = frame.iloc[test]
        parts.append(pd.DataFrame({"image_name": rows["image_name"].astype(str), "patient_id": rows["patient_id"].astype(str),
                                   "source": source, "target": rows["target"].astype(int)}))
    return pd.concat(parts, ignore_index=True) if parts else pd.DataFrame(columns=list(COLUMNS))


def lock_test_part(path: str | os.PathLike[str], main: pd.DataFrame, externals: dict[str, pd.DataFrame] | None = None,
                   share: float = LOCKED_SHARE, seed: int = 0) -> LockedTest:
    """The locked part at ``path``: read when the file exists (never redrawn: the lock holds across renderings), else
    drawn (:func:`draw_locked`) and written with an exclusive create (two renderings cannot both draw one)."""
    path = Path(path)
    if path.is_file():
        return read_locked(path)
    table = draw_locked(main, externals, share, seed)
    write_csv(table, path, exclusive=True)
    return LockedTest(table)


def read_locked(path: str | os.PathLike[str]) -> LockedTest:
    """The locked part written by :func:`lock_test_part`; ``ValueError`` naming the file and the missing columns."""
    table = read_csv(path)
    missing = [c for c in COLUMNS if c not in table]
    if missing:
        raise ValueError(f"{path}: not a locked test file (missing column(s) {', '.join(missing)}; expected "
                         f"{', '.join(COLUMNS)})")
    return LockedTest(table)


def without_locked(frame: pd.DataFrame, locked: LockedTest | None) -> tuple[pd.DataFrame, int]:
    """``frame`` without the locked images (and without any other image of a locked patient or lesion, which would
    leak it), and how many rows were removed. ``locked`` None: ``frame`` unchanged."""
    if locked is None or not len(frame):
        return frame, 0
    patients = set(locked.table["patient_id"].astype(str))
    drop = frame["image_name"].astype(str).isin(locked.names) | frame["patient_id"].astype(str).isin(patients)
    return frame[~drop.to_numpy()].reset_index(drop=True), int(drop.sum())


def check_unlocked(frame: pd.DataFrame, locked: LockedTest | None, where: str) -> None:
    """Refuse (``ValueError`` naming ``where`` and an example) a table that holds a locked image or patient: the
    guard every selection step's input passes."""
    if locked is None:
        return
    _, n = without_locked(frame, locked)
    if n:
        names, patients = frame["image_name"].astype(str), frame["patient_id"].astype(str)
        example = (names[names.isin(locked.names)].head(1).tolist()
                   or patients[patients.isin(set(locked.table["patient_id"].astype(str)))].head(1).tolist())
        raise ValueError(f"{where}: {n} row(s) belong to the locked test part (e.g. {example[0]}); selection must "
                         "never see them")


def find_locked(out_dir: str | os.PathLike[str], levels: int = 4) -> LockedTest | None:
    """The locked part guarding a study writing into ``out_dir``: :data:`LOCKED_FILE` in ``out_dir`` or the nearest of
    its ``levels`` parent folders (a study's runs live under ``report_dir/runs/<study>/``), else ``None``. Selection
    drivers call it themselves, so no caller can forget to pass the lock."""
    folder = Path(out_dir).resolve()
    for candidate in [folder, *folder.parents][:levels + 1]:
        if (candidate / LOCKED_FILE).is_file():
            return read_locked(candidate / LOCKED_FILE)
    return None


def resolve_lock(out_dir: str | os.PathLike[str], locked: "LockedTest | None | str" = "find") -> LockedTest | None:
    """The lock a selection writing into ``out_dir`` is guarded by: ``"find"``, the report folder's
    (:func:`find_locked`); otherwise ``locked`` as given (``None``: no guard)."""
    if isinstance(locked, str):
        if locked != "find":
            raise ValueError(f"locked must be a LockedTest, None or 'find'; got {locked!r}")
        return find_locked(out_dir)
    return locked


def locked_rows(frame: pd.DataFrame, locked: LockedTest, source: str = MAIN_SOURCE) -> pd.DataFrame:
    """The rows of ``frame`` that are the locked part of ``source`` (the final evaluation's input)."""
    names = set(locked.table.loc[locked.table["source"] == source, "image_name"].astype(str))
    return frame[frame["image_name"].astype(str).isin(names)].reset_index(drop=True)


def locked_endpoints(main: pd.DataFrame, external: pd.DataFrame | None = None, n_boot: int = 1000,
                     seed: int = 0) -> pd.DataFrame:
    """The study's endpoints on the locked part, one row each (``endpoint, n, n_malignant, roc_auc, ci_low, ci_high``,
    patient/lesion-bootstrap 95% CIs): all locked patients; within copy a, melanoma vs nevus within copy a and within
    copy a one camera at a time (where ``main`` has ``source_copy``; cameras from ``width``/``height``); and the
    locked lesions of each external ``source``. Each table holds ``target, probability, patient_id`` (+ metadata).
    An endpoint with too few of a class has NaN with its counts."""
    rows = [_auc_row("all locked patients", main, n_boot, seed)]
    if "source_copy" in main and (main["source_copy"] == "a").any():
        a = main[main["source_copy"] == "a"].reset_index(drop=True)
        rows.append(_auc_row("within copy a", a, n_boot, seed))
        mvn = melanoma_vs_nevus_mask(a["target"], a["diagnosis"]) if "diagnosis" in a else np.zeros(len(a), bool)
        rows.append(_auc_row("melanoma vs nevus within copy a", a[mvn].reset_index(drop=True), n_boot, seed))
        if {"width", "height"} <= set(a):
            row = {"endpoint": "within copy a, one camera at a time", "n": len(a), "n_malignant": int(a["target"].sum())}
            try:
                est = stratified_auc_ci(a["target"], a["probability"], size_labels(a["width"], a["height"], "unknown"),
                                        a["patient_id"], n_boot=n_boot, seed=seed)
                row.update(roc_auc=est["estimate"], ci_low=est["ci_low"], ci_high=est["ci_high"])
            except MetricError:
                pass
            rows.append(row)
    for source, part in (external.groupby("source", sort=True) if external is not None and len(external) else []):
        rows.append(_auc_row(f"locked {source} lesions", part.reset_index(drop=True), n_boot, seed))
    return pd.DataFrame(rows, columns=["endpoint", "n", "n_malignant", "roc_auc", "ci_low", "ci_high"])


def _auc_row(name: str, t: pd.DataFrame, n_boot: int = 1000, seed: int = 0) -> dict[str, object]:
    row: dict[str, object] = {"endpoint": name, "n": len(t), "n_malignant": int(t["target"].sum()) if len(t) else 0}
    try:
        row["roc_auc"], row["ci_low"], row["ci_high"] = bootstrap_ci(t["target"], t["probability"], t["patient_id"],
                                                                     n_boot=n_boot, seed=seed)
    except (MetricError, ValueError):
        pass
    return row
