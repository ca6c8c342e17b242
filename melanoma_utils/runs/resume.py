"""Early stopping that survives a kill, and epochs whose randomness depends on the epoch alone (Keras callbacks;
imported only where training runs, so that the run-folder code in :mod:`melanoma_utils.runs.runfolder` reads and writes
files without Keras or TensorFlow)."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import numpy as np

from ..atomic import atomic_write
from .runfolder import ResumeMismatch


def _keras_callback_base():
    import keras

    return keras.callbacks.Callback


def reseed(layer: Any, seed: int, epoch: int, salt: int = 0) -> int:
    """Set every Keras ``SeedGenerator`` state in ``layer`` (dropout, random augmentation layers) to a value derived
    from ``(seed, epoch, salt, its index)``. Returns how many were set."""
    states = [v for v in layer.variables if v.name == "seed_generator_state"]
    for i, v in enumerate(states):
        v.assign(np.array([(seed * 1_000_003 + epoch * 10_007 + salt * 101 + i) % 2**31, 0], dtype=v.dtype))
    return len(states)


class EpochSeeds(_keras_callback_base()):  # type: ignore[misc]
    """At each epoch's start: the feeds' :class:`~melanoma_utils.pipeline.feeds.EpochClock` moves to the epoch (their order)
    and every seed state of the model and of ``layers`` (an augmenter used inside the feed: its random crops, flips,
    colour jitter) is derived from ``(seed, epoch)`` (:func:`reseed`). Epoch *k* then draws the same random numbers
    whether the fit ran from epoch 0 or resumed at *k* after a kill."""

    def __init__(self, seed: int, clock: Any = None, layers: tuple[Any, ...] = ()) -> None:
        super().__init__()
        self.seed, self.clock, self.layers = int(seed), clock, tuple(layers)

    def on_epoch_begin(self, epoch: int, logs=None) -> None:
        if self.clock is not None:
            self.clock.set(epoch)
        for k, layer in enumerate((self.model, *self.layers)):
            reseed(layer, self.seed, epoch, salt=k)


class ResumeState(_keras_callback_base()):  # type: ignore[misc]
    """Early stopping that survives a kill: saves (atomically, after every epoch) the weights, optimizer
    variables, epoch counter, best weights, patience counter, history rows and seconds spent; :meth:`restore`
    puts them back before a resumed ``fit`` (which then starts at :attr:`initial_epoch`)."""

    def __init__(self, path: Path, patience: int, phase: str, monitor: str = "val_loss") -> None:
        super().__init__()
        self.path, self.patience, self.phase, self.monitor = Path(path), int(patience), phase, monitor
        self.initial_epoch = 0
        self.best = np.inf
        self.wait = 0
        self.best_weights: list[np.ndarray] | None = None
        self.rows: list[dict[str, float]] = []
        self.seconds_before = 0.0
        self._t0 = 0.0

    def restore(self, model: Any) -> bool:
        """Load the saved state into ``model`` (and this callback); ``False`` when there is none for this phase."""
        if not self.path.is_file():
            return False
        with np.load(self.path, allow_pickle=False) as z:
            meta = json.loads(str(z["meta"]))
            if meta["phase"] != self.phase:
                return False
            n_w, n_o = meta["n_weights"], meta["n_optimizer"]
            model.set_weights([z[f"w{i}"] for i in range(n_w)])
            opt = model.optimizer
            if not opt.built:
                opt.build(model.trainable_variables)
            if len(opt.variables) != n_o:
                raise ResumeMismatch(f"{self.path}: optimizer state does not fit this model")
            for i, v in enumerate(opt.variables):
                v.assign(z[f"o{i}"])
            self.best_weights = [z[f"b{i}"] for i in range(n_w)] if meta["has_best"] else None
        self.initial_epoch, self.best, self.wait = meta["epoch"], meta["best"], meta["wait"]
        self.rows, self.seconds_before = meta["rows"], meta["seconds"]
        return True

    @property
    def stopped(self) -> bool:
        """Whether the saved state already reached early stopping."""
        return self.wait >= self.patience

    def on_train_begin(self, logs=None) -> None:
        import time

        self._t0 = time.perf_counter()

    def on_epoch_end(self, epoch: int, logs=None) -> None:
        import time

        logs = dict(logs or {})
        self.rows.append({"epoch": epoch, **{k: float(v) for k, v in logs.items()}})
        current = logs.get(self.monitor)
        if current is not None and current < self.best:
            self.best, self.wait = float(current), 0
            self.best_weights = self.model.get_weights()
        else:
            self.wait += 1
        if self.wait >= self.patience:
            self.model.stop_training = True
        seconds = self.seconds_before + time.perf_counter() - self._t0
        self._save(epoch + 1, seconds)

    def on_train_end(self, logs=None) -> None:
        if self.best_weights is not None:
            self.model.set_weights(self.best_weights)  # restore the best epoch, as EarlyStopping would

    def _save(self, epoch: int, seconds: float) -> None:
        weights = self.model.get_weights()
        arrays: dict[str, np.ndarray] = {f"w{i}": w for i, w in enumerate(weights)}
        opt_vars = [np.asarray(v) for v in self.model.optimizer.variables]
        arrays.update({f"o{i}": v for i, v in enumerate(opt_vars)})
        if self.best_weights is not None:
            arrays.update({f"b{i}": w for i, w in enumerate(self.best_weights)})
        meta = {"phase": self.phase, "epoch": epoch, "best": self.best, "wait": self.wait, "rows": self.rows,
                "seconds": seconds, "n_weights": len(weights), "n_optimizer": len(opt_vars),
                "has_best": self.best_weights is not None}
        arrays["meta"] = np.array(json.dumps(meta))
        atomic_write(self.path, lambda tmp: np.savez(tmp, **arrays))
