"""Account-month rows of the discrete-time hazard model: covariates, contract rule, outcomes and censoring.

Why a discrete-time hazard model (and not Cox or a parametric curve): renewals are decided once a month
(monthly plans) or once a year (annual terms), so time is discrete by nature; a hazard per month lets the
contract rule be exact (an annual contract can only end in the month of its term end: every other month
has hazard 0 by construction, not by estimate), censoring enters as rows that are simply not there, and
the per-month probability is a binary outcome that LightGBM fits with the same features, categoricals and
early stopping as the 90-day models (Tutz & Schmid, *Modeling Discrete Time-to-Event Data*, 2016).

Rules (``H`` = ``survival.horizon_months``, ``g`` = ``labels.grace_days``), for a spine row (account, cutoff
``c``):

- **Months.** Month ``k`` (1..H) is ``[c + (k-1) months, c + k months)`` (calendar months).
- **Covariates** (point in time): the row's features at ``c``, ``survival_month = k``, and
  ``survival_renewal_month = 1`` iff a scheduled term end falls in month ``k``: the running contract's
  (``c + contract_days_to_renewal`` days, known at ``c``; a term end already passed counts in month 1: a
  lapsed contract decides now) and, for a term of ``P > 1`` months (``contract_billing_period``'s term in
  ``BILLING_PERIOD_MONTHS``: 6 semiannual, 12 annual), the ends of the same term renewed, every ``P``
  months after it. A monthly contract flags only its running term's end (every later month is a term end
  too; ``survival_month`` says which).
- **Contract rule** (``survival_at_risk``): a term contract (``P > 1``) is at risk only in its term-end
  months; any other contract (monthly, or billing period unknown) is at risk every month. The model's
  hazard is 0 where a row is not at risk. The later term ends assume a renewal on the same term: a contract
  switched at renewal to a shorter term breaks the rule (its churn is counted, see below).
- **Event.** The first churn event (the labels' definition, :func:`churnml.dataset.labels.churn_events`)
  on or after ``c``; its month ``k*`` (none when beyond ``H``).
- **Censoring.** Month ``k`` is observed at a censoring date ``t`` iff ``c + k months + g <= t`` (its end
  plus the grace period in which a late renewal would undo a churn, as for the 90-day labels). Training
  uses ``t`` = the data end, or the test start for the out-of-time evaluation (no outcome after it is used).
- **Training rows**: months ``k <= min(k*, last observed month)`` that are at risk or hold the event (an
  event in a month the rule calls safe is kept, so no event is lost; such data break the rule and are
  counted in the stage's metrics). ``event = 1`` on month ``k*``.
"""

from __future__ import annotations

import numpy as np
import pandas as pd

from churnml.contract.schemas import BILLING_PERIOD_MONTHS
from churnml.dataset.labels import churn_events
from churnml.errors import ChurnmlError
from churnml.names import KEYS

MONTH = "survival_month"
RENEWAL = "survival_renewal_month"
AT_RISK = "survival_at_risk"
EVENT = "event"
BILLING = "contract_billing_period"
DAYS_TO_RENEWAL = "contract_days_to_renewal"
DESIGN_COLUMNS = (MONTH, RENEWAL)  # what the rows add to the features as model inputs


def month_end(cutoffs: pd.Series, k: int) -> pd.Series:
    """The first day after month ``k`` of each cutoff: ``cutoff + k`` calendar months."""
    return pd.to_datetime(cutoffs).astype("datetime64[us]") + pd.DateOffset(months=int(k))


def renewal_month(features: pd.DataFrame, horizon: int) -> np.ndarray:
    """Month (1..horizon+1) holding each row's scheduled term end; horizon+1 when beyond, 0 when unknown."""
    if DAYS_TO_RENEWAL not in features.columns:
        return np.zeros(len(features), dtype=np.int64)
    days = pd.to_numeric(features[DAYS_TO_RENEWAL]).to_numpy(dtype="float64", na_value=np.nan)
    cut = pd.to_datetime(features["cutoff"]).astype("datetime64[us]")
    end = cut + pd.to_timedelta(np.nan_to_num(days), unit="D")
    month = np.ones(len(features), dtype=np.int64)
    for k in range(1, horizon + 1):
        month += (end >= month_end(cut, k)).to_numpy()
    return np.where(np.isnan(days), 0, month)


def term_months(features: pd.DataFrame) -> np.ndarray:
    """Each row's contract term in months (``BILLING_PERIOD_MONTHS``); 1 when monthly or unknown."""
    if BILLING not in features.columns:
        return np.ones(len(features), dtype=np.int64)
    term = features[BILLING].astype("object").map(BILLING_PERIOD_MONTHS)
    return term.fillna(1).to_numpy(dtype=np.int64)


def term_end_in(renewal: np.ndarray, term: np.ndarray, k: int) -> np.ndarray:
    """Whether month ``k`` holds a scheduled term end: the running one (month ``renewal``) or, for a term of
    more than a month, one ``term`` months after another (the same term renewed)."""
    later = (term > 1) & (renewal > 0) & (k > renewal) & ((k - renewal) % np.maximum(term, 1) == 0)
    return (renewal == k) | later


def at_risk_in(renewal: np.ndarray, term: np.ndarray, k: int) -> np.ndarray:
    """The contract rule in month ``k``: a term contract only in its term-end months; any other every month
    (monthly, billing period or term end unknown)."""
    return (term <= 1) | (renewal == 0) | term_end_in(renewal, term, k)


def month_design(
    features: pd.DataFrame, k: int, horizon: int, renewal: np.ndarray | None = None
) -> pd.DataFrame:
    """Month ``k`` of every feature row: the features, ``survival_month``, its renewal flag and the rule.

    Only the features row is read, so the design is point in time whenever the features are.

    Args:
        features: feature rows (keys, features).
        k: the month, 1..horizon.
        horizon: months followed.
        renewal: :func:`renewal_month` of ``features`` when already computed.

    Returns:
        The feature columns plus ``survival_month``, ``survival_renewal_month`` (0/1 floats) and
        ``survival_at_risk`` (bool), in ``features``' order (index reset).
    """
    if horizon < 1:
        raise ChurnmlError(f"survival.horizon_months must be at least 1 (got {horizon})")
    missing = [c for c in KEYS if c not in features.columns]
    if missing:
        raise ChurnmlError(f"features: missing key column(s) {', '.join(missing)}")
    r = renewal_month(features, horizon) if renewal is None else renewal
    term = term_months(features)
    out = features.reset_index(drop=True).copy()
    out[MONTH] = float(k)
    out[RENEWAL] = term_end_in(r, term, k).astype("float64")
    out[AT_RISK] = at_risk_in(r, term, k)
    return out


def design(features: pd.DataFrame, horizon: int) -> pd.DataFrame:
    """Every (feature row, month 1..horizon), month-major: :func:`month_design` of each month, stacked."""
    r = renewal_month(features, horizon)
    return pd.concat(
        [month_design(features, k, horizon, r) for k in range(1, horizon + 1)], ignore_index=True
    )


def outcomes(
    keys: pd.DataFrame,
    subscriptions: pd.DataFrame,
    grace_days: int,
    horizon: int,
    censor_at: pd.Timestamp | str,
) -> pd.DataFrame:
    """Per (account, cutoff): the event month ``k*`` (0 when none within the horizon) and months observed.

    Args:
        keys: account_id and cutoff rows.
        subscriptions: the subscriptions table (validated).
        grace_days: the labels' grace period.
        horizon: months followed.
        censor_at: the censoring date (the data end, or the test start).

    Returns:
        account_id, cutoff, ``event_month`` (int, 0 = no event within the horizon) and ``observed_months``
        (0..horizon: months whose end plus grace lies on or before ``censor_at``), in ``keys``' order.
        An event month beyond ``observed_months`` is not known at ``censor_at``: ``event_month`` is 0 then.
    """
    frame = pd.DataFrame(
        {
            "account_id": keys["account_id"].astype(str).to_numpy(),
            "cutoff": pd.to_datetime(keys["cutoff"]).astype("datetime64[us]").to_numpy(),
        }
    )
    censor = pd.Timestamp(censor_at)
    grace = pd.Timedelta(days=int(grace_days))
    observed = np.zeros(len(frame), dtype=np.int64)
    for k in range(1, horizon + 1):
        observed += (month_end(frame["cutoff"], k) + grace <= censor).to_numpy()
    events = churn_events(subscriptions, grace_days)
    frame["_row"] = np.arange(len(frame))
    # the first event on or after the cutoff: as-of merge on the event date
    left = frame.sort_values("cutoff")
    right = events.rename(columns={"churn_date": "cutoff_event"}).sort_values("cutoff_event")
    right["cutoff"] = right["cutoff_event"]
    first = pd.merge_asof(left, right, on="cutoff", by="account_id", direction="forward")
    first = first.sort_values("_row")
    event_day = first["cutoff_event"]
    month = np.zeros(len(frame), dtype=np.int64)
    for k in range(horizon, 0, -1):
        inside = (event_day < month_end(first["cutoff"], k)).to_numpy() & event_day.notna().to_numpy()
        month = np.where(inside, k, month)
    month = np.where(month <= observed, month, 0)
    return pd.DataFrame(
        {
            "account_id": frame["account_id"],
            "cutoff": frame["cutoff"],
            "event_month": month,
            "observed_months": observed,
        }
    )


def training_rows(features: pd.DataFrame, outcome: pd.DataFrame, horizon: int) -> pd.DataFrame:
    """The rows a hazard model learns from: months at risk (or holding the event) up to event or censoring.

    Built month by month, keeping only those rows (the full design would be ``horizon`` times the features).

    Args:
        features: feature rows.
        outcome: :func:`outcomes` of the same feature rows, in the same order.
        horizon: months followed.

    Returns:
        :func:`month_design` rows kept, month-major, with an int ``event`` column.
    """
    if len(features) != len(outcome):
        raise ChurnmlError("survival rows: the features and the outcomes describe different rows")
    base = features.reset_index(drop=True)
    r = renewal_month(base, horizon)
    ev = outcome["event_month"].to_numpy()
    last = np.where(ev > 0, ev, outcome["observed_months"].to_numpy())
    term = term_months(base)
    parts = []
    for k in range(1, horizon + 1):
        event = (ev == k) & (ev > 0)
        at_risk = at_risk_in(r, term, k)
        keep = (k <= last) & (at_risk | event)
        if keep.any():
            part = month_design(base[keep], k, horizon, r[keep])
            part[EVENT] = event[keep].astype(int)
            parts.append(part)
    if not parts:
        return month_design(base.iloc[:0], 1, horizon).assign(**{EVENT: pd.Series(dtype=int)})
    return pd.concat(parts, ignore_index=True)


def spells(outcome: pd.DataFrame) -> pd.DataFrame:
    """One survival spell per (account, cutoff) with at least one observed month: duration and event.

    ``duration`` is the event month, or the months observed when no event was seen (censored).
    """
    seen = outcome[(outcome["observed_months"] > 0)].copy()
    seen["event"] = seen["event_month"] > 0
    seen["duration"] = np.where(seen["event"], seen["event_month"], seen["observed_months"]).astype(float)
    return seen.drop(columns=["event_month", "observed_months"]).reset_index(drop=True)
