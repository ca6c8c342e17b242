"""A run: the training recipe (:class:`TrainConfig`) and a trained model with its encoder (:class:`Run`).

A run folder (written by :func:`melanoma_utils.training.train_run`) is self-contained::

    RUN_DIR/model.keras          the whole two-input model (images + metadata in, probability out)
    RUN_DIR/encoder.json         the metadata encoder, fit on the training rows only
    RUN_DIR/config.json          TrainConfig, preprocessing, augmentation, threshold (and its rule), feature
                                 names, class weights, training stages and timings, package versions
    RUN_DIR/history.csv          per-epoch loss/AUC (train and validation)
    RUN_DIR/metrics.json         validation metrics with patient-bootstrap CIs
    RUN_DIR/val_predictions.csv  the validation split's probabilities
"""

from __future__ import annotations

import json
import os
from dataclasses import dataclass, field, fields
from pathlib import Path
from typing import Any, ClassVar

import numpy as np
import pandas as pd

from .features import MetadataEncoder, check_feature_set
from .transforms import preprocess_config

#: Fine-tuning after the cached-embedding head: which backbone layers become trainable.
FINETUNE_MODES: tuple[str, ...] = ("none", "top", "all")


@dataclass
class TrainConfig:
    """Every training choice, saved with the run. Defaults follow the study."""

    kind: str = "fusion"  # fusion | image | meta: which inputs the model takes
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
    backbone_weights: str | None = None  # None | "imagenet" | a local weights file (pretrained backbone)
    freeze_epochs: int = 0  # end-to-end path (frozen_features off): epochs with the backbone frozen, then fine-tune
    finetune_learning_rate: float = 1e-5
    frozen_features: bool = True  # with pretrained weights: train the head on cached backbone embeddings
    embedding_views: int = 8  # dihedral views (rotations/mirrors) cached per image for the head's training
    head_learning_rate: float = 1e-3  # Adam learning rate of the head trained on cached embeddings
    finetune: str = "none"  # after the cached-embedding head: none | top (last blocks) | all
    finetune_epochs: int = 2
    tta: int = 1  # test-time augmentation: dihedral views averaged for validation and, by default, prediction
    cache: str | None = "memory"  # "memory", a file prefix, or None
    mixed_precision: str = "auto"  # auto (on GPU only) | on | off
    verbose: int = 2  # Keras fit verbosity: 1 progress bar, 2 one line per epoch

    def __post_init__(self) -> None:
        if self.kind not in ("fusion", "image", "meta"):
            raise ValueError(f"kind must be fusion, image or meta; got {self.kind!r}")
        check_feature_set(self.features)
        preprocess_config(self.preprocess)
        for name in ("image_size", "batch_size", "epochs"):
            if int(getattr(self, name)) <= 0:
                raise ValueError(f"{name} must be positive; got {getattr(self, name)}")
        if self.uses_images and int(self.image_size) < self.min_image_size:
            raise ValueError(f"image_size {self.image_size} is below this image branch's minimum of {self.min_image_size} px "
                             f"({'a backbone downsamples by 32' if self.backbone else 'one 2x2 pooling between convolution blocks'})")
        if not 0 < float(self.min_sensitivity) <= 1:
            raise ValueError(f"min_sensitivity must be in (0, 1]; got {self.min_sensitivity}")
        for name in ("learning_rate", "head_learning_rate", "finetune_learning_rate"):
            if not float(getattr(self, name)) > 0:
                raise ValueError(f"{name} must be > 0; got {getattr(self, name)}")
        if int(self.freeze_epochs) < 0 or int(self.finetune_epochs) < 0:
            raise ValueError("freeze_epochs and finetune_epochs must be >= 0")
        if self.finetune not in FINETUNE_MODES:
            raise ValueError(f"finetune must be one of {', '.join(FINETUNE_MODES)}; got {self.finetune!r}")
        if not 1 <= int(self.tta) <= 8:
            raise ValueError(f"tta must be in 1..8; got {self.tta}")
        if not 1 <= int(self.embedding_views) <= 8:
            raise ValueError(f"embedding_views must be in 1..8; got {self.embedding_views}")
        self.conv_filters = tuple(self.conv_filters)
        self.meta_units = tuple(self.meta_units)
        self.head_units = tuple(self.head_units)

    @property
    def uses_images(self) -> bool:
        """Whether the model has an image input."""
        return self.kind in ("fusion", "image")

    @property
    def min_image_size(self) -> int:
        """The smallest input side the image branch accepts."""
        return 32 if self.backbone else 2 ** max(len(self.conv_filters) - 1, 0)

    @property
    def uses_cached_embeddings(self) -> bool:
        """Whether the head is trained on cached embeddings of a frozen pretrained backbone."""
        return self.uses_images and bool(self.backbone) and self.backbone_weights not in (None, "none") and self.frozen_features

    @property
    def uses_meta(self) -> bool:
        """Whether the model has a metadata input."""
        return self.kind in ("fusion", "meta")

    #: Names used by earlier versions (config.json of older runs) -> today's field.
    RENAMED: ClassVar[dict[str, str]] = {"model": "kind", "weights": "backbone_weights"}

    @classmethod
    def from_dict(cls, d: dict[str, Any]) -> "TrainConfig":
        """Rebuild from :func:`dataclasses.asdict` output (unknown keys ignored; older runs' field names
        :attr:`RENAMED` are read as today's)."""
        names = {f.name for f in fields(cls)}
        d = {cls.RENAMED.get(k, k): v for k, v in d.items() if not (k in cls.RENAMED and cls.RENAMED[k] in d)}
        return cls(**{k: v for k, v in d.items() if k in names})


class Run:
    """A trained model with its encoder and configuration (from a run folder or fresh from training)."""

    def __init__(self, model: Any, encoder: MetadataEncoder, config: dict[str, Any], run_dir: Path | None = None):
        self.model = model
        self.encoder = encoder
        self.config = config
        self.run_dir = run_dir
        self.train_config = TrainConfig.from_dict(config["train"])
        self.metrics: dict[str, Any] = {}

    @property
    def threshold(self) -> float:
        """The threshold chosen on validation predictions."""
        return float(self.config["threshold"])

    @staticmethod
    def read_config(run_dir: str | os.PathLike[str]) -> dict[str, Any]:
        """A run folder's ``config.json`` (threshold, recipe, …) without loading its model; checks the folder."""
        run_dir = Path(run_dir)
        for name in ("model.keras", "encoder.json", "config.json"):
            if not (run_dir / name).is_file():
                raise FileNotFoundError(f"{run_dir}: not a run folder ({name} missing)")
        return json.loads((run_dir / "config.json").read_text())

    @classmethod
    def load(cls, run_dir: str | os.PathLike[str]) -> "Run":
        """Load a run folder written by :func:`train_run`."""
        import keras

        from . import augment, models  # noqa: F401  (registers the custom layers)

        config = cls.read_config(run_dir)
        run_dir = Path(run_dir)
        model = keras.saving.load_model(run_dir / "model.keras")
        run = cls(model, MetadataEncoder.load(run_dir / "encoder.json"), config, run_dir)
        if (run_dir / "metrics.json").is_file():
            run.metrics = json.loads((run_dir / "metrics.json").read_text())
        return run

    def predict(self, df: pd.DataFrame, batch_size: int = 64, tta: int | None = None) -> np.ndarray:
        """Probabilities for rows of the normalised table (all images must be readable).

        ``tta`` > 1 averages the probabilities over that many dihedral views of each image (1: none,
        4: the rotations, 8: rotations and mirrors) — test-time augmentation; ``None``: the run's own setting
        (the one its validation threshold was chosen with).
        """
        tta = self.train_config.tta if tta is None else tta
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

    @property
    def uses_original_size(self) -> bool:
        """Whether the model takes the original image width/height (the study's ``paper`` features)."""
        return bool({"width", "height"} & set(self.encoder.groups))

    def predict_frame(self, df: pd.DataFrame, batch_size: int = 64, tta: int | None = None,
                      impute_size: bool = False) -> pd.DataFrame:
        """``image_name, probability, prediction, error`` for every row; unreadable images get an error.

        A model with the original width/height takes them from the table: the files at hand are usually
        resized copies whose size says nothing about the camera. Rows without them are an error naming them,
        unless ``impute_size``: then the encoder imputes them (its training medians) and the output's
        ``size_imputed`` column marks those rows.
        """
        from .data import DataError
        from .images import check_image_file

        df = df.reset_index(drop=True).copy()
        errors = pd.Series("", index=df.index)
        if self.train_config.uses_images:
            errors = pd.Series([check_image_file(p) or "" for p in df["image_path"]], index=df.index)
            errors = errors.where(errors == "", "image " + errors)
        no_size = pd.Series(False, index=df.index)
        if self.uses_original_size:
            no_size = df["width"].isna() | df["height"].isna()
            if no_size.any() and not impute_size:
                rows = ", ".join(str(i + 2) for i in np.flatnonzero(no_size.to_numpy())[:10])
                raise DataError(
                    f"this model uses the original image width/height (features 'paper'), but {int(no_size.sum())} "
                    f"row(s) have none (CSV line(s) {rows}{', ...' if no_size.sum() > 10 else ''}): add the columns "
                    "width and height with each image's ORIGINAL size (the size of a resized copy is not it), or "
                    "pass --impute-size to impute them (recorded per row in size_imputed)")
        ok = errors == ""
        prob = np.full(len(df), np.nan)
        if ok.any():
            prob[ok.to_numpy()] = self.predict(df[ok], batch_size, tta=tta)
        out = pd.DataFrame({"image_name": df["image_name"], "probability": prob})
        out["prediction"] = np.where(ok, (prob >= self.threshold).astype(int), -1)
        out["error"] = errors
        if self.uses_original_size:
            out["size_imputed"] = no_size.astype(int)
        return out
