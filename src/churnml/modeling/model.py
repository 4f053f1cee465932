"""Churn and expansion models: out-of-time split, LightGBM training, calibration, baselines and evaluation.

The flow for one target (``churn`` or ``expansion``):

1. :func:`split_periods` splits the labeled cutoffs out of time: test = the latest ``test_periods``
   cutoffs; validation = the ``validation_periods`` cutoffs before them whose label window ends by the
   first test cutoff (``cutoff + horizon <= first test cutoff``); train = the cutoffs at least
   ``purge_days`` before the first validation cutoff. Unlabeled rows are never used.
2. :func:`train_model` fits LightGBM on the train period (class weights for the imbalance, categoricals
   native, seeds fixed), stops early on the validation period and calibrates the probabilities on it
   (isotonic or Platt). The result is a :class:`TrainedModel`, saved as LightGBM text + JSON (no pickles).
3. :func:`fit_baselines` fits what the model must beat, on the same rows and features: a logistic
   regression, and the rule-based health score customer-success teams use (a weighted sum of
   standardised signals, :class:`HealthScore`).
4. :func:`evaluate_model` scores the validation and test periods with every model (plus the simulator's
   true probability as an ``oracle`` when given) and computes every metric and curve once, as tables
   (:class:`churnml.modeling.metrics.Evaluation`).
"""

from __future__ import annotations

import json
import math
import warnings
from collections.abc import Iterable
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from churnml.config import EvaluationConfig, ModelConfig, SplitConfig
from churnml.errors import ChurnmlError
from churnml.modeling.metrics import Evaluation, build_evaluation
from churnml.names import KEYS, LABEL_PREFIXES, TARGETS, label_column, label_horizon

TRUTH_COLUMNS = {"churn": "p_churn", "expansion": "p_expand"}  # the simulator's data/truth/monthly.parquet
TRUTH_HORIZON = "horizon_days"  # ... and the horizon its probabilities look ahead
ARR_COLUMN = "contract_arr"
SEGMENT_COLUMN = "account_segment"
TOUCH_COLUMN = "account_touch_model"
MODEL_FILE = "model.txt"
META_FILE = "model.json"
FORMAT_VERSION = 1
# An isotonic step of exactly 0 or 1 is overconfident (infinite log loss on one surprise): keep a floor.
PROB_FLOOR = 1e-4
_DRIFT_BINS = 10


# ------------------------------------------------------------------------------------------------ split


@dataclass
class Split:
    """Cutoffs of the train, validation and test periods (out of time, purged)."""

    train: list[pd.Timestamp]
    validation: list[pd.Timestamp]
    test: list[pd.Timestamp]

    def assign(self, cutoffs: pd.Series) -> pd.Series:
        """The period name of each cutoff (``train``, ``validation``, ``test``; missing when in none)."""
        lookup = {c: name for name in ("train", "validation", "test") for c in getattr(self, name)}
        days = pd.to_datetime(cutoffs).astype("datetime64[us]")
        return pd.Series(days.map(lookup), index=cutoffs.index, dtype="str")

    def to_dict(self) -> dict[str, list[str]]:
        """ISO dates per period (JSON-friendly)."""
        return {
            name: [c.date().isoformat() for c in getattr(self, name)]
            for name in ("train", "validation", "test")
        }

    @classmethod
    def from_dict(cls, data: dict[str, list[str]]) -> Split:
        """Inverse of :meth:`to_dict`."""
        return cls(
            **{
                name: [pd.Timestamp(d).as_unit("us") for d in data[name]]
                for name in ("train", "validation", "test")
            }
        )

    def describe(self) -> str:
        """One line: the periods' date ranges."""
        parts = []
        for name in ("train", "validation", "test"):
            days = getattr(self, name)
            parts.append(f"{name} {days[0].date()}..{days[-1].date()} ({len(days)})" if days else f"{name} -")
        return "; ".join(parts)


def _day(text: str, key: str) -> pd.Timestamp:
    try:
        return pd.Timestamp(text).as_unit("us").normalize()
    except ValueError:
        raise ChurnmlError(f"split.{key}: {text!r} is not a date (YYYY-MM-DD)") from None


def split_periods(cutoffs: Iterable, cfg: SplitConfig, horizon_days: int) -> Split:
    """Out-of-time split of the cutoffs of labeled rows.

    Args:
        cutoffs: cutoffs of the labeled rows (repeats are fine; pass only rows whose label is known).
        cfg: number of test and validation periods and the purge between train and validation, and
            optionally fixed dates (``test_start``, ``test_end``, ``train_end``) to reproduce a protocol.
        horizon_days: label horizon; a validation cutoff's label window must end by the first test cutoff.

    Returns:
        test = the latest ``test_periods`` cutoffs (or those in ``[test_start, test_end)``); validation =
        the latest ``validation_periods`` cutoffs (before ``train_end`` when set) with
        ``cutoff + horizon <= first test cutoff``; train = every cutoff (before ``train_end`` when set)
        with ``cutoff + purge_days <= first validation cutoff``.
    """
    days = sorted({pd.Timestamp(c).as_unit("us") for c in pd.to_datetime(pd.Series(list(cutoffs))).dropna()})
    if cfg.test_periods < 1 or cfg.validation_periods < 1:
        raise ChurnmlError("split: test_periods and validation_periods must be at least 1")
    if cfg.test_start:
        first = _day(cfg.test_start, "test_start")
        stop = _day(cfg.test_end, "test_end") if cfg.test_end else None
        test = [c for c in days if c >= first and (stop is None or c < stop)]
        if not test:
            raise ChurnmlError(
                f"split: no labeled cutoff in [{cfg.test_start}, {cfg.test_end or 'end'}) "
                f"({len(days)} labeled cutoffs{f' from {days[0].date()} to {days[-1].date()}' if days else ''})"
            )
    else:
        if len(days) < cfg.test_periods:
            raise ChurnmlError(
                f"split: {len(days)} labeled cutoff(s), fewer than test_periods={cfg.test_periods}"
            )
        test = days[-cfg.test_periods :]
    pool = days
    if cfg.train_end:
        end = _day(cfg.train_end, "train_end")
        pool = [c for c in days if c < end]
    horizon = pd.Timedelta(days=horizon_days)
    candidates = [c for c in pool if c + horizon <= test[0]]
    validation = candidates[-cfg.validation_periods :]
    if len(validation) < cfg.validation_periods:
        raise ChurnmlError(
            f"split: only {len(validation)} cutoff(s) end their {horizon_days}-day label window before the "
            f"first test cutoff {test[0].date()}; validation_periods={cfg.validation_periods} needs more history"
        )
    purge = pd.Timedelta(days=cfg.purge_days)
    train = [c for c in pool if c < validation[0] and c + purge <= validation[0]]
    if not train:
        raise ChurnmlError(
            f"split: no training cutoff is {cfg.purge_days} days before the first validation cutoff "
            f"{validation[0].date()} ({len(days)} labeled cutoffs from {days[0].date()}); "
            "lower split.test_periods/validation_periods/purge_days or bring more history"
        )
    return Split(train=train, validation=validation, test=test)


# ------------------------------------------------------------------------------------------ input frames


def _with_day_keys(frame: pd.DataFrame, what: str) -> pd.DataFrame:
    missing = [k for k in KEYS if k not in frame.columns]
    if missing:
        raise ChurnmlError(f"{what}: missing key column(s) {', '.join(missing)}")
    # pandas 3 mixes datetime64[us] and [ns]; merges need one unit
    return frame.assign(
        account_id=frame["account_id"].astype("str"),
        cutoff=pd.to_datetime(frame["cutoff"]).astype("datetime64[us]"),
    )


def feature_columns(features: pd.DataFrame) -> list[str]:
    """The model inputs of a feature table: every column but the keys and any label column."""
    return [c for c in features.columns if c not in KEYS and not c.startswith(LABEL_PREFIXES)]


def _is_categorical(series: pd.Series) -> bool:
    return isinstance(series.dtype, pd.CategoricalDtype) or pd.api.types.is_string_dtype(series.dtype)


def labeled_frame(features: pd.DataFrame, labels: pd.DataFrame, label: str) -> pd.DataFrame:
    """Features joined with one label on (account_id, cutoff), labeled rows only, label as int ``y``."""
    features = _with_day_keys(features, "features")
    labels = _with_day_keys(labels, "labels")
    if label not in labels.columns:
        raise ChurnmlError(f"labels: no column {label!r} (have {', '.join(map(str, labels.columns))})")
    if features.duplicated(list(KEYS)).any():
        raise ChurnmlError("features: (account_id, cutoff) is not unique")
    y = labels[[*KEYS, label]].dropna(subset=[label])
    if "y" in features.columns:
        raise ChurnmlError("features: a column named 'y' clashes with the label; rename it")
    merged = features.merge(y.rename(columns={label: "y"}), on=list(KEYS), how="inner", validate="one_to_one")
    merged["y"] = merged["y"].astype(int)
    return merged


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


# ------------------------------------------------------------------------------------------------- drift


def _numeric_reference(values: np.ndarray, bins: int) -> dict[str, Any]:
    finite = values[np.isfinite(values)]
    qs = np.quantile(finite, np.linspace(0, 1, bins + 1)[1:-1]) if len(finite) else np.array([])
    edges = np.unique(qs)
    return {
        "kind": "numeric",
        "edges": edges.tolist(),
        "fractions": _numeric_fractions(values, edges).tolist(),
    }


def _numeric_fractions(values: np.ndarray, edges: np.ndarray) -> np.ndarray:
    """Shares of values per bin (-inf, e1], (e1, e2], ..., (ek, inf), then missing (NaN) last."""
    values = np.asarray(values, dtype=float)
    n = max(len(values), 1)
    missing = np.isnan(values)
    idx = np.searchsorted(np.asarray(edges, dtype=float), values[~missing], side="left")
    counts = np.bincount(idx, minlength=len(edges) + 1)
    return np.r_[counts, missing.sum()] / n


def _categorical_reference(values: pd.Series) -> dict[str, Any]:
    shares = values.astype("object").where(values.notna(), "__missing__").value_counts(normalize=True)
    return {"kind": "categorical", "shares": {str(k): float(v) for k, v in shares.sort_index().items()}}


def psi(expected: np.ndarray, actual: np.ndarray, eps: float = 1e-4) -> float:
    """Population stability index sum((a - e) ln(a / e)), shares floored at ``eps``."""
    e = np.maximum(np.asarray(expected, dtype=float), eps)
    a = np.maximum(np.asarray(actual, dtype=float), eps)
    return float(((a - e) * np.log(a / e)).sum())


# ------------------------------------------------------------------------------------------------ model


class TrainedModel:
    """A fitted, calibrated model of one target, with what scoring needs to apply it safely.

    Attributes:
        booster: the LightGBM booster (best iteration only).
        target: ``churn`` or ``expansion``.
        label_column: the outcome it predicts.
        features: input columns, in order.
        categories: levels of each categorical feature (fixed at training; others are an error).
        calibrator: raw log-odds -> calibrated probability.
        distributions: training reference for drift checks: ``features`` (per feature: numeric decile
            edges and shares, or categorical level shares; computed on the train period) and ``score``
            (decile edges and shares of the calibrated probability on the validation period, out of
            sample).
        params: the LightGBM parameters used, tuned ones included.
        info: split, row counts, best iteration, class weighting, versions.
    """

    def __init__(
        self,
        booster: Any,
        target: str,
        label_column: str,
        features: list[str],
        categories: dict[str, list[str]],
        calibrator: Calibrator,
        distributions: dict[str, Any],
        params: dict[str, Any],
        info: dict[str, Any],
    ) -> None:
        self.booster = booster
        self.target = target
        self.label_column = label_column
        self.features = list(features)
        self.categories = {k: list(v) for k, v in categories.items()}
        self.calibrator = calibrator
        self.distributions = distributions
        self.params = params
        self.info = info

    @property
    def split(self) -> Split:
        """The periods the model was trained, validated and tested on."""
        return Split.from_dict(self.info["split"])

    def prepare(self, frame: pd.DataFrame) -> pd.DataFrame:
        """The model's input: its feature columns in order, numeric as float64, categoricals as category.

        Raises:
            ChurnmlError: naming the missing columns, or the columns holding categories not seen at
                training with those values (new values are an error, not silently treated as missing:
                a new segment or plan means the model must be retrained or the value mapped).
        """
        missing = [c for c in self.features if c not in frame.columns]
        if missing:
            raise ChurnmlError(
                f"{self.target} model: input lacks feature column(s) {', '.join(missing)} "
                f"({len(missing)} of {len(self.features)})"
            )
        out: dict[str, Any] = {}
        unseen: dict[str, list[str]] = {}
        for col in self.features:
            values = frame[col]
            if col in self.categories:
                levels = self.categories[col]
                present = values.dropna().astype("str")
                new = sorted(set(present.unique()) - set(levels))
                if new:
                    unseen[col] = new
                    continue
                out[col] = pd.Categorical(
                    values.astype("object").where(values.notna(), None), categories=levels
                )
            else:
                try:
                    out[col] = pd.to_numeric(values).to_numpy(dtype="float64", na_value=np.nan)
                except (TypeError, ValueError):
                    raise ChurnmlError(f"{self.target} model: feature {col!r} must be numeric") from None
        if unseen:
            shown = "; ".join(f"{c}: {', '.join(map(repr, v[:5]))}" for c, v in unseen.items())
            raise ChurnmlError(
                f"{self.target} model: unseen categories in column(s) {', '.join(unseen)} ({shown}); "
                "retrain the model or map them to known values"
            )
        return pd.DataFrame(out, index=frame.index)

    def predict_raw(self, frame: pd.DataFrame) -> np.ndarray:
        """Raw log-odds from the booster (uncalibrated; with class weights they are shifted)."""
        if len(frame) == 0:
            return np.zeros(0)
        return np.asarray(self.booster.predict(self.prepare(frame), raw_score=True), dtype=float)

    def predict_uncalibrated(self, frame: pd.DataFrame) -> np.ndarray:
        """The booster's own probability, before calibration."""
        return _sigmoid(self.predict_raw(frame))

    def calibrate(self, raw_scores: np.ndarray) -> np.ndarray:
        """Calibrated probabilities of raw log-odds (what explanations use to turn SHAP into points)."""
        return self.calibrator.transform(raw_scores)

    def predict_proba(self, frame: pd.DataFrame) -> np.ndarray:
        """Calibrated probability of the target event, one per row."""
        return self.calibrate(self.predict_raw(frame))

    def save(self, folder: Path) -> Path:
        """Write ``folder/model.txt`` (LightGBM text) and ``folder/model.json`` (everything else)."""
        folder = Path(folder)
        folder.mkdir(parents=True, exist_ok=True)
        self.booster.save_model(str(folder / MODEL_FILE))
        meta = {
            "format_version": FORMAT_VERSION,
            "target": self.target,
            "label_column": self.label_column,
            "features": self.features,
            "categories": self.categories,
            "calibrator": self.calibrator.to_dict(),
            "distributions": self.distributions,
            "params": self.params,
            "info": self.info,
        }
        (folder / META_FILE).write_text(json.dumps(meta, indent=1, allow_nan=False) + "\n", encoding="utf-8")
        return folder

    @classmethod
    def load(cls, folder: Path) -> TrainedModel:
        """Read a model written by :meth:`save`."""
        import lightgbm as lgb

        folder = Path(folder)
        if not (folder / MODEL_FILE).is_file() or not (folder / META_FILE).is_file():
            raise ChurnmlError(f"{folder}: not a saved churnml model ({MODEL_FILE} and {META_FILE} expected)")
        meta = json.loads((folder / META_FILE).read_text(encoding="utf-8"))
        if meta.get("format_version") != FORMAT_VERSION:
            raise ChurnmlError(
                f"{folder}: model format {meta.get('format_version')} (expected {FORMAT_VERSION})"
            )
        return cls(
            booster=lgb.Booster(model_file=str(folder / MODEL_FILE)),
            target=meta["target"],
            label_column=meta["label_column"],
            features=meta["features"],
            categories=meta["categories"],
            calibrator=Calibrator.from_dict(meta["calibrator"]),
            distributions=meta["distributions"],
            params=meta["params"],
            info=meta["info"],
        )

    def drift(self, frame: pd.DataFrame) -> pd.DataFrame:
        """PSI of each feature and of the calibrated score on ``frame`` against the training reference.

        Returns:
            One row per feature plus one named ``score``: columns feature, kind, psi.
        """
        prepared = self.prepare(frame)
        rows = []
        for col, ref in self.distributions["features"].items():
            if ref["kind"] == "numeric":
                actual = _numeric_fractions(prepared[col].to_numpy(float), np.asarray(ref["edges"]))
                value = psi(np.asarray(ref["fractions"]), actual)
            else:
                shares = _categorical_reference(prepared[col].astype("object"))["shares"]
                levels = sorted(set(ref["shares"]) | set(shares))
                value = psi(
                    np.array([ref["shares"].get(k, 0.0) for k in levels]),
                    np.array([shares.get(k, 0.0) for k in levels]),
                )
            rows.append({"feature": col, "kind": ref["kind"], "psi": value})
        score_ref = self.distributions["score"]
        actual = _numeric_fractions(self.predict_proba(frame), np.asarray(score_ref["edges"]))
        rows.append(
            {"feature": "score", "kind": "score", "psi": psi(np.asarray(score_ref["fractions"]), actual)}
        )
        return pd.DataFrame(rows)


def _categorical_levels(features: pd.DataFrame, columns: list[str]) -> dict[str, list[str]]:
    levels = {}
    for col in columns:
        if _is_categorical(features[col]):
            levels[col] = sorted(features[col].dropna().astype("str").unique().tolist())
        elif not (pd.api.types.is_numeric_dtype(features[col]) or pd.api.types.is_bool_dtype(features[col])):
            raise ChurnmlError(
                f"features: column {col!r} has dtype {features[col].dtype}; expected numbers or text"
            )
    return levels


def _class_weights(y: np.ndarray, mode: str) -> np.ndarray:
    if mode == "none":
        return np.ones(len(y))
    if mode != "balanced":
        raise ChurnmlError(f"model.class_weight: {mode!r} is not one of balanced, none")
    n, pos = len(y), y.sum()
    if pos == 0 or pos == n:
        return np.ones(len(y))
    return np.where(y == 1, n / (2 * pos), n / (2 * (n - pos)))


def _lgbm_params(cfg: ModelConfig) -> dict[str, Any]:
    g = cfg.lgbm
    return {
        "objective": "binary",
        "metric": "binary_logloss",
        "learning_rate": g.learning_rate,
        "num_leaves": g.num_leaves,
        "min_data_in_leaf": g.min_child_samples,
        "bagging_fraction": g.subsample,
        "bagging_freq": g.subsample_freq,
        "feature_fraction": g.colsample_bytree,
        "lambda_l2": g.reg_lambda,
        "num_threads": g.n_jobs,
        "seed": cfg.seed,
        "deterministic": True,
        "force_col_wise": True,
        "feature_pre_filter": False,
        "verbosity": -1,
    }


def _fit_booster(
    params: dict[str, Any],
    rounds: int,
    stopping: int,
    train: tuple[pd.DataFrame, np.ndarray, np.ndarray],
    valid: tuple[pd.DataFrame, np.ndarray, np.ndarray],
    categorical: list[str],
) -> Any:
    import lightgbm as lgb

    train_set = lgb.Dataset(
        train[0], label=train[1], weight=train[2], categorical_feature=categorical, free_raw_data=True
    )
    valid_set = lgb.Dataset(
        valid[0], label=valid[1], weight=valid[2], reference=train_set, categorical_feature=categorical
    )
    callbacks = [lgb.early_stopping(stopping, first_metric_only=True, verbose=False)] if stopping > 0 else []
    return lgb.train(
        params,
        train_set,
        num_boost_round=rounds,
        valid_sets=[valid_set],
        valid_names=["validation"],
        callbacks=callbacks,
    )


def _best_logloss(booster: Any) -> float:
    scores = booster.best_score.get("validation", {})
    return float(scores.get("binary_logloss", math.inf))


def _tune(params: dict[str, Any], cfg: ModelConfig, fit: Any) -> tuple[dict[str, Any], list[dict[str, Any]]]:
    """Optuna TPE search (seeded) minimising the validation log loss of the early-stopped booster."""
    import optuna

    optuna.logging.set_verbosity(optuna.logging.WARNING)
    study = optuna.create_study(direction="minimize", sampler=optuna.samplers.TPESampler(seed=cfg.seed))

    def objective(trial: Any) -> float:
        trial_params = {
            **params,
            "learning_rate": trial.suggest_float("learning_rate", 0.01, 0.2, log=True),
            "num_leaves": trial.suggest_int("num_leaves", 7, 127, log=True),
            "min_data_in_leaf": trial.suggest_int("min_data_in_leaf", 10, 300, log=True),
            "feature_fraction": trial.suggest_float("feature_fraction", 0.4, 1.0),
            "bagging_fraction": trial.suggest_float("bagging_fraction", 0.5, 1.0),
            "lambda_l2": trial.suggest_float("lambda_l2", 1e-3, 30.0, log=True),
        }
        return _best_logloss(fit(trial_params))

    study.optimize(objective, n_trials=cfg.optuna_trials)
    trials = [{"number": t.number, "value": t.value, **t.params} for t in study.trials]
    return {**params, **study.best_params}, trials


def train_model(
    features: pd.DataFrame,
    labels: pd.DataFrame,
    target: str,
    cfg: ModelConfig,
    split_cfg: SplitConfig,
    horizon: int,
    *,
    feature_list: list[str] | None = None,
) -> TrainedModel:
    """Fit and calibrate the LightGBM model of one target, out of time.

    Args:
        features: the feature table (account_id, cutoff, features; text columns are categoricals).
        labels: the labels table; rows whose label is null are not used.
        target: ``churn`` or ``expansion``.
        cfg: the model section (LightGBM parameters, class weights, calibration, monotone constraints,
            Optuna trials, seed).
        split_cfg: the out-of-time split.
        horizon: label horizon in days (names the label column and sets the validation/test gap).
        feature_list: the model inputs; default every column of ``features`` but keys and labels.

    Returns:
        The calibrated model. Class imbalance is handled with class weights on the train period (and on
        the validation log loss that stops boosting); nothing is resampled. Categorical levels are fixed
        from the whole feature table given (the vocabulary known at training time). The calibrator is
        fitted on the validation period, unweighted.
    """
    if target not in TARGETS:
        raise ChurnmlError(f"unknown target {target!r}: expected one of {', '.join(TARGETS)}")
    label = label_column(target, horizon)
    columns = list(feature_list) if feature_list is not None else feature_columns(features)
    missing = [c for c in columns if c not in features.columns]
    if missing:
        raise ChurnmlError(f"features: missing column(s) {', '.join(missing)}")
    if not columns:
        raise ChurnmlError("features: no feature columns")
    data = labeled_frame(features[[*KEYS, *columns]], labels, label)
    if data.empty:
        raise ChurnmlError(f"no labeled rows for {label}: features and labels share no (account_id, cutoff)")
    split = split_periods(data["cutoff"], split_cfg, horizon)
    period = split.assign(data["cutoff"])
    train_rows, valid_rows = data[period == "train"], data[period == "validation"]
    if train_rows["y"].sum() == 0:
        raise ChurnmlError(f"{label}: no positive example in the train period ({split.describe()})")
    return fit_rows(
        train_rows,
        valid_rows,
        target,
        label,
        columns,
        _categorical_levels(features, columns),
        cfg,
        info={"split": split.to_dict()},
    )


def fit_rows(
    train_rows: pd.DataFrame,
    valid_rows: pd.DataFrame,
    target: str,
    label: str,
    columns: list[str],
    categories: dict[str, list[str]],
    cfg: ModelConfig,
    *,
    info: dict[str, Any] | None = None,
) -> TrainedModel:
    """Fit and calibrate LightGBM on given train and validation rows (the core of :func:`train_model`).

    The caller decides the rows: :func:`train_model` takes them from the out-of-time split,
    :mod:`churnml.tabular` from stratified folds or a time split of a one-row-per-account table.

    Args:
        train_rows: rows holding ``columns`` and the 0/1 outcome ``y``; boosting fits on them.
        valid_rows: the same for early stopping and calibration (both outcomes needed).
        target: ``churn`` or ``expansion`` (monotone constraints apply to ``churn``).
        label: the outcome's name, recorded on the model.
        columns: the model inputs, in order.
        categories: levels of each categorical input (fixed from now on).
        cfg: the model section.
        info: recorded first in ``model.info`` (e.g. the split); training facts are added to it.

    Returns:
        The calibrated model (class weights, early stopping, optional Optuna search: see :func:`train_model`).
    """
    import lightgbm as lgb

    model = TrainedModel(
        booster=None,
        target=target,
        label_column=label,
        features=columns,
        categories=categories,
        calibrator=Calibrator("none"),
        distributions={},
        params={},
        info={},
    )
    y_train, y_valid = train_rows["y"].to_numpy(), valid_rows["y"].to_numpy()
    if y_train.sum() == 0:
        raise ChurnmlError(f"{label}: no positive example among the {len(y_train)} training rows")
    x_train, x_valid = model.prepare(train_rows), model.prepare(valid_rows)
    w_train, w_valid = _class_weights(y_train, cfg.class_weight), _class_weights(y_valid, cfg.class_weight)

    params = _lgbm_params(cfg)
    monotone = cfg.monotone_churn if target == "churn" else {}
    if monotone:
        bad = [f for f in monotone if f not in columns or f in model.categories]
        if bad:
            raise ChurnmlError(f"model.monotone_churn: {', '.join(bad)} not numeric feature(s) of the table")
        if any(v not in (-1, 0, 1) for v in monotone.values()):
            raise ChurnmlError("model.monotone_churn: constraints must be -1, 0 or +1")
        params["monotone_constraints"] = [int(monotone.get(c, 0)) for c in columns]
    categorical = list(model.categories)

    def fit(p: dict[str, Any]) -> Any:
        return _fit_booster(
            p,
            cfg.lgbm.n_estimators,
            cfg.lgbm.early_stopping_rounds,
            (x_train, y_train, w_train),
            (x_valid, y_valid, w_valid),
            categorical,
        )

    trials: list[dict[str, Any]] = []
    if cfg.optuna_trials > 0:
        params, trials = _tune(params, cfg, fit)
    booster = fit(params)
    best = booster.best_iteration if booster.best_iteration > 0 else booster.current_iteration()
    # round-trip through text: the in-memory model is exactly what save() writes and load() reads
    model.booster = lgb.Booster(model_str=booster.model_to_string(num_iteration=best))

    raw_valid = model.predict_raw(valid_rows)
    model.calibrator = Calibrator.fit(cfg.calibration, raw_valid, y_valid)
    valid_proba = model.calibrator.transform(raw_valid)
    model.distributions = {
        "features": {
            c: _categorical_reference(x_train[c].astype("object"))
            if c in model.categories
            else _numeric_reference(x_train[c].to_numpy(float), _DRIFT_BINS)
            for c in columns
        },
        "score": _numeric_reference(valid_proba, _DRIFT_BINS),
    }
    model.params = {**params, "num_boost_round": cfg.lgbm.n_estimators, "best_iteration": int(best)}
    model.info = {
        **(info or {}),
        "n_train": len(train_rows),
        "n_validation": len(valid_rows),
        "positives_train": int(y_train.sum()),
        "positives_validation": int(y_valid.sum()),
        "class_weight": cfg.class_weight,
        "calibration": cfg.calibration,
        "seed": cfg.seed,
        "validation_logloss_weighted": _best_logloss(booster),
        "optuna_trials": trials,
        "lightgbm_version": lgb.__version__,
    }
    return model


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
            warnings.warn(
                f"health score: signal(s) not in the feature table, skipped: {', '.join(absent)}",
                stacklevel=2,
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
            ("model", LogisticRegression(class_weight="balanced", max_iter=2000, random_state=seed)),
        ]
    )


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
        raw_logistic = self.logistic.decision_function(_logistic_input(prepared, list(self.model.categories)))
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
    with warnings.catch_warnings():
        # all-missing columns and slow convergence are reported by sklearn as warnings; the baseline stands
        warnings.simplefilter("ignore", UserWarning)
        warnings.filterwarnings("ignore", message=".*converge.*")
        pipe.fit(_logistic_input(model.prepare(train), categorical), train["y"].to_numpy())
    method = model.calibrator.method
    raw_valid = pipe.decision_function(_logistic_input(model.prepare(valid), categorical))
    y_valid = valid["y"].to_numpy()
    health, health_calibrator = None, None
    if cfg.health_score.weights:
        health = HealthScore.fit(train, cfg.health_score.weights, model.target)
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


# -------------------------------------------------------------------------------------------- evaluation


def _oracle(truth: pd.DataFrame, data: pd.DataFrame, target: str, horizon_days: int) -> np.ndarray | None:
    column = "probability" if "probability" in truth.columns else TRUTH_COLUMNS[target]
    if column not in truth.columns or TRUTH_HORIZON not in truth.columns:
        raise ChurnmlError(
            f"truth: expected columns account_id, cutoff, {TRUTH_HORIZON} and probability or "
            f"{TRUTH_COLUMNS[target]}"
        )
    # a probability of the event within another horizon is another ceiling: refuse it, never compare
    horizons = sorted({int(h) for h in truth[TRUTH_HORIZON].unique()})
    if horizons != [horizon_days]:
        raise ChurnmlError(
            f"truth: true probabilities at a {'/'.join(map(str, horizons))}-day horizon, labels at "
            f"{horizon_days} days: regenerate the truth at labels.horizon_days (simulator.label_horizon_days)"
        )
    t = _with_day_keys(truth[[*KEYS, column]], "truth").rename(columns={column: "probability"})
    joined = data[list(KEYS)].merge(t, on=list(KEYS), how="left", validate="many_to_one")
    n_missing = int(joined["probability"].isna().sum())
    if n_missing:
        # e.g. a weekly spine against the simulator's monthly truth: no oracle rather than a partial one
        warnings.warn(
            f"truth: no true probability for {n_missing} of {len(joined)} evaluated rows; no oracle",
            stacklevel=3,
        )
        return None
    return joined["probability"].to_numpy(float)


def evaluate_model(
    model: TrainedModel,
    features: pd.DataFrame,
    labels: pd.DataFrame,
    cfg: EvaluationConfig,
    *,
    truth: pd.DataFrame | None = None,
    baselines: Baselines | None = None,
) -> Evaluation:
    """Score the validation and test periods with the model, the baselines and the oracle; tabulate once.

    Args:
        model: the trained model (its split decides the periods).
        features: the feature table it was trained from (needs contract_arr, account_segment,
            account_touch_model for the ARR metric and the per-group rows).
        labels: the labels table.
        cfg: the evaluation section.
        truth: optional simulator ground truth (``data/truth/monthly.parquet``): account_id, cutoff,
            horizon_days and the true probability of the target event within it, in ``probability`` or
            else ``p_churn`` / ``p_expand``; a horizon other than the model's label horizon is refused
            (:class:`ChurnmlError`). Adds the ``oracle`` model when it covers every evaluated row (else
            a warning).
        baselines: fitted baselines; fitted here when omitted.

    Returns:
        The :class:`~churnml.modeling.metrics.Evaluation` (scores, metrics table, curve tables, counts).
    """
    needed = [ARR_COLUMN, SEGMENT_COLUMN, TOUCH_COLUMN]
    absent = [c for c in needed if c not in features.columns]
    if absent:
        raise ChurnmlError(f"features: evaluation needs column(s) {', '.join(absent)}")
    data = labeled_frame(features, labels, model.label_column)
    period = model.split.assign(data["cutoff"])
    data = data.assign(split=period)[period.isin(["validation", "test"])].reset_index(drop=True)
    if baselines is None:
        baselines = fit_baselines(model, features, labels, cfg)
    predictions = {"lightgbm": model.predict_proba(data), **baselines.predict_proba(data)}
    if truth is not None:
        oracle = _oracle(truth, data, model.target, label_horizon(model.label_column))
        if oracle is not None:
            predictions["oracle"] = oracle
    base = pd.DataFrame(
        {
            "split": data["split"],
            "account_id": data["account_id"],
            "cutoff": data["cutoff"],
            "y": data["y"].astype(int),
            "arr": data[ARR_COLUMN].to_numpy(dtype="float64", na_value=np.nan),
            "segment": data[SEGMENT_COLUMN].astype("str"),
            "touch_model": data[TOUCH_COLUMN].astype("str"),
        }
    )
    scores = pd.concat(
        [base.assign(model=name, score=p) for name, p in predictions.items()], ignore_index=True
    )
    scores = scores[["model", "split", "account_id", "cutoff", "y", "score", "arr", "segment", "touch_model"]]
    return build_evaluation(scores, cfg, model.target, model.label_column, int(model.info["n_train"]))
