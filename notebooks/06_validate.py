# ---
# jupyter:
#   jupytext:
#     formats: ipynb,py:percent
#     text_representation:
#       extension: .py
#       format_name: percent
#       format_version: '1.3'
#       jupytext_version: 1.18.1
#   kernelspec:
#     display_name: Python 3
#     language: python
#     name: python3
# ---

# %% [markdown]
# # 06 · Validating a trained model: calibration, operating points, decision curves, subgroups
#
# What a dermatologist or reviewer asks beyond "what is the AUC": is a predicted 30% really 30%? At the
# sensitivity we need, how many benign lesions are biopsied per melanoma found (number needed to biopsy,
# NNB)? Does the model help more than "biopsy everything"? Does it work as well for women and men, older
# patients, each body site, each camera, each skin tone? Where the data say which copy of the data set each image came
# from, is the model as good **within one copy** (no copy shortcut)? This notebook answers them for **any run folder and any data set in
# the ISIC schema** (set `run_dir`, `images_csv`); by default it validates notebook 03's run of
# `validate_variant` on the patients of its held-out fold, which that run never saw. Every interval is a
# patient-bootstrap 95% CI. The same report comes from the command line:
# `python -m melanoma_utils predict ...` then `python -m melanoma_utils evaluate ... --out DIR`.

# %% tags=["parameters"]
synthetic = True
dataset_label = "SYNTHETIC demo"
images_csv = "data/synthetic-demo/train.csv"
images_dir = ""  # empty: the train/ folder beside images_csv
report_dir = "reports/demo"
run_dir = ""  # a run folder from train; empty: notebook 03's run of validate_variant on its held-out fold
validate_variant = "fusion, clinical"
fold = 0
prevalence = "isic2020"  # a stated deployment prevalence: a number in (0, 1), or isic2020 (584 of 33,126); 0: none
external_dirs = []  # external data sets of notebook 03: its held-out external lesions are validated at the end
locked_test = "locked_test.csv"  # notebook 03's locked test part (in report_dir): read once, by the last step; empty: skip
source_csv = ""  # image_name, source_copy (empty: copies.csv beside images_csv, or the CSV's own column)
n_boot = 1000
seed = 0

# %%
from pathlib import Path

import pandas as pd
from IPython.display import Markdown, display

from melanoma_utils import config as paths
from melanoma_utils.data.confounds import with_source_copies
from melanoma_utils.evaluation.calibration import check_prevalence, reliability_table
from melanoma_utils.evaluation.calibrator_choice import calibrator_choice_table
from melanoma_utils.evaluation.clinical import net_benefit_verdict, validation_report
from melanoma_utils.reports import plots
from melanoma_utils.reports.reporting import open_study, package_versions
from melanoma_utils.reports.validation import operating_points_table, report_figures
from melanoma_utils.reports.validation_sections import (
    copy_a_summary,
    locked_summary,
    score_locked,
    scored,
    validate_within_copy_a,
)
from melanoma_utils.runs import Run
from melanoma_utils.study.experiments import backbone_variants, load_folds, run_folder_name
from melanoma_utils.study.locked import read_locked, without_locked
from melanoma_utils.study.selection import WEIGHTING_LABELS, weighting_variants
from melanoma_utils.study.variants import Variant, check_variants

report, df = open_study(report_dir, synthetic, seed, images_csv, images_dir)
df, _ = with_source_copies(df, paths.resolve(images_csv), paths.resolve(source_csv) if source_csv else None)
locked_path = report.report_dir / locked_test if locked_test else None
locked = read_locked(locked_path) if locked_path is not None and locked_path.is_file() and not run_dir else None
df_all, (df, _) = df, without_locked(df, locked)  # every section but the last validates on the other patients
if run_dir:
    run = Run.load(run_dir)
    rows, origin = df, f"all of {images_csv}"
    what = f"{run_dir}, all of {images_csv}"  # the model and the images, ending every figure title
else:
    runs_dir = report.report_dir / "runs" / "ablation"
    check_variants([validate_variant], [*Variant, *weighting_variants(list(WEIGHTING_LABELS), external=True),
                                        *backbone_variants(["efficientnetlite1", "efficientnetlite2"])],
                   "validate_variant")  # a misspelt name is an error naming the known ones
    run = Run.load(runs_dir / run_folder_name(validate_variant) / f"fold{fold}")
    rows = df[load_folds(runs_dir / "folds.csv", df) == fold].reset_index(drop=True)
    origin = f"held-out fold {fold} of notebook 03 (run '{validate_variant}')"
    what = f"'{validate_variant}', fold {fold}'s held-out patients"
table, n_unreadable = scored(run, rows, skin_tone=True)  # + skin tone around the lesion (ITA, for subgroups)
stated = check_prevalence(prevalence) if prevalence and run.prevalence else None  # a run without a calibrator has no known prevalence
result = validation_report(table, threshold=run.threshold, prevalence=stated, probability_prevalence=run.prevalence,
                           n_boot=n_boot, seed=seed)
cfg = run.train_config
display(Markdown(
    f"**{dataset_label}** — {origin}: {result['n']:,} images of {result['n_patients']:,} patients, "
    f"{result['n_malignant']:,} malignant (prevalence {result['prevalence']:.3f}); {n_unreadable} unreadable image(s) "
    f"left out. Model: {cfg.kind}, metadata `{cfg.features}`, image branch {cfg.backbone or 'the study CNN'} at "
    f"{cfg.image_size} px, "
    + (f"calibrated by **{run.calibrator.label}** on its validation split (prevalence {run.prevalence:.3f})"
       if run.prevalence else "**not calibrated** (trained before calibration existed: probabilities are raw outputs)")
    + f", decision threshold {run.threshold:.4f} ({run.config['threshold_rule']})."))

# %% [markdown]
# ## Discrimination

# %%
report.figure(plots.roc_pr({"model": (table["target"].to_numpy(), table["probability"].to_numpy())},
                           f"ROC and precision–recall — {what} (n={result['n']:,})", tag=report.tag), "fig_validate_roc_pr")
auc, pr = result["roc_auc"], result["pr_auc"]
mvn = result.get("roc_auc_melanoma_vs_nevus")
display(Markdown(
    f"ROC AUC **{auc['estimate']:.3f}** (95% CI {auc['ci_low']:.3f}–{auc['ci_high']:.3f}); PR AUC {pr['estimate']:.3f} "
    f"({pr['ci_low']:.3f}–{pr['ci_high']:.3f}) against a chance level of {pr['chance']:.3f}"
    + (f"; melanoma vs nevus only: {mvn:.3f} — the harder contrast, free of the other benign diagnoses." if mvn else ".")
    + f" The raw model output ranks the images with ROC AUC {result['roc_auc_raw']:.3f}: calibration is monotone, "
    "so it changes the ranking only where isotonic steps tie images."))

# %% [markdown]
# ## Calibration: are the probabilities right?
#
# Equal-mass bins (each holds about the same number of images), the observed malignant rate (with its 95% Wilson
# interval) against the mean predicted probability; below, the images per bin. Perfect calibration lies on the diagonal. The raw model
# output is trained with class weights (1/n per class) and an output bias, so it overstates the risk; the
# calibrator was fitted on the run's validation split only.

# %%
y = table["target"].to_numpy()
curves = {"calibrated": pd.DataFrame(result["reliability"]),
          "raw model output": reliability_table(y, table["raw_probability"].to_numpy())}
report.figure(plots.reliability_diagram(curves, f"Reliability, calibrated vs raw — {what} (n={result['n']:,})",
                                        tag=report.tag), "fig_validate_reliability")
better = result["brier"]["estimate"] < result["brier_raw"]
display(Markdown(
    f"Brier score: calibrated **{result['brier']['estimate']:.4f}** ({result['brier']['ci_low']:.4f}–"
    f"{result['brier']['ci_high']:.4f}) vs raw {result['brier_raw']:.4f} — the calibrated probabilities are "
    f"**{'better' if better else 'not better'}** on these held-out patients. ECE {result['ece']['estimate']:.4f} vs raw "
    f"{result['ece_raw']:.4f}. Calibration slope {result['calibration_slope']['estimate']:.2f} "
    f"({result['calibration_slope']['ci_low']:.2f}–{result['calibration_slope']['ci_high']:.2f}; 1 is ideal, < 1 means "
    f"too extreme) and intercept {result['calibration_intercept']['estimate']:.2f} (0 is ideal, < 0 means too high on "
    "average)."))
choice = calibrator_choice_table(run.calibrator) if run.prevalence else pd.DataFrame()
if len(choice):  # how the calibrator was chosen on the run's validation split: Brier, with the slope guarded
    report.table(choice, "table_validate_calibrator_choice")
    display(Markdown(
        "**How the calibrator was chosen** (on the run's validation split, patient-grouped cross-validation): the "
        "lowest Brier score among the maps whose held-out calibration slope is no farther from 1 than the model's own "
        "output: " + "; ".join(f"{r.calibrator}: Brier {r.brier_cv:.4f}, slope {r.slope:.2f} ({r.slope_ci_low:.2f}–"
                               f"{r.slope_ci_high:.2f}){' — chosen' if r.chosen else ''}"
                               f"{'' if r.eligible else ' — refused (moves the slope away from 1)'}"
                               for r in choice.itertuples()) + "."))
pd.DataFrame(result["reliability"]).round(4)

# %% [markdown]
# ## At the deployment prevalence
#
# These data are enriched with melanoma; in ISIC 2020 only 1.76% of images are. A probability that is right at
# one prevalence is wrong at another, so the probabilities are moved to the stated prevalence by prior-shift
# correction (the odds scaled by the ratio of the prior odds) and the images reweighted to that prevalence to
# check them.

# %%
at = result.get("stated_prevalence")
if at:
    curves_at = {f"moved to {at['prevalence']:.4f}": pd.DataFrame(at["reliability"])}
    report.figure(plots.reliability_diagram(curves_at, f"Reliability at prevalence {at['prevalence']:.4f} (reweighted) — {what} (n={result['n']:,})",
                                            tag=report.tag), "fig_validate_reliability_stated_prevalence")
    display(Markdown(
        f"At prevalence {at['prevalence']:.4f}: Brier {at['brier']['estimate']:.4f}, ECE {at['ece']['estimate']:.4f}, "
        f"calibration slope {at['calibration_slope']['estimate']:.2f}, intercept {at['calibration_intercept']['estimate']:.2f}; "
        f"PR AUC {at['pr_auc']:.3f} (chance {at['prevalence']:g}). The decision threshold becomes {at['threshold']:.4f} "
        "on that scale (the same decisions)."))
else:
    display(Markdown("No deployment prevalence was stated (`prevalence = 0`)."))

# %% [markdown]
# ## Operating points and the number needed to biopsy
#
# *Sensitivity 0.90 / 0.95*: the highest threshold reaching that sensitivity **on these data** (chosen again in
# each bootstrap resample) — how specific the model can be at the sensitivity a clinic needs. *Validation
# threshold*: fixed in advance on the run's validation split, the honest operating point. NNB = 1 / PPV:
# biopsies per melanoma found.

# %%
ops = operating_points_table(result)
report.table(ops, "table_validate_operating_points")
v = {op["name"]: op for op in result["operating_points"]}
lines = []
for name, op in v.items():
    text = (f"- **{name}** (threshold {op['threshold']:.4f}): sensitivity {op['sensitivity']['estimate']:.2f}, "
            f"specificity {op['specificity']['estimate']:.2f} ({op['specificity']['ci_low']:.2f}–{op['specificity']['ci_high']:.2f}), "
            f"NNB {op['nnb']['estimate']:.1f} at this prevalence")
    if op.get("at_prevalence"):
        a = op["at_prevalence"]
        text += f", **{a['nnb']['estimate']:.0f}** ({a['nnb']['ci_low']:.0f}–{a['nnb']['ci_high']:.0f}) at {a['prevalence']:g}"
    lines.append(text + f"; {100 * op['biopsy_rate']['estimate']:.0f}% of images biopsied.")
display(Markdown("\n".join(lines)))
ops.set_index("operating point").T.round(3)

# %% [markdown]
# ## Decision curve: does the model help more than biopsying everything?
#
# Net benefit = true positives per image − false positives per image × pt / (1 − pt), where the threshold
# probability pt says how many benign biopsies one melanoma is worth ((1 − pt) / pt). A model is useful where
# its curve lies above both *biopsy all* and *biopsy none*.

# %%
figs = report_figures(result, report.tag, what=what)
for name in [k for k in figs if k.startswith("decision_curve")]:
    report.figure(figs[name], f"fig_validate_{name}")
nb = pd.DataFrame(at["net_benefit"] if at else result["net_benefit"])
verdict = net_benefit_verdict(nb)
display(Markdown(
    (f"At prevalence {at['prevalence']:g}" if at else f"At the data's prevalence ({result['prevalence']:.3f})")
    + f", on fold {fold}'s held-out patients: the point estimate beats both default strategies at "
    f"{len(verdict['point'])} of {verdict['n_thresholds']} threshold probabilities"
    + (f" ({100 * min(verdict['point']):.0f}%–{100 * max(verdict['point']):.0f}%)" if verdict["point"] else "")
    + f"; with both ΔNB intervals (against biopsy all and against biopsy none) above 0 at **{len(verdict['clear'])}**"
    + (f" ({100 * min(verdict['clear']):.0f}%–{100 * max(verdict['clear']):.0f}%)" if verdict["clear"] else "")
    + ". A point estimate above both lines is not yet evidence: the lower panel shows how far each interval reaches."))

# %% [markdown]
# ## Subgroups
#
# ROC AUC by sex, age band, body site, acquisition group (the original image size, a proxy for camera and
# clinic, where known), skin tone (ITA bands: very light > 55°, light 41–55°, intermediate 28–41°, tan 10–28°,
# brown −30–10°, dark < −30°; measured on the skin around the lesion, the lesion masked out), source copy, and
# diagnosis (all malignant images against the benign images of each diagnosis); sensitivity and specificity at the
# run's validation threshold beside each.
# Groups with fewer than 5 malignant or 5 benign images get no AUC: the table says so instead of printing noise.

# %%
report.figure(figs["subgroups"], "fig_validate_subgroups")
sub = pd.DataFrame(result["subgroups"])
report.table(sub, "table_validate_subgroups")
rated = sub[sub["roc_auc"].notna()]
worst = rated.loc[rated["roc_auc"].idxmin()] if len(rated) else None
display(Markdown(
    f"{len(rated)} of {len(sub)} subgroups have enough images for an AUC."
    + (f" The lowest: {worst['factor']} = {worst['group']}, {worst['roc_auc']:.3f} ({worst['ci_low']:.3f}–{worst['ci_high']:.3f}, "
       f"{worst['n']} images, {worst['n_malignant']} malignant)." if worst is not None else "")
    + " Wide intervals mean too few patients to tell groups apart, not equal performance. Groups are not adjusted for "
    "multiplicity: read them as a search for where the model fails, not as findings."))
tone = sub[sub["factor"] == "skin tone (ITA)"]
copy_rows = sub[sub["factor"] == "source copy"].set_index("group")
dark = tone[tone["group"].str.startswith(("brown", "dark"))]
display(Markdown(
    ("**Within copy a** (one processing history, no copy shortcut): ROC AUC "
     f"{copy_rows.loc['a', 'roc_auc']:.3f} ({copy_rows.loc['a', 'ci_low']:.3f}–{copy_rows.loc['a', 'ci_high']:.3f}; "
     f"{copy_rows.loc['a', 'n']} images, {copy_rows.loc['a', 'n_malignant']} malignant) against {auc['estimate']:.3f} on all "
     "images. " if "a" in copy_rows.index and copy_rows.loc["a", "roc_auc"] == copy_rows.loc["a", "roc_auc"] else "")
    + "**Skin tone** (ITA of the skin around the lesion, as imaged): "
    + "; ".join(f"{r.group}: {r.n} images, {r.n_malignant} malignant"
                + (f", AUC {r.roc_auc:.3f}" if r.roc_auc == r.roc_auc else " (too few for an AUC)")
                + (f", sensitivity {r.sensitivity:.2f}" if r.sensitivity == r.sensitivity else "")
                + (f", specificity {r.specificity:.2f}" if r.specificity == r.specificity else "")
                for r in tone.itertuples())
    + f". Brown or dark (ITA ≤ 10°, as measured through the dermatoscope): {int(dark['n'].sum())} of {len(table)} "
    f"images here, {int(dark['n_malignant'].sum())} malignant. ITA measured on dermoscopy is a proxy for skin tone (the "
    "device's light and white balance move it), not a skin-type label: this validation cannot show that the model "
    "works for darker skin."))
sub.round(3)

# %% [markdown]
# ## Within copy a, every fold pooled: decision curve, number needed to biopsy, subgroups, one camera at a time
#
# Every malignant image of the shared subset is in copy a; within it, no copy shortcut is left to take, so this is
# where a model's clinical value is judged. Here each image of copy a is scored by the fold run of `validate_variant`
# that never saw its patient (notebook 03's out-of-fold predictions, all folds pooled: every copy-a image once, not
# one fold's fifth). Copy a is enriched with melanoma (about half), so the decision curve is drawn at the stated
# deployment prevalence (probabilities moved there by prior shift, images reweighted), with the model's net benefit
# against *biopsy all* and *biopsy none* (ΔNB) and their patient-bootstrap 95% intervals: the model helps where both
# intervals lie above 0. **One camera at a time**: the ROC AUC counting only melanoma–benign pairs taken with the same
# original image size (a proxy for the camera), so that no camera's colour or size can rank one camera's images above
# another's. Skin tone is a further caveat that copy a does not remove.

# %%
oof_csv = report.report_dir / "runs" / "ablation" / "oof.csv"
copy_a = None
if not run_dir and oof_csv.is_file() and "source_copy" in df:
    copy_a = validate_within_copy_a(pd.read_csv(oof_csv, dtype={"image_name": str}), df, validate_variant, stated,
                                    n_boot=n_boot, seed=seed)
if copy_a is not None:
    report.figure(plots.decision_curve({"model": copy_a.net_benefit}, f"Decision curve within copy a, all folds pooled — '{validate_variant}' (n={copy_a.report['n']:,})"
                                       + (f" (at prevalence {copy_a.at_prevalence['prevalence']:.4f})"
                                          if copy_a.at_prevalence else ""), tag=report.tag),
                  "fig_validate_decision_curve_within_copy_a")
    report.table(copy_a.net_benefit, "table_validate_net_benefit_within_copy_a")
    report.table(copy_a.subgroups, "table_validate_subgroups_within_copy_a")
    report.figure(plots.forest_plot(copy_a.subgroups, f"ROC AUC by subgroup within copy a, all folds pooled — '{validate_variant}' "
                                    f"(n={copy_a.report['n']:,})", tag=report.tag, overall=copy_a.report["roc_auc"]["estimate"],
                                    overall_label="all of copy a"),
                  "fig_validate_subgroups_within_copy_a")
    display(Markdown(copy_a_summary(copy_a)))
else:
    display(Markdown("No pooled within-copy-a validation: it needs notebook 03's out-of-fold predictions "
                     "(`runs/ablation/oof.csv`), data that say which copy each image came from, and no `run_dir`."))

# %% [markdown]
# ## Another data set: held-out external lesions
#
# Notebook 03 kept some lesions of the external data (e.g. HAM10000: Vienna and Queensland — two clinics that also
# contributed to ISIC 2020, so not an unseen clinic — with other dermatoscopes and years) out
# of every training part. Here the same model, with its ISIC-fitted calibrator and threshold, is scored on them:
# **not ISIC 2020 patients**, a transfer check. Groups are lesions (the external data has no patient ids), so the
# intervals resample lesions.

# %%
from melanoma_utils import config
from melanoma_utils.data.sources import combine_external, load_external

holdout_csv = report.report_dir / "external_holdout.csv"
ext_result = None
if external_dirs and holdout_csv.is_file() and not run_dir:
    ext_all, _ = combine_external(df, [load_external(config.resolve(d), on_missing="drop") for d in external_dirs])
    held = ext_all[ext_all["image_name"].isin(set(pd.read_csv(holdout_csv)["image_name"].astype(str)))].reset_index(drop=True)
    ext_table, _ = scored(run, held, skin_tone=True)
    ext_result = validation_report(ext_table, threshold=run.threshold, probability_prevalence=run.prevalence,
                                   n_boot=n_boot, seed=seed)
    report.figure(plots.roc_pr({"ISIC 2020 held-out patients": (table["target"].to_numpy(), table["probability"].to_numpy()),
                                "external held-out lesions": (ext_table["target"].to_numpy(), ext_table["probability"].to_numpy())},
                               f"'{validate_variant}': ISIC 2020 held-out patients vs held-out lesions of "
                               + ", ".join(Path(d).name for d in external_dirs), tag=report.tag), "fig_validate_external_roc_pr")
    ext_sub = pd.DataFrame(ext_result["subgroups"])
    report.table(ext_sub, "table_validate_external_subgroups")
    write_json_ext = {k: ext_result[k] for k in ("n", "n_malignant", "n_patients", "prevalence", "roc_auc", "pr_auc", "brier",
                                                 "brier_raw", "ece", "ece_raw", "roc_auc_melanoma_vs_nevus", "operating_points")
                      if k in ext_result}
    ea, ev = ext_result["roc_auc"], next(op for op in ext_result["operating_points"] if op["name"] == "validation threshold")
    display(Markdown(
        f"**{', '.join(sorted(set(held['source'])))}**, held-out lesions: {ext_result['n']:,} images of {ext_result['n_patients']:,} "
        f"lesions, {ext_result['n_malignant']:,} melanoma (prevalence {ext_result['prevalence']:.3f}). ROC AUC "
        f"**{ea['estimate']:.3f}** ({ea['ci_low']:.3f}–{ea['ci_high']:.3f}) against {auc['estimate']:.3f} on the ISIC 2020 "
        f"held-out patients; melanoma vs nevus **{ext_result.get('roc_auc_melanoma_vs_nevus', float('nan')):.3f}**. At the "
        f"validation threshold fixed on ISIC patients: sensitivity {ev['sensitivity']['estimate']:.2f} "
        f"({ev['sensitivity']['ci_low']:.2f}–{ev['sensitivity']['ci_high']:.2f}), specificity "
        f"{ev['specificity']['estimate']:.2f} ({ev['specificity']['ci_low']:.2f}–{ev['specificity']['ci_high']:.2f}). "
        f"Brier {ext_result['brier']['estimate']:.4f} (raw output {ext_result['brier_raw']:.4f}); the calibrator was fitted at "
        f"ISIC's validation prevalence ({run.prevalence:.3f}), not this population's."))
else:
    display(Markdown("No held-out external lesions to validate on (no `external_dirs`, a `run_dir` given, or notebook 03 "
                     "held none out)."))
    write_json_ext = None

# %% [markdown]
# ## The locked test part: the chosen default, once
#
# Notebook 03 set aside 15% of the patients (and of each external source's lesions) before any selection and wrote
# them to `locked_test.csv`; nothing above and no selection in notebooks 03–05 saw them. Here, once, the chosen default
# (`validate_variant`, with the settings of its fold runs) is trained on **every other** patient (and the external
# training rows), its calibrator and threshold fitted on its own validation split, and scored on the locked part. The
# lock was drawn after earlier rounds of this project had already used every patient to choose its defaults; it guards
# the selections made from then on, so these numbers are an honest check of this rendering's choices, not of every
# choice the project ever made.

# %%
from melanoma_utils.runs.runfolder import RunLayout
from melanoma_utils.runs.training import load_or_train

locked_table = None
if locked is not None:
    wants_external = bool(set(run.config.get("training_sources") or {}) - {"isic2020"})
    ext_rows = (combine_external(df_all, [load_external(config.resolve(d), on_missing="drop") for d in external_dirs])[0]
                if external_dirs and wants_external else None)
    final = load_or_train(df, run.train_config, report.report_dir / "runs" / "locked" / run_folder_name(validate_variant),
                          without_locked(ext_rows, locked)[0] if ext_rows is not None else None,
                          shared_store=report.report_dir / "runs" / RunLayout.SHARED_STORE)
    locked_table, locked_result = score_locked(final, df_all, locked, ext_rows, n_boot=n_boot, seed=seed)
    report.table(locked_table, "table_locked_test")
    display(Markdown(locked_summary(locked, validate_variant, len(df), locked_table, locked_result, final.threshold)))
    display(locked_table.round(3))
else:
    display(Markdown("No locked test part here (no `locked_test` file from notebook 03, or a `run_dir` was given)."))

# %% [markdown]
# ## The run's model card (written by `train` into the run folder)

# %%
card = (run.run_dir / "MODEL_CARD.md") if run.run_dir else None
display(Markdown(card.read_text() if card is not None and card.is_file() else "This run has no MODEL_CARD.md (trained "
                 "before model cards were written)."))

# %%
from melanoma_utils.atomic import json_safe, write_json

write_json(report.report_dir / "validate_metrics.json", json_safe(result))
if write_json_ext:
    write_json(report.report_dir / "validate_external_metrics.json", json_safe(write_json_ext))
package_versions()
