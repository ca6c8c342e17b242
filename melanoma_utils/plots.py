"""Figures. Each plotting function takes data and returns a :class:`matplotlib.figure.Figure`;
:func:`save_figure` is the one helper that writes them (temporary name, then moved into place).

Every function takes ``tag``: a prefix for the title, e.g. ``"SYNTHETIC"`` on demo data.
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import Mapping, Sequence

import matplotlib.pyplot as plt
import numpy as np
import pandas as pd
from matplotlib.figure import Figure

BENIGN_COLOUR = "#4c72b0"
MALIGNANT_COLOUR = "#c44e52"
TARGET_PALETTE = {0: BENIGN_COLOUR, 1: MALIGNANT_COLOUR}


def _title(tag: str, text: str) -> str:
    return f"{tag} — {text}" if tag else text


def save_figure(fig: Figure, path: str | os.PathLike[str], dpi: int = 120) -> Path:
    """Save ``fig`` as PNG at ``path`` (folders created; written to a temporary name, then moved)."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(f".{path.stem}.tmp{path.suffix}")
    fig.savefig(tmp, dpi=dpi, bbox_inches="tight")
    os.replace(tmp, path)
    return path


def bar_counts(counts: pd.Series, title: str, xlabel: str = "", ylabel: str = "images", percent: bool = False,
               tag: str = "", horizontal: bool = False) -> Figure:
    """A labelled bar chart of counts (or percentages) — Figs 3 and 5."""
    fig, ax = plt.subplots(figsize=(7, 4))
    labels = [str(i) for i in counts.index]
    bars = (ax.barh if horizontal else ax.bar)(labels, counts.to_numpy(), color=BENIGN_COLOUR)
    fmt = "{:.1f}%" if percent else "{:,.0f}"
    ax.bar_label(bars, labels=[fmt.format(v) for v in counts.to_numpy()], padding=2, fontsize=9)
    if horizontal:
        ax.invert_yaxis()
        ax.set_xlabel(ylabel)
        ax.set_ylabel(xlabel)
    else:
        ax.set_xlabel(xlabel)
        ax.set_ylabel(ylabel)
    ax.set_title(_title(tag, title))
    ax.margins(x=0.12 if horizontal else 0.02, y=0.02 if horizontal else 0.12)
    fig.tight_layout()
    return fig


def grouped_counts(df: pd.DataFrame, by: str, hue: str, title: str, tag: str = "", log: bool = False,
                   hue_labels: Mapping | None = None) -> Figure:
    """Counts of ``by`` split by ``hue`` as grouped bars — Figs 4 and 6."""
    table = df.groupby([by, hue], observed=True).size().unstack(fill_value=0)
    if hue_labels:
        table = table.rename(columns=hue_labels)
    fig, ax = plt.subplots(figsize=(8, 4))
    table.plot.bar(ax=ax, rot=0, logy=log, width=0.8)
    for cont in ax.containers:
        ax.bar_label(cont, fmt="{:,.0f}", fontsize=8, padding=1)
    ax.set_ylabel("images" + (" (log scale)" if log else ""))
    ax.set_title(_title(tag, title))
    ax.tick_params(axis="x", labelrotation=20)
    fig.tight_layout()
    return fig


def age_hist(df: pd.DataFrame, title: str, hue: str | None = None, tag: str = "", density: bool = False,
             hue_labels: Mapping | None = None) -> Figure:
    """Age distribution, optionally per group (density-normalised to compare shapes) — Figs 7–9."""
    import seaborn as sns

    data = df.dropna(subset=["age"])
    if hue_labels and hue:
        data = data.assign(**{hue: data[hue].map(hue_labels)})
    fig, ax = plt.subplots(figsize=(7, 4))
    sns.histplot(data=data, x="age", hue=hue, binwidth=5, stat="density" if density else "count",
                 common_norm=False, element="step" if hue else "bars", ax=ax, discrete=False)
    ax.set_xlabel("approximate age (years)")
    ax.set_title(_title(tag, title))
    fig.tight_layout()
    return fig


def colour_hist(hist: np.ndarray, title: str, tag: str = "") -> Figure:
    """R, G, B intensity distributions (normalised) from :func:`melanoma_utils.eda.colour_histograms` — Figs 10–11."""
    fig, ax = plt.subplots(figsize=(7, 3.5))
    for c, (name, colour) in enumerate(zip("RGB", ("#d62728", "#2ca02c", "#1f77b4"))):
        total = hist[c].sum()
        ax.plot(np.arange(256), hist[c] / total if total else hist[c], color=colour, label=name)
    ax.set_xlim(0, 255)
    ax.set_xlabel("intensity")
    ax.set_ylabel("share of sampled pixels")
    ax.legend()
    ax.set_title(_title(tag, title))
    fig.tight_layout()
    return fig


def rate_with_ci(table: pd.DataFrame, title: str, overall_pct: float | None = None, tag: str = "") -> Figure:
    """Malignancy rate per group with its 95% CI (a table from :func:`melanoma_utils.eda.malignancy_rate`)."""
    fig, ax = plt.subplots(figsize=(7, 0.45 * len(table) + 1.2))
    y = np.arange(len(table))
    rate = table["rate_pct"].to_numpy()
    err = np.clip(np.vstack([rate - table["ci_low_pct"].to_numpy(), table["ci_high_pct"].to_numpy() - rate]), 0, None)
    ax.errorbar(rate, y, xerr=err, fmt="o", color=MALIGNANT_COLOUR, capsize=3)
    ax.set_yticks(y, [f"{i} (n={n:,})" for i, n in zip(table.index, table["images"])])
    ax.invert_yaxis()
    if overall_pct is not None:
        ax.axvline(overall_pct, color="grey", ls="--", lw=1, label=f"overall {overall_pct:.2f}%")
        ax.legend(loc="lower right")
    ax.set_xlabel("malignant (%), 95% Wilson CI")
    ax.set_title(_title(tag, title))
    fig.tight_layout()
    return fig


def hist_series(values: pd.Series, title: str, xlabel: str, tag: str = "", bins: int | Sequence = 30,
                log: bool = False) -> Figure:
    """A plain histogram of one series (e.g. images per patient)."""
    fig, ax = plt.subplots(figsize=(7, 3.5))
    ax.hist(values, bins=bins, color=BENIGN_COLOUR, log=log)
    ax.set_xlabel(xlabel)
    ax.set_ylabel("count" + (" (log)" if log else ""))
    ax.set_title(_title(tag, title))
    fig.tight_layout()
    return fig


def size_scatter(df: pd.DataFrame, title: str, tag: str = "") -> Figure:
    """Original width × height of each image, benign vs malignant (jittered; the acquisition signal)."""
    known = df.dropna(subset=["width", "height"])
    rng = np.random.default_rng(0)
    fig, ax = plt.subplots(figsize=(7, 5))
    for t, label in ((0, "benign"), (1, "malignant")):
        part = known[known["target"] == t]
        jitter = rng.normal(1, 0.02, (2, len(part)))
        ax.scatter(part["width"] * jitter[0], part["height"] * jitter[1], s=4 if t == 0 else 10,
                   alpha=0.15 if t == 0 else 0.6, color=TARGET_PALETTE[t], label=f"{label} (n={len(part):,})")
    ax.set_xscale("log")
    ax.set_yscale("log")
    ax.set_xlabel("original width (px)")
    ax.set_ylabel("original height (px)")
    ax.legend(markerscale=3)
    ax.set_title(_title(tag, title))
    fig.tight_layout()
    return fig


def auc_bars(table: pd.DataFrame, title: str, tag: str = "", mean: str = "auc_mean", sd: str = "auc_sd") -> Figure:
    """ROC AUC per model/feature set, mean ± sd over folds, 0.5 (chance) marked."""
    fig, ax = plt.subplots(figsize=(7, 0.6 * len(table) + 1.2))
    y = np.arange(len(table))
    ax.barh(y, table[mean], xerr=table[sd], color=BENIGN_COLOUR, capsize=3)
    for i, (m, s) in enumerate(zip(table[mean], table[sd])):
        ax.text(min(m + s + 0.01, 0.98), i, f"{m:.3f} ± {s:.3f}", va="center", fontsize=9)
    ax.set_yticks(y, [str(i) for i in table.index])
    ax.invert_yaxis()
    ax.axvline(0.5, color="grey", ls="--", lw=1)
    ax.set_xlim(0.4, 1.0)
    ax.set_xlabel("ROC AUC (patient-grouped CV, mean ± sd over folds)")
    ax.set_title(_title(tag, title))
    fig.tight_layout()
    return fig


def image_grid(images: Sequence[np.ndarray], titles: Sequence[str] | None = None, ncols: int = 6,
               title: str = "", tag: str = "", row_labels: Sequence[str] | None = None, size: float = 1.9) -> Figure:
    """Images (uint8 RGB or 2-D) in a grid with optional per-image titles — Figs 12–13."""
    n = len(images)
    nrows = int(np.ceil(n / ncols))
    fig, axes = plt.subplots(nrows, ncols, figsize=(size * ncols, size * nrows + 0.4), squeeze=False)
    for i, ax in enumerate(axes.ravel()):
        ax.set_xticks([])
        ax.set_yticks([])
        if i < n:
            img = images[i]
            ax.imshow(img, cmap="gray" if img.ndim == 2 else None, vmin=0, vmax=255)
            if titles is not None:
                ax.set_title(titles[i], fontsize=8)
        else:
            ax.axis("off")
    if row_labels is not None:
        for r, label in enumerate(row_labels):
            axes[r, 0].set_ylabel(label, fontsize=9)
    if title:
        fig.suptitle(_title(tag, title))
    fig.tight_layout()
    return fig
