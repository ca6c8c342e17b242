"""The run folder's layout: the one place that spells its file names (:class:`RunLayout`).

A run folder holds ``model.keras``, ``encoder.json``, ``config.json`` (recipe, calibrator, threshold and its rule),
``metrics.json``, ``val_predictions.csv`` and ``MODEL_CARD.md``; an ensemble folder holds ``ensemble.json``,
``config.json``, ``metrics.json``, ``val_predictions.csv``, ``MODEL_CARD.md`` and its members under ``members/<k>/``.
Pure (no Keras, no pandas): every module that reads or writes a run folder can import it.
"""

from __future__ import annotations

import os
from dataclasses import dataclass
from pathlib import Path
from typing import ClassVar


@dataclass(frozen=True)
class RunLayout:
    """The paths of one run (or ensemble) folder: ``RunLayout(folder).config`` → ``folder/config.json``."""

    root: Path

    MODEL: ClassVar[str] = "model.keras"
    ENCODER: ClassVar[str] = "encoder.json"
    CONFIG: ClassVar[str] = "config.json"
    METRICS: ClassVar[str] = "metrics.json"
    VAL_PREDICTIONS: ClassVar[str] = "val_predictions.csv"
    MODEL_CARD: ClassVar[str] = "MODEL_CARD.md"
    ENSEMBLE: ClassVar[str] = "ensemble.json"
    MEMBERS: ClassVar[str] = "members"

    def __init__(self, root: str | os.PathLike[str]) -> None:
        object.__setattr__(self, "root", Path(root))

    @property
    def model(self) -> Path:
        return self.root / self.MODEL

    @property
    def encoder(self) -> Path:
        return self.root / self.ENCODER

    @property
    def config(self) -> Path:
        return self.root / self.CONFIG

    @property
    def metrics(self) -> Path:
        return self.root / self.METRICS

    @property
    def val_predictions(self) -> Path:
        return self.root / self.VAL_PREDICTIONS

    @property
    def model_card(self) -> Path:
        return self.root / self.MODEL_CARD

    @property
    def ensemble(self) -> Path:
        return self.root / self.ENSEMBLE

    def member(self, k: int) -> Path:
        """The folder of an ensemble's ``k``-th member."""
        return self.root / self.MEMBERS / str(k)

    @property
    def is_ensemble(self) -> bool:
        """Whether the folder is an ensemble (its ``ensemble.json`` exists)."""
        return self.ensemble.is_file()

    def required(self) -> tuple[str, ...]:
        """The files a finished folder of its kind must hold."""
        return (self.CONFIG,) if self.is_ensemble else (self.MODEL, self.ENCODER, self.CONFIG)
