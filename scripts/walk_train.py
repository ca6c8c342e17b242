"""The walk a reader takes through the package for one ``train`` call, from argv to the published run folder.

Counts, with a profiler over ``python -m melanoma_utils train`` on the synthetic demo set, the package files and the
named functions entered (comprehensions and lambdas left out; calls made while a module is imported included), and the
distinct cross-file call edges. ``--kind meta`` (default) is a one-epoch metadata-only run (~15 s); ``--kind fusion`` is
``train``'s defaults with one epoch (Lite0 embeddings of the demo images, ~80 s). Issue 32's before/after numbers come from this
script run on two commits (``PYTHONPATH=<checkout> python scripts/walk_train.py``).

    python scripts/walk_train.py [--kind meta|fusion] [--list]
"""

from __future__ import annotations

import argparse
import os
import sys
import tempfile
from collections import Counter
from pathlib import Path
from typing import Any

import melanoma_utils
from melanoma_utils.cli.app import main as cli_main

ROOT = os.path.dirname(melanoma_utils.__file__)
DEMO = Path(ROOT).parent / "data" / "synthetic-demo" / "train.csv"


def walk(argv: list[str]) -> tuple[set[tuple[str, str]], set[tuple[str, str, str, str]]]:
    """``(functions, edges)`` entered by ``python -m melanoma_utils <argv>``: (file, name) pairs inside the package
    and distinct (caller file, caller, callee file, callee) calls that cross a file boundary."""
    funcs: set[tuple[str, str]] = set()
    edges: set[tuple[str, str, str, str]] = set()

    def package_frame(frame: Any) -> Any:
        while frame is not None and not (frame.f_code.co_filename.startswith(ROOT) and frame.f_code.co_flags & 2):
            frame = frame.f_back
        return frame

    def prof(frame: Any, event: str, arg: Any) -> None:
        code = frame.f_code
        if event != "call" or not code.co_filename.startswith(ROOT) or not code.co_flags & 2:
            return
        if code.co_name.startswith("<"):
            return
        rel = os.path.relpath(code.co_filename, ROOT)
        funcs.add((rel, code.co_name))
        caller = package_frame(frame.f_back)
        if caller is not None and (crel := os.path.relpath(caller.f_code.co_filename, ROOT)) != rel:
            edges.add((crel, caller.f_code.co_name, rel, code.co_name))

    sys.setprofile(prof)
    try:
        cli_main(argv)
    finally:
        sys.setprofile(None)
    return funcs, edges


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--kind", choices=("meta", "fusion"), default="meta")
    ap.add_argument("--metadata", type=Path, default=DEMO, help="training CSV (default: the synthetic demo set)")
    ap.add_argument("--list", action="store_true", help="print every file with the functions entered in it")
    a = ap.parse_args()
    if not a.metadata.is_file():
        sys.exit(f"{a.metadata}: not found; run `make demo-data` first")
    tmp = tempfile.TemporaryDirectory()
    out = Path(tmp.name) / "run"
    argv = ["train", "--metadata", str(a.metadata), "--epochs", "1", "--out", str(out), "--verbose", "0"]
    with tmp:
        funcs, edges = walk(argv + (["--kind", "meta"] if a.kind == "meta" else []))
    files = Counter(f for f, _ in funcs)
    print(f"walk ({a.kind}): {len(files)} files, {len(funcs)} named functions, {len(edges)} cross-file call edges")
    if a.list:
        for f, n in sorted(files.items()):
            print(f"{n:4d} {f}: {', '.join(sorted(name for file, name in funcs if file == f))}")


if __name__ == "__main__":
    main()
