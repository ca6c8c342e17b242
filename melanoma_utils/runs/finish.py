"""One way a run is finished, for a single run and an ensemble alike (:func:`finish` then :func:`write_finished`):
calibrate on the validation split, choose the decision threshold there (with its fallback), evaluate with the
configured bootstrap size, write the validation report and the model card — all into a staging folder that is moved
into place as one by its caller. :func:`write_run` finishes a fitted single model this way, with its model, encoder
and config, and publishes the folder; :mod:`.ensemble` finishes an ensemble the same way."""

from __future__ import annotations

import shutil
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np
import pandas as pd

from ..atomic import atomic_write, json_safe, write_json, write_text
from ..data.csvfiles import write_csv
from ..data.sources import source_counts
from ..evaluation.calibration import Calibrator
from ..evaluation.calibrator_choice import fit_calibrator
from ..evaluation.clinical import MIN_PER_CLASS, validation_report
from ..evaluation.metrics import MetricError, choose_threshold
from ..evaluation.modelcard import model_card
from ..evaluation.results import evaluate
from .model_files import save_shared
from .run import Run, TrainConfig
from .runfolder import RunLayout, publish

if TYPE_CHECKING:
    from .paths import FitData

#: Columns of the validation rows that the report's subgroups use where present.
SUBGROUP_COLUMNS: tuple[str, ...] = ("sex", "age", "site", "diagnosis", "width", "height")


@dataclass
class Finished:
    """What finishing adds to a run: its config entries (calibrator, threshold, rule, fallback, notes), validation
    metrics, the validation report and the validation predictions (calibrated and raw)."""

    config: dict[str, Any]
    metrics: dict[str, Any]
    report: dict[str, Any] | None
    val_pred: pd.DataFrame


def _calibrate(y: np.ndarray, raw: np.ndarray, groups: np.ndarray, seed: int) -> tuple[Calibrator, str | None]:
    try:
        return fit_calibrator(y, raw, groups, seed=seed), None
    except MetricError as exc:  # e.g. no malignant image in the validation split
        print(f"warning: probabilities are not calibrated — {exc}", flush=True)
        return Calibrator(), f"not calibrated: {exc}"


def _threshold(y: np.ndarray, p: np.ndarray, min_sensitivity: float, scale: str) -> tuple[float, str, str | None]:
    """``(threshold, rule, fallback)``: the highest threshold reaching ``min_sensitivity`` on validation, else 0.5."""
    try:
        rule = f"highest threshold with validation sensitivity >= {min_sensitivity} ({scale})"
        return choose_threshold(y, p, min_sensitivity), rule, None
    except MetricError as exc:
        print(f"warning: decision threshold set to 0.5 — {exc}", flush=True)
        return 0.5, f"fallback 0.5: no validation threshold could be chosen ({exc})", str(exc)


def finish(val: pd.DataFrame, raw: np.ndarray, min_sensitivity: float, seed: int, n_boot: int,
           scale: str = "calibrated probabilities") -> Finished:
    """Finish a model from its raw outputs ``raw`` on the validation rows ``val`` (``image_name, patient_id,
    target`` and any :data:`SUBGROUP_COLUMNS`): calibrator, threshold with its fallback, metrics and report
    (``n_boot`` patient-bootstrap resamples; too few of either class is a note, not an error)."""
    y, groups = val["target"].to_numpy(int), val["patient_id"].to_numpy()
    calibrator, note = _calibrate(y, np.asarray(raw, float), groups, seed)
    p = calibrator.transform(raw)
    threshold, rule, fallback = _threshold(y, p, min_sensitivity, scale)
    config: dict[str, Any] = {"threshold": threshold, "threshold_rule": rule, "threshold_fallback": fallback,
                              "calibration": calibrator.to_dict() if note is None else None,  # "none" chosen: kept
                              "calibration_note": note, "validation_n_boot": int(n_boot)}
    val_pred = pd.DataFrame({"image_name": val["image_name"].to_numpy(), "patient_id": groups, "target": y,
                             "probability": p, "raw_probability": np.asarray(raw, float)})
    n_pos = int(y.sum())
    report = None
    try:
        if min(n_pos, len(y) - n_pos) < MIN_PER_CLASS:  # the rule every report applies
            raise MetricError(f"too few for an AUC or a confidence interval: the validation split holds {n_pos} "
                              f"malignant and {len(y) - n_pos} benign images (need >= {MIN_PER_CLASS} of each)")
        metrics = evaluate(y, p, groups, {"0.5": 0.5, "validation": threshold}, n_boot=n_boot, seed=seed)
        extra = val[[c for c in SUBGROUP_COLUMNS if c in val]].reset_index(drop=True)
        report = validation_report(val_pred.join(extra), threshold=threshold, n_boot=n_boot, seed=seed)
    except MetricError as exc:
        metrics = {"error": str(exc)}
        config["validation_note"] = str(exc)
    return Finished(config, metrics, report, val_pred)


def write_finished(folder: str | Path, config: dict[str, Any], done: Finished,
                   title: str = "Melanoma classifier") -> dict[str, Any]:
    """Write ``config.json``, ``metrics.json``, ``val_predictions.csv`` and ``MODEL_CARD.md`` of a finished run into
    ``folder`` (a staging folder; each file written under a temporary name); returns the metrics written."""
    layout = RunLayout(folder)
    metrics = {"validation": done.metrics, **({"validation_report": json_safe(done.report)} if done.report else {})}
    write_json(layout.config, config)
    write_json(layout.metrics, metrics)
    write_csv(done.val_pred, layout.val_predictions)
    write_text(layout.model_card, model_card(config, done.report, title=title))
    return metrics


@dataclass(frozen=True)
class FitFacts:
    """What a fit reports into its run's ``config.json``: epochs and seconds (``seconds_before``: spent before a
    resume), the training stages, the precision policy, the device distribution, unreadable images skipped, the
    source weighting applied, and ``shared_store``: where a frozen backbone is stored by reference
    (:mod:`melanoma_utils.runs.model_files`; ``None``: the run folder holds the whole model)."""

    epochs_run: int
    seconds: float
    seconds_before: float
    stages: dict[str, Any]
    policy: str
    distribution: dict[str, Any]
    dropped: dict[str, str] = field(default_factory=dict)
    source_weighting: dict[str, Any] = field(default_factory=dict)
    shared_store: Path | None = None


def write_run(model: Any, data: FitData, cfg: TrainConfig, out_dir: Path, facts: FitFacts) -> Run:
    """Finish a fitted model into a run folder: ``data`` is what it was fitted on (its ``out_dir`` the staging
    folder), ``facts`` what the fit reports. The calibrator and the threshold come from the validation split only;
    files go to the staging folder and move to ``out_dir`` together."""
    import keras

    from ..versions import package_versions

    encoder, preprocess, train, val, work = data.encoder, data.preprocess, data.train, data.val, data.out_dir
    epochs_run, seconds = facts.epochs_run, facts.seconds
    run = Run(model, encoder, {"train": asdict(cfg), "preprocess": preprocess, "threshold": 0.5}, out_dir)
    raw_val = run.predict(val, cached_embeddings=True)
    done = finish(val, raw_val, cfg.runtime.min_sensitivity, cfg.fit.seed, cfg.runtime.n_boot)
    from ..pipeline.augment import AugmentConfig

    config = {
        "train": asdict(cfg),
        "preprocess": preprocess,
        "augment": AugmentConfig(**cfg.data.augment_config).to_dict() if cfg.data.augment else None,
        **done.config,
        "training_prevalence": float(train["target"].mean()),
        "training_sources": source_counts(train),
        "validation_sources": source_counts(val),
        "feature_names": encoder.feature_names,
        "class_weights": data.class_weights,
        "source_weighting": facts.source_weighting,
        "n_train": len(train), "n_val": len(val), "n_train_positive": int(train["target"].sum()),
        "skipped_unreadable": facts.dropped,
        "epochs_run": epochs_run, "train_seconds": seconds, "resumed_after_seconds": facts.seconds_before or None,
        "train_images_per_second": epochs_run * len(train) / seconds if seconds else None,
        "stages": facts.stages,
        "precision_policy": facts.policy,
        "distribution": facts.distribution,
        "keras_backend": keras.backend.backend(),
        "versions": package_versions()["version"].to_dict(),
    }
    run.config = config
    layout = RunLayout(work)
    store = facts.shared_store
    if store is not None and cfg.backbone_unchanged:
        package = cfg.backbone if cfg.backbone_weights == "imagenet" else None  # save_shared: is it the package's?
        save_shared(model, work, out_dir, store, package)  # a study's fold run: the frozen backbone stored once, referenced
    else:
        atomic_write(layout.model, model.save)
    encoder.save(layout.encoder)
    run.metrics = write_finished(work, config, done)
    shutil.rmtree(layout.backup, ignore_errors=True)
    layout.fingerprint.unlink()
    publish(work, out_dir)
    return run
