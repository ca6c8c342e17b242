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
# `keras.applications` backbone is the image branch of the same builder, image-only and fused with the
# clinical metadata, each with its own input scaling (EfficientNet takes 0–255; VGG/ResNet mean-subtracted
# BGR; MobileNet [−1, 1]; DenseNet ImageNet mean/std). All are trained on the same patients and scored on
# the same held-out patients, at the threshold chosen on each run's validation split.
#
# A backbone entry `name@weights` chooses its weights: **EfficientNet-Lite0 with ImageNet weights**
# (`efficientnetlite0@imagenet`, shipped offline by a pip package; frozen, head trained on cached
# embeddings) against the same network from random initialisation (`efficientnetlite0@none`, trained end
# to end) shows what pretraining buys. The other `keras.applications` backbones run from random
# initialisation here (their ImageNet weights need a download): small images, few epochs — the machinery
# and the relative cost, not what they reach pretrained. For that, run `params/isic2020-256-gpu.yaml` on a
# GPU with internet (`make setup GPU=1`), which uses `weights="imagenet"` with a freeze-then-fine-tune schedule.

# %% tags=["parameters"]
synthetic = True
dataset_label = "SYNTHETIC demo"
images_csv = "data/synthetic-demo/train.csv"
images_dir = ""  # empty: the train/ folder beside images_csv
report_dir = "reports/demo"
backbones = ["cnn", "efficientnetlite0@imagenet", "efficientnetlite0@none", "mobilenetv2"]  # cnn: the study's own branch
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

# %%
from IPython.display import Markdown, display

from melanoma_utils import plots
from melanoma_utils.experiments import compare_backbones
from melanoma_utils.reporting import open_study, package_versions
from melanoma_utils.runs import TrainConfig

report, df = open_study(report_dir, synthetic, seed, images_csv, images_dir)
cfg = TrainConfig(image_size=compare_image_size, epochs=compare_epochs, patience=compare_epochs,
                  backbone_weights=None if compare_weights == "none" else compare_weights, freeze_epochs=freeze_epochs,
                  conv_filters=tuple(conv_filters), learning_rate=learning_rate, batch_size=batch_size, seed=seed, verbose=0)
table, preds = compare_backbones(df, cfg, report.report_dir / "runs" / "backbones", backbones,
                                 test_fraction=test_fraction, n_boot=n_boot)
report.table(table.set_index(["backbone", "model"]), "table3_backbones")
show = table.assign(roc_auc_ci=[f"{a:.3f}–{b:.3f}" for a, b in zip(table["roc_auc_ci_low"], table["roc_auc_ci_high"])],
                    pr_auc_ci=[f"{a:.3f}–{b:.3f}" for a, b in zip(table["pr_auc_ci_low"], table["pr_auc_ci_high"])])
show.drop(columns=["roc_auc_ci_low", "roc_auc_ci_high", "pr_auc_ci_low", "pr_auc_ci_high"]).set_index(["backbone", "model"]).round(3)

# %%
best = table.loc[table["roc_auc"].idxmax()]
display(Markdown(
    f"{dataset_label}, {compare_image_size} px, up to {compare_epochs} epochs, default weights: {compare_weights}. Best ROC AUC: "
    f"**{best['backbone']} ({best['model']})** {best['roc_auc']:.3f} (95% CI {best['roc_auc_ci_low']:.3f}–{best['roc_auc_ci_high']:.3f}). "
    "Overlapping intervals mean the held-out set cannot separate the models. Training speed on this machine: "
    + ", ".join(f"{b}{'@' + w if isinstance(w, str) else ''} ({m}) {r:.0f} img/s"
                for b, w, m, r in zip(table['backbone'], table['weights'], table['model'], table['train_images_per_second']))
    + " (for the pretrained Lite0, training images/s include computing the cached embeddings once)."
))
curves = {f"{b} · {m}": (g["target"].to_numpy(), g["probability"].to_numpy()) for (b, m), g in preds.groupby(["backbone", "model"], sort=False)}
report.figure(plots.roc_pr(curves, "Backbones on the held-out patients", tag=report.tag), "fig_backbones_roc_pr")

# %% [markdown]
# ## Environment

# %%
package_versions()
