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

from .model_files import DIGEST_SUFFIX
from .runfolder import RunLayout


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
    unreferenced_sizes: tuple[int, ...]  # each unreferenced file's bytes, in ``unreferenced``'s order


def _reference_files(runs: Path) -> list[Path]:
    """Every ``model_shared.json`` under ``runs``, through symbolic links to folders too (each real folder once); an
    unreadable folder is a :class:`StoreSweepError` naming it (what it holds cannot be known)."""

    def refuse(err: OSError) -> None:
        raise StoreSweepError(f"{err.filename} cannot be read ({err.strerror}); the sweep cannot tell what the run "
                              "folders there reference: make it readable, then sweep again")

    found, seen = [], set()
    for folder, dirs, files in os.walk(runs, onerror=refuse, followlinks=True):
        real = os.path.realpath(folder)
        if real in seen:  # a link back into the tree: walked once
            dirs[:] = []
            continue
        seen.add(real)
        dirs.sort()
        if RunLayout.MODEL_SHARED in files:
            found.append(Path(folder) / RunLayout.MODEL_SHARED)
    return found


def store_references(runs: Path) -> dict[Path, list[Path]]:
    """Every store file each run folder under ``runs`` references (resolved paths), by run folder; staged run folders
    and folders reached through symbolic links included. :class:`StoreSweepError` names a ``model_shared.json`` or a
    folder that cannot be read."""
    refs: dict[Path, list[Path]] = {}
    for spec_file in _reference_files(runs):
        run_dir = spec_file.parent
        try:
            spec = json.loads(spec_file.read_text(encoding="utf-8"))
            entries = [spec["config"], *(b for b in spec["backbones"].values() if "package" not in b)]
            refs[run_dir] = [(run_dir / entry["file"]).resolve() for entry in entries]  # a package reference: no file
        except (OSError, ValueError, KeyError, TypeError, AttributeError) as exc:
            raise StoreSweepError(f"{spec_file} cannot be read ({type(exc).__name__}: {exc}); the sweep cannot tell "
                                  f"what it references: delete {run_dir} (its run is trained again when needed) or "
                                  "repair the file, then sweep again") from None
    return refs


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
    sizes = _stat(store)
    main = [p for p in sizes if not (p.name.endswith(DIGEST_SUFFIX) and p.with_name(p.name[:-len(DIGEST_SUFFIX)]) in sizes)]
    referenced, unreferenced, recent = [], [], []
    for path in sorted(main):
        group = [q for q in (path, path.with_name(path.name + DIGEST_SUFFIX)) if q in sizes]
        if path.resolve() in wanted:
            referenced += group
        elif now - max(sizes[q][1] for q in group) < min_age_s:
            recent += group
        else:
            unreferenced += group
    missing = tuple((run_dir, p) for run_dir, paths in refs.items() for p in paths if not p.is_file())
    if delete:
        _delete(unreferenced)
    return StoreSweep(store, len(refs), tuple(referenced), tuple(unreferenced), tuple(recent), missing, delete,
                      sum(sizes[p][0] for p in referenced), sum(sizes[p][0] for p in unreferenced),
                      tuple(sizes[p][0] for p in unreferenced))


def _stat(store: Path) -> dict[Path, tuple[int, float]]:
    """Each file of ``store`` with its size and modification time (a file gone meanwhile, e.g. a temporary file just
    renamed into place, left out)."""
    out = {}
    for path in store.iterdir():
        try:
            st = path.stat()
        except FileNotFoundError:
            continue
        if path.is_file():
            out[path] = (st.st_size, st.st_mtime)
    return out


def _delete(paths: list[Path]) -> None:
    """Delete ``paths``; :class:`StoreSweepError` naming the first that cannot be deleted and how many were."""
    for k, path in enumerate(paths):
        try:
            path.unlink(missing_ok=True)
        except OSError as exc:
            raise StoreSweepError(f"{path} cannot be deleted ({exc.strerror}); {k} of {len(paths)} unreferenced "
                                  "file(s) were deleted before it") from None


def describe_sweep(sweep: StoreSweep) -> list[str]:
    """The lines the ``prune-store`` command prints for ``sweep``."""
    mb = 1e6
    lines = [f"store {sweep.store}: {len(sweep.referenced)} file(s) ({sweep.referenced_bytes / mb:.1f} MB) referenced by "
             f"{sweep.run_folders} run folder(s)"]
    verb = "deleted" if sweep.deleted else "can be deleted (--delete deletes them)"
    if sweep.unreferenced:
        lines.append(f"{len(sweep.unreferenced)} file(s) ({sweep.unreferenced_bytes / mb:.1f} MB) referenced by no run "
                     f"folder: {verb}")
        lines += [f"  {p.name} ({n / mb:.1f} MB)" for p, n in zip(sweep.unreferenced, sweep.unreferenced_sizes)]
    else:
        lines.append("nothing to delete" + ("" if sweep.recent else ": every file is referenced"))
    if sweep.recent:
        lines.append(f"{len(sweep.recent)} unreferenced file(s) kept: written within the age limit (--min-age-hours; "
                     "a training may be about to reference them)")
    for run_dir, path in sweep.missing:
        lines.append(f"warning: run folder {run_dir} references {path.name}, which the store lacks: that run cannot be "
                     f"loaded; delete {run_dir} and train it again")
    return lines
