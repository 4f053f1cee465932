"""Revenue forecast: expected ARR, gross and net revenue retention of today's book at h months, with
prediction intervals from the account-level distributions (Monte Carlo), and its backtest.

The model of one account over h months from the as-of:

- **Churn**: the month of churn is drawn from the account's survival curve (P(churn by month t) = 1 - S(t)).
- **Amounts**: while it stays, each month its ARR moves by a factor drawn from the monthly distribution
  of its segment and tenure band (months since its first subscription at that month of the horizon, so
  an account moves into older bands as the horizon runs), estimated point in time from every
  account-month that ended before the as-of: P(up), P(down), and the size of the move given up or down
  (the empirical ratios, resampled: no shape assumed). Why tenure: expansion is concentrated early in a
  customer's life (on ChurnSim crm6 10% of account-months under 3 months of tenure move up, 1% of those
  past 6 months); pooled over tenure, a short history made mostly of young accounts learns their rate and
  compounds it over the whole book for a year. A (segment, band) cell with fewer than
  ``MIN_MOVE_ROWS`` account-months uses the band over all segments, then the nearest band observed.
  Months are independent given segment and band: the forecast knows no account's own expansion propensity
  (a stated simplification; the backtest's interval coverage says what it costs).
- **Book**: ARR_h summed over the book. GRR = sum(min(ARR_h, ARR_0)) / sum(ARR_0) (churn and contraction;
  expansion capped), NRR = sum(ARR_h) / sum(ARR_0). No new logos: the as-of book only.

Intervals are quantiles of the simulated totals (so they carry the skew of a few large accounts), never a
normal approximation. Monte Carlo rather than an exact convolution: the amount mixture has no closed form.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import pandas as pd

from churnml.contract.outputs import OUTPUTS
from churnml.dataset.labels import churn_events
from churnml.errors import ChurnmlError
from churnml.scoring.calls import POOLED

TOLERANCE = 1e-6
QUANTILES = {"p025": 0.025, "p10": 0.10, "p50": 0.50, "p90": 0.90, "p975": 0.975}


def arr_on(
    subscriptions: pd.DataFrame, accounts: pd.Series, day: pd.Timestamp | pd.Series, grace_days: int
) -> np.ndarray:
    """ARR (12 x MRR of the subscriptions active on ``day``) per account; in a renewal gap shorter than the
    grace (nothing active, a subscription starting within it) the ARR of the renewal counts (not churn):
    the subscriptions starting on the first start day within the grace, not every one in it (monthly
    renewals can start twice within 30 days, e.g. on February 1 and March 1)."""
    subs = subscriptions.assign(account_id=subscriptions["account_id"].astype(str))
    keys = pd.DataFrame({"account_id": accounts.astype(str).to_numpy()})
    keys["day"] = pd.to_datetime(
        day if isinstance(day, pd.Series) else pd.Series([day] * len(keys))
    ).to_numpy()
    keys["_row"] = np.arange(len(keys))
    m = keys.merge(subs[["account_id", "start_date", "end_date", "mrr"]], on="account_id", how="left")
    start, end = pd.to_datetime(m["start_date"]), pd.to_datetime(m["end_date"])
    active = (start <= m["day"]) & (end.isna() | (end > m["day"]))
    soon = (start > m["day"]) & (start <= m["day"] + pd.Timedelta(days=int(grace_days)))
    first = start.where(soon).groupby(m["_row"]).transform("min")
    soon &= start == first
    now = (
        (m["mrr"].where(active, 0.0))
        .groupby(m["_row"])
        .sum()
        .reindex(keys["_row"], fill_value=0.0)
        .to_numpy()
    )
    later = (
        (m["mrr"].where(soon, 0.0)).groupby(m["_row"]).sum().reindex(keys["_row"], fill_value=0.0).to_numpy()
    )
    return 12.0 * np.where(now > 0, now, later)


@dataclass
class Movement:
    """Monthly ARR moves of surviving accounts of one group: P(up), P(down) and the ratios given each."""

    p_up: float
    p_down: float
    up: np.ndarray  # ratios > 1
    down: np.ndarray  # ratios < 1
    n: int


TENURE_BAND_MONTHS = (3, 6, 12, 24)  # band edges: < 3, 3-6, 6-12, 12-24, 24+ months since the first start
MIN_MOVE_ROWS = 30  # account-months a (segment, tenure band) cell needs to stand on its own


def tenure_months(
    subscriptions: pd.DataFrame, accounts: pd.Series, day: pd.Timestamp | pd.Series
) -> np.ndarray:
    """Whole calendar months from each account's first subscription start to ``day`` (0 when none began).

    Point in time for an account active on ``day``: its first start lies on or before it.
    """
    first = (
        subscriptions.assign(account_id=subscriptions["account_id"].astype(str))
        .groupby("account_id")["start_date"]
        .min()
    )
    start = pd.to_datetime(accounts.astype(str).map(first)).reset_index(drop=True)
    when = pd.to_datetime(
        day.reset_index(drop=True) if isinstance(day, pd.Series) else pd.Series([day] * len(start))
    )
    months = (
        (when.dt.year - start.dt.year) * 12
        + (when.dt.month - start.dt.month)
        - (when.dt.day < start.dt.day).astype(int)
    )
    return np.maximum(months.fillna(0).to_numpy(dtype=float), 0).astype(np.int64)


def tenure_band(months: np.ndarray) -> np.ndarray:
    """The band index (0 .. len(TENURE_BAND_MONTHS)) of each tenure in months."""
    return np.searchsorted(np.asarray(TENURE_BAND_MONTHS), np.asarray(months), side="right")


def _band_key(group: str, band: int) -> str:
    return f"{group}@tenure{int(band)}"


def movement_for(moves: dict[str, Movement], group: str, band: int | None) -> Movement:
    """The movement of a group (and tenure band): the (group, band) cell when it holds ``MIN_MOVE_ROWS``
    account-months, else the band over all groups, else the nearest band observed (younger first), else
    the group's, else all rows'."""
    if band is not None:
        for cell in (_band_key(group, band), _band_key("all", band)):
            if cell in moves and moves[cell].n >= MIN_MOVE_ROWS:
                return moves[cell]
        for d in range(1, len(TENURE_BAND_MONTHS) + 1):
            for b in (band - d, band + d):
                cell = _band_key("all", b)
                if cell in moves and moves[cell].n >= MIN_MOVE_ROWS:
                    return moves[cell]
    return moves.get(str(group), moves["all"])


def monthly_movements(
    keys: pd.DataFrame,
    subscriptions: pd.DataFrame,
    grace_days: int,
    as_of: pd.Timestamp,
    group: pd.Series,
    by_tenure: bool = False,
) -> dict[str, Movement]:
    """Per group, the monthly ARR moves of account-months that ended (plus grace) before ``as_of`` with the
    account still a customer: point in time for a forecast made at ``as_of``.

    Args:
        keys: account_id and cutoff (month starts) rows: the spine.
        subscriptions: the validated subscriptions.
        grace_days: the labels' grace period.
        as_of: the forecast's as-of.
        group: the group of each key row (e.g. its segment); ``"all"`` pools every row.
        by_tenure: also per (group, tenure band at the month start) and (all, band), for
            :func:`movement_for`.
    """
    cut = pd.to_datetime(keys["cutoff"]).astype("datetime64[us]")
    nxt = cut + pd.DateOffset(months=1)
    ok = (nxt + pd.Timedelta(days=int(grace_days)) <= as_of).to_numpy()
    k = keys[ok].reset_index(drop=True)
    g = group[ok].astype(str).reset_index(drop=True)
    c, n1 = cut[ok].reset_index(drop=True), nxt[ok].reset_index(drop=True)
    events = churn_events(subscriptions, grace_days)
    ev = (
        k[["account_id"]]
        .astype(str)
        .assign(c=c, n1=n1, _row=np.arange(len(k)))
        .merge(events, on="account_id")
    )
    churned = ev[(ev["churn_date"] >= ev["c"]) & (ev["churn_date"] < ev["n1"])]["_row"].unique()
    a0 = arr_on(subscriptions, k["account_id"], c - pd.Timedelta(days=1), grace_days)
    a1 = arr_on(subscriptions, k["account_id"], n1 - pd.Timedelta(days=1), grace_days)
    keep = (a0 > 0) & ~np.isin(np.arange(len(k)), churned) & (a1 > 0)
    ratio = np.where(keep, a1 / np.where(a0 > 0, a0, 1.0), np.nan)
    cells = [
        ("all", np.flatnonzero(keep)),
        *[(v, np.flatnonzero(keep & (g == v).to_numpy())) for v in g.unique()],
    ]
    if by_tenure:
        band = tenure_band(tenure_months(subscriptions, k["account_id"], c))
        for b in np.unique(band):
            cells.append((_band_key("all", b), np.flatnonzero(keep & (band == b))))
            cells += [
                (_band_key(v, b), np.flatnonzero(keep & (band == b) & (g == v).to_numpy()))
                for v in g.unique()
            ]
    out = {}
    for name, idx in cells:
        r = ratio[idx]
        up, down = r[r > 1 + TOLERANCE], r[r < 1 - TOLERANCE]
        if len(r):
            out[name] = Movement(len(up) / len(r), len(down) / len(r), up, down, len(r))
    if "all" not in out:
        raise ChurnmlError(f"forecast: no account-month before {as_of.date()} to learn ARR moves from")
    return out


def _move(rng: np.random.Generator, mv: Movement, shape: tuple[int, int]) -> np.ndarray:
    """One month's ARR factors of ``shape`` (accounts x draws) drawn from a movement."""
    u = rng.random(shape)
    factor = np.ones(shape)
    up = u < mv.p_up
    down = (u >= mv.p_up) & (u < mv.p_up + mv.p_down)
    if up.any() and len(mv.up):
        factor[up] = rng.choice(mv.up, size=int(up.sum()))
    if down.any() and len(mv.down):
        factor[down] = rng.choice(mv.down, size=int(down.sum()))
    return factor


def simulate_book(
    arr0: np.ndarray,
    survival: np.ndarray,
    groups: np.ndarray,
    moves: dict[str, Movement],
    months: int,
    draws: int,
    seed: int,
    tenure: np.ndarray | None = None,
) -> np.ndarray:
    """Simulated ARR at ``months`` per account and draw (accounts x draws).

    Args:
        arr0: ARR at the as-of per account.
        survival: S(1..H) per account (H >= months).
        groups: each account's movement group (unknown groups use ``"all"``).
        moves: :func:`monthly_movements`.
        months: the horizon.
        draws: Monte Carlo draws.
        seed: random seed.
        tenure: each account's tenure in months at the as-of: month ``m`` of the horizon then draws from
            the (group, tenure band) movement of ``tenure + m - 1`` (:func:`movement_for`); None: the
            group's movement every month.
    """
    if survival.shape[1] < months:
        raise ChurnmlError(f"forecast: curves cover {survival.shape[1]} months, not {months}")
    rng = np.random.default_rng(seed)
    n = len(arr0)
    alive = rng.random((n, draws)) < survival[:, months - 1][:, None]
    arr = np.repeat(np.asarray(arr0, dtype=float)[:, None], draws, axis=1)
    groups = np.asarray(groups).astype(str)
    if tenure is None:
        for name in np.unique(groups):
            mv = moves.get(str(name), moves["all"])
            idx = np.flatnonzero(groups == name)
            for _ in range(months):
                arr[idx] *= _move(rng, mv, (len(idx), draws))
        return np.where(alive, arr, 0.0)
    tenure = np.asarray(tenure, dtype=np.int64)
    for m in range(months):
        band = tenure_band(tenure + m)
        for name in np.unique(groups):
            for b in np.unique(band[groups == name]):
                idx = np.flatnonzero((groups == name) & (band == b))
                arr[idx] *= _move(rng, movement_for(moves, name, int(b)), (len(idx), draws))
    return np.where(alive, arr, 0.0)


def _each_group(arr0: np.ndarray, by: dict[str, np.ndarray]):
    """(dimension, group, row mask, starting ARR) for the book and each group of ``by`` holding ARR."""
    dims = {"portfolio": np.array(["all"] * len(arr0)), **by}
    for dim, values in dims.items():
        values = np.asarray(values).astype(str)
        for v in sorted(set(values)):
            idx = values == v
            base = float(arr0[idx].sum())
            if base > 0:
                yield dim, v, idx, base


def movements(arr0: np.ndarray, arr_h: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Each account's expected ARR lost to churn, lost to contraction and gained by expansion (means over
    the draws): a churned draw ends at 0 (its whole starting ARR lost to churn), a surviving one moved by
    ``arr_h - arr0``. Per draw ``arr_h = arr0 - churn - contraction + expansion`` and
    ``min(arr_h, arr0) = arr0 - churn - contraction``, so the three add up to the change of the expected
    ARR and of the expected GRR and NRR exactly, per account and for any group of accounts.
    """
    start = np.asarray(arr0, dtype=float)[:, None]
    gone = arr_h <= 0
    churn = np.where(gone, start, 0.0).mean(axis=1)
    delta = np.where(gone, 0.0, arr_h - start)
    return churn, np.maximum(-delta, 0.0).mean(axis=1), np.maximum(delta, 0.0).mean(axis=1)


def summarise(arr0: np.ndarray, arr_h: np.ndarray, by: dict[str, np.ndarray]) -> pd.DataFrame:
    """Expected ARR, GRR and NRR with their quantiles, for the book and each group of ``by``.

    Returns:
        One row per (dimension, group): accounts, arr_start, for arr / grr / nrr the mean and the quantiles
        of :data:`QUANTILES`, and what drives the change: the expected ARR lost to churn, lost to
        contraction and gained by expansion (:func:`movements`).
    """
    churn, down, up = movements(arr0, arr_h)
    rows = []
    for dim, v, idx, base in _each_group(arr0, by):
        total = arr_h[idx].sum(axis=0)
        gross = np.minimum(arr_h[idx], arr0[idx][:, None]).sum(axis=0)
        row = {"dimension": dim, "group": v, "accounts": int(idx.sum()), "arr_start": base}
        row.update(
            churn_arr_mean=float(churn[idx].sum()),
            contraction_arr_mean=float(down[idx].sum()),
            expansion_arr_mean=float(up[idx].sum()),
        )
        for name, series in (("arr", total), ("grr", gross / base), ("nrr", total / base)):
            row[f"{name}_mean"] = float(series.mean())
            for q, p in QUANTILES.items():
                row[f"{name}_{q}"] = float(np.quantile(series, p))
        rows.append(row)
    return pd.DataFrame(rows)


def realised(arr0: np.ndarray, arr_h: np.ndarray, by: dict[str, np.ndarray]) -> pd.DataFrame:
    """The realised ARR, GRR and NRR of the same groups (``arr_h`` per account)."""
    rows = []
    for dim, v, idx, base in _each_group(arr0, by):
        rows.append(
            {
                "dimension": dim,
                "group": v,
                "realised_arr": float(arr_h[idx].sum()),
                "realised_grr": float(np.minimum(arr_h[idx], arr0[idx]).sum() / base),
                "realised_nrr": float(arr_h[idx].sum() / base),
            }
        )
    return pd.DataFrame(rows)


FORECAST_MONTHS = (3, 12)
# the backtest table's columns, declared once with the plot files of the survival stage
BACKTEST_COLUMNS = OUTPUTS["survival_plots"].files["forecast_backtest.csv"]
DRAWS = 1000


CSM = "csm_id"  # the book's column naming each account's CSM (:func:`with_csm`)


def with_csm(book: pd.DataFrame, accounts: pd.DataFrame | None) -> pd.DataFrame:
    """The book with each account's CSM (``accounts.csm_id``; ``pooled`` when it has none, as on the call list).

    The accounts table holds today's assignment only, so a backtest groups past books by today's CSMs: a
    grouping of the report, never an input of the forecast (no outcome reaches a prediction through it).
    Without an accounts table (or its ``csm_id``) the book is returned as it is and no CSM rows are made.
    """
    if accounts is None or CSM not in accounts.columns:
        return book
    csm = accounts[["account_id", CSM]].assign(account_id=accounts["account_id"].astype(str))
    csm = csm.drop_duplicates("account_id")
    out = book.drop(columns=[CSM], errors="ignore").assign(account_id=book["account_id"].astype(str))
    out = out.merge(csm, on="account_id", how="left")
    named = out[CSM].astype("object").where(out[CSM].notna() & (out[CSM].astype(str).str.strip() != ""))
    return out.assign(**{CSM: named.fillna(POOLED).astype(str)})


# The forecast's groupings: dimension -> the book's column (each present one gives rows per group)
DIMENSIONS = (("segment", "account_segment"), ("touch_model", "account_touch_model"), ("csm", CSM))


def _groups(book: pd.DataFrame) -> dict[str, np.ndarray]:
    by = {}
    for dim, col in DIMENSIONS:
        if col in book.columns:
            by[dim] = book[col].astype("object").fillna("unknown").astype(str).to_numpy()
    return by


def forecast_book(
    book: pd.DataFrame,
    survival: np.ndarray,
    subscriptions: pd.DataFrame,
    spine: pd.DataFrame,
    as_of: pd.Timestamp,
    grace_days: int,
    months: tuple[int, ...] = FORECAST_MONTHS,
    draws: int = DRAWS,
    seed: int = 0,
) -> pd.DataFrame:
    """The forecast of a book (feature rows of the accounts active at ``as_of``) with their curves.

    Args:
        book: the accounts' feature rows (account_id, account_segment, account_touch_model, ...).
        survival: their S(1..H), in the same order.
        subscriptions: the validated subscriptions (ARR at the as-of, and the monthly moves before it).
        spine: every (account_id, cutoff) observed: the account-months the moves are learned from.
        as_of: the as-of (a month start on monthly spines).
        grace_days: the labels' grace period.
        months: the horizons.
        draws: Monte Carlo draws.
        seed: random seed.

    Returns:
        :func:`summarise` rows with ``horizon_months``, per horizon.
    """
    arr0 = arr_on(subscriptions, book["account_id"], as_of - pd.Timedelta(days=1), grace_days)
    seg_of = spine.merge(
        book[["account_id", "account_segment"]].drop_duplicates("account_id"), on="account_id", how="left"
    )["account_segment"].fillna("all")
    moves = monthly_movements(spine, subscriptions, grace_days, as_of, seg_of, by_tenure=True)
    groups = book["account_segment"].astype("object").fillna("all").astype(str).to_numpy()
    tenure = tenure_months(subscriptions, book["account_id"], as_of)
    parts = []
    for h in months:
        if h > survival.shape[1]:
            continue
        sim = simulate_book(arr0, survival, groups, moves, h, draws, seed + h, tenure=tenure)
        parts.append(summarise(arr0, sim, _groups(book)).assign(horizon_months=h))
    return pd.concat(parts, ignore_index=True)


def naive_rates(
    subscriptions: pd.DataFrame, as_of: pd.Timestamp, months: int, start: pd.Timestamp, grace_days: int
) -> tuple[float, float]:
    """The naive forecast: the book's GRR and NRR over the last ``months`` months (the book at
    ``as_of - months`` measured at ``as_of``), compounded to ``months`` when the data start is later."""
    begin = max(as_of - pd.DateOffset(months=months), pd.Timestamp(start))
    span = (as_of.year - begin.year) * 12 + (as_of.month - begin.month)
    if span < 1:
        raise ChurnmlError(f"forecast: no history before {as_of.date()} for the naive forecast")
    accounts = pd.Series(subscriptions["account_id"].astype(str).unique())
    a0 = arr_on(subscriptions, accounts, begin - pd.Timedelta(days=1), grace_days)
    a1 = arr_on(subscriptions, accounts, as_of - pd.Timedelta(days=1), grace_days)
    keep = a0 > 0
    grr = np.minimum(a1[keep], a0[keep]).sum() / a0[keep].sum()
    nrr = a1[keep].sum() / a0[keep].sum()
    scale = months / span
    return float(grr**scale), float(nrr**scale)


def backtest(
    books: dict[pd.Timestamp, tuple[pd.DataFrame, np.ndarray]],
    subscriptions: pd.DataFrame,
    spine: pd.DataFrame,
    start: pd.Timestamp,
    grace_days: int,
    months: tuple[int, ...] = FORECAST_MONTHS,
    draws: int = DRAWS,
) -> tuple[pd.DataFrame, dict]:
    """Forecasts made at past as-of dates (each with curves from a model that saw nothing after it) against
    what happened, and against the naive forecast.

    Returns:
        (rows: one per as-of, horizon, dimension and group with forecast, realised and naive values;
        summary: mean absolute GRR/NRR error of both on the portfolio, and the 80%/95% coverage over all rows
        and per dimension (``by_dimension``)).
    """
    parts = []
    for as_of, (book, surv) in books.items():
        fc = forecast_book(book, surv, subscriptions, spine, as_of, grace_days, months, draws)
        arr0 = arr_on(subscriptions, book["account_id"], as_of - pd.Timedelta(days=1), grace_days)
        for h in sorted(fc["horizon_months"].unique()):
            day = as_of + pd.DateOffset(months=int(h)) - pd.Timedelta(days=1)
            arr_h = arr_on(subscriptions, book["account_id"], day, grace_days)
            real = realised(arr0, arr_h, _groups(book))
            grr_n, nrr_n = naive_rates(subscriptions, as_of, int(h), start, grace_days)
            part = fc[fc["horizon_months"] == h].merge(real, on=["dimension", "group"])
            parts.append(part.assign(as_of=as_of, naive_grr=grr_n, naive_nrr=nrr_n))
    rows = pd.concat(parts, ignore_index=True)
    summary: dict = {"as_of": sorted({str(pd.Timestamp(a).date()) for a in books})}
    for h in sorted(rows["horizon_months"].unique()):
        r = rows[rows["horizon_months"] == h]
        p = r[r["dimension"] == "portfolio"]
        s = {"rows": len(r)}
        for m in ("grr", "nrr"):
            s[f"{m}_abs_error"] = float((p[f"{m}_mean"] - p[f"realised_{m}"]).abs().mean())
            s[f"{m}_abs_error_naive"] = float((p[f"naive_{m}"] - p[f"realised_{m}"]).abs().mean())
            for lo, hi, name in (("p10", "p90", "80"), ("p025", "p975", "95")):
                inside = (r[f"{m}_{lo}"] <= r[f"realised_{m}"] + 1e-12) & (
                    r[f"realised_{m}"] <= r[f"{m}_{hi}"] + 1e-12
                )
                s[f"{m}_coverage_{name}"] = float(inside.mean())
                ip = (p[f"{m}_{lo}"] <= p[f"realised_{m}"]) & (p[f"realised_{m}"] <= p[f"{m}_{hi}"])
                s[f"{m}_coverage_{name}_portfolio"] = float(ip.mean())
                # each grouping on its own: many small CSM books would otherwise outweigh the segments
                by_dim = inside.groupby(r["dimension"].to_numpy()).agg(["mean", "size"])
                for dim, (share, n) in by_dim.iterrows():
                    s.setdefault("by_dimension", {}).setdefault(dim, {"rows": int(n)})[
                        f"{m}_coverage_{name}"
                    ] = float(share)
        summary[f"{h}m"] = s
    return rows, summary
