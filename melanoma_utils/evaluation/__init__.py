"""Evaluation, calibration and clinical reports: metrics with patient-bootstrap intervals, calibrators,
operating points and subgroups, model cards. Pure NumPy/pandas: no model code.

Modules: ``calibration``, ``calibrator_choice``, ``clinical``, ``metrics``, ``modelcard``, ``shortcuts``.
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
    "evaluate",
    "join_predictions",
    "melanoma_vs_nevus_auc",
    "melanoma_vs_nevus_mask",
    "metrics_table",
    "paired_auc_difference",
    "patient_bootstrap",
    "patient_resamples",
    "pr_auc",
    "roc_auc",
    "threshold_metrics",
]

__getattr__, __dir__ = reexport(__name__, ".metrics", __all__)
