"""Probability calibration fitted on the validation period (isotonic or Platt), applied after the booster."""

from __future__ import annotations

from dataclasses import asdict, dataclass, field
from typing import Any

import numpy as np

from churnml.errors import ChurnmlError

# An isotonic step of exactly 0 or 1 is overconfident (infinite log loss on one surprise): keep a floor.
PROB_FLOOR = 1e-4


# -------------------------------------------------------------------------------------------- calibration


def _sigmoid(x: np.ndarray) -> np.ndarray:
    return 1.0 / (1.0 + np.exp(-np.asarray(x, dtype=float)))


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
        if method not in ("isotonic", "sigmoid"):
            raise ChurnmlError(f"model.calibration: {method!r} is not one of isotonic, sigmoid, none")
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
        return cls("sigmoid", a=float(lr.coef_[0, 0]), b=float(lr.intercept_[0]))

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
