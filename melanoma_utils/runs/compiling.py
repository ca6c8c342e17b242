"""Compiling models for ``fit``: the optimiser, loss and metrics of every run (:func:`compile_model`), whether a short
fit runs eagerly, and the process's pool of compiled heads (:class:`HeadPool`), so that a cross-validation traces a
head's train and test functions once, not once per run."""

from __future__ import annotations

from typing import Any

import numpy as np

#: Fits of at most this many optimizer steps run eagerly (the same arithmetic either way): compiling the train
#: and validation functions costs ~4 s on a CPU for a model without an image branch, more than a few dozen small
#: eager steps; tracing a backbone (MobileNetV2, Lite0) costs ~9 s per function, more than a handful of eager
#: image steps, while a long fit pays back its compile. (Heads on cached embeddings always compile: :class:`HeadPool`.)
EAGER_MAX_STEPS = 100
EAGER_MAX_STEPS_IMAGES = 24


def compile_model(model: Any, learning_rate: float, steps: int | None = None, images: bool = False,
                  objective: str = "binary") -> None:
    """Adam + class-weighted BCE with ROC/PR AUC metrics (``objective="binary"``), or Adam + the diagnosis loss on
    logits (:class:`~melanoma_utils.models.objectives.DiagnosisLoss`, no AUC metrics: the logits are not a
    probability); eager (TensorFlow, one replica) when ``steps`` is given and at most :data:`EAGER_MAX_STEPS`
    (:data:`EAGER_MAX_STEPS_IMAGES` for a model that decodes ``images``)."""
    import keras

    limit = EAGER_MAX_STEPS_IMAGES if images else EAGER_MAX_STEPS
    eager = steps is not None and steps <= limit and keras.backend.backend() == "tensorflow"
    eager = eager and replicas() == 1  # (JAX compiles fast)
    if objective == "binary":
        loss, metrics = keras.losses.BinaryCrossentropy(), [keras.metrics.AUC(name="auc"), keras.metrics.AUC(curve="PR", name="pr_auc")]
    else:
        from ..models.objectives import DiagnosisLoss

        loss, metrics = DiagnosisLoss(), []
    model.compile(
        optimizer=keras.optimizers.Adam(learning_rate),
        loss=loss,
        metrics=metrics,
        weighted_metrics=[],
        run_eagerly=eager,
    )


class HeadPool:
    """Compiled heads reused across the runs of one process, each reset to exactly the state of a new one.

    Keras traces a model's train and test functions on its first ``fit`` (~3 s on a CPU for a head, longer than
    a head's whole training on a small data set), and a cross-validation trains dozens of heads of a few
    architectures. :meth:`get` takes a freshly built head (its initial weights, output bias and dropout seed states
    drawn by the caller after ``set_random_seed``) and returns a compiled head of the same architecture and
    optimiser with every variable set to that fresh head's values and the optimiser back to its just-built state
    (step 0, zero moments): the same training as a new model, without tracing again. Heads under a distribution
    strategy with more than one replica are compiled anew each time."""

    def __init__(self) -> None:
        self._pool: dict[str, tuple[Any, list[np.ndarray]]] = {}

    def __len__(self) -> int:
        return len(self._pool)

    def clear(self) -> None:
        """Forget every pooled head (the next :meth:`get` of each architecture compiles anew)."""
        self._pool.clear()

    def get(self, fresh: Any, learning_rate: float, objective: str = "binary") -> Any:
        """A compiled head in ``fresh``'s state (``fresh`` itself when none is pooled for its architecture). Heads
        always run compiled, however short the fit: after the first, a pooled head's fit traces nothing, and an eager
        head step (~80 ms on a CPU with the AUC metrics) costs ~10× a compiled one."""
        if replicas() != 1:
            compile_model(fresh, learning_rate, objective=objective)
            return fresh
        key = _head_key(fresh, learning_rate) + objective
        pooled = self._pool.get(key)
        if pooled is None:
            compile_model(fresh, learning_rate, objective=objective)
            fresh.optimizer.build(fresh.trainable_variables)
            self._pool[key] = (fresh, [np.array(v.numpy()) for v in fresh.optimizer.variables])
            return fresh
        head, optimizer_state = pooled
        for target, source in zip(head.variables, fresh.variables, strict=True):
            target.assign(source.value)
        for variable, value in zip(head.optimizer.variables, optimizer_state, strict=True):
            variable.assign(value)
        return head  # (nothing else carries over: fit resets the metrics and the stop flag)


def replicas() -> int:
    """The number of replicas the current TensorFlow distribution strategy trains on (1 on other backends)."""
    import keras

    if keras.backend.backend() != "tensorflow":
        return 1
    import tensorflow as tf

    return int(tf.distribute.get_strategy().num_replicas_in_sync)


def _head_key(model: Any, learning_rate: float) -> str:
    """What makes two heads interchangeable: layer classes and configs (minus the output bias's initial value, which
    :meth:`HeadPool.get` copies as a variable), variable shapes and the optimiser."""
    import json

    import keras

    layers = []
    for layer in model.layers:
        conf = layer.get_config()
        conf.pop("bias_initializer", None)
        layers.append([type(layer).__name__, conf])
    return json.dumps({"layers": layers, "shapes": [list(v.shape) for v in model.variables], "lr": learning_rate,
                       "policy": keras.config.dtype_policy().name, "backend": keras.backend.backend()},
                      sort_keys=True, default=str)


#: The process's pool of compiled heads (:class:`HeadPool`).
HEADS = HeadPool()
