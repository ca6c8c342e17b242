"""Protocol (a) of the backbone comparison: cross-validated rows, their paired contrasts, names and calibrators."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from melanoma_utils.study.backbone_study import (
    display_name,
    frozen_backbone_contrasts,
    frozen_backbone_table,
    frozen_backbone_variants,
    frozen_variant_name,
)
from melanoma_utils.study.experiments import run_folder_name


def _oof(variant: str, rng: np.random.Generator, repeats: int = 2, n: int = 120) -> pd.DataFrame:
    """Out-of-fold rows of one variant: 3 folds, fold 0's threshold high, the others low."""
    y = np.tile([1, 0, 0], n // 3)
    parts = []
    for r in range(repeats):
        p = np.clip(0.3 * y + rng.uniform(0, 0.7, n), 0, 1)
        fold = np.arange(n) % 3
        parts.append(pd.DataFrame({
            "image_name": [f"img{i}" for i in range(n)], "patient_id": [f"p{i // 2}" for i in range(n)],
            "target": y, "diagnosis": np.where(y == 1, "melanoma", "nevus"), "fold": fold, "variant": variant,
            "probability": p, "threshold": np.where(fold == 0, 0.99, 0.01), "repeat": r,
            "source_copy": np.where(np.arange(n) % 4 == 0, "b", "a")}))
    return pd.concat(parts, ignore_index=True)


def _config(run_dir: Path, method: str | None) -> None:
    run_dir.mkdir(parents=True)
    (run_dir / "config.json").write_text(json.dumps({"calibration": {"method": method} if method else None}))


def test_frozen_table_scores_each_image_at_its_folds_threshold_with_real_intervals(tmp_path: Path) -> None:
    name = frozen_variant_name("efficientnetlite0", "fusion")
    oof = _oof(name, np.random.default_rng(0))
    for k, method in enumerate(["platt", "isotonic", None]):
        _config(tmp_path / run_folder_name(name) / f"fold{k}", method)
    table = frozen_backbone_table(oof, tmp_path, ["efficientnetlite0"], models=("fusion",), n_boot=200)
    row = table.iloc[0]
    r0 = oof[oof["repeat"] == 0]
    # fold 0 (threshold 0.99) predicts almost nothing positive, folds 1 and 2 (0.01) everything
    pred = r0["probability"] >= r0["threshold"]
    assert row["sensitivity"] == pytest.approx(pred[r0["target"] == 1].mean())
    assert row["sensitivity"] < 0.8
    assert row["roc_auc_ci_low"] < row["roc_auc"] < row["roc_auc_ci_high"]
    assert row["within_copy_a_ci_low"] < row["within_copy_a_auc"] < row["within_copy_a_ci_high"]
    assert row["repeats"] == 2 and row["image_size"] == 224 and row["evaluation"].startswith("3-fold")
    assert row["calibrator"] == "platt ×1, isotonic ×1, not calibrated ×1"


def test_frozen_variants_and_contrasts_name_backbones_at_their_native_size() -> None:
    variants = frozen_backbone_variants(["efficientnetlite0", "efficientnetlite2"])
    assert set(variants) == {"image only, Lite0 224 px", "fusion, clinical, Lite0 224 px",
                             "image only, Lite2 260 px", "fusion, clinical, Lite2 260 px"}
    assert variants["fusion, clinical, Lite2 260 px"]["features"] == "clinical"
    assert all(v["image_size"] is None and v["backbone_weights"] == "imagenet" for v in variants.values())
    contrasts = frozen_backbone_contrasts(["efficientnetlite0", "efficientnetlite2"])
    assert ("fusion, clinical, Lite2 260 px", "fusion, clinical, Lite0 224 px") in contrasts
    assert ("fusion, clinical, Lite0 224 px", "image only, Lite0 224 px") in contrasts
    assert len(contrasts) == 4
    with pytest.raises(ValueError, match="vgg16"):
        frozen_backbone_variants(["vgg16"])
    assert display_name("vgg16@none") == "VGG-16" and display_name("mystery") == "mystery"
