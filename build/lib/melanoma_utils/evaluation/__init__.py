"""Evaluation, calibration and clinical reports: metrics with patient-bootstrap intervals, calibrators,
operating points and subgroups, model cards. Pure NumPy/pandas: no model code.

Modules: ``calibration``, ``calibrator_choice``, ``clinical``, ``metrics``, ``modelcard``, ``results``, ``shortcuts``.
Layers (imports only run leftwards): config/atomic/versions < data < pipeline < evaluation < models < runs < study < reports < cli.
"""

# the principal module's names, loaded on first use (``from melanoma_utils.evaluation import ...`` keeps working without
# importing what the package's lighter modules do not need)
from ..lazy import reexport

__all__ = [
    "Interval",
    "MetricError",
    "bootstrap_ci",
    "choose_threshold",
    "delong_test",
    "join_predictions",
    "melanoma_vs_nevus_auc",
    "melanoma_vs_nevus_mask",
    "paired_auc_difference",
    "patient_bootstrap",
    "patient_resamples",
    "pr_auc",
    "roc_auc",
    "threshold_metrics",
]

#: Served from ``results`` (typed results, the ranking-metric registry); everything else from ``metrics``.
_RESULTS = ["Estimate", "EvaluationResult", "RANKING_METRICS", "evaluate", "evaluate_result", "metrics_table"]
_from_metrics = reexport(__name__, ".metrics", __all__)
_from_results = reexport(__name__, ".results", _RESULTS)
__all__ = sorted([*__all__, *_RESULTS])


def __getattr__(name: str):  # noqa: ANN202  (whatever the name is)
    return (_from_results if name in _RESULTS else _from_metrics)[0](name)


def __dir__() -> list[str]:
    return sorted(set(_from_metrics[1]()) | set(_RESULTS))
