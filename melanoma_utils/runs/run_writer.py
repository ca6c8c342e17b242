"""The post-fit steps of a training run (:func:`write_run`): the shared finish step (:mod:`.finish`: calibrator,
threshold, evaluation, report, model card), the model and encoder, all into the staging folder, then published."""

from __future__ import annotations

import shutil
from dataclasses import asdict
from pathlib import Path
from typing import Any

import pandas as pd

from ..atomic import atomic_write
from ..data.sources import source_counts
from ..models.features import MetadataEncoder
from .finish import finish, write_finished
from .layout import RunLayout
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
    done = finish(val, raw_val, cfg.min_sensitivity, cfg.seed, cfg.n_boot)
    from ..pipeline.augment import AugmentConfig

    config = {
        "train": asdict(cfg),
        "preprocess": preprocess,
        "augment": AugmentConfig(**cfg.augment_config).to_dict() if cfg.augment else None,
        **done.config,
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
    layout = RunLayout(work)
    atomic_write(layout.model, model.save)
    encoder.save(layout.encoder)
    run.metrics = write_finished(work, config, done)
    shutil.rmtree(work / "backup", ignore_errors=True)
    (work / "fingerprint.json").unlink()
    publish(work, out_dir)
    return run
