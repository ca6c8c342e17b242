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
# # 05 · Backbone comparison (the study's Table 3)
#
# The study compares its CNN with VGG-16, ResNet-50, MobileNetV2, EfficientNet and DenseNet-121. Here each
# backbone is the image branch of the same builder, image-only and fused with the clinical metadata, each with
# its own input scaling (EfficientNet takes 0–255; VGG/ResNet mean-subtracted BGR; MobileNet [−1, 1]; DenseNet
# ImageNet mean/std), each image scored at the threshold chosen on its own run's validation split.
#
# Rows are like for like only **within one protocol** (the `protocol` column), and the two protocols are evaluated
# differently (the `evaluation` and `repeats` columns):
#
# * **(a) pretrained, frozen; head on cached embeddings**: EfficientNet-Lite0/1/2 with ImageNet weights shipped
#   offline by pip packages, **each at its ImageNet resolution** (224, 240, 260 px). Training a head on cached
#   embeddings is cheap, so these rows are **patient-grouped cross-validated, with repeated fold assignments**, and
#   compared by **paired contrasts** on the same images (every backbone against Lite0; fusion against image only).
# * **(b) random init, trained end to end**: the study's protocol — the study's CNN, VGG-16, ResNet-50, MobileNetV2,
#   EfficientNet-B0, DenseNet-121 and Lite0 from random weights, the same small image size, epochs and split. On a
#   CPU this is the expensive block: **one patient-grouped hold-out split**, no repeats, so its intervals are wide.
# * **(c) the `keras.applications` backbones with ImageNet weights** (`name@imagenet`) under a hold-out split. Their
#   weights need a download: on a machine without internet these rows say so (`note`) instead of a number.
#   `params/isic2020-256-gpu.yaml` runs them on a GPU with internet (`make setup GPU=1`).
#
# **Primary endpoint** (fixed before the numbers, as in 03): the ROC AUC **within copy a** where the data say which
# copy of the data set each image came from (every malignant image of the shared subset is in copy a), with melanoma
# vs nevus beside it; the AUC over all images is a guard. Speed is measured the same way for every hold-out row (the
# held-out images scored from pixels by the whole model).

# %% tags=["parameters"]
synthetic = True
dataset_label = "SYNTHETIC demo"
images_csv = "data/synthetic-demo/train.csv"
images_dir = ""  # empty: the train/ folder beside images_csv
report_dir = "reports/demo"
locked_test = "locked_test.csv"  # notebook 03's locked test part (in report_dir): its patients are left out here
frozen_backbones = ["efficientnetlite0", "efficientnetlite1"]  # protocol (a): efficientnetlite0/1/2, each at its ImageNet size
frozen_views = 1  # rotations/mirrors cached per image for protocol (a)'s heads
frozen_epochs = 10
frozen_patience = 5
cv_folds = 3
frozen_repeats = 2  # fold assignments of protocol (a) (repeat 0 is the table's; the paired contrasts average all)
backbones = ["cnn", "efficientnetlite0@none", "mobilenetv2@none", "vgg16@imagenet"]  # protocols (b), (c): hold-out rows; cnn: the study's own branch; name@weights
compare_image_size = 64
compare_epochs = 3
compare_freeze_epochs = 0  # protocol (b) with pretrained weights: epochs with the backbone frozen first
compare_conv_filters = [16, 32, 64, 128]  # the study's CNN in protocol (b)
compare_learning_rate = 0.001  # protocol (b); the study uses 1e-4, a short CPU budget needs a larger step
compare_batch_size = 32  # protocols (a) and (b)
test_fraction = 0.2
n_boot = 500
source_csv = ""  # image_name, source_copy (empty: copies.csv beside images_csv): the within-copy-a endpoints
seed = 0

# %%
import pandas as pd
from IPython.display import Markdown, display

from melanoma_utils import config as paths
from melanoma_utils.data.confounds import with_source_copies
from melanoma_utils.reports import plots
from melanoma_utils.reports.reporting import open_study, package_versions
from melanoma_utils.runs import TrainConfig
from melanoma_utils.study.backbone_study import (
    REFERENCE_BACKBONE,
    compare_backbones,
    display_name,
    frozen_backbone_contrasts,
    frozen_backbone_table,
    frozen_backbone_variants,
    frozen_variant_name,
    protocol_rank,
)
from melanoma_utils.study.contrasts import SUBSET_LABELS, describe_contrast, paired_contrasts, primary_subset
from melanoma_utils.study.experiments import repeated_cross_validate
from melanoma_utils.study.locked import read_locked, without_locked
from melanoma_utils.study.plan import FoldPlan

report, df = open_study(report_dir, synthetic, seed, images_csv, images_dir)
df, _ = with_source_copies(df, paths.resolve(images_csv), paths.resolve(source_csv) if source_csv else None)
# notebook 03's locked test part (drawn there, once): no comparison below sees its patients
locked = read_locked(report.report_dir / locked_test) if locked_test and (report.report_dir / locked_test).is_file() else None
df, n_locked = without_locked(df, locked)
primary = primary_subset(df.assign(probability=0.0))
display(Markdown(f"{len(df):,} images of {df['patient_id'].nunique():,} patients"
                 + (f" (the locked test part's {n_locked:,} images set aside)." if locked else ".")))

# %% [markdown]
# ## (a) Frozen pretrained backbones: repeated patient-grouped cross-validation
#
# The same folds, head, views and budget for every backbone; only the backbone (and so its native resolution)
# changes. The table row is the pooled out-of-fold prediction of the study's fold assignment (repeat 0); the paired
# contrasts average every repeat, with patient-bootstrap CIs and Holm's adjustment within each endpoint.

# %%
frozen_cfg = TrainConfig.from_preset("lite0-224", embedding_views=frozen_views, epochs=frozen_epochs,
                                     patience=frozen_patience, batch_size=compare_batch_size, seed=seed, verbose=0)
cv_dir = report.report_dir / "runs" / "backbones_cv"
per_fold, oof = repeated_cross_validate(df, frozen_cfg, cv_dir, frozen_backbone_variants(list(frozen_backbones)),
                                        FoldPlan(cv_folds, repeats=frozen_repeats))
frozen = frozen_backbone_table(oof, cv_dir, list(frozen_backbones), n_boot=n_boot, seed=seed)
paired = paired_contrasts(per_fold, oof, frozen_backbone_contrasts(list(frozen_backbones)), n_boot=n_boot, seed=seed)
report.table(paired.set_index(["contrast", "subset"]), "table3_backbones_paired")
paired[["contrast", "subset", "delta_auc", "ci_low", "ci_high", "p_value", "p_holm", "repeats"]].round(3)

# %%
def contrast_line(a: str, b: str, words: str) -> str:
    """One contrast on the primary endpoint and melanoma vs nevus, as report text."""
    return (f"* {words}: {SUBSET_LABELS[primary]} {describe_contrast(paired, a, b, primary)}; melanoma vs nevus "
            f"{describe_contrast(paired, a, b, 'melanoma_vs_nevus')}.")


lines = [contrast_line(frozen_variant_name(b, m), frozen_variant_name(REFERENCE_BACKBONE, m),
                       f"{display_name(b)} − {display_name(REFERENCE_BACKBONE)} ({'fusion' if m == 'fusion' else 'image only'})")
         for m in ("fusion", "image") for b in frozen_backbones if b != REFERENCE_BACKBONE]
lines += [contrast_line(frozen_variant_name(b, "fusion"), frozen_variant_name(b, "image"),
                        f"fusion − image only ({display_name(b)})") for b in frozen_backbones]
significant = paired[(paired["subset"] == primary) & (paired["p_holm"] < 0.05)]
display(Markdown(
    f"{dataset_label}: {len(frozen_backbones)} frozen backbones × image only / fusion, {cv_folds}-fold patient-grouped "
    f"CV × {frozen_repeats} fold assignments, {frozen_views} cached view(s) per image.\n\n" + "\n".join(lines)
    + f"\n\n{len(significant)} of {int((paired['subset'] == primary).sum())} contrasts on the primary endpoint "
    "stay below 0.05 after Holm's adjustment"
    + (": " + "; ".join(significant["contrast"]) if len(significant) else "")
    + ". A contrast whose interval holds 0 is not a finding: the backbones cannot be told apart on these patients."))
report.figure(plots.paired_deltas(paired, "Frozen backbones: paired differences in ROC AUC (a − b)", tag=report.tag),
              "fig_backbones_paired")

# %% [markdown]
# ## (b), (c) Backbones trained end to end, or with downloaded weights: one hold-out split

# %%
cfg = TrainConfig.from_preset("study-cnn", image_size=compare_image_size, epochs=compare_epochs, patience=compare_epochs,
                              freeze_epochs=compare_freeze_epochs, conv_filters=tuple(compare_conv_filters),
                              learning_rate=compare_learning_rate, batch_size=compare_batch_size, seed=seed, verbose=0)
holdout, preds = compare_backbones(df, cfg, report.report_dir / "runs" / "backbones", list(backbones),
                                   test_fraction=test_fraction, n_boot=n_boot)
table = pd.concat([frozen, holdout], ignore_index=True)
table = table.sort_values("protocol", key=lambda c: c.map(protocol_rank), kind="stable").reset_index(drop=True)
report.table(table.set_index(["protocol", "backbone", "model"]), "table3_backbones")
show = table.assign(roc_auc_ci=[f"{a:.3f}–{b:.3f}" if a == a else "" for a, b in zip(table["roc_auc_ci_low"], table["roc_auc_ci_high"])],
                    within_copy_a_ci=[f"{a:.3f}–{b:.3f}" if a == a else "" for a, b in zip(table["within_copy_a_ci_low"], table["within_copy_a_ci_high"])])
show[["protocol", "backbone", "model", "image_size", "repeats", "calibrator", "roc_auc", "roc_auc_ci", "within_copy_a_auc",
      "within_copy_a_ci", "mel_vs_nevus_auc", "sensitivity", "specificity", "note"]].set_index(["protocol", "backbone", "model"]).round(3)

# %%
ran = holdout[holdout["note"].fillna("") == ""]
lines = []
for protocol, g in ran.groupby("protocol", sort=False):
    best = g.loc[g["roc_auc"].idxmax()]
    lines.append(f"* **{protocol}**: highest ROC AUC {display_name(best['backbone'])} ({best['model']}) {best['roc_auc']:.3f} "
                 f"(95% CI {best['roc_auc_ci_low']:.3f}–{best['roc_auc_ci_high']:.3f}) of {len(g)} run(s), "
                 f"{compare_image_size} px, up to {compare_epochs} epochs; scoring speed "
                 f"{g['predict_images_per_second'].min():.0f}–{g['predict_images_per_second'].max():.0f} images/s.")
skipped = holdout[holdout["note"].fillna("") != ""].drop_duplicates("backbone")
display(Markdown(
    f"{dataset_label}, {int(round(test_fraction * 100))}% of the patients held out, one split.\n\n" + "\n".join(lines)
    + "\n\nOne split and no repeats: overlapping intervals mean this held-out set cannot separate the models, and a "
    "highest value is not a ranking."
    + ("\n\nNot run here: " + "; ".join(f"{display_name(b)} ({n.removeprefix('not run: ')})" for b, n in zip(skipped["backbone"], skipped["note"]))
       if len(skipped) else "")
))
cv_curves = {f"{display_name(b)}, {frozen_variant_name(b, 'fusion').split(', ')[-1]}": (g["target"].to_numpy(), g["probability"].to_numpy())
             for b in frozen_backbones
             for g in [oof[(oof["variant"] == frozen_variant_name(b, "fusion")) & (oof["repeat"] == 0)]]}
report.figure(plots.roc_pr(cv_curves, "(a) Frozen backbones, fusion: out-of-fold (all folds pooled)", tag=report.tag),
              "fig_backbones_roc_pr")
holdout_curves = {display_name(b.partition("@")[0]): (g["target"].to_numpy(), g["probability"].to_numpy())
                  for (b, m), g in preds.groupby(["backbone", "model"], sort=False) if m == "fusion"}
if holdout_curves:
    n_holdout = len(next(iter(holdout_curves.values()))[0])
    report.figure(plots.roc_pr(holdout_curves, f"(b) Trained end to end, fusion: one hold-out split (n={n_holdout:,}; "
                               "other images than (a): not comparable with it)", tag=report.tag),
                  "fig_backbones_holdout_roc_pr")

# %% [markdown]
# ## Environment

# %%
package_versions()
