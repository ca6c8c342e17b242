"""The pool of compiled heads: a reused head trains exactly as a new one would."""

from __future__ import annotations

import keras
import numpy as np

from melanoma_utils.models.fusion import build_head_model
from melanoma_utils.pipeline.feeds import make_embedding_sequence
from melanoma_utils.runs.compiling import HeadPool
from melanoma_utils.runs.compiling import compile_model as _compile


def _data(seed: int, n: int = 96) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    rng = np.random.default_rng(seed)
    emb = rng.normal(size=(n, 4, 16)).astype(np.float32)
    meta = rng.normal(size=(n, 3)).astype(np.float32)
    y = (emb[:, 0, 0] + rng.normal(scale=0.5, size=n) > 0.8).astype(np.float32)
    return emb, meta, y


def _fit(head: keras.Model, seed: int) -> list[np.ndarray]:
    emb, meta, y = _data(seed)
    head.fit(make_embedding_sequence(emb, meta, y, np.ones_like(y), batch_size=16, seed=seed), epochs=3, verbose=0)
    return [np.array(w) for w in head.get_weights()]


def _fresh(seed: int, bias: float) -> keras.Model:
    keras.utils.set_random_seed(seed)
    return build_head_model(16, n_meta=3, initial_bias=bias, meta_units=(8,), head_units=(8,))


def test_a_reused_head_trains_exactly_like_a_new_one() -> None:
    pool = HeadPool()
    first = pool.get(_fresh(1, -1.0), 1e-2)
    _fit(first, seed=1)  # moves weights, moments, step count and dropout seed states away from a new head's
    second = pool.get(_fresh(0, -2.0), 1e-2)
    assert second is first and len(pool) == 1
    reused = _fit(second, seed=0)

    reference = _fresh(0, -2.0)
    _compile(reference, 1e-2)
    expected = _fit(reference, seed=0)
    assert len(reused) == len(expected)
    for got, want in zip(reused, expected):
        np.testing.assert_array_equal(got, want)


def test_heads_that_differ_are_not_shared() -> None:
    pool = HeadPool()
    a = pool.get(_fresh(0, -1.0), 1e-2)
    assert pool.get(_fresh(0, -1.0), 1e-3) is not a  # another learning rate
    keras.utils.set_random_seed(0)
    wider = build_head_model(16, n_meta=3, initial_bias=-1.0, meta_units=(8,), head_units=(12,))
    assert pool.get(wider, 1e-2) is not a  # another architecture
    assert len(pool) == 3
    pool.clear()
    assert len(pool) == 0


def test_predict_direct_matches_keras_predict_across_chunks() -> None:
    from melanoma_utils.models.fusion import predict_direct

    head = _fresh(0, -1.0)
    _compile(head, 1e-2)
    _fit(head, seed=2)  # trained: batch-norm statistics and weights away from their initial values
    emb, meta, _ = _data(3, n=70)
    x = {"embedding": emb[:, 0], "meta": meta}
    got = predict_direct(head, x, chunk=32)  # 32 + 32 + 6 rows
    assert got.shape == (70, 1)
    np.testing.assert_allclose(got, head.predict(x, verbose=0), rtol=1e-5, atol=1e-6)
    assert not np.allclose(got, got[0])  # a real output per row, not one repeated


def test_a_closed_sequence_lets_go_of_its_arrays_after_fit() -> None:
    """On TensorFlow, Keras keeps every PyDataset it fitted on (from_generator's registered function): the arrays must
    not stay with it, or a cross-validation keeps every run's training embeddings (6.3 GB after notebook 03)."""
    import gc
    import weakref

    head = _fresh(0, -1.0)
    _compile(head, 1e-2)
    emb, meta, y = _data(4)
    ref = weakref.ref(emb)
    seq = make_embedding_sequence(emb, meta, y, np.ones_like(y), batch_size=16, seed=0)
    head.fit(seq, epochs=1, verbose=0)
    seq.close()
    del emb, seq
    gc.collect()
    assert ref() is None


def test_training_a_head_closes_its_sequence(tmp_path, tmp_path_factory, monkeypatch) -> None:
    monkeypatch.setenv("MELANOMA_UTILS_CACHE", str(tmp_path_factory.getbasetemp() / "user-cache"))  # as test_pretrained_training
    from conftest import write_dataset
    from melanoma_utils.data.isic import load_dataset
    from melanoma_utils.pipeline import feeds
    from melanoma_utils.runs.run import TrainConfig
    from melanoma_utils.runs.training import train_run

    made = []

    def recorded(*args, **kwargs):
        made.append(feeds.make_embedding_sequence.__wrapped__(*args, **kwargs))
        return made[-1]

    recorded.__wrapped__ = feeds.make_embedding_sequence
    monkeypatch.setattr(feeds, "make_embedding_sequence", recorded)
    df = load_dataset(write_dataset(tmp_path / "data", n=24, size=32)).frame
    cfg = TrainConfig(backbone="efficientnetlite0", backbone_weights="imagenet", image_size=32, embedding_views=1, tta=1,
                      epochs=1, verbose=0)
    train_run(df, cfg, tmp_path / "run", overwrite=True)
    assert len(made) == 1 and made[0].data is None
