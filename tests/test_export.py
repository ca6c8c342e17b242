"""Export: the SavedModel gives predict's calibrated probability from raw inputs (any image size, missing metadata),
for Platt and isotonic calibrators; what cannot be exported says why."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
from PIL import Image

from conftest import write_dataset
from melanoma_utils import cli
from melanoma_utils.data.isic import load_dataset
from melanoma_utils.runs.export import export_run
from melanoma_utils.runs.run import Run, TrainConfig
from melanoma_utils.runs.runfolder import write_record
from melanoma_utils.runs.training import train_run

pytestmark = pytest.mark.slow


@pytest.fixture(scope="module")
def trained(tmp_path_factory) -> tuple[Path, pd.DataFrame]:
    root = tmp_path_factory.mktemp("exp")
    csv = write_dataset(root / "d", n=48, size=24)
    df = load_dataset(csv).frame
    train_run(df, TrainConfig(features="paper", backbone="cnn", image_size=24, epochs=2, batch_size=8, conv_filters=(4, 8),
                              meta_units=(8,), head_units=(8,), tta=4, verbose=0), root / "run")
    return root / "run", df


def _rows(tmp: Path, df: pd.DataFrame) -> pd.DataFrame:
    """Six rows: odd image sizes (PNG, so both sides decode the same pixels), missing and unknown metadata."""
    rows = df.head(6).copy().reset_index(drop=True)
    folder = tmp / "odd"
    folder.mkdir(exist_ok=True)
    for i, (w, h) in enumerate([(24, 24), (40, 30), (17, 61), (100, 100), (33, 20), (24, 48)]):
        pixels = np.asarray(Image.open(rows.loc[i, "image_path"]).convert("RGB").resize((w, h)))
        Image.fromarray(pixels).save(folder / f"{rows.loc[i, 'image_name']}.png")
        rows.loc[i, "image_path"] = str(folder / f"{rows.loc[i, 'image_name']}.png")
    rows.loc[1, "age"] = np.nan
    rows.loc[2, ["sex", "site"]] = ["unknown", "unknown"]
    rows.loc[3, ["width", "height"]] = [np.nan, np.nan]
    return rows


def _served(model, row: pd.Series) -> tuple[float, float]:
    import tensorflow as tf

    image = tf.io.decode_image(tf.io.read_file(row["image_path"]), channels=3, expand_animations=False)
    out = model.serve(image, tf.constant(np.float32(row["age"])), tf.constant(str(row["sex"])),
                      tf.constant(str(row["site"])), tf.constant(np.float32(row["width"])),
                      tf.constant(np.float32(row["height"])))
    return float(out["probability"]), float(out["raw_probability"])


@pytest.mark.parametrize("calibration", ["as trained", "isotonic"])
def test_saved_model_gives_predicts_calibrated_probability(trained, tmp_path: Path, calibration: str) -> None:
    import shutil

    import tensorflow as tf

    run_dir, df = trained
    if calibration == "isotonic":  # the other calibrator: a piecewise-linear lookup inside the graph
        run_dir = Path(shutil.copytree(run_dir, tmp_path / "iso"))
        cfg = json.loads((run_dir / "config.json").read_text())
        cfg["calibration"] = {**cfg["calibration"], "method": "isotonic",
                              "params": {"x": [0.1, 0.3, 0.5, 0.7], "y": [0.02, 0.1, 0.1, 0.6]}}
        (run_dir / "config.json").write_text(json.dumps(cfg))
        write_record(run_dir)  # a deliberate edit: recorded again
    rows = _rows(tmp_path, df)
    expected = Run.load(run_dir).predict_frame(rows, impute_size=True)
    assert (expected["error"] == "").all()
    out = export_run(run_dir, tmp_path / "export")
    sig = json.loads((out / "signature.json").read_text())
    assert sig["threshold"] == pytest.approx(Run.load(run_dir).threshold) and sig["test_time_augmentation_views"] == 4
    model = tf.saved_model.load(str(out / "saved_model"))
    got = np.array([_served(model, r) for _, r in rows.iterrows()])
    np.testing.assert_allclose(got[:, 0], expected["probability"], atol=1e-4)
    np.testing.assert_allclose(got[:, 1], expected["raw_probability"], atol=1e-4)
    assert np.ptp(got[:, 1]) > 1e-4  # the inputs matter: the model's output is not a constant


def test_export_refuses_what_it_cannot_carry_and_folders_it_would_overwrite(trained, tmp_path: Path, capsys) -> None:
    run_dir, df = trained
    (tmp_path / "full").mkdir()
    (tmp_path / "full" / "mine.txt").write_text("x")
    assert cli.main(["export", "--run", str(run_dir), "--out", str(tmp_path / "full")]) == 2
    assert "not empty; choose another --out" in capsys.readouterr().err  # a user's folder: not even with --overwrite
    assert cli.main(["export", "--run", str(run_dir), "--out", str(tmp_path / "full"), "--overwrite"]) == 2
    assert "never a user's folder" in capsys.readouterr().err and (tmp_path / "full" / "mine.txt").read_text() == "x"
    with pytest.raises(SystemExit):
        cli.main(["export", "--run", str(run_dir), "--out", str(tmp_path / "t"), "--format", "pdf"])
    assert "invalid choice: 'pdf'" in capsys.readouterr().err
    ens = tmp_path / "ens"
    ens.mkdir()
    for f in run_dir.iterdir():  # a run folder that says it is an ensemble
        if f.is_file():
            (ens / f.name).write_bytes(f.read_bytes())
    (ens / "ensemble.json").write_text("{}")
    assert cli.main(["export", "--run", str(ens), "--out", str(tmp_path / "t")]) == 2
    assert "is an ensemble" in capsys.readouterr().err
    bg = tmp_path / "bg"
    train_run(df, TrainConfig(kind="meta", preprocess="ben_graham", epochs=1, verbose=0), bg)
    assert cli.main(["export", "--run", str(bg), "--out", str(tmp_path / "t")]) == 2
    assert "uses the preprocessing 'ben_graham'" in capsys.readouterr().err
    assert cli.main(["export", "--run", str(run_dir), "--out", str(tmp_path / "ok")]) == 0
    assert "signature.json" in capsys.readouterr().out and (tmp_path / "ok" / "saved_model").is_dir()


def _lite_predict(path: Path, images: np.ndarray, fields: np.ndarray) -> np.ndarray:
    import tensorflow as tf

    interp = tf.lite.Interpreter(model_path=str(path))
    runner = interp.get_signature_runner("serve_lite")
    return np.array([float(np.asarray(runner(image=images[i:i + 1], fields=fields[i:i + 1])["probability"]).reshape(-1)[0])
                     for i in range(len(images))])


def _onnx_predict(path: Path, images: np.ndarray, fields: np.ndarray) -> np.ndarray:
    import onnxruntime

    session = onnxruntime.InferenceSession(str(path), providers=["CPUExecutionProvider"])
    return np.array([[float(v.reshape(-1)[0]) for v in session.run(["probability", "raw_probability"],
                                                                  {"image": images[i:i + 1], "fields": fields[i:i + 1]})]
                     for i in range(len(images))])


def test_tflite_float_and_int8_and_onnx_give_predicts_probability(trained, tmp_path: Path) -> None:
    """LiteRT float32 and ONNX: within 1e-4 of predict; dynamic-range int8: within 0.02 per image and ROC AUC within
    0.005. Rows with missing age, unknown sex/site and missing original size included."""
    import tensorflow as tf

    from melanoma_utils.evaluation.metrics import roc_auc
    from melanoma_utils.pipeline.feeds import crop_resize_tensor
    from melanoma_utils.runs.export import lite_fields

    run_dir, df = trained
    rows = df.copy().reset_index(drop=True)
    rows.loc[1, "age"] = np.nan
    rows.loc[2, ["sex", "site"]] = ["unknown", "unknown"]
    rows.loc[3, ["width", "height"]] = [np.nan, np.nan]
    frame = Run.load(run_dir).predict_frame(rows, impute_size=True)
    expected = frame["probability"].to_numpy()
    images = np.stack([crop_resize_tensor(tf.io.decode_image(tf.io.read_file(p), channels=3, expand_animations=False),
                                          24).numpy() for p in rows["image_path"]])
    fields = np.concatenate([lite_fields(None if a != a else a, s, t, w, h)
                             for a, s, t, w, h in zip(rows["age"], rows["sex"], rows["site"], rows["width"], rows["height"])])
    got = {}
    for fmt in ("tflite", "tflite_int8"):
        out = export_run(run_dir, tmp_path / fmt, fmt)
        assert (out / "model.tflite").stat().st_size > 0 and "serve_lite" in (out / "signature.json").read_text()
        got[fmt] = _lite_predict(out / "model.tflite", images, fields)
    out = export_run(run_dir, tmp_path / "onnx", "onnx")
    assert "ONNX" in json.loads((out / "signature.json").read_text())["format"]
    onnx = _onnx_predict(out / "model.onnx", images, fields)
    np.testing.assert_allclose(got["tflite"], expected, atol=1e-4)
    np.testing.assert_allclose(onnx[:, 0], expected, atol=1e-4)
    np.testing.assert_allclose(onnx[:, 1], frame["raw_probability"], atol=1e-4)  # the network itself, not just a flat calibrator
    assert np.ptp(onnx[:, 1]) > 1e-4 and np.isfinite(onnx).all()
    # Platt (an affine map on the logit) inside every format too: the real runs' calibrator
    import shutil

    platt = Path(shutil.copytree(run_dir, tmp_path / "platt"))
    cfg = json.loads((platt / "config.json").read_text())
    cfg["calibration"] = {**cfg["calibration"], "method": "platt", "params": {"ab": [-0.7, 1.6]}}
    (platt / "config.json").write_text(json.dumps(cfg))
    write_record(platt)  # a deliberate edit: recorded again
    expected_platt = Run.load(platt).predict_frame(rows, impute_size=True)["probability"].to_numpy()
    assert np.ptp(expected_platt) > 1e-3
    got_onnx = _onnx_predict(export_run(platt, tmp_path / "platt_onnx", "onnx") / "model.onnx", images, fields)[:, 0]
    got_lite = _lite_predict(export_run(platt, tmp_path / "platt_lite", "tflite") / "model.tflite", images, fields)
    np.testing.assert_allclose(got_onnx, expected_platt, atol=1e-4)
    np.testing.assert_allclose(got_lite, expected_platt, atol=1e-4)
    assert np.abs(got["tflite_int8"] - expected).max() <= 0.02
    y = rows["target"].to_numpy()
    assert abs(roc_auc(y, got["tflite_int8"]) - roc_auc(y, expected)) <= 0.005
