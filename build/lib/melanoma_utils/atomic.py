"""File helpers. Write-then-rename: every output is written under a temporary name in its folder and moved into
place, so a reader (or a killed run) never sees a half-written file, and a failed write leaves the old one
intact. :func:`atomic_folder` does the same for a whole folder and replaces only a folder the same command made
(its marker file says which). :func:`file_digest`: a file's content hash (cache keys)."""

from __future__ import annotations

import contextlib
import hashlib
import json
import os
import shutil
import tempfile
from pathlib import Path
from typing import Any, Callable, Iterator

import numpy as np


def temporary_sibling(path: str | os.PathLike[str]) -> Path:
    """A hidden temporary name beside ``path`` that keeps its suffix (libraries pick formats by suffix)."""
    path = Path(path)
    suffix = "".join(path.suffixes[-2:]) if path.name.endswith(".weights.h5") else path.suffix
    stem = path.name[: len(path.name) - len(suffix)] if suffix else path.name
    return path.with_name(f".{stem}.{os.getpid()}.tmp{suffix}")


@contextlib.contextmanager
def atomic_path(path: str | os.PathLike[str], exclusive: bool = False) -> Iterator[Path]:
    """``with atomic_path(p) as tmp: write(tmp)`` — ``tmp`` replaces ``p`` when the block succeeds and is
    removed when it fails. The parent folder is created. ``exclusive``: ``tmp`` is linked into place only if ``p``
    does not exist by then (an atomic check-and-create): when two commands write the same new file at once, one
    result stands and the other gets a :class:`FileExistsError` naming the file."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = temporary_sibling(path)
    try:
        yield tmp
        if exclusive:
            _link_exclusively(tmp, path)
        else:
            os.replace(tmp, path)
    finally:
        if tmp.exists():
            tmp.unlink()


def _link_exclusively(tmp: Path, path: Path) -> None:
    """Put ``tmp`` at ``path`` only if nothing is there: a hard link (atomic); where the file system has none (some
    network or FUSE mounts), claim the name with an exclusive create, then move ``tmp`` over it."""
    try:
        try:
            os.link(tmp, path)
        except FileExistsError:
            raise
        except OSError:
            os.close(os.open(path, os.O_CREAT | os.O_EXCL | os.O_WRONLY))
            os.replace(tmp, path)
    except FileExistsError:
        raise FileExistsError(f"{path} was written by another command meanwhile; it was left as that command wrote it "
                              "(pass --overwrite to replace it)") from None


def atomic_write(path: str | os.PathLike[str], write: Callable[[Path], Any], exclusive: bool = False) -> Path:
    """Call ``write(tmp)`` and move ``tmp`` onto ``path`` (``exclusive``: only if ``path`` does not exist by then,
    :func:`atomic_path`); returns ``path``."""
    with atomic_path(path, exclusive) as tmp:
        write(tmp)
    return Path(path)


def refuse_symlink(*paths: str | os.PathLike[str]) -> None:
    """Refuse (naming it) any of ``paths`` that is a symbolic link: what the tools create or unpack into is written
    only through real folders and files, so a planted link cannot make them write elsewhere."""
    for path in map(Path, paths):
        if path.is_symlink():
            raise ValueError(f"{path} is a symbolic link (to {os.readlink(path)}); this path is written by the tools "
                             "only: remove the link and run again")


#: The file inside every folder this package writes whole, naming the command that made it (``{"kind": ...}``).
MARKER = ".melanoma_utils.json"


def folder_kind(path: str | os.PathLike[str]) -> str | None:
    """The command that made folder ``path`` (its :data:`MARKER`), ``None`` when it has no readable marker."""
    try:
        kind = json.loads((Path(path) / MARKER).read_text(encoding="utf-8")).get("kind")
    except (OSError, ValueError, AttributeError):
        return None
    return str(kind) if kind else None


def check_replaceable(out: Path, kind: str, overwrite: bool, legacy: Callable[[Path], bool] | None = None) -> None:
    """Refuse (:class:`FileExistsError`, naming the path and the fix) to write folder ``out`` over anything but an
    empty folder or, with ``overwrite``, a folder that ``kind`` made (its marker; ``legacy(out)`` recognises such
    folders written before markers existed). A symlink, a file, a run folder or a user's folder is never replaced."""
    if out.is_symlink():
        raise FileExistsError(f"{out} is a symbolic link: name a real folder for --out")
    if out.exists() and not out.is_dir():
        raise FileExistsError(f"{out} is a file; --out names a folder to write")
    if not out.is_dir() or not any(out.iterdir()):
        return
    made_here = folder_kind(out) == kind or (folder_kind(out) is None and legacy is not None and legacy(out))
    if not overwrite:
        raise FileExistsError(f"{out} exists and is not empty; " + ("pass --overwrite to replace it" if made_here else
                                                                      "choose another --out"))
    if not made_here:
        raise FileExistsError(f"{out} was not written by `{kind}` (no marker {MARKER} of it): --overwrite replaces only "
                              "a folder that command made, never a user's folder; choose another --out")


def replace_folder(new: Path, out: Path) -> None:
    """Move the finished folder ``new`` to ``out``; an old ``out`` is set aside under a unique hidden name first and
    removed only once ``new`` is in place."""
    if out.is_dir():
        old = Path(tempfile.mkdtemp(prefix=f".{out.name}.", suffix=".old", dir=out.parent))
        os.replace(out, old / "previous")
        os.replace(new, out)
        shutil.rmtree(old, ignore_errors=True)
    else:
        os.replace(new, out)


@contextlib.contextmanager
def atomic_folder(out: str | os.PathLike[str], kind: str, overwrite: bool = False,
                  legacy: Callable[[Path], bool] | None = None) -> Iterator[Path]:
    """``with atomic_folder(out, "export") as tmp: write files into tmp`` — the folder is built under a unique hidden
    temporary name beside ``out`` (``.<name>.<random>.partial``: never a name a user chose), marked with ``kind``
    and moved into place when the block succeeds; removed when it fails. What may be replaced:
    :func:`check_replaceable`, checked before the block runs and again before the move."""
    out = Path(out)
    check_replaceable(out, kind, overwrite, legacy)
    out.parent.mkdir(parents=True, exist_ok=True)
    tmp = Path(tempfile.mkdtemp(prefix=f".{out.name}.", suffix=".partial", dir=out.parent))
    try:
        yield tmp
        (tmp / MARKER).write_text(json.dumps({"kind": kind}), encoding="utf-8")
        check_replaceable(out, kind, overwrite, legacy)
        replace_folder(tmp, out)
    finally:
        if tmp.exists():
            shutil.rmtree(tmp, ignore_errors=True)


def _json_default(o: Any) -> Any:
    if isinstance(o, np.integer):
        return int(o)
    if isinstance(o, np.floating):
        return float(o)
    if isinstance(o, (tuple, set)):
        return list(o)
    if isinstance(o, Path):
        return str(o)
    raise TypeError(f"not JSON serialisable: {type(o).__name__}")


def write_json(path: str | os.PathLike[str], obj: Any) -> Path:
    """JSON (indented; NumPy scalars and tuples converted), written atomically."""
    text = json.dumps(obj, indent=2, default=_json_default)
    return atomic_write(path, lambda tmp: tmp.write_text(text, encoding="utf-8"))


def write_text(path: str | os.PathLike[str], text: str) -> Path:
    """Text (UTF-8), written atomically."""
    return atomic_write(path, lambda tmp: tmp.write_text(text, encoding="utf-8"))


def file_digest(path: str | os.PathLike[str], algorithm: str = "sha1") -> str:
    """Hex digest of a file's bytes, read in 1 MiB chunks."""
    h = hashlib.new(algorithm)
    with open(path, "rb") as f:
        for chunk in iter(lambda: f.read(1 << 20), b""):
            h.update(chunk)
    return h.hexdigest()


def json_safe(obj: Any) -> Any:
    """``obj`` with NaN/inf floats replaced by ``None`` (strict JSON has no NaN)."""
    if isinstance(obj, dict):
        return {k: json_safe(v) for k, v in obj.items()}
    if isinstance(obj, (list, tuple)):
        return [json_safe(v) for v in obj]
    if isinstance(obj, (float, np.floating)):
        return float(obj) if np.isfinite(obj) else None
    return obj
