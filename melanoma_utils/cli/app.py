"""Command line: ``python -m melanoma_utils <command> ...`` (``--help`` on each command).

Arguments are validated at the boundary (:mod:`melanoma_utils.cli.args`); errors print one clear line and exit with
status 2. The commands live by concern: :mod:`~melanoma_utils.cli.data_commands` (check, demo-data, fetch, shard, reproduce),
:mod:`~melanoma_utils.cli.train_commands` (train, ensemble), :mod:`~melanoma_utils.cli.predict_commands` (predict, evaluate, export).
"""

from __future__ import annotations

import argparse
import sys
from typing import Sequence

from ..data.isic import DataError
from . import data_commands, predict_commands, train_commands  # noqa: F401  (each registers its commands)
from .args import _COMMANDS, command  # noqa: F401  (re-exported)
from .train_commands import train_config  # noqa: F401  (re-exported)

#: The order ``--help`` lists the commands in: the order of the study.
ORDER: tuple[str, ...] = ("check", "demo-data", "fetch", "shard", "train", "ensemble", "predict", "evaluate", "export",
                          "reproduce")


def build_parser() -> argparse.ArgumentParser:
    """The argument parser with every registered sub-command."""
    parser = argparse.ArgumentParser(prog="python -m melanoma_utils", description=__doc__)
    sub = parser.add_subparsers(dest="command", required=True)
    for name in sorted(_COMMANDS, key=lambda n: ORDER.index(n) if n in ORDER else len(ORDER)):
        help_text, add_args, fn = _COMMANDS[name]
        p = sub.add_parser(name, help=help_text, description=help_text)
        add_args(p)
        p.set_defaults(handler=fn)
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    """Entry point; returns the exit status."""
    import warnings

    from ..data.isic import DataWarning

    args = build_parser().parse_args(argv)
    warnings.simplefilter("ignore", DataWarning)  # commands print the load notes themselves
    try:
        return int(args.handler(args))
    except (DataError, ValueError, FileExistsError, FileNotFoundError) as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
