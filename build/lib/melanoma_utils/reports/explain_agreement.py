"""Do two importance measures agree? Permutation importance (the drop in ROC AUC when a metadata group is shuffled)
and mean |SHAP| (how far a group moves each lesion's probability) answer different questions; where they rank a
group differently, the report says so instead of quoting one of them."""

from __future__ import annotations

import numpy as np
import pandas as pd


def rank_agreement(permutation: pd.DataFrame, shap_abs: pd.DataFrame, perm_col: str = "importance_mean",
                   shap_col: str = "mean_abs") -> tuple[pd.DataFrame, float]:
    """The groups both tables score (their index: ``age``, ``sex``, ``site``, ``width``…; the image, which SHAP holds
    fixed, left out), each with its value and rank (1 = most important) under both measures and the rank difference
    ``shap_rank − permutation_rank``; sorted by the permutation rank. Returns ``(table, spearman)``: Spearman's rank
    correlation of the two rankings (NaN with fewer than 3 common groups)."""
    common = [g for g in permutation.index if g in shap_abs.index]
    perm = permutation.loc[common, perm_col].astype(float)
    shap = shap_abs.loc[common, shap_col].astype(float)
    out = pd.DataFrame({"group": common, "permutation": perm.to_numpy(), "shap": shap.to_numpy(),
                        "permutation_rank": perm.rank(ascending=False, method="min").astype(int).to_numpy(),
                        "shap_rank": shap.rank(ascending=False, method="min").astype(int).to_numpy()})
    out["rank_difference"] = out["shap_rank"] - out["permutation_rank"]
    out = out.sort_values(["permutation_rank", "group"]).reset_index(drop=True)
    if len(out) < 3:
        return out, float("nan")
    a = perm.rank().to_numpy()
    b = shap.rank().to_numpy()
    rho = float(np.corrcoef(a, b)[0, 1]) if a.std() and b.std() else float("nan")
    return out, rho


def disagreements(table: pd.DataFrame, min_shift: int = 2) -> list[str]:
    """The groups whose two ranks differ by at least ``min_shift`` places, in words (``width: 1st by SHAP, 5th by
    permutation``)."""
    def nth(k: int) -> str:
        return f"{k}{'th' if 10 <= k % 100 <= 20 else {1: 'st', 2: 'nd', 3: 'rd'}.get(k % 10, 'th')}"

    return [f"{r.group}: {nth(r.shap_rank)} by SHAP, {nth(r.permutation_rank)} by permutation"
            for r in table.itertuples() if abs(r.rank_difference) >= min_shift]
