"""Training on cached embeddings of the frozen pretrained EfficientNet-Lite0, the saved two-input model,
fine-tuning, test-time augmentation and the offline-weights errors."""

from __future__ import annotations

import warnings
from pathlib import Path

import cv2
import numpy as np
import pytest

from melanoma_utils.data.isic import load_dataset
from melanoma_utils.pipeline.transforms import dihedral
from melanoma_utils.runs.run import Run, TrainConfig
from melanoma_utils.runs.training import train_run


@pytest.fixture(autouse=True)
def _user_cache(tmp_path_factory, monkeypatch):
    monkeypatch.setenv("MELANOMA_UTILS_CACHE", str(tmp_path_factory.getbasetemp() / "user-cache-pretrained"))  # its own: it counts what it computes


def _cfg(**kw) -> TrainConfig:
    base = dict(kind="fusion", backbone="efficientnetlite0", backbone_weights="imagenet", image_size=32, epochs=3,
                batch_size=8, embedding_views=2, head_units=(8,), meta_units=(4,), verbose=0)
    return TrainConfig(**{**base, **kw})


def test_dihedral_views_by_hand() -> None:
    img = np.arange(4).reshape(1, 2, 2, 1)  # [[0, 1], [2, 3]]
    assert dihedral(img, 0)[0, :, :, 0].tolist() == [[0, 1], [2, 3]]
    assert dihedral(img, 1)[0, :, :, 0].tolist() == [[1, 3], [0, 2]]  # a quarter turn anticlockwise
    assert dihedral(img, 2)[0, :, :, 0].tolist() == [[3, 2], [1, 0]]
    assert dihedral(img, 4)[0, :, :, 0].tolist() == [[1, 0], [3, 2]]  # mirrored
    views = {tuple(dihedral(np.arange(9).reshape(1, 3, 3, 1), v).ravel()) for v in range(8)}
    assert len(views) == 8  # eight distinct views of an asymmetric image
    with pytest.raises(ValueError, match="0..7"):
        dihedral(img, 8)


def test_head_on_cached_embeddings_becomes_the_full_model(tiny_csv: Path, tmp_path: Path) -> None:
    from melanoma_utils.models.embeddings import EmbeddingSpec, cached_embeddings

    df = load_dataset(tiny_csv).frame
    run = train_run(df, _cfg(), tmp_path / "run")
    stages = run.config["stages"]
    assert stages["embeddings"]["computed"] == len(df) and stages["head"]["epochs"] >= 1
    loaded = Run.load(tmp_path / "run")
    assert {"image", "meta"} == set(loaded.model.input.keys() if isinstance(loaded.model.input, dict) else
                                    [t.name for t in loaded.model.inputs])
    # the saved model = frozen backbone + the head trained on the cache: same probabilities as the head would give
    base = loaded.model.get_layer("backbone")
    emb, counts = cached_embeddings(base, list(df["image_path"]),
                                    EmbeddingSpec("efficientnetlite0", "imagenet", 32, loaded.config["preprocess"]))
    assert counts == {"cached": len(df), "computed": 0}  # keyed by image: the training's entries are reused
    from melanoma_utils.models.fusion import build_head_model, copy_head_weights

    head = build_head_model(1280, n_meta=loaded.encoder.n_features, meta_units=(4,), head_units=(8,))
    copy_head_weights(loaded.model, head)
    p_head = np.asarray(head.predict({"embedding": emb[:, 0], "meta": loaded.encoder.transform(df)}, verbose=0)).ravel()
    p_full = loaded.predict(df)
    assert np.abs(p_head - p_full).max() < 2e-3  # float16 cache rounding only
    assert not base.trainable


def test_embedding_cache_is_keyed_by_preprocessing_and_content(tiny_csv: Path, tmp_path: Path) -> None:
    from melanoma_utils.models.embeddings import EmbeddingSpec, cached_embeddings
    from melanoma_utils.models.fusion import build_backbone
    from melanoma_utils.pipeline.transforms import preprocess_config

    df = load_dataset(tiny_csv).frame.head(4)
    base = build_backbone("efficientnetlite0", 32, "imagenet")
    def spec(name: str, views: int = 1) -> EmbeddingSpec:
        return EmbeddingSpec("efficientnetlite0", "imagenet", 32, preprocess_config(name), views)

    a, c1 = cached_embeddings(base, list(df["image_path"]), spec("none", 2), cache_root=tmp_path)
    b, c2 = cached_embeddings(base, list(df["image_path"]), spec("none"), cache_root=tmp_path)
    assert c1["computed"] == 4 and c2 == {"cached": 4, "computed": 0}
    np.testing.assert_array_equal(a[:, :1], b)
    _, c3 = cached_embeddings(base, list(df["image_path"]), spec("shades_of_gray"), cache_root=tmp_path)
    assert c3["computed"] == 4  # other preprocessing, other entries
    # a changed image file is a new entry
    path = df["image_path"].iloc[0]
    cv2.imwrite(path, np.zeros((32, 40, 3), np.uint8))
    _, c4 = cached_embeddings(base, list(df["image_path"]), spec("none"), cache_root=tmp_path)
    assert c4 == {"cached": 3, "computed": 1}
    # the default model's cache folder keeps the name it had before the spec existed: caches of earlier runs serve
    assert EmbeddingSpec("efficientnetlite0", "imagenet", 224, preprocess_config("none"), 8).key == "e108c61d3c9b5dc06f6a"
    default = TrainConfig().embedding_spec(preprocess_config("none"))  # train's default maps onto that same folder
    assert default.key == "e108c61d3c9b5dc06f6a" and default.views == 8
    assert TrainConfig().embedding_spec(preprocess_config("none"), views=2).views == 2  # a prediction's TTA


@pytest.mark.slow
def test_finetune_top_trains_only_the_last_stage(tiny_csv: Path, tmp_path: Path) -> None:
    from melanoma_utils.models.fusion import build_backbone

    df = load_dataset(tiny_csv).frame
    before = build_backbone("efficientnetlite0", 32, "imagenet")
    run = train_run(df, _cfg(kind="image", finetune="top", finetune_epochs=1, finetune_learning_rate=1e-2),
                    tmp_path / "ft")
    after = run.model.get_layer("backbone")
    changed = lambda name: not all(np.array_equal(a, b) for a, b in zip(before.get_layer(name).get_weights(),  # noqa: E731
                                                                         after.get_layer(name).get_weights()))
    assert changed("block15_project_conv") and changed("head_conv")
    assert not changed("stem_conv") and not changed("block5_dwconv")
    assert not changed("head_bn")  # BatchNorm statistics stay frozen
    assert run.config["stages"]["finetune"]["epochs"] == 1


def test_tta_averages_rotated_copies(tiny_csv: Path, tmp_path: Path) -> None:
    df = load_dataset(tiny_csv).frame
    train_run(df, _cfg(kind="image"), tmp_path / "run")
    run = Run.load(tmp_path / "run")
    one = df.head(3).reset_index(drop=True)
    rotated = one.copy()
    for i, path in enumerate(one["image_path"]):  # the quarter-turned image as a file of its own
        img = cv2.imread(path)
        side = min(img.shape[:2])
        top, left = (img.shape[0] - side) // 2, (img.shape[1] - side) // 2
        sq = img[top:top + side, left:left + side]
        out = tmp_path / f"rot{i}.png"
        cv2.imwrite(str(out), np.rot90(sq, 1))
        rotated.loc[i, "image_path"] = str(out)
    sq_paths = []
    for i, path in enumerate(one["image_path"]):
        img = cv2.imread(path)
        side = min(img.shape[:2])
        top, left = (img.shape[0] - side) // 2, (img.shape[1] - side) // 2
        p = tmp_path / f"sq{i}.png"
        cv2.imwrite(str(p), img[top:top + side, left:left + side])
        sq_paths.append(str(p))
    square = one.assign(image_path=sq_paths)
    p_manual = (run.predict(square) + run.predict(rotated)) / 2
    np.testing.assert_allclose(run.predict(square, tta=2), p_manual, atol=1e-5)
    with pytest.raises(ValueError, match="tta"):
        run.predict(square, tta=9)


def test_offline_imagenet_error_names_the_offline_backbone(monkeypatch) -> None:
    import keras

    from melanoma_utils.models.fusion import WeightsUnavailable, build_backbone

    def no_network(*_a, **_k):
        raise OSError("URL fetch failure: no network")

    monkeypatch.setattr(keras.utils, "get_file", no_network)
    with warnings.catch_warnings(), pytest.raises(WeightsUnavailable, match="efficientnetlite0"):
        warnings.simplefilter("ignore")
        build_backbone("mobilenetv2", 32, "imagenet")
    with pytest.raises(WeightsUnavailable, match="not found"):
        build_backbone("mobilenetv2", 32, "/nonexistent/weights.h5")


def test_cli_refuses_weights_without_backbone(tiny_csv: Path, tmp_path: Path, capsys) -> None:
    from melanoma_utils.cli.app import main

    rc = main(["train", "--metadata", str(tiny_csv), "--out", str(tmp_path / "r"), "--backbone", "cnn",
               "--backbone-weights", "/nonexistent.h5"])
    assert rc == 2
    assert "(--backbone-weights) '/nonexistent.h5' needs a backbone" in capsys.readouterr().err
    rc = main(["train", "--metadata", str(tiny_csv), "--out", str(tmp_path / "r"), "--backbone-weights", "/nonexistent.h5"])
    assert rc == 2 and "(--backbone-weights) /nonexistent.h5: file not found" in capsys.readouterr().err
    assert not (tmp_path / "r").exists()


def test_grad_cam_and_importance_through_the_pretrained_backbone(tiny_csv: Path, tmp_path: Path) -> None:
    from melanoma_utils.reports import explain

    df = load_dataset(tiny_csv).frame
    run = train_run(df, _cfg(features="paper"), tmp_path / "run")
    x = explain.model_inputs(run, df)
    cams = explain.grad_cam(run, x, np.array([0, 1, 2]))
    assert cams.shape == (3, 32, 32) and np.isfinite(cams).all() and cams.max() == pytest.approx(1.0)
    imp = explain.permutation_importance(run, df, x, n_repeats=2)
    assert set(imp.index) == {"age", "sex", "site", "width", "height", "image"}


def test_the_runs_tta_chooses_the_threshold_and_is_predicts_default(tiny_csv: Path, tmp_path: Path) -> None:
    import pandas as pd

    df = load_dataset(tiny_csv).frame
    train_run(df, _cfg(kind="image", tta=4), tmp_path / "run")
    run = Run.load(tmp_path / "run")
    assert run.train_config.tta == 4
    default, one = run.predict(df), run.predict(df, tta=1)
    np.testing.assert_allclose(default, run.predict(df, tta=4))
    assert np.abs(default - one).max() > 1e-4
    val = pd.read_csv(tmp_path / "run" / "val_predictions.csv")  # the threshold's inputs were TTA predictions
    by_name = dict(zip(df["image_name"], default))
    # (validation predictions come from the cached float16 embeddings: the same up to that rounding)
    np.testing.assert_allclose(val["raw_probability"], [by_name[n] for n in val["image_name"]], atol=2e-3)


def test_embeddings_are_cached_chunk_by_chunk_so_a_killed_run_keeps_its_work(tiny_csv: Path, tmp_path: Path,
                                                                            monkeypatch) -> None:
    """33k images take tens of minutes to embed on a CPU: what was computed before a kill must not be lost."""
    from melanoma_utils.data.isic import load_dataset
    from melanoma_utils.models import embeddings

    paths = list(load_dataset(tiny_csv).frame["image_path"])[:5]

    class Fake:  # a stand-in backbone: the mean colour of each view
        output_shape = (None, 3)

        def predict_on_batch(self, x):
            return x.mean(axis=(1, 2))

    real, calls = embeddings.compute_embeddings, []

    def dies_on_second_chunk(*args, **kwargs):
        calls.append(len(args[1]))
        if len(calls) == 2:
            raise KeyboardInterrupt
        return real(*args, **kwargs)

    spec = embeddings.EmbeddingSpec("efficientnetlite0", "imagenet", 16, {"name": "none", "params": {}}, views=2)
    kw = dict(spec=spec, cache_root=tmp_path, chunk=2)
    monkeypatch.setattr(embeddings, "compute_embeddings", dies_on_second_chunk)
    with pytest.raises(KeyboardInterrupt):
        embeddings.cached_embeddings(Fake(), paths, **kw)
    assert len(list(tmp_path.glob("embeddings/*/*.npy"))) == 2  # the first chunk survived
    monkeypatch.setattr(embeddings, "compute_embeddings", real)
    emb, counts = embeddings.cached_embeddings(Fake(), paths, **kw)
    assert counts == {"cached": 2, "computed": 3} and emb.shape == (5, 2, 3)
