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
import shutil
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from .run import Run

ENSEMBLE_FILE = "ensemble.json"


def is_ensemble(run_dir: str | os.PathLike[str]) -> bool:
    """Whether ``run_dir`` is an ensemble folder (:data:`ENSEMBLE_FILE` beside ``config.json``)."""
    return (Path(run_dir) / ENSEMBLE_FILE).is_file()


class EnsembleRun(Run):
    """The mean raw output of its member runs, calibrated and thresholded as one model."""

    def __init__(self, members: list[Run], config: dict[str, Any], run_dir: Path | None = None):
        imaging = [m for m in members if m.train_config.uses_images]
        first = imaging[0] if imaging else members[0]
        super().__init__(first.model, first.encoder, {**config, "train": first.config["train"]}, run_dir)
        self.members = members
        self.config = config

    @property
    def uses_context(self) -> bool:
        return any(m.uses_context for m in self.members)

    @property
    def uses_original_size(self) -> bool:
        return any(m.uses_original_size for m in self.members)

    def with_context(self, df: pd.DataFrame) -> pd.DataFrame:
        return df  # each member adds its own

    def predict(self, df: pd.DataFrame, batch_size: int = 64, tta: int | None = None,
                cached_embeddings: bool = False) -> np.ndarray:
        """The mean of the members' RAW outputs (each with its own test-time augmentation unless ``tta`` is given)."""
        return np.mean([m.predict(df, batch_size, tta, cached_embeddings) for m in self.members], axis=0)

    @classmethod
    def load(cls, run_dir: str | os.PathLike[str]) -> "EnsembleRun":
        """Load an ensemble folder written by :func:`build_ensemble`."""
        from .run import RunDamaged, _read_json

        run_dir = Path(run_dir)
        spec = _read_json(run_dir, ENSEMBLE_FILE)
        rels = spec.get("members") if isinstance(spec, dict) else None
        if not isinstance(rels, list) or not rels or not all(isinstance(r, str) for r in rels):
            raise RunDamaged(f"run folder {run_dir} is damaged: {ENSEMBLE_FILE} (no list of member folders under "
                             "'members'); build the ensemble again")
        outside = [r for r in rels if not (run_dir / r).resolve().is_relative_to(run_dir.resolve())]
        if outside:
            raise RunDamaged(f"run folder {run_dir} is damaged: {ENSEMBLE_FILE} names members outside the folder "
                             f"({', '.join(outside)}); build the ensemble again")
        nested = [r for r in rels if (run_dir / r).resolve() == run_dir.resolve() or (run_dir / r / ENSEMBLE_FILE).is_file()]
        if nested:
            raise RunDamaged(f"run folder {run_dir} is damaged: {ENSEMBLE_FILE} names itself or another ensemble as a "
                             f"member ({', '.join(nested)}); members are trained run folders; build the ensemble again")
        members = [Run.load(run_dir / rel) for rel in rels]
        run = cls(members, _read_json(run_dir, "config.json"), run_dir)
        if (run_dir / "metrics.json").is_file():
            run.metrics = _read_json(run_dir, "metrics.json")
        return run


def _validation_table(run_dirs: list[Path]) -> pd.DataFrame:
    """The members' shared validation rows with each member's raw output (``raw_<k>``); an error names a member
    whose validation rows differ."""
    tables = []
    for path in run_dirs:
        csv = path / "val_predictions.csv"
        if not csv.is_file():
            raise ValueError(f"{path}: no val_predictions.csv (not a finished run folder)")
        tables.append(pd.read_csv(csv, dtype={"image_name": str, "patient_id": str}).set_index("image_name"))
    ref = tables[0]
    for path, t in zip(run_dirs[1:], tables[1:]):
        if set(t.index) != set(ref.index):
            raise ValueError(f"{path} was validated on other images than {run_dirs[0]} ({len(set(t.index) ^ set(ref.index))} "
                             "differ): train the members on the same CSV with the same --seed and --val-fraction")
    out = ref[["patient_id", "target"]].copy()
    for k, t in enumerate(tables):
        out[f"raw_{k}"] = t.loc[out.index, "raw_probability"].to_numpy(float)
    return out.reset_index()


def build_ensemble(run_dirs: list[str | os.PathLike[str]], out_dir: str | os.PathLike[str],
                   metadata: pd.DataFrame | None = None, min_sensitivity: float | None = None,
                   seed: int = 0) -> EnsembleRun:
    """Average the runs in ``run_dirs`` into one ensemble run folder ``out_dir`` (see the module docstring).

    ``metadata`` (the training table, optional) adds sex/age/site/diagnosis/size to the validation report's
    subgroups. ``min_sensitivity`` defaults to the first member's. ``out_dir`` must not exist.
    """
    from ..atomic import json_safe, write_json, write_text
    from ..evaluation.calibration import Calibrator, fit_calibrator
    from ..evaluation.clinical import validation_report
    from ..evaluation.metrics import MetricError, choose_threshold, evaluate
    from ..evaluation.modelcard import model_card

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
    raw_cols = [c for c in val if c.startswith("raw_")]
    raw = val[raw_cols].mean(axis=1).to_numpy()
    y, groups = val["target"].to_numpy(int), val["patient_id"].to_numpy()
    min_sens = float(min_sensitivity if min_sensitivity is not None else configs[0]["train"].get("min_sensitivity", 0.9))
    calibrator, note = Calibrator(), None
    try:
        calibrator = fit_calibrator(y, raw, groups, seed=seed)
    except MetricError as exc:
        note = f"not calibrated: {exc}"
    p = calibrator.transform(raw)
    rule = f"highest threshold with validation sensitivity >= {min_sens} (calibrated ensemble probabilities)"
    try:
        threshold, fallback = choose_threshold(y, p, min_sens), None
    except MetricError as exc:
        threshold, fallback, rule = 0.5, str(exc), f"fallback 0.5: no validation threshold could be chosen ({exc})"
    members = [{"path": f"members/{k}", "source": str(src), "kind": c["train"].get("kind"),
                "backbone": c["train"].get("backbone"), "image_size": c["train"].get("image_size"),
                "features": c["train"].get("features"), "tta": c["train"].get("tta"),
                "training_sources": c.get("training_sources"), "validation_auc_raw": None}
               for k, (src, c) in enumerate(zip(run_dirs, configs))]
    from ..evaluation.metrics import roc_auc

    for m, col in zip(members, raw_cols):
        try:
            m["validation_auc_raw"] = roc_auc(y, val[col])
        except MetricError:
            pass
    first = configs[0]
    config = {
        "train": first["train"], "preprocess": first.get("preprocess"), "ensemble": {"members": members, "combine": "mean of raw outputs"},
        "threshold": threshold, "threshold_rule": rule, "threshold_fallback": fallback,
        "calibration": calibrator.to_dict() if calibrator.method != "identity" else None, "calibration_note": note,
        "training_prevalence": first.get("training_prevalence"), "training_sources": first.get("training_sources"),
        "validation_sources": first.get("validation_sources"), "feature_names": first.get("feature_names"),
        "n_train": first.get("n_train"), "n_val": len(val), "n_train_positive": first.get("n_train_positive"),
        "versions": first.get("versions"),
    }
    val_pred = pd.DataFrame({"image_name": val["image_name"], "patient_id": val["patient_id"], "target": y,
                             "probability": p, "raw_probability": raw})
    report = None
    try:
        metrics: dict[str, Any] = evaluate(y, p, groups, {"0.5": 0.5, "validation": threshold}, n_boot=200, seed=seed)
        joined = val_pred
        if metadata is not None:
            cols = [c for c in ("sex", "age", "site", "diagnosis", "width", "height") if c in metadata]
            joined = val_pred.merge(metadata[["image_name", *cols]], on="image_name", how="left")
        report = validation_report(joined, threshold=threshold, n_boot=200, seed=seed)
    except MetricError as exc:
        metrics = {"error": str(exc)}
    work = out_dir.with_name(f".{out_dir.name}.partial")
    shutil.rmtree(work, ignore_errors=True)
    (work / "members").mkdir(parents=True)
    for k, src in enumerate(run_dirs):
        shutil.copytree(src, work / "members" / str(k))
    write_json(work / ENSEMBLE_FILE, {"members": [m["path"] for m in members]})
    write_json(work / "config.json", config)
    write_json(work / "metrics.json", {"validation": metrics, **({"validation_report": json_safe(report)} if report else {})})
    val_pred.to_csv(work / "val_predictions.csv", index=False)
    write_text(work / "MODEL_CARD.md", model_card(config, report, title="Melanoma classifier (ensemble)"))
    os.replace(work, out_dir)
    return EnsembleRun.load(out_dir)
