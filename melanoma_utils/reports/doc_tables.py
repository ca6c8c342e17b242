"""The tables and sentences that README.md and docs/*.md show between ``<!-- generated:NAME -->`` markers, each built
from the committed report files (``reports/<dataset>/``), so prose and reports cannot drift apart
(:mod:`melanoma_utils.reports.readme` renders them into the documents)."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pandas as pd

from ..evaluation.results import Estimate


def ablation_table(report_dir: Path) -> str:
    """The ablation table: one row per variant of ``ablation_summary.csv``, the primary endpoint (within copy a) first
    where the data have copies."""
    s = pd.read_csv(report_dir / "ablation_summary.csv")
    within = "pooled_within_copy_a_auc" in s and s["pooled_within_copy_a_auc"].notna().any()
    head = (["within copy a, pooled (95% CI) — primary", "melanoma vs nevus within copy a (95% CI)"] if within else [])
    head += ["all images, pooled (95% CI)", "melanoma vs nevus, pooled (95% CI)", "all images, mean ± sd over folds",
             "PR AUC, mean"]
    lines = ["| variant | " + " | ".join(head) + " |", "|---" * (len(head) + 1) + "|"]
    for r in s.itertuples():
        cells = ([Estimate.cell(r.pooled_within_copy_a_auc, r.pooled_within_copy_a_ci_low, r.pooled_within_copy_a_ci_high),
                  Estimate.cell(r.pooled_mvn_within_copy_a_auc, r.pooled_mvn_within_copy_a_ci_low, r.pooled_mvn_within_copy_a_ci_high)]
                 if within else [])
        cells += [Estimate.cell(r.pooled_oof_roc_auc, r.pooled_ci_low, r.pooled_ci_high),
                  Estimate.cell(r.pooled_mel_vs_nevus_auc, r.pooled_mel_vs_nevus_ci_low, r.pooled_mel_vs_nevus_ci_high),
                  f"{r.roc_auc_mean:.3f} ± {r.roc_auc_sd:.3f}", f"{r.pr_auc_mean:.3f}"]
        lines.append(f"| {r.variant} | " + " | ".join(cells) + " |")
    return "\n".join(lines) + "\n"


#: Endpoints in the order the README's paired table shows them (primary first).
PAIRED_ORDER: tuple[tuple[str, str], ...] = (("within_copy_a", "within copy a — primary"),
                                             ("melanoma_vs_nevus_within_copy_a", "melanoma vs nevus within copy a"),
                                             ("all", "all images"), ("melanoma_vs_nevus", "melanoma vs nevus"))


def _paired_cell(r: Any) -> str:
    holm = float(getattr(r, "p_holm", float("nan")))
    p_text = f"p {r.p_value:.2g}" + (f", Holm {holm:.2g}" if holm == holm else "")
    return (f"{r.delta_auc:+.3f} ({r.ci_low:+.3f} to {r.ci_high:+.3f}; {p_text}; "
            f"{int(r.folds_positive)}/{int(r.folds)} folds > 0)")


def paired_table(report_dir: Path, name: str = "ablation_paired.csv") -> str:
    """The paired contrasts of ``name`` (the ablation's, or notebook 05's ``table3_backbones_paired.csv``): ΔAUC with
    its CI, p and Holm-adjusted p, and the folds above 0, on each endpoint present (within copy a first)."""
    p = pd.read_csv(report_dir / name)
    order = [(k, label) for k, label in PAIRED_ORDER if k in set(p["subset"])]
    lines = ["| contrast (a − b) | " + " | ".join(f"Δ ROC AUC, {label} (95% CI)" for _, label in order) + " | repeats |",
             "|---" * (len(order) + 2) + "|"]
    for contrast, part in p.groupby("contrast", sort=False):
        cells = []
        for subset, _ in order:
            row = part[part["subset"] == subset]
            cells.append(_paired_cell(row.iloc[0]) if len(row) else "—")
        reps = int(part["repeats"].max()) if "repeats" in part else 1
        lines.append(f"| {contrast} | " + " | ".join(cells) + f" | {reps} |")
    return "\n".join(lines) + "\n"


def transforms_table(report_dir: Path, name: str = "table_transforms_training.csv") -> str:
    """The transforms trained as inputs (``table_transforms_training.csv``; ``name``: the same table with the
    backbone's top adapted, ``table_transforms_adapted.csv``), within copy a first where present."""
    if not (report_dir / name).is_file():
        return f"Not rendered yet: notebook 03 writes {name}.\n"
    t = pd.read_csv(report_dir / name)
    within = "within_copy_a_delta_auc" in t
    head = (["within copy a", "Δ vs none, within copy a (95% CI; Holm p)"] if within else [])
    head += ["all images", "Δ vs none (95% CI)", "melanoma vs nevus", "Δ vs none, melanoma vs nevus (95% CI)"]
    lines = ["| preprocessing | " + " | ".join(head) + " |", "|---" * (len(head) + 1) + "|"]
    for r in t.itertuples():
        cells = []
        if within:
            holm = float(getattr(r, "within_copy_a_p_holm", float("nan")))
            cells += [f"{r.within_copy_a_auc:.3f}", f"{r.within_copy_a_delta_auc:+.3f} ({r.within_copy_a_ci_low:+.3f} to "
                      f"{r.within_copy_a_ci_high:+.3f}" + (f"; {holm:.2g}" if holm == holm else "") + ")"]
        cells += [f"{r.roc_auc:.3f}", f"{r.delta_auc:+.3f} ({r.ci_low:+.3f} to {r.ci_high:+.3f})",
                  f"{r.melanoma_vs_nevus_auc:.3f}", f"{r.mvn_delta_auc:+.3f} ({r.mvn_ci_low:+.3f} to {r.mvn_ci_high:+.3f})"]
        lines.append(f"| {r.preprocess} | " + " | ".join(cells) + " |")
    return "\n".join(lines) + "\n"


def transforms_adapted_table(report_dir: Path) -> str:
    """The transforms trained as inputs with the backbone's last block adapted (``table_transforms_adapted.csv``)."""
    return transforms_table(report_dir, "table_transforms_adapted.csv")


def shortcut_audit_table(report_dir: Path) -> str:
    """The shortcut audit (``shortcut_audit.csv``): each signal alone, as a predictor of the label (all images, within
    copy a) and of the copy (benign images)."""
    path = report_dir / "shortcut_audit.csv"
    if not path.is_file():
        return "Not rendered yet: notebook 03 writes shortcut_audit.csv.\n"
    t = pd.read_csv(path)
    cols = [("target", "all", "→ label, all images"), ("target", "within_copy_a", "→ label, within copy a"),
            ("source_copy", "benign", "→ copy a vs b, benign images")]
    lines = ["| signal | " + " | ".join(c[2] for c in cols) + " |", "|---" * (len(cols) + 1) + "|"]
    for signal, part in t.groupby("signal", sort=False):
        cells = []
        for predicts, subset, _ in cols:
            row = part[(part["predicts"] == predicts) & (part["subset"] == subset)]
            r = row.iloc[0] if len(row) else None
            cells.append("—" if r is None else (Estimate.cell(r.roc_auc, r.ci_low, r.ci_high) if r.roc_auc == r.roc_auc
                                                else "too few"))
        lines.append(f"| {signal} | " + " | ".join(cells) + " |")
    return "\n".join(lines) + "\n"


def _selection_markdown(path: Path, seconds: bool = False) -> str:
    """A selection table (:func:`melanoma_utils.study.selection.selection_table`'s CSV at ``path``) as Markdown: each
    candidate on the primary endpoint, melanoma vs nevus within copy a, the held-out external lesions and overall,
    paired against its base; ``seconds``: with the mean seconds per fold run."""
    if not path.is_file():
        return f"Not rendered yet: notebook 03 writes {path.name}.\n"
    t = pd.read_csv(path)
    extra = (" s per run | fold assignments |", "---|---|") if seconds else ("", "")
    mvn_head = "(Δ, 95% CI)" if seconds else "(Δ)"
    lines = [f"| candidate | within copy a (Δ vs base, 95% CI) | melanoma vs nevus within copy a {mvn_head} | held-out "
             f"external lesions (Δ, 95% CI) | all images (Δ) |{extra[0]} verdict |", f"|---|---|---|---|---|{extra[1]}---|"]

    def d(base: bool, v: float, lo: float | None = None, hi: float | None = None) -> str:
        return "" if base else (f" ({v:+.3f}" + (f", {lo:+.3f} to {hi:+.3f}" if lo is not None else "") + ")")

    for r in t.itertuples():
        base = r.verdict == "base"
        mvn_ci = (r.delta_mvn_within_copy_a_ci_low, r.delta_mvn_within_copy_a_ci_high) if seconds else (None, None)
        secs = f" {r.train_seconds_per_run:.0f} | {int(getattr(r, 'repeats', 1))} |" if seconds else ""
        lines.append(f"| {r.candidate} | {r.within_copy_a:.3f}{d(base, r.delta_within_copy_a, r.delta_within_copy_a_ci_low, r.delta_within_copy_a_ci_high)} | "
                     f"{r.mvn_within_copy_a:.3f}{d(base, r.delta_mvn_within_copy_a, *mvn_ci)} | "
                     f"{r.external_holdout:.3f}{d(base, r.delta_external_holdout, r.delta_external_holdout_ci_low, r.delta_external_holdout_ci_high)} | "
                     f"{r.overall:.3f}{d(base, r.delta_overall)} |{secs} {r.verdict} |")
    return "\n".join(lines) + "\n"


def source_weighting_table(report_dir: Path) -> str:
    """The source-weighting selection (``table_source_weighting_selection.csv``): each candidate on the primary
    endpoint, melanoma vs nevus within copy a, the held-out external lesions and overall, paired against its base."""
    return _selection_markdown(report_dir / "table_source_weighting_selection.csv")


def objective_selection_table(report_dir: Path) -> str:
    """The candidates for the default model past the frozen-embedding ceiling (``table_objective_selection.csv``,
    notebook 03 / :mod:`melanoma_utils.study.ceiling`), against today's default, with the seconds per fold run."""
    return _selection_markdown(report_dir / "table_objective_selection.csv", seconds=True)


def objective_confirm_table(report_dir: Path) -> str:
    """The confirmation of an adapted winner on every fold assignment (``table_objective_confirm.csv``,
    ``scripts/objective_study.py --repeat-adapted``), against today's default on the same patients."""
    path = report_dir / "table_objective_confirm.csv"
    if not path.is_file():
        return ("Not measured yet: scripts/objective_study.py --repeat-adapted --out table_objective_confirm.csv "
                "writes it.\n")
    return _selection_markdown(path, seconds=True)


def train_timings_table(report_dir: Path) -> str:
    """What ``train`` cost on the rendering machine (``table_train_timings.csv``, ``scripts/train_timings.py``): wall
    seconds cold and warm, with the defaults and with ``--external``, and the embedding stage's share."""
    path = report_dir / "table_train_timings.csv"
    if not path.is_file():
        return "Not measured yet: scripts/train_timings.py writes table_train_timings.csv.\n"
    t = pd.read_csv(path)
    lines = ["| command | cache | wall time | of it: embedding (images embedded) | head training |", "|---|---|---|---|---|"]

    def secs(v: float) -> str:
        return "—" if v != v else (f"{v:.0f} s" if v < 120 else f"{v / 60:.1f} min")

    for r in t.itertuples():
        emb = "—" if r.embedding_seconds != r.embedding_seconds else f"{secs(r.embedding_seconds)} ({r.embedded_images:,.0f})"
        lines.append(f"| `{r.command}` | {r.cache} | {secs(r.wall_seconds)} | {emb} | {secs(r.head_seconds)} |")
    return "\n".join(lines) + f"\n\nMeasured on {int(t['cpu_cores'].iloc[0])} CPU cores ({t['machine'].iloc[0]}).\n"


def backbones_paired_table(report_dir: Path) -> str:
    """Notebook 05's paired contrasts (``table3_backbones_paired.csv``): each backbone against Lite0, fusion against
    image only."""
    return paired_table(report_dir, "table3_backbones_paired.csv")


def backbones_table(report_dir: Path) -> str:
    """The backbone comparison (``table3_backbones.csv``), one row per backbone, weights and input, grouped by protocol,
    with how each row was evaluated (CV with repeats, or one hold-out split) and the calibrator its runs chose; rows
    that could not run here say why."""
    t = pd.read_csv(report_dir / "table3_backbones.csv")
    lines = ["| protocol | backbone | input | px | evaluation | ROC AUC, within copy a (95% CI) | ROC AUC, all (95% CI) | "
             "melanoma vs nevus | sensitivity | specificity | calibrator | scoring images/s |",
             "|---|---|---|---|---|---|---|---|---|---|---|---|"]
    skipped: dict[tuple[str, str], list[str]] = {}
    for r in t.itertuples():
        weights = r.weights if isinstance(r.weights, str) else "—"
        protocol = getattr(r, "protocol", "") if isinstance(getattr(r, "protocol", ""), str) else ""
        note = getattr(r, "note", "")
        if isinstance(note, str) and note:
            skipped.setdefault((protocol, weights), []).append(r.backbone)
            continue
        speed = getattr(r, "predict_images_per_second", float("nan"))
        reps = getattr(r, "repeats", float("nan"))
        evaluation = str(getattr(r, "evaluation", "")) + (f", {int(reps)} fold assignments" if reps == reps and reps > 1 else "")
        within = Estimate.cell(r.within_copy_a_auc, r.within_copy_a_ci_low, r.within_copy_a_ci_high) \
            if getattr(r, "within_copy_a_auc", float("nan")) == getattr(r, "within_copy_a_auc", float("nan")) else "—"
        lines.append(f"| {protocol} | {r.backbone} | {r.model} | {int(r.image_size) if r.image_size == r.image_size else '—'} | "
                     f"{evaluation} | {within} | {Estimate.cell(r.roc_auc, r.roc_auc_ci_low, r.roc_auc_ci_high)} | "
                     f"{r.mel_vs_nevus_auc:.3f} | {r.sensitivity:.2f} | {r.specificity:.2f} | {getattr(r, 'calibrator', '—')} | "
                     f"{'—' if speed != speed else f'{speed:,.0f}'} |")
    for (protocol, _weights), names in skipped.items():
        lines.append(f"| {protocol} | {', '.join(dict.fromkeys(names))} | both | | not run here: the ImageNet "
                     "weights need a download (this machine is offline) | | | | | | | |")
    return "\n".join(lines) + "\n"


def paper_table(report_dir: Path) -> str:
    """The paper's results beside ours (``table_paper_vs_reproduction.csv``): each metric, the paper's fusion model
    where it states the number, and each of our variants at its own validation threshold with its 95% CI."""
    t = pd.read_csv(report_dir / "table_paper_vs_reproduction.csv")
    ours = [c for c in t.columns if c not in ("metric", "paper (fusion)") and not c.endswith(" CI")
            and not c.startswith("always benign")]
    lines = ["| metric | paper (fusion) | " + " | ".join(ours) + " | always benign (ISIC 2020) |",
             "|---|---|" + "---|" * len(ours) + "---|"]
    def number(x: float) -> str:
        return "—" if x != x else f"{x:.3f}"

    for r in t.to_dict("records"):
        cells = [f"{r[c]:.3f} ({r[c + ' CI']})" if r[c] == r[c] else "—" for c in ours]
        benign = r.get("always benign, ISIC 2020", float("nan"))
        lines.append(f"| {r['metric']} | {number(r['paper (fusion)'])} | " + " | ".join(cells)
                     + f" | {'' if benign != benign else number(benign)} |")
    return "\n".join(lines) + "\n"


def transform_costs(report_dir: Path) -> str:
    """The per-image cost of each transform (``table_transform_cost_ms.csv``, notebook 02) as one sentence."""
    t = pd.read_csv(report_dir / "table_transform_cost_ms.csv").sort_values("ms_per_image")
    size = str(t["size"].iloc[0]) if "size" in t else ""
    return (f"Per-image cost of the transforms at {size} (notebook 02, this machine): "
            + ", ".join(f"{r.transform.replace('_', ' ')} {r.ms_per_image:.2f} ms" for r in t.itertuples())
            + "; applied once, before the cache.\n")


def size_rates(report_dir: Path, min_images: int = 100) -> str:
    """The range of the malignancy rate over original image sizes (``table_rate_by_original_size.csv``, notebook 01),
    among sizes with at least ``min_images`` images, as one sentence."""
    t = pd.read_csv(report_dir / "table_rate_by_original_size.csv")
    big = t[t["images"] >= min_images]
    lo, hi = big.loc[big["rate_pct"].idxmin()], big.loc[big["rate_pct"].idxmax()]
    small = t[t["images"] < min_images]
    return (f"Among the {len(big)} original image sizes with at least {min_images} images, the malignancy rate ranges from "
            f"{lo.rate_pct:.2f}% ({lo['size']}, {int(lo.images):,} images) to {hi.rate_pct:.1f}% ({hi['size']}, "
            f"{int(hi.images):,} images)"
            + (f"; {len(small)} rarer sizes ({int(small['images'].sum()):,} images) range from {small['rate_pct'].min():.1f}% "
               f"to {small['rate_pct'].max():.1f}% on few images" if len(small) else "")
            + ": image size identifies the device and clinic, and clinics differ in case mix.\n")


def export_bench(report_dir: Path) -> str:
    """The exported formats against ``predict`` (``reports/bench/export.json`` from ``scripts/bench_export.py``)."""
    import json

    path = report_dir.parent / "bench" / "export.json"
    if not path.is_file():
        return "Not measured yet: run `scripts/bench_export.py` (it writes reports/bench/export.json).\n"
    b = json.loads(path.read_text())
    ref = b["predict"]
    lines = [f"Run `{b['run']}`, {b['rows']:,} held-out ISIC 2020 images ({b['malignant']} malignant); `predict`: ROC AUC "
             f"{Estimate(ref['roc_auc'], ref['ci_low'], ref['ci_high']).format(3, ci='')}, {1000 * ref['seconds_per_image']:.0f} ms "
             "per image in batches.", "",
             "| format | max abs difference from `predict` | ROC AUC (change) | size | latency per image (one per call) |",
             "|---|---|---|---|---|"]
    for fmt in ("saved_model", "tflite", "tflite_int8", "onnx"):
        if fmt in b:
            r = b[fmt]
            lines.append(f"| {fmt} | {r['max_abs_difference']:.2g} | {r['roc_auc']:.4f} ({r['roc_auc_change']:+.4f}) | "
                         f"{r['megabytes']:.1f} MB | {1000 * r['median_seconds_per_image']:.0f} ms |")
    return "\n".join(lines) + "\n"


def scale_table(report_dir: Path) -> str:
    """Each stage's wall time and peak memory per data-set size, with the fitted growth exponents
    (``reports/bench/scale.csv`` and ``scale.exponents.csv`` from ``scripts/bench_scale.py``)."""
    path = report_dir.parent / "bench" / "scale.csv"
    if not path.is_file():
        return "Not measured yet: run `scripts/bench_scale.py` (it writes reports/bench/scale.csv).\n"
    t = pd.read_csv(path)
    sizes = sorted(t["n_images"].unique())
    exps = path.with_name("scale.exponents.csv")
    e = pd.read_csv(exps).set_index("stage") if exps.is_file() else pd.DataFrame()
    head = " | ".join(f"{n:,} images" for n in sizes)
    lines = [f"Measured on {int(t['cores'].iloc[0])} CPU cores (`{t['machine'].iloc[0]}`); wall time in seconds / peak "
             "resident memory in MB of the stage's process and everything it started.", "",
             f"| stage | {head} | time exponent | memory exponent | note |", "|---" * (len(sizes) + 4) + "|"]
    for stage, part in t.groupby("stage", sort=False):
        part = part.set_index("n_images")
        cells = [f"{part.loc[n, 'seconds']:,.0f} s / {part.loc[n, 'peak_rss_mb']:,.0f} MB" if n in part.index else "—"
                 for n in sizes]
        te = f"{e.loc[stage, 'time_exponent']:.2f}" if stage in e.index else "—"
        me = f"{e.loc[stage, 'memory_exponent']:.2f}" if stage in e.index else "—"
        note = part["note"].dropna().iloc[-1] if part["note"].notna().any() else ""
        lines.append(f"| {stage} | {' | '.join(cells)} | {te} | {me} | {note} |")
    return "\n".join(lines) + "\n"


def importance_table(report_dir: Path) -> str:
    """Grouped permutation importance of notebook 04's two fusion runs (``table_permutation_importance_*.csv``)."""
    rows = {"paper features (+ width/height)": "fusion_paper__width_height", "clinical features": "fusion_clinical"}
    groups = ["image", "age", "sex", "site", "height", "width"]
    lines = ["| fusion model | baseline ROC AUC (one view) | " + " | ".join(groups) + " |",
             "|---|---|" + "---|" * len(groups)]
    for label, name in rows.items():
        t = pd.read_csv(report_dir / f"table_permutation_importance_{name}.csv").set_index("feature")
        cells = [f"{t.loc[g, 'importance_mean']:+.3f} ± {t.loc[g, 'importance_sd']:.3f}" if g in t.index else "—" for g in groups]
        lines.append(f"| {label} | {t['baseline'].iloc[0]:.3f} | " + " | ".join(cells) + " |")
    return "\n".join(lines) + "\n"


def explanations_inside(report_dir: Path) -> str:
    """Fig 15 in numbers (``table_explanations_inside_lesion.csv``): whether each lesion mask passed the quality check,
    and where Grad-CAM and SHAP put their mass (share inside the mask, and that share over the mask's area share)."""
    t = pd.read_csv(report_dir / "table_explanations_inside_lesion.csv")
    pct = lambda v: "empty" if v != v else f"{100 * v:.0f}%"  # noqa: E731
    ratio = lambda v: "—" if v != v else f"{v:.1f}×"  # noqa: E731
    lines = ["| lesion | truth | probability | mask check | lesion area | Grad-CAM inside (÷ area) | "
             "SHAP magnitude inside (÷ area) |", "|---|---|---|---|---|---|---|"]
    for r in t.itertuples():
        check = getattr(r, "mask_check", "not checked")
        g, sh = getattr(r, "gradcam_inside_over_area", float("nan")), getattr(r, "shap_inside_over_area", float("nan"))
        lines.append(f"| {r.image_name} | {'malignant' if r.target else 'benign'} | {r.probability:.2f} | {check} | "
                     f"{pct(r.lesion_area)} | {pct(r.gradcam_inside_lesion)} ({ratio(g)}) | "
                     f"{pct(r.shap_abs_inside_lesion)} ({ratio(sh)}) |")
    return "\n".join(lines) + "\n"


#: The TrainConfig fields the README's defaults table shows, with what each decides.
DEFAULT_FIELDS: dict[str, str] = {
    "kind": "inputs: images + metadata (fusion), images only, metadata only",
    "features": "metadata feature set",
    "backbone": "image branch",
    "backbone_weights": "its weights (ImageNet offline for EfficientNet-Lite)",
    "frozen_features": "frozen backbone, head trained on cached embeddings",
    "image_size": "input side in px (the backbone's native size)",
    "embedding_views": "rotations/mirrors cached per image",
    "head_learning_rate": "Adam learning rate of the head on cached embeddings",
    "learning_rate": "Adam learning rate when training end to end",
    "batch_size": "batch size (per replica)",
    "epochs": "maximum epochs",
    "patience": "early-stopping patience (validation loss; best weights restored)",
    "class_weighting": "class-weighted BCE, w = 1/n per class",
    "source_column": "a grouping that is not the lesion (auto: source_copy where the data have it)",
    "source_weighting": "how training removes that grouping's label information",
    "augment": "crops, colour jitter, random greyscale, flips, 90° rotations",
    "preprocess": "image preprocessing (Fig 12's transforms)",
    "val_fraction": "patients held out for validation (calibrator, threshold, early stopping)",
    "min_sensitivity": "the threshold is the highest reaching this validation sensitivity",
    "tta": "views averaged per image at validation/prediction",
    "objective": "what the model learns: melanoma vs the rest (binary), or the diagnosis classes (melanoma column read)",
    "adapt_blocks": "backbone blocks trained on cached activations after the head (0: the backbone stays frozen)",
    "seed": "drives Python, NumPy and Keras",
}


def train_defaults(report_dir: Path) -> str:
    """The resolved defaults of :class:`~melanoma_utils.models.train_config.TrainConfig` (the one place they are decided;
    ``train``, the notebooks and Python share them). ``report_dir`` is unused: the block is generated from the code."""
    from ..models.train_config import TrainConfig

    cfg = TrainConfig()
    lines = ["| setting (`train` option) | default | what it decides |", "|---|---|---|"]
    for name, what in DEFAULT_FIELDS.items():
        value = getattr(cfg, name)
        option = "--" + name.replace("_", "-")
        if name == "frozen_features":
            option = "--end-to-end"
        elif isinstance(value, bool):
            option = f"--no-{name.replace('_', '-').replace('class-weighting', 'class-weights')}"
        lines.append(f"| `{name}` (`{option}`) | `{value}` | {what} |")
    return "\n".join(lines) + "\n"
