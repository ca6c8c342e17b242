"""Behaviour pinned across the engine's redesign: the same small runs (each training path, seed 1, a made-up data set)
give the probabilities the code before the redesign gave (measured at daed849, the last landing before the training
paths became classes: identical to 6 decimals on the development machine). A change of the engine that changes what
a run learns fails here."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

from conftest import write_dataset
from melanoma_utils.data.isic import load_dataset
from melanoma_utils.runs.run import TrainConfig
from melanoma_utils.runs.training import train_run

PINNED = {
    "head": [0.389185, 0.3601, 0.357092, 0.358975, 0.357206, 0.346078],
    "cnn": [0.301436, 0.330411, 0.317211, 0.316881, 0.142857, 0.371298],
    "meta": [0.345166, 0.34141, 0.3734, 0.351187, 0.35793, 0.341045],
}
CONFIGS = {
    "head": lambda: TrainConfig.from_preset("test", kind="fusion", verbose=0, seed=1),
    "cnn": lambda: TrainConfig.from_preset("test", backbone="cnn", kind="fusion", verbose=0, seed=1, epochs=2),
    "meta": lambda: TrainConfig(kind="meta", epochs=2, verbose=0, seed=1),
}


@pytest.fixture(autouse=True)
def _user_cache(tmp_path_factory, monkeypatch):
    monkeypatch.setenv("MELANOMA_UTILS_CACHE", str(tmp_path_factory.getbasetemp() / "user-cache-pinned"))


@pytest.mark.slow
@pytest.mark.parametrize("path", list(PINNED))
def test_each_training_path_learns_what_it_learned_before_the_redesign(path: str, tmp_path: Path) -> None:
    df = load_dataset(write_dataset(tmp_path / "d", n=36, size=32)).frame
    run = train_run(df, CONFIGS[path](), tmp_path / path)
    np.testing.assert_allclose(run.predict_proba(df.head(6)), PINNED[path], atol=1e-3)
