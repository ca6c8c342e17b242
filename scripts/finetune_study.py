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

The locked test part (``--locked``, the study's ``locked_test.csv``) is removed first: no patient or lesion of it is
trained on, validated on or held out here. ``--locked ''`` keeps every row, as the first two rounds and the post-hoc
table did (their runs in ``--runs`` were trained on those folds: reproduce them with ``--locked ''``).

Real data beside the checkout (``../shared/data``); runs are reused from ``--runs`` when present.
"""

from __future__ import annotations

import argparse
import time
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
    old = pd.read_csv(path) if path.is_file() else new.iloc[:0]
    write_csv(pd.concat([old[old["runs"] != runs.name], new], ignore_index=True), path)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--images-csv", type=Path, default=SHARED / "isic2020-256" / "train.csv")
    ap.add_argument("--external", type=Path, nargs="+", default=[SHARED / s for s in SOURCES])
    ap.add_argument("--report-dir", type=Path, default=Path("reports/isic2020"))
    ap.add_argument("--runs", type=Path, default=Path("reports/isic2020/runs/finetune"))
    ap.add_argument("--folds", type=int, default=2, help="patient-grouped folds of the ISIC subset (all run)")
    ap.add_argument("--candidates", nargs="*", default=list(FINETUNE_CANDIDATES), metavar="NAME",
                    help="which candidates (default: all): " + "; ".join(FINETUNE_CANDIDATES))
    ap.add_argument("--n-boot", type=int, default=1000)
    ap.add_argument("--posthoc", action="store_true",
                    help="score the post-hoc ensembles (study.finetune.FINETUNE_POSTHOC) from the same fold runs into "
                         "table_finetune_posthoc.csv instead (reported, never selected)")
    ap.add_argument("--round2", action="store_true",
                    help="the recipe sweep's second round (study.finetune.FINETUNE_ROUND2, with its ensembles) against "
                         "the same base on the same folds, into table_finetune_round2.csv")
    ap.add_argument("--locked", default="reports/isic2020/locked_test.csv",
                    help="the study's locked test part (removed before anything; '' keeps every row)")
    ap.add_argument("--confirm", action="store_true",
                    help="round 1's recommended ensemble (the base, the fine-tune with sources weighted alike, their "
                         "average) again on the folds of the rows left by --locked, into table_finetune_confirm.csv")
    ap.add_argument("--confirm-posthoc", action="store_true",
                    help="the post-hoc ensemble (study.finetune.FINETUNE_POSTHOC: the base, the unweighted fine-tune, "
                         "their average) on the folds of --confirm, by the same rule, into "
                         "table_finetune_confirm_posthoc.csv")
    ap.add_argument("--round3", action="store_true",
                    help="round 3 of the recipe (study.finetune.FINETUNE_ROUND3: the milder augmentation, with its "
                         "ensemble) against the same base on the folds of --confirm, into table_finetune_round3.csv")
    ap.add_argument("--larger-folds", choices=("posthoc", "round3"), default=None,
                    help="the post-hoc ensemble (posthoc) or round 3's (round3), with its members, on folds 0 and 1 of 5 "
                         "of the rows left by --locked (each model trained on 80%% of the patients, not half), into "
                         "table_finetune_5fold.csv and finetune_5fold_folds.csv: the second confirmation a winner on "
                         "the --confirm folds needs before it is recommended")
    args = ap.parse_args()

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
    external = pd.concat(train_parts, ignore_index=True)
    plan = FoldPlan(n_splits=5 if args.larger_folds else args.folds, folds=(0, 1) if args.larger_folds else None,
                    n_boot=args.n_boot, locked=locked)
    start = time.perf_counter()
    if args.posthoc:
        members = sorted({m for ms in FINETUNE_POSTHOC.values() for m in ms})
        table = finetune_selection(df, external, holdouts, args.runs, members, plan=plan, ensembles=FINETUNE_POSTHOC)
        atomic_write(args.report_dir / "table_finetune_posthoc.csv", lambda tmp: table.to_csv(tmp, index=False))
        print(table[["candidate", "within_copy_a", "delta_within_copy_a", "verdict"]].to_string(index=False))
        return
    if args.round3:
        table = finetune_selection(df, external, holdouts, args.runs, list(FINETUNE_ROUND3), plan=plan,
                                   ensembles=FINETUNE_ROUND3_ENSEMBLES)
        write_csv(table, args.report_dir / "table_finetune_round3.csv")
        print(table[["candidate", "within_copy_a", "delta_within_copy_a", "delta_within_copy_a_ci_low",
                     "delta_within_copy_a_ci_high", "train_seconds_per_run", "verdict"]].to_string(index=False))
        write_histories(args.runs, args.report_dir)
        print(f"{time.perf_counter() - start:.0f} s")
        return
    if args.larger_folds:
        ensembles = FINETUNE_POSTHOC if args.larger_folds == "posthoc" else FINETUNE_ROUND3_ENSEMBLES
        members = list(next(iter(ensembles.values())))
        table = finetune_selection(df, external, holdouts, args.runs, members, plan=plan, ensembles=ensembles)
        write_csv(table, args.report_dir / "table_finetune_5fold.csv")
        write_csv(pd.read_csv(args.runs / "folds.csv", dtype=str), args.report_dir / "finetune_5fold_folds.csv")
        print(table[["candidate", "within_copy_a", "delta_within_copy_a", "delta_within_copy_a_ci_low",
                     "delta_within_copy_a_ci_high", "train_seconds_per_run", "verdict"]].to_string(index=False))
        write_histories(args.runs, args.report_dir)
        print(f"{time.perf_counter() - start:.0f} s")
        return
    if args.confirm or args.confirm_posthoc:
        ensembles = FINETUNE_POSTHOC if args.confirm_posthoc else FINETUNE_ENSEMBLES
        members = list(next(iter(ensembles.values())))  # the base and the fine-tuned model
        table = finetune_selection(df, external, holdouts, args.runs, members, plan=plan, ensembles=ensembles)
        if args.confirm_posthoc:  # the folds of --confirm (the same plan and rows): finetune_confirm_folds.csv holds them
            write_csv(table, args.report_dir / "table_finetune_confirm_posthoc.csv")
        else:
            write_csv(table, args.report_dir / "table_finetune_confirm.csv")
            write_csv(pd.read_csv(args.runs / "folds.csv", dtype=str), args.report_dir / "finetune_confirm_folds.csv")
        print(table[["candidate", "within_copy_a", "delta_within_copy_a", "delta_within_copy_a_ci_low",
                     "delta_within_copy_a_ci_high", "train_seconds_per_run", "verdict"]].to_string(index=False))
        write_histories(args.runs, args.report_dir)
        print(f"{time.perf_counter() - start:.0f} s")
        return
    if args.round2:
        table = finetune_selection(df, external, holdouts, args.runs, list(FINETUNE_ROUND2), plan=plan,
                                   ensembles=FINETUNE_ROUND2_ENSEMBLES)
        write_csv(table, args.report_dir / "table_finetune_round2.csv")
        print(table[["candidate", "within_copy_a", "delta_within_copy_a", "delta_within_copy_a_ci_low",
                     "delta_within_copy_a_ci_high", "train_seconds_per_run", "verdict"]].to_string(index=False))
        write_histories(args.runs, args.report_dir)
        print(f"{time.perf_counter() - start:.0f} s")
        return
    table = finetune_selection(df, external, holdouts, args.runs, args.candidates, plan=plan)
    atomic_write(args.report_dir / "table_finetune_selection.csv", lambda tmp: table.to_csv(tmp, index=False))
    # what the numbers were measured on, committed beside them: the ISIC fold of every image, the held-out lesions
    write_csv(pd.read_csv(args.runs / "folds.csv", dtype=str), args.report_dir / "finetune_folds.csv")
    held = pd.concat([h[["image_name", "patient_id", "target"]].assign(source=s) for s, h in holdouts.items()])
    write_csv(held, args.report_dir / "finetune_external_holdout.csv")
    cols = ["candidate", "within_copy_a", "delta_within_copy_a", "delta_within_copy_a_ci_low",
            "delta_within_copy_a_ci_high", "mvn_within_copy_a", "delta_mvn_within_copy_a",
            *[c for c in table.columns if c.startswith("holdout_") and "_ci_" not in c], "overall",
            "train_seconds_per_run", "verdict"]
    with pd.option_context("display.width", 250, "display.max_columns", 30, "display.precision", 3):
        print(table[cols].to_string(index=False))
    write_histories(args.runs, args.report_dir)
    print(f"{time.perf_counter() - start:.0f} s")


if __name__ == "__main__":
    main()
