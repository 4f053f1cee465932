"""Evaluation of a trained model and its baselines on the test period, against the simulator's truth when known."""

from __future__ import annotations

import warnings

import numpy as np
import pandas as pd

from churnml.config import EvaluationConfig
from churnml.errors import ChurnmlError
from churnml.modeling.baselines import Baselines, fit_baselines
from churnml.modeling.metrics import Evaluation, build_evaluation
from churnml.modeling.model import TrainedModel
from churnml.modeling.split import _with_day_keys, labeled_frame
from churnml.names import KEYS, label_horizon

TRUTH_COLUMNS = {"churn": "p_churn", "expansion": "p_expand"}  # the simulator's data/truth/monthly.parquet
TRUTH_HORIZON = "horizon_days"  # ... and the horizon its probabilities look ahead
ARR_COLUMN = "contract_arr"
SEGMENT_COLUMN = "account_segment"
TOUCH_COLUMN = "account_touch_model"


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
    if "validation" in (model.info.get("refit") or {}).get("periods", []):
        # the served model was refit on the validation period (model.refit_on_validation): its scores there
        # are in sample, so they are left out rather than reported beside the out-of-sample test figures; the
        # validation period's out-of-sample ROC-AUC of the train-period fits is model.info["selection"]
        scores = scores[~((scores["model"] == "lightgbm") & (scores["split"] == "validation"))]
    scores = scores[["model", "split", "account_id", "cutoff", "y", "score", "arr", "segment", "touch_model"]]
    return build_evaluation(scores, cfg, model.target, model.label_column, int(model.info["n_train"]))
