"""The generated blocks of the final checks, from small made-up report tables."""
from __future__ import annotations

from pathlib import Path

import numpy as np
import pandas as pd

from melanoma_utils.reports.doc_validation import (
    calibrator_choice,
    decision_within_copy_a,
    importance_agreement,
    locked_test_table,
)


def test_blocks_render_the_tables_and_say_when_absent(tmp_path: Path) -> None:
    for block in (locked_test_table, decision_within_copy_a, calibrator_choice, importance_agreement):
        assert block(tmp_path).startswith("Not rendered yet")
    pd.DataFrame({"endpoint": ["all locked patients", "within copy a"], "n": [375, 130], "n_malignant": [67, 67],
                  "roc_auc": [0.8123, np.nan], "ci_low": [0.77, np.nan], "ci_high": [0.85, np.nan]}).to_csv(
        tmp_path / "table_locked_test.csv", index=False)
    text = locked_test_table(tmp_path)
    assert "| all locked patients | 375 | 67 | 0.812 (0.770–0.850) |" in text and "| within copy a | 130 | 67 | — |" in text
    th = np.round(np.arange(1, 31) / 100, 2)
    nb = pd.DataFrame({"threshold": th, "model": 0.01, "model_ci_low": np.where(th <= 0.05, 0.002, -0.001),
                       "model_ci_high": 0.02, "delta_all": 0.01, "delta_all_ci_low": np.where(th >= 0.03, 0.001, -0.002),
                       "delta_all_ci_high": 0.03})
    nb.to_csv(tmp_path / "table_validate_net_benefit_within_copy_a.csv", index=False)
    text = decision_within_copy_a(tmp_path)
    assert "at 30 of 30 threshold probabilities" in text and "at **3** (3%–5%)" in text  # 3, 4, 5%: both intervals > 0
    assert "| 1% | 0.0100 (0.0020–0.0200) | 0.0100 (-0.0020 to 0.0300) |" in text
    pd.DataFrame({"calibrator": ["none", "platt"], "brier_cv": [0.1, 0.09], "slope": [2.0, 3.0], "slope_ci_low": [1.5, 2.1],
                  "slope_ci_high": [2.5, 3.9], "eligible": [True, False], "chosen": [True, False]}).to_csv(
        tmp_path / "table_validate_calibrator_choice.csv", index=False)
    assert "| platt | 0.0900 | 3.00 (2.10–3.90) | refused |  |" in calibrator_choice(tmp_path)
    pd.DataFrame({"group": ["sex", "width"], "permutation": [0.01, 0.001], "shap": [0.001, 0.01],
                  "permutation_rank": [1, 4], "shap_rank": [4, 1], "rank_difference": [3, -3]}).to_csv(
        tmp_path / "table_importance_agreement.csv", index=False)
    assert "disagree on sex, width" in importance_agreement(tmp_path)


def test_metadata_only_table_from_notebook_01s_csv(tmp_path: Path) -> None:
    from melanoma_utils.reports.doc_validation import metadata_only_table

    assert metadata_only_table(tmp_path).startswith("Not rendered yet: notebook 01")
    pd.DataFrame({"features": ["width + height"], "groups": ["width + height"], "auc_mean": [0.79338], "auc_sd": [0.01556],
                  "auc_pooled_oof": [0.78]}).to_csv(tmp_path / "table_metadata_only_auc.csv", index=False)
    assert "| width + height | 0.793 ± 0.016 |" in metadata_only_table(tmp_path)


def test_headline_states_trains_actual_defaults_and_a_rule_that_disagrees(tmp_path: Path) -> None:
    """The defaults line comes from the code's `auto` (runs.source_weights.AUTO_WEIGHTING), not from whichever
    candidate the selection table calls a winner; where the rule would choose otherwise, the block says so."""
    from melanoma_utils.reports.doc_findings import headline_table

    variants = ["image only", "fusion, clinical", "fusion, clinical, copy-balanced", "fusion, clinical + external data",
                "fusion, clinical + external data, copy-balanced"]
    pd.DataFrame({"variant": variants, "pooled_within_copy_a_auc": 0.8, "pooled_within_copy_a_ci_low": 0.7,
                  "pooled_within_copy_a_ci_high": 0.9}).to_csv(tmp_path / "ablation_summary.csv", index=False)
    pd.DataFrame({"metric": ["accuracy"], "paper (fusion)": [0.945], "always benign, these data": [0.82],
                  "always benign, ISIC 2020": [0.98]}).to_csv(
        tmp_path / "table_paper_vs_reproduction.csv", index=False)
    pd.DataFrame({"candidate": variants[1:], "base": [variants[1], variants[1], variants[3], variants[3]],
                  "verdict": ["base", "wins", "base", "wins"], "delta_within_copy_a": [0, 0.04, 0, 0.006]}).to_csv(
        tmp_path / "table_source_weighting_selection.csv", index=False)
    text = headline_table(tmp_path)
    assert ("`train`'s defaults: without external data, `fusion, clinical, copy-balanced`; with --external, "
            "`fusion, clinical + external data`.") in text
    assert "would choose `fusion, clinical + external data, copy-balanced` with --external; `train` does not use it" in text
    assert "would choose `fusion, clinical, copy-balanced`" not in text  # the rule agrees with `auto` there
