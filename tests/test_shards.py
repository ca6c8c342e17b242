"""TFRecord shards: patient isolation and balance, the CSV+JPEG -> shards -> table round trip (rows, labels,
pixels), resume, and streaming."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from conftest import write_dataset
from melanoma_utils import cli
from melanoma_utils.data import load_dataset
from melanoma_utils.shards import assign_shards, shard_dataset, write_shards


def test_assign_shards_isolates_patients_and_balances_melanoma_and_size() -> None:
    rng = np.random.default_rng(0)
    rows = []
    for p in range(60):
        n = int(rng.integers(1, 9))
        sick = p % 5 == 0  # 12 patients with one melanoma each
        rows += [{"patient_id": f"P{p}", "target": int(sick and i == 0)} for i in range(n)]
    df = pd.DataFrame(rows)
    shard = assign_shards(df, 4, seed=0)
    assert df.assign(s=shard).groupby("patient_id")["s"].nunique().max() == 1
    per = df.assign(s=shard).groupby("s").agg(n=("target", "size"), mal=("target", "sum"))
    assert per["mal"].tolist() == [3, 3, 3, 3]  # 12 melanomas over 4 shards
    assert per["n"].max() - per["n"].min() <= 8  # patients' sizes spread (a patient has up to 8 images)
    with pytest.raises(ValueError, match="exactly one shard"):
        assign_shards(df.head(3), 10)


def test_shards_round_trip_rows_labels_and_pixels(tmp_path: Path) -> None:
    csv = write_dataset(tmp_path / "d", n=30)
    original = load_dataset(csv).frame
    manifest = write_shards(original, tmp_path / "sh", n_shards=3, seed=1)
    m = json.loads(manifest.read_text())
    assert [s["n"] for s in m["shards"]] and sum(s["n"] for s in m["shards"]) == 30
    assert sum(s["n_malignant"] for s in m["shards"]) == int(original["target"].sum())
    back = load_dataset(tmp_path / "sh").frame  # a shard folder wherever a CSV + images go
    assert sorted(back["image_name"]) == sorted(original["image_name"])
    joined = original.merge(back, on="image_name", suffixes=("", "_shard"))
    for col in ("patient_id", "sex", "age", "site", "diagnosis", "target", "width", "height"):
        a, b = joined[col], joined[f"{col}_shard"]
        assert ((a == b) | (a.isna() & b.isna())).all(), col
    assert back.groupby("patient_id")["tfrecord"].nunique().max() == 1  # the shard index is the tfrecord column
    for a, b in zip(joined["image_path"], joined["image_path_shard"]):  # the JPEG bytes, hence the pixels
        assert Path(a).read_bytes() == Path(b).read_bytes()
    # streaming straight from the shards: every image once, decoded to the asked size
    n, labels = 0, []
    for x, y in shard_dataset(tmp_path / "sh", image_size=16, batch_size=8):
        assert x["image"].shape[1:] == (16, 16, 3) and x["image"].dtype.name == "uint8"
        n += len(y)
        labels += y.numpy().tolist()
    assert n == 30 and sum(labels) == original["target"].sum()
    only0 = sum(len(y) for _, y in shard_dataset(tmp_path / "sh", 16, 8, shards=[0]))
    assert only0 == m["shards"][0]["n"]


def test_shards_resume_and_refuse_another_plan(tmp_path: Path, capsys) -> None:
    csv = write_dataset(tmp_path / "d", n=24)
    out = tmp_path / "sh"
    assert cli.main(["shard", "--metadata", str(csv), "--out", str(out), "--shards", "3", "--size", "24"]) == 0
    m = json.loads((out / "manifest.json").read_text())
    files = {s["file"]: (out / s["file"]).stat().st_mtime_ns for s in m["shards"]}
    damaged = out / m["shards"][1]["file"]
    damaged.write_bytes(b"junk")  # a shard damaged after writing is rewritten; the others are kept
    assert cli.main(["shard", "--metadata", str(csv), "--out", str(out), "--shards", "3", "--size", "24"]) == 0
    m2 = json.loads((out / "manifest.json").read_text())
    assert m2 == m
    for s in m["shards"]:
        if s["file"] != damaged.name:
            assert (out / s["file"]).stat().st_mtime_ns == files[s["file"]]
    assert cli.main(["shard", "--metadata", str(csv), "--out", str(out), "--shards", "4"]) == 2
    assert "another plan" in capsys.readouterr().err
    # --size re-encodes: the unpacked images are 24 x 24
    import cv2

    back = load_dataset(out).frame
    assert cv2.imread(back["image_path"].iloc[0]).shape[:2] == (24, 24)
