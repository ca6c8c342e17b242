"""The run folder's lifecycle under kills and concurrency: resume, lock, atomic overwrite (subprocesses)."""
from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pandas as pd
import pytest

from conftest import write_dataset
from melanoma_utils import cli
from melanoma_utils.runs.runfolder import ResumeMismatch, RunLocked, lock_path, staging_path

pytestmark = pytest.mark.slow


@pytest.fixture(scope="module")
def data_csv(tmp_path_factory) -> Path:
    return write_dataset(tmp_path_factory.mktemp("life"), n=120, size=32)


def _train_cmd(csv: Path, out: Path, *extra: str) -> list[str]:
    return [sys.executable, "-m", "melanoma_utils", "train", "--metadata", str(csv), "--out", str(out), "--model", "image",
            "--backbone", "cnn", "--image-size", "32", "--epochs", "6", "--patience", "50", "--batch-size", "8", "--verbose", "0",
            "--seed", "0", *extra]  # with augmentation and dropout: the random streams a resume must replay


def _start(cmd: list[str]) -> subprocess.Popen:
    return subprocess.Popen(cmd, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
                            env={**os.environ, "TF_CPP_MIN_LOG_LEVEL": "3"})


def _wait_for(path: Path, proc: subprocess.Popen, timeout: float = 240) -> None:
    end = time.time() + timeout
    while not path.exists():
        assert proc.poll() is None, proc.communicate()[1][-2000:]
        assert time.time() < end, f"{path} never appeared"
        time.sleep(0.05)


def _kill_after_first_epoch(cmd: list[str], out: Path) -> None:
    proc = _start(cmd)
    _wait_for(staging_path(out) / "backup" / "main.npz", proc)
    proc.send_signal(signal.SIGKILL)
    proc.wait()


def test_killed_run_resumes_with_its_full_state(data_csv: Path, tmp_path: Path) -> None:
    out = tmp_path / "run"
    _kill_after_first_epoch(_train_cmd(data_csv, out), out)
    assert not out.exists() and staging_path(out).is_dir()  # nothing half-made at --out
    import numpy as np

    with np.load(staging_path(out) / "backup" / "main.npz") as z:
        saved = json.loads(str(z["meta"]))
    done_before = saved["epoch"]
    assert 1 <= done_before < 6
    # the state a resume puts back is the state at the kill epoch: weights, optimizer variables, counters
    from melanoma_utils.models.fusion import build_model
    from melanoma_utils.runs.compiling import compile_model as _compile
    from melanoma_utils.runs.resume import ResumeState
    from melanoma_utils.runs.run import TrainConfig

    model = build_model(TrainConfig(kind="image", backbone="cnn", image_size=32).model_spec(None))
    _compile(model, 1e-4)
    state = ResumeState(staging_path(out) / "backup" / "main.npz", patience=50, phase="main")
    assert state.restore(model) and state.initial_epoch == done_before
    with np.load(staging_path(out) / "backup" / "main.npz", allow_pickle=False) as z:
        for i, w in enumerate(model.get_weights()):
            np.testing.assert_array_equal(w, z[f"w{i}"])
        for i, v in enumerate(model.optimizer.variables):
            np.testing.assert_array_equal(np.asarray(v), z[f"o{i}"])
    assert int(np.asarray(model.optimizer.iterations)) > 0  # the step counter came back (Adam's bias correction)
    # the killed process's lock file is still there, but the operating system released its flock: the same command
    # simply resumes (no file to find and delete first)
    assert lock_path(out).is_file()
    res = subprocess.run(_train_cmd(data_csv, out), capture_output=True, text=True, timeout=600)
    assert res.returncode == 0, res.stderr[-2000:]
    assert f"resuming after epoch {done_before}" in res.stdout
    config = json.loads((out / "config.json").read_text())
    hist = pd.read_csv(out / "history.csv")
    assert hist["epoch"].tolist() == list(range(6)) and config["epochs_run"] == 6  # no row lost or repeated
    before = pd.DataFrame(saved["rows"])
    pd.testing.assert_frame_equal(hist.iloc[:done_before][before.columns].reset_index(drop=True), before,
                                  check_dtype=False)  # the epochs before the kill are kept as they were
    assert config["resumed_after_seconds"] == pytest.approx(saved["seconds"]) and config["train_seconds"] > saved["seconds"]
    assert not staging_path(out).exists() and not lock_path(out).exists()
    # faithful: an uninterrupted run of the same command gives the same history, epoch by epoch, before and after the
    # kill (each epoch's shuffle, augmentation and dropout come from (seed, epoch), not from the process's past)
    ref = tmp_path / "ref"
    assert subprocess.run(_train_cmd(data_csv, ref), capture_output=True, timeout=600).returncode == 0
    ref_hist = pd.read_csv(ref / "history.csv")
    assert len(ref_hist) == 6
    pd.testing.assert_frame_equal(hist[ref_hist.columns], ref_hist, check_exact=False, rtol=1e-4, atol=1e-5)
    a = json.loads((out / "metrics.json").read_text())["validation"]["roc_auc"]["estimate"]
    b = json.loads((ref / "metrics.json").read_text())["validation"]["roc_auc"]["estimate"]
    assert a == pytest.approx(b, abs=1e-4)


def cli_like_train(csv: Path, out: Path, **kw) -> None:
    from melanoma_utils.data.isic import load_dataset
    from melanoma_utils.runs.run import TrainConfig
    from melanoma_utils.runs.training import train_run

    cfg = dict(kind="image", backbone="cnn", image_size=32, epochs=6, patience=50, batch_size=8, verbose=0, augment=False, seed=0)
    cfg.update(kw.pop("cfg", {}))
    train_run(load_dataset(csv).frame, TrainConfig(**cfg), out, **kw)


def test_resume_with_another_configuration_is_refused(data_csv: Path, tmp_path: Path, capsys) -> None:
    out = tmp_path / "run"
    _kill_after_first_epoch(_train_cmd(data_csv, out), out)
    with pytest.raises(ResumeMismatch, match=r"backup holds an interrupted run .*image_size: 32 -> 40"):
        cli_like_train(data_csv, out, cfg={"image_size": 40})
    cli_like_train(data_csv, out, cfg={"image_size": 40, "epochs": 1}, restart=True)
    assert json.loads((out / "config.json").read_text())["train"]["image_size"] == 40


def test_second_training_into_the_same_folder_is_locked_out(data_csv: Path, tmp_path: Path) -> None:
    out = tmp_path / "run"
    proc = _start(_train_cmd(data_csv, out))
    try:
        _wait_for(lock_path(out), proc)
        with pytest.raises(RunLocked, match=rf"is locked by pid {proc.pid} on "):
            cli_like_train(data_csv, out)
        assert cli.main(["train", "--metadata", str(data_csv), "--out", str(out), "--model", "meta"]) == 2
    finally:
        proc.wait(timeout=600)
    assert proc.returncode == 0 and (out / "model.keras").is_file()


def test_overwrite_killed_midway_leaves_the_previous_run_intact(data_csv: Path, tmp_path: Path) -> None:
    out = tmp_path / "run"
    cli_like_train(data_csv, out, cfg={"epochs": 1})
    before = {p.name: p.read_bytes() for p in out.iterdir()}
    _kill_after_first_epoch(_train_cmd(data_csv, out, "--overwrite"), out)
    assert {p.name: p.read_bytes() for p in out.iterdir()} == before  # the old run, untouched
    lock_path(out).unlink()
    cli_like_train(data_csv, out, cfg={"epochs": 2}, overwrite=True, restart=True)
    assert len(pd.read_csv(out / "history.csv")) == 2  # replaced whole: no old rows appended


def test_a_lock_file_without_owner_details_names_itself_and_a_dead_holder_frees_it(tmp_path: Path) -> None:
    """A live holder that has not written its details yet (or an unreadable file) is still refused, with a message
    that says what the file is; once the holder is gone, the lock is taken at once."""
    import fcntl

    from melanoma_utils.runs.runfolder import run_lock

    out = tmp_path / "run"
    lock = lock_path(out)
    lock.write_text("")
    fd = os.open(lock, os.O_RDWR)
    fcntl.flock(fd, fcntl.LOCK_EX)  # someone holds it
    with pytest.raises(RunLocked, match=r"holds no owner details .* may be deleted"):
        with run_lock(out):
            pass
    os.close(fd)  # the holder dies
    with run_lock(out) as held:
        assert json.loads(held.read_text())["pid"] == os.getpid()
    assert not lock.exists()
