"""Training so that a grouping that is not the lesion does not pay: which copy of a data set an image came from,
the camera, the data set (:mod:`melanoma_utils.data.confounds`). Resolves the run's grouping column, weights (or
drops) the rows of each group, and describes what it did for ``config.json`` and the model card."""

from __future__ import annotations

from typing import Any

import numpy as np
import pandas as pd

from ..data.confounds import SOURCE_COPY, group_labels, label_by_group, source_balanced_weights
from .run import TrainConfig

#: The per-row weight column a training frame may carry (multiplied with the class weights).
WEIGHT_COLUMN = "sample_weight"


def resolve_source_column(column: str | None, df: pd.DataFrame) -> str | None:
    """The grouping a run uses: ``None`` for none; ``"auto"``: ``source_copy`` where the data has it, else none;
    any other name as given (a column, ``camera`` or ``source``)."""
    if column is None:
        return None
    if column == "auto":
        return SOURCE_COPY if SOURCE_COPY in df and df[SOURCE_COPY].notna().any() else None
    return column


def class_weights(y: np.ndarray, w: np.ndarray | None = None) -> dict[int, float]:
    """``w_c = W / (2 W_c)``: 1/n per class on the (row-weighted) counts, normalised so that ``Σ W_c w_c = W``
    (the loss keeps its scale). Without row weights ``W_c`` is the class's row count."""
    y = np.asarray(y).astype(int)
    w = np.ones(len(y)) if w is None else np.asarray(w, float)
    total = float(w.sum())
    counts = {c: float(w[y == c].sum()) for c in (0, 1)}
    if min(counts.values()) <= 0:
        raise ValueError(f"class weights need both classes in the training rows; (weighted) counts {counts}")
    return {c: total / (2 * counts[c]) for c in (0, 1)}


def row_weights(part: pd.DataFrame, per_class: dict[int, float]) -> np.ndarray:
    """Each row's training weight: its class weight times its :data:`WEIGHT_COLUMN` (1 where absent)."""
    y = part["target"].to_numpy().astype(int)
    w = np.where(y == 1, per_class[1], per_class[0]).astype(np.float32)
    if WEIGHT_COLUMN in part:
        w = w * part[WEIGHT_COLUMN].to_numpy(np.float32)
    return w


#: ``auto``'s choice (notebook 03's selection on the shared ISIC subset, paired within copy a with the held-out
#: HAM10000 lesions as a guard): copy-balanced weighting for a data set's own rows; with external data it did not win
#: within copy a (2026-12-04), so none. The 2026-12-07 rendering's rule prefers copy-balanced with external data too
#: (a within-copy-a gain whose interval holds 0): not switched yet, as it changes notebook 06's validated default.
AUTO_WEIGHTING: dict[bool, str] = {False: "balanced", True: "none"}


def resolve_weighting(weighting: str, external: bool) -> str:
    """The weighting a run uses: ``auto`` resolves by whether external rows join the training part
    (:data:`AUTO_WEIGHTING`); any other mode as given."""
    return AUTO_WEIGHTING[bool(external)] if weighting == "auto" else weighting


def apply_source_weighting(train: pd.DataFrame, val: pd.DataFrame, cfg: TrainConfig, external: bool = False
                           ) -> tuple[pd.DataFrame, pd.DataFrame, dict[str, Any]]:
    """``(train, val, facts)`` with :data:`WEIGHT_COLUMN` set by ``cfg.data.source_weighting`` (``auto`` resolved by
    ``external``: whether external rows joined the training part) over the grouping ``cfg.data.source_column``. Training rows of weight 0 (groups of one class) are left out; validation keeps every row
    (calibration and the threshold see the whole population) and its weights only shape the early-stopping loss.
    ``facts``: the column, the weighting, the rows left out and the label spread per group of the training part."""
    column = resolve_source_column(cfg.data.source_column, train)
    if column is None and cfg.data.source_column == "auto" and cfg.data.source_weighting == "sources" and "source" in train:
        column = "source"  # no copy column: the data sets themselves are the sources
    mode = resolve_weighting(cfg.data.source_weighting, external) if column else "none"
    facts: dict[str, Any] = {"column": column, "weighting": mode, "asked": cfg.data.source_weighting}
    if column is None:
        return train, val, facts
    groups = group_labels(train, column)
    facts["groups"] = label_by_group(train["target"], groups, train["patient_id"]).to_dict(orient="records")
    if mode == "none":
        return train, val, facts
    w_tr = source_balanced_weights(train["target"], groups, mode)
    if not (w_tr > 0).any():
        raise ValueError(f"source weighting {mode!r} over {column!r} leaves no training rows: every group holds one "
                         "class; use --source-weighting none")
    w_va = source_balanced_weights(val["target"], group_labels(val, column), mode)
    keep = w_tr > 0
    facts["rows_left_out"] = int((~keep).sum())
    facts["weights"] = _group_weights(groups.to_numpy(), train["target"].to_numpy().astype(int), w_tr)
    train = train.assign(**{WEIGHT_COLUMN: w_tr})[keep].reset_index(drop=True)
    if (w_va > 0).any() and ((w_va > 0) & (val["target"].to_numpy() == 1)).any():
        val = val.assign(**{WEIGHT_COLUMN: w_va})
    return train, val, facts


def _group_weights(groups: np.ndarray, y: np.ndarray, w: np.ndarray) -> dict[str, dict[str, float | None]]:
    """The weight of a benign and of a malignant row in each group (all rows of a class in a group share it)."""
    out: dict[str, dict[str, float | None]] = {}
    for g in pd.unique(groups):
        m = groups == g
        out[str(g)] = {name: (float(w[m & (y == k)][0]) if (m & (y == k)).any() else None)
                       for name, k in (("benign", 0), ("malignant", 1))}
    return out
