"""Command line: ``python -m melanoma_utils <command> ...`` (``--help`` on each command).

Arguments are validated here, at the boundary; errors print one clear line and exit with status 2.
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path
from typing import TYPE_CHECKING, Callable, Sequence

from . import config
from .data import DataError

if TYPE_CHECKING:
    from .runs import TrainConfig

Handler = Callable[[argparse.Namespace], int]
_COMMANDS: dict[str, tuple[str, Callable[[argparse.ArgumentParser], None], Handler]] = {}


def command(name: str, help_text: str, add_args: Callable[[argparse.ArgumentParser], None]):
    """Register a sub-command handler."""

    def register(fn: Handler) -> Handler:
        _COMMANDS[name] = (help_text, add_args, fn)
        return fn

    return register


def _existing_file(value: str) -> Path:
    path = Path(value)
    if not path.is_file():
        raise argparse.ArgumentTypeError(f"file not found: {value}")
    return path


def _existing_path(value: str) -> Path:
    path = Path(value)
    if not path.exists():
        raise argparse.ArgumentTypeError(f"not found: {value}")
    return path


def _int_at_least(low: int, message: str) -> Callable[[str], int]:
    """An argparse type: an integer ``>= low``."""

    def parse(value: str) -> int:
        try:
            n = int(value)
        except ValueError:
            raise argparse.ArgumentTypeError(f"not an integer: {value}") from None
        if n < low:
            raise argparse.ArgumentTypeError(f"{message}: {value}")
        return n

    return parse


_positive_int = _int_at_least(1, "must be positive")
_nonneg_int = _int_at_least(0, "must be >= 0")


def _check_args(p: argparse.ArgumentParser) -> None:
    p.add_argument("--metadata", "--shards", dest="metadata", type=_existing_path, required=True,
                   help="training CSV, dataset folder, TFRecord shard folder (from `shard`), or an external data set "
                        "folder (HAM10000, ISIC 2019: their own schema)")
    p.add_argument("--images", type=Path, help="folder of <image_name>.jpg (default: train/ beside train.csv)")
    p.add_argument("--duplicates", type=_existing_file, help="ISIC_2020_Training_Duplicates.csv to apply")
    p.add_argument("--no-decode", action="store_true", help="only check that files exist, do not decode them")
    p.add_argument("--workers", type=_positive_int, default=4)


@command("check", "validate metadata and images; print counts, missing and corrupt files", _check_args)
def _check(args: argparse.Namespace) -> int:
    from .data import load_dataset
    from .images import scan_images
    from .sources import external_folder, load_external

    images = args.images
    if images is not None and not images.is_dir():
        raise DataError(f"{images}: image folder not found")
    external = external_folder(args.metadata)
    if external is not None:  # HAM10000 / ISIC 2019 in their own schema
        ds = load_external(external, on_missing="keep")
    else:
        ds = load_dataset(args.metadata, images, duplicates=args.duplicates, on_missing="keep")
    df = ds.frame
    s = ds.summary
    print(f"metadata:   {ds.report.source}" + (f" ({df['source'].iloc[0]}; groups are lesions)" if external else ""))
    print(f"images dir: {Path(df['image_path'].iloc[0]).parent}")
    print(f"rows:       {s['rows']:,}")
    print(f"patients:   {s['patients']:,}")
    print(f"malignant:  {s['malignant']:,} ({100 * s['malignant'] / max(s['rows'], 1):.2f}%)")
    if args.duplicates:
        print(f"duplicates dropped: {s['duplicates_dropped']}")
    missing = ds.report.missing_images
    print(f"missing image files: {len(missing):,}" + (f" (e.g. {', '.join(missing[:5])})" if missing else ""))
    n_bad = 0
    if not args.no_decode:
        present = df[~df["image_name"].isin(set(missing))]
        bad = scan_images(list(present["image_path"]), workers=args.workers, progress=sys.stderr.isatty())
        n_bad = len(bad)
        print(f"corrupt image files: {n_bad}")
        for path, reason in list(bad.items())[:20]:
            print(f"  {path}: {reason}")
    for note in ds.report.notes:
        print(f"note: {note}")
    return 1 if (missing or n_bad) else 0


def _demo_args(p: argparse.ArgumentParser) -> None:
    p.add_argument("--out", type=Path, default=config.DEMO_DIR, help="output folder (default: data/synthetic-demo)")
    p.add_argument("--n-images", type=_positive_int, default=600)
    p.add_argument("--image-size", type=_positive_int, default=128)
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--overwrite", action="store_true", help="regenerate even if the folder exists")


@command("demo-data", "generate the SYNTHETIC demo data set (resized-JPEG layout)", _demo_args)
def _demo(args: argparse.Namespace) -> int:
    from .demo import make_demo_dataset, make_external_demo

    csv = make_demo_dataset(args.out, args.n_images, args.image_size, args.seed, overwrite=args.overwrite)
    print(f"SYNTHETIC demo data: {csv}")
    ext = make_external_demo(args.out.with_name(args.out.name + "-ham10000"), image_size=args.image_size,
                             seed=args.seed + 1, overwrite=args.overwrite)
    print(f"SYNTHETIC external demo data (HAM10000's schema, for train --external): {ext}")
    return 0


def _fetch_args(p: argparse.ArgumentParser) -> None:
    p.add_argument("--out", type=Path, default=config.DATA_DIR, help="data folder (default: data/)")
    p.add_argument("--size", type=_positive_int, default=256, help="side of the resized square images")
    p.add_argument("--benign", type=_positive_int, help="keep all malignant + this many benign images")
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--external", choices=("isic2019",), action="append", default=[],
                   help="also fetch external training data: isic2019 (ISIC 2019's training input, ~9 GB, resized once "
                        "into data/isic2019-<size>/ for train --external)")


@command("fetch", "download the official ISIC 2020 data (internet) and resize it into data/isic2020-<size>/", _fetch_args)
def _fetch(args: argparse.Namespace) -> int:
    from .fetch import fetch

    csv = fetch(args.out, size=args.size, benign=args.benign, seed=args.seed)
    print(f"real data ready: {csv}")
    if "isic2019" in args.external:
        from .fetch import fetch_isic2019

        print(f"external data ready (train --external): {fetch_isic2019(args.out, size=args.size)}")
    return 0


def _shard_args(p: argparse.ArgumentParser) -> None:
    p.add_argument("--metadata", type=_existing_path, required=True, help="training CSV (or dataset folder)")
    p.add_argument("--images", type=Path, help="folder of <image_name>.jpg (default: train/ beside train.csv)")
    p.add_argument("--duplicates", type=_existing_file, help="official duplicate list to apply")
    p.add_argument("--out", type=Path, required=True, help="shard folder to write (re-running resumes)")
    p.add_argument("--shards", type=_positive_int, default=15, help="number of shards (patients never straddle two)")
    p.add_argument("--size", type=_positive_int, help="re-encode images as SIZE x SIZE JPEGs (default: the files as they are)")
    p.add_argument("--seed", type=int, default=0)


@command("shard", "write patient-isolated, stratified TFRecord shards + manifest (train/predict accept the folder)", _shard_args)
def _shard(args: argparse.Namespace) -> int:
    from .data import load_dataset
    from .images import drop_unreadable
    from .shards import write_shards

    ds = load_dataset(args.metadata, args.images, duplicates=args.duplicates, on_missing="drop")
    for note in ds.report.notes:
        print(f"note: {note}")
    df, bad = drop_unreadable(ds.frame)
    if bad:
        print(f"note: {len(bad)} unreadable image(s) left out, e.g. {', '.join(list(bad)[:5])}")
    manifest = write_shards(df, args.out, args.shards, args.size, args.seed, source=str(ds.report.source), progress=True)
    print(f"{len(df):,} images in {args.shards} shards: {manifest}")
    return 0


def _reproduce_args(p: argparse.ArgumentParser) -> None:
    p.add_argument("--params", type=Path, default=config.PARAMS_DIR / "demo.yaml", help="params/<data set>.yaml")
    p.add_argument("--only", nargs="+", choices=config.NOTEBOOKS, help="run only these notebooks")


@command("reproduce", "run the study's notebooks in order with papermill into reports/<data set>/", _reproduce_args)
def _reproduce(args: argparse.Namespace) -> int:
    from .reproduce import reproduce

    return reproduce(args.params, args.only or config.NOTEBOOKS)


def _nonneg_float(value: str) -> float:
    try:
        x = float(value)
    except ValueError:
        raise argparse.ArgumentTypeError(f"not a number: {value}") from None
    if x < 0:
        raise argparse.ArgumentTypeError(f"must be >= 0: {value}")
    return x


def _positive_float(value: str) -> float:
    x = _nonneg_float(value)
    if x == 0:
        raise argparse.ArgumentTypeError(f"must be > 0: {value}")
    return x


def _sensitivity(value: str) -> float:
    x = _positive_float(value)
    if x > 1:
        raise argparse.ArgumentTypeError(f"a sensitivity is in (0, 1]: {value}")
    return x


def _renamed(new: str) -> type[argparse.Action]:
    """An argparse action for an option's old spelling: stores like ``new`` and warns once that ``new`` replaces it
    (``--model`` meant the model kind in ``train`` but the run folder in ``predict``/``evaluate``)."""

    class Renamed(argparse.Action):
        def __call__(self, parser, namespace, values, option_string=None):  # type: ignore[no-untyped-def]
            print(f"warning: {option_string} is renamed {new} (the old spelling will be removed)", file=sys.stderr)
            setattr(namespace, self.dest, values)

    return Renamed


def _train_args(p: argparse.ArgumentParser) -> None:
    from .backbones import BACKBONES
    from .features import FEATURE_SETS
    from .runs import MAX_IMAGE_SIZE, STRATEGIES, TrainConfig
    from .transforms import PREPROCESSORS

    p.add_argument("--metadata", "--shards", dest="metadata", type=_existing_path, required=True,
                   help="training CSV, dataset folder, or TFRecord shard folder (from `shard`)")
    p.add_argument("--images", type=Path, help="folder of <image_name>.jpg (default: train/ beside train.csv)")
    p.add_argument("--duplicates", type=_existing_file, help="official duplicate list to apply")
    p.add_argument("--external", type=_existing_path, action="append", default=[], metavar="DIR",
                   help="external training data (repeatable): a HAM10000 or ISIC 2019 folder in its own schema; its rows "
                        "join the training part only (validation, calibration and threshold stay on --metadata's patients)")
    p.add_argument("--out", type=Path, required=True, help="run folder to write")
    d, S = TrainConfig.default, argparse.SUPPRESS  # defaults are TrainConfig's: stated here, decided there
    p.add_argument("--model", dest="kind", choices=("fusion", "image", "meta"), default=S, help=argparse.SUPPRESS,
                   action=_renamed("--kind"))
    p.add_argument("--kind", dest="kind", choices=("fusion", "image", "meta"), default=S,
                   help=f"which inputs the model takes: images and metadata (fusion), images only, metadata only (default: {d('kind')})")
    p.add_argument("--features", choices=sorted(FEATURE_SETS), default=S, help=f"metadata feature set (default: {d('features')})")
    p.add_argument("--image-size", type=_positive_int, default=S,
                   help="side in px (default: the backbone's ImageNet resolution: efficientnetlite0/1/2 224/240/260 px; "
                        f"128 for the study's CNN); at most {MAX_IMAGE_SIZE}")
    p.add_argument("--epochs", type=_positive_int, default=S, help=f"(default: {d('epochs')})")
    p.add_argument("--batch-size", type=_positive_int, default=S, help=f"(default: {d('batch_size')})")
    p.add_argument("--learning-rate", type=_positive_float, default=S, help=f"(default: {d('learning_rate')})")
    p.add_argument("--patience", type=_positive_int, default=S, help=f"early-stopping patience in epochs (default: {d('patience')})")
    p.add_argument("--val-fraction", type=_nonneg_float, default=S,
                   help=f"share of the patients held out for validation, in (0, 1) (default: {d('val_fraction')})")
    p.add_argument("--min-sensitivity", type=_sensitivity, default=S,
                   help=f"validation sensitivity the threshold must reach, in (0, 1] (default: {d('min_sensitivity')})")
    p.add_argument("--preprocess", choices=sorted(PREPROCESSORS), default=S, help=f"(default: {d('preprocess')})")
    p.add_argument("--no-augment", dest="augment", action="store_false", default=S)
    p.add_argument("--no-class-weights", dest="class_weighting", action="store_false", default=S)
    p.add_argument("--backbone", choices=["cnn", *sorted(BACKBONES)], default=S,
                   help=f"image branch (default: {d('backbone')}: ImageNet weights shipped offline, frozen, head trained "
                        "on cached embeddings); cnn: the study's CNN from scratch; or a keras.applications model")
    p.add_argument("--backbone-weights", "--weights", dest="backbone_weights", default=S,
                   help="backbone weights: none | imagenet | PATH.h5 (default: imagenet for efficientnetlite0/1/2, else none)")
    p.add_argument("--finetune", choices=("none", "top", "all"), default=S,
                   help="with pretrained weights: after training the head on cached embeddings, fine-tune the "
                        f"backbone's last stage (top) or all of it (default: {d('finetune')})")
    p.add_argument("--finetune-epochs", type=_positive_int, default=S, help=f"(default: {d('finetune_epochs')})")
    p.add_argument("--finetune-learning-rate", type=_positive_float, default=S, help=f"(default: {d('finetune_learning_rate')})")
    p.add_argument("--head-learning-rate", type=_positive_float, default=S,
                   help=f"learning rate of the head trained on cached embeddings (default: {d('head_learning_rate')})")
    p.add_argument("--embedding-views", type=int, choices=range(1, 9), default=S, metavar="1..8",
                   help=f"dihedral views (rotations/mirrors) of each image cached for the head's training (default: {d('embedding_views')})")
    p.add_argument("--tta", type=int, choices=(1, 2, 4, 8), default=S,
                   help="test-time augmentation for the validation predictions (threshold) and, by default, for "
                        f"predict: views averaged per image (8: ~+0.007 validation AUC, 8x slower prediction; default: {d('tta')})")
    p.add_argument("--end-to-end", dest="frozen_features", action="store_false", default=S,
                   help="with pretrained weights: train on decoded images end to end (GPU) instead of cached embeddings")
    p.add_argument("--freeze-epochs", type=_nonneg_int, default=S, help="--end-to-end: epochs with the backbone frozen first")
    p.add_argument("--cache", default=S, help=f"memory | none | a file prefix for large sets (default: {d('cache')})")
    p.add_argument("--strategy", choices=STRATEGIES, default=S,
                   help="devices: auto (several GPUs: mirrored), one, mirrored (tf.distribute over GPUs/CPUs; JAX: "
                        "DataParallel), multiworker (TF_CONFIG; the chief writes --out), tpu; --batch-size is per "
                        "replica, learning rates scale with the replicas")
    p.add_argument("--seed", type=int, default=S, help=f"drives Python, NumPy and Keras (default: {d('seed')})")
    p.add_argument("--overwrite", action="store_true",
                   help="replace a finished run in --out (only once the new run is complete)")
    p.add_argument("--restart", action="store_true",
                   help="discard an interrupted run's saved state instead of resuming it")
    p.add_argument("--verbose", type=int, choices=(0, 1, 2), default=1)


#: ``train`` options that are not TrainConfig fields.
_NOT_CONFIG = ("command", "handler", "metadata", "images", "duplicates", "external", "out", "overwrite", "restart")


def train_config(args: argparse.Namespace) -> "TrainConfig":
    """The :class:`~melanoma_utils.runs.TrainConfig` of parsed ``train`` arguments: only the options the user gave
    (every other value is TrainConfig's own default)."""
    from .runs import TrainConfig

    return TrainConfig(**{k: v for k, v in vars(args).items() if k not in _NOT_CONFIG})


@command("train", "train a model; write a self-contained run folder", _train_args)
def _train(args: argparse.Namespace) -> int:
    from .data import load_dataset
    from .training import make_distribution, train_run

    if getattr(args, "strategy", None) == "multiworker":  # before TensorFlow runs anything (reading shards would): collective set-up
        make_distribution("multiworker")

    cfg = train_config(args)
    ds = load_dataset(args.metadata, args.images, duplicates=args.duplicates,
                      on_missing="drop" if cfg.uses_images else "keep")
    for note in ds.report.notes:
        print(f"note: {note}")
    s = ds.summary
    print(f"training on {s['rows']:,} images, {s['patients']:,} patients, {s['malignant']:,} malignant")
    external = None
    if args.external:
        from .sources import combine_external, load_external

        loaded = [load_external(d, on_missing="drop" if cfg.uses_images else "keep") for d in args.external]
        external, notes = combine_external(ds.frame, loaded)
        for note in [n for e in loaded for n in e.report.notes] + notes:
            print(f"note: {note}")
        for name, part in external.groupby("source", sort=False):
            print(f"+ external ({name}, training part only): {len(part):,} images, {part['patient_id'].nunique():,} "
                  f"lesions, {int(part['target'].sum()):,} melanoma, {int((part['diagnosis'] == 'nevus').sum()):,} nevi")
    run = train_run(ds.frame, cfg, args.out, overwrite=args.overwrite, restart=args.restart, external=external)
    c = run.config
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
        print(f"probabilities calibrated ({c['calibration']['method']}) on the validation split, right at prevalence "
              f"{c['calibration']['prevalence']:.4g}: Brier {rep['brier']['estimate']:.4f} (raw model output "
              f"{rep['brier_raw']:.4f}); model card: {args.out / 'MODEL_CARD.md'}")
    elif c.get("calibration_note"):
        print(f"note: {c['calibration_note']}")
    _print_metrics(run.metrics["validation"], "validation")
    return 0


def _ensemble_args(p: argparse.ArgumentParser) -> None:
    p.add_argument("--runs", type=_existing_path, nargs="+", required=True,
                   help="two or more run folders trained on the same CSV with the same --seed and --val-fraction "
                        "(they share their validation split)")
    p.add_argument("--out", type=Path, required=True, help="ensemble run folder to write (must not exist)")
    p.add_argument("--metadata", type=_existing_path, help="the training CSV: adds sex/age/site subgroups to the report")
    p.add_argument("--images", type=Path, help="image folder of --metadata (only to locate it; images are not read)")
    p.add_argument("--min-sensitivity", type=_sensitivity, default=None,
                   help="validation sensitivity the threshold must reach (default: the first member's)")
    p.add_argument("--seed", type=int, default=0)


@command("ensemble", "average trained runs into one ensemble run folder (one calibrator and threshold on held-out rows)",
         _ensemble_args)
def _ensemble(args: argparse.Namespace) -> int:
    from .data import load_metadata
    from .ensemble import build_ensemble

    meta = load_metadata(args.metadata).frame if args.metadata else None
    run = build_ensemble(args.runs, args.out, meta, args.min_sensitivity, args.seed)
    c = run.config
    for k, m in enumerate(c["ensemble"]["members"]):
        auc = m["validation_auc_raw"]
        print(f"member {k}: {m['source']} ({m['kind']}, {m['backbone'] or 'cnn'}, {m['image_size']} px): "
              f"validation ROC AUC {auc:.3f}" if auc is not None else f"member {k}: {m['source']}")
    print(f"ensemble folder: {args.out}  threshold (validation): {c['threshold']:.4f}"
          + (f"  calibration: {c['calibration']['method']}" if c.get("calibration") else ""))
    _print_metrics(run.metrics["validation"], "validation (ensemble)")
    return 0


def _predict_args(p: argparse.ArgumentParser) -> None:
    p.add_argument("--model", dest="run", type=_existing_path, help=argparse.SUPPRESS, action=_renamed("--run"))
    p.add_argument("--run", dest="run", type=_existing_path, help="run folder from `train` (required)")
    p.add_argument("--metadata", "--shards", dest="metadata", type=_existing_path, required=True,
                   help="CSV in the ISIC 2020 schema, or a TFRecord shard folder (from `shard`)")
    p.add_argument("--images", type=Path, help="folder of <image_name>.jpg (default: train/ beside the CSV)")
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


def _prevalence(value: str) -> float:
    from .calibration import check_prevalence

    try:
        return check_prevalence(value, "--prevalence")
    except ValueError as exc:
        raise argparse.ArgumentTypeError(str(exc)) from None


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


def _print_metrics(result: dict, label: str) -> None:
    if "error" in result:
        print(f"{label}: {result['error']}")
        return
    print(f"{label}: n={result['n']:,} ({result['n_positive']:,} malignant, {result['n_patients']:,} patients)")
    for key, name in (("roc_auc", "ROC AUC"), ("pr_auc", "PR AUC")):
        r = result[key]
        print(f"  {name}: {r['estimate']:.3f} (95% CI {r['ci_low']:.3f}–{r['ci_high']:.3f}, patient bootstrap)")
    if "roc_auc_melanoma_vs_nevus" in result:
        print(f"  ROC AUC melanoma vs nevus: {result['roc_auc_melanoma_vs_nevus']:.3f}")
    for name, m in result["thresholds"].items():
        print(f"  at {name} ({m['threshold']:.4f}): accuracy {m['accuracy']:.3f}, sensitivity {m['sensitivity']:.3f}, "
              f"specificity {m['specificity']:.3f}, F1 {m['f1']:.3f} (tp {m['tp']}, fp {m['fp']}, tn {m['tn']}, fn {m['fn']})")


def build_parser() -> argparse.ArgumentParser:
    """The argument parser with every registered sub-command."""
    parser = argparse.ArgumentParser(prog="python -m melanoma_utils", description=__doc__)
    sub = parser.add_subparsers(dest="command", required=True)
    for name, (help_text, add_args, fn) in _COMMANDS.items():
        p = sub.add_parser(name, help=help_text, description=help_text)
        add_args(p)
        p.set_defaults(handler=fn)
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    """Entry point; returns the exit status."""
    import warnings

    from .data import DataWarning

    args = build_parser().parse_args(argv)
    warnings.simplefilter("ignore", DataWarning)  # commands print the load notes themselves
    try:
        return int(args.handler(args))
    except (DataError, ValueError, FileExistsError, FileNotFoundError) as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
