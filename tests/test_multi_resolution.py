"""Multi-resolution image branch (issue 31, item 3): a second copy of the frozen backbone sees the image at another
size; the merged embedding is what the head is trained on, cached, and what the saved model computes from images."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

from melanoma_utils.models.fusion import build_model, embedding_dim, image_encoder


@pytest.fixture(autouse=True)
def _user_cache(tmp_path_factory, monkeypatch):
    monkeypatch.setenv("MELANOMA_UTILS_CACHE", str(tmp_path_factory.getbasetemp() / "user-cache"))


def _resized(x: np.ndarray, size: int) -> np.ndarray:
    import keras

    return np.asarray(keras.ops.image.resize(x, (size, size), interpolation="bilinear"))


@pytest.mark.parametrize("merge", ["mean", "concat"])
def test_the_merged_embedding_is_the_two_resolutions_of_the_imagenet_backbone(merge: str) -> None:
    """64 px input + 32 px copy: the encoder's output is the mean (or the concatenation) of the single-resolution
    backbone at 64 px on the image and at 32 px on the image resized, to 1e-4; the head is as wide as the merge."""
    kw = dict(n_meta=4, kind="fusion", backbone="efficientnetlite0", backbone_weights="imagenet", meta_units=(4,),
              head_units=(4,))
    model = build_model(image_size=64, extra_image_size=32, resolution_merge=merge, **kw)
    x = np.random.default_rng(0).uniform(0, 255, (2, 64, 64, 3)).astype(np.float32)
    merged = np.asarray(image_encoder(model).predict_on_batch(x))
    big = np.asarray(image_encoder(build_model(image_size=64, **kw)).predict_on_batch(x))
    small = np.asarray(image_encoder(build_model(image_size=32, **kw)).predict_on_batch(_resized(x, 32)))
    assert np.abs(big - small).max() > 1e-2  # the two resolutions do see different things
    expected = (big + small) / 2 if merge == "mean" else np.concatenate([big, small], axis=1)
    np.testing.assert_allclose(merged, expected, atol=1e-4)
    assert embedding_dim(model) == (1280 if merge == "mean" else 2560)
    assert model.get_layer("head1_dense").input.shape[-1] == embedding_dim(model) + 4  # (+ the metadata branch)


def test_configuration_names_what_multi_resolution_needs() -> None:
    from melanoma_utils.runs.run import TrainConfig

    cfg = TrainConfig(image_size=320, extra_image_size=224)
    assert cfg.embedding_output == "pooled-with-224px-mean" and TrainConfig().embedding_output == "pooled"
    assert cfg.model_spec(4).extra_image_size == 224
    assert TrainConfig(extra_image_size="none").extra_image_size is None
    with pytest.raises(ValueError, match="must differ from image_size"):
        TrainConfig(image_size=224, extra_image_size=224)
    with pytest.raises(ValueError, match="--adapt-blocks 0"):
        TrainConfig(image_size=320, extra_image_size=224, adapt_blocks=1)
    with pytest.raises(ValueError, match="frozen pretrained backbone"):
        TrainConfig(backbone="cnn", extra_image_size=64)
    with pytest.raises(ValueError, match="resolution_merge must be one of mean, concat"):
        TrainConfig(image_size=320, extra_image_size=224, resolution_merge="max")


@pytest.mark.slow  # trains on Lite0 embeddings at two sizes (~25 s)
def test_a_multi_resolution_run_is_one_model_that_takes_images(tiny_csv: Path, tmp_path: Path) -> None:
    """Trained on cached merged embeddings (a cache entry of its own, not the single-resolution one), saved and
    loaded: predictions from images equal those from the cache, and Grad-CAM explains the image_size copy."""
    from melanoma_utils.data.isic import load_dataset
    from melanoma_utils.reports.explain import grad_cam, model_inputs
    from melanoma_utils.runs.run import Run, TrainConfig
    from melanoma_utils.runs.training import train_run

    df = load_dataset(tiny_csv).frame
    common = dict(kind="fusion", backbone="efficientnetlite0", backbone_weights="imagenet", image_size=48, epochs=2,
                  batch_size=8, embedding_views=2, head_units=(8,), meta_units=(4,), verbose=0)
    single = train_run(df, TrainConfig(**common), tmp_path / "single")
    assert single.config["stages"]["embeddings"]["computed"] == len(df)
    run = train_run(df, TrainConfig(**common, extra_image_size=32, resolution_merge="concat"), tmp_path / "multi")
    assert run.config["stages"]["embeddings"]["computed"] == len(df)  # not served from the single-resolution cache
    loaded = Run.load(tmp_path / "multi")
    assert loaded.train_config.extra_image_size == 32 and loaded.model.get_layer("backbone_2") is not None
    card = (tmp_path / "multi" / "MODEL_CARD.md").read_text()
    assert "48 px and a second copy of the backbone at 32 px (embeddings merged by concat)" in card
    from_images = loaded.predict(df, tta=2, cached_embeddings=False)
    from_cache = loaded.predict(df, tta=2, cached_embeddings=True)
    assert np.abs(from_images - from_cache).max() < 5e-3  # float16 cache only
    assert np.abs(from_images - single.predict(df, tta=2)).max() > 1e-4  # a different model
    x = model_inputs(loaded, df.iloc[:2])
    cam = grad_cam(loaded, x, np.array([0, 1]))
    assert cam.shape == (2, 48, 48) and 0 <= cam.min() and cam.max() <= 1 and cam.max() > 0
