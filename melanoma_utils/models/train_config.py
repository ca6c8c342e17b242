"""The training recipe, :class:`TrainConfig`: THE place where training defaults are decided and values normalised
(re-exported by :mod:`melanoma_utils.runs.run`). Resolved once, when it is made, and frozen after: nothing downstream
fills in or changes a field. Its parts are typed, frozen views that the code needing them takes instead of the whole
recipe: what the model is (:data:`MODEL_FIELDS`, :meth:`TrainConfig.model_spec`), what it is fed (:class:`DataSpec`,
``cfg.data``), how it is fitted (:class:`FitSpec`, ``cfg.fit``) and where it runs (:class:`RuntimeSpec`,
``cfg.runtime``); ``TrainConfig`` stays the one flat record a run folder saves, so an old ``config.json`` gives the
same parts. A new field goes into the recipe and into one part, here (a test fails otherwise). Its command-line
options are a table of their own (:mod:`.train_options`). Imports no Keras or TensorFlow, no argparse."""

from __future__ import annotations

from dataclasses import MISSING, dataclass, field, fields
from pathlib import Path
from typing import Any, ClassVar

from ..data.confounds import SOURCE_WEIGHTINGS
from ..data.diagnoses import OBJECTIVES, n_outputs
from ..pipeline.transforms import preprocess_config
from .features import check_feature_set
from .presets import BACKBONES, OFFLINE_IMAGENET, RESOLUTION_MERGES, default_image_size, get_preset

#: Fine-tuning after the cached-embedding head: which backbone layers become trainable.
FINETUNE_MODES: tuple[str, ...] = ("none", "top", "all")
#: Fine-tuning's learning rate over its steps: constant, or a cosine decay to 0 (resumes where it stopped: the step
#: count is part of the optimizer state a resumed run restores).
FINETUNE_SCHEDULES: tuple[str, ...] = ("constant", "cosine", "warmup-cosine")
#: How training uses devices (see :func:`melanoma_utils.runs.training.make_distribution`).
STRATEGIES: tuple[str, ...] = ("auto", "one", "mirrored", "multiworker", "tpu")
#: Which inputs a model takes.
KINDS: tuple[str, ...] = ("fusion", "image", "meta")
#: Test-time augmentation: how many dihedral views may be averaged per image.
TTA_VIEWS: tuple[int, ...] = tuple(range(1, 9))
#: Keras fit verbosity: 0 silent, 1 a progress bar, 2 one line per epoch.
VERBOSITY: tuple[int, ...] = (0, 1, 2)


#: ``backbone_weights`` default: ImageNet where the weights ship offline (EfficientNet-Lite), else random init.
AUTO = "auto"
#: The largest ``image_size`` accepted (px): beyond it one batch of decoded images no longer fits a workstation.
MAX_IMAGE_SIZE = 1024


@dataclass(frozen=True)
class DataSpec:
    """What a run is fed (resolved: ``image_size`` is the side in pixels): :attr:`TrainConfig.data`."""

    features: str
    image_size: int
    preprocess: str
    augment: bool
    augment_config: dict[str, Any]
    source_column: str | None
    source_weighting: str
    val_fraction: float
    embedding_views: int
    tta: int
    cache: str | None


@dataclass(frozen=True)
class FitSpec:
    """How a run's parameters are fitted, stage by stage (the head, the end-to-end or fine-tuning stage, the adapted
    blocks): :attr:`TrainConfig.fit`."""

    objective: str
    batch_size: int
    epochs: int
    learning_rate: float
    patience: int
    class_weighting: bool
    seed: int
    head_learning_rate: float
    freeze_epochs: int
    finetune: str
    finetune_epochs: int
    finetune_learning_rate: float
    finetune_schedule: str
    label_smoothing: float
    adapt_blocks: int
    adapt_epochs: int
    adapt_learning_rate: float


@dataclass(frozen=True)
class RuntimeSpec:
    """Where and how loudly a run trains, and how its validation is reported: :attr:`TrainConfig.runtime`."""

    mixed_precision: str
    strategy: str
    verbose: int
    min_sensitivity: float
    n_boot: int


#: The fields of :class:`TrainConfig` that describe the model itself (its :meth:`TrainConfig.model_spec`); every other
#: field belongs to exactly one of :class:`DataSpec`, :class:`FitSpec` and :class:`RuntimeSpec` (a test checks it).
MODEL_FIELDS: tuple[str, ...] = ("kind", "backbone", "backbone_weights", "frozen_features", "conv_filters",
                                 "conv_dropout", "meta_units", "head_units", "head_dropout", "extra_image_size",
                                 "resolution_merge")


@dataclass(frozen=True)
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
    # a grouping that is not the lesion (data.confounds): auto = source_copy where the data has it; none; a column;
    # camera (original image size); source (the data set). source_weighting removes its label information
    source_column: str | None = "auto"
    # auto | none | balanced | drop_single_class (data.confounds.SOURCE_WEIGHTINGS). auto: balanced when the training
    # rows are the data set's own, none with external data: what notebook 03's selection found within copy a
    source_weighting: str = "auto"
    preprocess: str = "none"  # a melanoma_utils.pipeline.transforms.PREPROCESSORS name
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
    # binary (melanoma vs rest, the study's sigmoid) | diagnosis | diagnosis-masked (data.diagnoses.OBJECTIVES): a
    # diagnosis head is trained on the diagnosis classes and outputs the melanoma column of its softmax
    objective: str = "binary"
    backbone: str | None = "efficientnetlite0"  # a backbones.BACKBONES name; None or "cnn": the study's CNN
    backbone_weights: str | None = AUTO  # None | "imagenet" | a local weights file; "auto": see the class docstring
    freeze_epochs: int = 0  # end-to-end path (frozen_features off): epochs with the backbone frozen, then fine-tune
    finetune_learning_rate: float = 1e-5
    frozen_features: bool = True  # with pretrained weights: train the head on cached backbone embeddings
    embedding_views: int = 8  # dihedral views (rotations/mirrors) cached per image for the head's training
    head_learning_rate: float = 1e-3  # Adam learning rate of the head trained on cached embeddings
    finetune: str = "none"  # after the cached-embedding head: none | top (last blocks) | all
    finetune_epochs: int = 2
    finetune_schedule: str = "constant"  # constant | cosine | warmup-cosine (FINETUNE_SCHEDULES)
    label_smoothing: float = 0.0  # fine-tuning's binary cross-entropy: targets pulled this far toward 1/2
    # partial fine-tuning on a CPU (models.partial): after the head, train the backbone's last adapt_blocks MBConv
    # blocks + its head conv + the head on cached activations entering them (0: off; EfficientNet-Lite only)
    adapt_blocks: int = 0
    # multi-resolution (frozen backbone only): a second backbone copy also sees the image resized to this side (e.g.
    # image_size 320 + extra_image_size 224), the two pooled embeddings merged by resolution_merge (mean | concat)
    extra_image_size: int | None = None
    resolution_merge: str = "mean"
    adapt_epochs: int = 5
    adapt_learning_rate: float = 1e-4
    tta: int = 1  # test-time augmentation: dihedral views averaged for validation and, by default, prediction
    cache: str | None = "memory"  # "memory", a file prefix, or None
    mixed_precision: str = "auto"  # auto (on GPU only) | on | off
    strategy: str = "auto"  # auto | one | mirrored | multiworker | tpu (batch_size is per replica)
    verbose: int = 1  # Keras fit verbosity (VERBOSITY): 0 silent, 1 a progress bar, 2 one line per epoch
    n_boot: int = 200  # patient-bootstrap resamples of the run's validation report (single runs and ensembles)

    @classmethod
    def default(cls, name: str) -> Any:
        """The default of field ``name`` (for help texts that state it without repeating it)."""
        f = next(f for f in fields(cls) if f.name == name)
        return f.default_factory() if f.default_factory is not MISSING else f.default  # type: ignore[misc]

    @classmethod
    def from_preset(cls, name: str, **overrides: Any) -> "TrainConfig":
        """The configuration of preset ``name`` (:mod:`melanoma_utils.models.presets`) with ``overrides`` on top; an
        unknown preset or field is a ``ValueError`` naming the known ones."""
        unknown = sorted(set(overrides) - {f.name for f in fields(cls)})
        if unknown:
            raise ValueError(f"unknown TrainConfig field(s) {', '.join(unknown)}; known: "
                             f"{', '.join(f.name for f in fields(cls))}")
        return cls(**{**get_preset(name).fields, **overrides})

    def preset_overrides(self, name: str) -> dict[str, Any]:
        """The fields of this configuration that differ from preset ``name``'s (what a parameter file naming that
        preset must state), compared after normalisation."""
        base = type(self).from_preset(name)
        return {f.name: getattr(self, f.name) for f in fields(self) if getattr(self, f.name) != getattr(base, f.name)}

    def _set(self, name: str, value: Any) -> None:
        """Resolve field ``name`` while the configuration is being made (frozen afterwards)."""
        object.__setattr__(self, name, value)

    def _normalise(self) -> None:
        b = self.backbone if self.kind != "meta" else None  # a metadata-only model has no image branch
        if self.kind == "meta":
            self._set("backbone_weights", None)
        self._set("backbone", None if b is None or str(b).strip().lower() in ("", "cnn", "none") else str(b).strip().lower())
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
        self._set("backbone_weights", w)
        self._set("image_size", default_image_size(self.backbone) if self.image_size is None else int(self.image_size))
        if self.cache is not None and str(self.cache).strip().lower() in ("", "none"):
            self._set("cache", None)
        if self.source_column is not None and str(self.source_column).strip().lower() in ("", "none"):
            self._set("source_column", None)

    def __post_init__(self) -> None:
        self._normalise()
        if self.kind not in KINDS:
            raise ValueError(f"kind must be one of {', '.join(KINDS)}; got {self.kind!r}")
        check_feature_set(self.features)
        if self.source_weighting not in SOURCE_WEIGHTINGS:
            raise ValueError(f"source_weighting must be one of {', '.join(SOURCE_WEIGHTINGS)}; got {self.source_weighting!r}")
        preprocess_config(self.preprocess)
        for name in ("image_size", "batch_size", "epochs", "n_boot"):
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
        for name in ("learning_rate", "head_learning_rate", "finetune_learning_rate", "adapt_learning_rate"):
            if not float(getattr(self, name)) > 0:
                raise ValueError(f"{name} must be > 0; got {getattr(self, name)}")
        if int(self.freeze_epochs) < 0 or int(self.finetune_epochs) < 0:
            raise ValueError("freeze_epochs and finetune_epochs must be >= 0")
        if self.finetune not in FINETUNE_MODES:
            raise ValueError(f"finetune must be one of {', '.join(FINETUNE_MODES)}; got {self.finetune!r}")
        if self.finetune_schedule not in FINETUNE_SCHEDULES:
            raise ValueError(f"finetune_schedule must be one of {', '.join(FINETUNE_SCHEDULES)}; got {self.finetune_schedule!r}")
        if not 0 <= float(self.label_smoothing) < 0.5:
            raise ValueError(f"label_smoothing must be in [0, 0.5); got {self.label_smoothing}")
        if int(self.tta) not in TTA_VIEWS:
            raise ValueError(f"tta must be in {TTA_VIEWS[0]}..{TTA_VIEWS[-1]}; got {self.tta}")
        if int(self.verbose) not in VERBOSITY:
            raise ValueError(f"verbose must be one of {', '.join(map(str, VERBOSITY))}; got {self.verbose}")
        if self.strategy not in STRATEGIES:
            raise ValueError(f"strategy must be one of {', '.join(STRATEGIES)}; got {self.strategy!r}")
        if int(self.adapt_blocks) < 0 or int(self.adapt_epochs) < 1:
            raise ValueError(f"adapt_blocks must be >= 0 and adapt_epochs >= 1; got {self.adapt_blocks}, {self.adapt_epochs}")
        if int(self.adapt_blocks) and not (self.uses_cached_embeddings and self.finetune == "none"
                                           and str(self.backbone).startswith("efficientnetlite")):
            raise ValueError("adapt_blocks trains the last blocks of a frozen EfficientNet-Lite backbone on cached "
                             "activations: it needs backbone efficientnetlite0/1/2 with its weights, the cached-embedding "
                             "head (no --end-to-end) and --finetune none")
        self._check_multi_resolution()
        if self.objective not in OBJECTIVES:
            raise ValueError(f"objective must be one of {', '.join(OBJECTIVES)}; got {self.objective!r}")
        if self.objective != "binary" and not (self.uses_cached_embeddings and self.finetune == "none"):
            raise ValueError(f"objective {self.objective!r} trains a head on cached embeddings of a frozen pretrained "
                             "backbone (kind fusion or image, backbone weights, no --end-to-end, --finetune none); use "
                             "objective binary for the other models")
        if not 1 <= int(self.embedding_views) <= 8:
            raise ValueError(f"embedding_views must be in 1..8; got {self.embedding_views}")
        self._set("augment_config", dict(self.augment_config))  # its own copy: the caller's dict stays the caller's
        self._set("conv_filters", tuple(self.conv_filters))
        self._set("meta_units", tuple(self.meta_units))
        self._set("head_units", tuple(self.head_units))

    def _check_multi_resolution(self) -> None:
        if self.resolution_merge not in RESOLUTION_MERGES:
            raise ValueError(f"resolution_merge must be one of {', '.join(RESOLUTION_MERGES)}; got {self.resolution_merge!r}")
        if self.extra_image_size in (None, 0, "none", "None", ""):
            self._set("extra_image_size", None)
            return
        self._set("extra_image_size", int(self.extra_image_size))  # type: ignore[arg-type]
        if not self.min_image_size <= self.extra_image_size <= MAX_IMAGE_SIZE or self.extra_image_size == self.image_size:
            raise ValueError(f"extra_image_size must differ from image_size ({self.image_size}) and lie in "
                             f"{self.min_image_size}..{MAX_IMAGE_SIZE} px; got {self.extra_image_size}")
        if not self.backbone_unchanged:
            raise ValueError("extra_image_size (multi-resolution) merges the embeddings of a frozen pretrained backbone at "
                             "two sizes: it needs kind fusion or image, a backbone with its weights, the cached-embedding "
                             "head (no --end-to-end), --finetune none and --adapt-blocks 0")

    @property
    def embedding_output(self) -> str:
        """What the cached embeddings of this configuration hold (part of their cache key,
        :func:`melanoma_utils.models.embeddings.config_key`): ``pooled``, or the merged multi-resolution embedding."""
        if self.extra_image_size is None:
            return "pooled"
        return f"pooled-with-{self.extra_image_size}px-{self.resolution_merge}"

    def model_spec(self, n_meta: int | None, initial_bias: float | None = None) -> Any:
        """The :class:`~melanoma_utils.models.fusion.ModelSpec` of this configuration (the one place that maps
        configuration fields onto the builder)."""
        from .fusion import ModelSpec

        return ModelSpec(image_size=self.image_size if self.uses_images else None,
                         n_meta=n_meta if self.uses_meta else None, kind=self.kind, conv_filters=self.conv_filters,
                         conv_dropout=self.conv_dropout, meta_units=self.meta_units, head_units=self.head_units,
                         head_dropout=self.head_dropout, initial_bias=initial_bias, backbone=self.backbone,
                         backbone_weights=self.backbone_weights, n_classes=n_outputs(self.objective),
                         extra_image_size=self.extra_image_size, resolution_merge=self.resolution_merge)

    def embedding_spec(self, preprocess: dict[str, Any], views: int | None = None) -> Any:
        """The :class:`~melanoma_utils.models.embeddings.EmbeddingSpec` of this configuration's frozen backbone for
        ``preprocess`` (the resolved preprocessing) and ``views`` (default: ``embedding_views``, the training's; a
        prediction passes its TTA): the one place that maps configuration fields onto the embedding cache."""
        from .embeddings import EmbeddingSpec

        return EmbeddingSpec(str(self.backbone), self.backbone_weights, int(self.image_size), preprocess,  # type: ignore[arg-type]
                             self.embedding_views if views is None else views, self.embedding_output)

    def _spec(self, cls: type) -> Any:
        values = {f.name: getattr(self, f.name) for f in fields(cls)}
        return cls(**{k: dict(v) if isinstance(v, dict) else v for k, v in values.items()})  # a dict: the part's own copy

    @property
    def data(self) -> DataSpec:
        """What the run is fed (:class:`DataSpec`)."""
        return self._spec(DataSpec)

    @property
    def fit(self) -> FitSpec:
        """How the run is fitted (:class:`FitSpec`)."""
        return self._spec(FitSpec)

    @property
    def runtime(self) -> RuntimeSpec:
        """Devices, verbosity and the validation report (:class:`RuntimeSpec`)."""
        return self._spec(RuntimeSpec)

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
    def backbone_unchanged(self) -> bool:
        """Whether the trained model keeps its pretrained backbone exactly as loaded: the cached-embedding head with no
        fine-tuning and no adapted block."""
        return self.uses_cached_embeddings and self.finetune == "none" and not int(self.adapt_blocks)

    @property
    def uses_meta(self) -> bool:
        """Whether the model has a metadata input."""
        return self.kind in ("fusion", "meta")

    __hash__ = None  # type: ignore[assignment]  (frozen, but it holds a dict: not usable as a key)

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
