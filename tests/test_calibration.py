"""Calibration on hand-computed cases: Brier, ECE and reliability bins with intervals, slope and intercept, prior
shift, the calibrators (ranking kept, round trip) and the choice among them with its held-out slope guard."""

from __future__ import annotations

import numpy as np
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
    operating_point,
)
from melanoma_utils.evaluation.metrics import MetricError


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
