"""Typed variant names: a misspelt variant in a parameter is an error naming the known ones, never a dropped row."""

from __future__ import annotations

import pandas as pd
import pytest

from melanoma_utils.runs.run import TrainConfig
from melanoma_utils.study.experiments import ABLATION_VARIANTS, repeated_cross_validate, run_folder_name
from melanoma_utils.study.plan import FoldPlan
from melanoma_utils.study.variants import Variant, check_variants


def test_a_variant_is_its_label_everywhere() -> None:
    assert Variant.FUSION_CLINICAL == "fusion, clinical" and f"{Variant.IMAGE}" == str(Variant.IMAGE) == "image only"
    assert {"fusion, clinical": 1}[Variant.FUSION_CLINICAL] == 1  # str-keyed tables find it
    assert run_folder_name(Variant.FUSION_PAPER) == "fusion_paper__width_height"  # the folder names earlier renders used
    frame = pd.DataFrame({"variant": [Variant.IMAGE, "image only"]})
    assert frame.groupby("variant").size().tolist() == [2] and "Variant" not in frame.to_csv()


def test_an_unknown_variant_name_is_refused_with_the_known_ones(tmp_path) -> None:
    assert check_variants(["image only"], ABLATION_VARIANTS, "repeat_variants") == ["image only"]
    with pytest.raises(ValueError, match=r"repeat_variants: unknown variant\(s\) 'fusion, clinicl'; known: .*'fusion, clinical'"):
        check_variants(["fusion, clinicl"], ABLATION_VARIANTS, "repeat_variants")
    # the experiment refuses before it trains anything (a typo used to drop the variant from the repeats silently)
    with pytest.raises(ValueError, match="unknown variant"):
        repeated_cross_validate(pd.DataFrame(), TrainConfig(kind="meta"), tmp_path, dict(ABLATION_VARIANTS),
                                FoldPlan(repeats=2), repeat_variants=["imge only"])
    assert not any(tmp_path.iterdir())


def test_a_fold_plan_refuses_what_cannot_run_and_says_which_folds_and_repeats_run() -> None:
    plan = FoldPlan(5, folds=[0, 3], repeats=3)
    assert plan.folds == (0, 3) and plan.fold_list == [0, 3] and plan.run_repeats == 1  # some folds: the study's only
    assert FoldPlan(4, repeats=3).fold_list == [0, 1, 2, 3] and FoldPlan(4, repeats=3).run_repeats == 3
    for kw, field in (({"n_splits": 1}, "n_splits"), ({"repeats": 0}, "repeats"), ({"n_boot": 0}, "n_boot"),
                      ({"folds": [5]}, "folds"), ({"folds": []}, "folds")):
        with pytest.raises(ValueError, match=field):
            FoldPlan(**kw)


def test_repeated_cross_validation_runs_the_plans_assignments_and_only_the_named_variants_again(monkeypatch, tmp_path) -> None:
    from melanoma_utils.study import experiments

    calls = []

    def record(df, cfg, out_dir, variants, plan, *, external=None, repeat=0):
        calls.append((repeat, list(variants), plan.fold_list))
        return pd.DataFrame({"repeat": [repeat]}), pd.DataFrame({"repeat": [repeat]})

    monkeypatch.setattr(experiments, "cross_validate", record)
    variants = {"a": {}, "b": {}, "c": {}}
    per_fold, _ = repeated_cross_validate(pd.DataFrame(), TrainConfig(kind="meta"), tmp_path, variants,
                                          FoldPlan(4, repeats=3), repeat_variants=["c", "a"])
    assert calls == [(0, ["a", "b", "c"], [0, 1, 2, 3]), (1, ["a", "c"], [0, 1, 2, 3]), (2, ["a", "c"], [0, 1, 2, 3])]
    assert per_fold["repeat"].tolist() == [0, 1, 2]
    calls.clear()  # some folds only: the study's assignment alone
    repeated_cross_validate(pd.DataFrame(), TrainConfig(kind="meta"), tmp_path, variants, FoldPlan(4, folds=[1], repeats=3))
    assert calls == [(0, ["a", "b", "c"], [1])]
    calls.clear()  # nothing named to repeat: no repeat runs (an empty variant set is not "every variant")
    repeated_cross_validate(pd.DataFrame(), TrainConfig(kind="meta"), tmp_path, variants, FoldPlan(4, repeats=3),
                            repeat_variants=[])
    assert calls == [(0, ["a", "b", "c"], [0, 1, 2, 3])]


def test_the_ceiling_selection_repeats_only_the_candidates_on_cached_embeddings(monkeypatch, tmp_path) -> None:
    from melanoma_utils.study import ceiling

    seen = {}

    def stop(df, cfg, out_dir, variants, plan, *, repeat_variants=None, external=None):
        seen.update(variants=list(variants), repeat=list(repeat_variants), plan=plan)
        raise RuntimeError("recorded")

    monkeypatch.setattr(ceiling, "repeated_cross_validate", stop)
    names = ["diagnosis-masked + last 1 block(s) adapted", "two resolutions (320 + 224 px, concatenated)"]
    table = pd.DataFrame({"image_name": ["h"], "target": [1]})
    with pytest.raises(RuntimeError, match="recorded"):
        ceiling.ceiling_selection(pd.DataFrame(), table, table, tmp_path, names, plan=FoldPlan(5, repeats=3))
    assert seen["variants"] == [ceiling.CEILING_BASE, *names] and seen["plan"].repeats == 3
    assert seen["repeat"] == [ceiling.CEILING_BASE, names[1]]  # the adapted candidate runs the study's folds only


def test_an_empty_variant_set_is_refused_not_read_as_every_variant(tmp_path) -> None:
    from melanoma_utils.study.experiments import cross_validate

    with pytest.raises(ValueError, match="no variants to run"):
        cross_validate(pd.DataFrame(), TrainConfig(kind="meta"), tmp_path, {}, FoldPlan(2))
