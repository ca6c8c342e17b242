"""Notebook 06's sections as functions: rows scored by a run, the validation within copy a with every fold pooled,
and the locked test part scored once — each returning its tables and the sentence the notebook prints, so the
notebook only calls, shows and saves.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import pandas as pd

from ..data.confounds import size_labels
from ..evaluation.clinical import net_benefit_verdict, validation_report
from ..evaluation.results import Estimate
from ..evaluation.shortcuts import stratified_auc_ci
from ..pipeline.skin import image_cues
from ..study.locked import LockedTest, locked_endpoints, locked_rows
from .validation import pooled_out_of_fold


def scored(run: Any, rows: pd.DataFrame, skin_tone: bool = False) -> tuple[pd.DataFrame, int]:
    """``rows`` with the run's calibrated ``probability`` and its ``raw_probability`` (readable images only; an image
    the run cannot read is left out and counted), and with ``skin_tone`` each image's ITA around the lesion (``ita``,
    for the skin-tone subgroups). Returns ``(table, n_unreadable)``."""
    preds = run.predict_frame(rows)
    ok = (preds["error"] == "").to_numpy()
    table = pd.concat([rows[ok].reset_index(drop=True),
                       preds.loc[ok, ["probability", "raw_probability"]].reset_index(drop=True)], axis=1)
    return (with_skin_tone(table) if skin_tone else table), int((~ok).sum())


@dataclass
class CopyAValidation:
    """The validation within copy a, every fold pooled (:func:`validate_within_copy_a`)."""

    table: pd.DataFrame  # the copy-a images with their out-of-fold probability
    n_folds: int
    report: dict[str, Any]  # validation_report of the table
    calibration_prevalence: float | None  # the folds' mean calibration prevalence (None: not recorded)
    net_benefit: pd.DataFrame  # the decision curve (at the stated prevalence where there is one) with ΔNB and CIs
    verdict: dict[str, Any]  # net_benefit_verdict of it
    same_camera: dict[str, float]  # the ROC AUC within one original image size at a time, with its CI and pairs

    @property
    def subgroups(self) -> pd.DataFrame:
        return pd.DataFrame(self.report["subgroups"])

    @property
    def at_prevalence(self) -> dict[str, Any] | None:
        return self.report.get("stated_prevalence")


def validate_within_copy_a(oof: pd.DataFrame, meta: pd.DataFrame, variant: str, stated: float | None,
                           n_boot: int = 1000, seed: int = 0) -> CopyAValidation | None:
    """Copy a's images (``meta``'s ``source_copy == "a"``) scored by the fold run of ``variant`` that never saw their
    patient (cross-validation's out-of-fold predictions ``oof``), every fold pooled: the validation report (at the
    ``stated`` deployment prevalence, probabilities moved there from the folds' calibration prevalence), its decision
    curve's verdict, and the ROC AUC one camera (original image size) at a time. ``None`` without copy-a rows."""
    pooled = pooled_out_of_fold(oof, meta, variant)
    if "source_copy" not in pooled or not (pooled["source_copy"] == "a").any():
        return None
    a = with_skin_tone(pooled[pooled["source_copy"] == "a"].reset_index(drop=True))
    cal_prev = float(a["prevalence"].mean()) if "prevalence" in a and a["prevalence"].notna().all() else None
    res = validation_report(a, prevalence=stated if cal_prev else None, probability_prevalence=cal_prev,
                            n_boot=n_boot, seed=seed)
    at = res.get("stated_prevalence")
    nb = pd.DataFrame(at["net_benefit"] if at else res["net_benefit"])
    camera = (size_labels(a["width"], a["height"], missing="unknown")  # every size its own stratum
              if {"width", "height"} <= set(a) else pd.Series("unknown", index=a.index))
    same = stratified_auc_ci(a["target"], a["probability"], camera, a["patient_id"], n_boot=n_boot, seed=seed)
    return CopyAValidation(a, int(pooled["fold"].nunique()), res, cal_prev, nb, net_benefit_verdict(nb), same)


def with_skin_tone(table: pd.DataFrame) -> pd.DataFrame:
    """``table`` with each image's skin tone around the lesion (``ita``, for the skin-tone subgroups) where it has
    image paths."""
    if "image_path" not in table or not len(table):
        return table
    return table.assign(ita=image_cues(list(table["image_path"]))["ita"].to_numpy())


def _ci(d: dict[str, float], digits: int = 3) -> str:
    return Estimate.from_dict(d).format(digits, ci="")


def copy_a_summary(v: CopyAValidation) -> str:
    """The sentence notebook 06 prints under the within-copy-a section (every number from ``v``)."""
    res, same, at, verdict = v.report, v.same_camera, v.at_prevalence, v.verdict
    text = (f"**Within copy a, {v.n_folds} fold(s) pooled**: {res['n']:,} images of {res['n_patients']:,} patients, "
            f"{res['n_malignant']:,} malignant. ROC AUC **{_ci(res['roc_auc'])}**; melanoma vs nevus "
            f"{res.get('roc_auc_melanoma_vs_nevus', float('nan')):.3f}. **One camera at a time** (pairs within the same "
            f"original image size only, {same['pairs']:,} of {same['all_pairs']:,} melanoma–benign pairs): "
            f"{_ci(same)}.\n\n")
    if at:
        clear = verdict["clear"]
        text += (f"Decision curve at prevalence {at['prevalence']:.4f} (from the folds' calibration prevalence "
                 f"{v.calibration_prevalence:.3f}): the point estimate beats both default strategies at "
                 f"{len(verdict['point'])} of {verdict['n_thresholds']} threshold probabilities; **with both 95% "
                 f"intervals above 0 at {len(clear)}**"
                 + (f" ({100 * min(clear):.0f}%–{100 * max(clear):.0f}%)" if clear else "") + ". ")
    else:
        text += "No deployment prevalence stated: the decision curve is at copy a's own prevalence. "
    ops = [(op["name"], op["at_prevalence"]) for op in res["operating_points"] if op.get("at_prevalence")]
    text += "; ".join(f"{name}: NNB {_ci(at_op['nnb'], 0)} at {at_op['prevalence']:g}" for name, at_op in ops)
    return text + (". These operating points are chosen on the same images (each bootstrap resample chooses again); "
                   "each fold run's own validation threshold is not pooled here. Subgroups below are within copy a, "
                   "every fold pooled.")


def score_locked(final: Any, main: pd.DataFrame, locked: LockedTest, external: pd.DataFrame | None = None,
                 n_boot: int = 1000, seed: int = 0) -> tuple[pd.DataFrame, dict[str, Any]]:
    """The locked part scored once by ``final`` (trained on every other patient): its endpoints
    (:func:`~melanoma_utils.study.locked.locked_endpoints`: all locked patients, within copy a, melanoma vs nevus,
    one camera at a time, each external source's locked lesions) and the validation report of the locked patients
    at ``final``'s own threshold. ``main``: every row of the main data set (the locked ones are picked here)."""
    locked_main, _ = scored(final, locked_rows(main, locked))
    locked_ext = None
    if external is not None:
        parts = [locked_rows(external, locked, s) for s in sorted(set(external["source"]))]
        locked_ext, _ = scored(final, pd.concat(parts, ignore_index=True))
    table = locked_endpoints(locked_main, locked_ext, n_boot=n_boot, seed=seed)
    report = validation_report(locked_main, threshold=final.threshold, probability_prevalence=final.prevalence,
                               n_boot=n_boot, seed=seed)
    return table, report


def locked_summary(locked: LockedTest, variant: str, n_trained: int, table: pd.DataFrame, report: dict[str, Any],
                   threshold: float) -> str:
    """The sentence notebook 06 prints under the locked part (every number from its arguments)."""
    at = next(op for op in report["operating_points"] if op["name"] == "validation threshold")
    endpoints = "; ".join(
        f"{r.endpoint}: ROC AUC **{r.roc_auc:.3f}** ({r.ci_low:.3f}–{r.ci_high:.3f}; {r.n:,} images, "
        f"{r.n_malignant:,} malignant)" if r.roc_auc == r.roc_auc else
        f"{r.endpoint}: too few for an AUC ({r.n:,} images, {r.n_malignant:,} malignant)" for r in table.itertuples())
    return (f"**Locked test part** ({locked.summary()}); the default `{variant}` retrained on {n_trained:,} other "
            f"images: {endpoints}. At the threshold fixed on its validation split ({threshold:.4f}): sensitivity "
            f"{_ci(at['sensitivity'], 2)}, specificity {_ci(at['specificity'], 2)} on all locked patients.")
