"""Training paths: one small class per way this package fits a model, behind one interface,
``path.fit(data, cfg) -> Fitted`` (:func:`path_for` picks the path a configuration asks for; :mod:`.training` runs
it and writes the run folder).

* :class:`EndToEnd` — the whole model on decoded images (the study's CNN, or ``--end-to-end`` with a pretrained
  backbone frozen for ``freeze_epochs`` first); resumable after a kill.
* :class:`HeadOnEmbeddings` — a frozen pretrained backbone: each image's embeddings cached, the head trained on them
  and moved into the full two-input model (the default).
* :class:`AdaptedBlocks` — that head, then the backbone's last blocks trained on cached activations
  (``adapt_blocks``; :mod:`.adapt`).
* :class:`FineTune` — that head as the warm-up, then the backbone's top or every convolution trained end to end on
  augmented images (``finetune``: the ``lite0-ft128`` recipe a CPU affords), BatchNorm statistics frozen; resumable.

Adding a path is one class here and one line in :func:`path_for`.
"""

from __future__ import annotations

import contextlib
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, ClassVar

import numpy as np
import pandas as pd

from ..atomic import atomic_write
from ..data.diagnoses import diagnosis_labels
from ..models.features import MetadataEncoder
from .compiling import HEADS, compile_model
from .resume import EpochSeeds, ResumeState
from .run import TrainConfig
from .runfolder import RunLayout
from .source_weights import row_weights


@dataclass(frozen=True)
class FitData:
    """What every path fits on: the training and validation parts (external rows already in ``train``), the fitted
    metadata encoder, the class weights, the image preprocessing, the staging folder (resumable state goes to its
    ``backup/``) and the device scope."""

    train: pd.DataFrame
    val: pd.DataFrame
    encoder: MetadataEncoder
    class_weights: dict[int, float]
    preprocess: dict[str, Any]
    out_dir: Path
    scope: Any = field(default_factory=contextlib.nullcontext)


@dataclass
class Fitted:
    """A fitted model: the per-epoch history rows (every stage), each stage's facts (seconds, epochs, …) and the seconds
    an interrupted fit had spent before it was resumed."""

    model: Any
    rows: list[dict[str, float]]
    stages: dict[str, Any] = field(default_factory=dict)
    seconds_before: float = 0.0

    @property
    def epochs(self) -> int:
        """Epochs run in all stages together."""
        return len(self.rows)


def steps(n_rows: int, batch_size: int, epochs: int) -> int:
    """Optimizer steps of ``epochs`` over ``n_rows`` rows."""
    return -(-n_rows // batch_size) * epochs


def image_feeds(cfg: TrainConfig, data: FitData) -> tuple[Any, Any, EpochSeeds]:
    """The training and validation feeds of decoded images (tf.data or a NumPy feed, by backend), and the callback that
    makes each training epoch's order, augmentation and dropout a function of ``(seed, epoch)``."""
    from ..pipeline.feeds import EpochClock, FeedSpec, make_feed

    keys = tuple(k for k, used in (("image", cfg.uses_images), ("meta", cfg.uses_meta)) if used)
    augmenter = None
    if cfg.uses_images and cfg.data.augment:
        from ..pipeline.augment import build_augmenter

        augmenter = build_augmenter(cfg.data.image_size, seed=cfg.fit.seed, **cfg.data.augment_config)
    clock = EpochClock()
    spec = FeedSpec(keys=keys, image_size=cfg.data.image_size, preprocess=data.preprocess, batch_size=cfg.fit.batch_size,
                    seed=cfg.fit.seed, cache=cfg.data.cache, drop_remainder=cfg.runtime.strategy == "multiworker")
    feeds = []
    for part, training in ((data.train, True), (data.val, False)):
        feeds.append(make_feed(list(part["image_path"]), data.encoder.transform(part), part["target"].to_numpy(),
                               row_weights(part, data.class_weights), spec, training=training,
                               augmenter=augmenter if training else None, clock=clock if training else None))
    return feeds[0], feeds[1], EpochSeeds(cfg.fit.seed, clock, (augmenter,) if augmenter is not None else ())


def fit_resumable(model: Any, ds_tr: Any, ds_va: Any, state: ResumeState, first_epoch: int, end_epoch: int,
                  verbose: int, seeds: EpochSeeds) -> None:
    """Fit epochs ``first_epoch .. end_epoch - 1`` with ``state`` saving after each one; when ``state`` holds an
    interrupted fit of this phase, continue after its last saved epoch (or just restore its best weights when it
    had already stopped). ``seeds`` derives each epoch's random streams from its number, so a resumed fit replays
    the epochs an uninterrupted one would have run."""
    state.path.parent.mkdir(parents=True, exist_ok=True)
    if state.restore(model):
        what = {"main": "", "finetune": "fine-tuning ", "freeze": "the frozen phase "}.get(state.phase, "")
        print(f"resuming {what}after epoch {state.initial_epoch} (state in {state.path.parent})", flush=True)
    start = max(first_epoch, state.initial_epoch)
    if not state.stopped and start < end_epoch:
        model.fit(ds_tr, validation_data=ds_va, epochs=end_epoch, initial_epoch=start, shuffle=False,
                  verbose=verbose, callbacks=[seeds, state])
    elif state.best_weights is not None:
        model.set_weights(state.best_weights)


def write_history(rows: list[dict[str, float]], path: Path) -> None:
    """``history.csv`` from the per-epoch rows (``epoch`` first), written atomically."""
    frame = pd.DataFrame(rows)
    if not frame.empty:
        frame = frame[["epoch"] + sorted(c for c in frame.columns if c != "epoch")]
    atomic_write(path, lambda tmp: frame.to_csv(tmp, index=False))


class TrainingPath:
    """One way of fitting a model (see the module docstring). Subclasses set :attr:`name`, check what they need of a
    configuration (:meth:`check`) and fit (:meth:`fit`)."""

    name: ClassVar[str] = ""

    def check(self, cfg: TrainConfig) -> None:
        """Raise ``ValueError`` where ``cfg`` cannot be fitted on this path."""

    def fit(self, data: FitData, cfg: TrainConfig) -> Fitted:
        """Fit a model on ``data`` as ``cfg`` says."""
        raise NotImplementedError


class EndToEnd(TrainingPath):
    """The whole model on decoded images (optionally with the backbone frozen for ``freeze_epochs`` first), resumable
    after a kill (:class:`~melanoma_utils.runs.resume.ResumeState` in ``out_dir/backup``)."""

    name = "end-to-end"

    def check(self, cfg: TrainConfig) -> None:
        if cfg.uses_cached_embeddings:
            raise ValueError("the end-to-end path trains on decoded images: the frozen pretrained backbone trains on "
                             "cached embeddings instead (--end-to-end to train it on images)")

    def fit(self, data: FitData, cfg: TrainConfig) -> Fitted:
        from ..models.fusion import backbone_layer, bias_for, build_model

        self.check(cfg)
        ds_tr, ds_va, seeds = image_feeds(cfg, data)
        n = len(data.train)
        with data.scope:
            model = build_model(cfg.model_spec(data.encoder.n_features, bias_for(float(data.train["target"].mean()))))
            base = backbone_layer(model)
            frozen = base is not None and cfg.backbone_weights is not None and cfg.fit.freeze_epochs > 0
            if frozen:
                base.trainable = False
            compile_model(model, cfg.fit.learning_rate, steps(n, cfg.fit.batch_size, cfg.fit.epochs), images=cfg.uses_images)
        rows: list[dict[str, float]] = []
        seconds_before = 0.0
        layout = RunLayout(data.out_dir)
        if frozen:
            first = ResumeState(layout.state("freeze"), patience=10**9, phase="freeze")
            if not layout.state("main").is_file():
                fit_resumable(model, ds_tr, ds_va, first, 0, cfg.fit.freeze_epochs, cfg.runtime.verbose, seeds)
            else:  # the main phase has begun: its state sets the weights; this one gives its rows and time
                first.restore(model)
            seconds_before += first.seconds_before
            rows += first.rows
            base.trainable = True
            compile_model(model, cfg.fit.finetune_learning_rate, steps(n, cfg.fit.batch_size, cfg.fit.epochs - len(rows)), images=True)
        main = ResumeState(layout.state("main"), cfg.fit.patience, phase="main")
        fit_resumable(model, ds_tr, ds_va, main, len(rows), cfg.fit.epochs, cfg.runtime.verbose, seeds)
        rows += main.rows
        write_history(rows, layout.history)
        return Fitted(model, rows, seconds_before=seconds_before + main.seconds_before)


@dataclass
class _Head:
    """The state the head stage hands to the stages after it."""

    model: Any
    head: Any
    labels: tuple[np.ndarray, np.ndarray]
    weights: tuple[np.ndarray, np.ndarray]
    rows: list[dict[str, float]]
    stages: dict[str, Any]
    seconds_before: float = 0.0  # what an interrupted stage after the head had spent before this process resumed it


def _freeze_backbones(model: Any) -> None:
    """The backbone (and a second-resolution copy) frozen, as every saved model holds it."""
    for layer in model.layers:
        if layer.name.startswith("backbone"):
            layer.trainable = False


class HeadOnEmbeddings(TrainingPath):
    """A frozen pretrained backbone: cache each image's embeddings (``embedding_views`` dihedral views), train the head
    on them and move it into the full two-input model. Subclasses add a stage after the head (:meth:`after_head`)."""

    name = "head on cached embeddings"

    def check(self, cfg: TrainConfig) -> None:
        if not cfg.uses_cached_embeddings:
            raise ValueError(f"the {self.name} path needs a pretrained backbone with its weights and an image input "
                             "(kind fusion or image), without --end-to-end")

    def fit(self, data: FitData, cfg: TrainConfig) -> Fitted:
        self.check(cfg)
        with data.scope:
            h = self.train_head(data, cfg)
            rows = h.rows + self.after_head(h, data, cfg)
        write_history(rows, RunLayout(data.out_dir).history)
        return Fitted(h.model, rows, h.stages, seconds_before=h.seconds_before)

    def after_head(self, h: _Head, data: FitData, cfg: TrainConfig) -> list[dict[str, float]]:
        """What follows the head (none here); returns its history rows and adds its facts to ``h.stages``."""
        return []

    def train_head(self, data: FitData, cfg: TrainConfig) -> _Head:
        """Embeddings cached, the head trained on them (early stopping) and copied into the full model, whose backbone
        stays frozen."""
        import keras

        from ..models.embeddings import cached_embeddings
        from ..models.fusion import bias_for, build_head_model, build_model, copy_head_weights, image_encoder
        from ..pipeline.feeds import make_embedding_sequence

        train, val, encoder = data.train, data.val, data.encoder
        bias = bias_for(float(train["target"].mean()))
        model = build_model(cfg.model_spec(encoder.n_features, bias), image_size=cfg.data.image_size)
        t0 = time.perf_counter()
        spec = cfg.embedding_spec(data.preprocess)
        emb_tr, n_tr = cached_embeddings(image_encoder(model), list(train["image_path"]), spec, progress=cfg.runtime.verbose > 0)
        emb_va, n_va = cached_embeddings(image_encoder(model), list(val["image_path"]), spec, progress=cfg.runtime.verbose > 0)
        t_embed = time.perf_counter() - t0
        # the binary target, or the diagnosis classes of a diagnosis head (its melanoma column is the saved output)
        y_tr, y_va = (diagnosis_labels(part, cfg.fit.objective).astype(np.float32) for part in (train, val))
        w_tr, w_va = row_weights(train, data.class_weights), row_weights(val, data.class_weights)
        keras.utils.set_random_seed(cfg.fit.seed)  # the head starts alike whether the embeddings were cached or computed
        fresh = build_head_model(emb_tr.shape[-1], cfg.model_spec(encoder.n_features, bias), logits=cfg.fit.objective != "binary")
        head = HEADS.get(fresh, cfg.fit.head_learning_rate, cfg.fit.objective)
        x_va: dict[str, np.ndarray] = {"embedding": emb_va[:, 0]}
        if cfg.uses_meta:
            x_va["meta"] = encoder.transform(val)
        seq = make_embedding_sequence(emb_tr, encoder.transform(train) if cfg.uses_meta else None, y_tr, w_tr,
                                      cfg.fit.batch_size, seed=cfg.fit.seed)
        t1 = time.perf_counter()
        try:
            hist = head.fit(seq, validation_data=(x_va, y_va, w_va), epochs=cfg.fit.epochs, verbose=cfg.runtime.verbose,
                            callbacks=[keras.callbacks.EarlyStopping(monitor="val_loss", patience=cfg.fit.patience,
                                                                     restore_best_weights=True)])
        finally:
            seq.close()  # (TensorFlow keeps the sequence itself for the rest of the process)
        n_epochs = len(hist.history["loss"])
        copy_head_weights(head, model)
        _freeze_backbones(model)
        stages: dict[str, Any] = {
            "embeddings": {"seconds": t_embed, "views": cfg.data.embedding_views, "computed": n_tr["computed"] + n_va["computed"],
                           "cached": n_tr["cached"] + n_va["cached"]},
            "head": {"seconds": time.perf_counter() - t1, "epochs": n_epochs, "learning_rate": cfg.fit.head_learning_rate},
        }
        rows = [{"epoch": e, **{k: float(v[e]) for k, v in hist.history.items()}} for e in range(n_epochs)]
        return _Head(model, head, (y_tr, y_va), (w_tr, w_va), rows, stages)


class AdaptedBlocks(HeadOnEmbeddings):
    """The head, then the backbone's last ``adapt_blocks`` blocks, head convolution and head trained on cached
    activations (:func:`~melanoma_utils.runs.adapt.adapt_top`)."""

    name = "blocks adapted on cached activations"

    def check(self, cfg: TrainConfig) -> None:
        super().check(cfg)
        if not int(cfg.fit.adapt_blocks):
            raise ValueError("the adapted-blocks path needs adapt_blocks >= 1")

    def after_head(self, h: _Head, data: FitData, cfg: TrainConfig) -> list[dict[str, float]]:
        from .adapt import adapt_top

        rows, h.stages["adapt"] = adapt_top(h.model, h.head, cfg, data.train, data.val, data.encoder, h.labels, h.weights)
        _freeze_backbones(h.model)  # the adapted backbone is saved frozen like the others
        return [{**r, "epoch": len(h.rows) + r["epoch"]} for r in rows]


def _top_prefixes(base: Any) -> tuple[str, ...]:
    """Layer-name prefixes that ``finetune="top"`` trains in an EfficientNet-Lite backbone: the blocks of its last
    two stages (by output channels; Lite0: blocks 11-15) and the head conv."""
    channels = {int(layer.name[5:].split("_")[0]): int(layer.filters) for layer in base.layers
                if layer.name.startswith("block") and layer.name.endswith("_project_conv")}
    last_two = sorted(set(channels.values()))[-2:]
    return tuple(f"block{i}_" for i, c in sorted(channels.items()) if c in last_two) + ("head_",)


def set_finetune_trainable(base: Any, mode: str) -> int:
    """Make the backbone's layers trainable for fine-tuning (``top``: its last stage and head; ``all``);
    BatchNorm layers stay frozen (inference statistics, the usual practice with small batches).
    Returns the number of trainable weights."""
    base.trainable = True
    top = _top_prefixes(base)
    for layer in base.layers:
        is_bn = "BatchNormalization" in type(layer).__name__
        in_scope = mode == "all" or layer.name.startswith(top)
        layer.trainable = in_scope and not is_bn
    return len(base.trainable_weights)


class FineTune(HeadOnEmbeddings):
    """The head as the warm-up, then the backbone's top (``finetune="top"``) or every convolution (``"all"``) trained
    with the head on augmented images for ``finetune_epochs`` (``finetune_learning_rate``, ``finetune_schedule``:
    ``warmup-cosine`` rises over the first epoch, ``label_smoothing``; BatchNorm statistics frozen), resumable after a kill; the saved backbone is frozen again."""

    name = "fine-tuned end to end"

    def check(self, cfg: TrainConfig) -> None:
        super().check(cfg)
        if cfg.fit.finetune == "none":
            raise ValueError("the fine-tuning path needs finetune top or all")

    def after_head(self, h: _Head, data: FitData, cfg: TrainConfig) -> list[dict[str, float]]:
        from ..models.fusion import backbone_layer

        base = backbone_layer(h.model)
        n_trainable = set_finetune_trainable(base, cfg.fit.finetune)
        compile_model(h.model, cfg.fit.finetune_learning_rate, steps(len(data.train), cfg.fit.batch_size, cfg.fit.finetune_epochs),
                      images=True, schedule=cfg.fit.finetune_schedule, label_smoothing=cfg.fit.label_smoothing,
                      warmup_steps=steps(len(data.train), cfg.fit.batch_size, 1))  # warmup-cosine: the first epoch
        ds_tr, ds_va, seeds = image_feeds(cfg, data)
        t0 = time.perf_counter()
        ft = ResumeState(RunLayout(data.out_dir).state("finetune"), cfg.fit.patience, phase="finetune")
        first = len(h.rows)
        fit_resumable(h.model, ds_tr, ds_va, ft, first, first + cfg.fit.finetune_epochs, cfg.runtime.verbose, seeds)
        seconds = ft.seconds_before + time.perf_counter() - t0  # a resumed run counts its earlier part
        h.seconds_before = ft.seconds_before
        h.stages["finetune"] = {"mode": cfg.fit.finetune, "seconds": seconds, "epochs": len(ft.rows),
                                "learning_rate": cfg.fit.finetune_learning_rate, "schedule": cfg.fit.finetune_schedule,
                                "label_smoothing": cfg.fit.label_smoothing, "trainable_backbone_weights": n_trainable,
                                # training rows per second, the validation passes included
                                "images_per_second": len(data.train) * len(ft.rows) / max(seconds, 1e-9)}
        base.trainable = False  # the saved model's backbone is frozen again (a later fit must opt in)
        return ft.rows


def path_for(cfg: TrainConfig) -> TrainingPath:
    """The training path ``cfg`` asks for (each path checks the options it needs)."""
    if not cfg.uses_cached_embeddings:
        return EndToEnd()
    if cfg.fit.finetune != "none":
        return FineTune()
    if int(cfg.fit.adapt_blocks):
        return AdaptedBlocks()
    return HeadOnEmbeddings()
