"""Names of the ``keras.applications`` backbones and the input scaling each expects (no Keras import)."""

from __future__ import annotations

#: keras.applications backbones: name -> (constructor name, input preprocessing mode).
BACKBONES: dict[str, tuple[str, str]] = {
    "vgg16": ("VGG16", "caffe"),
    "resnet50": ("ResNet50", "caffe"),
    "mobilenetv2": ("MobileNetV2", "tf"),
    "densenet121": ("DenseNet121", "torch"),
    **{f"efficientnetb{i}": (f"EfficientNetB{i}", "raw") for i in range(8)},
}
