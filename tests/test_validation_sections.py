"""Notebook 06's sections as package functions: rows scored by a run, the within-copy-a validation with every fold
pooled, the locked part scored once — on tables made here (no model: a stand-in run with the same interface)."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest

from melanoma_utils.evaluation.shortcuts import stratified_auc
from melanoma_utils.reports.validation_sections import (
    copy_a_summary,
    locked_summary,
    score_locked,
    scored,
    validate_within_copy_a,
)
from melanoma_utils.study.locked import lock_test_part


def _meta(n_patients: int = 120, seed: int = 0) -> pd.DataFrame:
    rng = np.random.default_rng(seed)
    rows = []
    for p in range(n_patients):
        for k in range(2):
            copy = "a" if p % 3 else "b"
            target = int(copy == "a" and rng.random() < 0.45)
            rows.append({"image_name": f"I{p}_{k}", "patient_id": f"P{p}", "target": target, "source_copy": copy,
                         "diagnosis": "melanoma" if target else ("nevus" if rng.random() < 0.7 else "unknown"),
                         "sex": "male" if p % 2 else "female", "age": 30 + p % 50, "site": "torso",
                         "width": 6000 if p % 4 == 0 else 1024, "height": 4000 if p % 4 == 0 else 1024})
    return pd.DataFrame(rows)


def _oof(meta: pd.DataFrame, seed: int = 0) -> pd.DataFrame:
    rng = np.random.default_rng(seed)
    prob = np.clip(0.25 * meta["target"] + 0.12 * (meta["width"] > 2000) + rng.random(len(meta)) * 0.6, 0.01, 0.99)
    return pd.DataFrame({"image_name": meta["image_name"], "fold": meta.index % 3, "variant": "fusion, clinical",
                         "probability": prob, "prevalence": 0.3, "repeat": 0})


class _Run:
    """A stand-in for a Run: probability = raw = a fixed score per image; one image unreadable."""

    threshold, prevalence = 0.5, 0.3

    def __init__(self, scores: dict[str, float], unreadable: str = "") -> None:
        self.scores, self.unreadable = scores, unreadable

    def predict_frame(self, df: pd.DataFrame) -> pd.DataFrame:
        p = df["image_name"].map(self.scores).astype(float)
        err = np.where(df["image_name"] == self.unreadable, "cannot decode", "")
        return pd.DataFrame({"image_name": df["image_name"], "probability": np.where(err == "", p, np.nan),
                             "raw_probability": p, "error": err})


def test_scored_rows_leave_out_and_count_unreadable_images() -> None:
    meta = _meta(10)
    table, bad = scored(_Run(dict(zip(meta["image_name"], np.linspace(0, 1, len(meta)))), "I3_1"), meta)
    assert bad == 1 and len(table) == len(meta) - 1 and "I3_1" not in set(table["image_name"])
    assert table.loc[table["image_name"] == "I9_1", "probability"].item() == pytest.approx(1.0)
    assert {"probability", "raw_probability", "source_copy"} <= set(table.columns)


def test_within_copy_a_pools_every_fold_and_counts_one_camera_at_a_time() -> None:
    meta = _meta()
    oof = _oof(meta)
    v = validate_within_copy_a(oof, meta, "fusion, clinical", stated=0.02, n_boot=100)
    a = meta[meta["source_copy"] == "a"]
    assert v is not None and v.n_folds == 3 and v.report["n"] == len(a) == len(v.table)
    assert v.report["n_malignant"] == int(a["target"].sum()) and v.calibration_prevalence == pytest.approx(0.3)
    assert v.at_prevalence["prevalence"] == pytest.approx(0.02)  # the decision curve at the stated prevalence
    t = v.table
    same = stratified_auc(t["target"].to_numpy(), t["probability"].to_numpy(), (t["width"] > 2000).to_numpy())
    assert v.same_camera["estimate"] == pytest.approx(same) and v.same_camera["pairs"] < v.same_camera["all_pairs"]
    text = copy_a_summary(v)
    ra = v.report["roc_auc"]
    assert f"3 fold(s) pooled**: {len(a):,} images" in text and f"{ra['estimate']:.3f} ({ra['ci_low']:.3f}" in text
    assert f"at prevalence {0.02:.4f}" in text and f"{v.verdict['n_thresholds']} threshold probabilities" in text
    assert validate_within_copy_a(oof, meta.assign(source_copy="b"), "fusion, clinical", None, n_boot=50) is None


def test_the_locked_part_is_scored_once_with_its_endpoints_and_sentence(tmp_path) -> None:
    meta = _meta(200, seed=1)
    locked = lock_test_part(tmp_path / "locked_test.csv", meta, None, seed=0)
    final = _Run(dict(zip(meta["image_name"], _oof(meta, seed=2)["probability"])))
    table, report = score_locked(final, meta, locked, n_boot=100)
    assert report["n"] == len(locked.table) and table.loc[0, "endpoint"].startswith("all") and table.loc[0, "n"] == len(locked.table)
    text = locked_summary(locked, "fusion, clinical", 999, table, report, final.threshold)
    r = table.iloc[0]
    assert "retrained on 999 other images" in text and f"ROC AUC **{r.roc_auc:.3f}** ({r.ci_low:.3f}" in text
    assert "(0.5000): sensitivity" in text
