"""One model for every population: end-to-end fine-tuning on a CPU against today's frozen default, each candidate
trained on the ISIC subset plus every external source, judged per population (:func:`finetune_selection`).

Every candidate is cross-validated on the same patient-grouped folds of the main data set (so paired differences are
on the same images), and scored on the lesions held out of **each** external source (never in any training part):
within copy a (the primary endpoint), melanoma vs nevus within copy a, each external source's held-out lesions, and
all images of the subset as a guard. The rule (:func:`finetune_verdict`) was written before the first measurement
(2026-12-07): a candidate **wins** where (1) no population endpoint has its difference's interval entirely below 0,
(2) its within-copy-a difference is above 0 and (3) at least one population endpoint's interval lies above 0.

After the confirmation (written 2026-12-07, before the post-hoc ensemble's or round 3's results on new folds were
seen): a candidate that wins by the rule on the confirmation folds (``--confirm-posthoc``, ``--round3``, ``--round4``) is recommended
only if it wins again, by the same rule, on folds 0 and 1 of 5 of the patients outside the locked part
(``--larger-folds``: each model trained and validated on 80% of the patients; where several win, the one with the
larger within-copy-a gain on the confirmation folds); otherwise ``train``'s frozen default stays the recommended model.
"""

from __future__ import annotations

import json
import os
from pathlib import Path
from typing import Any, Mapping, Sequence

import numpy as np
import pandas as pd

from ..models.presets import FINETUNE_PRESET, get_preset
from ..runs.runfolder import RunLayout
from .ceiling import ceiling_config
from .experiments import add_ensemble, cross_validate, paired_contrasts, run_folder_name, summarise_cv
from .plan import FoldPlan
from .selection import holdout_auc, holdout_contrast, holdout_scores, selection_table
from .variants import check_variants

#: Today's default (frozen Lite0 at 224 px, 1 cached view, no source weighting with external data): the base.
FINETUNE_BASE = "frozen Lite0 224 px (today's default)"
#: The fine-tuning recipe's fields (the ``lite0-ft128`` preset); each candidate states its source weighting.
_FT = {k: v for k, v in get_preset(FINETUNE_PRESET).fields.items() if k != "source_weighting"}
#: name -> TrainConfig overrides on top of the base (every candidate also trains on every external source).
FINETUNE_CANDIDATES: dict[str, dict[str, Any]] = {
    FINETUNE_BASE: {},
    "frozen + sources weighted alike": {"source_weighting": "sources"},
    "fine-tuned 128 px": {**_FT, "source_weighting": "none"},
    "fine-tuned 128 px + sources weighted alike": {**_FT, "source_weighting": "sources"},
}
#: name -> members: ensembles scored from their members' predictions (no training of their own).
FINETUNE_ENSEMBLES: dict[str, tuple[str, ...]] = {
    "ensemble: frozen default + fine-tuned, sources alike": (FINETUNE_BASE, "fine-tuned 128 px + sources weighted alike"),
}
#: Ensembles looked at after the selection's table was seen (2026-12-07): reported, never selected
#: (``scripts/finetune_study.py --posthoc`` writes their table from the same fold runs).
FINETUNE_POSTHOC: dict[str, tuple[str, ...]] = {
    "post hoc: frozen default + fine-tuned (no weighting)": (FINETUNE_BASE, "fine-tuned 128 px"),
}
#: Round 2 (the recipe sweep's next step, chosen after round 1's table was seen, 2026-12-07): a gentler fine-tune
#: (Adam 3e-5 instead of 1e-4, targets smoothed by 0.1), alone and averaged with the frozen default. Judged by the
#: same rule against the same base on the same folds, in its own table (``table_finetune_round2.csv``).
FINETUNE_ROUND2: dict[str, dict[str, Any]] = {
    "fine-tuned 128 px, Adam 3e-5, label smoothing 0.1": {**_FT, "source_weighting": "none",
                                                           "finetune_learning_rate": 3e-5, "label_smoothing": 0.1},
}
FINETUNE_ROUND2_ENSEMBLES: dict[str, tuple[str, ...]] = {
    "ensemble: frozen default + fine-tuned 3e-5, smoothing 0.1": (FINETUNE_BASE, *FINETUNE_ROUND2),
}
#: Round 3 (2026-12-07, chosen after rounds 1-2 and the confirmation were seen): the recipe with the outside reference's
#: milder augmentation (``../shared/REFERENCES.md``: flips and 90° rotations, contrast ±10%, brightness ±8%; no random
#: crop, saturation, hue or greyscale; the reference's per-channel gain of ±5% left out: this package has none). Measured before choosing it: this package's default augmentation moves a frozen
#: Lite0 model's validation AUC from 0.81 to 0.71 (the 85% random crop alone to 0.72), the milder one to 0.79, so the
#: fine-tuned network first has to relearn images far from the ones it is judged on (`scripts/augmentation_shift.py`,
#: `table_augmentation_shift.csv`). Judged by the same rule against the
#: same base on the confirmation folds (``scripts/finetune_study.py --round3``, ``table_finetune_round3.csv``).
MILD_AUGMENTATION: dict[str, Any] = {"crop_fraction": 1.0, "brightness": 0.08, "contrast": 0.1, "saturation": 0.0,
                                     "hue": 0.0, "grayscale_probability": 0.0}
FINETUNE_ROUND3: dict[str, dict[str, Any]] = {
    "fine-tuned 128 px, mild augmentation": {**_FT, "source_weighting": "none", "augment_config": MILD_AUGMENTATION},
}
FINETUNE_ROUND3_ENSEMBLES: dict[str, tuple[str, ...]] = {
    "ensemble: frozen default + fine-tuned, mild augmentation": (FINETUNE_BASE, *FINETUNE_ROUND3),
}
#: Round 4 (2026-12-08, chosen after round 3 and the histories were seen, before any result of it): the recipe with its
#: learning rate rising from 0 over the first fine-tuning epoch (``finetune_schedule="warmup-cosine"``), the answer to
#: the first fine-tuning epoch's validation-loss jump that ``table_finetune_histories.csv`` traces to a fresh Adam
#: starting at the full rate. Judged by the same rule against the same base on the confirmation folds
#: (``scripts/finetune_study.py --round4``, ``table_finetune_round4.csv``); recommended only after winning again on
#: the larger folds, as the confirmation's rule says.
FINETUNE_ROUND4: dict[str, dict[str, Any]] = {
    "fine-tuned 128 px, learning-rate warm-up": {**_FT, "source_weighting": "none", "finetune_schedule": "warmup-cosine"},
}
FINETUNE_ROUND4_ENSEMBLES: dict[str, tuple[str, ...]] = {
    "ensemble: frozen default + fine-tuned, learning-rate warm-up": (FINETUNE_BASE, *FINETUNE_ROUND4),
}
#: The population endpoints the rule protects (column stems of the selection table); held-out external sources add
#: ``holdout_<source>``.
POPULATION_ENDPOINTS: tuple[str, ...] = ("within_copy_a", "mvn_within_copy_a")


def finetune_histories(runs_dir: str | os.PathLike[str]) -> pd.DataFrame:
    """What fine-tuning did to each fine-tuned fold run under ``runs_dir`` (``<candidate>/fold<k>``): the warm-up head's
    best validation loss (the weights fine-tuning starts from), the first fine-tuning epoch's, the best fine-tuning
    epoch's and which epoch of fine-tuning it was (1 = the first; ``history.csv`` numbers every epoch from 0, the
    warm-up's first), from the run's history and its stages, and the fine-tuning's label smoothing (a smoothed loss is
    higher by construction: not comparable with the warm-up's)."""
    rows = []
    for fold_dir in sorted(Path(runs_dir).glob("*/fold*")):
        layout = RunLayout(fold_dir)
        if not layout.has_model or not layout.history.is_file():
            continue
        stages = json.loads(layout.config.read_text(encoding="utf-8")).get("stages", {})
        if "finetune" not in stages:
            continue
        h = pd.read_csv(layout.history)
        warm, ft = h.iloc[: int(stages["head"]["epochs"])], h.iloc[int(stages["head"]["epochs"]):]
        if warm.empty or ft.empty:
            continue
        rows.append({"run": f"{fold_dir.parent.name}/{fold_dir.name}", "warmup_best_val_loss": warm["val_loss"].min(),
                     "first_finetune_val_loss": ft["val_loss"].iloc[0], "best_finetune_val_loss": ft["val_loss"].min(),
                     "best_finetune_epoch": int(np.argmin(ft["val_loss"].to_numpy())) + 1, "finetune_epochs": len(ft),
                     "warmup_best_val_auc": warm["val_auc"].max(), "best_finetune_val_auc": ft["val_auc"].max(),
                     "label_smoothing": float(stages["finetune"].get("label_smoothing", 0.0))})
    return pd.DataFrame(rows)


def ensemble_holdout(scores: pd.DataFrame, members: Sequence[str], name: str) -> pd.DataFrame:
    """Held-out scores of an ensemble: per image, the mean of its members' probabilities (empty where a member has
    none)."""
    parts = [scores[scores["variant"] == m].set_index("image_name") for m in members]
    if any(p.empty for p in parts):
        return scores.iloc[:0]
    out = parts[0].copy()
    out["probability"] = np.mean([p.loc[out.index, "probability"].to_numpy() for p in parts], axis=0)
    return out.assign(variant=name).reset_index()[scores.columns]


def per_source_holdout(table: pd.DataFrame, scores: pd.DataFrame, base: str, n_boot: int = 1000,
                       seed: int = 0) -> pd.DataFrame:
    """``table`` with, for each held-out external source (``scores``' ``source`` column), the candidate's ROC AUC with
    its lesion-bootstrap CI (``holdout_<source>``, ``…_ci_low``, ``…_ci_high``) and its paired difference against
    ``base`` (``delta_holdout_<source>`` with its CI); NaN where a candidate has no held-out score."""
    out = table.copy()
    for source, part in scores.groupby("source", sort=True):
        col = f"holdout_{source}"
        for i, cand in out["candidate"].items():
            est = holdout_auc(part[part["variant"] == cand], n_boot, seed)
            d = (holdout_contrast(part, cand, base, n_boot, seed) if cand != base
                 else {"delta": 0.0, "ci_low": 0.0, "ci_high": 0.0})
            out.loc[i, [col, f"{col}_ci_low", f"{col}_ci_high"]] = est
            out.loc[i, [f"delta_{col}", f"delta_{col}_ci_low", f"delta_{col}_ci_high"]] = (
                d["delta"], d["ci_low"], d["ci_high"])
    return out


def population_columns(table: pd.DataFrame) -> list[str]:
    """The delta columns of every population endpoint in a selection table: within copy a, melanoma vs nevus within
    copy a, and each held-out external source."""
    return (["delta_within_copy_a", "delta_mvn_within_copy_a"]
            + sorted(c for c in table.columns if c.startswith("delta_holdout_") and not c.endswith(("_ci_low", "_ci_high"))))


def finetune_verdict(table: pd.DataFrame) -> pd.Series:
    """The rule of the module docstring, per row: ``base``, ``wins`` or the first reason it does not (a population
    whose interval lies below 0; no within-copy-a gain; no interval above 0). A missing endpoint (NaN) is no win."""
    cols = population_columns(table)
    verdicts = []
    for _, row in table.iterrows():
        if row["candidate"] == row["base"]:
            verdicts.append("base")
            continue
        highs = {c: row[f"{c}_ci_high"] for c in cols}
        lows = {c: row[f"{c}_ci_low"] for c in cols}
        if any(pd.isna(v) for v in (*highs.values(), *lows.values())):
            verdicts.append("does not win: an endpoint was not scored")
        elif any(v < 0 for v in highs.values()):
            lost = [c.removeprefix("delta_") for c, v in highs.items() if v < 0]
            verdicts.append(f"does not win: loses {', '.join(lost)}")
        elif not row["delta_within_copy_a"] > 0:
            verdicts.append("does not win: no gain within copy a")
        elif not any(v > 0 for v in lows.values()):
            verdicts.append("does not win: no interval above 0")
        else:
            verdicts.append("wins")
    return pd.Series(verdicts, index=table.index)


def chosen_candidate(table: pd.DataFrame) -> str | None:
    """The winner with the largest within-copy-a difference (``None`` when no candidate wins)."""
    won = table[table["verdict"] == "wins"]
    return None if won.empty else str(won.sort_values("delta_within_copy_a", ascending=False)["candidate"].iloc[0])


def finetune_selection(df: pd.DataFrame, external: pd.DataFrame, holdouts: Mapping[str, pd.DataFrame],
                       runs_dir: str | os.PathLike[str], names: Sequence[str] | None = None, *,
                       plan: FoldPlan | None = None, overrides: Mapping[str, Any] | None = None,
                       ensembles: Mapping[str, Sequence[str]] | None = None) -> pd.DataFrame:
    """The selection table of :data:`FINETUNE_CANDIDATES` ``names`` (default: all; the base always runs) and
    :data:`FINETUNE_ENSEMBLES` whose members ran, against :data:`FINETUNE_BASE`: ``plan.n_splits`` (default 2)
    patient-grouped folds of
    ``df`` (every image predicted once, out of fold), each fold run trained on the rest of ``df`` plus ``external``;
    scored within copy a, melanoma vs nevus within copy a, overall and on each of ``holdouts`` (source name -> held-out
    lesions of that source, never trained on), with paired differences and patient/lesion-bootstrap CIs, seconds per
    fold run and the :func:`finetune_verdict`. ``overrides`` apply to every candidate (e.g. fewer epochs in a test);
    ``ensembles`` replaces :data:`FINETUNE_ENSEMBLES` (e.g. :data:`FINETUNE_POSTHOC`).
    Runs are kept in ``runs_dir`` and reused (an interrupted selection resumes). ``plan``
    (:class:`~melanoma_utils.study.plan.FoldPlan`): the folds, the bootstrap and the locked test part guarding the
    selection (``locked=None``: none); one fold assignment, every fold or ``plan.folds`` of it (the images of those
    folds predicted once, each model trained on ``(n_splits - 1) / n_splits`` of the patients)."""
    plan = plan or FoldPlan(n_splits=2)
    if plan.repeats != 1:
        raise ValueError("the fine-tuning selection runs one fold assignment (every fold, or plan.folds of it): give a "
                         f"plan without repeats (got repeats={plan.repeats})")
    n_splits, n_boot, seed = plan.n_splits, plan.n_boot, plan.seed
    known = {**FINETUNE_CANDIDATES, **FINETUNE_ROUND2, **FINETUNE_ROUND3, **FINETUNE_ROUND4}
    names = check_variants(list(names or FINETUNE_CANDIDATES), known, "finetune candidates")
    names = [FINETUNE_BASE, *[n for n in names if n != FINETUNE_BASE]]
    if external is None or not len(external) or not holdouts or any(not len(h) for h in holdouts.values()):
        raise ValueError("the fine-tuning candidates train on external sources and are judged on lesions held out of "
                         "each: give external data and a non-empty held-out part per source")
    cfg = ceiling_config("lite0-224", views=1, seed=seed)
    variants = {n: {"external": True, **known[n], **dict(overrides or {})} for n in names}
    per_fold, oof = cross_validate(df, cfg, Path(runs_dir), variants, plan, external=external)
    holdout = pd.concat([h.assign(source=s) for s, h in holdouts.items()], ignore_index=True)
    scores = holdout_scores(runs_dir, names, plan.fold_list, holdout, run_folder_name)
    scores = scores.merge(holdout[["image_name", "source"]], on="image_name", how="left")
    for name, members in (FINETUNE_ENSEMBLES if ensembles is None else ensembles).items():
        if all(m in names for m in members):
            per_fold, oof = add_ensemble(per_fold, oof, list(members), name)
            scores = pd.concat([scores, ensemble_holdout(scores, members, name)], ignore_index=True)
    ran = list(dict.fromkeys(oof["variant"]))
    summary = summarise_cv(per_fold, oof, n_boot=n_boot, seed=seed)
    paired = paired_contrasts(per_fold, oof, [(n, FINETUNE_BASE) for n in ran[1:]], n_boot=n_boot, seed=seed)
    table = selection_table(summary, paired, scores, [(n, FINETUNE_BASE) for n in ran], per_fold, n_boot=n_boot, seed=seed)
    table = per_source_holdout(table, scores, FINETUNE_BASE, n_boot=n_boot, seed=seed)
    table.insert(2, "folds", n_splits)
    table.insert(3, "run_folds", len(plan.fold_list))
    table["verdict"] = finetune_verdict(table)
    return table
