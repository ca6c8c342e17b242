"""The command line's shared parts: the sub-command registry, argument types (validated at the boundary) and the
argument groups several commands take (defined once)."""

from __future__ import annotations

import argparse
import math
import sys
from pathlib import Path
from typing import Callable

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


def _nonneg_float(value: str) -> float:
    try:
        x = float(value)
    except ValueError:
        raise argparse.ArgumentTypeError(f"not a number: {value}") from None
    if not math.isfinite(x) or x < 0:
        raise argparse.ArgumentTypeError(f"must be a finite number >= 0: {value}")
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


def _prevalence(value: str) -> float:
    from ..evaluation.calibration import check_prevalence

    try:
        return check_prevalence(value, "--prevalence")
    except ValueError as exc:
        raise argparse.ArgumentTypeError(str(exc)) from None




def data_args(p: argparse.ArgumentParser, metadata_help: str, *, shards: bool = True, required: bool = True,
              duplicates: bool = True, images_help: str = "folder of <image_name>.jpg (default: train/ beside the CSV)") -> None:
    """The ``--metadata`` (``--shards``) / ``--images`` / ``--duplicates`` group, defined once for every command."""
    names = ("--metadata", "--shards") if shards else ("--metadata",)
    p.add_argument(*names, dest="metadata", type=_existing_path, required=required, help=metadata_help)
    p.add_argument("--images", type=Path, help=images_help)
    if duplicates:
        p.add_argument("--duplicates", type=_existing_file, help="ISIC_2020_Training_Duplicates.csv: the official list of "
                                                                   "duplicate images to apply")


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
