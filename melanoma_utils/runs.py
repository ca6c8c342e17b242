"""A run: the training recipe (:class:`TrainConfig`) and a trained model with its encoder (:class:`Run`).

A run folder (written by :func:`melanoma_utils.training.train_run`) is self-contained::

    RUN_DIR/model.keras          the whole two-input model (images + metadata in, probability out)
    RUN_DIR/encoder.json         the metadata encoder, fit on the training rows only
    RUN_DIR/config.json          TrainConfig, preprocessing, augmentation, threshold (and its rule), feature
                                 names, class weights, training stages and timings, package versions
    RUN_DIR/history.csv          per-epoch loss/AUC (train and validation)
    RUN_DIR/metrics.json         validation metrics with patient-bootstrap CIs (and the clinical report:
                                 calibration, operating points, net benefit, subgroups)
    RUN_DIR/val_predictions.csv  the validation split's calibrated and raw probabilities
    RUN_DIR/MODEL_CARD.md        intended use, training data and prevalence, metrics, subgroups, shortcuts

``config.json`` also holds the calibrator (``calibration``: Platt or isotonic, fitted on the validation split,
and the prevalence its probabilities are right at); the decision ``threshold`` is on that calibrated scale.
"""

from __future__ import annotations

import json
import os
from dataclasses import MISSING, dataclass, field, fields
from pathlib import Path
from typing import Any, ClassVar

import numpy as np
import pandas as pd

from .calibration import Calibrator, check_prevalence, prior_shift
from .features import MetadataEncoder, check_feature_set
from .transforms import preprocess_config

#: Fine-tuning after the cached-embedding head: which backbone layers become trainable.
FINETUNE_MODES: tuple[str, ...] = ("none", "top", "all")
#: How training uses devices (see :func:`melanoma_utils.training.make_distribution`).
STRATEGIES: tuple[str, ...] = ("auto", "one", "mirrored", "multiworker", "tpu")


#: ``backbone_weights`` default: ImageNet where the weights ship offline (EfficientNet-Lite), else random init.
AUTO = "auto"
#: The largest ``image_size`` accepted (px): beyond it one batch of decoded images no longer fits a workstation.
MAX_IMAGE_SIZE = 1024


@dataclass
class TrainConfig:
    """Every training choice, saved with the run. THE place where training defaults are decided and values are
    normalised: the command line, the notebooks and the parameter files pass only what a user set.

    The default model is the pretrained EfficientNet-Lite0 branch (ImageNet weights shipped offline by a pip package,
    frozen, the study's head trained on cached embeddings of 8 dihedral views) at its native 224 px: chosen by
    patient-grouped validation (README, "Choosing the defaults"). ``backbone="cnn"`` (or ``None``) is the study's CNN
    trained from scratch. ``image_size=None`` resolves to the backbone's native size (128 px for the CNN);
    ``backbone_weights="auto"`` to ``"imagenet"`` for the offline EfficientNet-Lite backbones, else ``None``.
    """

    kind: str = "fusion"  # fusion | image | meta: which inputs the model takes
    features: str = "clinical"  # clinical | paper | acquisition (metadata feature set)
    image_size: int | None = None  # None: the backbone's native size (backbones.default_image_size)
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
    backbone: str | None = "efficientnetlite0"  # a backbones.BACKBONES name; None or "cnn": the study's CNN
    backbone_weights: str | None = AUTO  # None | "imagenet" | a local weights file; "auto": see the class docstring
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
    strategy: str = "auto"  # auto | one | mirrored | multiworker | tpu (batch_size is per replica)
    verbose: int = 2  # Keras fit verbosity: 1 progress bar, 2 one line per epoch

    @classmethod
    def default(cls, name: str) -> Any:
        """The default of field ``name`` (for help texts that state it without repeating it)."""
        f = next(f for f in fields(cls) if f.name == name)
        return f.default_factory() if f.default_factory is not MISSING else f.default  # type: ignore[misc]

    def _normalise(self) -> None:
        from .backbones import BACKBONES, OFFLINE_IMAGENET, default_image_size

        b = self.backbone if self.kind != "meta" else None  # a metadata-only model has no image branch
        if self.kind == "meta":
            self.backbone_weights = None
        self.backbone = None if b is None or str(b).strip().lower() in ("", "cnn", "none") else str(b).strip().lower()
        if self.backbone is not None and self.backbone not in BACKBONES:
            raise ValueError(f"backbone must be cnn or one of {', '.join(sorted(BACKBONES))}; got {b!r}")
        w = self.backbone_weights
        if w is not None and str(w).strip().lower() == AUTO:
            w = "imagenet" if self.backbone in OFFLINE_IMAGENET else None
        elif w is not None and str(w).strip().lower() in ("", "none"):
            w = None
        elif w is not None and str(w).strip().lower() == "imagenet":
            w = "imagenet"
        if w is not None and self.backbone is None:
            raise ValueError(f"backbone_weights (--backbone-weights) {w!r} needs a backbone (the study's CNN has no pretrained weights); "
                             "e.g. backbone efficientnetlite0 with backbone_weights imagenet")
        if w not in (None, "imagenet") and not Path(str(w)).is_file():
            raise FileNotFoundError(f"backbone_weights (--backbone-weights) {w}: file not found (none | imagenet | a weights file)")
        self.backbone_weights = w
        if self.image_size is None:
            self.image_size = default_image_size(self.backbone)
        if self.cache is not None and str(self.cache).strip().lower() in ("", "none"):
            self.cache = None

    def __post_init__(self) -> None:
        self._normalise()
        if self.kind not in ("fusion", "image", "meta"):
            raise ValueError(f"kind must be fusion, image or meta; got {self.kind!r}")
        check_feature_set(self.features)
        preprocess_config(self.preprocess)
        for name in ("image_size", "batch_size", "epochs"):
            if int(getattr(self, name)) <= 0:
                raise ValueError(f"{name} must be positive; got {getattr(self, name)}")
        if int(self.image_size) > MAX_IMAGE_SIZE:  # type: ignore[arg-type]
            raise ValueError(f"image_size {self.image_size} is above the maximum of {MAX_IMAGE_SIZE} px (one batch of "
                             f"{self.batch_size} such images is {self.batch_size * int(self.image_size) ** 2 * 3 / 2**30:.1f} GiB "
                             "decoded); dermoscopy models use 224–512 px")
        if self.uses_images and int(self.image_size) < self.min_image_size:  # type: ignore[arg-type]
            raise ValueError(f"image_size {self.image_size} is below this image branch's minimum of {self.min_image_size} px "
                             f"({'a backbone downsamples by 32' if self.backbone else 'one 2x2 pooling between convolution blocks'})")
        if not 0 < float(self.val_fraction) < 1:
            raise ValueError(f"val_fraction must be between 0 and 1; got {self.val_fraction}")
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
        if self.strategy not in STRATEGIES:
            raise ValueError(f"strategy must be one of {', '.join(STRATEGIES)}; got {self.strategy!r}")
        if not 1 <= int(self.embedding_views) <= 8:
            raise ValueError(f"embedding_views must be in 1..8; got {self.embedding_views}")
        self.conv_filters = tuple(self.conv_filters)
        self.meta_units = tuple(self.meta_units)
        self.head_units = tuple(self.head_units)

    def model_kwargs(self, n_meta: int | None, initial_bias: float | None = None) -> dict[str, Any]:
        """The keyword arguments of :func:`melanoma_utils.models.build_model` for this configuration (the one place
        that maps configuration fields onto the builder)."""
        return {"image_size": self.image_size if self.uses_images else None, "n_meta": n_meta if self.uses_meta else None,
                "kind": self.kind, "conv_filters": self.conv_filters, "conv_dropout": self.conv_dropout,
                "meta_units": self.meta_units, "head_units": self.head_units, "head_dropout": self.head_dropout,
                "initial_bias": initial_bias, "backbone": self.backbone, "backbone_weights": self.backbone_weights}

    def head_kwargs(self, embedding_dim: int, n_meta: int | None, initial_bias: float | None = None) -> dict[str, Any]:
        """The keyword arguments of :func:`melanoma_utils.models.build_head_model` for this configuration."""
        return {"embedding_dim": embedding_dim, "n_meta": n_meta if self.uses_meta else None, "kind": self.kind,
                "meta_units": self.meta_units, "head_units": self.head_units, "head_dropout": self.head_dropout,
                "initial_bias": initial_bias}

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
        for name in ("backbone", "backbone_weights"):  # a saved run without them predates backbones: the study's CNN
            d.setdefault(name, None)
        return cls(**{k: v for k, v in d.items() if k in names})


class RunDamaged(ValueError):
    """A run folder whose files exist but cannot be read (cut, edited or from elsewhere)."""


def _read_json(run_dir: Path, name: str) -> Any:
    try:
        return json.loads((run_dir / name).read_text())
    except (ValueError, UnicodeDecodeError) as exc:
        raise RunDamaged(f"run folder {run_dir} is damaged: {name} ({exc}); train the run again") from None


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
    def calibrator(self) -> Calibrator:
        """The calibrator fitted on the validation split (identity for runs trained before calibration)."""
        return Calibrator.from_dict(self.config["calibration"]) if self.config.get("calibration") else Calibrator()

    @property
    def threshold(self) -> float:
        """The decision threshold chosen on the validation predictions (on the calibrated scale)."""
        return float(self.config["threshold"])

    @property
    def prevalence(self) -> float | None:
        """The malignant share the calibrated probabilities are right at (the validation split's); ``None``
        for a run without a calibrator."""
        return self.calibrator.prevalence

    def threshold_at(self, prevalence: float | None) -> float:
        """The decision threshold on the scale of probabilities moved to ``prevalence`` (same decisions)."""
        if prevalence is None:
            return self.threshold
        return float(prior_shift(np.array([self.threshold]), self._source_prevalence(), prevalence)[0])

    def _source_prevalence(self) -> float:
        if self.prevalence is None:
            raise ValueError(f"{self.run_dir or 'this run'} has no calibrator (trained before calibration was added), "
                             "so its outputs are not probabilities at a known prevalence; retrain it to use --prevalence")
        return self.prevalence

    @property
    def uses_context(self) -> bool:
        """Whether the metadata includes the patient context (:mod:`melanoma_utils.context`)."""
        return self.encoder.uses_context

    def with_context(self, df: pd.DataFrame) -> pd.DataFrame:
        """``df`` with the patient-context columns when the run uses them (computed from its images)."""
        from .context import CONTEXT_COLUMNS, add_context

        if not self.uses_context or all(c in df for c in CONTEXT_COLUMNS):
            return df
        return add_context(df, self.train_config.image_size, self.config["preprocess"])

    def head_model(self) -> Any:
        """The layers after the image backbone as a model ``{"embedding", "meta"} -> raw output`` (trained weights)."""
        from .models import build_head_model, copy_head_weights

        base = self.model.get_layer("backbone")
        head = build_head_model(**self.train_config.head_kwargs(int(base.output.shape[-1]), self.encoder.n_features))
        copy_head_weights(self.model, head)
        return head

    @staticmethod
    def read_config(run_dir: str | os.PathLike[str]) -> dict[str, Any]:
        """A run folder's ``config.json`` (threshold, recipe, …) without loading its model; checks the folder."""
        run_dir = Path(run_dir)
        needed = ("config.json",) if (run_dir / "ensemble.json").is_file() else ("model.keras", "encoder.json", "config.json")
        for name in needed:
            if not (run_dir / name).is_file():
                raise FileNotFoundError(f"{run_dir}: not a run folder ({name} missing)")
        config = _read_json(run_dir, "config.json")
        if not isinstance(config, dict):
            raise RunDamaged(f"run folder {run_dir} is damaged: config.json (not a JSON object); train the run again")
        return config

    @classmethod
    def load(cls, run_dir: str | os.PathLike[str]) -> "Run":
        """Load a run folder written by :func:`train_run` (or an ensemble folder: an
        :class:`~melanoma_utils.ensemble.EnsembleRun`). Anything unreadable is a :class:`RunDamaged` naming the file."""
        import keras

        from . import augment, models  # noqa: F401  (registers the custom layers)

        config = cls.read_config(run_dir)
        run_dir = Path(run_dir)
        if (run_dir / "ensemble.json").is_file():
            from .ensemble import EnsembleRun

            return EnsembleRun.load(run_dir)
        try:
            model = keras.saving.load_model(run_dir / "model.keras")  # safe_mode: no code from the file runs
        except Exception as exc:  # noqa: BLE001 (Keras raises many types for a damaged archive; all mean the same here)
            raise RunDamaged(f"run folder {run_dir} is damaged: model.keras ({type(exc).__name__}: "
                             f"{str(exc).splitlines()[0][:200] if str(exc) else 'unreadable'}); train the run again") from None
        try:
            encoder = MetadataEncoder(**_read_json(run_dir, "encoder.json"))
        except (TypeError, ValueError, KeyError) as exc:
            if isinstance(exc, RunDamaged):
                raise
            raise RunDamaged(f"run folder {run_dir} is damaged: encoder.json ({exc}); train the run again") from None
        run = cls(model, encoder, config, run_dir)
        if (run_dir / "metrics.json").is_file():
            run.metrics = _read_json(run_dir, "metrics.json")
        return run

    def predict(self, df: pd.DataFrame, batch_size: int = 64, tta: int | None = None,
                cached_embeddings: bool = False) -> np.ndarray:
        """The model's RAW outputs for rows of the normalised table (all images must be readable); see
        :meth:`predict_proba` for calibrated probabilities. Ranking metrics (AUC) are the same for both.

        ``tta`` > 1 averages the outputs over that many dihedral views of each image (1: none,
        4: the rotations, 8: rotations and mirrors) — test-time augmentation; ``None``: the run's own setting
        (the one its validation threshold was chosen with). ``cached_embeddings``: for a frozen pretrained
        backbone (not fine-tuned), feed the head with the cached backbone embeddings
        (:mod:`melanoma_utils.embeddings`; computed and cached where absent) instead of running the backbone
        again: the same outputs up to the cache's float16 rounding, and far faster for repeated evaluation.
        """
        tta = self.train_config.tta if tta is None else tta
        from .pipeline import image_batches
        from .transforms import MAX_VIEWS, dihedral

        if not 1 <= tta <= MAX_VIEWS:
            raise ValueError(f"tta must be in 1..{MAX_VIEWS}; got {tta}")
        cfg = self.train_config
        df = self.with_context(df)
        meta = self.encoder.transform(df)
        if cached_embeddings and cfg.uses_cached_embeddings and cfg.finetune == "none" and len(df):
            return self._predict_from_embeddings(df, meta, tta, batch_size)
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

    def _predict_from_embeddings(self, df: pd.DataFrame, meta: np.ndarray, tta: int, batch_size: int) -> np.ndarray:
        from .embeddings import cached_embeddings
        from .models import image_encoder

        cfg = self.train_config
        emb, _ = cached_embeddings(image_encoder(self.model), list(df["image_path"]), backbone=str(cfg.backbone),
                                   backbone_weights=cfg.backbone_weights, image_size=cfg.image_size,
                                   preprocess=self.config["preprocess"], views=tta, batch_size=batch_size)
        head = self.head_model()
        total = np.zeros(len(df), np.float64)
        for view in range(tta):
            x = {"embedding": emb[:, view]}
            if cfg.uses_meta:
                x["meta"] = meta
            total += np.asarray(head.predict(x, batch_size=1024, verbose=0), np.float64).reshape(-1)
        return total / tta

    def predict_proba(self, df: pd.DataFrame, batch_size: int = 64, tta: int | None = None,
                      prevalence: float | None = None, cached_embeddings: bool = False) -> np.ndarray:
        """Calibrated probabilities of melanoma: right at the run's :attr:`prevalence`, or moved to a stated
        deployment ``prevalence`` (e.g. :data:`melanoma_utils.config.ISIC2020_PREVALENCE`) by :func:`~melanoma_utils.calibration.prior_shift`."""
        return self.calibrate(self.predict(df, batch_size, tta, cached_embeddings), prevalence)

    def calibrate(self, raw: Any, prevalence: float | None = None) -> np.ndarray:
        """Raw model outputs -> calibrated probabilities (at ``prevalence`` if given)."""
        p = self.calibrator.transform(raw)
        if prevalence is None:
            return p
        return prior_shift(p, self._source_prevalence(), check_prevalence(prevalence))

    @property
    def uses_original_size(self) -> bool:
        """Whether the model takes the original image width/height (the study's ``paper`` features)."""
        return bool({"width", "height"} & set(self.encoder.groups))

    def predict_frame(self, df: pd.DataFrame, batch_size: int = 64, tta: int | None = None,
                      impute_size: bool = False, prevalence: float | None = None) -> pd.DataFrame:
        """``image_name, probability, raw_probability, prevalence, threshold, prediction, error`` for every row;
        unreadable images get an error.

        ``probability`` is calibrated, at the run's prevalence or at ``prevalence``; ``raw_probability`` is the
        model's own output; ``prevalence`` says which prevalence ``probability`` is right at and ``threshold``
        is the decision threshold on that scale (``prediction = probability >= threshold``: the same decisions
        whatever the prevalence).

        A model with the original width/height takes them from the table: the files at hand are usually
        resized copies whose size says nothing about the camera. Rows without them are an error naming them,
        unless ``impute_size``: then the encoder imputes them (its training medians) and the output's
        ``size_imputed`` column marks those rows.
        """
        from .data import DataError
        from .images import check_image_file, unsafe_image_name

        df = df.reset_index(drop=True).copy()
        errors = pd.Series("", index=df.index)
        if self.train_config.uses_images:
            errors = pd.Series([check_image_file(p) or "" for p in df["image_path"]], index=df.index)
            errors = errors.where(errors == "", "image " + errors)
        unsafe = df["image_name"].map(lambda n: unsafe_image_name(n) or "")
        errors = errors.where(unsafe == "", "image_name " + unsafe + " (not read: a name must be a plain file name)")
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
        if prevalence is not None:
            prevalence = check_prevalence(prevalence)
        threshold = self.threshold_at(prevalence)
        ok = errors == ""
        raw = np.full(len(df), np.nan)
        if ok.any():
            usable = df[ok]
            if self.uses_context:  # the patient's other readable images in this table are the context
                usable = self.with_context(usable)
            raw[ok.to_numpy()] = self.predict(usable, batch_size, tta=tta)
        prob = np.full(len(df), np.nan)
        prob[ok.to_numpy()] = self.calibrate(raw[ok.to_numpy()], prevalence)
        out = pd.DataFrame({"image_name": df["image_name"], "probability": prob, "raw_probability": raw,
                            "prevalence": prevalence if prevalence is not None else self.prevalence,
                            "threshold": threshold})
        out["prediction"] = np.where(ok, (prob >= threshold).astype(int), -1)
        out["error"] = errors
        if self.uses_original_size:
            out["size_imputed"] = no_size.astype(int)
        return out
