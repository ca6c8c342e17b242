"""The post-fit steps of a training run, in one place: calibrate on the validation split, choose the threshold there,
evaluate, write every file of the run folder into the staging folder, and publish it (:func:`write_run`)."""

from __future__ import annotations

import shutil
from dataclasses import asdict
from pathlib import Path
from typing import Any

import pandas as pd

from ..atomic import atomic_write, json_safe, write_json, write_text
from ..data.sources import source_counts
from ..evaluation.calibration import Calibrator, fit_calibrator
from ..evaluation.clinical import MIN_PER_CLASS, validation_report
from ..evaluation.metrics import MetricError, choose_threshold, evaluate
from ..evaluation.modelcard import model_card
from ..models.features import MetadataEncoder
from .run import Run, TrainConfig
from .runfolder import publish


def write_run(model: Any, encoder: MetadataEncoder, cfg: TrainConfig, preprocess: dict[str, Any], train: pd.DataFrame,
              val: pd.DataFrame, work: Path, out_dir: Path, facts: dict[str, Any]) -> Run:
    """Finish a fitted model into a run folder. ``facts``: what the fit reports (``per_class``, ``dropped``,
    ``epochs_run``, ``seconds``, ``seconds_before``, ``stages``, ``policy``, ``distribution``). The calibrator and the
    threshold come from the validation split only; files go to ``work`` and move to ``out_dir`` together."""
    import keras

    from ..versions import package_versions

    epochs_run, seconds = facts["epochs_run"], facts["seconds"]
    run = Run(model, encoder, {"train": asdict(cfg), "preprocess": preprocess, "threshold": 0.5}, out_dir)
    raw_val = run.predict(val, cached_embeddings=True)
    calibrator, calibration_note = Calibrator(), None
    try:
        calibrator = fit_calibrator(val["target"], raw_val, val["patient_id"], seed=cfg.seed)
    except MetricError as exc:  # e.g. no malignant image in the validation split
        calibration_note = f"not calibrated: {exc}"
        print(f"warning: probabilities are not calibrated — {exc}", flush=True)
    p_val = calibrator.transform(raw_val)
    rule = f"highest threshold with validation sensitivity >= {cfg.min_sensitivity} (calibrated probabilities)"
    fallback = None
    try:
        threshold = choose_threshold(val["target"], p_val, cfg.min_sensitivity)
    except MetricError as exc:  # e.g. no malignant image in the validation split
        threshold, fallback = 0.5, str(exc)
        rule = f"fallback 0.5: no validation threshold could be chosen ({exc})"
        print(f"warning: decision threshold set to 0.5 — {exc}", flush=True)
    from ..pipeline.augment import AugmentConfig

    config = {
        "train": asdict(cfg),
        "preprocess": preprocess,
        "augment": AugmentConfig(**cfg.augment_config).to_dict() if cfg.augment else None,
        "threshold": threshold,
        "threshold_rule": rule,
        "threshold_fallback": fallback,
        "calibration": calibrator.to_dict() if calibrator.method != "identity" else None,
        "calibration_note": calibration_note,
        "training_prevalence": float(train["target"].mean()),
        "training_sources": source_counts(train),
        "validation_sources": source_counts(val),
        "feature_names": encoder.feature_names,
        "class_weights": facts["per_class"],
        "source_weighting": facts.get("source_weighting"),
        "n_train": len(train), "n_val": len(val), "n_train_positive": int(train["target"].sum()),
        "skipped_unreadable": facts["dropped"],
        "epochs_run": epochs_run, "train_seconds": seconds, "resumed_after_seconds": facts["seconds_before"] or None,
        "train_images_per_second": epochs_run * len(train) / seconds if seconds else None,
        "stages": facts["stages"],
        "precision_policy": facts["policy"],
        "distribution": facts["distribution"],
        "keras_backend": keras.backend.backend(),
        "versions": package_versions()["version"].to_dict(),
    }
    run.config = config
    metrics: dict[str, Any] = {}
    report: dict[str, Any] | None = None
    val_pred = pd.DataFrame({"image_name": val["image_name"], "patient_id": val["patient_id"], "target": val["target"],
                             "probability": p_val, "raw_probability": raw_val})
    n_pos = int(val["target"].sum())
    try:
        if min(n_pos, len(val) - n_pos) < MIN_PER_CLASS:  # the rule every report applies
            raise MetricError(f"too few for an AUC or a confidence interval: the validation split holds {n_pos} "
                              f"malignant and {len(val) - n_pos} benign images (need >= {MIN_PER_CLASS} of each)")
        metrics = evaluate(val["target"], p_val, val["patient_id"], {"0.5": 0.5, "validation": threshold}, n_boot=200,
                           seed=cfg.seed)
        report = validation_report(val_pred.join(val[[c for c in ("sex", "age", "site", "diagnosis", "width", "height") if c in val]]),
                                   threshold=threshold, n_boot=200, seed=cfg.seed)
    except MetricError as exc:
        metrics = {"error": str(exc)}
        config["validation_note"] = str(exc)
    atomic_write(work / "model.keras", model.save)
    encoder.save(work / "encoder.json")
    write_json(work / "config.json", config)
    run.metrics = {"validation": metrics, **({"validation_report": json_safe(report)} if report else {})}
    write_json(work / "metrics.json", run.metrics)
    atomic_write(work / "val_predictions.csv", lambda tmp: val_pred.to_csv(tmp, index=False))
    write_text(work / "MODEL_CARD.md", model_card(config, report))
    shutil.rmtree(work / "backup", ignore_errors=True)
    (work / "fingerprint.json").unlink()
    publish(work, out_dir)
    return run


