"""Shared fixtures: tiny data sets made in the test, and the real shared data (skipped where absent)."""

from __future__ import annotations

import struct
import zlib
from pathlib import Path

import cv2
import numpy as np
import pandas as pd
import pytest

from melanoma_utils import config

SHARED_FULL_CSV = config.SHARED_METADATA_DIR / "ISIC_2020_Training_GroundTruth_v2.csv"
SHARED_SUBSET_CSV = config.SHARED_IMAGES_DIR / "train.csv"


#: Test files by how long they take, longest first (`pytest --durations=60` on 2 cores: the notebooks ~250 s, the
#: training command line ~140 s, the device strategies ~110 s, ...). It only orders the files handed to the test
#: processes (`make test`: one file per process, `--no-loadscope-reorder`): the long files start first, so the short
#: ones fill both processes to the end instead of one process finishing a long file alone. Unlisted files follow.
LONGEST_FIRST: tuple[str, ...] = (
    "test_notebooks.py", "test_training_cli.py", "test_distribution.py", "test_run_lifecycle.py",
    "test_shared_backbone.py", "test_jax_backend.py", "test_sources.py", "test_diagnosis_head.py",
    "test_pretrained_training.py", "test_export.py", "test_trust_files.py", "test_finetune.py", "test_calibration.py",
    "test_multi_resolution.py", "test_shortcuts.py", "test_partial_finetune.py", "test_run_integrity.py",
    "test_backbones.py",
)


def pytest_collection_modifyitems(config: pytest.Config, items: list[pytest.Item]) -> None:
    """The files of :data:`LONGEST_FIRST` first, in its order; the order of the tests inside a file is kept."""
    gone = [name for name in LONGEST_FIRST if not (Path(__file__).parent / name).is_file()]
    if gone:
        raise pytest.UsageError(f"tests/conftest.py LONGEST_FIRST names {', '.join(gone)}: no such test file")
    rank = {name: i for i, name in enumerate(LONGEST_FIRST)}
    items.sort(key=lambda item: rank.get(item.path.name, len(rank)))


def write_dataset(root: Path, n: int = 24, size: int = 32, seed: int = 0, pos_every: int = 3) -> Path:
    """A tiny resized-layout data set: ``root/train.csv`` + ``root/train/*.jpg``; returns the CSV path."""
    rng = np.random.default_rng(seed)
    (root / "train").mkdir(parents=True, exist_ok=True)
    sites = ["torso", "head/neck", "lower extremity", "upper extremity", ""]
    rows = []
    for i in range(n):
        target = int(i % pos_every == 0)
        img = rng.integers(0, 255, (size, size + 8, 3), dtype=np.uint8)
        if target:
            img[size // 4 : 3 * size // 4, size // 4 : 3 * size // 4] = 20  # a dark "lesion"
        cv2.imwrite(str(root / "train" / f"IMG_{i:04d}.jpg"), img)
        rows.append(
            dict(
                image_name=f"IMG_{i:04d}",
                patient_id=f"P{i // 2:03d}",
                sex=["male", "female"][i % 2],
                age_approx=float(30 + 5 * (i % 8)),
                anatom_site_general_challenge=sites[i % len(sites)],
                diagnosis="melanoma" if target else "nevus",
                benign_malignant="malignant" if target else "benign",
                target=target,
                tfrecord=i % 5,
                width=[6000, 1024][target],
                height=[4000, 1024][target],
            )
        )
    csv = root / "train.csv"
    pd.DataFrame(rows).to_csv(csv, index=False)
    return csv


def planted_sex_table(n: int = 400, seed: int = 0) -> pd.DataFrame:
    """A normalised metadata table (no images) where sex decides the target, age is noise, site constant."""
    rng = np.random.default_rng(seed)
    y = (rng.random(n) < 0.3).astype(int)
    return pd.DataFrame({"image_name": [f"i{i}" for i in range(n)], "patient_id": [f"p{i // 2}" for i in range(n)],
                         "sex": np.where(y == 1, "male", "female"), "age": rng.normal(50, 10, n), "site": "torso",
                         "diagnosis": "nevus", "target": y, "tfrecord": pd.NA, "width": np.nan, "height": np.nan,
                         "image_path": ""})


@pytest.fixture
def tiny_csv(tmp_path: Path) -> Path:
    """24 rows, 12 patients, 8 malignant, 32×40 px images."""
    return write_dataset(tmp_path / "tiny")


@pytest.fixture
def shared_full_csv() -> Path:
    if not SHARED_FULL_CSV.is_file():
        pytest.skip("real metadata not present (../shared/data)")
    return SHARED_FULL_CSV


@pytest.fixture
def shared_subset_csv() -> Path:
    if not SHARED_SUBSET_CSV.is_file():
        pytest.skip("real image subset not present (../shared/data)")
    return SHARED_SUBSET_CSV


def png_claiming(width: int, height: int) -> bytes:
    """A PNG file whose header claims ``width`` × ``height`` (valid CRCs) with almost no data."""
    def chunk(kind: bytes, data: bytes) -> bytes:
        return struct.pack(">I", len(data)) + kind + data + struct.pack(">I", zlib.crc32(kind + data) & 0xFFFFFFFF)

    ihdr = struct.pack(">IIBBBBB", width, height, 8, 2, 0, 0, 0)
    return b"\x89PNG\r\n\x1a\n" + chunk(b"IHDR", ihdr) + chunk(b"IDAT", zlib.compress(b"\x00" * 16)) + chunk(b"IEND", b"")
