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
# # 02 · Image transforms and augmentations (the study's Figs 12–13)
#
# The five transforms of the study — black & white, Ben Graham's local-average subtraction (greyscale
# without and with the blur step), HSB adjustment and the LUV colour space — plus Shades-of-Gray colour
# constancy, which removes a device's colour cast (one of the acquisition shortcuts). Each is a named
# preprocessing option of the training pipeline (`--preprocess NAME`), applied identically at training and
# prediction. Augmentations (random crop, colour jitter, random greyscale, flips and 90° rotations) are
# Keras preprocessing layers, active only while training.

# %% tags=["parameters"]
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

# %%
from IPython.display import Markdown, display

from melanoma_utils import data
from melanoma_utils.pipeline.augment import build_augmenter
from melanoma_utils.pipeline.feeds import load_image_array
from melanoma_utils.pipeline.transforms import adjust_hsb, ben_graham, from_luv, shades_of_gray, to_grayscale, to_luv
from melanoma_utils.reports import benchmark, plots
from melanoma_utils.reports.reporting import open_study, package_versions

report, df = open_study(report_dir, synthetic, seed, images_csv, images_dir)
picked = data.sample_per_class(df, n_per_class, seed)
images = load_image_array(list(picked["image_path"]), display_size)
display(Markdown(f"{dataset_label}: {len(df):,} images; showing {len(picked)} lesions "
                 f"({(picked['target'] == 0).sum()} benign, {(picked['target'] == 1).sum()} malignant) at {display_size} px."))

# %% [markdown]
# ## Fig 12 · Each transform on benign and malignant lesions
# The paper's Fig 12 shows five transforms: black & white, Ben Graham without and with the Gaussian-blur subtraction,
# HSB and LUV. Its "Ben Graham without blur" is the greyscale step alone, pixel for pixel the black & white image, so
# it is drawn once (one column, both names). Columns: original; black & white (= Ben Graham without blur); Ben Graham
# greyscale with the blur subtraction (σ = side/30); HSB (hue +20°, saturation ×1.5, brightness ×1.1); LUV channels
# shown as RGB — the paper's — then ours: Ben Graham in colour; the LUV → RGB round trip; Shades-of-Gray colour
# constancy.

# %%
columns = {
    "original": lambda im: im,
    "paper: black & white\n(= Ben Graham, no blur)": to_grayscale,
    "paper: Ben Graham\n(grey, blur subtracted)": ben_graham,
    "paper: HSB": lambda im: adjust_hsb(im, 20, 1.5, 1.1),
    "paper: LUV": to_luv,
    "ours: Ben Graham,\ncolour": lambda im: ben_graham(im, grayscale=False),
    "ours: LUV → RGB": lambda im: from_luv(to_luv(im)),
    "ours: shades of gray": shades_of_gray,
}
assert (ben_graham(images[0], blur=False) == to_grayscale(images[0])).all()  # why "no blur" is not drawn twice
cells, titles = [], []
for im, t in zip(images, picked["target"]):
    for name, fn in columns.items():
        cells.append(fn(im))
        titles.append(f"{name}\n({'malignant' if t else 'benign'})" if name == "original" else name)
fig = plots.image_grid(cells, titles, ncols=len(columns), title="Fig 12 · Image transforms", tag=report.tag, size=2.1)
report.figure(fig, "fig12_transforms")

# %% [markdown]
# ## Fig 13 · Random augmentations of one lesion (training only; identity at inference)

# %%
import numpy as np

aug = build_augmenter(display_size, seed=seed)
lesion = images[-1].astype("float32")  # a malignant lesion
views = [images[-1]] + [np.asarray(aug(lesion, training=True)).astype("uint8") for _ in range(n_augmentations)]
assert np.array_equal(np.asarray(aug(lesion, training=False)), lesion)  # inactive at inference
fig = plots.image_grid(views, ["original"] + [f"augmentation {i + 1}" for i in range(n_augmentations)], ncols=6,
                       title="Fig 13 · Augmentations: crop, colour jitter, greyscale, flips, 90° rotations", tag=report.tag)
report.figure(fig, "fig13_augmentations")
display(Markdown(f"Augmentation settings: `{aug.config.to_dict()}`"))

# %% [markdown]
# ## Cost per image at this size (this machine, single thread per call)

# %%
timing = df.sample(n=min(timing_images, len(df)), random_state=seed)
costs = benchmark.transform_costs(list(load_image_array(list(timing["image_path"]), display_size)))
report.table(costs, "table_transform_cost_ms")
display(Markdown(f"Per image at {display_size}×{display_size} on this machine (median of 3 passes over {len(timing)} images): "
                 + ", ".join(f"{t.replace('_', ' ')} {ms:.2f} ms" for t, ms in zip(costs.index, costs['ms_per_image']))
                 + ". Each is applied once per image before the cache, so none of them limits training."))
costs.round(3)

# %% [markdown]
# ## Environment

# %%
package_versions()
