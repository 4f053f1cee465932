"""The default data: a synthetic B2B SaaS portfolio, its contract tables and its ground truth.

Kept whole (about 1,300 lines): one generative model whose named parameters, at the top, are read by every
part of it (state, truth, chunks, observable tables); split, they and the chunk state would travel between modules.
"""

# How it works. Every account carries a monthly health: the sum of named components (onboarding, adoption,
# return on investment, sponsor changes, support pain, sentiment) plus an unobservable monthly shock. The
# tables reflect the components with noise: daily usage follows adoption, seat utilisation and the
# onboarding ramp; contacts show sponsors and champions leaving; tickets show support pain; NPS answers show
# sentiment. Churn is decided at contract decision points (each monthly boundary, the end of an annual term)
# with a probability from the health of that month; expansion is likelier with high utilisation, growing
# demand and good health. The ground truth (never read by feature code) holds, per account and monthly
# cutoff, the true probabilities of a churn event and of an expansion within the label horizon, computed by
# Monte Carlo from the state at the cutoff, and per account the realised churn date and its dominant cause.
# Accounts are simulated in chunks of a fixed size seeded from (seed, chunk index): the output depends on
# the configuration only, never on memory.

from __future__ import annotations

import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pandas as pd
import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.parquet as pq

from churnml.config import SimulatorConfig, check_bounds
from churnml.contract.schemas import CONTACT_ROLES, PRIORITIES, SEGMENTS, TABLES, TOUCH_MODELS
from churnml.errors import ChurnmlError

CHUNK_ACCOUNTS = 500  # fixed: the output must not depend on how many accounts fit in memory
SURVIVAL_TRUTH_MONTHS = 12  # data/truth/survival.parquet: true S(1..12) per account and monthly cutoff
MC_PATHS = 100  # paths per account and cutoff; churn is integrated out (Rao-Blackwellised)
_MC_BLOCK = 100  # accounts per Monte Carlo batch
METRICS = (
    "active_users",
    "logins",
    "api_calls",
    "feature_dashboards",
    "feature_reports",
    "feature_automations",
)
PLANS = ("starter", "professional", "enterprise")
CAUSES = (
    "stalled_onboarding",
    "low_adoption",
    "poor_roi",
    "sponsor_left",
    "support_pain",
    "detractor_nps",
    "random",
)
# Feature families whose signals reflect each churn cause (for checking explanations against the truth).
CAUSE_FAMILIES: dict[str, tuple[str, ...]] = {
    "stalled_onboarding": ("lifecycle", "adoption"),
    "low_adoption": ("adoption", "usage"),
    "poor_roi": ("usage", "adoption"),
    "sponsor_left": ("contacts",),
    "support_pain": ("support",),
    "detractor_nps": ("nps",),
    "random": (),
}
TABLE_NAMES = tuple(TABLES)

# ---- the portfolio (per segment: enterprise, mid_market, smb)
_SEG_SHARE = np.array([0.17, 0.33, 0.50])
_SEATS_MEDIAN = np.array([150.0, 35.0, 6.0])
_SEATS_SIGMA = np.array([0.7, 0.6, 0.55])
_ANNUAL_SHARE = np.array([0.90, 0.55, 0.20])
_TOUCH_P = np.array([[0.92, 0.08, 0.0], [0.10, 0.85, 0.05], [0.0, 0.15, 0.85]])
_PLAN_P = np.array([[0.0, 0.30, 0.70], [0.20, 0.65, 0.15], [0.60, 0.38, 0.02]])
_PLAN_PRICE = np.array([18.0, 42.0, 85.0])  # list price per seat and month
_N_USERS = np.array([3, 2, 1])  # named user contacts besides sponsor, champion and admin
# fmt: off
_INDUSTRIES = np.array([
    "software", "retail", "healthcare", "financial_services", "manufacturing", "education", "media",
    "logistics", "professional_services", "public_sector"
])
# fmt: on
_INDUSTRY_P = np.array([0.22, 0.10, 0.10, 0.12, 0.10, 0.08, 0.07, 0.07, 0.09, 0.05])
_INDUSTRY_HEALTH = np.array([0.15, -0.15, 0.0, 0.05, -0.05, -0.1, -0.1, 0.0, 0.05, 0.1])
_REGIONS = np.array(["na", "emea", "apac", "latam"])
_REGION_P = np.array([0.45, 0.32, 0.15, 0.08])
# fmt: off
_NAME_A = np.array([
    "Acme", "Apex", "Blue", "Bright", "Cedar", "Crest", "Delta", "Echo", "Ember", "Falcon", "Granite",
    "Harbor", "Helix", "Iron", "Juniper", "Keystone", "Lumen", "Maple", "Nimbus", "North", "Oak", "Orbit",
    "Pine", "Quartz", "Raven", "Ridge", "Silver", "Summit", "Terra", "Vertex", "Willow", "Zenith"
])
_NAME_B = np.array([
    "Analytics", "Bank", "Bio", "Capital", "Cloud", "Data", "Dynamics", "Energy", "Foods", "Freight",
    "Health", "Industries", "Labs", "Learning", "Logistics", "Media", "Networks", "Partners", "Retail",
    "Robotics", "Solutions", "Systems", "Software", "Studio", "Ventures", "Works"
])
# fmt: on
_NAME_C = np.array(["Inc", "LLC", "Ltd", "GmbH", "Group", "Corp", "Co", "SA", "BV", "PLC"])

# ---- arrivals and onboarding
_NEW_SHARE = 0.2  # accounts whose first contract starts inside the window
_BURN_IN_MONTHS = 72  # longest tenure before the window
_STALL_P = 0.22  # onboardings that stall
_STALL_RAMP = 0.12
_UNSTALL_P = 0.12
_RAMP_FLOOR = 0.04

# ---- latent dynamics (monthly)
_PHI_A, _SD_A, _SD_MU_A = 0.85, 0.25, 0.50  # adoption AR(1) around an account mean
_SD_D = 0.03  # demand (people who would use the product), log random walk with drift g
_G_MEAN, _G_SD = 0.003, 0.012
_MOM_DECAY = 0.6
_PHI_S, _SD_S = 0.92, 0.2  # sentiment AR(1)
_SD_EPS = 0.5  # unobservable, unpredictable monthly shock
_SPONSOR_LEAVE_P, _SPONSOR_SHOCK = 0.012, 1.6
_CHAMPION_LEAVE_P, _CHAMPION_SHOCK = 0.015, 0.8
_SPONSOR_DECAY = 0.78
_SUPPORT_ON_P, _SUPPORT_OFF_P = 0.025, 0.30

# ---- health = base + industry + components
_HEALTH_BASE = np.array([0.5, 0.25, 0.0])
_W_ONBOARDING = 2.2
_W_ADOPTION = 1.0
_W_ROI, _ROI_REF, _ROI_CAP = 4.0, 0.65, 0.15
_W_SUPPORT = 1.2
_W_SENTIMENT = 0.8

# ---- decisions
_CHURN_A_MONTHLY = np.array([-4.7, -4.55, -4.35])
_CHURN_A_ANNUAL = np.array([-3.3, -3.05, -2.75])
_CHURN_B = 1.4
_RANDOM_CHURN_MONTHLY, _RANDOM_CHURN_ANNUAL = 0.0015, 0.015
_EXP_A, _EXP_UTIL, _EXP_UTIL_REF, _EXP_H, _EXP_MOM = -4.2, 8.0, 0.72, 0.5, 30.0
_EXP_MONTHLY, _EXP_RENEWAL, _EXP_MIDTERM = 0.0, 1.5, -0.7
_UPGRADE_P = 0.25
_CONTRACT_UTIL, _CONTRACT_P_MONTHLY, _CONTRACT_P_RENEWAL = 0.55, 0.08, 0.5
_LATE_RENEWAL_P = 0.12

# ---- observables
_SHARE0 = 1.2  # logit of the share of utilised seats active on a weekday, at adoption 0
_WEEKEND = np.array([1.0, 1.0, 1.0, 1.0, 1.0, 0.45, 0.3])
_API_P = 0.95  # accounts that use the API
_SURVEYED_P = 0.8
_PRIORITY_P = np.array([[0.35, 0.50, 0.12, 0.03], [0.10, 0.30, 0.40, 0.20]])  # base, support pain
_PRIORITIES = np.array(PRIORITIES)
_RESOLVE_HOURS = np.array([96.0, 48.0, 24.0, 8.0])
_CATEGORY_P = np.array([[0.35, 0.20, 0.10, 0.20, 0.15, 0.0], [0.0, 0.50, 0.0, 0.0, 0.15, 0.35]])
_CATEGORIES = np.array(["how_to", "bug", "billing", "feature_request", "integration", "performance"])

_PENDING, _ACTIVE, _CHURNED = 0, 1, 2
# the state _advance reads and writes (the rest is bookkeeping of the realised path)
_MC_FIELDS = (
    "seg",
    "annual",
    "d0",
    "start_month",
    "start_day",
    "h0",
    "churn_a",
    "p_rand",
    "p_contract",
    "muA",
    "g",
    "ttfv",
    "tau",
    "disc",
    "status",
    "seats",
    "plan",
    "mrr",
    "term_end",
    "row_start",
    "gap_lo",
    "gap_hi",
    "log_d",
    "mom",
    "A",
    "S",
    "spon",
    "spon_back",
    "champ_back",
    "sup",
    "stalled",
    "onb_origin",
    "H",
)
_NONE = -(2**40)  # no day / no month (days and months before the window are negative)
_END, _NEWROW = 0, 1


@dataclass(frozen=True)
class _Calendar:
    """Days are integer offsets from the start date; months are indexed from 0 = the first window month."""

    origin: np.datetime64
    months: int
    days: int  # days in the window: the data ends the day before day ``days``
    first: int  # month index of ms[0]
    ms: np.ndarray  # first day of each month, first .. months + 30
    pos: np.ndarray  # position in ms of the month of each day from ms[0] on

    def start(self, k: int) -> int:
        return int(self.ms[k - self.first])

    def month_of(self, day: np.ndarray) -> np.ndarray:
        return self.pos[day - self.ms[0]] + self.first

    def month_start(self, day: np.ndarray) -> np.ndarray:
        return self.ms[self.pos[day - self.ms[0]]]

    def add_months(self, day: np.ndarray, n: int) -> np.ndarray:
        """The same day of the month ``n`` months later (days of the month are kept <= 28)."""
        pos = self.pos[day - self.ms[0]]
        return self.ms[pos + n] + (day - self.ms[pos])

    def dates(self, day: np.ndarray) -> np.ndarray:
        """Midnight of each day, as datetime64[us]."""
        origin_us = self.origin.astype("datetime64[us]").astype(np.int64)
        return (origin_us + day.astype(np.int64) * 86_400_000_000).view("datetime64[us]")


def _calendar(cfg: SimulatorConfig) -> _Calendar:
    check_bounds(cfg, "simulator.")  # the schema's bounds (also checked where params.yaml is loaded)
    try:
        origin = np.datetime64(cfg.start_date, "D")
    except ValueError:
        raise ChurnmlError(f"simulator.start_date: {cfg.start_date!r} is not a date (YYYY-MM-DD)") from None
    if origin != origin.astype("datetime64[M]").astype("datetime64[D]"):
        raise ChurnmlError(f"simulator.start_date: {cfg.start_date} must be the first day of a month")
    first = -_BURN_IN_MONTHS - 2
    month0 = origin.astype("datetime64[M]")
    months = month0 + np.arange(first, cfg.months + 30)
    ms = (months.astype("datetime64[D]") - origin).astype(np.int64)
    days = int(ms[cfg.months - first])
    pos = np.repeat(np.arange(ms.size - 1), np.diff(ms))
    return _Calendar(origin, cfg.months, days, first, ms, pos)


def _drift(cfg: SimulatorConfig, cal: _Calendar) -> tuple[int | None, float]:
    if not cfg.drift_date:
        return None, 0.0
    try:
        day = np.datetime64(cfg.drift_date, "D")
    except ValueError:
        raise ChurnmlError(f"simulator.drift_date: {cfg.drift_date!r} is not a date (YYYY-MM-DD)") from None
    return int((day - cal.origin).astype(np.int64)), float(cfg.drift_strength)


def _sigmoid(x: np.ndarray) -> np.ndarray:
    return 1.0 / (1.0 + np.exp(-x))


# ----------------------------------------------------------------------------------------------------------
# accounts and their latent state


def _init_state(rng: np.random.Generator, n: int, cal: _Calendar) -> dict[str, np.ndarray]:
    """Static attributes and the initial latent state of ``n`` accounts."""
    seg = rng.choice(3, size=n, p=_SEG_SHARE)
    annual = rng.random(n) < _ANNUAL_SHARE[seg]
    d0 = rng.integers(0, 28, size=n)
    new = rng.random(n) < _NEW_SHARE
    tenure = np.minimum(1 + rng.exponential(26.0, size=n), _BURN_IN_MONTHS).astype(np.int64)
    start_month = np.where(new, rng.integers(0, cal.months, size=n), -tenure)
    start_day = cal.ms[start_month - cal.first] + d0
    seats = np.maximum(1.0, np.round(_SEATS_MEDIAN[seg] * np.exp(_SEATS_SIGMA[seg] * rng.standard_normal(n))))
    plan = (rng.random(n)[:, None] > np.cumsum(_PLAN_P[seg], axis=1)).sum(axis=1)
    disc = np.exp(0.12 * rng.standard_normal(n))
    muA = _SD_MU_A * rng.standard_normal(n)
    # demand starts below what was bought: buyers over-provision
    log_d = np.log(seats) - np.abs(0.45 * rng.standard_normal(n)) - 0.05
    industry = rng.choice(len(_INDUSTRIES), size=n, p=_INDUSTRY_P)
    ttfv = np.exp(np.log(0.4) + 0.6 * rng.standard_normal(n))  # months to first value
    tau = np.exp(0.4 * rng.standard_normal(n))  # months of ramp after first value
    return {
        "seg": seg,
        "created": start_day - rng.integers(0, 46, size=n),
        "h0": _HEALTH_BASE[seg] + _INDUSTRY_HEALTH[industry],
        "churn_a": np.where(annual, _CHURN_A_ANNUAL[seg], _CHURN_A_MONTHLY[seg]),
        "p_rand": np.where(annual, _RANDOM_CHURN_ANNUAL, _RANDOM_CHURN_MONTHLY),
        "p_contract": np.where(annual, _CONTRACT_P_RENEWAL, _CONTRACT_P_MONTHLY),
        "annual": annual,
        "d0": d0,
        "start_month": start_month,
        "start_day": start_day,
        "industry": industry,
        "muA": muA,
        "g": _G_MEAN + _G_SD * rng.standard_normal(n),
        "ttfv": ttfv,
        "tau": tau,
        "disc": disc,
        "status": np.zeros(n, dtype=np.int8),
        "seats": seats,
        "plan": plan,
        "mrr": seats * _PLAN_PRICE[plan] * disc,
        "term_end": cal.add_months(start_day, 12),
        "row_start": start_day.copy(),
        "gap_lo": np.full(n, -(10**9)),
        "gap_hi": np.full(n, -(10**9)),
        "log_d": log_d,
        "mom": np.zeros(n),
        "A": muA + _SD_A / np.sqrt(1 - _PHI_A**2) * rng.standard_normal(n),
        "S": _SD_S / np.sqrt(1 - _PHI_S**2) * rng.standard_normal(n),
        "spon": np.zeros(n),
        "spon_back": np.full(n, _NONE),  # month a departed sponsor is replaced
        "champ_back": np.full(n, _NONE),
        "sup": np.zeros(n, dtype=bool),
        "stalled": rng.random(n) < _STALL_P,
        "onb_origin": start_month + d0 / 30.0,
        "H": np.zeros(n),
        "spon_seq": np.zeros(n, dtype=np.int64),
        "champ_seq": np.ones(n, dtype=np.int64),
        "next_seq": 3 + _N_USERS[seg],
        "spon_from": start_day.copy(),  # first day of the current sponsor (bookkeeping for NPS)
        "champ_from": start_day.copy(),
        "churn_day": np.full(n, _NONE),
        "cause": np.full(n, -1, dtype=np.int8),
    }


def _advance(
    st: dict[str, np.ndarray],
    k: int,
    cal: _Calendar,
    rng: np.random.Generator,
    mode: str,
    drift: tuple[int | None, float],
) -> dict[str, np.ndarray]:
    """Advance every account through month ``k`` in place; return what happened.

    Args:
        st: the state (mutated).
        k: month index.
        cal: the calendar.
        rng: random stream (the same number of draws whatever the state, so the stream stays aligned).
        mode: ``live`` samples churn; ``burn`` (history before the window) rescues would-be churners
            instead (accounts on the books at the start are the survivors); ``mc`` never churns and
            leaves churn to the caller's survival weights.
        drift: (first day of the changed behaviour or None, strength).
    """
    n = st["seg"].size
    ms0, ms1 = cal.start(k), cal.start(k + 1)
    ndays = ms1 - ms0
    z = rng.standard_normal((4, n), dtype=np.float32)
    # one uniform per event; where an event needs a second choice, the uniform rescaled below its
    # threshold is itself uniform (fewer draws: the Monte Carlo runs this millions of times)
    u = rng.random((8, n), dtype=np.float32)
    x = rng.random((6, n), dtype=np.float32) if mode != "mc" else None

    starting = (st["status"] == _PENDING) & (st["start_month"] == k)
    st["status"][starting] = _ACTIVE
    act = st["status"] == _ACTIVE

    # latent components
    st["A"] = st["muA"] + _PHI_A * (st["A"] - st["muA"]) + _SD_A * z[0]
    growth = act * (st["g"] + _SD_D * z[1])  # demand waits for the contract
    st["log_d"] = st["log_d"] + growth
    st["mom"] = _MOM_DECAY * st["mom"] + (1 - _MOM_DECAY) * growth  # recent growth, seen as usage trend
    st["S"] = _PHI_S * st["S"] + _SD_S * z[2]
    eps = _SD_EPS * z[3]
    sp_back = act & (st["spon_back"] == k)
    ch_back = act & (st["champ_back"] == k)
    sp_leave = act & (st["spon_back"] == _NONE) & (u[0] < _SPONSOR_LEAVE_P)
    ch_leave = act & (st["champ_back"] == _NONE) & (u[1] < _CHAMPION_LEAVE_P)
    st["spon"] = _SPONSOR_DECAY * st["spon"] - _SPONSOR_SHOCK * sp_leave - _CHAMPION_SHOCK * ch_leave
    st["spon_back"] = np.where(
        sp_leave,
        k + 1 + (u[0] / _SPONSOR_LEAVE_P * 4).astype(np.int64),
        np.where(sp_back, _NONE, st["spon_back"]),
    )
    st["champ_back"] = np.where(
        ch_leave,
        k + 1 + (u[1] / _CHAMPION_LEAVE_P * 4).astype(np.int64),
        np.where(ch_back, _NONE, st["champ_back"]),
    )
    st["sup"] = act & np.where(st["sup"], u[2] >= _SUPPORT_OFF_P, u[2] < _SUPPORT_ON_P)
    unstall = st["stalled"] & act & (u[3] < _UNSTALL_P)
    st["onb_origin"] = np.where(unstall, float(k), st["onb_origin"])
    st["stalled"] = st["stalled"] & ~unstall
    age = np.maximum(k + 1 - st["onb_origin"] - st["ttfv"], 0.0)
    ramp = np.where(st["stalled"], _STALL_RAMP, np.maximum(1 - np.exp(-age / st["tau"]), _RAMP_FLOOR))
    seats = st["seats"]
    demand = np.exp(st["log_d"])
    util = np.minimum(demand, seats) / seats

    # the components in the order of CAUSES
    contrib = [
        -_W_ONBOARDING * (1 - ramp),
        _W_ADOPTION * st["A"],
        _W_ROI * np.minimum(util - _ROI_REF, _ROI_CAP),
        st["spon"],
        -_W_SUPPORT * st["sup"],
        _W_SENTIMENT * st["S"],
        eps,
    ]
    health = st["h0"] + contrib[0] + contrib[1] + contrib[2] + contrib[3] + contrib[4] + contrib[5] + eps
    st["H"] = health

    # contract decision points in this month
    annual = st["annual"]
    bday = ms0 + st["d0"]
    dec_m = act & ~annual & (bday > st["start_day"])
    dec_a = act & annual & (st["term_end"] < ms1)
    dec = dec_m | dec_a
    day = np.where(annual, st["term_end"], bday)
    h_dec = health
    drift_day, strength = drift
    if drift_day is not None and strength:
        # after the drift, usage stops protecting accounts and support/sponsor/sentiment bite twice as hard
        shift = strength * (
            -(contrib[0] + contrib[1] + contrib[2]) + contrib[3] + contrib[4] + contrib[5] - 0.3
        )
        h_dec = np.where(day >= drift_day, health + shift, health)
    p_health = _sigmoid(st["churn_a"] - _CHURN_B * h_dec)
    p_rand = st["p_rand"]
    p_churn = np.where(dec, 1 - (1 - p_health) * (1 - p_rand), 0.0)

    churn = np.zeros(n, dtype=bool)
    if mode != "mc":
        rand_churn = dec & (x[0] < p_rand)
        churn = rand_churn | (dec & (x[1] < p_health))
        if mode == "live":
            st["status"][churn] = _CHURNED
            st["churn_day"][churn] = day[churn]
            largest = np.argmin(np.stack([c[churn] for c in contrib]), axis=0)
            st["cause"][churn] = np.where(rand_churn[churn], len(CAUSES) - 1, largest)
        else:  # a save before the window: the account is on the books at the start
            st["spon"][churn] = 0.0
            st["sup"][churn] = False
            st["stalled"][churn] = False
            st["S"][churn] = np.maximum(st["S"][churn], 0.0)
            # survivors are selected for fit: a saved account keeps the better of its traits and a fresh draw
            fresh = _SD_MU_A * rng.standard_normal(n)
            st["muA"][churn] = np.maximum(st["muA"][churn], fresh[churn])
            st["A"][churn] = np.maximum(st["A"][churn], st["muA"][churn])
            st["log_d"][churn] = np.maximum(st["log_d"][churn], np.log(0.8 * seats[churn]))
            churn = np.zeros(n, dtype=bool)

    # renewals, expansions, contractions
    cand_m = dec_m & ~churn
    cand_r = dec_a & ~churn
    cand_mid = act & annual & ~dec_a & (st["row_start"] < ms0)
    # buyers see licence utilisation: the share of seats in active use
    licence = util * ramp * _sigmoid(_SHARE0 + st["A"])
    e_logit = _EXP_A + _EXP_UTIL * (licence - _EXP_UTIL_REF) + _EXP_H * health + _EXP_MOM * st["mom"]
    e_logit = e_logit + np.where(cand_m, _EXP_MONTHLY, np.where(cand_r, _EXP_RENEWAL, _EXP_MIDTERM))
    p_expand = _sigmoid(e_logit)
    expand = (cand_m | cand_r | cand_mid) & (u[4] < p_expand)
    upgrade = expand & (st["plan"] < 2) & (u[4] < p_expand * _UPGRADE_P)
    seats_up = np.maximum(np.ceil(seats * 1.2), np.ceil(np.minimum(demand * 1.15, seats * 2)))
    target = np.maximum(1.0, np.ceil(demand * 1.15))
    contract = (cand_m | cand_r) & ~expand & (util < _CONTRACT_UTIL) & (u[5] < st["p_contract"])
    contract &= target <= np.floor(seats * 0.85)
    new_seats = np.where(expand & ~upgrade, seats_up, np.where(contract, target, seats))
    new_plan = st["plan"] + upgrade

    # late renewals: the new term starts a few days after the old one ended, on a day of the month <= 28
    late = cand_r & (u[6] < _LATE_RENEWAL_P)
    renew_day = day.copy()
    li = np.flatnonzero(late)
    if li.size:
        moved = day[li] + 3 + np.minimum(u[6][li] / _LATE_RENEWAL_P * 18, 17).astype(np.int64)
        first = cal.month_start(moved)
        renew_day[li] = np.where(moved - first > 27, cal.add_months(first, 1), moved)
    mid_day = ms0 + (u[7] * 28).astype(np.int64)
    change_day = np.where(cand_r, renew_day, np.where(cand_mid, mid_day, bday))
    newrow = cand_r | ((cand_m | cand_mid) & (expand | contract))
    st["gap_lo"] = np.where(late, day, st["gap_lo"])
    st["gap_hi"] = np.where(late, renew_day, st["gap_hi"])
    st["seats"] = np.where(newrow, new_seats, seats)
    st["plan"] = np.where(newrow, new_plan, st["plan"])
    st["mrr"] = np.where(newrow, st["seats"] * _PLAN_PRICE[st["plan"]] * st["disc"], st["mrr"])
    st["row_start"] = np.where(newrow, change_day, st["row_start"])
    ri = np.flatnonzero(annual & newrow)
    if ri.size:
        st["term_end"][ri] = cal.add_months(change_day[ri], 12)

    out = {
        "starting": starting,
        "dec": dec,
        "day": day,
        "p_churn": p_churn,
        "churn": churn,
        "expand": expand,
        "contract": contract,
        "newrow": newrow,
        "late": late,
        "change_day": change_day,
        "ramp": ramp,
        "util": util,
        "contrib": contrib,
    }
    if mode != "mc":
        # contacts: leave/arrival days inside the month, never before the contract started
        out["sp_leave"], out["ch_leave"], out["sp_back"], out["ch_back"] = (
            sp_leave,
            ch_leave,
            sp_back,
            ch_back,
        )
        out["leave_day_s"] = np.maximum(ms0 + (x[2] * ndays).astype(np.int64), st["start_day"])
        out["leave_day_c"] = np.maximum(ms0 + (x[3] * ndays).astype(np.int64), st["start_day"])
        out["back_day_s"] = ms0 + (x[4] * ndays).astype(np.int64)
        out["back_day_c"] = ms0 + (x[5] * ndays).astype(np.int64)
    return out


# ----------------------------------------------------------------------------------------------------------
# ground truth by Monte Carlo from the state at a cutoff


def _oracle(
    st: dict[str, np.ndarray],
    k: int,
    cal: _Calendar,
    rng: np.random.Generator,
    horizon: int,
    drift: tuple[int | None, float],
) -> tuple[np.ndarray, np.ndarray]:
    """P(churn event) and P(expansion and no churn) in [cutoff, cutoff + horizon) for every account of ``st``.

    Churn is never sampled: each path carries its probability of surviving every decision it meets
    (Rao-Blackwellisation), which is exact in expectation and much less noisy.
    """
    n = st["seg"].size
    p_churn, p_expand = np.zeros(n), np.zeros(n)
    end = cal.start(k) + horizon
    # blocks of a fixed size keep the arrays in cache (and the random stream independent of memory)
    for lo in range(0, n, _MC_BLOCK):
        hi = min(lo + _MC_BLOCK, n)
        mc = {key: np.repeat(st[key][lo:hi], MC_PATHS) for key in _MC_FIELDS}
        seats0, mrr0 = mc["seats"].copy(), mc["mrr"].copy()
        log_surv = np.zeros(mc["seg"].size)
        expanded = np.zeros(mc["seg"].size, dtype=bool)
        m = k
        while cal.start(m) < end:
            res = _advance(mc, m, cal, rng, "mc", drift)
            in_h = res["dec"] & (res["day"] < end)
            log_surv += np.where(in_h, np.log1p(-res["p_churn"]), 0.0)
            grew = (mc["seats"] >= 1.1 * seats0) | (mc["mrr"] >= 1.1 * mrr0)
            expanded |= res["newrow"] & (res["change_day"] < end) & grew
            m += 1
        surv = np.exp(log_surv).reshape(hi - lo, MC_PATHS)
        p_churn[lo:hi] = 1 - surv.mean(axis=1)
        p_expand[lo:hi] = (surv * expanded.reshape(hi - lo, MC_PATHS)).mean(axis=1)
    return p_churn, p_expand


def _oracle_survival(
    st: dict[str, np.ndarray],
    k: int,
    cal: _Calendar,
    rng: np.random.Generator,
    drift: tuple[int | None, float],
) -> np.ndarray:
    """The true survival curve of every account of ``st`` from the start of month ``k``: P(no churn event
    before the end of month t), t = 1..SURVIVAL_TRUTH_MONTHS (month t is calendar month k + t - 1, whose
    decisions all fall inside it). The same Rao-Blackwellised paths as :func:`_oracle`, in a pass of its
    own with its own random stream, so the 90-day truth stays what it was.
    """
    n = st["seg"].size
    surv = np.ones((n, SURVIVAL_TRUTH_MONTHS))
    for lo in range(0, n, _MC_BLOCK):
        hi = min(lo + _MC_BLOCK, n)
        mc = {key: np.repeat(st[key][lo:hi], MC_PATHS) for key in _MC_FIELDS}
        log_surv = np.zeros(mc["seg"].size)
        for t in range(SURVIVAL_TRUTH_MONTHS):
            res = _advance(mc, k + t, cal, rng, "mc", drift)
            log_surv += np.where(res["dec"], np.log1p(-res["p_churn"]), 0.0)
            surv[lo:hi, t] = np.exp(log_surv).reshape(hi - lo, MC_PATHS).mean(axis=1)
    return surv


# ----------------------------------------------------------------------------------------------------------
# one chunk


class _Log:
    """Column lists appended to month by month, concatenated once."""

    def __init__(self) -> None:
        self.cols: dict[str, list[np.ndarray]] = {}

    def add(self, mask: np.ndarray, **cols: np.ndarray | int | float) -> None:
        idx = np.flatnonzero(mask)
        if idx.size == 0:
            return
        for name, values in cols.items():
            arr = values[idx] if isinstance(values, np.ndarray) else np.full(idx.size, values)
            self.cols.setdefault(name, []).append(arr)
        self.cols.setdefault("acct", []).append(idx)

    def frame(self, names: tuple[str, ...]) -> dict[str, np.ndarray]:
        return {c: np.concatenate(self.cols[c]) if c in self.cols else np.zeros(0) for c in ("acct", *names)}


def _seq_within(acct: np.ndarray) -> np.ndarray:
    """0, 1, 2... within runs of equal (sorted) account indices."""
    if acct.size == 0:
        return acct.astype(np.int64)
    starts = np.r_[0, np.flatnonzero(np.diff(acct)) + 1]
    first = np.repeat(starts, np.diff(np.r_[starts, acct.size]))
    return np.arange(acct.size) - first


def _ids(prefix: str, num: np.ndarray, seq: np.ndarray | None = None, width: int = 3) -> pa.Array:
    parts = [pc.utf8_lpad(pa.array(num.astype(np.int64)).cast(pa.string()), 7, "0")]
    if seq is not None:
        parts.append(pc.utf8_lpad(pa.array(seq.astype(np.int64)).cast(pa.string()), width, "0"))
    return pc.binary_join_element_wise(prefix, *parts, "")


def _ts(cal: _Calendar, day: np.ndarray, rng: np.random.Generator, lo_h: float = 8.0, hi_h: float = 18.0):
    """Timestamps on the given days, at a random minute between lo_h and hi_h o'clock."""
    minutes = (60 * (lo_h + (hi_h - lo_h) * rng.random(day.size))).astype(np.int64)
    return cal.dates(day) + (minutes * 60_000_000).astype("timedelta64[us]")


_SCHEMAS = {
    "accounts": pa.schema(
        [
            ("account_id", pa.string()),
            ("account_name", pa.string()),
            ("segment", pa.string()),
            ("touch_model", pa.string()),
            ("industry", pa.string()),
            ("region", pa.string()),
            ("csm_id", pa.string()),
            ("created_date", pa.timestamp("us")),
        ]
    ),
    "subscriptions": pa.schema(
        [
            ("subscription_id", pa.string()),
            ("account_id", pa.string()),
            ("plan", pa.string()),
            ("billing_period", pa.string()),
            ("start_date", pa.timestamp("us")),
            ("end_date", pa.timestamp("us")),
            ("mrr", pa.float64()),
            ("seats", pa.int64()),
        ]
    ),
    "usage": pa.schema(
        [
            ("account_id", pa.string()),
            ("date", pa.timestamp("us")),
            ("metric", pa.string()),
            ("value", pa.float64()),
        ]
    ),
    "support_tickets": pa.schema(
        [
            ("ticket_id", pa.string()),
            ("account_id", pa.string()),
            ("created_at", pa.timestamp("us")),
            ("resolved_at", pa.timestamp("us")),
            ("priority", pa.string()),
            ("category", pa.string()),
            ("csat", pa.float64()),
        ]
    ),
    "nps_responses": pa.schema(
        [
            ("response_id", pa.string()),
            ("account_id", pa.string()),
            ("contact_id", pa.string()),
            ("responded_at", pa.timestamp("us")),
            ("score", pa.int64()),
        ]
    ),
    "csm_activities": pa.schema(
        [
            ("activity_id", pa.string()),
            ("account_id", pa.string()),
            ("occurred_at", pa.timestamp("us")),
            ("kind", pa.string()),
            ("csm_id", pa.string()),
        ]
    ),
    "contacts": pa.schema(
        [
            ("contact_id", pa.string()),
            ("account_id", pa.string()),
            ("role", pa.string()),
            ("start_date", pa.timestamp("us")),
            ("end_date", pa.timestamp("us")),
        ]
    ),
    "invoices": pa.schema(
        [
            ("invoice_id", pa.string()),
            ("account_id", pa.string()),
            ("issued_date", pa.timestamp("us")),
            ("due_date", pa.timestamp("us")),
            ("amount", pa.float64()),
            ("paid_date", pa.timestamp("us")),
        ]
    ),
}
_TRUTH_SCHEMAS = {
    "monthly": pa.schema(
        [
            ("account_id", pa.string()),
            ("cutoff", pa.timestamp("us")),
            ("horizon_days", pa.int64()),  # p_churn, p_expand: the event within this many days of the cutoff
            ("health", pa.float64()),
            ("p_churn", pa.float64()),
            ("p_expand", pa.float64()),
        ]
    ),
    # true S(t): the probability of no churn event before the end of month t from the cutoff
    "survival": pa.schema(
        [("account_id", pa.string()), ("cutoff", pa.timestamp("us"))]
        + [(f"true_s_{t}", pa.float64()) for t in range(1, SURVIVAL_TRUTH_MONTHS + 1)]
    ),
    "accounts": pa.schema(
        [
            ("account_id", pa.string()),
            ("churn_date", pa.timestamp("us")),
            ("dominant_cause", pa.string()),
            ("first_expansion_date", pa.timestamp("us")),
            ("expansion_count", pa.int64()),
        ]
    ),
}


def _table(name: str, cols: dict, schemas: dict[str, pa.Schema] = _SCHEMAS) -> pa.Table:
    schema = schemas[name]
    arrays = [
        pa.array(cols[f.name], type=f.type) if not isinstance(cols[f.name], pa.Array) else cols[f.name]
        for f in schema
    ]
    return pa.Table.from_arrays(arrays, schema=schema)


def _masked(values: np.ndarray, mask: np.ndarray) -> pa.Array:
    """An Arrow array with nulls where ``mask`` is set."""
    return pa.array(values, mask=mask)


def _simulate_chunk(cfg: SimulatorConfig, cal: _Calendar, chunk: int) -> tuple[dict, dict]:
    first = chunk * CHUNK_ACCOUNTS
    n = min(CHUNK_ACCOUNTS, cfg.accounts - first)
    seeds = np.random.SeedSequence([cfg.seed, chunk]).spawn(4)
    rng_init, rng_latent, rng_obs = (np.random.default_rng(s) for s in seeds[:3])
    oracle_seeds = seeds[3].spawn(cfg.months)
    # a stream of its own (not a fifth child of `seeds`): the existing streams stay as they were
    survival_seeds = np.random.SeedSequence([cfg.seed, chunk, 1]).spawn(cfg.months)
    drift = _drift(cfg, cal)
    st = _init_state(rng_init, n, cal)
    num = np.arange(first, first + n) + 1
    account_id = _ids("A", num)
    M = cal.months

    subs, contacts, truth_m, exp_log = _Log(), _Log(), [], _Log()
    hist = {key: np.zeros((M, n)) for key in ("A", "S", "sup", "ramp", "util", "H", "seats", "spon", "champ")}
    for key in ("champ_seq", "spon_seq", "champ_from", "spon_from"):
        hist[key] = np.zeros((M, n), dtype=np.int64)
    k_min = int(st["start_month"].min())
    for k in range(min(k_min, 0), M):
        if k >= 0:
            cutoff = cal.start(k)
            spine = (
                (st["status"] == _ACTIVE)
                & (st["start_day"] < cutoff)
                & ~((st["gap_lo"] <= cutoff - 1) & (cutoff - 1 < st["gap_hi"]))
            )
            idx = np.flatnonzero(spine)
            sub_state = {key: v[idx] for key, v in st.items()}
            p_c, p_e = _oracle(
                sub_state, k, cal, np.random.default_rng(oracle_seeds[k]), cfg.label_horizon_days, drift
            )
            s_t = _oracle_survival(sub_state, k, cal, np.random.default_rng(survival_seeds[k]), drift)
            truth_m.append((idx, np.full(idx.size, cutoff), st["H"][idx], p_c, p_e, s_t))
            hist["seats"][k] = st["seats"]
        res = _advance(st, k, cal, rng_latent, "live" if k >= 0 else "burn", drift)
        starting = res["starting"]
        sched = np.where(st["annual"], st["term_end"], _NONE)
        subs.add(
            starting,
            day=st["start_day"],
            kind=_NEWROW,
            seats=st["seats"],
            plan=st["plan"],
            mrr=st["mrr"],
            sched=sched,
        )
        subs.add(res["churn"], day=res["day"], kind=_END, seats=0.0, plan=0, mrr=0.0, sched=_NONE)
        subs.add(res["late"], day=res["day"], kind=_END, seats=0.0, plan=0, mrr=0.0, sched=_NONE)
        subs.add(
            res["newrow"],
            day=res["change_day"],
            kind=_NEWROW,
            seats=st["seats"],
            plan=st["plan"],
            mrr=st["mrr"],
            sched=sched,
        )
        exp_log.add(res["expand"], day=res["change_day"])
        # contacts: the initial ones, departures, replacements
        created = st["created"]
        contacts.add(starting, seq=0, role=0, start=created, end=_NONE)
        contacts.add(starting, seq=1, role=1, start=created, end=_NONE)
        contacts.add(starting, seq=2, role=2, start=created, end=_NONE)
        for j in range(int(_N_USERS.max())):
            contacts.add(starting & (_N_USERS[st["seg"]] > j), seq=3 + j, role=3, start=created, end=_NONE)
        contacts.add(res["sp_leave"], seq=st["spon_seq"], role=-1, start=0, end=res["leave_day_s"])
        contacts.add(res["ch_leave"], seq=st["champ_seq"], role=-1, start=0, end=res["leave_day_c"])
        for back, key, role, bday in (
            (res["sp_back"], "spon", 0, "back_day_s"),
            (res["ch_back"], "champ", 1, "back_day_c"),
        ):
            st[f"{key}_from"] = np.where(back, res[bday], st[f"{key}_from"])
            key = f"{key}_seq"
            st[key] = np.where(back, st["next_seq"], st[key])
            st["next_seq"] = st["next_seq"] + back
            contacts.add(back, seq=st[key], role=role, start=res[bday], end=_NONE)
        if k >= 0:
            hist["A"][k], hist["S"][k], hist["sup"][k], hist["H"][k] = st["A"], st["S"], st["sup"], st["H"]
            hist["ramp"][k], hist["util"][k] = res["ramp"], res["util"]
            hist["spon"][k] = st["spon_back"] == _NONE
            hist["champ"][k] = st["champ_back"] == _NONE
            for key in ("champ_seq", "spon_seq", "champ_from", "spon_from"):
                hist[key][k] = st[key]

    tables = _chunk_tables(cfg, cal, st, num, account_id, subs, contacts, hist, rng_obs)
    truth = _chunk_truth(cal, st, account_id, truth_m, exp_log, cfg.label_horizon_days)
    return tables, truth


# ----------------------------------------------------------------------------------------------------------
# observable tables of one chunk


def _active_range(cal: _Calendar, st: dict[str, np.ndarray]) -> tuple[np.ndarray, np.ndarray]:
    """First and one-past-last day (inside the window) on which each account uses the product."""
    lo = np.clip(st["start_day"], 0, cal.days)
    hi = np.where(st["churn_day"] != _NONE, st["churn_day"], cal.days)
    return lo, np.maximum(np.minimum(hi, cal.days), lo)


def _month_overlap(cal: _Calendar, lo: np.ndarray, hi: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """(M, n) first and one-past-last active day of each account in each window month (empty: lo >= hi)."""
    starts = cal.ms[-cal.first : -cal.first + cal.months + 1]
    olo = np.maximum(starts[:-1, None], lo[None, :])
    ohi = np.minimum(starts[1:, None], hi[None, :])
    return olo, np.maximum(ohi, olo)


def _accounts_table(
    cfg: SimulatorConfig, cal: _Calendar, st: dict, account_id: pa.Array, touch: np.ndarray, rng
) -> tuple[pa.Table, pa.Array]:
    """The accounts table and each account's CSM (null for tech touch)."""
    n = st["seg"].size
    n_high = max(1, round(cfg.accounts * 0.16 / 20))  # a high-touch CSM looks after about 20 accounts
    n_low = max(1, round(cfg.accounts * 0.30 / 100))
    csm_num = np.where(touch == 0, rng.integers(0, n_high, size=n), n_high + rng.integers(0, n_low, size=n))
    csm = pc.binary_join_element_wise("csm_", pc.utf8_lpad(pa.array(csm_num).cast(pa.string()), 4, "0"), "")
    csm = pc.if_else(pa.array(touch == 2), pa.scalar(None, pa.string()), csm)
    name = pc.binary_join_element_wise(
        pa.array(_NAME_A[rng.integers(0, _NAME_A.size, size=n)]),
        pa.array(_NAME_B[rng.integers(0, _NAME_B.size, size=n)]),
        pa.array(_NAME_C[rng.integers(0, _NAME_C.size, size=n)]),
        " ",
    )
    region = rng.choice(_REGIONS.size, size=n, p=_REGION_P)
    return _table(
        "accounts",
        {
            "account_id": account_id,
            "account_name": name,
            "segment": np.array(SEGMENTS)[st["seg"]],
            "touch_model": np.array(TOUCH_MODELS)[touch],
            "industry": _INDUSTRIES[st["industry"]],
            "region": _REGIONS[region],
            "csm_id": csm,
            "created_date": cal.dates(st["created"]),
        },
    ), csm


def _subscription_rows(cal: _Calendar, st: dict, subs: _Log) -> dict[str, np.ndarray]:
    """Contract rows from the log of row starts and ends: a row ends where the account's next record is."""
    f = subs.frame(("day", "kind", "seats", "plan", "mrr", "sched"))
    order = np.arange(f["acct"].size)
    keep = f["day"] < cal.days  # rows starting after the data ends are not known yet
    f = {c: v[keep] for c, v in f.items()}
    srt = np.lexsort((order[keep], f["acct"]))
    f = {c: v[srt] for c, v in f.items()}
    acct = f["acct"]
    same_next = np.r_[acct[1:] == acct[:-1], False]
    next_day = np.r_[f["day"][1:], -1]
    end = np.where(same_next, next_day, f["sched"].astype(np.int64))
    rows = f["kind"] == _NEWROW
    out = {c: v[rows] for c, v in f.items()}
    out["end"] = end[rows]
    return out


def _usage_table(cal: _Calendar, st: dict, hist: dict, lo, hi, account_id: pa.Array, rng) -> pa.Table:
    n, days = st["seg"].size, cal.days
    t = np.arange(days)
    month = cal.month_of(t)
    weekday = (cal.origin.astype(np.int64) + t + 3) % 7  # 0 = Monday
    mday = (cal.origin + t).astype("datetime64[D]") - (cal.origin + t).astype("datetime64[M]").astype(
        "datetime64[D]"
    )
    mon = (cal.origin + t).astype("datetime64[M]").astype(np.int64) % 12
    holiday = ((mon == 11) & (mday.astype(np.int64) >= 23)) | ((mon == 0) & (mday.astype(np.int64) == 0))
    week = _WEEKEND[weekday] * np.where(holiday, 0.35, 1.0)

    # only the days an account has a contract (and has not churned) get usage: work on those cells
    cell = np.flatnonzero((t[None, :] >= lo[:, None]) & (t[None, :] < hi[:, None]))
    a_c, t_c = np.divmod(cell, days)
    k_c = month[t_c]
    a_k = hist["A"][k_c, a_c]
    users = (hist["seats"] * hist["util"] * hist["ramp"] * _sigmoid(_SHARE0 + hist["A"]))[k_c, a_c]
    # an account that has decided to leave winds down over its last month
    churned = st["churn_day"] != _NONE
    last_ms = cal.ms[np.searchsorted(cal.ms, np.where(churned, st["churn_day"] - 1, 0), side="right") - 1]
    span = np.maximum(st["churn_day"] - last_ms, 1)
    frac = np.clip((t_c - last_ms[a_c]) / span[a_c], 0.0, 1.0)
    wind = np.where(churned[a_c], 1.0 - 0.5 * frac, 1.0)
    level = users * wind * np.exp(0.1 * rng.standard_normal(cell.size) - 0.005)
    seats = hist["seats"][k_c, a_c].astype(np.int64)
    active = rng.binomial(seats, np.minimum(level * week[t_c] / seats, 1.0))  # users out of the seats
    logins = rng.poisson(active * 2.5 * np.exp(0.6 * a_k))  # engaged users log in more
    api_int = np.where(rng.random(n) < _API_P, np.exp(2.5 + rng.standard_normal(n)), 0.0)
    api = rng.poisson(level * (0.5 + 0.5 * week[t_c]) * api_int[a_c] * np.exp(0.5 * a_k))
    offs = 0.7 * rng.standard_normal((3, n))
    dash = rng.poisson(active * 1.5 * _sigmoid(1.5 * a_k + 1.0 + offs[0][a_c]))
    rep = rng.poisson(active * 1.3 * _sigmoid(1.5 * a_k - 0.2 + offs[1][a_c]))
    auto = rng.poisson(active * 1.3 * _sigmoid(1.5 * a_k - 1.2 + offs[2][a_c]))
    values = np.stack([active, logins, api, dash, rep, auto], axis=1)
    r_i, m_i = np.nonzero(values)  # row-major: sorted by account, day, metric
    a_i, d_i = a_c[r_i], t_c[r_i]
    return _table(
        "usage",
        {
            "account_id": account_id.take(pa.array(a_i)),
            "date": cal.dates(d_i),
            "metric": pa.array(np.array(METRICS)).take(pa.array(m_i)),
            "value": values[r_i, m_i].astype(np.float64),
        },
    )


def _events_in_months(olo, ohi, lam, rng) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Poisson(lam) events per (month, account), on uniform days of the account's active part of the month.

    Returns:
        (account index, day, month index) per event.
    """
    count = rng.poisson(lam * (ohi - olo) / 30.4)
    k_i, a_i = np.nonzero(count)
    reps = count[k_i, a_i]
    k_e, a_e = np.repeat(k_i, reps), np.repeat(a_i, reps)
    lo, width = olo[k_e, a_e], ohi[k_e, a_e] - olo[k_e, a_e]
    day = lo + (rng.random(k_e.size) * width).astype(np.int64)
    return a_e, day, k_e


def _sort_events(acct: np.ndarray, key: np.ndarray, *cols: np.ndarray) -> list[np.ndarray]:
    order = np.lexsort((key, acct))
    return [acct[order], key[order], *(c[order] for c in cols)]


def _tickets_table(cal, st, hist, olo, ohi, num, account_id, rng) -> pa.Table:
    sq = np.sqrt(hist["seats"])
    base = 0.15 + 0.1 * sq + 1.2 * (1 - hist["ramp"])
    pain = hist["sup"] * (3.5 + 0.12 * sq)
    a_b, d_b, k_b = _events_in_months(olo, ohi, base, rng)
    a_p, d_p, k_p = _events_in_months(olo, ohi, pain, rng)
    is_pain = np.r_[np.zeros(a_b.size, bool), np.ones(a_p.size, bool)]
    acct, day, month = np.r_[a_b, a_p], np.r_[d_b, d_p], np.r_[k_b, k_p]
    created = _ts(cal, day, rng, 0.0, 24.0)
    acct, created, day, month, is_pain = _sort_events(acct, created.view(np.int64), day, month, is_pain)
    created = created.view("datetime64[us]")
    m = acct.size
    pri = (rng.random(m)[:, None] > np.cumsum(_PRIORITY_P[is_pain.astype(int)], axis=1)).sum(axis=1)
    pri = np.minimum(pri, 3)
    cat = (rng.random(m)[:, None] > np.cumsum(_CATEGORY_P[is_pain.astype(int)], axis=1)).sum(axis=1)
    cat = np.minimum(cat, _CATEGORIES.size - 1)
    hours = rng.exponential(_RESOLVE_HOURS[pri] * np.where(is_pain, 2.0, 1.0))
    resolved = created + (hours * 3.6e9).astype(np.int64).astype("timedelta64[us]")
    data_end = cal.dates(np.array([cal.days]))[0]
    open_ = resolved >= data_end
    s_k = hist["S"][month, acct]
    score = 4.3 + 0.5 * s_k - 1.3 * is_pain - 0.3 * (pri >= 2) + 0.7 * rng.standard_normal(m)
    csat = np.clip(np.round(score), 1, 5)
    no_csat = open_ | (rng.random(m) >= 0.55)
    return _table(
        "support_tickets",
        {
            "ticket_id": _ids("T", num[acct], _seq_within(acct), 4),
            "account_id": account_id.take(pa.array(acct)),
            "created_at": created,
            "resolved_at": _masked(resolved, open_),
            "priority": _PRIORITIES[pri],
            "category": _CATEGORIES[cat],
            "csat": _masked(csat, no_csat),
        },
    )


def _nps_table(cal, st, hist, olo, ohi, num, account_id, rng) -> pa.Table:
    n, months = st["seg"].size, cal.months
    surveyed = rng.random(n) < _SURVEYED_P
    phase = rng.integers(0, 3, size=n)
    k = np.arange(months)[:, None]
    starts = cal.ms[-cal.first : -cal.first + months][:, None]
    due = (
        surveyed[None, :]
        & (k % 3 == phase[None, :])
        & (ohi > olo)
        & (st["start_day"][None, :] <= starts - 60)
    )
    other = hist["H"] - _W_SENTIMENT * hist["S"] - _HEALTH_BASE[st["seg"]][None, :]
    parts = []
    admin = np.full_like(hist["champ_seq"], 2)
    for present, seq, since, p in (
        (hist["champ"] > 0, hist["champ_seq"], hist["champ_from"], 0.55),
        (hist["spon"] > 0, hist["spon_seq"], hist["spon_from"], 0.30),
        (np.ones_like(due), admin, olo, 0.25),
    ):
        # a respondent answers while in post: a replacement only after arriving
        lo = np.maximum(olo, since)
        answer = due & present & (lo < ohi) & (rng.random((months, n)) < p)
        k_i, a_i = np.nonzero(answer)
        day = lo[k_i, a_i] + (rng.random(k_i.size) * (ohi - lo)[k_i, a_i]).astype(np.int64)
        mean = 7.0 + 2.2 * hist["S"][k_i, a_i] + 0.35 * other[k_i, a_i]
        score = np.clip(np.round(mean + 0.9 * rng.standard_normal(k_i.size)), 0, 10).astype(np.int64)
        parts.append((a_i, day, seq[k_i, a_i], score))
    acct, day, seq, score = (np.concatenate(c) for c in zip(*parts, strict=True))
    at = _ts(cal, day, rng)
    acct, at, seq, score = _sort_events(acct, at.view(np.int64), seq, score)
    return _table(
        "nps_responses",
        {
            "response_id": _ids("N", num[acct], _seq_within(acct), 4),
            "account_id": account_id.take(pa.array(acct)),
            "contact_id": _ids("C", num[acct], seq, 3),
            "responded_at": at.view("datetime64[us]"),
            "score": score,
        },
    )


_CSM_KINDS = np.array(
    ["call", "email", "meeting", "check_in", "qbr", "onboarding_session", "digital_campaign"]
)


def _csm_table(cal, st, hist, olo, ohi, num, account_id, touch, csm, rng) -> pa.Table:
    n, months = st["seg"].size, cal.months
    high, low, tech = (touch == 0)[None, :], (touch == 1)[None, :], (touch == 2)[None, :]
    starts = cal.ms[-cal.first : -cal.first + months][:, None]
    new = (st["start_day"][None, :] > starts - 62) & ~tech
    at_risk = (hist["H"] < -0.8) & ~tech
    qbr_phase = rng.integers(0, 3, size=n)
    kinds = []
    for kind, lam in (
        (0, 1.2 * high + 0.25 * low + 1.2 * at_risk),  # calls, more when the account looks at risk
        (1, 1.3 * high + 0.55 * low),
        (2, 0.7 * high),
        (3, 0.5 * high + 0.1 * low),
        (4, 3.0 * high * (np.arange(months)[:, None] % 3 == qbr_phase[None, :])),
        (5, 2.0 * new),
        (6, 0.6 * tech),
    ):
        a_i, day, _ = _events_in_months(olo, ohi, np.broadcast_to(lam, (months, n)).astype(float), rng)
        if kind == 4:  # at most one QBR a quarter
            key = a_i * 100_000 + cal.month_of(day)
            _, first = np.unique(key, return_index=True)
            a_i, day = a_i[first], day[first]
        kinds.append((a_i, day, np.full(a_i.size, kind)))
    acct, day, kind = (np.concatenate(c) for c in zip(*kinds, strict=True))
    at = _ts(cal, day, rng)
    acct, at, kind = _sort_events(acct, at.view(np.int64), kind)
    csm_ids = csm.take(pa.array(acct))
    csm_ids = pc.if_else(pa.array(kind == 6), pa.scalar(None, pa.string()), csm_ids)
    return _table(
        "csm_activities",
        {
            "activity_id": _ids("M", num[acct], _seq_within(acct), 4),
            "account_id": account_id.take(pa.array(acct)),
            "occurred_at": at.view("datetime64[us]"),
            "kind": _CSM_KINDS[kind],
            "csm_id": csm_ids,
        },
    )


def _contacts_table(cal, contacts: _Log, num, account_id) -> pa.Table:
    f = contacts.frame(("seq", "role", "start", "end"))
    is_start = f["role"] >= 0
    key = f["acct"] * 1000 + f["seq"]
    s_key = key[is_start]
    order = np.argsort(s_key, kind="stable")
    end = np.full(s_key.size, _NONE)
    e_pos = order[np.searchsorted(s_key[order], key[~is_start])]
    end[e_pos] = f["end"][~is_start]
    acct, seq, role, start = (f[c][is_start] for c in ("acct", "seq", "role", "start"))
    acct, seq, role, start, end = _sort_events(acct, seq, role, start, end)
    return _table(
        "contacts",
        {
            "contact_id": _ids("C", num[acct], seq, 3),
            "account_id": account_id.take(pa.array(acct)),
            "role": np.array(CONTACT_ROLES)[role],
            "start_date": cal.dates(start),
            "end_date": _masked(cal.dates(np.where(end == _NONE, 0, end)), end == _NONE),
        },
    )


def _invoices_table(cal, st, hist, rows, num, account_id, rng) -> pa.Table:
    acct, start, mrr = rows["acct"], rows["day"], rows["mrr"]
    annual = st["annual"][acct]
    lim = np.where(rows["end"] == _NONE, cal.days, np.minimum(rows["end"], cal.days))
    d0 = start - cal.ms[np.searchsorted(cal.ms, start, side="right") - 1]
    pos = np.searchsorted(cal.ms, start - d0, side="left")
    count = np.where(
        annual, (start < lim).astype(np.int64), np.searchsorted(cal.ms, lim - d0, side="left") - pos
    )
    count = np.maximum(count, 0)
    r = np.repeat(np.arange(acct.size), count)
    j = np.arange(r.size) - np.repeat(np.cumsum(count) - count, count)
    issued = cal.ms[pos[r] + j] + d0[r]
    amount = np.round(np.where(annual[r], 12.0, 1.0) * mrr[r], 2)
    keep = (issued >= 0) & (issued < cal.days)
    a_i, issued, amount = acct[r][keep], issued[keep], amount[keep]
    health = hist["H"][cal.month_of(issued), a_i]
    late = rng.random(a_i.size) < _sigmoid(-3.0 - 0.8 * health)
    paid = issued + np.where(late, 31 + rng.integers(0, 50, a_i.size), rng.integers(0, 26, a_i.size))
    a_i, issued, amount, paid = _sort_events(a_i, issued, amount, paid)
    return _table(
        "invoices",
        {
            "invoice_id": _ids("I", num[a_i], _seq_within(a_i), 4),
            "account_id": account_id.take(pa.array(a_i)),
            "issued_date": cal.dates(issued),
            "due_date": cal.dates(issued + 30),
            "amount": amount,
            "paid_date": _masked(cal.dates(paid), paid >= cal.days),
        },
    )


def _chunk_tables(cfg, cal, st, num, account_id, subs, contacts, hist, rng) -> dict[str, pa.Table]:
    touch = (rng.random(st["seg"].size)[:, None] > np.cumsum(_TOUCH_P[st["seg"]], axis=1)).sum(axis=1)
    touch = np.minimum(touch, 2)
    accounts, csm = _accounts_table(cfg, cal, st, account_id, touch, rng)
    rows = _subscription_rows(cal, st, subs)
    seq = _seq_within(rows["acct"])
    end = rows["end"]
    subscriptions = _table(
        "subscriptions",
        {
            "subscription_id": _ids("S", num[rows["acct"]], seq, 3),
            "account_id": account_id.take(pa.array(rows["acct"])),
            "plan": np.array(PLANS)[rows["plan"].astype(np.int64)],
            "billing_period": np.where(st["annual"][rows["acct"]], "annual", "monthly"),
            "start_date": cal.dates(rows["day"]),
            "end_date": _masked(cal.dates(np.where(end == _NONE, 0, end)), end == _NONE),
            "mrr": np.round(rows["mrr"], 2),
            "seats": rows["seats"].astype(np.int64),
        },
    )
    lo, hi = _active_range(cal, st)
    olo, ohi = _month_overlap(cal, lo, hi)
    rngs = [np.random.default_rng(s) for s in np.random.SeedSequence(int(rng.integers(2**63))).spawn(5)]
    return {
        "accounts": accounts,
        "subscriptions": subscriptions,
        "usage": _usage_table(cal, st, hist, lo, hi, account_id, rngs[0]),
        "support_tickets": _tickets_table(cal, st, hist, olo, ohi, num, account_id, rngs[1]),
        "nps_responses": _nps_table(cal, st, hist, olo, ohi, num, account_id, rngs[2]),
        "csm_activities": _csm_table(cal, st, hist, olo, ohi, num, account_id, touch, csm, rngs[3]),
        "contacts": _contacts_table(cal, contacts, num, account_id),
        "invoices": _invoices_table(cal, st, hist, rows, num, account_id, rngs[4]),
    }


def _chunk_truth(
    cal: _Calendar, st: dict, account_id: pa.Array, truth_m: list, exp_log: _Log, horizon_days: int
) -> dict:
    idx, cutoff, health, p_c, p_e, s_t = (np.concatenate(c) for c in zip(*truth_m, strict=True))
    idx, cutoff, health, p_c, p_e, *s_cols = _sort_events(
        idx.astype(np.int64), cutoff.astype(np.int64), health, p_c, p_e, *s_t.T
    )
    monthly = _table(
        "monthly",
        {
            "account_id": account_id.take(pa.array(idx)),
            "cutoff": cal.dates(cutoff),
            "horizon_days": np.full(idx.size, horizon_days, dtype=np.int64),
            "health": health,
            "p_churn": p_c,
            "p_expand": p_e,
        },
        _TRUTH_SCHEMAS,
    )
    survival = _table(
        "survival",
        {
            "account_id": account_id.take(pa.array(idx)),
            "cutoff": cal.dates(cutoff),
            **{f"true_s_{t + 1}": col for t, col in enumerate(s_cols)},
        },
        _TRUTH_SCHEMAS,
    )
    n = st["seg"].size
    ex = exp_log.frame(("day",))
    inside = (ex["day"] >= 0) & (ex["day"] < cal.days)
    ex_acct, ex_day = ex["acct"][inside].astype(np.int64), ex["day"][inside].astype(np.int64)
    count = np.bincount(ex_acct, minlength=n)
    first = np.full(n, np.iinfo(np.int64).max)
    np.minimum.at(first, ex_acct, ex_day)
    churned = st["churn_day"] != _NONE
    causes = np.array(CAUSES)[np.maximum(st["cause"], 0)]
    accounts = _table(
        "accounts",
        {
            "account_id": account_id,
            "churn_date": _masked(cal.dates(np.maximum(st["churn_day"], 0)), ~churned),
            "dominant_cause": pa.array(causes, mask=~churned),
            "first_expansion_date": _masked(cal.dates(np.where(count > 0, first, 0)), count == 0),
            "expansion_count": count.astype(np.int64),
        },
        _TRUTH_SCHEMAS,
    )
    return {"monthly": monthly, "accounts": accounts, "survival": survival}


# ----------------------------------------------------------------------------------------------------------
# public API


def _n_chunks(cfg: SimulatorConfig) -> int:
    return -(-cfg.accounts // CHUNK_ACCOUNTS)


def _chunks(cfg: SimulatorConfig):
    cal = _calendar(cfg)
    for chunk in range(_n_chunks(cfg)):
        yield _simulate_chunk(cfg, cal, chunk)


def simulate(cfg: SimulatorConfig) -> tuple[dict[str, pd.DataFrame], dict[str, pd.DataFrame]]:
    """Simulate the portfolio in memory (for small sizes): the same data :func:`generate` writes.

    Args:
        cfg: simulator section of the config.

    Returns:
        (tables, truth): the contract's eight tables by name, and the ground truth frames ``monthly``
        and ``accounts``.
    """
    parts: dict[str, list[pa.Table]] = {}
    truth_parts: dict[str, list[pa.Table]] = {}
    for tables, truth in _chunks(cfg):
        for name, t in tables.items():
            parts.setdefault(name, []).append(t)
        for name, t in truth.items():
            truth_parts.setdefault(name, []).append(t)
    frames = {name: pa.concat_tables(parts[name]).to_pandas() for name in TABLE_NAMES}
    truth_frames = {name: pa.concat_tables(ts).to_pandas() for name, ts in truth_parts.items()}
    return frames, truth_frames


def generate(
    cfg: SimulatorConfig,
    raw_dir: Path,
    truth_dir: Path,
    progress: Callable[[int, int], None] | None = None,
) -> dict:
    """Write the portfolio as ``raw_dir/<table>.parquet`` and its ground truth under ``truth_dir``.

    Chunks of accounts stream to Parquet (one row group per chunk), so memory stays flat whatever the
    number of accounts; files appear complete or not at all.

    Args:
        cfg: simulator section of the config.
        raw_dir: folder for the contract's tables.
        truth_dir: folder for ``monthly.parquet`` (health, and p_churn, p_expand within
            ``cfg.label_horizon_days`` (its ``horizon_days`` column) per account and monthly cutoff) and ``accounts.parquet`` (churn date, dominant cause, expansions).
        progress: called with (chunks done, chunks in all) after each chunk.

    Returns:
        {"rows": rows per table, "truth_rows": rows per truth file, "accounts", "chunks", "seconds"}.
    """
    began = time.perf_counter()
    _calendar(cfg)  # fail on a bad config before touching the disk
    raw_dir, truth_dir = Path(raw_dir), Path(truth_dir)
    raw_dir.mkdir(parents=True, exist_ok=True)
    truth_dir.mkdir(parents=True, exist_ok=True)
    targets = {("raw", n): raw_dir / f"{n}.parquet" for n in TABLE_NAMES}
    targets.update({("truth", n): truth_dir / f"{n}.parquet" for n in _TRUTH_SCHEMAS})
    tmp = {key: path.with_name(f".{path.name}.tmp") for key, path in targets.items()}
    writers = {
        key: pq.ParquetWriter(tmp[key], _SCHEMAS[key[1]] if key[0] == "raw" else _TRUTH_SCHEMAS[key[1]])
        for key in targets
    }
    rows = dict.fromkeys(targets, 0)
    total = _n_chunks(cfg)
    try:
        for done, (tables, truth) in enumerate(_chunks(cfg), start=1):
            for kind, group in (("raw", tables), ("truth", truth)):
                for name, t in group.items():
                    writers[(kind, name)].write_table(t, row_group_size=max(t.num_rows, 1))
                    rows[(kind, name)] += t.num_rows
            if progress is not None:
                progress(done, total)
    except BaseException:
        for key, w in writers.items():
            w.close()
            tmp[key].unlink(missing_ok=True)
        raise
    for key, w in writers.items():
        w.close()
        tmp[key].replace(targets[key])
    return {
        "rows": {name: rows[("raw", name)] for name in TABLE_NAMES},
        "truth_rows": {name: rows[("truth", name)] for name in _TRUTH_SCHEMAS},
        "accounts": cfg.accounts,
        "chunks": total,
        "seconds": round(time.perf_counter() - began, 3),
    }
