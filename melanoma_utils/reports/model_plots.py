"""Figures of models and their evaluation (training history, ROC/PR, confusion, calibration, decision curves,
subgroups, ablation intervals; importance and explanations in :mod:`melanoma_utils.reports.explain_plots`). Same conventions as :mod:`melanoma_utils.reports.plots`, which
re-exports every function here: each takes data and returns a :class:`matplotlib.figure.Figure`; ``tag`` prefixes
the title."""

from __future__ import annotations

from typing import Mapping

import matplotlib.pyplot as plt
import numpy as np
import pandas as pd
from matplotlib.figure import Figure

from . import style
from .style import BENIGN_COLOUR, MALIGNANT_COLOUR


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
    fig.suptitle(style.titled(tag, title))
    fig.tight_layout()
    return fig


def confusion(m: Mapping[str, float], title: str, tag: str = "") -> Figure:
    """A 2×2 confusion matrix from :func:`melanoma_utils.evaluation.metrics.threshold_metrics` output: counts and the share
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
    n = int(table.sum())
    ax.set_title(style.titled(tag, f"{title} (n={n:,})\nthreshold {m['threshold']:.3f}: sensitivity {m['sensitivity']:.2f}, "
                              f"specificity {m['specificity']:.2f}"), fontsize=10)
    fig.tight_layout()
    return fig


def distinct_curves(curves: Mapping[str, tuple[np.ndarray, np.ndarray]]) -> dict[str, tuple[np.ndarray, np.ndarray]]:
    """``curves`` with models whose labels and scores are identical drawn once, under one label naming them all
    (``"a = b (identical predictions)"``): a second copy would hide exactly under the first."""
    out: dict[str, tuple[np.ndarray, np.ndarray]] = {}
    names: dict[str, list[str]] = {}
    for label, (y, s) in curves.items():
        y, s = np.asarray(y), np.asarray(s)
        same = next((k for k, (y0, s0) in out.items() if y0.shape == y.shape and np.array_equal(y0, y)
                     and np.allclose(s0, s, rtol=0, atol=1e-12)), None)
        if same is None:
            out[label], names[label] = (y, s), [label]
        else:
            names[same].append(label)
    return {(k if len(names[k]) == 1 else " = ".join(names[k]) + " (identical predictions)"): v for k, v in out.items()}


def identical_variant_labels(oof: pd.DataFrame, atol: float = 1e-12) -> dict[str, str]:
    """Display labels for variants of an out-of-fold table (``variant, image_name, probability`` and ``repeat`` where
    repeated) whose predictions coincide with an earlier variant's on every image both scored in the first fold
    assignment: ``{later: "later (predictions = earlier's)"}``; variants with predictions of their own are left out.
    Two named variants can be the same model on some data (a weighting with nothing to reweight); a plot marks them
    instead of showing two rows that look like two results."""
    part = oof[oof["repeat"] == oof["repeat"].min()] if "repeat" in oof else oof
    table = part.pivot_table(index="image_name", columns="variant", values="probability", sort=False)
    order = [v for v in dict.fromkeys(part["variant"]) if v in table]
    out: dict[str, str] = {}
    for i, later in enumerate(order):
        for earlier in order[:i]:
            both = table[[earlier, later]].dropna()
            if earlier not in out and len(both) and np.allclose(both[earlier], both[later], rtol=0, atol=atol):
                out[later] = f"{later} (predictions = {earlier}'s)"
                break
    return out


def roc_pr(curves: Mapping[str, tuple[np.ndarray, np.ndarray]], title: str = "", tag: str = "") -> Figure:
    """ROC and precision–recall curves for several models: ``{label: (y_true, y_score)}`` (identical models drawn once,
    :func:`distinct_curves`)."""
    from sklearn.metrics import average_precision_score, precision_recall_curve, roc_auc_score, roc_curve

    curves = distinct_curves(curves)

    fig, (a, b) = plt.subplots(1, 2, figsize=(11, 4.6))
    prevalences: dict[str, tuple[float, str]] = {}
    many = len(curves) > 10  # past the default cycle's 10 colours: the first ten in ten distinct hues, the rest in
    # the light shade of a hue, dashed (tab20's dark and light pairs side by side would look alike)
    for k, (label, (y, s)) in enumerate(curves.items()):
        fpr, tpr, _ = roc_curve(y, s)
        look = {"color": plt.get_cmap("tab20")((2 * k) % 20 + (k // 10) % 2), "ls": "-" if k < 10 else "--"} if many else {}
        line, = a.plot(fpr, tpr, label=f"{label} (ROC AUC {roc_auc_score(y, s):.3f}, AP {average_precision_score(y, s):.3f})",
                       **look)
        prec, rec, _ = precision_recall_curve(y, s)
        b.plot(rec, prec, color=line.get_color(), ls=line.get_linestyle())
        prevalences[label] = (float(np.mean(y)), line.get_color())
    a.plot([0, 1], [0, 1], color="grey", ls="--", lw=1, label="chance (ROC)")
    a.set_xlabel("1 − specificity")
    a.set_ylabel("sensitivity")
    distinct = {round(p, 6) for p, _ in prevalences.values()}
    if len(distinct) == 1:  # one prevalence: one chance line, named in the legend (a label on the panel hides under curves)
        p = next(iter(prevalences.values()))[0]
        b.axhline(p, color="grey", ls=":", lw=1.2, label=f"chance (PR): the prevalence, {p:.3f}")
    else:  # each curve's own chance line, in its colour
        for label, (p, colour) in prevalences.items():
            b.axhline(p, color=colour, ls=":", lw=1.2, label=f"chance (PR) of {label}: its prevalence, {p:.3f}")
    b.set_xlabel("recall (sensitivity)")
    b.set_ylabel("precision")
    for ax in (a, b):  # both panels on the full scale: a precision axis that starts above 0 exaggerates
        ax.set_xlim(0, 1)
        ax.set_ylim(0, 1.01)
    handles, labels = a.get_legend_handles_labels()  # one legend below both panels: it covers no curve
    more = b.get_legend_handles_labels()
    handles, labels = handles + more[0], labels + more[1]
    fig.suptitle(style.titled(tag, title or "ROC and precision–recall curves"))
    fig.tight_layout()
    ncol = 2 if len(labels) > 4 else 1
    fig.subplots_adjust(bottom=0.14 + 0.045 * ((len(labels) + ncol - 1) // ncol))
    fig.legend(handles, labels, loc="lower center", ncol=ncol, fontsize=8, frameon=False)
    return fig


def reliability_diagram(curves: Mapping[str, pd.DataFrame], title: str = "Calibration", tag: str = "",
                        log_x: bool | None = None) -> Figure:
    """Reliability diagram: observed malignant rate against mean predicted probability per equal-mass bin
    (:func:`melanoma_utils.evaluation.calibration.reliability_table`), one line per entry of ``curves``, each bin's
    observed rate with its 95% Wilson interval where the table has one; below, the number of images in each bin of
    the first curve. ``log_x`` (default: when half the first curve's bins lie below a tenth of the axis, as at a
    deployment prevalence of 2%) puts the predicted probability on a log axis, so bins near 0 do not pile up."""
    fig, (ax, ax_n) = plt.subplots(2, 1, figsize=(6, 6.5), gridspec_kw={"height_ratios": [3, 1]}, sharex=True)
    top = 0.0
    for name, t in curves.items():
        banded = {"observed_ci_low", "observed_ci_high"} <= set(t)
        line, = ax.plot(t["mean_predicted"], t["observed_rate"], marker="o",
                        label=f"{name} (95% CI per bin)" if banded else name)
        if banded:
            ax.errorbar(t["mean_predicted"], t["observed_rate"], fmt="none", ecolor=line.get_color(), capsize=2,
                        yerr=np.clip([t["observed_rate"] - t["observed_ci_low"],
                                      t["observed_ci_high"] - t["observed_rate"]], 0, None))
        top = max(top, float(t["mean_predicted"].max()), float(t["observed_rate"].max()),
                  float(t["observed_ci_high"].max()) if banded else 0.0)
    top = min(1.0, top * 1.05 + 0.02)
    name, first = next(iter(curves.items()))
    predicted = first["mean_predicted"].to_numpy(float)
    if log_x is None:
        log_x = bool(np.nanmedian(predicted) < top / 10) and bool(np.nanmin(predicted) > 0)
    left = float(np.nanmin(predicted)) / 1.5 if log_x else 0.0
    diagonal = np.geomspace(left, top, 50) if log_x else np.array([0.0, top])
    ax.plot(diagonal, diagonal, ls="--", color="grey", label="perfectly calibrated")
    ax.set_ylabel("observed malignant rate")
    if log_x:
        ax.set_xscale("log")
    ax.set_xlim(left, top)
    ax.set_ylim(0, top)
    ax.legend(fontsize=8)
    ax.set_title(style.titled(tag, title))
    if {"p_low", "p_high"} <= set(first):  # each bar spans its bin's predicted range (a bin near 0 is narrow)
        floor = 0.0 if log_x else top / 200  # a bin with one predicted value still shows (linear axis only)
        ax_n.bar(first["p_low"], first["n"], width=np.maximum(first["p_high"] - first["p_low"], floor), align="edge",
                 color=BENIGN_COLOUR, edgecolor="white", linewidth=0.5)
    else:
        ax_n.bar(first["mean_predicted"], first["n"], width=top / 40, color=BENIGN_COLOUR)
    last = -np.inf
    for x, n in zip(first["mean_predicted"], first["n"]):  # a label only where it does not touch the previous one
        if (np.log10(x) - last >= np.log10(top / left) / 12) if log_x else (x - last >= top / 12):
            ax_n.annotate(f"{n}", (x, n), ha="center", va="bottom", fontsize=7, annotation_clip=False)
            last = np.log10(x) if log_x else x
    ax_n.set_ylabel(f"images per bin\n({name})" if len(curves) > 1 else "images per bin", fontsize=8)
    ax_n.set_xlabel("mean predicted probability (equal-mass bins" + ("; log scale)" if log_x else ")"))
    ax_n.margins(y=0.3)
    fig.tight_layout()
    return fig


def decision_curve(curves: Mapping[str, pd.DataFrame], title: str = "Decision curve", tag: str = "") -> Figure:
    """Net benefit against the threshold probability (:func:`melanoma_utils.evaluation.clinical.net_benefit`): one line per
    entry of ``curves`` (with its patient-bootstrap band where the table has one), with *biopsy all* and *biopsy none*
    of the first. Where the first table has ΔNB intervals, a second panel draws the first curve's difference against
    biopsying all and against biopsying none (the model's net benefit itself), each with its 95% band: the model helps
    where both bands lie above 0."""
    first = next(iter(curves.values()))
    deltas = "delta_all_ci_low" in first
    fig, axes = plt.subplots(2 if deltas else 1, 1, figsize=(7, 7.5 if deltas else 4.5), sharex=True, squeeze=False)
    ax = axes[0, 0]
    for name, t in curves.items():
        line, = ax.plot(100 * t["threshold"], t["model"], lw=2, label=name)
        if {"model_ci_low", "model_ci_high"} <= set(t):  # the patient-bootstrap 95% band
            ax.fill_between(100 * t["threshold"], t["model_ci_low"], t["model_ci_high"], color=line.get_color(),
                            alpha=0.2, lw=0, label=f"{name}: 95% CI (patient bootstrap)")
    ax.plot(100 * first["threshold"], first["biopsy_all"], color="grey", ls="--", label="biopsy all")
    ax.axhline(0, color="black", lw=1, label="biopsy none")
    best = max(max(float(t["model"].max()), float(t["model_ci_high"].max()) if "model_ci_high" in t else 0.0)
               for t in curves.values())  # the band's top too: an interval is never cut
    ax.set_ylim(min(-0.01, -0.1 * max(best, 0.01)), max(best, float(first["biopsy_all"].max())) * 1.1 + 1e-3)
    ax.set_ylabel("net benefit (true positives per image)")
    ax.legend(fontsize=8)
    ax.set_title(style.titled(tag, title))
    if deltas:
        dx = axes[1, 0]
        x = 100 * first["threshold"]
        # ΔNB vs biopsy none is the upper panel's curve itself: only the difference against biopsying all is drawn
        dx.plot(x, first["delta_all"], lw=2, color=MALIGNANT_COLOUR, label="ΔNB vs biopsy all (95% CI)")
        dx.fill_between(x, first["delta_all_ci_low"], first["delta_all_ci_high"], color=MALIGNANT_COLOUR, alpha=0.2, lw=0)
        dx.axhline(0, color="black", lw=1)
        # where biopsying all is far worse, ΔNB against it runs off the top: the panel keeps the region near 0 readable
        # and writes where the curve leaves it and how high it goes
        near = max(float(first["model_ci_high"].max()), 0.005)
        low = min(float(first["delta_all_ci_low"].min()), -0.1 * near)
        dx.set_ylim(low * 1.1, 3 * near)
        off = first["delta_all"].to_numpy(float) > 3 * near
        if off.any():
            dx.annotate(f"↑ off the panel from {x[off].min():.0f}% (up to {first['delta_all'].max():.2f})",
                        (float(x[off].min()), 3 * near), xytext=(4, -10), textcoords="offset points", fontsize=8,
                        color=MALIGNANT_COLOUR)
        dx.set_ylabel("ΔNB vs biopsy all (95% CI)")
        dx.legend(fontsize=8, loc="lower right")
    axes[-1, 0].set_xlabel("threshold probability (%): the melanoma risk at which one would biopsy")
    fig.tight_layout()
    return fig


def forest_plot(table: pd.DataFrame, title: str = "ROC AUC by subgroup", tag: str = "", overall: float | None = None,
                overall_label: str = "all images") -> Figure:
    """Subgroup ROC AUCs with 95% CIs (:func:`melanoma_utils.evaluation.clinical.subgroup_table`); groups too small for
    an AUC are listed with their note instead of a point; a group whose bootstrap interval has no width (every
    resample scored the same, e.g. perfectly separated) is a hollow point marked "CI degenerate". ``overall``: the AUC
    of the whole population (``overall_label`` names it), a dashed line; the legend sits below the axes."""
    t = table.reset_index(drop=True)
    fig, ax = plt.subplots(figsize=(8, 0.32 * len(t) + 1.2))
    ypos = np.arange(len(t))[::-1]
    ok = t["roc_auc"].notna().to_numpy()
    has_ci = ok & t["ci_low"].notna().to_numpy() & (t["ci_high"] - t["ci_low"] > 1e-9).to_numpy()
    ax.errorbar(t.loc[has_ci, "roc_auc"], ypos[has_ci],
                xerr=[t.loc[has_ci, "roc_auc"] - t.loc[has_ci, "ci_low"], t.loc[has_ci, "ci_high"] - t.loc[has_ci, "roc_auc"]],
                fmt="o", color=BENIGN_COLOUR, ecolor="grey", capsize=2)
    ax.plot(t.loc[ok & ~has_ci, "roc_auc"], ypos[ok & ~has_ci], "o", mfc="white", color=BENIGN_COLOUR)
    labels = [f"{f}: {g} (n={n}, {m} mal.)" for f, g, n, m in zip(t["factor"], t["group"], t["n"], t["n_malignant"])]
    ax.set_yticks(ypos, labels, fontsize=8)
    for y, good in zip(ypos, ok):
        if not good:
            ax.annotate("too few for an AUC", (0.52, y), va="center", fontsize=7, color="grey")
    no_interval = t["ci_low"].isna().to_numpy()
    for y, auc, none in zip(ypos[ok & ~has_ci], t.loc[ok & ~has_ci, "roc_auc"], no_interval[ok & ~has_ci]):
        ax.annotate("no interval" if none else "CI degenerate", (auc, y), xytext=(-6, 0), textcoords="offset points",
                    ha="right", va="center", fontsize=7, color="grey")
    if overall is not None:
        ax.axvline(overall, color=MALIGNANT_COLOUR, ls="--", lw=1, label=f"{overall_label}: {overall:.3f}")
        fig.legend(fontsize=8, loc="upper center", bbox_to_anchor=(0.5, 0.0), frameon=False)  # below: never over a row
    ax.axvline(0.5, color="grey", lw=0.8)
    ax.axvline(1.0, color="grey", lw=0.5, ls=":")
    ax.set_xlim(0.4, 1.03)
    ax.set_xlabel("ROC AUC (95% CI, patient bootstrap)")
    ax.set_title(style.titled(tag, title))
    fig.tight_layout()
    return fig


def _endpoint_rows(ax, estimates: dict[str, tuple[np.ndarray, np.ndarray, np.ndarray]], n: int) -> None:
    """Points with CIs, one offset row per endpoint present (:data:`~melanoma_utils.reports.style.ENDPOINT_STYLE`)."""
    from .style import ENDPOINT_STYLE

    present = [k for k in ENDPOINT_STYLE if k in estimates and np.isfinite(estimates[k][0]).any()]
    offsets = np.linspace(-0.3, 0.3, len(present)) if len(present) > 1 else [0.0]
    for offset, key in zip(offsets, present):
        est, lo, hi = estimates[key]
        colour, marker, label = ENDPOINT_STYLE[key]
        err = np.vstack([est - lo, hi - est])
        ax.errorbar(est, np.arange(n) + offset, xerr=np.nan_to_num(np.clip(err, 0, None)), fmt=marker, color=colour,
                    capsize=2, ms=4, label=label)


def auc_points(summary: pd.DataFrame, title: str, tag: str = "") -> Figure:
    """Pooled out-of-fold ROC AUC per variant with its patient-bootstrap 95% CI on each endpoint the summary holds
    (all images, melanoma vs nevus, and within copy a where known): points and intervals; the legend below the axes
    (``summary`` from :func:`melanoma_utils.study.experiments.summarise_cv`)."""
    cols = {"all": ("pooled_oof_roc_auc", "pooled_ci_low", "pooled_ci_high"),
            "melanoma_vs_nevus": ("pooled_mel_vs_nevus_auc", "pooled_mel_vs_nevus_ci_low", "pooled_mel_vs_nevus_ci_high"),
            "within_copy_a": ("pooled_within_copy_a_auc", "pooled_within_copy_a_ci_low", "pooled_within_copy_a_ci_high"),
            "melanoma_vs_nevus_within_copy_a": ("pooled_mvn_within_copy_a_auc", "pooled_mvn_within_copy_a_ci_low",
                                                "pooled_mvn_within_copy_a_ci_high")}
    est = {k: tuple(summary[c].to_numpy(float) for c in v) for k, v in cols.items() if v[0] in summary}
    fig, ax = plt.subplots(figsize=(9, 0.75 * len(summary) + 1.8))
    _endpoint_rows(ax, est, len(summary))  # type: ignore[arg-type]
    ax.set_yticks(np.arange(len(summary)), [str(i) for i in summary.index])
    ax.invert_yaxis()
    ax.axvline(0.5, color="grey", ls="--", lw=1)
    low = np.nanmin(np.concatenate([v[1] for v in est.values()]))
    ax.set_xlim(max(0.0, min(0.5, low) - 0.02), 1.0)
    ax.set_xlabel("pooled out-of-fold ROC AUC (95% CI, patient bootstrap; 0.5 = chance)")
    fig.legend(loc="upper center", bbox_to_anchor=(0.5, 0.0), ncol=2, frameon=False)  # below the figure: never over data
    ax.set_title(style.titled(tag, title))
    fig.tight_layout()
    return fig


def paired_deltas(table: pd.DataFrame, title: str, tag: str = "") -> Figure:
    """Paired ROC AUC differences with 95% CIs (``table`` from :func:`melanoma_utils.study.contrasts.paired_contrasts`),
    one row per contrast, each endpoint the table holds side by side (all images, melanoma vs nevus, within copy a);
    0 (no difference) marked, the legend below the axes."""
    contrasts = list(dict.fromkeys(table["contrast"]))
    est = {}
    for subset, part in table.groupby("subset", sort=False):
        part = part.set_index("contrast").reindex(contrasts)
        est[subset] = tuple(part[c].to_numpy(float) for c in ("delta_auc", "ci_low", "ci_high"))
    fig, ax = plt.subplots(figsize=(10, 0.8 * len(contrasts) + 1.8))
    _endpoint_rows(ax, est, len(contrasts))
    ax.set_yticks(np.arange(len(contrasts)), contrasts, fontsize=9)
    ax.invert_yaxis()
    ax.axvline(0.0, color="grey", ls="--", lw=1)
    ax.set_xlabel("paired difference in ROC AUC (a − b; 95% CI, same patients resampled for both)")
    fig.legend(loc="upper center", bbox_to_anchor=(0.5, 0.0), ncol=2, frameon=False)  # below the figure: never over data
    ax.set_title(style.titled(tag, title))
    fig.tight_layout()
    return fig
