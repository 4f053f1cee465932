"""The right-customer analysis: which profiles of account keep their logo and grow their revenue.

Per profile (segment, touch model, plan, industry, region, time-to-first-value band, signup cohort by
tenure), on spells whose whole follow-up is observed (the survival stage's test cutoffs), **one spell per
account** (its earliest): the test cutoffs are consecutive months, so an account's spells share one future
and counting each would narrow every interval as if the data were three times larger.

- **Logo retention**: the Kaplan-Meier curve with its 95% band (Greenwood's variance on the log-log scale,
  scikit-survival), month by month.
- **Revenue retention**: gross and net revenue retention of the profile's starting ARR at each month
  (sum of min(ARR_t, ARR_0) or of ARR_t over sum of ARR_0). Their 95% band is a percentile bootstrap over
  accounts: no normal shape is assumed, so a profile whose revenue sits in a few large accounts gets the
  wide, skewed band it deserves. Poisson(1) weights stand in for multinomial resampling (the usual
  approximation for large samples, and one weight matrix serves every dimension).
- **Hazard ratio**: an unadjusted Cox model per dimension (Breslow ties), each profile against the
  dimension's reference profile (the one with the most accounts), with a 95% Wald interval and p-value
  from the observed information (:mod:`churnml.survival.cox`). A profile without a churn has no finite
  ratio (left empty).

Claims in words name the number of accounts behind them and are made only for profiles with at least
``MIN_ACCOUNTS`` accounts, and only where the 95% intervals of the two profiles compared do not overlap.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import pandas as pd

from churnml.contract.outputs import OUTPUTS
from churnml.errors import ChurnmlError
from churnml.survival.cox import fit_cox
from churnml.survival.evaluation import survival_times
from churnml.survival.forecast import arr_on

MIN_ACCOUNTS = 100
BOOTSTRAP_DRAWS = 400
# a log hazard ratio with a standard error beyond this (a 95% interval wider than a factor e^20) is not
# estimable: the fit ran off to infinity (a profile whose few accounts all churned before anyone else)
MAX_LOG_SE = 5.0
_BOOTSTRAP_CHUNK = 100  # replicates per weight matrix: bounds memory for 100,000 accounts (80 MB)
PROFILE_COLUMNS = {
    "segment": "account_segment",
    "touch_model": "account_touch_model",
    "plan": "contract_plan",
    "industry": "account_industry",
    "region": "account_region",
}
TTFV = "lifecycle_time_to_first_value_days"
REACHED = "lifecycle_first_value_reached"
UNKNOWN = "unknown"  # a missing profile value (and the prefix of the bands that mean it)
TENURE = "lifecycle_tenure_days"
# the files' columns, declared once with the survival stage's plots
TABLE_COLUMNS = OUTPUTS["survival_plots"].files["profiles.csv"]
CURVE_COLUMNS = OUTPUTS["survival_plots"].files["profile_curves.csv"]


def profile_values(features: pd.DataFrame) -> dict[str, pd.Series]:
    """Each profile dimension's value per feature row (bands for time to first value and tenure)."""
    out = {
        dim: features[col].astype("object").fillna(UNKNOWN).astype(str)
        for dim, col in PROFILE_COLUMNS.items()
        if col in features.columns
    }
    if TTFV in features.columns:
        days = pd.to_numeric(features[TTFV])
        # the days are unknown for an account that signed before the usage data start (its first value
        # may predate them) and missing for one that never reached value: two different profiles
        reached = (
            pd.to_numeric(features[REACHED]).fillna(0) > 0
            if REACHED in features.columns
            else pd.Series(True, index=features.index)
        )
        out["time_to_first_value"] = pd.Series(
            np.select(
                [days.isna() & ~reached, days.isna(), days <= 14, days <= 45],
                [
                    "not reached",
                    f"{UNKNOWN} (signed before the usage data)",
                    "within 2 weeks",
                    "2 to 6 weeks",
                ],
                "over 6 weeks",
            ),
            index=features.index,
        )
    if TENURE in features.columns:
        days = pd.to_numeric(features[TENURE])
        out["signup_cohort"] = pd.Series(
            np.select(
                [days < 365, days < 730], ["customer < 1 year", "customer 1-2 years"], "customer 2+ years"
            ),
            index=features.index,
        )
    return out


def first_spells(features: pd.DataFrame) -> np.ndarray:
    """A mask keeping each account's earliest row (its first test cutoff): one spell per account."""
    order = pd.to_datetime(features["cutoff"]).rank(method="first").to_numpy()
    frame = pd.DataFrame({"a": features["account_id"].astype(str).to_numpy(), "o": order})
    return (frame.groupby("a")["o"].transform("min") == frame["o"]).to_numpy()


def monthly_arr(
    features: pd.DataFrame, subscriptions: pd.DataFrame, months: int, grace_days: int
) -> np.ndarray:
    """ARR of each row's account at its cutoff (column 0) and at the end of months 1..``months`` after it."""
    cut = pd.to_datetime(features["cutoff"]).astype("datetime64[us]").reset_index(drop=True)
    ids = features["account_id"].reset_index(drop=True)
    day = pd.Timedelta(days=1)
    return np.column_stack(
        [arr_on(subscriptions, ids, cut - day, grace_days)]
        + [
            arr_on(subscriptions, ids, cut + pd.DateOffset(months=k) - day, grace_days)
            for k in range(1, months + 1)
        ]
    )


def _km_curve(spells: pd.DataFrame, months: int) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Kaplan-Meier S(0..months) with its 95% log-log (Greenwood) band, read off at whole months."""
    from sksurv.nonparametric import kaplan_meier_estimator

    y = survival_times(spells)
    grid, surv, (lo, hi) = kaplan_meier_estimator(y["event"], y["time"], conf_type="log-log")
    i = np.searchsorted(grid, np.arange(months + 1, dtype=float), side="right") - 1
    take = np.maximum(i, 0)
    s, low, high = (np.where(i >= 0, v[take], 1.0) for v in (surv, lo, hi))
    # no event yet (S = 1): the log-log band is undefined; the estimate is exact for these spells
    return s, np.where(np.isfinite(low), low, s), np.where(np.isfinite(high), high, s)


def _bootstrap_weights(n: int, draws: int, seed: int):
    rng = np.random.default_rng(seed)
    for start in range(0, draws, _BOOTSTRAP_CHUNK):
        yield rng.poisson(1.0, size=(min(_BOOTSTRAP_CHUNK, draws - start), n)).astype(np.float64)


def _revenue_bands(
    arr: np.ndarray, groups: list[np.ndarray], draws: int, seed: int
) -> list[tuple[np.ndarray, np.ndarray]]:
    """Per group (row indices), the bootstrap 2.5% and 97.5% quantiles of GRR(t) and NRR(t), t = 1..months.

    Returns:
        For each group: (grr quantiles 2 x months, nrr quantiles 2 x months).
    """
    gross = np.minimum(arr[:, 1:], arr[:, [0]])
    reps: list[list[np.ndarray]] = [[] for _ in groups]
    for weights in _bootstrap_weights(len(arr), draws, seed):
        for g, idx in enumerate(groups):
            w = weights[:, idx]
            base = w @ arr[idx, 0]
            with np.errstate(invalid="ignore", divide="ignore"):
                reps[g].append(
                    np.stack([(w @ gross[idx]) / base[:, None], (w @ arr[idx, 1:]) / base[:, None]], axis=0)
                )
    out = []
    for parts in reps:
        r = np.concatenate(parts, axis=1)  # 2 x draws x months
        q = np.nanquantile(r, [0.025, 0.975], axis=1)  # 2 (quantile) x 2 (grr, nrr) x months
        out.append((q[:, 0], q[:, 1]))
    return out


def profile_curves(
    features: pd.DataFrame, spells: pd.DataFrame, arr: np.ndarray, draws: int = BOOTSTRAP_DRAWS, seed: int = 0
) -> pd.DataFrame:
    """Logo and revenue retention curves with 95% bands per profile, month 0 to ``arr.shape[1] - 1``.

    Args:
        features: the spells' feature rows (same order as ``spells``), one per account.
        spells: duration and event per row (:func:`churnml.survival.rows.spells`).
        arr: ARR per row at its cutoff and at each month's end (:func:`monthly_arr`).
        draws: bootstrap replicates of the revenue bands.
        seed: the bootstrap's seed.

    Returns:
        The :data:`CURVE_COLUMNS` rows.
    """
    feats = features.reset_index(drop=True)
    if not (len(feats) == len(spells) == len(arr)):
        raise ChurnmlError("profiles: features, spells and ARR disagree in length")
    months = arr.shape[1] - 1
    values = profile_values(feats)
    keys = [(dim, v) for dim, series in values.items() for v in sorted(series.unique())]
    groups = [np.flatnonzero((values[dim] == v).to_numpy()) for dim, v in keys]
    bands = _revenue_bands(np.asarray(arr, dtype=float), groups, draws, seed)
    gross = np.minimum(arr[:, 1:], arr[:, [0]])
    parts = []
    for (dim, value), idx, (grr_q, nrr_q) in zip(keys, groups, bands, strict=True):
        s, lo, hi = _km_curve(spells.iloc[idx], months)
        base = float(arr[idx, 0].sum())
        with np.errstate(invalid="ignore", divide="ignore"):
            grr = np.r_[1.0, gross[idx].sum(axis=0) / base] if base > 0 else np.full(months + 1, np.nan)
            nrr = np.r_[1.0, arr[idx, 1:].sum(axis=0) / base] if base > 0 else np.full(months + 1, np.nan)
        parts.append(
            pd.DataFrame(
                {
                    "dimension": dim,
                    "profile": value,
                    "month": np.arange(months + 1),
                    "accounts": int(feats.loc[idx, "account_id"].nunique()),
                    "logo_retention": s,
                    "logo_retention_low": lo,
                    "logo_retention_high": hi,
                    "grr": grr,
                    "grr_low": np.r_[1.0, grr_q[0]],
                    "grr_high": np.r_[1.0, grr_q[1]],
                    "nrr": nrr,
                    "nrr_low": np.r_[1.0, nrr_q[0]],
                    "nrr_high": np.r_[1.0, nrr_q[1]],
                }
            )
        )
    return pd.concat(parts, ignore_index=True)[list(CURVE_COLUMNS)]


def hazard_ratios(features: pd.DataFrame, spells: pd.DataFrame) -> pd.DataFrame:
    """The unadjusted Cox hazard ratio of each profile against its dimension's reference, 95% Wald interval.

    The reference is the known profile with the most accounts among those with a churn (ties: by name). Profiles
    without a churn stay out of the fit: their ratio is 0 with an unbounded interval, not a number to print;
    so are ratios the data cannot pin down (:data:`MAX_LOG_SE`).

    Returns:
        dimension, profile, events, reference, hazard_ratio, hazard_ratio_low, hazard_ratio_high, p_value.
    """
    from scipy.stats import norm

    feats = features.reset_index(drop=True)
    y = survival_times(spells.reset_index(drop=True))
    z95 = float(norm.ppf(0.975))
    rows = []
    for dim, series in profile_values(feats).items():
        counts = series.value_counts()
        events = pd.Series(y["event"]).groupby(series.to_numpy()).sum()
        with_event = sorted(v for v in counts.index if events.get(v, 0) > 0)
        # the largest known profile: a ratio against "unknown" would say nothing a leader can act on
        ref = min(with_event, key=lambda v: (v.startswith(UNKNOWN), -counts[v], v)) if with_event else None
        others = [v for v in with_event if v != ref]
        fitted: dict[str, tuple[float, float, float, float]] = {}
        if ref is not None and others:
            keep = series.isin(with_event).to_numpy()
            x = np.column_stack([(series[keep] == v).to_numpy(dtype=float) for v in others])
            try:
                beta, cov = fit_cox(y["time"][keep], y["event"][keep], x)
            except ChurnmlError:  # no estimable ratio in this dimension (e.g. a profile of one account)
                beta, cov = np.full(len(others), np.nan), np.full((len(others), len(others)), np.nan)
            se = np.sqrt(np.clip(np.diag(cov), 0.0, None))
            for v, b, e in zip(others, beta, se, strict=True):
                if not (np.isfinite(b) and np.isfinite(e)) or e > MAX_LOG_SE:
                    continue  # not estimable: left empty rather than printed as a number
                fitted[v] = (
                    float(np.exp(b)),
                    float(np.exp(b - z95 * e)),
                    float(np.exp(b + z95 * e)),
                    float(2 * norm.sf(abs(b / e))),
                )
        for v in sorted(counts.index):
            hr, lo, hi, p = (1.0, 1.0, 1.0, np.nan) if v == ref else fitted.get(v, (np.nan,) * 4)
            rows.append(
                {
                    "dimension": dim,
                    "profile": v,
                    "events": int(events.get(v, 0)),
                    "reference": v == ref,
                    "hazard_ratio": hr,
                    "hazard_ratio_low": lo,
                    "hazard_ratio_high": hi,
                    "p_value": p,
                }
            )
    return pd.DataFrame(rows)


def profile_table(curves: pd.DataFrame, ratios: pd.DataFrame) -> pd.DataFrame:
    """The :data:`TABLE_COLUMNS` rows: each profile's curves at their last month beside its hazard ratio."""
    last = curves[curves["month"] == curves["month"].max()]
    merged = last.merge(ratios, on=["dimension", "profile"], how="left", validate="one_to_one")
    return merged[list(TABLE_COLUMNS)].reset_index(drop=True)


@dataclass
class RightCustomers:
    """The right-customer analysis: the per-profile table, its curves and the findings in words."""

    table: pd.DataFrame
    curves: pd.DataFrame
    findings: list[str]


def right_customers(
    features: pd.DataFrame,
    spells: pd.DataFrame,
    subscriptions: pd.DataFrame,
    grace_days: int,
    months: int,
    min_accounts: int = MIN_ACCOUNTS,
    draws: int = BOOTSTRAP_DRAWS,
) -> RightCustomers:
    """The analysis on fully observed spells: one per account (the earliest), followed ``months`` months.

    Args:
        features: the spells' feature rows (same order as ``spells``; several cutoffs allowed).
        spells: their duration and event, censored at ``months`` at the latest.
        subscriptions: the validated subscriptions (ARR month by month).
        grace_days: the labels' grace period (a renewal gap within it is no churn).
        months: the follow-up.
        min_accounts: the fewest accounts a claim in words may rest on.
        draws: bootstrap replicates of the revenue bands.
    """
    keep = first_spells(features)
    feats = features[keep].reset_index(drop=True)
    sp = spells[keep].reset_index(drop=True)
    curves = profile_curves(feats, sp, monthly_arr(feats, subscriptions, months, grace_days), draws)
    table = profile_table(curves, hazard_ratios(feats, sp))
    return RightCustomers(table, curves, findings(table, months, min_accounts))


def _pct(v: float) -> str:
    return f"{v:.0%}"


def findings(table: pd.DataFrame, month: int, min_accounts: int = MIN_ACCOUNTS) -> list[str]:
    """The profiles that retain and expand best and worst, in words, each with its account count; only
    profiles with at least ``min_accounts`` accounts, and only differences whose 95% intervals do not
    overlap (logo retention: Kaplan-Meier; expansion: net revenue retention)."""
    # an unknown value is no profile to win or avoid (for time to first value it mostly means "signed
    # before the usage data began", i.e. long tenure): listed in the table, never claimed about
    known = ~table["profile"].astype(str).str.startswith(UNKNOWN)
    big = table[(table["accounts"] >= min_accounts) & known].assign(
        profile=lambda t: t["profile"].astype(str).str.replace("_", " ")
    )
    out = []
    for dim in sorted(table["dimension"].unique()):
        group = big[big["dimension"] == dim]
        what = dim.replace("_", " ")
        if len(group) < 2:
            out.append(
                f"By {what}: no claim: fewer than two profiles of {min_accounts:,} accounts or more to compare."
            )
            continue
        best, worst = group.loc[group["logo_retention"].idxmax()], group.loc[group["logo_retention"].idxmin()]
        if best["logo_retention_low"] > worst["logo_retention_high"]:
            ratio = ""
            if np.isfinite(worst.get("hazard_ratio", np.nan)) and np.isfinite(
                best.get("hazard_ratio", np.nan)
            ):
                ratio = f"; {worst['profile']} churns at {worst['hazard_ratio'] / best['hazard_ratio']:.1f}x the rate"
            out.append(
                f"By {what}: {best['profile']} keeps {_pct(best['logo_retention'])} of its logos over "
                f"{month} months ({best['accounts']:,} accounts, 95% interval {_pct(best['logo_retention_low'])}"
                f"-{_pct(best['logo_retention_high'])}); {worst['profile']} keeps {_pct(worst['logo_retention'])} "
                f"({worst['accounts']:,} accounts, {_pct(worst['logo_retention_low'])}-"
                f"{_pct(worst['logo_retention_high'])}){ratio}."
            )
        else:
            out.append(
                f"By {what}: no profile retains its logos clearly better than another over {month} months "
                f"(the 95% intervals overlap; {int(group['accounts'].sum()):,} accounts)."
            )
        nrr = group.dropna(subset=["nrr"])
        if len(nrr) < 2:
            continue
        top, low = nrr.loc[nrr["nrr"].idxmax()], nrr.loc[nrr["nrr"].idxmin()]
        if top["nrr_low"] > low["nrr_high"]:
            out.append(
                f"By {what}: {top['profile']} keeps the most revenue, expansion included: net revenue retention "
                f"{_pct(top['nrr'])} over {month} months ({top['accounts']:,} accounts, 95% interval "
                f"{_pct(top['nrr_low'])}-{_pct(top['nrr_high'])}); {low['profile']} the least, {_pct(low['nrr'])} "
                f"({low['accounts']:,} accounts, "
                f"{_pct(low['nrr_low'])}-{_pct(low['nrr_high'])})."
            )
        else:
            out.append(
                f"By {what}: no profile's net revenue retention differs clearly from another's over {month} "
                f"months (the 95% intervals overlap)."
            )
    return out
