"""Probability calibration fitted on the validation period (isotonic or Platt), applied after the booster."""

from __future__ import annotations

import logging
from dataclasses import asdict, dataclass, field
from typing import Any

import numpy as np

from churnml.config import CALIBRATIONS
from churnml.errors import ChurnmlError

# An isotonic step of exactly 0 or 1 is overconfident (infinite log loss on one surprise): keep a floor.
PROB_FLOOR = 1e-4
# Platt's slope when the held-out scores rank no better than chance: small enough that every probability is the
# base rate to about 1e-6, positive so that the model's order is kept (see Calibrator.fit)
FLAT_SLOPE = 1e-6

log = logging.getLogger(__name__)


# -------------------------------------------------------------------------------------------- calibration


def _sigmoid(x: np.ndarray) -> np.ndarray:
    return 1.0 / (1.0 + np.exp(-np.asarray(x, dtype=float)))


def _intercept_for(offset: np.ndarray, rate: float) -> float:
    """The intercept b whose mean ``sigmoid(offset + b)`` is ``rate`` (the logistic likelihood's optimum for b
    with the slope fixed)."""
    from scipy.optimize import brentq

    lo, hi = -50.0 - float(offset.max()), 50.0 - float(offset.min())
    return float(brentq(lambda b: float(_sigmoid(offset + b).mean()) - rate, lo, hi, xtol=1e-14))


@dataclass
class Calibrator:
    """Maps a raw, monotone score (LightGBM log-odds, a health score) to a calibrated probability.

    ``isotonic`` stores the step function's thresholds (linear between them, as scikit-learn's
    IsotonicRegression); ``sigmoid`` is Platt scaling ``1 / (1 + exp(-(a s + b)))``; ``none`` is
    ``sigmoid(s)``. Outputs stay within [1e-4, 1 - 1e-4].
    """

    method: str
    x: list[float] = field(default_factory=list)
    y: list[float] = field(default_factory=list)
    a: float = 1.0
    b: float = 0.0

    @classmethod
    def fit(cls, method: str, raw: np.ndarray, y: np.ndarray) -> Calibrator:
        """Fit on (raw score, outcome) pairs of the validation period, unweighted (the true base rate)."""
        raw = np.asarray(raw, dtype=float)
        y = np.asarray(y, dtype=float)
        if method == "none":
            return cls("none")
        if method not in CALIBRATIONS:
            raise ChurnmlError(f"model.calibration: {method!r} is not one of {', '.join(CALIBRATIONS)}")
        if not 0 < y.sum() < len(y):
            raise ChurnmlError(
                f"calibration: the validation period has {int(y.sum())} positive(s) in {len(y)} rows; "
                "both outcomes are needed (more validation periods, or model.calibration=none)"
            )
        if method == "isotonic":
            from sklearn.isotonic import IsotonicRegression

            iso = IsotonicRegression(out_of_bounds="clip", y_min=0.0, y_max=1.0).fit(raw, y)
            return cls("isotonic", x=iso.X_thresholds_.tolist(), y=iso.y_thresholds_.tolist())
        from sklearn.linear_model import LogisticRegression

        lr = LogisticRegression(C=np.inf).fit(raw.reshape(-1, 1), y.astype(int))
        a, b = float(lr.coef_[0, 0]), float(lr.intercept_[0])
        if not a > 0:
            # A calibration is a non-decreasing map (isotonic is one by construction). Platt's unconstrained
            # slope turns negative when the held-out scores rank below chance, which on data without signal
            # is noise, and it then reverses the model's order: the account ranked riskiest is served as the
            # safest (RavenStack's churn_flag: held-out ROC-AUC 0.586 served as 0.415). The likelihood's best
            # non-negative slope is then 0 (every probability the base rate); a tiny positive one keeps the
            # order as the tie-break, and the intercept is refitted for it (the base rate is kept exactly).
            a = FLAT_SLOPE
            b = _intercept_for(a * raw, float(y.mean()))
            log.warning(
                "calibration: the held-out scores rank no better than chance (Platt slope <= 0 on %d rows); "
                "the probabilities are the base rate %.4f, the model's order kept",
                len(y),
                float(y.mean()),
            )
        return cls("sigmoid", a=a, b=b)

    def transform(self, raw: np.ndarray) -> np.ndarray:
        """Calibrated probabilities of raw scores."""
        raw = np.asarray(raw, dtype=float)
        if self.method == "isotonic":
            p = np.interp(raw, self.x, self.y)
        elif self.method == "sigmoid":
            p = _sigmoid(self.a * raw + self.b)
        else:
            p = _sigmoid(raw)
        return np.clip(p, PROB_FLOOR, 1 - PROB_FLOOR)

    def to_dict(self) -> dict[str, Any]:
        """JSON-friendly form."""
        return asdict(self)

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> Calibrator:
        """Inverse of :meth:`to_dict`."""
        return cls(**data)
