from __future__ import annotations

import numpy as np
import pytest

from melanoma_utils import transforms as T


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
    back = T.from_luv(T.to_luv(img))
    assert np.abs(back.astype(int) - img.astype(int)).mean() < 2.0


def test_shades_of_gray_removes_a_colour_cast(img: np.ndarray) -> None:
    cast = np.clip(img.astype(float) * [1.3, 1.0, 0.7], 0, 255).astype(np.uint8)
    fixed = T.shades_of_gray(cast).reshape(-1, 3).astype(float)
    means = fixed.mean(0)
    assert np.ptp(means) < np.ptp(cast.reshape(-1, 3).mean(0)) / 3


def test_config_validation(img: np.ndarray) -> None:
    cfg = T.preprocess_config("hsb", brightness_scale=0.8)
    assert cfg == {"name": "hsb", "params": {"hue_shift_degrees": 0.0, "saturation_scale": 1.0, "brightness_scale": 0.8}}
    with pytest.raises(ValueError, match="unknown preprocessing 'sepia'"):
        T.preprocess_config("sepia")
    with pytest.raises(ValueError, match="takes no parameter"):
        T.preprocess_config("luv", gamma=2)
    with pytest.raises(ValueError, match="uint8 RGB"):
        T.to_grayscale(img.astype(np.float32))
