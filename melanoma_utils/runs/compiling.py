"""Compiling models for ``fit`` and the devices they run on: the optimiser, loss and metrics of every run
(:func:`compile_model`), whether a short fit runs eagerly, the process's pool of compiled heads (:class:`HeadPool`),
so that a cross-validation traces a head's train and test functions once, not once per run; and how a run is spread
over one or several devices or hosts (``--strategy``, :class:`Distribution`), the linear learning-rate scaling that
goes with it, and the mend of Keras 3's multi-worker trainer (only under a multi-worker strategy).
:mod:`melanoma_utils.runs.training` re-exports the device names."""

from __future__ import annotations

import contextlib
import os
from dataclasses import dataclass, replace
from typing import Any

import numpy as np

from .run import STRATEGIES, TrainConfig

#: Fits of at most this many optimizer steps run eagerly (the same arithmetic either way): compiling the train
#: and validation functions costs ~4 s on a CPU for a model without an image branch, more than a few dozen small
#: eager steps; tracing a backbone (MobileNetV2, Lite0) costs ~9 s per function, more than a handful of eager
#: image steps, while a long fit pays back its compile. (Heads on cached embeddings always compile: :class:`HeadPool`.)
EAGER_MAX_STEPS = 100
EAGER_MAX_STEPS_IMAGES = 24


def learning_rate_schedule(learning_rate: float, steps: int | None, schedule: str = "constant",
                           warmup_steps: int = 0) -> Any:
    """Adam's learning rate: the constant ``learning_rate``; (``schedule="cosine"``) a cosine decay from it to 0 over
    ``steps`` optimizer steps; or (``"warmup-cosine"``) a linear rise from 0 to it over the first ``warmup_steps``
    (at least 1, at most ``steps``: a warm-up as long as the run never decays), then the cosine decay to 0 over the
    remaining steps; its first step has a learning rate of 0. Both need ``steps``. The schedule reads the
    optimizer's step count, which a resumed fit restores, so a resumed fine-tune continues on the same curve."""
    import keras

    if schedule == "constant":
        return learning_rate
    if schedule not in ("cosine", "warmup-cosine"):
        raise ValueError(f"learning-rate schedule must be constant, cosine or warmup-cosine; got {schedule!r}")
    if not steps or steps < 1:
        raise ValueError(f"a {schedule} schedule needs the number of steps it decays over; got {steps!r}")
    if schedule == "cosine":
        return keras.optimizers.schedules.CosineDecay(learning_rate, decay_steps=int(steps))
    warm = min(max(int(warmup_steps), 1), int(steps))
    return keras.optimizers.schedules.CosineDecay(0.0, decay_steps=max(int(steps) - warm, 1), warmup_target=learning_rate,
                                                  warmup_steps=warm)


def compile_model(model: Any, learning_rate: float, steps: int | None = None, images: bool = False,
                  objective: str = "binary", schedule: str = "constant", label_smoothing: float = 0.0,
                  warmup_steps: int = 0) -> None:
    """Adam + class-weighted BCE with ROC/PR AUC metrics (``objective="binary"``; ``label_smoothing`` pulls the
    targets toward 1/2), or Adam + the diagnosis loss on logits
    (:class:`~melanoma_utils.models.objectives.DiagnosisLoss`, no AUC metrics: the logits are not a
    probability); eager (TensorFlow, one replica) when ``steps`` is given and at most :data:`EAGER_MAX_STEPS`
    (:data:`EAGER_MAX_STEPS_IMAGES` for a model that decodes ``images``). ``schedule``: the learning rate over the
    ``steps``, ``warmup_steps`` of them rising from 0 for ``"warmup-cosine"`` (:func:`learning_rate_schedule`)."""
    import keras

    limit = EAGER_MAX_STEPS_IMAGES if images else EAGER_MAX_STEPS
    eager = steps is not None and steps <= limit and keras.backend.backend() == "tensorflow"
    eager = eager and replicas() == 1  # (JAX compiles fast)
    if objective == "binary":
        loss = keras.losses.BinaryCrossentropy(label_smoothing=float(label_smoothing))
        metrics = [keras.metrics.AUC(name="auc"), keras.metrics.AUC(curve="PR", name="pr_auc")]
    else:
        from ..models.objectives import DiagnosisLoss

        loss, metrics = DiagnosisLoss(), []
    model.compile(
        optimizer=keras.optimizers.Adam(learning_rate_schedule(learning_rate, steps, schedule, warmup_steps)),
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


@dataclass
class Distribution:
    """How a run is spread over devices: a ``tf.distribute`` scope (TensorFlow) or a Keras ``DataParallel``
    distribution (JAX), and the number of replicas (batch and learning rates are scaled by it)."""

    name: str
    replicas: int
    strategy: Any = None  # a tf.distribute strategy
    jax_distribution: Any = None
    chief: bool = True

    def scope(self) -> Any:
        """A fresh ``strategy.scope()`` (single-use), or a null context without a TensorFlow strategy."""
        return self.strategy.scope() if self.strategy is not None else contextlib.nullcontext()

    def __enter__(self) -> "Distribution":
        if self.jax_distribution is not None:
            import keras

            keras.distribution.set_distribution(self.jax_distribution)
        return self

    def __exit__(self, *exc: Any) -> None:
        if self.jax_distribution is not None:
            import keras

            keras.distribution.set_distribution(None)


_DISTRIBUTIONS: dict[str, Distribution] = {}


def make_distribution(strategy: str = "auto") -> Distribution:
    """The process's :class:`Distribution` for ``strategy`` (made once; see :func:`_make_distribution`).
    ``multiworker`` must be made before TensorFlow runs anything (the CLI does it first thing)."""
    if strategy not in _DISTRIBUTIONS:
        _DISTRIBUTIONS[strategy] = _make_distribution(strategy)
    return _DISTRIBUTIONS[strategy]


def _make_distribution(strategy: str = "auto") -> Distribution:
    """The device set-up for ``strategy``, using the engines that exist (nothing home-made):

    * TensorFlow: ``one`` (default strategy), ``mirrored`` (``tf.distribute.MirroredStrategy`` over the GPUs, or
      over the logical CPU devices when there is no GPU), ``multiworker`` (``MultiWorkerMirroredStrategy``; the
      cluster comes from ``TF_CONFIG``; only the chief writes the run folder), ``tpu`` (``TPUStrategy``; written,
      untested here); ``auto`` = mirrored when several GPUs, else one;
    * JAX: ``mirrored`` = ``keras.distribution.DataParallel`` over ``jax.devices()``; ``auto`` = that when there
      are several accelerator devices.
    """
    import keras

    if strategy not in STRATEGIES:
        raise ValueError(f"strategy must be one of {', '.join(STRATEGIES)}; got {strategy!r}")
    backend = keras.backend.backend()
    if backend == "jax":
        import jax

        devices = jax.devices()
        if strategy in ("multiworker", "tpu"):
            raise ValueError(f"strategy {strategy!r} needs the TensorFlow backend (on JAX use mirrored: DataParallel)")
        if strategy == "mirrored" or (strategy == "auto" and len(devices) > 1 and jax.default_backend() != "cpu"):
            return Distribution(f"jax DataParallel over {len(devices)} {devices[0].platform} device(s)", len(devices),
                                jax_distribution=keras.distribution.DataParallel(devices=devices))
        return Distribution("one device", 1)
    if backend != "tensorflow":
        if strategy not in ("auto", "one"):
            raise ValueError(f"strategy {strategy!r} is not available on the {backend} backend")
        return Distribution("one device", 1)
    import tensorflow as tf

    if strategy == "tpu":
        try:
            resolver = tf.distribute.cluster_resolver.TPUClusterResolver(tpu=os.environ.get("TPU_NAME", ""))
        except ValueError as exc:
            raise ValueError(f"--strategy tpu: no TPU found ({str(exc).splitlines()[0]}); on a Cloud TPU VM it is found "
                             "by itself, elsewhere set TPU_NAME to the TPU's name or grpc:// address") from None
        tf.config.experimental_connect_to_cluster(resolver)
        tf.tpu.experimental.initialize_tpu_system(resolver)
        st = tf.distribute.TPUStrategy(resolver)
        return Distribution("TPUStrategy", st.num_replicas_in_sync, st)
    if strategy == "multiworker":
        if not os.environ.get("TF_CONFIG", "").strip():
            raise ValueError("--strategy multiworker needs TF_CONFIG (the cluster and this worker's task, set on every "
                             "worker); without it this would train silently as one worker: use --strategy auto")
        st = tf.distribute.MultiWorkerMirroredStrategy()
        patch_keras_for_multiworker()
        resolver = st.cluster_resolver
        chief = resolver.task_type in (None, "chief") or (resolver.task_type == "worker" and resolver.task_id == 0
                                                          and "chief" not in resolver.cluster_spec().as_dict())
        return Distribution(f"MultiWorkerMirroredStrategy ({st.num_replicas_in_sync} replicas)", st.num_replicas_in_sync,
                            st, chief=bool(chief))
    gpus = tf.config.list_logical_devices("GPU")  # initialises the runtime: after the collective set-up above
    if strategy == "mirrored" or (strategy == "auto" and len(gpus) > 1):
        devices = [d.name for d in gpus] or [d.name for d in tf.config.list_logical_devices("CPU")]
        st = tf.distribute.MirroredStrategy(devices)
        return Distribution(f"MirroredStrategy over {', '.join(devices)}", st.num_replicas_in_sync, st)
    return Distribution("one device", 1, tf.distribute.get_strategy())


def patch_keras_for_multiworker() -> None:
    """Mend two bugs of Keras 3's TensorFlow trainer under ``MultiWorkerMirroredStrategy`` in multi-worker mode
    (keras-team/keras#20329 and #20585, tensorflow/tensorflow#72388; reported since Keras 3.5, present in the
    pinned 3.15), which make every ``fit`` fail there. Each mend changes behaviour only for a multi-worker
    strategy; other strategies take Keras's own code. Idempotent. Re-check it (``tests/test_distribution.py``
    fails without it) when raising the Keras pin.

    1. Before it trains, evaluates or predicts, Keras reads a first batch — a nest such as
       ``({"meta": …}, y, w)`` of per-replica values — and hands it to ``strategy.reduce``, which takes a single
       value ("Attempt to convert a value ({'meta': PerReplica…}) … to a Tensor"). That batch only gives the
       symbolic build its shapes and dtypes: the mend builds from the data set's ``element_spec`` instead,
       reading nothing (no collective op, the same on every worker).
    2. A step's outputs (the loss and metric values: scalars) are averaged across workers with
       ``strategy.reduce("MEAN", v, axis=0)``, which fails on a scalar ("Invalid reduction dimension 0 for input
       with 0 dimensions"). The mend averages them across replicas with ``axis=None``, so every worker logs — and
       early-stops on — the same numbers.
    """
    import tensorflow as tf
    from keras import tree
    from keras.src.backend.tensorflow import trainer as tf_trainer

    if getattr(tf_trainer, "_melanoma_multiworker_mended", False):
        return

    def multi_worker(strategy: Any) -> bool:
        return isinstance(strategy, tf.distribute.MultiWorkerMirroredStrategy) and strategy.extended._in_multi_worker_mode()

    keras_build = tf_trainer.TensorFlowTrainer._maybe_symbolic_build

    def maybe_symbolic_build(self: Any, iterator: Any = None, data_batch: Any = None) -> None:
        strategy = self._distribute_strategy
        if not multi_worker(strategy):
            return keras_build(self, iterator=iterator, data_batch=data_batch)

        if iterator is not None:  # the batch's structure, shapes and dtypes, without reading a batch
            data_batch = iterator.data_adapter.get_tf_dataset().element_spec
        with strategy.scope():
            self._symbolic_build(data_batch=data_batch)

    keras_reduce = tf_trainer.reduce_per_replica

    def reduce_per_replica(values: Any, strategy: Any, reduction: str) -> Any:
        if reduction in ("auto", "mean") and multi_worker(strategy):
            return tree.map_structure(lambda v: strategy.reduce("MEAN", v, axis=None), values)
        return keras_reduce(values, strategy, reduction)

    tf_trainer.TensorFlowTrainer._maybe_symbolic_build = maybe_symbolic_build
    tf_trainer.reduce_per_replica = reduce_per_replica
    tf_trainer._melanoma_multiworker_mended = True


def _local_copy(model: Any) -> Any:
    """``model`` rebuilt outside any distribution strategy, with its weights: a multi-worker model would run
    every ``predict`` as a collective step over the workers' shares of the rows."""
    import keras

    copy = keras.models.clone_model(model)
    copy.set_weights(model.get_weights())
    return copy


def scaled_for(cfg: TrainConfig, replicas: int) -> TrainConfig:
    """The recipe as trained on ``replicas`` devices: ``batch_size`` per replica × replicas, learning rates scaled
    linearly (Goyal et al. 2017)."""
    if replicas == 1:
        return cfg
    return replace(cfg, batch_size=cfg.fit.batch_size * replicas, learning_rate=cfg.fit.learning_rate * replicas,
                   head_learning_rate=cfg.fit.head_learning_rate * replicas,
                   finetune_learning_rate=cfg.fit.finetune_learning_rate * replicas)
