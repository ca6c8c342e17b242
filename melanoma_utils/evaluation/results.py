"""Typed results: an estimate with its interval, the registry of metrics, and one evaluation result.

* :class:`Estimate` — a value with its 95% patient-bootstrap interval; prints itself (``0.812 (95% CI 0.780–0.841)``),
  reads and writes the JSON form every report uses (``{"estimate", "ci_low", "ci_high"}``).
* :data:`RANKING_METRICS` — the metrics of a score (threshold-free): name, label, function, the cases of each class a
  value needs. Every evaluation (``evaluate``, the validation report, the model card's metrics line) iterates over
  it, so **adding a ranking metric is one entry here** (and its test). The rates at a threshold live in one registry
  too (:data:`melanoma_utils.evaluation.metrics.THRESHOLD_RATES`).
* :class:`EvaluationResult` — what :func:`evaluate` measures (counts, each ranking metric as an :class:`Estimate`, the
  rates at each named threshold): prints, serialises (:meth:`~EvaluationResult.to_dict`, the layout of
  ``metrics.json``) and reads back.
"""

from __future__ import annotations

import math
import numbers
from dataclasses import dataclass, field
from typing import Any, Callable, Mapping, Sequence

import numpy as np
import pandas as pd

from .metrics import THRESHOLD_RATES, MetricError, _check, bootstrap_ci, pr_auc, roc_auc, threshold_metrics

NAN = float("nan")


@dataclass(frozen=True)
class Estimate:
    """A statistic's value and its interval (NaN bounds: no interval, e.g. too few cases to resample)."""

    value: float
    lo: float = NAN
    hi: float = NAN

    @property
    def has_interval(self) -> bool:
        return math.isfinite(self.lo) and math.isfinite(self.hi)

    def format(self, digits: int = 3, ci: str = "95% CI ", missing: str = "n/a") -> str:
        """``0.812 (95% CI 0.780–0.841)``; ``0.010 (95% CI -0.012 to 0.039)`` when the interval starts below 0 (a
        dash after a minus sign reads as a second minus); the value alone without an interval; ``missing`` without a
        value."""
        if not math.isfinite(self.value):
            return missing
        text = f"{self.value:.{digits}f}"
        if not self.has_interval:
            return text
        sep = " to " if self.lo < 0 else "–"
        return f"{text} ({ci}{self.lo:.{digits}f}{sep}{self.hi:.{digits}f})"

    @classmethod
    def cell(cls, value: float, lo: float, hi: float, digits: int = 3, missing: str = "n/a") -> str:
        """A table cell of a value and its interval read from three report columns: ``0.812 (0.780–0.841)``
        (:meth:`format` without the "95% CI" words, which a table's header states once)."""
        return cls(value, lo, hi).format(digits, ci="", missing=missing)

    def __str__(self) -> str:
        return self.format()

    def to_dict(self) -> dict[str, float]:
        """The JSON form of every report: ``{"estimate", "ci_low", "ci_high"}``."""
        return {"estimate": float(self.value), "ci_low": float(self.lo), "ci_high": float(self.hi)}

    def columns(self, name: str) -> dict[str, float]:
        """The three report columns of this estimate: ``{name, name_ci_low, name_ci_high}`` (a table row's form)."""
        return {name: float(self.value), f"{name}_ci_low": float(self.lo), f"{name}_ci_high": float(self.hi)}

    @classmethod
    def from_dict(cls, d: Mapping[str, Any] | None) -> "Estimate":
        """The inverse of :meth:`to_dict`; missing or ``None`` entries (older reports) read as NaN."""
        d = d or {}

        def num(key: str) -> float:
            v = d.get(key)
            return float(v) if isinstance(v, numbers.Real) else NAN  # NumPy scalars too

        return cls(num("estimate"), num("ci_low"), num("ci_high"))


@dataclass(frozen=True)
class RankingMetric:
    """A threshold-free metric of scores: ``fn(y, score) -> float``; a value needs ``min_per_class`` cases of each
    class."""

    name: str
    label: str
    fn: Callable[[np.ndarray, np.ndarray], float]
    min_per_class: int = 1
    description: str = ""

    def estimate(self, y_true: Sequence, y_score: Sequence, groups: Sequence, n_boot: int = 1000,
                 seed: int = 0) -> Estimate:
        """The value with its patient-bootstrap 95% interval. :class:`MetricError` with fewer than ``min_per_class``
        cases of a class, or where fewer than half of the resamples are usable (no interval)."""
        y, s = _check(y_true, y_score)
        n_pos = int(y.sum())
        if min(n_pos, len(y) - n_pos) < self.min_per_class:
            raise MetricError(f"{self.label} needs at least {self.min_per_class} malignant and benign case(s); got "
                              f"{n_pos} and {len(y) - n_pos}")
        return Estimate(*bootstrap_ci(y, s, groups, self.fn, n_boot=n_boot, seed=seed))


#: The registry of ranking metrics, in report order.
RANKING_METRICS: tuple[RankingMetric, ...] = (
    RankingMetric("roc_auc", "ROC AUC", roc_auc, description="area under the ROC curve (ties count half)"),
    RankingMetric("pr_auc", "PR AUC", pr_auc, description="average precision; chance = the malignant share"),
)


def ranking_metric(name: str) -> RankingMetric:
    """The registry entry ``name``; ``KeyError`` listing the names."""
    for m in RANKING_METRICS:
        if m.name == name:
            return m
    raise KeyError(f"unknown ranking metric {name!r}; choose one of {', '.join(m.name for m in RANKING_METRICS)}")


@dataclass(frozen=True)
class EvaluationResult:
    """Counts, every ranking metric of :data:`RANKING_METRICS` with its interval, the rates at each named threshold."""

    n: int
    n_positive: int
    n_patients: int
    ranking: dict[str, Estimate]
    thresholds: dict[str, dict[str, float]] = field(default_factory=dict)

    def to_dict(self) -> dict[str, Any]:
        """The layout of ``metrics.json``: ``n, n_positive, n_patients``, one ``{"estimate", "ci_low", "ci_high"}`` per
        ranking metric, ``thresholds``."""
        return {"n": self.n, "n_positive": self.n_positive, "n_patients": self.n_patients,
                **{k: e.to_dict() for k, e in self.ranking.items()},
                "thresholds": {k: dict(v) for k, v in self.thresholds.items()}}

    @classmethod
    def from_dict(cls, d: Mapping[str, Any]) -> "EvaluationResult":
        """The inverse of :meth:`to_dict` (ranking metrics a report lacks are left out)."""
        return cls(int(d.get("n", 0)), int(d.get("n_positive", 0)), int(d.get("n_patients", 0)),
                   {m.name: Estimate.from_dict(d[m.name]) for m in RANKING_METRICS if m.name in d},
                   {k: dict(v) for k, v in (d.get("thresholds") or {}).items()})

    def lines(self) -> list[str]:
        """One line for the counts and the ranking metrics, one per threshold with its rates."""
        head = (f"{self.n:,} images, {self.n_positive:,} malignant, {self.n_patients:,} patients: "
                + "; ".join(f"{ranking_metric(k).label} {e}" for k, e in self.ranking.items()))
        rows = [f"at {name} (threshold {m['threshold']:.4f}): "
                + ", ".join(f"{rate} {m[rate]:.3f}" for rate in THRESHOLD_RATES if rate in m)
                for name, m in self.thresholds.items()]
        return [head, *rows]

    def __str__(self) -> str:
        return "\n".join(self.lines())

    def table(self) -> pd.DataFrame:
        """The rates at each threshold as a table (rows: thresholds), the study's Table 3 layout."""
        # reindex: a report written before a rate joined the registry has NaN in its column, not a KeyError
        return pd.DataFrame({k: dict(v) for k, v in self.thresholds.items()}).T.reindex(
            columns=["threshold", *THRESHOLD_RATES, "tp", "fp", "tn", "fn"])


def evaluate_result(y_true: Sequence, y_score: Sequence, groups: Sequence, thresholds: Mapping[str, float],
                    n_boot: int = 1000, seed: int = 0) -> EvaluationResult:
    """Every ranking metric of :data:`RANKING_METRICS` with its patient-bootstrap 95% CI, plus the rates at each named
    threshold."""
    y, s = _check(y_true, y_score)
    return EvaluationResult(int(len(y)), int(y.sum()), int(pd.Series(groups).nunique()),
                            {m.name: m.estimate(y, s, groups, n_boot, seed) for m in RANKING_METRICS},
                            {name: threshold_metrics(y, s, t) for name, t in thresholds.items()})


def evaluate(y_true: Sequence, y_score: Sequence, groups: Sequence, thresholds: Mapping[str, float],
             n_boot: int = 1000, seed: int = 0) -> dict[str, object]:
    """:func:`evaluate_result` in its JSON layout (:meth:`EvaluationResult.to_dict`)."""
    return evaluate_result(y_true, y_score, groups, thresholds, n_boot, seed).to_dict()


def metrics_table(result: Mapping[str, Any] | EvaluationResult) -> pd.DataFrame:
    """The threshold rates of an evaluation (a result or its dict) as a table (rows: thresholds)."""
    res = result if isinstance(result, EvaluationResult) else EvaluationResult.from_dict(result)
    return res.table()
