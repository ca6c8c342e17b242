"""Figures of what a model relies on: feature importance bars (the study's Fig 14) and the per-lesion image
explanations (SHAP and Grad-CAM, Fig 15). Same conventions as :mod:`melanoma_utils.reports.plots`, which re-exports
every function here: each takes data and returns a :class:`matplotlib.figure.Figure`; ``tag`` prefixes the title."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Sequence

import matplotlib.pyplot as plt
import numpy as np
import pandas as pd
from matplotlib.axes import Axes
from matplotlib.figure import Figure

from . import style
from .style import MALIGNANT_COLOUR, NEUTRAL


def _bars(ax: Axes, table: pd.DataFrame, values: np.ndarray, err: np.ndarray | None, xlabel: str) -> None:
    y = np.arange(len(table))
    ax.barh(y, values, xerr=err, color=[MALIGNANT_COLOUR if v > 0 else NEUTRAL for v in values], capsize=3)
    ax.set_yticks(y, [str(i) for i in table.index])
    ax.invert_yaxis()
    ax.axvline(0, color="black", lw=0.8)
    if xlabel:
        ax.set_xlabel(xlabel)


def _sign_legend(fig: Figure, values: np.ndarray) -> None:
    """What the bars' colours mean, below the figure (only the colours drawn)."""
    from matplotlib.patches import Patch

    handles = [Patch(color=MALIGNANT_COLOUR, label="above 0: the model relies on it")] if (values > 0).any() else []
    handles += [Patch(color=NEUTRAL, label="0 or below: no reliance measured (noise)")] if (values <= 0).any() else []
    fig.legend(handles=handles, loc="upper center", bbox_to_anchor=(0.5, 0.0), ncol=2, frameon=False, fontsize=8)


#: A bar this many times longer than every other one gets its own panel (the others are drawn again, zoomed).
DOMINANT_RATIO = 5.0


def importance_bars(table: pd.DataFrame, title: str, tag: str = "", mean: str = "importance_mean",
                    sd: str = "importance_sd", xlabel: str = "drop in ROC AUC when permuted (mean ± sd)",
                    low: str | None = None, high: str | None = None) -> Figure:
    """Feature importance as horizontal bars with error bars (the study's Fig 14, grouped honestly): ± ``sd``, or the
    interval ``low``–``high`` when both columns are given (e.g. a bootstrap CI of a mean |SHAP|, which cannot go
    below zero the way ± sd can). When one input dominates (its bar is :data:`DOMINANT_RATIO` times any other, e.g.
    the image beside the metadata), a second panel shows the other inputs on their own scale, so their bars and
    intervals can be read."""
    values = table[mean].to_numpy(float)
    if low and high:
        err = np.clip(np.vstack([values - table[low].to_numpy(), table[high].to_numpy() - values]), 0, None)
    else:
        err = table[sd].to_numpy(float) if sd in table else None
    size = np.abs(values)
    top = int(np.argmax(size)) if len(values) else 0
    rest = np.delete(size, top) if len(values) > 2 else np.array([])
    zoom = len(rest) > 0 and size[top] > DOMINANT_RATIO * max(rest.max(), 1e-12)
    height = 0.5 * len(table) + 1.6
    if not zoom:
        fig, ax = plt.subplots(figsize=(7, height))
        _bars(ax, table, values, err, xlabel)
        ax.set_title(style.titled(tag, title))
        fig.tight_layout()
        _sign_legend(fig, values)
        return fig
    fig, (ax_all, ax_zoom) = plt.subplots(1, 2, figsize=(11, height), width_ratios=[1, 1.3])
    _bars(ax_all, table, values, err, "")
    ax_all.set_title("all inputs", fontsize=10)
    keep = np.arange(len(values)) != top
    _bars(ax_zoom, table[keep], values[keep], None if err is None else err[..., keep], "")
    ax_zoom.set_title(f"without {table.index[top]} (zoomed: its own scale)", fontsize=10)
    fig.supxlabel(xlabel, fontsize=10)  # one label under both panels: two would run into each other
    fig.suptitle(style.titled(tag, title))
    fig.tight_layout()
    _sign_legend(fig, values)
    return fig


@dataclass(frozen=True)
class LesionOutlines:
    """The lesion of each explained image: its ``masks`` (e.g. :func:`melanoma_utils.reports.explain.lesion_mask`),
    the share of Grad-CAM mass inside each (``cam_inside``) and whether each mask passed its check (``mask_ok``,
    :func:`melanoma_utils.reports.explain.mask_quality`; ``None``: all did)."""

    masks: np.ndarray
    cam_inside: Sequence[float] | None = None
    mask_ok: Sequence[bool] | None = None


def explanation_grid(images: np.ndarray, shap_maps: np.ndarray, cams: np.ndarray | None, titles: Sequence[str],
                     title: str = "", tag: str = "", outlines: LesionOutlines | None = None) -> Figure:
    """Per lesion: the image, its SHAP attribution (channels summed, lightly smoothed, colour scale at the 99th
    percentile of |SHAP| with a colour bar; red raises, blue lowers the melanoma probability) and, if given, the
    Grad-CAM heat map over the image with its colour bar — the study's Fig 15. ``outlines``: each lesion's mask is
    outlined on every panel and its share of Grad-CAM mass written in the Grad-CAM panel's title; a mask that failed
    its check is not drawn (an outline that is not the lesion would mislead), its share is not quoted and its
    image's title says so."""
    import cv2

    masks = outlines.masks if outlines else None
    cam_inside = outlines.cam_inside if outlines else None
    mask_ok = outlines.mask_ok if outlines else None

    n = len(images)
    ncols = 3 if cams is not None else 2
    fig, axes = plt.subplots(n, ncols, figsize=(3.1 * ncols, 2.8 * n + 0.6), squeeze=False)
    for i in range(n):
        img = np.clip(images[i], 0, 255).astype(np.uint8)
        attribution = cv2.GaussianBlur(shap_maps[i].sum(axis=-1).astype(np.float32), (0, 0), sigmaX=max(1.0, img.shape[0] / 64))
        lim = float(np.percentile(np.abs(attribution), 99)) or 1.0
        outline = masks is not None and (mask_ok is None or bool(mask_ok[i]))
        axes[i, 0].imshow(img)
        axes[i, 0].set_title(titles[i] + ("" if masks is None or outline else "\n(no outline: mask check failed)"),
                             fontsize=style.MIN_FONT)
        axes[i, 1].imshow(img.mean(axis=-1), cmap="gray", alpha=0.35)
        shown = axes[i, 1].imshow(attribution, cmap="bwr", vmin=-lim, vmax=lim, alpha=0.85)
        bar = fig.colorbar(shown, ax=axes[i, 1], fraction=0.046, pad=0.03)
        bar.ax.tick_params(labelsize=7)
        bar.set_label("SHAP attribution (red: raises)", fontsize=7)
        axes[i, 1].set_title("SHAP (expected gradients)", fontsize=style.MIN_FONT)
        if cams is not None:
            axes[i, 2].imshow(img)
            heat = axes[i, 2].imshow(cams[i], cmap="magma", alpha=0.5, vmin=0, vmax=1)  # perceptually uniform, not a rainbow
            bar = fig.colorbar(heat, ax=axes[i, 2], fraction=0.046, pad=0.03)
            bar.ax.tick_params(labelsize=7)
            bar.set_label("Grad-CAM (scaled to 0–1)", fontsize=7)
            inside = "" if cam_inside is None else (": empty map" if not np.isfinite(cam_inside[i])
                                                     else ": share inside the lesion n/a (mask failed)" if not outline and masks is not None
                                                     else f": {100 * cam_inside[i]:.0f}% inside the lesion")
            axes[i, 2].set_title(f"Grad-CAM{inside}", fontsize=style.MIN_FONT)
        for ax in axes[i]:
            if outline:
                ax.contour(masks[i].astype(float), levels=[0.5], colors="lime", linewidths=0.8)
            ax.set_xticks([])
            ax.set_yticks([])
    if title:
        fig.suptitle(style.titled(tag, title))
    fig.tight_layout(rect=(0, 0, 1, 1 - 0.5 / fig.get_figheight()))  # room for the title above the first row
    return fig
