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
