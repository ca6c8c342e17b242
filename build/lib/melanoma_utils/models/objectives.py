"""What a model is trained to output (``TrainConfig.objective``, :mod:`melanoma_utils.data.diagnoses`).

* ``binary``: one sigmoid unit, the melanoma probability, class-weighted binary cross-entropy (the study's);
* ``diagnosis`` / ``diagnosis-masked``: one logit per diagnosis class, trained with :class:`DiagnosisLoss`; the saved
  model ends in :class:`MelanomaProbability` (softmax, melanoma column), so every run still outputs one melanoma
  probability and prediction, calibration, thresholds, export and Grad-CAM read it unchanged.

Only ``keras.ops``: runs on the TensorFlow and JAX backends.
"""

from __future__ import annotations

from typing import Any

import keras
from keras import layers, ops


@keras.saving.register_keras_serializable(package="melanoma_utils")
class MelanomaProbability(layers.Layer):
    """Diagnosis logits ``(n, K)`` -> the melanoma probability ``(n, 1)``: the softmax's first column (melanoma is
    class 0 of every objective). Computed in float32."""

    def __init__(self, **kwargs: Any) -> None:
        super().__init__(**{"dtype": "float32", **kwargs})

    def call(self, logits):
        return ops.softmax(ops.cast(logits, "float32"), axis=-1)[:, :1]

    def compute_output_shape(self, input_shape):
        return (input_shape[0], 1)


@keras.saving.register_keras_serializable(package="melanoma_utils")
class DiagnosisLoss(keras.losses.Loss):
    """Cross-entropy over diagnosis classes from logits; a row labelled :data:`~melanoma_utils.data.diagnoses.MASKED`
    (-1: benign, diagnosis unknown) contributes ``−log(1 − p_melanoma)`` instead (it is known not to be melanoma, not
    which class it is). ``y_true`` holds integer class indices (any float or int dtype, shape ``(n,)`` or ``(n, 1)``);
    row weights (the class weighting) multiply each row's term as usual."""

    def __init__(self, name: str = "diagnosis_loss", **kwargs: Any) -> None:
        super().__init__(name=name, **kwargs)

    def call(self, y_true, y_pred):
        y = ops.cast(ops.reshape(y_true, (-1,)), "int32")
        log_p = ops.log_softmax(ops.cast(y_pred, "float32"), axis=-1)
        known = y >= 0
        picked = ops.take_along_axis(log_p, ops.expand_dims(ops.where(known, y, 0), -1), axis=-1)[:, 0]
        not_melanoma = ops.logsumexp(log_p[:, 1:], axis=-1)  # log(1 − p_melanoma), stable
        return ops.where(known, -picked, -not_melanoma)

