"""The right-customer analysis: which profiles of account keep their logo and grow their revenue.

Per profile (segment, touch model, plan, industry, region, time-to-first-value band, signup cohort by
tenure): the Kaplan-Meier logo retention at 12 months with its 95% interval (log-log, scikit-survival),
and the realised net revenue retention over the same months, on spells whose whole year is observed (the
survival stage's test cutoffs). Claims in words name the number of accounts behind them and are made only
for profiles with at least ``MIN_ACCOUNTS`` accounts.
"""

from __future__ import annotations

import numpy as np
import pandas as pd

from churnml.survival.evaluation import survival_times

MIN_ACCOUNTS = 100
PROFILE_COLUMNS = {
    "segment": "account_segment",
    "touch_model": "account_touch_model",
    "plan": "contract_plan",
    "industry": "account_industry",
    "region": "account_region",
}
TTFV = "lifecycle_time_to_first_value_days"
TENURE = "lifecycle_tenure_days"


def profile_values(features: pd.DataFrame) -> dict[str, pd.Series]:
    """Each profile dimension's value per feature row (bands for time to first value and tenure)."""
    out = {
        dim: features[col].astype("object").fillna("unknown").astype(str)
        for dim, col in PROFILE_COLUMNS.items()
        if col in features.columns
    }
    if TTFV in features.columns:
        days = pd.to_numeric(features[TTFV])
        out["time_to_first_value"] = pd.Series(
            np.select(
                [days.isna(), days <= 14, days <= 45],
                ["not reached", "within 2 weeks", "2 to 6 weeks"],
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


def _km_at(spells: pd.DataFrame, month: int) -> tuple[float, float, float]:
    from sksurv.nonparametric import kaplan_meier_estimator

    y = survival_times(spells)
    grid, surv, (lo, hi) = kaplan_meier_estimator(y["event"], y["time"], conf_type="log-log")
    i = np.searchsorted(grid, float(month), side="right") - 1
    if i < 0:
        return 1.0, 1.0, 1.0
    return float(surv[i]), float(lo[i]), float(hi[i])


def profile_table(
    features: pd.DataFrame, spells: pd.DataFrame, arr0: np.ndarray, arr_h: np.ndarray, month: int
) -> pd.DataFrame:
    """Logo retention (KM with 95% interval) and NRR at ``month`` per profile.

    Args:
        features: the spells' feature rows (same order as ``spells``).
        spells: duration and event per row (:func:`churnml.survival.rows.spells`).
        arr0: ARR at each spell's cutoff; arr_h: ARR ``month`` months later.
        month: the retention horizon (at most the spells' follow-up).

    Returns:
        dimension, profile, accounts (distinct), spells, logo_retention (+ _low, _high), nrr, grr.
    """
    rows = []
    values = profile_values(features.reset_index(drop=True))
    for dim, series in values.items():
        for value in sorted(series.unique()):
            idx = (series == value).to_numpy()
            s, lo, hi = _km_at(spells[idx], month)
            base = arr0[idx].sum()
            rows.append(
                {
                    "dimension": dim,
                    "profile": value,
                    "accounts": int(features.loc[idx, "account_id"].nunique()),
                    "spells": int(idx.sum()),
                    "logo_retention": s,
                    "logo_retention_low": lo,
                    "logo_retention_high": hi,
                    "nrr": float(arr_h[idx].sum() / base) if base > 0 else float("nan"),
                    "grr": float(np.minimum(arr_h[idx], arr0[idx]).sum() / base)
                    if base > 0
                    else float("nan"),
                }
            )
    return pd.DataFrame(rows)


def findings(table: pd.DataFrame, month: int, min_accounts: int = MIN_ACCOUNTS) -> list[str]:
    """The profiles that retain and expand best and worst, in words, each with its account count; only
    profiles with at least ``min_accounts`` accounts, and only differences whose intervals do not overlap."""
    big = table[table["accounts"] >= min_accounts]
    out = []
    for dim, group in big.groupby("dimension", sort=True):
        if len(group) < 2:
            continue
        best, worst = group.loc[group["logo_retention"].idxmax()], group.loc[group["logo_retention"].idxmin()]
        separated = best["logo_retention_low"] > worst["logo_retention_high"]
        if separated:
            out.append(
                f"By {dim.replace('_', ' ')}: {best['profile']} keeps {best['logo_retention']:.0%} of its logos over "
                f"{month} months ({best['accounts']:,} accounts, NRR {best['nrr']:.0%}); {worst['profile']} keeps "
                f"{worst['logo_retention']:.0%} ({worst['accounts']:,} accounts, NRR {worst['nrr']:.0%})."
            )
        else:
            out.append(
                f"By {dim.replace('_', ' ')}: no profile retains clearly better than another over {month} months "
                f"(the 95% intervals overlap; {int(group['accounts'].sum()):,} accounts)."
            )
    return out
