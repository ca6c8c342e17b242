from __future__ import annotations

from pathlib import Path

import pandas as pd
import pytest

from melanoma_utils import cli
from melanoma_utils.data.imagefiles import check_image_file, drop_unreadable
from melanoma_utils.data.isic import (
    DataError,
    DataWarning,
    attach_image_paths,
    drop_duplicates,
    load_dataset,
    load_metadata,
    normalise_metadata,
)


def test_loads_resized_layout(tiny_csv: Path) -> None:
    ds = load_dataset(tiny_csv)
    df = ds.frame
    assert len(df) == 24 and df["patient_id"].nunique() == 12 and int(df["target"].sum()) == 8
    assert df["tfrecord"].tolist()[:6] == [0, 1, 2, 3, 4, 0]
    assert df["width"].iloc[0] == 1024 and df["height"].iloc[1] == 4000
    assert Path(df["image_path"].iloc[0]).is_file()
    assert (df["site"] == "unknown").sum() == 24 // 5  # blank site -> explicit missing category


def test_loads_official_layout(tmp_path: Path, tiny_csv: Path) -> None:
    raw = pd.read_csv(tiny_csv).drop(columns=["tfrecord", "width", "height"])
    raw.insert(2, "lesion_id", "IL_1")
    official = tmp_path / "ISIC_2020_Training_GroundTruth_v2.csv"
    raw.to_csv(official, index=False)
    ds = load_dataset(tmp_path, tiny_csv.parent / "train")  # a folder: the CSV is found by name
    assert len(ds.frame) == 24
    assert ds.frame["tfrecord"].isna().all() and ds.frame["width"].isna().all()


def test_missing_column_is_named(tmp_path: Path, tiny_csv: Path) -> None:
    bad = tmp_path / "bad.csv"
    pd.read_csv(tiny_csv).drop(columns=["patient_id"]).to_csv(bad, index=False)
    with pytest.raises(DataError, match=r"bad\.csv: missing required column\(s\) 'patient_id'"):
        load_dataset(bad, tiny_csv.parent / "train")


@pytest.mark.parametrize(
    "column, value, message",
    [
        ("target", "2", r"column 'target' must be 0 or 1; found '2' \(line\(s\) 4\)"),
        ("age_approx", "150", r"column 'age_approx' has value\(s\) outside 0–120 such as 150 \(line\(s\) 4\)"),
        ("age_approx", "old", r"column 'age_approx' has non-numeric value\(s\) such as 'old'"),
        ("image_name", "IMG_0000", r"duplicate image names in column 'image_name': IMG_0000 \(line\(s\) 2, 4\)"),
    ],
)
def test_invalid_values_give_one_clear_message(tmp_path: Path, tiny_csv: Path, column, value, message) -> None:
    raw = pd.read_csv(tiny_csv, dtype=str)
    raw.loc[2, column] = value
    with pytest.raises(DataError, match=message):
        normalise_metadata(raw, "x.csv")


def test_unknown_site_maps_to_missing_with_a_message(tiny_csv: Path) -> None:
    raw = pd.read_csv(tiny_csv, dtype=str)
    raw.loc[1, "anatom_site_general_challenge"] = "elbow"
    raw.loc[2, "anatom_site_general_challenge"] = "anterior torso"  # a 2019 spelling: an alias
    with pytest.warns(DataWarning, match=r"column 'anatom_site_general_challenge' has 1 row\(s\) with unknown "
                      r"value\(s\) 'elbow' \(line\(s\) 3\); mapped to 'unknown'"):
        df = normalise_metadata(raw, "x.csv")
    assert df.loc[1, "site"] == "unknown" and df.loc[2, "site"] == "torso"


def test_missing_image_error_counts_and_names(tiny_csv: Path) -> None:
    (tiny_csv.parent / "train" / "IMG_0005.jpg").unlink()
    with pytest.raises(DataError, match=r"1 of 24 image file\(s\) .* are missing, e.g. IMG_0005"):
        load_dataset(tiny_csv)
    dropped = load_dataset(tiny_csv, on_missing="drop")
    assert len(dropped.frame) == 23 and dropped.report.missing_images == ["IMG_0005"]


def test_truncated_jpeg_is_found_and_dropped(tiny_csv: Path) -> None:
    path = tiny_csv.parent / "train" / "IMG_0003.jpg"
    path.write_bytes(path.read_bytes()[: len(path.read_bytes()) // 2])
    assert check_image_file(path) == "truncated JPEG (no end-of-image marker)"
    (tiny_csv.parent / "train" / "IMG_0004.jpg").write_bytes(b"not a jpeg at all")
    assert check_image_file(tiny_csv.parent / "train" / "IMG_0004.jpg") == "not an image file"
    df, bad = drop_unreadable(load_dataset(tiny_csv).frame)
    assert set(bad) == {"IMG_0003", "IMG_0004"} and len(df) == 22


def test_duplicates_drop_one_of_each_pair(tiny_csv: Path) -> None:
    df = load_dataset(tiny_csv).frame
    dup = pd.DataFrame({"image_name_1": ["IMG_0000", "IMG_0002", "X"], "image_name_2": ["IMG_0001", "IMG_0003", "Y"]})
    kept, n = drop_duplicates(df, dup)
    assert n == 2 and "IMG_0000" in set(kept["image_name"]) and "IMG_0001" not in set(kept["image_name"])


def test_prediction_schema_allows_missing_columns() -> None:
    raw = pd.DataFrame({"image_name": ["A", "B"], "sex": ["male", None]})
    df = normalise_metadata(raw, "p.csv", require_target=False)
    assert df["sex"].tolist() == ["male", "unknown"] and df["site"].tolist() == ["unknown", "unknown"]
    assert df["age"].isna().all() and df["patient_id"].tolist() == ["nopatient_A", "nopatient_B"]


def test_check_command_reports_counts_and_problems(tiny_csv: Path, capsys) -> None:
    (tiny_csv.parent / "train" / "IMG_0007.jpg").unlink()
    path = tiny_csv.parent / "train" / "IMG_0008.jpg"
    path.write_bytes(path.read_bytes()[:100])
    rc = cli.main(["check", "--metadata", str(tiny_csv)])
    out = capsys.readouterr().out
    assert rc == 1
    assert "rows:       24" in out and "patients:   12" in out and "malignant:  8 (33.33%)" in out
    assert "missing image files: 1 (e.g. IMG_0007)" in out and "corrupt image files: 1" in out


def test_check_bad_csv_is_one_line_error(tmp_path: Path, tiny_csv: Path, capsys) -> None:
    bad = tmp_path / "bad.csv"
    pd.read_csv(tiny_csv).drop(columns=["target"]).to_csv(bad, index=False)
    assert cli.main(["check", "--metadata", str(bad), "--images", str(tiny_csv.parent / "train")]) == 2
    assert "error: " in capsys.readouterr().err


@pytest.mark.shared_data
def test_real_full_metadata_counts(shared_full_csv: Path, tmp_path: Path, capsys) -> None:
    ds = load_metadata(shared_full_csv)
    assert ds.summary["rows"] == 33126 and ds.summary["malignant"] == 584 and ds.summary["patients"] == 2056
    rc = cli.main(["check", "--metadata", str(shared_full_csv), "--images", str(tmp_path)])
    out = capsys.readouterr().out
    assert rc == 1 and "rows:       33,126" in out and "missing image files: 33,126" in out
    dup = shared_full_csv.parent / "ISIC_2020_Training_Duplicates.csv"
    assert load_metadata(shared_full_csv, duplicates=dup).report.n_duplicates_dropped == 425


@pytest.mark.shared_data
def test_real_subset_check(shared_subset_csv: Path, capsys) -> None:
    rc = cli.main(["check", "--metadata", str(shared_subset_csv), "--no-decode"])
    out = capsys.readouterr().out
    assert rc == 0 and "rows:       2,501" in out and "malignant:  447" in out and "missing image files: 0" in out


def test_sample_per_class(tiny_csv: Path) -> None:
    from melanoma_utils.data.isic import sample_per_class

    df = load_dataset(tiny_csv).frame
    s = sample_per_class(df, 3, seed=1)
    assert s["target"].tolist() == [0, 0, 0, 1, 1, 1]
    assert len(sample_per_class(df, 100)) == 24


def test_image_names_cannot_leave_the_image_folder(tiny_csv: Path, tmp_path: Path, capsys) -> None:
    """Read traversal: a training CSV naming ../outside/secret is refused with its line; predict keeps the row as an
    error of its own and never reads the file outside --images."""
    import shutil

    from melanoma_utils.data.imagefiles import unsafe_image_name

    assert [unsafe_image_name(n) for n in ("ISIC_1", "a.b", "../x", "a/b", "a\\b", "C:x", "x\x00", "..")] == [
        None, None, "contains a path separator", "contains a path separator", "contains a path separator",
        "is a drive path", "contains control characters", "contains '..'"]
    root = tmp_path / "set"
    shutil.copytree(tiny_csv.parent, root)
    (tmp_path / "outside").mkdir()
    shutil.copy(next((root / "train").glob("*.jpg")), tmp_path / "outside" / "secret.jpg")
    meta = pd.read_csv(root / "train.csv")
    meta.loc[3, "image_name"] = "../../outside/secret"
    meta.to_csv(root / "train.csv", index=False)
    with pytest.raises(DataError, match=r"train.csv: column .image_name. must hold plain file names .* \(line\(s\) 5\)"):
        load_dataset(root / "train.csv")
    paths = attach_image_paths(meta, root / "train")["image_path"]
    assert paths[3] == "" and all(str(root / "train") in p for p in paths.drop(3))
    assert check_image_file(paths[3]) == "file not found"


def test_balanced_positions_fill_a_short_class_from_the_other() -> None:
    import numpy as np

    from melanoma_utils.data.splits import balanced_positions

    y = np.array([1] * 76 + [0] * 900)
    picks = balanced_positions(y, 200, seed=0)
    assert len(picks) == 200 == len(set(picks.tolist()))  # 200 distinct rows although only 76 are malignant
    assert y[picks].sum() == 76 and (y[picks[:76]] == 1).all()
    picks = balanced_positions(np.array([1] * 500 + [0] * 500), 200, seed=1)
    assert np.array([1] * 500 + [0] * 500)[picks].sum() == 100  # half and half where both suffice
    few_benign = np.array([1] * 300 + [0] * 30)
    assert few_benign[balanced_positions(few_benign, 200)].sum() == 170  # benign short: malignant fill
    assert len(balanced_positions(np.array([0, 1, 0]), 200)) == 3  # fewer rows than asked: all of them
    assert (balanced_positions(y, 50, seed=3) == balanced_positions(y, 50, seed=3)).all()
    import pytest

    with pytest.raises(ValueError, match="row 2 holds nan"):
        balanced_positions(np.array([1.0, 0.0, np.nan, 0.0]), 4)
