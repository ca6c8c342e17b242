from __future__ import annotations

import numpy as np
import pytest

from melanoma_utils.pipeline import transforms as T


@pytest.fixture
def img() -> np.ndarray:
    rng = np.random.default_rng(0)
    base = rng.integers(0, 256, (48, 64, 3), dtype=np.uint8)
    return base


@pytest.mark.parametrize("name", sorted(T.PREPROCESSORS))
def test_every_option_keeps_dtype_and_shape(img: np.ndarray, name: str) -> None:
    out = T.preprocess(img, name)
    assert out.dtype == np.uint8 and out.shape == img.shape


def test_grayscale_channels_equal(img: np.ndarray) -> None:
    g = T.to_grayscale(img)
    assert (g[..., 0] == g[..., 1]).all() and (g[..., 1] == g[..., 2]).all()
    assert T.to_grayscale(img, keep_channels=False).shape == (48, 64)


@pytest.mark.parametrize("grayscale", [True, False])
@pytest.mark.parametrize("value", [0, 77, 255])
def test_ben_graham_of_constant_is_128(value: int, grayscale: bool) -> None:
    const = np.full((40, 40, 3), value, np.uint8)
    assert (T.ben_graham(const, grayscale=grayscale) == 128).all()


def test_ben_graham_is_resolution_independent() -> None:
    import cv2

    rng = np.random.default_rng(1)
    small = cv2.resize(rng.integers(0, 256, (16, 16, 3), dtype=np.uint8), (64, 64), interpolation=cv2.INTER_CUBIC)
    big = cv2.resize(small, (256, 256), interpolation=cv2.INTER_CUBIC)
    a = T.ben_graham(small).astype(float)
    b = cv2.resize(T.ben_graham(big), (64, 64), interpolation=cv2.INTER_AREA).astype(float)
    assert np.abs(a - b).mean() < 6  # same σ relative to the side -> the same picture at any size


def test_ben_graham_without_blur_is_the_greyscale_panel(img: np.ndarray) -> None:
    assert np.array_equal(T.ben_graham(img, blur=False), T.to_grayscale(img))


def test_hsb_neutral_is_identity_and_parameters_act(img: np.ndarray) -> None:
    assert np.array_equal(T.adjust_hsb(img), img)
    darker = T.adjust_hsb(img, brightness_scale=0.5)
    assert darker.astype(int).sum() < img.astype(int).sum() * 0.6
    grey = T.adjust_hsb(img, saturation_scale=0.0)
    assert (np.ptp(grey.astype(int), axis=2) <= 1).all()
    assert np.array_equal(T.adjust_hsb(img, hue_shift_degrees=360.0), img)
    with pytest.raises(ValueError):
        T.adjust_hsb(img, saturation_scale=-1)


def test_luv_round_trip(img: np.ndarray) -> None:
    luv = T.to_luv(img)
    assert np.abs(luv.astype(int) - img.astype(int)).mean() > 20  # a real change of colour space (two identities fail)
    back = T.from_luv(luv)
    assert np.abs(back.astype(int) - img.astype(int)).mean() < 2.0


def test_shades_of_gray_removes_a_colour_cast(img: np.ndarray) -> None:
    cast = np.clip(img.astype(float) * [1.3, 1.0, 0.7], 0, 255).astype(np.uint8)
    fixed = T.shades_of_gray(cast).reshape(-1, 3).astype(float)
    means = fixed.mean(0)
    assert np.ptp(means) < np.ptp(cast.reshape(-1, 3).mean(0)) / 3


def test_config_validation(img: np.ndarray) -> None:
    cfg = T.preprocess_config("hsb", brightness_scale=0.8)
    assert cfg == {"name": "hsb", "params": {"hue_shift_degrees": 20.0, "saturation_scale": 1.5, "brightness_scale": 0.8}}  # the rest: Fig 12
    with pytest.raises(ValueError, match="unknown preprocessing 'sepia'"):
        T.preprocess_config("sepia")
    with pytest.raises(ValueError, match="takes no parameter"):
        T.preprocess_config("luv", gamma=2)
    with pytest.raises(ValueError, match="uint8 RGB"):
        T.to_grayscale(img.astype(np.float32))


def _luv_by_hand(rgb: tuple[int, int, int]) -> np.ndarray:
    """CIE L*u*v* of one sRGB colour from the definitions (sRGB gamma, D65 white), in OpenCV's 8-bit encoding."""
    c = np.asarray(rgb, float) / 255
    lin = np.where(c <= 0.04045, c / 12.92, ((c + 0.055) / 1.055) ** 2.4)
    x, y, z = np.array([[0.412453, 0.357580, 0.180423], [0.212671, 0.715160, 0.072169],
                        [0.019334, 0.119193, 0.950227]]) @ lin
    L = 116 * y ** (1 / 3) - 16 if y > 0.008856 else 903.3 * y
    d = x + 15 * y + 3 * z
    un, vn = 4 * 0.950456 / (0.950456 + 15 + 3 * 1.088754), 9 / (0.950456 + 15 + 3 * 1.088754)
    u = 13 * L * (4 * x / d - un) if d else 0.0
    v = 13 * L * (9 * y / d - vn) if d else 0.0
    return np.array([L * 255 / 100, (u + 134) * 255 / 354, (v + 140) * 255 / 262])


def test_every_preprocessing_gives_its_golden_values() -> None:
    """Per preprocessing, pixel values computed from its definition here, not by the code under test: an identity
    (or any other wrong transform) fails all but 'none'."""
    from scipy.ndimage import gaussian_filter

    colours = [(255, 0, 0), (0, 255, 0), (0, 0, 255), (255, 255, 255), (40, 90, 160)]
    row = np.array([colours], np.uint8)  # 1 × 5 pixels
    assert np.array_equal(T.preprocess(row, "none"), row)
    grey = T.preprocess(row, "grayscale")[0, :, 0].astype(int)
    assert np.abs(grey - np.rint([0.299 * r + 0.587 * g + 0.114 * b for r, g, b in colours])).max() <= 1  # BT.601
    luv = T.preprocess(row, "luv")[0].astype(float)
    assert np.abs(luv - np.array([_luv_by_hand(c) for c in colours])).max() <= 1.5
    hsb = T.preprocess(row, T.preprocess_config("hsb", hue_shift_degrees=0.0, saturation_scale=0.0, brightness_scale=1.0))[0]
    assert (hsb == np.array([[255] * 3, [255] * 3, [255] * 3, [255] * 3, [160] * 3])).all()  # grey at value = max(RGB)
    hue = T.preprocess(row, T.preprocess_config("hsb", hue_shift_degrees=120.0, saturation_scale=1.0, brightness_scale=1.0))[0]
    assert [tuple(p) for p in hue[:3]] == [(0, 255, 0), (0, 0, 255), (255, 0, 0)]  # red -> green -> blue -> red
    fig12 = T.preprocess(row, "hsb")[0]  # the default is the study's Fig 12 setting, not an identity
    assert np.array_equal(fig12, T.adjust_hsb(row, 20.0, 1.5, 1.1)[0]) and not np.array_equal(fig12, row[0])
    cast = np.stack([np.full((8, 8), 200), np.full((8, 8), 100), np.full((8, 8), 50)], -1).astype(np.uint8)
    sog = T.preprocess(cast, "shades_of_gray")[0, 0]
    assert tuple(sog) == (117, 117, 117)  # each channel scaled to the mean of the norms (200 + 100 + 50) / 3
    rng = np.random.default_rng(2)
    img = rng.integers(0, 256, (60, 60, 3), dtype=np.uint8)
    sigma = 60 * T.BEN_GRAHAM_SIGMA_FRACTION
    for name, base in (("ben_graham", img.astype(float)),
                       ("ben_graham_gray", np.repeat(T.to_grayscale(img)[..., :1], 3, -1).astype(float))):
        local = np.stack([gaussian_filter(base[..., c], sigma, mode="reflect", truncate=4.0) for c in range(3)], -1)
        expected = np.clip(4 * base - 4 * local + 128, 0, 255)
        got = T.preprocess(img, name).astype(float)
        assert np.abs(got - expected).mean() < 2.0, name  # 4·(image − local mean) + 128
        assert np.abs(got - img).mean() > 20, name  # far from the input


def test_jpeg_harmonise_gives_every_image_one_common_compression() -> None:
    import cv2

    from melanoma_utils.pipeline.transforms import jpeg_roundtrip, preprocess

    rng = np.random.default_rng(0)
    img = cv2.GaussianBlur(rng.integers(0, 256, (64, 64, 3), dtype=np.uint8), (0, 0), 2)
    once = preprocess(img, "jpeg_harmonise")
    assert once.shape == img.shape and once.dtype == np.uint8
    assert np.abs(once.astype(int) - img).mean() > 0.5  # the compression changed it
    # two copies with different histories (quality 95 vs 50) end closer together after the common round trip
    a, b = jpeg_roundtrip(img, 95), jpeg_roundtrip(img, 50)
    before = np.abs(a.astype(int) - b).mean()
    after = np.abs(jpeg_roundtrip(a).astype(int) - jpeg_roundtrip(b)).mean()
    assert after < before
    with pytest.raises(ValueError, match="quality"):
        jpeg_roundtrip(img, 0)
