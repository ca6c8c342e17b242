"""Typed results: Estimate, the metric registries (a metric added there reaches every report and the model card),
EvaluationResult's round trip and printout."""

from __future__ import annotations

import math

import numpy as np
import pandas as pd
import pytest

from melanoma_utils.evaluation import clinical, metrics, modelcard, results
from melanoma_utils.evaluation.metrics import MetricError, threshold_metrics
from melanoma_utils.evaluation.results import (
    Estimate,
    EvaluationResult,
    RankingMetric,
    evaluate,
    evaluate_result,
    metrics_table,
    ranking_metric,
)


def _data(n_patients: int = 60, seed: int = 0) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    rng = np.random.default_rng(seed)
    groups = np.repeat(np.arange(n_patients), 2)
    y = (rng.random(len(groups)) < 0.3).astype(int)
    s = np.clip(0.3 * y + rng.random(len(groups)) * 0.7, 0, 1)
    return y, s, groups


def test_an_estimate_prints_reads_and_writes_the_report_form() -> None:
    e = Estimate(0.8123, 0.78, 0.8412)
    assert e.format() == "0.812 (95% CI 0.780–0.841)" and str(e) == e.format()
    assert e.format(2, ci="") == "0.81 (0.78–0.84)"
    assert Estimate(0.5).format() == "0.500" and not Estimate(0.5).has_interval  # no interval: the value alone
    assert Estimate(float("nan"), 0.1, 0.2).format() == "n/a"
    assert Estimate(float("nan")).format(missing="—") == "—"
    # a table cell from three report columns: no "95% CI" words; "to" after a negative low; the table's own blank
    assert Estimate.cell(0.8123, 0.7801, 0.8412) == "0.812 (0.780–0.841)"
    assert Estimate.cell(0.0101, -0.0123, 0.0394, 4) == "0.0101 (-0.0123 to 0.0394)"
    assert Estimate.cell(float("nan"), 0.1, 0.2, missing="—") == "—" and Estimate.cell(float("nan"), 0, 1) == "n/a"
    assert Estimate(0.01, -0.012, 0.039).format(ci="") == "0.010 (-0.012 to 0.039)"  # no dash after a minus sign
    assert Estimate.from_dict(e.to_dict()) == e
    old = Estimate.from_dict({"estimate": 0.7, "ci_low": None})  # an older report without bounds
    assert old.value == 0.7 and math.isnan(old.lo) and math.isnan(old.hi)
    assert math.isnan(Estimate.from_dict(None).value)
    assert Estimate.from_dict({"estimate": np.float32(0.75), "ci_low": np.float64(0.5), "ci_high": 1}).format(2) == \
        "0.75 (95% CI 0.50–1.00)"  # NumPy scalars read as numbers
    # a report row's three columns, named after the statistic; an older report's missing bound is a blank (NaN)
    assert Estimate(0.81, 0.78, 0.84).columns("roc_auc") == {"roc_auc": 0.81, "roc_auc_ci_low": 0.78,
                                                             "roc_auc_ci_high": 0.84}
    cols = old.columns("nnb_at_0.0176")
    assert list(cols) == ["nnb_at_0.0176", "nnb_at_0.0176_ci_low", "nnb_at_0.0176_ci_high"]
    assert cols["nnb_at_0.0176"] == 0.7 and math.isnan(cols["nnb_at_0.0176_ci_high"])


def test_evaluation_by_hand_and_its_round_trip() -> None:
    y, s, g = np.array([0, 0, 1, 1]), np.array([0.1, 0.4, 0.35, 0.8]), np.array([0, 1, 2, 3])
    at = threshold_metrics(y, s, 0.38)  # predicted positive: 0.4 and 0.8 -> tp 1, fp 1, tn 1, fn 1
    assert (at["tp"], at["fp"], at["tn"], at["fn"]) == (1, 1, 1, 1)
    assert at["accuracy"] == at["sensitivity"] == at["specificity"] == at["precision"] == at["f1"] == 0.5
    y, s, g = _data()
    res = evaluate_result(y, s, g, {"validation": 0.5}, n_boot=200)
    assert res.ranking["roc_auc"].value == pytest.approx(metrics.roc_auc(y, s))
    assert res.ranking["roc_auc"].lo <= res.ranking["roc_auc"].value <= res.ranking["roc_auc"].hi
    assert (res.n, res.n_positive, res.n_patients) == (len(y), int(y.sum()), 60)
    d = evaluate(y, s, g, {"validation": 0.5}, n_boot=200)
    assert d == res.to_dict() and EvaluationResult.from_dict(d) == res  # metrics.json's layout, read back whole
    assert set(d["roc_auc"]) == {"estimate", "ci_low", "ci_high"}
    text = str(res)
    assert text.startswith(f"{len(y):,} images") and f"ROC AUC {res.ranking['roc_auc']}" in text
    assert "at validation (threshold 0.5000): accuracy" in text
    assert list(metrics_table(d).columns[:6]) == ["threshold", "accuracy", "sensitivity", "specificity", "precision", "f1"]
    with pytest.raises(MetricError, match="ROC AUC needs at least 1 malignant"):
        ranking_metric("roc_auc").estimate(np.zeros(6), np.linspace(0, 1, 6), np.arange(6))
    with pytest.raises(KeyError, match="unknown ranking metric 'auc'; choose one of roc_auc, pr_auc"):
        ranking_metric("auc")


def test_a_ranking_metric_added_to_the_registry_reaches_evaluate_the_validation_report_and_the_model_card(monkeypatch) -> None:
    """Adding a metric = one registry entry: nothing else changes."""
    extra = RankingMetric("top_decile_rate", "top-decile melanoma share",
                          lambda y, s: float(y[np.argsort(-s)[: max(1, len(s) // 10)]].mean()))
    registry = (*results.RANKING_METRICS, extra)
    for module in (results, clinical, modelcard):  # the modules that read the registry
        monkeypatch.setattr(module, "RANKING_METRICS", registry)
    y, s, g = _data()
    assert "top_decile_rate" in evaluate(y, s, g, {}, n_boot=100)
    table = pd.DataFrame({"image_name": [f"i{k}" for k in range(len(y))], "patient_id": g, "target": y, "probability": s})
    report = clinical.validation_report(table, threshold=0.5, n_boot=100)
    assert report["top_decile_rate"]["estimate"] == pytest.approx(extra.fn(y, s))
    card = modelcard.model_card({"train": {"kind": "meta"}, "threshold": 0.5}, report)
    assert "top-decile melanoma share " + Estimate.from_dict(report["top_decile_rate"]).format() in card


def test_a_threshold_rate_added_to_its_registry_reaches_every_table(monkeypatch) -> None:
    monkeypatch.setitem(metrics.THRESHOLD_RATES, "npv", lambda c: (c["tn"], c["tn"] + c["fn"]))
    y, s, g = np.array([0, 0, 1, 1]), np.array([0.1, 0.4, 0.35, 0.8]), np.array([0, 1, 2, 3])
    assert threshold_metrics(y, s, 0.38)["npv"] == 0.5
    res = evaluate_result(y, s, g, {"t": 0.38}, n_boot=50)
    assert "npv" in res.table().columns and "npv 0.500" in str(res)
    old = {"thresholds": {"t": {k: v for k, v in threshold_metrics(y, s, 0.38).items() if k != "npv"}}}
    assert math.isnan(metrics_table(old).loc["t", "npv"])  # a report from before the rate: NaN, not a KeyError
    assert math.isnan(threshold_metrics(np.ones(3), np.ones(3), 0.5)["npv"])  # no negatives predicted: NaN, not 0


def test_the_model_card_is_its_template_with_every_section_filled_and_user_text_left_as_text() -> None:
    """The card's fixed text lives in one template file; each ``$slot`` is filled by its section's lines, and a value
    that looks like a slot (``$title`` in a group name) is not substituted again."""
    y, s, g = _data()
    table = pd.DataFrame({"image_name": [f"i{k}" for k in range(len(y))], "patient_id": g, "target": y, "probability": s})
    report = clinical.validation_report(table, threshold=0.5, n_boot=50)
    config = {"train": {"kind": "meta", "seed": 3}, "threshold": 0.5, "n_train": 40, "n_val": len(y),
              "versions": {"numpy": "9.9"},
              "source_weighting": {"column": "clinic", "weighting": "sources",
                                   "groups": [{"group": "$title ${model}", "rows": 3, "benign": 2, "malignant": 1,
                                               "malignant_share": 1 / 3}]}}
    card = modelcard.model_card(config, report, title="T1")
    template = modelcard._TEMPLATE.template
    headings = [line for line in template.splitlines() if line.startswith("#")]
    assert [line for line in card.splitlines() if line.startswith("#") and not line.startswith("###")] == \
        [h.replace("${title}", "T1") for h in headings]
    assert "\\$title \\$\\{model\\}" in card and "$" not in card.replace("\\$", "")  # every slot filled; the group name kept as text
    assert "- numpy 9.9" in card and "seed 3" in card and f"{len(y):,} images" in card
    fixed = "The model is not validated for darker skin."
    assert fixed in template and fixed in card
    assert "No validation report" in modelcard.model_card({"train": {"kind": "meta"}, "threshold": 0.5}, None)
