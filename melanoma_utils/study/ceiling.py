"""Past the frozen-embedding ceiling: the candidates for ``train``'s default model (a diagnosis-aware head, partial
fine-tuning on cached activations, colour constancy before the backbone, two resolutions), each trained like
``train --external`` (fusion, clinical + the external lesions) by patient-grouped CV, and the selection table that
judges them against today's default on the endpoints that matter (within copy a, melanoma vs nevus within copy a,
held-out external lesions; overall AUC a guard): :func:`ceiling_selection`.
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any, Sequence

import pandas as pd

from ..runs.run import TrainConfig
from .experiments import paired_contrasts, repeated_cross_validate, run_folder_name, summarise_cv
from .plan import FoldPlan
from .selection import holdout_scores, selection_table
from .variants import check_variants

#: Today's default, the base every candidate is compared with.
CEILING_BASE = "binary (today's default)"
#: name -> TrainConfig overrides on top of the base (every candidate also trains on the external lesions).
CEILING_CANDIDATES: dict[str, dict[str, Any]] = {
    CEILING_BASE: {},
    "diagnosis (unknown a class)": {"objective": "diagnosis"},
    "diagnosis-masked (unknown: not melanoma)": {"objective": "diagnosis-masked"},
    "binary + last 1 block(s) adapted": {"adapt_blocks": 1},
    "diagnosis-masked + last 1 block(s) adapted": {"objective": "diagnosis-masked", "adapt_blocks": 1},
    "diagnosis-masked + last 3 block(s) adapted": {"objective": "diagnosis-masked", "adapt_blocks": 3},
    "Shades of Gray before the backbone": {"preprocess": "shades_of_gray"},
    "two resolutions (320 + 224 px, concatenated)": {"image_size": 320, "extra_image_size": 224,
                                                     "resolution_merge": "concat"},
}


def ceiling_config(preset: str = "lite0-224", views: int = 1, seed: int = 0) -> TrainConfig:
    """The configuration every candidate starts from: ``preset`` with ``views`` cached views (and as many test-time
    views), no source weighting (``auto``'s choice with external data), silent."""
    return TrainConfig.from_preset(preset, embedding_views=views, tta=views, verbose=0, source_weighting="none",
                                   seed=seed)


def ceiling_selection(df: pd.DataFrame, external: pd.DataFrame, holdout: pd.DataFrame,
                      runs_dir: str | os.PathLike[str], names: Sequence[str], *, views: int = 1,
                      plan: FoldPlan | None = None, repeat_adapted: bool = False) -> pd.DataFrame:
    """The selection table of the candidates ``names`` (:data:`CEILING_CANDIDATES`; the base is always included)
    against :data:`CEILING_BASE`: every endpoint with its CI, the paired deltas with CIs, seconds per run and the
    verdict (:func:`~melanoma_utils.study.selection.selection_table`), plus ``folds`` and ``views`` columns.
    ``plan`` (default: 5 folds, all run, one assignment; :class:`~melanoma_utils.study.plan.FoldPlan`): its
    ``repeats`` > 1 adds that many patient-grouped fold assignments for the candidates that train on cached embeddings
    (the paired differences average over them; an adapted candidate, ~2–5 min per run on a CPU, runs the study's
    folds only, unless ``repeat_adapted``: the confirmation of an adapted winner on the other assignments); its
    ``locked`` part guards the selection. Runs are kept in ``runs_dir`` and reused. An unknown name is an error naming
    the known ones."""
    names = check_variants(names, CEILING_CANDIDATES, "ceiling_candidates")
    names = [CEILING_BASE, *[n for n in names if n != CEILING_BASE]]
    if external is None or not len(external) or holdout is None or not len(holdout):
        raise ValueError("the ceiling candidates train like train --external and are judged on held-out external "
                         "lesions: give external data (external_dirs) with a hold-out fraction above 0")
    plan = plan or FoldPlan()
    n_boot, seed = plan.n_boot, plan.seed
    cfg = ceiling_config(views=views, seed=seed)  # the lite0-224 preset: today's default
    variants = {n: {"external": True, **CEILING_CANDIDATES[n]} for n in names}
    cheap = [n for n, v in variants.items() if repeat_adapted or not v.get("adapt_blocks")]  # the ones repeated
    per_fold, oof = repeated_cross_validate(df, cfg, Path(runs_dir), variants, plan, repeat_variants=cheap,
                                            external=external)
    summary = summarise_cv(per_fold, oof, n_boot=n_boot, seed=seed)
    paired = paired_contrasts(per_fold, oof, [(n, CEILING_BASE) for n in names[1:]], n_boot=n_boot, seed=seed)
    fold_list = plan.fold_list
    scores = holdout_scores(runs_dir, names, fold_list, holdout, run_folder_name)
    table = selection_table(summary, paired, scores, [(n, CEILING_BASE) for n in names], per_fold, n_boot=n_boot,
                            seed=seed)
    table.insert(2, "folds", len(fold_list))
    table.insert(3, "views", views)
    return table


def ceiling_verdict(table: pd.DataFrame) -> str:
    """The selection rule's winners in :func:`ceiling_selection`'s ``table`` as a sentence, and whether each is also
    clear: its within-copy-a gain's interval above 0 and no clear loss on melanoma vs nevus within copy a (the check
    was added after the rule's first application on 2026-12-04, when a +0.000 gain with a melanoma-vs-nevus loss
    counted as a win; docs/results.md)."""
    t = table.set_index("candidate")
    won = list(t.index[t["verdict"] == "wins"])
    if not won:
        return "By the rule no candidate wins: `train` keeps today's default."
    clear = [w for w in won if t.loc[w, "delta_within_copy_a_ci_low"] > 0 and t.loc[w, "delta_mvn_within_copy_a_ci_high"] >= 0]
    unclear = [f"{w} (within copy a {t.loc[w, 'delta_within_copy_a']:+.3f}, interval from "
               f"{t.loc[w, 'delta_within_copy_a_ci_low']:+.3f}; melanoma vs nevus within copy a "
               f"{t.loc[w, 'delta_mvn_within_copy_a']:+.3f})" for w in won if w not in clear]
    return (f"By the rule, **{', '.join(won)}** win(s). "
            + (f"Clear winner(s), whose within-copy-a interval lies above 0 with no melanoma-vs-nevus loss: **{', '.join(clear)}**: "
               "`train`'s default should follow. " if clear else "")
            + (f"Not clear: {'; '.join(unclear)}: a gain that cannot be told from 0, or that costs melanoma vs nevus within "
               "copy a, does not change `train`'s default." if unclear else ""))
