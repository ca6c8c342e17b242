"""The paper's own numbers (study content, kept out of the experiment code) and the table that sets ours beside them
in the paper's layout (:func:`paper_comparison_table`)."""

from __future__ import annotations

import pandas as pd

from ..config import ISIC2020_PREVALENCE
from ..evaluation.metrics import bootstrap_ci, roc_auc, threshold_metrics
from ..study.experiments import study_folds

#: What the paper reports for its fusion model (Ahmad et al. 2025): accuracy 94.5%, sensitivity (recall) 0.938,
#: specificity 0.952, F1 0.94. Metrics it does not report stay blank rather than guessed.
PAPER_REPORTED: dict[str, float] = {"accuracy": 0.945, "recall": 0.938, "specificity": 0.952, "f1": 0.94}
#: The paper's Table 3 ("Comparison of the proposed model with state-of-the-art models"), all six rows as printed:
#: accuracy, sensitivity and specificity in %, F1. Typed from the paper. It does not state ROC AUC, intervals, the
#: split, the threshold, the evaluated set's class balance, nor, for the five comparison models, input size,
#: pretraining, whether metadata was fused or the training protocol; "EfficientNet" names no variant.
PAPER_TABLE3: tuple[tuple[str, float, float, float, float], ...] = (
    ("Proposed Model", 94.5, 93.8, 95.2, 0.94),
    ("VGG-16", 91.3, 90.5, 92.0, 0.91),
    ("ResNet-50", 93.0, 92.5, 93.8, 0.93),
    ("MobileNetV2", 92.8, 92.0, 93.5, 0.92),
    ("EfficientNet", 93.5, 92.8, 94.0, 0.93),
    ("DenseNet-121", 92.5, 91.8, 93.2, 0.92),
)
#: Which of this project's backbones is like-for-like with each paper row (Table 3's model names).
PAPER_ROW_BACKBONES: dict[str, tuple[str, ...]] = {
    "Proposed Model": ("cnn", "efficientnetlite0"), "VGG-16": ("vgg16",), "ResNet-50": ("resnet50",),
    "MobileNetV2": ("mobilenetv2",), "EfficientNet": ("efficientnetb0", "efficientnetlite0"),
    "DenseNet-121": ("densenet121",),
}
#: The rows of the paper's results layout, in its order.
PAPER_METRICS: tuple[str, ...] = ("accuracy", "precision", "recall", "specificity", "f1", "roc_auc")
_THRESHOLD_METRIC = {"accuracy": "accuracy", "precision": "precision", "recall": "sensitivity",
                     "specificity": "specificity", "f1": "f1"}


def paper_comparison_table(oof: pd.DataFrame, variants: list[str], n_boot: int = 1000, seed: int = 0) -> pd.DataFrame:
    """The paper's results layout (accuracy, precision, recall, specificity, F1, ROC AUC) for each variant's pooled
    out-of-fold predictions at each run's own validation threshold (the ``threshold`` column of ``oof``), with
    patient-bootstrap 95% CIs, beside the paper's reported numbers and the accuracy of always answering "benign" (here
    and at ISIC 2020's prevalence). Columns: ``metric, paper (fusion), <variant>, <variant> CI, ...``."""

    def at(name: str):
        return lambda y, s: threshold_metrics(y, s >= 0.5, 0.5)[name]

    oof = study_folds(oof)
    rows = {m: {"metric": m, "paper (fusion)": PAPER_REPORTED.get(m, float("nan"))} for m in PAPER_METRICS}
    for variant in variants:
        o = oof[oof["variant"] == variant]
        if o.empty:
            continue
        y, decided = o["target"].to_numpy(int), (o["probability"] >= o["threshold"]).to_numpy(float)
        for metric, name in _THRESHOLD_METRIC.items():
            est, lo, hi = bootstrap_ci(y, decided, o["patient_id"], at(name), n_boot=n_boot, seed=seed)
            rows[metric][variant], rows[metric][f"{variant} CI"] = est, f"{lo:.3f}–{hi:.3f}"
        est, lo, hi = bootstrap_ci(y, o["probability"], o["patient_id"], roc_auc, n_boot=n_boot, seed=seed)
        rows["roc_auc"][variant], rows["roc_auc"][f"{variant} CI"] = est, f"{lo:.3f}–{hi:.3f}"
    prevalence = float(oof.drop_duplicates("image_name")["target"].mean())
    rows["accuracy"]["always benign, these data"] = 1 - prevalence
    rows["accuracy"]["always benign, ISIC 2020"] = 1 - ISIC2020_PREVALENCE
    return pd.DataFrame(list(rows.values()))
