"""The run folder: its layout and its lifecycle — one writer, staged writes, resumable state.

* :class:`RunLayout` — the one place that spells a run folder's file names (``model.keras`` — or, for a study's fold
  run, ``model_shared.json`` + ``head_weights.npz`` referencing a shared backbone —, ``encoder.json``,
  ``config.json``, ``metrics.json``, ``val_predictions.csv``, ``MODEL_CARD.md``; an ensemble's ``ensemble.json`` and
  ``members/<k>/``); ``record.json`` lists every file with its size and SHA-256, written at publish and checked before
  a run is used (:func:`record_problems`).

* :func:`run_lock` — one training per run folder: an ``flock`` on ``.<name>.lock`` beside it, whose file holds the
  owner's pid, host and start time; a second training gets an error naming them; the operating system frees the lock
  of a killed process, so re-running the same command resumes.
* Training writes into a staging folder ``.<name>.partial`` beside the run folder; :func:`publish` moves the
  finished run into place (replacing an old run only then), so the folder holds a complete run or none.
* ``.<name>.partial/fingerprint.json`` records the configuration and data the staged state belongs to;
  :func:`prepare_staging` resumes only when they match, otherwise it names the differences (``restart``
  discards the old state).
* :class:`ResumeState` saves, after every epoch and in one atomic file, everything a resumed fit needs: the
  weights, the optimizer's variables, the epoch counter, early stopping's best weights and patience
  counter, the history rows and the time spent.
"""

from __future__ import annotations

import contextlib
import datetime as dt
import hashlib
import json
import os
import shutil
import socket
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any, ClassVar, Iterator

import pandas as pd

from ..atomic import file_digest, replace_folder, write_json


class RunLocked(FileExistsError):
    """Another training owns this run folder (or left a stale lock)."""


class ResumeMismatch(ValueError):
    """The staged state of an interrupted run belongs to another configuration or data."""


def lock_path(out_dir: Path) -> Path:
    """The lock file of a run folder (beside it, so it exists before the folder does)."""
    return out_dir.parent / f".{out_dir.name}.lock"


def staging_path(out_dir: Path) -> Path:
    """Where a run is written before it is moved into place."""
    return out_dir.parent / f".{out_dir.name}.partial"


@contextlib.contextmanager
def run_lock(out_dir: str | os.PathLike[str]) -> Iterator[Path]:
    """Hold the run folder's lock for the duration of the block (see the module docstring).

    The lock is an ``fcntl.flock`` on ``.<name>.lock``: the operating system releases it when its process dies
    (``kill -9``, out of memory, a reboot), so re-running the same command simply resumes. A live holder is refused
    with its pid, host and start time (written into the file). Locks are per host: on a network file system shared by
    several hosts, run each training into its own folder.
    """
    import fcntl

    out_dir = Path(out_dir)
    out_dir.parent.mkdir(parents=True, exist_ok=True)
    lock = lock_path(out_dir)
    me = {"pid": os.getpid(), "host": socket.gethostname(), "started": dt.datetime.now().isoformat(timespec="seconds")}
    while True:
        fd = os.open(lock, os.O_CREAT | os.O_RDWR, 0o644)
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            raw = os.read(fd, 4096)
            os.close(fd)
            try:
                owner = json.loads(raw)
            except ValueError:
                raise RunLocked(f"{out_dir} is locked by another training (its lock file {lock} holds no owner details "
                                "yet or is unreadable; if no training is running, it may be deleted)") from None
            raise RunLocked(f"{out_dir} is locked by pid {owner.get('pid')} on {owner.get('host', '?')} since "
                            f"{owner.get('started', '?')}: another training writes there (lock file {lock})") from None
        try:  # the file may have been removed and recreated by its last holder between our open and our lock
            same = os.fstat(fd).st_ino == os.stat(lock).st_ino
        except FileNotFoundError:
            same = False
        if same:
            break
        os.close(fd)
    os.ftruncate(fd, 0)
    os.write(fd, json.dumps(me).encode())
    try:
        yield lock
    finally:
        lock.unlink(missing_ok=True)
        os.close(fd)  # releases the flock


#: How many image files per split :func:`fingerprint` hashes in full (the rest by size and modification time).
CONTENT_SAMPLE = 32


def fingerprint(cfg: Any, train: pd.DataFrame, val: pd.DataFrame) -> dict[str, Any]:
    """What a staged state belongs to: the configuration (less verbosity), the exact training/validation rows and
    their image files: every file's size and modification time, and the full bytes of an evenly spaced sample of
    :data:`CONTENT_SAMPLE` files per split (images replaced in place, e.g. inverted, change the fingerprint without
    reading every file of a large set)."""
    config = {k: v for k, v in asdict(cfg).items() if k not in ("verbose", "n_boot")}  # neither changes the training
    config = json.loads(json.dumps(config, default=list))
    h = hashlib.sha1()
    for part in (train, val):
        h.update("|".join(f"{n}:{t}" for n, t in zip(part["image_name"], part["target"])).encode())
        h.update(b"#")
        paths = [str(x) for x in part["image_path"]] if "image_path" in part else []
        for path in paths:
            try:
                st = os.stat(path)
                h.update(f"{st.st_size}:{st.st_mtime_ns};".encode())
            except OSError:
                h.update(b"missing;")
        for path in paths[:: max(1, len(paths) // CONTENT_SAMPLE)][:CONTENT_SAMPLE]:
            try:
                with open(path, "rb") as fh:
                    h.update(hashlib.sha1(fh.read()).digest())
            except OSError:
                h.update(b"unreadable")
    return {"config": config, "data": h.hexdigest()}


def prepare_staging(staging: Path, fp: dict[str, Any], restart: bool = False) -> bool:
    """Create the staging folder, or resume the one there when its fingerprint matches ``fp``.

    Returns ``True`` when resuming. Raises :class:`ResumeMismatch` naming the differences otherwise
    (``restart`` discards the old state instead).
    """
    marker = RunLayout(staging).fingerprint
    backup = RunLayout(staging).backup
    saved_epochs = backup.is_dir() and any(backup.glob("*.npz"))
    if staging.exists() and (restart or not marker.is_file() or not saved_epochs):
        shutil.rmtree(staging)  # discarded on request, never got past its first write, or failed before any epoch
    if staging.exists():
        old = json.loads(marker.read_text())
        if old == fp:
            return True
        diffs = [f"{k}: {old['config'].get(k)!r} -> {fp['config'].get(k)!r}"
                 for k in sorted(set(old["config"]) | set(fp["config"])) if old["config"].get(k) != fp["config"].get(k)]
        if old.get("data") != fp["data"]:
            diffs.append("the training/validation images or labels differ")
        raise ResumeMismatch(f"{staging / 'backup'} holds an interrupted run with another configuration or data "
                             f"({'; '.join(diffs)}); pass --restart to discard it, or train into another --out")
    staging.mkdir(parents=True)
    write_json(marker, fp)
    return False


def publish(staging: Path, out_dir: Path) -> None:
    """Record every file of the finished run (:func:`write_record`) and move it into place; an old run there is
    replaced only now."""
    write_record(staging)
    replace_folder(staging, out_dir)


def _recorded_files(folder: Path) -> list[Path]:
    """The files a run record covers: every regular file below ``folder`` (not through a link) except hidden ones and
    the record itself."""
    return sorted(p for p in folder.rglob("*") if p.is_file() and not p.is_symlink() and p.name != RunLayout.RECORD
                  and not any(part.startswith(".") for part in p.relative_to(folder).parts))


def _inside(folder: Path, name: str) -> Path | None:
    """``folder / name`` where ``name`` is a plain relative path inside ``folder`` and no part of it is a link; else
    ``None`` (a record naming ``../x``, ``/etc/passwd`` or a link is not this package's)."""
    parts = Path(name).parts
    if not name or Path(name).is_absolute() or ".." in parts:
        return None
    p = folder / name
    here = folder
    for part in parts:
        here = here / part
        if here.is_symlink():
            return None
    return p


def _digest(path: Path) -> str:
    return file_digest(path, "sha256")


def write_record(folder: str | os.PathLike[str]) -> dict[str, Any]:
    """Write ``record.json``: each file of the run folder (path relative to it) with its size in bytes and SHA-256,
    so that a piece taken from another run, edited or cut is found before it is used (:func:`record_problems`)."""
    folder = Path(folder)
    files = {p.relative_to(folder).as_posix(): {"bytes": p.stat().st_size, "sha256": _digest(p)}
             for p in _recorded_files(folder)}
    record = {"format": 1, "files": files}
    write_json(folder / RunLayout.RECORD, record)
    return record


def record_problems(folder: str | os.PathLike[str]) -> list[str] | None:
    """What in ``folder`` differs from its ``record.json``: a recorded file missing, of another size or content, or a
    file the record does not list (each named); ``[]`` when everything matches; ``None`` when the folder has no record
    (a run from before records)."""
    folder = Path(folder)
    path = folder / RunLayout.RECORD
    if not path.is_file():
        return None
    try:
        files = json.loads(path.read_text(encoding="utf-8"))["files"]
        assert isinstance(files, dict)
    except (ValueError, KeyError, TypeError, AssertionError):
        return [f"{RunLayout.RECORD} (not a record written by this package)"]
    problems = []
    for name, want in files.items():
        p = _inside(folder, name)
        if p is None or not (isinstance(want, dict) and isinstance(want.get("bytes"), int)
                             and isinstance(want.get("sha256"), str)):
            problems.append(f"{RunLayout.RECORD} (entry {name!r} is not a file record: not written by this package)")
        elif not p.is_file():
            problems.append(f"{name} (recorded, missing)")
        elif p.stat().st_size != want.get("bytes"):
            problems.append(f"{name} ({p.stat().st_size:,} bytes, recorded {want.get('bytes'):,}: another file than "
                            "the one this run wrote)")
        elif _digest(p) != want.get("sha256"):
            problems.append(f"{name} (content differs from the record: changed, or taken from another run)")
    return problems


def unrecorded_files(folder: str | os.PathLike[str]) -> list[str]:
    """Files in a recorded run folder that its ``record.json`` does not list (added after it was written: nothing
    reads them, so they are a notice, not damage)."""
    folder = Path(folder)
    try:
        files = json.loads((folder / RunLayout.RECORD).read_text(encoding="utf-8"))["files"]
    except (OSError, ValueError, KeyError, TypeError):
        return []
    return [n for n in (p.relative_to(folder).as_posix() for p in _recorded_files(folder)) if n not in files]


@dataclass(frozen=True)
class RunLayout:
    """The paths of one run (or ensemble) folder: ``RunLayout(folder).config`` → ``folder/config.json``."""

    root: Path

    MODEL: ClassVar[str] = "model.keras"
    ENCODER: ClassVar[str] = "encoder.json"
    CONFIG: ClassVar[str] = "config.json"
    METRICS: ClassVar[str] = "metrics.json"
    VAL_PREDICTIONS: ClassVar[str] = "val_predictions.csv"
    MODEL_CARD: ClassVar[str] = "MODEL_CARD.md"
    ENSEMBLE: ClassVar[str] = "ensemble.json"
    RECORD: ClassVar[str] = "record.json"
    HISTORY: ClassVar[str] = "history.csv"
    BACKUP: ClassVar[str] = "backup"
    FINGERPRINT: ClassVar[str] = "fingerprint.json"
    MEMBERS: ClassVar[str] = "members"
    #: A study fold run's model by reference (:mod:`melanoma_utils.runs.model_files`): its configuration and the
    #: backbones' store files, the other layers' weights; the store folder beside a study's run folders.
    MODEL_SHARED: ClassVar[str] = "model_shared.json"
    HEAD_WEIGHTS: ClassVar[str] = "head_weights.npz"
    SHARED_STORE: ClassVar[str] = "shared_backbones"

    def __init__(self, root: str | os.PathLike[str]) -> None:
        object.__setattr__(self, "root", Path(root))

    @property
    def model(self) -> Path:
        return self.root / self.MODEL

    @property
    def model_shared(self) -> Path:
        return self.root / self.MODEL_SHARED

    @property
    def head_weights(self) -> Path:
        return self.root / self.HEAD_WEIGHTS

    @property
    def has_model(self) -> bool:
        """Whether the folder holds a finished model (whole, or by reference to a shared backbone)."""
        return self.model.exists() or self.model_shared.exists()

    @property
    def encoder(self) -> Path:
        return self.root / self.ENCODER

    @property
    def config(self) -> Path:
        return self.root / self.CONFIG

    @property
    def metrics(self) -> Path:
        return self.root / self.METRICS

    @property
    def val_predictions(self) -> Path:
        return self.root / self.VAL_PREDICTIONS

    @property
    def model_card(self) -> Path:
        return self.root / self.MODEL_CARD

    @property
    def ensemble(self) -> Path:
        return self.root / self.ENSEMBLE

    @property
    def history(self) -> Path:
        return self.root / self.HISTORY

    @property
    def backup(self) -> Path:
        """Resumable training state of a staged run (removed when it is published)."""
        return self.root / self.BACKUP

    def state(self, phase: str) -> Path:
        """The resumable state file of one training phase (``main``, ``freeze``, ``finetune``)."""
        return self.backup / f"{phase}.npz"

    @property
    def fingerprint(self) -> Path:
        """What a staged run belongs to (configuration and data; removed when it is published)."""
        return self.root / self.FINGERPRINT

    def member(self, k: int) -> Path:
        """The folder of an ensemble's ``k``-th member."""
        return self.root / self.MEMBERS / str(k)

    @property
    def is_ensemble(self) -> bool:
        """Whether the folder is an ensemble (its ``ensemble.json`` exists)."""
        return self.ensemble.is_file()

    def required(self) -> tuple[str, ...]:
        """The files a finished folder of its kind must hold."""
        if self.is_ensemble:
            return (self.CONFIG,)
        model = (self.MODEL_SHARED, self.HEAD_WEIGHTS) if self.model_shared.exists() else (self.MODEL,)
        return (*model, self.ENCODER, self.CONFIG)
