"""Endpoints and paired contrasts: within copy a, Holm's adjustment, per-fold differences from the predictions."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest

from melanoma_utils.evaluation.metrics import holm_adjust
from melanoma_utils.study.contrasts import available_subsets, paired_contrasts, primary_subset, subset_mask
from melanoma_utils.study.experiments import summarise_cv


def test_holm_adjust_matches_the_step_down_rule() -> None:
    p = [0.01, 0.04, 0.03, np.nan, 0.5]
    adj = holm_adjust(p)
    # sorted 0.01, 0.03, 0.04, 0.5 (m = 4): 0.04, 0.09, 0.09 (monotone), 0.5
    assert adj[0] == pytest.approx(0.04) and adj[2] == pytest.approx(0.09) and adj[1] == pytest.approx(0.09)
    assert adj[4] == pytest.approx(0.5) and np.isnan(adj[3])
    assert (holm_adjust([0.6, 0.7]) == 1.0).all()


def _oof(rng: np.random.Generator, copy_cue: float) -> pd.DataFrame:
    """Two variants on 400 images: copy b all benign. Variant "copy" ranks by copy only, "lesion" by the label with
    noise. Overall, "copy" looks good; within copy a it is chance."""
    n = 400
    copy = np.where(np.arange(n) < 200, "a", "b")
    y = np.where(copy == "a", np.arange(n) % 2, 0)
    diagnosis = np.where(y == 1, "melanoma", np.where(np.arange(n) % 4 == 0, "nevus", "unknown"))
    lesion = y + rng.normal(0, 0.8, n)
    cue = copy_cue * (copy == "a") + rng.normal(0, 0.3, n)
    frames = []
    for name, score in (("lesion", lesion), ("copy", cue)):
        frames.append(pd.DataFrame({"image_name": [f"i{k}" for k in range(n)], "patient_id": [f"p{k // 2}" for k in range(n)],
                                    "target": y, "diagnosis": diagnosis, "fold": (np.arange(n) // 2) % 4, "variant": name,
                                    "probability": 1 / (1 + np.exp(-score)), "threshold": 0.5, "repeat": 0,
                                    "source_copy": copy}))
    return pd.concat(frames, ignore_index=True)


def test_within_copy_endpoint_removes_a_copy_shortcut() -> None:
    oof = _oof(np.random.default_rng(0), copy_cue=3.0)
    assert primary_subset(oof) == "within_copy_a" and len(available_subsets(oof)) == 4
    paired = paired_contrasts(None, oof, [("copy", "lesion")], n_boot=200).set_index("subset")
    assert paired.loc["all", "delta_auc"] > paired.loc["within_copy_a", "delta_auc"] + 0.2
    assert paired.loc["within_copy_a", "ci_high"] < 0  # within one copy the copy cue is worse than the lesion
    assert paired.loc["within_copy_a", "n"] == 200 and paired.loc["within_copy_a", "n_positive"] == 100
    assert paired.loc["within_copy_a", "folds"] == 4
    fold = oof[(oof["fold"] == 0) & (oof["variant"] == "copy")]
    a = fold[fold["source_copy"] == "a"]
    lesion = oof[(oof["fold"] == 0) & (oof["variant"] == "lesion")].set_index("image_name").loc[a["image_name"]]
    from melanoma_utils.evaluation.metrics import roc_auc

    first = float(paired.loc["within_copy_a", "fold_deltas"].split(";")[0])
    assert first == pytest.approx(roc_auc(a["target"], a["probability"]) - roc_auc(lesion["target"], lesion["probability"]),
                                  abs=5e-4)
    summary = summarise_cv(oof.groupby("variant").size().rename("n").reset_index().assign(
        repeat=0, fold=0, roc_auc=0.5, pr_auc=0.5, auc_melanoma_vs_nevus=0.5), oof, n_boot=50)
    assert summary.loc["copy", "pooled_oof_roc_auc"] > summary.loc["copy", "pooled_within_copy_a_auc"] + 0.2


def test_without_copies_the_within_endpoints_are_left_out() -> None:
    oof = _oof(np.random.default_rng(1), copy_cue=1.0).drop(columns="source_copy")
    assert subset_mask(oof, "within_copy_a") is None and primary_subset(oof) == "all"
    paired = paired_contrasts(None, oof, [("copy", "lesion")], n_boot=50)
    assert set(paired["subset"]) == {"all", "melanoma_vs_nevus"}
    assert paired["p_holm"].notna().all()
    with pytest.raises(ValueError, match="unknown endpoint"):
        subset_mask(oof, "within copy a")


def test_held_out_calibration_reads_the_slope_of_out_of_fold_probabilities() -> None:
    """Out-of-fold probabilities whose logits are 3 times too large: slope near 1/3 with an interval around it;
    calibrated ones: slope near 1 and intercept near 0."""
    from melanoma_utils.evaluation.calibration import sigmoid
    from melanoma_utils.study.experiments import held_out_calibration

    rng = np.random.default_rng(3)
    z = rng.normal(-1.0, 1.5, 4000)
    y = (rng.random(4000) < sigmoid(z)).astype(int)
    frame = pd.DataFrame({"target": y, "patient_id": np.arange(4000) // 2})
    extreme = held_out_calibration(frame.assign(probability=sigmoid(3 * z)), n_boot=100)
    assert extreme["calibration_slope"] == pytest.approx(1 / 3, abs=0.05)
    assert extreme["calibration_slope_ci_low"] < extreme["calibration_slope"] < extreme["calibration_slope_ci_high"]
    right = held_out_calibration(frame.assign(probability=sigmoid(z)), n_boot=100)
    assert right["calibration_slope"] == pytest.approx(1.0, abs=0.1)
    assert abs(right["calibration_intercept"]) < 0.1 and right["brier"] < extreme["brier"]
