"""Command line: ``python -m melanoma_utils <command> ...`` (``--help`` on each command).

Arguments are validated here, at the boundary; errors print one clear line and exit with status 2.
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path
from typing import Callable, Sequence

from . import config
from .data import DataError

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


def _positive_int(value: str) -> int:
    try:
        n = int(value)
    except ValueError:
        raise argparse.ArgumentTypeError(f"not an integer: {value}") from None
    if n <= 0:
        raise argparse.ArgumentTypeError(f"must be positive: {value}")
    return n


def _check_args(p: argparse.ArgumentParser) -> None:
    p.add_argument("--metadata", type=_existing_path, required=True, help="training CSV (or dataset folder)")
    p.add_argument("--images", type=Path, help="folder of <image_name>.jpg (default: train/ beside train.csv)")
    p.add_argument("--duplicates", type=_existing_file, help="ISIC_2020_Training_Duplicates.csv to apply")
    p.add_argument("--no-decode", action="store_true", help="only check that files exist, do not decode them")
    p.add_argument("--workers", type=_positive_int, default=4)


@command("check", "validate metadata and images; print counts, missing and corrupt files", _check_args)
def _check(args: argparse.Namespace) -> int:
    from .data import load_dataset, scan_images

    images = args.images
    if images is not None and not images.is_dir():
        raise DataError(f"{images}: image folder not found")
    ds = load_dataset(args.metadata, images, duplicates=args.duplicates, on_missing="keep")
    df = ds.frame
    s = ds.summary
    print(f"metadata:   {ds.report.source}")
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
    from .demo import make_demo_dataset

    csv = make_demo_dataset(args.out, args.n_images, args.image_size, args.seed, overwrite=args.overwrite)
    print(f"SYNTHETIC demo data: {csv}")
    return 0


def _fetch_args(p: argparse.ArgumentParser) -> None:
    p.add_argument("--out", type=Path, default=config.DATA_DIR, help="data folder (default: data/)")
    p.add_argument("--size", type=_positive_int, default=256, help="side of the resized square images")
    p.add_argument("--benign", type=_positive_int, help="keep all malignant + this many benign images")
    p.add_argument("--seed", type=int, default=0)


@command("fetch", "download the official ISIC 2020 data (internet) and resize it into data/isic2020-<size>/", _fetch_args)
def _fetch(args: argparse.Namespace) -> int:
    from .fetch import fetch

    csv = fetch(args.out, size=args.size, benign=args.benign, seed=args.seed)
    print(f"real data ready: {csv}")
    return 0


def _reproduce_args(p: argparse.ArgumentParser) -> None:
    p.add_argument("--params", type=Path, default=config.PARAMS_DIR / "demo.yaml", help="params/<data set>.yaml")
    p.add_argument("--only", nargs="+", choices=config.NOTEBOOKS, help="run only these notebooks")


@command("reproduce", "run the study's notebooks in order with papermill into reports/<data set>/", _reproduce_args)
def _reproduce(args: argparse.Namespace) -> int:
    from .reproduce import reproduce

    return reproduce(args.params, args.only or config.NOTEBOOKS)


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
    except (DataError, ValueError, FileExistsError) as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
