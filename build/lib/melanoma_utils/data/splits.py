"""Patient-grouped splits: no patient ever appears on both sides of a split."""

from __future__ import annotations

import numpy as np
import pandas as pd
from sklearn.model_selection import StratifiedGroupKFold


class LeakageError(AssertionError):
    """A patient appears on both sides of a split."""


def grouped_folds(df: pd.DataFrame, n_splits: int = 5, seed: int = 0, use_tfrecord: bool = False) -> np.ndarray:
    """A fold id (0..n_splits-1) per row, grouped by ``patient_id`` and stratified by ``target``.

    With ``use_tfrecord`` and a complete ``tfrecord`` column (the resized release's shard index, the
    standard patient-isolated assignment), folds are ``tfrecord % n_splits`` instead.
    """
    if use_tfrecord and "tfrecord" in df and df["tfrecord"].notna().all():
        folds = df["tfrecord"].astype(int).to_numpy() % n_splits
    else:
        n_pos = int(df["target"].sum())
        n_patients = df["patient_id"].nunique()
        if n_splits < 2 or n_patients < n_splits:
            raise ValueError(f"need at least {n_splits} patients for {n_splits} folds; have {n_patients}")
        if n_pos < n_splits:
            raise ValueError(f"need at least {n_splits} positive rows for {n_splits} stratified folds; have {n_pos}")
        sgkf = StratifiedGroupKFold(n_splits=n_splits, shuffle=True, random_state=seed)
        folds = np.empty(len(df), dtype=int)
        for k, (_, test_idx) in enumerate(sgkf.split(np.zeros(len(df)), df["target"], df["patient_id"])):
            folds[test_idx] = k
    assert_grouped(df["patient_id"].to_numpy(), folds)
    return folds


def holdout_split(
    df: pd.DataFrame, test_fraction: float = 0.2, seed: int = 0
) -> tuple[np.ndarray, np.ndarray]:
    """Row positions ``(train, test)`` of a patient-grouped, target-stratified hold-out split: the test part holds
    ``test_fraction`` of the malignant images and ``test_fraction`` of all images, each to within one patient's images,
    so both parts keep the data's prevalence.

    Patients with a malignant image are shuffled (``seed``) and taken into the test part while that brings its
    malignant count closer to ``test_fraction`` of all malignant images; then the other patients, shuffled, while that
    brings its image count closer to ``test_fraction`` of all images. Each group of patients with two or more keeps at
    least one on each side."""
    if not 0 < test_fraction < 1:
        raise ValueError(f"test_fraction must be in (0, 1); got {test_fraction}")
    rng = np.random.default_rng(seed)
    per_patient = df.groupby("patient_id", sort=True)["target"].agg(["size", "sum"])
    positive = per_patient[per_patient["sum"] > 0]
    negative = per_patient[per_patient["sum"] == 0]

    def take(stratum: pd.DataFrame, column: str, goal: float) -> list:
        order = stratum.index.to_numpy()[rng.permutation(len(stratum))]
        counts = stratum.loc[order, column].to_numpy()
        chosen, taken = [], 0
        for patient, n in zip(order, counts):
            if abs(taken + n - goal) < abs(taken - goal) and len(chosen) < len(order) - 1:
                chosen.append(patient)
                taken += n
        if not chosen and len(order) >= 2 and goal > 0:
            chosen.append(order[int(np.argmin(counts))])
        return chosen

    test_patients = take(positive, "sum", test_fraction * positive["sum"].sum())
    images_taken = int(per_patient.loc[test_patients, "size"].sum())
    test_patients += take(negative, "size", test_fraction * len(df) - images_taken)
    is_test = df["patient_id"].isin(set(test_patients)).to_numpy()
    train, test = np.flatnonzero(~is_test), np.flatnonzero(is_test)
    assert_disjoint_patients(df.iloc[train], df.iloc[test])
    return train, test


def assert_grouped(patients: np.ndarray, folds: np.ndarray) -> None:
    """Raise :class:`LeakageError` if any patient has rows in more than one fold."""
    per_patient = pd.Series(folds).groupby(pd.Series(patients)).nunique()
    leaked = per_patient[per_patient > 1]
    if len(leaked):
        raise LeakageError(f"{len(leaked)} patient(s) span several folds, e.g. {list(leaked.index[:3])}")


def assert_disjoint_patients(a: pd.DataFrame, b: pd.DataFrame) -> None:
    """Raise :class:`LeakageError` if the two tables share a patient."""
    shared = set(a["patient_id"]) & set(b["patient_id"])
    if shared:
        raise LeakageError(f"{len(shared)} patient(s) on both sides, e.g. {sorted(shared)[:3]}")


def sample_per_class(df: pd.DataFrame, n: int, seed: int = 0) -> pd.DataFrame:
    """Up to ``n`` random rows of each target class (benign first), for figure grids and samples."""
    parts = [g.sample(n=min(n, len(g)), random_state=seed) for _, g in df.groupby("target", sort=True)]
    return pd.concat(parts) if parts else df.iloc[:0]


def balanced_positions(target: np.ndarray | pd.Series, n: int, seed: int = 0) -> np.ndarray:
    """Positions of ``n`` rows (all rows when there are fewer), half of each class where the data have them; a class
    with fewer than its half gives all it has and the other class fills the rest, so the total is still ``n`` (a SHAP
    sample of 200 lesions from a fold with 76 melanomas: 76 malignant + 124 benign). Malignant positions first, each
    class in random order."""
    raw = pd.to_numeric(pd.Series(np.asarray(target)), errors="coerce")
    if not raw.isin([0, 1]).all():
        bad = raw[~raw.isin([0, 1])]
        raise ValueError(f"target must be 0 or 1 on every row; row {bad.index[0]} holds {np.asarray(target)[bad.index[0]]}")
    y = raw.to_numpy(int)
    pos, neg = np.flatnonzero(y == 1), np.flatnonzero(y == 0)
    n = min(int(n), len(y))
    n_pos = min(len(pos), max(n // 2, n - len(neg)))
    rng = np.random.default_rng(seed)
    return np.concatenate([rng.choice(pos, n_pos, replace=False), rng.choice(neg, n - n_pos, replace=False)])
