"""Partial fine-tuning that a CPU can afford: the frozen start of an EfficientNet-Lite backbone computes each image's
activations once (cached like the embeddings, :mod:`melanoma_utils.models.embeddings`), and only the backbone's last
MBConv block(s), its head convolution and the study's head are trained on them.

* :func:`block_input_layer` — where a trunk is cut (the first layer of a block);
* :func:`trunk_model` — image (0–255) -> the activations entering block ``start`` (the frozen part);
* :func:`build_lite_top` — the backbone from block ``start`` on, with the full backbone's layer names;
* :func:`copy_layers_by_name` — weights between the top and the full backbone.

``top(trunk(x))`` is the full backbone's output (a test holds them equal to 1e-4), so after training the top's
weights go back into the full two-input model and the run folder stays one model that takes images.
"""

from __future__ import annotations

from typing import Any

from .efficientnet_lite import head_conv, lite_blocks, mbconv_blocks


def block_input_layer(variant: str, block: int) -> str:
    """The name of the first layer of MBConv block ``block``: its input is the block's input (what a trunk cut before
    the block outputs)."""
    blocks = lite_blocks(variant)
    if not 0 <= block < len(blocks):
        raise ValueError(f"{variant} has MBConv blocks 0..{len(blocks) - 1}; got {block}")
    return f"block{block}_expand_conv" if blocks[block][2] != 1 else f"block{block}_dwconv"


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
    """Copy the weights of every weighted layer of ``target`` from the same-named layer of ``source``; returns how
    many. A layer missing from ``source`` or shaped differently is a ``ValueError`` naming it."""
    names = {layer.name: layer for layer in source.layers}
    n = 0
    for layer in target.layers:
        if not layer.weights:
            continue
        if layer.name not in names:
            raise ValueError(f"layer {layer.name!r} of {target.name!r} is not in {source.name!r}")
        weights = names[layer.name].get_weights()
        if [w.shape for w in weights] != [tuple(w.shape) for w in layer.weights]:
            raise ValueError(f"layer {layer.name!r}: shapes differ between {source.name!r} and {target.name!r}")
        layer.set_weights(weights)
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


