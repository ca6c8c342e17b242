"""The cells of each notebook: ("md" | "params" | "code", source). Edited here, written by author_notebooks.py."""

NOTEBOOKS: dict[str, list[tuple[str, str]]] = {}

NOTEBOOKS["01_eda"] = [
    ("md", """
# 01 · Exploratory analysis of the SIIM-ISIC 2020 metadata and images

Reproduces the study's Figs 3–11 (sex, site, age vs malignancy; colour intensities) and adds what a
careful reviewer wants: missing values, images per patient, malignancy **rates** with 95% confidence
intervals, and the original image size — an *acquisition* signal that the study's "lesion size"
features pick up. All statistics and figures come from `melanoma_utils` (tested); this notebook only
calls them. Run it top to bottom, or with `make reproduce` (papermill fills the `parameters` cell).
"""),
    ("params", """
# Parameters (literals only; papermill overrides them from params/<data set>.yaml)
synthetic = True  # True: the SYNTHETIC demo set; every figure title says so
dataset_label = "SYNTHETIC demo"
metadata_csv = "data/synthetic-demo/train.csv"  # metadata for the metadata figures (the FULL set when available)
size_metadata_csv = ""  # CSV with original width/height columns; empty: use metadata_csv
images_csv = "data/synthetic-demo/train.csv"  # the image set for the colour figures
images_dir = ""  # empty: the train/ folder beside images_csv
report_dir = "reports/demo"
image_sample = 200  # images per class for the colour histograms
pixels_per_image = 2000
cv_folds = 5
seed = 0
"""),
    ("code", """
from IPython.display import Markdown, display

from melanoma_utils import config, data, eda, plots
from melanoma_utils.reporting import Report, package_versions, seed_everything

seed_everything(seed)
report = Report.from_params(report_dir, synthetic)
tag = report.tag
meta = data.load_metadata(config.resolve(metadata_csv)).frame
sizes = data.load_metadata(config.resolve(size_metadata_csv or metadata_csv)).frame
ov = eda.overview(meta)
display(Markdown(
    f"**Data set: {dataset_label}.** {ov['images']:,} images from {ov['patients']:,} patients, "
    f"{ov['malignant']:,} malignant (**{ov['malignant_pct']:.2f}%**). A classifier that always answers "
    f"*benign* is {ov['always_benign_accuracy_pct']:.1f}% accurate — accuracy alone says little here."
))
"""),
    ("md", "## Missing values\nUnknown sex/site and missing ages are explicit categories, never silently dropped."),
    ("code", """
missing = eda.missing_table(meta)
report.table(missing, "table_missing_values")
missing.style.format({"percent": "{:.2f}%"})
"""),
    ("md", "## Fig 3 · Sex distribution, and Fig 4 · benign vs malignant by sex"),
    ("code", """
sex_counts = eda.count_table(meta, "sex")
fig = plots.bar_counts(sex_counts, "Fig 3 · Sex distribution", xlabel="sex", tag=tag)
report.figure(fig, "fig03_sex_distribution")
sex_rate = eda.malignancy_rate(meta, "sex")
display(Markdown(", ".join(f"{k}: {v:,} images ({r:.2f}% malignant)" for k, v, r in
                           zip(sex_rate.index, sex_rate["images"], sex_rate["rate_pct"]))))
"""),
    ("code", """
fig = plots.grouped_counts(meta, "sex", "target", "Fig 4 · Benign vs malignant by sex (log scale)", tag=tag,
                           log=True, hue_labels={0: "benign", 1: "malignant"})
report.figure(fig, "fig04_target_by_sex")
"""),
    ("md", "## Fig 5 · Anatomical site (percent of images), and Fig 6 · melanoma count by site and sex"),
    ("code", """
site_pct = eda.count_table(meta, "site", normalize=True)
fig = plots.bar_counts(site_pct, "Fig 5 · Anatomical site", ylabel="% of images", percent=True, tag=tag,
                       horizontal=True)
report.figure(fig, "fig05_site_distribution")
display(Markdown("Sites: " + ", ".join(f"{k} {v:.1f}%" for k, v in site_pct.items())))
"""),
    ("code", """
fig = plots.grouped_counts(meta[meta["target"] == 1], "site", "sex", "Fig 6 · Melanoma count by site and sex",
                           tag=tag)
report.figure(fig, "fig06_melanoma_by_site_sex")
"""),
    ("md", "## Figs 7–9 · Age: overall, benign vs malignant, by sex"),
    ("code", """
report.figure(plots.age_hist(meta, "Fig 7 · Age distribution", tag=tag), "fig07_age_distribution")
report.figure(plots.age_hist(meta, "Fig 8 · Age, benign vs malignant (density)", hue="target", density=True,
                             tag=tag, hue_labels={0: "benign", 1: "malignant"}), "fig08_age_by_target")
report.figure(plots.age_hist(meta[meta["sex"] != "unknown"], "Fig 9 · Age by sex (density)", hue="sex",
                             density=True, tag=tag), "fig09_age_by_sex")
by_t = meta.groupby("target")["age"].median()
display(Markdown(f"Median age: benign {by_t.get(0, float('nan')):.0f}, malignant {by_t.get(1, float('nan')):.0f} years."))
"""),
    ("md", """
## Malignancy rate with 95% CIs (what the study's count plots cannot show)
Counts mix prevalence with group size; rates with Wilson intervals show which differences are real.
The dashed line is the overall rate.
"""),
    ("code", """
rates = {"sex": eda.malignancy_rate(meta, "sex"), "site": eda.malignancy_rate(meta, "site"),
         "age band": eda.malignancy_rate(meta, eda.age_band(meta["age"]))}
for i, (name, table) in enumerate(rates.items()):
    report.table(table, f"table_rate_by_{name.replace(' ', '_')}")
    fig = plots.rate_with_ci(table, f"Malignancy rate by {name}", overall_pct=ov["malignant_pct"], tag=tag)
    report.figure(fig, f"fig_rate_{i + 1}_by_{name.replace(' ', '_')}")
rates["age band"].round(2)
"""),
    ("md", "## Images per patient\nPatients contribute many images each: every split must be grouped by patient."),
    ("code", """
per_patient = eda.images_per_patient(meta)
fig = plots.hist_series(per_patient, "Images per patient", "images", tag=tag, bins=40, log=True)
report.figure(fig, "fig_images_per_patient")
display(Markdown(f"Median {per_patient.median():.0f} images per patient (max {per_patient.max()}); "
                 f"{(per_patient >= 10).mean():.0%} of patients have 10 or more."))
"""),
    ("md", """
## Original image size: an acquisition signal, not a lesion property
The study ranks image width and height as its most important metadata. They describe the camera and
clinic that took the image, and clinics differ in how many melanomas they see. Below: the malignancy
rate per original size, and a gradient-boosting model on metadata alone, cross-validated by patient.
"""),
    ("code", """
size_rates = eda.size_table(sizes)
report.table(size_rates, "table_rate_by_original_size")
report.figure(plots.size_scatter(sizes, "Original image size by target", tag=tag), "fig_original_size_by_target")
display(size_rates.round(2))
"""),
    ("code", """
auc = eda.metadata_auc(sizes, {"age + sex + site": ["age", "sex", "site"], "width + height": ["width", "height"],
                               "all (the study's features)": ["age", "sex", "site", "width", "height"]},
                       n_splits=cv_folds, seed=seed)
report.table(auc, "table_metadata_only_auc")
report.figure(plots.auc_bars(auc, "Metadata-only gradient boosting", tag=tag), "fig_metadata_only_auc")
clin, acq = auc["auc_mean"].iloc[0], auc["auc_mean"].iloc[1]
display(Markdown(
    f"On {len(sizes):,} images ({cv_folds}-fold CV grouped by patient): **width + height alone reach ROC AUC "
    f"{acq:.3f}**, age + sex + site {clin:.3f}, all together {auc['auc_mean'].iloc[2]:.3f}. "
    "Image size tells *where and how* an image was taken, so a model using it learns the data set's "
    "collection history; it will not transfer to another clinic."
))
auc.round(3)
"""),
    ("md", "## Figs 10–11 · Colour intensity distributions, benign and malignant (a pixel sample)"),
    ("code", """
img = data.load_dataset(config.resolve(images_csv), config.resolve(images_dir) if images_dir else None).frame
hists = {}
for t, label in ((0, "benign"), (1, "malignant")):
    part = img[img["target"] == t]
    chosen = part.sample(n=min(image_sample, len(part)), random_state=seed)
    hists[label] = eda.colour_histograms(list(chosen["image_path"]), pixels_per_image, seed=seed)
    fig = plots.colour_hist(hists[label], f"Fig {10 + t} · RGB intensities, {label} (n={len(chosen)} images)", tag=tag)
    report.figure(fig, f"fig{10 + t}_rgb_{label}")
means = {k: (h * range(256)).sum(1) / h.sum(1) for k, h in hists.items()}
display(Markdown("Mean intensity R/G/B — " + "; ".join(f"{k}: " + "/".join(f"{v:.0f}" for v in m)
                                                       for k, m in means.items())))
"""),
    ("md", "## Environment"),
    ("code", "package_versions()"),
]

NOTEBOOKS["02_transforms"] = [
    ("md", """
# 02 · Image transforms and augmentations (the study's Figs 12–13)

The five transforms of the study — black & white, Ben Graham's local-average subtraction (greyscale
without and with the blur step), HSB adjustment and the LUV colour space — plus Shades-of-Gray colour
constancy, which removes a device's colour cast (one of the acquisition shortcuts). Each is a named
preprocessing option of the training pipeline (`--preprocess NAME`), applied identically at training and
prediction. Augmentations (random crop, colour jitter, random greyscale, flips and 90° rotations) are
Keras preprocessing layers, active only while training.
"""),
    ("params", """
synthetic = True
dataset_label = "SYNTHETIC demo"
images_csv = "data/synthetic-demo/train.csv"
images_dir = ""  # empty: the train/ folder beside images_csv
report_dir = "reports/demo"
n_per_class = 3  # lesions per class in the transform grid
display_size = 256  # transforms are shown and timed at this size
n_augmentations = 11
timing_images = 50
seed = 0
"""),
    ("code", """
from IPython.display import Markdown, display

from melanoma_utils import benchmark, config, data, plots
from melanoma_utils.augment import build_augmenter
from melanoma_utils.pipeline import load_image_array
from melanoma_utils.reporting import Report, package_versions, seed_everything
from melanoma_utils.transforms import adjust_hsb, ben_graham, from_luv, shades_of_gray, to_grayscale, to_luv

seed_everything(seed)
report = Report.from_params(report_dir, synthetic)
df = data.load_dataset(config.resolve(images_csv), config.resolve(images_dir) if images_dir else None).frame
picked = data.sample_per_class(df, n_per_class, seed)
images = load_image_array(list(picked["image_path"]), display_size)
display(Markdown(f"{dataset_label}: {len(df):,} images; showing {len(picked)} lesions "
                 f"({(picked['target'] == 0).sum()} benign, {(picked['target'] == 1).sum()} malignant) at {display_size} px."))
"""),
    ("md", """
## Fig 12 · Each transform on benign and malignant lesions
Columns: original; black & white; Ben Graham greyscale (no blur step); Ben Graham greyscale with the
Gaussian-blur subtraction (σ = side/30); Ben Graham in colour; HSB (hue +20°, saturation ×1.5,
brightness ×1.1); LUV channels shown as RGB; LUV → RGB round trip; Shades-of-Gray colour constancy.
"""),
    ("code", """
columns = {
    "original": lambda im: im,
    "black & white": to_grayscale,
    "Ben Graham, grey": lambda im: ben_graham(im, blur=False),
    "Ben Graham, grey + blur": ben_graham,
    "Ben Graham, colour": lambda im: ben_graham(im, grayscale=False),
    "HSB": lambda im: adjust_hsb(im, 20, 1.5, 1.1),
    "LUV": to_luv,
    "LUV → RGB": lambda im: from_luv(to_luv(im)),
    "shades of gray": shades_of_gray,
}
cells, titles = [], []
for im, t in zip(images, picked["target"]):
    for name, fn in columns.items():
        cells.append(fn(im))
        titles.append(f"{name}\\n({'malignant' if t else 'benign'})" if name == "original" else name)
fig = plots.image_grid(cells, titles, ncols=len(columns), title="Fig 12 · Image transforms", tag=report.tag, size=1.6)
report.figure(fig, "fig12_transforms")
"""),
    ("md", "## Fig 13 · Random augmentations of one lesion (training only; identity at inference)"),
    ("code", """
import numpy as np

aug = build_augmenter(display_size, seed=seed)
lesion = images[-1].astype("float32")  # a malignant lesion
views = [images[-1]] + [np.asarray(aug(lesion, training=True)).astype("uint8") for _ in range(n_augmentations)]
assert np.array_equal(np.asarray(aug(lesion, training=False)), lesion)  # inactive at inference
fig = plots.image_grid(views, ["original"] + [f"augmentation {i + 1}" for i in range(n_augmentations)], ncols=6,
                       title="Fig 13 · Augmentations: crop, colour jitter, greyscale, flips, 90° rotations", tag=report.tag)
report.figure(fig, "fig13_augmentations")
display(Markdown(f"Augmentation settings: `{aug.config.to_dict()}`"))
"""),
    ("md", "## Cost per image at this size (this machine, single thread per call)"),
    ("code", """
timing = df.sample(n=min(timing_images, len(df)), random_state=seed)
costs = benchmark.transform_costs(list(load_image_array(list(timing["image_path"]), display_size)))
report.table(costs, "table_transform_cost_ms")
costs.round(3)
"""),
    ("md", "## Environment"),
    ("code", "package_versions()"),
]

NOTEBOOKS["03_train_evaluate"] = [
    ("md", """
# 03 · The fusion model: training, honest evaluation and the ablation

The study's question: does fusing clinical metadata with the image beat the image alone? Answered here
with patient-grouped K-fold cross-validation, the same training budget for every variant:

* **metadata only** (age, sex, site; a small MLP),
* **image only** (the convolutional branch),
* **fusion, clinical** (image + age, sex, site),
* **fusion, paper** (image + age, sex, site + original image width/height, the study's features).

Width and height describe how an image was *acquired* (camera, clinic), not the lesion: the EDA showed
they alone reach ROC AUC 0.79 on the full metadata. A gain from them is a shortcut, not medicine.
Every model is scored by ROC AUC (the challenge's metric) and PR AUC with patient-bootstrap 95% CIs,
also on **melanoma vs nevus** only (a harder contrast), and at thresholds chosen on validation data only.
"""),
    ("params", """
synthetic = True
dataset_label = "SYNTHETIC demo"
images_csv = "data/synthetic-demo/train.csv"  # the image set to train and cross-validate on
images_dir = ""  # empty: the train/ folder beside images_csv
report_dir = "reports/demo"
image_size = 64
conv_filters = [16, 32, 64, 128]
epochs = 4
patience = 3
batch_size = 32
learning_rate = 0.001  # the study uses 1e-4; a short CPU budget needs a larger step
preprocess = "none"
augment = True
cv_folds = 3
min_sensitivity = 0.9
n_boot = 500
seed = 0
"""),
    ("code", """
import json

import pandas as pd
from IPython.display import Markdown, display

from melanoma_utils import benchmark, config, data, eda, plots
from melanoma_utils.evaluation import evaluate, metrics_table
from melanoma_utils.reporting import Report, package_versions, seed_everything
from melanoma_utils.training import ABLATION_VARIANTS, Run, TrainConfig, cross_validate, summarise_cv

seed_everything(seed)
report = Report.from_params(report_dir, synthetic)
df = data.load_dataset(config.resolve(images_csv), config.resolve(images_dir) if images_dir else None).frame
ov = eda.overview(df)
cfg = TrainConfig(image_size=image_size, conv_filters=tuple(conv_filters), epochs=epochs, patience=patience,
                  batch_size=batch_size, learning_rate=learning_rate, preprocess=preprocess, augment=augment,
                  min_sensitivity=min_sensitivity, seed=seed, verbose=0)
display(Markdown(
    f"**{dataset_label}**: {ov['images']:,} images, {ov['patients']:,} patients, {ov['malignant']:,} malignant "
    f"({ov['malignant_pct']:.1f}%). In the full ISIC 2020 data only 1.76% are melanoma, so a model that always "
    "answers *benign* scores **98.2% accuracy**: accuracy alone says little (the study's 94.5% must be read "
    "against that baseline). Images at {0} px, {1}-fold patient-grouped CV, up to {2} epochs (early stopping, patience {3})."
    .format(image_size, cv_folds, epochs, patience)
))
"""),
    ("md", "## The ablation (patient-grouped cross-validation, same budget for each variant)"),
    ("code", """
runs_dir = report.report_dir / "runs" / "ablation"
per_fold, oof = cross_validate(df, cfg, runs_dir, ABLATION_VARIANTS, n_splits=cv_folds)
summary = summarise_cv(per_fold, oof, n_boot=n_boot, seed=seed)
report.table(per_fold.set_index(["variant", "fold"]), "ablation_per_fold")
report.table(summary, "ablation_summary")
(report.report_dir / "ablation_summary.json").write_text(summary.reset_index().to_json(orient="records", indent=2))
fig = plots.auc_bars(summary.rename(columns={"roc_auc_mean": "auc_mean", "roc_auc_sd": "auc_sd"}),
                     f"Ablation: ROC AUC over {cv_folds} patient-grouped folds", tag=report.tag)
report.figure(fig, "fig_ablation_auc")
summary.round(3)
"""),
    ("code", """
s = summary
img, clin, paper, meta = (s.loc[k] for k in ("image only", "fusion, clinical", "fusion, paper (+ width/height)",
                                              "metadata only (clinical)"))
display(Markdown(
    f"**Result.** Metadata only: ROC AUC {meta.roc_auc_mean:.3f} ± {meta.roc_auc_sd:.3f}. Image only: "
    f"{img.roc_auc_mean:.3f} ± {img.roc_auc_sd:.3f}. Fusion with clinical metadata: {clin.roc_auc_mean:.3f} ± "
    f"{clin.roc_auc_sd:.3f} (pooled out-of-fold {clin.pooled_oof_roc_auc:.3f}, 95% CI {clin.pooled_ci_low:.3f}–"
    f"{clin.pooled_ci_high:.3f}). Adding width/height (the study's features): {paper.roc_auc_mean:.3f} ± "
    f"{paper.roc_auc_sd:.3f}, a change of {paper.roc_auc_mean - clin.roc_auc_mean:+.3f}; whatever width/height add "
    f"comes from how images were acquired, not from the lesion. Melanoma vs nevus (pooled): image {img.pooled_mel_vs_nevus_auc:.3f}, "
    f"fusion clinical {clin.pooled_mel_vs_nevus_auc:.3f}, fusion paper {paper.pooled_mel_vs_nevus_auc:.3f}."
))
"""),
    ("code", """
curves = {name: (part["target"].to_numpy(), part["probability"].to_numpy()) for name, part in oof.groupby("variant", sort=False)}
report.figure(plots.roc_pr(curves, "Out-of-fold ROC and PR curves (all folds pooled)", tag=report.tag), "fig_ablation_roc_pr")
"""),
    ("md", """
## One run in detail: fusion (clinical), fold 0
Trained on the other folds (with its own patient-grouped validation split for early stopping and the
threshold), evaluated on fold 0's patients, which it never saw. Figs 16–17 of the study: the training
history. Then the study's Table 3 metrics at 0.5 and at the threshold chosen on validation
(sensitivity ≥ {min_sensitivity}), with confusion matrices.
"""),
    ("code", """
run_dir = runs_dir / "fusion_clinical" / "fold0"
run = Run.load(run_dir)
history = pd.read_csv(run_dir / "history.csv")
report.figure(plots.history_curves(history, "Figs 16–17 · Training history, fusion (clinical), fold 0", tag=report.tag),
              "fig16_17_history")
test = oof[(oof["variant"] == "fusion, clinical") & (oof["fold"] == 0)]
result = evaluate(test["target"], test["probability"], test["patient_id"], {"0.5": 0.5, "validation": run.threshold},
                  n_boot=n_boot, seed=seed)
(report.report_dir / "fusion_clinical_fold0_metrics.json").write_text(json.dumps(result, indent=2))
table3 = metrics_table(result)
report.table(table3, "table3_fusion_clinical_fold0")
for name, m in result["thresholds"].items():
    report.figure(plots.confusion(m, f"Fusion (clinical), fold 0, at {name}", tag=report.tag), f"fig_confusion_{name.replace('.', '_')}")
r, p = result["roc_auc"], result["pr_auc"]
display(Markdown(
    f"Fold 0 test: {result['n']:,} images, {result['n_positive']} malignant, {result['n_patients']} patients. "
    f"ROC AUC **{r['estimate']:.3f}** (95% CI {r['ci_low']:.3f}–{r['ci_high']:.3f}), PR AUC {p['estimate']:.3f} "
    f"({p['ci_low']:.3f}–{p['ci_high']:.3f}; chance {result['n_positive'] / result['n']:.3f}). Threshold from validation: "
    f"{run.threshold:.3f}; on the test fold it gives sensitivity {result['thresholds']['validation']['sensitivity']:.2f} "
    f"and specificity {result['thresholds']['validation']['specificity']:.2f}. Training ran {run.config['epochs_run']} epochs "
    f"at {run.config['train_images_per_second']:.0f} images/s."
))
table3.round(3)
"""),
    ("md", "## Input pipeline throughput (it must not be the bottleneck)"),
    ("code", """
from melanoma_utils.augment import build_augmenter
from melanoma_utils.pipeline import make_dataset

sample = df.sample(n=min(512, len(df)), random_state=seed)
ds = make_dataset(list(sample["image_path"]), run.encoder.transform(sample), sample["target"].to_numpy(),
                  image_size=image_size, training=True, augmenter=build_augmenter(image_size, seed=seed), batch_size=batch_size)
cold, warm = benchmark.dataset_throughput(ds, epochs=2)
model_rate = run.config["train_images_per_second"]
display(Markdown(f"Pipeline alone: {cold:.0f} images/s cold (decode + resize), {warm:.0f} images/s cached (augmentation only); "
                 f"the model trains at {model_rate:.0f} images/s (including validation): the cached pipeline delivers "
                 f"{warm / model_rate:.1f}× the model's rate on the same 2 CPU cores."))
"""),
    ("md", "## Environment"),
    ("code", "package_versions()"),
]

NOTEBOOKS["04_explain"] = [
    ("md", """
# 04 · What the fusion model uses: metadata importance (Fig 14) and image explanations (Fig 15)

Explains a trained run from the ablation of notebook 03 — the fusion model with the study's *paper*
features (age, sex, site + original image width/height), on the patients of its held-out fold, which it
never saw. Metadata: permutation importance measured as the drop in ROC AUC, with one-hot groups permuted
**together** (the study scored single one-hot columns, which understates a multi-column feature like the
site), and exact SHAP values over the same groups with the image held fixed. Images: SHAP (expected
gradients) with the lesion's metadata held fixed, and Grad-CAM.
"""),
    ("params", """
synthetic = True
dataset_label = "SYNTHETIC demo"
images_csv = "data/synthetic-demo/train.csv"
images_dir = ""  # empty: the train/ folder beside images_csv
report_dir = "reports/demo"
explain_runs = ["fusion_paper__width_height", "fusion_clinical"]  # ablation runs under <report_dir>/runs/ablation
fold = 0
cv_folds = 3
n_repeats = 5
n_background = 20
n_shap_lesions = 12
n_image_lesions = 6
shap_nsamples = 100
seed = 0
"""),
    ("code", """
import numpy as np
import pandas as pd
from IPython.display import Markdown, display

from melanoma_utils import config, data, explain, plots
from melanoma_utils.reporting import Report, package_versions, seed_everything
from melanoma_utils.splits import grouped_folds
from melanoma_utils.training import Run

seed_everything(seed)
report = Report.from_params(report_dir, synthetic)
df = data.load_dataset(config.resolve(images_csv), config.resolve(images_dir) if images_dir else None).frame
held_out = df[grouped_folds(df, n_splits=cv_folds, seed=seed) == fold].reset_index(drop=True)
runs = {name: Run.load(report.report_dir / "runs" / "ablation" / name / f"fold{fold}") for name in explain_runs}
display(Markdown(f"Held-out fold {fold}: {len(held_out):,} images, {held_out['patient_id'].nunique()} patients, "
                 f"{int(held_out['target'].sum())} malignant; runs: {', '.join(explain_runs)}."))
"""),
    ("md", "## Fig 14 · Grouped permutation importance (drop in ROC AUC, mean ± sd over repeats)"),
    ("code", """
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
    "that image size identifies the acquisition device and clinic (metadata-only AUC 0.79 on the full data), so "
    "any importance they carry is a shortcut, not a lesion property."
))
paper.round(4)
"""),
    ("md", "## Fig 14b · SHAP values of the metadata groups (image held fixed per lesion)"),
    ("code", """
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
"""),
    ("md", "## Fig 15 · Image SHAP and Grad-CAM: correct and wrong, benign and malignant lesions"),
    ("code", """
x = inputs[explain_runs[0]]
prob = explain.predict_arrays(run.model, x)
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
"""),
    ("md", "## Environment"),
    ("code", "package_versions()"),
]

NOTEBOOKS["05_compare_backbones"] = [
    ("md", """
# 05 · Backbone comparison (the study's Table 3)

The study compares its CNN with VGG-16, ResNet-50, MobileNetV2, EfficientNet and DenseNet-121. Here each
`keras.applications` backbone is the image branch of the same builder, image-only and fused with the
clinical metadata, each with its own input scaling (EfficientNet takes 0–255; VGG/ResNet mean-subtracted
BGR; MobileNet [−1, 1]; DenseNet ImageNet mean/std). All are trained on the same patients and scored on
the same held-out patients, at the threshold chosen on each run's validation split.

The committed rendering uses the **quick CPU parameters** (small images, few epochs, random initialisation,
a subset of backbones): it shows the machinery and the relative cost, not what ImageNet-pretrained backbones
reach. For the full comparison run `params/isic2020-256-gpu.yaml` on a GPU (`make setup GPU=1`), which uses
`weights="imagenet"` with a freeze-then-fine-tune schedule.
"""),
    ("params", """
synthetic = True
dataset_label = "SYNTHETIC demo"
images_csv = "data/synthetic-demo/train.csv"
images_dir = ""  # empty: the train/ folder beside images_csv
report_dir = "reports/demo"
backbones = ["cnn", "mobilenetv2", "efficientnetb0"]  # cnn: the study's own branch
compare_image_size = 64
compare_epochs = 3
compare_weights = "none"  # none | imagenet
freeze_epochs = 0
conv_filters = [16, 32, 64, 128]
learning_rate = 0.001
batch_size = 32
test_fraction = 0.2
n_boot = 500
seed = 0
"""),
    ("code", """
import pandas as pd
from IPython.display import Markdown, display

from melanoma_utils import config, data, plots
from melanoma_utils.reporting import Report, package_versions, seed_everything
from melanoma_utils.training import TrainConfig, compare_backbones

seed_everything(seed)
report = Report.from_params(report_dir, synthetic)
df = data.load_dataset(config.resolve(images_csv), config.resolve(images_dir) if images_dir else None).frame
cfg = TrainConfig(image_size=compare_image_size, epochs=compare_epochs, patience=compare_epochs,
                  weights=None if compare_weights == "none" else compare_weights, freeze_epochs=freeze_epochs,
                  conv_filters=tuple(conv_filters), learning_rate=learning_rate, batch_size=batch_size, seed=seed, verbose=0)
table, preds = compare_backbones(df, cfg, report.report_dir / "runs" / "backbones", backbones,
                                 test_fraction=test_fraction, n_boot=n_boot)
report.table(table.set_index(["backbone", "model"]), "table3_backbones")
show = table.assign(roc_auc_ci=[f"{a:.3f}–{b:.3f}" for a, b in zip(table["roc_auc_ci_low"], table["roc_auc_ci_high"])],
                    pr_auc_ci=[f"{a:.3f}–{b:.3f}" for a, b in zip(table["pr_auc_ci_low"], table["pr_auc_ci_high"])])
show.drop(columns=["roc_auc_ci_low", "roc_auc_ci_high", "pr_auc_ci_low", "pr_auc_ci_high"]).set_index(["backbone", "model"]).round(3)
"""),
    ("code", """
best = table.loc[table["roc_auc"].idxmax()]
display(Markdown(
    f"{dataset_label}, {compare_image_size} px, {compare_epochs} epochs, weights: {compare_weights}. Best ROC AUC: "
    f"**{best['backbone']} ({best['model']})** {best['roc_auc']:.3f} (95% CI {best['roc_auc_ci_low']:.3f}–{best['roc_auc_ci_high']:.3f}). "
    "Overlapping intervals mean the held-out set cannot separate the models. Training speed on this machine: "
    + ", ".join(f"{b}/{m} {r:.0f} img/s" for b, m, r in zip(table['backbone'], table['model'], table['train_images_per_second']))
))
curves = {f"{b} · {m}": (g["target"].to_numpy(), g["probability"].to_numpy()) for (b, m), g in preds.groupby(["backbone", "model"], sort=False)}
report.figure(plots.roc_pr(curves, "Backbones on the held-out patients", tag=report.tag), "fig_backbones_roc_pr")
"""),
    ("md", "## Environment"),
    ("code", "package_versions()"),
]
