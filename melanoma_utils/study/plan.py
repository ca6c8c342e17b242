"""How a study's candidates are trained and judged: one :class:`FoldPlan` instead of the same six arguments passed to
every driver (cross-validation, the ceiling and fine-tuning selections)."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any


@dataclass(frozen=True)
class FoldPlan:
    """``n_splits`` patient-grouped folds, of which ``folds`` run (``None``: all); ``repeats`` fold assignments of the
    same patients (repeat 0 is the study's folds; with ``folds`` given only the study's folds run); ``n_boot``
    bootstrap resamples for every interval, with ``seed``; ``locked``: the locked test part guarding the selection
    (``"find"``: the one of the report folder the runs are in, :func:`~melanoma_utils.study.locked.resolve_lock`;
    ``None``: no guard). Invalid values are refused when the plan is made, naming the field."""

    n_splits: int = 5
    folds: tuple[int, ...] | None = None
    repeats: int = 1
    n_boot: int = 1000
    seed: int = 0
    locked: Any = "find"

    def __post_init__(self) -> None:
        if int(self.n_splits) < 2:
            raise ValueError(f"n_splits must be at least 2; got {self.n_splits}")
        if int(self.repeats) < 1:
            raise ValueError(f"repeats must be >= 1; got {self.repeats}")
        if int(self.n_boot) < 1:
            raise ValueError(f"n_boot must be >= 1; got {self.n_boot}")
        if self.folds is not None:
            folds = tuple(int(k) for k in self.folds)
            bad = [k for k in folds if not 0 <= k < self.n_splits]
            if not folds or bad:
                raise ValueError(f"folds must name folds 0..{self.n_splits - 1}; got {list(self.folds)}")
            object.__setattr__(self, "folds", folds)

    @property
    def fold_list(self) -> list[int]:
        """The folds that run."""
        return list(self.folds) if self.folds is not None else list(range(self.n_splits))

    @property
    def run_repeats(self) -> int:
        """How many fold assignments run: ``repeats``, or 1 when only some folds run."""
        return 1 if self.folds is not None else int(self.repeats)
