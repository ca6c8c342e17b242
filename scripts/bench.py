"""Throughput benchmark (`make bench`): input pipeline alone, training step and prediction, per model and
image size, on the current machine and Keras backend. Results go to reports/bench/<tag>.json and .md
with a description of the machine. A script, not a test: timings are never asserted.

    python scripts/bench.py                                  # CPU defaults: 96 px, the study's CNN
    KERAS_BACKEND=jax python scripts/bench.py --sizes 256 --batch-sizes 32 256 --precision bf16
"""
from __future__ import annotations

import argparse
import json
import os
import platform
import resource
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))


def machine() -> dict:
    info = {"python": platform.python_version(), "platform": platform.platform(), "cpus": os.cpu_count()}
    try:
        out = subprocess.run(["nvidia-smi", "--query-gpu=name,memory.total", "--format=csv,noheader"],
                             capture_output=True, text=True, timeout=20)
        if out.returncode == 0 and out.stdout.strip():
            info["gpu"] = out.stdout.strip()
    except (OSError, subprocess.TimeoutExpired):
        pass
    try:
        with open("/proc/cpuinfo") as fh:
            info["cpu"] = next((l.split(":", 1)[1].strip() for l in fh if l.startswith("model name")), "")
    except OSError:
        pass
    return info


def write(results: dict, out: Path) -> None:
    """Write JSON and a Markdown table after every step (a killed run keeps what it measured)."""
    out.parent.mkdir(parents=True, exist_ok=True)
    tmp = out.with_suffix(".json.tmp")
    tmp.write_text(json.dumps(results, indent=2))
    os.replace(tmp, out.with_suffix(".json"))
    lines = [f"# Benchmark: {results['tag']}", "", f"Machine: `{json.dumps(results['machine'])}`",
             f"Keras {results['keras']} on {results['backend']}, precision {results['precision']}", "",
             "| what | model | size | batch | images/s | notes |", "|---|---|---|---|---|---|"]
    for r in results["rows"]:
        lines.append(f"| {r['what']} | {r.get('model', '')} | {r.get('size', '')} | {r.get('batch', '')} | "
                     f"{r['images_per_second']:.0f} | {r.get('notes', '')} |")
    lines += ["", f"Peak host memory: {results.get('peak_host_mb', 0):.0f} MB"]
    if results.get("peak_device_mb"):
        lines.append(f"Peak device memory: {results['peak_device_mb']:.0f} MB")
    tmp = out.with_suffix(".md.tmp")
    tmp.write_text("\n".join(lines) + "\n")
    os.replace(tmp, out.with_suffix(".md"))


def main() -> int:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--sizes", type=int, nargs="+", default=[96])
    p.add_argument("--batch-sizes", type=int, nargs="+", default=[32])
    p.add_argument("--backbones", nargs="+", default=["cnn"], help="cnn (the study's branch) or keras.applications names")
    p.add_argument("--n-images", type=int, default=512, help="images per timed pass")
    p.add_argument("--steps", type=int, default=0, help="timed training steps (default: one pass over n-images)")
    p.add_argument("--precision", choices=("fp32", "bf16", "fp16"), default="fp32")
    p.add_argument("--steps-per-execution", type=int, default=1)
    p.add_argument("--skip-pipeline", action="store_true")
    p.add_argument("--epochs", type=int, default=1, help="timed passes over the images")
    p.add_argument("--uint8-input", action="store_true", help="feed raw uint8 pixels (cast on the device)")
    p.add_argument("--tag", default="", help="output name (default: <host kind>-<backend>)")
    p.add_argument("--out-dir", type=Path, default=ROOT / "reports" / "bench")
    args = p.parse_args()

    import keras
    import numpy as np

    from melanoma_utils.models.fusion import build_model

    backend = keras.backend.backend()
    policy = {"fp32": "float32", "bf16": "mixed_bfloat16", "fp16": "mixed_float16"}[args.precision]
    keras.mixed_precision.set_global_policy(policy)
    info = machine()
    tag = args.tag or f"{'gpu' if 'gpu' in info else 'cpu'}-{backend}"
    results = {"tag": tag, "machine": info, "backend": backend, "keras": keras.__version__, "precision": policy,
               "rows": []}
    out = args.out_dir / tag
    rng = np.random.default_rng(0)

    def record(row: dict) -> None:
        results["rows"].append(row)
        results["peak_host_mb"] = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
        if backend == "jax":
            import jax

            stats = jax.devices()[0].memory_stats() or {}
            if "peak_bytes_in_use" in stats:
                results["peak_device_mb"] = stats["peak_bytes_in_use"] / 2**20
        write(results, out)
        print(json.dumps(row), flush=True)

    for size in args.sizes:
        if not args.skip_pipeline:
            from melanoma_utils.data.demo import make_demo_dataset
            from melanoma_utils.pipeline.feeds import load_image_array

            with tempfile.TemporaryDirectory() as tmp:
                csv = make_demo_dataset(Path(tmp) / "synthetic", n_images=min(args.n_images, 512), image_size=max(size, 256))
                import pandas as pd

                paths = [str(csv.parent / "train" / f"{n}.jpg") for n in pd.read_csv(csv)["image_name"]]
                t = time.perf_counter()
                arr = load_image_array(paths, size, workers=os.cpu_count() or 2)
                record({"what": "decode + resize (OpenCV threads)", "size": size,
                        "images_per_second": len(paths) / (time.perf_counter() - t), "notes": f"{len(paths)} JPEGs"})
                try:
                    from melanoma_utils.pipeline.augment import build_augmenter
                    from melanoma_utils.pipeline.feeds import make_dataset
                    from melanoma_utils.reports.benchmark import dataset_throughput

                    ds = make_dataset(paths, np.zeros((len(paths), 12), np.float32), np.zeros(len(paths)), image_size=size,
                                      training=True, augmenter=build_augmenter(size), batch_size=args.batch_sizes[0])
                    cold, warm = dataset_throughput(ds, epochs=2)
                    record({"what": "tf.data pipeline, cold (decode, resize, augment)", "size": size, "images_per_second": cold})
                    record({"what": "tf.data pipeline, cached (augment only)", "size": size, "images_per_second": warm})
                except ImportError:
                    from melanoma_utils.pipeline.feeds import make_array_sequence

                    seq = make_array_sequence(arr, np.zeros((len(arr), 12), np.float32), np.zeros(len(arr)),
                                              batch_size=args.batch_sizes[0])
                    t = time.perf_counter()
                    n = sum(len(seq[i][1]) for i in range(len(seq)))
                    record({"what": "PyDataset over uint8 cache (no augmentation)", "size": size,
                            "images_per_second": n / (time.perf_counter() - t)})
        for backbone in args.backbones:
            for batch in args.batch_sizes:
                model = build_model(image_size=size, n_meta=12, kind="fusion", backbone=None if backbone == "cnn" else backbone,
                                    image_dtype="uint8" if args.uint8_input else "float32")
                model.compile(optimizer=keras.optimizers.Adam(1e-4), loss="binary_crossentropy",
                              steps_per_execution=args.steps_per_execution)
                n = args.n_images if not args.steps else args.steps * batch
                pixels = rng.integers(0, 256, (n, size, size, 3), dtype=np.uint8)
                x = {"image": pixels if args.uint8_input else pixels.astype(np.float32),
                     "meta": rng.normal(size=(n, 12)).astype(np.float32)}
                y = (rng.random(n) < 0.2).astype(np.float32)
                t = time.perf_counter()
                model.fit(x, y, batch_size=batch, epochs=1, verbose=0, shuffle=False)  # compile + warm-up
                compile_s = time.perf_counter() - t
                t = time.perf_counter()
                model.fit(x, y, batch_size=batch, epochs=args.epochs, verbose=0, shuffle=False)
                rate = n * args.epochs / (time.perf_counter() - t)
                record({"what": "training step (host memory → device)", "model": backbone, "size": size, "batch": batch,
                        "images_per_second": rate, "notes": f"first pass incl. compile {compile_s:.0f} s; {model.count_params():,} params; "
                                 f"{'uint8' if args.uint8_input else 'float32'} input"})
                model.predict(x, batch_size=max(batch, 128), verbose=0)
                t = time.perf_counter()
                model.predict(x, batch_size=max(batch, 128), verbose=0)
                record({"what": "prediction", "model": backbone, "size": size, "batch": max(batch, 128),
                        "images_per_second": n / (time.perf_counter() - t)})
                del model
                keras.backend.clear_session()
    pipe = [r["images_per_second"] for r in results["rows"] if "cached" in r["what"] or "PyDataset" in r["what"]]
    train = [r["images_per_second"] for r in results["rows"] if r["what"].startswith("training")]
    if pipe and train:
        results["pipeline_to_model_ratio"] = min(pipe) / max(train)
        write(results, out)
        print(f"pipeline / model ratio: {results['pipeline_to_model_ratio']:.1f}")
    print(f"results: {out.with_suffix('.md')}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
