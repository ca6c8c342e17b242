"""The diagnosis as a training label: one class list for every data set (ISIC 2020, ISIC 2019, HAM10000), and the
labels of a diagnosis-aware head (:func:`diagnosis_labels`).

The strongest SIIM-ISIC 2020 solutions trained on the *diagnosis* (ISIC 2019's classes) and read the melanoma
probability; here the loaders already speak ISIC 2020's vocabulary (:mod:`melanoma_utils.data.sources` maps
HAM10000's ``dx`` and ISIC 2019's columns onto it), and this module maps that vocabulary onto
:data:`DIAGNOSIS_CLASSES`, melanoma first (the column a model's melanoma probability is read from).

Objectives (``TrainConfig.objective``):

* ``binary`` — melanoma vs everything else, the study's sigmoid (no diagnosis needed);
* ``diagnosis`` — a softmax over :data:`DIAGNOSIS_CLASSES` plus ``unknown`` (ISIC 2020's benign lesions without a
  histological or expert diagnosis, 80% of its images) as a class of its own;
* ``diagnosis-masked`` — the same classes without ``unknown``: a row of unknown diagnosis (benign) has label
  :data:`MASKED` and only pushes the melanoma probability down (:class:`~melanoma_utils.models.objectives.DiagnosisLoss`).
"""

from __future__ import annotations

import numpy as np
import pandas as pd

from .csvfiles import DataError

#: The classes of a diagnosis-aware head, melanoma first; ``unknown`` is added by the ``diagnosis`` objective.
DIAGNOSIS_CLASSES: tuple[str, ...] = ("melanoma", "nevus", "benign keratosis", "basal cell carcinoma",
                                      "actinic keratosis", "squamous cell carcinoma", "dermatofibroma",
                                      "vascular lesion", "other benign")
UNKNOWN = "unknown"
#: The label of a row whose class the masked objective leaves out (benign, diagnosis unknown).
MASKED = -1
#: Training objectives: the study's binary output, or a diagnosis softmax whose melanoma column is the output.
OBJECTIVES: tuple[str, ...] = ("binary", "diagnosis", "diagnosis-masked")

#: Every diagnosis the loaders write (ISIC 2020's words, and HAM10000's / ISIC 2019's mapped onto them) -> class.
DIAGNOSIS_TO_CLASS: dict[str, str] = {
    "melanoma": "melanoma",
    "nevus": "nevus",
    "benign keratosis": "benign keratosis",
    "seborrheic keratosis": "benign keratosis",
    "lentigo nos": "benign keratosis",
    "lichenoid keratosis": "benign keratosis",
    "solar lentigo": "benign keratosis",
    "basal cell carcinoma": "basal cell carcinoma",
    "actinic keratosis": "actinic keratosis",
    "squamous cell carcinoma": "squamous cell carcinoma",
    "dermatofibroma": "dermatofibroma",
    "vascular lesion": "vascular lesion",
    "atypical melanocytic proliferation": "other benign",
    "cafe-au-lait macule": "other benign",
    "unknown": UNKNOWN,
}


def classes_for(objective: str) -> tuple[str, ...]:
    """The output classes of ``objective`` (``("melanoma",)`` for ``binary``); melanoma is always the first."""
    if objective not in OBJECTIVES:
        raise ValueError(f"objective must be one of {', '.join(OBJECTIVES)}; got {objective!r}")
    if objective == "binary":
        return ("melanoma",)
    return DIAGNOSIS_CLASSES + ((UNKNOWN,) if objective == "diagnosis" else ())


def n_outputs(objective: str) -> int:
    """Units of a model's last Dense layer: 1 (sigmoid) for ``binary``, one logit per class otherwise."""
    return 1 if objective == "binary" else len(classes_for(objective))


def _rows(mask: np.ndarray) -> str:
    idx = np.flatnonzero(mask)
    return ", ".join(str(i) for i in idx[:5]) + (f" and {len(idx) - 5} more" if len(idx) > 5 else "")


def diagnosis_labels(frame: pd.DataFrame, objective: str) -> np.ndarray:
    """Integer labels of ``frame``'s rows for ``objective`` (index into :func:`classes_for`; :data:`MASKED` for a
    row of unknown diagnosis under ``diagnosis-masked``; ``binary``: the target itself).

    ``frame`` needs ``target`` and, for the diagnosis objectives, ``diagnosis`` (missing reads as unknown). A malignant
    row is melanoma whatever its diagnosis says (ISIC 2020's target is melanoma). Errors name the column, the value
    and the rows (0-based): a diagnosis outside :data:`DIAGNOSIS_TO_CLASS`, or a benign row diagnosed melanoma."""
    classes = classes_for(objective)
    target = frame["target"].to_numpy(int)
    if objective == "binary":
        return target.astype(np.int32)
    if "diagnosis" not in frame:
        raise DataError(f"objective {objective!r} needs a 'diagnosis' column (the data have {', '.join(frame.columns)})")
    words = frame["diagnosis"].astype("string").fillna(UNKNOWN).str.strip().str.lower().to_numpy(str)
    unknown_word = ~np.isin(words, list(DIAGNOSIS_TO_CLASS))
    if unknown_word.any():
        first = words[np.flatnonzero(unknown_word)[0]]
        raise DataError(f"column 'diagnosis' has value {first!r} that no class of the diagnosis head takes (rows "
                        f"{_rows(unknown_word)}); known: {', '.join(sorted(DIAGNOSIS_TO_CLASS))}")
    mapped = np.array([DIAGNOSIS_TO_CLASS[w] for w in words], dtype=object)
    contradiction = (target == 0) & (mapped == "melanoma")
    if contradiction.any():
        raise DataError(f"rows {_rows(contradiction)} are benign (target 0) but diagnosed melanoma: fix 'target' or "
                        "'diagnosis' there")
    mapped[target == 1] = "melanoma"
    index = {c: i for i, c in enumerate(classes)}
    return np.array([index.get(c, MASKED) for c in mapped], dtype=np.int32)
