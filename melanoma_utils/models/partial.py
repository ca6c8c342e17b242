"""Partial fine-tuning that a CPU can afford: the frozen start of an EfficientNet-Lite backbone computes each image's
activations once (cached like the embeddings, :mod:`melanoma_utils.models.embeddings`), and only the backbone's last
MBConv block(s), its head convolution and the study's head are trained on them.

* :func:`block_input_layer` — where a trunk is cut (the first layer of a block); :func:`first_adapted_block` — which
  block, for ``adapt_blocks``;
* :func:`trunk_model` — image (0–255) -> the activations entering block ``start`` (the frozen part);
* :func:`build_lite_top` — the backbone from block ``start`` on, with the full backbone's layer names;
* :func:`copy_layers_by_name` — weights between the top and the full backbone.

``top(trunk(x))`` is the full backbone's output (a test holds them equal to 1e-4), so after training the top's
weights go back into the full two-input model and the run folder stays one model that takes images.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from .efficientnet_lite import head_conv, lite_blocks, mbconv_blocks

if TYPE_CHECKING:
    from .embeddings import EmbeddingSpec


def block_input_layer(variant: str, block: int) -> str:
    """The name of the first layer of MBConv block ``block``: its input is the block's input (what a trunk cut before
    the block outputs)."""
    blocks = lite_blocks(variant)
    if not 0 <= block < len(blocks):
        raise ValueError(f"{variant} has MBConv blocks 0..{len(blocks) - 1}; got {block}")
    return f"block{block}_expand_conv" if blocks[block][2] != 1 else f"block{block}_dwconv"


def first_adapted_block(variant: str, adapt_blocks: int) -> int:
    """The first MBConv block of ``variant`` that ``adapt_blocks`` (its last blocks) trains: where the trunk is cut.
    More blocks than the variant has is a ``ValueError`` naming its count."""
    n = len(lite_blocks(variant))
    if not 0 < int(adapt_blocks) <= n:
        raise ValueError(f"adapt_blocks {adapt_blocks} is not in 1..{n} ({variant} has {n} MBConv blocks)")
    return n - int(adapt_blocks)


def build_lite_top(variant: str, start: int, input_shape: tuple[int, int, int], name: str = "backbone_top"):
    """The backbone from MBConv block ``start`` on: blocks ``start``.., the head convolution and global average
    pooling, taking the activations that enter block ``start`` (``input_shape``: ``(h, w, channels)``). Its layers
    carry the full backbone's names, so weights move between the two by name (:func:`copy_layers_by_name`)."""
    import keras
    from keras import layers

    block_input_layer(variant, start)  # a block number outside the variant is an error naming the range
    inp = keras.Input(input_shape, name="activation")
    x = head_conv(mbconv_blocks(inp, variant, start))
    return keras.Model(inp, layers.GlobalAveragePooling2D(name="avg_pool")(x), name=name)


def copy_layers_by_name(source: Any, target: Any) -> int:
    """Copy weights between a backbone and its top (either direction): every weighted layer of the smaller of the two
    models takes, or gives, the same-named layer's weights of the other. Returns how many layers were copied; a layer
    missing from the larger model or shaped differently is a ``ValueError`` naming it."""
    small, large = (source, target) if len(source.layers) <= len(target.layers) else (target, source)
    names = {layer.name: layer for layer in large.layers}
    n = 0
    for layer in small.layers:
        if not layer.weights:
            continue
        if layer.name not in names:
            raise ValueError(f"layer {layer.name!r} of {small.name!r} is not in {large.name!r}")
        src, dst = (layer, names[layer.name]) if small is source else (names[layer.name], layer)
        weights = src.get_weights()
        if [w.shape for w in weights] != [tuple(w.shape) for w in dst.weights]:
            raise ValueError(f"layer {layer.name!r}: shapes differ between {source.name!r} and {target.name!r}")
        dst.set_weights(weights)
        n += 1
    return n


def trunk_model(model: Any, variant: str, start: int):
    """``image (0–255) -> activations entering MBConv block start`` of a model built with an EfficientNet-Lite
    ``backbone`` (:func:`melanoma_utils.models.fusion.build_model`): its input scaling and the backbone's layers up to
    the cut, sharing their weights."""
    import keras

    base = model.get_layer("backbone")
    cut = base.get_layer(block_input_layer(variant, start)).input
    inner = keras.Model(base.input, cut, name="backbone_trunk")
    image = keras.Input(tuple(base.input.shape[1:]), name="image")
    return keras.Model(image, inner(model.get_layer("backbone_preprocess")(image)), name="image_trunk")


def cached_activations(model: Any, start: int, paths: list[str], spec: EmbeddingSpec, *, progress: bool = False,
                       batch_size: int = 64) -> tuple[Any, dict[str, int]]:
    """``(N, views, h, w, c)`` float16 activations entering block ``start`` of ``model``'s backbone (``spec``'s
    backbone variant, weights, size, preprocessing and views) for ``paths``, from the embedding cache (keyed by the
    spec and the cut; the trunk is frozen, so entries serve every fold and every adapted run of the same cut)."""
    import dataclasses

    import numpy as np

    from .embeddings import cached_embeddings

    cut = dataclasses.replace(spec, output=f"block{start}_input")
    return cached_embeddings(trunk_model(model, spec.backbone, start), list(paths), cut, progress=progress,
                             dtype=np.float16, batch_size=batch_size)


def top_embeddings(model: Any, variant: str, start: int, activations: Any, chunk: int = 256) -> Any:
    """Pooled embeddings ``(N, views, 1280)`` of cached ``activations`` through ``model``'s own (adapted) backbone from
    block ``start`` on: what the full model computes from the images, without running the frozen trunk again."""
    import numpy as np

    top = build_lite_top(variant, start, tuple(activations.shape[2:]))
    copy_layers_by_name(model.get_layer("backbone"), top)
    n, views = activations.shape[:2]
    out = np.zeros((n, views, int(top.output.shape[-1])), np.float32)
    for v in range(views):
        for s in range(0, n, chunk):
            out[s:s + chunk, v] = np.asarray(top(activations[s:s + chunk, v].astype(np.float32), training=False))
    return out
