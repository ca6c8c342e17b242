"""Exported formats against `predict` on real held-out patients: parity, ROC AUC, size and CPU latency per image.

    .venv/bin/python scripts/bench_export.py --run RUN --metadata ../shared/data/isic2020-256/train.csv \
        --folds RUNS/ablation/folds.csv --fold 0 --out reports/bench/export.json

Exports the run as a SavedModel, a float32 LiteRT model and a dynamic-range int8 LiteRT model (into a temporary
folder), scores the held-out rows with each and with `Run.predict_frame`, and writes the maximum absolute difference of
the calibrated probability per format, each format's ROC AUC (patient-bootstrap CI for predict's), the files' sizes and
the median latency per image (one image per call, this machine's CPU).
"""

from __future__ import annotations

import argparse
import json
import platform
import tempfile
import time
from pathlib import Path

import numpy as np


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--run", type=Path, required=True)
    ap.add_argument("--metadata", type=Path, required=True)
    ap.add_argument("--images", type=Path)
    ap.add_argument("--folds", type=Path, help="folds.csv of a cross-validation: score only --fold's patients")
    ap.add_argument("--fold", type=int, default=0)
    ap.add_argument("--n", type=int, default=0, help="at most this many rows (0: all)")
    ap.add_argument("--out", type=Path, required=True)
    ap.add_argument("--formats", nargs="+", default=["saved_model", "tflite", "tflite_int8", "onnx"],
                    help="formats to measure; the others keep their entries in an existing --out")
    args = ap.parse_args()

    import tensorflow as tf

    from melanoma_utils.data.isic import load_dataset
    from melanoma_utils.evaluation.metrics import bootstrap_ci, roc_auc
    from melanoma_utils.pipeline.feeds import crop_resize_tensor
    from melanoma_utils.runs.export import export_run, lite_fields
    from melanoma_utils.runs.run import Run
    from melanoma_utils.study.experiments import load_folds

    df = load_dataset(args.metadata, args.images, on_missing="drop").frame
    if args.folds:
        df = df[load_folds(args.folds, df) == args.fold].reset_index(drop=True)
    if args.n:
        df = df.sample(n=min(args.n, len(df)), random_state=0).reset_index(drop=True)
    run = Run.load(args.run)
    t0 = time.perf_counter()
    ref = run.predict_frame(df, impute_size=True)["probability"].to_numpy()
    predict_s = (time.perf_counter() - t0) / len(df)
    y, groups = df["target"].to_numpy(), df["patient_id"].to_numpy()
    size = run.train_config.image_size
    decoded = [tf.io.decode_image(tf.io.read_file(p), channels=3, expand_animations=False) for p in df["image_path"]]
    squares = np.stack([crop_resize_tensor(img, size).numpy() for img in decoded])
    fields = np.concatenate([lite_fields(None if a != a else a, s, t, w, h)
                             for a, s, t, w, h in zip(df["age"], df["sex"], df["site"], df["width"], df["height"])])
    est, lo, hi = bootstrap_ci(y, ref, groups, roc_auc, n_boot=1000)
    result = {"run": f"{args.run.parent.name}/{args.run.name}", "rows": len(df), "malignant": int(y.sum()), "machine": platform.platform(),
              "predict": {"roc_auc": est, "ci_low": lo, "ci_high": hi, "seconds_per_image": predict_s}}
    with tempfile.TemporaryDirectory() as tmp:
        for fmt in args.formats:
            out = export_run(args.run, Path(tmp) / fmt, fmt)
            times, probs = [], []
            if fmt == "saved_model":
                model = tf.saved_model.load(str(out / "saved_model"))
                files = list((out / "saved_model").rglob("*"))
                for img, r in zip(decoded, df.itertuples()):
                    t = time.perf_counter()
                    o = model.serve(img, tf.constant(np.float32(r.age)), tf.constant(str(r.sex)), tf.constant(str(r.site)),
                                    tf.constant(np.float32(r.width)), tf.constant(np.float32(r.height)))
                    probs.append(float(o["probability"]))
                    times.append(time.perf_counter() - t)
            elif fmt == "onnx":
                import onnxruntime

                files = [out / "model.onnx"]
                session = onnxruntime.InferenceSession(str(files[0]), providers=["CPUExecutionProvider"])
                for i in range(len(df)):
                    t = time.perf_counter()
                    o = session.run(["probability"], {"image": squares[i:i + 1], "fields": fields[i:i + 1]})
                    probs.append(float(o[0].reshape(-1)[0]))
                    times.append(time.perf_counter() - t)
            else:
                files = [out / "model.tflite"]
                runner = tf.lite.Interpreter(model_path=str(out / "model.tflite")).get_signature_runner("serve_lite")
                for i in range(len(df)):
                    t = time.perf_counter()
                    o = runner(image=squares[i:i + 1], fields=fields[i:i + 1])
                    probs.append(float(np.asarray(o["probability"]).reshape(-1)[0]))
                    times.append(time.perf_counter() - t)
            p = np.asarray(probs)
            result[fmt] = {"max_abs_difference": float(np.abs(p - ref).max()), "roc_auc": roc_auc(y, p),
                           "roc_auc_change": roc_auc(y, p) - est,
                           "megabytes": sum(f.stat().st_size for f in files if f.is_file()) / 2**20,
                           "median_seconds_per_image": float(np.median(times[1:] or times))}
            print(fmt, json.dumps(result[fmt]), flush=True)
    args.out.parent.mkdir(parents=True, exist_ok=True)
    if args.out.is_file():  # formats not measured this time keep their earlier entries
        result = {**json.loads(args.out.read_text()), **result}
    args.out.write_text(json.dumps(result, indent=2))
    print(f"written {args.out}")


if __name__ == "__main__":
    main()
