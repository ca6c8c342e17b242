"""Clinical evaluation on hand-computed cases: operating points / NNB, net benefit and decision curves, subgroups,
patient context, and the edge cases (one class, small groups). Calibration: test_calibration.py."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest

from melanoma_utils.evaluation.calibration import (
    prior_shift,
)
from melanoma_utils.evaluation.clinical import (
    SUBGROUP_AGE_EDGES,
    acquisition_group,
    net_benefit,
    operating_point,
    operating_points,
    predictive_values,
    subgroup_table,
    validation_report,
)
from melanoma_utils.evaluation.metrics import MetricError
from melanoma_utils.models.context import patient_context
from melanoma_utils.models.features import MetadataEncoder
from melanoma_utils.reports.eda import age_band


def test_operating_point_ppv_npv_nnb_by_hand() -> None:
    y, p = [1, 1, 0, 0, 0], [0.9, 0.4, 0.8, 0.3, 0.1]
    op = operating_point(y, p, 0.5)
    assert op["sensitivity"] == 0.5 and op["specificity"] == pytest.approx(2 / 3)
    assert op["ppv"] == 0.5 and op["npv"] == pytest.approx(2 / 3) and op["nnb"] == 2.0 and op["biopsy_rate"] == 0.4
    at = operating_point(y, p, 0.5, prevalence=0.1)  # Bayes: 0.05 / (0.05 + 0.9/3)
    assert at["ppv"] == pytest.approx(0.05 / 0.35) and at["nnb"] == pytest.approx(7.0)
    assert at["npv"] == pytest.approx(0.6 / 0.65)
    none = operating_point(y, p, 1.0)  # nobody biopsied: no PPV, no NNB
    assert np.isnan(none["ppv"]) and np.isnan(none["nnb"]) and none["specificity"] == 1.0
    with pytest.raises(ValueError, match=r"\(0, 1\)"):
        predictive_values(0.9, 0.8, 1.0)


def test_operating_points_fixed_sensitivity_and_validation_threshold_with_cis() -> None:
    rng = np.random.default_rng(3)
    y = np.r_[np.ones(60), np.zeros(240)].astype(int)
    p = np.clip(np.where(y == 1, rng.normal(0.7, 0.15, 300), rng.normal(0.35, 0.15, 300)), 0, 1)
    groups = np.arange(300) // 2
    ops = {o["name"]: o for o in operating_points(y, p, groups, {"validation threshold": 0.5}, prevalence=0.0176,
                                                  n_boot=200)}
    assert set(ops) == {"sensitivity 0.90", "sensitivity 0.95", "validation threshold"}
    s90 = ops["sensitivity 0.90"]
    assert s90["sensitivity"]["estimate"] >= 0.9 and s90["threshold"] == pytest.approx(np.sort(p[y == 1])[::-1][53])
    assert ops["sensitivity 0.95"]["threshold"] <= s90["threshold"]
    for op in ops.values():
        for key in ("sensitivity", "specificity", "ppv", "nnb"):
            assert op[key]["ci_low"] <= op[key]["estimate"] <= op[key]["ci_high"], (op["name"], key)
        # at 1.76% the same sensitivity and specificity give a far lower PPV, so many more biopsies per melanoma
        assert op["at_prevalence"]["nnb"]["estimate"] > 3 * op["nnb"]["estimate"]


def test_net_benefit_by_hand_and_threshold_range() -> None:
    t = net_benefit([1, 0, 0, 0], [0.6, 0.4, 0.2, 0.05], thresholds=[0.3])
    odds = 0.3 / 0.7
    assert t["model"].iloc[0] == pytest.approx(0.25 - 0.25 * odds)
    assert t["biopsy_all"].iloc[0] == pytest.approx(0.25 - 0.75 * odds) and t["biopsy_none"].iloc[0] == 0
    assert t["delta_all"].iloc[0] == pytest.approx(0.5 * odds)  # two benign images not biopsied, each priced at the odds
    w = net_benefit([1, 0, 0, 0], [0.6, 0.4, 0.2, 0.05], thresholds=[0.3], weights=[3, 1, 1, 1])
    assert w["model"].iloc[0] == pytest.approx(0.5 - (1 / 6) * odds)  # the melanoma counts thrice
    with pytest.raises(MetricError, match=r"\(0, 1\)"):
        net_benefit([1, 0], [0.5, 0.5], thresholds=[0.0])


def test_age_bands_and_acquisition_groups_by_hand() -> None:
    bands = age_band([25, 30, 44.9, 75, None], edges=SUBGROUP_AGE_EDGES)
    assert bands.tolist() == ["<30", "30–44", "30–44", "75+", "unknown"]
    assert list(bands.cat.categories) == ["<30", "30–44", "45–59", "60–74", "75+", "unknown"]  # ordered: <30 first
    g = acquisition_group([6000, 6000, 1872, 640, None], [4000, 4000, 1053, 480, None], top=1)
    assert g.tolist() == ["6000x4000", "6000x4000", "other", "other", "unknown"]


def _table(n_per_site: dict[str, tuple[int, int]], seed: int = 0) -> pd.DataFrame:
    rng = np.random.default_rng(seed)
    rows = []
    for site, (n_mal, n_ben) in n_per_site.items():
        for k in range(n_mal + n_ben):
            y = int(k < n_mal)
            rows.append({"patient_id": f"{site}{k // 2}", "target": y, "site": site, "sex": "female" if k % 2 else "male",
                         "age": 40 + k % 30, "diagnosis": "melanoma" if y else ("nevus" if k % 3 else "lentigo NOS"),
                         "probability": float(np.clip(rng.normal(0.65 if y else 0.35, 0.15), 0, 1))})
    return pd.DataFrame(rows)


def test_subgroups_report_aucs_and_say_when_a_group_is_too_small() -> None:
    t = _table({"torso": (30, 90), "palms/soles": (3, 20)})
    sub = subgroup_table(t, n_boot=100).set_index(["factor", "group"])
    small = sub.loc[("site", "palms/soles")]
    assert np.isnan(small["roc_auc"]) and small["note"].startswith("too few for an AUC: 3 malignant, 20 benign")
    torso = sub.loc[("site", "torso")]
    assert torso["ci_low"] <= torso["roc_auc"] <= torso["ci_high"] and torso["note"] == ""
    assert torso["n"] == 120 and torso["n_malignant"] == 30
    diag = sub.xs("diagnosis (all malignant vs)")
    assert set(diag.index) == {"nevus", "lentigo NOS"}  # each benign diagnosis against all malignant images
    assert diag.loc["nevus", "n_malignant"] == 33
    assert "acquisition (original size)" not in sub.index.get_level_values(0)  # no width/height: no such factor


def test_validation_report_edge_cases() -> None:
    t = _table({"torso": (30, 90)})
    rep = validation_report(t, threshold=0.5, n_boot=50)
    assert {"roc_auc", "pr_auc", "brier", "ece", "calibration_slope", "calibration_intercept", "operating_points",
            "net_benefit", "subgroups"} <= set(rep) and "stated_prevalence" not in rep
    with pytest.raises(MetricError, match="only benign"):
        validation_report(t.assign(target=0), n_boot=10)
    with pytest.raises(ValueError, match="prevalence the probabilities are calibrated at"):
        validation_report(t, prevalence=0.0176, n_boot=10)
    with pytest.raises(ValueError, match=r"\(0, 1\)"):
        validation_report(t, prevalence=1.5, probability_prevalence=0.25, n_boot=10)
    at = validation_report(t, threshold=0.5, prevalence=0.0176, probability_prevalence=0.25, n_boot=50)["stated_prevalence"]
    assert at["threshold"] == pytest.approx(prior_shift([0.5], 0.25, 0.0176)[0])


def test_patient_context_by_hand() -> None:
    emb = np.array([[1.0, 0.0], [1.0, 0.0], [0.0, 1.0], [3.0, 4.0]])
    ctx = patient_context(["A", "A", "A", "B"], emb)
    assert ctx["patient_n_images"].tolist() == [3, 3, 3, 1]
    # the odd one out: its siblings' mean is (1, 0), orthogonal to it -> distance 1
    assert ctx["ugly_duckling"].iloc[2] == pytest.approx(1.0)
    assert ctx["ugly_duckling"].iloc[0] == pytest.approx(1 - 0.5 / np.sqrt(0.5))  # vs mean (0.5, 0.5)
    assert np.isnan(ctx["ugly_duckling"].iloc[3])  # a single image: nothing to compare with
    with pytest.raises(ValueError, match="n_rows"):
        patient_context(["A"], emb)


def test_context_features_encode_and_need_their_columns(tiny_csv) -> None:
    from melanoma_utils.data.isic import load_dataset

    tiny_df = load_dataset(tiny_csv).frame
    df = tiny_df.assign(patient_n_images=[1.0, 2.0, 4.0] * (len(tiny_df) // 3) + [1.0] * (len(tiny_df) % 3),
                        ugly_duckling=[np.nan, 0.2, 0.4] * (len(tiny_df) // 3) + [np.nan] * (len(tiny_df) % 3))
    enc = MetadataEncoder("context").fit(df)
    names = enc.feature_names
    assert names[-3:] == ["log_patient_n_images", "ugly_duckling", "ugly_duckling_missing"]
    x = enc.transform(df)
    assert x[:, names.index("ugly_duckling_missing")].tolist()[:3] == [1.0, 0.0, 0.0]
    # missing -> the training median (0.3, midway between 0.2 and 0.4), which also is the mean: standardised to 0
    col = x[:, names.index("ugly_duckling")]
    assert col[0] == pytest.approx(0.0, abs=1e-6) and col[1] == pytest.approx(-col[2]) and col[1] < 0
    with pytest.raises(ValueError, match="add_context"):
        enc.transform(tiny_df)


def test_decision_curve_has_a_patient_bootstrap_band_around_the_model() -> None:
    import matplotlib

    matplotlib.use("Agg")
    from melanoma_utils.reports import plots

    rng = np.random.default_rng(0)
    y = rng.integers(0, 2, 300)
    p = np.clip(0.3 * y + rng.uniform(0, 0.7, 300), 0, 1)
    groups = np.repeat(np.arange(150), 2)
    t = net_benefit(y, p, thresholds=[0.05, 0.2, 0.5], groups=groups, n_boot=100)
    assert (t["model_ci_low"] <= t["model"]).all() and (t["model"] <= t["model_ci_high"]).all()
    assert (t["model_ci_high"] - t["model_ci_low"] > 0.005).all()  # an interval, not a point
    assert (t["delta_all_ci_low"] <= t["delta_all"]).all() and (t["delta_all"] <= t["delta_all_ci_high"]).all()
    np.testing.assert_allclose(t["delta_all"], t["model"] - t["biopsy_all"])
    assert "model_ci_low" not in net_benefit(y, p, thresholds=[0.2])  # no patients given: no band
    fig = plots.decision_curve({"model": t}, "t")
    assert len(fig.axes[0].collections) >= 1 and any("95% CI" in x.get_text() for x in fig.axes[0].get_legend().get_texts())
    # the ΔNB panel: vs biopsy all, banded (vs biopsy none is the upper panel's banded curve itself)
    assert len(fig.axes) == 2 and len(fig.axes[1].collections) == 1
    assert len(plots.decision_curve({"m": net_benefit(y, p, thresholds=[0.2])}, "t").axes) == 1  # no band: one panel


def test_net_benefit_verdict_separates_point_estimates_from_intervals() -> None:
    from melanoma_utils.evaluation.clinical import net_benefit_verdict

    table = pd.DataFrame({"threshold": [0.01, 0.05, 0.1, 0.2], "model": [0.02, 0.02, 0.01, -0.01],
                          "delta_all": [0.001, 0.01, 0.02, 0.03], "model_ci_low": [0.01, 0.01, -0.001, -0.02],
                          "delta_all_ci_low": [-0.002, 0.004, 0.01, 0.02]})
    v = net_benefit_verdict(table)
    assert v == {"n_thresholds": 4, "point": [0.01, 0.05, 0.1], "clear": [0.05]}
    assert net_benefit_verdict(table.drop(columns=["model_ci_low", "delta_all_ci_low"]))["clear"] == []


def test_pooled_out_of_fold_joins_each_image_once_with_its_fold_runs_threshold() -> None:
    from melanoma_utils.reports.validation import pooled_out_of_fold

    meta = pd.DataFrame({"image_name": ["a", "b", "c"], "patient_id": ["p1", "p1", "p2"], "target": [1, 0, 0],
                         "sex": ["male", "male", "female"], "source_copy": ["a", "a", "b"]})
    oof = pd.DataFrame({"image_name": ["a", "b", "c", "a", "b", "c", "a"], "variant": ["v"] * 3 + ["w"] * 3 + ["v"],
                        "repeat": [0, 0, 0, 0, 0, 0, 1], "fold": [0, 0, 1, 0, 0, 1, 1],
                        "probability": [0.9, 0.2, 0.1, 0.5, 0.5, 0.5, 0.7], "threshold": [0.3, 0.3, 0.4, 0.5, 0.5, 0.5, 0.1]})
    t = pooled_out_of_fold(oof, meta, "v")
    assert list(t["image_name"]) == ["a", "b", "c"] and list(t["threshold"]) == [0.3, 0.3, 0.4]
    assert list(t["probability"]) == [0.9, 0.2, 0.1] and list(t["sex"]) == ["male", "male", "female"]
    assert list(pooled_out_of_fold(oof, meta, "v", repeat=1)["probability"]) == [0.7]
    with pytest.raises(ValueError, match="present: v, w"):
        pooled_out_of_fold(oof, meta, "x")
    with pytest.raises(ValueError, match="1 out-of-fold image"):
        pooled_out_of_fold(oof, meta[meta["image_name"] != "c"], "v")
