"""Ensembles that are still one run folder: several trained runs (other backbones, sizes, seeds or feature sets)
averaged, with ONE calibrator and threshold fitted on held-out predictions that no member trained on.

``python -m melanoma_utils ensemble --runs R1 R2 ... --out E`` copies the members into ``E/members/<k>/`` and writes
``E/ensemble.json``, ``config.json`` (calibration, threshold and its rule, members, training sources), ``metrics.json``,
``val_predictions.csv`` and ``MODEL_CARD.md``; :meth:`melanoma_utils.runs.run.Run.load` returns an :class:`EnsembleRun`
for such a folder, so ``predict``, ``evaluate --run``, TTA and ``--prevalence`` work on it unchanged.

The members must share their validation split (the same training CSV, ``--seed`` and ``--val-fraction``; external
data only ever joins training parts): the ensemble's raw output on it is the mean of the members' raw outputs, which
they wrote to ``val_predictions.csv`` (with their own test-time augmentation). Those rows were used by each member
for early stopping only, never as training rows, which is the same protocol as a single run's calibrator.
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any

import pandas as pd

from ..data.csvfiles import restore_cells
from .model_files import copy_self_contained
from .run import ENSEMBLE_FILE, EnsembleRun, Run, TrainConfig, is_ensemble  # noqa: F401  (re-exported: loaded there)
from .runfolder import RunLayout, write_record


def _validation_table(run_dirs: list[Path]) -> pd.DataFrame:
    """The members' shared validation rows with each member's raw output (``raw_<k>``); an error names a member
    whose validation rows differ."""
    tables = []
    for path in run_dirs:
        csv = RunLayout(path).val_predictions
        if not csv.is_file():
            raise ValueError(f"{path}: no {RunLayout.VAL_PREDICTIONS} (not a finished run folder)")
        tables.append(restore_cells(pd.read_csv(csv, dtype={"image_name": str, "patient_id": str})).set_index("image_name"))
    ref = tables[0]
    for path, t in zip(run_dirs[1:], tables[1:]):
        if set(t.index) != set(ref.index):
            raise ValueError(f"{path} was validated on other images than {run_dirs[0]} ({len(set(t.index) ^ set(ref.index))} "
                             "differ): train the members on the same CSV with the same --seed and --val-fraction")
    out = ref[["patient_id", "target"]].copy()
    for k, t in enumerate(tables):
        out[f"raw_{k}"] = t.loc[out.index, "raw_probability"].to_numpy(float)
    return out.reset_index()


def _member_entries(run_dirs: list[Path], configs: list[dict[str, Any]], val: pd.DataFrame) -> list[dict[str, Any]]:
    """What the ensemble's config says of each member (with its raw validation ROC AUC where it has one)."""
    from ..evaluation.metrics import MetricError, roc_auc

    members = []
    for k, (src, c) in enumerate(zip(run_dirs, configs)):
        t = c["train"]
        entry = {"path": f"{RunLayout.MEMBERS}/{k}", "source": str(src), "kind": t.get("kind"),
                 "backbone": t.get("backbone"), "image_size": t.get("image_size"), "features": t.get("features"),
                 "tta": t.get("tta"), "training_sources": c.get("training_sources"), "validation_auc_raw": None}
        try:
            entry["validation_auc_raw"] = roc_auc(val["target"], val[f"raw_{k}"])
        except MetricError:
            pass
        members.append(entry)
    return members


def build_ensemble(run_dirs: list[str | os.PathLike[str]], out_dir: str | os.PathLike[str],
                   metadata: pd.DataFrame | None = None, min_sensitivity: float | None = None,
                   seed: int = 0, n_boot: int | None = None) -> EnsembleRun:
    """Average the runs in ``run_dirs`` into one ensemble run folder ``out_dir`` (see the module docstring), finished
    by the same step as a single run (:func:`~melanoma_utils.runs.finish.finish`).

    ``metadata`` (the training table, optional) adds sex/age/site/diagnosis/size to the validation report's
    subgroups. ``min_sensitivity`` and ``n_boot`` default to the first member's. ``out_dir`` must not exist; it is
    written under a temporary name, holding the run folder's lock, and moved into place complete.
    """
    from ..atomic import atomic_folder, write_json
    from .finish import SUBGROUP_COLUMNS, finish, write_finished
    from .runfolder import run_lock

    run_dirs = [Path(p) for p in run_dirs]
    out_dir = Path(out_dir)
    if len(run_dirs) < 2:
        raise ValueError("an ensemble needs at least two runs")
    if len(set(p.resolve() for p in run_dirs)) != len(run_dirs):
        raise ValueError("the same run is listed twice")
    if out_dir.exists():
        raise FileExistsError(f"{out_dir} already exists; choose another --out")
    configs = [Run.read_config(p) for p in run_dirs]
    if any(is_ensemble(p) for p in run_dirs):
        raise ValueError("members must be single runs, not ensembles")
    val = _validation_table(run_dirs)
    raw = val[[c for c in val if c.startswith("raw_")]].mean(axis=1).to_numpy()
    first = TrainConfig.from_dict(configs[0]["train"])
    if metadata is not None:
        cols = [c for c in SUBGROUP_COLUMNS if c in metadata]
        val = val.merge(metadata[["image_name", *cols]].drop_duplicates("image_name"), on="image_name", how="left")
    done = finish(val, raw, float(min_sensitivity if min_sensitivity is not None else first.min_sensitivity), seed,
                  int(n_boot or first.n_boot), scale="calibrated ensemble probabilities")
    members = _member_entries(run_dirs, configs, val)
    c0 = configs[0]
    config = {
        "train": c0["train"], "preprocess": c0.get("preprocess"),
        "ensemble": {"members": members, "combine": "mean of raw outputs"}, **done.config,
        "training_prevalence": c0.get("training_prevalence"), "training_sources": c0.get("training_sources"),
        "validation_sources": c0.get("validation_sources"), "feature_names": c0.get("feature_names"),
        "n_train": c0.get("n_train"), "n_val": len(val), "n_train_positive": c0.get("n_train_positive"),
        "versions": c0.get("versions"),
    }
    with run_lock(out_dir), atomic_folder(out_dir, "ensemble") as work:
        for k, src in enumerate(run_dirs):
            copy_self_contained(src, RunLayout(work).member(k))  # members whole, even a study's fold runs
        write_json(RunLayout(work).ensemble, {"members": [m["path"] for m in members]})
        write_finished(work, config, done, title="Melanoma classifier (ensemble)")
        write_record(work)
    return EnsembleRun.load(out_dir)
