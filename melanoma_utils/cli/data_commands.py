"""Commands on data and the study: check, demo-data, fetch, shard, reproduce, prune-store."""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

from .. import config
from ..data.isic import DataError
from .args import (
    _existing_path,
    _nonneg_float,
    _positive_int,
    command,
    data_args,
)


def _check_args(p: argparse.ArgumentParser) -> None:
    data_args(p, "training CSV, dataset folder, TFRecord shard folder (from `shard`), or an external data set folder "
                 "(HAM10000, ISIC 2019: their own schema)")
    p.add_argument("--no-decode", action="store_true", help="only check that files exist, do not decode them")
    p.add_argument("--workers", type=_positive_int, default=4)
    p.add_argument("--group-column", action="append", default=None, metavar="COLUMN",
                   help="print how the label is spread over this grouping and warn where a group is (nearly) one class "
                        "(repeatable): a metadata column, camera (original image size) or source (the data set); "
                        "default: source_copy (from the CSV or a copies.csv beside it) and camera, where the data has them")
    p.add_argument("--source-csv", type=_existing_path, default=None, metavar="CSV",
                   help="image_name, source_copy: which copy of the data each image came from (default: copies.csv "
                        "beside the CSV, if there)")


@command("check", "validate metadata and images; print counts, missing and corrupt files", _check_args)
def _check(args: argparse.Namespace) -> int:
    from ..data.imagefiles import scan_images
    from ..data.isic import load_dataset
    from ..data.sources import external_folder, load_external

    images = args.images
    if images is not None and not images.is_dir():
        raise DataError(f"{images}: image folder not found")
    external = external_folder(args.metadata)
    if external is not None:  # HAM10000 / ISIC 2019 in their own schema
        ds = load_external(external, on_missing="keep")
    else:
        ds = load_dataset(args.metadata, images, duplicates=args.duplicates, on_missing="keep")
    from ..data.confounds import with_source_copies

    df, copies_note = with_source_copies(ds.frame, ds.report.source, args.source_csv)
    if copies_note:
        ds.report.notes.append(copies_note)
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
    _print_confounds(df, args.group_column)
    return 1 if (missing or n_bad) else 0


def _print_confounds(df, columns: list[str] | None) -> None:  # type: ignore[no-untyped-def]
    """The label's spread over each grouping (``check``): one line per group, a warning where a group is one class."""
    from ..data.confounds import SOURCE_COPY, group_labels, label_by_group

    if columns is None:
        columns = [c for c, present in ((SOURCE_COPY, SOURCE_COPY in df and df[SOURCE_COPY].notna().any()),
                                        ("camera", {"width", "height"} <= set(df) and df["width"].notna().any()))
                   if present]
    for column in columns:
        table = label_by_group(df["target"], group_labels(df, column), df["patient_id"])
        print(f"label by {column} ({len(table)} group(s)):")
        for r in table.head(12).itertuples():
            print(f"  {r.group}: {r.rows:,} images, {r.patients:,} patients, {r.malignant:,} malignant ({r.malignant_share:.1%})")
        if len(table) > 12:
            print(f"  ... {len(table) - 12} more group(s)")
        for r in table[table["warning"] != ""].itertuples():
            print(f"warning: {column} = {r.group}: {r.warning}; a model that can tell this group apart scores without "
                  "looking at the lesion: judge it within groups that hold both classes")


def _demo_args(p: argparse.ArgumentParser) -> None:
    p.add_argument("--out", type=Path, default=config.DEMO_DIR, help="output folder (default: data/synthetic-demo)")
    p.add_argument("--n-images", type=_positive_int, default=600)
    p.add_argument("--image-size", type=_positive_int, default=128)
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--overwrite", action="store_true", help="regenerate even if the folder exists")


@command("demo-data", "generate the SYNTHETIC demo data set (resized-JPEG layout)", _demo_args)
def _demo(args: argparse.Namespace) -> int:
    from ..data.demo import make_demo_dataset, make_external_demo

    csv = make_demo_dataset(args.out, args.n_images, args.image_size, args.seed, overwrite=args.overwrite)
    print(f"SYNTHETIC demo data: {csv}")
    # beside the default folder (where params/demo.yaml looks); inside a folder the user named: nothing is written
    # outside --out
    ext_dir = (config.DEMO_DIR.with_name(config.DEMO_DIR.name + "-ham10000") if args.out.resolve() == config.DEMO_DIR.resolve()
               else args.out / "external-ham10000")
    ext = make_external_demo(ext_dir, image_size=args.image_size, seed=args.seed + 1, overwrite=args.overwrite)
    print(f"SYNTHETIC external demo data (HAM10000's schema, for train --external): {ext}")
    return 0


def _fetch_args(p: argparse.ArgumentParser) -> None:
    p.add_argument("--out", type=Path, default=config.DATA_DIR, help="data folder (default: data/)")
    p.add_argument("--size", type=_positive_int, default=256, help="side of the resized square images")
    p.add_argument("--benign", type=_positive_int, help="keep all malignant + this many benign images")
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--base-url", help="a mirror holding the official file names (default: the ISIC challenge bucket)")
    p.add_argument("--external", choices=("isic2019",), action="append", default=[],
                   help="also fetch external training data: isic2019 (ISIC 2019's training input, ~9 GB, resized once "
                        "into data/isic2019-<size>/ for train --external)")


@command("fetch", "download the official ISIC 2020 data (internet) and resize it into data/isic2020-<size>/", _fetch_args)
def _fetch(args: argparse.Namespace) -> int:
    from ..data.fetch import fetch

    mirror = {} if not args.base_url else {"base_url": args.base_url.rstrip("/") + "/"}
    csv = fetch(args.out, size=args.size, benign=args.benign, seed=args.seed, **mirror)
    print(f"real data ready: {csv}")
    if "isic2019" in args.external:
        from ..data.fetch import fetch_isic2019

        print(f"external data ready (train --external): {fetch_isic2019(args.out, size=args.size, **mirror)}")
    return 0


def _shard_args(p: argparse.ArgumentParser) -> None:
    data_args(p, "training CSV (or dataset folder)", shards=False)
    p.add_argument("--out", type=Path, required=True, help="shard folder to write (re-running resumes)")
    p.add_argument("--shards", type=_positive_int, default=15, help="number of shards (patients never straddle two)")
    p.add_argument("--size", type=_positive_int, help="re-encode images as SIZE x SIZE JPEGs (default: the files as they are)")
    p.add_argument("--seed", type=int, default=0)


@command("shard", "write patient-isolated, stratified TFRecord shards + manifest (train/predict accept the folder)", _shard_args)
def _shard(args: argparse.Namespace) -> int:
    from ..data.imagefiles import drop_unreadable
    from ..data.isic import load_dataset
    from ..data.shards import write_shards

    ds = load_dataset(args.metadata, args.images, duplicates=args.duplicates, on_missing="drop")
    for note in ds.report.notes:
        print(f"note: {note}")
    df, bad = drop_unreadable(ds.frame)
    if bad:
        print(f"note: {len(bad)} unreadable image(s) left out, e.g. {', '.join(list(bad)[:5])}")
    manifest = write_shards(df, args.out, args.shards, args.size, args.seed, source=str(ds.report.source), progress=True)
    print(f"{len(df):,} images in {args.shards} shards: {manifest}")
    return 0


def _notebook(value: str) -> str:
    """A notebook by its name or number prefix (``03`` or ``03_train_evaluate``)."""
    hits = [n for n in config.NOTEBOOKS if n == value or n.split("_")[0] == value.split("_")[0] and n.startswith(value)]
    if len(hits) != 1:
        raise argparse.ArgumentTypeError(f"{value!r} is not one notebook; choose from {', '.join(config.NOTEBOOKS)} "
                                         "(or their numbers, e.g. 03)")
    return hits[0]


def _reproduce_args(p: argparse.ArgumentParser) -> None:
    p.add_argument("--params", type=Path, default=config.PARAMS_DIR / "demo.yaml", help="params/<data set>.yaml")
    which = p.add_mutually_exclusive_group()
    which.add_argument("--only", nargs="+", type=_notebook, metavar="NOTEBOOK",
                       help="run only these notebooks (names or numbers: 03 05)")
    which.add_argument("--from", dest="start", type=_notebook, metavar="NOTEBOOK",
                       help="run this notebook and every later one")
    p.add_argument("--force", action="store_true",
                   help="run every notebook asked for, even those whose report is up to date")


@command("reproduce", "run the study's notebooks in order with papermill into reports/<data set>/ (notebooks whose "
                      "report is up to date are skipped)", _reproduce_args)
def _reproduce(args: argparse.Namespace) -> int:
    from .reproduce import reproduce

    notebooks = args.only or (config.NOTEBOOKS[config.NOTEBOOKS.index(args.start):] if args.start else config.NOTEBOOKS)
    return reproduce(args.params, [n for n in config.NOTEBOOKS if n in notebooks], force=args.force)


def _prune_store_args(p: argparse.ArgumentParser) -> None:
    p.add_argument("runs", type=_existing_path, help="a study's runs folder (holds shared_backbones/), e.g. "
                                                     "reports/isic2020/runs")
    p.add_argument("--delete", action="store_true", help="delete the unreferenced files (default: only list them)")
    p.add_argument("--min-age-hours", type=_nonneg_float, default=1.0,
                   help="keep unreferenced files younger than this: a running training may be about to reference "
                        "them (default 1)")


@command("prune-store", "list (or --delete) the files of a study's shared backbone store that no run folder "
                        "references any more", _prune_store_args)
def _prune_store(args: argparse.Namespace) -> int:
    from ..runs.store import StoreSweepError, describe_sweep, sweep_store

    try:
        sweep = sweep_store(args.runs, delete=args.delete, min_age_s=args.min_age_hours * 3600)
    except StoreSweepError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    print("\n".join(describe_sweep(sweep)))
    return 0
