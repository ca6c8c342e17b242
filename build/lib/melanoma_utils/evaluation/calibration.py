"""Are the probabilities right? Calibration metrics, a calibrator fitted on validation, and prior shift.

* :func:`brier_score`, :func:`expected_calibration_error` (equal-mass bins), :func:`calibration_intercept_slope`
  (Cox: the slope of ``logit(p)`` in a logistic recalibration, and the calibration-in-the-large intercept with
  ``logit(p)`` as an offset), :func:`reliability_table` (the reliability diagram's bins with their counts);
* :class:`Calibrator`: Platt scaling or isotonic regression, chosen on the VALIDATION split by
  patient-grouped cross-validated Brier score (:func:`fit_calibrator`); saved as JSON in the run folder;
* :func:`prior_shift`: moves probabilities learned at one prevalence to another (Saerens et al. 2002:
  the odds are multiplied by the ratio of the prior odds). The shared subset is enriched to ~18% malignant;
  ISIC 2020 has 584 of 33,126 (:data:`melanoma_utils.config.ISIC2020_PREVALENCE`).

Every metric takes optional ``weights`` (per row): :func:`prevalence_weights` makes a sample *look like* a
stated prevalence, so calibration and net benefit can be read at the deployment prevalence.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from statistics import NormalDist
from typing import Any, Sequence

import numpy as np
import pandas as pd

from .metrics import MetricError, _check, _need_both

EPS = 1e-6


def check_prevalence(value: float | str, name: str = "prevalence") -> float:
    """``value`` as a float in the open interval (0, 1), or a name of :data:`melanoma_utils.config.NAMED_PREVALENCES`
    (``"isic2020"``: 584 of 33,126), else a ``ValueError`` naming it."""
    from ..config import ISIC2020_PREVALENCE, NAMED_PREVALENCES

    if isinstance(value, str) and value.strip().lower() in NAMED_PREVALENCES:
        return NAMED_PREVALENCES[value.strip().lower()]
    try:
        x = float(value)
    except (TypeError, ValueError):
        raise ValueError(f"{name} must be a number in (0, 1) or one of {', '.join(NAMED_PREVALENCES)}; got {value!r}") from None
    if not 0 < x < 1:
        raise ValueError(f"{name} must be in (0, 1) (e.g. {ISIC2020_PREVALENCE:.4f} or isic2020 for ISIC 2020); got {value}")
    return x


def logit(p: Any) -> np.ndarray:
    """``log(p / (1 − p))`` with ``p`` clipped to [1e-6, 1 − 1e-6] (so 0 and 1 stay finite)."""
    q = np.clip(np.asarray(p, float), EPS, 1 - EPS)
    return np.log(q) - np.log1p(-q)


def sigmoid(z: Any) -> np.ndarray:
    """The logistic function."""
    return 1.0 / (1.0 + np.exp(-np.asarray(z, float)))


def prior_shift(p: Any, from_prevalence: float, to_prevalence: float) -> np.ndarray:
    """Probabilities calibrated at ``from_prevalence`` re-expressed at ``to_prevalence``.

    ``odds' = odds × [π' / (1 − π')] / [π / (1 − π)]``: exact when only the class balance changes (the images
    of each class look alike in both settings). 0 and 1 stay 0 and 1; the order of the rows never changes.
    """
    a = check_prevalence(from_prevalence, "from_prevalence")
    b = check_prevalence(to_prevalence, "to_prevalence")
    p = np.asarray(p, float)
    ratio = (b / (1 - b)) / (a / (1 - a))
    with np.errstate(divide="ignore", invalid="ignore"):
        out = ratio * p / (ratio * p + (1 - p))
    return np.where(p <= 0, 0.0, np.where(p >= 1, 1.0, out))


def prevalence_weights(y_true: Sequence, prevalence: float) -> np.ndarray:
    """Row weights that make the sample's malignant share equal ``prevalence`` (positives × π'/π, negatives
    × (1 − π')/(1 − π)), normalised to a mean of 1."""
    y = np.asarray(y_true).astype(int)
    _need_both(y, "reweighting to a prevalence")
    target = check_prevalence(prevalence)
    pi = y.mean()
    w = np.where(y == 1, target / pi, (1 - target) / (1 - pi))
    return w / w.mean()


def _weights(w: Any, n: int) -> np.ndarray:
    if w is None:
        return np.ones(n)
    w = np.asarray(w, float)
    if w.shape != (n,) or (w < 0).any() or w.sum() <= 0:
        raise MetricError(f"weights must be {n} non-negative numbers with a positive sum")
    return w


def brier_score(y_true: Sequence, y_prob: Sequence, weights: Any = None) -> float:
    """Mean squared difference between the probability and the outcome (0 is perfect; 0.25 = always 0.5)."""
    y, p = _check(y_true, y_prob)
    w = _weights(weights, len(y))
    return float(np.sum(w * (p - y) ** 2) / w.sum())


def _bins(p: np.ndarray, n_bins: int) -> list[np.ndarray]:
    """Row indices of equal-mass bins of ``p`` (sorted by probability; fewer bins when there are fewer rows)."""
    if n_bins < 1:
        raise MetricError(f"n_bins must be >= 1; got {n_bins}")
    order = np.argsort(p, kind="stable")
    return [b for b in np.array_split(order, min(n_bins, len(p))) if len(b)]


def reliability_table(y_true: Sequence, y_prob: Sequence, n_bins: int = 10, weights: Any = None) -> pd.DataFrame:
    """The reliability diagram's bins: equal-mass (each holds ~the same number of rows, sorted by probability).

    Columns: ``bin, n, n_malignant, p_low, p_high, mean_predicted, observed_rate`` (the two rates weighted by
    ``weights``), ``weight`` and ``observed_ci_low``/``observed_ci_high``: the observed rate's 95% Wilson interval on
    the bin's effective number of images (Kish: (Σw)² / Σw², the bin's n without weights; images of one patient in a
    bin are counted as independent). Fewer bins than asked when there are fewer rows.
    """
    y, p = _check(y_true, y_prob)
    w = _weights(weights, len(y))
    rows = []
    for k, idx in enumerate(_bins(p, n_bins)):
        wb = w[idx]
        rows.append({"bin": k, "n": len(idx), "n_malignant": int(y[idx].sum()), "p_low": float(p[idx].min()),
                     "p_high": float(p[idx].max()),
                     "mean_predicted": float(np.sum(wb * p[idx]) / wb.sum()) if wb.sum() else float("nan"),
                     "observed_rate": float(np.sum(wb * y[idx]) / wb.sum()) if wb.sum() else float("nan"),
                     "weight": float(wb.sum())})
        n_eff = float(wb.sum() ** 2 / np.sum(wb ** 2)) if np.sum(wb ** 2) else 0.0
        rows[-1]["observed_ci_low"], rows[-1]["observed_ci_high"] = wilson_interval(rows[-1]["observed_rate"], n_eff)
    return pd.DataFrame(rows)


def wilson_interval(rate: Any, n: Any, level: float = 0.95) -> tuple[Any, Any]:
    """The Wilson score interval of a proportion ``rate`` observed on ``n`` (possibly effective, non-integer) trials,
    at confidence ``level``: well behaved at 0, 1 and small ``n``, and always containing ``rate``. Scalars give a pair
    of floats, arrays a pair of arrays; NaN where there are no trials or no rate. The one Wilson interval of the
    package (the reliability table's bins, the EDA's malignancy rates)."""
    r, m = np.asarray(rate, float), np.asarray(n, float)
    z = NormalDist().inv_cdf(0.5 + level / 2)
    with np.errstate(invalid="ignore", divide="ignore"):
        centre = (r + z * z / (2 * m)) / (1 + z * z / m)
        half = z * np.sqrt(r * (1 - r) / m + z * z / (4 * m * m)) / (1 + z * z / m)
        # the score interval contains the rate; rounding at 0 or 1 must not put it a hair outside
        lo, hi = np.minimum(r, np.maximum(0.0, centre - half)), np.maximum(r, np.minimum(1.0, centre + half))
    bad = ~(m > 0) | np.isnan(r)
    lo, hi = np.where(bad, np.nan, lo), np.where(bad, np.nan, hi)
    if lo.ndim == 0:
        return float(lo), float(hi)
    return lo, hi


def expected_calibration_error(y_true: Sequence, y_prob: Sequence, n_bins: int = 10, weights: Any = None) -> float:
    """ECE with equal-mass bins: Σ_bins (bin weight / total) × |mean predicted − observed rate|."""
    y, p = _check(y_true, y_prob)
    w = _weights(weights, len(y))
    total, gap = 0.0, 0.0
    for idx in _bins(p, n_bins):
        wb = w[idx]
        if wb.sum() > 0:
            gap += abs(np.sum(wb * p[idx]) - np.sum(wb * y[idx]))  # = weight × |mean predicted − observed|
            total += wb.sum()
    return float(gap / total)


def _logistic_fit(x: np.ndarray | None, y: np.ndarray, w: np.ndarray, offset: np.ndarray) -> np.ndarray:
    """Weighted maximum-likelihood logistic regression ``y ~ a + b·x + offset`` (Newton–Raphson); ``x=None``
    fits the intercept alone. Returns ``[a]`` or ``[a, b]``."""
    X = np.ones((len(y), 1)) if x is None else np.column_stack([np.ones(len(y)), x])
    beta = np.zeros(X.shape[1])
    for _ in range(100):
        mu = sigmoid(X @ beta + offset)
        grad = X.T @ (w * (y - mu))
        hess = (X * (w * mu * (1 - mu))[:, None]).T @ X + 1e-9 * np.eye(X.shape[1])
        step = np.linalg.solve(hess, grad)
        beta += step
        if np.max(np.abs(step)) < 1e-10:
            break
    return beta


def calibration_intercept_slope(y_true: Sequence, y_prob: Sequence, weights: Any = None) -> tuple[float, float]:
    """``(intercept, slope)``; perfectly calibrated: (0, 1).

    The slope is ``b`` of ``logit P(y=1) = a + b·logit(p)`` (< 1: predictions too extreme, > 1: too timid);
    the intercept is calibration-in-the-large, ``a`` of ``logit P(y=1) = a + logit(p)`` (< 0: probabilities
    too high on average). Needs both classes.
    """
    y, p = _check(y_true, y_prob)
    _need_both(y, "calibration slope")
    w = _weights(weights, len(y))
    if p[y == 1].min() > p[y == 0].max():
        raise MetricError("calibration slope not estimable: the probabilities separate the classes perfectly "
                          "(the logistic fit has no finite solution)")
    lp = logit(p)
    slope = _logistic_fit(lp, y, w, np.zeros(len(y)))[1]
    intercept = _logistic_fit(None, y, w, lp)[0]
    if not (abs(slope) < MAX_CALIBRATION_COEF and abs(intercept) < MAX_CALIBRATION_COEF):
        raise MetricError(f"calibration slope not estimable: the fit diverged (intercept {intercept:.3g}, slope "
                          f"{slope:.3g}; nearly separated classes)")
    return float(intercept), float(slope)


#: A calibration intercept or slope beyond this is a diverged fit (quasi-separation), not an estimate.
MAX_CALIBRATION_COEF = 100.0


#: The candidates :func:`fit_calibrator` chooses from by cross-validated Brier score (a proper score): ``none`` keeps
#: the model's own output (when it is already calibrated, a fitted map only adds noise), Platt scaling, isotonic.
CALIBRATION_METHODS: tuple[str, ...] = ("none", "platt", "isotonic")


@dataclass
class Calibrator:
    """A monotone map from the model's raw output to a probability (JSON-serialisable).

    ``method``: ``identity``, ``platt`` (``sigmoid(a + b·logit(raw))``) or ``isotonic`` (centred isotonic regression:
    piecewise linear through the centres of the isotonic blocks, :func:`centred_isotonic_knots`; flat outside the
    fitted range). ``prevalence`` is the malignant share of the rows it
    was fitted on: its probabilities are right at that prevalence (see :func:`prior_shift`).
    """

    method: str = "identity"
    params: dict[str, list[float]] = field(default_factory=dict)
    prevalence: float | None = None
    n_fit: int = 0
    selection: dict[str, float] = field(default_factory=dict)  # cross-validated Brier score per method

    def transform(self, raw: Any) -> np.ndarray:
        """Calibrated probabilities for raw model outputs."""
        r = np.asarray(raw, float)
        if self.method == "identity":
            return r.copy()
        if self.method == "platt":
            a, b = self.params["ab"]
            return sigmoid(a + b * logit(r))
        if self.method == "isotonic":
            return np.interp(r, self.params["x"], self.params["y"])
        raise ValueError(f"unknown calibration method {self.method!r}")

    @property
    def label(self) -> str:
        """The method in words: ``identity`` (chosen: the model's output scored best) reads ``none (output kept)``."""
        return "none (output kept)" if self.method == "identity" else self.method

    def to_dict(self) -> dict[str, Any]:
        """JSON-serialisable state."""
        return {"method": self.method, "params": self.params, "prevalence": self.prevalence, "n_fit": self.n_fit,
                "selection": self.selection}

    @classmethod
    def from_dict(cls, d: dict[str, Any]) -> "Calibrator":
        """Rebuild from :meth:`to_dict`."""
        return cls(**d)


def centred_isotonic_knots(raw: np.ndarray, fitted: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Knots of a centred isotonic regression (Oron & Flournoy 2017) from an isotonic fit ``fitted`` of ``raw``.

    Plain isotonic regression is a staircase: every raw score of one block gets the same probability, so a decision
    threshold cannot fall inside a block and operating points chosen at different sensitivities collapse onto one
    step (and the calibrated AUC drops below the raw one). Here each block becomes one knot at the mean raw score
    of its rows, the knots are joined by straight lines (strictly increasing between them), and the first and last
    segments are extended to the smallest and largest raw score fitted (clipped to [0, 1]; an end block at exactly 0
    or 1 is moved half an event inwards): the map keeps the blocks' probabilities at their centres and never ties two
    different raw scores inside the fitted range."""
    r, f = np.asarray(raw, float), np.asarray(fitted, float)
    values = np.unique(f)
    cx = np.array([r[f == v].mean() for v in values])
    if len(values) == 1:  # one block: a constant map, nothing to order
        return np.array([r.min(), r.max()]), np.array([values[0], values[0]])
    # an end block of all-benign (all-malignant) rows is not certainty: half an event's worth, below the next block
    if values[0] == 0:
        values[0] = min(values[1] / 2, 0.5 / (np.sum(f == 0) + 1))
    if values[-1] == 1:
        values[-1] = max((values[-2] + 1) / 2, 1 - 0.5 / (np.sum(f == 1) + 1))
    lo = values[0] - (values[1] - values[0]) * (cx[0] - r.min()) / max(cx[1] - cx[0], EPS)
    hi = values[-1] + (values[-1] - values[-2]) * (r.max() - cx[-1]) / max(cx[-1] - cx[-2], EPS)
    x = np.concatenate([[r.min()], cx, [r.max()]])
    v = np.concatenate([[max(lo, 0.0)], values, [min(hi, 1.0)]])
    keep = np.concatenate([[True], np.diff(x) > 0])  # a block centred on the data's edge: no zero-width segment
    return x[keep], v[keep]


def fit_map(method: str, y: np.ndarray, raw: np.ndarray) -> Calibrator:
    """One calibration map of ``method`` (``none``, ``platt``, ``isotonic``) fitted on ``raw`` outputs and labels ``y``."""
    if method == "none":
        return Calibrator("identity")
    if method == "platt":  # Platt's smoothed targets keep the fit finite on small or separable samples
        n_pos, n_neg = int(y.sum()), int(len(y) - y.sum())
        target = np.where(y == 1, (n_pos + 1) / (n_pos + 2), 1 / (n_neg + 2))
        a, b = _logistic_fit(logit(raw), target, np.ones(len(y)), np.zeros(len(y)))
        return Calibrator("platt", {"ab": [float(a), float(b)]})
    if method == "isotonic":
        from sklearn.isotonic import IsotonicRegression

        iso = IsotonicRegression(y_min=0.0, y_max=1.0, out_of_bounds="clip").fit(raw, y)
        x, v = centred_isotonic_knots(raw, iso.predict(raw))
        return Calibrator("isotonic", {"x": x.tolist(), "y": v.tolist()})
    raise ValueError(f"unknown calibration method {method!r}; choose from {', '.join(CALIBRATION_METHODS)}")
