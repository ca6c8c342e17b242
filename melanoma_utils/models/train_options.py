"""The command-line options of :class:`~melanoma_utils.models.train_config.TrainConfig`, as one table
(:data:`TRAIN_OPTIONS`: each field's flag, description, choices and parser, from which ``train`` builds its arguments)
and the fields left off the command line (:data:`NOT_ON_THE_COMMAND_LINE`). Imports no argparse: the CLI reads it."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from ..data.confounds import COPIES_CSV, SOURCE_WEIGHTINGS
from ..data.diagnoses import OBJECTIVES
from ..pipeline.transforms import PREPROCESSORS
from .features import FEATURE_SETS
from .presets import BACKBONES, RESOLUTION_MERGES
from .train_config import FINETUNE_MODES, FINETUNE_SCHEDULES, KINDS, MAX_IMAGE_SIZE, STRATEGIES, TTA_VIEWS, VERBOSITY


@dataclass(frozen=True)
class Option:
    """One command-line option of a TrainConfig field.

    ``check`` names the value's parser (``positive_int``, ``nonneg_int``, ``positive_float``, ``fraction``,
    ``sensitivity``, ``int``, ``str``); ``switch_off`` makes it a flag that sets the field to ``False``
    (``--no-augment``); ``aliases`` are older spellings that still work; ``default_text`` replaces the stated default
    where the default is resolved later (``image_size``)."""

    field: str
    help: str
    check: str = "str"
    choices: tuple[Any, ...] | None = None
    flag: str | None = None
    switch_off: bool = False
    aliases: tuple[str, ...] = ()
    metavar: str | None = None
    default_text: str | None = None

    @property
    def flags(self) -> tuple[str, ...]:
        """The option's spellings, the current one first."""
        return (self.flag or "--" + self.field.replace("_", "-"), *self.aliases)


TRAIN_OPTIONS: tuple[Option, ...] = (
    Option("kind", "which inputs the model takes: images and metadata (fusion), images only, metadata only",
           choices=KINDS),
    Option("features", "metadata feature set", choices=tuple(sorted(FEATURE_SETS))),
    Option("image_size", f"side in px; at most {MAX_IMAGE_SIZE}", check="positive_int",
           default_text="the backbone's ImageNet resolution: efficientnetlite0/1/2 224/240/260 px; 128 for the study's CNN"),
    Option("epochs", "training epochs at most (early stopping ends sooner)", check="positive_int"),
    Option("batch_size", "images per step (per replica with several devices)", check="positive_int"),
    Option("learning_rate", "Adam learning rate of end-to-end training (the study's CNN)", check="positive_float"),
    Option("patience", "early-stopping patience in epochs", check="positive_int"),
    Option("val_fraction", "share of the patients held out for validation, in (0, 1)", check="fraction"),
    Option("min_sensitivity", "validation sensitivity the threshold must reach, in (0, 1]", check="sensitivity"),
    Option("preprocess", "image preprocessing before the model", choices=tuple(sorted(PREPROCESSORS))),
    Option("augment", "train without augmentation", flag="--no-augment", switch_off=True),
    Option("class_weighting", "train without class weights (w = 1/n per class)", flag="--no-class-weights",
           switch_off=True),
    Option("source_column", "a grouping that is not the lesion, whose label information --source-weighting removes: a "
                            "metadata column (e.g. source_copy, clinic), camera (original image size) or source (the "
                            f"data set); none; auto: source_copy where the data has it, read from --source-csv or a "
                            f"{COPIES_CSV} beside the CSV", metavar="COLUMN"),
    Option("source_weighting", "balanced: every group of --source-column gets the same malignant share (a group of one "
                               "class is left out); drop_single_class: groups of one class left out, no reweighting; "
                               "sources: every group (copy, external data set; the data sets where there is no copy "
                               "column) the same total weight, its malignant share kept; "
                               "auto: balanced without --external, none with it (what notebook 03's selection found "
                               "within copy a)", choices=SOURCE_WEIGHTINGS),
    Option("objective", "what the model learns: binary (melanoma vs the rest, the study's); diagnosis (the diagnosis "
                        "classes, unknown one of them; the melanoma probability is read from the softmax); "
                        "diagnosis-masked (unknown-diagnosis rows only push the melanoma probability down); the "
                        "diagnosis objectives need a frozen pretrained backbone", choices=OBJECTIVES),
    Option("backbone", "image branch: ImageNet weights shipped offline for efficientnetlite0/1/2 (frozen, head trained "
                       "on cached embeddings); cnn: the study's CNN from scratch; or a keras.applications model",
           choices=("cnn", *sorted(BACKBONES))),
    Option("backbone_weights", "backbone weights: none | imagenet | PATH.h5", aliases=("--weights",),
           default_text="imagenet for efficientnetlite0/1/2, else none"),
    Option("finetune", "with pretrained weights: after training the head on cached embeddings, fine-tune the "
                       "backbone's last stage (top) or all of it", choices=FINETUNE_MODES),
    Option("finetune_epochs", "epochs of --finetune", check="positive_int"),
    Option("finetune_learning_rate", "learning rate of --finetune", check="positive_float"),
    Option("finetune_schedule", "learning rate over --finetune's steps: constant; cosine (decays to 0); or "
                                "warmup-cosine (rises from 0 over the first fine-tuning epoch, then decays to 0)",
           choices=FINETUNE_SCHEDULES),
    Option("label_smoothing", "--finetune's binary cross-entropy with targets pulled this far toward 1/2, in [0, 0.5)",
           check="fraction"),
    Option("adapt_blocks", "partial fine-tuning a CPU affords: after the head, train the backbone's last N MBConv "
                           "blocks, its head conv and the head on cached activations (0: off; EfficientNet-Lite)",
           check="nonneg_int"),
    Option("adapt_epochs", "epochs of --adapt-blocks (early stopping on validation loss)", check="positive_int"),
    Option("adapt_learning_rate", "learning rate of --adapt-blocks", check="positive_float"),
    Option("extra_image_size", "multi-resolution: a second copy of the frozen backbone also sees each image resized to "
                               "this side (e.g. --image-size 320 --extra-image-size 224), the two embeddings merged by "
                               "--resolution-merge", check="positive_int", default_text="none"),
    Option("resolution_merge", "how --extra-image-size merges the two embeddings: mean, or concat (a head twice as wide)",
           choices=RESOLUTION_MERGES),
    Option("head_learning_rate", "learning rate of the head trained on cached embeddings", check="positive_float"),
    Option("embedding_views", "dihedral views (rotations/mirrors) of each image cached for the head's training",
           check="int", choices=tuple(range(1, 9)), metavar="1..8"),
    Option("tta", "test-time augmentation for the validation predictions (threshold) and, by default, for predict: "
                  "views averaged per image (8: ~+0.007 validation AUC, 8x slower prediction)", check="int",
           choices=TTA_VIEWS),
    Option("frozen_features", "with pretrained weights: train on decoded images end to end (GPU) instead of cached "
                              "embeddings", flag="--end-to-end", switch_off=True),
    Option("freeze_epochs", "--end-to-end: epochs with the backbone frozen first", check="nonneg_int"),
    Option("cache", "memory | none | a file prefix for large sets"),
    Option("strategy", "devices: auto (several GPUs: mirrored), one, mirrored (tf.distribute over GPUs/CPUs; JAX: "
                       "DataParallel), multiworker (TF_CONFIG; the chief writes --out), tpu; --batch-size is per "
                       "replica, learning rates scale with the replicas", choices=STRATEGIES),
    Option("seed", "drives Python, NumPy and Keras", check="int"),
    Option("n_boot", "patient-bootstrap resamples of the validation report", check="positive_int"),
    Option("verbose", "Keras progress: 0 silent, 1 a progress bar, 2 one line per epoch", check="int",
           choices=VERBOSITY),
)

#: TrainConfig fields the command line leaves at their preset's value (architecture details and nested settings):
#: set them in Python (``TrainConfig.from_preset(name, **fields)``) or a parameter file's ``train_overrides``.
NOT_ON_THE_COMMAND_LINE: tuple[str, ...] = ("augment_config", "conv_filters", "conv_dropout", "meta_units",
                                            "head_units", "head_dropout", "mixed_precision")
