"""Shards vs loose JPEGs on the real subset: the same cross-validated AUC, and the read throughput of each.

    .venv/bin/python scripts/shards_vs_jpeg.py --metadata ../shared/data/isic2020-256/train.csv --out /tmp/shards

Writes 15 patient-isolated shards of the subset, cross-validates the default fusion model (EfficientNet-Lite0,
224 px, clinical metadata) with folds = shard index mod 5 once from the shards and once from the JPEGs (the
same folds), and times one pass of each input pipeline (decode + crop + resize to 224 px). Prints a Markdown
report and writes it to reports/bench/shards-vs-jpeg.md.
"""

from __future__ import annotations

import argparse
import platform
import time
from pathlib import Path

import numpy as np


def _stream_records(shard_dir: Path, image_size: int, batch_size: int):
    """The records decoded straight from the shards (for the read-rate comparison only: training reads files)."""
    import tensorflow as tf

    from melanoma_utils.data.shards import records
    from melanoma_utils.pipeline.feeds import crop_resize_tensor

    def load(r):
        return {"image": crop_resize_tensor(tf.io.decode_jpeg(r["image"], channels=3), image_size)}

    return records(shard_dir).map(load, num_parallel_calls=tf.data.AUTOTUNE).batch(batch_size).prefetch(tf.data.AUTOTUNE)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__)
    ap.add_argument("--metadata", required=True)
    ap.add_argument("--out", required=True, help="folder for the shards and the runs")
    ap.add_argument("--shards", type=int, default=15)
    ap.add_argument("--folds", type=int, default=5)
    ap.add_argument("--image-size", type=int, default=224)
    ap.add_argument("--report", default="reports/bench/shards-vs-jpeg.md")
    args = ap.parse_args()

    from melanoma_utils.atomic import write_text
    from melanoma_utils.data.imagefiles import drop_unreadable
    from melanoma_utils.data.isic import load_dataset
    from melanoma_utils.data.shards import write_shards
    from melanoma_utils.pipeline.feeds import make_dataset
    from melanoma_utils.runs.run import TrainConfig
    from melanoma_utils.study.experiments import cross_validate, summarise_cv
    from melanoma_utils.study.plan import FoldPlan
    from melanoma_utils.versions import package_versions

    out = Path(args.out)
    jpeg, _ = drop_unreadable(load_dataset(args.metadata).frame)
    t0 = time.perf_counter()
    write_shards(jpeg, out / "shards", args.shards, seed=0, source=args.metadata)
    t_write = time.perf_counter() - t0
    t0 = time.perf_counter()
    sharded = load_dataset(out / "shards").frame  # reads the records, unpacks the JPEGs once
    t_load = time.perf_counter() - t0
    jpeg = jpeg.assign(tfrecord=jpeg["image_name"].map(dict(zip(sharded["image_name"], sharded["tfrecord"]))))
    # the same row order on both sides, so that each fold's training part draws the same validation split
    jpeg = jpeg.sort_values("image_name", ignore_index=True)
    sharded = sharded.sort_values("image_name", ignore_index=True)

    rates = {}
    for name, ds in (("loose JPEG files (tf.data from paths)",
                      make_dataset(list(jpeg["image_path"]), np.zeros((len(jpeg), 1)), image_size=args.image_size,
                                   batch_size=64, cache=None)),
                     ("TFRecord shards (tf.data interleave)", _stream_records(out / "shards", args.image_size, 64))):
        t0 = time.perf_counter()
        n = 0
        for batch in ds:
            x = batch[0] if isinstance(batch, tuple) else batch
            n += int(x["image"].shape[0])
        rates[name] = n / (time.perf_counter() - t0)

    cfg = TrainConfig(backbone="efficientnetlite0", backbone_weights="imagenet", image_size=args.image_size, verbose=0)
    variant = {"fusion, clinical": {"kind": "fusion", "features": "clinical"}}
    results = {}
    for name, frame in (("JPEG", jpeg), ("shards", sharded)):
        per_fold, oof = cross_validate(frame, cfg, out / f"runs_{name}", variant, FoldPlan(n_splits=args.folds),
                                       folds_from="shards")
        results[name] = (per_fold, summarise_cv(per_fold, oof, n_boot=500).iloc[0])
    a, b = results["JPEG"][1], results["shards"][1]
    fold_diff = np.abs(results["JPEG"][0]["roc_auc"].to_numpy() - results["shards"][0]["roc_auc"].to_numpy()).max()
    v = package_versions()["version"].to_dict()
    lines = [
        "# Shards vs loose JPEGs (real 256 px subset)", "",
        f"Machine: {platform.node()}, {platform.processor() or platform.machine()}, TensorFlow {v.get('tensorflow') or v.get('tensorflow-cpu')}, "
        f"Keras {v.get('keras')}. Command: `.venv/bin/python scripts/shards_vs_jpeg.py --metadata {args.metadata} "
        f"--out {args.out}`.", "",
        f"- {len(jpeg):,} images written as {args.shards} shards in {t_write:.1f} s; read back (table + JPEGs "
        f"unpacked once) in {t_load:.1f} s.",
        f"- Cross-validated ROC AUC, fusion (clinical), EfficientNet-Lite0 at {args.image_size} px, folds = shard "
        f"index mod {args.folds}: from JPEGs {a.roc_auc_mean:.4f} ± {a.roc_auc_sd:.4f}, from shards "
        f"{b.roc_auc_mean:.4f} ± {b.roc_auc_sd:.4f} (largest per-fold difference {fold_diff:.4f}; rows in the same "
        "order on both sides, so each fold's validation split is the same).", "",
        "| input | images/s, one pass, decode + crop + resize to "
        f"{args.image_size} px, batch 64 |", "|---|---|",
        *[f"| {k} | {r:.0f} |" for k, r in rates.items()],
    ]
    text = "\n".join(lines) + "\n"
    print(text)
    write_text(args.report, text)


if __name__ == "__main__":
    main()
