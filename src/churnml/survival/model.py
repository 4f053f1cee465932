"""The survival model: LightGBM on account-month rows (a discrete-time hazard), and the curves it gives.

The booster is fitted by :func:`churnml.modeling.model.fit_rows` (the 90-day models' code: categoricals,
early stopping, the saved format) with class weights and calibration off: the binary log loss of the
account-month rows is the discrete-time hazard likelihood, so the raw probability is the hazard itself,
and reweighting or recalibrating it would bend every curve. Early stopping uses a holdout of accounts.
"""

from __future__ import annotations

import dataclasses

import numpy as np
import pandas as pd

from churnml.config import ModelConfig
from churnml.errors import ChurnmlError
from churnml.modeling.model import TrainedModel, fit_rows
from churnml.modeling.split import feature_columns
from churnml.names import KEYS
from churnml.survival.rows import (
    AT_RISK,
    DESIGN_COLUMNS,
    EVENT,
    MONTH,
    RENEWAL,
    month_design,
    renewal_month,
    term_months,
)

TARGET = "survival"
LABEL = "churned_in_month"


def holdout_accounts(accounts: pd.Series, share: float, seed: int) -> np.ndarray:
    """A reproducible share of accounts (by a seeded hash of the id) held out for early stopping."""
    ids = pd.Series(accounts.astype(str).unique())
    hashed = pd.util.hash_pandas_object(ids, index=False, hash_key=f"churnml-{seed:09d}"[-16:]).to_numpy()
    chosen = set(ids[(hashed % 1000) < int(round(share * 1000))])
    return accounts.astype(str).isin(chosen).to_numpy()


def sample_accounts(accounts: pd.Series, cap: int, seed: int) -> np.ndarray:
    """Mask of the rows whose account is among at most ``cap`` accounts (all when ``cap`` is 0 or not less
    than the number of accounts), chosen by a seeded hash of the id: reproducible, independent of the row
    order, and the same account on every cutoff (its spells stay together)."""
    if cap < 0:
        raise ChurnmlError(f"survival.max_train_accounts must be 0 (no cap) or positive (got {cap})")
    ids = pd.Series(accounts.astype(str).unique())
    if cap == 0 or len(ids) <= cap:
        return np.ones(len(accounts), dtype=bool)
    hashed = pd.util.hash_pandas_object(ids, index=False, hash_key=f"survsample{seed:06d}"[-16:]).to_numpy()
    chosen = set(ids.iloc[np.argsort(hashed, kind="stable")[:cap]])
    return accounts.astype(str).isin(chosen).to_numpy()


def train_survival(
    rows: pd.DataFrame,
    categories: dict[str, list[str]],
    cfg: ModelConfig,
    holdout_share: float,
    *,
    info: dict | None = None,
) -> TrainedModel:
    """Fit the hazard booster on training rows (:func:`churnml.survival.rows.training_rows`).

    Args:
        rows: account-month rows with the features, the design columns and ``event``.
        categories: levels of each categorical feature (fixed from now on).
        cfg: the model section (LightGBM parameters and seed; class weights and calibration are ignored).
        holdout_share: share of accounts whose rows stop boosting instead of fitting it.
        info: recorded on the model.
    """
    if rows.empty or rows[EVENT].sum() == 0:
        raise ChurnmlError("survival: no churn event among the training rows (more history needed)")
    columns = [*feature_columns(rows.drop(columns=[AT_RISK, EVENT, *DESIGN_COLUMNS])), *DESIGN_COLUMNS]
    held = holdout_accounts(rows["account_id"], holdout_share, cfg.seed)
    if held.all() or not held.any():
        raise ChurnmlError("survival: the early-stopping holdout needs accounts on both sides")
    plain = dataclasses.replace(cfg, class_weight="none", calibration="none", monotone_churn={})
    data = rows.assign(y=rows[EVENT].astype(int))
    return fit_rows(data[~held], data[held], TARGET, LABEL, columns, categories, plain, info=info)


def hazards(model: TrainedModel, features: pd.DataFrame, horizon: int) -> np.ndarray:
    """Monthly hazards (rows x horizon) of feature rows; 0 in months the contract rule calls safe."""
    if features.empty:
        return np.zeros((0, horizon))
    r = renewal_month(features, horizon)
    out = np.zeros((len(features), horizon))
    for k in range(1, horizon + 1):  # one month at a time: memory stays at one copy of the features
        rows = month_design(features, k, horizon, r)
        out[:, k - 1] = model.predict_proba(rows) * rows[AT_RISK].to_numpy()
    return out


def survival_from_hazards(h: np.ndarray) -> np.ndarray:
    """S(1..H) = prod over months up to t of (1 - hazard)."""
    return np.cumprod(1.0 - np.asarray(h, dtype=float), axis=1)


def curve_frame(model: TrainedModel, features: pd.DataFrame, horizon: int) -> pd.DataFrame:
    """Per feature row: S(1..H), P(renew at the next renewal), expected months and 12-month churn.

    Columns: account_id, cutoff, ``s_1`` .. ``s_H`` (probability of still being a customer at the end of
    month t), ``next_renewal_month`` (the first month at risk: the term end of a term contract, month 1
    of a monthly one; 0 when no renewal falls in the horizon), ``p_renew_next`` (S at that month, 1 when
    none), ``expected_months`` (restricted mean: sum of S(t), months as a customer within the horizon) and
    ``p_churn_horizon`` (1 - S(H)).
    """
    h = hazards(model, features, horizon)
    s = survival_from_hazards(h)
    out = features[list(KEYS)].reset_index(drop=True).copy()
    for t in range(horizon):
        out[f"s_{t + 1}"] = s[:, t]
    r = renewal_month(features.reset_index(drop=True), horizon)
    term = term_months(features)
    nxt = np.where((term > 1) & (r > 0), np.where(r <= horizon, r, 0), 1)
    out["next_renewal_month"] = nxt
    padded = np.concatenate([np.ones((len(out), 1)), s], axis=1)
    out["p_renew_next"] = padded[np.arange(len(out)), nxt]
    out["expected_months"] = s.sum(axis=1)
    out["p_churn_horizon"] = 1.0 - s[:, -1] if horizon else 0.0
    return out


__all__ = [
    "LABEL",
    "MONTH",
    "RENEWAL",
    "TARGET",
    "curve_frame",
    "hazards",
    "holdout_accounts",
    "sample_accounts",
    "survival_from_hazards",
    "train_survival",
]
