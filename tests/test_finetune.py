"""End-to-end fine-tuning on a CPU (the ``lite0-ft128`` recipe), source weighting that gives every source the same
total weight, and the per-population selection rule of :mod:`melanoma_utils.study.finetune`."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from melanoma_utils.data.confounds import source_balanced_weights
from melanoma_utils.data.isic import load_dataset
from melanoma_utils.models.presets import FINETUNE_PRESET
from melanoma_utils.runs.run import Run, TrainConfig
from melanoma_utils.study.finetune import chosen_candidate, finetune_verdict


@pytest.fixture(autouse=True)
def _user_cache(tmp_path_factory, monkeypatch):
    monkeypatch.setenv("MELANOMA_UTILS_CACHE", str(tmp_path_factory.getbasetemp() / "user-cache-finetune"))


def test_sources_weighting_gives_every_source_the_same_total_and_keeps_its_melanoma_share() -> None:
    # copy a: 6 rows (2 malignant); copy b: 2 benign rows; ham: 12 rows (3 malignant)
    groups = ["a"] * 6 + ["b"] * 2 + ["ham"] * 12
    y = [1, 1, 0, 0, 0, 0] + [0, 0] + [1, 1, 1] + [0] * 9
    w = source_balanced_weights(y, groups, "sources")
    g, yy = np.array(groups), np.array(y)
    totals = {k: w[g == k].sum() for k in ("a", "b", "ham")}
    assert totals == pytest.approx({"a": 20 / 3, "b": 20 / 3, "ham": 20 / 3})  # n / G each, summing to n = 20
    assert w.sum() == pytest.approx(len(y))
    for k, share in (("a", 2 / 6), ("ham", 3 / 12)):  # the weighted melanoma share of a source is its own
        m = g == k
        assert w[m & (yy == 1)].sum() / w[m].sum() == pytest.approx(share)
    assert (w[g == "b"] > 0).all()  # a one-class source keeps its rows (unlike balanced)


def test_sources_weighting_reaches_the_training_rows_and_the_model_card(tiny_csv: Path) -> None:
    from melanoma_utils.evaluation.modelcard import _source_weighting_lines
    from melanoma_utils.runs.source_weights import apply_source_weighting

    df = load_dataset(tiny_csv).frame
    df = df.assign(source=np.where(np.arange(len(df)) < 18, "isic2020", "ham10000"))
    cfg = TrainConfig.from_preset("test", source_weighting="sources", source_column="auto")
    train, _, facts = apply_source_weighting(df, df, cfg, external=True)
    assert facts["column"] == "source" and facts["weighting"] == "sources"  # no copy column: the data sets
    sums = train.groupby("source")["sample_weight"].sum()
    assert sums["isic2020"] == pytest.approx(sums["ham10000"]) == pytest.approx(len(df) / 2)
    line = _source_weighting_lines(facts)[0]
    assert "isic2020 18 rows" in line and "ham10000 6 rows" in line and line.count("50% of the training weight") == 2


def test_cosine_schedule_decays_to_zero_and_constant_stays() -> None:
    from melanoma_utils.runs.compiling import learning_rate_schedule

    s = learning_rate_schedule(1e-3, 100, "cosine")
    assert float(s(0)) == pytest.approx(1e-3) and float(s(50)) == pytest.approx(5e-4, rel=1e-3)
    assert float(s(100)) == pytest.approx(0.0, abs=1e-9)
    assert learning_rate_schedule(1e-3, 100, "constant") == 1e-3
    with pytest.raises(ValueError, match="steps"):
        learning_rate_schedule(1e-3, None, "cosine")


def test_warmup_cosine_rises_over_its_warmup_steps_then_decays_to_zero() -> None:
    from melanoma_utils.runs.compiling import learning_rate_schedule

    s = learning_rate_schedule(1e-3, 100, "warmup-cosine", warmup_steps=20)
    assert float(s(0)) == pytest.approx(0.0, abs=1e-12)  # a fresh optimizer starts at 0, not at the full rate
    assert float(s(10)) == pytest.approx(5e-4, rel=1e-3) and float(s(20)) == pytest.approx(1e-3, rel=1e-3)
    assert float(s(60)) == pytest.approx(5e-4, rel=1e-3)  # half-way through the 80 decay steps
    assert float(s(100)) == pytest.approx(0.0, abs=1e-9)
    with pytest.raises(ValueError, match="needs the number of steps"):
        learning_rate_schedule(1e-3, 0, "warmup-cosine", warmup_steps=5)
    assert TrainConfig(finetune_schedule="warmup-cosine").finetune_schedule == "warmup-cosine"


def test_finetune_options_are_checked() -> None:
    with pytest.raises(ValueError, match="finetune_schedule"):
        TrainConfig(finetune_schedule="step")
    with pytest.raises(ValueError, match="label_smoothing"):
        TrainConfig(label_smoothing=0.5)
    cfg = TrainConfig.from_preset(FINETUNE_PRESET)
    assert (cfg.finetune, cfg.image_size, cfg.finetune_schedule, cfg.source_weighting) == ("all", 128, "cosine", "auto")


def _table(**deltas: tuple[float, float, float]) -> pd.DataFrame:
    """One base row and one candidate row with the given (delta, ci_low, ci_high) per endpoint."""
    ends = {"within_copy_a": (0.02, 0.005, 0.04), "mvn_within_copy_a": (0.0, -0.03, 0.03),
            "holdout_ham10000": (0.03, 0.01, 0.05), "holdout_isic2017": (0.01, -0.02, 0.04), **deltas}
    rows = [{"candidate": "base", "base": "base"}, {"candidate": "c", "base": "base"}]
    for e, (d, lo, hi) in ends.items():
        rows[0].update({f"delta_{e}": 0.0, f"delta_{e}_ci_low": 0.0, f"delta_{e}_ci_high": 0.0})
        rows[1].update({f"delta_{e}": d, f"delta_{e}_ci_low": lo, f"delta_{e}_ci_high": hi})
    return pd.DataFrame(rows)


def test_selection_rule_protects_every_population() -> None:
    assert list(finetune_verdict(_table())) == ["base", "wins"]
    # buying the other populations by losing ISIC 2020 within copy a: no win
    lost = finetune_verdict(_table(within_copy_a=(-0.03, -0.05, -0.01)))
    assert lost.iloc[1] == "does not win: loses within_copy_a"
    # a clear loss on one external source is a loss, whatever the gains elsewhere
    assert finetune_verdict(_table(holdout_isic2017=(-0.05, -0.08, -0.02))).iloc[1] == "does not win: loses holdout_isic2017"
    assert finetune_verdict(_table(within_copy_a=(0.0, -0.01, 0.01))).iloc[1] == "does not win: no gain within copy a"
    none_clear = _table(within_copy_a=(0.01, -0.01, 0.03), holdout_ham10000=(0.01, -0.01, 0.03))
    assert finetune_verdict(none_clear).iloc[1] == "does not win: no interval above 0"
    assert finetune_verdict(_table(holdout_ham10000=(np.nan, np.nan, np.nan))).iloc[1].endswith("not scored")
    t = _table()
    t["verdict"] = finetune_verdict(t)
    assert chosen_candidate(t) == "c"
    t.loc[1, "verdict"] = "does not win: no gain within copy a"
    assert chosen_candidate(t) is None


def _ft_cfg(**kw) -> TrainConfig:
    base = dict(kind="fusion", backbone="efficientnetlite0", backbone_weights="imagenet", image_size=32, epochs=2,
                batch_size=8, embedding_views=1, head_units=(8,), meta_units=(4,), verbose=0, finetune="all",
                finetune_epochs=2, finetune_learning_rate=1e-3, finetune_schedule="warmup-cosine", label_smoothing=0.1,
                patience=50, seed=3)
    return TrainConfig(**{**base, **kw})


@pytest.mark.slow
def test_finetuned_run_saves_what_it_learned_and_a_killed_finetune_resumes_to_the_same_model(
        tiny_csv: Path, tmp_path: Path, monkeypatch, capsys) -> None:
    from melanoma_utils.runs import resume
    from melanoma_utils.runs.training import train_run

    df = load_dataset(tiny_csv).frame
    whole = train_run(df, _ft_cfg(), tmp_path / "whole")
    ft = whole.config["stages"]["finetune"]
    assert ft["epochs"] == 2 and ft["schedule"] == "warmup-cosine" and ft["images_per_second"] > 0
    # the learning rate rose over the first of the two fine-tuning epochs: half the steps the optimizer took
    opt = whole.model.optimizer
    assert opt._learning_rate.warmup_steps == int(opt.iterations.numpy()) // 2 > 0
    # the saved model predicts what the model in memory predicted (the fine-tuned backbone was saved, not ImageNet's)
    in_memory = whole.model.predict({"image": _images(whole, df), "meta": whole.encoder.transform(df)}, verbose=0)
    import warnings

    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        saved = Run.load(tmp_path / "whole")  # quietly: the fine-tuning optimizer is not restored for prediction
    assert not [w for w in caught if "optimizer" in str(w.message)], [str(w.message) for w in caught]
    np.testing.assert_allclose(saved.model.predict({"image": _images(saved, df), "meta": saved.encoder.transform(df)},
                                                   verbose=0), in_memory, atol=1e-5)
    from melanoma_utils.models.fusion import build_backbone

    imagenet = build_backbone("efficientnetlite0", 32, "imagenet").get_layer("stem_conv").get_weights()[0]
    assert not np.allclose(saved.model.get_layer("backbone").get_layer("stem_conv").get_weights()[0], imagenet)

    # kill the fine-tune after its first epoch was saved, then train again into the same folder: it resumes
    real_save = resume.ResumeState._save

    def save_then_die(self, epoch, seconds):
        real_save(self, epoch, seconds)
        if self.phase == "finetune":
            raise KeyboardInterrupt("killed after a fine-tuning epoch")

    monkeypatch.setattr(resume.ResumeState, "_save", save_then_die)
    with pytest.raises(KeyboardInterrupt):
        train_run(df, _ft_cfg(), tmp_path / "resumed")
    monkeypatch.setattr(resume.ResumeState, "_save", real_save)
    capsys.readouterr()
    resumed = train_run(df, _ft_cfg(), tmp_path / "resumed")
    assert "resuming fine-tuning after epoch" in capsys.readouterr().out  # continued, not started again
    for a, b in zip(resumed.model.get_weights(), whole.model.get_weights(), strict=True):
        np.testing.assert_allclose(a, b, atol=1e-5)
    np.testing.assert_allclose(resumed.predict(df), whole.predict(df), atol=1e-5)


def _images(run: Run, df: pd.DataFrame) -> np.ndarray:
    from melanoma_utils.pipeline.feeds import load_image_array

    return load_image_array(list(df["image_path"]), run.config["train"]["image_size"], run.config["preprocess"])


def test_readme_blocks_render_the_selection_and_the_decision_it_implies(tmp_path: Path) -> None:
    from melanoma_utils.reports.doc_selection import finetune_decision, finetune_selection_table

    t = _table()
    t["verdict"] = finetune_verdict(t)
    for e in ("within_copy_a", "mvn_within_copy_a", "holdout_ham10000", "holdout_isic2017"):
        t[e], t[f"{e}_ci_low"], t[f"{e}_ci_high"] = [0.80, 0.82], [0.77, 0.79], [0.83, 0.85]
    t["overall"], t["delta_overall"], t["folds"], t["train_seconds_per_run"] = [0.85, 0.84], [0.0, -0.01], 2, [60.0, 1200.0]
    t.to_csv(tmp_path / "table_finetune_selection.csv", index=False)
    pd.DataFrame({"command": ["train --external"], "cache": ["cold (derived)"], "wall_seconds": [1000.0]}).to_csv(
        tmp_path / "table_train_timings.csv", index=False)
    table = finetune_selection_table(tmp_path)
    assert "held-out HAM10000 lesions" in table and "held-out ISIC 2017 lesions" in table
    assert "2 patient-grouped folds of the ISIC subset (every image predicted once" in table
    t.assign(folds=5, run_folds=2).to_csv(tmp_path / "table_finetune_5fold.csv", index=False)  # 2 of 5 folds ran
    assert ("2 of 5 patient-grouped folds of the ISIC subset (each model trained and validated on 80% of the patients; the images of "
            "those 2 folds, about 40% of the patients, predicted once") in finetune_selection_table(tmp_path, "table_finetune_5fold.csv")
    assert "| c | 0.820 (+0.020, +0.005 to +0.040) |" in table and "| 20 min | wins |" in table and "| 60 s | base |" in table
    decision = finetune_decision(tmp_path)
    assert "**c** wins" in decision and "1.2× today's cold" in decision and "within the 10×" in decision
    t.loc[1, "verdict"] = "does not win: no gain within copy a"
    t.to_csv(tmp_path / "table_finetune_selection.csv", index=False)
    assert "no candidate wins" in finetune_decision(tmp_path)


def test_paper_table3_shows_all_six_paper_rows_each_with_our_like_for_like_rows(tmp_path: Path) -> None:
    from melanoma_utils.reports.doc_selection import paper_table3

    pd.DataFrame([
        {"protocol": "frozen", "backbone": "efficientnetlite0", "model": "fusion", "image_size": 224, "evaluation": "cv",
         "roc_auc": 0.79, "roc_auc_ci_low": 0.75, "roc_auc_ci_high": 0.82, "accuracy": 0.57, "sensitivity": 0.87,
         "specificity": 0.50, "f1": 0.42, "note": ""},
        {"protocol": "frozen", "backbone": "vgg16", "model": "fusion", "note": "not run: could not download (x)"},
        {"protocol": "frozen", "backbone": "vgg16", "model": "image", "note": "an image-only row is not like-for-like"},
    ]).to_csv(tmp_path / "table3_backbones.csv", index=False)
    text = paper_table3(tmp_path)
    paper_rows = [line for line in text.splitlines() if line.startswith("| **paper:")]
    assert [r.split("|")[1].strip() for r in paper_rows] == [
        "**paper: Proposed Model**", "**paper: VGG-16**", "**paper: ResNet-50**", "**paper: MobileNetV2**",
        "**paper: EfficientNet**", "**paper: DenseNet-121**"]
    assert "| 0.945 | 0.938 | 0.952 | 0.94 |" in paper_rows[0] and "not stated" in paper_rows[0]
    assert text.count("ours: efficientnetlite0") == 2  # beside the proposed model and beside "EfficientNet"
    assert "| ours: vgg16 | frozen | — | not run: could not download |" in text and "image-only" not in text


def test_an_ensemble_winner_is_the_recommended_recipe_not_trains_default(tmp_path: Path) -> None:
    from melanoma_utils.reports.doc_selection import finetune_decision
    from melanoma_utils.study.finetune import FINETUNE_BASE, FINETUNE_ENSEMBLES

    name, (base, member) = next(iter(FINETUNE_ENSEMBLES.items()))
    assert base == FINETUNE_BASE
    t = pd.concat([_table(), _table().iloc[[1]]], ignore_index=True)
    t["candidate"] = [FINETUNE_BASE, member, name]
    t["base"] = FINETUNE_BASE
    t.loc[1, "delta_within_copy_a"] = -0.01  # the member alone does not win
    t["verdict"] = finetune_verdict(t)
    t["train_seconds_per_run"] = [70.0, 1020.0, float("nan")]
    t.to_csv(tmp_path / "table_finetune_selection.csv", index=False)
    pd.DataFrame({"command": ["train --external"], "cache": ["cold (derived)"], "wall_seconds": [1270.0]}).to_csv(
        tmp_path / "table_train_timings.csv", index=False)
    text = finetune_decision(tmp_path)
    assert f"**{name}** wins" in text and "plain default stays the frozen model (`lite0-224`)" in text
    assert "plus one fine-tuned run (~17 min" in text and "about 1.8× today's, within the 10×" in text
    (tmp_path / "table_train_timings.csv").unlink()
    assert "cost against today's cold `train` is not measured" in finetune_decision(tmp_path)


def test_a_winner_that_does_not_win_on_the_confirmation_folds_is_not_recommended(tmp_path: Path) -> None:
    from melanoma_utils.reports.doc_selection import finetune_decision
    from melanoma_utils.study.finetune import FINETUNE_BASE, FINETUNE_ENSEMBLES

    name, (_, member) = next(iter(FINETUNE_ENSEMBLES.items()))
    t = pd.concat([_table(), _table().iloc[[1]]], ignore_index=True)
    t["candidate"], t["base"] = [FINETUNE_BASE, member, name], FINETUNE_BASE
    t["train_seconds_per_run"], t["folds"] = [70.0, 1020.0, float("nan")], 2
    t.loc[1, "delta_within_copy_a"] = -0.01
    t["verdict"] = finetune_verdict(t)
    t.to_csv(tmp_path / "table_finetune_selection.csv", index=False)
    assert f"**{name}** wins" in finetune_decision(tmp_path) and "not a recommendation" not in finetune_decision(tmp_path)
    confirm = t.copy()
    confirm.loc[2, ["delta_within_copy_a", "delta_within_copy_a_ci_low", "delta_within_copy_a_ci_high"]] = [-0.011, -0.027, 0.004]
    confirm["verdict"] = finetune_verdict(confirm)
    confirm.to_csv(tmp_path / "table_finetune_confirm.csv", index=False)
    text = finetune_decision(tmp_path)
    assert "On 2 other patient-grouped folds" in text and "(within copy a -0.011, -0.027 to +0.004; verdict: does not win" in text
    assert "is not a recommendation: `train`'s default (`lite0-224`" in text
    confirm["verdict"] = "wins"  # confirmed: the decision stands
    confirm.to_csv(tmp_path / "table_finetune_confirm.csv", index=False)
    assert "not a recommendation" not in finetune_decision(tmp_path)


def test_the_finetune_selection_runs_one_fold_assignment() -> None:
    """Repeated fold assignments are refused before anything trains (some folds of one assignment are allowed)."""
    from melanoma_utils.study.finetune import finetune_selection
    from melanoma_utils.study.plan import FoldPlan

    held = {"ham10000": pd.DataFrame({"image_name": ["x"]})}
    with pytest.raises(ValueError, match="one fold assignment"):
        finetune_selection(pd.DataFrame(), pd.DataFrame({"a": [1]}), held, "unused", plan=FoldPlan(n_splits=2, repeats=3))


def test_round3_augmentation_is_the_reference_s_milder_one() -> None:
    """Round 3 trains on images closer to the ones it is judged on: dihedral views and small contrast/brightness
    changes, no random crop, saturation, hue or greyscale (the names every candidate's options are checked against)."""
    from melanoma_utils.pipeline.augment import build_augmenter
    from melanoma_utils.study.finetune import FINETUNE_ROUND3, MILD_AUGMENTATION
    from melanoma_utils.study.variants import check_variants

    kinds = {type(layer).__name__ for layer in build_augmenter(64, **MILD_AUGMENTATION).layers_}
    assert kinds == {"RandomFlip", "RandomTranspose", "RandomColorJitter"}
    default = {type(layer).__name__ for layer in build_augmenter(64).layers_}
    assert {"RandomCrop", "RandomGrayscale"} <= default
    (fields,) = FINETUNE_ROUND3.values()
    assert fields["augment_config"] == MILD_AUGMENTATION and fields["finetune"] == "all" and fields["source_weighting"] == "none"
    assert check_variants(list(FINETUNE_ROUND3), FINETUNE_ROUND3, "finetune candidates") == list(FINETUNE_ROUND3)


def test_round4_is_the_recipe_with_only_its_learning_rate_warmed_up() -> None:
    """Round 4 changes one thing against the unweighted fine-tune of the confirmation: the schedule; the round's
    candidate and its ensemble with the base are the names the selection accepts."""
    from melanoma_utils.study.finetune import FINETUNE_BASE, FINETUNE_CANDIDATES, FINETUNE_ROUND4, FINETUNE_ROUND4_ENSEMBLES

    (name, fields), = FINETUNE_ROUND4.items()
    unweighted = FINETUNE_CANDIDATES["fine-tuned 128 px"]
    same = lambda d: {k: v for k, v in d.items() if k != "finetune_schedule"}  # noqa: E731
    assert same(fields) == same(unweighted)
    assert (unweighted["finetune_schedule"], fields["finetune_schedule"]) == ("cosine", "warmup-cosine")
    assert TrainConfig(**fields).finetune_schedule == "warmup-cosine"
    assert list(FINETUNE_ROUND4_ENSEMBLES.values()) == [(FINETUNE_BASE, name)]


def test_the_augmentation_shift_block_reads_its_table(tmp_path: Path) -> None:
    from melanoma_utils.reports.doc_selection import augmentation_shift_table

    assert "Not measured yet" in augmentation_shift_table(tmp_path)
    pd.DataFrame({"setting": ["none (the images as judged)", "default"], "roc_auc": [0.8104, 0.7126],
                  "mean_abs_change": [0.0, 0.1581], "images": 400, "malignant": 80, "draws": 3,
                  "run": "finetune_confirm/base/fold0"}).to_csv(tmp_path / "table_augmentation_shift.csv", index=False)
    text = augmentation_shift_table(tmp_path)
    assert "| default | 0.713 | 0.158 |" in text and "(finetune_confirm/base/fold0) on 400 of its held-out images (80 malignant)" in text


def test_a_followup_winner_is_recommended_only_after_winning_again_on_the_larger_folds(tmp_path: Path) -> None:
    from melanoma_utils.reports.doc_selection import finetune_followup_decision

    assert "Not measured yet" in finetune_followup_decision(tmp_path)

    def table(verdict: str, delta: tuple[float, float, float], name: str = "c") -> pd.DataFrame:
        t = _table(within_copy_a=delta)
        t["candidate"] = ["base", name]
        t["verdict"] = ["base", verdict]
        return t

    table("does not win: no gain within copy a", (-0.01, -0.03, 0.01)).to_csv(
        tmp_path / "table_finetune_confirm_posthoc.csv", index=False)
    text = finetune_followup_decision(tmp_path)
    assert "c: does not win: no gain within copy a (within copy a -0.010, -0.030 to +0.010)" in text
    assert "No candidate wins: `train`'s frozen default stays" in text
    table("wins", (0.02, 0.005, 0.04), "r3").to_csv(tmp_path / "table_finetune_round3.csv", index=False)
    assert "**r3** goes on to the larger folds: not run yet" in finetune_followup_decision(tmp_path)
    table("does not win: loses within_copy_a", (-0.03, -0.05, -0.01), "r3").to_csv(
        tmp_path / "table_finetune_5fold.csv", index=False)
    text = finetune_followup_decision(tmp_path)
    assert "there it does not win (does not win: loses within_copy_a; within copy a -0.030" in text
    assert "frozen default stays the recommended model" in text
    table("wins", (0.01, 0.001, 0.02), "r3").to_csv(tmp_path / "table_finetune_5fold.csv", index=False)
    assert "it wins there too (within copy a +0.010, +0.001 to +0.020) and is the recommended recipe" in \
        finetune_followup_decision(tmp_path)
    # two winners: the larger within-copy-a gain on the confirmation folds goes on; the larger folds ran the other one
    table("wins", (0.03, 0.01, 0.05), "p").to_csv(tmp_path / "table_finetune_confirm_posthoc.csv", index=False)
    text = finetune_followup_decision(tmp_path)
    assert "**p** goes on to the larger folds: not run yet" in text and "r3: wins" in text
    # round 4's table is read too: a larger gain there is the one that goes on
    table("wins", (0.05, 0.02, 0.08), "r4").to_csv(tmp_path / "table_finetune_round4.csv", index=False)
    text = finetune_followup_decision(tmp_path)
    assert "**r4** goes on to the larger folds: not run yet" in text and "p: wins" in text


def test_finetune_histories_split_warmup_from_finetuning_and_the_note_counts_them(tmp_path: Path) -> None:
    """Each fine-tuned fold run's history is cut where its stages say the warm-up ended; a frozen run (no fine-tuning
    stage) is skipped."""
    import json

    from melanoma_utils.reports.doc_selection import finetune_histories_note
    from melanoma_utils.study.finetune import finetune_histories

    def run(name: str, losses: list[float], head_epochs: int | None) -> None:
        d = tmp_path / "runs" / name
        d.mkdir(parents=True)
        (d / "model.keras").write_bytes(b"x")
        stages = {"head": {"epochs": head_epochs}, **({"finetune": {"epochs": 2}} if head_epochs else {})}
        (d / "config.json").write_text(json.dumps({"stages": stages}))
        pd.DataFrame({"epoch": range(len(losses)), "val_loss": losses, "val_auc": 0.8}).to_csv(d / "history.csv", index=False)

    run("ft/fold0", [0.7, 0.6, 2.5, 0.65], 2)  # rose after the warm-up and never got back below 0.6
    run("ft/fold1", [0.7, 0.5, 0.55, 0.45], 2)  # rose a little, then improved on the warm-up
    run("frozen/fold0", [0.7, 0.6], None)
    h = finetune_histories(tmp_path / "runs")
    assert list(h["run"]) == ["ft/fold0", "ft/fold1"]
    assert list(h["warmup_best_val_loss"]) == [0.6, 0.5] and list(h["first_finetune_val_loss"]) == [2.5, 0.55]
    assert list(h["best_finetune_epoch"]) == [2, 2] and list(h["best_finetune_val_loss"]) == [0.65, 0.45]
    h.assign(runs="confirm").to_csv(tmp_path / "table_finetune_histories.csv", index=False)
    assert ("`confirm/ft`: the first fine-tuning epoch's validation loss above the warm-up's best in 2 of 2 fold runs "
            "(median 1.52 against 0.55), no fine-tuning epoch back below it in 1.") in finetune_histories_note(tmp_path)
    h.assign(runs="confirm", label_smoothing=[0.1, 0.0]).to_csv(tmp_path / "table_finetune_histories.csv", index=False)
    text = finetune_histories_note(tmp_path)  # a smoothed loss is higher by construction: that run is left out
    assert "above the warm-up's best in 1 of 1 fold runs" in text and "1 fold runs with label smoothing left out" in text
    h.iloc[:0].assign(runs="x").to_csv(tmp_path / "table_finetune_histories.csv", index=False)
    assert finetune_histories_note(tmp_path).startswith("No fine-tuned fold run")


def test_some_folds_of_one_assignment_are_trained_scored_and_counted(monkeypatch) -> None:
    """With ``plan.folds``, the held-out external lesions are scored by the fold runs that exist (not every fold of the
    assignment: the others were never trained) and the table says how many ran."""
    from melanoma_utils.study import finetune
    from melanoma_utils.study.plan import FoldPlan

    seen = {}
    oof = pd.DataFrame({"variant": [finetune.FINETUNE_BASE, "fine-tuned 128 px"]})
    monkeypatch.setattr(finetune, "cross_validate", lambda df, cfg, runs, variants, plan, external: (pd.DataFrame(), oof))

    def scores(runs_dir, names, folds, holdout, run_folder):
        seen["folds"] = folds
        return pd.DataFrame(columns=["image_name", "patient_id", "target", "diagnosis", "variant", "probability"])

    monkeypatch.setattr(finetune, "holdout_scores", scores)
    monkeypatch.setattr(finetune, "summarise_cv", lambda *a, **k: None)
    monkeypatch.setattr(finetune, "paired_contrasts", lambda *a, **k: None)
    monkeypatch.setattr(finetune, "selection_table", lambda *a, **k: _table().assign(
        candidate=[finetune.FINETUNE_BASE, "fine-tuned 128 px"], base=finetune.FINETUNE_BASE))
    monkeypatch.setattr(finetune, "per_source_holdout", lambda table, *a, **k: table)
    held = {"ham10000": pd.DataFrame({"image_name": ["h1"], "source": ["ham10000"]})}
    table = finetune.finetune_selection(pd.DataFrame(), pd.DataFrame({"a": [1]}), held, "runs", ["fine-tuned 128 px"],
                                        plan=FoldPlan(n_splits=5, folds=(0, 1)), ensembles={})
    assert seen["folds"] == [0, 1]  # not range(5): folds 2-4 have no runs
    assert list(table["folds"]) == [5, 5] and list(table["run_folds"]) == [2, 2]
