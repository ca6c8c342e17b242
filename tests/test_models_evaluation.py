from __future__ import annotations

import math

import numpy as np
import pytest

from melanoma_utils.evaluation.metrics import (
    MetricError,
    bootstrap_ci,
    choose_threshold,
    pr_auc,
    roc_auc,
    threshold_metrics,
)
from melanoma_utils.evaluation.results import evaluate, metrics_table
from melanoma_utils.models.fusion import BackbonePreprocess, WeightsUnavailable, bias_for, build_backbone, build_model
from melanoma_utils.runs.training import class_weights


@pytest.mark.parametrize("kind, inputs", [("fusion", {"image", "meta"}), ("image", {"image"}), ("meta", {"meta"})])
def test_model_variants_inputs_and_output(kind: str, inputs: set) -> None:
    m = build_model(image_size=32, n_meta=12, kind=kind, conv_filters=(8, 16), initial_bias=bias_for(0.1))
    assert set(m.input_names if hasattr(m, "input_names") else [i.name for i in m.inputs]) == inputs
    assert m.output_shape == (None, 1) and m.outputs[0].dtype == "float32"
    feed = {"image": np.zeros((2, 32, 32, 3), np.float32), "meta": np.zeros((2, 12), np.float32)}
    out = np.asarray(m({k: v for k, v in feed.items() if k in inputs}, training=False))
    assert out.shape == (2, 1) and ((out > 0) & (out < 1)).all()


def test_output_bias_gives_the_base_rate() -> None:
    m = build_model(image_size=None, n_meta=4, kind="meta", initial_bias=bias_for(0.0176), meta_units=(8,), head_units=(8,))
    assert float(m.get_layer("probability").bias.numpy()[0]) == pytest.approx(math.log(0.0176 / 0.9824))
    with pytest.raises(ValueError):
        bias_for(0.0)


def test_dict_inputs_are_matched_by_name_not_order() -> None:
    m = build_model(image_size=16, n_meta=3, conv_filters=(4,), meta_units=(4,), head_units=(4,))
    img = np.random.default_rng(0).random((2, 16, 16, 3)).astype(np.float32) * 255
    meta = np.ones((2, 3), np.float32)
    a = np.asarray(m({"image": img, "meta": meta}, training=False))
    b = np.asarray(m({"meta": meta, "image": img}, training=False))
    assert np.array_equal(a, b)


def test_backbone_preprocess_modes() -> None:
    x = np.full((1, 2, 2, 3), 255.0, np.float32)
    assert np.allclose(BackbonePreprocess("tf")(x), 1.0)
    assert np.allclose(BackbonePreprocess("raw")(x), 255.0)
    assert np.allclose(BackbonePreprocess("unit")(x), 1.0)
    caffe = np.asarray(BackbonePreprocess("caffe")(x))
    assert np.allclose(caffe[0, 0, 0], [255 - 103.939, 255 - 116.779, 255 - 123.68])


def test_imagenet_weights_fail_clearly_offline(monkeypatch) -> None:
    import keras

    def offline(*a, **k):
        raise OSError("URL fetch failure: no network")

    monkeypatch.setattr(keras.applications, "MobileNetV2", offline)
    with pytest.raises(WeightsUnavailable, match="--backbone-weights none"):
        build_backbone("mobilenetv2", 32, "imagenet")
    with pytest.raises(ValueError, match="unknown backbone 'alexnet'"):
        build_backbone("alexnet", 32)


def test_class_weights_formula() -> None:
    y = np.array([0] * 90 + [1] * 10)
    w = class_weights(y)
    assert w[0] == pytest.approx(100 / 180) and w[1] == pytest.approx(100 / 20)
    assert 90 * w[0] + 10 * w[1] == pytest.approx(100)  # loss keeps its scale
    assert w[1] / w[0] == pytest.approx(90 / 10)  # w_i ∝ 1/n_i
    with pytest.raises(ValueError, match="both classes"):
        class_weights(np.zeros(5))


def test_metrics_on_hand_computed_case() -> None:
    y = np.array([0, 0, 0, 0, 1, 1])
    p = np.array([0.1, 0.2, 0.6, 0.3, 0.7, 0.4])
    # positives 0.7, 0.4 vs negatives 0.1, 0.2, 0.6, 0.3: pairs won 4 + 3 = 7 of 8
    assert roc_auc(y, p) == pytest.approx(7 / 8)
    m = threshold_metrics(y, p, 0.5)
    assert (m["tp"], m["fp"], m["tn"], m["fn"]) == (1, 1, 3, 1)
    assert m["sensitivity"] == 0.5 and m["specificity"] == 0.75 and m["accuracy"] == pytest.approx(4 / 6)
    assert m["f1"] == pytest.approx(2 / 4)
    # AP: ranks 0.7 (pos, P=1), 0.6 (neg), 0.4 (pos, P=2/3) -> (1 + 2/3) / 2
    assert pr_auc(y, p) == pytest.approx((1 + 2 / 3) / 2)


@pytest.mark.parametrize("fn", [roc_auc, pr_auc])
def test_single_class_is_a_clear_error(fn) -> None:
    with pytest.raises(MetricError, match="needs both classes; got only negatives"):
        fn([0, 0, 0], [0.1, 0.2, 0.3])
    with pytest.raises(MetricError, match="no predictions"):
        fn([], [])
    with pytest.raises(MetricError, match="non-finite"):
        fn([0, 1], [0.1, np.nan])


def test_threshold_chosen_for_sensitivity() -> None:
    y = np.array([1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 0, 0])
    p = np.array([0.9, 0.85, 0.8, 0.7, 0.6, 0.5, 0.4, 0.3, 0.2, 0.05, 0.1, 0.5])
    t = choose_threshold(y, p, 0.9)
    assert t == pytest.approx(0.2)  # 9 of 10 positives at or above 0.2
    assert threshold_metrics(y, p, t)["sensitivity"] >= 0.9
    assert choose_threshold(y, p, 1.0) == pytest.approx(0.05)


def test_patient_bootstrap_ci_contains_estimate() -> None:
    rng = np.random.default_rng(0)
    y = (rng.random(400) < 0.3).astype(int)
    p = np.clip(y * 0.3 + rng.random(400) * 0.7, 0, 1)
    groups = np.repeat(np.arange(100), 4)
    est, lo, hi = bootstrap_ci(y, p, groups, roc_auc, n_boot=300)
    assert lo < est < hi and hi - lo < 0.2
    res = evaluate(y, p, groups, {"0.5": 0.5}, n_boot=100)
    assert res["n_patients"] == 100 and res["roc_auc"]["estimate"] == pytest.approx(est)
    assert list(metrics_table(res).index) == ["0.5"]


def test_bootstrap_resamples_patients_not_rows() -> None:
    rng = np.random.default_rng(1)
    y = (rng.random(300) < 0.4).astype(int)
    p = np.clip(y * 0.25 + rng.random(300) * 0.75, 0, 1)
    # one patient: every patient-resample is the whole data set, so the interval collapses to the estimate
    est, lo, hi = bootstrap_ci(y, p, np.zeros(300), roc_auc, n_boot=200)
    assert lo == pytest.approx(est) and hi == pytest.approx(est)
    # one row per patient: rows are resampled, and the interval has a width
    _, lo_u, hi_u = bootstrap_ci(y, p, np.arange(300), roc_auc, n_boot=300)
    assert hi_u - lo_u > 0.05


def test_fast_roc_and_pr_auc_equal_sklearn_with_ties() -> None:
    """The rank-based ROC AUC and the NumPy average precision used in bootstrap loops equal scikit-learn's."""
    from sklearn.metrics import average_precision_score, roc_auc_score

    from melanoma_utils.evaluation.metrics import pr_auc, roc_auc

    rng = np.random.default_rng(7)
    for k in range(10):
        y = rng.integers(0, 2, 150)
        y[:2] = [0, 1]
        s = np.round(rng.random(150), k % 3 + 1)  # coarse scores: many ties
        assert roc_auc(y, s) == pytest.approx(roc_auc_score(y, s), abs=1e-12)
        assert pr_auc(y, s) == pytest.approx(average_precision_score(y, s), abs=1e-12)
    assert roc_auc([0, 0, 1, 1], [0.1, 0.4, 0.35, 0.8]) == 0.75  # by hand: 3 of 4 pairs ordered
    assert pr_auc([0, 1, 1], [0.9, 0.8, 0.1]) == pytest.approx(0.5 * 0.5 + 0.5 * (2 / 3))


def test_delong_matches_the_pairwise_definition_and_its_edge_cases() -> None:
    """DeLong's variance from its definition (O(m·n) pairwise kernel), not from the fast ranks the code uses."""
    from scipy.stats import norm

    from melanoma_utils.evaluation.metrics import delong_test

    rng = np.random.default_rng(3)
    y = np.array([1] * 30 + [0] * 70)
    a = np.round(y + rng.normal(0, 1, 100), 1)  # rounded: ties, which count half
    b = np.round(y + rng.normal(0, 1.6, 100), 1)

    def psi(s):
        x, z = s[y == 1][:, None], s[y == 0][None, :]
        return (x > z) + 0.5 * (x == z)

    ka, kb = psi(a), psi(b)
    v10 = np.vstack([ka.mean(1), kb.mean(1)])
    v01 = np.vstack([ka.mean(0), kb.mean(0)])
    s10, s01 = np.cov(v10), np.cov(v01)
    var = (s10[0, 0] + s10[1, 1] - 2 * s10[0, 1]) / 30 + (s01[0, 0] + s01[1, 1] - 2 * s01[0, 1]) / 70
    delta = ka.mean() - kb.mean()
    res = delong_test(y, a, b)
    assert res["delta"] == pytest.approx(delta) and res["se"] == pytest.approx(np.sqrt(var))
    assert res["p_value"] == pytest.approx(2 * norm.sf(abs(delta) / np.sqrt(var)))
    assert delong_test(y, a, a)["p_value"] == 1.0  # a model against itself
    with pytest.raises(MetricError):
        delong_test(np.zeros(5), a[:5], b[:5])


def test_paired_difference_over_repeats_averages_the_per_repeat_differences() -> None:
    from melanoma_utils.evaluation.metrics import paired_auc_difference

    rng = np.random.default_rng(0)
    y = np.array([1, 0] * 60)
    groups = np.repeat(np.arange(40), 3)
    a = np.column_stack([y + rng.normal(0, s, 120) for s in (0.8, 0.9, 1.0)])
    b = np.column_stack([y + rng.normal(0, 1.5, 120) for _ in range(3)])
    res = paired_auc_difference(y, a, b, groups, n_boot=200)
    expected = np.mean([roc_auc(y, a[:, r]) - roc_auc(y, b[:, r]) for r in range(3)])
    assert res["delta"] == pytest.approx(expected) and res["ci_low"] <= expected <= res["ci_high"]
    one = paired_auc_difference(y, a[:, 0], b[:, 0], groups, n_boot=200)
    assert one["delta"] == pytest.approx(roc_auc(y, a[:, 0]) - roc_auc(y, b[:, 0]))
    with pytest.raises(ValueError, match="differ in shape"):
        paired_auc_difference(y, a, b[:, :2], groups, n_boot=10)


def test_patient_bootstrap_has_one_failure_rule_and_every_interval_contains_its_estimate() -> None:
    from melanoma_utils.evaluation.clinical import calibration_summary
    from melanoma_utils.evaluation.metrics import patient_bootstrap

    rng = np.random.default_rng(0)
    groups = np.repeat(np.arange(100), 2)
    p = rng.uniform(0.05, 0.95, 200)
    y = (rng.uniform(size=200) < p).astype(int)  # calibrated: the ECE estimate sits below most resampled ECEs
    ece = calibration_summary(y, p, groups, n_boot=200)["ece"]
    assert ece["ci_low"] <= ece["estimate"] <= ece["ci_high"]
    def mean_if_both(idx):  # usable only when row 0 is drawn exactly once: about 37% of resamples
        if (idx == 0).sum() != 1:
            raise MetricError("too few")
        return {"m": float(p[idx].mean()), "nan": float("nan")}

    out = patient_bootstrap(mean_if_both, groups, n_boot=100)
    assert np.isnan(out["m"].ci_low) and out["m"].estimate == pytest.approx(p.mean())  # < half usable: no interval
    assert np.isnan(out["nan"].ci_low)
    skew = patient_bootstrap(lambda idx: float(np.max(p[idx])), groups, n_boot=200)["value"]
    assert skew.ci_low <= skew.estimate <= skew.ci_high  # the maximum: resamples never exceed it


def test_build_model_takes_a_spec_and_keyword_overrides_and_refuses_an_unknown_field() -> None:
    from melanoma_utils.models.fusion import ModelSpec

    spec = ModelSpec(image_size=None, n_meta=3, kind="meta", meta_units=(4,), head_units=(4,))
    m = build_model(spec)
    assert [t.name for t in m.inputs] == ["meta"] and m.name == "meta"
    assert build_model(spec, n_meta=7).inputs[0].shape[-1] == 7 and spec.n_meta == 3  # the spec is not changed
    with pytest.raises(TypeError, match="n_metas"):
        build_model(spec, n_metas=7)
