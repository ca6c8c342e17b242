"""Garbage collection of a study's shared backbone store.

A study's fold runs keep their frozen backbone and Keras configuration in one content-addressed store beside them
(:data:`~melanoma_utils.runs.runfolder.RunLayout.SHARED_STORE`, written by :mod:`melanoma_utils.runs.model_files`).
A file there stays when the run folders that referenced it are deleted or trained again with other weights (a changed
backbone, another architecture): the store only grows. :func:`sweep_store` finds what no run folder under the runs
folder references any more and, asked to, deletes it.

What counts as a reference: every ``model_shared.json`` under the runs folder, published run folders and staged
ones (``.<name>.partial``: a training that is running or was killed) alike. A training writes its store files before
its ``model_shared.json``, so an unreferenced file younger than ``min_age_s`` is kept: it may belong to a training in
that gap. A run folder whose ``model_shared.json`` cannot be read stops the sweep (:class:`StoreSweepError` names it):
nothing is deleted on a guess about what it referenced.
"""

from __future__ import annotations

import json
import os
import time
from dataclasses import dataclass
from pathlib import Path

from .runfolder import RunLayout

#: The suffix of the digest file written beside every store file.
DIGEST_SUFFIX = ".sha256"


class StoreSweepError(ValueError):
    """The sweep cannot tell what is referenced (a folder that is not a runs folder, an unreadable reference file)."""


@dataclass(frozen=True)
class StoreSweep:
    """What :func:`sweep_store` found in ``store`` (each file with its digest file where it has one).

    ``referenced``: files some run folder references; ``unreferenced``: files none does, older than the age limit
    (deleted when the sweep was asked to delete); ``recent``: unreferenced but younger (kept); ``missing``: (run folder,
    store file) pairs where a run references a file the store lacks (that run cannot load: train it again)."""

    store: Path
    run_folders: int
    referenced: tuple[Path, ...]
    unreferenced: tuple[Path, ...]
    recent: tuple[Path, ...]
    missing: tuple[tuple[Path, Path], ...]
    deleted: bool
    referenced_bytes: int
    unreferenced_bytes: int  # what the unreferenced files take (took, before they were deleted)


def store_references(runs: Path) -> dict[Path, list[Path]]:
    """Every store file each run folder under ``runs`` references (resolved paths), by run folder; staged run folders
    included. :class:`StoreSweepError` names a ``model_shared.json`` that cannot be read."""
    refs: dict[Path, list[Path]] = {}
    for spec_file in sorted(runs.rglob(RunLayout.MODEL_SHARED)):
        run_dir = spec_file.parent
        try:
            spec = json.loads(spec_file.read_text(encoding="utf-8"))
            entries = [spec["config"], *spec["backbones"].values()]
            refs[run_dir] = [(run_dir / entry["file"]).resolve() for entry in entries]
        except (OSError, ValueError, KeyError, TypeError, AttributeError) as exc:
            raise StoreSweepError(f"{spec_file} cannot be read ({type(exc).__name__}: {exc}); the sweep cannot tell "
                                  f"what it references: delete {run_dir} (its run is trained again when needed) or "
                                  "repair the file, then sweep again") from None
    return refs


def _with_digest(path: Path) -> list[Path]:
    """``path`` and its digest file, where there is one."""
    side = path.with_name(path.name + DIGEST_SUFFIX)
    return [path, side] if side.is_file() else [path]


def sweep_store(runs: str | os.PathLike[str], delete: bool = False, min_age_s: float = 3600.0,
                now: float | None = None) -> StoreSweep:
    """Find the files of ``runs``'s shared store that no run folder under ``runs`` references; with ``delete``,
    remove those older than ``min_age_s`` seconds (with their digest files). Temporary files a killed write left
    count as unreferenced. :class:`StoreSweepError` when ``runs`` holds no store or a reference file is unreadable."""
    runs = Path(runs)
    store = runs / RunLayout.SHARED_STORE
    if not store.is_dir():
        raise StoreSweepError(f"{runs} holds no shared backbone store ({RunLayout.SHARED_STORE}/): give the runs folder "
                              "of a study, e.g. reports/isic2020/runs")
    refs = store_references(runs)
    wanted = {p for paths in refs.values() for p in paths}
    now = time.time() if now is None else now
    files = sorted(p for p in store.iterdir() if p.is_file())
    main = [p for p in files if not (p.name.endswith(DIGEST_SUFFIX) and p.with_name(p.name[:-len(DIGEST_SUFFIX)]).is_file())]
    sizes = {p: p.stat().st_size for p in files}
    referenced, unreferenced, recent = [], [], []
    for path in main:
        group = _with_digest(path)
        if path.resolve() in wanted:
            referenced += group
        elif now - max(p.stat().st_mtime for p in group) < min_age_s:
            recent += group
        else:
            unreferenced += group
    missing = tuple((run_dir, p) for run_dir, paths in refs.items() for p in paths if not p.is_file())
    sweep = StoreSweep(store, len(refs), tuple(referenced), tuple(unreferenced), tuple(recent), missing, delete,
                       sum(sizes[p] for p in referenced), sum(sizes[p] for p in unreferenced))
    if delete:
        for path in unreferenced:
            path.unlink(missing_ok=True)
    return sweep


def describe_sweep(sweep: StoreSweep) -> list[str]:
    """The lines the ``prune-store`` command prints for ``sweep``."""
    mb = 1e6
    lines = [f"store {sweep.store}: {len(sweep.referenced)} file(s) ({sweep.referenced_bytes / mb:.1f} MB) referenced by "
             f"{sweep.run_folders} run folder(s)"]
    verb = "deleted" if sweep.deleted else "can be deleted (--delete deletes them)"
    if sweep.unreferenced:
        lines.append(f"{len(sweep.unreferenced)} file(s) ({sweep.unreferenced_bytes / mb:.1f} MB) referenced by no run "
                     f"folder: {verb}")
    else:
        lines.append("every file is referenced: nothing to delete")
    lines += [f"  {p.name}" for p in sweep.unreferenced]
    if sweep.recent:
        lines.append(f"{len(sweep.recent)} unreferenced file(s) kept: written within the age limit (a training may be "
                     "about to reference them)")
    for run_dir, path in sweep.missing:
        lines.append(f"warning: run folder {run_dir} references {path.name}, which the store lacks: that run cannot be "
                     f"loaded; delete {run_dir} and train it again")
    return lines
