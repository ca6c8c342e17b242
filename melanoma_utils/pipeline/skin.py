"""Skin tone and acquisition cues measured on the image, with the lesion masked out (NumPy/OpenCV, uint8 RGB in).

* :func:`ita_degrees` — the individual typology angle, ``ITA° = arctan((L* − 50) / b*) · 180/π`` (Chardon et al.
  1991), from CIELAB lightness L* and yellow–blue b*. On dermoscopy it measures the skin *as imaged*: the
  device's light and white balance move b*, so it is a proxy for skin tone, not a colorimeter reading;
* :func:`lesion_mask` — the lesion as the darker Otsu class of the blurred L* channel, filled and kept to its
  largest part (:func:`filled_component`, which :func:`melanoma_utils.reports.explain.lesion_mask` shares: that
  one reads the blue channel and keeps the central part, for describing explanations rather than measuring skin);
* :func:`image_ita` — ITA of the skin *around* the lesion: the median L* and b* of the pixels outside the dilated
  lesion mask and away from the image border (dark vignette corners, ruler edges), hair and ink (dark) left out;
* :func:`ita_band` — the usual categories (Del Bino & Bernerd 2013): very light > 55°, light 41–55°,
  intermediate 28–41°, tan 10–28°, brown −30–10°, dark < −30°;
* :func:`corner_darkness` — mean L* of the four corners against the centre (a dark vignette is an acquisition
  cue, not the lesion).
"""

from __future__ import annotations

from typing import Any, Sequence

import cv2
import numpy as np
import pandas as pd

from ..data.confounds import ITA_BANDS, ita_band  # noqa: F401  (the bands are a grouping: data.confounds)

#: Share of each side left out as border when measuring the skin (vignette corners, ruler edges).
BORDER_FRACTION = 0.1
#: Fewer skin pixels than this share of the image: no ITA (the lesion or the border fills the image).
MIN_SKIN_FRACTION = 0.05


def _check_rgb(img: np.ndarray) -> None:
    if img.dtype != np.uint8 or img.ndim != 3 or img.shape[2] != 3:
        raise ValueError(f"expected a uint8 RGB image of shape (H, W, 3); got {img.dtype} {img.shape}")


def to_lab(img: np.ndarray) -> np.ndarray:
    """uint8 sRGB → float32 CIELAB (D65): L* in 0–100, a* and b* in about −128..127."""
    _check_rgb(img)
    return cv2.cvtColor(img.astype(np.float32) / 255.0, cv2.COLOR_RGB2Lab)


def ita_degrees(lightness: Any, b_star: Any) -> np.ndarray:
    """ITA° = arctan((L* − 50) / b*) in degrees, element-wise, in [−90°, 90°]. A b* of 0 or below (a blue cast:
    dermatoscopes' white balance often leaves skin at b* ≈ 0) gives the limit of its side, +90° when L* > 50 and
    −90° when L* < 50, rather than flipping sign across b* = 0."""
    L, b = np.asarray(lightness, float), np.asarray(b_star, float)
    return np.clip(np.degrees(np.arctan2(L - 50.0, b)), -90.0, 90.0)


def lesion_mask(lab: np.ndarray) -> np.ndarray:
    """Boolean lesion mask of a CIELAB image: the darker Otsu class of the blurred L* channel, its largest
    connected part, holes filled (hair and small dark specks fall outside it)."""
    L = lab[..., 0]
    side = min(L.shape)
    blurred = cv2.GaussianBlur(L, (0, 0), sigmaX=max(side / 64, 0.5))
    u8 = np.clip(blurred * 2.55, 0, 255).astype(np.uint8)
    _, dark = cv2.threshold(u8, 0, 1, cv2.THRESH_BINARY_INV + cv2.THRESH_OTSU)
    n, labels, stats, _ = cv2.connectedComponentsWithStats(dark.astype(np.uint8), connectivity=8)
    if n <= 1:
        return np.zeros(L.shape, bool)
    return filled_component(labels, 1 + int(np.argmax(stats[1:, cv2.CC_STAT_AREA])))


def filled_component(labels: np.ndarray, k: int) -> np.ndarray:
    """Component ``k`` of a connected-components label image as a boolean mask, its holes filled (the outer contour
    drawn solid): a lesion with a lighter centre or hair across it stays one region."""
    mask = (labels == k).astype(np.uint8)
    contours, _ = cv2.findContours(mask, cv2.RETR_EXTERNAL, cv2.CHAIN_APPROX_SIMPLE)
    filled = np.zeros_like(mask)
    cv2.drawContours(filled, contours, -1, 1, thickness=cv2.FILLED)
    return filled.astype(bool)


def skin_mask(lab: np.ndarray, lesion: np.ndarray | None = None) -> np.ndarray:
    """Pixels that show skin: outside the lesion (dilated by 3% of the side), inside the border margin, and not
    dark (L* below the lesion's Otsu split: hair, ink, vignette)."""
    h, w = lab.shape[:2]
    lesion = lesion_mask(lab) if lesion is None else lesion
    k = max(int(0.03 * min(h, w)), 1)
    grown = cv2.dilate(lesion.astype(np.uint8), np.ones((2 * k + 1, 2 * k + 1), np.uint8)).astype(bool)
    inner = np.zeros((h, w), bool)
    bh, bw = int(BORDER_FRACTION * h), int(BORDER_FRACTION * w)
    inner[bh:h - bh, bw:w - bw] = True
    L = lab[..., 0]
    u8 = np.clip(L * 2.55, 0, 255).astype(np.uint8)
    split, _ = cv2.threshold(u8, 0, 1, cv2.THRESH_BINARY + cv2.THRESH_OTSU)
    return inner & ~grown & (u8 > split)


def image_ita(img: np.ndarray) -> float:
    """ITA° of the skin around the lesion (:func:`skin_mask`): median L* and b* of its pixels. NaN when fewer
    than :data:`MIN_SKIN_FRACTION` of the pixels are skin."""
    lab = to_lab(img)
    skin = skin_mask(lab)
    if skin.mean() < MIN_SKIN_FRACTION:
        return float("nan")
    return float(ita_degrees(np.median(lab[..., 0][skin]), np.median(lab[..., 2][skin])))


def corner_darkness(img: np.ndarray, fraction: float = 0.1) -> float:
    """Mean L* of the centre minus the mean L* of the four corner squares (side ``fraction`` of the image):
    large for a dark vignette (the dermatoscope's circular field of view), near 0 without one."""
    L = to_lab(img)[..., 0]
    h, w = L.shape
    ch, cw = max(int(fraction * h), 1), max(int(fraction * w), 1)
    corners = np.concatenate([L[:ch, :cw].ravel(), L[:ch, -cw:].ravel(), L[-ch:, :cw].ravel(), L[-ch:, -cw:].ravel()])
    centre = L[h // 4:3 * h // 4, w // 4:3 * w // 4]
    return float(centre.mean() - corners.mean())


def image_cues(paths: Sequence[str], decode: Any = None) -> pd.DataFrame:
    """``ita`` and ``corner_darkness`` of each image file (NaN for a file that cannot be decoded). ``decode`` reads one
    path into uint8 RGB (default: the pipeline's decoder, :func:`~melanoma_utils.pipeline.feeds.load_image_array`,
    at 256 px: both measures are shares and medians, independent of the size)."""
    if decode is None:
        from .feeds import load_image_array

        def decode(path: str) -> np.ndarray:
            return load_image_array([path], 256, workers=1)[0]
    rows = []
    for path in paths:
        try:
            img = decode(path)
        except (OSError, ValueError):
            rows.append({"ita": float("nan"), "corner_darkness": float("nan")})
            continue
        rows.append({"ita": image_ita(img), "corner_darkness": corner_darkness(img)})
    return pd.DataFrame(rows, columns=["ita", "corner_darkness"])
