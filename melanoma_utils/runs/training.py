"""Fitting: the training loop, class weights and precision (compiling a model for ``fit`` and the devices it runs on:
:mod:`melanoma_utils.runs.compiling`, whose device names this module re-exports).

The study's configuration is the default (:class:`~melanoma_utils.runs.run.TrainConfig`): class-weighted binary
cross-entropy with ``w_i = 1/n_i`` (normalised so the loss keeps its scale), Adam 1e-4, batch 32, early
stopping on validation loss with the best weights restored. With a pretrained backbone (EfficientNet-Lite0's
ImageNet weights by default) the backbone stays frozen: its embeddings are cached and the head is trained on
them, then optionally the backbone's top is fine-tuned. :func:`train_run` writes a run folder
(:mod:`melanoma_utils.runs.run`).
"""

from __future__ import annotations

import os
import shutil
import time
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from ..atomic import atomic_write
from ..data.diagnoses import diagnosis_labels
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
from .finish import write_run
from .resume import EpochSeeds, ResumeState
from .run import Run, TrainConfig
from .runfolder import fingerprint, prepare_staging, run_lock, staging_path
from .source_weights import apply_source_weighting, class_weights, row_weights


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


def _datasets(cfg: TrainConfig, train: pd.DataFrame, val: pd.DataFrame, encoder: MetadataEncoder,
              class_weights: dict[int, float], preprocess: dict[str, Any]) -> tuple[Any, Any, EpochSeeds]:
    """The training and validation feeds of a run (tf.data or a NumPy feed, by backend), and the callback that
    makes each training epoch's order, augmentation and dropout a function of ``(seed, epoch)``."""
    from ..pipeline.feeds import EpochClock, make_feed

    keys = tuple(k for k, used in (("image", cfg.uses_images), ("meta", cfg.uses_meta)) if used)
    augmenter = None
    if cfg.uses_images and cfg.augment:
        from ..pipeline.augment import build_augmenter

        augmenter = build_augmenter(cfg.image_size, seed=cfg.seed, **cfg.augment_config)
    clock = EpochClock()
    feeds = []
    for part, training in ((train, True), (val, False)):
        y = part["target"].to_numpy()
        feeds.append(make_feed(list(part["image_path"]), encoder.transform(part), y, row_weights(part, class_weights), keys=keys,
                               image_size=cfg.image_size, preprocess=preprocess, batch_size=cfg.batch_size,
                               training=training, augmenter=augmenter if training else None, seed=cfg.seed,
                               cache=cfg.cache, drop_remainder=cfg.strategy == "multiworker",
                               clock=clock if training else None))
    return feeds[0], feeds[1], EpochSeeds(cfg.seed, clock, (augmenter,) if augmenter is not None else ())


def _steps(n_rows: int, batch_size: int, epochs: int) -> int:
    return -(-n_rows // batch_size) * epochs


def _train_end_to_end(cfg: TrainConfig, train: pd.DataFrame, val: pd.DataFrame, encoder: MetadataEncoder,
                      class_weights: dict[int, float], preprocess: dict[str, Any], out_dir: Path, scope: Any) -> tuple[Any, int, float]:
    """Train the whole model on decoded images (optionally frozen backbone for ``freeze_epochs`` first),
    resumable after a kill (:class:`~melanoma_utils.runs.resume.ResumeState` in ``out_dir/backup``). Returns the
    model, the epochs run in all and the seconds spent before an interruption."""
    from ..models.fusion import backbone_layer, bias_for, build_model

    ds_tr, ds_va, seeds = _datasets(cfg, train, val, encoder, class_weights, preprocess)
    with scope:
        model = build_model(**cfg.model_kwargs(encoder.n_features, bias_for(float(train["target"].mean()))))
        base = backbone_layer(model)
        frozen = base is not None and cfg.backbone_weights is not None and cfg.freeze_epochs > 0
        if frozen:
            base.trainable = False
        compile_model(model, cfg.learning_rate, _steps(len(train), cfg.batch_size, cfg.epochs), images=cfg.uses_images)

    rows: list[dict[str, float]] = []
    seconds_before = 0.0
    state_dir = out_dir / "backup"
    if frozen:
        first = ResumeState(state_dir / "freeze.npz", patience=10**9, phase="freeze")
        if not (state_dir / "main.npz").is_file():
            _fit_resumable(model, ds_tr, ds_va, first, 0, cfg.freeze_epochs, cfg.verbose, seeds)
        else:  # the main phase has begun: its state sets the weights; this one gives its rows and time
            first.restore(model)
        seconds_before += first.seconds_before
        rows += first.rows
        base.trainable = True
        compile_model(model, cfg.finetune_learning_rate, _steps(len(train), cfg.batch_size, cfg.epochs - len(rows)), images=True)
    main = ResumeState(state_dir / "main.npz", cfg.patience, phase="main")
    _fit_resumable(model, ds_tr, ds_va, main, len(rows), cfg.epochs, cfg.verbose, seeds)
    seconds_before += main.seconds_before
    rows += main.rows
    _write_history(rows, out_dir / "history.csv")
    return model, len(rows), seconds_before


def _fit_resumable(model: Any, ds_tr: Any, ds_va: Any, state: ResumeState, first_epoch: int, end_epoch: int,
                   verbose: int, seeds: EpochSeeds) -> None:
    """Fit epochs ``first_epoch .. end_epoch - 1`` with ``state`` saving after each one; when ``state`` holds an
    interrupted fit of this phase, continue after its last saved epoch (or just restore its best weights when it
    had already stopped). ``seeds`` derives each epoch's random streams from its number, so a resumed fit replays
    the epochs an uninterrupted one would have run."""
    state.path.parent.mkdir(parents=True, exist_ok=True)
    if state.restore(model):
        what = {"main": "", "finetune": "fine-tuning ", "freeze": "the frozen phase "}.get(state.phase, "")
        print(f"resuming {what}after epoch {state.initial_epoch} (state in {state.path.parent})", flush=True)
    start = max(first_epoch, state.initial_epoch)
    if not state.stopped and start < end_epoch:
        model.fit(ds_tr, validation_data=ds_va, epochs=end_epoch, initial_epoch=start, shuffle=False,
                  verbose=verbose, callbacks=[seeds, state])
    elif state.best_weights is not None:
        model.set_weights(state.best_weights)


def _write_history(rows: list[dict[str, float]], path: Path) -> None:
    """history.csv from the per-epoch rows (``epoch`` first), written atomically."""
    frame = pd.DataFrame(rows)
    if not frame.empty:
        frame = frame[["epoch"] + sorted(c for c in frame.columns if c != "epoch")]
    atomic_write(path, lambda tmp: frame.to_csv(tmp, index=False))


def _top_prefixes(base: Any) -> tuple[str, ...]:
    """Layer-name prefixes that ``finetune="top"`` trains in an EfficientNet-Lite backbone: the blocks of its last
    two stages (by output channels; Lite0: blocks 11-15) and the head conv."""
    channels = {int(layer.name[5:].split("_")[0]): int(layer.filters) for layer in base.layers
                if layer.name.startswith("block") and layer.name.endswith("_project_conv")}
    last_two = sorted(set(channels.values()))[-2:]
    return tuple(f"block{i}_" for i, c in sorted(channels.items()) if c in last_two) + ("head_",)


def set_finetune_trainable(base: Any, mode: str) -> int:
    """Make the backbone's layers trainable for fine-tuning (``top``: its last stage and head; ``all``);
    BatchNorm layers stay frozen (inference statistics, the usual practice with small batches).
    Returns the number of trainable weights."""
    base.trainable = True
    top = _top_prefixes(base)
    for layer in base.layers:
        is_bn = "BatchNormalization" in type(layer).__name__
        in_scope = mode == "all" or layer.name.startswith(top)
        layer.trainable = in_scope and not is_bn
    return len(base.trainable_weights)


def _train_on_embeddings(cfg: TrainConfig, train: pd.DataFrame, val: pd.DataFrame, encoder: MetadataEncoder,
                         class_weights: dict[int, float], preprocess: dict[str, Any], out_dir: Path) -> tuple[Any, int, dict[str, Any]]:
    """Frozen pretrained backbone: cache each image's embeddings (``embedding_views`` dihedral views), train the
    head on them, move the head into the full two-input model, then optionally fine-tune the backbone's top."""
    import keras

    from ..models.embeddings import cached_embeddings
    from ..models.fusion import backbone_layer, bias_for, build_head_model, build_model, copy_head_weights, image_encoder
    from ..pipeline.feeds import make_embedding_sequence

    bias = bias_for(float(train["target"].mean()))
    model = build_model(**{**cfg.model_kwargs(encoder.n_features, bias), "image_size": cfg.image_size})
    base = backbone_layer(model)
    t0 = time.perf_counter()
    kw = dict(backbone=cfg.backbone, backbone_weights=cfg.backbone_weights, image_size=cfg.image_size, preprocess=preprocess,
              views=cfg.embedding_views, progress=cfg.verbose > 0, output=cfg.embedding_output)
    encoder_model = image_encoder(model)
    emb_tr, n_tr = cached_embeddings(encoder_model, list(train["image_path"]), **kw)
    emb_va, n_va = cached_embeddings(encoder_model, list(val["image_path"]), **kw)
    t_embed = time.perf_counter() - t0

    xm_tr = encoder.transform(train) if cfg.uses_meta else None
    xm_va = encoder.transform(val) if cfg.uses_meta else None
    # the binary target, or the diagnosis classes of a diagnosis head (its melanoma column is the saved output)
    y_tr, y_va = (diagnosis_labels(part, cfg.objective).astype(np.float32) for part in (train, val))
    w_tr, w_va = row_weights(train, class_weights), row_weights(val, class_weights)
    keras.utils.set_random_seed(cfg.seed)  # the head starts alike whether the embeddings were cached or computed
    fresh = build_head_model(**cfg.head_kwargs(emb_tr.shape[-1], encoder.n_features, bias), logits=cfg.objective != "binary")
    head = HEADS.get(fresh, cfg.head_learning_rate, cfg.objective)
    x_va: dict[str, np.ndarray] = {"embedding": emb_va[:, 0]}
    if xm_va is not None:
        x_va["meta"] = xm_va
    seq = make_embedding_sequence(emb_tr, xm_tr, y_tr, w_tr, cfg.batch_size, seed=cfg.seed)
    t1 = time.perf_counter()
    try:
        hist = head.fit(seq, validation_data=(x_va, y_va, w_va), epochs=cfg.epochs, verbose=cfg.verbose,
                        callbacks=[keras.callbacks.EarlyStopping(monitor="val_loss", patience=cfg.patience, restore_best_weights=True)])
    finally:
        seq.close()  # (TensorFlow keeps the sequence itself for the rest of the process)
    head_epochs = len(hist.history["loss"])
    rows = [{"epoch": e, **{k: float(v[e]) for k, v in hist.history.items()}} for e in range(head_epochs)]
    copy_head_weights(head, model)
    stages: dict[str, Any] = {
        "embeddings": {"seconds": t_embed, "views": cfg.embedding_views, "computed": n_tr["computed"] + n_va["computed"],
                       "cached": n_tr["cached"] + n_va["cached"]},
        "head": {"seconds": time.perf_counter() - t1, "epochs": head_epochs, "learning_rate": cfg.head_learning_rate},
    }
    if cfg.adapt_blocks:  # partial fine-tuning on cached activations (runs/adapt.py)
        from .adapt import adapt_top

        adapt_rows, stages["adapt"] = adapt_top(model, head, cfg, train, val, encoder, (y_tr, y_va), (w_tr, w_va))
        rows += [{**r, "epoch": head_epochs + r["epoch"]} for r in adapt_rows]
    for layer in model.layers:  # the backbone (and a second-resolution copy) stay frozen in the saved model
        if layer.name.startswith("backbone"):
            layer.trainable = False
    if cfg.finetune != "none":
        n_trainable = set_finetune_trainable(base, cfg.finetune)
        compile_model(model, cfg.finetune_learning_rate, _steps(len(train), cfg.batch_size, cfg.finetune_epochs), images=True,
                      schedule=cfg.finetune_schedule, label_smoothing=cfg.label_smoothing)
        ds_tr, ds_va, seeds = _datasets(cfg, train, val, encoder, class_weights, preprocess)
        t2 = time.perf_counter()
        ft = ResumeState(out_dir / "backup" / "finetune.npz", cfg.patience, phase="finetune")
        _fit_resumable(model, ds_tr, ds_va, ft, head_epochs, head_epochs + cfg.finetune_epochs, cfg.verbose, seeds)
        rows += ft.rows
        stages["finetune"] = {"mode": cfg.finetune, "seconds": time.perf_counter() - t2, "epochs": len(ft.rows),
                              "learning_rate": cfg.finetune_learning_rate, "schedule": cfg.finetune_schedule,
                              "label_smoothing": cfg.label_smoothing, "trainable_backbone_weights": n_trainable,
                              # training rows per second of fine-tuning, its validation passes included (a resumed run counts its earlier part)
                              "images_per_second": len(train) * len(ft.rows) / max(ft.seconds_before + time.perf_counter() - t2, 1e-9)}
        base.trainable = False  # the saved model's backbone is frozen again (a later fit must opt in)
    _write_history(rows, out_dir / "history.csv")
    return model, len(rows), stages


def train_run(
    df: pd.DataFrame,
    cfg: TrainConfig,
    out_dir: str | os.PathLike[str],
    val_df: pd.DataFrame | None = None,
    overwrite: bool = False,
    restart: bool = False,
    external: pd.DataFrame | None = None,
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
    """
    out_dir = Path(out_dir)
    dist = make_distribution(cfg.strategy)
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
        if (out_dir / "model.keras").exists() and not overwrite:
            raise FileExistsError(f"{out_dir} already holds a trained model; choose another --out or pass overwrite")
        if out_dir.exists() and not (out_dir / "model.keras").exists() and any(out_dir.iterdir()):
            raise FileExistsError(f"{out_dir} exists, is not empty and is not a run folder; choose another --out")
        return _train_locked(df, cfg, out_dir, val_df, restart, dist, external)


def _with_external(train: pd.DataFrame, val: pd.DataFrame, external: pd.DataFrame | None,
                   cfg: TrainConfig) -> pd.DataFrame:
    """The training part plus the external rows (never in validation); errors for what cannot be combined."""
    if external is None or not len(external):
        return train
    if MetadataEncoder(cfg.features).uses_context:
        raise ValueError(f"feature set {cfg.features!r} uses patient context (a patient's other images), but external "
                         "data sets have lesion ids, not patient ids; use the clinical or paper features with external data")
    shared = set(external["image_name"]) & (set(train["image_name"]) | set(val["image_name"]))
    if shared:
        raise ValueError(f"{len(shared)} external image(s) are also in the training data, e.g. {sorted(shared)[:3]}")
    assert_disjoint_patients(external, val)
    return pd.concat([train, external], ignore_index=True)


def _train_locked(df: pd.DataFrame, cfg: TrainConfig, out_dir: Path, val_df: pd.DataFrame | None, restart: bool,
                  dist: Distribution, external: pd.DataFrame | None = None) -> Run:
    import keras


    keras.utils.set_random_seed(cfg.seed)
    policy = _set_precision(cfg.mixed_precision)

    if val_df is None:
        tr_idx, va_idx = holdout_split(df, cfg.val_fraction, seed=cfg.seed)
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
    preprocess = preprocess_config(cfg.preprocess)
    if MetadataEncoder(cfg.features).uses_context:  # patient context from each split's own images
        from ..models.context import add_context

        train = add_context(train, cfg.image_size, preprocess)
        val = add_context(val, cfg.image_size, preprocess)
    encoder = MetadataEncoder(cfg.features).fit(train)
    per_class = (class_weights(train["target"].to_numpy(), train.get("sample_weight")) if cfg.class_weighting
                 else {0: 1.0, 1: 1.0})
    user_cfg = cfg
    cfg = scaled_for(cfg, dist.replicas)
    scope = dist.scope()
    start = time.perf_counter()
    stages: dict[str, Any] = {}
    seconds_before = 0.0
    with dist:
        if cfg.uses_cached_embeddings:
            with scope:
                model, epochs_run, stages = _train_on_embeddings(cfg, train, val, encoder, per_class, preprocess, work)
        else:
            model, epochs_run, seconds_before = _train_end_to_end(cfg, train, val, encoder, per_class, preprocess, work, scope)
    seconds = seconds_before + time.perf_counter() - start
    cfg = user_cfg
    if cfg.strategy == "multiworker":
        model = _local_copy(model)  # predictions below are this process's own, not collective steps

    facts = {
        "per_class": per_class, "dropped": dropped, "source_weighting": source_facts, "epochs_run": epochs_run, "seconds": seconds,
        "seconds_before": seconds_before, "stages": stages, "policy": policy,
        "distribution": {"strategy": dist.name, "replicas": dist.replicas, "global_batch_size": cfg.batch_size * dist.replicas,
                         "learning_rate_scale": dist.replicas},
    }
    return write_run(model, encoder, cfg, preprocess, train, val, work, out_dir, facts)


def load_or_train(df: pd.DataFrame, cfg: TrainConfig, run_dir: Path, external: pd.DataFrame | None = None) -> Run:
    """The finished run in ``run_dir`` if there is one (an interrupted study resumes), else train it."""
    return Run.load(run_dir) if (run_dir / "model.keras").exists() else train_run(df, cfg, run_dir, external=external)
