"""Training with external rows that never reach validation or test, repeated cross-validation, the paired comparison
of two models on the same patients, ensembles and the study tables built on them. Readers: test_external_readers.py."""

from __future__ import annotations

import re
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from melanoma_utils.evaluation.metrics import MetricError, paired_auc_difference, roc_auc
from melanoma_utils.runs.run import TrainConfig


def _meta_table(n: int, prefix: str, seed: int, source: str = "isic2020") -> pd.DataFrame:
    """A normalised table without images where sex decides the target (a metadata model learns it in seconds)."""
    rng = np.random.default_rng(seed)
    y = (rng.random(n) < 0.3).astype(int)
    return pd.DataFrame({"image_name": [f"{prefix}{i}" for i in range(n)], "patient_id": [f"{prefix}p{i // 2}" for i in range(n)],
                         "sex": np.where(y == 1, "male", "female"), "age": rng.normal(50, 10, n), "site": "torso",
                         "diagnosis": np.where(y == 1, "melanoma", "nevus"), "target": y, "tfrecord": pd.NA,
                         "width": np.nan, "height": np.nan, "source": source, "image_path": ""})


@pytest.mark.slow
def test_external_rows_join_the_training_part_only(tmp_path: Path) -> None:
    import json

    from melanoma_utils.runs.run import TrainConfig
    from melanoma_utils.runs.training import train_run

    main, ext = _meta_table(120, "m", 0), _meta_table(200, "h", 1, source="ham10000")
    cfg = TrainConfig(kind="meta", epochs=2, verbose=0)
    run = train_run(main, cfg, tmp_path / "run", external=ext)
    val = pd.read_csv(tmp_path / "run" / "val_predictions.csv")
    assert set(val["image_name"]) <= set(main["image_name"]) and len(val) > 0
    config_json = json.loads((tmp_path / "run" / "config.json").read_text())
    assert config_json["training_sources"]["ham10000"]["rows"] == 200
    assert config_json["training_sources"]["isic2020"]["rows"] + len(val) == 120
    assert set(config_json["validation_sources"]) == {"isic2020"}
    assert config_json["n_train"] == 200 + 120 - len(val)
    assert "Training sources: ham10000: 200 images" in (tmp_path / "run" / "MODEL_CARD.md").read_text()
    assert run.config["calibration"]["prevalence"] == pytest.approx(val["target"].mean())
    with pytest.raises(ValueError, match="patient context"):
        train_run(main, TrainConfig(kind="fusion", features="context", verbose=0), tmp_path / "ctx", external=ext)
    with pytest.raises(ValueError, match="also in the training data"):
        train_run(main, cfg, tmp_path / "dup", external=pd.concat([ext, main.iloc[:3]]))


@pytest.mark.slow
def test_cross_validation_keeps_external_rows_out_of_every_test_fold(tmp_path: Path) -> None:
    import json

    from melanoma_utils.runs.run import TrainConfig
    from melanoma_utils.study.experiments import cross_validate, paired_contrasts, run_folder_name
    from melanoma_utils.study.plan import FoldPlan

    main, ext = _meta_table(120, "m", 0), _meta_table(150, "h", 1, source="ham10000")
    variants = {"meta": {"kind": "meta"}, "meta + external": {"kind": "meta", "external": True}}
    per_fold, oof = cross_validate(main, TrainConfig(kind="meta", epochs=2, verbose=0), tmp_path / "cv", variants,
                                   FoldPlan(2), external=ext)
    assert set(oof["image_name"]) == set(main["image_name"]) and len(oof) == 2 * len(main)
    for k in (0, 1):
        cfg = json.loads((tmp_path / "cv" / run_folder_name("meta + external") / f"fold{k}" / "config.json").read_text())
        assert cfg["training_sources"]["ham10000"]["rows"] == 150
        plain = json.loads((tmp_path / "cv" / "meta" / f"fold{k}" / "config.json").read_text())
        assert set(plain["training_sources"]) == {"isic2020"}
    paired = paired_contrasts(per_fold, oof, [("meta + external", "meta"), ("absent", "meta")], n_boot=50)
    assert list(paired["subset"]) == ["all", "melanoma_vs_nevus"] and (paired["contrast"] == "meta + external − meta").all()
    fold = per_fold.set_index(["variant", "fold"])["roc_auc"]
    expected = ";".join(f"{fold[('meta + external', k)] - fold[('meta', k)]:+.3f}" for k in (0, 1))
    assert paired["fold_deltas"].iloc[0] == expected
    with pytest.raises(ValueError, match="asks for external training data"):
        cross_validate(main, TrainConfig(kind="meta", epochs=1, verbose=0), tmp_path / "cv2", variants, FoldPlan(2))


@pytest.mark.slow
def test_repeated_cross_validation_draws_new_folds_and_pairs_over_repeats(tmp_path: Path) -> None:
    from melanoma_utils.study.experiments import load_folds, paired_contrasts, repeated_cross_validate, summarise_cv
    from melanoma_utils.study.plan import FoldPlan

    main = _meta_table(120, "m", 0)
    variants = {"meta": {"kind": "meta"}, "meta, paper": {"kind": "meta", "features": "paper"}}
    per_fold, oof = repeated_cross_validate(main, TrainConfig(kind="meta", epochs=2, verbose=0), tmp_path / "cv", variants,
                                            FoldPlan(2, repeats=2), repeat_variants=["meta"])
    f0, f1 = load_folds(tmp_path / "cv" / "folds.csv", main), load_folds(tmp_path / "cv" / "repeat1" / "folds.csv", main)
    assert (f0 != f1).any()  # another assignment of patients to folds
    assert sorted(per_fold.groupby("repeat")["variant"].unique().map(sorted).tolist()) == [["meta"], ["meta", "meta, paper"]]
    paired = paired_contrasts(per_fold, oof, [("meta, paper", "meta")], n_boot=50)
    assert paired["repeats"].iloc[0] == 1  # the repeat both variants ran
    both = {"meta": {"kind": "meta"}, "meta 2": {"kind": "meta", "seed": 1}}
    per_fold, oof = repeated_cross_validate(main, TrainConfig(kind="meta", epochs=2, verbose=0), tmp_path / "cv2", both,
                                            FoldPlan(2, repeats=2))
    row = paired_contrasts(per_fold, oof, [("meta 2", "meta")], n_boot=50).iloc[0]
    per_repeat = []
    for r in (0, 1):
        o = oof[oof["repeat"] == r]
        per_repeat.append(roc_auc(o[o["variant"] == "meta 2"]["target"], o[o["variant"] == "meta 2"]["probability"])
                          - roc_auc(o[o["variant"] == "meta"]["target"], o[o["variant"] == "meta"]["probability"]))
    assert row["repeats"] == 2 and len(row["fold_deltas"].split(";")) == 4 and row["folds"] == 4
    assert row["delta_auc"] == pytest.approx(np.mean(per_repeat))
    assert 0 <= row["p_delong"] <= 1
    assert summarise_cv(per_fold, oof, n_boot=50)["folds"].tolist() == [2, 2]  # the table describes the study's folds


def test_paired_auc_difference_resamples_both_models_together() -> None:
    rng = np.random.default_rng(0)
    n = 400
    y = (rng.random(n) < 0.3).astype(int)
    groups = np.arange(n) // 2
    a = y + rng.normal(0, 1.0, n)
    b = a + rng.normal(0, 0.15, n)  # nearly the same model: the paired difference is small and precise
    res = paired_auc_difference(y, a, b, groups, n_boot=300, seed=1)
    assert res["delta"] == pytest.approx(roc_auc(y, a) - roc_auc(y, b))
    assert res["ci_low"] <= res["delta"] <= res["ci_high"]
    # pairing: the interval of the difference is far narrower than either model's own AUC interval
    from melanoma_utils.evaluation.metrics import bootstrap_ci

    _, lo, hi = bootstrap_ci(y, a, groups, roc_auc, n_boot=300, seed=1)
    assert res["ci_high"] - res["ci_low"] < 0.5 * (hi - lo)
    # a clearly better model: the interval excludes 0, and swapping the models negates everything
    better = y * 2 + rng.normal(0, 1.0, n)
    up = paired_auc_difference(y, better, a, groups, n_boot=300, seed=1)
    down = paired_auc_difference(y, a, better, groups, n_boot=300, seed=1)
    assert up["ci_low"] > 0 and up["p_value"] < 0.01
    assert down["delta"] == pytest.approx(-up["delta"]) and down["ci_high"] == pytest.approx(-up["ci_low"])
    same = paired_auc_difference(y, a, a, groups, n_boot=100)
    assert same["delta"] == same["ci_low"] == same["ci_high"] == 0.0 and same["p_value"] == 1.0
    with pytest.raises(MetricError, match="both classes"):
        paired_auc_difference(np.zeros(10), a[:10], b[:10], groups[:10])


@pytest.mark.slow
def test_ensemble_is_one_run_folder_calibrated_on_held_out_rows(tmp_path: Path) -> None:
    from melanoma_utils.evaluation.calibrator_choice import fit_calibrator
    from melanoma_utils.runs.ensemble import EnsembleRun, build_ensemble
    from melanoma_utils.runs.run import Run, TrainConfig
    from melanoma_utils.runs.training import train_run

    df = _meta_table(160, "m", 0)
    a = train_run(df, TrainConfig(kind="meta", epochs=3, verbose=0), tmp_path / "a")
    b = train_run(df, TrainConfig(kind="meta", epochs=3, meta_units=(16,), verbose=0), tmp_path / "b")
    ens = build_ensemble([tmp_path / "a", tmp_path / "b"], tmp_path / "ens", metadata=df)
    loaded = Run.load(tmp_path / "ens")
    assert isinstance(loaded, EnsembleRun) and len(loaded.members) == 2
    assert (tmp_path / "ens" / "members" / "0" / "model.keras").is_file()  # self-contained
    val = pd.read_csv(tmp_path / "ens" / "val_predictions.csv")
    val_a = pd.read_csv(tmp_path / "a" / "val_predictions.csv").set_index("image_name").loc[val["image_name"]]
    val_b = pd.read_csv(tmp_path / "b" / "val_predictions.csv").set_index("image_name").loc[val["image_name"]]
    # the calibrator is fitted on the members' shared validation rows (never their training rows), on the mean raw output
    assert np.allclose(val["raw_probability"], (val_a["raw_probability"].to_numpy() + val_b["raw_probability"].to_numpy()) / 2)
    cal = fit_calibrator(val["target"], val["raw_probability"], val["patient_id"], seed=0)
    assert np.allclose(cal.transform(val["raw_probability"]), val["probability"])
    assert ens.config["calibration"]["prevalence"] == pytest.approx(val["target"].mean())
    # predict on new rows: the mean of the members' raw outputs, then the ensemble's calibrator
    new = _meta_table(40, "n", 5)
    raw = loaded.predict(new)
    assert np.allclose(raw, (a.predict(new) + b.predict(new)) / 2, atol=1e-6)
    frame = loaded.predict_frame(new, prevalence=0.0176)
    assert np.allclose(frame["probability"], loaded.calibrate(raw, 0.0176))
    assert "Ensemble member 1" in (tmp_path / "ens" / "MODEL_CARD.md").read_text()
    # members validated on other patients cannot share one calibrator; an existing folder is never replaced
    train_run(df, TrainConfig(kind="meta", epochs=1, seed=3, verbose=0), tmp_path / "c")
    with pytest.raises(ValueError, match="validated on other images"):
        build_ensemble([tmp_path / "a", tmp_path / "c"], tmp_path / "ens2")
    with pytest.raises(FileExistsError):
        build_ensemble([tmp_path / "a", tmp_path / "b"], tmp_path / "ens")
    # a damaged or crafted ensemble.json: one clear line naming the folder and the file, nothing read from outside
    from melanoma_utils.runs.run import RunDamaged

    spec = tmp_path / "ens" / "ensemble.json"
    spec.write_text('{"members": ["../../a"]}')
    with pytest.raises(RunDamaged, match="does not match its record.json: ensemble.json"):  # the record sees it first
        Run.load(tmp_path / "ens")
    (tmp_path / "ens" / "record.json").unlink()  # an ensemble from before records: the reader's own checks
    for text, says in (('{"members": ["../../a"]}', "names members outside the folder"),
                       ('{"members": 3}', "no list of member folders"), ('{"members": [', "ensemble.json (")):
        spec.write_text(text)
        with pytest.raises(RunDamaged, match=f"run folder {tmp_path / 'ens'} is damaged: .*{re.escape(says)}"):
            Run.load(tmp_path / "ens")
    # one finish step: the ensemble's report uses the members' bootstrap size, and a failure while writing leaves no
    # folder, half or whole, and no staging folder beside it (written under a temporary name, moved in complete)
    assert ens.config["validation_n_boot"] == a.train_config.n_boot == a.config["validation_n_boot"]
    import melanoma_utils.runs.finish as finish_module

    def broken_card(*args, **kwargs):
        raise OSError("disk full while writing the model card")

    before = set(tmp_path.iterdir())
    original = finish_module.model_card
    finish_module.model_card = broken_card
    try:
        with pytest.raises(OSError, match="disk full"):
            build_ensemble([tmp_path / "a", tmp_path / "b"], tmp_path / "ens3")
    finally:
        finish_module.model_card = original
    assert not (tmp_path / "ens3").exists()
    assert {p.name for p in set(tmp_path.iterdir()) - before} <= {".ens3.lock"}  # no partial folder left


def test_paper_comparison_table_scores_each_run_at_its_own_threshold() -> None:
    from melanoma_utils.reports.paper import ISIC2020_PREVALENCE, paper_comparison_table

    oof = pd.DataFrame({"image_name": [f"i{i}" for i in range(8)], "patient_id": [f"p{i}" for i in range(8)],
                        "target": [1, 1, 0, 0, 0, 0, 0, 0], "variant": "fusion, clinical",
                        "probability": [0.9, 0.3, 0.35, 0.1, 0.1, 0.1, 0.1, 0.1],
                        "threshold": [0.25] * 4 + [0.5] * 4})  # two folds with their own thresholds
    t = paper_comparison_table(oof, ["fusion, clinical"], n_boot=50).set_index("metric")
    # decided positive: 0.9 (>=0.25), 0.3 (>=0.25), 0.35 (>=0.25); the rest negative -> tp 2, fp 1, tn 5
    assert t.loc["recall", "fusion, clinical"] == 1.0 and t.loc["precision", "fusion, clinical"] == pytest.approx(2 / 3)
    assert t.loc["accuracy", "fusion, clinical"] == pytest.approx(7 / 8) and t.loc["f1", "fusion, clinical"] == pytest.approx(0.8)
    assert t.loc["specificity", "fusion, clinical"] == pytest.approx(5 / 6)  # tn 5 of 6 benign
    assert t.loc["accuracy", "paper (fusion)"] == 0.945 and np.isnan(t.loc["roc_auc", "paper (fusion)"])
    assert (t.loc["recall", "paper (fusion)"], t.loc["specificity", "paper (fusion)"]) == (0.938, 0.952)
    assert t.loc["accuracy", "always benign, these data"] == 0.75
    assert t.loc["accuracy", "always benign, ISIC 2020"] == pytest.approx(1 - ISIC2020_PREVALENCE)


def test_preprocessing_table_gives_paired_deltas_against_no_transform() -> None:
    from melanoma_utils.study.experiments import preprocessing_table, preprocessing_variants

    assert preprocessing_variants(["none", "luv"], {"tta": 1}) == {"preprocess: none": {"preprocess": "none", "tta": 1},
                                                                  "preprocess: luv": {"preprocess": "luv", "tta": 1}}
    rng = np.random.default_rng(0)
    n = 300
    y = (rng.random(n) < 0.3).astype(int)
    base = y + rng.normal(0, 1, n)
    frames, folds = [], []
    for name, score in (("none", base), ("luv", base + 2 * y)):  # luv separates better on every image
        frames.append(pd.DataFrame({"image_name": np.arange(n), "patient_id": np.arange(n) // 3, "target": y,
                                    "diagnosis": np.where(y == 1, "melanoma", "nevus"), "fold": np.arange(n) % 2,
                                    "variant": f"preprocess: {name}", "probability": score}))
        for k in (0, 1):
            m = np.arange(n) % 2 == k
            folds.append({"variant": f"preprocess: {name}", "fold": k, "roc_auc": roc_auc(y[m], score[m]),
                          "auc_melanoma_vs_nevus": roc_auc(y[m], score[m])})
    t = preprocessing_table(pd.DataFrame(folds), pd.concat(frames), ["none", "luv"], n_boot=100).set_index("preprocess")
    assert t.loc["none", "delta_auc"] == 0.0
    assert t.loc["luv", "delta_auc"] == pytest.approx(t.loc["luv", "roc_auc"] - t.loc["none", "roc_auc"])
    assert t.loc["luv", "ci_low"] > 0 and t.loc["luv", "mvn_delta_auc"] > 0


def test_add_ensemble_averages_the_members_per_image() -> None:
    from melanoma_utils.study.experiments import add_ensemble

    def part(variant, probs):
        return pd.DataFrame({"image_name": ["a", "b", "c", "d"], "patient_id": ["p", "q", "r", "s"], "target": [1, 0, 1, 0],
                             "diagnosis": ["melanoma", "nevus", "melanoma", "nevus"], "fold": [0, 0, 1, 1],
                             "variant": variant, "probability": probs, "threshold": [0.2, 0.2, 0.4, 0.4]})

    oof = pd.concat([part("x", [0.9, 0.8, 0.2, 0.1]), part("y", [0.5, 0.0, 0.6, 0.9])], ignore_index=True)
    per_fold = pd.DataFrame({"variant": ["x", "y"], "fold": [0, 0]})
    pf, o = add_ensemble(per_fold, oof, ["x", "y"], "ens")
    e = o[o["variant"] == "ens"].set_index("image_name")
    assert e["probability"].tolist() == pytest.approx([0.7, 0.4, 0.4, 0.5]) and e["threshold"].tolist() == [0.2, 0.2, 0.4, 0.4]
    assert pf[pf["variant"] == "ens"]["roc_auc"].tolist() == [1.0, 0.0]
    assert add_ensemble(per_fold, oof, ["x", "absent"], "ens")[1] is oof  # a member that did not run: unchanged


def test_backbone_rows_repeat_the_external_fusion_at_each_native_size() -> None:
    from melanoma_utils.models.train_config import TrainConfig
    from melanoma_utils.study.experiments import EXTERNAL_VARIANTS, backbone_ensemble, backbone_variants

    rows = backbone_variants(["efficientnetlite1", "efficientnetlite2"])
    assert list(rows) == ["fusion, clinical + external data, Lite1 240 px", "fusion, clinical + external data, Lite2 260 px"]
    lite2 = rows["fusion, clinical + external data, Lite2 260 px"]
    assert lite2["external"] is True and lite2["features"] == "clinical" and lite2["kind"] == "fusion"
    # the overrides on top of a 224 px notebook config resolve to the backbone's own size
    cfg = TrainConfig.from_dict({**TrainConfig(image_size=224).__dict__, **{k: v for k, v in lite2.items() if k != "external"}})
    assert (cfg.backbone, cfg.image_size, cfg.backbone_weights) == ("efficientnetlite2", 260, "imagenet")
    assert EXTERNAL_VARIANTS["fusion, clinical + external data"].get("backbone") is None  # the base row is untouched
    name, members = backbone_ensemble(["efficientnetlite2"])
    assert name == "ensemble: Lite0 + Lite2 (fusion, clinical + external data)"
    assert members == ["fusion, clinical + external data", "fusion, clinical + external data, Lite2 260 px"]
    with pytest.raises(ValueError, match="efficientnetlite0/1/2"):
        backbone_variants(["resnet50"])
