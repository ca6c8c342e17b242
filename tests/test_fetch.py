from __future__ import annotations

from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from melanoma_utils.data import load_dataset
from melanoma_utils.fetch import resize_into_layout
from melanoma_utils.images import square_resize


def test_square_resize_crops_centre() -> None:
    img = np.zeros((40, 80, 3), np.uint8)
    img[:, 20:60] = 255  # the central square is white
    out = square_resize(img, 16)
    assert out.shape == (16, 16, 3) and out.min() == 255


def test_resize_into_layout_records_original_size(tiny_csv: Path, tmp_path: Path) -> None:
    raw = pd.read_csv(tiny_csv).drop(columns=["width", "height", "tfrecord"])
    meta = tmp_path / "ISIC_2020_Training_GroundTruth_v2.csv"
    raw.to_csv(meta, index=False)
    dups = tmp_path / "dups.csv"
    pd.DataFrame({"image_name_1": ["IMG_0000"], "image_name_2": ["IMG_0001"]}).to_csv(dups, index=False)
    csv = resize_into_layout(meta, None, tmp_path / "out", size=16, duplicates_csv=dups, benign=5,
                             images_dir=tiny_csv.parent / "train")
    ds = load_dataset(csv)
    df = ds.frame
    assert int(df["target"].sum()) == 8 and (df["target"] == 0).sum() == 5  # all malignant + 5 benign
    assert "IMG_0001" not in set(df["image_name"])
    assert (df["width"] == 40).all() and (df["height"] == 32).all()  # original sizes, not 16
    import cv2

    assert cv2.imread(df["image_path"].iloc[0]).shape == (16, 16, 3)


@pytest.mark.shared_data
def test_resize_shared_subset_sample(shared_subset_csv: Path, tmp_path: Path) -> None:
    raw = pd.read_csv(shared_subset_csv).head(30)
    meta = tmp_path / "train.csv"
    raw.to_csv(meta, index=False)
    csv = resize_into_layout(meta, None, tmp_path / "out", size=64, images_dir=shared_subset_csv.parent / "train")
    df = load_dataset(csv).frame
    assert len(df) == 30 and df["width"].notna().sum() == raw["width"].notna().sum()
