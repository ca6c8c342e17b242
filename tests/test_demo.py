from __future__ import annotations

from pathlib import Path

import numpy as np
import pandas as pd

from melanoma_utils.data.demo import draw_lesion, make_demo_dataset, make_metadata
from melanoma_utils.data.isic import load_dataset


def test_demo_metadata_follows_marginals_and_is_deterministic() -> None:
    a, b = make_metadata(800, seed=3), make_metadata(800, seed=3)
    pd.testing.assert_frame_equal(a, b)
    assert 0.12 < a["target"].mean() < 0.25
    assert abs((a["anatom_site_general_challenge"] == "torso").mean() - 0.51) < 0.08
    assert a["image_name"].str.startswith("SYNTH_").all()
    old = a["age_approx"] >= 60
    assert a["target"][old].mean() > a["target"][~old].mean()  # planted age link


def test_demo_images_differ_by_class() -> None:
    benign = np.stack([draw_lesion(False, 64, s) for s in range(10)])
    malignant = np.stack([draw_lesion(True, 64, s) for s in range(10)])
    assert benign.dtype == np.uint8 and benign.shape == (10, 64, 64, 3)
    # malignant lesions are larger and darker/more varied: lower mean brightness in the centre
    assert malignant[:, 16:48, 16:48].std() > benign[:, 16:48, 16:48].std()
    assert np.array_equal(draw_lesion(True, 64, 5), draw_lesion(True, 64, 5))


def test_demo_dataset_loads_and_is_labelled(tmp_path: Path) -> None:
    csv = make_demo_dataset(tmp_path / "synthetic-demo", n_images=40, image_size=48, seed=1)
    ds = load_dataset(csv)
    assert ds.summary["rows"] == 40 and ds.summary["missing_images"] == 0
    assert "SYNTHETIC" in (csv.parent / "README.md").read_text()
    assert make_demo_dataset(tmp_path / "synthetic-demo", n_images=5) == csv  # kept, not overwritten
    assert len(pd.read_csv(csv)) == 40
