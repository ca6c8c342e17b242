from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

from melanoma_utils.data.isic import load_dataset
from melanoma_utils.pipeline.augment import build_augmenter
from melanoma_utils.pipeline.feeds import load_image_array, make_array_sequence, make_dataset
from melanoma_utils.pipeline.transforms import preprocess


@pytest.fixture(scope="module")
def image() -> np.ndarray:
    return (np.random.default_rng(0).random((32, 32, 3)) * 255).astype(np.uint8)


def test_augmenter_seeded_and_identity_at_inference(image: np.ndarray) -> None:
    a, b, c = build_augmenter(32, seed=1), build_augmenter(32, seed=1), build_augmenter(32, seed=2)
    x = image.astype(np.float32)
    ya, yb, yc = (np.asarray(m(x, training=True)) for m in (a, b, c))
    assert ya.shape == (32, 32, 3) and ya.dtype == np.float32 and 0 <= ya.min() and ya.max() <= 255
    assert np.allclose(ya, yb) and not np.allclose(ya, yc)
    assert np.array_equal(np.asarray(a(x, training=False)), x)
    assert not np.allclose(np.asarray(a(x, training=True)), ya)  # a new draw each call


def test_augmenter_each_part_can_be_disabled(image: np.ndarray) -> None:
    none = build_augmenter(32, crop_fraction=1.0, brightness=0, contrast=0, saturation=0, hue=0,
                           grayscale_probability=0, flips=False, transpose=False)
    x = image.astype(np.float32)
    assert np.allclose(np.asarray(none(x, training=True)), x)
    flips_only = build_augmenter(32, seed=3, crop_fraction=1.0, brightness=0, contrast=0, saturation=0, hue=0,
                                 grayscale_probability=0)
    y = np.asarray(flips_only(x, training=True))
    dihedral = [np.rot90(x, k) for k in range(4)] + [np.rot90(x[::-1], k) for k in range(4)]
    assert any(np.allclose(y, d) for d in dihedral)  # flips + transpose: a rotation/mirror, pixels intact


def _elements(ds) -> list:
    return [b for b in ds.as_numpy_iterator()]


def test_pipeline_shapes_dtypes_and_determinism(tiny_csv: Path) -> None:
    df = load_dataset(tiny_csv).frame
    meta = np.arange(len(df) * 2, dtype=np.float32).reshape(-1, 2)
    ds = make_dataset(list(df["image_path"]), meta, df["target"].to_numpy(), image_size=16, batch_size=8)
    batches = _elements(ds)
    x, y, w = batches[0]
    assert x["image"].shape == (8, 16, 16, 3) and x["image"].dtype == np.float32 and x["meta"].shape == (8, 2)
    assert np.array_equal(x["meta"], meta[:8]) and np.array_equal(y, df["target"].to_numpy()[:8])  # order kept
    assert sum(len(b[1]) for b in batches) == 24
    aug = build_augmenter(16, seed=0)
    run1 = _elements(make_dataset(list(df["image_path"]), meta, df["target"].to_numpy(), image_size=16, training=True,
                                  augmenter=aug, seed=4, batch_size=8))
    aug2 = build_augmenter(16, seed=0)
    run2 = _elements(make_dataset(list(df["image_path"]), meta, df["target"].to_numpy(), image_size=16, training=True,
                                  augmenter=aug2, seed=4, batch_size=8))
    assert all(np.allclose(a[0]["image"], b[0]["image"]) for a, b in zip(run1, run2))  # seeded: reproducible
    assert not np.array_equal(run1[0][0]["meta"], meta[:8])  # shuffled


def test_pipeline_preprocess_matches_numpy_at_train_and_predict(tiny_csv: Path) -> None:
    df = load_dataset(tiny_csv).frame
    meta = np.zeros((len(df), 1), np.float32)
    predict_ds = make_dataset(list(df["image_path"]), meta, image_size=16, preprocess="ben_graham_gray", batch_size=24)
    train_ds = make_dataset(list(df["image_path"]), meta, df["target"].to_numpy(), image_size=16,
                            preprocess="ben_graham_gray", batch_size=24, training=False)
    a = next(iter(predict_ds.as_numpy_iterator()))["image"]
    b = next(iter(train_ds.as_numpy_iterator()))[0]["image"]
    assert np.array_equal(a, b)
    raw = next(iter(make_dataset(list(df["image_path"]), meta, image_size=16, batch_size=24).as_numpy_iterator()))["image"]
    expected = np.stack([preprocess(im.astype(np.uint8), "ben_graham_gray") for im in raw])
    assert np.array_equal(a.astype(np.uint8), expected)
    assert (a[..., 0] == a[..., 1]).all()  # greyscale variant inside tf.data


def test_decode_resize_matches_opencv_path(tiny_csv: Path) -> None:
    df = load_dataset(tiny_csv).frame
    tf_imgs = next(iter(make_dataset(list(df["image_path"]), np.zeros((24, 1)), image_size=16,
                                     batch_size=24).as_numpy_iterator()))["image"]
    cv_imgs = load_image_array(list(df["image_path"]), 16)
    assert cv_imgs.dtype == np.uint8 and cv_imgs.shape == (24, 16, 16, 3)
    assert np.abs(tf_imgs - cv_imgs.astype(np.float32)).mean() < 4


def test_array_sequence_batches() -> None:
    imgs = np.zeros((10, 8, 8, 3), np.uint8)
    seq = make_array_sequence(imgs, np.ones((10, 2)), np.arange(10) % 2, batch_size=4)
    assert len(seq) == 3
    x, y, w = seq[2]
    assert x["image"].shape == (2, 8, 8, 3) and x["image"].dtype == np.float32 and y.tolist() == [0, 1]


def test_bmp_and_tiff_images_are_read_wherever_jpeg_and_png_are(tmp_path: Path) -> None:
    """PH2 ships BMP, some clinics TIFF: found by name, checked, decoded to the same pixels as a PNG by both decoders."""
    import pandas as pd
    from PIL import Image

    from melanoma_utils.data.imagefiles import attach_image_paths, check_image_file
    from melanoma_utils.pipeline.feeds import decode_and_resize

    rng = np.random.default_rng(0)
    pixels = rng.integers(0, 256, (40, 56, 3), dtype=np.uint8)
    for name, ext in (("a", ".png"), ("b", ".bmp"), ("c", ".tif"), ("d", ".tiff")):
        Image.fromarray(pixels).save(tmp_path / f"{name}{ext}")
    df = attach_image_paths(pd.DataFrame({"image_name": ["a", "b", "c", "d"]}), tmp_path)
    assert [Path(p).suffix for p in df["image_path"]] == [".png", ".bmp", ".tif", ".tiff"]
    assert all(check_image_file(p) is None for p in df["image_path"])
    tf_pixels = [decode_and_resize(p, 32).numpy() for p in df["image_path"]]
    cv_pixels = load_image_array(list(df["image_path"]), 32)
    for i in (1, 2, 3):
        np.testing.assert_array_equal(tf_pixels[i], tf_pixels[0])
        np.testing.assert_array_equal(cv_pixels[i], cv_pixels[0])
    # inside a tf.data pipeline too (the path is a graph tensor there)
    ds = make_dataset(list(df["image_path"]), np.zeros((4, 1), np.float32), image_size=32, batch_size=4)
    batch = next(iter(ds))["image"].numpy()
    np.testing.assert_array_equal(batch[2], batch[0])


def test_a_feed_spec_is_shared_and_an_unknown_option_is_refused(tiny_csv) -> None:
    from melanoma_utils.pipeline.feeds import FeedSpec

    df = load_dataset(tiny_csv).frame
    spec = FeedSpec(image_size=16, batch_size=5)
    ds = make_dataset(list(df["image_path"]), np.zeros((len(df), 1)), spec=spec)
    first = next(iter(ds.as_numpy_iterator()))["image"]
    assert first.shape == (5, 16, 16, 3)
    assert next(iter(make_dataset(list(df["image_path"]), np.zeros((len(df), 1)), spec=spec, batch_size=3)
                     .as_numpy_iterator()))["image"].shape[0] == 3 and spec.batch_size == 5  # override, spec unchanged
    with pytest.raises(TypeError, match="batchsize"):
        make_dataset(list(df["image_path"]), np.zeros((len(df), 1)), spec=spec, batchsize=3)
