"""Frozen-backbone image embeddings, computed once per image and cached (fast training on a CPU).

With a pretrained backbone kept frozen, each image's pooled embedding never changes: it is computed once
for the plain image and for a few *dihedral views* (90° rotations and mirrors, which leave a dermoscopic
image as plausible as the original), cached on disk, and the head is then trained on the cache in seconds
per epoch. A cache entry is keyed by the image file's content, the backbone and its weights, the image
size, the preprocessing and the view: a different fold or subset of the same images reuses it.

Cache layout: ``<cache_dir>/embeddings/<config key>/<image digest>.npy`` (float16, ``(views, dim)``),
each file written under a temporary name and moved into place.
"""

from __future__ import annotations

import hashlib
import json
import os
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Mapping, Sequence

import numpy as np

from ..atomic import atomic_write, file_digest
from ..config import cache_dir
from ..pipeline.feeds import image_batches
from ..pipeline.transforms import MAX_VIEWS, dihedral

#: Bumped when the way embeddings are computed changes, so old cache entries are not reused.
EMBEDDING_VERSION = 1


def weights_id(weights: str | None) -> str:
    """A stable identity for backbone weights: ``imagenet`` + converter version, or a file's digest."""
    if weights in (None, "none"):
        raise ValueError("embeddings are cached only for pretrained (fixed) backbone weights")
    if weights == "imagenet":
        from .efficientnet_lite import CONVERTER_VERSION

        return f"imagenet-v{CONVERTER_VERSION}"
    return f"file-{file_digest(weights)[:16]}"


def config_key(backbone: str, weights: str | None, image_size: int, preprocess: dict[str, Any],
               output: str = "pooled") -> str:
    """The cache folder name for one embedding configuration (an entry holds one image's views 0..k-1); ``output``
    names what is cached: the pooled embedding, or e.g. ``block15_input`` (the activations entering a block)."""
    from .presets import BACKBONES

    spec = {"backbone": backbone, "weights": weights_id(weights), "image_size": int(image_size),
            "preprocess": preprocess, "version": EMBEDDING_VERSION}
    mode = BACKBONES.get(backbone, ("", "raw"))[1]
    if mode != "raw":  # the input scaling in front of the backbone (EfficientNets scale inside: key unchanged)
        spec["input_scaling"] = mode
    if output != "pooled":  # (pooled entries keep the key they always had)
        spec["output"] = output
    return hashlib.sha1(json.dumps(spec, sort_keys=True).encode()).hexdigest()[:20]


def compute_embeddings(backbone_model: Any, paths: Sequence[str], image_size: int, preprocess: dict[str, Any],
                       views: int = 1, batch_size: int = 64) -> np.ndarray:
    """``(N, views, dim)`` float32 embeddings of each image's first ``views`` dihedral views (no cache).

    ``backbone_model`` takes 0–255 images (:func:`melanoma_utils.models.fusion.image_encoder`)."""
    if not 1 <= views <= MAX_VIEWS:
        raise ValueError(f"views must be in 1..{MAX_VIEWS}; got {views}")
    chunks = []
    for images in image_batches(paths, image_size, preprocess, batch_size):
        x = images.astype(np.float32)
        per_view = [np.asarray(backbone_model.predict_on_batch(dihedral(x, v)), np.float32) for v in range(views)]
        chunks.append(np.stack(per_view, axis=1))
    if not chunks:
        return np.zeros((0, views, *backbone_model.output_shape[1:]), np.float32)
    return np.concatenate(chunks)


@dataclass(frozen=True)
class EmbeddingSpec:
    """What is embedded: the backbone and its weights, the input size and preprocessing, what the backbone model
    outputs (``pooled``; or the activations entering a block, :mod:`melanoma_utils.models.partial`: entries
    ``(views, h, w, c)``) and how many views of each image (rotations/mirrors). All but ``views`` name the cache
    folder (:attr:`key`); an entry with more views serves fewer."""

    backbone: str
    backbone_weights: str | None
    image_size: int
    preprocess: Mapping[str, Any]
    views: int = 1
    output: str = "pooled"

    @property
    def key(self) -> str:
        """The cache folder name (:func:`config_key`)."""
        return config_key(self.backbone, self.backbone_weights, self.image_size, dict(self.preprocess), self.output)


def cached_embeddings(backbone_model: Any, paths: Sequence[str], spec: EmbeddingSpec, *,
                      cache_root: str | os.PathLike[str] | None = None, batch_size: int = 64, progress: bool = False,
                      chunk: int = 512, dtype: Any = np.float32) -> tuple[np.ndarray, dict[str, int]]:
    """Embeddings ``(N, views, dim)`` of ``spec`` for ``paths``, computing only those not cached yet (``chunk``
    images at a time, each chunk written to the cache before the next starts, with progress and an estimate of the
    time left).

    Returns the array and ``{"cached": n, "computed": m}``. ``cache_root`` defaults to the user cache
    (:func:`melanoma_utils.config.cache_dir`); ``dtype``: of the returned array (``np.float16`` halves the memory of
    activations).
    """
    backbone, image_size, preprocess, views = spec.backbone, spec.image_size, dict(spec.preprocess), spec.views
    if not paths:
        return np.zeros((0, views, *backbone_model.output_shape[1:]), dtype), {"cached": 0, "computed": 0}
    root = Path(cache_root) if cache_root is not None else cache_dir()
    folder = root / "embeddings" / spec.key
    folder.mkdir(parents=True, exist_ok=True)
    digests = [file_digest(p) for p in paths]
    out: list[np.ndarray | None] = [None] * len(paths)
    todo: list[int] = []
    for i, d in enumerate(digests):
        f = folder / f"{d}.npy"
        if f.is_file():
            try:
                arr = np.load(f, allow_pickle=False)
                if arr.ndim >= 2 and arr.shape[0] >= views:  # an entry with more views serves fewer
                    out[i] = arr[:views].astype(dtype)
                    continue
            except (OSError, ValueError):
                pass  # a damaged entry is recomputed
        todo.append(i)
    if todo:
        if progress:
            print(f"computing embeddings of {len(todo):,} image(s) × {views} view(s) ({len(paths) - len(todo):,} cached)", flush=True)
        start = time.perf_counter()
        from .. import progress as terminal

        steps = terminal.bar(len(todo), f"embedding ({backbone}, {image_size} px, {views} view(s))", unit="img")
        for first in range(0, len(todo), chunk):  # written chunk by chunk: a killed run keeps what it computed
            part = todo[first:first + chunk]
            new = compute_embeddings(backbone_model, [paths[i] for i in part], image_size, preprocess, views, batch_size)
            for i, emb in zip(part, new):
                atomic_write(folder / f"{digests[i]}.npy", lambda tmp, emb=emb: np.save(tmp, emb.astype(np.float16)))
                out[i] = emb.astype(np.float16).astype(dtype)  # what the cache returns next time
            steps.update(len(part))
            if progress and len(todo) > chunk:
                done, spent = first + len(part), time.perf_counter() - start
                print(f"  embedded {done:,} of {len(todo):,} image(s) in {spent:.0f} s "
                      f"(about {spent / done * (len(todo) - done):.0f} s left)", flush=True)
        steps.close()
    return np.stack(out), {"cached": len(paths) - len(todo), "computed": len(todo)}  # type: ignore[arg-type]
