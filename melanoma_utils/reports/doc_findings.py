"""The README's and docs' sentences and headline built from the committed report files: the ablation's findings on the
primary endpoint first, notebook 06's validation, and the headline table beside the paper's numbers."""

from __future__ import annotations

from pathlib import Path

import pandas as pd

from ..evaluation.results import Estimate


def _delta(paired: pd.DataFrame, a: str, b: str, subset: str = "all") -> str:
    row = paired[(paired["contrast"] == f"{a} − {b}") & (paired["subset"] == subset)]
    if row.empty:
        return "not run"
    r = row.iloc[0]
    reps = int(r["repeats"]) if "repeats" in r and r["repeats"] == r["repeats"] else 1
    holm = float(r["p_holm"]) if "p_holm" in r and r["p_holm"] == r["p_holm"] else None
    return (f"{r.delta_auc:+.3f} ({r.ci_low:+.3f} to {r.ci_high:+.3f}"
            + (f"; Holm p {holm:.2g}" if holm is not None else "")
            + f"; {int(r.folds_positive)} of {int(r.folds)} folds > 0" + (f", {reps} repeats" if reps > 1 else "") + ")")


def _endpoints(d: pd.DataFrame, a: str, b: str, within: bool) -> str:
    """A contrast on the primary endpoint(s) first, then the guards."""
    if within:
        return (f"within copy a {_delta(d, a, b, 'within_copy_a')}, melanoma vs nevus within copy a "
                f"{_delta(d, a, b, 'melanoma_vs_nevus_within_copy_a')}; all images {_delta(d, a, b)}")
    return f"{_delta(d, a, b)} overall, {_delta(d, a, b, 'melanoma_vs_nevus')} melanoma vs nevus"


def ablation_findings(report_dir: Path) -> str:
    """The ablation's key numbers as sentences (``ablation_summary.csv``, ``ablation_paired.csv``,
    ``table_paper_vs_reproduction.csv``), on the primary endpoint first, so the README's findings cannot drift from
    the reports."""
    s = pd.read_csv(report_dir / "ablation_summary.csv").set_index("variant")
    d = pd.read_csv(report_dir / "ablation_paired.csv")
    within = "within_copy_a" in set(d["subset"])
    fc, img, ext, iext = "fusion, clinical", "image only", "fusion, clinical + external data", "image only + external data"
    out = []
    if within:
        out.append("- **Primary endpoint, within copy a** (pooled out-of-fold ROC AUC, 95% CI): " + "; ".join(
            f"{v} {Estimate.cell(s.loc[v].pooled_within_copy_a_auc, s.loc[v].pooled_within_copy_a_ci_low, s.loc[v].pooled_within_copy_a_ci_high)}"
            f" (melanoma vs nevus within copy a {s.loc[v].pooled_mvn_within_copy_a_auc:.3f})"
            for v in (img, fc, ext, "fusion, clinical + patient context") if v in s.index) + ".")
    if ext in s.index:
        out.append(f"- **External data** (HAM10000 in every fold's training part), fusion (clinical): "
                   f"{_endpoints(d, ext, fc, within)}; image only: {_endpoints(d, iext, img, within)}.")
    out.append(f"- **Fusion (clinical) − image only**: {_endpoints(d, fc, img, within)}; with external data "
               f"{_delta(d, ext, iext, 'within_copy_a' if within else 'all')}.")
    out.append(f"- **Width/height on top of clinical fusion**: {_endpoints(d, 'fusion, paper (+ width/height)', fc, within)}.")
    out.append(f"- **Patient context** (image count + ugly duckling): {_endpoints(d, 'fusion, clinical + patient context', fc, within)}; "
               f"ugly-duckling distance only: {_endpoints(d, 'fusion, clinical + ugly duckling only', fc, within)}.")
    ens = "ensemble: image only + fusion, clinical (external data)"
    if ens in s.index:
        out.append(f"- **Ensemble** of the two external-data runs against fusion with external data: "
                   f"{_endpoints(d, ens, ext, within)}.")
    for v in [v for v in s.index if v.endswith(("copy-balanced", "one-class copies left out"))]:
        base = v.rsplit(", ", 1)[0]
        out.append(f"- **{v.rsplit(', ', 1)[1].capitalize()}** ({base}): {_endpoints(d, v, base, within)}.")
    rows = [v for v in s.index if v.startswith(ext + ", Lite")]
    if rows:
        parts = [f"{v.removeprefix(ext + ', ')}: ROC AUC {s.loc[v].pooled_oof_roc_auc:.3f}, melanoma vs nevus "
                 f"{s.loc[v].pooled_mel_vs_nevus_auc:.3f}, paired against Lite0 {_delta(d, v, ext, 'melanoma_vs_nevus')}"
                 for v in rows]
        out.append("- **Larger pretrained backbones**: " + "; ".join(parts) + ".")
    paper = report_dir / "table_paper_vs_reproduction.csv"
    if paper.is_file():
        t = pd.read_csv(paper).set_index("metric")
        acc, f1 = t.loc["accuracy"], t.loc["f1"]
        out.append(f"- **Accuracy is not a headline**: at each run's validation threshold fusion (clinical) is "
                   f"{100 * acc[fc]:.1f}% accurate ({acc[fc + ' CI']}) with F1 {f1[fc]:.2f}, against the paper's "
                   f"{100 * acc['paper (fusion)']:.1f}% and {f1['paper (fusion)']:.2f}; always answering benign is "
                   f"{100 * acc['always benign, these data']:.1f}% accurate on this enriched subset and "
                   f"{100 * acc['always benign, ISIC 2020']:.1f}% on ISIC 2020, so ROC AUC is the comparable figure.")
    return "\n".join(out) + "\n"


def validation_findings(report_dir: Path) -> str:
    """Notebook 06's headline numbers (``validate_metrics.json``, ``validate_external_metrics.json``) as sentences."""
    import json

    def ci(d: dict, digits: int = 3) -> str:
        return Estimate.from_dict(d).format(digits, ci="")

    m = json.loads((report_dir / "validate_metrics.json").read_text())
    ops = {o["name"]: o for o in m["operating_points"]}
    v = ops.get("validation threshold")
    at = m.get("stated_prevalence") or {}
    out = [f"- On the held-out ISIC patients ({m['n']:,} images, {m['n_patients']:,} patients, {m['n_malignant']} malignant; "
           f"prevalence {m['prevalence']:.3f}): ROC AUC {ci(m['roc_auc'])}, PR AUC {ci(m['pr_auc'])}; melanoma vs nevus "
           f"{m['roc_auc_melanoma_vs_nevus']:.3f}.",
           f"- Calibration: Brier {ci(m['brier'])} against {m['brier_raw']:.3f} for the raw output, ECE "
           f"{m['ece']['estimate']:.3f} vs {m['ece_raw']:.3f}; calibration slope {ci(m['calibration_slope'], 2)}"
           + (f"; moved to prevalence {at['prevalence']:.4f} and checked on rows reweighted to it: Brier "
              f"{at['brier']['estimate']:.3f}" if at else "") + "."]
    if v:
        nnb = v.get("at_prevalence", {}).get("nnb")
        out.append(f"- At the validation threshold fixed in advance ({v['threshold']:.4f}): sensitivity {ci(v['sensitivity'], 2)}, "
                   f"specificity {ci(v['specificity'], 2)}, number needed to biopsy {v['nnb']['estimate']:.1f} at this "
                   f"prevalence" + (f", **{ci(nnb, 0)}** at {at['prevalence']:.4f}" if nnb and at else "") + ".")
    subs = pd.DataFrame(m.get("subgroups", []))
    if len(subs):
        copy_a = subs[(subs["factor"] == "source copy") & (subs["group"] == "a")]
        if len(copy_a) and copy_a["roc_auc"].notna().all():
            r = copy_a.iloc[0]
            out.append(f"- Within copy a (primary; {int(r.n)} images, {int(r.n_malignant)} malignant): ROC AUC "
                       f"{Estimate.cell(r.roc_auc, r.ci_low, r.ci_high)}.")
        tone = subs[subs["factor"] == "skin tone (ITA)"]
        if len(tone):
            out.append("- Skin tone (ITA bands; AUC where ≥ 5 of each class): " + "; ".join(
                f"{r.group} {int(r.n)} image{'s' if int(r.n) != 1 else ''}" + (f", AUC {r.roc_auc:.3f}" if r.roc_auc == r.roc_auc else ", too few")
                for r in tone.itertuples()) + ".")
    ext = report_dir / "validate_external_metrics.json"
    if ext.is_file():
        e = json.loads(ext.read_text())
        eops = {o["name"]: o for o in e.get("operating_points", [])}
        ev = eops.get("validation threshold")
        out.append(f"- Held-out HAM10000 lesions ({e['n']:,} images, {e['n_patients']:,} lesions, {e['n_malignant']} melanoma): "
                   f"ROC AUC {ci(e['roc_auc'])}, melanoma vs nevus {e['roc_auc_melanoma_vs_nevus']:.3f}"
                   + (f"; at the ISIC-fixed threshold sensitivity {ci(ev['sensitivity'], 2)}, specificity "
                      f"{ci(ev['specificity'], 2)}" if ev else "")
                   + f"; Brier {e['brier']['estimate']:.3f} against {e['brier_raw']:.3f} raw.")
    return "\n".join(out) + "\n"


#: The base of `train --external`'s default (fusion, clinical + external data); the headline shows it and the
#: default without external data, each with the source weighting the selection adopted where the report has one.
HEADLINE_BASE = "fusion, clinical + external data"


def headline_table(report_dir: Path) -> str:
    """The README's headline: the primary endpoint and its guards for the default model and image only, beside the
    paper's own numbers (``ablation_summary.csv``, ``table_paper_vs_reproduction.csv``,
    ``table_source_weighting_selection.csv``)."""
    s = pd.read_csv(report_dir / "ablation_summary.csv").set_index("variant")
    sel_path = report_dir / "table_source_weighting_selection.csv"
    sel = pd.read_csv(sel_path).set_index("candidate") if sel_path.is_file() else pd.DataFrame()
    def winner(base: str) -> str:
        won = [c for c in sel.index if sel.loc[c, "verdict"] == "wins" and sel.loc[c, "base"] == base]
        return max(won, key=lambda c: sel.loc[c, "delta_within_copy_a"]) if won else base

    from ..runs.source_weights import AUTO_WEIGHTING

    suffix = {"balanced": ", copy-balanced", "none": ""}
    # what `train` does (the code's `auto`), and what this rendering's selection rule would choose
    defaults = {"without external data": "fusion, clinical" + suffix.get(AUTO_WEIGHTING[False], ""),
                "with --external": HEADLINE_BASE + suffix.get(AUTO_WEIGHTING[True], "")}
    chosen = {"without external data": winner("fusion, clinical") if len(sel) else defaults["without external data"],
              "with --external": winner(HEADLINE_BASE) if len(sel) else defaults["with --external"]}
    cols = list(dict.fromkeys(v for v in ("image only", "fusion, clinical", defaults["without external data"],
                                          chosen["without external data"], HEADLINE_BASE, defaults["with --external"],
                                          chosen["with --external"]) if v in s.index))
    paper = pd.read_csv(report_dir / "table_paper_vs_reproduction.csv").set_index("metric")

    def cell(v: str, key: str) -> str:
        r = s.loc[v]
        low = "pooled_ci_low" if key == "pooled_oof_roc_auc" else key.replace("_auc", "_ci_low")
        high = "pooled_ci_high" if key == "pooled_oof_roc_auc" else key.replace("_auc", "_ci_high")
        return Estimate.cell(r[key], r[low], r[high]) if key in r and r[key] == r[key] else "—"

    lines = ["| endpoint (ROC AUC unless stated; 95% CI) | paper | " + " | ".join(cols) + " |",
             "|---|---|" + "---|" * len(cols)]
    rows = [("**within copy a — primary** (no copy shortcut)", "pooled_within_copy_a_auc"),
            ("melanoma vs nevus, within copy a", "pooled_mvn_within_copy_a_auc"),
            ("all images of the subset (guard: rewards the copy shortcut)", "pooled_oof_roc_auc"),
            ("melanoma vs nevus, both copies", "pooled_mel_vs_nevus_auc")]
    for label, key in rows:
        if key in s:
            lines.append(f"| {label} | — | " + " | ".join(cell(v, key) for v in cols) + " |")
    if len(sel) and "external_holdout" in sel:
        lines.append("| held-out HAM10000 lesions (another data set, from two clinics that also contributed to ISIC 2020; mean of the 5 fold runs) | — | "
                     + " | ".join(Estimate.cell(sel.loc[v, "external_holdout"], sel.loc[v, "external_holdout_ci_low"],
                                      sel.loc[v, "external_holdout_ci_high"]) if v in sel.index else "—" for v in cols) + " |")
    for metric, label in (("accuracy", "accuracy at the validation threshold"), ("recall", "sensitivity at the validation threshold"),
                          ("specificity", "specificity at the validation threshold"), ("f1", "F1 at the validation threshold")):
        if metric in paper.index:
            r = paper.loc[metric]
            paper_value = r['paper (fusion)']
            lines.append(f"| {label} | {'—' if paper_value != paper_value else f'{paper_value:.3f}'} | "
                         + " | ".join(f"{r[v]:.3f}" if v in r and r[v] == r[v] else "—" for v in cols) + " |")
    always = paper.loc["accuracy"] if "accuracy" in paper.index else None
    note = (f"\nAlways answering *benign* is {always['always benign, these data']:.3f} accurate on this enriched subset "
            f"and {always['always benign, ISIC 2020']:.3f} at ISIC 2020's prevalence." if always is not None else "")
    differ = [k for k in defaults if chosen[k] != defaults[k]]
    return ("\n".join(lines) + "\n" + note + "\n`train`'s defaults: " + "; ".join(f"{k}, `{v}`" for k, v in defaults.items())
            + "." + "".join(f" The selection rule applied to this table would choose `{chosen[k]}` {k}; `train` does not "
                            "use it: notebook 06 validates the default named here, not that one." for k in differ) + "\n")


def gpu_estimate(report_dir: Path) -> str:
    """What a GPU would change in ``train``'s cold embedding stages, ESTIMATED and labelled so: the images each row of
    ``table_train_timings.csv`` embedded, times the views ``train`` caches by default (``TrainConfig().embedding_views``:
    the timings ran with the defaults and the table does not record views), over the prediction throughput an H200
    measured for EfficientNet-B0 (``reports/bench/h200-jax-bf16-effnet.json``; Lite0 at 224 px is the lighter
    network). A note saying so when a file or the benchmark's prediction row is missing."""
    import json

    from ..models.train_config import TrainConfig

    timings, bench = report_dir / "table_train_timings.csv", report_dir.parent / "bench" / "h200-jax-bf16-effnet.json"
    if not timings.is_file() or not bench.is_file():
        return f"No GPU estimate: {timings if not timings.is_file() else bench} is missing.\n"
    b = json.loads(bench.read_text())
    pred = next((r for r in b["rows"] if r["what"] == "prediction"), None)
    if pred is None:
        return f"No GPU estimate: {bench} has no prediction row.\n"
    ips, views = float(pred["images_per_second"]), TrainConfig().embedding_views
    t = pd.read_csv(timings)
    cold = t[(t["embedded_images"] > 0) & t["embedding_seconds"].notna()]
    parts = [f"about {r.embedded_images * views / ips:.1f} s for `{r.command}`, {r.cache} ({r.embedded_images:,.0f} images "
             f"x {views} views; {r.embedding_seconds / 60:.1f} min on the CPU above)" for r in cold.itertuples()]
    return (f"**Estimated, not measured:** an {b['machine']['gpu'].split(',')[0]} predicted {pred['model']} at "
            f"{pred['size']} px at {ips:,.0f} images/s ({b['backend']}, {b['precision']}; `{bench.name}`), so the network "
            f"compute of the cold embedding stages would take {' and '.join(parts)}. A cold run on such a GPU would then be "
            "bound by decoding the JPEGs on the host and by compilation (see that benchmark's notes), neither measured for "
            "`train`; a warm run (start-up and the head) would change little.\n")
