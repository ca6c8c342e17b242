"""README/docs blocks of the fine-tuning selection and of the paper's whole Table 3 beside this project's
like-for-like rows (:func:`paper_table3`); the fine-tuning selection is (``table_finetune_selection.csv``, written by
``scripts/finetune_study.py`` through :mod:`melanoma_utils.study.finetune`): the table of candidates per population,
and the decision it implies for ``train``'s defaults (the rule's winner; whether it costs at most
:data:`MAX_COST_RATIO` times today's cold ``train``)."""

from __future__ import annotations

from pathlib import Path

import pandas as pd

from ..evaluation.results import Estimate

#: A winner becomes ``train``'s plain default only where one fold run costs at most this many times today's cold
#: ``train`` with the same data (issue 42's rule); otherwise it is a named preset and the README's recommended command.
MAX_COST_RATIO = 10.0
#: The selection table's CSV in a report folder.
SELECTION_CSV = "table_finetune_selection.csv"
#: Display names of the held-out external sources (the table's ``holdout_<source>`` columns).
SOURCE_NAMES = {"ham10000": "HAM10000", "isic2017": "ISIC 2017"}


def _sources(t: pd.DataFrame) -> list[str]:
    return sorted(c.removeprefix("holdout_") for c in t.columns
                  if c.startswith("holdout_") and not c.endswith(("_ci_low", "_ci_high")))


def _cell(r: pd.Series, col: str, base: bool) -> str:
    """``estimate (Δ, CI of Δ)`` of column ``col`` (``Δ`` from ``delta_<col>``); the base shows its estimate and CI."""
    if base:
        lo, hi = r.get(f"{col}_ci_low"), r.get(f"{col}_ci_high")
        return Estimate(r[col], lo if pd.notna(lo) else float("nan"), hi if pd.notna(hi) else float("nan")).format(3, ci="")
    d = f"delta_{col}"
    return f"{r[col]:.3f} ({r[d]:+.3f}, {r[f'{d}_ci_low']:+.3f} to {r[f'{d}_ci_high']:+.3f})"


def _duration(seconds: float) -> str:
    return "—" if pd.isna(seconds) else (f"{seconds:.0f} s" if seconds < 120 else f"{seconds / 60:.0f} min")


#: The post-hoc comparison's CSV (an ensemble chosen after the selection was seen: reported, never selected).
POSTHOC_CSV = "table_finetune_posthoc.csv"


#: The post-hoc ensemble on the confirmation folds (``scripts/finetune_study.py --confirm-posthoc``).
CONFIRM_POSTHOC_CSV = "table_finetune_confirm_posthoc.csv"

#: README/docs block name -> the fine-tuning study's table it renders with :func:`finetune_selection_table`: the
#: post-hoc comparison (:data:`POSTHOC_CSV`), the recipe's rounds 2-4 (round 4: the learning-rate warm-up), the
#: confirmation on the patients outside the locked part (``--confirm``), the post-hoc ensemble tried again there
#: and the second confirmation on larger training parts.
SELECTION_BLOCKS: dict[str, str] = {
    "finetune_posthoc": POSTHOC_CSV,
    "finetune_round2": "table_finetune_round2.csv",
    "finetune_confirm": "table_finetune_confirm.csv",
    "finetune_confirm_posthoc": CONFIRM_POSTHOC_CSV,
    "finetune_round3": "table_finetune_round3.csv",
    "finetune_round4": "table_finetune_round4.csv",
    "finetune_5fold": "table_finetune_5fold.csv",
}


#: The candidates tried on the confirmation folds after the confirmation, and the second confirmation a winner needs.
FOLLOWUP_CSVS: tuple[str, ...] = tuple(SELECTION_BLOCKS[b] for b in ("finetune_confirm_posthoc", "finetune_round3",
                                                                       "finetune_round4"))
LARGER_FOLDS_CSV = SELECTION_BLOCKS["finetune_5fold"]


def _delta(r: pd.Series) -> str:
    return (f"within copy a {r['delta_within_copy_a']:+.3f}, {r['delta_within_copy_a_ci_low']:+.3f} to "
            f"{r['delta_within_copy_a_ci_high']:+.3f}")


def finetune_followup_decision(report_dir: Path) -> str:
    """What the candidates tried after the confirmation mean (:mod:`melanoma_utils.study.finetune`'s rule after the
    confirmation): the best winner on the confirmation folds (:data:`FOLLOWUP_CSVS`) is recommended only where it wins
    again on the larger folds (:data:`LARGER_FOLDS_CSV`); otherwise ``train``'s frozen default stays recommended."""
    tables = [pd.read_csv(report_dir / n) for n in FOLLOWUP_CSVS if (report_dir / n).is_file()]
    if not tables:
        return "Not measured yet: scripts/finetune_study.py --confirm-posthoc, --round3 and --round4 write their tables.\n"
    t = pd.concat(tables, ignore_index=True)
    t = t[t["verdict"] != "base"].drop_duplicates("candidate")
    said = "; ".join(f"{r['candidate']}: {r['verdict']} ({_delta(r)})" for _, r in t.iterrows())
    won = t[t["verdict"] == "wins"].sort_values("delta_within_copy_a", ascending=False)
    if won.empty:
        return (f"On the confirmation folds, by the same rule: {said}. No candidate wins: `train`'s frozen default "
                "stays the recommended model.\n")
    best = won.iloc[0]
    head = f"On the confirmation folds, by the same rule: {said}. **{best['candidate']}** goes on to the larger folds: "
    path = report_dir / LARGER_FOLDS_CSV
    again = pd.read_csv(path).set_index("candidate") if path.is_file() else None
    if again is None or best["candidate"] not in again.index:
        return head + "not run yet, so `train`'s frozen default stays the recommended model.\n"
    r = again.loc[best["candidate"]]
    if r["verdict"] != "wins":
        return (head + f"there it does not win ({r['verdict']}; {_delta(r)}), so `train`'s frozen default stays the "
                "recommended model.\n")
    return head + f"it wins there too ({_delta(r)}) and is the recommended recipe (the commands below).\n"


def finetune_histories_note(report_dir: Path) -> str:
    """What fine-tuning did to the validation loss of the fine-tuned fold runs (``table_finetune_histories.csv``,
    written by ``scripts/finetune_study.py``), per runs folder: how many runs' first fine-tuning epoch rose above the
    warm-up head's best, and how many never got back below it (runs with label smoothing left out)."""
    path = report_dir / "table_finetune_histories.csv"
    if not path.is_file():
        return "Not measured yet: scripts/finetune_study.py writes table_finetune_histories.csv.\n"
    table = pd.read_csv(path, dtype={"runs": str})
    smoothed = table["label_smoothing"] > 0 if "label_smoothing" in table else pd.Series(False, index=table.index)
    parts = []
    for runs, t in table[~smoothed].groupby("runs", sort=False):
        for cand, c in t.groupby(t["run"].str.split("/").str[0], sort=False):
            rose = int((c["first_finetune_val_loss"] > c["warmup_best_val_loss"]).sum())
            stuck = int((c["best_finetune_val_loss"] > c["warmup_best_val_loss"]).sum())
            parts.append(f"`{runs}/{cand}`: the first fine-tuning epoch's validation loss above the warm-up's best in "
                         f"{rose} of {len(c)} fold runs (median {c['first_finetune_val_loss'].median():.2f} against "
                         f"{c['warmup_best_val_loss'].median():.2f}), no fine-tuning epoch back below it in {stuck}")
    if not parts:
        return "No fine-tuned fold run without label smoothing in table_finetune_histories.csv.\n"
    left = f" ({int(smoothed.sum())} fold runs with label smoothing left out: their loss is higher by construction)"
    return "; ".join(parts) + (left if smoothed.any() else "") + ".\n"


def augmentation_shift_table(report_dir: Path) -> str:
    """How far each augmentation setting moves a frozen model from the images it is judged on
    (``table_augmentation_shift.csv``, ``scripts/augmentation_shift.py``): ROC AUC and mean |change in probability|."""
    path = report_dir / "table_augmentation_shift.csv"
    if not path.is_file():
        return "Not measured yet: scripts/augmentation_shift.py writes table_augmentation_shift.csv.\n"
    t = pd.read_csv(path)
    lines = ["| training augmentation applied | ROC AUC | mean change in probability |", "|---|---|---|"]
    lines += [f"| {r.setting} | {r.roc_auc:.3f} | {r.mean_abs_change:.3f} |" for r in t.itertuples()]
    r = t.iloc[0]
    return ("\n".join(lines) + f"\n\nThe frozen default's fold run ({r['run']}) on {int(r['images'])} of its held-out images "
            f"({int(r['malignant'])} malignant), each setting drawn {int(r['draws'])} times (means).\n")


def finetune_selection_table(report_dir: Path, name: str = SELECTION_CSV) -> str:
    """Every candidate per population: within copy a, melanoma vs nevus within copy a, each external source's held-out
    lesions (estimate, and the paired difference against today's default with its 95% CI; the base row gives its
    own CI), all images (the guard), minutes per fold run on the rendering machine, and the verdict."""
    path = report_dir / name
    if not path.is_file():
        return f"Not measured yet: scripts/finetune_study.py writes {name}.\n"
    t = pd.read_csv(path)
    sources = _sources(t)
    head = ["candidate", "within copy a (Δ, 95% CI)", "melanoma vs nevus within copy a (Δ, 95% CI)",
            *[f"held-out {SOURCE_NAMES.get(s, s)} lesions (Δ, 95% CI)" for s in sources], "all images (Δ)",
            "time per fold run", "verdict"]
    lines = ["| " + " | ".join(head) + " |", "|" + "---|" * len(head)]
    for _, r in t.iterrows():
        base = r["verdict"] == "base"
        cells = [str(r["candidate"]), _cell(r, "within_copy_a", base), _cell(r, "mvn_within_copy_a", base),
                 *[_cell(r, f"holdout_{s}", base) for s in sources],
                 f"{r['overall']:.3f}" + ("" if base else f" ({r['delta_overall']:+.3f})"),
                 _duration(r["train_seconds_per_run"]),
                 str(r["verdict"])]
        lines.append("| " + " | ".join(cells) + " |")
    return ("\n".join(lines) + f"\n\n{_folds_note(t)}; 95% CIs by patient (ISIC) or lesion (external) bootstrap; an "
            "ensemble has no run of its own. Times on 2 CPU cores; a frozen model's second fold run reuses the embeddings "
            "its first computed.\n")


def _folds_note(t: pd.DataFrame) -> str:
    """What a selection table's folds were: every fold of one assignment, or some of its folds (``run_folds``; tables
    written before that column ran every fold)."""
    folds = int(t["folds"].iloc[0])
    run = int(t["run_folds"].iloc[0]) if "run_folds" in t and pd.notna(t["run_folds"].iloc[0]) else folds
    if run == folds:
        return f"{folds} patient-grouped folds of the ISIC subset (every image predicted once, out of fold)"
    return (f"{run} of {folds} patient-grouped folds of the ISIC subset (each model trained and validated on "
            f"{(folds - 1) / folds:.0%} of the patients; the images of those {run} folds, about {run / folds:.0%} of the patients, predicted once, "
            "out of fold)")


def _cold_external_seconds(report_dir: Path) -> float | None:
    """Today's cold ``train --external`` in seconds (``table_train_timings.csv``'s derived cold row), if measured."""
    timings = report_dir / "table_train_timings.csv"
    if not timings.is_file():
        return None
    tt = pd.read_csv(timings)
    rows = tt[(tt["command"] == "train --external") & tt["cache"].str.startswith("cold")]
    return float(rows["wall_seconds"].iloc[0]) if len(rows) else None


#: The confirmation of the selection's winner on new folds (``scripts/finetune_study.py --confirm``).
CONFIRM_CSV = SELECTION_BLOCKS["finetune_confirm"]


def _not_confirmed(report_dir: Path, won: str) -> str:
    """The sentence saying that ``won`` does not win again in the confirmation (:data:`CONFIRM_CSV`), or ``""`` where
    it does, or where there is no confirmation of it."""
    path = report_dir / CONFIRM_CSV
    if not path.is_file():
        return ""
    c = pd.read_csv(path).set_index("candidate")
    if won not in c.index or str(c.loc[won, "verdict"]) == "wins":
        return ""
    r = c.loc[won]
    return (f"On {int(r['folds'])} other patient-grouped folds, of the patients outside the locked test part "
            f"(`{CONFIRM_CSV}`), the same candidate does not win (within copy a "
            f"{r['delta_within_copy_a']:+.3f}, {r['delta_within_copy_a_ci_low']:+.3f} to "
            f"{r['delta_within_copy_a_ci_high']:+.3f}; verdict: {r['verdict']}).")


def finetune_decision(report_dir: Path) -> str:
    """What the selection means for ``train``: the rule's winner (largest within-copy-a gain among winners) and its
    cost against today's cold ``train --external`` (``table_train_timings.csv``): a single recipe within
    :data:`MAX_COST_RATIO` of it is ``train``'s default; an ensemble is the recommended recipe (``train`` makes one
    model per call); or that no candidate won; or, where the winner does not win again on the confirmation folds
    (:data:`CONFIRM_CSV`), that ``train``'s frozen default is the recommended model."""
    from ..models.presets import DEFAULT_PRESET, FINETUNE_PRESET
    from ..study.finetune import FINETUNE_ENSEMBLES, chosen_candidate

    path = report_dir / SELECTION_CSV
    if not path.is_file():
        return f"Not measured yet: scripts/finetune_study.py writes {SELECTION_CSV}.\n"
    t = pd.read_csv(path).set_index("candidate")
    won = chosen_candidate(t.reset_index())
    if won is None:
        return ("By the rule no candidate wins: `train` keeps today's frozen default (`lite0-224`), and the fine-tuning "
                f"recipe stays a preset to try (`--preset {FINETUNE_PRESET}`).\n")
    r, cold = t.loc[won], _cold_external_seconds(report_dir)
    gain = (f"By the rule, **{won}** wins (within copy a {r['delta_within_copy_a']:+.3f}, "
            f"{r['delta_within_copy_a_ci_low']:+.3f} to {r['delta_within_copy_a_ci_high']:+.3f}). ")
    not_again = _not_confirmed(report_dir, won)
    if not_again:
        return (gain + not_again + f" A win on one fold assignment only is not a recommendation: `train`'s default "
                f"(`{DEFAULT_PRESET}`, the frozen model) is the recommended model, and the fine-tuning recipe is a "
                f"preset to try (`--preset {FINETUNE_PRESET}`).\n")
    if won in FINETUNE_ENSEMBLES:
        ft = [m for m in FINETUNE_ENSEMBLES[won] if pd.notna(t.loc[m, "train_seconds_per_run"]) and "fine-tuned" in m]
        extra = float(t.loc[ft[0], "train_seconds_per_run"]) if ft else float("nan")
        head = (gain + "It is two models averaged, and `train` makes one model per call, so its plain default stays "
                f"the frozen model (`{DEFAULT_PRESET}`); the recommended recipe is the three commands below. ")
        if not cold or extra != extra:
            return head + "Its cost against today's cold `train` is not measured (table_train_timings.csv).\n"
        ratio = (cold + extra) / cold
        return (head + f"Its cost is today's cold `train --external` ({cold / 60:.0f} min) plus one fine-tuned run "
                f"(~{extra / 60:.0f} min per fold run here): about {ratio:.1f}× today's, "
                f"{'within' if ratio <= MAX_COST_RATIO else 'beyond'} the {MAX_COST_RATIO:.0f}× the rule allows.\n")
    cost = r["train_seconds_per_run"]
    ratio = cost / cold if cold and pd.notna(cost) else float("nan")
    default_now = "**the plain default of `train`**" if DEFAULT_PRESET == FINETUNE_PRESET else f"preset `{FINETUNE_PRESET}`"
    if ratio != ratio:
        return gain + f"Its cost against today's cold `train` is not measured. Its recipe is {default_now}.\n"
    return (gain + f"One fold run took {cost / 60:.0f} min on the rendering machine, {ratio:.1f}× today's cold "
            f"`train --external` ({cold / 60:.0f} min, `table_train_timings.csv`): "
            f"{'within' if ratio <= MAX_COST_RATIO else 'beyond'} the {MAX_COST_RATIO:.0f}× the rule allows. Its "
            f"recipe is {default_now}.\n")


def paper_table3(report_dir: Path) -> str:
    """The paper's Table 3, all six rows as printed (:data:`~melanoma_utils.reports.paper.PAPER_TABLE3`), each followed
    by this project's like-for-like rows of notebook 05 (``table3_backbones.csv``: the same architecture, fusion, each
    protocol the project can run; a row that could not run says why) with accuracy, sensitivity, specificity and F1 at
    the run's validation threshold. What the paper does not state is left blank."""
    from .paper import PAPER_ROW_BACKBONES, PAPER_TABLE3

    path = report_dir / "table3_backbones.csv"
    ours = pd.read_csv(path) if path.is_file() else pd.DataFrame(columns=["backbone", "model"])
    ours = ours[ours["model"] == "fusion"]
    head = ["row", "protocol", "input px", "evaluation", "ROC AUC (95% CI)", "accuracy", "sensitivity", "specificity", "F1"]
    lines = ["| " + " | ".join(head) + " |", "|" + "---|" * len(head)]
    for name, acc, sens, spec, f1 in PAPER_TABLE3:
        lines.append(f"| **paper: {name}** | not stated | not stated | not stated | not stated | {acc / 100:.3f} | "
                     f"{sens / 100:.3f} | {spec / 100:.3f} | {f1:.2f} |")
        for _, r in ours[ours["backbone"].isin(PAPER_ROW_BACKBONES[name])].iterrows():
            if pd.isna(r.get("accuracy")):
                note = str(r.get("note", "")).split("(")[0].strip() or "not run"
                lines.append(f"| ours: {r['backbone']} | {r['protocol']} | — | {note} | — | — | — | — | — |")
                continue
            auc = Estimate(r["roc_auc"], r["roc_auc_ci_low"], r["roc_auc_ci_high"]).format(3, ci="")
            lines.append(f"| ours: {r['backbone']} | {r['protocol']} | {r['image_size']:.0f} | {r['evaluation']} | {auc} | "
                         f"{r['accuracy']:.3f} | {r['sensitivity']:.3f} | {r['specificity']:.3f} | {r['f1']:.3f} |")
    return "\n".join(lines) + "\n"


def objective_verdict(report_dir: Path, name: str = "table_objective_selection.csv") -> str:
    """What the rule makes of the candidates past the frozen-embedding ceiling (``name``: notebook 03's
    ``table_objective_selection.csv``, or the confirmation's ``table_objective_confirm.csv``): notebook 03's own
    sentence (:func:`melanoma_utils.study.ceiling.ceiling_verdict`), so README and docs say what the committed table
    says."""
    from ..study.ceiling import ceiling_verdict

    path = report_dir / name
    if not path.is_file():
        return f"Not measured yet: {name} (notebook 03, or scripts/objective_study.py).\n"
    return ceiling_verdict(pd.read_csv(path)) + "\n"
