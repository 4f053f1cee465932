"""Revenue forecast: expected ARR, gross and net revenue retention of today's book at h months, with
prediction intervals from the account-level distributions (Monte Carlo), and its backtest.

The model of one account over h months from the as-of:

- **Churn**: the month of churn is drawn from the account's survival curve (P(churn by month t) = 1 - S(t)).
- **Amounts**: while it stays, each month its ARR moves by a factor drawn from the monthly distribution
  of its segment, tenure band (months since its first subscription at that month of the horizon, so
  an account moves into older bands as the horizon runs) and ARR band (quantiles of the book's ARR at the
  as-of, ``survival.forecast_arr_quantiles``), estimated point in time from every account-month that ended
  before the as-of: P(up), P(down), and the size of the move given up or down (the empirical ratios,
  resampled: no shape assumed). Why tenure: expansion is concentrated early in a customer's life (on
  ChurnSim crm6 10% of account-months under 3 months of tenure move up, 1% of those past 6 months); pooled
  over tenure, a short history made mostly of young accounts learns their rate and compounds it over the
  whole book for a year. Why size: larger accounts move more often by smaller ratios (on the default data
  the top ARR quartile's expansions average +34%, the bottom's +58%), so ratios pooled over sizes give a
  large account a small one's growth. A (segment, band, ARR band) cell with fewer than ``MIN_MOVE_ROWS``
  account-months uses the (band, ARR band) over all segments, then the ARR band in the nearest tenure band
  observed, then the tenure cells alone (:func:`movement_for`).
  Months are independent given the cell: the forecast knows no account's own expansion propensity
  (a stated simplification; the backtest's interval coverage says what it costs).
- **Uncertainty of the moves**: the learned rates are estimates. Each draw takes them from one of
  ``survival.forecast_rate_draws`` bootstrap resamples of the learning accounts (Poisson weights per
  account, so an account's months stay together), shared by every account of the draw: the intervals carry
  the error of the rates (which moves whole segments together) besides each account's own randomness.
  The curves' own error is not carried (the backtest shows what that costs).
- **Book**: ARR_h summed over the book. GRR = sum(min(ARR_h, ARR_0)) / sum(ARR_0) (churn and contraction;
  expansion capped), NRR = sum(ARR_h) / sum(ARR_0). No new logos: the as-of book only.

Intervals are quantiles of the simulated totals (so they carry the skew of a few large accounts), never a
normal approximation. Monte Carlo rather than an exact convolution: the amount mixture has no closed form.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import pandas as pd

from churnml.config import SurvivalConfig
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
    """Monthly ARR moves of surviving accounts of one group: P(up), P(down) and the ratios given each.

    The ``*_account`` arrays, when set, name the learning account (an index shared by every movement of one
    :func:`monthly_movements` call) of each account-month (``row_account``) and of each ratio, so the rates
    can be re-estimated under a bootstrap of the accounts (:func:`simulate_book`'s ``rate_draws``).
    """

    p_up: float
    p_down: float
    up: np.ndarray  # ratios > 1
    down: np.ndarray  # ratios < 1
    n: int
    row_account: np.ndarray | None = None
    up_account: np.ndarray | None = None
    down_account: np.ndarray | None = None


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


def _band_key(group: str, band: int, size: int | None = None) -> str:
    key = f"{group}@tenure{int(band)}"
    return key if size is None else f"{key}@arr{int(size)}"


def arr_band(arr: np.ndarray, edges: np.ndarray) -> np.ndarray:
    """The ARR band index (0 .. len(edges)) of each ARR, ``edges`` ascending (:func:`arr_band_edges`)."""
    return np.searchsorted(np.asarray(edges, dtype=float), np.asarray(arr, dtype=float), side="right")


def arr_band_edges(arr0: np.ndarray, quantiles: tuple[float, ...] | list[float]) -> np.ndarray:
    """The ARR band edges of a book: the ``quantiles`` of its accounts' ARR at the as-of (known then)."""
    arr = np.asarray(arr0, dtype=float)
    arr = arr[arr > 0]
    if not len(quantiles) or not len(arr):
        return np.array([], dtype=float)
    return np.unique(np.quantile(arr, np.asarray(quantiles, dtype=float)))


def movement_for(
    moves: dict[str, Movement], group: str, band: int | None, size: int | None = None
) -> Movement:
    """The movement of a group, tenure band and ARR band (``size``): the (group, band, size) cell when it
    holds ``MIN_MOVE_ROWS`` account-months, else the (band, size) cell over all groups, else ``size`` in the
    nearest tenure band observed (younger first); without a size (or none of those cells) the (group,
    band) cell, else the band over all groups, else the nearest band observed, else the group's, else all
    rows'."""
    if band is not None and size is not None:
        for cell in (_band_key(group, band, size), _band_key("all", band, size)):
            if cell in moves and moves[cell].n >= MIN_MOVE_ROWS:
                return moves[cell]
        for d in range(1, len(TENURE_BAND_MONTHS) + 1):
            for b in (band - d, band + d):
                cell = _band_key("all", b, size)
                if cell in moves and moves[cell].n >= MIN_MOVE_ROWS:
                    return moves[cell]
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
    arr_edges: np.ndarray | None = None,
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
        arr_edges: with ``by_tenure``, also per (group, tenure band, ARR band at the month start) and (all,
            tenure band, ARR band) (:func:`arr_band`); None or empty: no ARR bands.
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
    # "all" pools every row; rows whose group is "all" (accounts outside the book) count there only: as a
    # group of their own they would replace the pool
    named = [v for v in g.unique() if v != "all"]
    cells = [
        ("all", np.flatnonzero(keep)),
        *[(v, np.flatnonzero(keep & (g == v).to_numpy())) for v in named],
    ]
    if by_tenure:
        band = tenure_band(tenure_months(subscriptions, k["account_id"], c))
        for b in np.unique(band):
            cells.append((_band_key("all", b), np.flatnonzero(keep & (band == b))))
            cells += [
                (_band_key(v, b), np.flatnonzero(keep & (band == b) & (g == v).to_numpy())) for v in named
            ]
            if arr_edges is not None and len(arr_edges):
                size = arr_band(a0, arr_edges)
                for q in np.unique(size[keep & (band == b)]):
                    in_q = keep & (band == b) & (size == q)
                    cells.append((_band_key("all", b, q), np.flatnonzero(in_q)))
                    cells += [(_band_key(v, b, q), np.flatnonzero(in_q & (g == v).to_numpy())) for v in named]
    account = pd.factorize(k["account_id"].astype(str))[0]
    out = {}
    for name, idx in cells:
        r, who = ratio[idx], account[idx]
        is_up, is_down = r > 1 + TOLERANCE, r < 1 - TOLERANCE
        if len(r):
            out[name] = Movement(
                is_up.sum() / len(r),
                is_down.sum() / len(r),
                r[is_up],
                r[is_down],
                len(r),
                row_account=who,
                up_account=who[is_up],
                down_account=who[is_down],
            )
    if "all" not in out:
        raise ChurnmlError(f"forecast: no account-month before {as_of.date()} to learn ARR moves from")
    return out


@dataclass
class _Rates:
    """A movement re-estimated under each bootstrap weighting of the learning accounts (weighting x learning
    account counts): P(up) and P(down) per weighting, and the largest weight among the up and the down
    ratios' accounts (the bound of :func:`_pick`'s rejection step)."""

    weights: np.ndarray
    p_up: np.ndarray
    p_down: np.ndarray
    top_up: np.ndarray
    top_down: np.ndarray


def _rates(mv: Movement, weights: np.ndarray) -> _Rates:
    """The movement under each row of ``weights`` (weighting x learning account)."""
    acc, rows = np.unique(mv.row_account, return_counts=True)
    n = weights[:, acc].astype(np.float32) @ rows.astype(np.float32)  # float32: half the memory at scale
    ps, tops = [], []
    for who, p in ((mv.up_account, mv.p_up), (mv.down_account, mv.p_down)):
        w = weights[:, who]
        total = w.sum(axis=1, dtype=np.float64)
        ps.append(np.where(n > 0, total / np.where(n > 0, n, 1.0), p))
        top = w.max(axis=1) if w.shape[1] else np.zeros(len(w), dtype=weights.dtype)
        tops.append(np.where(n > 0, top, 0))  # a resample without the cell's accounts: the cell as learned
    return _Rates(weights, ps[0], ps[1], tops[0], tops[1])


def _pick(
    rng: np.random.Generator, owner: np.ndarray, weights: np.ndarray, top: np.ndarray, which: np.ndarray
) -> np.ndarray:
    """Per event, the index of a ratio drawn with probability proportional to the weight of its account
    (``owner``) under the event's weighting ``which``: a uniform index, kept with probability weight / top
    (rejection sampling, exact; no per-weighting table of the ratios held in memory); ``top`` 0 (a resample
    without any of the cell's accounts, which keeps the rates as learned): uniform. A weighting whose ratios
    all weigh 0 while the cell's rows do not has probability 0 of the move, so it never comes here."""
    out = np.empty(len(which), dtype=np.int64)
    todo = np.arange(len(which))
    while len(todo):
        idx = rng.integers(0, len(owner), len(todo))
        b = which[todo]
        keep = (top[b] == 0) | (rng.random(len(todo)) * top[b] < weights[b, owner[idx]])
        out[todo[keep]] = idx[keep]
        todo = todo[~keep]
    return out


def _move(
    rng: np.random.Generator,
    mv: Movement,
    shape: tuple[int, int],
    rates: _Rates | None = None,
    which: np.ndarray | None = None,
) -> np.ndarray:
    """One month's ARR factors of ``shape`` (accounts x draws) drawn from a movement; with ``rates``, draw
    ``j`` uses the movement under weighting ``which[j]``."""
    u = rng.random(shape)
    factor = np.ones(shape)
    p_up, p_down = (mv.p_up, mv.p_down) if rates is None else (rates.p_up[which], rates.p_down[which])
    up = u < p_up
    down = (u >= p_up) & (u < p_up + p_down)
    for hit, ratios, side in ((up, mv.up, "up"), (down, mv.down, "down")):
        if hit.any() and len(ratios):
            if rates is None:
                factor[hit] = rng.choice(ratios, size=int(hit.sum()))
            else:
                cols = np.broadcast_to(np.asarray(which)[None, :], shape)[hit]
                owner = getattr(mv, f"{side}_account")
                pick = _pick(rng, owner, rates.weights, getattr(rates, f"top_{side}"), cols)
                factor[hit] = ratios[pick]
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
    rate_draws: int = 0,
    size: np.ndarray | None = None,
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
        rate_draws: the uncertainty of the moves themselves: the learning accounts are resampled
            ``rate_draws`` times (a Poisson bootstrap: each account's account-months weighted by a Poisson(1)
            count) and draw ``j`` uses the rates and ratios of resample ``j % rate_draws`` for every account,
            so the accounts of one draw share its error of the rates. 0, or movements without their
            accounts: the rates as estimated (the intervals carry the accounts' own randomness only).
        size: with ``tenure``, each account's ARR band at the as-of (:func:`arr_band`): the moves come from
            the (group, tenure band, ARR band) cell; None: no ARR bands.
    """
    if survival.shape[1] < months:
        raise ChurnmlError(f"forecast: curves cover {survival.shape[1]} months, not {months}")
    rng = np.random.default_rng(seed)
    n = len(arr0)
    alive = rng.random((n, draws)) < survival[:, months - 1][:, None]
    arr = np.repeat(np.asarray(arr0, dtype=float)[:, None], draws, axis=1)
    groups = np.asarray(groups).astype(str)
    known = [mv.row_account for mv in moves.values() if mv.row_account is not None and len(mv.row_account)]
    weights, which, cache = None, None, {}
    if rate_draws > 0 and known:
        # its own stream: the accounts' draws are the same with and without rate draws
        boot = np.random.default_rng([seed, 1])
        weights = boot.poisson(1.0, (rate_draws, max(int(a.max()) for a in known) + 1)).astype(np.uint8)
        which = np.arange(draws) % rate_draws

    def move(mv: Movement, rows: int) -> np.ndarray:
        if weights is None or mv.row_account is None:
            return _move(rng, mv, (rows, draws))
        if id(mv) not in cache:
            cache[id(mv)] = _rates(mv, weights)
        return _move(rng, mv, (rows, draws), cache[id(mv)], which)

    if tenure is None:
        for name in np.unique(groups):
            mv = moves.get(str(name), moves["all"])
            idx = np.flatnonzero(groups == name)
            for _ in range(months):
                arr[idx] *= move(mv, len(idx))
        return np.where(alive, arr, 0.0)
    tenure = np.asarray(tenure, dtype=np.int64)
    sized = size is not None
    size = np.asarray(size, dtype=np.int64) if sized else np.zeros(n, dtype=np.int64)
    for m in range(months):
        band = tenure_band(tenure + m)
        for name in np.unique(groups):
            for b in np.unique(band[groups == name]):
                for q in np.unique(size[(groups == name) & (band == b)]):
                    idx = np.flatnonzero((groups == name) & (band == b) & (size == q))
                    mv = movement_for(moves, name, int(b), int(q) if sized else None)
                    arr[idx] *= move(mv, len(idx))
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
    rate_draws: int = 0,
    arr_quantiles: tuple[float, ...] = (),
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
        rate_draws: bootstrap resamples of the moves' learning accounts (:func:`simulate_book`); 0: none.
        arr_quantiles: the ARR bands' edges as quantiles of the book's ARR at the as-of
            (:func:`arr_band_edges`): the moves are learned and drawn per ARR band too; empty: no ARR bands.

    Returns:
        :func:`summarise` rows with ``horizon_months``, per horizon.
    """
    arr0 = arr_on(subscriptions, book["account_id"], as_of - pd.Timedelta(days=1), grace_days)
    seg_of = spine.merge(
        book[["account_id", "account_segment"]].drop_duplicates("account_id"), on="account_id", how="left"
    )["account_segment"].fillna("all")
    edges = arr_band_edges(arr0, arr_quantiles)
    moves = monthly_movements(
        spine, subscriptions, grace_days, as_of, seg_of, by_tenure=True, arr_edges=edges
    )
    groups = book["account_segment"].astype("object").fillna("all").astype(str).to_numpy()
    tenure = tenure_months(subscriptions, book["account_id"], as_of)
    size = arr_band(arr0, edges) if len(edges) else None
    parts = []
    for h in months:
        if h > survival.shape[1]:
            continue
        sim = simulate_book(
            arr0, survival, groups, moves, h, draws, seed + h, tenure=tenure, rate_draws=rate_draws, size=size
        )
        parts.append(summarise(arr0, sim, _groups(book)).assign(horizon_months=h))
    return pd.concat(parts, ignore_index=True)


def forecast_settings(survival: SurvivalConfig) -> dict:
    """The keyword arguments of :func:`forecast_book` and :func:`backtest` that the configuration sets.

    Raises:
        ChurnmlError: on a quantile outside (0, 1) or a negative number of rate draws.
    """
    quantiles = [float(q) for q in survival.forecast_arr_quantiles]
    if any(not 0 < q < 1 for q in quantiles) or int(survival.forecast_rate_draws) < 0:
        raise ChurnmlError(
            f"survival: forecast_arr_quantiles must lie in (0, 1) (got {quantiles}) and forecast_rate_draws "
            f"be 0 or more (got {survival.forecast_rate_draws})"
        )
    return {
        "arr_quantiles": tuple(float(q) for q in survival.forecast_arr_quantiles),
        "rate_draws": int(survival.forecast_rate_draws),
    }


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
    rate_draws: int = 0,
    arr_quantiles: tuple[float, ...] = (),
) -> tuple[pd.DataFrame, dict]:
    """Forecasts made at past as-of dates (each with curves from a model that saw nothing after it) against
    what happened, and against the naive forecast (``rate_draws`` and ``arr_quantiles``: :func:`forecast_book`).

    Returns:
        (rows: one per as-of, horizon, dimension and group with forecast, realised and naive values;
        summary: mean absolute GRR/NRR error of both on the portfolio, and the 80%/95% coverage over all rows
        and per dimension (``by_dimension``)).
    """
    parts = []
    for as_of, (book, surv) in books.items():
        fc = forecast_book(
            book,
            surv,
            subscriptions,
            spine,
            as_of,
            grace_days,
            months,
            draws,
            rate_draws=rate_draws,
            arr_quantiles=arr_quantiles,
        )
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
