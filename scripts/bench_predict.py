"""Prediction throughput of a trained run folder (`predict`'s own code path: decode, resize, compiled batched
inference, optional TTA) on N rows cycled from a CSV. Writes reports/bench/predict-<label>.md. A script, not a
test: timings are never asserted.

    .venv/bin/python scripts/bench_predict.py --run RUN --metadata ../shared/data/isic2020-256/train.csv --n 10000
"""
from __future__ import annotations

import argparse
import os
import platform
import sys
import time
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))


def main() -> None:
    from melanoma_utils.atomic import write_text
    from melanoma_utils.data.isic import load_dataset
    from melanoma_utils.runs.run import Run

    ap = argparse.ArgumentParser(description=__doc__)
    ap.add_argument("--run", "--model", dest="model", required=True)
    ap.add_argument("--metadata", required=True)
    ap.add_argument("--n", type=int, default=10000)
    ap.add_argument("--tta", type=int, nargs="+", default=[1])
    ap.add_argument("--batch-size", type=int, default=64)
    ap.add_argument("--label", default="cpu-2core")
    args = ap.parse_args()
    run = Run.load(args.model)
    df = load_dataset(args.metadata).frame
    rows = df.iloc[np.arange(args.n) % len(df)].reset_index(drop=True)
    cfg = run.train_config
    lines = [f"# Prediction throughput ({args.label})", "",
             f"Run: `{args.model}` — {cfg.kind}, backbone {cfg.backbone or 'cnn'}, {cfg.image_size} px; "
             f"{args.n:,} rows cycled from `{args.metadata}`; batch {args.batch_size}; {os.cpu_count()} CPUs, "
             f"{platform.platform()}.", "", "| TTA views | seconds | images/s |", "|---|---|---|"]
    for tta in args.tta:
        t0 = time.perf_counter()
        out = run.predict_frame(rows, args.batch_size, tta=tta)
        sec = time.perf_counter() - t0
        assert out["probability"].notna().all()
        lines.append(f"| {tta} | {sec:.0f} | {args.n / sec:.0f} |")
        print(lines[-1], flush=True)
    path = ROOT / "reports" / "bench" / f"predict-{args.label}.md"
    write_text(path, "\n".join(lines) + "\n")
    print(f"wrote {path}")


if __name__ == "__main__":
    main()
