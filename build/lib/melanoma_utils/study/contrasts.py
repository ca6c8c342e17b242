"""The endpoints a cross-validated study reports and the paired contrasts between its variants.

Endpoints (pre-specified, :data:`SUBSETS`): all images; melanoma vs nevus; and, where the data say which copy of the
data set each image came from (``source_copy``), **within copy a** — the images of one processing history, where
telling the copies apart earns nothing — overall and melanoma vs nevus. Within copy a is the primary endpoint where
it exists (:data:`PRIMARY_SUBSET`); the others are reported beside it.
"""

from __future__ import annotations

from typing import Any

import numpy as np
import pandas as pd

from ..evaluation.metrics import (
    MetricError,
    bootstrap_ci,
    delong_test,
    holm_adjust,
    melanoma_vs_nevus_mask,
    paired_auc_difference,
    roc_auc,
)

#: The copy of the data that holds both classes (the shared ISIC subset: every malignant image is in copy a).
PRIMARY_COPY = "a"
WITHIN = f"within_copy_{PRIMARY_COPY}"
#: The endpoints, in report order: all images, melanoma vs nevus, and within copy a (overall, melanoma vs nevus).
SUBSETS: tuple[str, ...] = ("all", "melanoma_vs_nevus", WITHIN, f"melanoma_vs_nevus_{WITHIN}")
#: The primary endpoint where the data have copies (else ``all``).
PRIMARY_SUBSET = WITHIN
#: Short labels for tables and figures.
SUBSET_LABELS: dict[str, str] = {"all": "all images", "melanoma_vs_nevus": "melanoma vs nevus",
                                 WITHIN: f"within copy {PRIMARY_COPY}",
                                 f"melanoma_vs_nevus_{WITHIN}": f"melanoma vs nevus, within copy {PRIMARY_COPY}"}
#: The columns of :func:`paired_contrasts` (``p_holm``: Holm's step-down within each endpoint's family).
CONTRAST_COLUMNS: list[str] = ["contrast", "subset", "delta_auc", "ci_low", "ci_high", "p_value", "p_holm", "p_delong",
                               "repeats", "fold_deltas", "folds_positive", "folds", "n", "n_positive"]


def subset_mask(frame: pd.DataFrame, subset: str) -> np.ndarray | None:
    """Rows of ``frame`` (``target, diagnosis`` [+ ``source_copy``]) in an endpoint's subset; ``None`` where the frame
    cannot tell (no ``source_copy`` column for the within-copy endpoints)."""
    if subset not in SUBSETS:
        raise ValueError(f"unknown endpoint {subset!r}; known: {', '.join(SUBSETS)}")
    mask = np.ones(len(frame), bool)
    if subset.startswith("melanoma_vs_nevus"):
        mask &= melanoma_vs_nevus_mask(frame["target"], frame["diagnosis"])
    if subset.endswith(WITHIN):
        if "source_copy" not in frame or not frame["source_copy"].notna().any():
            return None
        mask &= (frame["source_copy"].astype(str) == PRIMARY_COPY).to_numpy()
    return mask


def available_subsets(frame: pd.DataFrame) -> list[str]:
    """The endpoints ``frame`` can be scored on."""
    return [s for s in SUBSETS if subset_mask(frame, s) is not None]


def primary_subset(frame: pd.DataFrame) -> str:
    """Within copy a where the frame says which copy each image came from, else all images."""
    return PRIMARY_SUBSET if subset_mask(frame, PRIMARY_SUBSET) is not None else "all"


def pooled_auc(o: pd.DataFrame, subset: str, n_boot: int = 1000, seed: int = 0) -> tuple[float, float, float]:
    """``(estimate, ci_low, ci_high)`` of the pooled ROC AUC of ``o`` (``target, probability, patient_id, diagnosis``)
    on an endpoint's rows; NaN where it cannot be scored."""
    mask = subset_mask(o, subset)
    if mask is None:
        return float("nan"), float("nan"), float("nan")
    part = o[mask]
    try:
        return bootstrap_ci(part["target"], part["probability"], part["patient_id"], roc_auc, n_boot=n_boot, seed=seed)
    except MetricError:
        try:
            return roc_auc(part["target"], part["probability"]), float("nan"), float("nan")
        except MetricError:
            return float("nan"), float("nan"), float("nan")


def _by_repeat(oof: pd.DataFrame, variant: str, repeats: list[int], index: pd.Index) -> np.ndarray:
    o = oof[oof["variant"] == variant]
    return o.pivot(index="image_name", columns="repeat", values="probability")[repeats].loc[index].to_numpy()


def _fold_deltas(oof: pd.DataFrame, a: str, b: str, repeats: list[int], subset: str) -> np.ndarray:
    """Per (repeat, fold) ROC AUC difference a − b on the endpoint's rows of that fold (folds without both classes
    left out), in repeat and fold order."""
    out = []
    for r in repeats:
        pa = oof[(oof["variant"] == a) & (oof["repeat"] == r)].set_index("image_name")
        pb = oof[(oof["variant"] == b) & (oof["repeat"] == r)].set_index("image_name")["probability"]
        for _, fold in pa.groupby("fold", sort=True):
            mask = subset_mask(fold, subset)
            part = fold[mask]
            try:
                out.append(roc_auc(part["target"], part["probability"]) - roc_auc(part["target"], pb.loc[part.index]))
            except MetricError:
                continue
    return np.asarray(out)


def paired_contrasts(per_fold: pd.DataFrame, oof: pd.DataFrame, contrasts: list[tuple[str, str]],
                     n_boot: int = 1000, seed: int = 0, subsets: tuple[str, ...] = SUBSETS) -> pd.DataFrame:
    """Each contrast ``(a, b)`` of two cross-validated variants on the same images, on every endpoint the data allow:
    the paired ROC AUC difference a − b of the pooled out-of-fold predictions with its patient-bootstrap CI and
    p-value (:func:`~melanoma_utils.evaluation.metrics.paired_auc_difference`), Holm's adjusted p-value within the
    endpoint's family of contrasts (``p_holm``), DeLong's p-value on the study's folds (repeat 0; images as independent,
    so too liberal where a patient has several images), and the per-fold differences. With repeated CV the difference
    is the mean over the repeats both variants ran, and ``fold_deltas`` lists every repeat's folds. Contrasts naming
    a variant that did not run are left out. ``per_fold`` is accepted for compatibility (the fold differences come
    from ``oof``)."""
    del per_fold
    if "repeat" not in oof:
        oof = oof.assign(repeat=0)
    ran = set(oof["variant"])
    rows = []
    for a, b in contrasts:
        if a not in ran or b not in ran:
            continue
        reps = sorted(set(oof.loc[oof["variant"] == a, "repeat"]) & set(oof.loc[oof["variant"] == b, "repeat"]))
        info = oof[(oof["variant"] == a) & (oof["repeat"] == reps[0])].set_index("image_name")
        sa, sb = _by_repeat(oof, a, reps, info.index), _by_repeat(oof, b, reps, info.index)
        for subset in subsets:
            mask = subset_mask(info, subset)
            if mask is None:
                continue
            y = info["target"].to_numpy()[mask]
            try:
                res = paired_auc_difference(y, sa[mask], sb[mask], info["patient_id"].to_numpy()[mask],
                                            n_boot=n_boot, seed=seed)
                delong = delong_test(y, sa[mask, 0], sb[mask, 0])["p_value"]
            except MetricError:
                continue
            fold_d = _fold_deltas(oof, a, b, reps, subset)
            rows.append({"contrast": f"{a} − {b}", "subset": subset, "delta_auc": res["delta"],
                         "ci_low": res["ci_low"], "ci_high": res["ci_high"], "p_value": res["p_value"],
                         "p_holm": np.nan, "p_delong": delong, "repeats": len(reps),
                         "fold_deltas": ";".join(f"{d:+.3f}" for d in fold_d),
                         "folds_positive": int((fold_d > 0).sum()), "folds": len(fold_d),
                         "n": int(mask.sum()), "n_positive": int(y.sum())})
    out = pd.DataFrame(rows, columns=CONTRAST_COLUMNS)
    for _, idx in out.groupby("subset").groups.items():
        out.loc[idx, "p_holm"] = holm_adjust(out.loc[idx, "p_value"].to_numpy(float))
    return out


def describe_contrast(paired: pd.DataFrame, a: str, b: str, subset: str = "all") -> str:
    """One contrast of :func:`paired_contrasts` as text for a report: ``"+0.012 (95% CI −0.004 to +0.027; p 0.14,
    Holm 0.56; 4 of 5 folds > 0)"``; ``"not run"`` where the contrast is absent."""
    row = paired[(paired["contrast"] == f"{a} − {b}") & (paired["subset"] == subset)]
    if row.empty:
        return "not run"
    r = row.iloc[0]
    reps = int(getattr(r, "repeats", 1) or 1)
    holm = getattr(r, "p_holm", float("nan"))
    return (f"{r.delta_auc:+.3f} (95% CI {r.ci_low:+.3f} to {r.ci_high:+.3f}; p {r.p_value:.2g}"
            + (f", Holm {holm:.2g}" if holm == holm else "")
            + f"; {r.folds_positive} of {r.folds} folds > 0" + (f" over {reps} repeats" if reps > 1 else "") + ")")


def holm_table_note(paired: pd.DataFrame) -> dict[str, Any]:
    """How many contrasts each endpoint's Holm family holds, and how many stay below 0.05 before and after."""
    return {s: {"contrasts": int(len(part)), "p<0.05": int((part["p_value"] < 0.05).sum()),
                "p_holm<0.05": int((part["p_holm"] < 0.05).sum())}
            for s, part in paired.groupby("subset", sort=False)}
