"""Training throughput on 1 vs 2 replicas: tf.distribute MirroredStrategy over two logical CPU devices, and
MultiWorkerMirroredStrategy with two local worker processes.

    .venv/bin/python scripts/bench_replicas.py --metadata ../shared/data/isic2020-256/train.csv --out /tmp/replicas

Trains the study's CNN (image only, from scratch, end to end on decoded images) for a few epochs with
``--strategy one`` and ``--strategy mirrored`` in a fresh process with the CPU split into two logical devices,
then with ``--strategy multiworker`` in two processes (``TF_CONFIG`` on 127.0.0.1), and reports the training
images/s each run recorded (the chief's, for the two workers). On a CPU the replicas share the same cores, so this
checks the mechanics and the overhead, not a speed-up; on several GPUs or hosts each replica has its own device.
"""

from __future__ import annotations

import argparse
import json
import os
import socket
import subprocess
import sys
from pathlib import Path

WORKER = r"""
import json, sys
strategies = sys.argv[5].split(",")
if strategies == ["multiworker"]:
    from melanoma_utils.runs.training import make_distribution
    make_distribution("multiworker")  # before TensorFlow runs anything
else:
    import tensorflow as tf
    cpu = tf.config.list_physical_devices("CPU")[0]
    tf.config.set_logical_device_configuration(cpu, [tf.config.LogicalDeviceConfiguration()] * 2)
from melanoma_utils.data.isic import load_dataset
from melanoma_utils.runs.run import TrainConfig
from melanoma_utils.runs.training import train_run
df = load_dataset(sys.argv[1]).frame.sample(n=int(sys.argv[3]), random_state=0)
for strategy in strategies:
    cfg = TrainConfig(kind="image", backbone="cnn", image_size=64, epochs=int(sys.argv[4]), patience=99, batch_size=32, augment=False,
                      conv_filters=(16, 32, 64, 128), learning_rate=1e-3, strategy=strategy, verbose=0, cache="memory")
    run = train_run(df, cfg, f"{sys.argv[2]}/{strategy}", overwrite=True)
    c = run.config
    print("RESULT " + json.dumps({"strategy": strategy, "images_per_second": c["train_images_per_second"],
                                  "seconds": c["train_seconds"], "epochs": c["epochs_run"], **c["distribution"]}), flush=True)
"""


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _results(procs: list[subprocess.Popen]) -> list[dict]:
    outs = [p.communicate() for p in procs]
    for i, (p, (_, err)) in enumerate(zip(procs, outs)):
        if p.returncode != 0:
            print(f"process {i} failed:\n{err[-3000:]}", file=sys.stderr)
    if any(p.returncode != 0 for p in procs):
        sys.exit(1)
    return [json.loads(line[7:]) for line in outs[0][0].splitlines() if line.startswith("RESULT ")]


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__)
    ap.add_argument("--metadata", required=True)
    ap.add_argument("--out", required=True)
    ap.add_argument("--n-images", type=int, default=1000)
    ap.add_argument("--epochs", type=int, default=3)
    ap.add_argument("--report", default="reports/bench/replicas-cpu-2core.md")
    args = ap.parse_args()
    env = {**os.environ, "KERAS_BACKEND": "tensorflow", "PYTHONPATH": str(Path(__file__).resolve().parents[1]),
           "TF_CPP_MIN_LOG_LEVEL": "2"}
    cmd = [sys.executable, "-c", WORKER, args.metadata, args.out, str(args.n_images), str(args.epochs)]
    rows = _results([subprocess.Popen([*cmd, "one,mirrored"], env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                                      text=True)])
    workers = [f"127.0.0.1:{_free_port()}" for _ in range(2)]
    rows += _results([subprocess.Popen([*cmd, "multiworker"], stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
                                       env={**env, "TF_CONFIG": json.dumps({"cluster": {"worker": workers},
                                                                            "task": {"type": "worker", "index": i}})})
                      for i in range(2)])  # the chief's numbers (worker 0)
    if len(rows) != 3:
        sys.exit(f"expected 3 results, got {rows}")
    from melanoma_utils.atomic import write_text

    lines = ["# Training throughput, 1 vs 2 replicas (2 CPU cores)", "",
             f"Study CNN, image only, 64 px, {args.n_images} images ({int(args.n_images * 0.8)} train), "
             f"{args.epochs} epochs, batch 32 per replica. Mirrored: two logical CPU devices in one process; "
             "multi-worker: two local processes (`TF_CONFIG` on 127.0.0.1), the chief's numbers. All share the same "
             "two cores. Command: `.venv/bin/python scripts/bench_replicas.py "
             f"--metadata {args.metadata} --out {args.out}`.", "",
             "| strategy | replicas | global batch | training images/s (incl. validation) |", "|---|---|---|---|"]
    lines += [f"| {r['strategy']} | {r['replicas']} | {r['global_batch_size']} | {r['images_per_second']:.0f} |" for r in rows]
    text = "\n".join(lines) + "\n"
    print(text)
    write_text(args.report, text)


if __name__ == "__main__":
    main()
