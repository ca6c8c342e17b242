"""Fitting: the training loop, compilation, class weights, precision and distribution set-up.

The study's configuration is the default (:class:`~melanoma_utils.runs.TrainConfig`): class-weighted binary
cross-entropy with ``w_i = 1/n_i`` (normalised so the loss keeps its scale), Adam 1e-4, batch 32, early
stopping on validation loss with the best weights restored. With a pretrained backbone (EfficientNet-Lite0's
ImageNet weights by default) the backbone stays frozen: its embeddings are cached and the head is trained on
them, then optionally the backbone's top is fine-tuned. :func:`train_run` writes a run folder
(:mod:`melanoma_utils.runs`).
"""

from __future__ import annotations

import contextlib
import os
import shutil
import time
from dataclasses import asdict
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from .atomic import atomic_write, write_json
from .evaluation import MetricError, choose_threshold, evaluate
from .features import MetadataEncoder
from .images import drop_unreadable
from .runs import Run, TrainConfig
from .splits import assert_disjoint_patients, holdout_split
from .transforms import preprocess_config


def class_weights(y: np.ndarray) -> dict[int, float]:
    """``w_i = 1/n_i``, normalised so that ``Σ n_i w_i = N`` (the loss keeps its scale): ``w_i = N / (2 n_i)``."""
    y = np.asarray(y).astype(int)
    n = len(y)
    counts = {c: int((y == c).sum()) for c in (0, 1)}
    if min(counts.values()) == 0:
        raise ValueError(f"class weights need both classes in the training rows; counts {counts}")
    return {c: n / (2 * counts[c]) for c in (0, 1)}


def _distribution():
    """MirroredStrategy over several GPUs, the default strategy otherwise (TensorFlow backend only)."""
    import keras

    if keras.backend.backend() != "tensorflow":
        return None
    import tensorflow as tf

    gpus = tf.config.list_physical_devices("GPU")
    return tf.distribute.MirroredStrategy() if len(gpus) > 1 else tf.distribute.get_strategy()


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
              weights: dict[int, float], preprocess: dict[str, Any]) -> tuple[Any, Any]:
    """The training and validation feeds of a run (tf.data or a NumPy feed, by backend)."""
    from .pipeline import make_feed

    keys = tuple(k for k, used in (("image", cfg.uses_images), ("meta", cfg.uses_meta)) if used)
    augmenter = None
    if cfg.uses_images and cfg.augment:
        from .augment import build_augmenter

        augmenter = build_augmenter(cfg.image_size, seed=cfg.seed, **cfg.augment_config)
    feeds = []
    for part, training in ((train, True), (val, False)):
        y = part["target"].to_numpy()
        w = np.array([weights[int(t)] for t in y], np.float32)
        feeds.append(make_feed(list(part["image_path"]), encoder.transform(part), y, w, keys=keys,
                               image_size=cfg.image_size, preprocess=preprocess, batch_size=cfg.batch_size,
                               training=training, augmenter=augmenter if training else None, seed=cfg.seed,
                               cache=cfg.cache))
    return feeds[0], feeds[1]


def _compile(model: Any, learning_rate: float) -> None:
    import keras

    model.compile(
        optimizer=keras.optimizers.Adam(learning_rate),
        loss=keras.losses.BinaryCrossentropy(),
        metrics=[keras.metrics.AUC(name="auc"), keras.metrics.AUC(curve="PR", name="pr_auc")],
        weighted_metrics=[],
    )


def _train_end_to_end(cfg: TrainConfig, train: pd.DataFrame, val: pd.DataFrame, encoder: MetadataEncoder,
                      weights: dict[int, float], preprocess: dict[str, Any], out_dir: Path, scope: Any) -> tuple[Any, int]:
    """Train the whole model on decoded images (optionally frozen backbone for ``freeze_epochs`` first)."""
    import keras

    from .models import backbone_layer, bias_for, build_model

    ds_tr, ds_va = _datasets(cfg, train, val, encoder, weights, preprocess)
    with scope:
        model = build_model(
            cfg.image_size if cfg.uses_images else None,
            encoder.n_features if cfg.uses_meta else None,
            kind=cfg.model,  # type: ignore[arg-type]
            conv_filters=cfg.conv_filters, conv_dropout=cfg.conv_dropout, meta_units=cfg.meta_units,
            head_units=cfg.head_units, head_dropout=cfg.head_dropout,
            initial_bias=bias_for(float(train["target"].mean())), backbone=cfg.backbone, weights=cfg.weights,
        )
        base = backbone_layer(model)
        frozen = base is not None and cfg.weights not in (None, "none") and cfg.freeze_epochs > 0
        if frozen:
            base.trainable = False
        _compile(model, cfg.learning_rate)

    callbacks = [
        keras.callbacks.EarlyStopping(monitor="val_loss", patience=cfg.patience, restore_best_weights=True),
        keras.callbacks.CSVLogger(str(out_dir / "history.csv"), append=True),
        keras.callbacks.BackupAndRestore(str(out_dir / "backup")),
    ]
    epochs_done = 0
    if frozen:
        h = model.fit(ds_tr, validation_data=ds_va, epochs=cfg.freeze_epochs, verbose=cfg.verbose, shuffle=False,
                      callbacks=callbacks[1:2])
        epochs_done = len(h.history["loss"])
        base.trainable = True
        _compile(model, cfg.finetune_learning_rate)
    hist = model.fit(ds_tr, validation_data=ds_va, epochs=cfg.epochs, initial_epoch=epochs_done, shuffle=False,
                     verbose=cfg.verbose, callbacks=callbacks)
    return model, epochs_done + len(hist.history.get("loss", []))


#: Layers of EfficientNet-Lite0 that ``finetune="top"`` trains: the last stage (blocks 11-15) and the head conv.
_TOP_PREFIXES: tuple[str, ...] = tuple(f"block{i}_" for i in range(11, 16)) + ("head_",)


def set_finetune_trainable(base: Any, mode: str) -> int:
    """Make the backbone's layers trainable for fine-tuning (``top``: its last stage and head; ``all``);
    BatchNorm layers stay frozen (inference statistics, the usual practice with small batches).
    Returns the number of trainable weights."""
    base.trainable = True
    for layer in base.layers:
        is_bn = "BatchNormalization" in type(layer).__name__
        in_scope = mode == "all" or layer.name.startswith(_TOP_PREFIXES)
        layer.trainable = in_scope and not is_bn
    return len(base.trainable_weights)


def _train_on_embeddings(cfg: TrainConfig, train: pd.DataFrame, val: pd.DataFrame, encoder: MetadataEncoder,
                         weights: dict[int, float], preprocess: dict[str, Any], out_dir: Path) -> tuple[Any, int, dict[str, Any]]:
    """Frozen pretrained backbone: cache each image's embeddings (``embedding_views`` dihedral views), train the
    head on them, move the head into the full two-input model, then optionally fine-tune the backbone's top."""
    import keras

    from .embeddings import cached_embeddings
    from .models import backbone_layer, bias_for, build_head_model, build_model, copy_head_weights
    from .pipeline import make_embedding_sequence

    bias = bias_for(float(train["target"].mean()))
    model = build_model(cfg.image_size, encoder.n_features if cfg.uses_meta else None, kind=cfg.model,  # type: ignore[arg-type]
                        meta_units=cfg.meta_units, head_units=cfg.head_units, head_dropout=cfg.head_dropout,
                        initial_bias=bias, backbone=cfg.backbone, weights=cfg.weights)
    base = backbone_layer(model)
    t0 = time.perf_counter()
    kw = dict(backbone=cfg.backbone, weights=cfg.weights, image_size=cfg.image_size, preprocess=preprocess,
              views=cfg.embedding_views, progress=cfg.verbose > 0)
    emb_tr, n_tr = cached_embeddings(base, list(train["image_path"]), **kw)
    emb_va, n_va = cached_embeddings(base, list(val["image_path"]), **kw)
    t_embed = time.perf_counter() - t0

    xm_tr = encoder.transform(train) if cfg.uses_meta else None
    xm_va = encoder.transform(val) if cfg.uses_meta else None
    y_tr, y_va = train["target"].to_numpy(np.float32), val["target"].to_numpy(np.float32)
    w_tr = np.array([weights[int(t)] for t in y_tr], np.float32)
    w_va = np.array([weights[int(t)] for t in y_va], np.float32)
    head = build_head_model(emb_tr.shape[-1], encoder.n_features if cfg.uses_meta else None, kind=cfg.model,  # type: ignore[arg-type]
                            meta_units=cfg.meta_units, head_units=cfg.head_units, head_dropout=cfg.head_dropout,
                            initial_bias=bias)
    _compile(head, cfg.head_learning_rate)
    x_va: dict[str, np.ndarray] = {"embedding": emb_va[:, 0]}
    if xm_va is not None:
        x_va["meta"] = xm_va
    seq = make_embedding_sequence(emb_tr, xm_tr, y_tr, w_tr, cfg.batch_size, seed=cfg.seed)
    t1 = time.perf_counter()
    hist = head.fit(seq, validation_data=(x_va, y_va, w_va), epochs=cfg.epochs, verbose=cfg.verbose,
                    callbacks=[keras.callbacks.EarlyStopping(monitor="val_loss", patience=cfg.patience, restore_best_weights=True),
                               keras.callbacks.CSVLogger(str(out_dir / "history.csv"))])
    head_epochs = len(hist.history["loss"])
    copy_head_weights(head, model)
    stages: dict[str, Any] = {
        "embeddings": {"seconds": t_embed, "views": cfg.embedding_views, "computed": n_tr["computed"] + n_va["computed"],
                       "cached": n_tr["cached"] + n_va["cached"]},
        "head": {"seconds": time.perf_counter() - t1, "epochs": head_epochs, "learning_rate": cfg.head_learning_rate},
    }
    epochs = head_epochs
    base.trainable = False
    if cfg.finetune != "none":
        n_trainable = set_finetune_trainable(base, cfg.finetune)
        _compile(model, cfg.finetune_learning_rate)
        ds_tr, ds_va = _datasets(cfg, train, val, encoder, weights, preprocess)
        t2 = time.perf_counter()
        ft = model.fit(ds_tr, validation_data=ds_va, epochs=head_epochs + cfg.finetune_epochs, initial_epoch=head_epochs,
                       shuffle=False, verbose=cfg.verbose,
                       callbacks=[keras.callbacks.EarlyStopping(monitor="val_loss", patience=cfg.patience, restore_best_weights=True),
                                  keras.callbacks.CSVLogger(str(out_dir / "history.csv"), append=True)])
        ft_epochs = len(ft.history.get("loss", []))
        epochs += ft_epochs
        stages["finetune"] = {"mode": cfg.finetune, "seconds": time.perf_counter() - t2, "epochs": ft_epochs,
                              "learning_rate": cfg.finetune_learning_rate, "trainable_backbone_weights": n_trainable}
        base.trainable = False  # the saved model's backbone is frozen again (a later fit must opt in)
    return model, epochs, stages


def train_run(
    df: pd.DataFrame,
    cfg: TrainConfig,
    out_dir: str | os.PathLike[str],
    val_df: pd.DataFrame | None = None,
    overwrite: bool = False,
) -> Run:
    """Train on ``df`` (a patient-grouped validation split is held out unless ``val_df`` is given) and
    write a self-contained run folder to ``out_dir``. An unfinished run in ``out_dir`` resumes; a finished
    one is never overwritten unless ``overwrite``."""
    import keras

    from .versions import package_versions

    out_dir = Path(out_dir)
    if (out_dir / "model.keras").exists() and not overwrite:
        raise FileExistsError(f"{out_dir} already holds a trained model; choose another --out or pass overwrite")
    out_dir.mkdir(parents=True, exist_ok=True)
    keras.utils.set_random_seed(cfg.seed)
    policy = _set_precision(cfg.mixed_precision)

    if val_df is None:
        tr_idx, va_idx = holdout_split(df, cfg.val_fraction, seed=cfg.seed)
        train, val = df.iloc[tr_idx].reset_index(drop=True), df.iloc[va_idx].reset_index(drop=True)
    else:
        train, val = df.reset_index(drop=True), val_df.reset_index(drop=True)
    assert_disjoint_patients(train, val)
    dropped: dict[str, str] = {}
    if cfg.uses_images:
        train, bad_tr = drop_unreadable(train)
        val, bad_va = drop_unreadable(val)
        dropped = {**bad_tr, **bad_va}
        if dropped:
            print(f"skipping {len(dropped)} unreadable image(s): " + ", ".join(f"{k} ({v})" for k, v in list(dropped.items())[:5]))

    encoder = MetadataEncoder(cfg.features).fit(train)
    weights = class_weights(train["target"].to_numpy()) if cfg.class_weighting else {0: 1.0, 1: 1.0}
    preprocess = preprocess_config(cfg.preprocess)
    strategy = _distribution()
    scope = strategy.scope() if strategy is not None else contextlib.nullcontext()
    start = time.perf_counter()
    stages: dict[str, Any] = {}
    if cfg.uses_cached_embeddings:
        with scope:
            model, epochs_run, stages = _train_on_embeddings(cfg, train, val, encoder, weights, preprocess, out_dir)
    else:
        model, epochs_run = _train_end_to_end(cfg, train, val, encoder, weights, preprocess, out_dir, scope)
    seconds = time.perf_counter() - start

    run = Run(model, encoder, {"train": asdict(cfg), "preprocess": preprocess, "threshold": 0.5}, out_dir)
    p_val = run.predict(val)
    rule = f"highest threshold with validation sensitivity >= {cfg.min_sensitivity}"
    fallback = None
    try:
        threshold = choose_threshold(val["target"], p_val, cfg.min_sensitivity)
    except MetricError as exc:  # e.g. no malignant image in the validation split
        threshold, fallback = 0.5, str(exc)
        rule = f"fallback 0.5: no validation threshold could be chosen ({exc})"
        print(f"warning: decision threshold set to 0.5 — {exc}", flush=True)
    from .augment import AugmentConfig

    config = {
        "train": asdict(cfg),
        "preprocess": preprocess,
        "augment": AugmentConfig(**cfg.augment_config).to_dict() if cfg.augment else None,
        "threshold": threshold,
        "threshold_rule": rule,
        "threshold_fallback": fallback,
        "feature_names": encoder.feature_names,
        "class_weights": weights,
        "n_train": len(train), "n_val": len(val), "n_train_positive": int(train["target"].sum()),
        "skipped_unreadable": dropped,
        "epochs_run": epochs_run, "train_seconds": seconds,
        "train_images_per_second": epochs_run * len(train) / seconds if seconds else None,
        "stages": stages,
        "precision_policy": policy,
        "keras_backend": keras.backend.backend(),
        "versions": package_versions()["version"].to_dict(),
    }
    run.config = config
    metrics: dict[str, Any] = {}
    try:
        metrics = evaluate(val["target"], p_val, val["patient_id"], {"0.5": 0.5, "validation": threshold}, n_boot=200,
                           seed=cfg.seed)
    except MetricError as exc:
        metrics = {"error": str(exc)}
    atomic_write(out_dir / "model.keras", model.save)
    encoder.save(out_dir / "encoder.json")
    write_json(out_dir / "config.json", config)
    write_json(out_dir / "metrics.json", {"validation": metrics})
    pd.DataFrame({"image_name": val["image_name"], "patient_id": val["patient_id"], "target": val["target"],
                  "probability": p_val}).to_csv(out_dir / "val_predictions.csv", index=False)
    shutil.rmtree(out_dir / "backup", ignore_errors=True)
    return run


