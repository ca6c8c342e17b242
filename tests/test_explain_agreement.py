"""Permutation importance against mean |SHAP|: ranks, Spearman, and the disagreements in words."""
from __future__ import annotations

import numpy as np
import pandas as pd
import pytest

from melanoma_utils.reports.explain_agreement import disagreements, rank_agreement


def test_ranks_and_spearman_by_hand() -> None:
    perm = pd.DataFrame({"importance_mean": [0.30, 0.012, 0.009, 0.008, 0.001]},
                        index=["image", "sex", "site", "age", "width"])
    shap = pd.DataFrame({"mean_abs": [0.01, 0.02, 0.03, 0.05]}, index=["sex", "site", "age", "width"])
    table, rho = rank_agreement(perm, shap)
    assert list(table["group"]) == ["sex", "site", "age", "width"]  # the image (held fixed by SHAP) left out
    assert list(table["permutation_rank"]) == [1, 2, 3, 4] and list(table["shap_rank"]) == [4, 3, 2, 1]
    assert rho == pytest.approx(-1.0)  # exactly reversed
    words = disagreements(table)  # site and age move by one place only: not listed
    assert words == ["sex: 4th by SHAP, 1st by permutation", "width: 1st by SHAP, 4th by permutation"]
    assert disagreements(table, min_shift=1)[1] == "site: 3rd by SHAP, 2nd by permutation"
    same, rho_same = rank_agreement(perm, shap.assign(mean_abs=[0.05, 0.03, 0.02, 0.01]))
    assert rho_same == pytest.approx(1.0) and disagreements(same) == []
    two, rho_two = rank_agreement(perm, shap.iloc[:2])
    assert len(two) == 2 and np.isnan(rho_two)
