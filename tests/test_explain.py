"""Explanations on tiny trained models with planted signals."""
from __future__ import annotations

import numpy as np
import pytest

from conftest import planted_sex_table, write_dataset
from melanoma_utils.data.isic import load_dataset
from melanoma_utils.reports import explain
from melanoma_utils.runs.run import TrainConfig
from melanoma_utils.runs.training import train_run


@pytest.fixture(scope="module")
def meta_run(tmp_path_factory):
    """A metadata-only model trained where sex decides the target and age is noise; site is constant."""
    df = planted_sex_table()
    run = train_run(df, TrainConfig(kind="meta", epochs=30, learning_rate=1e-2, patience=30, verbose=0),
                    tmp_path_factory.mktemp("explain") / "meta")
    return run, df


@pytest.fixture(scope="module")
def fusion(tmp_path_factory):
    csv = write_dataset(tmp_path_factory.mktemp("fx"), n=40, size=24)
    df = load_dataset(csv).frame
    run = train_run(df, TrainConfig(backbone="cnn", image_size=24, epochs=2, batch_size=8, conv_filters=(4, 8), meta_units=(8,),
                                    head_units=(8,), features="paper", verbose=0), tmp_path_factory.mktemp("fr") / "r")
    return run, df, explain.model_inputs(run, df)


def test_grouped_permutation_importance_finds_the_planted_feature(meta_run) -> None:
    run, df = meta_run
    imp = explain.permutation_importance(run, df, n_repeats=5, seed=1)
    assert list(imp.index)[0] == "sex" and imp.loc["sex", "importance_mean"] > 0.3
    assert imp.loc["site", "importance_mean"] == pytest.approx(0.0, abs=1e-9)  # constant: permuting changes nothing
    assert abs(imp.loc["age", "importance_mean"]) < 0.05
    assert imp.loc["sex", "columns"] == 3 and imp.loc["site", "columns"] == 7  # one-hot groups permuted together
    assert "image" not in imp.index


def test_split_fusion_reproduces_the_model(fusion) -> None:
    run, df, x = fusion
    encoder, head = explain.split_fusion(run.model)
    feats = np.asarray(encoder.predict(x["image"][:], verbose=0))
    a = explain.predict_arrays(head, {"image_features": feats, "meta": x["meta"]})
    assert np.allclose(a, run.predict(df), atol=1e-6)


def test_model_inputs_decode_images_only_when_indexed(fusion, monkeypatch) -> None:
    from melanoma_utils.pipeline import feeds

    run, df, _ = fusion
    decoded: list[int] = []
    batches = feeds.image_batches

    def counted(paths, *args, **kwargs):
        decoded.append(len(paths))
        return batches(paths, *args, **kwargs)

    monkeypatch.setattr(feeds, "image_batches", counted)
    x = explain.model_inputs(run, df)
    images = x["image"]
    assert decoded == [] and len(images) == len(df) and images.shape == (len(df), 24, 24, 3)
    whole = np.concatenate(list(batches(list(df["image_path"]), 24, run.config["preprocess"], 16)))
    np.testing.assert_array_equal(images[[3, 1]], whole[[3, 1]])
    np.testing.assert_array_equal(images[5], whole[5])
    np.testing.assert_array_equal(images[2:6], whole[2:6])
    np.testing.assert_array_equal(images.take([4, 0])[1], whole[0])
    assert sum(decoded) == 2 + 1 + 4 + 1  # only the rows asked for, never the whole table
    assert images[:].dtype == np.float32 and images[:].shape == whole.shape


def test_fusion_importance_includes_image_and_all_groups(fusion) -> None:
    run, df, x = fusion
    imp = explain.permutation_importance(run, df, x, n_repeats=2)
    assert set(imp.index) == {"age", "sex", "site", "width", "height", "image"}
    from melanoma_utils.evaluation.metrics import roc_auc

    # the baseline is the model's own ROC AUC on these rows (not a constant of the code)
    assert imp["baseline"].iloc[0] == pytest.approx(roc_auc(df["target"], explain.predict_arrays(run.model, x)), abs=1e-6)


def test_metadata_shap_is_additive_per_group(fusion) -> None:
    run, df, x = fusion
    values, base = explain.metadata_shap(run, x, np.array([0, 1, 2]), np.arange(10, 20))
    assert list(values.columns) == ["age", "sex", "site", "width", "height"] and values.shape == (3, 5)
    pred = explain.predict_arrays(run.model, x)[:3]
    assert np.allclose(values.sum(axis=1).to_numpy() + base, pred, atol=1e-5)


def _bright_square_run():
    """An image-only CNN whose single filter fires on bright pixels and whose output grows with that activation."""
    from dataclasses import asdict

    from melanoma_utils.models.features import MetadataEncoder
    from melanoma_utils.models.fusion import build_model
    from melanoma_utils.runs.run import Run, TrainConfig

    cfg = TrainConfig(kind="image", backbone="cnn", image_size=32, conv_filters=(1,), head_units=(1,), conv_dropout=0.0, head_dropout=0.0)
    model = build_model(cfg.model_spec(None))
    model.get_layer("img1_conv").set_weights([np.full((3, 3, 3, 1), 1 / 27, np.float32), np.array([-0.6], np.float32)])
    model.get_layer("head1_dense").set_weights([np.array([[10.0]], np.float32), np.zeros(1, np.float32)])
    model.get_layer("probability").set_weights([np.array([[5.0]], np.float32), np.array([-2.0], np.float32)])
    return Run(model, MetadataEncoder("clinical"), {"train": asdict(cfg), "preprocess": {"name": "none"}, "threshold": 0.5})


def test_image_shap_is_approximately_additive_and_sits_on_the_planted_square() -> None:
    """Expected-gradients SHAP sums to the prediction's move away from the background, and its mass lies on the bright
    square that moves it (all-zero or misplaced SHAP fails)."""
    run = _bright_square_run()
    images = np.full((12, 32, 32, 3), 40.0, np.float32)
    images[0, 4:16, 4:16] = 250.0
    images[1, 16:28, 14:26] = 250.0
    x = {"image": images, "meta": np.zeros((12, 1), np.float32)}
    bg = np.arange(2, 12)  # plain dark images
    pred = explain.predict_arrays(run.model, x)
    sv = explain.image_shap(run, x, np.array([0, 1]), bg, nsamples=400)
    assert sv.shape == (2, 32, 32, 3)
    for k, (r, c) in enumerate([(4, 4), (16, 14)]):
        gap = float(pred[k] - pred[bg].mean())
        assert gap > 0.2  # the square moves the prediction a lot
        assert abs(sv[k].sum() - gap) <= 0.3 * gap
        mass = np.abs(sv[k]).sum(-1)
        assert mass[r:r + 12, c:c + 12].sum() > 0.8 * mass.sum()


def test_grad_cam_shape_and_range(fusion) -> None:
    run, df, x = fusion
    cam = explain.grad_cam(run, x, np.array([0, 3, 5]))
    assert cam.shape == (3, 24, 24) and cam.min() >= 0 and cam.max() <= 1 + 1e-6


def test_grad_cam_needs_the_cnn_branch(meta_run) -> None:
    run, df = meta_run
    with pytest.raises(ValueError, match="needs an image branch"):
        explain.grad_cam(run, {"meta": run.encoder.transform(df)}, np.array([0]))


def test_grad_cam_peaks_on_the_planted_bright_square() -> None:
    """A CNN whose only filter fires on bright pixels and whose output grows with that activation: its
    Grad-CAM must peak where the bright square is, wherever that is."""
    run = _bright_square_run()
    images = np.full((3, 32, 32, 3), 40.0, np.float32)
    corners = [(2, 2), (20, 6), (12, 22)]
    for k, (r, c) in enumerate(corners):
        images[k, r:r + 8, c:c + 8] = 250.0
    cams = explain.grad_cam(run, {"image": images, "meta": np.zeros((3, 1), np.float32)}, np.arange(3))
    for cam, (r, c) in zip(cams, corners):
        peak = np.unravel_index(np.argmax(cam), cam.shape)
        assert r - 1 <= peak[0] <= r + 8 and c - 1 <= peak[1] <= c + 8, (peak, (r, c))
        assert cam[r:r + 8, c:c + 8].mean() > 2 * cam.mean() and cam.max() == pytest.approx(1.0)


def test_lesion_mask_finds_a_dark_central_lesion_and_ignores_a_dark_edge_mark() -> None:
    from melanoma_utils.reports.explain import lesion_mask, mass_inside

    img = np.full((96, 96, 3), 200, np.uint8)
    yy, xx = np.mgrid[:96, :96]
    disk = (yy - 50) ** 2 + (xx - 46) ** 2 < 18 ** 2
    img[disk] = 60
    img[:, :3] = 0  # a dark ruler strip along the edge
    mask = lesion_mask(img)
    iou = (mask & disk).sum() / (mask | disk).sum()
    assert iou > 0.9
    assert not mask[:, :3].any()
    heat = disk.astype(float)
    assert mass_inside(heat, mask) > 0.95
    heat_out = np.zeros((96, 96))
    heat_out[:, :10] = 1
    assert mass_inside(heat_out, mask) == 0.0
    assert np.isnan(mass_inside(np.zeros((96, 96)), mask))


def test_pick_lesions_fills_n_from_all_four_cells_in_turn() -> None:
    from melanoma_utils.reports.explain import pick_lesions

    y = np.array([1] * 5 + [0] * 10)
    pred = np.array([1, 1, 1, 0, 0] + [0] * 8 + [1, 1])
    picks = pick_lesions(y, pred, 6, seed=1)
    assert len(picks) == 6 and len(set(picks)) == 6
    cells = [(y[i], pred[i] == y[i]) for i in picks]
    assert cells[:4] == [(1, True), (1, False), (0, True), (0, False)]
    assert len(pick_lesions(y[:2], pred[:2], 6)) == 2  # fewer rows than asked: all of them


def test_mean_abs_with_ci_is_never_below_zero_and_contains_the_mean() -> None:
    import pandas as pd

    from melanoma_utils.reports.explain import mean_abs_with_ci

    rng = np.random.default_rng(0)
    values = pd.DataFrame({"age": rng.normal(0, 0.01, 12), "site": rng.normal(0, 0.1, 12)})
    out = mean_abs_with_ci(values, n_boot=200)
    assert list(out.index) == ["site", "age"]
    assert (out["ci_low"] >= 0).all() and (out["ci_low"] <= out["mean_abs"]).all() and (out["mean_abs"] <= out["ci_high"]).all()
    assert out.loc["site", "mean_abs"] == pytest.approx(values["site"].abs().mean())


def test_mask_quality_rejects_border_skin_huge_tiny_and_thin_masks() -> None:
    from melanoma_utils.reports.explain import inside_over_area, mask_quality

    s = 128
    yy, xx = np.mgrid[:s, :s]
    disc = (yy - 64) ** 2 + (xx - 64) ** 2 < 30 ** 2  # a central lesion: 17% of the image
    assert mask_quality(disc) == "ok"
    assert "> 60%" in mask_quality(np.ones((s, s), bool) & ~((yy < 10) & (xx < 10)))
    assert "< 2%" in mask_quality((yy - 64) ** 2 + (xx - 64) ** 2 < 5 ** 2)
    edge = disc | (xx < 6)  # skin along the left edge joined to the lesion
    assert mask_quality(edge).startswith("touches the border")
    hair = np.zeros((s, s), bool)
    for row in range(20, 110, 9):
        hair[row:row + 2, 15:113] = True  # thin parallel strands in the middle
    assert mask_quality(hair).startswith("thin structures")
    assert inside_over_area(0.34, disc) == pytest.approx(0.34 / disc.mean())
    assert np.isnan(inside_over_area(float("nan"), disc))
