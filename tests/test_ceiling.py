"""The candidates for the default model (issue 31): every one is a valid training recipe, and a misspelt candidate or
a study without external lesions to judge on is an error, not a silently shorter table."""

from __future__ import annotations

from dataclasses import replace

import pandas as pd
import pytest

from melanoma_utils.study.ceiling import CEILING_BASE, CEILING_CANDIDATES, ceiling_config, ceiling_selection


def test_every_candidate_is_a_valid_recipe_that_differs_from_the_base() -> None:
    base = ceiling_config()
    assert base.embedding_views == base.tta == 1 and base.source_weighting == "none" and base.objective == "binary"
    recipes = {}
    for name, overrides in CEILING_CANDIDATES.items():
        cfg = replace(base, **overrides)  # (re-validated: a bad override raises here)
        recipes[name] = (cfg.objective, cfg.adapt_blocks, cfg.preprocess, cfg.image_size, cfg.extra_image_size)
    assert len(set(recipes.values())) == len(recipes)  # no two candidates train the same model
    assert recipes[CEILING_BASE] == ("binary", 0, "none", 224, None)


def test_unknown_candidates_and_missing_external_lesions_are_errors(tmp_path) -> None:
    df = pd.DataFrame({"image_name": ["a"], "target": [0]})
    ham = pd.DataFrame({"image_name": ["h"], "target": [1]})
    with pytest.raises(ValueError, match=r"ceiling_candidates: unknown variant\(s\) 'shades of grey'.*known: .*Shades of Gray"):
        ceiling_selection(df, ham, ham, tmp_path, ["shades of grey"])
    with pytest.raises(ValueError, match="give external data"):
        ceiling_selection(df, ham.iloc[:0], ham, tmp_path, [CEILING_BASE])


def _selection_inputs(delta_copy_a: float, external_better: bool):
    import numpy as np

    base, cand = CEILING_BASE, "two resolutions (320 + 224 px, concatenated)"
    cols = {"pooled_within_copy_a_auc": 0.8, "pooled_within_copy_a_ci_low": 0.77, "pooled_within_copy_a_ci_high": 0.83,
            "pooled_mvn_within_copy_a_auc": 0.8, "pooled_mvn_within_copy_a_ci_low": 0.75,
            "pooled_mvn_within_copy_a_ci_high": 0.85, "pooled_oof_roc_auc": 0.84, "pooled_ci_low": 0.8, "pooled_ci_high": 0.87}
    summary = pd.DataFrame([cols, cols], index=[base, cand])
    paired = pd.DataFrame([{"contrast": f"{cand} − {base}", "subset": s, "delta_auc": delta_copy_a, "ci_low": -0.01,
                            "ci_high": 0.02, "p_holm": 0.4, "repeats": 3}
                           for s in ("within_copy_a", "melanoma_vs_nevus_within_copy_a", "all")])
    rng = np.random.default_rng(0)
    y = np.repeat([0, 1], 200)
    good, poor = y + rng.normal(0, 0.6, 400), y + rng.normal(0, 1.5, 400)
    holdout = pd.concat([pd.DataFrame({"image_name": [f"h{i}" for i in range(400)], "patient_id": [f"l{i}" for i in range(400)],
                                       "target": y, "variant": v, "probability": p})
                         for v, p in ((base, poor if external_better else good), (cand, good if external_better else poor))])
    per_fold = pd.DataFrame({"variant": [base] * 15 + [cand] * 15, "repeat": list(np.repeat([0, 1, 2], 5)) * 2,
                             "train_seconds": 10.0})
    return summary, paired, holdout, [(base, base), (cand, base)], per_fold


def test_selection_rule_needs_the_primary_gain_and_no_loss_on_another_clinic() -> None:
    from melanoma_utils.study.selection import selection_table

    t = selection_table(*_selection_inputs(0.004, external_better=True), n_boot=200)
    assert list(t["verdict"]) == ["base", "wins"]
    assert t.loc[1, "delta_external_holdout_ci_low"] > 0 and t.loc[1, "delta_within_copy_a_p_holm"] == 0.4
    assert list(t["repeats"]) == [3, 3]
    worse_elsewhere = selection_table(*_selection_inputs(0.004, external_better=False), n_boot=200)
    assert worse_elsewhere.loc[1, "delta_external_holdout_ci_high"] < 0 and worse_elsewhere.loc[1, "verdict"] == "does not win"
    no_gain = selection_table(*_selection_inputs(-0.001, external_better=True), n_boot=200)
    assert no_gain.loc[1, "verdict"] == "does not win"


def test_a_rule_winner_changes_the_default_only_when_its_gain_is_clear() -> None:
    from melanoma_utils.study.ceiling import ceiling_verdict
    from melanoma_utils.study.selection import selection_table

    t = selection_table(*_selection_inputs(0.004, external_better=True), n_boot=200)  # within copy a CI -0.01..+0.02
    text = ceiling_verdict(t)
    assert "win(s)" in text and "Not clear" in text and "does not change `train`'s default" in text
    assert "should follow" not in text
    clear = t.assign(delta_within_copy_a_ci_low=[0.0, 0.002])
    assert "should follow" in ceiling_verdict(clear) and "Not clear" not in ceiling_verdict(clear)
    mvn_loss = clear.assign(delta_mvn_within_copy_a_ci_high=[0.0, -0.01])
    assert "should follow" not in ceiling_verdict(mvn_loss)
    assert ceiling_verdict(t.assign(verdict=["base", "does not win"])).startswith("By the rule no candidate wins")


@pytest.mark.parametrize("repeat_adapted", [False, True])
def test_adapted_candidates_run_on_one_fold_assignment_unless_their_confirmation_is_asked(
        tmp_path, monkeypatch, repeat_adapted: bool) -> None:
    from melanoma_utils.study import ceiling

    class Stop(Exception):
        pass

    seen = {}

    def fake_cv(df, cfg, runs_dir, variants, plan, repeat_variants, external):
        seen["repeated"] = list(repeat_variants)
        raise Stop

    monkeypatch.setattr(ceiling, "repeated_cross_validate", fake_cv)
    adapted = "diagnosis-masked + last 3 block(s) adapted"
    df = pd.DataFrame({"image_name": ["a"], "target": [0]})
    ham = pd.DataFrame({"image_name": ["h"], "target": [1]})
    with pytest.raises(Stop):
        ceiling_selection(df, ham, ham, tmp_path, [adapted, "Shades of Gray before the backbone"],
                          repeat_adapted=repeat_adapted)
    assert seen["repeated"][:1] == [CEILING_BASE] and "Shades of Gray before the backbone" in seen["repeated"]
    assert (adapted in seen["repeated"]) is repeat_adapted
