"""Choosing a calibrator on a run's validation split (:func:`fit_calibrator`): each candidate map (none, Platt,
isotonic; :mod:`melanoma_utils.evaluation.calibration`) scored out of fold by patient-grouped cross-validation, by
its Brier score and, guarded, by its held-out calibration slope (:func:`slope_guard`); :func:`calibrator_choice_table`
says how the choice was made."""

from __future__ import annotations

from typing import Sequence

import numpy as np
import pandas as pd

from .calibration import CALIBRATION_METHODS, EPS, Calibrator, calibration_intercept_slope, fit_map
from .metrics import MetricError, _check, _need_both, patient_bootstrap


def fit_calibrator(y_true: Sequence, raw: Sequence, groups: Sequence, methods: Sequence[str] = CALIBRATION_METHODS,
                   n_splits: int = 5, seed: int = 0, n_boot: int = 100) -> Calibrator:
    """Fit a calibrator on validation predictions, chosen by patient-grouped cross-validation, then refitted on all
    rows. Needs both classes.

    The choice: every method's out-of-fold probabilities give its Brier score and its held-out calibration slope (with
    a patient-bootstrap CI over ``n_boot`` resamples); a method whose held-out slope lies farther from 1 (on the log
    scale) than the raw output's own is not chosen (:func:`slope_guard`: a map that fits the Brier score by squeezing
    or stretching the probabilities), and of the rest the lowest Brier score wins. ``selection`` records
    ``brier_<m>``-style entries as ``<m>`` (Brier), ``slope_<m>``, ``slope_<m>_ci_low``/``_ci_high`` and
    ``slope_refused_<m>`` for a Brier-better method the guard refused.

    A Platt fit whose slope is ≤ 0 (a model at or below chance on these rows) would invert the model's ranking: it is
    refused, isotonic regression (monotone) is used instead, and ``selection["platt_refused_slope"]`` records it."""
    y, r = _check(y_true, raw)
    _need_both(y, "calibration")
    g = np.asarray(groups)
    splits = min(n_splits, int(y.sum()), int(len(y) - y.sum()), len(np.unique(g)))
    scores: dict[str, float] = {}
    if splits >= 2:
        oof = _out_of_fold(y, r, g, methods, splits, seed)
        scores = {m: float(np.mean((p - y) ** 2)) for m, p in oof.items()}
        scores.update(held_out_slopes(y, oof, g, n_boot, seed))
        allowed = slope_guard(scores, r, y, methods)
        best = min(allowed, key=lambda m: scores[m])
        scores.update({f"slope_refused_{m}": scores[f"slope_{m}"] for m in methods
                       if m not in allowed and scores[m] < scores[best]})
    else:
        best = "platt" if "platt" in methods else methods[0]
    cal = fit_map(best, y, r)
    slope = cal.params["ab"][1] if cal.method == "platt" else 1.0
    if slope <= 0:  # a flat or inverted Platt fit would reverse the ranking it was handed; isotonic never does
        cal = fit_map("isotonic", y, r)
        scores = {**scores, "platt_refused_slope": float(slope)}
    cal.prevalence, cal.n_fit, cal.selection = float(y.mean()), int(len(y)), scores
    return cal


def _out_of_fold(y: np.ndarray, r: np.ndarray, g: np.ndarray, methods: Sequence[str], splits: int,
                 seed: int) -> dict[str, np.ndarray]:
    """Each method's patient-grouped out-of-fold probabilities (a fold whose training part has one class keeps the
    raw output)."""
    from sklearn.model_selection import StratifiedGroupKFold

    cv = StratifiedGroupKFold(n_splits=splits, shuffle=True, random_state=seed)
    oof = {m: r.copy() for m in methods}
    for tr, te in cv.split(r, y, g):
        if 0 < y[tr].sum() < len(tr):
            for m in methods:
                oof[m][te] = fit_map(m, y[tr], r[tr]).transform(r[te])
    return oof


def held_out_slopes(y: np.ndarray, oof: dict[str, np.ndarray], groups: np.ndarray, n_boot: int = 100,
                    seed: int = 0) -> dict[str, float]:
    """``slope_<m>`` with ``_ci_low``/``_ci_high`` (patient bootstrap, ``n_boot`` resamples; none: NaN bounds) of each
    method's out-of-fold probabilities; NaN where the slope cannot be estimated (a constant map, separated classes)."""
    def slopes(idx: np.ndarray) -> dict[str, float]:
        out = {}
        for m, p in oof.items():
            try:
                out[m] = calibration_intercept_slope(y[idx], np.clip(p[idx], EPS, 1 - EPS))[1]
            except MetricError:
                out[m] = float("nan")
        return out

    if n_boot < 1:  # the slopes alone (the guard needs no interval)
        return {k: v for m, sl in slopes(np.arange(len(y))).items()
                for k, v in ((f"slope_{m}", sl), (f"slope_{m}_ci_low", float("nan")), (f"slope_{m}_ci_high", float("nan")))}
    band = patient_bootstrap(slopes, groups, n_boot=n_boot, seed=seed, labels=y)
    res: dict[str, float] = {}
    for m in oof:
        iv = band[m]
        res.update({f"slope_{m}": iv.estimate, f"slope_{m}_ci_low": iv.ci_low, f"slope_{m}_ci_high": iv.ci_high})
    return res


def slope_guard(scores: dict[str, float], raw: np.ndarray, y: np.ndarray, methods: Sequence[str]) -> list[str]:
    """The methods whose held-out calibration slope (``scores["slope_<m>"]``) is at least as close to 1, on the log
    scale, as the raw output's slope on the same rows; ``none`` (the raw output) always passes. A method with no
    estimable slope passes only when the raw output has none either. Never empty: with no method passing (``none``
    not offered), the one closest to 1 is kept."""
    try:
        ref = abs(np.log(calibration_intercept_slope(y, np.clip(raw, EPS, 1 - EPS))[1]))
    except (MetricError, FloatingPointError, ValueError):
        ref = float("nan")

    def distance(m: str) -> float:
        s = scores.get(f"slope_{m}", float("nan"))
        return abs(np.log(s)) if s == s and s > 0 else float("inf")

    allowed = [m for m in methods if m == "none" or (distance(m) <= ref + 1e-9 if ref == ref else True)]
    return allowed or [min(methods, key=distance)]


def calibrator_choice_table(cal: Calibrator) -> pd.DataFrame:
    """How ``cal`` was chosen, one row per candidate map: its cross-validated Brier score, its held-out calibration
    slope with the patient-bootstrap CI, whether the slope guard let it compete (``eligible``) and which was
    ``chosen``. Empty for a calibrator fitted before slopes were recorded."""
    sel, chosen = cal.selection, "none" if cal.method == "identity" else cal.method
    rows = [{"calibrator": m, "brier_cv": sel[m], "slope": sel[f"slope_{m}"], "slope_ci_low": sel[f"slope_{m}_ci_low"],
             "slope_ci_high": sel[f"slope_{m}_ci_high"], "eligible": f"slope_refused_{m}" not in sel,
             "chosen": m == chosen}
            for m in CALIBRATION_METHODS if m in sel and f"slope_{m}" in sel]
    return pd.DataFrame(rows, columns=["calibrator", "brier_cv", "slope", "slope_ci_low", "slope_ci_high", "eligible",
                                       "chosen"])
