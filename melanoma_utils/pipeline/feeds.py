"""tf.data input pipeline: read → decode → centre-crop to square → resize (antialiased) → uint8 →
preprocess (a named option of :mod:`melanoma_utils.pipeline.transforms`) → cache → augment (training only) →
batch → prefetch.

Elements are ``({"image": float32 0–255 (S, S, 3), "meta": float32 (n_meta,)}, target, sample_weight)``;
the model rescales images itself, so the same 0–255 input serves every backbone. Caching stores uint8
(four times smaller than float32): in memory by default, or in a file for large sets.

TensorFlow is imported here and in the training code only; a NumPy feed for other Keras backends is
:func:`load_image_array` + :func:`make_array_sequence`; :func:`image_batches` yields
decoded batches for prediction and embeddings whichever the backend.
"""

from __future__ import annotations

import hashlib
import json
import os
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Any, Iterator, Sequence

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")

import numpy as np  # noqa: E402

from ..data.imagefiles import square_resize  # noqa: E402
from .transforms import preprocess_batch, preprocess_config  # noqa: E402


def _tf():
    import tensorflow as tf

    return tf


def _read_rgb(path: Any) -> np.ndarray:
    """A file TensorFlow cannot decode (TIFF) read with Pillow as uint8 RGB ``(H, W, 3)`` (``path`` as
    ``tf.numpy_function`` passes it: bytes, possibly in a 0-d array)."""
    from PIL import Image

    path = np.asarray(path).item()
    with Image.open(path.decode() if isinstance(path, bytes) else str(path)) as im:
        return np.asarray(im.convert("RGB"), np.uint8)


def decode_image_tensor(path):
    """One image file → uint8 ``(H, W, 3)``, by its content, not its name: JPEG and PNG bytes with TensorFlow's
    decoders, anything else (TIFF, BMP of any depth, PPM, a file named for another format) with Pillow."""
    tf = _tf()
    data = tf.io.read_file(path)

    def with_pillow():
        img = tf.numpy_function(_read_rgb, [path], tf.uint8, stateful=False)
        img.set_shape((None, None, 3))
        return img

    def with_tf():
        img = tf.io.decode_image(data, channels=3, expand_animations=False)
        img.set_shape((None, None, 3))
        return img

    head = tf.strings.substr(data, 0, 4)
    native = tf.logical_or(tf.equal(tf.strings.substr(head, 0, 3), b"\xff\xd8\xff"), tf.equal(head, b"\x89PNG"))
    return tf.cond(native, with_tf, with_pillow)


def decode_and_resize(path, image_size: int):
    """One image file → uint8 ``(S, S, 3)``: decode (:func:`decode_image_tensor`), centre-crop to a square,
    antialiased resize."""
    return crop_resize_tensor(decode_image_tensor(path), image_size)


def crop_resize_tensor(img, image_size: int):
    """A decoded uint8 image tensor → uint8 ``(S, S, 3)``: centre-crop to a square, antialiased resize."""
    tf = _tf()
    shape = tf.shape(img)
    side = tf.minimum(shape[0], shape[1])
    img = tf.image.crop_to_bounding_box(img, (shape[0] - side) // 2, (shape[1] - side) // 2, side, side)
    img = tf.image.resize(img, (image_size, image_size), method="area", antialias=True)
    img = tf.cast(tf.clip_by_value(tf.round(img), 0, 255), tf.uint8)
    img.set_shape((image_size, image_size, 3))
    return img


def _apply_preprocess(img, cfg: dict[str, Any], image_size: int):
    if cfg["name"] == "none":
        return img
    tf = _tf()
    out = tf.numpy_function(lambda x: preprocess_batch(x[None], cfg)[0], [img], tf.uint8, stateful=False)
    out.set_shape((image_size, image_size, 3))
    return out


class EpochClock:
    """The epoch a training feed is in. :class:`~melanoma_utils.runs.resume.EpochSeeds` sets it when each epoch begins, and
    the feeds given it draw that epoch's order from ``(seed, epoch)`` alone (not from how many epochs this process
    has run), so a fit resumed after a kill replays exactly the epochs an uninterrupted fit would have run."""

    def __init__(self) -> None:
        self.epoch = 0
        self._variable: Any = None

    def variable(self) -> Any:
        """The epoch as a ``tf.Variable`` (int64) that tf.data functions read when an epoch's iteration starts."""
        if self._variable is None:
            tf = _tf()
            self._variable = tf.Variable(self.epoch, dtype=tf.int64, trainable=False, name="epoch_clock")
        return self._variable

    def set(self, epoch: int) -> None:
        self.epoch = int(epoch)
        if self._variable is not None:
            self._variable.assign(self.epoch)


def _shuffle(ds: Any, buffer: int, seed: int, clock: EpochClock | None) -> Any:
    """``ds`` shuffled each epoch: reshuffled per iteration from ``seed``, or with ``clock`` from ``(seed, epoch)``."""
    if clock is None:
        return ds.shuffle(buffer, seed=seed, reshuffle_each_iteration=True)
    tf = _tf()
    epoch = clock.variable()
    n = ds.cardinality()

    def this_epoch(_: Any) -> Any:  # runs when the epoch's iterator starts, after EpochSeeds moved the clock
        # the op seed below is the whole seed: with a global seed set, tf.data would compare the (tensor) op seed in
        # Python and fail; this function's own graph forgets the global seed instead
        tf.compat.v1.get_default_graph().seed = None
        return ds.shuffle(buffer, seed=seed * 1_000_003 + epoch.read_value(), reshuffle_each_iteration=False)

    return tf.data.Dataset.range(1).flat_map(this_epoch).apply(tf.data.experimental.assert_cardinality(n))


@dataclass(frozen=True)
class FeedSpec:
    """How :func:`make_dataset` and :func:`make_feed` read and batch: the model's input ``keys`` (make_feed), image side
    and preprocessing, batch size, ``training`` (shuffle + ``augmenter``), seed, ``cache`` (``"memory"``, a file
    prefix or ``None``), ``deterministic`` augmentation, ``drop_remainder`` and the epoch ``clock``."""

    keys: Sequence[str] = ("image", "meta")
    image_size: int = 128
    preprocess: dict[str, Any] | str = "none"
    batch_size: int = 32
    training: bool = False
    augmenter: Any = None
    seed: int = 0
    cache: str | None = "memory"
    deterministic: bool = True
    drop_remainder: bool = False
    clock: EpochClock | None = None


def make_dataset(
    paths: Sequence[str],
    meta: np.ndarray,
    targets: np.ndarray | None = None,
    sample_weights: np.ndarray | None = None,
    spec: FeedSpec | None = None,
    **options: Any,
):
    """A batched, prefetched ``tf.data.Dataset`` over images + encoded metadata (+ targets, weights), read as
    ``spec`` says (:class:`FeedSpec`; any field overridden by keyword, e.g. ``image_size=64``).

    ``training`` shuffles (seeded, reshuffled each epoch) and applies ``augmenter`` (a Keras layer,
    see :func:`melanoma_utils.pipeline.augment.build_augmenter`); otherwise order is kept. ``cache`` is
    ``"memory"``, a file path prefix, or ``None``. Keras' random layers draw from a shared seed state, so
    a seeded, reproducible augmentation runs the augmentation map sequentially (``deterministic``; ~260
    images/s at 96 px on 2 CPU cores, several times the model's step rate); ``deterministic=False``
    runs it in parallel (about twice as fast, not reproducible). ``drop_remainder`` leaves out the last,
    partial batch (multi-worker training: a worker must never get an empty batch). ``clock``
    (:class:`EpochClock`): each epoch's order from ``(seed, epoch)`` instead of from the iteration count.
    """
    f = replace(spec or FeedSpec(), **options)
    tf = _tf()
    cfg = preprocess_config(f.preprocess) if isinstance(f.preprocess, str) else f.preprocess
    n = len(paths)
    meta = np.asarray(meta, np.float32).reshape(n, -1)
    items: dict[str, Any] = {"path": np.asarray(paths, dtype=str), "meta": meta}
    if targets is not None:
        items["target"] = np.asarray(targets, np.float32)
        items["weight"] = (
            np.ones(n, np.float32) if sample_weights is None else np.asarray(sample_weights, np.float32)
        )
    ds = tf.data.Dataset.from_tensor_slices(items)
    autotune = tf.data.AUTOTUNE

    def load(item):
        img = _apply_preprocess(decode_and_resize(item["path"], f.image_size), cfg, f.image_size)
        out = {k: v for k, v in item.items() if k != "path"}
        out["image"] = img
        return out

    ds = ds.map(load, num_parallel_calls=autotune, deterministic=True)
    if f.cache == "memory":
        ds = ds.cache()
    elif f.cache:
        Path(f.cache).parent.mkdir(parents=True, exist_ok=True)
        ds = ds.cache(str(f.cache))
    if f.training:
        ds = _shuffle(ds, min(n, 4096), f.seed, f.clock)

    def to_model(item):
        image = tf.cast(item["image"], tf.float32)
        if f.training and f.augmenter is not None:
            image = f.augmenter(image, training=True)
        x = {"image": image, "meta": item["meta"]}
        if "target" in item:
            return x, item["target"], item["weight"]
        return x

    augmenting = f.training and f.augmenter is not None
    parallel = None if (augmenting and f.deterministic) else autotune
    ds = ds.map(to_model, num_parallel_calls=parallel, deterministic=f.deterministic) if parallel else ds.map(to_model)
    ds = ds.batch(f.batch_size, drop_remainder=f.drop_remainder).prefetch(autotune)
    opts = tf.data.Options()
    opts.deterministic = f.deterministic
    return ds.with_options(opts)


def make_array_sequence(images: np.ndarray | None, meta: np.ndarray, targets: np.ndarray | None = None,
                        sample_weights: np.ndarray | None = None, spec: FeedSpec | None = None, **options: Any):
    """A ``keras.utils.PyDataset`` over a decoded uint8 cache: the feed for backends without TensorFlow (JAX), read
    as ``spec`` says (:class:`FeedSpec`, any field overridden by keyword; its image fields describe the cache).

    ``training`` shuffles; ``augmenter`` (given for training) is applied per batch with the backend's own ops;
    ``keys`` names the model inputs to feed (``("meta",)`` for a metadata-only model, ``("image",)`` for an
    image-only one). With ``clock`` a shuffled sequence draws each epoch's order from ``(seed, clock.epoch)``.
    """
    import keras

    f = replace(spec or FeedSpec(), **options)
    batch_size, shuffle, seed, augmenter, keys, clock = f.batch_size, f.training, f.seed, f.augmenter, f.keys, f.clock

    class ArraySequence(keras.utils.PyDataset):
        def __init__(self) -> None:
            super().__init__()
            self.order = np.arange(len(meta))
            self.rng = np.random.default_rng(seed)
            if shuffle:
                self.rng.shuffle(self.order)

        def __len__(self) -> int:
            return int(np.ceil(len(self.order) / batch_size))

        def __getitem__(self, i: int):
            if clock is not None and shuffle and getattr(self, "epoch", None) != clock.epoch:
                self.epoch = clock.epoch
                self.order = np.random.default_rng([seed, clock.epoch]).permutation(len(meta))
            idx = self.order[i * batch_size : (i + 1) * batch_size]
            x: dict[str, Any] = {}
            if "image" in keys and images is not None:
                img = images[idx].astype(np.float32)
                x["image"] = np.asarray(augmenter(img, training=True), np.float32) if augmenter is not None else img
            if "meta" in keys:
                x["meta"] = np.asarray(meta[idx], np.float32)
            if targets is None:
                return (x,)
            w = np.ones(len(idx), np.float32) if sample_weights is None else sample_weights[idx]
            return x, np.asarray(targets[idx], np.float32), np.asarray(w, np.float32)

        def on_epoch_end(self) -> None:
            if shuffle:
                self.rng.shuffle(self.order)

    return ArraySequence()


def image_batches(paths: Sequence[str], image_size: int, preprocess: dict[str, Any], batch_size: int) -> Iterator[np.ndarray]:
    """uint8 batches ``(B, S, S, 3)`` decoded exactly as prediction decodes them (tf.data when TensorFlow is
    the backend, the OpenCV loader otherwise)."""
    import keras

    if keras.backend.backend() == "tensorflow":
        ds = make_dataset(list(paths), np.zeros((len(paths), 1), np.float32), image_size=image_size,
                          preprocess=preprocess, batch_size=batch_size, cache=None)
        for batch in ds.as_numpy_iterator():
            yield np.asarray(batch["image"])
        return
    for i in range(0, len(paths), batch_size):
        yield load_image_array(list(paths[i:i + batch_size]), image_size, preprocess)


def make_embedding_sequence(embeddings: np.ndarray, meta: np.ndarray | None, targets: np.ndarray,
                            sample_weights: np.ndarray, batch_size: int = 32, seed: int = 0):
    """A shuffled ``keras.utils.PyDataset`` over cached embeddings ``(N, views, dim)`` (or cached activations
    ``(N, views, h, w, c)``, under the same ``embedding`` key) for training a head:
    each epoch every image appears once, as one of its views drawn at random (augmentation for free).

    Call its ``close()`` after ``fit``: on TensorFlow, Keras feeds a ``PyDataset`` through
    ``tf.data.Dataset.from_generator``, whose registered Python function keeps the sequence alive for the rest of
    the process; ``close()`` lets go of the arrays (a cross-validation on 2,000 training images × 8 views otherwise
    keeps 82 MB per run: 6.3 GB after notebook 03's 105 runs)."""
    import keras

    n, views = embeddings.shape[:2]

    class EmbeddingSequence(keras.utils.PyDataset):
        def __init__(self, data: tuple[np.ndarray, np.ndarray | None, np.ndarray, np.ndarray]) -> None:
            super().__init__()  # (the arrays come in as an argument: a closure would keep them after close())
            self.rng = np.random.default_rng(seed)
            self.data: tuple[np.ndarray, np.ndarray | None, np.ndarray, np.ndarray] | None = data
            self.on_epoch_end()

        def __len__(self) -> int:
            return int(np.ceil(n / batch_size))

        def __getitem__(self, i: int):
            if self.data is None:
                raise RuntimeError("this embedding sequence was closed")
            emb, m, y, w = self.data
            idx = self.order[i * batch_size : (i + 1) * batch_size]
            x: dict[str, np.ndarray] = {"embedding": np.asarray(emb[idx, self.view[idx]], np.float32)}
            if m is not None:
                x["meta"] = np.asarray(m[idx], np.float32)
            return x, np.asarray(y[idx], np.float32), np.asarray(w[idx], np.float32)

        def on_epoch_end(self) -> None:
            self.order = self.rng.permutation(n)
            self.view = self.rng.integers(0, views, n)

        def close(self) -> None:
            """Let go of the arrays (the sequence cannot be read afterwards)."""
            self.data = None

    return EmbeddingSequence((embeddings, meta, targets, sample_weights))


def make_feed(
    paths: Sequence[str],
    meta: np.ndarray,
    targets: np.ndarray,
    sample_weights: np.ndarray,
    spec: FeedSpec | None = None,
    **options: Any,
):
    """The feed ``fit`` consumes, whichever the Keras backend: a tf.data pipeline on TensorFlow, a
    :func:`make_array_sequence` over a decoded uint8 cache otherwise, read as ``spec`` says (:class:`FeedSpec`; any
    field overridden by keyword). ``keys`` names the model's inputs
    (``("meta",)`` for a metadata-only model: no image is read). ``cache``: ``"memory"``, ``None`` or a file
    prefix (tf.data only; the prefix gets a fingerprint of the images, size and preprocessing, so two data sets
    never share a cache file). ``drop_remainder``: leave out the last, partial batch (tf.data only). ``clock``: the
    training order (and, through :class:`~melanoma_utils.runs.resume.EpochSeeds`, the augmentation) of each epoch comes from
    ``(seed, epoch)``."""
    f = replace(spec or FeedSpec(), **options)
    import keras

    targets = np.asarray(targets)
    meta = np.asarray(meta, np.float32)
    if keras.backend.backend() != "tensorflow":
        images = load_image_array(list(paths), f.image_size, f.preprocess) if "image" in f.keys else None
        return make_array_sequence(images, meta, targets, sample_weights, f)
    tf = _tf()
    if "image" not in f.keys:
        ds = tf.data.Dataset.from_tensor_slices(({"meta": meta}, targets.astype(np.float32), np.asarray(sample_weights, np.float32)))
        if f.training:
            ds = _shuffle(ds, len(meta), f.seed, f.clock)
        return ds.batch(f.batch_size, drop_remainder=f.drop_remainder).prefetch(tf.data.AUTOTUNE)
    cache = f.cache
    if cache not in (None, "memory"):
        cfg = preprocess_config(f.preprocess) if isinstance(f.preprocess, str) else f.preprocess
        key = json.dumps({"paths": list(map(str, paths)), "size": f.image_size, "preprocess": cfg}, sort_keys=True)
        cache = f"{cache}-{hashlib.sha1(key.encode()).hexdigest()[:12]}"
    ds = make_dataset(list(paths), meta, targets, sample_weights, replace(f, cache=cache))
    if "meta" not in f.keys:
        ds = ds.map(lambda x, y, w: ({"image": x["image"]}, y, w))
    return ds


def load_image_array(
    paths: Sequence[str],
    image_size: int,
    preprocess: dict[str, Any] | str = "none",
    workers: int = 4,
    progress: bool = False,
) -> np.ndarray:
    """Decode, crop and resize images with OpenCV into one uint8 array ``(N, S, S, 3)`` (a decoded cache).

    Matches :func:`decode_and_resize` up to interpolation rounding; used by explanations, benchmarks and
    the non-TensorFlow feed.
    """
    from concurrent.futures import ThreadPoolExecutor

    import cv2

    def one(path: str) -> np.ndarray:
        bgr = cv2.imread(str(path), cv2.IMREAD_COLOR)
        if bgr is None:
            raise ValueError(f"{path}: cannot decode image")
        return cv2.cvtColor(square_resize(bgr, image_size), cv2.COLOR_BGR2RGB)

    with ThreadPoolExecutor(max_workers=workers) as pool:
        it = pool.map(one, paths)
        if progress:
            from tqdm.auto import tqdm

            it = tqdm(it, total=len(paths), desc="decoding", unit="img")
        arr = np.stack(list(it)) if len(paths) else np.zeros((0, image_size, image_size, 3), np.uint8)
    return preprocess_batch(arr, preprocess)
