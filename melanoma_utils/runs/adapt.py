"""Partial fine-tuning on cached activations (``TrainConfig.adapt_blocks``): after the head is trained on cached
embeddings, the backbone's last MBConv block(s), its head convolution and the head are trained together on the cached
activations that enter those blocks (:mod:`melanoma_utils.models.partial`), then written back into the full
two-input model, so the run folder stays one model that takes images (``predict``, ``export`` and Grad-CAM read it
unchanged). BatchNorm layers keep their ImageNet statistics (inference mode), as in ``--finetune``.
"""

from __future__ import annotations

import time
from typing import Any

import numpy as np
import pandas as pd

from ..models.features import MetadataEncoder
from .compiling import compile_model
from .run import TrainConfig


def adapt_top(model: Any, head: Any, cfg: TrainConfig, train: pd.DataFrame, val: pd.DataFrame,
              encoder: MetadataEncoder, labels: tuple[np.ndarray, np.ndarray], weights: tuple[np.ndarray, np.ndarray]
              ) -> tuple[list[dict[str, float]], dict[str, Any]]:
    """Train the last ``cfg.fit.adapt_blocks`` blocks of ``model``'s backbone, its head conv and ``head`` (the head model
    trained on embeddings, whose output the loss of ``cfg.fit.objective`` reads) on cached activations; then copy the
    trained layers into ``model`` (backbone and head). ``labels``/``weights``: training and validation targets and
    row weights. Returns the per-epoch history rows and the stage's facts (seconds, epochs, cache counts)."""
    import keras

    from ..models.fusion import copy_head_weights
    from ..models.partial import build_lite_top, cached_activations, copy_layers_by_name, first_adapted_block
    from ..pipeline.feeds import make_embedding_sequence
    from ..pipeline.transforms import preprocess_config

    start = first_adapted_block(str(cfg.backbone), cfg.fit.adapt_blocks)
    t0 = time.perf_counter()
    spec = cfg.embedding_spec(preprocess_config(cfg.data.preprocess))
    act_tr, n_tr = cached_activations(model, start, list(train["image_path"]), spec, progress=cfg.runtime.verbose > 0)
    act_va, n_va = cached_activations(model, start, list(val["image_path"]), spec, progress=cfg.runtime.verbose > 0)
    t_cache = time.perf_counter() - t0
    base = model.get_layer("backbone")
    top = build_lite_top(str(cfg.backbone), start, tuple(act_tr.shape[2:]))
    copy_layers_by_name(base, top)
    for layer in top.layers:  # BatchNorm stays in inference mode with its ImageNet statistics
        layer.trainable = "BatchNormalization" not in type(layer).__name__
    act = keras.Input(tuple(act_tr.shape[2:]), name="embedding")  # (the sequence's key: activations in its place)
    inputs: dict[str, Any] = {"embedding": act}
    head_in: dict[str, Any] = {"embedding": top(act)}
    if cfg.uses_meta:
        inputs["meta"] = head_in["meta"] = keras.Input((encoder.n_features,), name="meta")
    adapted = keras.Model(inputs, head(head_in), name="adapted_top")
    compile_model(adapted, cfg.fit.adapt_learning_rate, objective=cfg.fit.objective)
    xm_tr = encoder.transform(train) if cfg.uses_meta else None
    x_va: dict[str, np.ndarray] = {"embedding": act_va[:, 0].astype(np.float32)}
    if cfg.uses_meta:
        x_va["meta"] = encoder.transform(val)
    seq = make_embedding_sequence(act_tr, xm_tr, labels[0], weights[0], cfg.fit.batch_size, seed=cfg.fit.seed)
    t1 = time.perf_counter()
    try:
        hist = adapted.fit(seq, validation_data=(x_va, labels[1], weights[1]), epochs=cfg.fit.adapt_epochs,
                           verbose=cfg.runtime.verbose, callbacks=[keras.callbacks.EarlyStopping(
                               monitor="val_loss", patience=cfg.fit.patience, restore_best_weights=True)])
    finally:
        seq.close()
    copy_layers_by_name(top, base)  # the trained blocks back into the full backbone, by name
    copy_head_weights(head, model)
    epochs = len(hist.history["loss"])
    rows = [{"epoch": e, **{k: float(v[e]) for k, v in hist.history.items()}} for e in range(epochs)]
    facts = {"blocks": int(cfg.fit.adapt_blocks), "first_block": start, "activation_shape": list(act_tr.shape[2:]),
             "cache_seconds": t_cache, "seconds": time.perf_counter() - t1, "epochs": epochs,
             "learning_rate": cfg.fit.adapt_learning_rate, "computed": n_tr["computed"] + n_va["computed"],
             "cached": n_tr["cached"] + n_va["cached"]}
    return rows, facts
