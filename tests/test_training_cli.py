"""Training, saved runs and the CLI round trip on tiny data (a few seconds per model)."""
from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from conftest import planted_sex_table, write_dataset
from melanoma_utils import cli
from melanoma_utils.data.isic import load_dataset
from melanoma_utils.evaluation.calibration import prior_shift
from melanoma_utils.runs.run import Run, TrainConfig
from melanoma_utils.runs.training import train_run
from melanoma_utils.study.experiments import cross_validate, summarise_cv
from melanoma_utils.study.plan import FoldPlan

TINY = dict(backbone="cnn", image_size=24, epochs=2, batch_size=8, conv_filters=(4, 8), meta_units=(8,), head_units=(8,), verbose=0)


@pytest.fixture(scope="module")
def tiny_df(tmp_path_factory) -> pd.DataFrame:
    csv = write_dataset(tmp_path_factory.mktemp("train"), n=48, size=24)
    return load_dataset(csv).frame


@pytest.fixture(scope="module")
def fusion_trained(tiny_df: pd.DataFrame, tmp_path_factory) -> tuple[Path, Run]:
    out = tmp_path_factory.mktemp("runs") / "fusion"
    run = train_run(tiny_df, TrainConfig(features="paper", preprocess="ben_graham", **TINY), out)
    return out, run


@pytest.fixture(scope="module")
def fusion_run(fusion_trained: tuple[Path, Run]) -> Path:
    return fusion_trained[0]


def test_run_folder_is_self_contained(fusion_run: Path) -> None:
    names = {p.name for p in fusion_run.iterdir()}
    assert {"model.keras", "encoder.json", "config.json", "history.csv", "metrics.json", "val_predictions.csv"} <= names
    assert "backup" not in names
    cfg = json.loads((fusion_run / "config.json").read_text())
    assert cfg["preprocess"]["name"] == "ben_graham" and cfg["train"]["features"] == "paper"
    assert 0 < cfg["threshold"] < 1 and "sensitivity >= 0.9" in cfg["threshold_rule"]
    assert cfg["feature_names"][-2:] == ["log_height", "height_missing"]
    hist = pd.read_csv(fusion_run / "history.csv")
    assert list(hist["epoch"]) == [0, 1] and {"loss", "val_loss", "val_auc"} <= set(hist.columns)


def test_threshold_comes_from_validation_only(fusion_run: Path, tiny_df: pd.DataFrame) -> None:
    """The validation rows are whole patients the model did not train on, and the threshold is chosen on the model's
    own calibrated predictions for them (recomputed here from the saved model, not from the CSV it wrote)."""
    from melanoma_utils.evaluation.metrics import choose_threshold

    cfg = json.loads((fusion_run / "config.json").read_text())
    val_names = set(pd.read_csv(fusion_run / "val_predictions.csv")["image_name"])
    val = tiny_df[tiny_df["image_name"].isin(val_names)].reset_index(drop=True)
    train = tiny_df[~tiny_df["image_name"].isin(val_names)]
    assert not set(val["patient_id"]) & set(train["patient_id"])  # no patient on both sides
    assert cfg["n_val"] == len(val) and cfg["n_train"] == len(train)
    p = Run.load(fusion_run).predict_proba(val)
    assert cfg["threshold"] == pytest.approx(choose_threshold(val["target"], p, 0.9), abs=1e-6)


def test_save_load_predict_identical(fusion_trained: tuple[Path, Run], tiny_df: pd.DataFrame) -> None:
    """The loaded run predicts what the trained model in memory predicted (not merely two loads of one file)."""
    out, trained = fusion_trained
    a, b = trained.predict(tiny_df), Run.load(out).predict(tiny_df)
    assert a.shape == (48,) and np.allclose(a, b, atol=1e-6) and ((a > 0) & (a < 1)).all()
    assert np.std(a) > 1e-4  # a model that learned something, not a constant


def test_finished_run_is_not_overwritten(fusion_run: Path, tiny_df: pd.DataFrame) -> None:
    with pytest.raises(FileExistsError, match="already holds a trained model"):
        train_run(tiny_df, TrainConfig(**TINY), fusion_run)


def test_cli_predict_handles_unseen_missing_and_odd_rows(fusion_run: Path, tiny_df: pd.DataFrame, tmp_path: Path,
                                                         capsys) -> None:
    import cv2

    images = Path(tiny_df["image_path"].iloc[0]).parent
    cv2.imwrite(str(images / "WIDE.jpg"), np.full((20, 70, 3), 90, np.uint8))  # non-square, no width/height
    rows = pd.DataFrame({
        "image_name": ["IMG_0000", "WIDE", "GONE", "IMG_0001"],
        "sex": ["male", "", "female", "alien"],
        "age_approx": [40, None, 50, 30],
        "anatom_site_general_challenge": ["torso", "elbow", "", "head/neck"],
    })
    csv = tmp_path / "new.csv"
    rows.to_csv(csv, index=False)
    out = tmp_path / "preds.csv"
    # a 'paper' model needs the ORIGINAL width/height: never the size of the (resized) file at hand
    rc = cli.main(["predict", "--run", str(fusion_run), "--metadata", str(csv), "--images", str(images), "--out", str(out)])
    assert rc == 2 and not out.exists()
    assert "4 row(s) have none (CSV line(s) 2, 3, 4, 5)" in capsys.readouterr().err
    rc = cli.main(["predict", "--run", str(fusion_run), "--metadata", str(csv), "--images", str(images), "--out", str(out),
                   "--impute-size"])
    preds = pd.read_csv(out, keep_default_na=False)
    assert rc == 1  # one row failed, the others were predicted
    assert list(preds.columns) == ["image_name", "probability", "raw_probability", "prevalence", "threshold", "prediction",
                                   "error", "size_imputed", "ita"]
    assert preds["size_imputed"].tolist() == [1, 1, 1, 1]
    assert "width/height imputed for 4 row(s)" in capsys.readouterr().out
    assert preds.loc[2, "error"] == "image file not found" and preds.loc[2, "prediction"] == -1
    ok = preds.drop(index=2)
    assert (ok["error"] == "").all() and ok["probability"].astype(float).between(0, 1).all()
    assert set(ok["prediction"].astype(int)) <= {0, 1}
    assert cli.main(["predict", "--run", str(fusion_run), "--metadata", str(csv), "--images", str(images),
                     "--out", str(out)]) == 2  # refuses to overwrite


def test_cli_train_predict_evaluate_round_trip(tiny_df: pd.DataFrame, tmp_path: Path, capsys) -> None:
    csv = Path(tiny_df["image_path"].iloc[0]).parent.parent / "train.csv"
    run_dir = tmp_path / "run"
    assert cli.main(["train", "--metadata", str(csv), "--out", str(run_dir), "--kind", "image", "--backbone", "cnn", "--image-size", "24",
                     "--epochs", "1", "--batch-size", "8", "--verbose", "0", "--preprocess", "grayscale"]) == 0
    out = capsys.readouterr().out
    assert "training on 48 images" in out and "threshold (validation)" in out
    preds = tmp_path / "p.csv"
    assert cli.main(["predict", "--run", str(run_dir), "--metadata", str(csv), "--out", str(preds)]) == 0
    shifted = tmp_path / "p_at.csv"  # at a stated prevalence: other probabilities, the same decisions
    assert cli.main(["predict", "--run", str(run_dir), "--metadata", str(csv), "--out", str(shifted),
                     "--prevalence", "0.0176"]) == 0
    base, at = pd.read_csv(preds), pd.read_csv(shifted)
    cal = json.loads((run_dir / "config.json").read_text())["calibration"]
    assert (at["prevalence"] == 0.0176).all() and (base["prevalence"] == cal["prevalence"]).all()
    np.testing.assert_allclose(at["probability"], prior_shift(base["probability"], cal["prevalence"], 0.0176), rtol=1e-6)
    assert (at["prediction"] == base["prediction"]).all() and at["threshold"].iloc[0] < base["threshold"].iloc[0]
    np.testing.assert_allclose(at["raw_probability"], base["raw_probability"])
    card = (run_dir / "MODEL_CARD.md").read_text()  # 48 images: the validation split holds < 5 malignant
    assert "No validation report: too few for an AUC" in card and "| sensitivity 0.90 |" not in card
    metrics = tmp_path / "m.json"
    assert cli.main(["evaluate", "--predictions", str(preds), "--metadata", str(csv), "--run", str(run_dir),
                     "--out", str(metrics), "--n-boot", "50"]) == 0
    res = json.loads(metrics.read_text())
    assert res["n"] == 48 and set(res["thresholds"]) == {"0.5", "validation"}
    assert res["roc_auc"]["ci_low"] <= res["roc_auc"]["estimate"] <= res["roc_auc"]["ci_high"]
    assert "ROC AUC" in capsys.readouterr().out
    # a report folder, at a stated prevalence: every key of the clinical report, figures and tables
    report = tmp_path / "report"
    assert cli.main(["evaluate", "--predictions", str(preds), "--metadata", str(csv), "--prevalence", "0.0176",
                     "--out", str(report), "--n-boot", "50"]) == 0
    res = json.loads((report / "metrics.json").read_text())
    assert {"roc_auc", "pr_auc", "brier", "ece", "calibration_slope", "calibration_intercept", "operating_points",
            "net_benefit", "subgroups", "stated_prevalence"} <= set(res)
    assert res["stated_prevalence"]["prevalence"] == 0.0176
    ops = {op["name"]: op for op in res["operating_points"]}
    assert set(ops) == {"sensitivity 0.90", "sensitivity 0.95", "validation threshold"}
    assert ops["validation threshold"]["threshold"] == pd.read_csv(preds)["threshold"].iloc[0]
    assert ops["sensitivity 0.90"]["at_prevalence"]["prevalence"] == 0.0176
    for name in ("reliability.png", "decision_curve.png", "decision_curve_stated_prevalence.png", "subgroups.png",
                 "operating_points.csv", "subgroups.csv", "net_benefit.csv"):
        assert (report / name).stat().st_size > 0, name
    # the table's columns are the report's estimates with their bounds, at the stated prevalence too
    table = pd.read_csv(report / "operating_points.csv").set_index("operating point")
    op = ops["sensitivity 0.90"]
    assert table.loc["sensitivity 0.90", ["ppv", "ppv_ci_low", "ppv_ci_high"]].tolist() == pytest.approx(
        [op["ppv"]["estimate"], op["ppv"]["ci_low"], op["ppv"]["ci_high"]])
    assert table.loc["sensitivity 0.90", ["nnb_at_0.0176", "nnb_at_0.0176_ci_low", "nnb_at_0.0176_ci_high"]].tolist() \
        == pytest.approx([op["at_prevalence"]["nnb"][k] for k in ("estimate", "ci_low", "ci_high")])
    assert "NNB" in capsys.readouterr().out


def test_cli_rejects_bad_arguments(tmp_path: Path, capsys) -> None:
    with pytest.raises(SystemExit):
        cli.main(["train", "--metadata", str(tmp_path / "nope.csv"), "--out", str(tmp_path)])
    assert "argument --metadata/--shards: not found" in capsys.readouterr().err


def test_meta_model_learns_planted_signal(tmp_path: Path) -> None:
    df = planted_sex_table()
    y = df["target"].to_numpy()
    run = train_run(df, TrainConfig(kind="meta", epochs=30, learning_rate=1e-2, batch_size=32, patience=30,
                                    verbose=0), tmp_path / "meta")
    from melanoma_utils.evaluation.metrics import roc_auc

    assert roc_auc(y, run.predict(df)) > 0.95


@pytest.mark.slow
def test_cross_validation_ablation_on_tiny_data(tmp_path: Path) -> None:
    csv = write_dataset(tmp_path / "cv", n=60, size=24, pos_every=3)
    df = load_dataset(csv).frame
    variants = {"meta": {"model": "meta"}, "fusion": {"model": "fusion", "features": "paper"}}
    per_fold, oof = cross_validate(df, TrainConfig(**{**TINY, "epochs": 1}), tmp_path / "abl", variants, FoldPlan(2))
    assert len(per_fold) == 4 and set(per_fold["variant"]) == {"meta", "fusion"}
    assert len(oof) == 2 * 60 and oof.groupby("variant")["image_name"].nunique().eq(60).all()
    for _, part in oof.groupby(["variant", "fold"]):
        train_patients = set(df["patient_id"]) - set(part["patient_id"])
        assert not train_patients & set(part["patient_id"])
    summary = summarise_cv(per_fold, oof, n_boot=50)
    assert list(summary.index) == ["meta", "fusion"] and summary["folds"].eq(2).all()
    # a second call reuses the saved runs (resumable) and gives the same predictions
    _, oof2 = cross_validate(df, TrainConfig(**{**TINY, "epochs": 1}), tmp_path / "abl", variants, FoldPlan(2))
    assert np.allclose(oof["probability"], oof2["probability"])


def test_train_run_fits_the_encoder_on_training_rows_only(tiny_df: pd.DataFrame, tmp_path: Path) -> None:
    from melanoma_utils.models.features import MetadataEncoder

    val_ids = tiny_df["patient_id"].unique()[:6]
    val = tiny_df[tiny_df["patient_id"].isin(val_ids)].assign(age=lambda d: d["age"] + 60)  # far older patients
    train = tiny_df[~tiny_df["patient_id"].isin(val_ids)]
    train_run(train, TrainConfig(kind="meta", epochs=1, verbose=0), tmp_path / "r", val_df=val)
    enc = MetadataEncoder.load(tmp_path / "r" / "encoder.json")
    assert enc.age_mean == pytest.approx(train["age"].mean())  # not pulled up by the validation rows
    assert enc.age_mean < pd.concat([train, val])["age"].mean() - 10


def test_training_code_does_not_import_the_plotting_layer() -> None:
    import subprocess
    import sys

    code = ("import sys; import melanoma_utils.runs.training, melanoma_utils.study.experiments, melanoma_utils.cli.app; "
            "print(sorted(m for m in sys.modules if m in ('melanoma_utils.reports.plots', 'melanoma_utils.reports.reporting', 'shap')))")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=300)
    assert out.returncode == 0, out.stderr[-2000:]
    assert out.stdout.strip().splitlines()[-1] == "[]"


def test_only_short_fits_run_eagerly() -> None:
    """Compiling costs more than a few small eager steps; a long fit compiles (image branches: a lower limit)."""
    import keras

    from melanoma_utils.runs.compiling import EAGER_MAX_STEPS, EAGER_MAX_STEPS_IMAGES
    from melanoma_utils.runs.compiling import compile_model as _compile

    assert EAGER_MAX_STEPS_IMAGES < EAGER_MAX_STEPS
    model = keras.Sequential([keras.Input((3,)), keras.layers.Dense(1, activation="sigmoid")])
    cases = [(EAGER_MAX_STEPS_IMAGES, True, True), (EAGER_MAX_STEPS_IMAGES + 1, True, False),
             (EAGER_MAX_STEPS_IMAGES + 1, False, True), (EAGER_MAX_STEPS, False, True),
             (EAGER_MAX_STEPS + 1, False, False), (None, False, False)]
    for steps, images, eager in cases:
        _compile(model, 1e-3, steps, images=images)
        assert model.run_eagerly is eager, (steps, images)


def test_compare_backbones_scores_calibrated_probabilities_at_the_runs_threshold(tmp_path: Path) -> None:
    """The run's threshold is on the calibrated scale: the comparison must score calibrated probabilities with it."""
    from melanoma_utils.data.splits import holdout_split
    from melanoma_utils.evaluation.metrics import threshold_metrics
    from melanoma_utils.study.backbone_study import compare_backbones

    df = load_dataset(write_dataset(tmp_path / "cmp", n=80, size=24, pos_every=3)).frame
    cfg = TrainConfig(**{**TINY, "epochs": 2})
    table, preds = compare_backbones(df, cfg, tmp_path / "runs", ["cnn"], models=("fusion",), n_boot=20)
    run = Run.load(tmp_path / "runs" / "cnn_fusion")
    assert run.calibrator.prevalence is not None  # a calibrator was chosen (none/Platt/isotonic by CV Brier score)
    _, te = holdout_split(df, 0.2, seed=cfg.seed)
    test = df.iloc[te].reset_index(drop=True)
    p = run.predict_proba(test)
    if run.calibrator.method != "identity":  # a fitted map: the table scores the calibrated scale, not the raw one
        assert not np.allclose(p, run.predict(test))
    assert np.allclose(preds["probability"], p)
    at = threshold_metrics(test["target"], p, run.threshold)
    row = table.iloc[0]
    assert (row["sensitivity"], row["specificity"]) == pytest.approx((at["sensitivity"], at["specificity"]))
    assert row["predict_images_per_second"] > 0 and row["protocol"] == "random init, trained end to end"


def test_compare_backbones_reports_unavailable_weights_as_a_row_without_training(tmp_path: Path, monkeypatch) -> None:
    """Offline, a keras.applications backbone with ImageNet weights is a 'not run' row saying why, and nothing trains."""
    from melanoma_utils.models import fusion as models
    from melanoma_utils.study.backbone_study import compare_backbones, protocol_rank

    def offline(name, image_size, weights=None):
        raise models.WeightsUnavailable(f"could not download ImageNet weights for {name} (no network). Offline, use ...")

    monkeypatch.setattr(models, "build_backbone", offline)
    df = load_dataset(write_dataset(tmp_path / "cmp", n=40, size=24, pos_every=3)).frame
    table, preds = compare_backbones(df, TrainConfig(**{**TINY, "image_size": 32}), tmp_path / "runs", ["vgg16@imagenet"],
                                     n_boot=20)
    assert list(table["model"]) == ["image", "fusion"] and len(preds) == 0
    assert all(table["note"] == "not run: could not download ImageNet weights for vgg16 (no network)")
    assert table["roc_auc"].isna().all() and not (tmp_path / "runs").exists()
    assert list(table["protocol"]) == ["pretrained (imagenet), frozen; head on cached embeddings"] * 2  # block (a)
    assert [protocol_rank(p) for p in ("pretrained (imagenet), frozen; head on cached embeddings",
                                       "random init, trained end to end", "pretrained (imagenet), trained end to end",
                                       "metadata only")] == [0, 1, 2, 3]


def test_trainconfig_decides_every_default_and_the_cli_passes_only_what_was_set(tmp_path: Path) -> None:
    from melanoma_utils.cli.app import build_parser, train_config

    cfg = TrainConfig()
    assert (cfg.backbone, cfg.backbone_weights, cfg.image_size, cfg.embedding_views) == ("efficientnetlite0", "imagenet", 224, 8)
    assert (TrainConfig(backbone="efficientnetlite2").image_size, TrainConfig(backbone="efficientnetlite2").backbone_weights) == (260, "imagenet")
    cnn = TrainConfig(backbone="cnn", backbone_weights="None")
    assert (cnn.backbone, cnn.backbone_weights, cnn.image_size) == (None, None, 128)
    assert TrainConfig(backbone="vgg16").backbone_weights is None  # its ImageNet weights need a download: not a default
    assert (TrainConfig(kind="meta").backbone, TrainConfig(kind="meta").backbone_weights) == (None, None)
    assert TrainConfig.from_dict({"kind": "image", "image_size": 96}).backbone is None  # an old run without the field: the CNN
    with pytest.raises(ValueError, match="needs a backbone"):
        TrainConfig(backbone="cnn", backbone_weights="imagenet")
    with pytest.raises(ValueError, match="above the maximum of 1024 px"):
        TrainConfig(image_size=10000)
    with pytest.raises(ValueError, match="backbone must be cnn or one of"):
        TrainConfig(backbone="resnet")
    csv = tmp_path / "m.csv"
    csv.write_text("x\n")
    args = build_parser().parse_args(["train", "--metadata", str(csv), "--out", str(tmp_path / "r")])
    # the CLI's model is the Python default; Keras reports one line per epoch when stdout is not a terminal (here)
    import sys

    assert train_config(args) == TrainConfig(verbose=1 if sys.stdout.isatty() else 2)
    args = build_parser().parse_args(["train", "--metadata", str(csv), "--out", str(tmp_path / "r"), "--backbone", "cnn",
                                      "--no-augment", "--end-to-end", "--epochs", "3"])
    got = train_config(args)
    assert (got.backbone, got.image_size, got.augment, got.frozen_features, got.epochs) == (None, 128, False, False, 3)
    args = build_parser().parse_args(["train", "--metadata", str(csv), "--out", str(tmp_path / "r"), "--preset",
                                      "lite2-260", "--tta", "4"])
    got = train_config(args)  # the preset, then only the options given on top of it
    assert (got.backbone, got.image_size, got.tta, got.embedding_views) == ("efficientnetlite2", 260, 4, 8)
    assert got == TrainConfig.from_preset("lite2-260", tta=4, verbose=1 if sys.stdout.isatty() else 2)
    text = build_parser()._subparsers._group_actions[0].choices["train"].format_help()
    assert f"(default: {TrainConfig().patience})" in text and "at most 1024" in text


def test_old_option_spellings_warn_and_still_work(tmp_path: Path, capsys) -> None:
    from melanoma_utils.cli.app import build_parser, main

    csv = tmp_path / "m.csv"
    csv.write_text("x\n")
    args = build_parser().parse_args(["train", "--metadata", str(csv), "--out", str(tmp_path / "r"), "--model", "image"])
    assert args.kind == "image" and "--model is renamed --kind" in capsys.readouterr().err
    args = build_parser().parse_args(["evaluate", "--predictions", str(csv), "--metadata", str(csv), "--model", str(tmp_path)])
    assert args.run == tmp_path and "--model is renamed --run" in capsys.readouterr().err
    assert main(["predict", "--metadata", str(csv), "--out", str(tmp_path / "p.csv")]) == 2
    assert "predict needs --run RUN" in capsys.readouterr().err


def test_reading_run_files_and_evaluating_a_predictions_csv_import_no_tensorflow(tiny_csv: Path, tmp_path: Path) -> None:
    """`import melanoma_utils`, `--help`, the run-folder code and `evaluate` on a CSV need neither TensorFlow nor Keras."""
    import subprocess
    import sys

    meta = pd.read_csv(tiny_csv)
    preds = tmp_path / "p.csv"
    pd.DataFrame({"image_name": meta["image_name"], "probability": np.linspace(0.01, 0.99, len(meta)),
                  "threshold": 0.5}).to_csv(preds, index=False)
    code = f"""
import sys, contextlib, io
import melanoma_utils, melanoma_utils.runs.runfolder, melanoma_utils.runs.run, melanoma_utils.evaluation.metrics, melanoma_utils.evaluation.clinical
from melanoma_utils.cli.app import main
with contextlib.redirect_stdout(io.StringIO()):
    try:
        main(["--help"])
    except SystemExit:
        pass
    assert main(["evaluate", "--predictions", {str(preds)!r}, "--metadata", {str(tiny_csv)!r}, "--n-boot", "20"]) == 0
print(sorted(m for m in ("tensorflow", "keras") if m in sys.modules))
"""
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=120)
    assert out.returncode == 0, out.stderr[-2000:]
    assert out.stdout.strip().splitlines()[-1] == "[]"


def test_predict_one_lesion_prints_its_risk_and_matches_the_csv_row(tiny_df: pd.DataFrame, tmp_path: Path, capsys) -> None:
    run_dir = tmp_path / "clin"
    train_run(tiny_df, TrainConfig(features="clinical", **TINY), run_dir)
    csv = Path(tiny_df["image_path"].iloc[0]).parent.parent / "train.csv"
    meta = pd.read_csv(csv)
    r = meta.iloc[5]
    image = Path(tiny_df.set_index("image_name").loc[r["image_name"], "image_path"])
    assert cli.main(["predict", "--run", str(run_dir), "--metadata", str(csv), "--out", str(tmp_path / "p.csv")]) == 0
    row = pd.read_csv(tmp_path / "p.csv").set_index("image_name").loc[r["image_name"]]
    capsys.readouterr()
    args = ["predict", "--run", str(run_dir), "--image", str(image), "--age", str(r["age_approx"]), "--sex", r["sex"],
            "--site", r["anatom_site_general_challenge"]]
    assert cli.main(args + ["--json", "--explain", str(tmp_path / "x.png")]) == 0
    got = json.loads(capsys.readouterr().out)
    for key in ("probability", "raw_probability", "prevalence", "threshold", "prediction"):
        assert got[key] == pytest.approx(row[key], abs=1e-6), key  # what predict writes for that row of a CSV
    assert got["missing_inputs"] == [] and (tmp_path / "x.png").stat().st_size > 0
    assert cli.main(args[:5] + ["--prevalence", "isic2020"]) == 0
    text = capsys.readouterr().out
    assert "melanoma risk" in text and "at prevalence 0.01763" in text and "missing inputs (scored as unknown): age, sex, site" in text
    assert "sensitivity" in text and "threshold" in text
    for extra, message in ((["--age", "150"], "--age 150: out of range"), (["--site", "elbow"], "--site 'elbow': unknown; valid: head/neck"),
                           (["--sex", "x"], "--sex 'x': unknown; valid: female, male")):
        assert cli.main(args[:5] + extra) == 2 and message in capsys.readouterr().err
    (tmp_path / "not.jpg").write_text("hello")
    assert cli.main(["predict", "--run", str(run_dir), "--image", str(tmp_path / "not.jpg")]) == 2
    assert "not an image file" in capsys.readouterr().err
    assert cli.main(["predict", "--run", str(run_dir), "--image", str(tmp_path / "absent.jpg")]) == 2
    err = capsys.readouterr().err
    assert "--image" in err and "absent.jpg: file not found" in err
