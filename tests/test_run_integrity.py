"""Run folders and metrics that cannot lie: no silent fallback, every input error names its file and row."""
from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from melanoma_utils import cli
from melanoma_utils.evaluation.metrics import join_predictions
from melanoma_utils.runs.run import TrainConfig

META = pd.DataFrame({"image_name": [f"I{i}" for i in range(6)], "patient_id": ["p0", "p0", "p1", "p2", "p3", "p3"],
                     "target": [1, 0, 0, 1, 0, 0], "diagnosis": ["melanoma", "nevus", "nevus", "melanoma", "lentigo", "nevus"]})


def _preds(prob) -> pd.DataFrame:
    return pd.DataFrame({"image_name": [f"I{i}" for i in range(len(prob))], "probability": prob})


def test_rows_without_prediction_are_counted_not_hidden() -> None:
    merged, excluded = join_predictions(_preds([0.9, np.nan, 0.2, 0.8, np.nan, 0.1]), META, "p.csv")
    assert len(merged) == 4 and excluded == {"no_prediction": 2, "no_metadata": 0, "not_predicted": 0}
    extra = pd.concat([_preds([0.9, 0.1]), pd.DataFrame({"image_name": ["ELSEWHERE"], "probability": [0.5]})])
    assert join_predictions(extra.reset_index(drop=True), META, "p.csv")[1] == {"no_prediction": 0, "no_metadata": 1, "not_predicted": 4}


@pytest.mark.parametrize("prob, message", [
    ([0.9, 1.7, 0.2], r"p.csv: probability outside \[0, 1\] on line\(s\) 3 \(e.g. 1.7\)"),
    ([-0.3, 0.5, 0.2], r"outside \[0, 1\] on line\(s\) 2"),
    ([0.9, "high", 0.2], r"p.csv: non-numeric probability on line\(s\) 3 \(e.g. 'high'\)"),
])
def test_bad_probabilities_are_errors_naming_the_line(prob, message) -> None:
    with pytest.raises(ValueError, match=message):
        join_predictions(_preds(prob), META, "p.csv")


def test_duplicated_predictions_are_an_error() -> None:
    dup = pd.concat([_preds([0.9, 0.1, 0.3]), _preds([0.9])], ignore_index=True)
    with pytest.raises(ValueError, match=r"predicted more than once, line\(s\) 2, 5 \(e.g. I0\)"):
        join_predictions(dup, META, "p.csv")


def test_cli_evaluate_reports_exclusions(tmp_path: Path, capsys) -> None:
    meta = pd.DataFrame({"image_name": [f"I{i}" for i in range(30)], "patient_id": [f"p{i}" for i in range(30)],
                         "sex": "male", "age_approx": 50, "anatom_site_general_challenge": "torso",
                         "diagnosis": ["melanoma", "nevus"] * 15, "target": [1, 0] * 15})
    meta.to_csv(tmp_path / "m.csv", index=False)
    prob = list(np.linspace(0.05, 0.95, 24))
    prob[2] = prob[5] = np.nan  # unreadable images: rows written without a probability
    _preds(prob).to_csv(tmp_path / "p.csv", index=False)  # the last 6 metadata rows are not in the predictions at all
    assert cli.main(["evaluate", "--predictions", str(tmp_path / "p.csv"), "--metadata", str(tmp_path / "m.csv"),
                     "--n-boot", "20", "--out", str(tmp_path / "rep")]) == 0
    out = capsys.readouterr().out
    assert "evaluated 22 predictions of 30 metadata rows" in out
    assert "6 of 30 row(s) of" in out and "have no prediction in" in out
    assert "2 row(s) without a prediction (unreadable images), excluded" in out
    m = json.loads((tmp_path / "rep" / "metrics.json").read_text())
    assert m["excluded"] == {"no_prediction": 2, "no_metadata": 0, "not_predicted": 6}
    _preds([0.9, 0.1, 1.5, 0.2, 0.7, 0.1, 0.8, 0.3]).to_csv(tmp_path / "bad.csv", index=False)
    assert cli.main(["evaluate", "--predictions", str(tmp_path / "bad.csv"), "--metadata", str(tmp_path / "m.csv")]) == 2
    assert "bad.csv: probability outside [0, 1] on line(s) 4" in capsys.readouterr().err


def test_cli_evaluate_refuses_too_few_cases_and_folders_it_did_not_write(tmp_path: Path, capsys) -> None:
    meta = pd.DataFrame({"image_name": [f"I{i}" for i in range(30)], "patient_id": [f"p{i}" for i in range(30)],
                         "sex": "male", "age_approx": 50, "anatom_site_general_challenge": "torso", "target": [1] + [0] * 29})
    meta.to_csv(tmp_path / "m.csv", index=False)
    _preds(list(np.linspace(0.05, 0.95, 30))).to_csv(tmp_path / "p.csv", index=False)
    ev = ["evaluate", "--predictions", str(tmp_path / "p.csv"), "--metadata", str(tmp_path / "m.csv"), "--n-boot", "20"]
    assert cli.main(ev) == 2  # one malignant image: no AUC, no "sensitivity 1.00 (1.00-1.00)"
    assert "1 malignant and 29 benign: too few for an AUC or a confidence interval (at least 5 of each class" in capsys.readouterr().err
    meta.assign(target=[1, 0] * 15).to_csv(tmp_path / "m.csv", index=False)
    run = tmp_path / "run"
    run.mkdir()
    (run / "config.json").write_text("{}")
    (run / "metrics.json").write_text('{"training": true}')
    assert cli.main(ev + ["--out", str(run)]) == 2 and "is a run folder" in capsys.readouterr().err
    assert cli.main(ev + ["--out", str(run), "--overwrite"]) == 2  # not even with --overwrite
    assert json.loads((run / "metrics.json").read_text()) == {"training": True}
    (run / "val_predictions.csv").write_text("image_name\n")
    for inside in (run / "eval", run / "sub" / "eval.json"):  # inside the run folder at any depth: refused
        assert cli.main(ev + ["--out", str(inside)]) == 2 and f"{run} is a run folder" in capsys.readouterr().err
        assert not inside.exists()
    other = tmp_path / "mine"
    other.mkdir()
    (other / "notes.txt").write_text("mine")
    assert cli.main(ev + ["--out", str(other)]) == 2 and "holds no evaluate report" in capsys.readouterr().err
    assert cli.main(ev + ["--out", str(tmp_path / "rep")]) == 0
    assert cli.main(ev + ["--out", str(tmp_path / "rep")]) == 2 and "pass --overwrite" in capsys.readouterr().err
    assert cli.main(ev + ["--out", str(tmp_path / "rep"), "--overwrite"]) == 0


@pytest.mark.parametrize("args, message", [
    (["--min-sensitivity", "2"], "a sensitivity is in (0, 1]"),
    (["--min-sensitivity", "0"], "must be > 0"),
    (["--learning-rate", "0"], "must be > 0"),
    (["--freeze-epochs", "-1"], "must be >= 0"),
])
def test_cli_rejects_meaningless_training_arguments(tiny_csv: Path, tmp_path: Path, capsys, args, message) -> None:
    with pytest.raises(SystemExit) as exc:
        cli.main(["train", "--metadata", str(tiny_csv), "--out", str(tmp_path / "r"), *args])
    assert exc.value.code == 2 and message in capsys.readouterr().err
    assert not (tmp_path / "r").exists()


def test_image_size_below_the_branch_minimum_is_refused(tiny_csv: Path, tmp_path: Path, capsys) -> None:
    assert cli.main(["train", "--metadata", str(tiny_csv), "--out", str(tmp_path / "r"), "--image-size", "2"]) == 2
    assert "image_size 2 is below this image branch's minimum of 32 px" in capsys.readouterr().err  # default backbone
    assert cli.main(["train", "--metadata", str(tiny_csv), "--out", str(tmp_path / "r"), "--image-size", "2",
                     "--backbone", "cnn"]) == 2
    assert "image_size 2 is below this image branch's minimum of 8 px" in capsys.readouterr().err
    with pytest.raises(ValueError, match="minimum of 32 px"):
        TrainConfig(backbone="efficientnetlite0", backbone_weights="imagenet", image_size=16)
    TrainConfig(kind="meta", image_size=2)  # no image branch: no minimum


def test_threshold_fallback_is_recorded_and_printed(tiny_csv: Path, tmp_path: Path, capsys) -> None:
    from melanoma_utils.data.isic import load_dataset
    from melanoma_utils.runs.training import train_run

    df = load_dataset(tiny_csv).frame
    val = df[df["target"] == 0].head(4)  # a validation split without a malignant image
    train = df[~df["image_name"].isin(val["image_name"]) & ~df["patient_id"].isin(val["patient_id"])]
    run = train_run(train, TrainConfig(kind="meta", epochs=1, verbose=0), tmp_path / "r", val_df=val)
    assert run.config["threshold"] == 0.5 and "fallback 0.5" in run.config["threshold_rule"]
    assert "needs both classes" in run.config["threshold_fallback"]
    assert "decision threshold set to 0.5" in capsys.readouterr().out


def test_predict_names_unknown_categories_and_extension_mistakes(tiny_csv: Path, tmp_path: Path, capsys) -> None:
    assert cli.main(["train", "--metadata", str(tiny_csv), "--out", str(tmp_path / "run"), "--model", "meta",  # the earlier spelling of --kind still works
                     "--epochs", "1", "--verbose", "0"]) == 0
    rows = pd.DataFrame({"image_name": ["IMG_0001.jpg", "IMG_0002"], "sex": ["alien", "male"],
                         "anatom_site_general_challenge": ["elbow", "torso"], "age_approx": [50, 60]})
    rows.to_csv(tmp_path / "new.csv", index=False)
    capsys.readouterr()
    rc = cli.main(["predict", "--model", str(tmp_path / "run"), "--metadata", str(tmp_path / "new.csv"),
                   "--images", str(tiny_csv.parent / "train"), "--out", str(tmp_path / "p.csv")])
    out = capsys.readouterr().out
    assert rc == 0 and "'elbow'" in out and "'alien'" in out  # unknown values reported, mapped to unknown
    (tmp_path / "outdir").mkdir()
    assert cli.main(["predict", "--model", str(tmp_path / "run"), "--metadata", str(tmp_path / "new.csv"),
                     "--out", str(tmp_path / "outdir"), "--overwrite"]) == 2
    assert "is a folder; --out names the predictions CSV" in capsys.readouterr().err


def test_cache_prefix_is_honoured_with_a_data_fingerprint(tiny_csv: Path, tmp_path: Path) -> None:
    from melanoma_utils.data.isic import load_dataset
    from melanoma_utils.pipeline.feeds import make_feed

    df = load_dataset(tiny_csv).frame
    kw = dict(keys=("image",), image_size=16, batch_size=8, cache=str(tmp_path / "cache" / "imgs"))
    feed = make_feed(list(df["image_path"]), np.zeros((len(df), 1)), df["target"].to_numpy(), np.ones(len(df)), **kw)
    for _ in feed:
        pass
    first = {p.name.split(".")[0] for p in (tmp_path / "cache").iterdir()}
    assert len(first) == 1 and next(iter(first)).startswith("imgs-")  # written where the prefix says
    half = df.head(12)
    feed = make_feed(list(half["image_path"]), np.zeros((12, 1)), half["target"].to_numpy(), np.ones(12), **kw)
    for _ in feed:
        pass
    assert len({p.name.split(".")[0] for p in (tmp_path / "cache").iterdir()}) == 2  # other images, other file


def test_predict_hints_at_an_extension_in_image_name(tiny_csv: Path, tmp_path: Path, capsys) -> None:
    assert cli.main(["train", "--metadata", str(tiny_csv), "--out", str(tmp_path / "run"), "--kind", "image",
                     "--backbone", "cnn", "--image-size", "16", "--epochs", "1", "--verbose", "0"]) == 0
    pd.DataFrame({"image_name": ["IMG_0001.jpg", "IMG_0002"]}).to_csv(tmp_path / "new.csv", index=False)
    rc = cli.main(["predict", "--run", str(tmp_path / "run"), "--metadata", str(tmp_path / "new.csv"),
                   "--images", str(tiny_csv.parent / "train"), "--out", str(tmp_path / "p.csv")])
    assert rc == 1
    assert "IMG_0001.jpg: image file not found (image_name should not include the file extension" in capsys.readouterr().err


def test_report_pair_is_replaced_together_or_not_at_all(tmp_path: Path, monkeypatch) -> None:
    import nbformat
    from nbformat.v4 import new_code_cell, new_notebook

    from melanoma_utils import config
    from melanoma_utils.cli import reproduce

    nb_dir = tmp_path / "nbs"
    nb_dir.mkdir()
    cell = new_code_cell("report_dir = ''")
    cell.metadata["tags"] = ["parameters"]
    nb = new_notebook(cells=[cell, new_code_cell("x = 1")])
    nb.metadata["kernelspec"] = {"name": "python3", "display_name": "Python 3", "language": "python"}
    nbformat.write(nb, nb_dir / "a.ipynb")
    monkeypatch.setattr(config, "NOTEBOOKS_DIR", nb_dir)
    out = tmp_path / "out"
    out.mkdir()
    (out / "a.ipynb").write_text("OLD")
    (out / "a.html").write_text("OLD")

    def broken(*_a):
        raise RuntimeError("killed while rendering")

    monkeypatch.setattr(reproduce, "render_html", broken)
    with pytest.raises(RuntimeError):
        reproduce.run_notebook("a", {}, out)
    assert (out / "a.ipynb").read_text() == "OLD" and (out / "a.html").read_text() == "OLD"  # the old pair, intact


def test_config_of_an_older_run_reads_renamed_fields() -> None:
    """config.json written before the renames (model -> kind, weights -> backbone_weights) still loads."""
    old = {"model": "image", "weights": "imagenet", "backbone": "efficientnetlite0", "image_size": 64}
    cfg = TrainConfig.from_dict(old)
    assert cfg.kind == "image" and cfg.backbone_weights == "imagenet" and cfg.uses_cached_embeddings
    both = TrainConfig.from_dict({"model": "meta", "kind": "fusion"})  # today's name wins over the old one
    assert both.kind == "fusion"


def test_damaged_run_folders_name_the_file_and_what_is_wrong(tiny_csv: Path, tmp_path: Path, capsys) -> None:
    """A corrupt config.json, a cut model.keras, a malformed encoder.json: one message naming the run and the file;
    an image_name that could leave the folder is an error row of its own in predict."""
    import shutil

    from melanoma_utils.data.isic import load_dataset, load_for_prediction
    from melanoma_utils.runs.run import Run, RunDamaged
    from melanoma_utils.runs.training import train_run

    df = load_dataset(tiny_csv).frame
    good = tmp_path / "good"
    train_run(df, TrainConfig(kind="meta", epochs=1, verbose=0), good)
    rows = pd.read_csv(tiny_csv).head(3)
    rows.loc[1, "image_name"] = "../../etc/passwd"
    rows.to_csv(tmp_path / "rows.csv", index=False)
    out = Run.load(good).predict_frame(load_for_prediction(tmp_path / "rows.csv", tiny_csv.parent / "train",
                                                           needs_images=False).frame)
    assert out["error"].tolist()[1].startswith("image_name contains a path separator") and out["prediction"][1] == -1
    assert (out["error"][[0, 2]] == "").all()
    for name, damage, message in (
        ("config.json", lambda f: f.write_text('{"kind": '), "config.json (Expecting value"),
        ("model.keras", lambda f: f.write_bytes(f.read_bytes()[:300]), "model.keras (300 bytes, not a complete Keras archive"),
        ("encoder.json", lambda f: f.write_text('{"colour": 1}'), "encoder.json ("),
    ):
        bad = tmp_path / f"bad_{name}"
        shutil.copytree(good, bad)
        damage(bad / name)
        # the record written at publish finds the damaged file before anything is read from it
        with pytest.raises(RunDamaged, match=rf"run folder {bad} does not match its record[.]json: {name.replace('.', '[.]')} "):
            Run.load(bad)
        assert cli.main(["predict", "--run", str(bad), "--metadata", str(tiny_csv), "--out", str(tmp_path / f"{name}.csv")]) == 2
        assert f"does not match its record.json: {name}" in capsys.readouterr().err
        (bad / "record.json").unlink()  # a run folder from before records: each reader still names the file
        with pytest.raises(RunDamaged, match=rf"run folder {bad} is damaged: {name.replace('.', '[.]')} .*train the run again|"
                                             rf"run folder {bad} is damaged: {message[:12]}"):
            Run.load(bad)
        assert cli.main(["predict", "--run", str(bad), "--metadata", str(tiny_csv), "--out", str(tmp_path / f"{name}.csv")]) == 2
        err = capsys.readouterr().err
        assert f"is damaged: {name}" in err and "has no record.json" in err


def test_fingerprint_covers_image_content_and_a_run_that_failed_before_its_first_epoch_blocks_nothing(
        tiny_csv: Path, tmp_path: Path) -> None:
    import os
    import shutil

    from PIL import Image

    from melanoma_utils.data.isic import load_dataset
    from melanoma_utils.runs.runfolder import fingerprint, prepare_staging

    root = tmp_path / "set"
    shutil.copytree(tiny_csv.parent, root)
    df = load_dataset(root / "train.csv").frame
    cfg = TrainConfig(kind="image", backbone="cnn", image_size=32)
    before = fingerprint(cfg, df.iloc[:20], df.iloc[20:])
    path = df["image_path"].iloc[3]
    st = os.stat(path)
    img = Image.open(path).convert("RGB")
    Image.fromarray(255 - np.asarray(img)).save(path, format="PNG" if path.endswith(".png") else "JPEG")
    os.utime(path, ns=(st.st_atime_ns, st.st_mtime_ns))  # same time stamp: only the bytes tell
    assert fingerprint(cfg, df.iloc[:20], df.iloc[20:])["data"] != before["data"]
    staging = tmp_path / ".run.partial"
    assert prepare_staging(staging, before) is False  # a run that then fails before saving any epoch ...
    other = fingerprint(TrainConfig(kind="image", backbone="cnn", image_size=40), df.iloc[:20], df.iloc[20:])
    assert prepare_staging(staging, other) is False  # ... does not block a retry with another configuration
    assert json.loads((staging / "fingerprint.json").read_text()) == other


def test_predictions_are_never_written_inside_a_run_folder_at_any_depth(tmp_path: Path) -> None:
    from melanoma_utils.cli.outputs import check_predictions_out

    run = tmp_path / "run"
    (run / "sub").mkdir(parents=True)
    (run / "model.keras").write_bytes(b"x")
    for out in (run / "p.csv", run / "sub" / "p.csv"):
        with pytest.raises(FileExistsError, match=f"{run} is a run folder"):
            check_predictions_out(out, [])
    check_predictions_out(tmp_path / "p.csv", [])  # beside it: fine
