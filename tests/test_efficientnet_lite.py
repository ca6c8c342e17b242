"""EfficientNet-Lite0 with the packaged ImageNet weights: the conversion is checked numerically against an
independent NumPy forward pass over the raw checkpoint tensors, and on a photograph."""

from __future__ import annotations

import os
from pathlib import Path

import numpy as np
import pytest

from melanoma_utils.models import efficientnet_lite as lite


@pytest.fixture(scope="module")
def state() -> dict[str, np.ndarray]:
    return lite.read_torch_legacy(lite.packaged_checkpoint())


@pytest.fixture(scope="module")
def classifier(tmp_path_factory):
    import os

    os.environ["MELANOMA_UTILS_CACHE"] = str(tmp_path_factory.mktemp("cache"))
    return lite


# ---- an independent forward pass, written from the architecture description only ----

def _same_pad(x: np.ndarray, k: int, s: int) -> np.ndarray:
    """TensorFlow "same" padding for NHWC: total = max((ceil(n/s) - 1) * s + k - n, 0), the odd pixel at the end."""
    pads = []
    for n in x.shape[1:3]:
        out = -(-n // s)
        total = max((out - 1) * s + k - n, 0)
        pads.append((total // 2, total - total // 2))
    return np.pad(x, ((0, 0), pads[0], pads[1], (0, 0)))


def _conv_kxk(x: np.ndarray, w_oihw: np.ndarray, s: int) -> np.ndarray:
    k = w_oihw.shape[-1]
    xp = _same_pad(x, k, s)
    ho, wo = -(-x.shape[1] // s), -(-x.shape[2] // s)
    out = np.zeros((x.shape[0], ho, wo, w_oihw.shape[0]))
    for dy in range(k):
        for dx in range(k):
            patch = xp[:, dy:dy + s * (ho - 1) + 1:s, dx:dx + s * (wo - 1) + 1:s, :]
            out += patch @ w_oihw[:, :, dy, dx].T
    return out


def _depthwise(x: np.ndarray, w_c1hw: np.ndarray, s: int) -> np.ndarray:
    k = w_c1hw.shape[-1]
    xp = _same_pad(x, k, s)
    ho, wo = -(-x.shape[1] // s), -(-x.shape[2] // s)
    out = np.zeros((x.shape[0], ho, wo, x.shape[3]))
    for dy in range(k):
        for dx in range(k):
            out += xp[:, dy:dy + s * (ho - 1) + 1:s, dx:dx + s * (wo - 1) + 1:s, :] * w_c1hw[:, 0, dy, dx]
    return out


def _bn(x: np.ndarray, st: dict, p: str) -> np.ndarray:
    return (x - st[f"{p}.running_mean"]) / np.sqrt(st[f"{p}.running_var"] + 1e-3) * st[f"{p}.weight"] + st[f"{p}.bias"]


def _relu6(x: np.ndarray) -> np.ndarray:
    return np.clip(x, 0, 6)


#: (kernel, stride, expansion) of every block, written out from the architecture papers (EfficientNet-B0's stages;
#: Lite1/Lite2 repeat stages 2-6 ceil(1.1x / 1.2x) times: 3, 3, 4, 4, 5 blocks), not from the package's code.
LAYOUTS = {
    "efficientnetlite0": [(3, 1, 1)] + [(3, 2, 6), (3, 1, 6)] + [(5, 2, 6), (5, 1, 6)] + [(3, 2, 6)] + [(3, 1, 6)] * 2
    + [(5, 1, 6)] * 3 + [(5, 2, 6)] + [(5, 1, 6)] * 3 + [(3, 1, 6)],
    "efficientnetlite1": [(3, 1, 1)] + [(3, 2, 6)] + [(3, 1, 6)] * 2 + [(5, 2, 6)] + [(5, 1, 6)] * 2 + [(3, 2, 6)]
    + [(3, 1, 6)] * 3 + [(5, 1, 6)] * 4 + [(5, 2, 6)] + [(5, 1, 6)] * 4 + [(3, 1, 6)],
}
LAYOUTS["efficientnetlite2"] = LAYOUTS["efficientnetlite1"]  # same depth pattern, 1.1x wider channels


def numpy_lite0_logits(img: np.ndarray, st: dict, variant: str = "efficientnetlite0") -> np.ndarray:
    """EfficientNet-Lite logits in float64 NumPy straight from the PyTorch tensors (OIHW layouts)."""
    st = {k: v.astype(np.float64) for k, v in st.items()}
    x = (img.astype(np.float64) - 127.0) / 128.0
    x = _relu6(_bn(_conv_kxk(x, st["_conv_stem.weight"], 2), st, "_bn0"))
    layout = LAYOUTS[variant]
    assert not any(k.startswith(f"_blocks.{len(layout)}.") for k in st)  # no block left over
    for i, (k, s, e) in enumerate(layout):
        p = f"_blocks.{i}"
        h = x
        if e != 1:
            h = _relu6(_bn(h @ st[f"{p}._expand_conv.weight"][:, :, 0, 0].T, st, f"{p}._bn0"))
        assert st[f"{p}._depthwise_conv.weight"].shape[-1] == k
        h = _relu6(_bn(_depthwise(h, st[f"{p}._depthwise_conv.weight"], s), st, f"{p}._bn1"))
        h = _bn(h @ st[f"{p}._project_conv.weight"][:, :, 0, 0].T, st, f"{p}._bn2")
        x = x + h if (s == 1 and x.shape[-1] == h.shape[-1]) else h
    x = _relu6(_bn(x @ st["_conv_head.weight"][:, :, 0, 0].T, st, "_bn1"))
    return x.mean(axis=(1, 2)) @ st["_fc.weight"].T + st["_fc.bias"]


def _photo(size: int) -> np.ndarray:
    """matplotlib's bundled photo: shorter side to 256/224·size, centre crop (ImageNet evaluation style)."""
    import matplotlib
    from PIL import Image

    im = Image.open(Path(matplotlib.get_data_path()) / "sample_data" / "grace_hopper.jpg").convert("RGB")
    scale = size * 256 / 224 / min(im.size)
    im = im.resize((round(im.size[0] * scale), round(im.size[1] * scale)), Image.BILINEAR)
    left, top = (im.size[0] - size) // 2, (im.size[1] - size) // 2
    return np.asarray(im.crop((left, top, left + size, top + size)), np.float32)


def test_checkpoint_reader_follows_strides(state):
    # 296 tensors: every conv/BN/fc tensor of Lite0, with BN counters
    assert len(state) == 296
    assert state["_conv_stem.weight"].shape == (32, 3, 3, 3)
    assert state["_fc.weight"].shape == (1000, 1280)
    assert state["_conv_stem.weight"].flags["C_CONTIGUOUS"]
    # variances cannot be negative: a storage read at the wrong offset or in the wrong type would give some
    assert all((v >= 0).all() and np.isfinite(v).all() for k, v in state.items() if k.endswith("running_var"))
    assert state["_bn0.num_batches_tracked"].shape == ()


def test_imagenet_classifier_recognises_the_photo(classifier):
    model = classifier.efficientnet_lite0(224, "imagenet", include_top=True)
    logits = np.asarray(model.predict(_photo(224)[None], verbose=0))[0]
    top5 = np.argsort(-logits)[:5]
    assert 652 in top5, f"military uniform (652) not in top 5: {top5}"  # Grace Hopper in uniform
    assert {400, 667} & set(top5.tolist())  # academic gown / mortarboard, as the reference implementation


@pytest.mark.parametrize("size", [224, 201])
def test_keras_model_matches_independent_numpy_forward_pass(classifier, state, size):
    model = classifier.efficientnet_lite0(size, "imagenet", include_top=True)
    img = _photo(size)[None]
    keras_logits = np.asarray(model.predict(img, verbose=0), np.float64)[0]
    np_logits = numpy_lite0_logits(img, state)[0]
    assert np.abs(keras_logits - np_logits).max() <= 1e-4


def test_weights_cached_once_and_reused(classifier, monkeypatch):
    first = classifier.imagenet_weights_file()
    mtime = first.stat().st_mtime_ns
    monkeypatch.setattr(classifier, "read_torch_legacy", lambda *_: pytest.fail("converted twice"))
    assert classifier.imagenet_weights_file() == first
    assert first.stat().st_mtime_ns == mtime


def test_features_model_pools_1280(classifier):
    feats = classifier.efficientnet_lite0(96, "imagenet", include_top=False)
    out = np.asarray(feats.predict(np.full((2, 96, 96, 3), 127.0, np.float32), verbose=0))
    assert out.shape == (2, 1280)
    assert np.isfinite(out).all()


def test_truncated_or_missing_checkpoint_gives_clear_error(tmp_path):
    src = lite.packaged_checkpoint().read_bytes()
    bad = tmp_path / "truncated.pth"
    bad.write_bytes(src[: len(src) // 2])
    with pytest.raises(lite.WeightsFileError, match="truncated.pth: .*truncated"):
        lite.read_torch_legacy(bad)
    junk = tmp_path / "junk.pth"
    junk.write_bytes(b"not a checkpoint at all")
    with pytest.raises(lite.WeightsFileError, match="junk.pth"):
        lite.read_torch_legacy(junk)
    with pytest.raises(lite.WeightsFileError, match="not found"):
        lite.read_torch_legacy(tmp_path / "absent.pth")


def test_checkpoint_with_a_wrong_shape_is_refused(state):
    model = lite.build_efficientnet_lite0((64, 64, 3), include_top=True)
    broken = dict(state)
    broken["_blocks.3._depthwise_conv.weight"] = np.zeros((144, 1, 3, 3), np.float32)
    with pytest.raises(lite.WeightsFileError, match="block3_dwconv"):
        lite.assign_lite0_weights(model, broken)
    missing = {k: v for k, v in state.items() if k != "_conv_head.weight"}
    with pytest.raises(lite.WeightsFileError, match="_conv_head.weight"):
        lite.assign_lite0_weights(model, missing)


@pytest.mark.slow
@pytest.mark.parametrize("variant", ["efficientnetlite1", "efficientnetlite2"])
def test_larger_lite_variants_match_numpy_and_recognise_the_photo(classifier, variant):
    """Lite1 (240 px) and Lite2 (260 px): the same reader and port, the same two checks as Lite0."""
    state = lite.read_torch_legacy(lite.packaged_checkpoint(variant))
    size = lite.LITE_VARIANTS[variant][2]
    model = lite.efficientnet_lite(variant, size, "imagenet", include_top=True)
    img = _photo(size)[None]
    keras_logits = np.asarray(model.predict(img, verbose=0), np.float64)[0]
    top5 = np.argsort(-keras_logits)[:5]
    assert 652 in top5 and {400, 667} & set(top5.tolist()), f"{variant} top 5: {top5}"
    assert np.abs(keras_logits - numpy_lite0_logits(img, state, variant)[0]).max() <= 1e-4
    feats = lite.efficientnet_lite(variant, 64, "imagenet", include_top=False)
    assert feats.output_shape == (None, 1280)


def test_finetune_top_trains_the_last_two_stages_of_every_variant():
    from melanoma_utils.runs.paths import _top_prefixes

    assert _top_prefixes(lite.build_efficientnet_lite0((64, 64, 3), include_top=False)) == tuple(
        f"block{i}_" for i in range(11, 16)) + ("head_",)
    assert _top_prefixes(lite.build_efficientnet_lite("efficientnetlite2", (64, 64, 3), include_top=False)) == tuple(
        f"block{i}_" for i in range(15, 21)) + ("head_",)


def test_a_weights_file_is_read_once_per_process_and_reread_when_it_changes(tmp_path, monkeypatch):
    import keras

    path = tmp_path / "lite0.weights.h5"
    path.write_bytes(lite.imagenet_weights_file().read_bytes())
    monkeypatch.setattr(lite, "_LOADED", {})
    reads = []
    load = keras.Model.load_weights

    def counted(self, filepath, *args, **kwargs):
        reads.append(Path(filepath))
        return load(self, filepath, *args, **kwargs)

    monkeypatch.setattr(keras.Model, "load_weights", counted)
    first = lite.efficientnet_lite("efficientnetlite0", 32, weights=str(path))
    again = lite.efficientnet_lite("efficientnetlite0", 48, weights=str(path))  # another input size, same arrays
    assert reads == [path]
    for a, b in zip(first.get_weights(), again.get_weights(), strict=True):
        np.testing.assert_array_equal(a, b)
    random = lite.efficientnet_lite("efficientnetlite0", 32, weights=None)
    assert not all(np.array_equal(a, b) for a, b in zip(first.get_weights(), random.get_weights()))
    os.utime(path, ns=(path.stat().st_atime_ns, path.stat().st_mtime_ns + 10**9))  # the file changed
    lite.efficientnet_lite("efficientnetlite0", 32, weights=str(path))
    assert reads == [path, path]
