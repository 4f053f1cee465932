"""The LightGBM model of one target: training (optionally tuned), calibration on validation, the saved folder.

The flow for one target (``churn`` or ``expansion``):

1. :func:`~churnml.modeling.split.split_periods` splits the labeled cutoffs out of time: test = the latest ``test_periods``
   cutoffs; validation = the ``validation_periods`` cutoffs before them whose label window ends by the
   first test cutoff (``cutoff + horizon <= first test cutoff``); train = the cutoffs at least
   ``purge_days`` before the first validation cutoff. Unlabeled rows are never used.
2. :func:`train_model` fits LightGBM on the train period (class weights for the imbalance, categoricals
   native, seeds fixed), stops early on the validation period and calibrates the probabilities on it
   (isotonic or Platt), chooses among LightGBM, the logistic regression and their blend there, then (by
   default, ``model.refit_on_validation``) serves a refit of the chosen model on train + validation with the
   trees scaled and the calibration kept. The result is a :class:`TrainedModel`, saved as LightGBM text +
   JSON (no pickles).
3. :func:`~churnml.modeling.baselines.fit_baselines` fits what the model must beat, on the same rows and features: a logistic
   regression, and the rule-based health score customer-success teams use (a weighted sum of
   standardised signals, :class:`~churnml.modeling.baselines.HealthScore`).
4. :func:`~churnml.modeling.evaluation.evaluate_model` scores the validation and test periods with every model (plus the simulator's
   true probability as an ``oracle`` when given) and computes every metric and curve once, as tables
   (:class:`churnml.modeling.metrics.Evaluation`).
"""

from __future__ import annotations

import dataclasses
import json
import math
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from churnml.config import CLASS_WEIGHTS, ModelConfig, SplitConfig
from churnml.errors import ChurnmlError
from churnml.modeling import tuning
from churnml.modeling.calibration import Calibrator, _sigmoid
from churnml.modeling.drift import _categorical_reference, _numeric_fractions, _numeric_reference, psi
from churnml.modeling.metrics import roc_auc, roc_auc_difference
from churnml.modeling.redundancy import redundant_groups
from churnml.modeling.split import (
    Split,
    _is_categorical,
    feature_columns,
    labeled_frame,
    split_periods,
)
from churnml.names import KEYS, TARGETS, label_column

MODEL_FILE = "model.txt"
META_FILE = "model.json"
FORMAT_VERSION = 1
_DRIFT_BINS = 10


# ------------------------------------------------------------------------------------------------ model


class FeatureSchemaError(ChurnmlError):
    """A model cannot read a feature frame: columns it was trained on are missing, or a categorical column
    holds values it never saw. Raised by :meth:`TrainedModel.prepare`; the promotion rule tells it apart from
    other failures (a champion trained on other data cannot be compared, nor serve this data)."""


def known_levels(models: Mapping[str, Any]) -> dict[str, set[str]]:
    """Per categorical column of any of ``models``, the values every model that reads it saw at training."""
    levels: dict[str, set[str]] = {}
    for model in models.values():
        for col, known in model.categories.items():
            levels[col] = levels[col] & set(known) if col in levels else set(known)
    return levels


def unseen_as_missing(
    features: pd.DataFrame, models: Mapping[str, Any]
) -> tuple[pd.DataFrame, dict[str, dict[str, int]]]:
    """The feature rows with every category value some model never saw set to missing, and what was set.

    A model refuses an unseen value (:meth:`TrainedModel.prepare`): right for a model asked directly, wrong for
    a nightly job (:func:`churnml.scoring.batch.score_accounts`, ``churnml forecast``, ``churnml tabular
    score``), where one account moved to a new industry or region in the CRM would stop every account's scores.
    Those treat such a value as missing instead (LightGBM's missing branch, the logistic part's all-zero
    one-hot) and say so in one warning line; nightly scoring records it on the run. A value that moves many
    accounts (a plan renamed for the whole book) is still refused there: the column's shares, missing
    included, are part of the drift guard, and its PSI passes the input bound. The promotion rule re-scores a
    champion the same way (a new category value is no reason to skip the comparison).

    Returns:
        (features, ``{column: {value: rows}}``); the frame is the input itself when nothing was unseen.
    """
    unseen: dict[str, dict[str, int]] = {}
    masks: dict[str, pd.Series] = {}
    for col, known in known_levels(models).items():
        if col not in features.columns:
            continue  # the schema guard names it
        values = features[col]
        text = values.astype("object").where(values.isna(), values.astype("str"))
        new = values.notna() & ~text.isin(known)
        if new.any():
            masks[col] = new
            unseen[col] = {str(k): int(v) for k, v in text[new].value_counts().sort_index().items()}
    if not masks:
        return features, {}
    out = features.copy()
    for col, new in masks.items():
        out[col] = out[col].astype("object").where(~new, None)
    return out, unseen


def unseen_line(unseen: Mapping[str, Mapping[str, int]], what: str = "accounts") -> str:
    """One warning line for :func:`unseen_as_missing`'s finding."""
    shown = "; ".join(
        f"{col} "
        + ", ".join(f"{value!r} ({n:,} {what})" for value, n in list(values.items())[:5])
        + (f" (+{len(values) - 5} more)" if len(values) > 5 else "")
        for col, values in unseen.items()
    )
    return f"category values the models never saw, scored as missing (retrain to learn them): {shown}"


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
            (decile edges and shares of the calibrated probability on the validation period: out of
            sample, except for a model refit on it, ``info["refit"]``, whose own probabilities there are
            taken so that the reference is on the served model's scale).
        params: the LightGBM parameters used, tuned ones included.
        info: split, row counts, best iteration, class weighting, the model selection
            (``info["selection"]``), the explanations' reference (``info["reference"]``), the nested search's
            verdict (``info["tuning"]``, None when off), the groups of redundant features
            (``info["redundant_groups"]``), versions.
        linear: the logistic candidate as plain numbers (:func:`fit_linear`), or None.
        weights: the chosen model as weights of the candidates' log-odds: ``{"lightgbm": 1, "logistic": 0}``
            (LightGBM), ``{0, 1}`` (the logistic regression) or ``{0.5, 0.5}`` (the blend).
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
        linear: dict[str, Any] | None = None,
        weights: dict[str, float] | None = None,
    ) -> None:
        self.booster = booster
        self.linear = linear
        self.weights = dict(weights or {"lightgbm": 1.0, "logistic": 0.0})
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
            FeatureSchemaError: naming the missing columns, or the columns holding categories not seen at
                training with those values (new values are an error here, not silently treated as missing:
                the batch jobs read them as missing on purpose and say so, :func:`unseen_as_missing`).
        """
        missing = [c for c in self.features if c not in frame.columns]
        if missing:
            raise FeatureSchemaError(
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
            raise FeatureSchemaError(
                f"{self.target} model: unseen categories in column(s) {', '.join(unseen)} ({shown}); "
                "retrain the model or map them to known values"
            )
        return pd.DataFrame(out, index=frame.index)

    def predict_raw(self, frame: pd.DataFrame) -> np.ndarray:
        """Raw log-odds of the chosen model (uncalibrated; with class weights they are shifted)."""
        if len(frame) == 0:
            return np.zeros(0)
        x = self.prepare(frame)
        raw = np.zeros(len(x))
        if self.weights.get("lightgbm", 0.0):
            raw += self.weights["lightgbm"] * np.asarray(self.booster.predict(x, raw_score=True), dtype=float)
        if self.weights.get("logistic", 0.0):
            raw += self.weights["logistic"] * linear_raw(self.linear, x)
        return raw

    def contributions(self, x: pd.DataFrame, num_threads: int = 0) -> tuple[np.ndarray, np.ndarray]:
        """Exact SHAP values of prepared rows (log-odds) and the base value per row.

        TreeSHAP for the booster, exact linear SHAP for the logistic regression (:func:`linear_contributions`),
        and for a blend the same weights on both (Shapley values are linear in the model).
        """
        k = len(self.features)
        phi, base = np.zeros((len(x), k)), np.zeros(len(x))
        if self.weights.get("lightgbm", 0.0):
            contrib = np.asarray(self.booster.predict(x, pred_contrib=True, num_threads=num_threads))
            if contrib.ndim != 2 or contrib.shape[1] != k + 1:
                raise ChurnmlError(
                    f"explain: expected {k + 1} contribution columns for a binary model, got shape {contrib.shape}"
                )
            phi += self.weights["lightgbm"] * contrib[:, :k]
            base += self.weights["lightgbm"] * contrib[:, k]
        if self.weights.get("logistic", 0.0):
            lin_phi, lin_base = linear_contributions(self.linear, x, self.features)
            phi += self.weights["logistic"] * lin_phi
            base += self.weights["logistic"] * lin_base
        return phi, base

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
            "linear": self.linear,
            "weights": self.weights,
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
            linear=meta.get("linear"),
            weights=meta.get("weights"),
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
    if mode not in CLASS_WEIGHTS:
        raise ChurnmlError(f"model.class_weight: {mode!r} is not one of {', '.join(CLASS_WEIGHTS)}")
    n, pos = len(y), y.sum()
    if pos == 0 or pos == n:
        return np.ones(len(y))
    return np.where(y == 1, n / (2 * pos), n / (2 * (n - pos)))


# ------------------------------------------------------------------------------- the logistic candidate


def _linear_design(linear: dict[str, Any], x: pd.DataFrame) -> np.ndarray:
    """The standardised numeric columns and one-hot levels (missing = no level), in ``linear["columns"]`` order."""
    cols = []
    for name, spec in linear["numeric"].items():
        v = x[name].to_numpy(dtype=float, na_value=np.nan)
        v = np.where(np.isfinite(v), v, spec["median"])
        cols.append((v - spec["mean"]) / spec["scale"])
    for name, levels in linear["categorical"].items():
        v = x[name].astype("object").to_numpy()
        cols.extend((v == level).astype(float) for level in levels)
    return np.column_stack(cols) if cols else np.zeros((len(x), 0))


def fit_linear(x: pd.DataFrame, y: np.ndarray, categories: dict[str, list[str]]) -> dict[str, Any]:
    """A logistic regression (L2, C=1) on median-imputed standardised numbers and one-hot categoricals.

    Unweighted, whatever ``model.class_weight`` says (that is LightGBM's): with balanced weights the L2 penalty
    and the reweighted likelihood move the coefficients, not only the intercept, and the candidate ranked worse
    than a plain ``LogisticRegression()`` on the same rows (simulator expansion, validation ROC-AUC 0.7751
    weighted against 0.7792 unweighted; benchmarks/README.md). The calibration and the blend work on its
    log-odds, so no weight needs undoing.

    Kept as plain numbers (JSON in model.json, no pickle): per numeric column its median, mean and scale on
    the training rows, per categorical level its training share, and every coefficient, so that
    :func:`linear_raw` and the exact SHAP values of :func:`linear_contributions` need no scikit-learn object.
    """
    from sklearn.linear_model import LogisticRegression
    from threadpoolctl import threadpool_limits

    numeric = {}
    for name in x.columns:
        if name in categories:
            continue
        v = x[name].to_numpy(dtype=float, na_value=np.nan)
        finite = v[np.isfinite(v)]
        median = float(np.median(finite)) if len(finite) else 0.0
        filled = np.where(np.isfinite(v), v, median)
        sd = float(filled.std())
        numeric[name] = {"median": median, "mean": float(filled.mean()), "scale": sd if sd > 0 else 1.0}
    linear: dict[str, Any] = {
        "numeric": numeric,
        "categorical": {name: list(levels) for name, levels in categories.items() if name in x.columns},
    }
    design = _linear_design(linear, x)
    with threadpool_limits(limits=1, user_api="blas"):
        # Newton's method: converged to machine precision, so the coefficients do not move with the CPU's
        # BLAS kernel (lbfgs stops at a tolerance, at a point that does)
        lr = LogisticRegression(C=1.0, solver="newton-cholesky", max_iter=200).fit(design, y)
    coef = lr.coef_[0].tolist()
    linear["coef"] = coef
    linear["intercept"] = float(lr.intercept_[0])
    # the mean of each design column on the training rows: the reference of the exact linear SHAP values
    linear["design_mean"] = design.mean(axis=0).tolist() if len(design) else []
    return linear


def linear_raw(linear: dict[str, Any] | None, x: pd.DataFrame) -> np.ndarray:
    """Log-odds of the logistic candidate on prepared rows."""
    if linear is None:
        raise ChurnmlError("model: the logistic part is missing from the saved model")
    return linear["intercept"] + _linear_design(linear, x) @ np.asarray(linear["coef"], dtype=float)


def linear_contributions(
    linear: dict[str, Any] | None, x: pd.DataFrame, features: list[str]
) -> tuple[np.ndarray, np.ndarray]:
    """Exact SHAP values of the logistic candidate: ``coef_j (z_j(x) - mean z_j)`` summed over a column's terms.

    With the training rows as background and a model linear in its design columns, these are the exact
    (interventional) Shapley values; a categorical feature's value sums its one-hot terms. The base value is
    the mean training log-odds, so base + sum = the log-odds of the row.
    """
    if linear is None:
        raise ChurnmlError("model: the logistic part is missing from the saved model")
    design = _linear_design(linear, x)
    coef = np.asarray(linear["coef"], dtype=float)
    centred = (design - np.asarray(linear["design_mean"], dtype=float)) * coef
    owner = [*linear["numeric"], *[n for n, lv in linear["categorical"].items() for _ in lv]]
    phi = np.zeros((len(x), len(features)))
    index = {f: i for i, f in enumerate(features)}
    for j, name in enumerate(owner):
        phi[:, index[name]] += centred[:, j]
    base = linear["intercept"] + float(np.asarray(linear["design_mean"], dtype=float) @ coef)
    return phi, np.full(len(x), base)


# ------------------------------------------------------------------------------------ model selection


def select_candidate(
    y: np.ndarray, tree_raw: np.ndarray, linear: np.ndarray, cfg: ModelConfig, where: str
) -> dict[str, Any]:
    """The chosen model among LightGBM, the logistic regression and their blend, by ROC-AUC on held-out rows.

    The leader: between the two single models the higher ROC-AUC (LightGBM on a tie); the blend (mean of the
    two log-odds) when it beats that one by more than ``cfg.blend_margin``. Then the one-standard-error rule
    (Breiman et al. 1984; Hastie et al., ESL 7.10): a leader other than the logistic regression is served only
    when it beats the logistic regression, the simplest candidate, by more than ``cfg.selection_se`` standard
    errors of the paired ROC-AUC difference on these rows (DeLong, :func:`roc_auc_difference`); otherwise the
    logistic regression is. A lead that small is what the choice among three candidates finds in noise: on
    small tables it had served LightGBM or the blend where the logistic regression was better.

    Returns:
        ``chosen``, ``weights`` (of the two log-odds), ``roc_auc`` per candidate, ``margin`` (the chosen
        model's ROC-AUC minus the runner-up's; negative when the rule served the logistic regression),
        ``leader``, ``leader_over_logistic`` (its ROC-AUC difference and standard error, None when the leader
        is the logistic regression, and the rule's width ``cfg.selection_se``) and ``rows`` (``where``: which
        held-out rows decided).
    """
    weights = {
        "lightgbm": {"lightgbm": 1.0, "logistic": 0.0},
        "logistic": {"lightgbm": 0.0, "logistic": 1.0},
        "blend": {"lightgbm": 0.5, "logistic": 0.5},
    }

    def log_odds(candidate: str) -> np.ndarray:
        w = weights[candidate]
        return w["lightgbm"] * tree_raw + w["logistic"] * linear

    scores = {"lightgbm": roc_auc(y, tree_raw)}
    if "logistic" in cfg.candidates:
        scores["logistic"] = roc_auc(y, linear)
        if "blend" in cfg.candidates:
            scores["blend"] = roc_auc(y, log_odds("blend"))
    singles = {k: v for k, v in scores.items() if k != "blend"}
    chosen = max(singles, key=lambda k: (singles[k], k == "lightgbm"))
    if "blend" in scores and scores["blend"] > scores[chosen] + cfg.blend_margin:
        chosen = "blend"
    lead = chosen
    gain: dict[str, Any] = {
        "over": "logistic",
        "difference": None,
        "standard_error": None,
        "rule_standard_errors": cfg.selection_se,
    }
    if chosen != "logistic" and "logistic" in scores:
        d, se = roc_auc_difference(y, log_odds(chosen), linear)
        if math.isfinite(d):
            gain.update(difference=d, standard_error=se)
            # a lead inside the noise of the rows that measured it is no evidence for the more complex model
            if cfg.selection_se > 0 and d <= cfg.selection_se * se:
                chosen = "logistic"
    others = [v for k, v in scores.items() if k != chosen and math.isfinite(v)]
    return {
        "chosen": chosen,
        "weights": weights[chosen],
        "roc_auc": scores,
        "margin": scores[chosen] - max(others) if others else math.nan,
        "leader": lead,
        "leader_over_logistic": gain,
        "rows": where,
    }


def _invert(calibrate: Any, target: float) -> float:
    """The raw score whose calibrated probability is ``target`` (bisection; the map is monotone)."""
    lo, hi = -1.0, 1.0
    while float(calibrate(np.array([lo]))[0]) > target and lo > -1e4:
        lo *= 2
    while float(calibrate(np.array([hi]))[0]) < target and hi < 1e4:
        hi *= 2
    for _ in range(200):
        mid = 0.5 * (lo + hi)
        if float(calibrate(np.array([mid]))[0]) < target:
            lo = mid
        else:
            hi = mid
    return 0.5 * (lo + hi)


def explanation_reference(model: TrainedModel, rows: pd.DataFrame) -> dict[str, Any]:
    """Where explanations start: the mean predicted probability on the calibration rows (the base rate).

    ``probability`` = mean calibrated probability of ``rows``; ``raw`` = the log-odds the calibration maps
    to it; ``offsets`` (one per feature) re-centre the SHAP values on these rows: each feature's mean SHAP
    value there, plus its share (by mean |SHAP|) of the gap between ``raw`` and the mean log-odds (the
    calibration map is not linear). Subtracting the offsets moves the base value from the model's own (the
    training mean of the log-odds) to ``raw`` and keeps base + sum = log-odds for every row, so probability
    points count from the portfolio's average predicted probability and still add up to each probability.
    """
    x = model.prepare(rows)
    phi, base = model.contributions(x)
    raw = phi.sum(axis=1) + base
    p_mean = float(np.mean(model.calibrate(raw)))
    f_star = _invert(model.calibrate, p_mean)
    mean_abs = np.abs(phi).mean(axis=0)
    share = (
        mean_abs / mean_abs.sum() if mean_abs.sum() > 0 else np.full(len(mean_abs), 1 / max(len(mean_abs), 1))
    )
    offsets = phi.mean(axis=0) + (f_star - float(raw.mean())) * share
    return {
        "probability": p_mean,
        "raw": f_star,
        "offsets": [float(v) for v in offsets],
        "rows": len(rows),
        "rule": "mean calibrated probability on the calibration rows",
    }


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


def _best_logloss(booster: Any) -> float:  # the validation set's, unweighted
    scores = booster.best_score.get("validation", {})
    return float(scores.get("binary_logloss", math.inf))


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
        fitted on the validation period, unweighted, on the train-period fit's log-odds; with
        ``cfg.refit_on_validation`` the served booster and logistic part are then refit on train +
        validation (``model.info["refit"]``), so the served model's validation-period scores are in sample
        and only the test period measures it.
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
        refit=cfg.refit_on_validation,
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
    refit: bool = False,
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
        refit: after the validation rows have stopped the trees, chosen the model and fitted the calibration
            (all with fits on ``train_rows`` only), serve a refit on train + validation rows
            (:func:`_refit_on_validation`); recorded in ``model.info["refit"]``.

    Returns:
        The calibrated model (class weights, early stopping, optional nested Optuna search:
        :mod:`churnml.modeling.tuning`).
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
    # early stopping on the validation period's unweighted ROC-AUC: the class weights shift the booster's
    # log-odds, so its unweighted log loss keeps falling as the calibration-free shift shrinks and never
    # stopped on the default data (600 trees, overfit); a rank metric is blind to that shift, and it is the
    # metric the candidates are chosen on. The log loss is still recorded (second metric).
    w_train, w_valid = _class_weights(y_train, cfg.class_weight), None

    params = {**_lgbm_params(cfg), "metric": ["auc", "binary_logloss"]}
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

    if monotone:  # a constrained model is LightGBM: the logistic candidate's signs are not constrained
        cfg = dataclasses.replace(cfg, candidates=["lightgbm"])
    booster = fit(params)
    searched = None
    if tuning.enabled(cfg):  # nested: searched on the train period, judged on the validation period
        part, held = tuning.inner_holdout(train_rows, y_train, cfg.seed)

        def inner_auc(p: dict[str, Any]) -> float:
            b = _fit_booster(
                p,
                cfg.lgbm.n_estimators,
                cfg.lgbm.early_stopping_rounds,
                (x_train.iloc[part], y_train[part], w_train[part]),
                (x_train.iloc[held], y_train[held], None),
                categorical,
            )
            return roc_auc(y_train[held], b.predict(x_train.iloc[held], raw_score=True))

        tuned, trials, seconds = tuning.search(params, cfg, inner_auc)
        tuned_booster = fit(tuned)
        searched = tuning.judged(
            trials,
            seconds,
            cfg,
            roc_auc(y_valid, booster.predict(x_valid, raw_score=True)),
            roc_auc(y_valid, tuned_booster.predict(x_valid, raw_score=True)),
            tuned,
            (len(part), len(held)),
            "validation period (early stopping of both fits; never seen by the search)",
        )
        if searched["kept"]:
            params, booster = tuned, tuned_booster
    best = booster.best_iteration if booster.best_iteration > 0 else booster.current_iteration()
    # round-trip through text: the in-memory model is exactly what save() writes and load() reads
    model.booster = lgb.Booster(model_str=booster.model_to_string(num_iteration=best))
    tree_valid = np.asarray(model.booster.predict(x_valid, raw_score=True), dtype=float)
    linear_valid = np.zeros(len(x_valid))
    if "logistic" in cfg.candidates:
        model.linear = fit_linear(x_train, y_train, model.categories)
        linear_valid = linear_raw(model.linear, x_valid)
    selection = select_candidate(y_valid, tree_valid, linear_valid, cfg, "validation period")
    # the train-period fits' validation log-odds: out of sample, so they fit the calibration (and the score's
    # drift reference) also when a refit on train + validation is served, as cross-fitting does
    held_out = selection["weights"]["lightgbm"] * tree_valid + selection["weights"]["logistic"] * linear_valid
    refitted = None
    if refit:
        refitted = _refit_on_validation(
            model, params, int(best), cfg, (x_train, y_train), (x_valid, y_valid), categorical
        )
    return _finish(
        model,
        selection,
        held_out,
        y_valid,
        valid_rows,
        x_train,
        params,
        int(best),
        cfg,
        {
            **(info or {}),
            "n_train": len(train_rows),
            "n_validation": len(valid_rows),
            "positives_train": int(y_train.sum()),
            "positives_validation": int(y_valid.sum()),
            "validation_logloss": _best_logloss(booster),
            "tuning": searched,
            "refit": refitted,
        },
    )


def _honest_scores(
    booster: Any,
    best: list[int],
    k: int,
    train: tuple[pd.DataFrame, np.ndarray, np.ndarray],
    held: pd.DataFrame,
    params: dict[str, Any],
    categorical: list[str],
) -> np.ndarray:
    """Inner fold ``k``'s held-out log-odds with the number of trees the *other* folds stopped at (their mean).

    Early stopping picks the number of trees that fits the held-out rows best; scoring those same rows with it
    is optimistic, and the model selection and the calibration then read that optimism as skill. On a
    400-row table LightGBM's out-of-fold ROC-AUC so read 0.68 against 0.63 on rows it never saw, while the
    logistic regression (nothing tuned on the rows it scores) read 0.69 against 0.68, so LightGBM or the blend
    was chosen where the logistic regression was better. The number of trees is a hyperparameter chosen by
    cross-validation, so each fold is scored with the choice made without it. The fold's booster holds its own
    best number of trees (LightGBM returns an early-stopped booster cut there); when the other folds asked for
    more, it is trained on to that number from its training rows only, which gives the same trees as a fit of
    that length (tested).
    """
    import lightgbm as lgb

    trees = max(1, round(float(np.mean([b for j, b in enumerate(best) if j != k]))))  # >= 2 folds (bounded)
    have = booster.current_iteration()
    if trees > have:
        data = lgb.Dataset(train[0], label=train[1], weight=train[2], categorical_feature=categorical)
        booster = lgb.train(
            params, data, num_boost_round=trees - have, init_model=booster, keep_training_booster=True
        )
    return np.asarray(booster.predict(held, raw_score=True, num_iteration=trees), dtype=float)


def _scaled_trees(trees: float, rows: int, rows_stopped_on: float) -> int:
    """The early-stopped number of trees for more rows: scaled by rows / the rows the stopping fit had."""
    return max(1, round(trees * rows / rows_stopped_on))


def _fit_served(
    model: TrainedModel,
    params: dict[str, Any],
    data: tuple[pd.DataFrame, np.ndarray, np.ndarray],
    categorical: list[str],
    trees: int,
    *,
    linear: bool,
) -> None:
    """Fit the served parts on all the given rows (x, y, weights), in place: LightGBM with ``trees`` trees,
    and the logistic part when ``linear`` (the refits of :func:`fit_crossfit` and :func:`_refit_on_validation`)."""
    import lightgbm as lgb

    x, y, w = data
    full = lgb.train(
        params, lgb.Dataset(x, label=y, weight=w, categorical_feature=categorical), num_boost_round=trees
    )
    model.booster = lgb.Booster(model_str=full.model_to_string())
    if linear:
        model.linear = fit_linear(x, y, model.categories)


def _refit_on_validation(
    model: TrainedModel,
    params: dict[str, Any],
    trees: int,
    cfg: ModelConfig,
    train: tuple[pd.DataFrame, np.ndarray],
    valid: tuple[pd.DataFrame, np.ndarray],
    categorical: list[str],
) -> dict[str, Any]:
    """Refit the model's parts on train + validation rows in place; what was refit, as ``model.info["refit"]``.

    Why: out of time the validation period holds the latest labeled months, the closest to the rows that are
    scored, and a model that only stops, chooses and calibrates on them throws that away (on ChurnSim crm6 a
    plain ``LGBMClassifier()`` fitted on train + validation beat the train-only model by 0.007 to 0.02
    ROC-AUC on the test period). What the validation period decided stays decided: LightGBM gets the early
    stopped number of trees scaled by all rows / train rows (more rows support more trees, as
    :func:`fit_crossfit` does), the logistic part is refit the same way, the blend keeps its weights, and the
    calibration stays the one fitted on the train-period fits' validation log-odds (no row calibrates a
    model that saw it). Both parts are refit whatever was chosen, so every part of the saved model has seen
    the same rows. The caller passes train and validation rows only: the test period never reaches a fit.
    """
    x_all = pd.concat([train[0], valid[0]])
    y_all = np.concatenate([train[1], valid[1]])
    w_all = _class_weights(y_all, cfg.class_weight)
    refit_trees = _scaled_trees(trees, len(y_all), len(train[1]))
    _fit_served(
        model, params, (x_all, y_all, w_all), categorical, refit_trees, linear=model.linear is not None
    )
    return {
        "periods": ["train", "validation"],
        "rows": len(y_all),
        "rows_train": len(train[1]),
        "positives": int(y_all.sum()),
        "trees_before": int(trees),
        "trees_refit": int(refit_trees),
        "logistic_refit": model.linear is not None,
        "calibration": "validation log-odds of the train-period fits (out of sample)",
    }


def _finish(
    model: TrainedModel,
    selection: dict[str, Any],
    raw_held_out: np.ndarray,
    y_held_out: np.ndarray,
    reference_rows: pd.DataFrame,
    x_train: pd.DataFrame,
    params: dict[str, Any],
    trees: int,
    cfg: ModelConfig,
    info: dict[str, Any],
) -> TrainedModel:
    """Calibrate the chosen model on held-out log-odds; record drift references, selection and the base rate."""
    import lightgbm as lgb

    model.weights = dict(selection["weights"])
    model.calibrator = Calibrator.fit(cfg.calibration, raw_held_out, y_held_out)
    # the score reference (drift checks, risk tiers' cut-offs) must be on the served model's scale: a refit on
    # train + validation has more trees than the fit the calibration saw, so its own log-odds on the
    # calibration rows are taken (in sample for it; the held-out ones would understate its spread)
    score_raw = model.predict_raw(reference_rows) if info.get("refit") else raw_held_out
    model.distributions = {
        "features": {
            c: _categorical_reference(x_train[c].astype("object"))
            if c in model.categories
            else _numeric_reference(x_train[c].to_numpy(float), _DRIFT_BINS)
            for c in model.features
        },
        "score": _numeric_reference(model.calibrator.transform(score_raw), _DRIFT_BINS),
    }
    model.params = {**params, "num_boost_round": cfg.lgbm.n_estimators, "best_iteration": trees}
    model.info = {
        **info,
        "class_weight": cfg.class_weight,
        "calibration": cfg.calibration,
        "seed": cfg.seed,
        "selection": selection,
        "lightgbm_version": lgb.__version__,
    }
    model.info["reference"] = explanation_reference(model, reference_rows)
    numeric = [c for c in model.features if c not in model.categories]
    model.info["redundant_groups"] = redundant_groups(
        x_train, numeric, cfg.redundancy_threshold, seed=cfg.seed
    )
    return model


def fit_crossfit(
    rows: pd.DataFrame,
    target: str,
    label: str,
    columns: list[str],
    categories: dict[str, list[str]],
    cfg: ModelConfig,
    *,
    info: dict[str, Any] | None = None,
) -> TrainedModel:
    """Fit on every row when the data has no later period: inner folds choose, a refit on all rows serves.

    ``cfg.crossfit_folds`` stratified inner folds: in each, LightGBM stops early on the held-out part
    (unweighted log loss) and the logistic candidate is fitted on the rest, giving out-of-fold log-odds
    of both for every row. They choose the model (:func:`select_candidate`) and fit the calibration
    (cross-fitting: no row calibrates a model that saw it). The served model is then refit on all rows,
    LightGBM with the inner folds' mean best number of trees scaled by all rows / inner training rows.
    """
    from sklearn.model_selection import StratifiedKFold

    model = TrainedModel(None, target, label, columns, categories, Calibrator("none"), {}, {}, {})
    y = rows["y"].to_numpy()
    if min(int(y.sum()), int(len(y) - y.sum())) < cfg.crossfit_folds:
        raise ChurnmlError(
            f"{label}: {int(min(y.sum(), len(y) - y.sum()))} row(s) of the rarer class, fewer than "
            f"model.crossfit_folds={cfg.crossfit_folds}"
        )
    x = model.prepare(rows)
    w = _class_weights(y, cfg.class_weight)
    params = _lgbm_params(cfg)
    monotone = cfg.monotone_churn if target == "churn" else {}
    if monotone:
        params["monotone_constraints"] = [int(monotone.get(c, 0)) for c in columns]
        cfg = dataclasses.replace(cfg, candidates=["lightgbm"])
    categorical = list(categories)
    folds = list(
        StratifiedKFold(n_splits=cfg.crossfit_folds, shuffle=True, random_state=cfg.seed).split(x, y)
    )

    def fit_fold(p: dict[str, Any], tr: np.ndarray, va: np.ndarray) -> Any:
        return _fit_booster(
            p,
            cfg.lgbm.n_estimators,
            cfg.lgbm.early_stopping_rounds,
            (x.iloc[tr], y[tr], w[tr]),
            (x.iloc[va], y[va], None),
            categorical,
        )

    searched = None
    # nested: searched inside the first fold's training part, judged on its held-out part
    if tuning.enabled(cfg):
        tr0, va0 = folds[0]
        part, held = tuning.inner_holdout(rows.iloc[tr0], y[tr0], cfg.seed)

        def inner_auc(p: dict[str, Any]) -> float:
            b = fit_fold(p, tr0[part], tr0[held])
            return roc_auc(y[tr0[held]], b.predict(x.iloc[tr0[held]], raw_score=True))

        def judge_auc(p: dict[str, Any]) -> float:
            return roc_auc(y[va0], fit_fold(p, tr0, va0).predict(x.iloc[va0], raw_score=True))

        tuned, trials, seconds = tuning.search(params, cfg, inner_auc)
        searched = tuning.judged(
            trials,
            seconds,
            cfg,
            judge_auc(params),
            judge_auc(tuned),
            tuned,
            (len(part), len(held)),
            "the first inner fold's held-out rows (never seen by the search)",
        )
        if searched["kept"]:
            params = tuned
    tree_oof, linear_oof, best, inner_rows, boosters = np.zeros(len(y)), np.zeros(len(y)), [], [], []
    for tr, va in folds:
        booster = fit_fold(params, tr, va)
        boosters.append(booster)
        best.append(booster.best_iteration if booster.best_iteration > 0 else booster.current_iteration())
        inner_rows.append(len(tr))
        if "logistic" in cfg.candidates:
            linear_oof[va] = linear_raw(fit_linear(x.iloc[tr], y[tr], categories), x.iloc[va])
    for k, (tr, va) in enumerate(folds):
        train = (x.iloc[tr], y[tr], w[tr])
        tree_oof[va] = _honest_scores(boosters[k], best, k, train, x.iloc[va], params, categorical)
    trees = _scaled_trees(float(np.mean(best)), len(y), float(np.mean(inner_rows)))
    _fit_served(model, params, (x, y, w), categorical, trees, linear="logistic" in cfg.candidates)
    selection = select_candidate(
        y, tree_oof, linear_oof, cfg, f"{cfg.crossfit_folds} inner folds, out of fold"
    )
    oof = selection["weights"]["lightgbm"] * tree_oof + selection["weights"]["logistic"] * linear_oof
    return _finish(
        model,
        selection,
        oof,
        y,
        rows,
        x,
        params,
        trees,
        cfg,
        {
            **(info or {}),
            "n_train": len(rows),
            "n_validation": 0,
            "positives_train": int(y.sum()),
            "positives_validation": 0,
            "crossfit": {
                "folds": cfg.crossfit_folds,
                "best_iterations": [int(b) for b in best],
                "trees_refit": trees,
                "calibration": "out of fold",
            },
            "tuning": searched,
        },
    )
