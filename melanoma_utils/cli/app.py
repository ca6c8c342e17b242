"""Command line: ``python -m melanoma_utils <command> ...`` (``--help`` on each command).

Arguments are validated at the boundary (:mod:`melanoma_utils.cli.args`); errors print one clear line and exit with
status 2. The commands live by concern: :mod:`~melanoma_utils.cli.data_commands` (check, demo-data, fetch, shard, reproduce),
:mod:`~melanoma_utils.cli.train_commands` (train, ensemble), :mod:`~melanoma_utils.cli.predict_commands` (predict, evaluate, export).
"""

from __future__ import annotations

import argparse
import errno
import sys
from pathlib import Path
from typing import Sequence

from ..data.isic import DataError
from . import data_commands, predict_commands, train_commands  # noqa: F401  (each registers its commands)
from .args import _COMMANDS, command  # noqa: F401  (re-exported)
from .train_commands import train_config  # noqa: F401  (re-exported)

#: The order ``--help`` lists the commands in: the order of the study.
ORDER: tuple[str, ...] = ("check", "demo-data", "fetch", "shard", "train", "ensemble", "predict", "evaluate", "export",
                          "reproduce", "prune-store")


#: Commands that load Keras (and TensorFlow behind it): imported first with its C++ start-up lines filtered out.
KERAS_COMMANDS: frozenset[str] = frozenset({"train", "ensemble", "predict", "export"})

#: The commands by what they are for (``--help`` lists them so; docs/cli.md has an example of each).
GROUPS: dict[str, tuple[str, ...]] = {"data": ("check", "demo-data", "fetch", "shard"), "training": ("train", "ensemble"),
                                      "evaluation": ("predict", "evaluate"), "deployment": ("export",),
                                      "study": ("reproduce", "prune-store")}


def _epilog() -> str:
    lines = ["commands by purpose:"]
    for group, names in GROUPS.items():
        lines.append(f"  {group}:")
        lines += [f"    {n:11s} {_COMMANDS[n][0]}" for n in names if n in _COMMANDS]
    lines.append("\nevery command with an example and its output: docs/cli.md; `COMMAND --help` for its options")
    return "\n".join(lines)


def build_parser(only: str | None = None) -> argparse.ArgumentParser:
    """The argument parser with every registered sub-command; with ``only`` (a command's name), only that command's
    options are built (the others are listed by name and help: what ``main`` needs to parse one command)."""
    parser = argparse.ArgumentParser(prog="python -m melanoma_utils",
                                     description="Melanoma fusion study: data checks, training, evaluation, export and "
                                                 "the study's notebooks.", epilog=_epilog(),
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    sub = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")
    for name in sorted(_COMMANDS, key=lambda n: ORDER.index(n) if n in ORDER else len(ORDER)):
        help_text, add_args, fn = _COMMANDS[name]
        p = sub.add_parser(name, help=help_text, description=help_text)
        if only is None or name == only:
            add_args(p)
        p.set_defaults(handler=fn)
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    """Entry point; returns the exit status."""
    import warnings

    from ..data.isic import DataWarning

    words = list(sys.argv[1:] if argv is None else argv)
    named = next((w for w in words if not w.startswith("-")), None)
    args = build_parser(named if named in _COMMANDS else None).parse_args(words)
    warnings.simplefilter("ignore", DataWarning)  # commands print the load notes themselves
    try:
        if args.command in KERAS_COMMANDS:  # TensorFlow's C++ start-up lines are not this command's output
            from ..lazy import import_quietly

            import_quietly("keras")
        return int(args.handler(args))
    except KeyboardInterrupt:
        print("interrupted; run the same command again to resume (a training run continues after its last saved "
              "epoch; finished outputs were written whole or not at all)", file=sys.stderr)
        return 130
    except (DataError, ValueError, FileExistsError, FileNotFoundError) as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    except RecursionError:
        print("error: a run or ensemble folder refers to itself (directly or through another); rebuild it", file=sys.stderr)
        return 2
    except OSError as exc:  # a disk or permission fault: one line naming the path and what to do
        print(f"error: {os_error_line(exc)}", file=sys.stderr)
        return 2


#: What a user can do about each operating-system fault.
OS_FIXES: dict[int, str] = {
    errno.ENOSPC: "the disk is full: free space or write to another disk (nothing half-written was left)",
    errno.EDQUOT: "the disk quota is exhausted: free space or write elsewhere",
    errno.EACCES: "permission denied: write to a folder you may write to (--out) or fix its permissions",
    errno.EPERM: "operation not permitted: write to a folder you own",
    errno.EROFS: "the file system is read-only: write to another folder (--out)",
    errno.ENOTDIR: "a part of the path is a file, not a folder: fix the path",
    errno.EISDIR: "the path is a folder where a file was expected: name a file",
}


def os_error_line(exc: OSError) -> str:
    """One line for an :class:`OSError`: the path, the system's message and the fix (for a path in the user cache,
    moving the cache: :data:`~melanoma_utils.config.CACHE_VARIABLE`)."""
    from ..config import CACHE_VARIABLE, cache_dir

    where = exc.filename or ""
    if exc.filename2:
        where = f"{where} -> {exc.filename2}"
    fix = OS_FIXES.get(exc.errno or -1, "check the path and the disk")
    try:  # (the handler must not fail itself: no home folder, a link loop)
        cache = cache_dir().resolve()
        target = Path(str(exc.filename)).resolve() if exc.filename else None
    except (RuntimeError, KeyError, OSError):
        cache = target = None
    if cache is not None and target is not None and (target == cache or cache in target.parents):
        fix = (f"the user cache ({cache}) cannot be written: set {CACHE_VARIABLE} to a folder you can write "
               "(e.g. export MELANOMA_UTILS_CACHE=/tmp/melanoma-cache)")
    return f"{where + ': ' if where else ''}{exc.strerror or exc}; {fix}"
