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
# ImageNet mean/std). All are trained on the same patients and scored on the same held-out patients, at the
# threshold chosen on each run's validation split.
#
# Rows are like for like only **within one protocol** (the `protocol` column):
#
# * **(a) pretrained, frozen; head on cached embeddings**: EfficientNet-Lite0/1/2 with ImageNet weights shipped
#   offline by pip packages (`efficientnetliteN@imagenet`).
# * **(b) random init, trained end to end**: the study's protocol, the same image size, epochs and split for the
#   study's CNN, VGG-16, ResNet-50, MobileNetV2, EfficientNet-B0, DenseNet-121 and Lite0 (`name@none`).
# * **(c) the `keras.applications` backbones with ImageNet weights** (`name@imagenet`) under protocol (a), so that
#   they join its block. Their weights need a download: on a machine without internet these rows say so (`note`)
#   instead of a number. `params/isic2020-256-gpu.yaml` runs them on a GPU with internet (`make setup GPU=1`).
#
# Speed is measured the same way for every row: the held-out images scored from pixels by the whole model
# (`predict_images_per_second`). Training images/s are not comparable across protocols (protocol (a) trains only
# the head, on cached embeddings).

# %% tags=["parameters"]
synthetic = True
dataset_label = "SYNTHETIC demo"
images_csv = "data/synthetic-demo/train.csv"
images_dir = ""  # empty: the train/ folder beside images_csv
report_dir = "reports/demo"
backbones = ["cnn", "efficientnetlite0@imagenet", "efficientnetlite0@none", "mobilenetv2@none", "vgg16@imagenet"]  # cnn: the study's own branch; name@weights
compare_image_size = 64
compare_epochs = 3
compare_weights = "none"  # none | imagenet
freeze_epochs = 0
conv_filters = [16, 32, 64, 128]
learning_rate = 0.001
batch_size = 32
test_fraction = 0.2
n_boot = 500
source_csv = ""  # image_name, source_copy (empty: copies.csv beside images_csv): the table's within-copy-a AUC
seed = 0

# %%
from IPython.display import Markdown, display

from melanoma_utils import config as paths
from melanoma_utils.data.confounds import with_source_copies
from melanoma_utils.reports import plots
from melanoma_utils.reports.reporting import open_study, package_versions
from melanoma_utils.runs import TrainConfig
from melanoma_utils.runs.experiments import compare_backbones, protocol_rank

report, df = open_study(report_dir, synthetic, seed, images_csv, images_dir)
df, _ = with_source_copies(df, paths.resolve(images_csv), paths.resolve(source_csv) if source_csv else None)
cfg = TrainConfig(image_size=compare_image_size, epochs=compare_epochs, patience=compare_epochs,
                  backbone_weights=None if compare_weights == "none" else compare_weights, freeze_epochs=freeze_epochs,
                  conv_filters=tuple(conv_filters), learning_rate=learning_rate, batch_size=batch_size, seed=seed, verbose=0)
table, preds = compare_backbones(df, cfg, report.report_dir / "runs" / "backbones", backbones,
                                 test_fraction=test_fraction, n_boot=n_boot)
table = table.sort_values("protocol", key=lambda c: c.map(protocol_rank), kind="stable").reset_index(drop=True)
report.table(table.set_index(["protocol", "backbone", "model"]), "table3_backbones")
show = table.assign(roc_auc_ci=[f"{a:.3f}–{b:.3f}" if a == a else "" for a, b in zip(table["roc_auc_ci_low"], table["roc_auc_ci_high"])],
                    pr_auc_ci=[f"{a:.3f}–{b:.3f}" if a == a else "" for a, b in zip(table["pr_auc_ci_low"], table["pr_auc_ci_high"])])
show.drop(columns=["roc_auc_ci_low", "roc_auc_ci_high", "pr_auc_ci_low", "pr_auc_ci_high"]).set_index(["protocol", "backbone", "model"]).round(3)

# %%
ran = table[table["note"].fillna("") == ""]
lines = []
for protocol, g in ran.groupby("protocol", sort=False):
    best = g.loc[g["roc_auc"].idxmax()]
    lines.append(f"* **{protocol}**: best {best['backbone']} ({best['model']}) ROC AUC {best['roc_auc']:.3f} "
                 f"(95% CI {best['roc_auc_ci_low']:.3f}–{best['roc_auc_ci_high']:.3f}) of {len(g)} run(s); "
                 f"scoring speed {g['predict_images_per_second'].min():.0f}–{g['predict_images_per_second'].max():.0f} images/s.")
skipped = table[table["note"].fillna("") != ""].drop_duplicates("backbone")
display(Markdown(
    f"{dataset_label}, {compare_image_size} px, up to {compare_epochs} epochs, {len(ran)} runs on "
    f"{int(round(test_fraction * 100))}% of the patients held out.\n\n" + "\n".join(lines)
    + "\n\nOverlapping intervals mean the held-out set cannot separate the models; compare rows within a protocol."
    + ("\n\nNot run here: " + "; ".join(f"{b} ({n.removeprefix('not run: ')})" for b, n in zip(skipped["backbone"], skipped["note"]))
       if len(skipped) else "")
))
curves = {f"{b} · {m}": (g["target"].to_numpy(), g["probability"].to_numpy())
          for (b, m), g in preds.groupby(["backbone", "model"], sort=False) if m == "fusion"}
report.figure(plots.roc_pr(curves, "Backbones (fusion) on the held-out patients", tag=report.tag), "fig_backbones_roc_pr")

# %% [markdown]
# ## Environment

# %%
package_versions()
