"""Trust no input, round 2: no command replaces what it did not make, decoders that cannot be bombed or confused by
a file's name, one line for every fault a disk or a user can cause."""

from __future__ import annotations

import errno
import json
import struct
from pathlib import Path

import cv2
import numpy as np
import pandas as pd
import pytest

from conftest import png_claiming
from melanoma_utils import cli
from melanoma_utils.atomic import MARKER, atomic_folder, folder_kind
from melanoma_utils.data.demo import make_demo_dataset
from melanoma_utils.data.imagefiles import attach_image_paths, check_image_file


def test_atomic_folder_replaces_only_its_own_folder(tmp_path: Path) -> None:
    out = tmp_path / "out"
    with atomic_folder(out, "export") as tmp:
        (tmp / "a.txt").write_text("1")
    assert (out / "a.txt").read_text() == "1" and folder_kind(out) == "export"
    with pytest.raises(FileExistsError, match="pass --overwrite"):
        with atomic_folder(out, "export") as tmp:
            pass
    with atomic_folder(out, "export", overwrite=True) as tmp:
        (tmp / "b.txt").write_text("2")
    assert sorted(p.name for p in out.iterdir()) == sorted([MARKER, "b.txt"])
    with pytest.raises(FileExistsError, match="not written by `demo-data`"):
        with atomic_folder(out, "demo-data", overwrite=True) as tmp:
            pass
    users = tmp_path / "mine"
    users.mkdir()
    (users / "notes.txt").write_text("mine")
    with pytest.raises(FileExistsError, match="never a user's folder"):
        with atomic_folder(users, "export", overwrite=True) as tmp:
            pass
    assert (users / "notes.txt").read_text() == "mine"
    with pytest.raises(RuntimeError):  # a failed build leaves nothing behind and the old folder intact
        with atomic_folder(out, "export", overwrite=True) as tmp:
            (tmp / "half.txt").write_text("x")
            raise RuntimeError("boom")
    assert (out / "b.txt").is_file() and not list(tmp_path.glob(".out.*"))


def test_demo_data_never_touches_a_users_folder_or_a_similar_name(tmp_path: Path, capsys) -> None:
    out = tmp_path / "D"
    bystander = tmp_path / "D.tmp"  # a user's folder with the name the old code used as its scratch space
    bystander.mkdir()
    (bystander / "keep.txt").write_text("keep")
    csv = make_demo_dataset(out, n_images=12, image_size=32)
    assert csv.is_file() and (bystander / "keep.txt").read_text() == "keep"
    users = tmp_path / "U"
    users.mkdir()
    (users / "train.txt").write_text("my document")
    assert cli.main(["demo-data", "--out", str(users), "--n-images", "12", "--image-size", "32", "--overwrite"]) == 2
    assert "never a user's folder" in capsys.readouterr().err and (users / "train.txt").read_text() == "my document"
    assert cli.main(["demo-data", "--out", str(out), "--n-images", "12", "--image-size", "32"]) == 0
    assert not (tmp_path / "D-ham10000").exists() and (out / "external-ham10000" / "HAM10000_metadata.csv").is_file()


def test_export_and_predict_refuse_to_write_over_a_run(tmp_path: Path) -> None:
    from melanoma_utils.cli.outputs import check_predictions_out
    from melanoma_utils.runs.export import check_export_out

    run = tmp_path / "run"
    run.mkdir()
    for name in ("model.keras", "config.json", "val_predictions.csv"):
        (run / name).write_text("x")
    with pytest.raises(FileExistsError, match="run folder"):
        check_export_out(run, run, overwrite=True)
    with pytest.raises(FileExistsError, match="run folder"):
        check_export_out(run, run / "export", overwrite=True)
    with pytest.raises(FileExistsError, match="run folder"):
        check_predictions_out(run / "val_predictions.csv", [])
    meta = tmp_path / "meta.csv"
    meta.write_text("image_name\n")
    with pytest.raises(FileExistsError, match="input of this command"):
        check_predictions_out(meta, [meta])


def _jpeg_claiming(path: Path, width: int, height: int) -> None:
    ok, buf = cv2.imencode(".jpg", np.zeros((8, 8, 3), np.uint8))
    data = bytearray(buf.tobytes())
    sof = data.find(b"\xff\xc0")
    data[sof + 5:sof + 9] = struct.pack(">HH", height, width)
    path.write_bytes(bytes(data))


def test_a_header_that_claims_a_huge_image_is_that_rows_error(tmp_path: Path) -> None:
    png = tmp_path / "bomb.png"
    png.write_bytes(png_claiming(20_000, 20_000))  # 400 MP: above Pillow's own bomb limit, which raises on open
    jpg = tmp_path / "bomb.jpg"
    _jpeg_claiming(jpg, 60_000, 60_000)
    for path in (png, jpg):
        reason = check_image_file(path)
        assert reason is not None and reason.startswith("image too large"), reason


def test_content_not_the_extension_decides_how_an_image_is_decoded(tmp_path: Path) -> None:
    from PIL import Image

    from melanoma_utils.pipeline.feeds import decode_image_tensor

    rgb = np.random.default_rng(0).integers(0, 255, (20, 30, 3), dtype=np.uint8)
    tiff_named_jpg, ppm_named_png, bmp_1bit = tmp_path / "t.jpg", tmp_path / "p.png", tmp_path / "b.bmp"
    Image.fromarray(rgb).save(tiff_named_jpg, format="TIFF")
    Image.fromarray(rgb).save(ppm_named_png, format="PPM")
    Image.fromarray(rgb[..., 0] > 128).save(bmp_1bit, format="BMP")
    for path in (tiff_named_jpg, ppm_named_png, bmp_1bit):
        assert check_image_file(path) is None
        img = decode_image_tensor(str(path)).numpy()
        assert img.shape == (20, 30, 3) and img.dtype == np.uint8
    np.testing.assert_array_equal(decode_image_tensor(str(tiff_named_jpg)).numpy(), rgb)


def test_upper_case_extensions_are_found(tmp_path: Path) -> None:
    cv2.imwrite(str(tmp_path / "IMG_0001.JPG"), np.zeros((8, 8, 3), np.uint8))
    paths = attach_image_paths(pd.DataFrame({"image_name": ["IMG_0001", "IMG_0002"]}), tmp_path)["image_path"]
    assert paths.iloc[0].endswith("IMG_0001.JPG") and Path(paths.iloc[0]).is_file()
    assert not Path(paths.iloc[1]).is_file()


def test_os_faults_and_interrupts_are_one_line(monkeypatch, capsys) -> None:
    from melanoma_utils.cli import app

    def full_disk(args):  # noqa: ANN001
        raise OSError(errno.ENOSPC, "No space left on device", "/data/run/model.keras")

    def interrupted(args):  # noqa: ANN001
        raise KeyboardInterrupt

    parser = app.build_parser

    def patched(handler):  # noqa: ANN001
        def build(only=None):  # noqa: ANN001,ANN202
            p = parser(only)
            p.set_defaults(handler=handler)
            for action in p._subparsers._group_actions:  # the sub-command's own default wins: patch every one
                for sub in action.choices.values():
                    sub.set_defaults(handler=handler)
            return p
        return build

    monkeypatch.setattr(app, "build_parser", patched(full_disk))
    assert app.main(["check", "--metadata", "."]) == 2
    err = capsys.readouterr().err.strip()
    assert err.count("\n") == 0 and "/data/run/model.keras" in err and "disk is full" in err
    monkeypatch.setattr(app, "build_parser", patched(interrupted))
    assert app.main(["check", "--metadata", "."]) == 130
    assert "interrupted" in capsys.readouterr().err


def test_damaged_run_and_ensemble_folders_are_named(tmp_path: Path) -> None:
    from melanoma_utils.runs.run import Run, RunDamaged

    run = tmp_path / "run"
    run.mkdir()
    for name in ("model.keras", "encoder.json"):
        (run / name).write_text("{}")
    (run / "config.json").write_text("{}")
    with pytest.raises(RunDamaged, match=r"config.json lacks 'train', 'threshold'"):
        Run.read_config(run)
    ens = tmp_path / "ens"
    ens.mkdir()
    (ens / "config.json").write_text(json.dumps({"train": {}, "threshold": 0.5}))
    (ens / "ensemble.json").write_text(json.dumps({"members": ["."]}))
    with pytest.raises(RunDamaged, match="names itself"):
        Run.load(ens)


def test_a_shard_folder_with_planted_links_writes_nothing_through_them(tmp_path: Path, capsys) -> None:
    from conftest import write_dataset
    from melanoma_utils.data.isic import load_dataset
    from melanoma_utils.data.shards import unpack_images, write_shards

    csv = write_dataset(tmp_path / "d", n=12)
    shards = tmp_path / "sh"
    write_shards(load_dataset(csv).frame, shards, n_shards=2, seed=0)
    elsewhere = tmp_path / "elsewhere"
    elsewhere.mkdir()
    (shards / ".unpacked").symlink_to(elsewhere, target_is_directory=True)
    with pytest.raises(ValueError, match="symbolic link"):
        unpack_images(shards)
    assert list(elsewhere.iterdir()) == []
    (shards / ".unpacked").unlink()
    (shards / ".unpacked").mkdir()
    victim = tmp_path / "victim.txt"
    victim.write_text("user's file")
    (shards / ".unpacked" / ".complete").symlink_to(victim)
    assert cli.main(["check", "--metadata", str(shards), "--no-decode"]) == 2
    assert "symbolic link" in capsys.readouterr().err and victim.read_text() == "user's file"


def _all_numbers(obj) -> list[float]:  # noqa: ANN001
    if isinstance(obj, dict):
        return [x for v in obj.values() for x in _all_numbers(v)]
    if isinstance(obj, list):
        return [x for v in obj for x in _all_numbers(v)]
    return [float(obj)] if isinstance(obj, (int, float)) and not isinstance(obj, bool) else []


def test_a_separable_sample_reports_not_estimable_instead_of_a_huge_interval() -> None:
    from melanoma_utils.atomic import json_safe
    from melanoma_utils.evaluation.clinical import validation_report
    from melanoma_utils.reports.validation import summary_lines

    rng = np.random.default_rng(0)
    n = 60
    y = np.array([0, 1] * (n // 2))
    tables = {
        "separable": pd.DataFrame({"target": y, "patient_id": np.arange(n), "probability": np.where(y, 0.9, 0.1)}),
        "tiny": pd.DataFrame({"target": y[:12], "patient_id": np.arange(12) // 2, "probability": rng.random(12)}),
        "ordinary": pd.DataFrame({"target": y, "patient_id": np.arange(n),
                                  "probability": np.clip(0.3 * y + rng.random(n) * 0.7, 0.01, 0.99)}),
    }
    for name, table in tables.items():
        report = json_safe(validation_report(table, threshold=0.5, n_boot=100))
        assert all(abs(x) < 1e6 for x in _all_numbers(report)), name
    sep = json_safe(validation_report(tables["separable"], threshold=0.5, n_boot=100))
    assert sep["calibration_slope"]["estimate"] is None
    assert any("slope not estimable" in line for line in summary_lines(sep))


def test_duplicated_columns_are_refused_at_the_boundary(tmp_path: Path) -> None:
    from melanoma_utils.data.isic import DataError, read_csv

    csv = tmp_path / "m.csv"
    csv.write_text("image_name,patient_id,target,target\nA,P,0,1\n")
    with pytest.raises(DataError, match=r"m.csv: column\(s\) 'target' appear more than once"):
        read_csv(csv)


def test_fetch_isic2019_never_replaces_a_folder_it_did_not_make(tmp_path: Path) -> None:
    from melanoma_utils.data.fetch import fetch_isic2019

    mine = tmp_path / "isic2019-256"
    mine.mkdir()
    (mine / "notes.txt").write_text("mine")
    with pytest.raises(FileExistsError, match="never a user's folder"):
        fetch_isic2019(tmp_path, size=256, base_url="http://127.0.0.1:9/")  # refused before any download
    assert (mine / "notes.txt").read_text() == "mine"
