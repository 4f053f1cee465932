"""The feature definitions as SQL (DuckDB dialect, transpilable to Spark SQL with sqlglot), one step per table.

Every step is a ``SELECT`` over named relations; an engine materialises each step under its name, in
order, then runs :func:`final_sql`. The relations a step may read:

- the contract tables as typed views: ``accounts``, ``subscriptions``, ``usage``, ``support_tickets``,
  ``nps_responses``, ``csm_activities``, ``contacts``, ``invoices`` (``*_date`` and ``usage.date`` cast to
  DATE, ``*_at`` timestamps, numbers as DOUBLE);
- ``spine_keys`` (account_id, cutoff DATE) and ``spine_rows`` (the same with ``row_id``, the caller's order);
- ``usage_calendar`` (date, period, one bucket index per lag, day_bit) and ``usage_cutoffs`` (cutoff,
  period, active-day bit masks): small parameter tables derived from the cutoffs by :func:`usage_periods`
  (see there);
- earlier steps, by name.

Portability: only functions DuckDB and Spark share (``DATE_DIFF('day', a, b)`` becomes Spark's
``DATEDIFF(DAY, a, b)``, ``date - n`` is a date in both, ``MAKE_DATE`` / ``LAST_DAY`` do month arithmetic,
``BIT_OR`` / ``BIT_COUNT`` count active days, ``&`` / ``|`` and a multiplication move their bits); no
``ASOF``, ``PIVOT``, list or struct functions. A test transpiles every step.

The usage-window design (the only large input): time is cut into periods that end at every cutoff
(long ones split), and every usage row is aggregated once, into its (account, period, metric): each day
maps 1:1 to its period on a small calendar, which also says, for each later cutoff that can see the day
(``lag`` periods on), which bucket of day offsets it falls in (the buckets are the pieces between all
window edges). One hash aggregation then holds, per group, one sum per (lag, bucket) slot that occurs,
the active-day bits and the positive-day bounds. A cutoff's bucket is the sum of the slots of the few
periods its look-back reaches (one equi-join per lag on a table a few times smaller than the usage);
each window is a run of buckets. Unbounded look-backs (days since the last use, the first key-feature
use) are the latest / earliest positive day per period, carried forward over periods by a running
``MAX`` / ``MIN`` window: no row is ever joined to every cutoff. (An earlier design joined each usage row
to every cutoff whose look-back held it, 3 to 5 of them for monthly cutoffs, and computed every window
sum per joined row: the same result at about twice the aggregation work.) Engines may run the usage steps
per range of account ids (``AccountRange``) to bound the aggregation's memory; the result is the same.

Where the time goes (``make bench BENCH_ARGS="--only usage_plan"``: 10,000 accounts, 29 M usage rows, 24
monthly cutoffs, 2 threads): of a 7.6 s build, the one pass over the usage rows takes 3.5 s, the per-cutoff
step 2.8 s (the carry-forward window over periods and grid about 1.2 s, the per-lag joins about 1.4 s), the
pivot 0.5 s. A pass with one sum per group costs 1.1 s; each further aggregate about 0.1 s more, and that
is the hash aggregation updating its states, not the CASE: a ``FILTER`` clause, a 0/1 multiplication or
0/1 weights carried on the calendar cost the same. The pass holds 22 slots for monthly cutoffs, as each
period meets about 17 bucket edges from the 3 or 4 cutoffs that see it. Little work can be shared between
cutoffs: with the weekly baseline and the 30 / 60 / 90-day edges of 24 cutoffs, distinct window edges lie
under two days apart, so the bucket sums per (account, cutoff, metric) are about as many numbers as the
usage rows themselves.

Measured and rejected at that size (prototypes of the steps, timed like the above): integer surrogate keys from a dictionary join (the
pass 0.4 s slower: the join costs more than string keys save); usage stored in date order (the pass twice
as slow: the hash table loses the locality of account order); dense periods with ``LAG`` windows instead
of the per-lag joins (the pass 1.5 s slower, the windows 1.8 s); one join to every cutoff that sees a
period plus a ``GROUP BY`` instead of the per-lag joins (1.2 s against 1.4 s, but 4.3 M rows to group,
and the carry-forward still needed); per-lag ``UNION ALL`` branches (1.7 s); a running ``SUM`` window over
the usage rows (9.9 s for the window alone).

Kept whole (about 800 lines): every feature definition in one file, so a review reads the complete feature
set in one place and both engines (DuckDB, Spark) run the same text.
"""

from __future__ import annotations

import re
from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np
import pandas as pd

from churnml.config import FeaturesConfig, check_bounds
from churnml.contract.schemas import BILLING_PERIOD_MONTHS
from churnml.contract.tables import CATEGORICAL_FEATURES
from churnml.errors import ChurnmlError

# Tables a family needs beyond the spine; a family whose optional table is absent is skipped.
FAMILY_TABLES: dict[str, tuple[str, ...]] = {
    "account": ("accounts",),
    "usage": ("usage",),
    "adoption": ("usage", "subscriptions"),
    "lifecycle": ("usage", "subscriptions"),
    "contract": ("subscriptions",),
    "support": ("support_tickets",),
    "nps": ("nps_responses",),
    "csm": ("csm_activities",),
    "contacts": ("contacts",),
    "invoices": ("invoices",),
}
CATEGORICAL = CATEGORICAL_FEATURES  # the features table schema declares which features are text
ZSCORE_WINDOW_DAYS = 7  # the recent week compared with the baseline weeks
CONTRACT_CHANGE_DAYS = 90  # contract_mrr_change_90d compares with the level this many days earlier
RENEWAL_GAP_DAYS = 30  # a new row starting within this many days of a previous end continues it
SUPPORT_WINDOWS = (30, 90)
SUPPORT_HIGH_WINDOW = 30
SUPPORT_QUALITY_WINDOW = 90  # resolution time and CSAT of tickets resolved in this window
CSM_WINDOW = 90
INVOICE_OVERDUE_WINDOW = 90
INVOICE_LATE_WINDOW = 180
EXPANSION_UTILISATION = 0.9  # journey stage "expansion" from this license utilisation
MAX_ACTIVE_DAY_WINDOW = 62  # active days are counted with a BIGINT bit mask


@dataclass(frozen=True)
class SqlStep:
    """One definition: a SELECT materialised as table ``name``; ``family`` is what it serves."""

    name: str
    family: str
    sql: str


@dataclass(frozen=True)
class Windows:
    """The day windows the usage definitions need, derived from the configuration."""

    sums: tuple[int, ...]  # usage_<m>_sum_<w>d
    trend: int  # mean, trend, and the adoption windows
    baseline_weeks: int
    lookback: int  # the longest look-back: every windowed row lies within it

    @classmethod
    def from_config(cls, cfg: FeaturesConfig) -> Windows:
        """Validate and derive the windows."""
        check_bounds(cfg, "features.")  # the schema's bounds (also checked where params.yaml is loaded)
        sums = tuple(sorted({int(w) for w in cfg.windows_days}))
        trend, weeks = int(cfg.trend_window_days), int(cfg.baseline_weeks)
        if not sums:
            raise ChurnmlError("features.windows_days: at least one window is needed")
        if trend > MAX_ACTIVE_DAY_WINDOW:
            raise ChurnmlError(f"features.trend_window_days must be 1..{MAX_ACTIVE_DAY_WINDOW}, got {trend}")
        lookback = max(max(sums), 2 * trend, ZSCORE_WINDOW_DAYS * (weeks + 1))
        return cls(sums, trend, weeks, lookback)

    @property
    def internal_sums(self) -> tuple[int, ...]:
        """Sums computed: the configured ones plus the trend window."""
        return tuple(sorted(set(self.sums) | {self.trend}))


def sql_literal(text: str) -> str:
    """A SQL string literal."""
    return "'" + str(text).replace("'", "''") + "'"


def column_token(value: str, what: str) -> str:
    """A metric or kind as it appears in a column name: lower case, ``[a-z0-9_]``."""
    token = re.sub(r"[^0-9a-z]+", "_", str(value).lower()).strip("_")
    if not token:
        raise ChurnmlError(f"{what} {value!r} gives an empty column name")
    return token


def column_tokens(values: Sequence[str], what: str) -> dict[str, str]:
    """Value -> column token, refusing two values that would share a column."""
    out: dict[str, str] = {}
    seen: dict[str, str] = {}
    for v in values:
        t = column_token(v, what)
        if t in seen and seen[t] != v:
            raise ChurnmlError(f"{what}s {seen[t]!r} and {v!r} would share the column name {t!r}")
        seen[t], out[v] = v, t
    return out


# ------------------------------------------------------------------------------------------- usage windows

AccountRange = tuple[str | None, str | None]  # [first, last) account ids of an engine partition; None: open
ALL_ACCOUNTS: AccountRange = (None, None)


def account_range_sql(column: str, accounts: AccountRange) -> str:
    """The condition selecting ``accounts`` (a half-open range of ids) on ``column``."""
    first, last = accounts
    parts = [f"{column} >= {sql_literal(first)}" if first is not None else ""]
    parts.append(f"{column} < {sql_literal(last)}" if last is not None else "")
    return " AND ".join(p for p in parts if p) or "TRUE"


def _window_columns(win: Windows) -> dict[str, tuple[int, int]]:
    """Window sum name -> the day offsets ``lo < k <= hi`` it covers (one per usage sum)."""
    t, z = win.trend, ZSCORE_WINDOW_DAYS
    cols = {f"sum_{w}d": (0, w) for w in win.internal_sums}
    cols[f"sum_prev_{t}d"] = (t, 2 * t)
    for j in range(win.baseline_weeks + 1):
        if not (j == 0 and z in win.internal_sums):
            cols[f"week_{j}"] = (z * j, z * (j + 1))
    return cols


def usage_bucket_edges(win: Windows) -> tuple[int, ...]:
    """Day-offset edges ``0 = e_0 < e_1 < ... = lookback``: every window is a run of buckets ``(e_i, e_i+1]``."""
    edges = {0, win.lookback}
    for lo_k, hi_k in _window_columns(win).values():
        edges |= {lo_k, hi_k}
    return tuple(sorted(edges))


@dataclass(frozen=True)
class UsagePeriods:
    """The parameter tables of the usage aggregation, built from the cutoffs only (see :func:`usage_periods`).

    ``calendar``: date, period (the period's exclusive end), ``b_<lag>`` (int32: the bucket of the day
    for the cutoff ``lag`` periods later, -1 if none) and day_bit (int64). ``cutoffs``: one row per
    cutoff with, for each lag, the period its look-back reaches that many periods back (``period_<lag>``,
    null beyond the look-back) and the active-day bit mask and scale for it. ``slots``: the (lag, bucket)
    pairs that occur, one aggregate each. ``lo``: the calendar's first date (ISO; earlier usage days are
    clamped to it), ``hi``: the latest cutoff (ISO; later usage is never read).
    """

    calendar: pd.DataFrame
    cutoffs: pd.DataFrame
    slots: tuple[tuple[int, int], ...]
    lo: str
    hi: str


def usage_periods(cutoffs: Sequence[pd.Timestamp], win: Windows) -> UsagePeriods:
    """Split time into periods so that each usage row is aggregated once, not once per cutoff.

    Periods end at every cutoff; periods longer than the median gap between cutoffs (the first one, whose
    look-back precedes every cutoff, and long gaps) are split into pieces of that length, counted back from
    their end, so a period meets few buckets. Each day maps to one period; for every later cutoff that can
    see it (``lag`` periods on), the day falls in one bucket of day offsets (:func:`usage_bucket_edges`):
    the aggregate of a (lag, bucket) slot over a period is that period's share of the bucket of that
    cutoff, and a cutoff's bucket is the sum of its periods' shares. Active days are a bit per day counted
    back from the period's end (``day_bit``), moved to the cutoff's offsets by ``(bits & bit_mask) *
    bit_scale``. The first date, ``min(cutoff) - lookback - 1``, also stands for every earlier date; it
    lies in no window, so those rows only feed the unbounded look-backs.
    """
    cuts = np.array(sorted({pd.Timestamp(c).normalize() for c in cutoffs}), dtype="datetime64[D]")
    if len(cuts) == 0:
        raise ChurnmlError("features: no cutoffs")
    look, trend = win.lookback, win.trend
    lo = cuts[0] - np.timedelta64(look + 1, "D")
    gaps = np.diff(cuts).astype(np.int64)
    step = max(1, int(np.median(gaps))) if len(gaps) else look + 1
    ends = set(cuts.tolist())
    bounds = [lo, *cuts]
    for first, last in zip(bounds[:-1], bounds[1:], strict=True):
        end = last - np.timedelta64(step, "D")
        while end > first:
            ends.add(end)
            end -= np.timedelta64(step, "D")
    ends_arr = np.array(sorted(ends), dtype="datetime64[D]")
    is_cutoff = np.isin(ends_arr, cuts)
    dates = np.arange(lo, cuts[-1], dtype="datetime64[D]")
    period = np.searchsorted(ends_arr, dates, side="right")  # the first end strictly after each date
    edges = np.array(usage_bucket_edges(win))
    cal = {"date": dates.astype("datetime64[s]"), "period": ends_arr[period].astype("datetime64[s]")}
    slots: set[tuple[int, int]] = set()
    for lag in range(len(ends_arr)):
        target = period + lag
        inside = target < len(ends_arr)
        k = np.where(inside, (ends_arr[np.minimum(target, len(ends_arr) - 1)] - dates).astype(np.int64), 0)
        if not (inside & (k <= look)).any():
            break
        seen = inside & is_cutoff[np.minimum(target, len(ends_arr) - 1)] & (k >= 1) & (k <= look)
        seen[0] = False  # the first date stands for every earlier one
        bucket = np.where(seen, np.searchsorted(edges, k, side="left") - 1, -1).astype(np.int32)
        cal[f"b_{lag}"] = bucket
        slots |= {(lag, int(b)) for b in np.unique(bucket[seen])}
    offset = (ends_arr[period] - dates).astype(np.int64) - 1  # days back from the period's end
    bits = np.where(offset < trend, np.left_shift(1, np.clip(offset, 0, 62)), 0).astype(np.int64)
    bits[0] = 0
    cal["day_bit"] = bits
    rows = []
    for c in cuts:
        j = int(np.searchsorted(ends_arr, c))
        row: dict[str, object] = {"cutoff": c}
        for m in range(j, -1, -1):
            delta = int((c - ends_arr[m]).astype(np.int64))
            if delta >= look:  # the period's last day is already beyond the look-back
                break
            seen = delta < trend
            row[f"period_{j - m}"] = ends_arr[m]
            row[f"bit_mask_{j - m}"] = (1 << (trend - delta)) - 1 if seen else 0
            row[f"bit_scale_{j - m}"] = 1 << delta if seen else 0
        rows.append(row)
    lags = pd.DataFrame(rows)
    n_lags = sum(1 for col in lags.columns if col.startswith("period_"))
    for col in ["cutoff", *(f"period_{i}" for i in range(n_lags))]:
        lags[col] = pd.to_datetime(lags[col]).astype("datetime64[s]")
    for i in range(n_lags):
        for col in (f"bit_mask_{i}", f"bit_scale_{i}"):
            lags[col] = lags[col].fillna(0).astype(np.int64)
    return UsagePeriods(
        pd.DataFrame(cal),
        lags,
        tuple(sorted(slots)),
        str(lo),
        str(cuts[-1]),
    )


def usage_agg_sql(periods: UsagePeriods, accounts: AccountRange = ALL_ACCOUNTS) -> str:
    """Per (account, period, metric): each slot's sum, active-day bits and the positive-day bounds.

    One pass over the usage rows, each joined 1:1 to its calendar day.

    Args:
        periods: the parameter tables (only ``slots``, ``lo`` and ``hi`` go into the text).
        accounts: the range of account ids to aggregate (the engine's partitions).
    """
    sums = [
        f"SUM(CASE WHEN c.b_{lag} = {b} THEN u.value ELSE 0 END) AS s_{lag}_{b}" for lag, b in periods.slots
    ]
    cols = ",\n  ".join(
        sums
        + [
            "MAX(CASE WHEN u.value > 0 THEN u.date END) AS last_positive_date",
            "MIN(CASE WHEN u.value > 0 THEN u.date END) AS first_positive_date",
            "BIT_OR(CASE WHEN u.value > 0 THEN c.day_bit ELSE 0 END) AS active_day_bits",
        ]
    )
    return f"""
SELECT u.account_id, c.period, u.metric,
  {cols}
FROM usage AS u
JOIN usage_calendar AS c ON c.date = GREATEST(u.date, DATE '{periods.lo}')
WHERE u.date < DATE '{periods.hi}' AND {account_range_sql("u.account_id", accounts)}
GROUP BY u.account_id, c.period, u.metric
"""


def _lag_count(periods: UsagePeriods) -> int:
    return sum(1 for col in periods.cutoffs.columns if col.startswith("period_"))


def _windowed_sql(win: Windows, periods: UsagePeriods) -> str:
    """The ``buckets`` and ``windowed`` CTEs: each grid row of ``carried`` with its window sums and active days.

    A cutoff's bucket is the sum of its periods' slots, found by one equi-join per lag (a grid row meets
    each period at most once: no aggregation, no fan-out); each window is a run of buckets.
    """
    edges = usage_bucket_edges(win)
    n_lags = _lag_count(periods)
    by_bucket: dict[int, list[int]] = {}
    for lag, b in periods.slots:
        by_bucket.setdefault(b, []).append(lag)
    buckets = [
        " + ".join(f"COALESCE(a{lag}.s_{lag}_{b}, 0)" for lag in lags) + f" AS bucket_{b}"
        for b, lags in sorted(by_bucket.items())
    ]
    bits = " | ".join(
        f"(COALESCE(a{lag}.active_day_bits, 0) & p.bit_mask_{lag}) * p.bit_scale_{lag}"
        for lag in range(n_lags)
    )
    joins = "\n  ".join(
        f"LEFT JOIN usage_agg AS a{lag}\n"
        f"    ON a{lag}.account_id = g.account_id AND a{lag}.metric = g.metric AND a{lag}.period = p.period_{lag}"
        for lag in range(n_lags)
    )
    windows = []
    for name, (lo_k, hi_k) in _window_columns(win).items():
        parts = [
            f"bucket_{i}"
            for i in range(len(edges) - 1)
            if edges[i] >= lo_k and edges[i + 1] <= hi_k and i in by_bucket
        ]
        windows.append(f"{' + '.join(parts) or '0'} AS {name}")
    bucket_cols = ",\n    ".join([*buckets, f"{bits or '0'} AS active_day_bits"])
    window_cols = ",\n    ".join(windows)
    return f"""buckets AS (
  SELECT g.account_id, g.cutoff, g.metric, g.last_positive_to_date, g.first_positive_to_date,
    {bucket_cols}
  FROM carried AS g
  JOIN usage_cutoffs AS p ON p.cutoff = g.cutoff
  {joins}
  WHERE g.is_grid = 1
),
windowed AS (
  SELECT account_id, cutoff, metric, last_positive_to_date, first_positive_to_date,
    {window_cols},
    active_day_bits
  FROM buckets
)"""


def _week0(win: Windows) -> str:
    return f"sum_{ZSCORE_WINDOW_DAYS}d" if ZSCORE_WINDOW_DAYS in win.internal_sums else "week_0"


def usage_metric_sql(win: Windows, periods: UsagePeriods, accounts: AccountRange = ALL_ACCOUNTS) -> str:
    """Per spine row and metric: the finished per-metric features and the adoption inputs.

    Args:
        win: the windows.
        periods: the parameter tables (the slots and lags shape the text).
        accounts: the range of account ids (the one ``usage_agg`` holds).
    """
    t, b, z = win.trend, win.baseline_weeks, ZSCORE_WINDOW_DAYS
    mean = " + ".join(f"week_{j}" for j in range(1, b + 1))
    var = " + ".join(f"(week_{j} - base_mean) * (week_{j} - base_mean)" for j in range(1, b + 1))
    sums = ",\n  ".join(f"sum_{w}d" for w in win.internal_sums)
    return f"""
WITH grid AS (
  SELECT s.account_id, s.cutoff, m.metric
  FROM spine_keys AS s CROSS JOIN (SELECT DISTINCT metric FROM usage_agg) AS m
  WHERE {account_range_sql("s.account_id", accounts)}
),
marks AS (
  -- unbounded look-backs: the positive-day bounds of every interval between cutoffs, and the grid
  SELECT account_id, metric, period AS cutoff, last_positive_date, first_positive_date, 0 AS is_grid
  FROM usage_agg WHERE last_positive_date IS NOT NULL
  UNION ALL
  SELECT account_id, metric, cutoff, NULL AS last_positive_date, NULL AS first_positive_date, 1 AS is_grid
  FROM grid
),
carried AS (
  -- carried forward over periods (a period ending on a grid row's cutoff sorts before it)
  SELECT account_id, metric, cutoff, is_grid,
    MAX(last_positive_date) OVER (PARTITION BY account_id, metric ORDER BY cutoff, is_grid
      ROWS BETWEEN UNBOUNDED PRECEDING AND CURRENT ROW) AS last_positive_to_date,
    MIN(first_positive_date) OVER (PARTITION BY account_id, metric ORDER BY cutoff, is_grid
      ROWS BETWEEN UNBOUNDED PRECEDING AND CURRENT ROW) AS first_positive_to_date
  FROM marks
),
{_windowed_sql(win, periods)},
scored AS (
  SELECT w.*, st.first_start_date, ({mean}) / {b} AS base_mean
  FROM windowed AS w
  LEFT JOIN contract_state AS st ON st.account_id = w.account_id AND st.cutoff = w.cutoff
),
spread AS (
  SELECT scored.*, SQRT(({var}) / {b - 1}) AS base_std FROM scored
)
SELECT account_id, cutoff, metric,
  {sums},
  sum_{t}d / {t} AS mean_{t}d,
  CASE WHEN sum_prev_{t}d > 0 THEN sum_{t}d / sum_prev_{t}d - 1 END AS trend_{t}d,
  DATE_DIFF('day', last_positive_to_date, cutoff) AS days_since_last,
  CASE WHEN base_std > 1e-9 AND first_start_date <= cutoff - {z * (b + 1)}
       THEN ({_week0(win)} - base_mean) / base_std END AS zscore_{z}d,
  first_positive_to_date,
  active_day_bits
FROM spread
"""


def usage_account_sql(
    win: Windows, metrics: dict[str, str], active_users_metric: str, key_metrics: Sequence[str]
) -> str:
    """Per spine row: the usage features pivoted wide, and the adoption / lifecycle inputs.

    Each metric's row is joined on (one row per spine row and metric: an equi-join is cheaper than a
    conditional aggregate per column); the account-wide inputs are one small aggregation.
    """
    t, z = win.trend, ZSCORE_WINDOW_DAYS
    cols, joins = [], []
    for i, (metric, token) in enumerate(metrics.items()):
        measures = [f"sum_{w}d" for w in win.sums] + [f"mean_{t}d", f"trend_{t}d"]
        measures += ["days_since_last", f"zscore_{z}d"]
        for name in measures:
            # a partition of accounts may lack a metric altogether: no row means no use
            value = f"COALESCE(m{i}.{name}, 0)" if name.startswith(("sum_", "mean_")) else f"m{i}.{name}"
            cols.append(f"{value} AS usage_{token}_{name}")
        joins.append(
            f"LEFT JOIN usage_metric_features AS m{i}\n"
            f"  ON m{i}.account_id = a.account_id AND m{i}.cutoff = a.cutoff AND m{i}.metric = {sql_literal(metric)}"
        )
    keys = ", ".join(sql_literal(m) for m in key_metrics) or "NULL"
    if active_users_metric in metrics:
        active = f"COALESCE(m{list(metrics).index(active_users_metric)}.sum_{t}d, 0)"
    else:
        active = "CAST(NULL AS DOUBLE)"
    cols += [
        f"{active} AS active_users_sum",
        "a.key_features_used",
        "a.active_days",
        "a.first_value_date",
    ]
    body = ",\n  ".join(cols)
    join_text = "\n".join(joins)
    return f"""
WITH per_account AS (
  SELECT account_id, cutoff,
    SUM(CASE WHEN metric IN ({keys}) AND sum_{t}d > 0 THEN 1 ELSE 0 END) AS key_features_used,
    BIT_COUNT(BIT_OR(active_day_bits)) AS active_days,
    MIN(CASE WHEN metric IN ({keys}) THEN first_positive_to_date END) AS first_value_date
  FROM usage_metric_features
  GROUP BY account_id, cutoff
)
SELECT a.account_id, a.cutoff,
  {body}
FROM per_account AS a
{join_text}
"""


def usage_feature_columns(win: Windows, metrics: dict[str, str]) -> list[str]:
    """The usage family's columns, in order."""
    t, z = win.trend, ZSCORE_WINDOW_DAYS
    out = []
    for token in metrics.values():
        out += [f"usage_{token}_sum_{w}d" for w in win.sums]
        out += [f"usage_{token}_mean_{t}d", f"usage_{token}_trend_{t}d"]
        out += [f"usage_{token}_days_since_last", f"usage_{token}_zscore_{z}d"]
    return out


# --------------------------------------------------------------------------------------------- contracts


def contract_state_sql() -> str:
    """Per spine row: the known contract levels now and ``CONTRACT_CHANGE_DAYS`` earlier, first start.

    A subscription is known once ``start_date < cutoff``; its end date only once ``end_date < cutoff``
    (a later end date is not yet known, so the row still counts as running).
    """
    ref = CONTRACT_CHANGE_DAYS + 1  # the day before (cutoff - 90), as "now" is the day before the cutoff
    return f"""
WITH known AS (
  SELECT s.account_id, s.cutoff, b.start_date, b.mrr, b.seats,
    CASE WHEN b.end_date < s.cutoff THEN b.end_date END AS known_end_date
  FROM spine_keys AS s
  JOIN subscriptions AS b ON b.account_id = s.account_id AND b.start_date < s.cutoff
)
SELECT account_id, cutoff,
  MIN(start_date) AS first_start_date,
  SUM(CASE WHEN known_end_date IS NULL THEN mrr ELSE 0 END) AS mrr_now,
  SUM(CASE WHEN known_end_date IS NULL THEN seats ELSE 0 END) AS seats_now,
  SUM(CASE WHEN start_date <= cutoff - {ref} AND (known_end_date IS NULL OR known_end_date > cutoff - {ref})
      THEN mrr ELSE 0 END) AS mrr_before,
  SUM(CASE WHEN start_date <= cutoff - {ref} AND (known_end_date IS NULL OR known_end_date > cutoff - {ref})
      THEN seats ELSE 0 END) AS seats_before
FROM known
GROUP BY account_id, cutoff
"""


def _term_months_case(column: str) -> str:
    """SQL: the term in months of a billing period (``BILLING_PERIOD_MONTHS``; 1 when unknown)."""
    whens = " ".join(f"WHEN '{p}' THEN {m}" for p, m in BILLING_PERIOD_MONTHS.items() if m != 1)
    return f"CASE {column} {whens} ELSE 1 END"


def contract_primary_sql() -> str:
    """Per spine row: the main running contract (largest MRR) and its next scheduled term end.

    The term end is computed from ``start_date`` and ``billing_period`` (every term of
    ``BILLING_PERIOD_MONTHS`` from the start, the first boundary on or after the cutoff), never from
    ``end_date``.
    """
    add = "(MONTH(start_date) - 1 + term_months_ahead)"
    return f"""
WITH current_subs AS (
  SELECT s.account_id, s.cutoff, b.subscription_id, b.plan, b.billing_period, b.start_date, b.mrr,
    {_term_months_case("b.billing_period")} AS period_months,
    ROW_NUMBER() OVER (PARTITION BY s.account_id, s.cutoff
                       ORDER BY b.mrr DESC, b.start_date DESC, b.subscription_id DESC) AS rank_in_account
  FROM spine_keys AS s
  JOIN subscriptions AS b
    ON b.account_id = s.account_id AND b.start_date < s.cutoff
   AND (b.end_date IS NULL OR b.end_date >= s.cutoff)
),
elapsed AS (
  -- months from start to the cutoff's month, plus one when start + that many months is before the cutoff
  SELECT current_subs.*,
    (YEAR(cutoff) - YEAR(start_date)) * 12 + MONTH(cutoff) - MONTH(start_date)
      + CASE WHEN LEAST(DAY(start_date), DAY(LAST_DAY(cutoff))) >= DAY(cutoff) THEN 0 ELSE 1 END
      AS months_needed
  FROM current_subs
  WHERE rank_in_account = 1
),
ahead AS (
  SELECT elapsed.*,
    GREATEST(CAST(CEIL(months_needed / period_months) AS INTEGER), 1) * period_months AS term_months_ahead
  FROM elapsed
),
term_month AS (
  SELECT ahead.*, MAKE_DATE(YEAR(start_date) + {add} // 12, {add} % 12 + 1, 1) AS term_month_start
  FROM ahead
)
SELECT account_id, cutoff, plan, billing_period,
  MAKE_DATE(YEAR(term_month_start), MONTH(term_month_start),
            LEAST(DAY(start_date), DAY(LAST_DAY(term_month_start)))) AS term_end_date
FROM term_month
"""


def subscription_changes_sql() -> str:
    """Per subscription continuing an earlier one (starting within ``RENEWAL_GAP_DAYS`` of its end): MRRs."""
    return f"""
SELECT n.account_id, n.subscription_id, n.start_date, n.mrr, p.mrr AS previous_mrr
FROM subscriptions AS n
JOIN subscriptions AS p
  ON p.account_id = n.account_id AND p.subscription_id <> n.subscription_id
 AND p.end_date <= n.start_date AND p.end_date >= n.start_date - {RENEWAL_GAP_DAYS}
QUALIFY ROW_NUMBER() OVER (PARTITION BY n.subscription_id
                           ORDER BY p.end_date DESC, p.mrr DESC, p.subscription_id DESC) = 1
"""


def contract_features_sql() -> str:
    """The contract family."""
    d = CONTRACT_CHANGE_DAYS
    return f"""
WITH changes AS (
  SELECT s.account_id, s.cutoff,
    COUNT(*) AS renewals,
    SUM(CASE WHEN ch.mrr > ch.previous_mrr THEN 1 ELSE 0 END) AS upgrades,
    SUM(CASE WHEN ch.mrr < ch.previous_mrr THEN 1 ELSE 0 END) AS downgrades
  FROM spine_keys AS s
  JOIN subscription_changes AS ch ON ch.account_id = s.account_id AND ch.start_date < s.cutoff
  GROUP BY s.account_id, s.cutoff
)
SELECT s.account_id, s.cutoff,
  COALESCE(st.mrr_now, 0) AS contract_mrr,
  12 * COALESCE(st.mrr_now, 0) AS contract_arr,
  COALESCE(st.seats_now, 0) AS contract_seats,
  p.plan AS contract_plan,
  p.billing_period AS contract_billing_period,
  DATE_DIFF('day', s.cutoff, p.term_end_date) AS contract_days_to_renewal,
  COALESCE(ch.renewals, 0) AS contract_renewals_count,
  COALESCE(ch.upgrades, 0) AS contract_upgrades_count,
  COALESCE(ch.downgrades, 0) AS contract_downgrades_count,
  CASE WHEN st.mrr_before > 0 THEN (st.mrr_now - st.mrr_before) / st.mrr_before END AS contract_mrr_change_{d}d
FROM spine_keys AS s
LEFT JOIN contract_state AS st ON st.account_id = s.account_id AND st.cutoff = s.cutoff
LEFT JOIN contract_primary AS p ON p.account_id = s.account_id AND p.cutoff = s.cutoff
LEFT JOIN changes AS ch ON ch.account_id = s.account_id AND ch.cutoff = s.cutoff
"""


def adoption_features_sql(win: Windows) -> str:
    """The adoption family: license utilisation, breadth of key features, active days."""
    t = win.trend
    return f"""
SELECT s.account_id, s.cutoff,
  CASE WHEN st.seats_now > 0 THEN ua.active_users_sum / {t} / st.seats_now END
    AS adoption_license_utilisation_{t}d,
  COALESCE(ua.key_features_used, 0) AS adoption_breadth_{t}d,
  COALESCE(ua.active_days, 0) AS adoption_active_days_{t}d
FROM spine_keys AS s
LEFT JOIN usage_account AS ua ON ua.account_id = s.account_id AND ua.cutoff = s.cutoff
LEFT JOIN contract_state AS st ON st.account_id = s.account_id AND st.cutoff = s.cutoff
"""


def lifecycle_features_sql(win: Windows, onboarding_days: int, usage_start: str | None) -> str:
    """The lifecycle family: tenure, time to first value, journey stage.

    Args:
        win: the windows.
        onboarding_days: tenure below which an account is onboarding.
        usage_start: the first day of usage data (ISO) or None; the time to first value of an account
            whose first subscription started before it is unknown (its first use may predate the data).
    """
    t = win.trend
    utilisation = f"COALESCE(ua.active_users_sum, 0) / {t} / st.seats_now"
    known = f"st.first_start_date >= DATE '{usage_start}'" if usage_start else "TRUE"
    return f"""
SELECT s.account_id, s.cutoff,
  DATE_DIFF('day', st.first_start_date, s.cutoff) AS lifecycle_tenure_days,
  CASE
    WHEN st.first_start_date IS NULL OR ua.first_value_date IS NULL
      OR DATE_DIFF('day', st.first_start_date, s.cutoff) < {int(onboarding_days)} THEN 'onboarding'
    WHEN (st.seats_now > 0 AND {utilisation} >= {EXPANSION_UTILISATION})
      OR (st.seats_before > 0 AND st.seats_now > st.seats_before) THEN 'expansion'
    ELSE 'adoption'
  END AS lifecycle_journey_stage,
  CASE WHEN {known} THEN DATE_DIFF('day', st.first_start_date, ua.first_value_date) END
    AS lifecycle_time_to_first_value_days,
  CASE WHEN ua.first_value_date IS NULL THEN 0 ELSE 1 END AS lifecycle_first_value_reached
FROM spine_keys AS s
LEFT JOIN usage_account AS ua ON ua.account_id = s.account_id AND ua.cutoff = s.cutoff
LEFT JOIN contract_state AS st ON st.account_id = s.account_id AND st.cutoff = s.cutoff
"""


# ------------------------------------------------------------------------------------------ event tables


def support_features_sql() -> str:
    """The support family: ticket counts, high-priority tickets, resolution time, CSAT, open tickets."""
    w_short, w_long = SUPPORT_WINDOWS
    q, h = SUPPORT_QUALITY_WINDOW, SUPPORT_HIGH_WINDOW
    resolved = f"t.resolved_at < s.cutoff AND t.resolved_at >= s.cutoff - {q}"
    return f"""
SELECT s.account_id, s.cutoff,
  SUM(CASE WHEN t.created_at >= s.cutoff - {w_short} THEN 1 ELSE 0 END) AS support_tickets_count_{w_short}d,
  SUM(CASE WHEN t.created_at >= s.cutoff - {w_long} THEN 1 ELSE 0 END) AS support_tickets_count_{w_long}d,
  SUM(CASE WHEN t.created_at >= s.cutoff - {h} AND t.priority IN ('high', 'urgent') THEN 1 ELSE 0 END)
    AS support_high_priority_count_{h}d,
  AVG(CASE WHEN {resolved} THEN DATE_DIFF('microsecond', t.created_at, t.resolved_at) / 3600000000.0 END)
    AS support_resolution_hours_mean_{q}d,
  AVG(CASE WHEN {resolved} THEN t.csat END) AS support_csat_mean_{q}d,
  SUM(CASE WHEN t.created_at IS NOT NULL AND (t.resolved_at IS NULL OR t.resolved_at >= s.cutoff)
      THEN 1 ELSE 0 END) AS support_open_tickets_count
FROM spine_keys AS s
LEFT JOIN support_tickets AS t ON t.account_id = s.account_id AND t.created_at < s.cutoff
GROUP BY s.account_id, s.cutoff
"""


def nps_features_sql() -> str:
    """The NPS family: latest answer, change from the previous one, days since the latest."""
    return """
WITH ranked AS (
  SELECT s.account_id, s.cutoff, n.score, n.responded_at,
    ROW_NUMBER() OVER (PARTITION BY s.account_id, s.cutoff
                       ORDER BY n.responded_at DESC, n.response_id DESC) AS recency
  FROM spine_keys AS s
  JOIN nps_responses AS n ON n.account_id = s.account_id AND n.responded_at < s.cutoff
),
latest AS (
  SELECT account_id, cutoff,
    MAX(CASE WHEN recency = 1 THEN score END) AS latest_score,
    MAX(CASE WHEN recency = 2 THEN score END) AS previous_score,
    MAX(CASE WHEN recency = 1 THEN DATE_DIFF('day', CAST(responded_at AS DATE), cutoff) END) AS days_since
  FROM ranked
  WHERE recency <= 2
  GROUP BY account_id, cutoff
)
SELECT s.account_id, s.cutoff,
  l.latest_score AS nps_score_latest,
  l.latest_score - l.previous_score AS nps_score_change,
  l.days_since AS nps_days_since_latest
FROM spine_keys AS s
LEFT JOIN latest AS l ON l.account_id = s.account_id AND l.cutoff = s.cutoff
"""


def csm_features_sql(kinds: dict[str, str]) -> str:
    """The CSM family: touches in the window, per kind, and days since the last touch."""
    w = CSM_WINDOW
    per_kind = "".join(
        f"  SUM(CASE WHEN a.occurred_at >= s.cutoff - {w} AND a.kind = {sql_literal(kind)} THEN 1 ELSE 0 END)"
        f" AS csm_{token}_count_{w}d,\n"
        for kind, token in kinds.items()
    )
    return f"""
SELECT s.account_id, s.cutoff,
  SUM(CASE WHEN a.occurred_at >= s.cutoff - {w} THEN 1 ELSE 0 END) AS csm_touches_count_{w}d,
{per_kind}  DATE_DIFF('day', CAST(MAX(a.occurred_at) AS DATE), s.cutoff) AS csm_days_since_last_touch
FROM spine_keys AS s
LEFT JOIN csm_activities AS a ON a.account_id = s.account_id AND a.occurred_at < s.cutoff
GROUP BY s.account_id, s.cutoff
"""


def contacts_features_sql(sponsor_window: int) -> str:
    """The contacts family: a sponsor or champion left recently, days since, how many remain."""
    w = int(sponsor_window)
    return f"""
SELECT s.account_id, s.cutoff,
  MAX(CASE WHEN k.end_date < s.cutoff AND k.end_date >= s.cutoff - {w} THEN 1 ELSE 0 END)
    AS contacts_sponsor_left_{w}d,
  DATE_DIFF('day', MAX(CASE WHEN k.end_date < s.cutoff THEN k.end_date END), s.cutoff)
    AS contacts_days_since_sponsor_left,
  SUM(CASE WHEN k.start_date < s.cutoff AND (k.end_date IS NULL OR k.end_date >= s.cutoff) THEN 1 ELSE 0 END)
    AS contacts_champion_count
FROM spine_keys AS s
LEFT JOIN contacts AS k
  ON k.account_id = s.account_id AND k.role IN ('sponsor', 'champion') AND k.start_date < s.cutoff
GROUP BY s.account_id, s.cutoff
"""


def invoices_features_sql() -> str:
    """The invoices family: overdue invoices and mean days late (a payment is known once paid_date < cutoff)."""
    o, late = INVOICE_OVERDUE_WINDOW, INVOICE_LATE_WINDOW
    return f"""
SELECT s.account_id, s.cutoff,
  SUM(CASE WHEN i.due_date >= s.cutoff - {o} AND (i.paid_date IS NULL OR i.paid_date > i.due_date)
      THEN 1 ELSE 0 END) AS invoices_overdue_count_{o}d,
  AVG(CASE WHEN i.due_date IS NOT NULL THEN GREATEST(0, DATE_DIFF('day', i.due_date,
      LEAST(COALESCE(i.paid_date, s.cutoff), s.cutoff))) END) AS invoices_days_late_mean_{late}d
FROM spine_keys AS s
LEFT JOIN invoices AS i
  ON i.account_id = s.account_id AND i.due_date < s.cutoff AND i.due_date >= s.cutoff - {late}
GROUP BY s.account_id, s.cutoff
"""


def account_features_sql() -> str:
    """The account family: the account's static attributes."""
    return """
SELECT s.account_id, s.cutoff,
  a.segment AS account_segment,
  a.touch_model AS account_touch_model,
  a.industry AS account_industry,
  a.region AS account_region
FROM spine_keys AS s
LEFT JOIN accounts AS a ON a.account_id = s.account_id
"""


def final_sql(family_columns: dict[str, list[str]]) -> str:
    """Join the families' tables (``<family>_features``) onto the spine, in the spine's row order."""
    select = ["s.account_id", "CAST(s.cutoff AS TIMESTAMP) AS cutoff"]
    joins = []
    for family, cols in family_columns.items():
        alias = f"f_{family}"
        table = "usage_account" if family == "usage" else f"{family}_features"
        select += [
            f"{alias}.{c}" if c in CATEGORICAL else f"CAST({alias}.{c} AS DOUBLE) AS {c}" for c in cols
        ]
        joins.append(
            f"LEFT JOIN {table} AS {alias} ON {alias}.account_id = s.account_id AND {alias}.cutoff = s.cutoff"
        )
    body = ",\n  ".join(select)
    join_text = "\n".join(joins)
    return f"""
SELECT {body}
FROM spine_rows AS s
{join_text}
ORDER BY s.row_id
"""
