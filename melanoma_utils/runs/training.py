"""Training a run: the split, external rows, source weighting, class weights and precision around one training path
(:mod:`melanoma_utils.runs.paths`: head on cached embeddings, blocks adapted on activations, fine-tuned end to end,
or the whole model on images), then the finished run folder (:func:`train_run`, :mod:`melanoma_utils.runs.finish`).
Compiling a model for ``fit`` and the devices it runs on: :mod:`melanoma_utils.runs.compiling`, whose device names
this module re-exports.

The study's configuration is the default (:class:`~melanoma_utils.runs.run.TrainConfig`): class-weighted binary
cross-entropy with ``w_i = 1/n_i`` (normalised so the loss keeps its scale), Adam 1e-4, batch 32, early
stopping on validation loss with the best weights restored.
"""
from __future__ import annotations

import os
import shutil
import time
from pathlib import Path

import pandas as pd

from ..data.imagefiles import drop_unreadable
from ..data.splits import assert_disjoint_patients, holdout_split
from ..models.features import MetadataEncoder
from ..pipeline.transforms import preprocess_config
from .compiling import (  # noqa: F401  (re-exported: device set-up lives there)
    HEADS,
    Distribution,
    _local_copy,
    compile_model,
    make_distribution,
    patch_keras_for_multiworker,
    scaled_for,
)
from .finish import FitFacts, write_run
from .paths import FitData, path_for
from .run import Run, TrainConfig
from .runfolder import RunLayout, fingerprint, prepare_staging, run_lock, staging_path
from .source_weights import apply_source_weighting, class_weights


def _set_precision(mode: str) -> str:
    import keras

    on = mode == "on"
    if mode == "auto":
        if keras.backend.backend() == "jax":
            import jax

            on = jax.default_backend() == "gpu"
        elif keras.backend.backend() == "tensorflow":
            import tensorflow as tf

            on = bool(tf.config.list_physical_devices("GPU"))
    policy = ("mixed_float16" if keras.backend.backend() == "tensorflow" else "mixed_bfloat16") if on else "float32"
    keras.mixed_precision.set_global_policy(policy)
    return policy


def train_run(
    df: pd.DataFrame,
    cfg: TrainConfig,
    out_dir: str | os.PathLike[str],
    val_df: pd.DataFrame | None = None,
    overwrite: bool = False,
    restart: bool = False,
    external: pd.DataFrame | None = None,
    shared_store: str | os.PathLike[str] | None = None,
) -> Run:
    """Train on ``df`` (a patient-grouped validation split is held out unless ``val_df`` is given) and
    write a self-contained run folder to ``out_dir``.

    ``external`` (rows of other data sets, :func:`melanoma_utils.data.sources.load_external`) joins the *training* part
    only: early stopping, the calibrator, the threshold and every validation metric stay on ``df``'s patients, the
    population the model is for, so probabilities are calibrated at its prevalence. ``config.json`` and the model
    card record the rows per source.

    One training per folder (a lock beside it); the run is written into a staging folder and moved into place
    when finished, so ``out_dir`` holds a complete run or none, and a finished run is replaced only with
    ``overwrite`` and only once the new one is complete. An interrupted run with the same configuration and
    data resumes; with another, an error names the differences unless ``restart`` discards it.

    ``shared_store`` (a study's fold runs): a frozen pretrained backbone is stored there once, by content, and the
    run folder references it (:mod:`melanoma_utils.runs.model_files`) instead of holding a copy; such a folder is
    not self-contained. ``None`` (``train``): the whole model in ``model.keras``.
    """
    out_dir = Path(out_dir)
    dist = make_distribution(cfg.runtime.strategy)
    if not dist.chief:  # multi-worker: every worker trains in step; only the chief writes the run folder
        import tempfile

        scratch = Path(tempfile.mkdtemp(prefix="melanoma-worker-"))
        try:  # the worker's copy of the run (its collective steps need the same code path) is thrown away
            with run_lock(scratch / "run"):
                run = _train_locked(df, cfg, scratch / "run", val_df, restart, dist, external)
        finally:
            shutil.rmtree(scratch, ignore_errors=True)
        run.run_dir = None
        return run
    if out_dir.exists() and not out_dir.is_dir():
        raise FileExistsError(f"{out_dir} is a file; --out names the run folder to write")
    with run_lock(out_dir):
        if RunLayout(out_dir).has_model and not overwrite:
            raise FileExistsError(f"{out_dir} already holds a trained model; choose another --out or pass overwrite")
        if out_dir.exists() and not RunLayout(out_dir).has_model and any(out_dir.iterdir()):
            raise FileExistsError(f"{out_dir} exists, is not empty and is not a run folder; choose another --out")
        return _train_locked(df, cfg, out_dir, val_df, restart, dist, external, shared_store)


def _with_external(train: pd.DataFrame, val: pd.DataFrame, external: pd.DataFrame | None,
                   cfg: TrainConfig) -> pd.DataFrame:
    """The training part plus the external rows (never in validation); errors for what cannot be combined."""
    if external is None or not len(external):
        return train
    if MetadataEncoder(cfg.data.features).uses_context:
        raise ValueError(f"feature set {cfg.data.features!r} uses patient context (a patient's other images), but external "
                         "data sets have lesion ids, not patient ids; use the clinical or paper features with external data")
    shared = set(external["image_name"]) & (set(train["image_name"]) | set(val["image_name"]))
    if shared:
        raise ValueError(f"{len(shared)} external image(s) are also in the training data, e.g. {sorted(shared)[:3]}")
    assert_disjoint_patients(external, val)
    return pd.concat([train, external], ignore_index=True)


def _train_locked(df: pd.DataFrame, cfg: TrainConfig, out_dir: Path, val_df: pd.DataFrame | None, restart: bool,
                  dist: Distribution, external: pd.DataFrame | None = None,
                  shared_store: str | os.PathLike[str] | None = None) -> Run:
    import keras


    keras.utils.set_random_seed(cfg.fit.seed)
    policy = _set_precision(cfg.runtime.mixed_precision)

    if val_df is None:
        tr_idx, va_idx = holdout_split(df, cfg.data.val_fraction, seed=cfg.fit.seed)
        train, val = df.iloc[tr_idx].reset_index(drop=True), df.iloc[va_idx].reset_index(drop=True)
    else:
        train, val = df.reset_index(drop=True), val_df.reset_index(drop=True)
    train = _with_external(train, val, external, cfg)
    assert_disjoint_patients(train, val)
    dropped: dict[str, str] = {}
    if cfg.uses_images:
        train, bad_tr = drop_unreadable(train)
        val, bad_va = drop_unreadable(val)
        dropped = {**bad_tr, **bad_va}
        if dropped:
            print(f"skipping {len(dropped)} unreadable image(s): " + ", ".join(f"{k} ({v})" for k, v in list(dropped.items())[:5]))

    train, val, source_facts = apply_source_weighting(train, val, cfg, external=external is not None and len(external) > 0)
    if source_facts.get("rows_left_out"):
        print(f"source weighting ({source_facts['weighting']} over {source_facts['column']}): "
              f"{source_facts['rows_left_out']:,} training row(s) of one-class groups left out", flush=True)
    work = staging_path(out_dir)
    if prepare_staging(work, fingerprint(cfg, train, val), restart):
        print(f"resuming the interrupted run staged in {work}", flush=True)
    preprocess = preprocess_config(cfg.data.preprocess)
    if MetadataEncoder(cfg.data.features).uses_context:  # patient context from each split's own images
        from ..models.context import add_context

        train = add_context(train, cfg.data.image_size, preprocess)
        val = add_context(val, cfg.data.image_size, preprocess)
    encoder = MetadataEncoder(cfg.data.features).fit(train)
    per_class = (class_weights(train["target"].to_numpy(), train.get("sample_weight")) if cfg.fit.class_weighting
                 else {0: 1.0, 1: 1.0})
    user_cfg = cfg
    cfg = scaled_for(cfg, dist.replicas)
    scope = dist.scope()
    start = time.perf_counter()
    path = path_for(cfg)
    data = FitData(train, val, encoder, per_class, preprocess, work, scope)
    with dist:
        fitted = path.fit(data, cfg)
    model, epochs_run, stages, seconds_before = fitted.model, fitted.epochs, fitted.stages, fitted.seconds_before
    stages["path"] = path.name
    seconds = seconds_before + time.perf_counter() - start
    cfg = user_cfg
    if cfg.runtime.strategy == "multiworker":
        model = _local_copy(model)  # predictions below are this process's own, not collective steps

    facts = FitFacts(epochs_run, seconds, seconds_before, stages, policy, _distribution_facts(dist, cfg.fit.batch_size),
                     dropped, source_facts, shared_store)
    return write_run(model, data, cfg, out_dir, facts)


def _distribution_facts(dist: Distribution, batch_size: int) -> dict[str, object]:
    """What the run records of its devices: the strategy, replicas, global batch and learning-rate scale."""
    return {"strategy": dist.name, "replicas": dist.replicas, "global_batch_size": batch_size * dist.replicas,
            "learning_rate_scale": dist.replicas}


def load_or_train(df: pd.DataFrame, cfg: TrainConfig, run_dir: Path, external: pd.DataFrame | None = None,
                  shared_store: str | os.PathLike[str] | None = None) -> Run:
    """The finished run in ``run_dir`` if there is one (an interrupted study resumes), else train it (a frozen
    backbone referenced in ``shared_store``, see :func:`train_run`)."""
    if RunLayout(run_dir).has_model:
        return Run.load(run_dir)
    return train_run(df, cfg, run_dir, external=external, shared_store=shared_store)
