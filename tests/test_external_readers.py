"""External training data's readers (HAM10000, ISIC 2019 layouts): the mapping onto the ISIC 2020 table, errors that
name the file, column and line, images seen before left out, the shared HAM10000 part's counts."""

from __future__ import annotations

from pathlib import Path

import cv2
import numpy as np
import pandas as pd
import pytest

from melanoma_utils import config
from melanoma_utils.data.isic import DataError
from melanoma_utils.data.sources import (
    HAM10000,
    ISIC2019,
    combine_external,
    detect_source,
    load_external,
    normalise_isic2019,
    source_counts,
)

SHARED_HAM = config.SHARED_DATA_DIR / "ham10000-256"


def write_ham(root: Path, rows: list[dict] | None = None) -> Path:
    """A HAM10000-schema folder: 8 images of 5 lesions, every site spelling that needs mapping."""
    rows = rows or [
        dict(lesion_id="HAM_1", image_id="ISIC_1", dx="mel", dx_type="histo", age=60.0, sex="male", localization="back"),
        dict(lesion_id="HAM_1", image_id="ISIC_2", dx="mel", dx_type="histo", age=60.0, sex="male", localization="back"),
        dict(lesion_id="HAM_2", image_id="ISIC_3", dx="nv", dx_type="follow_up", age=35.0, sex="female", localization="scalp"),
        dict(lesion_id="HAM_3", image_id="ISIC_4", dx="bkl", dx_type="consensus", age=None, sex="unknown", localization="acral"),
        dict(lesion_id="HAM_4", image_id="ISIC_5", dx="nv", dx_type="histo", age=20.0, sex="female", localization="hand"),
        dict(lesion_id="HAM_4", image_id="ISIC_6", dx="nv", dx_type="histo", age=20.0, sex="female", localization="hand"),
        dict(lesion_id="HAM_5", image_id="ISIC_7", dx="bcc", dx_type="histo", age=70.0, sex="male", localization="genital"),
        dict(lesion_id="HAM_5", image_id="ISIC_8", dx="bcc", dx_type="histo", age=70.0, sex="male", localization="unknown"),
    ]
    root.mkdir(parents=True, exist_ok=True)
    pd.DataFrame(rows).to_csv(root / "HAM10000_metadata.csv", index=False)
    _write_images(root / "images", [r["image_id"] for r in rows])
    return root


ISIC2019_META = pd.DataFrame({
    "image": ["ISIC_0000000", "ISIC_0000001", "ISIC_0000002_downsampled", "ISIC_0000003"],
    "age_approx": ["55", "30", "", "85"],
    "anatom_site_general": ["anterior torso", "posterior torso", "head/neck", ""],
    "lesion_id": ["BCN_0001", "BCN_0001", "", "HAM_0009"],
    "sex": ["male", "female", "", "male"],
})
ISIC2019_TRUTH = pd.DataFrame({
    "image": ["ISIC_0000000", "ISIC_0000001", "ISIC_0000002_downsampled", "ISIC_0000003"],
    "MEL": [1.0, 0.0, 0.0, 0.0], "NV": [0.0, 1.0, 0.0, 0.0], "BCC": [0.0, 0.0, 0.0, 0.0], "AK": [0.0, 0.0, 0.0, 0.0],
    "BKL": [0.0, 0.0, 1.0, 0.0], "DF": [0.0, 0.0, 0.0, 0.0], "VASC": [0.0, 0.0, 0.0, 0.0],
    "SCC": [0.0, 0.0, 0.0, 1.0], "UNK": [0.0, 0.0, 0.0, 0.0],
})


def write_isic2019(root: Path, meta: pd.DataFrame = ISIC2019_META, truth: pd.DataFrame = ISIC2019_TRUTH) -> Path:
    root.mkdir(parents=True, exist_ok=True)
    meta.to_csv(root / "ISIC_2019_Training_Metadata.csv", index=False)
    truth.to_csv(root / "ISIC_2019_Training_GroundTruth.csv", index=False)
    _write_images(root / "ISIC_2019_Training_Input", meta["image"])
    return root


def _write_images(folder: Path, names, seed: int = 0, size: int = 24) -> None:
    folder.mkdir(parents=True, exist_ok=True)
    rng = np.random.default_rng(seed)
    for name in names:
        cv2.imwrite(str(folder / f"{name}.jpg"), rng.integers(0, 255, (size, size, 3), dtype=np.uint8))


def test_ham10000_is_mapped_onto_the_isic2020_table(tmp_path: Path) -> None:
    df = load_external(write_ham(tmp_path / "ham")).frame.set_index("image_name")
    assert detect_source(tmp_path / "ham") == HAM10000
    assert df["target"].to_dict() == {"ISIC_1": 1, "ISIC_2": 1, "ISIC_3": 0, "ISIC_4": 0, "ISIC_5": 0, "ISIC_6": 0,
                                      "ISIC_7": 0, "ISIC_8": 0}  # melanoma only: bcc is not the target
    assert df.loc[["ISIC_1", "ISIC_3", "ISIC_4", "ISIC_7"], "diagnosis"].tolist() == [
        "melanoma", "nevus", "benign keratosis", "basal cell carcinoma"]
    assert df["site"].tolist() == ["torso", "torso", "head/neck", "palms/soles", "upper extremity", "upper extremity",
                                   "oral/genital", "unknown"]
    assert df.loc["ISIC_4", "sex"] == "unknown" and np.isnan(df.loc["ISIC_4", "age"])
    # the lesion is the grouping unit, prefixed by its source
    assert df.loc["ISIC_1", "patient_id"] == df.loc["ISIC_2", "patient_id"] == "ham10000:HAM_1"
    assert df["patient_id"].nunique() == 5 and set(df["source"]) == {HAM10000}
    assert (df["width"] == 600).all() and (df["height"] == 450).all()
    assert all(Path(p).is_file() for p in df["image_path"])


def test_ham10000_errors_name_file_column_and_line(tmp_path: Path) -> None:
    root = write_ham(tmp_path / "ham")
    csv = root / "HAM10000_metadata.csv"
    meta = pd.read_csv(csv)
    meta.loc[2, "dx"] = "melanoma?"
    meta.to_csv(csv, index=False)
    with pytest.raises(DataError, match=r"HAM10000_metadata.csv: column 'dx' has unknown value.*'melanoma\?'.*line\(s\) 4"):
        load_external(root)
    meta.loc[2, "dx"] = "nv"
    meta.loc[5, "lesion_id"] = ""
    meta.to_csv(csv, index=False)
    with pytest.raises(DataError, match=r"column 'lesion_id' is blank at line\(s\) 7"):
        load_external(root)
    meta.loc[5, "lesion_id"] = "HAM_4"
    meta.loc[0, "image_id"] = "../outside/secret"
    meta.to_csv(csv, index=False)
    with pytest.raises(DataError, match=r"column 'image_id' must hold plain file names.*line\(s\) 2"):
        load_external(root)
    with pytest.raises(DataError, match="no external data set recognised"):
        detect_source(tmp_path)


def test_isic2019_reader_joins_the_one_hot_ground_truth(tmp_path: Path) -> None:
    root = write_isic2019(tmp_path / "isic2019")
    assert detect_source(root) == ISIC2019
    df = load_external(root).frame.set_index("image_name")
    assert df["diagnosis"].tolist() == ["melanoma", "nevus", "benign keratosis", "squamous cell carcinoma"]
    assert df["target"].tolist() == [1, 0, 0, 0]
    assert df["site"].tolist() == ["torso", "torso", "head/neck", "unknown"]  # anterior/posterior torso -> torso
    assert df["age"].iloc[:2].tolist() == [55.0, 30.0] and np.isnan(df["age"].iloc[2])
    groups = df["patient_id"].tolist()
    assert groups[0] == groups[1] == "isic2019:BCN_0001"  # one lesion, two images: one group
    assert groups[2] == "isic2019:image_ISIC_0000002_downsampled"  # no lesion id: the image is its own group
    assert set(df["source"]) == {ISIC2019} and df["width"].isna().all()


def test_isic2019_reader_rejects_bad_ground_truth_naming_the_line(tmp_path: Path) -> None:
    truth = ISIC2019_TRUTH.copy()
    truth.loc[2, "NV"] = 1.0  # two diagnoses for one image
    with pytest.raises(DataError, match=r"GroundTruth.csv: columns MEL, NV.*exactly one 1.*line\(s\) 4"):
        normalise_isic2019(ISIC2019_META, truth, "ISIC_2019_Training_Metadata.csv", "ISIC_2019_Training_GroundTruth.csv")
    with pytest.raises(DataError, match=r"Metadata.csv: 1 image\(s\) have no row in .*GroundTruth.csv, e.g. ISIC_0000003 "
                                        r"\(line\(s\) 5\)"):
        normalise_isic2019(ISIC2019_META, ISIC2019_TRUTH.iloc[:3], "ISIC_2019_Training_Metadata.csv",
                           "ISIC_2019_Training_GroundTruth.csv")
    meta = ISIC2019_META.copy()
    meta.loc[1, "age_approx"] = "old"
    with pytest.raises(DataError, match=r"column 'age_approx' has non-numeric value.*'old'.*line\(s\) 3"):
        normalise_isic2019(meta, ISIC2019_TRUTH)


def test_combine_external_leaves_out_images_seen_before(tmp_path: Path) -> None:
    ham = load_external(write_ham(tmp_path / "ham"))
    main = pd.DataFrame({"image_name": ["ISIC_3", "X"]})
    again = load_external(write_ham(tmp_path / "ham2"))  # the same images in a second copy (HAM10000 ⊂ ISIC 2019)
    table, notes = combine_external(main, [ham, again])
    assert sorted(table["image_name"]) == [f"ISIC_{i}" for i in (1, 2, 4, 5, 6, 7, 8)]
    assert len(notes) == 2 and "1 image(s)" in notes[0] and "8 image(s)" in notes[1]
    counts = source_counts(table)
    assert counts == {"ham10000": {"rows": 7, "melanoma": 2, "nevus": 2, "groups": 4}}  # HAM_2 (ISIC_3) left out


def test_cli_check_reads_an_external_folder(tmp_path: Path, capsys) -> None:
    from melanoma_utils.cli.app import main

    assert main(["check", "--metadata", str(write_ham(tmp_path / "ham"))]) == 0
    out = capsys.readouterr().out
    assert "ham10000; groups are lesions" in out and "rows:       8" in out and "patients:   5" in out


@pytest.mark.skipif(not (SHARED_HAM / "HAM10000_metadata.csv").is_file(), reason="shared HAM10000 part absent")
def test_shared_ham10000_part_loads_with_its_documented_counts() -> None:
    df = load_external(SHARED_HAM).frame
    assert len(df) == 6659 and df["patient_id"].nunique() == 4980
    assert int(df["target"].sum()) == 742 and int((df["diagnosis"] == "nevus").sum()) == 4461
    assert df["site"].isin(["torso", "head/neck", "upper extremity", "lower extremity", "palms/soles", "oral/genital",
                            "unknown"]).all()
