"""Metrics that mean something at ISIC 2020's 1.76% prevalence (584 of 33,126). Small typed functions, one metric each, with
explicit edge cases: a metric that needs both classes raises :class:`MetricError` (never NaN).

* threshold-free: :func:`roc_auc` (the challenge's metric), :func:`pr_auc` (average precision);
* at a threshold: :func:`threshold_metrics` (accuracy, sensitivity, specificity, precision, F1, confusion);
* :func:`choose_threshold` picks a threshold on VALIDATION predictions (e.g. sensitivity ≥ 0.90);
* :func:`bootstrap_ci` resamples PATIENTS (all of a patient's images together) for 95% intervals.
"""

from __future__ import annotations

from typing import Any, Callable, NamedTuple, Sequence

import numpy as np
import pandas as pd


class MetricError(ValueError):
    """A metric cannot be computed for these inputs (e.g. only one class present)."""


def _check(y_true: Sequence, y_score: Sequence) -> tuple[np.ndarray, np.ndarray]:
    y = np.asarray(y_true)
    s = np.asarray(y_score, float)
    if y.shape != s.shape or y.ndim != 1:
        raise MetricError(f"y_true and y_score must be 1-D and equally long; got {y.shape} and {s.shape}")
    if len(y) == 0:
        raise MetricError("no predictions to evaluate")
    if not ((y == 0) | (y == 1)).all():
        raise MetricError("y_true must contain only 0 and 1")
    if not np.isfinite(s).all():
        raise MetricError(f"y_score has {int((~np.isfinite(s)).sum())} non-finite value(s)")
    return y.astype(int), s


def _need_both(y: np.ndarray, metric: str) -> None:
    n_pos = int(y.sum())
    if n_pos == 0 or n_pos == len(y):
        only = "positives" if n_pos else "negatives"
        raise MetricError(f"{metric} needs both classes; got only {only} (n={len(y)})")


def roc_auc(y_true: Sequence, y_score: Sequence) -> float:
    """Area under the ROC curve: the Mann–Whitney statistic from average ranks (ties count one half), the same
    value as ``sklearn.metrics.roc_auc_score`` and fast enough for thousands of bootstrap resamples."""
    y, s = _check(y_true, y_score)
    _need_both(y, "ROC AUC")
    n_pos = int(y.sum())
    n_neg = len(y) - n_pos
    return float((_average_ranks(s)[y == 1].sum() - n_pos * (n_pos + 1) / 2) / (n_pos * n_neg))


def _average_ranks(s: np.ndarray) -> np.ndarray:
    """1-based ranks of ``s``, tied values sharing their average rank (``scipy.stats.rankdata``'s default)."""
    order = np.argsort(s, kind="mergesort")
    sorted_s = s[order]
    starts = np.r_[0, np.flatnonzero(np.diff(sorted_s)) + 1]  # the first position of each run of equal values
    ends = np.r_[starts[1:], len(s)]
    ranks = np.empty(len(s), float)
    ranks[order] = np.repeat((starts + ends + 1) / 2, ends - starts)  # the mean of positions start+1 … end
    return ranks


def pr_auc(y_true: Sequence, y_score: Sequence) -> float:
    """Area under the precision–recall curve as average precision, Σ (R_k − R_{k−1}) · P_k over the distinct
    scores from the highest down (``sklearn.metrics.average_precision_score``'s definition); chance level is the
    positive share."""
    y, s = _check(y_true, y_score)
    _need_both(y, "PR AUC")
    order = np.argsort(-s, kind="mergesort")
    ys, ss = y[order], s[order]
    last = np.r_[np.flatnonzero(np.diff(ss)), len(ys) - 1]  # the last row of each run of equal scores
    tp = np.cumsum(ys)[last]
    precision = tp / (last + 1)
    recall = tp / tp[-1]
    return float(np.sum(np.diff(np.r_[0.0, recall]) * precision))


#: The rates at a threshold, in report order: name -> (numerator, denominator) over the confusion counts. The one
#: registry of threshold metrics: :func:`threshold_metrics`, the results' tables and printouts iterate over it, so
#: adding a rate is one entry here (and its test).
THRESHOLD_RATES: dict[str, Callable[[dict[str, int]], tuple[int, int]]] = {
    "accuracy": lambda c: (c["tp"] + c["tn"], c["tp"] + c["tn"] + c["fp"] + c["fn"]),
    "sensitivity": lambda c: (c["tp"], c["tp"] + c["fn"]),
    "specificity": lambda c: (c["tn"], c["tn"] + c["fp"]),
    "precision": lambda c: (c["tp"], c["tp"] + c["fp"]),
    "f1": lambda c: (2 * c["tp"], 2 * c["tp"] + c["fp"] + c["fn"]),
}


def threshold_metrics(y_true: Sequence, y_score: Sequence, threshold: float = 0.5) -> dict[str, float]:
    """Every rate of :data:`THRESHOLD_RATES` (accuracy, sensitivity, specificity, precision, F1) and the confusion
    counts at ``threshold``.

    A rate whose denominator is zero (e.g. sensitivity without positives) is NaN and says so by being
    absent from the counts: ``tp + fn == 0``.
    """
    y, s = _check(y_true, y_score)
    pred = (s >= threshold).astype(int)
    counts = {"tp": int(((pred == 1) & (y == 1)).sum()), "fp": int(((pred == 1) & (y == 0)).sum()),
              "tn": int(((pred == 0) & (y == 0)).sum()), "fn": int(((pred == 0) & (y == 1)).sum())}
    rates = {}
    for name, ratio in THRESHOLD_RATES.items():
        num, den = ratio(counts)
        rates[name] = num / den if den else float("nan")
    return {"threshold": float(threshold), **rates, **counts}


def choose_threshold(y_val: Sequence, p_val: Sequence, min_sensitivity: float = 0.90) -> float:
    """The HIGHEST threshold whose sensitivity on the validation predictions is ≥ ``min_sensitivity``.

    Highest, so that specificity is as good as the sensitivity target allows. Use validation data only,
    never the test split.
    """
    y, s = _check(y_val, p_val)
    _need_both(y, "threshold selection")
    if not 0 < min_sensitivity <= 1:
        raise MetricError(f"min_sensitivity must be in (0, 1]; got {min_sensitivity}")
    pos = np.sort(s[y == 1])[::-1]
    k = int(np.ceil(min_sensitivity * len(pos)))  # need at least k positives at or above the threshold
    return float(pos[k - 1])


def patient_resamples(groups: Sequence, n_boot: int = 1000, seed: int = 0):
    """Row indices of ``n_boot`` bootstrap resamples that draw whole groups (patients) with replacement."""
    g = pd.factorize(np.asarray(groups))[0]
    order = np.argsort(g, kind="stable")
    starts = np.searchsorted(g[order], np.arange(g.max() + 1 if len(g) else 0))
    members = np.split(order, starts[1:])
    rng = np.random.default_rng(seed)
    for _ in range(n_boot):
        pick = rng.integers(0, len(members), len(members))
        yield np.concatenate([members[k] for k in pick])


class Interval(NamedTuple):
    """A statistic's estimate on all rows and its patient-bootstrap interval (``draws``: the usable resampled values)."""

    estimate: float
    ci_low: float
    ci_high: float
    draws: np.ndarray


def patient_bootstrap(stat: Callable[[np.ndarray], float | dict[str, float]], groups: Sequence, n_boot: int = 1000,
                      level: float = 0.95, seed: int = 0, labels: Sequence | None = None) -> dict[str, Interval]:
    """THE patient bootstrap of this package: ``stat(rows)`` (row positions → a number, or a dict of numbers) on all
    rows and on ``n_boot`` resamples that draw whole patients (``groups``) with replacement.

    One failure rule everywhere: a resample where the statistic cannot be computed (:class:`MetricError`, a
    non-finite value, or — with ``labels`` — one class only among the resampled labels) is skipped; an interval needs at least half of the resamples usable, else it is
    NaN. The interval is the percentile interval of the usable draws, shifted by the bootstrap bias
    (estimate − median of the draws) only where the plain percentile interval would exclude the estimate, so every
    interval contains its estimate. Returns ``{key: Interval}`` (key ``"value"`` for a number)."""
    def as_dict(v: float | dict[str, float]) -> dict[str, float]:
        return {k: float(x) for k, x in v.items()} if isinstance(v, dict) else {"value": float(v)}

    rows = np.arange(len(np.asarray(groups)))
    estimate = as_dict(stat(rows))
    draws: dict[str, list[float]] = {k: [] for k in estimate}
    y = None if labels is None else np.asarray(labels)
    for idx in patient_resamples(groups, n_boot, seed):
        if y is not None and not 0 < y[idx].sum() < len(idx):
            continue
        try:
            values = as_dict(stat(idx))
        except MetricError:
            continue
        for k, v in values.items():
            if np.isfinite(v):
                draws[k].append(v)
    out = {}
    for k, est in estimate.items():
        d = np.asarray(draws[k])
        if len(d) < n_boot / 2 or not np.isfinite(est):
            out[k] = Interval(est, float("nan"), float("nan"), d)
            continue
        lo, hi = np.percentile(d, [50 * (1 - level), 50 * (1 + level)])
        if not lo <= est <= hi:  # a skewed or biased bootstrap distribution: centre the interval on the estimate
            shift = est - float(np.median(d))
            lo, hi = lo + shift, hi + shift
        out[k] = Interval(est, float(lo), float(hi), d)
    return out


def bootstrap_ci(
    y_true: Sequence,
    y_score: Sequence,
    groups: Sequence,
    metric: Callable[[np.ndarray, np.ndarray], float] = roc_auc,
    n_boot: int = 1000,
    level: float = 0.95,
    seed: int = 0,
) -> tuple[float, float, float]:
    """``(estimate, low, high)`` of ``metric`` by :func:`patient_bootstrap` (resamples with one class skipped);
    :class:`MetricError` when there is no interval (fewer than half of the resamples usable)."""
    y, s = _check(y_true, y_score)
    r = patient_bootstrap(lambda idx: metric(y[idx], s[idx]), groups, n_boot, level, seed, labels=y)["value"]
    if not np.isfinite(r.ci_low):
        raise MetricError(f"only {len(r.draws)} of {n_boot} bootstrap resamples had both classes")
    return r.estimate, r.ci_low, r.ci_high


def melanoma_vs_nevus_mask(target: Any, diagnosis: Any) -> np.ndarray:
    """Rows of the melanoma-vs-nevus contrast: every malignant image and the benign ones diagnosed ``nevus``."""
    return ((np.asarray(target) == 1) | (np.asarray(diagnosis, dtype=object) == "nevus")).astype(bool)


def melanoma_vs_nevus_auc(target: Any, probability: Any, diagnosis: Any) -> float:
    """ROC AUC of malignant vs nevus images only (the harder, fairer contrast); NaN when either is absent."""
    mask = melanoma_vs_nevus_mask(target, diagnosis)
    y, p = np.asarray(target)[mask], np.asarray(probability, dtype=float)[mask]
    if len(np.unique(y)) < 2:
        return float("nan")
    return roc_auc(y, p)


def join_predictions(preds: pd.DataFrame, meta: pd.DataFrame, source: str = "predictions",
                     columns: Sequence[str] = ("patient_id", "target", "diagnosis")) -> tuple[pd.DataFrame, dict[str, int]]:
    """Validate a predictions table and join it to the metadata (``image_name`` and ``columns``).

    Errors (``ValueError`` naming ``source`` and the CSV lines, header = line 1): a missing column, a
    non-numeric probability, one outside [0, 1], an image predicted twice. Rows without a probability (what
    ``predict`` writes for an unreadable image) and rows without metadata are excluded and counted, never
    silently. Returns the joined rows and ``{"no_prediction": n, "no_metadata": m, "not_predicted": k}`` (``k``:
    metadata rows the predictions table does not mention at all).
    """
    need = [c for c in ("image_name", "probability") if c not in preds.columns]
    if need:
        raise ValueError(f"{source}: missing column(s) {', '.join(need)}; found {', '.join(map(str, preds.columns))}")

    def lines(mask: np.ndarray) -> str:
        idx = np.flatnonzero(mask)
        return ", ".join(str(i + 2) for i in idx[:10]) + (", ..." if len(idx) > 10 else "")

    raw = preds["probability"]
    prob = pd.to_numeric(raw, errors="coerce")
    bad = (prob.isna() & raw.notna() & (raw.astype(str).str.strip() != "")).to_numpy()
    if bad.any():
        raise ValueError(f"{source}: non-numeric probability on line(s) {lines(bad)} (e.g. {raw[bad].iloc[0]!r})")
    out_of_range = ((prob < 0) | (prob > 1)).to_numpy()
    if out_of_range.any():
        raise ValueError(f"{source}: probability outside [0, 1] on line(s) {lines(out_of_range)} "
                         f"(e.g. {prob[out_of_range].iloc[0]})")
    dup = preds["image_name"].duplicated(keep=False).to_numpy()
    if dup.any():
        raise ValueError(f"{source}: image(s) predicted more than once, line(s) {lines(dup)} "
                         f"(e.g. {preds['image_name'][dup].iloc[0]}): each image must be scored once")
    table = preds.assign(probability=prob)
    no_pred = int(table["probability"].isna().sum())
    table = table[table["probability"].notna()]
    keep = [c for c in columns if c != "image_name"]
    merged = table.drop(columns=[c for c in keep if c in table]).merge(meta[["image_name", *keep]], on="image_name", how="inner")
    not_predicted = int((~meta["image_name"].isin(set(preds["image_name"]))).sum())
    return merged, {"no_prediction": no_pred, "no_metadata": len(table) - len(merged), "not_predicted": not_predicted}


def _auc_columns(y: np.ndarray, s: np.ndarray) -> float:
    """ROC AUC of a score vector, or the mean ROC AUC over the columns of a score matrix (repeated CV: one column per
    repeat)."""
    return roc_auc(y, s) if s.ndim == 1 else float(np.mean([roc_auc(y, s[:, r]) for r in range(s.shape[1])]))


def _scores(y_true: Sequence, score: Any) -> tuple[np.ndarray, np.ndarray]:
    s = np.asarray(score, dtype=np.float64)
    if s.ndim == 2:
        y, _ = _check(y_true, s[:, 0])
        if not np.isfinite(s).all():
            raise MetricError("scores contain NaN or infinite values")
        return y, s
    return _check(y_true, s)


def paired_auc_difference(
    y_true: Sequence,
    score_a: Any,
    score_b: Any,
    groups: Sequence,
    n_boot: int = 1000,
    level: float = 0.95,
    seed: int = 0,
) -> dict[str, float]:
    """The paired difference ``ROC AUC(a) − ROC AUC(b)`` of two models scored on the SAME images, with a patient
    bootstrap CI: each resample draws whole patients once and scores both models on it, so what the two share
    (which patients happen to be easy) cancels out — unlike two separate intervals.

    Scores may be matrices ``(n_images, n_repeats)`` (repeated cross-validation: column r holds repeat r's
    out-of-fold predictions): the difference is then the mean over repeats of the per-repeat ROC AUC difference, and
    each bootstrap resample scores every repeat on the same patients, so the interval reflects the patients, with the
    fold-assignment noise averaged out.

    Returns ``delta`` (on all rows), ``ci_low``, ``ci_high`` (percentile interval of the resampled deltas, shifted by
    the bootstrap bias ``mean − delta`` only where the plain percentile interval would exclude ``delta``, so the
    interval always contains its estimate), ``p_value`` (two-sided: twice the smaller share of resampled deltas on
    either side of 0, at least 1/n) and ``n_boot_used``. Resamples with one class only are skipped; fewer than half
    usable is :class:`MetricError`.
    """
    y, a = _scores(y_true, score_a)
    _, b = _scores(y_true, score_b)
    if a.shape != b.shape:
        raise ValueError(f"score_a and score_b differ in shape: {a.shape} vs {b.shape}")
    _need_both(y, "paired ROC AUC difference")

    def stat(idx: np.ndarray) -> float:
        return _auc_columns(y[idx], a[idx]) - _auc_columns(y[idx], b[idx])

    r = patient_bootstrap(stat, groups, n_boot, level, seed, labels=y)["value"]
    if not np.isfinite(r.ci_low):
        raise MetricError(f"only {len(r.draws)} of {n_boot} bootstrap resamples had both classes")
    d = r.draws
    p = min(1.0, 2 * min(float((d <= 0).mean()), float((d >= 0).mean())))
    return {"delta": r.estimate, "ci_low": r.ci_low, "ci_high": r.ci_high,
            "p_value": max(p, 1.0 / len(d)), "n_boot_used": len(d)}


def holm_adjust(p_values: Sequence[float]) -> np.ndarray:
    """Holm's step-down adjustment of a family of p-values (controls the family-wise error rate): sorted ascending,
    ``p_(i) · (m − i)`` (i from 0), made non-decreasing, capped at 1; NaN stays NaN and does not count in ``m``."""
    p = np.asarray(p_values, float)
    out = np.full(len(p), np.nan)
    ok = np.flatnonzero(np.isfinite(p))
    m = len(ok)
    if m == 0:
        return out
    order = ok[np.argsort(p[ok], kind="stable")]
    adjusted = np.minimum(1.0, np.maximum.accumulate(p[order] * (m - np.arange(m))))
    out[order] = adjusted
    return out


def delong_test(y_true: Sequence, score_a: Sequence, score_b: Sequence) -> dict[str, float]:
    """DeLong's test of two correlated ROC AUCs on the same images (DeLong, DeLong & Clarke-Pearson 1988, in the
    fast form of Sun & Xu 2014): ``delta`` (AUC a − AUC b), its standard error ``se``, ``z`` and the two-sided
    ``p_value`` under the normal approximation.

    It treats images as independent: with several images per patient it understates the uncertainty, which is why
    the study's intervals come from the patient bootstrap (:func:`paired_auc_difference`); DeLong's p-value is given
    beside it because reviewers know it. Identical scores (``se`` = 0, ``delta`` = 0): p = 1.
    """
    from scipy.stats import norm

    y, a = _check(y_true, score_a)
    _, b = _check(y_true, score_b)
    _need_both(y, "DeLong's test")
    pos, neg = y == 1, y == 0
    m, n = int(pos.sum()), int(neg.sum())

    def components(s: np.ndarray) -> tuple[float, np.ndarray, np.ndarray]:
        from scipy.stats import rankdata

        x, z = s[pos], s[neg]
        tx, tz, t = rankdata(x), rankdata(z), rankdata(np.concatenate([x, z]))
        v10 = (t[:m] - tx) / n  # per positive: share of negatives below it (ties count half)
        v01 = 1.0 - (t[m:] - tz) / m  # per negative: share of positives above it
        return float(v10.mean()), v10, v01

    auc_a, v10a, v01a = components(a)
    auc_b, v10b, v01b = components(b)
    s10 = np.cov(np.vstack([v10a, v10b])) if m > 1 else np.zeros((2, 2))
    s01 = np.cov(np.vstack([v01a, v01b])) if n > 1 else np.zeros((2, 2))
    var = (s10[0, 0] + s10[1, 1] - 2 * s10[0, 1]) / m + (s01[0, 0] + s01[1, 1] - 2 * s01[0, 1]) / n
    delta = auc_a - auc_b
    se = float(np.sqrt(max(var, 0.0)))
    if se == 0:
        return {"delta": float(delta), "se": 0.0, "z": 0.0 if delta == 0 else float(np.sign(delta) * np.inf),
                "p_value": 1.0 if delta == 0 else 0.0}
    z = delta / se
    return {"delta": float(delta), "se": se, "z": float(z), "p_value": float(2 * norm.sf(abs(z)))}
