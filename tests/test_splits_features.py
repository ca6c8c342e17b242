from __future__ import annotations

from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from melanoma_utils.data.isic import load_dataset, load_metadata
from melanoma_utils.data.splits import LeakageError, assert_grouped, grouped_folds, holdout_split
from melanoma_utils.models.features import MetadataEncoder


def _table(n_patients: int = 40, seed: int = 0) -> pd.DataFrame:
    rng = np.random.default_rng(seed)
    sizes = rng.integers(1, 6, n_patients)
    pid = np.repeat([f"P{i}" for i in range(n_patients)], sizes)
    return pd.DataFrame({"patient_id": pid, "target": (rng.random(len(pid)) < 0.2).astype(int)})


@pytest.mark.parametrize("n_splits, seed", [(2, 0), (5, 1), (5, 2), (10, 3)])
def test_grouped_folds_never_split_a_patient(n_splits: int, seed: int) -> None:
    df = _table(seed=seed)
    folds = grouped_folds(df, n_splits, seed=seed)
    assert set(folds) == set(range(n_splits))
    assert (df.assign(f=folds).groupby("patient_id")["f"].nunique() == 1).all()
    assert all(df["target"][folds == k].sum() > 0 for k in range(n_splits))  # stratified


def test_holdout_is_patient_disjoint_and_deterministic() -> None:
    df = _table()
    tr, te = holdout_split(df, 0.2, seed=4)
    assert not set(df["patient_id"].iloc[tr]) & set(df["patient_id"].iloc[te])
    assert len(tr) + len(te) == len(df) and 0.1 < len(te) / len(df) < 0.35
    tr2, te2 = holdout_split(df, 0.2, seed=4)
    assert (te == te2).all()


def test_tfrecord_folds_and_leak_detection(tiny_csv: Path) -> None:
    df = load_dataset(tiny_csv).frame
    df["tfrecord"] = (pd.factorize(df["patient_id"])[0] * 7) % 15  # tfrecord ids 0..14, as in the resized release
    folds = grouped_folds(df, 3, use_tfrecord=True)
    assert folds[:6].tolist() == [0, 0, 1, 1, 2, 2]  # tfrecords 0, 0, 7, 7, 14, 14 -> 0, 0, 1, 1, 2, 2 (mod 3)
    assert set(folds) == {0, 1, 2}
    assert (df.assign(f=folds).groupby("patient_id")["f"].nunique() == 1).all()
    with pytest.raises(LeakageError, match="span several folds"):
        assert_grouped(np.array(["a", "a", "b"]), np.array([0, 1, 1]))


def test_encoder_statistics_come_from_the_rows_it_was_fit_on(tiny_csv: Path) -> None:
    df = load_dataset(tiny_csv).frame
    train, test = df.iloc[:12], df.iloc[12:].assign(age=lambda d: d["age"] + 40)  # test patients 40 years older
    enc = MetadataEncoder("clinical").fit(train)
    mu, sd = train["age"].mean(), train["age"].std(ddof=0)
    expected = (test["age"].to_numpy() - mu) / sd  # by hand: the training rows' mean and sd
    got = enc.transform(test)[:, enc.feature_names.index("age")]
    np.testing.assert_allclose(got, expected, rtol=1e-4)  # refitting on the test rows would centre them at 0
    assert got.mean() > 2


def test_encoder_fits_on_train_and_survives_unseen_values(tiny_csv: Path, tmp_path: Path) -> None:
    df = load_dataset(tiny_csv).frame
    enc = MetadataEncoder("paper").fit(df)
    x = enc.transform(df)
    assert x.shape == (24, enc.n_features) and x.dtype == np.float32
    assert enc.feature_names[:4] == ["age", "age_missing", "sex=female", "sex=male"]
    groups = enc.feature_groups()
    assert list(groups) == ["age", "sex", "site", "width", "height"] and len(groups["site"]) == 7
    assert abs(x[:, 0].mean()) < 1e-5  # standardised on the rows it was fit on
    new = pd.DataFrame({"age": [np.nan], "sex": ["alien"], "site": ["elbow"], "width": [np.nan], "height": [0]})
    row = enc.transform(new)[0]
    names = enc.feature_names
    assert row[names.index("age_missing")] == 1 and row[names.index("sex=unknown")] == 1
    assert row[names.index("site=unknown")] == 1 and row[names.index("width_missing")] == 1
    assert np.isfinite(row).all()
    enc.save(tmp_path / "enc.json")
    assert np.array_equal(MetadataEncoder.load(tmp_path / "enc.json").transform(df), x)


def test_clinical_set_has_no_acquisition_columns(tiny_csv: Path) -> None:
    enc = MetadataEncoder("clinical").fit(load_dataset(tiny_csv).frame)
    assert not any("width" in n or "height" in n for n in enc.feature_names) and enc.n_features == 12
    with pytest.raises(ValueError, match="unknown feature set 'nope'"):
        MetadataEncoder("nope")


@pytest.mark.shared_data
def test_real_metadata_folds_are_patient_disjoint(shared_full_csv: Path) -> None:
    df = load_metadata(shared_full_csv).frame
    folds = grouped_folds(df, 5, seed=0)
    assert (df.assign(f=folds).groupby("patient_id")["f"].nunique() == 1).all()
    rates = [df["target"][folds == k].mean() for k in range(5)]
    assert max(rates) - min(rates) < 0.01


@pytest.mark.parametrize("fraction", [0.1, 0.3, 0.4, 0.6])
def test_holdout_honours_the_fraction_and_keeps_the_prevalence(fraction: float) -> None:
    """The old split kept 1/round(1/f) of the images (0.3 gave 33%, 0.4 gave 50%); an intermediate one balanced
    images but not melanomas (a fold's validation part held 9.5% malignant against 20% in training)."""
    rng = np.random.default_rng(0)
    sizes = rng.integers(1, 12, 300)
    patients = np.repeat([f"p{i}" for i in range(300)], sizes)
    target = np.zeros(len(patients), int)
    starts = np.concatenate([[0], np.cumsum(sizes)[:-1]])
    for i in np.flatnonzero(np.arange(300) % 4 == 0):  # a quarter of the patients: 1-3 melanomas among their images
        target[starts[i]:starts[i] + min(sizes[i], 1 + i % 3)] = 1
    df = pd.DataFrame({"patient_id": patients, "target": target})
    tr, te = holdout_split(df, fraction, seed=1)
    assert not set(df["patient_id"].iloc[tr]) & set(df["patient_id"].iloc[te])
    assert abs(len(te) / len(df) - fraction) <= 12 / len(df)  # one patient (<= 11 images)
    assert abs(df["target"].iloc[te].sum() / df["target"].sum() - fraction) <= 3 / df["target"].sum()  # one patient's melanomas
    prevalence = df["target"].mean()
    assert abs(df["target"].iloc[te].mean() - prevalence) < 0.25 * prevalence
    assert abs(df["target"].iloc[tr].mean() - prevalence) < 0.25 * prevalence
