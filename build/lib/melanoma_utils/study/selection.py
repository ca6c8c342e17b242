"""Choosing training defaults on the endpoints that matter: the source-weighting candidates of the ablation, their
scores on held-out external lesions (another data set), and the selection table that weighs the primary
endpoint (within copy a) against the external hold-out, with overall AUC as a guard.
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from ..evaluation.metrics import MetricError, bootstrap_ci, paired_auc_difference, roc_auc
from ..runs.runfolder import RunLayout

#: Source-weighting modes (:data:`melanoma_utils.data.confounds.SOURCE_WEIGHTINGS`) -> their label in variant names.
WEIGHTING_LABELS: dict[str, str] = {"balanced": "copy-balanced", "drop_single_class": "one-class copies left out"}
#: The bases the source-weighting candidates repeat (name -> TrainConfig overrides of the ablation).
WEIGHTING_BASES: dict[str, dict[str, Any]] = {
    "fusion, clinical": {"kind": "fusion", "features": "clinical"},
    "fusion, clinical + external data": {"kind": "fusion", "features": "clinical", "external": True},
}


def weighting_variant(base: str, mode: str) -> str:
    """The variant name of ``base`` trained with source weighting ``mode``, e.g. ``"fusion, clinical, copy-balanced"``."""
    if mode not in WEIGHTING_LABELS:
        raise ValueError(f"unknown source weighting {mode!r}; known: {', '.join(WEIGHTING_LABELS)}")
    return f"{base}, {WEIGHTING_LABELS[mode]}"


def weighting_variants(modes: list[str], external: bool) -> dict[str, dict[str, Any]]:
    """Candidates: each base of :data:`WEIGHTING_BASES` (the external one only with ``external``) trained with each
    source weighting of ``modes``; the base itself trains with none (the ablation's row)."""
    out = {}
    for base, overrides in WEIGHTING_BASES.items():
        if overrides.get("external") and not external:
            continue
        for mode in modes:
            out[weighting_variant(base, mode)] = {**overrides, "source_weighting": mode}
    return out


def weighting_contrasts(variants: dict[str, dict[str, Any]]) -> list[tuple[str, str]]:
    """Each candidate against its base (what the weighting adds on the same patients)."""
    return [(name, name.rsplit(", ", 1)[0]) for name in variants]


def holdout_scores(runs_dir: str | os.PathLike[str], variants: list[str], folds: list[int], holdout: pd.DataFrame,
                   run_folder: Any) -> pd.DataFrame:
    """Each variant's probability for every held-out row: the mean of its fold runs' probabilities (``runs_dir /
    run_folder(variant) / fold<k>``), as ``image_name, patient_id, target, diagnosis, variant, probability``. Variants
    without every fold run are left out."""
    from ..runs.run import Run

    parts = []
    for v in variants:
        dirs = [Path(runs_dir) / run_folder(v) / f"fold{k}" for k in folds]
        if not all(RunLayout(d).has_model for d in dirs):
            continue
        p = np.mean([Run.load(d).predict_proba(holdout, cached_embeddings=True) for d in dirs], axis=0)
        parts.append(holdout[["image_name", "patient_id", "target", "diagnosis"]].assign(variant=v, probability=p))
    return pd.concat(parts, ignore_index=True) if parts else pd.DataFrame(
        columns=["image_name", "patient_id", "target", "diagnosis", "variant", "probability"])


def holdout_auc(scores: pd.DataFrame, n_boot: int = 1000, seed: int = 0) -> tuple[float, float, float]:
    """ROC AUC of held-out rows (``target, probability, patient_id``) with its lesion-bootstrap 95% CI; NaNs where it
    cannot be estimated (no rows, one class)."""
    try:
        return bootstrap_ci(scores["target"], scores["probability"], scores["patient_id"], roc_auc, n_boot=n_boot, seed=seed)
    except (MetricError, ValueError):
        return float("nan"), float("nan"), float("nan")


def holdout_contrast(scores: pd.DataFrame, a: str, b: str, n_boot: int = 1000, seed: int = 0) -> dict[str, float]:
    """Paired ROC AUC difference a − b on the held-out rows (lesion bootstrap); NaNs where either is missing."""
    pa = scores[scores["variant"] == a].set_index("image_name")
    pb = scores[scores["variant"] == b].set_index("image_name")
    if pa.empty or pb.empty:
        return {"delta": float("nan"), "ci_low": float("nan"), "ci_high": float("nan"), "p_value": float("nan")}
    pb = pb.loc[pa.index]
    try:
        return paired_auc_difference(pa["target"], pa["probability"], pb["probability"], pa["patient_id"],
                                     n_boot=n_boot, seed=seed)
    except MetricError:
        return {"delta": float("nan"), "ci_low": float("nan"), "ci_high": float("nan"), "p_value": float("nan")}


def selection_table(summary: pd.DataFrame, paired: pd.DataFrame, holdout: pd.DataFrame, candidates: list[tuple[str, str]],
                    per_fold: pd.DataFrame, n_boot: int = 1000, seed: int = 0) -> pd.DataFrame:
    """One row per candidate ``(variant, base)`` (the base itself first, as ``(base, base)``): pooled ROC AUC within
    copy a, melanoma vs nevus within copy a, on the held-out external lesions, and overall, with CIs; the paired
    difference against the base on each (with Holm's p within the contrasts given, ``…_p_holm``, and the fold
    assignments it averages over, ``repeats``); and the mean training time per fold run. ``verdict`` applies the rule:
    a candidate *wins* where its within-copy-a difference is above 0 and its held-out external difference's CI
    reaches 0 or above (no measurable loss on another data set)."""
    rows = []
    for variant, base in candidates:
        if variant not in summary.index:
            continue
        s = summary.loc[variant]
        row: dict[str, Any] = {"candidate": variant, "base": base}
        for col, key in (("within_copy_a", "pooled_within_copy_a"), ("mvn_within_copy_a", "pooled_mvn_within_copy_a")):
            row[col], row[f"{col}_ci_low"], row[f"{col}_ci_high"] = s[f"{key}_auc"], s[f"{key}_ci_low"], s[f"{key}_ci_high"]
        row["external_holdout"], row["external_holdout_ci_low"], row["external_holdout_ci_high"] = holdout_auc(
            holdout[holdout["variant"] == variant], n_boot, seed)
        row["overall"], row["overall_ci_low"], row["overall_ci_high"] = s["pooled_oof_roc_auc"], s["pooled_ci_low"], s["pooled_ci_high"]
        for subset, col in (("within_copy_a", "delta_within_copy_a"), ("melanoma_vs_nevus_within_copy_a", "delta_mvn_within_copy_a"),
                            ("all", "delta_overall")):
            hit = paired[(paired["contrast"] == f"{variant} − {base}") & (paired["subset"] == subset)]
            zero = 0.0 if variant == base else float("nan")
            for k in ("delta_auc", "ci_low", "ci_high", "p_holm"):
                row[f"{col}{'' if k == 'delta_auc' else '_' + k}"] = float(hit[k].iloc[0]) if len(hit) else (
                    float("nan") if k == "p_holm" else zero)
            if subset == "within_copy_a":  # fold assignments the paired difference averages over
                reps = per_fold.loc[per_fold["variant"] == variant, "repeat"] if "repeat" in per_fold else pd.Series([0])
                row["repeats"] = int(hit["repeats"].iloc[0]) if len(hit) else max(int(reps.nunique()), 1)
        ext = holdout_contrast(holdout, variant, base, n_boot, seed) if variant != base else {"delta": 0.0, "ci_low": 0.0, "ci_high": 0.0}
        row["delta_external_holdout"], row["delta_external_holdout_ci_low"], row["delta_external_holdout_ci_high"] = (
            ext["delta"], ext["ci_low"], ext["ci_high"])
        secs = per_fold.loc[per_fold["variant"] == variant, "train_seconds"]
        row["train_seconds_per_run"] = float(secs.mean()) if len(secs) and secs.notna().any() else float("nan")
        rows.append(row)
    out = pd.DataFrame(rows)
    if len(out):
        wins = ((out["delta_within_copy_a"] > 0) & (out["delta_external_holdout_ci_high"] >= 0)  # (NaN: not scored, no win)
                & (out["candidate"] != out["base"]))
        out["verdict"] = np.where(out["candidate"] == out["base"], "base",
                                  np.where(wins, "wins", "does not win"))
    return out
