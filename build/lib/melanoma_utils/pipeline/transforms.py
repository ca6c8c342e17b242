"""Deterministic image transforms (the study's Fig 12), NumPy/OpenCV, uint8 RGB in → uint8 out.

* :func:`to_grayscale` — black & white, kept 3-channel for models that need 3 channels;
* :func:`ben_graham` — Ben Graham's local-average subtraction ``4·img − 4·GaussianBlur(img, σ) + 128``,
  σ a fraction of the image side so the result does not depend on resolution (apply it after resizing:
  the blur is cheap at 256 px, ~90 ms at 1024 px with σ≈34). The study shows it on a greyscale image,
  without and with the blur step; ``blur=False`` is the first panel (greyscale only);
* :func:`adjust_hsb` — hue / saturation / brightness adjustment with explicit parameters;
* :func:`to_luv` / :func:`from_luv` — the CIE L*u*v* colour space (OpenCV's 8-bit encoding) and back;
* :func:`shades_of_gray` — colour constancy (Finlayson & Trezzi), which removes a device's colour cast:
  beyond the study, aimed at the acquisition shortcut;
* :func:`jpeg_roundtrip` — one common JPEG compression for every image (``jpeg_harmonise``), which overwrites the
  processing histories of copies of a data set: beyond the study, aimed at the copy shortcut.

Each is also a named preprocessing option (:data:`PREPROCESSORS`, :func:`preprocess`) that the tf.data
pipeline applies identically at training and prediction; the option's name and parameters are saved in a
run's configuration.
"""

from __future__ import annotations

from typing import Any, Callable

import cv2
import numpy as np

#: Default σ of Ben Graham's blur as a fraction of the image side (≈ 8.5 px at 256 px, 34 px at 1024 px).
BEN_GRAHAM_SIGMA_FRACTION: float = 1 / 30


def _check_rgb(img: np.ndarray) -> None:
    if img.dtype != np.uint8 or img.ndim != 3 or img.shape[2] != 3:
        raise ValueError(f"expected a uint8 RGB image of shape (H, W, 3); got {img.dtype} {img.shape}")


def to_grayscale(img: np.ndarray, keep_channels: bool = True) -> np.ndarray:
    """Luma (ITU-R BT.601) greyscale; 3 equal channels with ``keep_channels``, else ``(H, W)``."""
    _check_rgb(img)
    gray = cv2.cvtColor(img, cv2.COLOR_RGB2GRAY)
    return np.repeat(gray[..., None], 3, axis=2) if keep_channels else gray


def ben_graham(
    img: np.ndarray,
    sigma_fraction: float = BEN_GRAHAM_SIGMA_FRACTION,
    grayscale: bool = True,
    blur: bool = True,
) -> np.ndarray:
    """Ben Graham's preprocessing: ``clip(4·img − 4·GaussianBlur(img, σ) + 128)``, σ = ``sigma_fraction``·side.

    ``grayscale`` first converts to greyscale (the study's variant; 3 equal channels out); ``blur=False``
    stops after that step (the study's "without Gaussian blur" panel). A constant image maps to 128.
    """
    _check_rgb(img)
    base = to_grayscale(img) if grayscale else img
    if not blur:
        return base.copy()
    sigma = max(sigma_fraction * min(img.shape[:2]), 0.5)
    local_mean = cv2.GaussianBlur(base, (0, 0), sigmaX=sigma, borderType=cv2.BORDER_REFLECT)
    return cv2.addWeighted(base, 4.0, local_mean, -4.0, 128.0)


def adjust_hsb(
    img: np.ndarray,
    hue_shift_degrees: float = 0.0,
    saturation_scale: float = 1.0,
    brightness_scale: float = 1.0,
) -> np.ndarray:
    """Shift hue (degrees, wraps), scale saturation and brightness (HSV value); neutral values: identity.

    Works in float32 HSV (hue 0–360), so the neutral round trip is exact after rounding.
    """
    _check_rgb(img)
    if saturation_scale < 0 or brightness_scale < 0:
        raise ValueError("saturation_scale and brightness_scale must be >= 0")
    hsv = cv2.cvtColor(img.astype(np.float32) / 255.0, cv2.COLOR_RGB2HSV)
    hsv[..., 0] = (hsv[..., 0] + hue_shift_degrees) % 360.0
    hsv[..., 1] = np.clip(hsv[..., 1] * saturation_scale, 0.0, 1.0)
    hsv[..., 2] = np.clip(hsv[..., 2] * brightness_scale, 0.0, 1.0)
    rgb = cv2.cvtColor(hsv, cv2.COLOR_HSV2RGB)
    return np.clip(np.rint(rgb * 255.0), 0, 255).astype(np.uint8)


def to_luv(img: np.ndarray) -> np.ndarray:
    """RGB → CIE L*u*v*, OpenCV's 8-bit encoding (L·255/100, u+134·255/354, v+140·255/262), uint8."""
    _check_rgb(img)
    return cv2.cvtColor(img, cv2.COLOR_RGB2Luv)


def from_luv(luv: np.ndarray) -> np.ndarray:
    """Inverse of :func:`to_luv` (a few levels of rounding error)."""
    _check_rgb(luv)
    return cv2.cvtColor(luv, cv2.COLOR_Luv2RGB)


def shades_of_gray(img: np.ndarray, power: float = 6.0) -> np.ndarray:
    """Shades-of-Gray colour constancy: scale channels so their Minkowski ``power``-mean is equal."""
    _check_rgb(img)
    f = img.astype(np.float32)
    norm = np.power(np.mean(np.power(f, power), axis=(0, 1)), 1.0 / power)
    gain = norm.mean() / np.maximum(norm, 1e-6)
    return np.clip(np.rint(f * gain), 0, 255).astype(np.uint8)


def jpeg_roundtrip(img: np.ndarray, quality: int = 70) -> np.ndarray:
    """One JPEG encode/decode at ``quality`` (OpenCV's libjpeg, 4:2:0): every image gets the same last compression,
    so differences in the processing histories of copies of a data set (another quality, a re-encode) are
    overwritten by a common, stronger one. Beyond the study, aimed at the copy shortcut."""
    _check_rgb(img)
    if not 1 <= int(quality) <= 100:
        raise ValueError(f"JPEG quality must be in 1..100; got {quality}")
    ok, buf = cv2.imencode(".jpg", cv2.cvtColor(img, cv2.COLOR_RGB2BGR), [cv2.IMWRITE_JPEG_QUALITY, int(quality)])
    if not ok:
        raise ValueError("OpenCV could not encode the image as JPEG")
    return cv2.cvtColor(cv2.imdecode(buf, cv2.IMREAD_COLOR), cv2.COLOR_BGR2RGB)


def identity(img: np.ndarray) -> np.ndarray:
    """No preprocessing."""
    return img


#: Named preprocessing options of the input pipeline: name -> (function, default parameters).
PREPROCESSORS: dict[str, tuple[Callable[..., np.ndarray], dict[str, Any]]] = {
    "none": (identity, {}),
    "grayscale": (to_grayscale, {}),
    "ben_graham": (ben_graham, {"sigma_fraction": BEN_GRAHAM_SIGMA_FRACTION, "grayscale": False}),
    "ben_graham_gray": (ben_graham, {"sigma_fraction": BEN_GRAHAM_SIGMA_FRACTION, "grayscale": True}),
    # the study's Fig 12 setting (neutral values would make "hsb" an identity: a trap as a training option)
    "hsb": (adjust_hsb, {"hue_shift_degrees": 20.0, "saturation_scale": 1.5, "brightness_scale": 1.1}),
    "luv": (to_luv, {}),
    "shades_of_gray": (shades_of_gray, {"power": 6.0}),
    "jpeg_harmonise": (jpeg_roundtrip, {"quality": 70}),
}


def preprocess_config(name: str, **params: Any) -> dict[str, Any]:
    """A JSON-serialisable ``{"name", "params"}`` for a preprocessing option (defaults filled in)."""
    if name not in PREPROCESSORS:
        raise ValueError(f"unknown preprocessing {name!r}; choose one of {', '.join(PREPROCESSORS)}")
    _, defaults = PREPROCESSORS[name]
    unknown = set(params) - set(defaults)
    if unknown:
        raise ValueError(f"preprocessing {name!r} takes no parameter(s) {sorted(unknown)}; it takes {sorted(defaults)}")
    return {"name": name, "params": {**defaults, **params}}


def preprocess(img: np.ndarray, config: dict[str, Any] | str = "none") -> np.ndarray:
    """Apply a preprocessing option (a name, or a config from :func:`preprocess_config`) to one image."""
    cfg = preprocess_config(config) if isinstance(config, str) else config
    fn, _ = PREPROCESSORS[cfg["name"]]
    return fn(img, **cfg["params"])


def preprocess_batch(images: np.ndarray, config: dict[str, Any] | str = "none") -> np.ndarray:
    """Apply a preprocessing option to each image of a uint8 batch ``(N, H, W, 3)``."""
    cfg = preprocess_config(config) if isinstance(config, str) else config
    if cfg["name"] == "none":
        return images
    return np.stack([preprocess(im, cfg) for im in images]) if len(images) else images


#: The eight dihedral views of a square image (rotations and mirrors).
MAX_VIEWS = 8


def dihedral(images: np.ndarray, view: int) -> np.ndarray:
    """View ``0..7`` of a batch ``(N, H, W, C)``: ``view % 4`` quarter turns, mirrored when ``view >= 4``.

    View 0 is the identity; views 0–3 are the rotations, 4–7 their mirror images.
    """
    if not 0 <= view < MAX_VIEWS:
        raise ValueError(f"view must be in 0..7; got {view}")
    out = np.rot90(images, k=view % 4, axes=(1, 2))
    if view >= 4:
        out = out[:, :, ::-1]
    return np.ascontiguousarray(out)
