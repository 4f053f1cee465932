"""This week's call list per CSM and for the team, and what changed since the previous scoring.

The ranking rule (the README states it too): an account is a candidate when its risk tier is above the lowest
one, or its risk rose by at least ``calls.rise_points`` since the previous scoring. Its **priority** is its
expected ARR at risk (ARR x churn probability) times an urgency factor: x2 when its annual or multi-year
term ends within ``calls.renewal_soon_days`` at elevated risk, x1.5 when its risk rose by ``rise_points`` or more or it moved
up a tier since the previous scoring (both: x3). "Elevated risk" for a renewal means a churn probability of
at least the churn model's validation base rate. Ties go to the higher churn probability, then the account
id. Each named CSM gets the ``capacity_per_csm`` candidates of highest priority among their accounts; the
accounts without a CSM form one pooled queue of ``pooled_capacity``. The team list is every selected call,
by priority.

Each call carries one line saying why to call now and a play: a renewal within ``renewal_soon_days`` at
elevated risk (at least the base rate) gets the renewal-rescue play, every other call the tier's play for
its touch model.
"""

from __future__ import annotations

import json
from collections.abc import Mapping

import numpy as np
import pandas as pd

from churnml.config import CallListConfig
from churnml.contract.tables import CALL_LIST_COLUMNS
from churnml.errors import ChurnmlError

CALL_LIST_ORDER = [c.name for c in CALL_LIST_COLUMNS]
POOLED = "pooled"  # the csm_id of calls for accounts without a named CSM
URGENCY_RENEWAL = 2.0
URGENCY_RISE = 1.5
MONTHLY = "monthly"


def _reasons(text: object, direction: str = "raises") -> list[str]:
    if not isinstance(text, str) or not text:
        return []
    return [str(i["reason"]) for i in json.loads(text) if i.get("direction") == direction]


def previous_scores(history: pd.DataFrame, as_of: pd.Timestamp) -> pd.DataFrame:
    """The scores of the latest as-of before ``as_of`` (one row per account; empty when there is none).

    When several model versions scored that date, the most recently scored rows win.
    """
    if history is None or history.empty:
        return pd.DataFrame(columns=["account_id", "as_of", "churn_probability", "risk_tier", "top_reasons"])
    days = pd.to_datetime(history["as_of"]).dt.normalize()
    earlier = history[days < pd.Timestamp(as_of).normalize()]
    if earlier.empty:
        return earlier.iloc[0:0]
    latest = pd.to_datetime(earlier["as_of"]).dt.normalize().max()
    rows = earlier[pd.to_datetime(earlier["as_of"]).dt.normalize() == latest]
    if "scored_at" in rows:
        rows = rows.sort_values("scored_at")
    return rows.drop_duplicates("account_id", keep="last").reset_index(drop=True)


def changes_since(
    current: pd.DataFrame, previous: pd.DataFrame, tier_order: Mapping[str, int]
) -> pd.DataFrame:
    """Per current account: its risk change and tier move since ``previous``, and the reasons new since then.

    Args:
        current: this scoring's rows (``account_id``, ``churn_probability``, ``risk_tier``, ``top_reasons``).
        previous: :func:`previous_scores` (empty: no history; every change is then missing).
        tier_order: tier -> rank, 0 the highest (critical).

    Returns:
        ``account_id``, ``previous_as_of``, ``previous_probability``, ``risk_change`` (probability units,
        NaN without history), ``previous_tier``, ``tier_move`` (``up``/``down``/``same``/``new``; ``""``
        without history), ``new_reasons`` (risk-raising sentences absent from the previous list).
    """
    out = current[["account_id", "churn_probability", "risk_tier"]].copy()
    out["account_id"] = out["account_id"].astype(str)
    cur_reasons = current["top_reasons"] if "top_reasons" in current else pd.Series([None] * len(current))
    if previous is None or previous.empty:
        return out.assign(
            previous_as_of=pd.NaT,
            previous_probability=np.nan,
            risk_change=np.nan,
            previous_tier="",
            tier_move="",
            new_reasons=[[] for _ in range(len(out))],
        ).drop(columns=["churn_probability", "risk_tier"])
    prev = previous.assign(account_id=previous["account_id"].astype(str)).set_index("account_id")
    p_prev = out["account_id"].map(prev["churn_probability"].astype(float))
    t_prev = out["account_id"].map(prev["risk_tier"].astype(str))
    r_prev = out["account_id"].map(prev["top_reasons"]) if "top_reasons" in prev else None
    rank_now = out["risk_tier"].map(tier_order)
    rank_prev = t_prev.map(tier_order)
    move = np.select(
        [t_prev.isna(), rank_now < rank_prev, rank_now > rank_prev], ["new", "up", "down"], default="same"
    )
    new_reasons = []
    for i, text in enumerate(cur_reasons.to_numpy()):
        before = (
            set(_reasons(r_prev.iloc[i])) if r_prev is not None and t_prev.iloc[i] == t_prev.iloc[i] else None
        )
        now = _reasons(text)
        new_reasons.append([] if before is None else [r for r in now if r not in before])
    return pd.DataFrame(
        {
            "account_id": out["account_id"].to_numpy(),
            "previous_as_of": pd.to_datetime(previous["as_of"]).max().normalize(),
            "previous_probability": p_prev.to_numpy(float),
            "risk_change": (out["churn_probability"].astype(float) - p_prev).to_numpy(float),
            "previous_tier": t_prev.fillna("").to_numpy(),
            "tier_move": move,
            "new_reasons": new_reasons,
        }
    )


def priority(arr_at_risk: np.ndarray, renewal_soon: np.ndarray, rose: np.ndarray) -> np.ndarray:
    """The ranking rule's value of calling now: expected ARR at risk x urgency (see the module docstring)."""
    urgency = np.where(renewal_soon, URGENCY_RENEWAL, 1.0) * np.where(rose, URGENCY_RISE, 1.0)
    return np.asarray(arr_at_risk, dtype=float) * urgency


def _why(rec: Mapping, base_rate: float | None, soon: bool, rose: bool) -> str:
    risk = f"{rec['churn_probability'] * 100:.0f}% churn risk"
    if base_rate:
        risk += f" ({rec['churn_probability'] / base_rate:.1f}x the base rate)"
    if soon:
        head = f"Renews in {int(rec['days_to_renewal'])} days at {risk}"
    elif rose and np.isfinite(rec["risk_change"]):
        head = f"Risk up {rec['risk_change'] * 100:.1f} pts since last scoring to {risk}"
    else:
        head = f"{rec['risk_tier'].capitalize()} tier: {risk}, ${rec['arr_at_risk']:,.0f} ARR at risk"
    top = _reasons(rec.get("top_reasons"))
    return f"{head}; top reason: {top[0]}" if top else head


def call_list(
    scores: pd.DataFrame,
    accounts: pd.DataFrame,
    changes: pd.DataFrame,
    cfg: CallListConfig,
    *,
    tier_order: Mapping[str, int],
    base_rate: float | None = None,
) -> pd.DataFrame:
    """This week's calls: per CSM within capacity, ranked by :func:`priority` (the module docstring's rule).

    Args:
        scores: this scoring's rows (``account_id``, ``as_of``, ``churn_probability``, ``risk_tier``, ``arr``,
            ``arr_at_risk``, ``recommended_play``, ``top_reasons``, the model versions).
        accounts: per account ``account_id``, ``csm_id`` (empty: pooled), ``days_to_renewal``,
            ``billing_period`` (monthly terms never make a renewal urgent).
        changes: :func:`changes_since` output.
        cfg: the call list section.
        tier_order: tier -> rank, 0 the highest.
        base_rate: the churn model's validation base rate (quoted in the reason line).

    Returns:
        The ``weekly_call_list`` rows: ``account_id``, ``as_of``, ``csm_id``, ``rank`` (within the CSM's
        list), ``team_rank``, ``priority``, ``churn_probability``, ``risk_change``, ``risk_tier``, ``arr``,
        ``arr_at_risk``, ``days_to_renewal``, ``reason``, ``play``, ``due``, ``churn_model_version``,
        ``expansion_model_version``.
    """
    if cfg.capacity_per_csm < 0 or cfg.pooled_capacity < 0:
        raise ChurnmlError("scoring.calls: capacities must be >= 0")
    lowest = max(tier_order, key=tier_order.get)
    acc = accounts.assign(account_id=accounts["account_id"].astype(str)).drop_duplicates("account_id")
    extra = ["csm_id", "days_to_renewal", "billing_period", "risk_change", "tier_move"]
    df = scores.drop(columns=[c for c in extra if c in scores]).assign(
        account_id=scores["account_id"].astype(str)
    )
    df = df.merge(
        acc[["account_id", "csm_id", "days_to_renewal", "billing_period"]], on="account_id", how="left"
    )
    df = df.merge(changes[["account_id", "risk_change", "tier_move"]], on="account_id", how="left")
    days = pd.to_numeric(df["days_to_renewal"], errors="coerce").to_numpy(float)
    term = df["billing_period"].astype("string").fillna("").to_numpy()
    elevated = df["risk_tier"].astype(str).to_numpy() != lowest
    # a renewal is urgent at elevated risk: at least the base rate (the tier above the lowest without one)
    at_least_base = df["churn_probability"].to_numpy(float) >= base_rate if base_rate else elevated
    soon = (
        at_least_base & (term != MONTHLY) & np.isfinite(days) & (days >= 0) & (days <= cfg.renewal_soon_days)
    )
    change = pd.to_numeric(df["risk_change"], errors="coerce").to_numpy(float)
    rose = (np.nan_to_num(change, nan=0.0) >= cfg.rise_points) | (df["tier_move"].to_numpy() == "up")
    df = df.assign(
        priority=priority(df["arr_at_risk"].to_numpy(float), soon, rose),
        _soon=soon,
        _rose=rose,
        csm_id=df["csm_id"].astype("string").fillna("").replace("", POOLED).astype(str),
    )
    df = df[elevated | rose]
    df = df.sort_values(
        ["priority", "churn_probability", "account_id"], ascending=[False, False, True], kind="stable"
    )
    df["rank"] = df.groupby("csm_id").cumcount() + 1
    capacity = np.where(df["csm_id"] == POOLED, cfg.pooled_capacity, cfg.capacity_per_csm)
    df = df[df["rank"].to_numpy() <= capacity].reset_index(drop=True)
    df["team_rank"] = np.arange(1, len(df) + 1)
    as_of = pd.to_datetime(df["as_of"]).dt.normalize()
    renewal_days = pd.to_numeric(df["days_to_renewal"], errors="coerce")
    lead = np.where(
        df["_soon"], np.clip(renewal_days.fillna(cfg.due_days) - 1, 0, cfg.due_days), cfg.due_days
    )
    df["due"] = as_of + pd.to_timedelta(lead, unit="D")
    df["play"] = np.where(df["_soon"], cfg.renewal_rescue_play, df["recommended_play"].astype(str))
    df["reason"] = [
        _why(rec, base_rate, bool(s), bool(r))
        for rec, s, r in zip(df.to_dict("records"), df["_soon"], df["_rose"], strict=True)
    ]
    return df[CALL_LIST_ORDER].reset_index(drop=True)
