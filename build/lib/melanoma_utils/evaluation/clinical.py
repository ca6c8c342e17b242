"""What a clinician asks of a melanoma model: operating points with the number needed to biopsy, decision
curves, subgroups, and one validation report that gathers them (the ``evaluate`` command and notebook 06).

* :func:`predictive_values` / :func:`operating_point`: sensitivity, specificity, PPV, NPV and the
  **number needed to biopsy** (NNB = 1 / PPV: biopsies per melanoma found), at the data's prevalence or at a
  stated one (PPV/NPV by Bayes' rule from sensitivity and specificity);
* :func:`operating_points`: at fixed sensitivities and at given thresholds, with patient-bootstrap 95% CIs;
* :func:`net_benefit`: decision-curve analysis (Vickers & Elkin 2006): ``TP/n − FP/n · pt/(1 − pt)`` against
  *biopsy all* and *biopsy none*;
* :func:`subgroup_table`: ROC AUC with CIs by sex, age band, site, diagnosis contrast and acquisition group;
  a group with too few of a class for an AUC says so (``note``) instead of printing noise;
* :func:`validation_report`: all of the above plus calibration, as the dict written to ``metrics.json``.
"""

from __future__ import annotations

from typing import Any, Callable, Sequence

import numpy as np
import pandas as pd

from ..data.confounds import size_labels
from .calibration import (
    brier_score,
    calibration_intercept_slope,
    check_prevalence,
    expected_calibration_error,
    prevalence_weights,
    prior_shift,
    reliability_table,
)
from .metrics import MetricError, _check, bootstrap_ci, choose_threshold, patient_bootstrap, roc_auc
from .results import RANKING_METRICS

#: Fixed sensitivities reported as operating points.
SENSITIVITIES: tuple[float, ...] = (0.90, 0.95)
#: Threshold probabilities of the decision curve: 1% to 30% (a melanoma is worth a few benign biopsies).
DCA_THRESHOLDS: np.ndarray = np.round(np.arange(0.01, 0.3001, 0.01), 4)
#: A subgroup needs at least this many images of each class for an AUC.
MIN_PER_CLASS = 5
def age_band(age: pd.Series | Sequence, width: int = 10, edges: Sequence[float] | None = None) -> pd.Series:
    """The study's one age-band definition, as an ordered categorical (``unknown`` last, for missing ages).

    Without ``edges``: bands ``width`` years wide, named like ``"40–49"`` (the EDA's rates). With ``edges``
    (e.g. ``(30, 45, 60, 75)``): ``"<30"``, ``"30–44"``, …, ``"75+"``: coarser bands, for analyses in which every
    band needs enough melanomas of its own (subgroup AUCs)."""
    a = pd.Series(pd.to_numeric(pd.Series(age), errors="coerce").to_numpy(), index=age.index if isinstance(age, pd.Series) else None)
    if edges is None:
        lo = (a // width * width).astype("Int64")
        labels = lo.map(lambda v: f"{v}–{v + width - 1}" if pd.notna(v) else "unknown")
        order = [f"{v}–{v + width - 1}" for v in sorted(lo.dropna().unique())] + ["unknown"]
    else:
        e = [float(x) for x in edges]
        names = [f"<{e[0]:g}"] + [f"{lo:g}–{hi - 1:g}" for lo, hi in zip(e, e[1:])] + [f"{e[-1]:g}+"]
        codes = np.searchsorted(e, a.to_numpy(), side="right")
        labels = pd.Series([names[c] if np.isfinite(v) else "unknown" for c, v in zip(codes, a.to_numpy())], index=a.index)
        order = names + ["unknown"]
    return pd.Series(pd.Categorical(labels, categories=order, ordered=True), index=a.index, name="age band")


#: Age-band edges of the subgroup analysis (:func:`age_band`): coarser than the EDA's 10-year
#: bands because each band needs enough melanomas for an AUC of its own.
SUBGROUP_AGE_EDGES: tuple[float, ...] = (30, 45, 60, 75)


def predictive_values(sensitivity: float, specificity: float, prevalence: float) -> tuple[float, float]:
    """``(PPV, NPV)`` at ``prevalence`` by Bayes' rule; NaN where a denominator is zero."""
    pi = check_prevalence(prevalence)
    tp, fp = sensitivity * pi, (1 - specificity) * (1 - pi)
    tn, fn = specificity * (1 - pi), (1 - sensitivity) * pi
    ppv = tp / (tp + fp) if tp + fp > 0 else float("nan")
    npv = tn / (tn + fn) if tn + fn > 0 else float("nan")
    return float(ppv), float(npv)


def operating_point(y_true: Sequence, y_prob: Sequence, threshold: float, prevalence: float | None = None) -> dict[str, float]:
    """Sensitivity, specificity, PPV, NPV and NNB (= 1 / PPV) of ``prob >= threshold``.

    PPV and NPV are at the data's own malignant share unless ``prevalence`` is given. A rate whose
    denominator is zero is NaN (e.g. no image called malignant: PPV and NNB are NaN).
    """
    y, p = _check(y_true, y_prob)
    call = p >= threshold
    n_pos, n_neg = int(y.sum()), int(len(y) - y.sum())
    sens = float((call & (y == 1)).sum() / n_pos) if n_pos else float("nan")
    spec = float((~call & (y == 0)).sum() / n_neg) if n_neg else float("nan")
    if prevalence is None:
        n_call, n_rest = int(call.sum()), int((~call).sum())
        ppv = float((call & (y == 1)).sum() / n_call) if n_call else float("nan")
        npv = float((~call & (y == 0)).sum() / n_rest) if n_rest else float("nan")
    else:
        ppv, npv = predictive_values(sens, spec, prevalence)
    nnb = 1.0 / ppv if ppv and np.isfinite(ppv) else float("nan")
    return {"threshold": float(threshold), "sensitivity": sens, "specificity": spec, "ppv": ppv, "npv": npv,
            "nnb": nnb, "biopsy_rate": float(call.mean())}


def _with_ci(stat: Callable[[np.ndarray, np.ndarray], dict[str, float]], y: np.ndarray, p: np.ndarray,
             groups: Sequence, n_boot: int, seed: int) -> dict[str, Any]:
    """``stat(y, p)`` with a patient-bootstrap 95% CI (:func:`~melanoma_utils.evaluation.metrics.patient_bootstrap`) for
    each of its values: ``{key: {estimate, ci_low, ci_high}}``."""
    band = patient_bootstrap(lambda idx: stat(y[idx], p[idx]), groups, n_boot, seed=seed, labels=y)
    return {k: _interval(r.estimate, r.ci_low, r.ci_high) for k, r in band.items()}


def operating_points(y_true: Sequence, y_prob: Sequence, groups: Sequence, thresholds: dict[str, float] | None = None,
                     sensitivities: Sequence[float] = SENSITIVITIES, prevalence: float | None = None,
                     n_boot: int = 1000, seed: int = 0) -> list[dict[str, Any]]:
    """Operating points with patient-bootstrap CIs.

    * ``sensitivity 0.90`` etc.: the highest threshold reaching that sensitivity ON THIS DATA (chosen again in
      each resample): how specific the model can be at the sensitivity we need — an in-sample choice, labelled;
    * each named entry of ``thresholds`` (e.g. the validation threshold), fixed in advance.

    Each entry has ``name``, ``rule``, ``threshold`` and, with CIs, sensitivity, specificity, PPV, NPV, NNB and
    the biopsy rate at the data's prevalence, plus ``at_prevalence`` (PPV, NPV, NNB) when ``prevalence`` is given.
    """
    y, p = _check(y_true, y_prob)
    entries: list[tuple[str, str, Callable[[np.ndarray, np.ndarray], float]]] = []
    for s in sensitivities:
        entries.append((f"sensitivity {s:.2f}", f"highest threshold with sensitivity >= {s:.2f} on these data",
                        lambda yy, pp, s=s: choose_threshold(yy, pp, s)))
    for name, t in (thresholds or {}).items():
        entries.append((name, f"fixed threshold {t:.4g}", lambda yy, pp, t=t: t))
    out = []
    for name, rule, pick in entries:
        def stat(yy: np.ndarray, pp: np.ndarray, pick=pick) -> dict[str, float]:
            op = operating_point(yy, pp, pick(yy, pp))
            if prevalence is not None:
                ppv, npv = predictive_values(op["sensitivity"], op["specificity"], prevalence)
                op.update(ppv_at_prevalence=ppv, npv_at_prevalence=npv,
                          nnb_at_prevalence=1 / ppv if ppv and np.isfinite(ppv) else float("nan"))
            return op

        res = _with_ci(stat, y, p, groups, n_boot, seed)
        entry: dict[str, Any] = {"name": name, "rule": rule, "threshold": res.pop("threshold")["estimate"]}
        if prevalence is not None:
            entry["at_prevalence"] = {"prevalence": prevalence,
                                      **{k.replace("_at_prevalence", ""): res.pop(k) for k in list(res) if k.endswith("_at_prevalence")}}
        entry.update(res)
        out.append(entry)
    return out


def net_benefit(y_true: Sequence, y_prob: Sequence, thresholds: Sequence[float] = DCA_THRESHOLDS,
                weights: Any = None, groups: Sequence | None = None, n_boot: int = 200, seed: int = 0) -> pd.DataFrame:
    """Decision curve: net benefit of biopsying when ``prob >= pt``, of biopsying all, and of none (0).

    ``NB = TP/n − FP/n · pt / (1 − pt)``: true positives found, minus false positives priced at the odds of
    the threshold probability. ``weights`` reweights rows (e.g. :func:`prevalence_weights` for a stated
    prevalence). Columns: ``threshold, model, biopsy_all, biopsy_none, delta_all`` (ΔNB against biopsying all;
    against none it is ``model`` itself); with ``groups`` (patients) also ``model_ci_low, model_ci_high`` and
    ``delta_all_ci_low, delta_all_ci_high``, patient-bootstrap 95% intervals of the same resamples
    (:func:`~melanoma_utils.evaluation.metrics.patient_bootstrap`, ``n_boot`` resamples).
    """
    y, p = _check(y_true, y_prob)
    w = np.ones(len(y)) if weights is None else np.asarray(weights, float)
    table = _net_benefit(y, p, w, thresholds)
    table["delta_all"] = table["model"] - table["biopsy_all"]
    if groups is not None:
        def curve(idx: np.ndarray) -> dict[str, float]:
            nb = _net_benefit(y[idx], p[idx], w[idx], thresholds)
            return {**{f"model {t}": v for t, v in zip(thresholds, nb["model"])},
                    **{f"delta_all {t}": v for t, v in zip(thresholds, nb["model"] - nb["biopsy_all"])}}

        band = patient_bootstrap(curve, groups, n_boot, seed=seed, labels=y)
        for col in ("model", "delta_all"):
            table[f"{col}_ci_low"] = [band[f"{col} {t}"].ci_low for t in thresholds]
            table[f"{col}_ci_high"] = [band[f"{col} {t}"].ci_high for t in thresholds]
    return table


def net_benefit_verdict(table: pd.DataFrame) -> dict[str, Any]:
    """What a decision curve with intervals (:func:`net_benefit` with ``groups``) shows: the thresholds where the
    model's net benefit beats biopsying all AND biopsying none with both 95% intervals above 0 (``clear``), and
    those where only the point estimates do (``point``), each as a list of threshold probabilities."""
    point = table[(table["delta_all"] > 0) & (table["model"] > 0)]
    clear = (table[(table["delta_all_ci_low"] > 0) & (table["model_ci_low"] > 0)]
             if "delta_all_ci_low" in table else table.iloc[:0])
    return {"n_thresholds": int(len(table)), "point": [float(t) for t in point["threshold"]],
            "clear": [float(t) for t in clear["threshold"]]}


def _net_benefit(y: np.ndarray, p: np.ndarray, w: np.ndarray, thresholds: Sequence[float]) -> pd.DataFrame:
    total = w.sum()
    pos = np.sum(w * y) / total
    rows = []
    for pt in thresholds:
        if not 0 < pt < 1:
            raise MetricError(f"threshold probabilities must be in (0, 1); got {pt}")
        odds = pt / (1 - pt)
        call = p >= pt
        tp = np.sum(w * (call & (y == 1))) / total
        fp = np.sum(w * (call & (y == 0))) / total
        rows.append({"threshold": float(pt), "model": float(tp - fp * odds),
                     "biopsy_all": float(pos - (1 - pos) * odds), "biopsy_none": 0.0})
    return pd.DataFrame(rows)


def acquisition_group(width: Any, height: Any, top: int = 4) -> pd.Series:
    """The original image size (``W×H``) of each row, keeping the ``top`` most frequent sizes and pooling
    the rest as ``other``; ``unknown`` without width/height. Image size stands for camera and clinic."""
    size = size_labels(width, height, missing="unknown")
    known = size != "unknown"
    common = size[known].value_counts().index[:top]
    return size.where(~known | size.isin(common), "other")


def _auc_row(factor: str, group: str, y: np.ndarray, p: np.ndarray, g: np.ndarray, n_boot: int, seed: int,
             threshold: float | None = None) -> dict[str, Any]:
    n_pos, n_neg = int(y.sum()), int(len(y) - y.sum())
    row: dict[str, Any] = {"factor": factor, "group": group, "n": len(y), "n_malignant": n_pos,
                           "n_patients": int(len(np.unique(g))), "roc_auc": np.nan, "ci_low": np.nan, "ci_high": np.nan,
                           "sensitivity": np.nan, "specificity": np.nan, "note": ""}
    if threshold is not None:  # at the run's fixed threshold: counts shown whatever the group's size
        decided = p >= threshold
        row["sensitivity"] = float(decided[y == 1].mean()) if n_pos else np.nan
        row["specificity"] = float((~decided[y == 0]).mean()) if n_neg else np.nan
    if n_pos < MIN_PER_CLASS or n_neg < MIN_PER_CLASS:
        row["note"] = f"too few for an AUC: {n_pos} malignant, {n_neg} benign (need >= {MIN_PER_CLASS} of each)"
        return row
    try:
        row["roc_auc"], row["ci_low"], row["ci_high"] = bootstrap_ci(y, p, g, roc_auc, n_boot=n_boot, seed=seed)
    except MetricError as exc:  # e.g. the malignant images of the group belong to one or two patients
        row["roc_auc"] = roc_auc(y, p)
        row["note"] = f"no CI: {exc}"
    return row


def subgroup_table(table: pd.DataFrame, score: str = "probability", n_boot: int = 1000, seed: int = 0,
                   threshold: float | None = None) -> pd.DataFrame:
    """ROC AUC with patient-bootstrap CIs per subgroup of ``table`` (``target, patient_id`` and the score,
    plus whichever of ``sex, age, site, diagnosis, width, height, ita, source_copy`` it has), and sensitivity and
    specificity at ``threshold`` when given.

    Factors: sex, age band, anatomical site, acquisition group (original size; only where width/height are
    known), skin tone (ITA bands of :func:`melanoma_utils.data.confounds.ita_band`, from an ``ita`` column), source
    copy, and diagnosis contrasts: *all malignant vs the benign images of each diagnosis*. A group with fewer than
    5 of either class gets no AUC and a ``note`` saying so.
    Columns: ``factor, group, n, n_malignant, n_patients, roc_auc, ci_low, ci_high, sensitivity, specificity, note``.
    """
    from ..data.confounds import ita_band

    y = table["target"].to_numpy().astype(int)
    p = table[score].to_numpy(float)
    g = table["patient_id"].to_numpy()
    factors: dict[str, pd.Series] = {}
    if "sex" in table:
        factors["sex"] = table["sex"].astype(str).reset_index(drop=True)
    if "age" in table:
        factors["age band"] = age_band(table["age"].reset_index(drop=True), edges=SUBGROUP_AGE_EDGES)
    if "site" in table:
        factors["site"] = table["site"].astype(str).reset_index(drop=True)
    if {"width", "height"} <= set(table) and table[["width", "height"]].notna().all(axis=1).any():
        factors["acquisition (original size)"] = acquisition_group(table["width"], table["height"])
    if "ita" in table and table["ita"].notna().any():
        band = ita_band(table["ita"].reset_index(drop=True))
        factors["skin tone (ITA)"] = band.cat.add_categories(["unmeasured"]).fillna("unmeasured")
    if "source_copy" in table and table["source_copy"].notna().any():
        factors["source copy"] = table["source_copy"].fillna("(missing)").astype(str).reset_index(drop=True)
    rows = []
    for factor, labels in factors.items():
        present = set(labels.astype(str))
        order = ([str(c) for c in labels.cat.categories if str(c) in present] if isinstance(labels.dtype, pd.CategoricalDtype)
                 else sorted(present, key=lambda s: (-int((labels == s).sum()), s)))  # bands in age order, others by size
        labels = labels.astype(str)
        for group in order:
            m = (labels == group).to_numpy()
            rows.append(_auc_row(factor, group, y[m], p[m], g[m], n_boot, seed, threshold))
    if "diagnosis" in table:
        diag = table["diagnosis"].astype(str).to_numpy()
        malignant = y == 1
        for d in pd.Series(diag[~malignant]).value_counts().index:
            m = malignant | ((diag == d) & ~malignant)
            rows.append(_auc_row("diagnosis (all malignant vs)", str(d), y[m], p[m], g[m], n_boot, seed, threshold))
    return pd.DataFrame(rows, columns=["factor", "group", "n", "n_malignant", "n_patients", "roc_auc", "ci_low",
                                       "ci_high", "sensitivity", "specificity", "note"])


def _interval(est: float, lo: float, hi: float) -> dict[str, float]:
    return {"estimate": float(est), "ci_low": float(lo), "ci_high": float(hi)}


def calibration_summary(y: np.ndarray, p: np.ndarray, groups: Sequence, weights: Any = None, n_bins: int = 10,
                        n_boot: int = 1000, seed: int = 0) -> dict[str, Any]:
    """Brier, ECE, calibration intercept and slope (patient-bootstrap CIs; weights kept per resampled row)
    and the reliability table."""
    w = np.ones(len(y)) if weights is None else np.asarray(weights, float)

    def stat(idx: np.ndarray) -> dict[str, float]:
        try:
            a, b = calibration_intercept_slope(y[idx], p[idx], w[idx])
        except MetricError:  # separated classes: not estimable in this sample (NaN: left out of the interval)
            a = b = float("nan")
        return {"brier": brier_score(y[idx], p[idx], w[idx]), "ece": expected_calibration_error(y[idx], p[idx], n_bins, w[idx]),
                "calibration_intercept": a, "calibration_slope": b}

    out: dict[str, Any] = {k: _interval(r.estimate, r.ci_low, r.ci_high)
                           for k, r in patient_bootstrap(stat, groups, n_boot, seed=seed, labels=y).items()}
    out["reliability"] = reliability_table(y, p, n_bins, w).to_dict(orient="records")
    return out


def validation_report(table: pd.DataFrame, threshold: float | None = None, prevalence: float | None = None,
                      probability_prevalence: float | None = None, n_boot: int = 1000, seed: int = 0) -> dict[str, Any]:
    """Everything :func:`evaluate <melanoma_utils.cli.app>` writes to ``metrics.json``, for joined predictions.

    ``table``: ``image_name, patient_id, target, probability`` (+ ``raw_probability``, metadata columns).
    ``threshold``: the run's decision threshold (an operating point). ``prevalence``: a stated deployment
    prevalence: the probabilities are moved there from ``probability_prevalence`` (the prevalence they are
    calibrated at; required then) and the rows reweighted to it, for ``stated_prevalence``.

    Top-level keys: ``n, n_malignant, n_patients, prevalence, roc_auc, pr_auc, brier, ece,
    calibration_intercept, calibration_slope, reliability, operating_points, net_benefit, subgroups``
    (+ ``roc_auc_raw, brier_raw`` when the raw model output is there, ``roc_auc_melanoma_vs_nevus``,
    ``stated_prevalence``).
    """
    from .metrics import melanoma_vs_nevus_auc

    y, p = _check(table["target"], table["probability"])
    g = table["patient_id"].to_numpy()
    if int(y.sum()) in (0, len(y)):
        raise MetricError(f"validation needs malignant and benign images; got only {'malignant' if y.sum() else 'benign'} "
                          f"(n={len(y)})")
    out: dict[str, Any] = {"n": int(len(y)), "n_malignant": int(y.sum()), "n_patients": int(len(np.unique(g))),
                           "prevalence": float(y.mean())}
    for metric in RANKING_METRICS:  # the registry: a metric added there is in every report and model card
        out[metric.name] = metric.estimate(y, p, g, n_boot=n_boot, seed=seed).to_dict()
    out["pr_auc"]["chance"] = float(y.mean())
    if "diagnosis" in table:
        mvn = melanoma_vs_nevus_auc(y, p, table["diagnosis"])
        if np.isfinite(mvn):
            out["roc_auc_melanoma_vs_nevus"] = mvn
    out.update(calibration_summary(y, p, g, n_boot=n_boot, seed=seed))
    if "raw_probability" in table and table["raw_probability"].notna().all():
        raw = table["raw_probability"].to_numpy(float)
        out["roc_auc_raw"] = roc_auc(y, raw)
        out["brier_raw"] = brier_score(y, raw)
        out["ece_raw"] = expected_calibration_error(y, raw)
    fixed = {"validation threshold": float(threshold)} if threshold is not None else {}
    out["operating_points"] = operating_points(y, p, g, fixed, prevalence=prevalence, n_boot=n_boot, seed=seed)
    out["net_benefit"] = net_benefit(y, p, groups=g, seed=seed).to_dict(orient="records")
    out["subgroups"] = subgroup_table(table.reset_index(drop=True), "probability", n_boot=n_boot, seed=seed,
                                      threshold=threshold).to_dict(orient="records")
    if prevalence is not None:
        if probability_prevalence is None:
            raise ValueError("a stated prevalence needs the prevalence the probabilities are calibrated at "
                             "(the run's, or the predictions' prevalence column)")
        q = prior_shift(p, probability_prevalence, prevalence)
        w = prevalence_weights(y, prevalence)
        at: dict[str, Any] = {"prevalence": float(prevalence), "from_prevalence": float(probability_prevalence)}
        at["pr_auc"] = float(_weighted_average_precision(y, q, w))
        at.update(calibration_summary(y, q, g, weights=w, n_boot=n_boot, seed=seed))
        if threshold is not None:
            at["threshold"] = float(prior_shift(np.array([threshold]), probability_prevalence, prevalence)[0])
        at["net_benefit"] = net_benefit(y, q, weights=w, groups=g, seed=seed).to_dict(orient="records")
        out["stated_prevalence"] = at
    return out


def _weighted_average_precision(y: np.ndarray, p: np.ndarray, w: np.ndarray) -> float:
    from sklearn.metrics import average_precision_score

    return float(average_precision_score(y, p, sample_weight=w))
