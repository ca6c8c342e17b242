"""Clinical evaluation on hand-computed cases: calibration, prior shift, operating points / NNB, net benefit,
subgroups, patient context, and the edge cases (one class, small groups, prevalence outside (0, 1))."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest

from melanoma_utils.evaluation.calibration import (
    Calibrator,
    brier_score,
    calibration_intercept_slope,
    expected_calibration_error,
    prevalence_weights,
    prior_shift,
    reliability_table,
    sigmoid,
)
from melanoma_utils.evaluation.calibrator_choice import fit_calibrator
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


def test_brier_and_weighted_brier_by_hand() -> None:
    assert brier_score([0, 1], [0.2, 0.6]) == pytest.approx((0.04 + 0.16) / 2)
    assert brier_score([0, 1], [0.2, 0.6], weights=[3, 1]) == pytest.approx((3 * 0.04 + 0.16) / 4)


def test_equal_mass_ece_and_reliability_bins_by_hand() -> None:
    y, p = [0, 0, 1, 1], [0.1, 0.3, 0.6, 0.8]
    t = reliability_table(y, p, n_bins=2)
    assert t["n"].tolist() == [2, 2] and t["n_malignant"].tolist() == [0, 2]
    assert t["mean_predicted"].tolist() == pytest.approx([0.2, 0.7])
    assert expected_calibration_error(y, p, n_bins=2) == pytest.approx(0.5 * 0.2 + 0.5 * 0.3)
    # weighted: bin 1 weighs 4 (mean predicted 0.6/4 = 0.15), bin 2 weighs 2 (0.7 vs 1): (4·0.15 + 2·0.3) / 6
    assert expected_calibration_error(y, p, n_bins=2, weights=[3, 1, 1, 1]) == pytest.approx(0.2)
    # equal MASS: the bins follow the sorted probabilities, not fixed [0, 0.5), [0.5, 1] edges
    assert reliability_table([0, 0, 0, 1], [0.01, 0.02, 0.03, 0.9], n_bins=2)["p_high"].tolist() == [0.02, 0.9]


def test_calibration_slope_and_intercept_recover_known_miscalibration() -> None:
    rng = np.random.default_rng(0)
    z = rng.normal(-1.5, 1.5, 40_000)
    y = rng.random(len(z)) < sigmoid(z)
    a, b = calibration_intercept_slope(y, sigmoid(z))
    assert abs(a) < 0.05 and abs(b - 1) < 0.05
    _, b_over = calibration_intercept_slope(y, sigmoid(2 * z))  # twice too extreme: slope 1/2
    assert b_over == pytest.approx(0.5, abs=0.05)
    a_high, _ = calibration_intercept_slope(y, sigmoid(z + 1))  # too high on average: negative intercept
    assert a_high < -0.5
    with pytest.raises(MetricError, match="both classes"):
        calibration_intercept_slope([1, 1], [0.2, 0.3])


def test_prior_shift_by_hand_and_its_errors() -> None:
    assert prior_shift([0.5], 0.5, 0.2)[0] == pytest.approx(0.2)
    assert prior_shift([0.5], 0.2, 0.5)[0] == pytest.approx(0.8)  # odds × (1 / 0.25)
    out = prior_shift([0.0, 0.1, 0.7, 1.0], 0.18, 0.0176)
    assert out[0] == 0 and out[-1] == 1 and (np.diff(out) > 0).all()
    for bad in (0, 1, -0.1, 1.5, "x"):
        with pytest.raises(ValueError, match=r"\(0, 1\)"):
            prior_shift([0.5], 0.2, bad)


def test_prior_shift_restores_calibration_after_subsampling_to_another_prevalence() -> None:
    rng = np.random.default_rng(1)
    x = rng.normal(0, 1, 60_000)
    p = sigmoid(-1.9 + 1.5 * x)  # the true probabilities: calibrated at the population's ~18% prevalence
    y = (rng.random(len(x)) < p).astype(int)
    pi = y.mean()
    keep = (y == 1) | (rng.random(len(y)) < 0.08)  # keep every melanoma, 8% of the benign: another prevalence
    y2, p2 = y[keep], p[keep]
    pi2 = y2.mean()
    assert pi2 > 0.5 > pi  # the sample's prevalence really changed
    a_raw, _ = calibration_intercept_slope(y2, p2)
    a_shift, b_shift = calibration_intercept_slope(y2, prior_shift(p2, pi, pi2))
    assert a_raw > 1.0  # unshifted probabilities are far too low at the new prevalence
    assert abs(a_shift) < 0.08 and abs(b_shift - 1) < 0.08
    # reweighting the subsample back to the population's prevalence makes the ORIGINAL probabilities calibrated
    a_w, _ = calibration_intercept_slope(y2, p2, weights=prevalence_weights(y2, pi))
    assert abs(a_w) < 0.08


def test_calibrator_beats_raw_outputs_on_new_rows_and_round_trips() -> None:
    rng = np.random.default_rng(2)

    def sample(n: int) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        z = rng.normal(-1.5, 1.2, n)
        y = (rng.random(n) < sigmoid(z)).astype(int)
        raw = sigmoid(0.5 * z + 1.2)  # class-weighted training: too high and too timid
        return y, raw, np.arange(n) // 3  # three images per patient

    y, raw, groups = sample(3000)
    cal = fit_calibrator(y, raw, groups)
    assert cal.method in ("platt", "isotonic") and {"none", "platt", "isotonic"} <= set(cal.selection)
    assert cal.prevalence == pytest.approx(y.mean()) and cal.n_fit == 3000
    briers = {m: cal.selection[m] for m in ("none", "platt", "isotonic")}
    assert min(briers.values()) < brier_score(y, raw) - 0.02  # scored out of fold, calibrated
    for m in briers:  # every candidate's held-out slope, with an interval around it
        assert cal.selection[f"slope_{m}_ci_low"] <= cal.selection[f"slope_{m}"] <= cal.selection[f"slope_{m}_ci_high"]
    y_new, raw_new, _ = sample(3000)
    assert brier_score(y_new, cal.transform(raw_new)) < brier_score(y_new, raw_new) - 0.02
    again = Calibrator.from_dict(cal.to_dict())
    np.testing.assert_array_equal(again.transform(raw_new), cal.transform(raw_new))
    order = np.argsort(raw_new)
    assert (np.diff(cal.transform(raw_new)[order]) >= -1e-12).all()  # monotone
    with pytest.raises(MetricError, match="both classes"):
        fit_calibrator([0, 0, 0], [0.1, 0.2, 0.3], [1, 2, 3])
    # Platt's smoothed targets keep a perfectly separable (tiny) sample finite, not 0/1
    tiny = fit_calibrator([0, 0, 1, 1], [0.1, 0.2, 0.8, 0.9], [1, 2, 3, 4], methods=("platt",))
    assert 0.05 < tiny.transform([0.1])[0] < tiny.transform([0.9])[0] < 0.95


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


def test_a_calibrator_never_inverts_the_ranking_it_was_handed() -> None:
    """A model below chance on the validation rows: Platt would fit a negative slope (0.477 = 1 − 0.523 in an earlier
    backbone table); it is refused for isotonic regression, which is monotone, and the refusal is recorded."""
    from scipy.stats import spearmanr


    rng = np.random.default_rng(0)
    y = (rng.random(400) < 0.3).astype(int)
    raw = 1 / (1 + np.exp(-(rng.normal(0, 1, 400) - 0.8 * y)))  # malignant images score LOWER
    cal = fit_calibrator(y, raw, np.arange(400))
    assert cal.method == "isotonic" and cal.selection["platt_refused_slope"] <= 0
    assert spearmanr(raw, cal.transform(raw)).statistic >= 0
    good = fit_calibrator(y, 1 / (1 + np.exp(-(rng.normal(0, 1, 400) + 1.5 * y))), np.arange(400))
    assert "platt_refused_slope" not in good.selection


def test_prevalence_is_a_number_in_0_1_or_a_known_name() -> None:
    from melanoma_utils.evaluation.calibration import check_prevalence

    assert check_prevalence("isic2020") == pytest.approx(584 / 33126)
    assert check_prevalence(" ISIC2020 ") == pytest.approx(0.01763, abs=1e-5)
    assert check_prevalence("0.05") == 0.05
    with pytest.raises(ValueError, match="must be a number in \\(0, 1\\) or one of isic2020; got 'ham'"):
        check_prevalence("ham")
    with pytest.raises(ValueError, match="--prevalence must be in \\(0, 1\\)"):
        check_prevalence(1.5, "--prevalence")


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


def test_calibration_slope_reads_a_scaled_logit_and_the_choice_includes_none() -> None:
    from melanoma_utils.evaluation.calibration import calibration_intercept_slope, sigmoid

    rng = np.random.default_rng(0)
    n = 20_000
    z = rng.normal(-1.5, 1.5, n)
    y = (rng.random(n) < sigmoid(z)).astype(int)  # sigmoid(z) is the true probability
    groups = np.arange(n) // 2
    # a model whose logits are 3x too large: predictions far too extreme, slope 1/3
    _, slope = calibration_intercept_slope(y, sigmoid(3 * z))
    assert slope == pytest.approx(1 / 3, abs=0.03)
    _, slope = calibration_intercept_slope(y, sigmoid(z))
    assert slope == pytest.approx(1.0, abs=0.06)
    # the calibrator is chosen by cross-validated Brier score among none, Platt and isotonic: an already calibrated
    # output scores as well as any fitted map (within noise), a 3x-too-extreme one is mapped
    calibrated = fit_calibrator(y, sigmoid(z), groups)
    assert set(calibrated.selection) >= {"none", "platt", "isotonic"}
    assert calibrated.selection["none"] <= min(calibrated.selection.values()) + 1e-4
    extreme = fit_calibrator(y, sigmoid(3 * z), groups)
    assert extreme.method == "platt" and extreme.selection["platt"] < extreme.selection["none"]
    _, slope = calibration_intercept_slope(y, extreme.transform(sigmoid(3 * z)))
    assert slope == pytest.approx(1.0, abs=0.06)


def test_isotonic_calibrator_keeps_the_ranking_so_operating_points_stay_distinct() -> None:
    """Plain isotonic regression is a staircase: the thresholds for sensitivity 0.80, 0.90 and 0.95 fall on one tied
    step and the calibrated AUC drops below the raw one. The centred isotonic map is strictly increasing inside the
    fitted range: the ranking (and the AUC) is the raw one, and three sensitivities give three thresholds."""
    from sklearn.metrics import roc_auc_score

    from melanoma_utils.evaluation.metrics import choose_threshold

    rng = np.random.default_rng(5)
    z = rng.normal(-1.0, 1.0, 2000)
    y = (rng.random(2000) < sigmoid(1.5 * z)).astype(int)
    raw = sigmoid(0.5 * z)  # too timid: isotonic regression pools long runs of it
    cal = fit_calibrator(y, raw, np.arange(2000), methods=("isotonic",))
    p = cal.transform(raw)
    assert len(np.unique(p)) == len(np.unique(raw))  # no two raw scores share a probability
    assert roc_auc_score(y, p) == pytest.approx(roc_auc_score(y, raw), abs=1e-12)
    thresholds = {s: choose_threshold(y, p, s) for s in (0.80, 0.90, 0.95)}
    assert len(set(thresholds.values())) == 3
    assert [operating_point(y, p, t)["sensitivity"] for t in thresholds.values()] == pytest.approx(
        [0.80, 0.90, 0.95], abs=0.01)
    # still a calibration: the mean probability in each decile of the score is the observed rate there
    assert brier_score(y, p) < brier_score(y, raw) - 0.01
    assert abs(p.mean() - y.mean()) < 0.01


def test_slope_guard_refuses_a_map_that_moves_the_held_out_slope_away_from_1(monkeypatch) -> None:
    """The raw output is too timid (slope ~2); a map with slope 1 passes, one with slope 3 is refused even with the
    best Brier score, and ``none`` always passes. fit_calibrator on such rows picks a map with a held-out slope near
    1 and records every slope with its interval."""
    from melanoma_utils.evaluation.calibrator_choice import slope_guard

    rng = np.random.default_rng(5)
    z = rng.normal(-1.5, 1.5, 4000)
    y = (rng.random(4000) < sigmoid(z)).astype(int)
    raw = sigmoid(0.5 * z)  # squeezed toward 1/2: held-out slope about 2
    _, raw_slope = calibration_intercept_slope(y, raw)
    assert 1.6 < raw_slope < 2.5
    scores = {"none": 0.10, "platt": 0.09, "isotonic": 0.08, "slope_none": raw_slope, "slope_platt": 1.0,
              "slope_isotonic": 3.0}
    assert slope_guard(scores, raw, y, ("none", "platt", "isotonic")) == ["none", "platt"]
    assert slope_guard({**scores, "slope_isotonic": 1.2}, raw, y, ("none", "platt", "isotonic")) == [
        "none", "platt", "isotonic"]
    assert slope_guard({**scores, "slope_isotonic": float("nan")}, raw, y, ("platt", "isotonic")) == ["platt"]
    assert slope_guard({**scores, "slope_platt": 9.0}, raw, y, ("platt", "isotonic")) == ["isotonic"]  # none passes: closest kept
    cal = fit_calibrator(y, raw, np.arange(4000) // 2)
    assert cal.method != "identity"
    assert abs(np.log(cal.selection[f"slope_{cal.method}"])) < abs(np.log(raw_slope))
    assert cal.selection[f"slope_{cal.method}_ci_low"] < 1 < cal.selection[f"slope_{cal.method}_ci_high"] + 0.1
    from melanoma_utils.evaluation import calibrator_choice as calibration

    quick = fit_calibrator(y, raw, np.arange(4000) // 2, n_boot=0)  # no interval asked: the slopes alone
    assert quick.method == cal.method and np.isnan(quick.selection[f"slope_{cal.method}_ci_low"])
    assert quick.selection[f"slope_{cal.method}"] == pytest.approx(cal.selection[f"slope_{cal.method}"])
    table = calibration.calibrator_choice_table(cal)
    assert list(table["calibrator"]) == ["none", "platt", "isotonic"] and table["chosen"].sum() == 1
    assert table.set_index("calibrator").loc["none", "slope"] == pytest.approx(raw_slope, rel=1e-6)
    assert calibration.calibrator_choice_table(Calibrator("identity")).empty
    monkeypatch.setattr(calibration, "slope_guard", lambda *a: ["none"])  # the guard's verdict decides the choice
    kept = fit_calibrator(y, raw, np.arange(4000) // 2)
    assert kept.method == "identity" and kept.selection[f"slope_refused_{cal.method}"] == pytest.approx(
        cal.selection[f"slope_{cal.method}"])
    refused = calibration.calibrator_choice_table(kept).set_index("calibrator")
    assert refused.loc["none", "chosen"] and not refused.loc[cal.method, "eligible"]


def test_net_benefit_verdict_separates_point_estimates_from_intervals() -> None:
    from melanoma_utils.evaluation.clinical import net_benefit_verdict

    table = pd.DataFrame({"threshold": [0.01, 0.05, 0.1, 0.2], "model": [0.02, 0.02, 0.01, -0.01],
                          "delta_all": [0.001, 0.01, 0.02, 0.03], "model_ci_low": [0.01, 0.01, -0.001, -0.02],
                          "delta_all_ci_low": [-0.002, 0.004, 0.01, 0.02]})
    v = net_benefit_verdict(table)
    assert v == {"n_thresholds": 4, "point": [0.01, 0.05, 0.1], "clear": [0.05]}
    assert net_benefit_verdict(table.drop(columns=["model_ci_low", "delta_all_ci_low"]))["clear"] == []


def test_reliability_bins_carry_wilson_intervals() -> None:
    from melanoma_utils.evaluation.calibration import wilson_interval

    lo, hi = wilson_interval(0.5, 100)  # the textbook value: 0.404–0.596
    assert lo == pytest.approx(0.4038, abs=1e-3) and hi == pytest.approx(0.5962, abs=1e-3)
    assert wilson_interval(0.0, 10)[0] == 0.0 and 0 < wilson_interval(0.0, 10)[1] < 0.31  # 0 of 10 is not "exactly 0"
    assert all(np.isnan(wilson_interval(0.3, 0)))
    y = np.r_[np.ones(30), np.zeros(70)].astype(int)
    p = np.linspace(0.01, 0.99, 100)
    t = reliability_table(y, p, n_bins=5)
    assert ((t["observed_ci_low"] <= t["observed_rate"]) & (t["observed_rate"] <= t["observed_ci_high"])).all()
    same = reliability_table(y, p, n_bins=5, weights=np.full(100, 2.0))  # equal weights: the same images
    np.testing.assert_allclose(same["observed_ci_low"], t["observed_ci_low"])
    w = reliability_table(y, p, n_bins=5, weights=np.where(y == 1, 5.0, 1.0))
    # bin 1 holds 10 melanoma (weight 5) and 10 benign (weight 1): rate 50/60 on (60²/260) effective images
    assert (w.loc[1, "observed_ci_low"], w.loc[1, "observed_ci_high"]) == pytest.approx(wilson_interval(50 / 60, 3600 / 260))


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
