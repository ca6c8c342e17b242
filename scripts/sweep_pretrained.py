"""Choose the pretrained image branch's defaults on VALIDATION AUC only (one patient-grouped split).

Trains the fusion (clinical) model with the frozen EfficientNet-Lite0 branch under a few settings, for each
seed on that seed's patient-grouped training/validation split, and writes
``reports/<dataset>/sweep_pretrained.csv`` (validation ROC AUC with and without 8-view TTA, and wall time;
embeddings are cached, so only a setting's first run pays for them). No test data is touched.

    .venv/bin/python scripts/sweep_pretrained.py --metadata ../shared/data/isic2020-256/train.csv
"""
from __future__ import annotations

import argparse
import time
from dataclasses import asdict
from pathlib import Path

import pandas as pd

from melanoma_utils.data.isic import load_dataset
from melanoma_utils.evaluation.metrics import roc_auc
from melanoma_utils.runs.run import Run, TrainConfig
from melanoma_utils.runs.training import train_run

SETTINGS: dict[str, dict] = {
    "128 px, head lr 1e-3": {},
    "128 px, head lr 3e-4": {"head_learning_rate": 3e-4},
    "128 px, 1 view (no cached rotations)": {"embedding_views": 1},
    "128 px, shades-of-gray colour constancy": {"preprocess": "shades_of_gray"},
    "160 px": {"image_size": 160},
    "224 px": {"image_size": 224},
    "128 px, fine-tune top, 2 epochs": {"finetune": "top", "finetune_epochs": 2},
}


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__)
    ap.add_argument("--metadata", required=True)
    ap.add_argument("--out", default="reports/isic2020/sweep_pretrained.csv")
    ap.add_argument("--runs", default="/tmp/sweep_runs")
    ap.add_argument("--only", nargs="*")
    ap.add_argument("--seeds", nargs="+", type=int, default=[0])
    args = ap.parse_args()
    df = load_dataset(args.metadata).frame
    base = TrainConfig(kind="fusion", features="clinical", backbone="efficientnetlite0", backbone_weights="imagenet",
                       image_size=128, seed=0, verbose=0)
    out_csv = Path(args.out)
    rows = pd.read_csv(out_csv).to_dict("records") if out_csv.is_file() else []
    done = {(r["setting"], r.get("seed", 0)) for r in rows}
    for seed in args.seeds:
        for name, overrides in SETTINGS.items():
            if (args.only and name not in args.only) or (name, seed) in done:
                continue
            cfg = TrainConfig.from_dict({**asdict(base), **overrides, "seed": seed})
            out = Path(args.runs) / ("".join(c if c.isalnum() else "_" for c in name) + f"_seed{seed}")
            t0 = time.perf_counter()
            run = train_run(df, cfg, out, overwrite=True)
            seconds = time.perf_counter() - t0
            val = pd.read_csv(out / "val_predictions.csv")
            loaded = Run.load(out)
            vdf = df.set_index("image_name").loc[val["image_name"]].reset_index()
            p_tta = loaded.predict(vdf, tta=8)
            rows.append({"setting": name, "seed": seed, "val_roc_auc": roc_auc(val["target"], val["probability"]),
                         "val_roc_auc_tta8": roc_auc(vdf["target"], p_tta), "train_seconds": seconds,
                         "epochs_run": run.config["epochs_run"], "embedding_seconds": run.config["stages"]["embeddings"]["seconds"]})
            print(rows[-1], flush=True)
            pd.DataFrame(rows).to_csv(args.out, index=False)


if __name__ == "__main__":
    main()
