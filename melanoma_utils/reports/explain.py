"""Explanations for any trained run: grouped permutation importance and SHAP for the metadata (the
study's Fig 14), SHAP and Grad-CAM for the image (Fig 15). Functions return plain arrays / DataFrames;
plotting lives in :mod:`melanoma_utils.reports.plots`.

* :func:`model_inputs` decodes the rows exactly as the training pipeline does (same preprocessing), when
  indexed (:class:`ImageRows`): a whole fold's images are never in memory at once.
* :func:`split_fusion` splits a fusion model into its image encoder and the rest, so that metadata
  explanations run the CNN once per lesion instead of once per evaluation.
* :func:`permutation_importance` permutes one-hot groups TOGETHER (all site columns as one feature), and
  can permute the image too (which image goes with which metadata).
* :func:`metadata_shap` — exact SHAP with the metadata GROUPS as players, each lesion's image held
  fixed, against a small background.
* :func:`image_shap` — ``shap.GradientExplainer`` (expected gradients) on the image with the lesion's
  metadata held fixed. ``DeepExplainer`` is deliberately not used: it fails on depthwise convolutions and
  then breaks ``GradientExplainer`` in the same process.
* :func:`grad_cam` — Grad-CAM on the last convolution block of the study's CNN branch (TensorFlow).
"""

from __future__ import annotations

from typing import Any, Callable

import numpy as np
import pandas as pd

from ..evaluation.metrics import roc_auc


class ImageRows:
    """The decoded images of a table's rows, read when indexed: behaves like the float32 array ``(N, S, S, 3)`` the
    model sees (``len``, ``shape``, ``dtype``; an int gives one image, a slice or index array a stacked batch), so
    an explanation over a whole held-out fold never holds the fold's images at once (fold 0 of all 33,126 ISIC
    images at 224 px would be ~4 GB per run). Decoded exactly as prediction decodes them
    (:func:`melanoma_utils.pipeline.feeds.image_batches`)."""

    def __init__(self, paths: list[str], image_size: int, preprocess: dict[str, Any]) -> None:
        self.paths = list(paths)
        self.image_size = int(image_size)
        self.preprocess = preprocess
        self.shape = (len(self.paths), self.image_size, self.image_size, 3)
        self.dtype = np.dtype(np.float32)

    def __len__(self) -> int:
        return len(self.paths)

    def __getitem__(self, key: Any) -> np.ndarray:
        if isinstance(key, (int, np.integer)):
            return self[np.array([key])][0]
        rows = np.arange(len(self.paths))[key]
        return self.load([self.paths[i] for i in np.atleast_1d(rows)])

    def take(self, rows: Any) -> "ImageRows":
        """The same images in another order (nothing decoded)."""
        return ImageRows([self.paths[i] for i in np.asarray(rows)], self.image_size, self.preprocess)

    def load(self, paths: list[str]) -> np.ndarray:
        """The images at ``paths``, stacked."""
        from ..pipeline.feeds import image_batches

        if not paths:
            return np.zeros((0, *self.shape[1:]), np.float32)
        return np.concatenate(list(image_batches(paths, self.image_size, self.preprocess, 64))).astype(np.float32)

    def batches(self, batch_size: int = 64):
        """``(start, images)`` for consecutive batches of all rows."""
        for start in range(0, len(self.paths), batch_size):
            yield start, self.load(self.paths[start:start + batch_size])


def model_inputs(run: Any, df: pd.DataFrame, batch_size: int = 64) -> dict[str, Any]:
    """``{"image": ImageRows (N,S,S,3), "meta": float32 (N,F)}`` for the rows, as the model sees them (same decoding
    and preprocessing as prediction); the images are decoded when indexed (:class:`ImageRows`)."""
    meta = run.encoder.transform(df)
    out: dict[str, Any] = {"meta": meta}
    if run.train_config.uses_images:
        out["image"] = ImageRows(list(df["image_path"]), run.train_config.image_size, run.config["preprocess"])
    return out


def _encode(encoder: Any, images: Any) -> np.ndarray:
    """``encoder``'s outputs for an array of images or an :class:`ImageRows`, batch by batch."""
    if isinstance(images, ImageRows):
        parts = [np.asarray(encoder.predict(b, batch_size=128, verbose=0)) for _, b in images.batches(128)]
        return np.concatenate(parts) if parts else np.zeros((0, *encoder.output.shape[1:]), np.float32)
    return np.asarray(encoder.predict(images, batch_size=128, verbose=0))


def _feed(model: Any, x: dict[str, np.ndarray]) -> dict[str, np.ndarray]:
    names = [t.name.split(":")[0] for t in model.inputs]
    return {k: v for k, v in x.items() if k in names}


def predict_arrays(model: Any, x: dict[str, np.ndarray], batch_size: int = 256) -> np.ndarray:
    """Model probabilities for array inputs (always fed as a dict; direct calls in inference mode, which
    avoid ``predict``'s per-call set-up when explainers call it thousands of times)."""
    from ..models.fusion import predict_direct

    feed = _feed(model, x)
    if "image" in feed:  # eager calls keep a whole batch's activations alive: large images, small batches
        batch_size = min(batch_size, 16)
    return predict_direct(model, feed, chunk=batch_size).reshape(-1)


def split_fusion(model: Any) -> tuple[Any, Any]:
    """``(image_encoder, head)`` of a fusion model built by :func:`melanoma_utils.models.fusion.build_model`:
    ``image_encoder(image) -> features`` and ``head({"image_features", "meta"}) -> probability``, sharing
    the trained layers. ``head(encoder(image), meta)`` equals ``model({"image", "meta"})``."""
    import keras

    fusion = model.get_layer("fusion")
    img_feat, meta_feat = fusion.input
    by_name = {t.name: t for t in model.inputs}
    encoder = keras.Model(by_name["image"], img_feat, name="image_encoder")
    feat_in = keras.Input(tuple(img_feat.shape[1:]), name="image_features")
    meta_in = keras.Input(tuple(by_name["meta"].shape[1:]), name="meta")
    m = meta_in
    for layer in model.layers:
        if layer.name.startswith("meta") and not isinstance(layer, keras.layers.InputLayer):
            m = layer(m)
    x = fusion([feat_in, m])
    for layer in model.layers:
        if layer.name.startswith("head") or layer.name == "probability":
            x = layer(x)
    head = keras.Model({"image_features": feat_in, "meta": meta_in}, x, name="head")
    return encoder, head


def _scorer(run: Any, x: dict[str, np.ndarray]) -> tuple[Callable[[dict[str, np.ndarray]], np.ndarray], dict[str, np.ndarray]]:
    """A fast ``predict(inputs)`` and the inputs it takes: image features precomputed for fusion models."""
    model = run.model
    if run.train_config.kind == "fusion":
        encoder, head = split_fusion(model)
        feats = _encode(encoder, x["image"])
        return (lambda z: predict_arrays(head, z)), {"image_features": feats, "meta": x["meta"]}
    return (lambda z: predict_arrays(model, z)), dict(x)


def permutation_importance(
    run: Any,
    df: pd.DataFrame,
    x: dict[str, np.ndarray] | None = None,
    n_repeats: int = 5,
    seed: int = 0,
    include_image: bool = True,
    metric: Callable[[np.ndarray, np.ndarray], float] = roc_auc,
) -> pd.DataFrame:
    """Drop in ``metric`` (ROC AUC) when each metadata GROUP is permuted across rows, ``n_repeats`` times.

    Returns one row per group (``age``, ``sex``, ``site``, ``width``, ``height``, and ``image`` if the
    model has one): ``importance_mean``, ``importance_sd``, ``baseline``. Evaluate on held-out rows.
    """
    x = x if x is not None else model_inputs(run, df)
    score, z = _scorer(run, x)
    y = df["target"].to_numpy()
    baseline = metric(y, score(z))
    groups: dict[str, list[int]] = run.encoder.feature_groups() if run.train_config.uses_meta else {}
    rng = np.random.default_rng(seed)
    rows = []
    image_key = "image_features" if "image_features" in z else "image"
    targets: list[tuple[str, str, list[int] | None]] = [(g, "meta", cols) for g, cols in groups.items()]
    if include_image and image_key in z:
        targets.append(("image", image_key, None))
    for name, key, cols in targets:
        drops = []
        for _ in range(n_repeats):
            perm = rng.permutation(len(y))
            zp = dict(z)
            if cols is None:
                zp[key] = z[key].take(perm) if isinstance(z[key], ImageRows) else z[key][perm]
            else:
                m = z[key].copy()
                m[:, cols] = z[key][perm][:, cols]
                zp[key] = m
            drops.append(baseline - metric(y, score(zp)))
        rows.append({"feature": name, "importance_mean": float(np.mean(drops)),
                     "importance_sd": float(np.std(drops, ddof=1)) if n_repeats > 1 else 0.0,
                     "baseline": baseline, "columns": len(cols) if cols is not None else None})
    return pd.DataFrame(rows).set_index("feature").sort_values("importance_mean", ascending=False)


def metadata_shap(
    run: Any,
    x: dict[str, np.ndarray],
    rows: np.ndarray,
    background_rows: np.ndarray,
) -> tuple[pd.DataFrame, np.ndarray]:
    """Exact SHAP values of the metadata GROUPS (age, sex, site, width, height) for the lesions ``rows``,
    each with its own image held fixed, against the metadata of ``background_rows`` (~20 rows).

    The game's players are the groups, so one-hot columns move together and each group gets one honest
    value (2^groups coalitions × background rows evaluations per lesion, on the metadata head only).
    Returns ``(values, base_values)``: one row per lesion; ``values.sum(1) + base == prediction``.
    """
    import shap

    score, z = _scorer(run, x)
    groups = run.encoder.feature_groups()
    names = list(groups)
    background_rows = np.asarray(background_rows)
    values, bases = [], []
    for i in rows:
        fixed = {k: v[i : i + 1] for k, v in z.items() if k != "meta"}
        table = np.concatenate([z["meta"][i : i + 1], z["meta"][background_rows]])  # row 0: the lesion itself

        def f(g: np.ndarray, fixed=fixed, table=table) -> np.ndarray:
            g = np.asarray(g).round().astype(int)
            meta = np.empty((len(g), table.shape[1]), np.float32)
            for j, name in enumerate(names):
                meta[:, groups[name]] = table[g[:, j]][:, groups[name]]
            feed = {k: np.repeat(v, len(g), axis=0) for k, v in fixed.items()}
            feed["meta"] = meta
            return score(feed)

        bg = np.repeat(np.arange(1, len(table))[:, None], len(names), axis=1).astype(float)
        explainer = shap.explainers.Exact(f, shap.maskers.Independent(bg, max_samples=len(bg)))
        ex = explainer(np.zeros((1, len(names))), silent=True)
        values.append(ex.values[0])
        bases.append(float(np.ravel(ex.base_values)[0]))
    return pd.DataFrame(values, columns=names, index=list(rows)), np.array(bases)


def image_shap(run: Any, x: dict[str, np.ndarray], rows: np.ndarray, background_rows: np.ndarray,
               nsamples: int = 100, seed: int = 0) -> np.ndarray:
    """Expected-gradients SHAP of the image input, ``(len(rows), S, S, 3)``, each lesion's metadata fixed.

    The explainer sees the model through an explicit list-input wrapper (never list-vs-dict ambiguity).
    """
    import keras
    import shap

    model = run.model
    img_in = keras.Input(x["image"].shape[1:], name="shap_image")  # own names: the model's inputs keep theirs
    has_meta = run.train_config.uses_meta
    meta_in = keras.Input(x["meta"].shape[1:], name="shap_meta") if has_meta else None
    out = model({"image": img_in, "meta": meta_in} if has_meta else {"image": img_in})
    wrapper = keras.Model([img_in, meta_in] if has_meta else img_in, out)  # one input: a tensor, not a list (shap)
    bg = x["image"][background_rows]
    result = []
    for i in rows:
        data = [bg, np.repeat(x["meta"][i : i + 1], len(bg), 0)] if has_meta else bg
        explainer = shap.GradientExplainer(wrapper, data, batch_size=25)
        target = [x["image"][i : i + 1], x["meta"][i : i + 1]] if has_meta else x["image"][i : i + 1]
        sv = explainer.shap_values(target, nsamples=nsamples, rseed=seed)
        result.append(np.asarray(sv[0] if isinstance(sv, list) else sv)[0, ..., 0])
    return np.stack(result)


def grad_cam(run: Any, x: dict[str, np.ndarray], rows: np.ndarray) -> np.ndarray:
    """Grad-CAM maps ``(len(rows), S, S)`` in [0, 1]: for the last convolution block of the study's CNN
    branch, or for the last feature map of a backbone (e.g. EfficientNet-Lite0's 1280-channel head)."""
    import keras
    import tensorflow as tf

    from ..models.fusion import second_scale_layers

    model = run.model
    conv_names = [l.name for l in model.layers if l.name.startswith("img") and l.name.endswith("_conv")]
    feed = {k: tf.convert_to_tensor(v[rows]) for k, v in _feed(model, x).items()}
    if conv_names:
        last = model.get_layer(conv_names[-1])
        grad_model = keras.Model(model.inputs, [last.output, model.output])
        with tf.GradientTape() as tape:
            fmap, prob = grad_model(feed, training=False)
            logit = tf.math.log(prob + 1e-7) - tf.math.log(1 - prob + 1e-7)
    elif run.train_config.uses_images and run.train_config.backbone:
        base = model.get_layer("backbone")
        pre = model.get_layer("backbone_preprocess")
        fmap_model = keras.Model(base.inputs, base.layers[-2].output)  # the feature map before global pooling
        head = run.head_model()
        second = second_scale_layers(model)
        with tf.GradientTape() as tape:
            scaled = pre(feed["image"])
            fmap = fmap_model(scaled, training=False)
            emb = tf.reduce_mean(fmap, axis=(1, 2))
            if second:  # multi-resolution: the map of the image_size copy, the other copy's embedding merged in
                resize, base_2, merge = second
                emb = merge([emb, base_2(resize(scaled), training=False)])
            head_in = {"embedding": emb}
            if "meta" in feed:
                head_in["meta"] = feed["meta"]
            prob = head(head_in, training=False)
            logit = tf.math.log(prob + 1e-7) - tf.math.log(1 - prob + 1e-7)
    else:
        raise ValueError("Grad-CAM needs an image branch (the study's CNN or a backbone), not a metadata-only model")
    grads = tape.gradient(logit, fmap)
    weights = tf.reduce_mean(grads, axis=(1, 2), keepdims=True)
    cam = tf.nn.relu(tf.reduce_sum(weights * fmap, axis=-1))
    size = x["image"].shape[1]
    cam = tf.image.resize(cam[..., None], (size, size), method="bilinear")[..., 0].numpy()
    peak = cam.reshape(len(rows), -1).max(axis=1).reshape(-1, 1, 1)
    return np.where(peak > 0, cam / np.maximum(peak, 1e-12), 0.0)


def lesion_mask(image: np.ndarray, border: float = 0.05) -> np.ndarray:
    """A rough lesion mask ``(S, S)`` bool: Otsu's threshold on the blurred blue channel (melanin absorbs blue most, so
    even a light-brown lesion is dark there), the connected component nearest the centre, holes filled. A band of ``border`` × S pixels at the edges is
    ignored when choosing the component (vignette corners, rulers). An estimate for describing explanations, not a
    segmentation: where Otsu finds nothing usable, the central third of the image. (The skin-tone measure's mask,
    :func:`melanoma_utils.pipeline.skin.lesion_mask`, reads L* and keeps the largest part; both fill holes alike.)"""
    import cv2

    img = np.clip(image, 0, 255).astype(np.uint8)
    grey = cv2.GaussianBlur(np.ascontiguousarray(img[..., 2]), (0, 0), sigmaX=max(1.0, img.shape[0] / 64))  # blue: melanin
    _, dark = cv2.threshold(grey, 0, 1, cv2.THRESH_BINARY_INV + cv2.THRESH_OTSU)
    n, labels, stats, centroids = cv2.connectedComponentsWithStats(dark.astype(np.uint8), connectivity=8)
    h, w = dark.shape
    b = int(round(border * min(h, w)))
    inner = np.zeros_like(dark, bool)
    inner[b:h - b, b:w - b] = True
    best, best_score = 0, -np.inf
    for k in range(1, n):
        area_inside = int((labels[inner] == k).sum())
        if area_inside < 0.005 * h * w:
            continue
        distance = np.hypot(centroids[k][0] - w / 2, centroids[k][1] - h / 2) / np.hypot(w / 2, h / 2)
        score = area_inside / (h * w) - distance  # large and central
        if score > best_score:
            best, best_score = k, score
    if best == 0:
        mask = np.zeros((h, w), bool)
        mask[h // 3:2 * h // 3, w // 3:2 * w // 3] = True
        return mask
    from ..pipeline.skin import filled_component

    return filled_component(labels, best)


#: Fig 15's mask rules: a mask is trusted only when it covers 2–60% of the image, lies mostly off the image's border
#: band and survives an opening at 1/32 of the image side (hair and ruler ticks are thin and do not).
MASK_AREA = (0.02, 0.60)
MASK_BORDER_BAND, MASK_MAX_BORDER_SHARE, MASK_MIN_SOLID = 0.03, 0.10, 0.5


def mask_quality(mask: np.ndarray) -> str:
    """``"ok"``, or the first reason a lesion mask cannot be trusted to outline the lesion: it covers less than 2% or
    more than 60% of the image, covers more than 10% of the image's border band (skin at the edges, a vignette, a
    ruler), or is mostly thin structures (less than half of it survives an opening: hair, reticle lines)."""
    import cv2

    m = np.asarray(mask, bool)
    h, w = m.shape
    area = float(m.mean())
    if area < MASK_AREA[0]:
        return f"covers {100 * area:.1f}% of the image (< {100 * MASK_AREA[0]:.0f}%)"
    if area > MASK_AREA[1]:
        return f"covers {100 * area:.0f}% of the image (> {100 * MASK_AREA[1]:.0f}%)"
    b = max(1, int(round(MASK_BORDER_BAND * min(h, w))))
    band = np.ones_like(m)
    band[b:h - b, b:w - b] = False
    on_border = float(m[band].mean())
    if on_border > MASK_MAX_BORDER_SHARE:
        return f"touches the border ({100 * on_border:.0f}% of the border band)"
    k = max(3, min(h, w) // 32) | 1
    opened = cv2.morphologyEx(m.astype(np.uint8), cv2.MORPH_OPEN, cv2.getStructuringElement(cv2.MORPH_ELLIPSE, (k, k)))
    solid = float(opened.sum() / m.sum())
    if solid < MASK_MIN_SOLID:
        return f"thin structures ({100 * solid:.0f}% survives an opening: hair or lines?)"
    return "ok"


def inside_over_area(inside: float, mask: np.ndarray) -> float:
    """The share of a map's mass inside the mask divided by the mask's share of the image: 1 is what a map spread
    evenly would give, above 1 the map concentrates on the lesion; NaN for an empty map or mask."""
    area = float(np.asarray(mask, bool).mean())
    return inside / area if area > 0 and inside == inside else float("nan")


def mass_inside(heat: np.ndarray, mask: np.ndarray) -> float:
    """The share of a non-negative heat map's total mass (e.g. Grad-CAM) that lies inside ``mask``; NaN for an empty map."""
    h = np.clip(np.asarray(heat, np.float64), 0, None)
    total = h.sum()
    return float(h[np.asarray(mask, bool)].sum() / total) if total > 0 else float("nan")


def pick_lesions(y: np.ndarray, pred: np.ndarray, n: int, seed: int = 0) -> np.ndarray:
    """``n`` row positions to explain, spread over the four cells malignant-right, malignant-wrong, benign-right,
    benign-wrong in turn (a cell with no rows left is passed over), each cell's rows in random order."""
    rng = np.random.default_rng(seed)
    y, pred = np.asarray(y), np.asarray(pred)
    cells = [list(rng.permutation(np.flatnonzero((y == t) & ((pred == y) == right)))) for t in (1, 0) for right in (True, False)]
    picks: list[int] = []
    while len(picks) < n and any(cells):
        for cell in cells:
            if cell and len(picks) < n:
                picks.append(int(cell.pop(0)))
    return np.array(picks, dtype=int)


def mean_abs_with_ci(values: pd.DataFrame, n_boot: int = 1000, level: float = 0.95, seed: int = 0) -> pd.DataFrame:
    """Mean |value| per column (e.g. SHAP per metadata group over lesions) with a percentile bootstrap CI over the
    rows (lesions), sorted by the mean: columns ``mean_abs``, ``ci_low``, ``ci_high``. Unlike mean ± sd, the
    interval never goes below zero."""
    a = np.abs(values.to_numpy(np.float64))
    rng = np.random.default_rng(seed)
    boots = np.stack([a[rng.integers(0, len(a), len(a))].mean(axis=0) for _ in range(n_boot)])
    lo, hi = np.percentile(boots, [50 * (1 - level), 50 * (1 + level)], axis=0)
    out = pd.DataFrame({"mean_abs": a.mean(axis=0), "ci_low": lo, "ci_high": hi}, index=values.columns)
    return out.sort_values("mean_abs", ascending=False)
