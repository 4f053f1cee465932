"""The static portfolio report for CSMs (reports/index.html) and the portfolio KPIs it puts against their history.

The page is one self-contained HTML file: inline CSS, a small vanilla script (filters and sorting) allowed by
a Content-Security-Policy hash, and charts drawn here as inline SVG. Nothing is loaded from the network (the
policy forbids it), and every value coming from the data is escaped by Jinja2's autoescaping.

Portfolio KPIs (:func:`portfolio_kpis`), monthly from the subscriptions (ARR = 12 x MRR of the active
subscriptions on a day; a month's cohort = the accounts with ARR on the day before it starts):

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

import base64
import datetime as dt
import hashlib
import json
import math
from collections.abc import Callable, Mapping, Sequence
from importlib import resources
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
from markupsafe import Markup, escape

from churnml.config import TiersConfig
from churnml.errors import ChurnmlError

KPI_COLUMNS = ["logo_churn_rate", "grr", "nrr"]
# Direction in which a KPI going is bad: +1 up is bad (churn), -1 down is bad (retention).
_BAD_DIRECTION = {"logo_churn_rate": 1, "grr": -1, "nrr": -1}
_MAD_TO_SD = 1.4826
_MAD_FLOOR = 0.001  # 0.1 percentage point: a perfectly flat history must not make every wobble "abnormal"
_LOSS_FLOOR = 0.01  # below a 1% median loss, "materially worse" means at least 0.5 percentage point worse
TIER_COLOURS = {"critical": "#b42318", "high": "#c4320a", "medium": "#b54708", "low": "#067647"}
REPORT_FILE = "index.html"


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
    usage: pd.DataFrame, *, as_of: Any, metric: str = "active_users", weeks: int = 26
) -> pd.DataFrame:
    """Weekly average of a daily usage metric for the ``weeks`` full weeks before ``as_of`` (point in time).

    Week ``k`` (0 = the latest) covers ``[as_of - 7(k+1), as_of - 7k)`` days; a missing day counts 0 (the
    usage contract), so the value is the week's sum / 7.

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
    accounts = sorted(usage.loc[usage["metric"] == metric, "account_id"].astype("str").unique())
    full = pd.MultiIndex.from_product([accounts, range(weeks)], names=["account_id", "k"])
    sums = sums.reindex(full, fill_value=0.0).reset_index()
    sums["week_start"] = cutoff - pd.to_timedelta(7 * (sums["k"] + 1), unit="D")
    out = sums[["account_id", "week_start", "value"]].sort_values(["account_id", "week_start"])
    return out.astype({"week_start": "datetime64[us]"}).reset_index(drop=True)


# ------------------------------------------------------------------------------------------ formatting


def _money(v: float) -> str:
    if v is None or not np.isfinite(v):
        return "–"
    a = abs(v)
    if a >= 1e6:
        return f"${v / 1e6:.1f}M"
    if a >= 1e4:
        return f"${v / 1e3:.0f}k"
    if a >= 1e3:
        return f"${v / 1e3:.1f}k"
    return f"${v:,.0f}"


def _pct(v: float, digits: int = 0) -> str:
    return "–" if v is None or not np.isfinite(v) else f"{v * 100:.{digits}f}%"


_LABELS = {
    "smb": "SMB",
    "mid_market": "Mid-market",
    "high_touch": "High touch",
    "low_touch": "Low touch",
    "tech_touch": "Tech touch",
}


def _nice(value: Any) -> str:
    """A category code as a CSM reads it: ``mid_market`` -> "Mid-market"."""
    text = str(value)
    return _LABELS.get(text, text.replace("_", " ")[:1].upper() + text.replace("_", " ")[1:])


def _pts(v: float) -> str:
    return f"{v * 100:+.1f} pts"


# ------------------------------------------------------------------------------------------------ charts


def _f(v: float) -> str:
    return f"{v:.1f}"


def sparkline_svg(
    values: Sequence[float], *, width: int = 132, height: int = 32, what: str = "Active users"
) -> Markup:
    """A small inline SVG line of a weekly series (oldest first), coloured by its recent direction.

    The tooltip says what is drawn: the first and last week and the change of the last 4 weeks against
    the 4 before.
    """
    v = np.asarray(values, dtype=float)
    if len(v) == 0 or not np.isfinite(v).any():
        return Markup('<span class="muted">no usage data</span>')
    v = np.nan_to_num(v, nan=0.0)
    pad = 3.0
    top = max(float(v.max()), 1e-9)
    n = len(v)
    xs = [pad + i * (width - 2 * pad) / max(n - 1, 1) for i in range(n)]
    ys = [height - pad - (y / top) * (height - 2 * pad) for y in v]
    recent, prior = v[-4:].mean(), v[-8:-4].mean() if n >= 8 else v[: max(n - 4, 1)].mean()
    change = (recent - prior) / prior if prior > 0 else (0.0 if recent == 0 else 1.0)
    cls = "down" if change <= -0.2 else ("up" if change >= 0.1 else "flat")
    line = " ".join(f"{_f(x)},{_f(y)}" for x, y in zip(xs, ys, strict=True))
    area = f"{_f(xs[0])},{height - pad} {line} {_f(xs[-1])},{height - pad}"
    tip = (
        f"{what}, weekly average of daily counts over the last {n} weeks: {v[0]:.1f} in the first week, "
        f"{v[-1]:.1f} last week; last 4 weeks {change * 100:+.0f}% vs the 4 before"
    )
    return Markup(
        f'<svg class="spark {cls}" width="{width}" height="{height}" viewBox="0 0 {width} {height}" role="img" '
        f'aria-label="{escape(tip)}"><title>{escape(tip)}</title>'
        f'<polygon class="area" points="{area}"/><polyline class="line" points="{line}"/>'
        f'<circle class="dot" cx="{_f(xs[-1])}" cy="{_f(ys[-1])}" r="2.5"/></svg>'
    )


def line_chart_svg(
    months: Sequence[pd.Timestamp],
    values: Sequence[float],
    *,
    fmt: Callable[[float], str],
    name: str,
    median: Sequence[float] | None = None,
    abnormal: Sequence[bool] | None = None,
    final: Sequence[bool] | None = None,
    width: int = 520,
    height: int = 180,
) -> Markup:
    """A monthly KPI history as inline SVG: the series, its trailing median (dashed), abnormal months in red.

    Provisional (not final) months are drawn hollow. Every point has a tooltip with its value.
    """
    v = np.asarray(values, dtype=float)
    n = len(v)
    if n == 0 or not np.isfinite(v).any():
        return Markup('<p class="muted">No history yet.</p>')
    med = np.asarray(median, dtype=float) if median is not None else np.full(n, np.nan)
    bad = np.asarray(abnormal, dtype=bool) if abnormal is not None else np.zeros(n, bool)
    fin = np.asarray(final, dtype=bool) if final is not None else np.ones(n, bool)
    left, right, top, bottom = 56.0, 12.0, 12.0, 26.0
    pool = np.concatenate([v[np.isfinite(v)], med[np.isfinite(med)]])
    lo, hi = float(pool.min()), float(pool.max())
    span = hi - lo if hi > lo else max(abs(hi), 1e-3) * 0.2
    lo, hi = lo - 0.12 * span, hi + 0.12 * span
    plot_w, plot_h = width - left - right, height - top - bottom

    def x(i: int) -> float:
        return left + (i * plot_w / (n - 1) if n > 1 else plot_w / 2)

    def y(val: float) -> float:
        return top + (hi - val) / (hi - lo) * plot_h

    parts = [
        f'<svg class="chart" width="100%" viewBox="0 0 {width} {height}" role="img" '
        f'aria-label="{escape(name)}, monthly history">'
    ]
    for t in np.linspace(lo + 0.1 * (hi - lo), hi - 0.1 * (hi - lo), 4):
        parts.append(
            f'<line class="grid" x1="{left}" x2="{width - right}" y1="{_f(y(t))}" y2="{_f(y(t))}"/>'
            f'<text class="axis" x="{left - 6}" y="{_f(y(t) + 3.5)}" text-anchor="end">{escape(fmt(t))}</text>'
        )
    step = max(1, math.ceil(n / 6))
    for i in range(0, n, step):
        label = pd.Timestamp(months[i]).strftime("%b %y")
        parts.append(
            f'<text class="axis" x="{_f(x(i))}" y="{height - 8}" text-anchor="middle">{escape(label)}</text>'
        )
    med_pts = [(x(i), y(m)) for i, m in enumerate(med) if np.isfinite(m)]
    if len(med_pts) > 1:
        pts = " ".join(f"{_f(a)},{_f(b)}" for a, b in med_pts)
        parts.append(
            f'<polyline class="median" points="{pts}"><title>Trailing 12-month median</title></polyline>'
        )
    line = " ".join(f"{_f(x(i))},{_f(y(val))}" for i, val in enumerate(v) if np.isfinite(val))
    parts.append(f'<polyline class="series" points="{line}"/>')
    for i, val in enumerate(v):
        if not np.isfinite(val):
            continue
        month = pd.Timestamp(months[i]).strftime("%B %Y")
        tip = f"{month}: {name} {fmt(val)}"
        if np.isfinite(med[i]):
            tip += f" (trailing 12-month median {fmt(med[i])})"
        if bad[i]:
            tip += ", abnormal"
        if not fin[i]:
            tip += ", provisional: renewals may still arrive"
        cls = "pt bad" if bad[i] else ("pt prov" if not fin[i] else "pt")
        r = 4.5 if bad[i] else 2.8
        parts.append(
            f'<circle class="{cls}" cx="{_f(x(i))}" cy="{_f(y(val))}" r="{r}"><title>{escape(tip)}</title></circle>'
        )
    parts.append("</svg>")
    return Markup("".join(parts))


def decay_chart_svg(
    months: Sequence[float],
    realised: Sequence[float],
    test: Sequence[float],
    as_of: Sequence[str],
    *,
    name: str,
    width: int = 520,
    height: int = 190,
) -> Markup:
    """Realised ROC-AUC by months since training (one point per matured as-of) against the test ROC-AUC."""
    mx = np.asarray(months, dtype=float)
    v = np.asarray(realised, dtype=float)
    t = np.asarray(test, dtype=float)
    keep = np.isfinite(mx) & np.isfinite(v)
    if not keep.any():
        return Markup('<p class="muted">No matured scores yet.</p>')
    left, right, top, bottom = 46.0, 12.0, 12.0, 30.0
    pool = np.concatenate([v[keep], t[np.isfinite(t)]])
    lo, hi = float(pool.min()), float(pool.max())
    span = max(hi - lo, 0.02)
    lo, hi = lo - 0.15 * span, hi + 0.15 * span
    x_lo, x_hi = float(mx[keep].min()), float(mx[keep].max())
    x_span = x_hi - x_lo if x_hi > x_lo else 1.0
    plot_w, plot_h = width - left - right, height - top - bottom

    def x(m: float) -> float:
        return left + ((m - x_lo) / x_span * plot_w if x_hi > x_lo else plot_w / 2)

    def y(val: float) -> float:
        return top + (hi - val) / (hi - lo) * plot_h

    parts = [
        f'<svg class="chart" width="100%" viewBox="0 0 {width} {height}" role="img" '
        f'aria-label="{escape(name)}: realised ROC-AUC by months since training">'
    ]
    for tick in np.linspace(lo + 0.1 * (hi - lo), hi - 0.1 * (hi - lo), 4):
        parts.append(
            f'<line class="grid" x1="{left}" x2="{width - right}" y1="{_f(y(tick))}" y2="{_f(y(tick))}"/>'
            f'<text class="axis" x="{left - 6}" y="{_f(y(tick) + 3.5)}" text-anchor="end">{tick:.2f}</text>'
        )
    for m in sorted({float(m) for m in mx[keep]}):
        parts.append(f'<text class="axis" x="{_f(x(m))}" y="{height - 14}" text-anchor="middle">{m:g}</text>')
    parts.append(
        f'<text class="axis" x="{_f(left + plot_w / 2)}" y="{height - 2}" text-anchor="middle">'
        "months since training</text>"
    )
    tests = [(x(m), y(tv)) for m, tv, k in zip(mx, t, keep, strict=True) if k and np.isfinite(tv)]
    if tests:
        pts = " ".join(f"{_f(a)},{_f(b)}" for a, b in tests)
        parts.append(
            f'<polyline class="median" points="{pts}"><title>ROC-AUC on the test period</title></polyline>'
        )
    order = np.argsort(mx[keep], kind="stable")
    xs, vs, days = mx[keep][order], v[keep][order], np.asarray(as_of, dtype=object)[keep][order]
    parts.append(
        '<polyline class="series" points="'
        + " ".join(f"{_f(x(a))},{_f(y(b))}" for a, b in zip(xs, vs, strict=True))
        + '"/>'
    )
    for m, val, day in zip(xs, vs, days, strict=True):
        tip = f"scored {day}, {m:g} months after training: realised ROC-AUC {val:.3f}"
        parts.append(
            f'<circle class="pt" cx="{_f(x(m))}" cy="{_f(y(val))}" r="2.8"><title>{escape(tip)}</title></circle>'
        )
    parts.append("</svg>")
    return Markup("".join(parts))


STATUS_LABELS = {
    "ok": ("Performing as at training", "ok"),
    "warn": ("Watch", "warn"),
    "retrain": ("Retrain recommended", "bad"),
    "awaiting_labels": ("Awaiting outcomes", "muted"),
    "insufficient_labels": ("Too few outcomes yet", "muted"),
}


def _metric(v: Any, digits: int = 3) -> str:
    return f"{v:.{digits}f}" if isinstance(v, int | float) and math.isfinite(v) else "–"


def _performance_view(section: Mapping[str, Any]) -> dict[str, Any]:
    """The monitor's report section (:func:`churnml.scoring.monitor.monitor_section`) as template values."""
    targets = []
    names = sorted(set(section.get("advice", {})) | set(section.get("latest", {})))
    for target in names:
        advice = section.get("advice", {}).get(target, {})
        label, cls = STATUS_LABELS.get(str(advice.get("status")), (str(advice.get("status") or "–"), "muted"))
        decay = section.get("decay", {}).get(target)
        latest = section.get("latest", {}).get(target)
        tiers = section.get("by_touch_tier", {}).get(target, [])

        def row(r: Mapping[str, Any], first: str) -> dict[str, str]:
            return {
                "first": first,
                "n": f"{int(r['n']):,}" if r.get("n") is not None else "–",
                "pos": f"{int(r['n_positive']):,}" if r.get("n_positive") is not None else "–",
                "auc": _metric(r.get("roc_auc")),
                "test_auc": _metric(r.get("test_roc_auc")),
                "pr_auc": _metric(r.get("pr_auc")),
                "ece": _metric(r.get("ece")),
                "lift": _metric(r.get("lift_at_k"), 2),
                "arr": _pct(r["arr_captured"]) if isinstance(r.get("arr_captured"), int | float) else "–",
                "psi": _metric(r.get("psi_score")),
            }

        targets.append(
            {
                "title": "Churn model"
                if target == "churn"
                else "Expansion model"
                if target == "expansion"
                else target,
                "version": advice.get("model_version") or (latest or {}).get("model_version") or "",
                "status": label,
                "status_class": cls,
                # the monitor's headline is the bare status when there is no realised ROC-AUC to quote
                "headline": ""
                if advice.get("headline") == advice.get("status")
                else advice.get("headline") or "",
                "reasons": list(advice.get("reasons") or []),
                "chart": decay_chart_svg(
                    decay["months_since_training"],
                    decay["roc_auc"],
                    decay["test_roc_auc"],
                    decay["as_of"],
                    name=target,
                )
                if decay
                else Markup('<p class="muted">No matured scores yet.</p>'),
                "latest": row(latest, str(latest["as_of"])) if latest else None,
                "tiers": [row(r, _nice(r["touch_model"])) for r in tiers],
            }
        )
    return {
        "retrain": bool(section.get("retrain_recommended")),
        "awaiting": int(section.get("awaiting") or 0),
        "note": str(section.get("note") or ""),
        "targets": targets,
    }


# ------------------------------------------------------------------------------------------------ report


def _tier_of(p: float, thresholds: dict[str, float]) -> str:
    for tier, cut in sorted(thresholds.items(), key=lambda kv: -kv[1]):
        if p >= cut:
            return tier
    return min(thresholds, key=thresholds.get)


def _accounts_frame(
    scores: pd.DataFrame, accounts: pd.DataFrame | None, features: pd.DataFrame | None, tiers: TiersConfig
) -> pd.DataFrame:
    need = ["account_id", "churn_probability", "arr", "segment", "touch_model"]
    missing = [c for c in need if c not in scores.columns]
    if missing:
        raise ChurnmlError(f"build_report: scores lack column(s) {', '.join(missing)}")
    df = scores.copy()
    df["account_id"] = df["account_id"].astype("str")
    if df["account_id"].duplicated().any():
        raise ChurnmlError("build_report: scores hold more than one row per account (pass one as-of date)")
    if accounts is not None:
        extra = [c for c in ("account_name", "csm_id") if c in accounts.columns and c not in df.columns]
        if extra:
            df = df.merge(
                accounts[["account_id", *extra]].astype({"account_id": "str"}), on="account_id", how="left"
            )
    if (
        "days_to_renewal" not in df.columns
        and features is not None
        and "contract_days_to_renewal" in features
    ):
        feats = features[["account_id", "cutoff", "contract_days_to_renewal"]].astype({"account_id": "str"})
        if "as_of" in df.columns:
            feats = feats.assign(as_of=pd.to_datetime(feats["cutoff"]).astype("datetime64[us]"))
            df = df.assign(as_of=pd.to_datetime(df["as_of"]).astype("datetime64[us]")).merge(
                feats[["account_id", "as_of", "contract_days_to_renewal"]],
                on=["account_id", "as_of"],
                how="left",
            )
        else:
            latest = feats.sort_values("cutoff").drop_duplicates("account_id", keep="last")
            df = df.merge(latest[["account_id", "contract_days_to_renewal"]], on="account_id", how="left")
        df = df.rename(columns={"contract_days_to_renewal": "days_to_renewal"})
    for col, default in (
        ("account_name", None),
        ("csm_id", None),
        ("days_to_renewal", np.nan),
        ("expansion_probability", np.nan),
    ):
        if col not in df.columns:
            df[col] = default
    for col in ("churn_probability", "expansion_probability", "arr", "days_to_renewal"):
        df[col] = pd.to_numeric(df[col], errors="coerce").astype(float)
    if "arr_at_risk" not in df.columns:
        df["arr_at_risk"] = df["arr"] * df["churn_probability"]
    if "risk_tier" not in df.columns:
        df["risk_tier"] = [_tier_of(p, tiers.thresholds) for p in df["churn_probability"]]
    if "recommended_play" not in df.columns:
        df["recommended_play"] = [
            tiers.plays.get(t, {}).get(m, "") for t, m in zip(df["risk_tier"], df["touch_model"], strict=True)
        ]
    return df.sort_values(["arr_at_risk", "arr"], ascending=False, kind="stable").reset_index(drop=True)


def _reasons_by_account(reasons: pd.DataFrame | None, scores: pd.DataFrame) -> dict[str, dict[str, list]]:
    """Per account: churn raising / lowering reasons, churn context and expansion signals, each [(text, points)]."""
    out: dict[str, dict[str, list]] = {}
    if reasons is not None and len(reasons):
        r = reasons.sort_values(["account_id", "target", "direction", "rank"])
        for (acct, target, direction), g in r.groupby(["account_id", "target", "direction"], sort=False):
            key = {
                "churn": {"raises": "up", "lowers": "down", "context": "ctx"},
                "expansion": {"raises": "exp"},
            }.get(target, {}).get(direction)
            if key:
                out.setdefault(str(acct), {}).setdefault(key, []).extend(
                    zip(g["reason"].astype(str), g["probability_points"].astype(float), strict=True)
                )
        return out
    if "top_reasons" in scores.columns:  # the warehouse's JSON column
        for acct, text in zip(scores["account_id"].astype(str), scores["top_reasons"], strict=True):
            if isinstance(text, str) and text:
                for item in json.loads(text):
                    key = {"raises": "up", "context": "ctx"}.get(item.get("direction"), "down")
                    out.setdefault(acct, {}).setdefault(key, []).append(
                        (str(item["reason"]), float(item["points"]))
                    )
    return out


def _kpi_cards(kpis: pd.DataFrame) -> list[dict[str, Any]]:
    if kpis is None or kpis.empty:
        return []
    k = kpis if all(f"{c}_abnormal" in kpis for c in KPI_COLUMNS) else flag_abnormal(kpis)
    k = k.sort_values("month").reset_index(drop=True)
    finals = k[k["final"]] if "final" in k else k
    latest = finals.iloc[-1] if len(finals) else k.iloc[-1]
    specs = [
        (
            "logo_churn_rate",
            "Logo churn rate",
            lambda v: _pct(v, 1),
            "Share of the accounts active at the start of the month that churned during it "
            "(no renewal within the grace period).",
        ),
        (
            "grr",
            "Gross revenue retention",
            lambda v: _pct(v, 1),
            "ARR kept from the accounts active at the start of the month, counting churn and contraction "
            "but not expansion (100% = nothing lost). Monthly, not annualised.",
        ),
        (
            "nrr",
            "Net revenue retention",
            lambda v: _pct(v, 1),
            "ARR at month end of the accounts active at its start, divided by their ARR at the start: "
            "expansion counts, new customers do not. Monthly, not annualised.",
        ),
    ]
    cards = []
    for col, title, fmt, help_text in specs:
        med, z = latest.get(f"{col}_median_12m", np.nan), latest.get(f"{col}_robust_z", np.nan)
        abnormal = bool(latest.get(f"{col}_abnormal", False))
        cards.append(
            {
                "title": title,
                "help": help_text,
                "value": fmt(latest[col]),
                "month": pd.Timestamp(latest["month"]).strftime("%B %Y"),
                "median": fmt(med) if np.isfinite(med) else None,
                "z": f"{z:+.1f}" if np.isfinite(z) else None,
                "abnormal": abnormal,
                "chart": line_chart_svg(
                    k["month"],
                    k[col],
                    fmt=fmt,
                    name=title,
                    median=k.get(f"{col}_median_12m"),
                    abnormal=k.get(f"{col}_abnormal"),
                    final=k.get("final"),
                ),
            }
        )
    cards.append(
        {
            "title": "ARR",
            "help": "Annual recurring revenue (12 x MRR) of all active subscriptions on the last day of the month.",
            "value": _money(k["arr"].iloc[-1]),
            "month": pd.Timestamp(k["month"].iloc[-1]).strftime("%B %Y"),
            "median": None,
            "z": None,
            "abnormal": False,
            "chart": line_chart_svg(k["month"], k["arr"], fmt=_money, name="ARR", final=k.get("final")),
        }
    )
    return cards


def arr_at_risk_by_segment(scores: pd.DataFrame) -> pd.DataFrame:
    """ARR and ARR at risk per segment for one as-of date (largest ARR at risk first).

    Args:
        scores: One row per account with ``segment``, ``arr`` and ``arr_at_risk`` (ARR x churn probability;
            computed from ``churn_probability`` when absent).

    Returns:
        ``segment``, ``accounts``, ``arr``, ``arr_at_risk``, ``share_at_risk`` (arr_at_risk / arr).
    """
    at_risk = (
        scores["arr_at_risk"] if "arr_at_risk" in scores else scores["arr"] * scores["churn_probability"]
    )
    frame = pd.DataFrame(
        {"segment": scores["segment"].astype("str"), "arr": scores["arr"], "arr_at_risk": at_risk}
    )
    out = frame.groupby("segment", as_index=False).agg(
        accounts=("arr", "size"), arr=("arr", "sum"), arr_at_risk=("arr_at_risk", "sum")
    )
    out["share_at_risk"] = np.where(
        out["arr"] > 0, out["arr_at_risk"] / out["arr"].where(out["arr"] > 0), np.nan
    )
    return out.sort_values("arr_at_risk", ascending=False, kind="stable").reset_index(drop=True)


def _template_text(name: str) -> str:
    return resources.files("churnml.report").joinpath("templates", name).read_text(encoding="utf-8")


def build_report(
    scores: pd.DataFrame,
    reasons: pd.DataFrame | None,
    usage_weekly: pd.DataFrame | None,
    kpis: pd.DataFrame | None,
    out_dir: Path,
    tiers: TiersConfig | None = None,
    *,
    accounts: pd.DataFrame | None = None,
    features: pd.DataFrame | None = None,
    performance: Mapping[str, Any] | None = None,
    max_accounts: int = 1000,
    title: str = "Customer portfolio: churn risk and expansion",
    generated_at: dt.datetime | None = None,
) -> Path:
    """Write the portfolio report ``out_dir/index.html`` (one self-contained file).

    Args:
        scores: One row per account (the ``churn_scores`` table of one as-of date): ``account_id``,
            ``churn_probability``, ``arr``, ``segment``, ``touch_model``; used when present: ``as_of``,
            ``risk_tier``, ``arr_at_risk``, ``expansion_probability``, ``recommended_play``, ``top_reasons``,
            ``account_name``, ``csm_id``, ``days_to_renewal``, ``churn_model_version``,
            ``expansion_model_version``.
        reasons: :func:`churnml.explain.reasons.reasons_for` output for both targets (None: use ``top_reasons``).
        usage_weekly: :func:`weekly_usage` output (None: no sparklines).
        kpis: :func:`portfolio_kpis` output (None: no KPI section).
        out_dir: Folder to write ``index.html`` into.
        tiers: Tier thresholds and plays (fill ``risk_tier`` / ``recommended_play`` when absent; legend).
        accounts: The accounts table, for names and CSMs when the scores lack them.
        features: The feature table, for ``contract_days_to_renewal`` when the scores lack ``days_to_renewal``.
        performance: :func:`churnml.scoring.monitor.monitor_section` output: the page on realised performance once
            labels matured (advice, latest metrics per touch tier, decay by months since training); None
            leaves it out.
        max_accounts: List at most this many accounts (the largest ARR at risk first); totals cover all.
        title: Page title.
        generated_at: Timestamp shown in the header (default: now, UTC).

    Returns:
        The path of the written page.
    """
    from jinja2 import Environment, PackageLoader, StrictUndefined

    tiers = tiers or TiersConfig()
    df = _accounts_frame(scores, accounts, features, tiers)
    by_reason = _reasons_by_account(reasons, df)
    series: dict[str, np.ndarray] = {}
    if usage_weekly is not None and len(usage_weekly):
        uw = usage_weekly.sort_values(["account_id", "week_start"])
        series = {str(a): g["value"].to_numpy(float) for a, g in uw.groupby("account_id", sort=False)}
    weeks = max((len(s) for s in series.values()), default=0)
    shown = df.head(max_accounts)
    rows = []
    for rec in shown.to_dict("records"):
        acct = rec["account_id"]
        values = series.get(acct)
        tier = str(rec["risk_tier"])
        days = rec["days_to_renewal"]
        exp = rec["expansion_probability"]
        rs = by_reason.get(acct, {})
        rows.append(
            {
                "id": acct,
                "name": rec["account_name"]
                if isinstance(rec["account_name"], str) and rec["account_name"]
                else acct,
                "segment": str(rec["segment"]),
                "segment_label": _nice(rec["segment"]),
                "touch": str(rec["touch_model"]),
                "touch_label": _nice(rec["touch_model"]).lower(),
                "csm": rec["csm_id"] if isinstance(rec["csm_id"], str) and rec["csm_id"] else "",
                "arr": float(rec["arr"]),
                "arr_fmt": _money(float(rec["arr"])),
                "risk": float(rec["churn_probability"]),
                "risk_fmt": _pct(float(rec["churn_probability"])),
                "tier": tier,
                "at_risk": float(rec["arr_at_risk"]),
                "at_risk_fmt": _money(float(rec["arr_at_risk"])),
                "exp": float(exp) if exp is not None and np.isfinite(exp) else -1.0,
                "exp_fmt": _pct(float(exp)) if exp is not None and np.isfinite(exp) else "–",
                "renewal": float(days) if days is not None and np.isfinite(days) else 1e9,
                "renewal_fmt": f"{days:.0f} d" if days is not None and np.isfinite(days) else "–",
                "renewal_soon": bool(days is not None and np.isfinite(days) and days <= 90),
                "spark": sparkline_svg(values)
                if values is not None
                else Markup('<span class="muted">no usage data</span>'),
                "usage_last": f"last week {values[-1]:.0f}/day" if values is not None and len(values) else "",
                "up": [(t, _pts(p)) for t, p in rs.get("up", [])][:3],
                "down": [(t, _pts(p)) for t, p in rs.get("down", [])][:2],
                "exp_reasons": [(t, _pts(p)) for t, p in rs.get("exp", [])][:2],
                # when/what the account is (renewal timing, term, plan...): beside the reasons, not one of them
                "context": [t for t, _ in rs.get("ctx", [])][:3],
                "play": str(rec["recommended_play"] or ""),
            }
        )
    total_arr = float(df["arr"].sum())
    at_risk = float(df["arr_at_risk"].sum())
    ordered_tiers = sorted(tiers.thresholds.items(), key=lambda kv: -kv[1])
    tier_counts = df.groupby("risk_tier")["arr"].agg(["size", "sum"])
    summary = {
        "accounts": len(df),
        "arr": _money(total_arr),
        "at_risk": _money(at_risk),
        "at_risk_share": _pct(at_risk / total_arr if total_arr else np.nan, 1),
        "urgent": int(tier_counts["size"].reindex([t for t, _ in ordered_tiers[:2]]).fillna(0).sum()),
        "urgent_arr": _money(
            float(tier_counts["sum"].reindex([t for t, _ in ordered_tiers[:2]]).fillna(0).sum())
        ),
        "urgent_tiers": " or ".join(t for t, _ in ordered_tiers[:2]),
        "renewals_90": int((df["days_to_renewal"] <= 90).sum()),
        "expansion": int((df["expansion_probability"] >= 0.3).sum()),
        "expansion_arr": _money(float(df.loc[df["expansion_probability"] >= 0.3, "arr"].sum())),
    }
    seg = arr_at_risk_by_segment(df)
    biggest = float(seg["arr_at_risk"].max()) if len(seg) else 0.0
    segments = [
        {
            "name": _nice(r.segment),
            "accounts": f"{int(r.accounts):,}",
            "arr": _money(r.arr),
            "at_risk": _money(r.arr_at_risk),
            "share": _pct(r.share_at_risk, 1),
            "bar": round(100 * r.arr_at_risk / biggest, 1) if biggest > 0 else 0.0,
        }
        for r in seg.itertuples()
    ]
    as_of = (
        pd.Timestamp(df["as_of"].iloc[0]).date().isoformat() if "as_of" in df.columns and len(df) else None
    )
    versions = {
        k: str(df[c].iloc[0])
        for k, c in (("churn", "churn_model_version"), ("expansion", "expansion_model_version"))
        if c in df.columns and len(df)
    }
    script = _template_text("report.js")
    script_hash = base64.b64encode(hashlib.sha256(script.encode("utf-8")).digest()).decode()
    env = Environment(
        loader=PackageLoader("churnml.report", "templates"),
        autoescape=True,
        undefined=StrictUndefined,
        trim_blocks=True,
        lstrip_blocks=True,
    )
    html = env.get_template("report.html.j2").render(
        title=title,
        as_of=as_of,
        generated=(generated_at or dt.datetime.now(dt.UTC)).strftime("%Y-%m-%d %H:%M UTC"),
        versions=versions,
        summary=summary,
        kpis=_kpi_cards(kpis) if kpis is not None else [],
        segments=segments,
        rows=rows,
        shown=len(rows),
        total=len(df),
        weeks=weeks,
        tiers=[
            {"name": t, "cut": _pct(c), "colour": TIER_COLOURS.get(t, "#475467")} for t, c in ordered_tiers
        ],
        filters={
            "segment": [(v, _nice(v)) for v in sorted({r["segment"] for r in rows})],
            "touch": [(v, _nice(v)) for v in sorted({r["touch"] for r in rows})],
            "csm": sorted({r["csm"] for r in rows if r["csm"]}),
            "tier": [t for t, _ in ordered_tiers],
        },
        performance=_performance_view(performance) if performance is not None else None,
        css=Markup(_template_text("report.css")),
        script=Markup(script),
        script_hash=script_hash,
    )
    out_dir = Path(out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    path = out_dir / REPORT_FILE
    tmp = path.with_name(f".{path.name}.tmp")
    tmp.write_text(html, encoding="utf-8")
    tmp.replace(path)
    return path
