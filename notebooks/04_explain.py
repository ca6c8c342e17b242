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
# # 04 · What the fusion model uses: metadata importance (Fig 14) and image explanations (Fig 15)
#
# Explains a trained run from the ablation of notebook 03 — the fusion model with the study's *paper*
# features (age, sex, site + original image width/height), on the patients of its held-out fold, which it
# never saw. Metadata: permutation importance measured as the drop in ROC AUC, with one-hot groups permuted
# **together** (the study scored single one-hot columns, which understates a multi-column feature like the
# site), and exact SHAP values over the same groups with the image held fixed. Images: SHAP (expected
# gradients) with the lesion's metadata held fixed, and Grad-CAM.
#
# The ROC AUCs here are those of the run on the held-out fold **without test-time augmentation** (one view per
# image: the explanations need one input per lesion), so they sit a little below notebook 03's fold AUCs for the
# same runs, which average 8 views.

# %% tags=["parameters"]
synthetic = True
dataset_label = "SYNTHETIC demo"
images_csv = "data/synthetic-demo/train.csv"
images_dir = ""  # empty: the train/ folder beside images_csv
report_dir = "reports/demo"
locked_test = "locked_test.csv"  # notebook 03's locked test part (in report_dir): its patients are left out here
explain_variants = ["fusion, paper (+ width/height)", "fusion, clinical"]  # ablation variants of notebook 03
fold = 0
n_repeats = 20  # permutations per metadata group (the error bars: their SD, permutation noise on one fold)
n_background = 20
n_shap_lesions = 200  # lesions whose metadata SHAP values are computed (half malignant where the fold has them, benign fill the rest)
n_image_lesions = 6
shap_nsamples = 100
seed = 0

# %%
import numpy as np
import pandas as pd
from IPython.display import Markdown, display

from melanoma_utils.data.splits import balanced_positions
from melanoma_utils.reports import explain, plots
from melanoma_utils.reports.explain_agreement import disagreements, rank_agreement
from melanoma_utils.reports.reporting import open_study, package_versions
from melanoma_utils.runs import Run
from melanoma_utils.study.experiments import load_folds, run_folder_name
from melanoma_utils.study.locked import read_locked, without_locked

report, df = open_study(report_dir, synthetic, seed, images_csv, images_dir)
runs_dir = report.report_dir / "runs" / "ablation"
locked = read_locked(report.report_dir / locked_test) if locked_test and (report.report_dir / locked_test).is_file() else None
df, _ = without_locked(df, locked)  # notebook 03's folds hold the other patients only
held_out = df[load_folds(runs_dir / "folds.csv", df) == fold].reset_index(drop=True)  # the folds notebook 03 used
runs = {name: Run.load(runs_dir / run_folder_name(name) / f"fold{fold}") for name in explain_variants}
explain_runs = [run_folder_name(name) for name in explain_variants]
runs = dict(zip(explain_runs, runs.values()))
backbone = runs[explain_runs[0]].train_config.backbone or "the study's CNN (trained from scratch)"
label = dict(zip(explain_runs, explain_variants))  # folder name -> the variant's name in 03
display(Markdown(f"Held-out fold {fold}: {len(held_out):,} images, {held_out['patient_id'].nunique()} patients, "
                 f"{int(held_out['target'].sum())} malignant; runs: {', '.join(explain_variants)}; image branch: {backbone}."))

# %% [markdown]
# ## Fig 14a/14b · Grouped permutation importance (drop in ROC AUC, mean ± SD over permutations)
#
# The error bars are the standard deviation over `n_repeats` random permutations of one held-out fold: they show the
# permutation noise, not the uncertainty over patients (another fold or other patients move the bars more).

# %%
inputs, importance = {}, {}
for letter, (name, run) in zip("ab", runs.items()):
    inputs[name] = explain.model_inputs(run, held_out)
    importance[name] = explain.permutation_importance(run, held_out, inputs[name], n_repeats=n_repeats, seed=seed)
    report.table(importance[name], f"table_permutation_importance_{name}")
    report.figure(plots.importance_bars(importance[name], f"Fig 14{letter} · Permutation importance: {label[name]}",
                                       tag=report.tag, xlabel=f"drop in ROC AUC when permuted (mean ± SD over "
                                                              f"{n_repeats} permutations, fold {fold})"),
                  f"fig14{letter}_permutation_importance_{name}")
paper = importance[explain_runs[0]]
rank = list(paper.index)
per_fold = report.report_dir / "ablation_per_fold.csv"
fold_auc = {}
if per_fold.is_file():  # notebook 03's fold AUC of the same runs (with its test-time augmentation)
    pf = pd.read_csv(per_fold)
    pf = pf[pf["repeat"] == 0] if "repeat" in pf else pf  # the study's folds (03's repeats assign patients anew)
    fold_auc = {r.variant: r.roc_auc for r in pf[pf["fold"] == fold].itertuples()}
display(Markdown(
    "Baseline ROC AUC on the held-out fold (one view per image): "
    + ", ".join(f"{label[n]} {imp['baseline'].iloc[0]:.3f}" for n, imp in importance.items())
    + (" (notebook 03, with test-time augmentation: "
       + ", ".join(f"{v} {fold_auc[v]:.3f}" for v in explain_variants if v in fold_auc) + ")" if fold_auc else "")
    + f". Ranking for {explain_variants[0]}: "
    + ", ".join(f"**{f}** {m:+.3f} ± {s:.3f}" for f, m, s in zip(paper.index, paper['importance_mean'], paper['importance_sd']))
    + (f". Width ranks {rank.index('width') + 1} and height {rank.index('height') + 1} of {len(rank)}: the EDA showed "
       "that image size identifies the acquisition device and clinic (notebook 01 measures how well it alone predicts "
       "malignancy), so any importance they carry is a shortcut, not a lesion property." if "width" in rank else ".")
))
paper.round(4)

# %% [markdown]
# ## Fig 14c · SHAP values of the metadata groups (image held fixed per lesion)

# %%
rng = np.random.default_rng(seed)
lesions = balanced_positions(held_out["target"], n_shap_lesions, seed)  # half malignant; benign fill a short half
background = rng.choice(len(held_out), min(n_background, len(held_out)), replace=False)
run = runs[explain_runs[0]]
shap_meta, base = explain.metadata_shap(run, inputs[explain_runs[0]], lesions, background)
mean_abs = explain.mean_abs_with_ci(shap_meta, seed=seed)
report.table(shap_meta, "table_metadata_shap")
report.figure(plots.importance_bars(mean_abs, f"Fig 14c · Mean |SHAP| per metadata group: {explain_variants[0]}",
                                   tag=report.tag, mean="mean_abs", low="ci_low", high="ci_high",
                                   xlabel="mean |SHAP| over lesions (probability units; 95% bootstrap CI)"),
              "fig14c_metadata_shap")
agreement, rho = rank_agreement(paper, mean_abs)
report.table(agreement, "table_importance_agreement")
moved = disagreements(agreement)
display(Markdown(
    f"Mean |SHAP| over {len(lesions)} lesions ({int(held_out['target'].iloc[lesions].sum())} malignant; background "
    f"{len(background)} rows): " + ", ".join(f"{k} {v:.4f} ({lo:.4f}–{hi:.4f})" for k, v, lo, hi in
                                           zip(mean_abs.index, mean_abs['mean_abs'], mean_abs['ci_low'], mean_abs['ci_high']))
    + f".\n\n**The two measures {'disagree' if moved else 'agree'}** (Spearman's rank correlation of the metadata "
    f"groups {rho:.2f}): " + ("; ".join(moved) + ". Permutation importance asks how much the ROC AUC of the held-out "
                              "fold falls without a group; SHAP asks how far a group moves each lesion's probability. "
                              "A group can move probabilities a lot (SHAP) without changing the ranking of malignant "
                              "above benign (permutation), so neither ranking alone says what the model relies on."
                              if moved else "every group keeps its place within one rank.")))
agreement.round(4)

# %% [markdown]
# ## Fig 15 · Image SHAP and Grad-CAM: correct and wrong, benign and malignant lesions

# %%
x = inputs[explain_runs[0]]
prob = run.calibrate(explain.predict_arrays(run.model, x))  # the scale of the validation threshold
pred = (prob >= run.threshold).astype(int)
y = held_out["target"].to_numpy()
picks = explain.pick_lesions(y, pred, n_image_lesions, seed=seed)
shap_img = explain.image_shap(run, x, picks, background, nsamples=shap_nsamples, seed=seed)
cams = explain.grad_cam(run, x, picks)
masks = np.stack([explain.lesion_mask(x["image"][i]) for i in picks])
inside = [explain.mass_inside(c, m) for c, m in zip(cams, masks)]
titles = [f"{'malignant' if y[i] else 'benign'} · p={prob[i]:.2f} ({'right' if pred[i] == y[i] else 'wrong'})" for i in picks]
report.figure(plots.explanation_grid(x["image"][picks], shap_img, cams, titles,
                                     f"Fig 15 · Image explanations, {explain_variants[0]} (threshold {run.threshold:.2f} from validation)",
                                     tag=report.tag, outlines=plots.LesionOutlines(
                                         masks, inside, [explain.mask_quality(m) == "ok" for m in masks])),
              "fig15_image_explanations")
share = pd.DataFrame({"image_name": held_out["image_name"].to_numpy()[picks], "target": y[picks],
                      "probability": prob[picks], "mask_check": [explain.mask_quality(m) for m in masks],
                      "lesion_area": [m.mean() for m in masks], "gradcam_inside_lesion": inside,
                      "gradcam_inside_over_area": [explain.inside_over_area(v, m) for v, m in zip(inside, masks)],
                      "shap_abs_inside_lesion": [explain.mass_inside(np.abs(sv.sum(-1)), m) for sv, m in zip(shap_img, masks)]})
share["shap_inside_over_area"] = [explain.inside_over_area(v, m) for v, m in zip(share["shap_abs_inside_lesion"], masks)]
report.table(share.set_index("image_name"), "table_explanations_inside_lesion")
trusted = share[share["mask_check"] == "ok"]
off_lesion = trusted[trusted["gradcam_inside_over_area"] < 1]
ratio = lambda v: "empty" if v != v else f"{v:.1f}×"  # noqa: E731 (NaN: an empty Grad-CAM map)
display(Markdown(
    "The green outline is a rough lesion mask (Otsu's threshold on the blue channel, the component nearest the centre), drawn only where it passed its check. "
    f"It is trusted only when it covers {100 * explain.MASK_AREA[0]:.0f}–{100 * explain.MASK_AREA[1]:.0f}% of the image, "
    "stays off the image border and is not made of thin structures; "
    + (f"{len(share) - len(trusted)} of the {len(share)} masks fail that check ("
       + "; ".join(f"{n}: {c}" for n, c in zip(share["image_name"], share["mask_check"]) if c != "ok")
       + ") and are not read below. " if len(trusted) < len(share) else f"all {len(share)} pass. ")
    + "For each trusted mask, the share of the map's mass inside the lesion divided by the lesion's share of the image "
    "(1× = spread evenly; an empty Grad-CAM map: nothing raised the melanoma logit): Grad-CAM "
    + ", ".join(f"{ratio(v)}" for v in trusted["gradcam_inside_over_area"])
    + "; SHAP's |attribution| " + ", ".join(f"{ratio(v)}" for v in trusted["shap_inside_over_area"]) + ". "
    + (f"For {len(off_lesion)} of them Grad-CAM concentrates *less* on the lesion than an even map would: look at "
       "those panels for rulers, hair, ink or dark corners, acquisition cues a model can learn as shortcuts."
       if len(off_lesion) else "No trusted mask has Grad-CAM concentrating less on the lesion than an even map would.")
))

# %% [markdown]
# ## Environment

# %%
package_versions()
