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

# %% tags=["parameters"]
synthetic = True
dataset_label = "SYNTHETIC demo"
images_csv = "data/synthetic-demo/train.csv"
images_dir = ""  # empty: the train/ folder beside images_csv
report_dir = "reports/demo"
explain_variants = ["fusion, paper (+ width/height)", "fusion, clinical"]  # ablation variants of notebook 03
fold = 0
n_repeats = 5
n_background = 20
n_shap_lesions = 12
n_image_lesions = 6
shap_nsamples = 100
seed = 0

# %%
import numpy as np
from IPython.display import Markdown, display

from melanoma_utils import explain, plots
from melanoma_utils.experiments import load_folds, run_folder_name
from melanoma_utils.reporting import open_study, package_versions
from melanoma_utils.runs import Run

report, df = open_study(report_dir, synthetic, seed, images_csv, images_dir)
runs_dir = report.report_dir / "runs" / "ablation"
held_out = df[load_folds(runs_dir / "folds.csv", df) == fold].reset_index(drop=True)  # the folds notebook 03 used
runs = {name: Run.load(runs_dir / run_folder_name(name) / f"fold{fold}") for name in explain_variants}
explain_runs = [run_folder_name(name) for name in explain_variants]
runs = dict(zip(explain_runs, runs.values()))
backbone = runs[explain_runs[0]].train_config.backbone or "the study's CNN (trained from scratch)"
display(Markdown(f"Held-out fold {fold}: {len(held_out):,} images, {held_out['patient_id'].nunique()} patients, "
                 f"{int(held_out['target'].sum())} malignant; runs: {', '.join(explain_variants)}; image branch: {backbone}."))

# %% [markdown]
# ## Fig 14 · Grouped permutation importance (drop in ROC AUC, mean ± sd over repeats)

# %%
inputs, importance = {}, {}
for name, run in runs.items():
    inputs[name] = explain.model_inputs(run, held_out)
    importance[name] = explain.permutation_importance(run, held_out, inputs[name], n_repeats=n_repeats, seed=seed)
    report.table(importance[name], f"table_permutation_importance_{name}")
    report.figure(plots.importance_bars(importance[name], f"Fig 14 · Permutation importance, {name}", tag=report.tag),
                  f"fig14_permutation_importance_{name}")
paper = importance[explain_runs[0]]
rank = list(paper.index)
display(Markdown(
    f"Baseline ROC AUC on the held-out fold: {paper['baseline'].iloc[0]:.3f}. Ranking for the *paper* features: "
    + ", ".join(f"**{f}** {m:+.3f} ± {s:.3f}" for f, m, s in zip(paper.index, paper['importance_mean'], paper['importance_sd']))
    + f". Width ranks {rank.index('width') + 1} and height {rank.index('height') + 1} of {len(rank)}: the EDA showed "
    "that image size identifies the acquisition device and clinic (notebook 01 measures how well it alone predicts "
    "malignancy), so any importance they carry is a shortcut, not a lesion property."
))
paper.round(4)

# %% [markdown]
# ## Fig 14b · SHAP values of the metadata groups (image held fixed per lesion)

# %%
rng = np.random.default_rng(seed)
pos, neg = np.flatnonzero(held_out["target"] == 1), np.flatnonzero(held_out["target"] == 0)
lesions = np.concatenate([rng.choice(pos, min(len(pos), n_shap_lesions // 2), replace=False),
                          rng.choice(neg, min(len(neg), n_shap_lesions // 2), replace=False)])
background = rng.choice(len(held_out), min(n_background, len(held_out)), replace=False)
run = runs[explain_runs[0]]
shap_meta, base = explain.metadata_shap(run, inputs[explain_runs[0]], lesions, background)
mean_abs = shap_meta.abs().mean().sort_values(ascending=False).to_frame("mean_abs_shap")
mean_abs["sd"] = shap_meta.abs().std()
report.table(shap_meta, "table_metadata_shap")
report.figure(plots.importance_bars(mean_abs, "Fig 14b · Mean |SHAP| per metadata group", tag=report.tag,
                                   mean="mean_abs_shap", sd="sd", xlabel="mean |SHAP| (probability units)"),
              "fig14b_metadata_shap")
display(Markdown(f"Mean |SHAP| over {len(lesions)} lesions (background {len(background)} rows): "
                 + ", ".join(f"{k} {v:.4f}" for k, v in mean_abs['mean_abs_shap'].items())))

# %% [markdown]
# ## Fig 15 · Image SHAP and Grad-CAM: correct and wrong, benign and malignant lesions

# %%
x = inputs[explain_runs[0]]
prob = run.calibrate(explain.predict_arrays(run.model, x))  # the scale of the validation threshold
pred = (prob >= run.threshold).astype(int)
y = held_out["target"].to_numpy()
picks = []
for t in (1, 0):
    for correct in (True, False):
        idx = np.flatnonzero((y == t) & ((pred == y) == correct))
        picks += list(rng.choice(idx, min(len(idx), max(1, n_image_lesions // 4)), replace=False))
picks = np.array(picks[:n_image_lesions])
shap_img = explain.image_shap(run, x, picks, background, nsamples=shap_nsamples, seed=seed)
cams = explain.grad_cam(run, x, picks)
titles = [f"{'malignant' if y[i] else 'benign'} · p={prob[i]:.2f} ({'right' if pred[i] == y[i] else 'wrong'})" for i in picks]
report.figure(plots.explanation_grid(x["image"][picks], shap_img, cams, titles,
                                     f"Fig 15 · Image explanations (threshold {run.threshold:.2f} from validation)", tag=report.tag),
              "fig15_image_explanations")

# %% [markdown]
# ## Environment

# %%
package_versions()
