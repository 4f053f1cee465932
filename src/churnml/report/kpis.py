"""Portfolio KPIs, monthly from the subscriptions, and whether a final month departs from its history.

ARR = 12 x MRR of the active subscriptions on a day; a month's cohort = the accounts with ARR on the day
before it starts:

- logo churn rate: cohort accounts with a churn event in the month / cohort accounts; a churn event is the
  label's (an end date with no subscription active that day and none starting within the grace period);
- GRR (gross revenue retention): sum over the cohort of min(ARR at month end, ARR at start) / ARR at start,
  churned accounts counting 0 at the end (so contraction and churn lower it, expansion cannot raise it);
- NRR (net revenue retention): sum over the cohort of ARR at month end / ARR at start (expansion counts);
- ARR: total ARR on the last day of the month.

A month is *final* once its end plus the grace period lies before the data end; later months are provisional
(a lapsed account may still renew). "Knowing what normal looks like" (:func:`flag_abnormal`): a final month
is abnormal when it departs from the median of the 12 final months before it, read as a loss (churn rate,
1 - GRR, 1 - NRR): the loss is more than 1.5 x its median (materially worse) and more than 2 robust standard
deviations (1.4826 x MAD) above it (statistically worse).
"""

from __future__ import annotations

from typing import Any

import numpy as np
import pandas as pd

from churnml.errors import ChurnmlError

KPI_COLUMNS = ["logo_churn_rate", "grr", "nrr"]
# Direction in which a KPI going is bad: +1 up is bad (churn), -1 down is bad (retention).
_BAD_DIRECTION = {"logo_churn_rate": 1, "grr": -1, "nrr": -1}
_MAD_TO_SD = 1.4826
_MAD_FLOOR = 0.001  # 0.1 percentage point: a perfectly flat history must not make every wobble "abnormal"
_LOSS_FLOOR = 0.01  # below a 1% median loss, "materially worse" means at least 0.5 percentage point worse


# ------------------------------------------------------------------------------------------------- KPIs


def _arr_by_account(subs: pd.DataFrame, day: pd.Timestamp) -> pd.Series:
    active = (subs["start_date"] <= day) & (subs["end_date"].isna() | (subs["end_date"] > day))
    return subs.loc[active].groupby("account_id")["arr"].sum()


def churn_events(subscriptions: pd.DataFrame, grace_days: int = 30) -> pd.DataFrame:
    """Churn event dates per account, as the labels define them.

    An end date ``e`` is a churn event when no subscription of the account is active on ``e`` and none starts
    within ``[e, e + grace_days]``.

    Returns:
        ``account_id``, ``churn_date`` (one row per event).
    """
    subs = _subscriptions(subscriptions)
    ends = subs.loc[subs["end_date"].notna(), ["account_id", "end_date"]].drop_duplicates()
    pairs = ends.merge(subs[["account_id", "start_date"]].assign(other_end=subs["end_date"]), on="account_id")
    e = pairs["end_date"]
    active = (pairs["start_date"] <= e) & (pairs["other_end"].isna() | (pairs["other_end"] > e))
    restart = (pairs["start_date"] >= e) & (pairs["start_date"] <= e + pd.Timedelta(days=grace_days))
    saved = (active | restart).groupby([pairs["account_id"], pairs["end_date"]]).any()
    events = (
        saved[~saved].reset_index()[["account_id", "end_date"]].rename(columns={"end_date": "churn_date"})
    )
    return events.sort_values(["account_id", "churn_date"]).reset_index(drop=True)


def _subscriptions(subscriptions: pd.DataFrame) -> pd.DataFrame:
    need = ["account_id", "start_date", "end_date", "mrr"]
    missing = [c for c in need if c not in subscriptions.columns]
    if missing:
        raise ChurnmlError(f"portfolio KPIs: subscriptions lack column(s) {', '.join(missing)}")
    return pd.DataFrame(
        {
            "account_id": subscriptions["account_id"].astype("str"),
            "start_date": pd.to_datetime(subscriptions["start_date"]).astype("datetime64[us]"),
            "end_date": pd.to_datetime(subscriptions["end_date"]).astype("datetime64[us]"),
            "arr": pd.to_numeric(subscriptions["mrr"]).astype(float) * 12,
        }
    )


def portfolio_kpis(
    subscriptions: pd.DataFrame, months: int = 24, *, as_of: Any = None, grace_days: int = 30
) -> pd.DataFrame:
    """Monthly portfolio KPIs (module docstring) for the last ``months`` complete months, with abnormal flags.

    Args:
        subscriptions: The contract table (account_id, start_date, end_date exclusive, mrr).
        months: How many complete calendar months to report.
        as_of: The data end (exclusive); months end on or before it. Default: the latest date in the data.
        grace_days: A renewal within this many days of an end is not churn (the labels' grace period).

    Returns:
        One row per month: ``month`` (first day), ``accounts_start``, ``churned_accounts``, ``logo_churn_rate``,
        ``arr_start``, ``churned_arr``, ``contraction_arr``, ``expansion_arr``, ``new_arr``, ``arr`` (total at
        month end), ``grr``, ``nrr``, ``final``, plus :func:`flag_abnormal`'s columns.
    """
    subs = _subscriptions(subscriptions)
    if subs.empty:
        raise ChurnmlError("portfolio KPIs: the subscriptions table is empty")
    data_end = (
        pd.Timestamp(as_of).as_unit("us").normalize()
        if as_of is not None
        else max(
            subs["start_date"].max(),
            subs["end_date"].max() if subs["end_date"].notna().any() else subs["start_date"].max(),
        )
    )
    last = data_end.to_period("M") - 1  # the latest month whose (exclusive) end is on or before the data end
    first_data = subs["start_date"].min().to_period("M") + 1  # the first month with a full cohort before it
    periods = [p for p in pd.period_range(end=last, periods=months, freq="M") if p >= first_data]
    events = churn_events(subscriptions, grace_days)
    rows = []
    for period in periods:
        start = period.to_timestamp().as_unit("us")
        end = (period + 1).to_timestamp().as_unit("us")
        before = _arr_by_account(subs, start - pd.Timedelta(days=1))
        before = before[before > 0]
        after_all = _arr_by_account(subs, end - pd.Timedelta(days=1))
        churned_ids = set(
            events.loc[(events["churn_date"] >= start) & (events["churn_date"] < end), "account_id"]
        )
        churned_ids &= set(before.index)
        after = after_all.reindex(before.index, fill_value=0.0)
        # A lapse bridged by a renewal within the grace period is not churn: carry the renewed ARR.
        gaps = [a for a in after.index[after <= 0] if a not in churned_ids]
        for acct in gaps:
            later = subs[(subs["account_id"] == acct) & (subs["start_date"] >= end - pd.Timedelta(days=1))]
            if len(later):
                after[acct] = _arr_by_account(later, later["start_date"].min()).sum()
        after[list(churned_ids)] = 0.0
        arr_start = float(before.sum())
        churned_arr = float(before[list(churned_ids)].sum()) if churned_ids else 0.0
        kept = after.drop(index=list(churned_ids))
        base_kept = before.drop(index=list(churned_ids))
        contraction = float((base_kept - kept).clip(lower=0).sum())
        expansion = float((kept - base_kept).clip(lower=0).sum())
        new_arr = float(after_all.drop(index=before.index, errors="ignore").sum())
        rows.append(
            {
                "month": start,
                "accounts_start": len(before),
                "churned_accounts": len(churned_ids),
                "logo_churn_rate": len(churned_ids) / len(before) if len(before) else np.nan,
                "arr_start": arr_start,
                "churned_arr": churned_arr,
                "contraction_arr": contraction,
                "expansion_arr": expansion,
                "new_arr": new_arr,
                "arr": float(after_all.sum()),
                "grr": float(np.minimum(after, before).sum()) / arr_start if arr_start else np.nan,
                "nrr": float(after.sum()) / arr_start if arr_start else np.nan,
                "final": bool(end + pd.Timedelta(days=grace_days) <= data_end),
            }
        )
    if not rows:
        raise ChurnmlError(f"portfolio KPIs: no complete month with active accounts before {data_end.date()}")
    kpis = pd.DataFrame(rows).astype({"month": "datetime64[us]"})
    return flag_abnormal(kpis)


def flag_abnormal(
    kpis: pd.DataFrame, *, window: int = 12, ratio: float = 1.5, z: float = 2.0, min_history: int = 6
) -> pd.DataFrame:
    """Add, per KPI, its trailing median, robust z-score and an abnormal flag (module docstring).

    Each KPI is judged as a loss: the churn rate itself, ``1 - GRR``, ``1 - NRR``. A final month is abnormal
    when its loss exceeds the median loss of the ``window`` final months before it (at least ``min_history``)
    by more than ``ratio - 1`` times that median (materially worse) AND by more than ``z`` robust standard
    deviations (1.4826 x MAD; statistically worse).

    Returns:
        A copy with ``<kpi>_median_12m`` (the KPI's own trailing median), ``<kpi>_robust_z`` (signed in the
        KPI's own direction) and ``<kpi>_abnormal`` for logo_churn_rate, grr and nrr.
    """
    out = kpis.sort_values("month").reset_index(drop=True)
    final = out["final"].to_numpy(bool) if "final" in out else np.ones(len(out), bool)
    for col in KPI_COLUMNS:
        sign = _BAD_DIRECTION[col]
        values = out[col].to_numpy(float)
        loss = values if sign > 0 else 1.0 - values
        med = np.full(len(out), np.nan)
        rz = np.full(len(out), np.nan)
        flag = np.zeros(len(out), bool)
        for i in range(len(out)):
            history = loss[:i][final[:i]]
            history = history[np.isfinite(history)][-window:]
            if not final[i] or len(history) < min_history or not np.isfinite(loss[i]):
                continue
            m = float(np.median(history))
            mad = max(float(np.median(np.abs(history - m))) * _MAD_TO_SD, _MAD_FLOOR)
            excess = loss[i] - m
            med[i] = m if sign > 0 else 1.0 - m
            rz[i] = sign * excess / mad
            flag[i] = excess > (ratio - 1) * max(abs(m), _LOSS_FLOOR) and excess / mad > z
        out[f"{col}_median_12m"] = med
        out[f"{col}_robust_z"] = rz
        out[f"{col}_abnormal"] = flag
    return out


def weekly_usage(
    usage: pd.DataFrame,
    *,
    as_of: Any,
    metric: str = "active_users",
    weeks: int = 26,
    accounts: list[str] | None = None,
) -> pd.DataFrame:
    """Weekly average of a daily usage metric for the ``weeks`` full weeks before ``as_of`` (point in time).

    Week ``k`` (0 = the latest) covers ``[as_of - 7(k+1), as_of - 7k)`` days; a missing day counts 0 (the
    usage contract), so the value is the week's sum / 7.

    Args:
        accounts: every account with the metric at any time (default: those in ``usage``), when ``usage``
            holds only the weeks' rows.

    Returns:
        ``account_id``, ``week_start``, ``value``: every account with the metric, every week (zeros included).
    """
    for col in ("account_id", "date", "metric", "value"):
        if col not in usage.columns:
            raise ChurnmlError(f"weekly_usage: usage lacks column {col!r}")
    cutoff = pd.Timestamp(as_of).as_unit("us").normalize()
    first = cutoff - pd.Timedelta(days=7 * weeks)
    dates = pd.to_datetime(usage["date"]).astype("datetime64[us]")
    sel = (usage["metric"] == metric) & (dates >= first) & (dates < cutoff)
    rows = usage.loc[sel]
    k = ((cutoff - dates[sel]).dt.days - 1) // 7  # 0 = the week just before the cutoff
    sums = rows.groupby([rows["account_id"].astype("str"), k.rename("k")])["value"].sum() / 7.0
    if accounts is None:  # else given: every account with the metric, read beside the weeks' rows
        accounts = sorted(usage.loc[usage["metric"] == metric, "account_id"].astype("str").unique())
    full = pd.MultiIndex.from_product([accounts, range(weeks)], names=["account_id", "k"])
    sums = sums.reindex(full, fill_value=0.0).reset_index()
    sums["week_start"] = cutoff - pd.to_timedelta(7 * (sums["k"] + 1), unit="D")
    out = sums[["account_id", "week_start", "value"]].sort_values(["account_id", "week_start"])
    return out.astype({"week_start": "datetime64[us]"}).reset_index(drop=True)
