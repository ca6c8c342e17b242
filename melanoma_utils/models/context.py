"""Patient context: the "ugly duckling" sign as features.

A lesion unlike the patient's other lesions is suspicious (Grob & Bonerandi 1998); patient-level features
helped the SIIM-ISIC 2020 winners. Two columns, computed WITHOUT labels from the rows given together (so
they are available at prediction time, from the same CSV):

* ``patient_n_images``: how many images the patient has in the table;
* ``ugly_duckling``: cosine distance between the lesion's image embedding and the mean embedding of the
  patient's OTHER lesions (NaN for a patient with one image: nothing to compare with).

The embeddings are EfficientNet-Lite0's ImageNet features (offline weights, the run's image size and
preprocessing), cached like the training embeddings (:mod:`melanoma_utils.models.embeddings`), so a run that
already trained on cached embeddings pays nothing extra. At prediction time, the patient's other images must
be in the same CSV; alone, a lesion gets ``patient_n_images = 1`` and no distance.
"""

from __future__ import annotations

import os
from typing import Any

import numpy as np
import pandas as pd

CONTEXT_COLUMNS: tuple[str, ...] = ("patient_n_images", "ugly_duckling")
#: The backbone whose embeddings measure how unlike a patient's other lesions an image is.
CONTEXT_BACKBONE = "efficientnetlite0"


def patient_context(patient_id: Any, embeddings: np.ndarray) -> pd.DataFrame:
    """``patient_n_images`` and ``ugly_duckling`` for rows with these patient ids and ``(N, dim)`` embeddings.

    ``ugly_duckling`` = 1 − cos(e_i, mean of the patient's other embeddings), in [0, 2]; NaN when the patient
    has a single row.
    """
    pid = pd.Series(np.asarray(patient_id, dtype=object))
    e = np.asarray(embeddings, np.float64)
    if e.ndim != 2 or len(e) != len(pid):
        raise ValueError(f"embeddings must be (n_rows, dim) with n_rows = {len(pid)}; got {e.shape}")
    codes, _ = pd.factorize(pid)
    counts = np.bincount(codes, minlength=codes.max() + 1 if len(codes) else 0)
    sums = np.zeros((len(counts), e.shape[1]))
    np.add.at(sums, codes, e)
    n = counts[codes]
    dist = np.full(len(e), np.nan)
    many = n > 1
    others = (sums[codes[many]] - e[many]) / (n[many] - 1)[:, None]
    num = np.sum(others * e[many], axis=1)
    den = np.linalg.norm(others, axis=1) * np.linalg.norm(e[many], axis=1)
    dist[many] = 1.0 - num / np.where(den > 0, den, 1.0)
    return pd.DataFrame({"patient_n_images": n.astype(float), "ugly_duckling": dist})


_ENCODERS: dict[tuple[str, int], Any] = {}


def _encoder(image_size: int) -> Any:
    """The ImageNet Lite0 encoder at ``image_size`` (built once per process and backend)."""
    import keras

    from .fusion import BackbonePreprocess, build_backbone

    key = (keras.backend.backend(), int(image_size))
    if key not in _ENCODERS:
        base = build_backbone(CONTEXT_BACKBONE, image_size, "imagenet")
        image = keras.Input((image_size, image_size, 3), name="image")
        _ENCODERS[key] = keras.Model(image, base(BackbonePreprocess("raw")(image)))
    return _ENCODERS[key]


def context_embeddings(paths: list[str], image_size: int, preprocess: dict[str, Any],
                       cache_root: str | os.PathLike[str] | None = None) -> np.ndarray:
    """``(N, dim)`` ImageNet EfficientNet-Lite0 embeddings of the plain images (cached)."""
    from .embeddings import EmbeddingSpec, cached_embeddings

    emb, _ = cached_embeddings(_encoder(image_size), paths, EmbeddingSpec(CONTEXT_BACKBONE, "imagenet", image_size, preprocess),
                               cache_root=cache_root)
    return emb[:, 0]


def add_context(df: pd.DataFrame, image_size: int, preprocess: dict[str, Any],
                cache_root: str | os.PathLike[str] | None = None) -> pd.DataFrame:
    """``df`` with the :data:`CONTEXT_COLUMNS` (replacing any there), from its readable images."""
    emb = context_embeddings(list(df["image_path"]), image_size, preprocess, cache_root)
    ctx = patient_context(df["patient_id"].to_numpy(), emb)
    out = df.drop(columns=[c for c in CONTEXT_COLUMNS if c in df]).reset_index(drop=True)
    return pd.concat([out, ctx], axis=1).set_axis(df.index) if len(df) else out.assign(**{c: [] for c in CONTEXT_COLUMNS})


def image_count_auc(patient_id: Any, target: Any) -> float:
    """ROC AUC of *fewer images of the same patient* as a melanoma score, in the rows given: how much the image
    count alone says, which depends on how the data set was sampled (compare a subset with the full metadata)."""
    from ..evaluation.metrics import roc_auc
    from ..evaluation.shortcuts import images_per_patient

    return roc_auc(np.asarray(target).astype(int), -images_per_patient(np.asarray(patient_id, dtype=object)))
