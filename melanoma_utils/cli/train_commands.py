"""Commands that train: train (a run folder) and ensemble."""

from __future__ import annotations

import argparse
import sys
from pathlib import Path
from typing import TYPE_CHECKING

from ..runs.runfolder import RunLayout
from .args import (
    _existing_path,
    _nonneg_float,
    _nonneg_int,
    _positive_float,
    _positive_int,
    _print_metrics,
    _renamed,
    _sensitivity,
    command,
    data_args,
)

if TYPE_CHECKING:
    from ..runs.run import TrainConfig


#: The parsers a :class:`~melanoma_utils.models.train_options.Option` names in ``check``.
_CHECKS = {"positive_int": _positive_int, "nonneg_int": _nonneg_int, "positive_float": _positive_float,
           "fraction": _nonneg_float, "sensitivity": _sensitivity, "int": int, "str": str}


def _config_options(p: argparse.ArgumentParser) -> None:
    """One option per :data:`~melanoma_utils.models.train_options.TRAIN_OPTIONS` row: its flag, description,
    choices and parser from the table, its default stated from TrainConfig (and applied by the preset)."""
    from ..models.train_options import TRAIN_OPTIONS
    from ..runs.run import TrainConfig

    for opt in TRAIN_OPTIONS:
        default = opt.default_text or TrainConfig.default(opt.field)
        if opt.switch_off:
            p.add_argument(*opt.flags, dest=opt.field, action="store_false", default=argparse.SUPPRESS, help=opt.help)
            continue
        p.add_argument(*opt.flags, dest=opt.field, type=_CHECKS[opt.check], choices=opt.choices, default=argparse.SUPPRESS,
                       metavar=opt.metavar, help=f"{opt.help} (default: {default})")


def _train_args(p: argparse.ArgumentParser) -> None:
    from ..data.confounds import COPIES_CSV
    from ..models.presets import DEFAULT_PRESET, PRESETS, describe_presets

    data_args(p, "training CSV, dataset folder, or TFRecord shard folder (from `shard`)")
    p.add_argument("--external", type=_existing_path, action="append", default=[], metavar="DIR",
                   help="external training data (repeatable): a HAM10000 or ISIC 2019 folder in its own schema; its rows "
                        "join the training part only (validation, calibration and threshold stay on --metadata's patients)")
    p.add_argument("--out", type=Path, required=True, help="run folder to write")
    p.add_argument("--preset", choices=list(PRESETS), default=DEFAULT_PRESET,
                   help=f"a named training recipe; the options below override it (default: {DEFAULT_PRESET}). "
                        + "; ".join(describe_presets().splitlines()))
    p.add_argument("--model", dest="kind", choices=("fusion", "image", "meta"), default=argparse.SUPPRESS,
                   help=argparse.SUPPRESS, action=_renamed("--kind"))
    _config_options(p)
    p.add_argument("--source-csv", type=_existing_path, default=None, metavar="CSV",
                   help=f"image_name, source_copy: which copy of the data each image came from (default: {COPIES_CSV} "
                        "beside --metadata, if there)")
    p.add_argument("--overwrite", action="store_true",
                   help="replace a finished run in --out (only once the new run is complete)")
    p.add_argument("--restart", action="store_true",
                   help="discard an interrupted run's saved state instead of resuming it")


#: ``train`` options that are not TrainConfig fields.
_NOT_CONFIG = ("command", "handler", "metadata", "images", "duplicates", "external", "out", "overwrite", "restart",
               "source_csv", "preset")


def train_config(args: argparse.Namespace) -> "TrainConfig":
    """The :class:`~melanoma_utils.runs.run.TrainConfig` of parsed ``train`` arguments: the ``--preset`` with only the
    options the user gave on top (every other value is the preset's, and beyond it TrainConfig's own default).
    Without ``--verbose``, Keras reports one line per epoch when stdout is not a terminal (a log file, CI, a notebook:
    a per-batch progress bar there is thousands of lines of control codes), its progress bar on a terminal."""
    from ..models.presets import DEFAULT_PRESET
    from ..runs.run import TrainConfig

    given = {k: v for k, v in vars(args).items() if k not in _NOT_CONFIG}
    if "verbose" not in given and not sys.stdout.isatty():
        given["verbose"] = 2
    return TrainConfig.from_preset(getattr(args, "preset", None) or DEFAULT_PRESET, **given)


@command("train", "train a model; write a self-contained run folder", _train_args)
def _train(args: argparse.Namespace) -> int:
    from ..data.isic import load_dataset
    from ..runs.training import make_distribution, train_run

    if getattr(args, "strategy", None) == "multiworker":  # before TensorFlow runs anything (reading shards would): collective set-up
        make_distribution("multiworker")

    cfg = train_config(args)
    ds = load_dataset(args.metadata, args.images, duplicates=args.duplicates,
                      on_missing="drop" if cfg.uses_images else "keep")
    from ..data.confounds import with_source_copies

    frame, copies_note = with_source_copies(ds.frame, ds.report.source, args.source_csv)
    for note in ds.report.notes + ([copies_note] if copies_note else []):
        print(f"note: {note}")
    s = ds.summary
    print(f"training on {s['rows']:,} images, {s['patients']:,} patients, {s['malignant']:,} malignant")
    external = None
    if args.external:
        from ..data.sources import combine_external, load_external

        loaded = [load_external(d, on_missing="drop" if cfg.uses_images else "keep") for d in args.external]
        external, notes = combine_external(ds.frame, loaded)
        for note in [n for e in loaded for n in e.report.notes] + notes:
            print(f"note: {note}")
        for name, part in external.groupby("source", sort=False):
            print(f"+ external ({name}, training part only): {len(part):,} images, {part['patient_id'].nunique():,} "
                  f"lesions, {int(part['target'].sum()):,} melanoma, {int((part['diagnosis'] == 'nevus').sum()):,} nevi")
    run = train_run(frame, cfg, args.out, overwrite=args.overwrite, restart=args.restart, external=external)
    c = run.config
    sw = c.get("source_weighting") or {}
    if sw.get("column"):
        print(f"grouping {sw['column']!r}: source weighting {sw['weighting']}"
              + "".join(f"; {g['group']}: {g['rows']:,} rows, {g['malignant_share']:.1%} malignant"
                        + (f" ({g['warning']})" if g["warning"] else "") for g in sw.get("groups", [])))
    if run.run_dir is None:  # a multi-worker run's other workers train in step; the chief writes --out
        print(f"worker: trained in step with the chief, which writes {args.out}")
    else:
        print(f"run folder: {args.out}")
    print(f"epochs: {c['epochs_run']}  train time: {c['train_seconds']:.0f} s  "
          f"({c['train_images_per_second']:.0f} images/s)  threshold (validation): {c['threshold']:.4f}")
    if c.get("threshold_fallback"):
        print(f"note: threshold is a fallback: {c['threshold_rule']}")
    rep = run.metrics.get("validation_report")
    if c.get("calibration") and rep:
        print(f"probabilities calibrated ({run.calibrator.label}) on the validation split, right at prevalence "
              f"{c['calibration']['prevalence']:.4g}: Brier {rep['brier']['estimate']:.4f} (raw model output "
              f"{rep['brier_raw']:.4f}); model card: {RunLayout(args.out).model_card}")
    elif c.get("calibration_note"):
        print(f"note: {c['calibration_note']}")
    _print_metrics(run.metrics["validation"], "validation")
    return 0


def _ensemble_args(p: argparse.ArgumentParser) -> None:
    p.add_argument("--runs", type=_existing_path, nargs="+", required=True,
                   help="two or more run folders trained on the same CSV with the same --seed and --val-fraction "
                        "(they share their validation split)")
    p.add_argument("--out", type=Path, required=True, help="ensemble run folder to write (must not exist)")
    data_args(p, "the training CSV: adds sex/age/site subgroups to the report", shards=False, required=False,
              duplicates=False, images_help="image folder of --metadata (only to locate it; images are not read)")
    p.add_argument("--min-sensitivity", type=_sensitivity, default=None,
                   help="validation sensitivity the threshold must reach (default: the first member's)")
    p.add_argument("--seed", type=int, default=0)


@command("ensemble", "average trained runs into one ensemble run folder (one calibrator and threshold on held-out rows)",
         _ensemble_args)
def _ensemble(args: argparse.Namespace) -> int:
    from ..data.isic import load_metadata
    from ..runs.ensemble import build_ensemble

    meta = load_metadata(args.metadata).frame if args.metadata else None
    run = build_ensemble(args.runs, args.out, meta, args.min_sensitivity, args.seed)
    c = run.config
    for k, m in enumerate(c["ensemble"]["members"]):
        auc = m["validation_auc_raw"]
        branch = "metadata only" if m["kind"] == "meta" else f"{m['kind']}, {m['backbone'] or 'cnn'}, {m['image_size']} px"
        print(f"member {k}: {m['source']} ({branch}): validation ROC AUC {auc:.3f}" if auc is not None
              else f"member {k}: {m['source']}")
    print(f"ensemble folder: {args.out}  threshold (validation): {c['threshold']:.4f}"
          + (f"  calibration: {run.calibrator.label}" if c.get("calibration") else ""))
    _print_metrics(run.metrics["validation"], "validation (ensemble)")
    return 0


