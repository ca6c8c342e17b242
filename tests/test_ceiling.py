"""The candidates for the default model (issue 31): every one is a valid training recipe, and a misspelt candidate or
a study without external lesions to judge on is an error, not a silently shorter table."""

from __future__ import annotations

from dataclasses import replace

import pandas as pd
import pytest

from melanoma_utils.runs.ceiling import CEILING_BASE, CEILING_CANDIDATES, ceiling_config, ceiling_selection


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
