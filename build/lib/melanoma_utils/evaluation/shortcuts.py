"""The shortcut audit: how well each signal that is not the lesion predicts the label, or the copy of the data an
image came from, with patient-bootstrap CIs.

A signal is a number per image (original width, JPEG file size, images per patient, skin tone, a model's score...)
or a learned score (a classifier on the frozen image embeddings, out of fold). Its ROC AUC is reported in the
direction that predicts (``max(AUC, 1 − AUC)``, the ``direction`` column says which): an AUC far from 0.5 means the
signal alone separates the classes. ``predicts`` is ``target`` (malignant vs benign) or ``source_copy`` (which
copy; measured among benign images only, so that the label does not stand in for the copy).
"""

from __future__ import annotations

from typing import Any, Sequence

import numpy as np
import pandas as pd

from .clinical import MIN_PER_CLASS  # the same "too few" rule as the subgroup tables
from .metrics import MetricError, bootstrap_ci, roc_auc

#: The audit table's columns (``reports/<data>/shortcut_audit.csv``).
AUDIT_COLUMNS: tuple[str, ...] = ("signal", "predicts", "subset", "roc_auc", "ci_low", "ci_high", "n", "n_positive",
                                  "direction", "note")


def signal_auc(signal: str, predicts: str, subset: str, y: Any, score: Any, groups: Any, n_boot: int = 1000,
               seed: int = 0) -> dict[str, Any]:
    """One audit row: the ROC AUC of ``score`` for the binary ``y`` (rows with a missing score left out), oriented so
    that it is ≥ 0.5 (``direction``: ``higher`` or ``lower`` values go with ``y = 1``), with a patient-bootstrap 95% CI
    in the same orientation. Too few of a class (< :data:`MIN_PER_CLASS`): the AUC is NaN and ``note`` says why."""
    y = np.asarray(y, float)
    s = np.asarray(pd.to_numeric(pd.Series(np.asarray(score)), errors="coerce"), float)
    g = np.asarray(groups)
    ok = np.isfinite(s) & np.isfinite(y)
    y, s, g = y[ok].astype(int), s[ok], g[ok]
    row: dict[str, Any] = {"signal": signal, "predicts": predicts, "subset": subset, "roc_auc": np.nan, "ci_low": np.nan,
                           "ci_high": np.nan, "n": int(len(y)), "n_positive": int(y.sum()), "direction": "", "note": ""}
    n_pos, n_neg = int(y.sum()), int(len(y) - y.sum())
    if min(n_pos, n_neg) < MIN_PER_CLASS:
        row["note"] = f"too few: {n_pos} positive, {n_neg} negative (need >= {MIN_PER_CLASS} of each)"
        return row
    sign = 1.0 if roc_auc(y, s) >= 0.5 else -1.0
    row["direction"] = "higher" if sign > 0 else "lower"
    try:
        row["roc_auc"], row["ci_low"], row["ci_high"] = bootstrap_ci(y, sign * s, g, roc_auc, n_boot=n_boot, seed=seed)
    except MetricError as exc:
        row["roc_auc"], row["note"] = roc_auc(y, sign * s), f"no CI: {exc}"
    return row


def grouped_oof_scores(features: np.ndarray, y: Any, groups: Any, n_splits: int = 5, seed: int = 0) -> np.ndarray:
    """Out-of-fold scores of a logistic regression (standardised features, L2, C=1) predicting the binary ``y`` from
    ``features``, folds grouped by ``groups`` (no patient on both sides). How much of ``y`` the features carry."""
    from sklearn.linear_model import LogisticRegression
    from sklearn.model_selection import StratifiedGroupKFold
    from sklearn.pipeline import make_pipeline
    from sklearn.preprocessing import StandardScaler

    x = np.asarray(features, np.float32)
    y = np.asarray(y, int)
    out = np.full(len(y), np.nan)
    folds = StratifiedGroupKFold(n_splits=n_splits, shuffle=True, random_state=seed)
    for tr, te in folds.split(x, y, np.asarray(groups)):
        model = make_pipeline(StandardScaler(), LogisticRegression(C=1.0, max_iter=2000))
        model.fit(x[tr], y[tr])
        out[te] = model.predict_proba(x[te])[:, 1]
    return out


def audit_signals(table: pd.DataFrame, signals: Sequence[str], copy_column: str | None = None, copy_value: str = "a",
                  n_boot: int = 1000, seed: int = 0) -> pd.DataFrame:
    """Audit rows for each column of ``table`` named in ``signals`` (``table``: ``target, patient_id`` + the signal
    columns, + ``copy_column`` where known): predicting the label on all images and within copy ``copy_value``; and,
    with a copy column, predicting the copy (``copy_value`` = 1) among benign images."""
    rows = []
    y, g = table["target"].to_numpy(int), table["patient_id"].to_numpy()
    within = (table[copy_column].astype(str) == copy_value).to_numpy() if copy_column else None
    for name in signals:
        s = table[name].to_numpy()
        rows.append(signal_auc(name, "target", "all", y, s, g, n_boot, seed))
        if within is not None:
            rows.append(signal_auc(name, "target", f"within_copy_{copy_value}", y[within], s[within], g[within], n_boot, seed))
            benign = y == 0
            rows.append(signal_auc(name, "source_copy", "benign", within[benign].astype(int), s[benign], g[benign], n_boot, seed))
    return pd.DataFrame(rows, columns=list(AUDIT_COLUMNS))


def images_per_patient(patient_id: Any) -> np.ndarray:
    """How many images each row's patient has in the table (a sampling artefact, not the lesion)."""
    p = pd.Series(np.asarray(patient_id))
    return p.map(p.value_counts()).to_numpy(float)


def stratified_auc(y_true: Any, y_prob: Any, strata: Any) -> float:
    """The ROC AUC counting only malignant–benign pairs from the SAME stratum (e.g. the same camera: original image
    size), ties half: the pairs-weighted mean of the within-stratum AUCs. A cue shared by a stratum (its device colour,
    its size) cannot rank its images against each other, so what is left is the ranking inside each acquisition
    setting. Strata with one class contribute no pairs; ``MetricError`` when no stratum has both classes."""
    y = np.asarray(y_true, int)
    p = np.asarray(y_prob, float)
    s = np.asarray(strata)
    num, pairs = 0.0, 0
    for v in pd.unique(s):
        m = s == v
        n_pos, n_neg = int(y[m].sum()), int(m.sum() - y[m].sum())
        if n_pos and n_neg:
            num += roc_auc(y[m], p[m]) * n_pos * n_neg
            pairs += n_pos * n_neg
    if not pairs:
        raise MetricError("stratified AUC needs a stratum with both malignant and benign images")
    return float(num / pairs)


def stratified_auc_ci(y_true: Any, y_prob: Any, strata: Any, groups: Any, n_boot: int = 1000,
                      seed: int = 0) -> dict[str, float]:
    """:func:`stratified_auc` with its patient-bootstrap 95% CI (``estimate, ci_low, ci_high``) and the number of
    pairs it rests on (``pairs``, against ``all_pairs`` of the plain AUC)."""
    from .metrics import patient_bootstrap

    y, p, s = np.asarray(y_true, int), np.asarray(y_prob, float), np.asarray(strata)
    band = patient_bootstrap(lambda idx: stratified_auc(y[idx], p[idx], s[idx]), groups, n_boot=n_boot, seed=seed,
                             labels=y)["value"]
    pairs = sum(int(y[s == v].sum()) * int((s == v).sum() - y[s == v].sum()) for v in pd.unique(s))
    return {"estimate": band.estimate, "ci_low": band.ci_low, "ci_high": band.ci_high, "pairs": pairs,
            "all_pairs": int(y.sum()) * int(len(y) - y.sum())}
