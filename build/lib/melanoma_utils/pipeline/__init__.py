"""Transforms and pipelines: decoding images into arrays, the paper's transforms, training augmentation, skin
colour, and the feeds ``fit`` consumes (tf.data, or a NumPy sequence for JAX). Image files and TFRecord shards are
the data layer's (:mod:`melanoma_utils.data.imagefiles`, :mod:`melanoma_utils.data.shards`).

Modules: ``augment``, ``feeds``, ``skin``, ``transforms``.
Layers (imports only run leftwards): config/atomic/versions < data < pipeline < evaluation < models < runs < study < reports < cli.
"""

# the principal module's names, loaded on first use (``from melanoma_utils.pipeline import ...`` keeps working without
# importing what the package's lighter modules do not need)
from ..lazy import reexport

__all__ = [
    "EpochClock",
    "crop_resize_tensor",
    "decode_and_resize",
    "decode_image_tensor",
    "image_batches",
    "load_image_array",
    "make_array_sequence",
    "make_dataset",
    "make_embedding_sequence",
    "make_feed",
    "preprocess_batch",
    "preprocess_config",
]

__getattr__, __dir__ = reexport(__name__, ".feeds", __all__)
