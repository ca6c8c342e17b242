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
# # 01 · Exploratory analysis of the SIIM-ISIC 2020 metadata and images
#
# Reproduces the study's Figs 3–11 (sex, site, age vs malignancy; colour intensities) and adds what a
# careful reviewer wants: missing values, images per patient, malignancy **rates** with 95% confidence
# intervals, and the original image size — an *acquisition* signal that the study's "lesion size"
# features pick up. All statistics and figures come from `melanoma_utils` (tested); this notebook only
# calls them. Run it top to bottom, or with `make reproduce` (papermill fills the `parameters` cell).

# %% tags=["parameters"]
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
source_csv = ""  # image_name, source_copy (empty: copies.csv beside images_csv, or the CSV's own column)
seed = 0

# %%
import pandas as pd
from IPython.display import Markdown, display

from melanoma_utils import config, data
from melanoma_utils.reports import eda, plots
from melanoma_utils.reports.reporting import open_study, package_versions

report, _ = open_study(report_dir, synthetic, seed)
tag = report.tag
meta = data.load_metadata(config.resolve(metadata_csv)).frame
sizes = data.load_metadata(config.resolve(size_metadata_csv or metadata_csv)).frame
ov = eda.overview(meta)
population = f"{dataset_label}, {len(meta):,} images"  # every metadata figure's title names what it counts
display(Markdown(
    f"**Data set: {dataset_label}.** {ov['images']:,} images from {ov['patients']:,} patients, "
    f"{ov['malignant']:,} malignant (**{ov['malignant_pct']:.2f}%**). A classifier that always answers "
    f"*benign* is {ov['always_benign_accuracy_pct']:.1f}% accurate — accuracy alone says little here."
))

# %% [markdown]
# ## Missing values
# Unknown sex/site and missing ages are explicit categories, never silently dropped.

# %%
missing = eda.missing_table(meta)
report.table(missing, "table_missing_values")
missing.style.format({"percent": "{:.2f}%"})

# %% [markdown]
# ## Fig 3 · Sex distribution, and Fig 4 · benign vs malignant by sex

# %%
sex_counts = eda.count_table(meta, "sex")
fig = plots.bar_counts(sex_counts, f"Fig 3 · Sex distribution ({population})", xlabel="sex", tag=tag, column="sex")
report.figure(fig, "fig03_sex_distribution")
sex_rate = eda.malignancy_rate(meta, "sex")
display(Markdown(", ".join(f"{k}: {v:,} images ({r:.2f}% malignant)" for k, v, r in
                           zip(sex_rate.index, sex_rate["images"], sex_rate["rate_pct"]))))

# %%
fig = plots.grouped_counts(meta, "sex", "target", f"Fig 4 · Benign vs malignant by sex ({population}; each on its own linear scale)", tag=tag,
                           log=True, hue_labels={0: "benign", 1: "malignant"})
report.figure(fig, "fig04_target_by_sex")

# %% [markdown]
# ## Fig 5 · Anatomical site (percent of images), and Fig 6 · melanoma count by site and sex

# %%
site_pct = eda.count_table(meta, "site", normalize=True)
fig = plots.bar_counts(site_pct, f"Fig 5 · Anatomical site ({population})", ylabel="% of images", percent=True, tag=tag,
                       horizontal=True)
report.figure(fig, "fig05_site_distribution")
display(Markdown("Sites: " + ", ".join(f"{k} {v:.1f}%" for k, v in site_pct.items())))

# %%
fig = plots.grouped_counts(meta[meta["target"] == 1], "site", "sex",
                           f"Fig 6 · Melanoma count by site and sex ({dataset_label}, {ov['malignant']:,} melanomas)",
                           tag=tag, order=list(site_pct.index))  # Fig 5's order
report.figure(fig, "fig06_melanoma_by_site_sex")

# %% [markdown]
# ## Figs 7–9 · Age: overall, benign vs malignant, by sex

# %%
report.figure(plots.age_hist(meta, f"Fig 7 · Age distribution ({population})", tag=tag), "fig07_age_distribution")
report.figure(plots.age_hist(meta, f"Fig 8 · Age, benign vs malignant (density; {population})", hue="target", density=True,
                             tag=tag, hue_labels={0: "benign", 1: "malignant"}), "fig08_age_by_target")
report.figure(plots.age_hist(meta[meta["sex"] != "unknown"], f"Fig 9 · Age by sex (density; {dataset_label}, sex known)", hue="sex",
                             density=True, tag=tag), "fig09_age_by_sex")
by_t = meta.groupby("target")["age"].median()
display(Markdown(f"Median age: benign {by_t.get(0, float('nan')):.0f}, malignant {by_t.get(1, float('nan')):.0f} years."))

# %% [markdown]
# ## Malignancy rate with 95% CIs (what the study's count plots cannot show)
# Counts mix prevalence with group size; rates with Wilson intervals show which differences are real.
# The dashed line is the overall rate.

# %%
rates = {"sex": eda.malignancy_rate(meta, "sex"), "site": eda.malignancy_rate(meta, "site"),
         "age band": eda.malignancy_rate(meta, eda.age_band(meta["age"]))}
for i, (name, table) in enumerate(rates.items()):
    report.table(table, f"table_rate_by_{name.replace(' ', '_')}")
    fig = plots.rate_with_ci(table, f"Malignancy rate by {name} ({population})", overall_pct=ov["malignant_pct"], tag=tag)
    report.figure(fig, f"fig_rate_{i + 1}_by_{name.replace(' ', '_')}")
rates["age band"].round(2)

# %% [markdown]
# ## Images per patient
# Patients contribute many images each: every split must be grouped by patient.

# %%
per_patient = eda.images_per_patient(meta)
fig = plots.hist_series(per_patient, f"Images per patient ({dataset_label}, {len(per_patient):,} patients)",
                        "images of the patient", tag=tag, bins=30, log_x=True, ylabel="patients")
report.figure(fig, "fig_images_per_patient")
display(Markdown(f"Median {per_patient.median():.0f} images per patient (max {per_patient.max()}); "
                 f"{(per_patient >= 10).mean():.0%} of patients have 10 or more."))

# %% [markdown]
# ## Original image size: an acquisition signal, not a lesion property
# The study ranks image width and height as its most important metadata. They describe the camera and
# clinic that took the image, and clinics differ in how many melanomas they see. Below: the malignancy
# rate per original size, and a gradient-boosting model on metadata alone, cross-validated by patient.

# %%
size_rates = eda.size_table(sizes)
report.table(size_rates, "table_rate_by_original_size")
report.figure(plots.size_scatter(sizes, f"Original image size by target ({dataset_label}, {len(sizes):,} images)", tag=tag), "fig_original_size_by_target")
display(size_rates.round(2))

# %%
auc = eda.metadata_auc(sizes, {"age + sex + site": ["age", "sex", "site"], "width + height": ["width", "height"],
                               "all (the study's features)": ["age", "sex", "site", "width", "height"]},
                       n_splits=cv_folds, seed=seed)
report.table(auc, "table_metadata_only_auc")
report.figure(plots.auc_bars(auc, f"Metadata-only gradient boosting: ROC AUC ({dataset_label}, {len(sizes):,} images, patient-grouped CV)", tag=tag), "fig_metadata_only_auc")
clin, acq = auc["auc_mean"].iloc[0], auc["auc_mean"].iloc[1]
display(Markdown(
    f"On {len(sizes):,} images ({cv_folds}-fold CV grouped by patient): **width + height alone reach ROC AUC "
    f"{acq:.3f}**, age + sex + site {clin:.3f}, all together {auc['auc_mean'].iloc[2]:.3f}. "
    "Image size tells *where and how* an image was taken, so a model using it learns the data set's "
    "collection history; it will not transfer to another clinic."
))
auc.round(3)

# %% [markdown]
# ## Figs 10–11 · Colour intensity distributions, benign and malignant (a pixel sample)
#
# Where the data say which copy of the data set each image came from, both classes are sampled **within copy a**: over
# both copies nearly every benign image is from copy b, so the two histograms would compare the copies' processing
# histories, not benign with malignant lesions.

# %%
from melanoma_utils.data.confounds import group_labels, label_by_group, with_source_copies

img = data.load_dataset(config.resolve(images_csv), config.resolve(images_dir) if images_dir else None).frame
img, copies_note = with_source_copies(img, config.resolve(images_csv), config.resolve(source_csv) if source_csv else None)
has_copies = "source_copy" in img and img["source_copy"].notna().any()
in_a = has_copies and bool((img["source_copy"] == "a").any())
pool, where = (img[img["source_copy"] == "a"], ", copy a") if in_a else (img, "")
hists, shown = {}, {}
for t, label in ((0, "benign"), (1, "malignant")):
    part = pool[pool["target"] == t]
    chosen = part.sample(n=min(image_sample, len(part)), random_state=seed)
    hists[label], shown[label] = eda.colour_histograms(list(chosen["image_path"]), pixels_per_image, seed=seed), len(chosen)
top = eda.shared_share_top(hists.values())  # one scale for both figures (None: no pixel sampled)
for t, label in enumerate(hists):
    fig = plots.colour_hist(hists[label], f"Fig {10 + t} · RGB intensities, {label}{where} (n={shown[label]} images)",
                            tag=tag, ymax=top)
    report.figure(fig, f"fig{10 + t}_rgb_{label}")
means = {k: (h * range(256)).sum(1) / h.sum(1) for k, h in hists.items()}
display(Markdown(f"Mean intensity R/G/B{' within copy a' if in_a else ''} — "
                 + "; ".join(f"{k}: " + "/".join(f"{v:.0f}" for v in m) for k, m in means.items())))

# %% [markdown]
# ## The image set: where its images came from, and skin tone
# Where the data say which *copy* of the data set each image came from (the shared ISIC subset: two public copies with
# different processing histories), the label's spread over the copies says how much a model could score by telling
# them apart without looking at a lesion. Skin tone is the individual typology angle (ITA) of the skin around the
# lesion (the lesion masked out, the image border left out), measured on the image as recorded: the device's light and
# white balance move it, so it is a proxy. Bands: very light > 55°, light 41–55°, intermediate 28–41°, tan 10–28°,
# brown −30–10°, dark < −30°.

# %%
from melanoma_utils.data.confounds import ita_band_middles
from melanoma_utils.pipeline.skin import ITA_BANDS, image_cues, ita_band

cues = image_cues(list(img["image_path"]))
img["ita"] = cues["ita"].to_numpy()
group = (group_labels(img, "source_copy").map(lambda c: f"copy {c}") if has_copies else pd.Series("all", index=img.index))
label = img["target"].map({0: "benign", 1: "malignant"})
fig = plots.hist_by_group(img["ita"], group + ", " + label, f"Skin tone (ITA°) around the lesion ({dataset_label}, image set: {len(img):,} images)",
                          "ITA (degrees)", edges=[e for e, _ in ITA_BANDS[:-1]], tag=tag, edge_labels=ita_band_middles())
report.figure(fig, "fig_skin_tone_ita")
band = ita_band(img["ita"]).cat.add_categories(["unmeasured"]).fillna("unmeasured").rename("skin tone (ITA band)")
bands = pd.crosstab(band, (group + ", " + label).rename("group"))
report.table(bands, "table_skin_tone_bands")
dark = int(bands.loc[[b for b in bands.index if str(b).startswith(("brown", "dark"))]].to_numpy().sum())
lines = [f"Skin tone measured on {int(img['ita'].notna().sum()):,} of {len(img):,} images: "
         + ", ".join(f"{b}: {int(n):,}" for b, n in bands.sum(axis=1).items())
         + f". Brown or dark (ITA ≤ 10°) as measured here: **{dark:,} images** ({dark / len(img):.1%}); the "
         "dark band alone: " + f"{int(bands.loc[[b for b in bands.index if str(b).startswith('dark')]].to_numpy().sum()):,}"
         + ". Through a dermatoscope the device's light and white balance move ITA (compare the copies' benign images "
         "below), so a band here is a proxy for skin tone, not a skin-type assessment: any claim about darker skin "
         "needs images labelled with it."]
if has_copies:
    copies = label_by_group(img["target"], group_labels(img, "source_copy"), img["patient_id"])
    report.table(copies.set_index("group"), "table_label_by_copy")
    per_patient = img.groupby("source_copy")["patient_id"].agg(lambda p: len(p) / p.nunique())
    benign = img[img["target"] == 0]
    lines.append(f"{copies_note}. " + " ".join(
        f"Copy {r.group}: {r.rows:,} images of {r.patients:,} patients ({per_patient.get(r.group, float('nan')):.1f} "
        f"images per patient), {r.malignant:,} malignant ({r.malignant_share:.1%}){': ' + r.warning if r.warning else ''}."
        for r in copies.itertuples())
        + " Median ITA of benign images: " + ", ".join(f"copy {c} {v:.1f}°" for c, v in benign.groupby("source_copy")["ita"].median().items())
        + ": anything that differs between the copies (processing, patients, skin tone as imaged) is a possible shortcut;"
        " notebook 03 measures each and judges models within copy a.")
    display(copies)
display(Markdown("\n\n".join(lines)))
display(bands)

# %% [markdown]
# ## Environment

# %%
package_versions()
