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
from melanoma_utils.data.isic import load_dataset
from melanoma_utils.data.shards import assign_shards, write_shards


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


def _rewrite(path: Path, records: list[bytes]) -> None:
    import tensorflow as tf

    with tf.io.TFRecordWriter(str(path)) as w:
        for r in records:
            w.write(r)


def _set_manifest(folder: Path, **changes) -> None:
    m = json.loads((folder / "manifest.json").read_text())
    m["shards"][0].update(changes)
    (folder / "manifest.json").write_text(json.dumps(m))


def test_shards_are_verified_against_their_manifest(tmp_path: Path, capsys) -> None:
    """A shard cut at a record boundary (still a valid TFRecord), an edited count, a zeroed checksum and a cut record
    each stop reading with the shard's name and the fix, instead of training on fewer images."""
    import tensorflow as tf

    from melanoma_utils.atomic import file_digest
    from melanoma_utils.data.shards import ShardError, read_shard_table

    csv = write_dataset(tmp_path / "d", n=24)
    write_shards(load_dataset(csv).frame, tmp_path / "sh", n_shards=2, seed=0)
    m = json.loads((tmp_path / "sh" / "manifest.json").read_text())
    assert m["source"] == ""  or "/" not in m["source"]  # no absolute source path
    first = tmp_path / "sh" / m["shards"][0]["file"]
    assert len(read_shard_table(tmp_path / "sh")) == 24 and (tmp_path / "sh" / ".verified.json").is_file()
    recs = [r.numpy() for r in tf.data.TFRecordDataset(str(first))]
    _rewrite(first, recs[:-1])  # one record fewer, a valid file
    with pytest.raises(ShardError, match=rf"{first.name}: SHA-256 .* differs from manifest.json's .*re-run `shard`"):
        read_shard_table(tmp_path / "sh")
    _set_manifest(tmp_path / "sh", sha256=file_digest(first, "sha256"))  # even with a matching checksum: the count
    with pytest.raises(ShardError, match=rf"holds {len(recs) - 1} records, manifest.json lists {len(recs)}"):
        read_shard_table(tmp_path / "sh")
    _rewrite(first, recs)
    raw = first.read_bytes()
    first.write_bytes(raw[: len(raw) - 40])  # cut inside the last record
    _set_manifest(tmp_path / "sh", sha256=file_digest(first, "sha256"))
    with pytest.raises(ShardError, match="truncated or corrupt record"):
        read_shard_table(tmp_path / "sh")
    assert cli.main(["check", "--metadata", str(tmp_path / "sh")]) == 2
    assert f"{first.name}: truncated or corrupt record" in capsys.readouterr().err


def test_a_record_named_to_leave_its_folder_is_refused_and_nothing_is_written_outside(tmp_path: Path) -> None:
    import tensorflow as tf

    from melanoma_utils.atomic import file_digest
    from melanoma_utils.data.shards import ShardError, _example, unpack_images

    csv = write_dataset(tmp_path / "d", n=12)
    frame = load_dataset(csv).frame
    write_shards(frame, tmp_path / "sh", n_shards=1, seed=0)
    m = json.loads((tmp_path / "sh" / "manifest.json").read_text())
    shard = tmp_path / "sh" / m["shards"][0]["file"]
    row = frame.iloc[0].copy()
    row["image_name"] = "../../../escaped"
    recs = [r.numpy() for r in tf.data.TFRecordDataset(str(shard))]
    _rewrite(shard, recs + [_example(tf, (tmp_path / "d" / "train" / f"{frame.iloc[0]['image_name']}.jpg").read_bytes(), row)])
    _set_manifest(tmp_path / "sh", sha256=file_digest(shard, "sha256"), n=len(recs) + 1)
    with pytest.raises(ShardError, match=r"record 12 has image_name '\.\./\.\./\.\./escaped', which contains a path separator"):
        unpack_images(tmp_path / "sh")
    assert not list(tmp_path.rglob("escaped*")) and not (tmp_path.parent / "escaped.jpg").exists()
