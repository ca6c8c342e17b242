"""Issue 31's candidates against today's default, on the endpoints that matter (:mod:`melanoma_utils.study.ceiling`): a
diagnosis-aware head (unknown a class of its own, or masked), partial fine-tuning on cached activations, Shades of Gray
before the backbone and two resolutions, each trained like
``train --external`` (fusion, clinical + the shared HAM10000 part) by patient-grouped CV on the shared ISIC 2020
subset; scored within copy a (primary), melanoma vs nevus within copy a, overall, and on HAM10000 lesions held out of
every training part (another clinic). Writes ``table_objective_selection.csv`` (every candidate, every endpoint,
paired deltas with CIs, seconds per run) into ``--report-dir``.

    python scripts/objective_study.py                              # every candidate, 5 folds, 1 cached view
    python scripts/objective_study.py --folds 0 --candidates "Shades of Gray before the backbone"
    # the confirmation of an adapted winner on the two other fold assignments (notebook 03 runs it on one):
    python scripts/objective_study.py --candidates "diagnosis-masked + last 3 block(s) adapted" --repeat-adapted \
        --out table_objective_confirm.csv

The locked test part (``--locked``, the study's ``locked_test.csv``) is removed first, and the external lesions are
held out as notebook 03 holds them out (20%, seed 0, after the locked part), so the runs are notebook 03's and are
reused from ``--runs`` (real data beside the checkout, ``../shared/data``).
"""

from __future__ import annotations

import argparse
import time
from pathlib import Path

import pandas as pd

from melanoma_utils.data.confounds import with_source_copies
from melanoma_utils.data.isic import load_dataset
from melanoma_utils.data.sources import combine_external, hold_out_external, load_external
from melanoma_utils.study.ceiling import CEILING_CANDIDATES, ceiling_selection
from melanoma_utils.study.locked import read_locked, without_locked
from melanoma_utils.study.plan import FoldPlan

SHARED = Path(__file__).resolve().parents[1].parent / "shared" / "data"


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--images-csv", type=Path, default=SHARED / "isic2020-256" / "train.csv")
    ap.add_argument("--external", type=Path, default=SHARED / "ham10000-256")
    ap.add_argument("--report-dir", type=Path, default=Path("reports/isic2020"))
    ap.add_argument("--runs", type=Path, default=Path("reports/isic2020/runs/objectives"))
    ap.add_argument("--views", type=int, default=1, help="cached views per image (1 keeps it affordable)")
    ap.add_argument("--folds", type=int, nargs="*", default=None, help="which of the 5 folds to run (default: all)")
    ap.add_argument("--candidates", nargs="*", default=list(CEILING_CANDIDATES), metavar="NAME",
                    help="which candidates (default: all): " + "; ".join(CEILING_CANDIDATES))
    ap.add_argument("--repeats", type=int, default=3, help="fold assignments for the candidates on cached embeddings")
    ap.add_argument("--n-boot", type=int, default=1000)
    ap.add_argument("--repeat-adapted", action="store_true",
                    help="run the adapted candidates on every fold assignment too (notebook 03 runs them on one)")
    ap.add_argument("--locked", default="reports/isic2020/locked_test.csv",
                    help="the study's locked test part, removed first ('' keeps every row)")
    ap.add_argument("--out", default="table_objective_selection.csv", help="the table's name in --report-dir")
    args = ap.parse_args()

    ds = load_dataset(args.images_csv)
    df, _ = with_source_copies(ds.frame, args.images_csv)
    external, _ = combine_external(df, [load_external(args.external, on_missing="drop")])
    locked = read_locked(args.locked) if args.locked else None
    df, n_locked = without_locked(df, locked)
    external, n_locked_ext = without_locked(external, locked)
    print(f"locked part: {n_locked} ISIC and {n_locked_ext} external images removed" if locked else "no locked part")
    external, holdout = hold_out_external(external, 0.2, seed=0)  # notebook 03's split of the external lesions
    start = time.perf_counter()
    plan = FoldPlan(folds=tuple(args.folds) if args.folds else None, repeats=args.repeats, n_boot=args.n_boot,
                    locked=locked)
    table = ceiling_selection(df, external, holdout, args.runs, args.candidates, views=args.views, plan=plan,
                              repeat_adapted=args.repeat_adapted)
    out = args.report_dir / args.out
    tmp = out.with_suffix(".csv.tmp")
    table.to_csv(tmp, index=False)
    tmp.replace(out)
    cols = ["candidate", "within_copy_a", "within_copy_a_ci_low", "within_copy_a_ci_high", "delta_within_copy_a",
            "delta_within_copy_a_ci_low", "delta_within_copy_a_ci_high", "mvn_within_copy_a", "external_holdout",
            "delta_external_holdout", "delta_external_holdout_ci_low", "delta_external_holdout_ci_high", "overall",
            "train_seconds_per_run", "verdict"]
    with pd.option_context("display.width", 250, "display.max_columns", 30):
        print(table[cols].round(3).to_string(index=False))
    print(f"written {out} in {time.perf_counter() - start:.0f} s")


if __name__ == "__main__":
    main()
