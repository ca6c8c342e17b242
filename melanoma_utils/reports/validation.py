"""Validating a trained run on any data set in the ISIC schema: join predictions to the metadata, build the
clinical report (:func:`melanoma_utils.evaluation.clinical.validation_report`), and write it as ``metrics.json``,
figures and tables. Used by ``python -m melanoma_utils evaluate --out DIR`` and notebook 06.
"""

from __future__ import annotations

import os
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np
import pandas as pd

from ..atomic import json_safe
from ..data.csvfiles import write_csv
from ..evaluation.results import Estimate

if TYPE_CHECKING:
    from matplotlib.figure import Figure

#: Metadata columns carried into the validation table when the CSV has them (for subgroups).
METADATA_COLUMNS: tuple[str, ...] = ("patient_id", "target", "diagnosis", "sex", "age", "site", "width", "height",
                                     "source_copy")


@dataclass
class Predictions:
    """Predictions joined to their metadata, with what the predictions file says about its scale."""

    table: pd.DataFrame
    excluded: dict[str, int]
    threshold: float | None  # the decision threshold on the probabilities' scale (None: unknown)
    prevalence: float | None  # the prevalence the probabilities are calibrated at (None: unknown)


def _constant(preds: pd.DataFrame, column: str, source: str) -> float | None:
    if column not in preds:
        return None
    values = pd.to_numeric(preds[column], errors="coerce").dropna().unique()
    if len(values) == 0:
        return None
    if len(values) > 1:
        raise ValueError(f"{source}: column {column!r} should hold one value (what predict wrote); found {len(values)}")
    return float(values[0])


def join(preds: pd.DataFrame, meta: pd.DataFrame, source: str = "predictions", threshold: float | None = None,
         run_config: dict[str, Any] | None = None) -> Predictions:
    """Validate and join a predictions table (from ``predict``) to normalised metadata.

    The threshold is ``threshold`` if given, else the predictions' ``threshold`` column, else the run's; the
    probabilities' prevalence is the predictions' ``prevalence`` column, else the run calibrator's.
    """
    from ..evaluation.metrics import join_predictions

    table, excluded = join_predictions(preds, meta, source, columns=[c for c in METADATA_COLUMNS if c in meta])
    if "ita" in preds and "ita" not in table:  # skin tone measured by predict on the images (subgroups)
        ita = pd.to_numeric(preds.drop_duplicates("image_name").set_index("image_name")["ita"], errors="coerce")
        table = table.assign(ita=table["image_name"].map(ita).to_numpy(float))
    run_config = run_config or {}
    if threshold is None:
        threshold = _constant(preds, "threshold", source)
    if threshold is None and "threshold" in run_config:
        threshold = float(run_config["threshold"])
    prevalence = _constant(preds, "prevalence", source)
    if prevalence is None and run_config.get("calibration"):
        prevalence = float(run_config["calibration"]["prevalence"])
    return Predictions(table, excluded, threshold, prevalence)


def operating_points_table(report: dict[str, Any]) -> pd.DataFrame:
    """One row per operating point: threshold and each rate as estimate with its CI columns."""
    rows = []
    for op in report["operating_points"]:
        row: dict[str, Any] = {"operating point": op["name"], "threshold": op["threshold"]}
        for key in ("sensitivity", "specificity", "ppv", "npv", "nnb", "biopsy_rate"):
            row.update(Estimate.from_dict(op[key]).columns(key))
        at = op.get("at_prevalence")
        if at:
            for key in ("ppv", "npv", "nnb"):
                row.update(Estimate.from_dict(at[key]).columns(f"{key}_at_{at['prevalence']:g}"))
        rows.append(row)
    return pd.DataFrame(rows)


def report_figures(report: dict[str, Any], tag: str = "", what: str = "") -> dict[str, "Figure"]:
    """``reliability``, ``decision_curve`` and ``subgroups`` figures of a validation report; ``what`` (the model and
    the images, e.g. ``"'fusion, clinical', fold 0's held-out patients"``) ends every title, with the image count."""
    from . import plots

    of = f" — {what} (n={report['n']:,})" if what else f" (n={report['n']:,})"

    curves = {f"calibrated (n={report['n']:,}, prevalence {report['prevalence']:.3f})": pd.DataFrame(report["reliability"])}
    dca = {"model": pd.DataFrame(report["net_benefit"])}
    at = report.get("stated_prevalence")
    if at:
        curves[f"moved to prevalence {at['prevalence']:.4f} (reweighted)"] = pd.DataFrame(at["reliability"])
        dca[f"model at prevalence {at['prevalence']:.4f}"] = pd.DataFrame(at["net_benefit"])
    figs = {"reliability": plots.reliability_diagram(curves, "Reliability (equal-mass bins)" + of, tag)}
    if at:
        figs["decision_curve"] = plots.decision_curve({"model": dca["model"]}, f"Decision curve at the data's prevalence "
                                                      f"({report['prevalence']:.3f})" + of, tag)
        figs["decision_curve_stated_prevalence"] = plots.decision_curve(
            {"model": pd.DataFrame(at["net_benefit"])}, f"Decision curve at prevalence {at['prevalence']:.4f}" + of, tag)
    else:
        figs["decision_curve"] = plots.decision_curve(dca, f"Decision curve (prevalence {report['prevalence']:.3f})" + of, tag)
    figs["subgroups"] = plots.forest_plot(pd.DataFrame(report["subgroups"]), "ROC AUC by subgroup" + of, tag,
                                          overall=report["roc_auc"]["estimate"])
    return figs


def write_report(report: dict[str, Any], out_dir: str | os.PathLike[str], tag: str = "") -> list[Path]:
    """Write ``metrics.json``, ``operating_points.csv``, ``subgroups.csv``, ``net_benefit.csv`` and the PNG figures
    into ``out_dir`` (each under a temporary name, then moved into place). Returns the paths."""
    import matplotlib.pyplot as plt

    from ..atomic import write_json
    from .plots import save_figure

    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    paths = [write_json(out / "metrics.json", json_safe(report))]
    tables = {"operating_points": operating_points_table(report), "subgroups": pd.DataFrame(report["subgroups"]),
              "net_benefit": pd.DataFrame(report["net_benefit"]), "reliability": pd.DataFrame(report["reliability"])}
    for name, t in tables.items():
        paths.append(write_csv(t, out / f"{name}.csv"))
    for name, fig in report_figures(report, tag).items():
        paths.append(save_figure(fig, out / f"{name}.png"))
        plt.close(fig)
    return paths


def summary_lines(report: dict[str, Any]) -> list[str]:
    """A few lines a person reads first: discrimination, calibration, the operating points."""

    def ci(d: dict[str, float], digits: int = 3) -> str:
        e = Estimate.from_dict(d)
        return e.format(digits, ci="", missing="not estimable") + (
            "" if e.has_interval or not np.isfinite(e.value) else " (no interval: too few usable resamples)")

    lines = [f"n={report['n']:,} ({report['n_malignant']:,} malignant, {report['n_patients']:,} patients, "
             f"prevalence {report['prevalence']:.3f})",
             f"  ROC AUC {ci(report['roc_auc'])}   PR AUC {ci(report['pr_auc'])} (chance {report['pr_auc']['chance']:.3f})"
             + (f"   melanoma vs nevus {report['roc_auc_melanoma_vs_nevus']:.3f}" if "roc_auc_melanoma_vs_nevus" in report else ""),
             f"  Brier {ci(report['brier'])}   ECE {ci(report['ece'])}   calibration slope {ci(report['calibration_slope'], 2)}"
             f"   intercept {ci(report['calibration_intercept'], 2)}"
             + (f"   (raw output: Brier {report['brier_raw']:.3f}, ECE {report['ece_raw']:.3f})" if "brier_raw" in report else "")]
    for op in report["operating_points"]:
        line = (f"  {op['name']} (threshold {op['threshold']:.4f}): sensitivity {ci(op['sensitivity'], 2)}, specificity "
                f"{ci(op['specificity'], 2)}, PPV {ci(op['ppv'], 2)}, NNB {ci(op['nnb'], 1)}")
        if op.get("at_prevalence"):
            at = op["at_prevalence"]
            line += f"; at prevalence {at['prevalence']:.4f}: PPV {ci(at['ppv'], 3)}, NNB {ci(at['nnb'], 0)}"
        lines.append(line)
    small = [f"{r['factor']}={r['group']}" for r in report["subgroups"] if r["note"].startswith("too few")]
    lines.append(f"  subgroups: {len(report['subgroups']) - len(small)} with an AUC"
                 + (f"; too few for one: {', '.join(small[:8])}{' …' if len(small) > 8 else ''}" if small else ""))
    return lines


def pooled_out_of_fold(oof: pd.DataFrame, meta: pd.DataFrame, variant: str, repeat: int = 0) -> pd.DataFrame:
    """Every image once, scored by the fold run of ``variant`` that never saw its patient (cross-validation's
    out-of-fold predictions, fold assignment ``repeat``), joined to ``meta``'s metadata columns for subgroups:
    ``probability``, ``fold``, each fold run's ``threshold`` and calibration ``prevalence`` (where recorded).
    ``ValueError`` naming the variants present when ``variant`` has none."""
    rows = oof[(oof["variant"] == variant) & (oof["repeat"] == repeat if "repeat" in oof else True)]
    if rows.empty:
        raise ValueError(f"no out-of-fold predictions of {variant!r} (repeat {repeat}); present: "
                         f"{', '.join(sorted(set(map(str, oof['variant']))))}")
    keep = [c for c in ("image_name", "fold", "probability", "threshold", "prevalence") if c in rows]
    cols = ["image_name", *(c for c in (*METADATA_COLUMNS, "image_path") if c in meta and c != "image_name")]
    out = rows[keep].assign(image_name=rows["image_name"].astype(str)).merge(
        meta[cols].assign(image_name=meta["image_name"].astype(str)), on="image_name", how="inner", validate="1:1")
    if len(out) != len(rows):
        raise ValueError(f"{len(rows) - len(out)} out-of-fold image(s) of {variant!r} are not in the metadata")
    return out.reset_index(drop=True)
