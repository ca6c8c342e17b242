"""Generated documentation blocks of the final checks: the locked test part, the decision curve within copy a (all
folds pooled), the calibrator's choice and whether the two importance measures agree (notebooks 04 and 06), and the
metadata-only shortcut table (notebook 01)."""

from __future__ import annotations

from pathlib import Path

import pandas as pd


def _missing(name: str, notebook: str) -> str:
    return f"Not rendered yet: notebook {notebook} writes {name}.\n"


def _ci(est: float, lo: float, hi: float, digits: int = 3) -> str:
    if est != est:
        return "—"
    if lo != lo:
        return f"{est:.{digits}f}"
    sep = " to " if lo < 0 else "–"  # a dash after a minus sign reads as a second minus
    return f"{est:.{digits}f} ({lo:.{digits}f}{sep}{hi:.{digits}f})"


def locked_test_table(report_dir: Path) -> str:
    """The chosen default on the locked test part (``table_locked_test.csv``): one row per endpoint with its ROC AUC
    and patient/lesion-bootstrap CI."""
    path = report_dir / "table_locked_test.csv"
    if not path.is_file():
        return _missing(path.name, "06")
    t = pd.read_csv(path)
    lines = ["| endpoint (locked test part) | images | malignant | ROC AUC (95% CI) |", "|---|---|---|---|"]
    lines += [f"| {r.endpoint} | {int(r.n):,} | {int(r.n_malignant):,} | {_ci(r.roc_auc, r.ci_low, r.ci_high)} |"
              for r in t.itertuples()]
    return "\n".join(lines) + "\n"


def decision_within_copy_a(report_dir: Path) -> str:
    """The decision curve within copy a, every fold pooled (``table_validate_net_benefit_within_copy_a.csv``): at a few
    threshold probabilities, the model's net benefit and its ΔNB against biopsying all, each with its 95% CI, and the
    count of thresholds where both intervals lie above 0."""
    path = report_dir / "table_validate_net_benefit_within_copy_a.csv"
    if not path.is_file():
        return _missing(path.name, "06")
    t = pd.read_csv(path)
    clear = t[(t["delta_all_ci_low"] > 0) & (t["model_ci_low"] > 0)]
    point = t[(t["delta_all"] > 0) & (t["model"] > 0)]
    shown = t[t["threshold"].round(4).isin([0.01, 0.02, 0.05, 0.1, 0.2, 0.3])]
    lines = ["| threshold probability | net benefit (95% CI) | ΔNB vs biopsy all (95% CI) |", "|---|---|---|"]
    lines += [f"| {100 * r.threshold:.0f}% | {_ci(r.model, r.model_ci_low, r.model_ci_high, 4)} | "
              f"{_ci(r.delta_all, r.delta_all_ci_low, r.delta_all_ci_high, 4)} |" for r in shown.itertuples()]
    span = (f" ({100 * clear['threshold'].min():.0f}%–{100 * clear['threshold'].max():.0f}%)" if len(clear) else "")
    lines += ["", f"Above both default strategies in point estimate at {len(point)} of {len(t)} threshold probabilities; "
                  f"with both intervals above 0 (against biopsying all and against biopsying none) at **{len(clear)}**"
                  f"{span}."]
    return "\n".join(lines) + "\n"


def calibrator_choice(report_dir: Path) -> str:
    """How the validated run's calibrator was chosen (``table_validate_calibrator_choice.csv``): each candidate's
    cross-validated Brier score and held-out calibration slope with its CI, eligible under the slope guard, chosen."""
    path = report_dir / "table_validate_calibrator_choice.csv"
    if not path.is_file():
        return _missing(path.name, "06")
    t = pd.read_csv(path)
    lines = ["| calibrator | cross-validated Brier | held-out slope (95% CI) | slope guard | chosen |", "|---|---|---|---|---|"]
    lines += [f"| {r.calibrator} | {r.brier_cv:.4f} | {_ci(r.slope, r.slope_ci_low, r.slope_ci_high, 2)} | "
              f"{'passes' if r.eligible else 'refused'} | {'yes' if r.chosen else ''} |" for r in t.itertuples()]
    return "\n".join(lines) + "\n"


def importance_agreement(report_dir: Path) -> str:
    """Permutation importance against mean |SHAP| per metadata group (``table_importance_agreement.csv``): each
    group's value and rank under both."""
    path = report_dir / "table_importance_agreement.csv"
    if not path.is_file():
        return _missing(path.name, "04")
    t = pd.read_csv(path)
    lines = ["| metadata group | permutation: drop in ROC AUC (rank) | mean \\|SHAP\\| (rank) |", "|---|---|---|"]
    lines += [f"| {r.group} | {r.permutation:+.4f} ({int(r.permutation_rank)}) | {r.shap:.4f} ({int(r.shap_rank)}) |"
              for r in t.itertuples()]
    moved = t[t["rank_difference"].abs() >= 2]
    lines += ["", ("The two measures disagree on " + ", ".join(moved["group"]) + " (two or more places apart)."
                   if len(moved) else "The two measures rank every group within one place of each other.")]
    return "\n".join(lines) + "\n"


def metadata_only_table(report_dir: Path) -> str:
    """The acquisition shortcut in the full metadata (``table_metadata_only_auc.csv``, notebook 01): each metadata
    feature set's ROC AUC, mean ± SD over patient-grouped folds."""
    path = report_dir / "table_metadata_only_auc.csv"
    if not path.is_file():
        return _missing(path.name, "01")
    t = pd.read_csv(path)
    lines = ["| metadata features | ROC AUC (mean ± sd over folds) |", "|---|---|"]
    lines += [f"| {r.features} | {r.auc_mean:.3f} ± {r.auc_sd:.3f} |" for r in t.itertuples()]
    return "\n".join(lines) + "\n"
