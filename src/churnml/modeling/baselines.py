"""The baselines a model must beat: a rule-based health score and a logistic regression on the same features."""

from __future__ import annotations

import logging
import warnings
from dataclasses import dataclass
from typing import Any

import numpy as np
import pandas as pd
from threadpoolctl import threadpool_limits

from churnml.config import EvaluationConfig
from churnml.errors import ChurnmlError
from churnml.modeling.calibration import Calibrator
from churnml.modeling.model import TrainedModel
from churnml.modeling.split import labeled_frame

log = logging.getLogger(__name__)
# a health score whose present signals carry less than this share of its |weights| is left out: what is
# left of it is not the rule a CS team wrote
HEALTH_MIN_WEIGHT_SHARE = 0.5

# --------------------------------------------------------------------------------------------- baselines


@dataclass
class HealthScore:
    """The rule-based customer health score customer-success teams use (and the model must beat).

    health = sum_k w_k z_k, where z_k is signal k standardised with the train period's mean and
    standard deviation (a missing value counts as average, z = 0) and a positive weight means
    healthier. Churn risk is ``-health``; expansion propensity is ``+health``.
    """

    weights: dict[str, float]
    means: dict[str, float]
    stds: dict[str, float]
    sign: float

    @classmethod
    def fit(cls, train: pd.DataFrame, weights: dict[str, float], target: str) -> HealthScore:
        """Standardisation from the train rows; signals absent from the table are skipped with a warning."""
        usable = {}
        for name, w in weights.items():
            if name in train.columns and pd.api.types.is_numeric_dtype(train[name]):
                usable[name] = float(w)
        absent = sorted(set(weights) - set(usable))
        if not usable:
            raise ChurnmlError(
                f"evaluation.health_score.weights: none of {', '.join(sorted(weights))} is a numeric feature "
                "of the table; name existing features"
            )
        if absent:
            log.info(
                "health score: rebuilt from %s; not in the feature table: %s",
                ", ".join(usable),
                ", ".join(absent),
            )
        means, stds = {}, {}
        for name in usable:
            values = train[name].to_numpy(dtype="float64", na_value=np.nan)
            values = values[np.isfinite(values)]
            means[name] = float(values.mean()) if len(values) else 0.0
            sd = float(values.std()) if len(values) else 0.0
            stds[name] = sd if sd > 0 else 1.0
        return cls(weights=usable, means=means, stds=stds, sign=-1.0 if target == "churn" else 1.0)

    def health(self, frame: pd.DataFrame) -> np.ndarray:
        """The health score (higher = healthier)."""
        total = np.zeros(len(frame))
        for name, w in self.weights.items():
            values = frame[name].to_numpy(dtype="float64", na_value=np.nan)
            z = (values - self.means[name]) / self.stds[name]
            total += w * np.where(np.isfinite(z), z, 0.0)
        return total

    def score(self, frame: pd.DataFrame) -> np.ndarray:
        """Risk (churn) or propensity (expansion): higher = more likely."""
        return self.sign * self.health(frame)


def _logistic_pipeline(numeric: list[str], categorical: list[str], seed: int) -> Any:
    from sklearn.compose import ColumnTransformer
    from sklearn.impute import SimpleImputer
    from sklearn.linear_model import LogisticRegression
    from sklearn.pipeline import Pipeline
    from sklearn.preprocessing import OneHotEncoder, StandardScaler

    prep = ColumnTransformer(
        [
            (
                "numeric",
                Pipeline(
                    [
                        ("impute", SimpleImputer(strategy="median", keep_empty_features=True)),
                        ("scale", StandardScaler()),
                    ]
                ),
                numeric,
            ),
            ("categorical", OneHotEncoder(handle_unknown="ignore"), categorical),
        ]
    )
    return Pipeline(
        [
            ("prepare", prep),
            # Newton's method converges to the optimum to machine precision, whatever the order of the BLAS
            # sums; lbfgs stops at a tolerance, at a point that moves with the CPU's BLAS kernel
            (
                "model",
                LogisticRegression(
                    class_weight="balanced",
                    solver="newton-cholesky",
                    max_iter=200,
                    random_state=seed,
                ),
            ),
        ]
    )


# Decimals kept of the logistic regression's raw score. The last bits of a BLAS sum depend on the CPU's kernel
# (AVX2 or AVX-512 machines give different ones); rounding them away makes the committed baseline metrics the
# same on every machine (tests/test_reproducible.py runs the fit under two kernels).
RAW_DECIMALS = 6


def logistic_raw(pipe: Any, frame: pd.DataFrame) -> np.ndarray:
    """The fitted pipeline's decision function on one BLAS thread, rounded to :data:`RAW_DECIMALS`."""
    with threadpool_limits(limits=1, user_api="blas"):
        return np.round(pipe.decision_function(frame), RAW_DECIMALS)


def _logistic_input(prepared: pd.DataFrame, categorical: list[str]) -> pd.DataFrame:
    out = prepared.copy()
    for col in out.columns:
        if col in categorical:
            out[col] = out[col].astype("object").where(out[col].notna(), "__missing__")
        else:
            out[col] = out[col].replace([np.inf, -np.inf], np.nan)
    return out


@dataclass
class Baselines:
    """The baselines of one target, fitted on the model's train period and calibrated on its validation.

    ``logistic``: a scikit-learn pipeline (median imputation, standardisation, one-hot categoricals,
    class-balanced logistic regression) on the model's features. ``health``: :class:`HealthScore`.
    Each is calibrated like the model (method ``none`` falls back to Platt for the health score, whose
    raw value is not a probability) so log loss and Brier compare like with like.
    """

    model: TrainedModel
    logistic: Any
    logistic_calibrator: Calibrator
    health: HealthScore | None
    health_calibrator: Calibrator | None

    def predict_proba(self, frame: pd.DataFrame) -> dict[str, np.ndarray]:
        """Calibrated probabilities of each baseline: ``logistic``, ``health_score`` (when it has signals)."""
        prepared = self.model.prepare(frame)
        raw_logistic = logistic_raw(self.logistic, _logistic_input(prepared, list(self.model.categories)))
        out = {"logistic": self.logistic_calibrator.transform(raw_logistic)}
        if self.health is not None and self.health_calibrator is not None:
            out["health_score"] = self.health_calibrator.transform(self.health.score(frame))
        return out


def fit_baselines(
    model: TrainedModel, features: pd.DataFrame, labels: pd.DataFrame, cfg: EvaluationConfig
) -> Baselines:
    """Fit the logistic regression and the health score on the model's train period and features."""
    data = labeled_frame(features, labels, model.label_column)
    period = model.split.assign(data["cutoff"])
    return fit_baselines_rows(model, data[period == "train"], data[period == "validation"], cfg)


def fit_baselines_rows(
    model: TrainedModel, train: pd.DataFrame, valid: pd.DataFrame, cfg: EvaluationConfig
) -> Baselines:
    """Fit the baselines on given train rows and calibrate them on given validation rows (with ``y``).

    The health score is left out (None) when ``cfg.health_score.weights`` is empty: a table without
    customer-health signals has no rule to compare with.
    """
    categorical = list(model.categories)
    numeric = [c for c in model.features if c not in model.categories]
    pipe = _logistic_pipeline(numeric, categorical, int(model.info.get("seed", 0)))
    # one BLAS thread: the sums then run in one order, so the committed baseline metrics do not move in
    # the 4th-5th decimal between runs and machines
    with threadpool_limits(limits=1, user_api="blas"), warnings.catch_warnings():
        # all-missing columns and slow convergence are reported by sklearn as warnings; the baseline stands
        warnings.simplefilter("ignore", UserWarning)
        warnings.filterwarnings("ignore", message=".*converge.*")
        pipe.fit(_logistic_input(model.prepare(train), categorical), train["y"].to_numpy())
    method = model.calibrator.method
    health, health_calibrator = None, None
    raw_valid = logistic_raw(pipe, _logistic_input(model.prepare(valid), categorical))
    y_valid = valid["y"].to_numpy()
    weights = cfg.health_score.weights
    present = {
        k: w for k, w in weights.items() if k in train.columns and pd.api.types.is_numeric_dtype(train[k])
    }
    share = sum(abs(w) for w in present.values()) / max(sum(abs(w) for w in weights.values()), 1e-12)
    if weights and share < HEALTH_MIN_WEIGHT_SHARE:
        log.info(
            "health score: left out of the comparison (its signals %s are not in the feature table)",
            ", ".join(sorted(set(weights) - set(present))) or "-",
        )
    elif weights:
        health = HealthScore.fit(train, weights, model.target)
        health_calibrator = Calibrator.fit(
            "sigmoid" if method == "none" else method, health.score(valid), y_valid
        )
    return Baselines(
        model=model,
        logistic=pipe,
        logistic_calibrator=Calibrator.fit(method, raw_valid, y_valid),
        health=health,
        health_calibrator=health_calibrator,
    )
