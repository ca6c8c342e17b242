"""Generated documentation blocks of the final checks: the locked test part, the decision curve within copy a (all
folds pooled), the calibrator's choice and whether the two importance measures agree (notebooks 04 and 06), and the
metadata-only shortcut table (notebook 01)."""

from __future__ import annotations

from pathlib import Path

import pandas as pd

from ..evaluation.results import Estimate


def _missing(name: str, notebook: str) -> str:
    return f"Not rendered yet: notebook {notebook} writes {name}.\n"


def _table(header: list[str], rows: list[str], after: list[str] | None = None) -> str:
    """A Markdown table (its separator from the header's width), then ``after``'s lines."""
    lines = ["| " + " | ".join(header) + " |", "|" + "---|" * len(header), *rows, *(after or [])]
    return "\n".join(lines) + "\n"


#: What a table cell of this module shows for a value not measured.
MISSING = "—"


def locked_test_table(report_dir: Path) -> str:
    """The chosen default on the locked test part (``table_locked_test.csv``): one row per endpoint with its ROC AUC
    and patient/lesion-bootstrap CI."""
    if not (report_dir / "table_locked_test.csv").is_file():
        return _missing("table_locked_test.csv", "06")
    t = pd.read_csv(report_dir / "table_locked_test.csv")
    return _table(["endpoint (locked test part)", "images", "malignant", "ROC AUC (95% CI)"],
                  [f"| {r.endpoint} | {int(r.n):,} | {int(r.n_malignant):,} | "
                   f"{Estimate.cell(r.roc_auc, r.ci_low, r.ci_high, missing=MISSING)} |"
                   for r in t.itertuples()])


def decision_within_copy_a(report_dir: Path) -> str:
    """The decision curve within copy a, every fold pooled (``table_validate_net_benefit_within_copy_a.csv``): at a few
    threshold probabilities, the model's net benefit and its ΔNB against biopsying all, each with its 95% CI, and the
    count of thresholds where both intervals lie above 0."""
    if not (report_dir / "table_validate_net_benefit_within_copy_a.csv").is_file():
        return _missing("table_validate_net_benefit_within_copy_a.csv", "06")
    t = pd.read_csv(report_dir / "table_validate_net_benefit_within_copy_a.csv")
    clear = t[(t["delta_all_ci_low"] > 0) & (t["model_ci_low"] > 0)]
    point = t[(t["delta_all"] > 0) & (t["model"] > 0)]
    shown = t[t["threshold"].round(4).isin([0.01, 0.02, 0.05, 0.1, 0.2, 0.3])]
    span = (f" ({100 * clear['threshold'].min():.0f}%–{100 * clear['threshold'].max():.0f}%)" if len(clear) else "")
    return _table(["threshold probability", "net benefit (95% CI)", "ΔNB vs biopsy all (95% CI)"],
                  [f"| {100 * r.threshold:.0f}% | {Estimate.cell(r.model, r.model_ci_low, r.model_ci_high, 4, MISSING)} | "
                   f"{Estimate.cell(r.delta_all, r.delta_all_ci_low, r.delta_all_ci_high, 4, MISSING)} |"
                   for r in shown.itertuples()],
                  ["", f"Above both default strategies in point estimate at {len(point)} of {len(t)} threshold "
                       f"probabilities; with both intervals above 0 (against biopsying all and against biopsying none) "
                       f"at **{len(clear)}**{span}."])


def calibrator_choice(report_dir: Path) -> str:
    """How the validated run's calibrator was chosen (``table_validate_calibrator_choice.csv``): each candidate's
    cross-validated Brier score and held-out calibration slope with its CI, eligible under the slope guard, chosen."""
    if not (report_dir / "table_validate_calibrator_choice.csv").is_file():
        return _missing("table_validate_calibrator_choice.csv", "06")
    t = pd.read_csv(report_dir / "table_validate_calibrator_choice.csv")
    return _table(["calibrator", "cross-validated Brier", "held-out slope (95% CI)", "slope guard", "chosen"],
                  [f"| {r.calibrator} | {r.brier_cv:.4f} | {Estimate.cell(r.slope, r.slope_ci_low, r.slope_ci_high, 2, MISSING)} | "
                   f"{'passes' if r.eligible else 'refused'} | {'yes' if r.chosen else ''} |" for r in t.itertuples()])


def importance_agreement(report_dir: Path) -> str:
    """Permutation importance against mean |SHAP| per metadata group (``table_importance_agreement.csv``): each
    group's value and rank under both."""
    if not (report_dir / "table_importance_agreement.csv").is_file():
        return _missing("table_importance_agreement.csv", "04")
    t = pd.read_csv(report_dir / "table_importance_agreement.csv")
    moved = t[t["rank_difference"].abs() >= 2]
    return _table(["metadata group", "permutation: drop in ROC AUC (rank)", "mean \\|SHAP\\| (rank)"],
                  [f"| {r.group} | {r.permutation:+.4f} ({int(r.permutation_rank)}) | {r.shap:.4f} ({int(r.shap_rank)}) |"
                   for r in t.itertuples()],
                  ["", ("The two measures disagree on " + ", ".join(moved["group"]) + " (two or more places apart)."
                        if len(moved) else "The two measures rank every group within one place of each other.")])


def metadata_only_table(report_dir: Path) -> str:
    """The acquisition shortcut in the full metadata (``table_metadata_only_auc.csv``, notebook 01): each metadata
    feature set's ROC AUC, mean ± SD over patient-grouped folds."""
    if not (report_dir / "table_metadata_only_auc.csv").is_file():
        return _missing("table_metadata_only_auc.csv", "01")
    t = pd.read_csv(report_dir / "table_metadata_only_auc.csv")
    return _table(["metadata features", "ROC AUC (mean ± sd over folds)"],
                  [f"| {r.features} | {r.auc_mean:.3f} ± {r.auc_sd:.3f} |" for r in t.itertuples()])
