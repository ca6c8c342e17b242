"""Partial fine-tuning on cached activations: the cut backbone equals the whole one, and a run whose last block was
trained on cached activations stays one model that takes images."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

from melanoma_utils.models.fusion import build_model, image_encoder
from melanoma_utils.models.partial import block_input_layer, build_lite_top, copy_layers_by_name, trunk_model


@pytest.fixture(autouse=True)
def _user_cache(tmp_path_factory, monkeypatch):
    monkeypatch.setenv("MELANOMA_UTILS_CACHE", str(tmp_path_factory.getbasetemp() / "user-cache"))


@pytest.mark.parametrize("variant,start", [("efficientnetlite0", 15), ("efficientnetlite0", 11), ("efficientnetlite1", 16)])
def test_top_of_the_trunk_is_the_whole_backbone(variant: str, start: int) -> None:
    """ImageNet weights, 64 px: the top (blocks start.. + head conv + pooling, weights copied by name) applied to the
    trunk's activations gives the pooled embedding of the whole backbone, to 1e-4."""
    model = build_model(64, 4, "fusion", backbone=variant, backbone_weights="imagenet", meta_units=(4,), head_units=(4,))
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
