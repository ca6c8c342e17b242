"""Where ``predict`` and ``evaluate`` may write: never inside a run folder (at any depth: its files are the training's
record, checked against ``record.json``), never over an input of the same call, and a report folder replaced only
when it is an earlier report and ``--overwrite`` says so."""

from __future__ import annotations

from pathlib import Path

from ..runs.runfolder import RunLayout

#: The file an ``evaluate`` report folder holds (how a folder is recognised as one it may replace).
REPORT_MARK = "metrics.json"


def is_run_folder(folder: Path) -> bool:
    """A run or ensemble folder (its files are the training's record: never an output of another command)."""
    layout = RunLayout(folder)
    return layout.has_model or layout.is_ensemble or (layout.config.is_file() and layout.val_predictions.is_file())


def run_folder_above(path: Path) -> Path | None:
    """The run (or ensemble) folder ``path`` lies in, at any depth (``RUN/sub/x.csv`` too), or ``None``."""
    return next((p for p in Path(path).absolute().parents if is_run_folder(p)), None)


def check_predictions_out(out: Path, inputs: list[Path]) -> None:
    """Refuse a predictions file inside a run folder, at any depth (its files are the training's record), or naming an
    input of the same call."""
    run = run_folder_above(out)
    if run is not None:
        raise FileExistsError(f"{run} is a run folder: write the predictions elsewhere (its files record the "
                              "training; ensemble reads val_predictions.csv)")
    for path in inputs:
        if path is not None and path.exists() and out.exists() and out.resolve() == path.resolve():
            raise FileExistsError(f"{out} is an input of this command: write the output to another file")


def check_report_out(out: Path, overwrite: bool) -> None:
    """Refuse to write an evaluate report where it would overwrite something a user made: a run folder (its own
    metrics.json is the training record) or any non-empty folder that is not an earlier report (``--overwrite``
    replaces an earlier report only)."""
    run = run_folder_above(out)
    if run is not None:  # a report inside a run folder, at any depth, would become part of it
        raise FileExistsError(f"{run} is a run folder: write the evaluation elsewhere (its files record the training)")
    if out.suffix.lower() == ".json":
        if out.exists() and not overwrite:
            raise FileExistsError(f"{out} exists; pass --overwrite to replace it")
        return
    if out.is_file():
        raise FileExistsError(f"{out} is a file; --out names a report folder (or a .json file)")
    if not out.is_dir() or not any(out.iterdir()):
        return
    if is_run_folder(out) or RunLayout(out).config.is_file():
        raise FileExistsError(f"{out} is a run folder: write the evaluation report elsewhere (its metrics.json records "
                              "the training)")
    if not (out / REPORT_MARK).is_file():
        raise FileExistsError(f"{out} is a non-empty folder that holds no evaluate report; choose an empty or new folder")
    if not overwrite:
        raise FileExistsError(f"{out} holds an earlier evaluate report; pass --overwrite to replace it")
