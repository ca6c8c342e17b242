"""keras.applications backbones through the same builder and training code (weights=None: no network)."""
from __future__ import annotations

import warnings
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from melanoma_utils.models.fusion import build_backbone, build_model
from melanoma_utils.runs.run import TrainConfig
from melanoma_utils.runs.training import train_run

#: Each keras.applications family's documented input scaling of the RGB pixel (200, 100, 50), written out here.
_PIXEL = np.array([200.0, 100.0, 50.0])
_SCALED = {
    "caffe": np.array([50 - 103.939, 100 - 116.779, 200 - 123.68]),  # BGR, ImageNet mean subtracted
    "tf": _PIXEL / 127.5 - 1,  # [-1, 1]
    "torch": (_PIXEL / 255 - np.array([0.485, 0.456, 0.406])) / np.array([0.229, 0.224, 0.225]),
    "raw": _PIXEL,  # EfficientNets scale inside the network
}


@pytest.mark.parametrize("name, family", [("vgg16", "caffe"), ("resnet50", "caffe"), ("mobilenetv2", "tf"),
                                          ("efficientnetb0", "raw"), ("densenet121", "torch")])
def test_each_backbone_builds_and_scales_its_input_as_its_family_was_trained(name: str, family: str) -> None:
    """The pixels reaching each backbone are scaled the way its ImageNet weights expect (values written out above,
    from the keras.applications documentation), not compared with the package's own table."""
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        m = build_model(image_size=32, n_meta=5, kind="fusion", backbone=name, head_units=(8,), meta_units=(4,))
    image = np.broadcast_to(_PIXEL, (2, 32, 32, 3)).astype(np.float32)
    scaled = np.asarray(m.get_layer("backbone_preprocess")(image))
    np.testing.assert_allclose(scaled[0, 0, 0], _SCALED[family], rtol=1e-4, atol=1e-4)
    out = np.asarray(m({"image": image, "meta": np.zeros((2, 5), np.float32)}))
    assert out.shape == (2, 1) and np.isfinite(out).all()


@pytest.mark.slow
def test_freeze_then_fine_tune_with_a_local_weights_file(tiny_csv: Path, tmp_path: Path) -> None:
    from melanoma_utils.data.isic import load_dataset

    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        base = build_backbone("mobilenetv2", 32)
    weights = tmp_path / "mobilenetv2_local.weights.h5"
    base.save_weights(weights)
    start = [w.copy() for w in base.get_weights()]
    df = load_dataset(tiny_csv).frame

    def backbone_changed(run) -> bool:
        return any(not np.array_equal(a, b) for a, b in zip(start, run.model.get_layer("backbone").get_weights()))

    common = dict(kind="image", backbone="mobilenetv2", backbone_weights=str(weights), freeze_epochs=1, image_size=32,
                  batch_size=8, head_units=(8,), verbose=0, frozen_features=False, learning_rate=1e-2,
                  finetune_learning_rate=1e-2, patience=5)
    frozen_only = train_run(df, TrainConfig(epochs=1, **common), tmp_path / "frozen")
    assert not backbone_changed(frozen_only)  # the first phase trains the head only
    run = train_run(df, TrainConfig(epochs=2, **common), tmp_path / "run")
    hist = pd.read_csv(tmp_path / "run" / "history.csv")
    assert len(hist) == 2 and run.config["epochs_run"] == 2  # 1 frozen + 1 fine-tuning epoch
    assert backbone_changed(run)  # then the backbone is fine-tuned
