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

from . import style
from .style import BENIGN_COLOUR, MALIGNANT_COLOUR, NEUTRAL, SEX_PALETTE, TARGET_PALETTE  # noqa: F401 (re-exported)

style.apply()


def _title(tag: str, text: str) -> str:
    return f"{tag} — {text}" if tag else text


def save_figure(fig: Figure, path: str | os.PathLike[str], dpi: int = 120) -> Path:
    """Save ``fig`` as PNG at ``path`` (folders created; written to a temporary name, then moved)."""
    from .atomic import atomic_write

    return atomic_write(path, lambda tmp: fig.savefig(tmp, dpi=dpi, bbox_inches="tight"))


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
    """Counts of ``by`` split by ``hue`` as grouped bars — Figs 4 and 6. Colours are the study's fixed ones for
    ``target`` and ``sex`` (:mod:`melanoma_utils.style`). ``log=True`` (counts of very different sizes) draws one
    panel per ``hue`` value, each on its own linear axis, instead of bars on a log axis (whose lengths mislead)."""
    table = df.groupby([by, hue], observed=True).size().unstack(fill_value=0)
    colours = style.palette_for(hue, list(table.columns))
    if hue_labels:
        table = table.rename(columns=hue_labels)
    if log:
        fig, axes = plt.subplots(1, table.shape[1], figsize=(4 * table.shape[1], 3.8), squeeze=False)
        for i, (ax, column) in enumerate(zip(axes[0], table.columns)):
            bars = ax.bar([str(v) for v in table.index], table[column].to_numpy(),
                          color=colours[i] if colours else BENIGN_COLOUR)
            ax.bar_label(bars, fmt="{:,.0f}", fontsize=style.MIN_FONT, padding=1)
            ax.set_title(str(column))
            ax.set_ylabel("images")
            ax.margins(y=0.12)
        fig.suptitle(_title(tag, title))
        fig.tight_layout()
        return fig
    fig, ax = plt.subplots(figsize=(8, 4))
    table.plot.bar(ax=ax, rot=0, width=0.8, color=colours)
    for cont in ax.containers:
        ax.bar_label(cont, fmt="{:,.0f}", fontsize=8, padding=1)
    ax.set_ylabel("images")
    ax.set_title(_title(tag, title))
    ax.tick_params(axis="x", labelrotation=20)
    fig.tight_layout()
    return fig


def age_hist(df: pd.DataFrame, title: str, hue: str | None = None, tag: str = "", density: bool = False,
             hue_labels: Mapping | None = None) -> Figure:
    """Age distribution, optionally per group (density-normalised to compare shapes) — Figs 7–9."""
    import seaborn as sns

    data = df.dropna(subset=["age"])
    palette = None
    if hue:
        order = sorted(data[hue].dropna().unique())
        fixed = style.palette_for(hue, order)
        palette = dict(zip(order, fixed)) if fixed else None
        if hue_labels:
            data = data.assign(**{hue: data[hue].map(hue_labels)})
            palette = {hue_labels.get(k, k): v for k, v in palette.items()} if palette else None
    fig, ax = plt.subplots(figsize=(7, 4))
    sns.histplot(data=data, x="age", hue=hue, palette=palette, binwidth=5, stat="density" if density else "count",
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


def rate_with_ci(table: pd.DataFrame, title: str, overall_pct: float | None = None, tag: str = "",
                 min_images: int = 30) -> Figure:
    """Malignancy rate per group with its 95% CI (a table from :func:`melanoma_utils.eda.malignancy_rate`). The axis
    fits the groups of at least ``min_images`` images; a longer interval of a smaller group (e.g. 2 children) is cut
    at the axis edge with an arrow and its upper end written beside it, so it does not squash the others."""
    fig, ax = plt.subplots(figsize=(7, 0.45 * len(table) + 1.2))
    y = np.arange(len(table))
    rate = table["rate_pct"].to_numpy()
    low, high = table["ci_low_pct"].to_numpy(), table["ci_high_pct"].to_numpy()
    big = table["images"].to_numpy() >= min_images
    right = 1.1 * float(np.nanmax(high[big] if big.any() else high)) + 0.2
    cut = high > right
    err = np.clip(np.vstack([rate - low, np.minimum(high, right) - rate]), 0, None)
    ax.errorbar(rate, y, xerr=err, fmt="o", color=MALIGNANT_COLOUR, capsize=3)
    for yy, h in zip(y[cut], high[cut]):
        ax.annotate(f"→ {h:.0f}%", (right, yy), xytext=(2, 0), textcoords="offset points", va="center",
                    fontsize=style.MIN_FONT, color=MALIGNANT_COLOUR, annotation_clip=False)
    ax.set_xlim(0, right)
    ax.set_yticks(y, [f"{i} (n={n:,})" for i, n in zip(table.index, table["images"])])
    ax.invert_yaxis()
    if overall_pct is not None:
        ax.axvline(overall_pct, color="grey", ls="--", lw=1, label=f"overall {overall_pct:.2f}%")
        ax.legend(loc="lower right")
    ax.set_xlabel("malignant (%), 95% Wilson CI" + (" (intervals past the edge: their end written)" if cut.any() else ""))
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
                import textwrap

                ax.set_title(textwrap.fill(str(titles[i]), 18), fontsize=style.MIN_FONT)
        else:
            ax.axis("off")
    if row_labels is not None:
        for r, label in enumerate(row_labels):
            axes[r, 0].set_ylabel(label, fontsize=9)
    if title:
        import textwrap

        fig.suptitle(textwrap.fill(_title(tag, title), max(30, int(9 * size * ncols))))
    fig.tight_layout()
    return fig


def history_curves(history: pd.DataFrame, title: str = "Training history", tag: str = "") -> Figure:
    """Loss and ROC AUC per epoch, training vs validation (the study's Figs 16–17)."""
    fig, axes = plt.subplots(1, 2, figsize=(10, 3.6))
    epochs = history["epoch"] + 1 if "epoch" in history else np.arange(1, len(history) + 1)
    for ax, metric, label in ((axes[0], "loss", "weighted BCE loss"), (axes[1], "auc", "ROC AUC")):
        if metric in history:
            ax.plot(epochs, history[metric], "o-", label="training")
        if f"val_{metric}" in history:
            ax.plot(epochs, history[f"val_{metric}"], "s-", label="validation")
        ax.set_xlabel("epoch")
        ax.set_ylabel(label)
        ax.legend()
    fig.suptitle(_title(tag, title))
    fig.tight_layout()
    return fig


def confusion(m: Mapping[str, float], title: str, tag: str = "") -> Figure:
    """A 2×2 confusion matrix from :func:`melanoma_utils.evaluation.threshold_metrics` output: counts and the share
    of each true class (row percentages: specificity and sensitivity on the diagonal), shaded by that share."""
    table = np.array([[m["tn"], m["fp"]], [m["fn"], m["tp"]]], dtype=float)
    share = table / np.maximum(table.sum(axis=1, keepdims=True), 1)
    fig, ax = plt.subplots(figsize=(4.4, 3.8))
    ax.imshow(share, cmap="Blues", vmin=0, vmax=1)
    for (i, j), v in np.ndenumerate(table):
        ax.text(j, i, f"{int(v):,}\n{100 * share[i, j]:.1f}%", ha="center", va="center", fontsize=11,
                color="white" if share[i, j] > 0.55 else "black")
    ax.set_xticks([0, 1], ["benign", "malignant"])
    ax.set_yticks([0, 1], ["benign", "malignant"])
    ax.set_xlabel("predicted")
    ax.set_ylabel("true (row % of the true class)")
    ax.set_title(_title(tag, f"{title}\nthreshold {m['threshold']:.3f}: sens {m['sensitivity']:.2f}, spec {m['specificity']:.2f}"),
                 fontsize=10)
    fig.tight_layout()
    return fig


def roc_pr(curves: Mapping[str, tuple[np.ndarray, np.ndarray]], title: str = "", tag: str = "") -> Figure:
    """ROC and precision–recall curves for several models: ``{label: (y_true, y_score)}``."""
    from sklearn.metrics import average_precision_score, precision_recall_curve, roc_auc_score, roc_curve

    fig, (a, b) = plt.subplots(1, 2, figsize=(11, 4.6))
    prevalence = None
    for label, (y, s) in curves.items():
        fpr, tpr, _ = roc_curve(y, s)
        a.plot(fpr, tpr, label=f"{label} (ROC AUC {roc_auc_score(y, s):.3f}, AP {average_precision_score(y, s):.3f})")
        prec, rec, _ = precision_recall_curve(y, s)
        b.plot(rec, prec)
        prevalence = float(np.mean(y))
    a.plot([0, 1], [0, 1], color="grey", ls="--", lw=1, label="chance")
    a.set_xlabel("1 − specificity")
    a.set_ylabel("sensitivity")
    if prevalence is not None:
        b.axhline(prevalence, color="grey", ls="--", lw=1)
        b.annotate(f"chance (prevalence {prevalence:.3f})", (1, prevalence), xytext=(0, 3), textcoords="offset points",
                   ha="right", va="bottom", fontsize=8, color="grey")
    b.set_xlabel("recall (sensitivity)")
    b.set_ylabel("precision")
    handles, labels = a.get_legend_handles_labels()  # one legend below both panels: it covers no curve
    fig.suptitle(_title(tag, title or "ROC and precision–recall curves"))
    fig.tight_layout()
    ncol = 2 if len(labels) > 4 else 1
    fig.subplots_adjust(bottom=0.14 + 0.045 * ((len(labels) + ncol - 1) // ncol))
    fig.legend(handles, labels, loc="lower center", ncol=ncol, fontsize=8, frameon=False)
    return fig


def importance_bars(table: pd.DataFrame, title: str, tag: str = "", mean: str = "importance_mean",
                    sd: str = "importance_sd", xlabel: str = "drop in ROC AUC when permuted (mean ± sd)",
                    low: str | None = None, high: str | None = None) -> Figure:
    """Feature importance as horizontal bars with error bars (the study's Fig 14, grouped honestly): ± ``sd``, or the
    interval ``low``–``high`` when both columns are given (e.g. a bootstrap CI of a mean |SHAP|, which cannot go
    below zero the way ± sd can)."""
    fig, ax = plt.subplots(figsize=(7, 0.5 * len(table) + 1.3))
    y = np.arange(len(table))
    values = table[mean].to_numpy()
    if low and high:
        err = np.clip(np.vstack([values - table[low].to_numpy(), table[high].to_numpy() - values]), 0, None)
    else:
        err = table[sd].to_numpy() if sd in table else None
    ax.barh(y, values, xerr=err, color=[MALIGNANT_COLOUR if v > 0 else NEUTRAL for v in values], capsize=3)
    ax.set_yticks(y, [str(i) for i in table.index])
    ax.invert_yaxis()
    ax.axvline(0, color="black", lw=0.8)
    ax.set_xlabel(xlabel)
    ax.set_title(_title(tag, title))
    fig.tight_layout()
    return fig


def explanation_grid(images: np.ndarray, shap_maps: np.ndarray, cams: np.ndarray | None, titles: Sequence[str],
                     title: str = "", tag: str = "", masks: np.ndarray | None = None,
                     cam_inside: Sequence[float] | None = None) -> Figure:
    """Per lesion: the image, its SHAP attribution (channels summed, lightly smoothed, colour scale at the 99th
    percentile of |SHAP| with a colour bar; red raises, blue lowers the melanoma probability) and, if given, the
    Grad-CAM heat map over the image with its colour bar — the study's Fig 15. ``masks`` (lesion masks, e.g.
    :func:`melanoma_utils.explain.lesion_mask`) are outlined on every panel; ``cam_inside`` (the share of Grad-CAM
    mass inside each mask) is written in the Grad-CAM panel's title."""
    import cv2

    n = len(images)
    ncols = 3 if cams is not None else 2
    fig, axes = plt.subplots(n, ncols, figsize=(3.1 * ncols, 2.8 * n + 0.6), squeeze=False)
    for i in range(n):
        img = np.clip(images[i], 0, 255).astype(np.uint8)
        attribution = cv2.GaussianBlur(shap_maps[i].sum(axis=-1).astype(np.float32), (0, 0), sigmaX=max(1.0, img.shape[0] / 64))
        lim = float(np.percentile(np.abs(attribution), 99)) or 1.0
        axes[i, 0].imshow(img)
        axes[i, 0].set_title(titles[i], fontsize=style.MIN_FONT)
        axes[i, 1].imshow(img.mean(axis=-1), cmap="gray", alpha=0.35)
        shown = axes[i, 1].imshow(attribution, cmap="bwr", vmin=-lim, vmax=lim, alpha=0.85)
        fig.colorbar(shown, ax=axes[i, 1], fraction=0.046, pad=0.03).ax.tick_params(labelsize=7)
        axes[i, 1].set_title("SHAP (expected gradients)", fontsize=style.MIN_FONT)
        if cams is not None:
            axes[i, 2].imshow(img)
            heat = axes[i, 2].imshow(cams[i], cmap="jet", alpha=0.45, vmin=0, vmax=1)
            fig.colorbar(heat, ax=axes[i, 2], fraction=0.046, pad=0.03).ax.tick_params(labelsize=7)
            inside = "" if cam_inside is None else (": empty map" if not np.isfinite(cam_inside[i])
                                                     else f": {100 * cam_inside[i]:.0f}% inside the lesion")
            axes[i, 2].set_title(f"Grad-CAM{inside}", fontsize=style.MIN_FONT)
        for ax in axes[i]:
            if masks is not None:
                ax.contour(masks[i].astype(float), levels=[0.5], colors="lime", linewidths=0.8)
            ax.set_xticks([])
            ax.set_yticks([])
    if title:
        fig.suptitle(_title(tag, title))
    fig.tight_layout(rect=(0, 0, 1, 1 - 0.5 / fig.get_figheight()))  # room for the title above the first row
    return fig


def reliability_diagram(curves: Mapping[str, pd.DataFrame], title: str = "Calibration", tag: str = "") -> Figure:
    """Reliability diagram: observed malignant rate against mean predicted probability per equal-mass bin
    (:func:`melanoma_utils.calibration.reliability_table`), one line per entry of ``curves``; below, the
    number of images in each bin of the first curve."""
    fig, (ax, ax_n) = plt.subplots(2, 1, figsize=(6, 6.5), gridspec_kw={"height_ratios": [3, 1]}, sharex=True)
    top = 0.0
    for name, t in curves.items():
        ax.plot(t["mean_predicted"], t["observed_rate"], marker="o", label=name)
        top = max(top, float(t["mean_predicted"].max()), float(t["observed_rate"].max()))
    top = min(1.0, top * 1.05 + 0.02)
    ax.plot([0, top], [0, top], ls="--", color="grey", label="perfectly calibrated")
    ax.set_ylabel("observed malignant rate")
    ax.set_xlim(0, top)
    ax.set_ylim(0, top)
    ax.legend(fontsize=8)
    ax.set_title(_title(tag, title))
    first = next(iter(curves.values()))
    ax_n.bar(first["mean_predicted"], first["n"], width=top / 40, color=BENIGN_COLOUR)
    last = -np.inf
    for x, n in zip(first["mean_predicted"], first["n"]):  # a label only where it does not touch the previous one
        if x - last >= top / 12:
            ax_n.annotate(f"{n}", (x, n), ha="center", va="bottom", fontsize=7)
            last = x
    ax_n.set_ylabel("images / bin")
    ax_n.set_xlabel("mean predicted probability (equal-mass bins)")
    ax_n.margins(y=0.3)
    fig.tight_layout()
    return fig


def decision_curve(curves: Mapping[str, pd.DataFrame], title: str = "Decision curve", tag: str = "") -> Figure:
    """Net benefit against the threshold probability (:func:`melanoma_utils.clinical.net_benefit`): one line per
    entry of ``curves``, with *biopsy all* and *biopsy none* of the first."""
    fig, ax = plt.subplots(figsize=(7, 4.5))
    first = next(iter(curves.values()))
    for name, t in curves.items():
        ax.plot(100 * t["threshold"], t["model"], lw=2, label=name)
    ax.plot(100 * first["threshold"], first["biopsy_all"], color="grey", ls="--", label="biopsy all")
    ax.axhline(0, color="black", lw=1, label="biopsy none")
    best = max(float(t["model"].max()) for t in curves.values())
    ax.set_ylim(min(-0.01, -0.1 * max(best, 0.01)), max(best, float(first["biopsy_all"].max())) * 1.1 + 1e-3)
    ax.set_xlabel("threshold probability (%): the melanoma risk at which one would biopsy")
    ax.set_ylabel("net benefit (true positives per image)")
    ax.legend(fontsize=8)
    ax.set_title(_title(tag, title))
    fig.tight_layout()
    return fig


def forest_plot(table: pd.DataFrame, title: str = "ROC AUC by subgroup", tag: str = "", overall: float | None = None) -> Figure:
    """Subgroup ROC AUCs with 95% CIs (:func:`melanoma_utils.clinical.subgroup_table`); groups too small for
    an AUC are listed with their note instead of a point."""
    t = table.reset_index(drop=True)
    fig, ax = plt.subplots(figsize=(8, 0.32 * len(t) + 1.2))
    ypos = np.arange(len(t))[::-1]
    ok = t["roc_auc"].notna().to_numpy()
    has_ci = ok & t["ci_low"].notna().to_numpy()
    ax.errorbar(t.loc[has_ci, "roc_auc"], ypos[has_ci],
                xerr=[t.loc[has_ci, "roc_auc"] - t.loc[has_ci, "ci_low"], t.loc[has_ci, "ci_high"] - t.loc[has_ci, "roc_auc"]],
                fmt="o", color=BENIGN_COLOUR, ecolor="grey", capsize=2)
    ax.plot(t.loc[ok & ~has_ci, "roc_auc"], ypos[ok & ~has_ci], "o", mfc="white", color=BENIGN_COLOUR)
    labels = [f"{f}: {g} (n={n}, {m} mal.)" for f, g, n, m in zip(t["factor"], t["group"], t["n"], t["n_malignant"])]
    ax.set_yticks(ypos, labels, fontsize=8)
    for y, good in zip(ypos, ok):
        if not good:
            ax.annotate("too small for an AUC", (0.52, y), va="center", fontsize=7, color="grey")
    if overall is not None:
        ax.axvline(overall, color=MALIGNANT_COLOUR, ls="--", lw=1, label=f"all images {overall:.3f}")
        ax.legend(fontsize=8, loc="lower left")
    ax.axvline(0.5, color="grey", lw=0.8)
    ax.axvline(1.0, color="grey", lw=0.5, ls=":")
    ax.set_xlim(0.4, 1.03)
    ax.set_xlabel("ROC AUC (95% CI, patient bootstrap)")
    ax.set_title(_title(tag, title))
    fig.tight_layout()
    return fig


def auc_points(summary: pd.DataFrame, title: str, tag: str = "") -> Figure:
    """Pooled out-of-fold ROC AUC per variant with its patient-bootstrap 95% CI, overall and melanoma vs nevus: points
    and intervals on an axis that starts where the data do (``summary`` from
    :func:`melanoma_utils.experiments.summarise_cv`)."""
    fig, ax = plt.subplots(figsize=(8, 0.55 * len(summary) + 1.4))
    y = np.arange(len(summary))
    for offset, (col, lo, hi, colour, label) in zip((-0.15, 0.15), (
            ("pooled_oof_roc_auc", "pooled_ci_low", "pooled_ci_high", BENIGN_COLOUR, "all images"),
            ("pooled_mel_vs_nevus_auc", "pooled_mel_vs_nevus_ci_low", "pooled_mel_vs_nevus_ci_high", MALIGNANT_COLOUR,
             "melanoma vs nevus"))):
        est = summary[col].to_numpy(float)
        err = np.vstack([est - summary[lo].to_numpy(float), summary[hi].to_numpy(float) - est])
        ax.errorbar(est, y + offset, xerr=np.nan_to_num(err), fmt="o", color=colour, capsize=3, label=label)
    ax.set_yticks(y, [str(i) for i in summary.index])
    ax.invert_yaxis()
    ax.axvline(0.5, color="grey", ls="--", lw=1)
    low = np.nanmin(summary[["pooled_ci_low", "pooled_mel_vs_nevus_ci_low"]].to_numpy(float))
    ax.set_xlim(max(0.0, min(0.5, low) - 0.02), 1.0)
    ax.set_xlabel("pooled out-of-fold ROC AUC (95% CI, patient bootstrap)")
    ax.legend(loc="lower right", fontsize=8)
    ax.set_title(_title(tag, title))
    fig.tight_layout()
    return fig


def paired_deltas(table: pd.DataFrame, title: str, tag: str = "") -> Figure:
    """Paired ROC AUC differences with 95% CIs (``table`` from :func:`melanoma_utils.experiments.paired_contrasts`),
    one row per contrast, all images and melanoma vs nevus side by side; 0 (no difference) marked."""
    contrasts = list(dict.fromkeys(table["contrast"]))
    fig, ax = plt.subplots(figsize=(9, 0.6 * len(contrasts) + 1.4))
    for offset, (subset, colour, label) in zip((-0.15, 0.15), (("all", BENIGN_COLOUR, "all images"),
                                                               ("melanoma_vs_nevus", MALIGNANT_COLOUR, "melanoma vs nevus"))):
        part = table[table["subset"] == subset].set_index("contrast").reindex(contrasts)
        y = np.arange(len(contrasts)) + offset
        est = part["delta_auc"].to_numpy(float)
        err = np.vstack([est - part["ci_low"].to_numpy(float), part["ci_high"].to_numpy(float) - est])
        ax.errorbar(est, y, xerr=np.nan_to_num(err), fmt="o", color=colour, capsize=3, label=label)
    ax.set_yticks(np.arange(len(contrasts)), contrasts, fontsize=9)
    ax.invert_yaxis()
    ax.axvline(0.0, color="grey", ls="--", lw=1)
    ax.set_xlabel("paired difference in ROC AUC (a − b; 95% CI, same patients resampled for both)")
    ax.legend(loc="best", fontsize=8)
    ax.set_title(_title(tag, title))
    fig.tight_layout()
    return fig
