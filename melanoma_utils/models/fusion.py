"""The two-input fusion model (the study's Table 2), Keras 3 functional API, backend-agnostic.

Named dict inputs ``image`` (float 0–255, ``(S, S, 3)``) and ``meta`` (encoded metadata). Image branch:
convolution blocks (Conv 3×3 + ReLU, BatchNorm, Dropout; 2×2 max-pooling between blocks to keep the
cost down) ending in global average pooling — or a ``keras.applications`` backbone with its own input
preprocessing. Metadata branch: Dense + ReLU, BatchNorm, Dropout blocks. Concatenation, two Dense +
ReLU, BatchNorm, Dropout blocks, a sigmoid output kept in float32 (mixed precision safe) whose bias
starts at ``log(p / (1 − p))``. ``kind`` selects fusion, image-only or metadata-only from the same builder.

Only ``keras.layers`` / ``keras.ops``: the same model runs on the TensorFlow and JAX backends.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Any, Literal, Sequence

import keras
from keras import layers, ops

from .objectives import MelanomaProbability  # (imported here: loading any saved model registers it)
from .presets import BACKBONES, OFFLINE_IMAGENET, RESOLUTION_MERGES

Kind = Literal["fusion", "image", "meta"]

_IMAGENET_MEAN = (0.485, 0.456, 0.406)
_IMAGENET_STD = (0.229, 0.224, 0.225)
_CAFFE_MEAN_BGR = (103.939, 116.779, 123.68)


@keras.saving.register_keras_serializable(package="melanoma_utils")
class BackbonePreprocess(layers.Layer):
    """Input scaling a backbone expects, from 0–255 RGB: ``caffe`` (BGR, mean-subtracted), ``tf``
    ([-1, 1]), ``torch`` ([0, 1], ImageNet mean/std), ``unit`` ([0, 1]) or ``raw`` (0–255 unchanged:
    EfficientNet rescales inside the model — dividing by 255 first silently hurts it)."""

    def __init__(self, mode: str = "unit", **kwargs: Any) -> None:
        super().__init__(**kwargs)
        if mode not in ("caffe", "tf", "torch", "unit", "raw"):
            raise ValueError(f"unknown preprocessing mode {mode!r}")
        self.mode = mode

    def call(self, x):
        x = ops.cast(x, self.compute_dtype)
        if self.mode == "caffe":
            return ops.flip(x, axis=-1) - ops.convert_to_tensor(_CAFFE_MEAN_BGR, dtype=x.dtype)
        if self.mode == "tf":
            return x / 127.5 - 1.0
        if self.mode == "torch":
            mean = ops.convert_to_tensor(_IMAGENET_MEAN, dtype=x.dtype)
            std = ops.convert_to_tensor(_IMAGENET_STD, dtype=x.dtype)
            return (x / 255.0 - mean) / std
        if self.mode == "unit":
            return x / 255.0
        return x

    def get_config(self) -> dict[str, Any]:
        return {**super().get_config(), "mode": self.mode}


def dense_block(x, units: int, dropout: float, name: str):
    """Dense + ReLU, BatchNorm, Dropout."""
    x = layers.Dense(units, activation="relu", name=f"{name}_dense")(x)
    x = layers.BatchNormalization(name=f"{name}_bn")(x)
    return layers.Dropout(dropout, name=f"{name}_drop")(x)


def conv_block(x, filters: int, dropout: float, name: str, pool: bool = True):
    """Conv 3×3 + ReLU, BatchNorm, Dropout (then 2×2 max-pooling)."""
    x = layers.Conv2D(filters, 3, padding="same", activation="relu", name=f"{name}_conv")(x)
    x = layers.BatchNormalization(name=f"{name}_bn")(x)
    x = layers.Dropout(dropout, name=f"{name}_drop")(x)
    return layers.MaxPooling2D(2, name=f"{name}_pool")(x) if pool else x


class WeightsUnavailable(ValueError):
    """Pretrained weights could not be obtained (no internet, or a bad file)."""


def build_backbone(name: str, image_size: int, weights: str | None = None) -> keras.Model:
    """An image feature extractor (no top, global average pooling): EfficientNet-Lite0/1/2 (ImageNet weights
    offline, from packages) or a ``keras.applications`` model (ImageNet weights need a download)."""
    key = name.lower()
    if key not in BACKBONES:
        raise ValueError(f"unknown backbone {name!r}; choose one of {', '.join(BACKBONES)}")
    w = None if weights in (None, "none", "None") else weights
    if key.startswith("efficientnetlite"):
        from .efficientnet_lite import WeightsFileError, efficientnet_lite

        try:
            return efficientnet_lite(key, image_size, w, include_top=False, pooling="avg")
        except WeightsFileError as exc:
            raise WeightsUnavailable(f"{key} weights: {exc}") from None
    if w not in (None, "imagenet") and not Path(w).is_file():
        raise WeightsUnavailable(f"weights file not found: {w}")
    ctor = getattr(keras.applications, BACKBONES[key][0])
    try:
        return ctor(include_top=False, weights=w, input_shape=(image_size, image_size, 3), pooling="avg")
    except Exception as exc:  # download errors surface as several exception types
        if w == "imagenet":
            raise WeightsUnavailable(
                f"could not download ImageNet weights for {name} ({type(exc).__name__}: {exc}). "
                f"Offline, use --backbone {OFFLINE_IMAGENET[0]} --backbone-weights imagenet (ImageNet weights shipped by "
                "an installed package), --backbone-weights none (random initialisation), or a local file --backbone-weights PATH.h5"
            ) from None
        raise WeightsUnavailable(f"could not load weights {w!r} for {name}: {exc}") from None


def _second_scale(backbone: str, size: int | None, weights: str | None, merge: str) -> tuple[Any, ...] | None:
    """``(resize, backbone copy, merge layer)`` of a second resolution, or ``None`` without ``size``."""
    if not size:
        return None
    if merge not in RESOLUTION_MERGES:
        raise ValueError(f"resolution_merge must be one of {', '.join(RESOLUTION_MERGES)}; got {merge!r}")
    second = build_backbone(backbone, int(size), weights)
    second.name = "backbone_2"
    merger = layers.Average if merge == "mean" else layers.Concatenate
    return (layers.Resizing(int(size), int(size), interpolation="bilinear", name="backbone_resize"), second,
            merger(name="multi_resolution"))


def _backbone_path(image, base, preprocess, second: tuple[Any, ...] | None):
    """``image -> pooled embedding``: input scaling, the backbone, and with ``second`` (:func:`_second_scale`) the
    same image resized through a second backbone copy, the two embeddings merged."""
    x = preprocess(image)
    if second is None:
        return base(x)
    resize, base_2, merge = second
    return merge([base(x), base_2(resize(x))])


def meta_branch(meta, units: Sequence[int], dropout: float):
    """The metadata MLP: Dense + ReLU, BatchNorm, Dropout blocks."""
    m = meta
    for i, u in enumerate(units):
        m = dense_block(m, u, dropout, f"meta{i + 1}")
    return m


def fusion_head(branches: list, units: Sequence[int], dropout: float, initial_bias: float | None, n_classes: int = 1,
                logits: bool = False):
    """Concatenate the branches, Dense blocks, then the float32 output: one sigmoid unit (bias = starting logit), or
    with ``n_classes`` > 1 one logit per diagnosis class (``diagnosis_logits``) followed by
    :class:`~melanoma_utils.models.objectives.MelanomaProbability` (``logits=True`` stops at the logits: what a
    diagnosis head is trained on)."""
    x = layers.Concatenate(name="fusion")(branches) if len(branches) > 1 else branches[0]
    for i, u in enumerate(units):
        x = dense_block(x, u, dropout, f"head{i + 1}")
    if n_classes == 1:
        bias = keras.initializers.Constant(0.0 if initial_bias is None else float(initial_bias))
        return layers.Dense(1, activation="sigmoid", bias_initializer=bias, dtype="float32", name="probability")(x)
    z = layers.Dense(n_classes, dtype="float32", name="diagnosis_logits")(x)
    return z if logits else MelanomaProbability(name="probability")(z)


@dataclass(frozen=True)
class ModelSpec:
    """What :func:`build_model` builds: every architecture field, with the builder's defaults
    (:meth:`melanoma_utils.models.train_config.TrainConfig.model_spec` makes one from a recipe)."""

    image_size: int | None = 128
    n_meta: int | None = 12
    kind: Kind = "fusion"
    conv_filters: Sequence[int] = (32, 64, 128, 256)
    conv_dropout: float = 0.1
    meta_units: Sequence[int] = (64, 32)
    meta_dropout: float = 0.2
    head_units: Sequence[int] = (128, 64)
    head_dropout: float = 0.3
    initial_bias: float | None = None
    backbone: str | None = None
    backbone_weights: str | None = None
    name: str | None = None
    image_dtype: str = "float32"
    n_classes: int = 1
    extra_image_size: int | None = None
    resolution_merge: str = "mean"


def build_model(spec: ModelSpec | None = None, **fields: Any) -> keras.Model:
    """Build the fusion (or image-only / metadata-only) model of ``spec`` (default :class:`ModelSpec`), any of its
    fields overridden by keyword (``build_model(kind="meta", n_meta=5)``; an unknown field is a ``TypeError``); see the
    module docstring.

    ``initial_bias`` is the output's starting logit, ``log(p / (1 − p))`` for a positive share ``p``
    (:func:`bias_for`); ``backbone`` replaces the convolution blocks with a ``keras.applications`` model.
    ``image_dtype="uint8"`` takes raw uint8 pixels (a quarter of the host-to-device traffic). ``n_classes`` > 1: a
    diagnosis head whose output is the melanoma column of its softmax (:func:`fusion_head`). ``extra_image_size``: the
    backbone also sees the image resized to this side (a second copy, ``backbone_2``), the two pooled embeddings
    merged by ``resolution_merge`` (``mean`` or ``concat``) in a layer named ``multi_resolution``.
    """
    m = replace(spec or ModelSpec(), **fields)
    if m.kind not in ("fusion", "image", "meta"):
        raise ValueError(f"kind must be fusion, image or meta; got {m.kind!r}")
    inputs: dict[str, keras.KerasTensor] = {}
    branches = []
    if m.kind in ("fusion", "image"):
        if not m.image_size:
            raise ValueError("image_size is required for image and fusion models")
        image = keras.Input((m.image_size, m.image_size, 3), name="image", dtype=m.image_dtype)
        inputs["image"] = image
        if m.backbone:
            base = build_backbone(m.backbone, m.image_size, m.backbone_weights)  # an unknown name: an error with the choices
            base.name = "backbone"
            x = _backbone_path(image, base, BackbonePreprocess(BACKBONES[m.backbone.lower()][1], name="backbone_preprocess"),
                               _second_scale(m.backbone, m.extra_image_size, m.backbone_weights, m.resolution_merge))
        else:
            x = BackbonePreprocess("unit", name="rescale")(image)
            for i, f in enumerate(m.conv_filters):
                x = conv_block(x, f, m.conv_dropout, f"img{i + 1}", pool=i < len(m.conv_filters) - 1)
            x = layers.GlobalAveragePooling2D(name="img_gap")(x)
        branches.append(x)
    if m.kind in ("fusion", "meta"):
        if not m.n_meta:
            raise ValueError("n_meta is required for metadata and fusion models")
        meta = keras.Input((m.n_meta,), name="meta")
        inputs["meta"] = meta
        branches.append(meta_branch(meta, m.meta_units, m.meta_dropout))
    out = fusion_head(branches, m.head_units, m.head_dropout, m.initial_bias, m.n_classes)
    return keras.Model(inputs=inputs, outputs=out, name=m.name or f"{m.kind}{'_' + m.backbone if m.backbone else ''}")


def build_head_model(embedding_dim: int, spec: ModelSpec | None = None, *, logits: bool = False,
                     **fields: Any) -> keras.Model:
    """Everything of :func:`build_model` after a backbone, fed with precomputed image embeddings: the head of
    ``spec`` (default :class:`ModelSpec`), any field overridden by keyword as in :func:`build_model` (its image
    fields are not used).

    Inputs ``embedding`` (the backbone's pooled output) and ``meta``; its layers carry the same names as
    the full model's, so trained weights move over with :func:`copy_head_weights`. ``n_classes``/``logits``: as in
    :func:`fusion_head` (a diagnosis head trains on its logits and predicts the melanoma probability).
    """
    m = replace(spec or ModelSpec(), **fields)
    if m.kind not in ("fusion", "image"):
        raise ValueError(f"a head on image embeddings needs kind fusion or image; got {m.kind!r}")
    emb = keras.Input((embedding_dim,), name="embedding")
    inputs = {"embedding": emb}
    branches = [emb]
    if m.kind == "fusion":
        if not m.n_meta:
            raise ValueError("n_meta is required for fusion models")
        meta = keras.Input((m.n_meta,), name="meta")
        inputs["meta"] = meta
        branches.append(meta_branch(meta, m.meta_units, m.meta_dropout))
    out = fusion_head(branches, m.head_units, m.head_dropout, m.initial_bias, m.n_classes, logits)
    return keras.Model(inputs=inputs, outputs=out, name=f"{m.kind}_head")


def copy_head_weights(source: keras.Model, target: keras.Model) -> int:
    """Copy the head's weights (metadata MLP, fusion Dense blocks, output: every weighted layer outside the
    image branch) from ``source`` to the same-named layers of ``target``; either side may be the full model
    or a :func:`build_head_model`. Returns how many layers were copied.

    Raises ``ValueError`` naming a head layer that is missing or shaped differently on the other side.
    """
    def head_layers(model: keras.Model) -> dict[str, Any]:
        return {l.name: l for l in model.layers
                if l.weights and not l.name.startswith("backbone") and not l.name.startswith("img")}

    src, dst = head_layers(source), head_layers(target)
    if set(src) != set(dst):
        raise ValueError(f"head layers differ: only in {source.name!r}: {sorted(set(src) - set(dst))}, "
                         f"only in {target.name!r}: {sorted(set(dst) - set(src))}")
    for name, layer in src.items():
        weights = layer.get_weights()
        if [w.shape for w in weights] != [tuple(w.shape) for w in dst[name].weights]:
            raise ValueError(f"layer {name!r}: shapes differ between {source.name!r} and {target.name!r}")
        dst[name].set_weights(weights)
    return len(src)


def predict_direct(model: keras.Model, inputs: dict[str, Any], chunk: int = 4096) -> Any:
    """``model``'s outputs (inference mode) for a dict of equally long arrays, by direct calls on chunks of
    ``chunk`` rows: for a small model such as a head on embeddings, cheaper than ``predict``, which traces a
    predict function for every new model (~0.4 s on a CPU, longer than the whole forward pass). Returns a NumPy
    array with one row per input row."""
    import numpy as np

    n = len(next(iter(inputs.values())))
    parts = [ops.convert_to_numpy(model({k: v[start:start + chunk] for k, v in inputs.items()}, training=False))
             for start in range(0, n, chunk)]
    return np.concatenate(parts) if parts else np.empty((0, *model.output.shape[1:]), np.float32)


def image_encoder(model: keras.Model) -> keras.Model:
    """``image (0–255) -> pooled backbone embedding`` of a model built with ``backbone=``: its input scaling
    layer and its backbone, sharing their weights (what the cached embeddings hold)."""
    base = model.get_layer("backbone")
    size = tuple(base.input.shape[1:])
    image = keras.Input(size, name="image")
    return keras.Model(image, _backbone_path(image, base, model.get_layer("backbone_preprocess"),
                                             second_scale_layers(model)), name="image_encoder")


def second_scale_layers(model: keras.Model) -> tuple[Any, Any, Any] | None:
    """``(resize, backbone copy, merge layer)`` of a model built with ``extra_image_size``, else ``None``."""
    if "multi_resolution" not in {l.name for l in model.layers}:
        return None
    return tuple(model.get_layer(n) for n in ("backbone_resize", "backbone_2", "multi_resolution"))  # type: ignore[return-value]


def embedding_dim(model: keras.Model) -> int:
    """The width of the image embedding the head of ``model`` (built with ``backbone=``) takes: the backbone's pooled
    output, or a multi-resolution branch's merged one."""
    second = second_scale_layers(model)
    return int((second[2] if second else model.get_layer("backbone")).output.shape[-1])


def bias_for(positive_fraction: float) -> float:
    """``log(p / (1 − p))``: the output bias that makes the untrained model predict the base rate."""
    if not 0 < positive_fraction < 1:
        raise ValueError(f"positive fraction must be in (0, 1); got {positive_fraction}")
    return math.log(positive_fraction / (1 - positive_fraction))


def backbone_layer(model: keras.Model) -> keras.Model | None:
    """The backbone sub-model of a model built with ``backbone=``, else ``None``."""
    try:
        return model.get_layer("backbone")
    except ValueError:
        return None
