"""Commands that use a trained run: predict and evaluate."""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

from .cli_args import (
    _existing_file,
    _existing_path,
    _nonneg_float,
    _positive_int,
    _prevalence,
    _renamed,
    command,
    data_args,
)
from .data import DataError


def _predict_args(p: argparse.ArgumentParser) -> None:
    p.add_argument("--model", dest="run", type=_existing_path, help=argparse.SUPPRESS, action=_renamed("--run"))
    p.add_argument("--run", dest="run", type=_existing_path, help="run folder from `train` (required)")
    data_args(p, "CSV in the ISIC 2020 schema, or a TFRecord shard folder (from `shard`)", duplicates=False)
    p.add_argument("--out", type=Path, required=True, help="predictions CSV to write")
    p.add_argument("--batch-size", type=_positive_int, default=64)
    p.add_argument("--impute-size", action="store_true",
                   help="models with width/height (features paper): impute rows without them (marked size_imputed)")
    p.add_argument("--tta", type=int, choices=(1, 2, 4, 8), default=None,
                   help="test-time augmentation: average over this many rotations/mirrors of each image "
                        "(default: the run's own, the one its threshold was chosen with)")
    p.add_argument("--prevalence", type=_prevalence,
                   help="express the probabilities at this deployment prevalence (a number, or isic2020: 584/33,126; default: the "
                        "run's validation prevalence); the decisions do not change")
    p.add_argument("--overwrite", action="store_true")


@command("predict", "write image_name,probability,prediction for every row of a CSV", _predict_args)
def _predict(args: argparse.Namespace) -> int:
    from .data import load_for_prediction
    from .runs import Run

    if args.run is None:
        raise ValueError("predict needs --run RUN: the run folder written by `train`")
    if args.out.is_dir():
        raise FileExistsError(f"{args.out} is a folder; --out names the predictions CSV to write (e.g. {args.out / 'predictions.csv'})")
    if args.out.exists() and not args.overwrite:
        raise FileExistsError(f"{args.out} exists; pass --overwrite to replace it")
    run = Run.load(args.run)
    ds = load_for_prediction(args.metadata, args.images, needs_images=run.train_config.uses_images)
    for note in ds.report.notes:
        print(f"note: {note}")
    df = ds.frame
    import time

    t0 = time.perf_counter()
    tta = args.tta if args.tta is not None else run.train_config.tta
    preds = run.predict_frame(df, args.batch_size, tta=tta, impute_size=args.impute_size, prevalence=args.prevalence)
    seconds = time.perf_counter() - t0
    from .atomic import atomic_write

    atomic_write(args.out, lambda tmp: preds.to_csv(tmp, index=False))
    bad = preds[preds["error"] != ""]
    print(f"predictions: {len(preds) - len(bad):,} of {len(preds):,} rows -> {args.out} "
          f"(threshold {float(preds['threshold'].iloc[0]) if len(preds) else run.threshold:.4f}, "
          f"{int((preds['prediction'] == 1).sum()):,} predicted malignant) "
          f"in {seconds:.1f} s ({len(preds) / max(seconds, 1e-9):.0f} images/s{', TTA ×' + str(tta) if tta > 1 else ''})")
    if run.prevalence is not None:
        print(f"probabilities calibrated ({run.calibrator.method}) at prevalence {preds['prevalence'].iloc[0]:.4g}"
              + (" (moved from the run's " + format(run.prevalence, ".4g") + ")" if args.prevalence is not None else
                 " (the run's validation prevalence; --prevalence P for another)"))
    if "size_imputed" in preds and preds["size_imputed"].any():
        print(f"note: width/height imputed for {int(preds['size_imputed'].sum()):,} row(s) (--impute-size; "
              "marked in the size_imputed column)")
    for _, row in bad.head(20).iterrows():
        hint = ""
        if row["error"] == "image file not found" and str(row["image_name"]).lower().endswith((".jpg", ".jpeg", ".png")):
            hint = " (image_name should not include the file extension: the file looked for is <image_name>.jpg)"
        print(f"  row {row.name + 2}: {row['image_name']}: {row['error']}{hint}", file=sys.stderr)
    return 1 if len(bad) else 0


def _evaluate_args(p: argparse.ArgumentParser) -> None:
    p.add_argument("--predictions", type=_existing_file, required=True, help="CSV from `predict`")
    p.add_argument("--metadata", type=_existing_path, required=True,
                   help="CSV (or dataset folder) with image_name, patient_id and target; sex, age, site, diagnosis and "
                        "width/height give the subgroups")
    p.add_argument("--threshold", type=_nonneg_float,
                   help="decision threshold (default: the predictions' threshold column, else the run's)")
    p.add_argument("--model", dest="run", type=_existing_path, help=argparse.SUPPRESS, action=_renamed("--run"))
    p.add_argument("--run", dest="run", type=_existing_path, help="run folder: its threshold and calibration prevalence")
    p.add_argument("--prevalence", type=_prevalence,
                   help="also report at this deployment prevalence, a number or isic2020 (probabilities moved there by prior "
                        "shift, rows reweighted): calibration, PPV/NPV/NNB, net benefit")
    p.add_argument("--out", type=Path,
                   help="report folder: metrics.json, operating_points.csv, subgroups.csv, net_benefit.csv, "
                        "reliability.csv and PNG figures (a path ending in .json: that metrics file only); a run folder "
                        "or another non-empty folder is refused")
    p.add_argument("--overwrite", action="store_true", help="replace an earlier evaluate report in --out")
    p.add_argument("--n-boot", type=_positive_int, default=1000)


@command("evaluate", "validate predictions: discrimination, calibration, operating points (NNB), decision curve, "
         "subgroups, with patient-bootstrap CIs", _evaluate_args)
def _evaluate(args: argparse.Namespace) -> int:
    import pandas as pd

    from .atomic import json_safe, write_json
    from .clinical import MIN_PER_CLASS, validation_report
    from .data import load_metadata
    from .evaluation import threshold_metrics
    from .validation import join, summary_lines, write_report

    if args.out is not None:
        _check_report_out(args.out, args.overwrite)
    preds = pd.read_csv(args.predictions, dtype={"image_name": str})
    meta = load_metadata(args.metadata, require_target=True).frame
    run_config = None
    if args.run is not None:
        from .runs import Run

        run_config = Run.read_config(args.run)
    joined = join(preds, meta, str(args.predictions), threshold=args.threshold, run_config=run_config)
    merged, excluded = joined.table, joined.excluded
    if merged.empty:
        raise DataError(f"{args.predictions}: no prediction matches an image_name of {args.metadata}")
    n_pos, n_neg = int(merged["target"].sum()), int(len(merged) - merged["target"].sum())
    if min(n_pos, n_neg) < MIN_PER_CLASS:
        raise DataError(f"{args.predictions}: {len(merged):,} evaluable prediction(s), {n_pos} malignant and {n_neg} benign: "
                        f"too few for an AUC or a confidence interval (at least {MIN_PER_CLASS} of each class, the same "
                        "rule as for subgroups); evaluate more images")
    if args.prevalence is not None and joined.prevalence is None:
        raise ValueError("--prevalence needs to know the prevalence the probabilities are calibrated at: use predictions "
                         "written by `predict` (prevalence column) or pass --run RUN_DIR of a calibrated run")
    report = validation_report(merged, threshold=joined.threshold, prevalence=args.prevalence,
                               probability_prevalence=joined.prevalence, n_boot=args.n_boot)
    thresholds = {"0.5": 0.5, **({"validation": joined.threshold} if joined.threshold is not None else {})}
    report["thresholds"] = {name: threshold_metrics(merged["target"], merged["probability"], t)
                            for name, t in thresholds.items()}
    report["excluded"] = excluded
    print(f"evaluated {len(merged):,} predictions of {len(meta):,} metadata rows")
    if excluded["not_predicted"]:
        print(f"note: {excluded['not_predicted']:,} of {len(meta):,} row(s) of {args.metadata} have no prediction in "
              f"{args.predictions}: not evaluated (metrics.json 'excluded')")
    if excluded["no_prediction"]:
        print(f"note: {excluded['no_prediction']:,} row(s) without a prediction (unreadable images), excluded")
    if excluded["no_metadata"]:
        print(f"note: {excluded['no_metadata']:,} prediction(s) without a row in {args.metadata}, excluded")
    for line in summary_lines(report):
        print(line)
    if args.out is not None:
        if args.out.suffix.lower() == ".json":
            args.out.parent.mkdir(parents=True, exist_ok=True)
            write_json(args.out, json_safe(report))
            print(f"metrics: {args.out}")
        else:
            if args.out.is_file():
                raise FileExistsError(f"{args.out} is a file; --out names a report folder (or a .json file)")
            paths = write_report(report, args.out)
            print(f"report: {args.out}/ ({', '.join(p.name for p in paths)})")
    return 0


#: The file an ``evaluate`` report folder holds (how a folder is recognised as one it may replace).
_REPORT_MARK = "metrics.json"


def _check_report_out(out: Path, overwrite: bool) -> None:
    """Refuse to write an evaluate report where it would overwrite something a user made: a run folder (its own
    metrics.json is the training record) or any non-empty folder that is not an earlier report (``--overwrite``
    replaces an earlier report only)."""
    if out.suffix.lower() == ".json":
        if out.exists() and not overwrite:
            raise FileExistsError(f"{out} exists; pass --overwrite to replace it")
        if (out.parent / "config.json").is_file() and (out.parent / "model.keras").exists():
            raise FileExistsError(f"{out.parent} is a run folder: write the evaluation elsewhere (its metrics.json "
                                  "records the training)")
        return
    if out.is_file():
        raise FileExistsError(f"{out} is a file; --out names a report folder (or a .json file)")
    if not out.is_dir() or not any(out.iterdir()):
        return
    if (out / "config.json").is_file() or (out / "model.keras").exists() or (out / "ensemble.json").is_file():
        raise FileExistsError(f"{out} is a run folder: write the evaluation report elsewhere (its metrics.json records "
                              "the training)")
    if not (out / _REPORT_MARK).is_file():
        raise FileExistsError(f"{out} is a non-empty folder that holds no evaluate report; choose an empty or new folder")
    if not overwrite:
        raise FileExistsError(f"{out} holds an earlier evaluate report; pass --overwrite to replace it")


