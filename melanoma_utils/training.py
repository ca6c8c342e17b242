"""Training, saved run folders, prediction and the patient-grouped cross-validated ablation.

The study's configuration is the default (:class:`TrainConfig`): class-weighted binary cross-entropy with
``w_i = 1/n_i`` (normalised so the loss keeps its scale), Adam 1e-4, batch 32, early stopping on validation
loss with the best weights restored. A run folder is self-contained::

    RUN_DIR/model.keras      the trained model (no augmentation inside)
    RUN_DIR/encoder.json     the metadata encoder, fit on the training rows only
    RUN_DIR/config.json      TrainConfig, preprocessing and augmentation, threshold, feature names, versions
    RUN_DIR/history.csv      per-epoch loss/AUC (train and validation)
    RUN_DIR/metrics.json     validation metrics; RUN_DIR/backup/ lets an interrupted run resume
"""

from __future__ import annotations

import contextlib
import json
import os
import shutil
import time
from dataclasses import asdict, dataclass, field, fields
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from .data import drop_unreadable
from .evaluation import MetricError, choose_threshold, evaluate, pr_auc, roc_auc
from .features import MetadataEncoder, check_feature_set
from .splits import assert_disjoint_patients, grouped_folds, holdout_split
from .transforms import preprocess_config

#: Fine-tuning after the cached-embedding head: which backbone layers become trainable.
FINETUNE_MODES: tuple[str, ...] = ("none", "top", "all")


@dataclass
class TrainConfig:
    """Every training choice, saved with the run. Defaults follow the study."""

    model: str = "fusion"  # fusion | image | meta
    features: str = "clinical"  # clinical | paper | acquisition (metadata feature set)
    image_size: int = 128
    batch_size: int = 32
    epochs: int = 30
    learning_rate: float = 1e-4
    patience: int = 5  # early stopping on validation loss, best weights restored
    class_weighting: bool = True  # w_i = 1/n_i, normalised
    preprocess: str = "none"  # a melanoma_utils.transforms.PREPROCESSORS name
    augment: bool = True
    augment_config: dict[str, Any] = field(default_factory=dict)  # AugmentConfig overrides
    val_fraction: float = 0.2  # patient-grouped validation split (early stopping, threshold)
    min_sensitivity: float = 0.90  # the validation threshold is the highest reaching this
    seed: int = 0
    conv_filters: tuple[int, ...] = (32, 64, 128, 256)
    conv_dropout: float = 0.1
    meta_units: tuple[int, ...] = (64, 32)
    head_units: tuple[int, ...] = (128, 64)
    head_dropout: float = 0.3
    backbone: str | None = None  # a keras.applications name (see models.BACKBONES)
    weights: str | None = None  # None | "imagenet" | a local weights file
    freeze_epochs: int = 0  # end-to-end path (frozen_features off): epochs with the backbone frozen, then fine-tune
    finetune_learning_rate: float = 1e-5
    frozen_features: bool = True  # with pretrained weights: train the head on cached backbone embeddings
    embedding_views: int = 8  # dihedral views (rotations/mirrors) cached per image for the head's training
    head_learning_rate: float = 1e-3  # Adam learning rate of the head trained on cached embeddings
    finetune: str = "none"  # after the cached-embedding head: none | top (last blocks) | all
    finetune_epochs: int = 2
    cache: str | None = "memory"  # "memory", a file prefix, or None
    mixed_precision: str = "auto"  # auto (on GPU only) | on | off
    verbose: int = 2  # Keras fit verbosity: 1 progress bar, 2 one line per epoch

    def __post_init__(self) -> None:
        if self.model not in ("fusion", "image", "meta"):
            raise ValueError(f"model must be fusion, image or meta; got {self.model!r}")
        check_feature_set(self.features)
        preprocess_config(self.preprocess)
        for name in ("image_size", "batch_size", "epochs"):
            if int(getattr(self, name)) <= 0:
                raise ValueError(f"{name} must be positive; got {getattr(self, name)}")
        if self.finetune not in FINETUNE_MODES:
            raise ValueError(f"finetune must be one of {', '.join(FINETUNE_MODES)}; got {self.finetune!r}")
        if not 1 <= int(self.embedding_views) <= 8:
            raise ValueError(f"embedding_views must be in 1..8; got {self.embedding_views}")
        self.conv_filters = tuple(self.conv_filters)
        self.meta_units = tuple(self.meta_units)
        self.head_units = tuple(self.head_units)

    @property
    def uses_images(self) -> bool:
        """Whether the model has an image input."""
        return self.model in ("fusion", "image")

    @property
    def uses_cached_embeddings(self) -> bool:
        """Whether the head is trained on cached embeddings of a frozen pretrained backbone."""
        return self.uses_images and bool(self.backbone) and self.weights not in (None, "none") and self.frozen_features

    @property
    def uses_meta(self) -> bool:
        """Whether the model has a metadata input."""
        return self.model in ("fusion", "meta")

    @classmethod
    def from_dict(cls, d: dict[str, Any]) -> "TrainConfig":
        """Rebuild from :func:`dataclasses.asdict` output (unknown keys ignored)."""
        names = {f.name for f in fields(cls)}
        return cls(**{k: v for k, v in d.items() if k in names})


def class_weights(y: np.ndarray) -> dict[int, float]:
    """``w_i = 1/n_i``, normalised so that ``Σ n_i w_i = N`` (the loss keeps its scale): ``w_i = N / (2 n_i)``."""
    y = np.asarray(y).astype(int)
    n = len(y)
    counts = {c: int((y == c).sum()) for c in (0, 1)}
    if min(counts.values()) == 0:
        raise ValueError(f"class weights need both classes in the training rows; counts {counts}")
    return {c: n / (2 * counts[c]) for c in (0, 1)}


def _json_default(o: Any) -> Any:
    if isinstance(o, (np.integer,)):
        return int(o)
    if isinstance(o, (np.floating,)):
        return float(o)
    if isinstance(o, tuple):
        return list(o)
    raise TypeError(type(o))


def write_json(path: Path, obj: Any) -> None:
    """Write JSON under a temporary name, then move into place."""
    tmp = path.with_name(f".{path.name}.tmp")
    tmp.write_text(json.dumps(obj, indent=2, default=_json_default))
    os.replace(tmp, path)


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


class Run:
    """A trained model with its encoder and configuration (from a run folder or fresh from training)."""

    def __init__(self, model: Any, encoder: MetadataEncoder, config: dict[str, Any], run_dir: Path | None = None):
        self.model = model
        self.encoder = encoder
        self.config = config
        self.run_dir = run_dir
        self.train_config = TrainConfig.from_dict(config["train"])

    @property
    def threshold(self) -> float:
        """The threshold chosen on validation predictions."""
        return float(self.config["threshold"])

    @classmethod
    def load(cls, run_dir: str | os.PathLike[str]) -> "Run":
        """Load a run folder written by :func:`train_run`."""
        import keras

        from . import augment, models  # noqa: F401  (registers the custom layers)

        run_dir = Path(run_dir)
        for name in ("model.keras", "encoder.json", "config.json"):
            if not (run_dir / name).is_file():
                raise FileNotFoundError(f"{run_dir}: not a run folder ({name} missing)")
        model = keras.saving.load_model(run_dir / "model.keras")
        return cls(model, MetadataEncoder.load(run_dir / "encoder.json"),
                   json.loads((run_dir / "config.json").read_text()), run_dir)

    def predict(self, df: pd.DataFrame, batch_size: int = 64, tta: int = 1) -> np.ndarray:
        """Probabilities for rows of the normalised table (all images must be readable).

        ``tta`` > 1 averages the probabilities over that many dihedral views of each image (1: none,
        4: the rotations, 8: rotations and mirrors) — test-time augmentation.
        """
        from .pipeline import image_batches
        from .transforms import MAX_VIEWS, dihedral

        if not 1 <= tta <= MAX_VIEWS:
            raise ValueError(f"tta must be in 1..{MAX_VIEWS}; got {tta}")
        cfg = self.train_config
        meta = self.encoder.transform(df)
        if not cfg.uses_images:
            return np.asarray(self.model.predict({"meta": meta}, batch_size=batch_size, verbose=0)).reshape(-1)
        out = np.empty(len(df), np.float64)
        start = 0
        for images in image_batches(list(df["image_path"]), cfg.image_size, self.config["preprocess"], batch_size):
            stop = start + len(images)
            x: dict[str, np.ndarray] = {}
            if cfg.uses_meta:
                x["meta"] = meta[start:stop]
            n = len(images)
            if n < batch_size:  # pad the last batch: one compiled function for every batch
                images = np.concatenate([images, np.repeat(images[-1:], batch_size - n, axis=0)])
                if "meta" in x:
                    x["meta"] = np.concatenate([x["meta"], np.repeat(x["meta"][-1:], batch_size - n, axis=0)])
            total = np.zeros(n, np.float64)
            for view in range(tta):
                x["image"] = dihedral(images, view).astype(np.float32)
                total += np.asarray(self.model.predict_on_batch(x), np.float64).reshape(-1)[:n]
            out[start:stop] = total / tta
            start = stop
        return out

    def predict_frame(self, df: pd.DataFrame, batch_size: int = 64, tta: int = 1) -> pd.DataFrame:
        """``image_name, probability, prediction, error`` for every row; unreadable images get an error."""
        from .data import check_image_file

        df = df.reset_index(drop=True).copy()
        errors = pd.Series("", index=df.index)
        if self.train_config.uses_images:
            errors = pd.Series([check_image_file(p) or "" for p in df["image_path"]], index=df.index)
            errors = errors.where(errors == "", "image " + errors)
        if {"width", "height"} & set(self.encoder.groups):
            df = fill_size_from_files(df)
        ok = errors == ""
        prob = np.full(len(df), np.nan)
        if ok.any():
            prob[ok.to_numpy()] = self.predict(df[ok], batch_size, tta=tta)
        out = pd.DataFrame({"image_name": df["image_name"], "probability": prob})
        out["prediction"] = np.where(ok, (prob >= self.threshold).astype(int), -1)
        out["error"] = errors
        return out


def fill_size_from_files(df: pd.DataFrame) -> pd.DataFrame:
    """Where width/height are missing, read them from the image file header (no decoding)."""
    from PIL import Image

    df = df.copy()
    need = df["width"].isna() | df["height"].isna()
    for i in np.flatnonzero(need.to_numpy()):
        path = df["image_path"].iloc[i]
        try:
            with Image.open(path) as im:
                w, h = im.size
        except (OSError, ValueError):
            continue
        df.iloc[i, df.columns.get_loc("width")] = float(w)
        df.iloc[i, df.columns.get_loc("height")] = float(h)
    return df


def _datasets(cfg: TrainConfig, train: pd.DataFrame, val: pd.DataFrame, encoder: MetadataEncoder,
              weights: dict[int, float], preprocess: dict[str, Any], out_dir: Path):
    import keras

    from .pipeline import load_image_array, make_array_sequence, make_dataset

    xm_tr, xm_va = encoder.transform(train), encoder.transform(val)
    y_tr, y_va = train["target"].to_numpy(), val["target"].to_numpy()
    w_tr = np.array([weights[int(t)] for t in y_tr], np.float32)
    w_va = np.array([weights[int(t)] for t in y_va], np.float32)
    if keras.backend.backend() != "tensorflow":  # JAX / PyTorch: a decoded uint8 cache behind a PyDataset
        keys = tuple(k for k, used in (("image", cfg.uses_images), ("meta", cfg.uses_meta)) if used)
        img_tr = img_va = None
        augmenter = None
        if cfg.uses_images:
            img_tr = load_image_array(list(train["image_path"]), cfg.image_size, preprocess)
            img_va = load_image_array(list(val["image_path"]), cfg.image_size, preprocess)
            if cfg.augment:
                from .augment import build_augmenter

                augmenter = build_augmenter(cfg.image_size, seed=cfg.seed, **cfg.augment_config)
        return (make_array_sequence(img_tr, xm_tr, y_tr, w_tr, cfg.batch_size, shuffle=True, seed=cfg.seed,
                                    augmenter=augmenter, keys=keys),
                make_array_sequence(img_va, xm_va, y_va, w_va, cfg.batch_size, keys=keys))
    if not cfg.uses_images:
        import tensorflow as tf

        def meta_ds(x, y, w, shuffle):
            ds = tf.data.Dataset.from_tensor_slices(({"meta": x}, y.astype(np.float32), w))
            if shuffle:
                ds = ds.shuffle(len(x), seed=cfg.seed)
            return ds.batch(cfg.batch_size).prefetch(tf.data.AUTOTUNE)

        return meta_ds(xm_tr, y_tr, w_tr, True), meta_ds(xm_va, y_va, w_va, False)
    augmenter = None
    if cfg.augment:
        from .augment import build_augmenter

        augmenter = build_augmenter(cfg.image_size, seed=cfg.seed, **cfg.augment_config)
    cache_tr = cache_va = cfg.cache
    if cfg.cache not in (None, "memory"):
        cache_tr, cache_va = str(out_dir / "cache" / "train"), str(out_dir / "cache" / "val")
    ds_tr = make_dataset(list(train["image_path"]), xm_tr, y_tr, w_tr, image_size=cfg.image_size,
                         preprocess=preprocess, batch_size=cfg.batch_size, training=True, augmenter=augmenter,
                         seed=cfg.seed, cache=cache_tr)
    ds_va = make_dataset(list(val["image_path"]), xm_va, y_va, w_va, image_size=cfg.image_size,
                         preprocess=preprocess, batch_size=cfg.batch_size, cache=cache_va)
    if not cfg.uses_meta:
        ds_tr = ds_tr.map(lambda x, y, w: ({"image": x["image"]}, y, w))
        ds_va = ds_va.map(lambda x, y, w: ({"image": x["image"]}, y, w))
    return ds_tr, ds_va


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

    ds_tr, ds_va = _datasets(cfg, train, val, encoder, weights, preprocess, out_dir)
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
        ds_tr, ds_va = _datasets(cfg, train, val, encoder, weights, preprocess, out_dir)
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

    from .reporting import package_versions

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
    try:
        threshold = choose_threshold(val["target"], p_val, cfg.min_sensitivity)
    except MetricError:
        threshold = 0.5
    from .augment import AugmentConfig

    config = {
        "train": asdict(cfg),
        "preprocess": preprocess,
        "augment": AugmentConfig(**cfg.augment_config).to_dict() if cfg.augment else None,
        "threshold": threshold,
        "threshold_rule": f"highest threshold with validation sensitivity >= {cfg.min_sensitivity}",
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
    tmp_model = out_dir / ".model.tmp.keras"
    model.save(tmp_model)
    os.replace(tmp_model, out_dir / "model.keras")
    encoder.save(out_dir / "encoder.json")
    write_json(out_dir / "config.json", config)
    write_json(out_dir / "metrics.json", {"validation": metrics})
    pd.DataFrame({"image_name": val["image_name"], "patient_id": val["patient_id"], "target": val["target"],
                  "probability": p_val}).to_csv(out_dir / "val_predictions.csv", index=False)
    shutil.rmtree(out_dir / "backup", ignore_errors=True)
    shutil.rmtree(out_dir / "cache", ignore_errors=True)
    return run


def _load_or_train(df: pd.DataFrame, cfg: TrainConfig, run_dir: Path) -> Run:
    """The finished run in ``run_dir`` if there is one (an interrupted study resumes), else train it."""
    return Run.load(run_dir) if (run_dir / "model.keras").exists() else train_run(df, cfg, run_dir)


#: The ablation's variants: name -> TrainConfig overrides.
ABLATION_VARIANTS: dict[str, dict[str, Any]] = {
    "metadata only (clinical)": {"model": "meta", "features": "clinical"},
    "image only": {"model": "image"},
    "fusion, clinical": {"model": "fusion", "features": "clinical"},
    "fusion, paper (+ width/height)": {"model": "fusion", "features": "paper"},
}


def cross_validate(
    df: pd.DataFrame,
    cfg: TrainConfig,
    out_dir: str | os.PathLike[str],
    variants: dict[str, dict[str, Any]] | None = None,
    n_splits: int = 5,
    folds: list[int] | None = None,
) -> tuple[pd.DataFrame, pd.DataFrame]:
    """Patient-grouped K-fold CV of each variant with the same budget (``cfg``'s epochs and patience).

    Each fold's training part holds out its own patient-grouped validation split for early stopping.
    Returns ``(per_fold, oof)``: fold metrics (ROC AUC, PR AUC, melanoma-vs-nevus AUC) and out-of-fold
    predictions (``image_name, patient_id, target, diagnosis, fold, variant, probability``). Runs are
    written to ``out_dir/<variant>/fold<k>`` and reused when present (an interrupted ablation resumes).
    """
    variants = variants or ABLATION_VARIANTS
    out_dir = Path(out_dir)
    fold_ids = grouped_folds(df, n_splits=n_splits, seed=cfg.seed)
    rows, preds = [], []
    for k in folds if folds is not None else range(n_splits):
        test = df[fold_ids == k].reset_index(drop=True)
        rest = df[fold_ids != k].reset_index(drop=True)
        for name, overrides in variants.items():
            vcfg = TrainConfig.from_dict({**asdict(cfg), **overrides})
            run_dir = out_dir / _slug(name) / f"fold{k}"
            run = _load_or_train(rest, vcfg, run_dir)
            p = run.predict(test)
            preds.append(pd.DataFrame({"image_name": test["image_name"], "patient_id": test["patient_id"],
                                       "target": test["target"], "diagnosis": test["diagnosis"], "fold": k,
                                       "variant": name, "probability": p}))
            nevus = (test["target"] == 1) | (test["diagnosis"] == "nevus")
            rows.append({"variant": name, "fold": k, "n_test": len(test), "roc_auc": roc_auc(test["target"], p),
                         "pr_auc": pr_auc(test["target"], p),
                         "auc_melanoma_vs_nevus": _safe_auc(test["target"][nevus], p[nevus.to_numpy()]),
                         "epochs_run": run.config.get("epochs_run"), "train_seconds": run.config.get("train_seconds")})
            print(f"[cv] fold {k} · {name}: ROC AUC {rows[-1]['roc_auc']:.3f}", flush=True)
    return pd.DataFrame(rows), pd.concat(preds, ignore_index=True)


def summarise_cv(per_fold: pd.DataFrame, oof: pd.DataFrame, n_boot: int = 1000, seed: int = 0) -> pd.DataFrame:
    """Mean ± sd over folds, and the pooled out-of-fold ROC AUC with a patient-bootstrap 95% CI, per variant."""
    from .evaluation import bootstrap_ci

    out = []
    for name, part in per_fold.groupby("variant", sort=False):
        o = oof[oof["variant"] == name]
        est, lo, hi = bootstrap_ci(o["target"], o["probability"], o["patient_id"], roc_auc, n_boot=n_boot, seed=seed)
        nev = ((o["target"] == 1) | (o["diagnosis"] == "nevus")).to_numpy()
        try:
            _, nlo, nhi = bootstrap_ci(o["target"][nev], o["probability"][nev], o["patient_id"][nev], roc_auc,
                                       n_boot=n_boot, seed=seed)
        except MetricError:
            nlo = nhi = float("nan")
        out.append({
            "variant": name,
            "roc_auc_mean": part["roc_auc"].mean(), "roc_auc_sd": part["roc_auc"].std(ddof=1),
            "pr_auc_mean": part["pr_auc"].mean(), "pr_auc_sd": part["pr_auc"].std(ddof=1),
            "mel_vs_nevus_auc_mean": part["auc_melanoma_vs_nevus"].mean(),
            "pooled_oof_roc_auc": est, "pooled_ci_low": lo, "pooled_ci_high": hi,
            "pooled_oof_pr_auc": pr_auc(o["target"], o["probability"]),
            "pooled_mel_vs_nevus_auc": _safe_auc(o["target"][nev], o["probability"][nev]),
            "pooled_mel_vs_nevus_ci_low": nlo, "pooled_mel_vs_nevus_ci_high": nhi,
            "folds": len(part),
        })
    return pd.DataFrame(out).set_index("variant")


def _safe_auc(y: Any, p: Any) -> float:
    try:
        return roc_auc(np.asarray(y), np.asarray(p))
    except MetricError:
        return float("nan")


def _slug(name: str) -> str:
    return "".join(c if c.isalnum() else "_" for c in name.lower()).strip("_").replace("__", "_")


def compare_backbones(
    df: pd.DataFrame,
    cfg: TrainConfig,
    out_dir: str | os.PathLike[str],
    backbones: list[str],
    models: tuple[str, ...] = ("image", "fusion"),
    test_fraction: float = 0.2,
    n_boot: int = 1000,
) -> tuple[pd.DataFrame, pd.DataFrame]:
    """The study's Table 3 analogue: each backbone (``"cnn"`` = the study's own branch) × image-only /
    fusion, trained on the same patient-grouped training part (same budget) and scored on the same
    held-out patients. A backbone entry ``"name@weights"`` (e.g. ``"efficientnetlite0@imagenet"``,
    ``"efficientnetlite0@none"``) sets its weights; plain names use ``cfg.weights``. Returns
    ``(table, predictions)``; runs are saved under ``out_dir`` and reused."""
    out_dir = Path(out_dir)
    tr, te = holdout_split(df, test_fraction, seed=cfg.seed)
    train, test = df.iloc[tr].reset_index(drop=True), df.iloc[te].reset_index(drop=True)
    rows, preds = [], []
    for entry in backbones:
        backbone, _, w = entry.partition("@")
        weights = (None if w == "none" else w) if w else cfg.weights
        for model in models:
            overrides = {"model": model, "backbone": None if backbone == "cnn" else backbone,
                         "weights": None if backbone == "cnn" else weights}
            vcfg = TrainConfig.from_dict({**asdict(cfg), **overrides})
            run_dir = out_dir / f"{entry.replace('@', '_')}_{model}"
            run = _load_or_train(train, vcfg, run_dir)
            p = run.predict(test)
            res = evaluate(test["target"], p, test["patient_id"], {"validation": run.threshold}, n_boot=n_boot, seed=cfg.seed)
            at = res["thresholds"]["validation"]
            nevus = ((test["target"] == 1) | (test["diagnosis"] == "nevus")).to_numpy()
            rows.append({
                "backbone": backbone, "weights": weights if backbone != "cnn" else None, "model": model,
                "accuracy": at["accuracy"], "sensitivity": at["sensitivity"], "specificity": at["specificity"],
                "f1": at["f1"], "threshold": at["threshold"],
                "roc_auc": res["roc_auc"]["estimate"], "roc_auc_ci_low": res["roc_auc"]["ci_low"],
                "roc_auc_ci_high": res["roc_auc"]["ci_high"],
                "pr_auc": res["pr_auc"]["estimate"], "pr_auc_ci_low": res["pr_auc"]["ci_low"], "pr_auc_ci_high": res["pr_auc"]["ci_high"],
                "mel_vs_nevus_auc": _safe_auc(test["target"][nevus], p[nevus]),
                "params": int(run.model.count_params()), "epochs_run": run.config.get("epochs_run"),
                "train_images_per_second": run.config.get("train_images_per_second"),
            })
            preds.append(pd.DataFrame({"image_name": test["image_name"], "backbone": entry, "model": model,
                                       "target": test["target"], "probability": p}))
            print(f"[compare] {entry} · {model}: ROC AUC {rows[-1]['roc_auc']:.3f}", flush=True)
    return pd.DataFrame(rows), pd.concat(preds, ignore_index=True)
