"""Training spread over devices, on CPU: tf.distribute MirroredStrategy over two logical CPUs, Keras'
DataParallel on JAX over two forced host devices, and MultiWorkerMirroredStrategy with two local workers.
Each runs in a subprocess (devices must be configured before TensorFlow/JAX start)."""

from __future__ import annotations

import json
import os
import socket
import subprocess
import sys
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

pytestmark = pytest.mark.slow

SCRIPT = r'''
import json, os, sys
if os.environ.get("KERAS_BACKEND", "tensorflow") == "tensorflow":
    from melanoma_utils.runs.training import make_distribution
    if "multiworker" in sys.argv[2]:
        make_distribution("multiworker")  # before TensorFlow runs anything
    else:
        import tensorflow as tf
        cpu = tf.config.list_physical_devices("CPU")[0]
        tf.config.set_logical_device_configuration(cpu, [tf.config.LogicalDeviceConfiguration()] * 2)
import pandas as pd
from melanoma_utils.runs.run import TrainConfig
from melanoma_utils.runs.training import train_run
df = pd.read_pickle(sys.argv[1])
for strategy in sys.argv[2].split(","):
    run = train_run(df, TrainConfig(kind="meta", strategy=strategy, epochs=8, batch_size=16, learning_rate=1e-2,
                                    patience=8, verbose=0, seed=0), os.path.join(sys.argv[3], strategy))
    print("RESULT " + json.dumps({"strategy": strategy, "auc": run.metrics["validation"]["roc_auc"]["estimate"],
                                  "distribution": run.config["distribution"], "run_dir": str(run.run_dir)}), flush=True)
'''


def _table(path: Path) -> Path:
    """Age and sex both carry signal (the model must weigh them), 600 rows, 300 patients."""
    rng = np.random.default_rng(0)
    n = 600
    age = rng.normal(50, 12, n)
    male = rng.random(n) < 0.5
    y = (rng.random(n) < 1 / (1 + np.exp(-((age - 55) / 8 + 1.2 * male - 0.6)))).astype(int)
    pd.DataFrame({"image_name": [f"i{i}" for i in range(n)], "patient_id": [f"p{i // 2}" for i in range(n)],
                  "sex": np.where(male, "male", "female"), "age": age, "site": "torso", "diagnosis": "nevus",
                  "target": y, "tfrecord": pd.NA, "width": np.nan, "height": np.nan, "image_path": ""}).to_pickle(path)
    return path


def _run(tmp_path: Path, strategies: str, env: dict[str, str], timeout: int = 240) -> dict[str, dict]:
    script = tmp_path / "worker.py"
    script.write_text(SCRIPT)
    out = subprocess.run([sys.executable, str(script), str(_table(tmp_path / "df.pkl")), strategies, str(tmp_path / "runs")],
                         env={**os.environ, "PYTHONPATH": str(Path(__file__).parents[1]), **env}, capture_output=True,
                         text=True, timeout=timeout)
    results = {r["strategy"]: r for r in (json.loads(line[7:]) for line in out.stdout.splitlines() if line.startswith("RESULT "))}
    assert results, out.stderr[-3000:]
    return results


def test_mirrored_strategy_over_two_cpus_matches_one_device(tmp_path: Path) -> None:
    res = _run(tmp_path, "one,mirrored", {"KERAS_BACKEND": "tensorflow"})
    one, mirrored = res["one"], res["mirrored"]
    assert one["distribution"]["replicas"] == 1
    d = mirrored["distribution"]
    assert d["replicas"] == 2 and "CPU:1" in d["strategy"]  # really over both devices
    assert d["global_batch_size"] == 32 and d["learning_rate_scale"] == 2  # per-replica batch × replicas, recorded
    assert abs(one["auc"] - mirrored["auc"]) < 0.03 and one["auc"] > 0.7


def test_jax_data_parallel_over_two_host_devices(tmp_path: Path) -> None:
    pytest.importorskip("jax")
    res = _run(tmp_path, "mirrored", {"KERAS_BACKEND": "jax", "XLA_FLAGS": "--xla_force_host_platform_device_count=2"})
    d = res["mirrored"]["distribution"]
    assert d["replicas"] == 2 and d["strategy"].startswith("jax DataParallel over 2 cpu")
    assert res["mirrored"]["auc"] > 0.7


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _cluster(n: int) -> list[dict[str, str]]:
    """``TF_CONFIG`` environments for ``n`` local workers on free ports (worker 0 is the chief)."""
    ports = [_free_port() for _ in range(n)]
    return [{**os.environ, "PYTHONPATH": str(Path(__file__).parents[1]), "KERAS_BACKEND": "tensorflow",
             "TF_CPP_MIN_LOG_LEVEL": "2",
             "TF_CONFIG": json.dumps({"cluster": {"worker": [f"127.0.0.1:{p}" for p in ports]},
                                      "task": {"type": "worker", "index": i}})} for i in range(n)]


def _wait_all(procs: list[subprocess.Popen], timeout: int = 240) -> list[str]:
    """Each worker's stdout; a failed (or hung) worker fails the test with its stderr."""
    outs = []
    try:
        for p in procs:
            out, err = p.communicate(timeout=timeout)
            assert p.returncode == 0, err[-3000:]
            outs.append(out)
    finally:
        for p in procs:
            p.kill()
    return outs


def test_multiworker_two_local_workers_train_from_shards_and_only_the_chief_writes(tmp_path: Path) -> None:
    """The CLI on a shard folder with ``--strategy multiworker``: two worker processes train one epoch in step
    (TF_CONFIG on 127.0.0.1); the chief writes ``--out``, the other worker leaves nothing behind."""
    from conftest import write_dataset
    from melanoma_utils.data.isic import load_dataset
    from melanoma_utils.data.shards import write_shards
    from melanoma_utils.runs.run import Run

    df = load_dataset(write_dataset(tmp_path / "jpeg", n=48, size=32)).frame
    write_shards(df, tmp_path / "shards", n_shards=4)
    out = tmp_path / "run"
    cmd = [sys.executable, "-m", "melanoma_utils", "train", "--shards", str(tmp_path / "shards"), "--out", str(out),
           "--kind", "fusion", "--backbone", "cnn", "--image-size", "32", "--epochs", "1", "--batch-size", "8",
           "--no-augment", "--verbose", "0", "--seed", "0", "--strategy", "multiworker"]
    scratch = tmp_path / "tmp"  # the workers' temporary folder
    scratch.mkdir()
    outs = _wait_all([subprocess.Popen(cmd, env={**env, "TMPDIR": str(scratch)}, stdout=subprocess.PIPE,
                                       stderr=subprocess.PIPE, text=True) for env in _cluster(2)])
    assert f"run folder: {out}" in outs[0]
    assert f"worker: trained in step with the chief, which writes {out}" in outs[1]
    assert sorted(p.name for p in tmp_path.iterdir()) == ["jpeg", "run", "shards", "tmp"]  # no second run, no lock
    assert not list(scratch.glob("melanoma-worker-*"))  # the other worker's copy of the run is gone
    config = json.loads((out / "config.json").read_text())
    d = config["distribution"]
    assert d["strategy"] == "MultiWorkerMirroredStrategy (2 replicas)" and d["replicas"] == 2
    assert d["global_batch_size"] == 16 and d["learning_rate_scale"] == 2 and config["epochs_run"] == 1
    p = Run.load(out).predict(df)
    assert len(p) == len(df) and np.isfinite(p).all()


def test_multiworker_matches_one_device(tmp_path: Path) -> None:
    """Data parallel over two worker processes learns what one device learns (same data, seed, global batch
    scaled): validation AUC within 0.03. The workers' weights are all-reduced, but BatchNorm's moving statistics
    are each worker's own (as in any data-parallel training without SyncBatchNorm): their AUCs on the 120
    validation rows agree within 0.04 (0.031 apart with this data's prevalence-keeping validation split)."""
    script = tmp_path / "worker.py"
    script.write_text(SCRIPT)
    table = _table(tmp_path / "df.pkl")
    procs = [subprocess.Popen([sys.executable, str(script), str(table), strategies, str(tmp_path / "runs")], env=env,
                              stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
             for env, strategies in zip(_cluster(2), ["multiworker,one", "multiworker"])]
    chief, other = ({r["strategy"]: r for r in (json.loads(line[7:]) for line in out.splitlines() if line.startswith("RESULT "))}
                    for out in _wait_all(procs))
    assert chief["multiworker"]["run_dir"] == str(tmp_path / "runs" / "multiworker") and other["multiworker"]["run_dir"] == "None"
    assert other["multiworker"]["auc"] == pytest.approx(chief["multiworker"]["auc"], abs=0.04)
    assert abs(chief["multiworker"]["auc"] - chief["one"]["auc"]) < 0.03 and chief["one"]["auc"] > 0.7


def test_multiworker_without_tf_config_and_tpu_without_a_tpu_are_clear_errors(tiny_csv: Path, tmp_path: Path,
                                                                              capsys, monkeypatch) -> None:
    from melanoma_utils import cli

    monkeypatch.delenv("TF_CONFIG", raising=False)
    args = ["train", "--metadata", str(tiny_csv), "--out", str(tmp_path / "r"), "--kind", "meta", "--epochs", "1"]
    assert cli.main(args + ["--strategy", "multiworker"]) == 2
    assert "needs TF_CONFIG" in capsys.readouterr().err and not (tmp_path / "r").exists()
    monkeypatch.delenv("TPU_NAME", raising=False)
    assert cli.main(args + ["--strategy", "tpu"]) == 2
    assert "--strategy tpu: no TPU found" in capsys.readouterr().err
