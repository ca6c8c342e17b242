"""Models and backbones: the two-input Keras model, the image backbones (EfficientNet-Lite with offline
ImageNet weights), cached embeddings, metadata features and ``TrainConfig``, the one place defaults are decided.

Modules: ``context``, ``efficientnet_lite``, ``embeddings``, ``features``, ``fusion``, ``objectives``, ``partial``, ``presets``, ``torch_legacy``, ``train_config``, ``train_options``.
Layers (imports only run leftwards): config/atomic/versions < data < pipeline < evaluation < models < runs < study < reports < cli.
"""

# the principal module's names, loaded on first use (``from melanoma_utils.models import ...`` keeps working without
# importing what the package's lighter modules do not need)
from ..lazy import reexport

__all__ = [
    "BACKBONES",
    "OFFLINE_IMAGENET",
    "BackbonePreprocess",
    "Kind",
    "WeightsUnavailable",
    "backbone_layer",
    "bias_for",
    "build_backbone",
    "build_head_model",
    "build_model",
    "conv_block",
    "copy_head_weights",
    "dense_block",
    "fusion_head",
    "image_encoder",
    "meta_branch",
]

__getattr__, __dir__ = reexport(__name__, ".fusion", __all__)
