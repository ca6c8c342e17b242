"""Figures. Each plotting function takes data and returns a :class:`matplotlib.figure.Figure`;
:func:`save_figure` is the one helper that writes them (temporary name, then moved into place). Data and image
figures live here; figures of models and their evaluation in :mod:`melanoma_utils.reports.model_plots`, of what a
model relies on in :mod:`melanoma_utils.reports.explain_plots` (both re-exported below,
so ``plots.roc_pr`` etc. work).

Every function takes ``tag``: a prefix for the title, e.g. ``"SYNTHETIC"`` on demo data.
"""

from __future__ import annotations

import io
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


_title = style.titled


def save_figure(fig: Figure, path: str | os.PathLike[str], dpi: int | None = None) -> Path:
    """Save ``fig`` as PNG at ``path`` (folders created; written to a temporary name, then moved). ``dpi`` defaults to
    :data:`~melanoma_utils.reports.style.DPI` for charts and :data:`~melanoma_utils.reports.style.PHOTO_DPI` for
    figures that show images (their pixels carry no more detail at a higher resolution, only bytes)."""
    from ..atomic import atomic_write

    photo = shows_images(fig)
    if dpi is None:
        dpi = style.PHOTO_DPI if photo else style.DPI
    if not photo or has_colour_bar(fig):  # a colour bar's smooth ramp would band in 256 colours
        return atomic_write(path, lambda tmp: fig.savefig(tmp, dpi=dpi, bbox_inches="tight"))

    def write(tmp: Path) -> None:  # a photo figure: 256 colours (dithered) hold what a page shows, at a third the bytes
        from PIL import Image

        buf = io.BytesIO()
        fig.savefig(buf, dpi=dpi, bbox_inches="tight")
        Image.open(buf).convert("RGB").quantize(256, dither=Image.Dither.FLOYDSTEINBERG).save(tmp, "PNG", optimize=True)

    return atomic_write(path, write)


def shows_images(fig: Figure) -> bool:
    """Whether a figure draws photos (RGB images, e.g. lesions): saved at the photo resolution. A figure whose only
    image is a colour-mapped table (a confusion matrix) is a chart."""
    return any(np.ndim(im.get_array()) == 3 for ax in fig.axes for im in ax.images)


def has_colour_bar(fig: Figure) -> bool:
    """Whether a figure has a colour bar (a heat map's scale): saved in full colour, never reduced to 256."""
    return any(getattr(ax, "_colorbar", None) is not None for ax in fig.axes)


def bar_counts(counts: pd.Series, title: str, xlabel: str = "", ylabel: str = "images", percent: bool = False,
               tag: str = "", horizontal: bool = False, column: str | None = None) -> Figure:
    """A labelled bar chart of counts (or percentages) — Figs 3 and 5. ``column`` (e.g. ``"sex"``): the bars take that
    column's fixed colours (:func:`~melanoma_utils.reports.style.palette_for`), as in every other figure of it."""
    fig, ax = plt.subplots(figsize=(7, 4))
    labels = [str(i) for i in counts.index]
    colours = (style.palette_for(column, labels) if column else None) or BENIGN_COLOUR
    bars = (ax.barh if horizontal else ax.bar)(labels, counts.to_numpy(), color=colours)
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
                   hue_labels: Mapping | None = None, order: Sequence | None = None) -> Figure:
    """Counts of ``by`` split by ``hue`` as grouped bars — Figs 4 and 6. Colours are the study's fixed ones for
    ``target`` and ``sex`` (:mod:`melanoma_utils.reports.style`). ``log=True`` (counts of very different sizes) draws one
    panel per ``hue`` value, each on its own linear axis, instead of bars on a log axis (whose lengths mislead).
    ``order``: the groups of ``by`` in this order (e.g. by frequency, as in another figure of them)."""
    table = df.groupby([by, hue], observed=True).size().unstack(fill_value=0)
    if order is not None:
        table = table.reindex([g for g in order if g in table.index])
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
    ax.margins(y=0.12)  # room above the tallest bar's label
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
    bars = {} if hue else {"color": BENIGN_COLOUR, "edgecolor": "white", "alpha": 1.0}  # as every other histogram; groups: outlines
    sns.histplot(data=data, x="age", hue=hue, palette=palette, binwidth=5, stat="density" if density else "count",
                 common_norm=False, element="step" if hue else "bars", fill=not hue, linewidth=2 if hue else 0.5,
                 ax=ax, discrete=False, **bars)
    ax.set_xlabel("approximate age (years)")
    ax.set_ylabel("density (share per year of age)" if density else "images")
    if hue and ax.get_legend() is not None:
        ax.get_legend().set_frame_on(False)
    ax.set_title(_title(tag, title))
    fig.tight_layout()
    return fig


def colour_hist(hist: np.ndarray, title: str, tag: str = "", ymax: float | None = None) -> Figure:
    """R, G, B intensity distributions (normalised) from :func:`melanoma_utils.reports.eda.colour_histograms` — Figs 10–11.
    ``ymax``: the top of the share axis, the same for figures meant to be compared (e.g. benign vs malignant)."""
    fig, ax = plt.subplots(figsize=(7, 3.5))
    for c, (name, colour) in enumerate(zip("RGB", ("#d62728", "#2ca02c", "#1f77b4"))):
        total = hist[c].sum()
        ax.plot(np.arange(256), hist[c] / total if total else hist[c], color=colour, label=name)
    ax.set_xlim(0, 255)
    if ymax is not None:
        ax.set_ylim(0, ymax)
    ax.set_xlabel("8-bit intensity (0–255)")
    ax.set_ylabel("share of sampled pixels")
    ax.legend()
    ax.set_title(_title(tag, title))
    fig.tight_layout()
    return fig


def rate_with_ci(table: pd.DataFrame, title: str, overall_pct: float | None = None, tag: str = "",
                 min_images: int = 30) -> Figure:
    """Malignancy rate per group with its 95% CI (a table from :func:`melanoma_utils.reports.eda.malignancy_rate`). The axis
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
    if overall_pct is not None:  # named in the axis label: a legend would sit over a bar or a cut interval's end
        ax.axvline(overall_pct, color="grey", ls="--", lw=1)
    ax.set_xlabel("malignant (%), 95% Wilson CI" + (" (intervals past the edge: their end written)" if cut.any() else "")
                  + (f"\ndashed line: all images, {overall_pct:.2f}%" if overall_pct is not None else ""))
    ax.set_title(_title(tag, title))
    fig.tight_layout()
    return fig


def hist_series(values: pd.Series, title: str, xlabel: str, tag: str = "", bins: int | Sequence = 30,
                log: bool = False, log_x: bool = False, ylabel: str = "count") -> Figure:
    """A plain histogram of one series (e.g. images per patient; ``ylabel`` names what is counted). ``log_x``:
    log-spaced bins on a log x axis (a long right tail), the counts on a linear axis from 0; whole-number values get
    bin edges at half-integers, so no bin falls between two whole numbers and shows a gap that is no data, and each
    bar's height is its count per whole value (bins of one and of three values side by side compare). ``log`` puts
    the counts on a log axis (bars without a zero)."""
    fig, ax = plt.subplots(figsize=(7, 3.5))
    per_value = False
    if log_x:
        v = pd.Series(values).astype(float)
        bins = np.geomspace(max(v.min(), 1.0), v.max() + 1, bins if isinstance(bins, int) else len(bins))
        if np.all(v == np.round(v)):  # whole numbers: each bin holds whole values, its height the mean per value
            edges = np.unique(np.round(bins)) - 0.5
            edges = np.append(edges, v.max() + 0.5) if edges[-1] < v.max() + 0.5 else edges
            counts, _ = np.histogram(v, bins=edges)
            ax.bar(edges[:-1], counts / np.diff(edges), width=np.diff(edges), align="edge", color=BENIGN_COLOUR,
                   log=log, edgecolor="white", linewidth=0.5)
            per_value = True
        ax.set_xscale("log")
    if not per_value:
        ax.hist(values, bins=bins, color=BENIGN_COLOUR, log=log, edgecolor="white", linewidth=0.5)
    ax.set_xlabel(xlabel + (" (log scale)" if log_x else ""))
    ax.set_ylabel(ylabel + (" per value (mean over the bin)" if per_value else "") + (" (log)" if log else ""))
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
    from matplotlib.ticker import FixedLocator, NullLocator, StrMethodFormatter

    ax.set_xscale("log")
    ax.set_yscale("log")
    for axis in (ax.xaxis, ax.yaxis):  # plain pixel counts, not 6×10³
        axis.set_major_locator(FixedLocator([500, 1000, 2000, 3000, 4000, 6000]))
        axis.set_major_formatter(StrMethodFormatter("{x:,.0f}"))
        axis.set_minor_locator(NullLocator())
    ax.set_xlabel("original width (px, log scale)")
    ax.set_ylabel("original height (px, log scale)")
    ax.legend(markerscale=3, loc="upper left", bbox_to_anchor=(1.01, 1.0), frameon=False)  # beside the axes
    ax.set_title(_title(tag, title))
    fig.tight_layout()
    return fig


def auc_bars(table: pd.DataFrame, title: str, tag: str = "", mean: str = "auc_mean", sd: str = "auc_sd") -> Figure:
    """ROC AUC per model/feature set as a dot plot (mean ± sd over folds: a bar would have to start at 0), 0.5 (chance)
    marked."""
    fig, ax = plt.subplots(figsize=(7, 0.6 * len(table) + 1.2))
    y = np.arange(len(table))
    ax.errorbar(table[mean], y, xerr=table[sd], fmt="o", color=BENIGN_COLOUR, capsize=3)
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
    fig, axes = plt.subplots(nrows, ncols, figsize=(size * ncols, (size + 0.3) * nrows + 0.5), squeeze=False,
                             layout="constrained")  # room for each panel's title and the figure's: none overlaps
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
    return fig


from .explain_plots import LesionOutlines, explanation_grid, importance_bars  # noqa: E402,F401  (re-exported)
from .model_plots import (  # noqa: E402,F401  (re-exported: one namespace for every figure)
    auc_points,
    confusion,
    decision_curve,
    forest_plot,
    history_curves,
    identical_variant_labels,
    paired_deltas,
    reliability_diagram,
    roc_pr,
)


def hist_by_group(values: pd.Series, groups: pd.Series, title: str, xlabel: str, bins: int = 40,
                  edges: Sequence[float] = (), tag: str = "", edge_labels: Mapping[str, float] | None = None) -> Figure:
    """Overlaid density histograms of ``values`` per group (step outlines, colour-blind-safe colours, the group's
    size in the legend, which sits below the axes); ``edges`` drawn as thin vertical lines (e.g. the ITA bands),
    ``edge_labels`` (name: position, e.g. each band's middle) written along the top of the axes."""
    from .style import ENDPOINT_STYLE

    colours = [c for c, _, _ in ENDPOINT_STYLE.values()]
    v = pd.to_numeric(pd.Series(np.asarray(values)), errors="coerce")
    g = pd.Series(np.asarray(groups)).astype(str)
    ok = v.notna().to_numpy()
    fig, ax = plt.subplots(figsize=(8, 4.5))
    span = np.linspace(np.nanmin(v[ok]), np.nanmax(v[ok]), bins + 1) if ok.any() else bins
    for colour, (name, part) in zip(colours * 3, v[ok].groupby(g[ok], sort=True)):
        ax.hist(part, bins=span, density=True, histtype="step", lw=1.8, color=colour, label=f"{name} (n={len(part):,})")
    for e in edges:
        ax.axvline(e, color=NEUTRAL, lw=0.7, ls=":")
    lo, hi = ax.get_xlim()
    shown = [(name, x) for name, x in (edge_labels or {}).items() if lo <= x <= hi]
    for i, (name, x) in enumerate(shown):  # two staggered rows: names of narrow bands do not run into each other
        ax.annotate(name, (x, 1.0), xycoords=("data", "axes fraction"), xytext=(0, 2 + 10 * (i % 2)),
                    textcoords="offset points", ha="center", va="bottom", fontsize=style.MIN_FONT, color=NEUTRAL)
    ax.set_xlabel(xlabel)
    ax.set_ylabel("density")
    ax.set_title(_title(tag, title), pad=24 if edge_labels else 6)
    fig.legend(loc="upper center", bbox_to_anchor=(0.5, 0.0), ncol=2, frameon=False)  # below the figure: never over data
    fig.tight_layout()
    return fig
