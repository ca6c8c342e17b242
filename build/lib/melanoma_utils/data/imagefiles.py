"""Image files, the data layer's side of images: where a row's file is, whether it is safe to read and decodes.

* :func:`attach_image_paths`, :func:`missing_image_names`, :func:`other_formats`, :func:`unsafe_image_name` — the
  image folder's layout (a row's file, in any letter case and extension of :data:`IMAGE_EXTENSIONS`);
* :func:`check_image_file`, :func:`scan_images`, :func:`drop_unreadable` — validation at the boundary;
* :func:`square_resize` — centre-crop to a square and resize (OpenCV), what every decoder and ``make data`` share.

Decoding into training arrays is the pipeline's (:func:`melanoma_utils.pipeline.feeds.load_image_array`).
"""

from __future__ import annotations

import os
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Iterable, Sequence

import numpy as np
import pandas as pd

IMAGE_EXTENSIONS: tuple[str, ...] = (".jpg", ".jpeg", ".png", ".bmp", ".tif", ".tiff")  # what every decoder here reads (PH2 ships BMP)

#: The largest image (pixels) decoded: beyond it a row is an error like a corrupt file (a 13,500² JPEG decodes to
#: 550 MB). The environment variable ``MELANOMA_MAX_PIXELS`` overrides it.
MAX_PIXELS: int = 100_000_000


def max_pixels() -> int:
    """The pixel limit in force (:data:`MAX_PIXELS`, or ``MELANOMA_MAX_PIXELS`` from the environment)."""
    value = os.environ.get("MELANOMA_MAX_PIXELS", "")
    return int(value) if value.strip().isdigit() and int(value) > 0 else MAX_PIXELS


def unsafe_image_name(name: str) -> str | None:
    """Why ``name`` cannot be an ``image_name`` (``None`` when it can): an image name is a plain file stem, so that no
    row can read or write outside its image folder — no ``/`` or ``\\``, no ``..``, no drive or absolute path, no
    control characters."""
    text = str(name)
    if any(ord(c) < 32 or ord(c) == 127 for c in text):
        return "contains control characters"
    if "/" in text or "\\" in text:
        return "contains a path separator"
    if text in (".", "..") or text.startswith("..") or ".." in text.split("."):
        return "contains '..'"
    if len(text) > 1 and text[1] == ":":
        return "is a drive path"
    return None


def _libpng_decodes(path: Path) -> bool:
    """Whether libpng (through OpenCV, as the pipelines decode) reads the PNG file ``path``."""
    import cv2

    return cv2.imdecode(np.fromfile(str(path), np.uint8), cv2.IMREAD_COLOR) is not None


def check_image_file(path: str | os.PathLike[str]) -> str | None:
    """``None`` if the image decodes completely, else a one-line reason (missing, truncated, unreadable, larger than
    :func:`max_pixels`)."""
    from PIL import Image, UnidentifiedImageError

    if not str(path):
        return "file not found"
    path = Path(path)
    if not path.is_file():
        return "file not found"
    previous, Image.MAX_IMAGE_PIXELS = Image.MAX_IMAGE_PIXELS, None  # this project's limit applies, not Pillow's
    try:
        with Image.open(path) as im:  # the header only: refuse a huge image before decoding it
            w, h = im.size
        if w * h > max_pixels():
            return (f"image too large: {w}×{h} = {w * h / 1e6:.0f} MP (limit {max_pixels() / 1e6:.0f} MP; "
                    "set MELANOMA_MAX_PIXELS to raise it)")
    except UnidentifiedImageError:
        return "not an image file"
    except (OSError, SyntaxError, ValueError, Image.DecompressionBombError) as exc:
        return f"unreadable image ({exc})"
    finally:
        Image.MAX_IMAGE_PIXELS = previous
    try:
        with path.open("rb") as fh:
            head = fh.read(8)
            if head[:2] == b"\xff\xd8":  # JPEG: a complete file ends with the EOI marker
                fh.seek(-2, os.SEEK_END)
                if fh.read(2) != b"\xff\xd9":
                    return "truncated JPEG (no end-of-image marker)"
            if head == b"\x89PNG\r\n\x1a\n":  # PNG: a complete file ends with the IEND chunk (found by the fuzzer:
                fh.seek(-12, os.SEEK_END)  # Pillow decodes a cut PNG that OpenCV and TensorFlow refuse)
                if fh.read(12) != b"\x00\x00\x00\x00IEND\xaeB`\x82":
                    return "truncated PNG (no IEND chunk)"
                if not _libpng_decodes(path):  # Pillow tolerates damaged chunks that libpng (OpenCV, TensorFlow) refuses
                    return "damaged PNG (a chunk that OpenCV and TensorFlow cannot decode)"
        previous, Image.MAX_IMAGE_PIXELS = Image.MAX_IMAGE_PIXELS, None  # the limit above applies instead
        try:
            with Image.open(path) as im:
                im.load()
        finally:
            Image.MAX_IMAGE_PIXELS = previous
    except UnidentifiedImageError:
        return "not an image file"
    except (OSError, SyntaxError, ValueError, Image.DecompressionBombError) as exc:
        return f"unreadable image ({exc})"
    return None


def scan_images(paths: Sequence[str], workers: int = 4, progress: bool = False) -> dict[str, str]:
    """Decode every image; return ``{path: reason}`` for those that fail (empty dict when all are fine)."""
    iterator: Iterable[str | None]
    with ThreadPoolExecutor(max_workers=workers) as pool:
        iterator = pool.map(check_image_file, paths, chunksize=64)
        if progress:
            from tqdm.auto import tqdm

            iterator = tqdm(iterator, total=len(paths), desc="checking images", unit="img")
        results = list(iterator)
    return {p: r for p, r in zip(paths, results) if r is not None}


def drop_unreadable(df: pd.DataFrame, workers: int = 4) -> tuple[pd.DataFrame, dict[str, str]]:
    """Decode every image up front; return the rows that decode, and ``{image_name: reason}`` for the rest.

    Training calls this so that one bad file never stops a run half-way.
    """
    bad = scan_images(list(df["image_path"]), workers=workers)
    if not bad:
        return df, {}
    by_name = {n: bad[p] for n, p in zip(df["image_name"], df["image_path"]) if p in bad}
    return df[~df["image_name"].isin(set(by_name))].reset_index(drop=True), by_name


def square_resize(img: np.ndarray, size: int) -> np.ndarray:
    """Centre-crop to a square, then resize to ``size``×``size`` (area interpolation: antialiased)."""
    import cv2  # (OpenCV only where an image is resized: reading tables and evaluating need none)

    h, w = img.shape[:2]
    s = min(h, w)
    top, left = (h - s) // 2, (w - s) // 2
    crop = img[top : top + s, left : left + s]
    return cv2.resize(crop, (size, size), interpolation=cv2.INTER_AREA if s > size else cv2.INTER_CUBIC)


def attach_image_paths(df: pd.DataFrame, images_dir: str | os.PathLike[str]) -> pd.DataFrame:
    """Add ``image_path`` for each row (whether or not the file exists); a name that could leave the folder
    (:func:`unsafe_image_name`) gets no path at all."""
    images_dir = Path(images_dir)
    names = {p.name for p in images_dir.iterdir()} if images_dir.is_dir() else set()
    by_lower: dict[str, str] = {}
    for n in sorted(names):
        by_lower.setdefault(n.lower(), n)  # IMG_1.JPG (a camera's default) is found as IMG_1.jpg

    def find(file_name: str) -> str | None:  # the exact name first, else the same name in another letter case
        return file_name if file_name in names else by_lower.get(file_name.lower())

    paths = []
    for name in df["image_name"]:
        if unsafe_image_name(name):
            paths.append("")
            continue
        hit = next(filter(None, (find(f"{name}{ext}") for ext in IMAGE_EXTENSIONS)), None)
        paths.append(str(images_dir / (hit or f"{name}{IMAGE_EXTENSIONS[0]}")))
    out = df.copy()
    out["image_path"] = paths
    return out


def other_formats(images_dir: Path, names: list[str]) -> str:
    """A hint when files of the missing names exist in another format (e.g. ``.tif``), for error messages."""
    found = sorted({p.suffix.lower() for n in names[:50] for p in images_dir.glob(f"{n}.*")} - set(IMAGE_EXTENSIONS))
    return f"; found {', '.join(found)} files of these names: convert them to PNG or JPEG" if found else ""


def missing_image_names(df: pd.DataFrame) -> list[str]:
    """Image names whose file does not exist."""
    return [n for n, p in zip(df["image_name"], df["image_path"]) if not os.path.isfile(p)]
