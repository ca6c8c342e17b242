"""The parts of a training recipe (:class:`~melanoma_utils.models.train_config.TrainConfig`), each a frozen, resolved
record that the code needing it takes instead of the whole recipe: what the model is (:data:`MODEL_FIELDS`, built by
:meth:`~melanoma_utils.models.train_config.TrainConfig.model_spec`), what it is fed (:class:`DataSpec`), how it is fitted
(:class:`FitSpec`) and where it runs (:class:`RuntimeSpec`). ``TrainConfig`` stays the one flat record a run folder
saves (``config.json``) and the one place defaults are decided; these are its views (``cfg.data``, ``cfg.fit``,
``cfg.runtime``), so an old run folder's configuration gives the same specs. Imports nothing of the package."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any


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
