"""The per-population selection rule of :mod:`melanoma_utils.study.finetune` and what the generated blocks of README
and docs/results.md say of its tables (the decision, the follow-up rule, the paper's Table 3, the fine-tuning
histories, the augmentation shift)."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pandas as pd

from melanoma_utils.study.finetune import chosen_candidate, finetune_verdict


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
