"""The same model and training code on Keras' JAX backend, with TensorFlow made unimportable
(GPU hosts often ship only JAX). Runs in a subprocess: Keras fixes its backend at import."""
from __future__ import annotations

import importlib.util
import os
import subprocess
import sys
import textwrap
from pathlib import Path

import pytest

pytestmark = [pytest.mark.slow,
              pytest.mark.skipif(importlib.util.find_spec("jax") is None, reason="JAX is not installed")]

SCRIPT = textwrap.dedent("""
    import sys

    class NoTensorFlow:  # any TensorFlow import now fails, as on a host without it
        def find_spec(self, name, path=None, target=None):
            if name == "tensorflow" or name.startswith("tensorflow."):
                raise ImportError("TensorFlow is blocked in this test")

    sys.meta_path.insert(0, NoTensorFlow())
    sys.path.insert(0, {tests!r})
    from pathlib import Path
    import numpy as np, keras
    assert keras.backend.backend() == "jax"
    from conftest import write_dataset
    from melanoma_utils.data.isic import load_dataset
    from melanoma_utils.runs.run import Run, TrainConfig
    from melanoma_utils.runs.training import train_run
    df = load_dataset(write_dataset(Path({root!r}) / "d", n=40, size=24)).frame
    run = train_run(df, TrainConfig(backbone="cnn", image_size=24, epochs=2, batch_size=8, conv_filters=(4, 8), meta_units=(8,),
                                    head_units=(8,), features="paper", verbose=0), Path({root!r}) / "run")
    p = Run.load(Path({root!r}) / "run").predict(df)
    assert p.shape == (40,) and np.isfinite(p).all() and np.allclose(p, run.predict(df), atol=1e-5)
    # the pretrained EfficientNet-Lite0 branch: cached embeddings, head, saved two-input model, TTA
    lite = train_run(df, TrainConfig(image_size=32, epochs=2, batch_size=8, backbone="efficientnetlite0",
                                     backbone_weights="imagenet", embedding_views=2, meta_units=(4,), head_units=(8,),
                                     verbose=0), Path({root!r}) / "lite")
    q = Run.load(Path({root!r}) / "lite").predict(df, tta=2)
    assert q.shape == (40,) and np.isfinite(q).all() and lite.config["stages"]["embeddings"]["computed"] == 40
    assert "tensorflow" not in sys.modules
    print("JAX_OK", run.config["keras_backend"], run.config["epochs_run"])
""")


def test_training_and_prediction_on_jax_without_tensorflow(tmp_path: Path) -> None:
    code = SCRIPT.format(tests=str(Path(__file__).parent), root=str(tmp_path))
    env = {**os.environ, "KERAS_BACKEND": "jax", "JAX_PLATFORMS": "cpu", "MELANOMA_UTILS_CACHE": str(tmp_path / "cache")}
    res = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, env=env, timeout=600)
    assert res.returncode == 0, res.stderr[-3000:]
    assert "JAX_OK jax 2" in res.stdout
