"""Training-time augmentation (the study's Fig 13) from Keras 3 preprocessing layers.

:func:`build_augmenter` returns one :class:`Augmenter` layer: random crop (then resized back), colour
jitter (brightness, contrast, saturation, hue), random grayscale, horizontal and vertical flips and
random transposition (with the flips: every 90° rotation and mirror — dermoscopy has no canonical
orientation). It works on one image ``(H, W, 3)`` or a batch, in a ``tf.data`` ``map`` (TensorFlow) or
inside a model (any Keras backend). It is the identity at inference (``training=False``), takes and
returns values in 0–255 (float32), and is seeded.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass
from typing import Any

import keras
from keras import ops


@dataclass(frozen=True)
class AugmentConfig:
    """Augmentation strengths (0 disables one); saved with a run."""

    crop_fraction: float = 0.85  # random crop of this fraction of the side, resized back
    brightness: float = 0.2
    contrast: float = 0.2
    saturation: float = 0.2
    hue: float = 0.05
    grayscale_probability: float = 0.1
    flips: bool = True
    transpose: bool = True  # with flips: all 90° rotations

    def to_dict(self) -> dict[str, Any]:
        """JSON-serialisable form."""
        return asdict(self)


@keras.saving.register_keras_serializable(package="melanoma_utils")
class RandomTranspose(keras.layers.Layer):
    """Swap height and width with probability ½ (square images); identity at inference."""

    def __init__(self, seed: int | None = None, **kwargs: Any) -> None:
        super().__init__(**kwargs)
        self.seed = seed
        self.seed_generator = keras.random.SeedGenerator(seed)

    def call(self, images, training=None):
        if not training:
            return images
        batched = len(images.shape) == 4
        x = images if batched else ops.expand_dims(images, 0)
        flip = keras.random.uniform((ops.shape(x)[0], 1, 1, 1), seed=self.seed_generator) < 0.5
        out = ops.where(flip, ops.transpose(x, (0, 2, 1, 3)), x)
        return out if batched else out[0]

    def get_config(self) -> dict[str, Any]:
        return {**super().get_config(), "seed": self.seed}


@keras.saving.register_keras_serializable(package="melanoma_utils")
class Augmenter(keras.layers.Layer):
    """The augmentation pipeline; identity unless ``training`` is true."""

    def __init__(self, image_size: int, config: dict[str, Any] | None = None, seed: int = 0, **kwargs: Any) -> None:
        super().__init__(**kwargs)
        self.image_size = int(image_size)
        self.config = AugmentConfig(**(config or {}))
        self.seed = int(seed)
        c = self.config
        layers: list[keras.layers.Layer] = []
        if 0 < c.crop_fraction < 1:
            crop = max(1, int(round(self.image_size * c.crop_fraction)))
            layers += [keras.layers.RandomCrop(crop, crop, seed=seed), keras.layers.Resizing(self.image_size, self.image_size)]
        if c.flips:
            layers.append(keras.layers.RandomFlip("horizontal_and_vertical", seed=seed + 1))
        if c.transpose:
            layers.append(RandomTranspose(seed=seed + 2))
        if any((c.brightness, c.contrast, c.saturation, c.hue)):
            layers.append(
                keras.layers.RandomColorJitter(
                    value_range=(0, 255),
                    brightness_factor=c.brightness or None,
                    contrast_factor=c.contrast or None,
                    saturation_factor=(max(0.0, 0.5 - c.saturation / 2), min(1.0, 0.5 + c.saturation / 2)) if c.saturation else None,
                    hue_factor=c.hue or None,
                    seed=seed + 3,
                )
            )
        if c.grayscale_probability > 0:
            layers.append(keras.layers.RandomGrayscale(factor=c.grayscale_probability, seed=seed + 4))
        self.layers_ = layers

    def call(self, images, training=None):
        if not training:
            return images
        x = ops.cast(images, "float32")
        for layer in self.layers_:
            x = layer(x, training=True)
        return ops.clip(x, 0.0, 255.0)

    def compute_output_shape(self, input_shape):
        return input_shape

    def get_config(self) -> dict[str, Any]:
        return {**super().get_config(), "image_size": self.image_size, "config": self.config.to_dict(), "seed": self.seed}


def build_augmenter(image_size: int, seed: int = 0, **strengths: Any) -> Augmenter:
    """The training augmentation for ``image_size`` px images; ``strengths`` override :class:`AugmentConfig`."""
    return Augmenter(image_size, AugmentConfig(**strengths).to_dict(), seed=seed)
