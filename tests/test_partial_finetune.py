"""Partial fine-tuning on cached activations: the cut backbone equals the whole one, and a run whose last block was
trained on cached activations stays one model that takes images."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

from melanoma_utils.models.fusion import build_model, image_encoder
from melanoma_utils.models.partial import (
    block_input_layer,
    build_lite_top,
    copy_layers_by_name,
    first_adapted_block,
    trunk_model,
)


@pytest.fixture(autouse=True)
def _user_cache(tmp_path_factory, monkeypatch):
    monkeypatch.setenv("MELANOMA_UTILS_CACHE", str(tmp_path_factory.getbasetemp() / "user-cache"))


@pytest.mark.parametrize("variant,start", [("efficientnetlite0", 15), ("efficientnetlite0", 11), ("efficientnetlite1", 16)])
def test_top_of_the_trunk_is_the_whole_backbone(variant: str, start: int) -> None:
    """ImageNet weights, 64 px: the top (blocks start.. + head conv + pooling, weights copied by name) applied to the
    trunk's activations gives the pooled embedding of the whole backbone, to 1e-4."""
    model = build_model(image_size=64, n_meta=4, kind="fusion", backbone=variant, backbone_weights="imagenet", meta_units=(4,), head_units=(4,))
    trunk = trunk_model(model, variant, start)
    top = build_lite_top(variant, start, tuple(trunk.output.shape[1:]))
    assert copy_layers_by_name(model.get_layer("backbone"), top) > 0
    x = np.random.default_rng(0).uniform(0, 255, (3, 64, 64, 3)).astype(np.float32)
    whole = np.asarray(image_encoder(model).predict_on_batch(x))
    cut = np.asarray(top.predict_on_batch(np.asarray(trunk.predict_on_batch(x))))
    assert whole.shape == cut.shape == (3, 1280)
    np.testing.assert_allclose(cut, whole, atol=1e-4)
    fresh = build_lite_top(variant, start, tuple(trunk.output.shape[1:]))  # same layers, weights not copied
    assert np.abs(np.asarray(fresh.predict_on_batch(np.asarray(trunk.predict_on_batch(x)))) - whole).max() > 1e-2


def test_cuts_outside_the_backbone_name_the_range() -> None:
    with pytest.raises(ValueError, match=r"blocks 0..15; got 16"):
        block_input_layer("efficientnetlite0", 16)
    assert block_input_layer("efficientnetlite0", 0) == "block0_dwconv"  # block 0 has no expansion
    assert block_input_layer("efficientnetlite0", 15) == "block15_expand_conv"
    assert first_adapted_block("efficientnetlite0", 1) == 15 and first_adapted_block("efficientnetlite2", 2) == 19
    with pytest.raises(ValueError, match=r"adapt_blocks 17 is not in 1..16"):
        first_adapted_block("efficientnetlite0", 17)


def test_a_run_adapted_on_cached_activations_is_one_model_that_takes_images(tiny_csv: Path, tmp_path: Path) -> None:
    """adapt_blocks=1: the last block and the head conv change, every earlier block keeps its ImageNet weights, and
    the saved model run on images gives what the cached activations through its adapted top give."""
    from melanoma_utils.data.isic import load_dataset
    from melanoma_utils.runs.run import Run, TrainConfig
    from melanoma_utils.runs.training import train_run

    df = load_dataset(tiny_csv).frame
    cfg = TrainConfig(kind="fusion", backbone="efficientnetlite0", backbone_weights="imagenet", image_size=32, epochs=2,
                      batch_size=8, embedding_views=2, head_units=(8,), meta_units=(4,), verbose=0, adapt_blocks=1,
                      adapt_epochs=2, adapt_learning_rate=1e-2, patience=5)
    run = train_run(df, cfg, tmp_path / "run")
    adapt = run.config["stages"]["adapt"]
    assert adapt["first_block"] == 15 and adapt["epochs"] == 2 and adapt["computed"] == len(df)
    loaded = Run.load(tmp_path / "run")
    assert "its last 1 block(s) and head convolution trained on cached activations" in (
        tmp_path / "run" / "MODEL_CARD.md").read_text()
    imagenet = build_model(image_size=32, n_meta=4, kind="fusion", backbone="efficientnetlite0", backbone_weights="imagenet",
                           meta_units=(4,), head_units=(4,)).get_layer("backbone")
    base = loaded.model.get_layer("backbone")
    for name, changed in (("block15_project_conv", True), ("head_conv", True), ("block14_project_conv", False),
                          ("block15_project_bn", False)):
        same = all(np.array_equal(a, b) for a, b in zip(base.get_layer(name).get_weights(),
                                                         imagenet.get_layer(name).get_weights()))
        assert same != changed, name
    from_images = loaded.predict(df, cached_embeddings=False)
    from_cache = loaded.predict(df, cached_embeddings=True)
    assert np.abs(from_images - from_cache).max() < 5e-3  # float16 activations only
    assert not base.trainable


def test_adapting_needs_a_frozen_lite_backbone() -> None:
    from melanoma_utils.runs.run import TrainConfig

    with pytest.raises(ValueError, match="adapt_blocks trains the last blocks"):
        TrainConfig(backbone="cnn", adapt_blocks=1)
    with pytest.raises(ValueError, match="adapt_blocks must be >= 0"):
        TrainConfig(adapt_blocks=-1)
