"""Issue 42's selection: end-to-end fine-tuning on a CPU (the ``lite0-ft128`` recipe), with and without every source
weighted alike, against today's frozen default (:mod:`melanoma_utils.study.finetune`), each trained on the shared ISIC
2020 subset plus every external source (the shared HAM10000 part and the ISIC 2017 part) by patient-grouped CV on
the ISIC subset; scored within copy a (primary), melanoma vs nevus within copy a, overall, and on the lesions held out
of each external source (20%, lesion-grouped, never trained on). Writes ``table_finetune_selection.csv``,
``finetune_folds.csv`` (the ISIC fold of every image) and ``finetune_external_holdout.csv`` (the held-out lesions of
each source) into ``--report-dir``.

    python scripts/finetune_study.py                     # every candidate, 2 folds (~1 h cold on 2 CPU cores)
    python scripts/finetune_study.py --candidates "fine-tuned 128 px"
    python scripts/finetune_study.py --posthoc           # the post-hoc ensembles from the same runs (~5 min)
    python scripts/finetune_study.py --round2            # the second round of the recipe (~40 min on 2 CPU cores)
    python scripts/finetune_study.py --confirm --runs runs_confirm   # round 1's recommended ensemble again, on new folds
    python scripts/finetune_study.py --confirm-posthoc --runs runs_confirm   # the post-hoc ensemble, on those folds
    python scripts/finetune_study.py --larger-folds posthoc --runs runs_5fold   # a winner again, each model on 80%
    python scripts/finetune_study.py --round3 --runs runs_confirm   # the reference's milder augmentation, same folds
    python scripts/finetune_study.py --round4 --runs runs_confirm   # the learning rate warmed up, same folds

The locked test part (``--locked``, the study's ``locked_test.csv``) is removed first: no patient or lesion of it is
trained on, validated on or held out here. ``--locked ''`` keeps every row, as the first two rounds and the post-hoc
table did (their runs in ``--runs`` were trained on those folds: reproduce them with ``--locked ''``).

Real data beside the checkout (``../shared/data``); runs are reused from ``--runs`` when present.
"""

from __future__ import annotations

import argparse
import time
from dataclasses import dataclass
from pathlib import Path

import pandas as pd

from melanoma_utils.atomic import atomic_write
from melanoma_utils.data.confounds import with_source_copies
from melanoma_utils.data.csvfiles import write_csv
from melanoma_utils.data.isic import load_dataset
from melanoma_utils.data.sources import combine_external, hold_out_external, load_external
from melanoma_utils.study.finetune import (
    FINETUNE_CANDIDATES,
    FINETUNE_ENSEMBLES,
    FINETUNE_POSTHOC,
    FINETUNE_ROUND2,
    FINETUNE_ROUND2_ENSEMBLES,
    FINETUNE_ROUND3,
    FINETUNE_ROUND3_ENSEMBLES,
    FINETUNE_ROUND4,
    FINETUNE_ROUND4_ENSEMBLES,
    finetune_histories,
    finetune_selection,
)
from melanoma_utils.study.locked import read_locked, without_locked
from melanoma_utils.study.plan import FoldPlan

SHARED = Path(__file__).resolve().parents[1].parent / "shared" / "data"
#: Display names of the external folders (the ISIC 2017 part is read through the ISIC 2019 layout).
SOURCES = {"ham10000-256": "ham10000", "isic2017-256": "isic2017"}


def write_histories(runs: Path, report_dir: Path) -> None:
    """Add what fine-tuning did in each fine-tuned fold run of ``runs`` to ``table_finetune_histories.csv`` (the rows
    of an earlier call for the same runs folder replaced)."""
    path = report_dir / "table_finetune_histories.csv"
    new = finetune_histories(runs).assign(runs=runs.name)
    old = pd.read_csv(path, dtype={"runs": str}) if path.is_file() else new.iloc[:0]
    write_csv(pd.concat([old[old["runs"] != runs.name], new], ignore_index=True), path)


def _members(ensembles: dict[str, tuple[str, ...]]) -> list[str]:
    return list(next(iter(ensembles.values())))  # the base and the fine-tuned model of the (one) ensemble


@dataclass(frozen=True)
class Mode:
    """One table of the study: which candidates (``None``: ``--candidates``) and ensembles, the table it writes, the
    folds file it writes (``folds_out``) or must match (``same_folds``: the same folds as an earlier table), and its
    fold plan (``n_splits``, ``folds``: some folds of one assignment)."""

    names: list[str] | None
    ensembles: dict[str, tuple[str, ...]]
    table: str
    folds_out: str | None = None
    same_folds: str | None = None
    n_splits: int | None = None
    folds: tuple[int, ...] | None = None
    merge: bool = False  # add its rows to the table an earlier mode wrote on the same folds (its other rows kept)


CONFIRM_FOLDS = "finetune_confirm_folds.csv"
MODES: dict[str, Mode] = {
    "select": Mode(None, FINETUNE_ENSEMBLES, "table_finetune_selection.csv", "finetune_folds.csv"),
    "posthoc": Mode(sorted({m for ms in FINETUNE_POSTHOC.values() for m in ms}), FINETUNE_POSTHOC,
                    "table_finetune_posthoc.csv"),
    "round2": Mode(list(FINETUNE_ROUND2), FINETUNE_ROUND2_ENSEMBLES, "table_finetune_round2.csv"),
    "confirm": Mode(_members(FINETUNE_ENSEMBLES), FINETUNE_ENSEMBLES, "table_finetune_confirm.csv", CONFIRM_FOLDS),
    "confirm-posthoc": Mode(_members(FINETUNE_POSTHOC), FINETUNE_POSTHOC, "table_finetune_confirm_posthoc.csv",
                            same_folds=CONFIRM_FOLDS),
    "round3": Mode(list(FINETUNE_ROUND3), FINETUNE_ROUND3_ENSEMBLES, "table_finetune_round3.csv", same_folds=CONFIRM_FOLDS),
    "round4": Mode(list(FINETUNE_ROUND4), FINETUNE_ROUND4_ENSEMBLES, "table_finetune_round4.csv", same_folds=CONFIRM_FOLDS),
}
#: ``--larger-folds X``: ensemble X with its members on folds 0 and 1 of 5 (rows added to one table on the same folds).
LARGER_FOLDS: dict[str, dict[str, tuple[str, ...]]] = {"posthoc": FINETUNE_POSTHOC, "round3": FINETUNE_ROUND3_ENSEMBLES,
                                                      "round4": FINETUNE_ROUND4_ENSEMBLES}
MODES.update({f"larger-folds {name}": Mode(_members(ens), ens, "table_finetune_5fold.csv", "finetune_5fold_folds.csv",
                                           n_splits=5, folds=(0, 1), merge=True) for name, ens in LARGER_FOLDS.items()})
#: The help of each mode's flag (``--<mode>``; the larger-folds modes share ``--larger-folds``).
FLAG_HELP: dict[str, str] = {
    "posthoc": "score the post-hoc ensembles (study.finetune.FINETUNE_POSTHOC) from the same fold runs into "
               "table_finetune_posthoc.csv instead (reported, never selected)",
    "round2": "the recipe sweep's second round (study.finetune.FINETUNE_ROUND2, with its ensembles) against the same "
              "base on the same folds, into table_finetune_round2.csv",
    "confirm": "round 1's recommended ensemble (the base, the fine-tune with sources weighted alike, their average) "
               "again on the folds of the rows left by --locked, into table_finetune_confirm.csv",
    "confirm-posthoc": "the post-hoc ensemble (study.finetune.FINETUNE_POSTHOC: the base, the unweighted fine-tune, "
                       "their average) on the folds of --confirm, by the same rule, into "
                       "table_finetune_confirm_posthoc.csv",
    "round3": "round 3 of the recipe (study.finetune.FINETUNE_ROUND3: the milder augmentation, with its ensemble) "
              "against the same base on the folds of --confirm, into table_finetune_round3.csv",
    "round4": "round 4 of the recipe (study.finetune.FINETUNE_ROUND4: the learning rate warmed up over the first "
              "fine-tuning epoch, with its ensemble) against the same base on the folds of --confirm, into "
              "table_finetune_round4.csv",
}


def parse_args() -> argparse.Namespace:
    """The command line; the study's tables are mutually exclusive modes (``args.mode``, a :data:`MODES` key)."""
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--images-csv", type=Path, default=SHARED / "isic2020-256" / "train.csv")
    ap.add_argument("--external", type=Path, nargs="+", default=[SHARED / s for s in SOURCES])
    ap.add_argument("--report-dir", type=Path, default=Path("reports/isic2020"))
    ap.add_argument("--runs", type=Path, default=Path("reports/isic2020/runs/finetune"))
    ap.add_argument("--folds", type=int, default=2, help="patient-grouped folds of the ISIC subset (all run)")
    ap.add_argument("--candidates", nargs="*", default=list(FINETUNE_CANDIDATES), metavar="NAME",
                    help="which candidates (default: all): " + "; ".join(FINETUNE_CANDIDATES))
    ap.add_argument("--n-boot", type=int, default=1000)
    ap.add_argument("--locked", default="reports/isic2020/locked_test.csv",
                    help="the study's locked test part (removed before anything; '' keeps every row)")
    mode = ap.add_mutually_exclusive_group()
    for name, text in FLAG_HELP.items():
        mode.add_argument(f"--{name}", action="store_true", help=text)
    mode.add_argument("--larger-folds", choices=tuple(LARGER_FOLDS), default=None,
                      help="the post-hoc ensemble (posthoc), round 3's (round3) or round 4's (round4), with its members, "
                           "on folds 0 and 1 of 5 of the rows left by --locked (each model trained and validated on 80%% "
                           "of the patients, not half), into table_finetune_5fold.csv and finetune_5fold_folds.csv: the "
                           "second confirmation a winner on the --confirm folds needs before it is recommended")
    args = ap.parse_args()
    flags = {name: getattr(args, name.replace("-", "_")) for name in FLAG_HELP}
    args.mode = (f"larger-folds {args.larger_folds}" if args.larger_folds
                 else next((m for m, on in flags.items() if on), "select"))
    return args


def load_parts(args: argparse.Namespace) -> tuple[pd.DataFrame, pd.DataFrame, dict[str, pd.DataFrame], object]:
    """The ISIC rows and every external source's training rows and held-out lesions, the locked part removed first."""
    locked = read_locked(args.locked) if args.locked else None
    ds = load_dataset(args.images_csv)
    df, _ = with_source_copies(ds.frame, args.images_csv)
    df, n_locked = without_locked(df, locked)
    print(f"locked part: {n_locked} ISIC images removed" if locked else "no locked part")
    train_parts, holdouts = [], {}
    for folder in args.external:
        ext, _ = combine_external(df, [load_external(folder, on_missing="drop")])
        ext, n_ext = without_locked(ext, locked)
        print(f"{folder.name}: {n_ext} locked images removed")
        ext, held = hold_out_external(ext, 0.2, seed=0)  # each source's own lesion-grouped, melanoma-stratified split
        train_parts.append(ext)
        holdouts[SOURCES.get(folder.name, folder.name)] = held
    return df, pd.concat(train_parts, ignore_index=True), holdouts, locked


def check_same_folds(folds: pd.DataFrame, earlier_csv: Path, runs: Path) -> None:
    """Stop unless ``folds`` (this run's ISIC folds) are the ones ``earlier_csv`` recorded."""
    earlier = pd.read_csv(earlier_csv, dtype=str)
    if not folds.sort_values("image_name").reset_index(drop=True).equals(
            earlier.sort_values("image_name").reset_index(drop=True)):
        raise SystemExit(f"{runs}/folds.csv differs from {earlier_csv.name}: not the folds this table compares on")


def merged_table(new: pd.DataFrame, old: pd.DataFrame, name: str) -> pd.DataFrame:
    """``new``'s rows added to ``old``'s (a candidate in both: ``new``'s row): the base first, then the earlier
    candidates, then the new ones. Stops when the two base rows differ (then the tables were not measured alike)."""
    base = new[new["verdict"] == "base"]
    old_base = old[old["verdict"] == "base"]
    if len(old_base) and abs(float(old_base["within_copy_a"].iloc[0]) - float(base["within_copy_a"].iloc[0])) > 1e-9:
        raise SystemExit(f"{name}: the base scores {float(old_base['within_copy_a'].iloc[0]):.4f} within copy a there and "
                         f"{float(base['within_copy_a'].iloc[0]):.4f} here: not the same base, not one table")
    kept = old[(old["verdict"] != "base") & ~old["candidate"].isin(new["candidate"])]
    return pd.concat([base, kept, new[new["verdict"] != "base"]], ignore_index=True)


def main() -> None:
    args = parse_args()
    mode = MODES[args.mode]
    df, external, holdouts, locked = load_parts(args)
    plan = FoldPlan(n_splits=mode.n_splits or args.folds, folds=mode.folds, n_boot=args.n_boot, locked=locked)
    start = time.perf_counter()
    table = finetune_selection(df, external, holdouts, args.runs, mode.names or args.candidates, plan=plan,
                               ensembles=mode.ensembles)
    folds = pd.read_csv(args.runs / "folds.csv", dtype=str)
    if mode.same_folds:  # the same folds as an earlier table, or the comparison with it means nothing
        check_same_folds(folds, args.report_dir / mode.same_folds, args.runs)
    if mode.merge and (args.report_dir / mode.table).is_file():
        check_same_folds(folds, args.report_dir / str(mode.folds_out), args.runs)
        table = merged_table(table, pd.read_csv(args.report_dir / mode.table), mode.table)
    atomic_write(args.report_dir / mode.table, lambda tmp: table.to_csv(tmp, index=False))
    if mode.folds_out:  # what the numbers were measured on, committed beside them: the ISIC fold of every image
        write_csv(folds, args.report_dir / mode.folds_out)
    if args.mode == "select":  # and the held-out lesions of each source
        held = pd.concat([h[["image_name", "patient_id", "target"]].assign(source=s) for s, h in holdouts.items()])
        write_csv(held, args.report_dir / "finetune_external_holdout.csv")
    cols = ["candidate", "within_copy_a", "delta_within_copy_a", "delta_within_copy_a_ci_low",
            "delta_within_copy_a_ci_high", "mvn_within_copy_a", "delta_mvn_within_copy_a",
            *[c for c in table.columns if c.startswith("holdout_") and "_ci_" not in c], "overall",
            "train_seconds_per_run", "verdict"]
    with pd.option_context("display.width", 250, "display.max_columns", 30, "display.precision", 3):
        print(table[cols].to_string(index=False))
    if args.mode != "posthoc":  # the post-hoc table trains nothing of its own
        write_histories(args.runs, args.report_dir)
    print(f"{time.perf_counter() - start:.0f} s")


if __name__ == "__main__":
    main()
