"""The shortcut audit of a data set and of the models trained on it (notebook 03): every signal that is not the lesion,
how well it predicts the label (on all images and within copy a) and the copy an image came from, and how much of
each model's ranking is copy. Written as ``shortcut_audit.csv`` with a dot-plot figure.
"""

from __future__ import annotations

import os
from typing import TYPE_CHECKING, Any

import numpy as np
import pandas as pd

from ..evaluation.shortcuts import AUDIT_COLUMNS, audit_signals, grouped_oof_scores, images_per_patient, signal_auc
from ..pipeline.skin import image_cues

if TYPE_CHECKING:
    from matplotlib.figure import Figure

#: Signal columns of :func:`image_signals` -> their names in the audit table.
SIGNAL_NAMES: dict[str, str] = {
    "width": "original width (px)",
    "height": "original height (px)",
    "jpeg_bytes": "JPEG file size (bytes)",
    "images_per_patient": "images per patient",
    "ugly_duckling": "ugly-duckling distance",
    "ita": "skin tone (ITA°)",
    "corner_darkness": "dark corners (centre − corner L*)",
}


def image_signals(df: pd.DataFrame, image_size: int) -> pd.DataFrame:
    """``df`` (``image_path, patient_id, target`` + ``width, height``, ``source_copy``) with the audit's per-image
    signals: original width/height, the JPEG file's size, images per patient, the ugly-duckling distance (ImageNet
    Lite0 embeddings at ``image_size``, cached), skin tone (ITA) and dark corners."""
    from ..models.context import add_context
    from ..pipeline.transforms import preprocess_config

    out = df.reset_index(drop=True).copy()
    out["jpeg_bytes"] = [os.path.getsize(p) if os.path.isfile(p) else np.nan for p in out["image_path"]]
    out["images_per_patient"] = images_per_patient(out["patient_id"])
    out["ugly_duckling"] = add_context(out, image_size, preprocess_config("none"))["ugly_duckling"].to_numpy()
    cues = image_cues(list(out["image_path"]))
    out["ita"], out["corner_darkness"] = cues["ita"].to_numpy(), cues["corner_darkness"].to_numpy()
    return out


def shortcut_audit(signals: pd.DataFrame, oof: pd.DataFrame | None, image_size: int, n_boot: int = 1000, seed: int = 0,
                   copy_column: str = "source_copy") -> pd.DataFrame:
    """The audit table (:data:`~melanoma_utils.evaluation.shortcuts.AUDIT_COLUMNS`) for :func:`image_signals`'
    output: each signal → label (all images, within copy a) and → copy (benign images); the image itself → copy (a
    logistic regression on the frozen embeddings, patient-grouped 5-fold CV, benign images); each model of ``oof``
    (the study's folds) → copy (its out-of-fold score, benign images)."""
    from ..models.context import context_embeddings
    from ..pipeline.transforms import preprocess_config

    has_copy = copy_column in signals and signals[copy_column].notna().any()
    table = signals.rename(columns=SIGNAL_NAMES)
    audit = audit_signals(table, [SIGNAL_NAMES[c] for c in SIGNAL_NAMES if c in signals],
                          copy_column=copy_column if has_copy else None, n_boot=n_boot, seed=seed)
    rows = [audit]
    if has_copy:
        benign = signals[signals["target"] == 0].reset_index(drop=True)
        is_a = (benign[copy_column].astype(str) == "a").to_numpy(int)
        emb = context_embeddings(list(benign["image_path"]), image_size, preprocess_config("none"))
        scores = grouped_oof_scores(emb, is_a, benign["patient_id"].to_numpy(), seed=seed)
        rows.append(pd.DataFrame([signal_auc("the image (frozen embedding, logistic regression)", "source_copy", "benign",
                                             is_a, scores, benign["patient_id"], n_boot, seed)]))
        if oof is not None:
            rows.append(model_copy_rows(oof, copy_column, n_boot, seed))
    return pd.concat(rows, ignore_index=True)[list(AUDIT_COLUMNS)]


def model_copy_rows(oof: pd.DataFrame, copy_column: str = "source_copy", n_boot: int = 1000, seed: int = 0) -> pd.DataFrame:
    """How well each model's out-of-fold score tells copy a from copy b among benign images (study folds only):
    near 0.5, the model's ranking carries no copy; far above it, part of its overall AUC is the copy."""
    first = oof[oof["repeat"] == 0] if "repeat" in oof else oof
    rows = []
    for variant, part in first.groupby("variant", sort=False):
        benign = part[(part["target"] == 0) & part[copy_column].notna()]
        rows.append(signal_auc(f"model score: {variant}", "source_copy", "benign",
                               (benign[copy_column].astype(str) == "a").to_numpy(int), benign["probability"],
                               benign["patient_id"], n_boot, seed))
    return pd.DataFrame(rows, columns=list(AUDIT_COLUMNS))


def audit_figure(audit: pd.DataFrame, title: str, tag: str = "") -> "Figure":
    """Dot plot of the audit: one row per signal and endpoint, ROC AUC with its 95% CI, chance at 0.5; rows
    without an AUC are named with their note. Colour says what is predicted."""
    import matplotlib.pyplot as plt

    from .style import BENIGN_COLOUR, MALIGNANT_COLOUR, MIN_FONT, NEUTRAL, apply

    apply()

    t = audit.reset_index(drop=True)
    arrow = {"higher": " ↑", "lower": " ↓"}
    labels = [f"{s}{arrow.get(str(d), '')}  →  {'label' if p == 'target' else 'copy'} ({sub.replace('_', ' ')})"
              for s, d, p, sub in zip(t["signal"], t.get("direction", pd.Series([""] * len(t))), t["predicts"], t["subset"])]
    fig, ax = plt.subplots(figsize=(9, 0.3 * len(t) + 1.4))
    y = np.arange(len(t))[::-1]
    ok = t["roc_auc"].notna().to_numpy()
    for predicts, colour in (("target", MALIGNANT_COLOUR), ("source_copy", BENIGN_COLOUR)):
        m = ok & (t["predicts"] == predicts).to_numpy()
        lo = (t.loc[m, "roc_auc"] - t.loc[m, "ci_low"]).fillna(0).clip(lower=0)
        hi = (t.loc[m, "ci_high"] - t.loc[m, "roc_auc"]).fillna(0).clip(lower=0)
        ax.errorbar(t.loc[m, "roc_auc"], y[m], xerr=[lo, hi], fmt="o", color=colour, ecolor=colour, capsize=2,
                    label="predicts the label" if predicts == "target" else "predicts the copy (benign images)")
    for yy, good, note in zip(y, ok, t["note"]):
        if not good:
            ax.annotate(str(note)[:60], (0.51, yy), va="center", fontsize=MIN_FONT, color=NEUTRAL)
    ax.set_yticks(y, labels, fontsize=MIN_FONT)
    ax.axvline(0.5, color=NEUTRAL, lw=0.8)
    low = float(np.nanmin(t["ci_low"])) if t["ci_low"].notna().any() else 0.5
    ax.set_xlim(min(0.45, low - 0.02), 1.02)  # no interval cut at the edge
    ax.set_xlabel("ROC AUC of the signal alone (95% CI, patient bootstrap; each signal's direction chosen on the data, so "
                  "AUC ≥ 0.5;\n0.5 = no information; ↑/↓: higher/lower values go with the label or copy a)")
    ax.set_title(f"{tag} — {title}" if tag else title)
    fig.legend(loc="upper center", bbox_to_anchor=(0.5, 0.0), ncol=2, frameon=False)  # below the figure: never over a point
    fig.tight_layout()
    return fig


def audit_summary(audit: pd.DataFrame) -> dict[str, Any]:
    """The numbers the notebook's text quotes: ``{(signal, predicts, subset): (auc, lo, hi)}`` for the rows with an
    AUC."""
    ok = audit[audit["roc_auc"].notna()]
    return {(r.signal, r.predicts, r.subset): (r.roc_auc, r.ci_low, r.ci_high) for r in ok.itertuples()}
