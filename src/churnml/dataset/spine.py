"""The observation spine: which accounts are scored at which cutoffs, and the point-in-time rule.

The point-in-time rule (every feature and label follows it, and tests enforce it):

- A **cutoff** (as-of date) is the *start* of its UTC calendar day.
- **Features** see only rows dated strictly before the cutoff: ``usage.date < cutoff``, ``created_at <
  cutoff``, a ticket's resolution and CSAT only if ``resolved_at < cutoff``, a contact's departure only if
  ``end_date < cutoff``, a subscription only if ``start_date < cutoff`` and its ``end_date`` only if
  ``end_date < cutoff`` (an end date on or after the cutoff is not yet known). The one thing known about the
  future is the scheduled term end of the running contract (start plus one month or one year).
- **Labels** look at ``[cutoff, cutoff + horizon)``.
- The spine holds, per cutoff, the accounts that are customers on the day before it: a subscription with
  ``start_date < cutoff`` and ``end_date`` empty or ``>= cutoff`` (active on day ``cutoff - 1``).
- The **data end** is the first day with no data: the day after the last usage day (the daily feed of
  what happened). A subscription starting later is a pre-booked renewal or term (the contract allows start
  dates ahead of the export) and does not move it: counted, one booked renewal would carry the end, the
  default as-of and the labels' maturity into months nobody has observed. Rows are labeled only when ``cutoff + horizon + grace <= data end``; scoring's
  default cutoff is the data end itself (features see everything there is).
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from pathlib import Path

import duckdb
import pandas as pd

from churnml.config import SpineConfig
from churnml.contract.sqlcheck import UsageScan
from churnml.errors import ChurnmlError
from churnml.names import KEYS

SPINE_COLUMNS = list(KEYS)

# Portable SQL (DuckDB dialect, transpiles to Spark): accounts active on the day before each cutoff.
SPINE_SQL = """
SELECT DISTINCT s.account_id, c.cutoff
FROM spine_subscriptions AS s
JOIN spine_cutoffs AS c
  ON s.start_date < c.cutoff AND (s.end_date IS NULL OR s.end_date >= c.cutoff)
"""


def to_cutoffs(cutoffs: Sequence | pd.Series | pd.DatetimeIndex) -> list[pd.Timestamp]:
    """Normalise cutoffs (strings, dates, timestamps) to sorted, unique midnight timestamps.

    Raises:
        ChurnmlError: when a cutoff is missing or not a whole day.
    """
    try:
        idx = pd.DatetimeIndex(pd.to_datetime(list(cutoffs)))
    except (ValueError, TypeError) as exc:
        raise ChurnmlError(f"cutoffs: not dates ({str(exc).splitlines()[0]})") from None
    if idx.tz is not None:
        idx = idx.tz_convert("UTC").tz_localize(None)
    if idx.hasnans:
        raise ChurnmlError("cutoffs: a cutoff is missing (NaT)")
    partial = idx[idx != idx.normalize()]
    if len(partial):
        raise ChurnmlError(f"cutoffs: {partial[0]} is not the start of a day (a cutoff is a calendar day)")
    return [pd.Timestamp(t) for t in sorted(set(idx))]


def sql_string(text: str | Path) -> str:
    """A SQL string literal (single quotes doubled), for file paths put into SQL text."""
    return "'" + str(text).replace("'", "''") + "'"


def _table_path(source: Path, name: str) -> Path:
    path = Path(source) / f"{name}.parquet"
    if not path.is_file():
        raise ChurnmlError(f"{source}: {name}.parquet missing (a folder written by `churnml validate`)")
    return path


def data_range(tables: Mapping[str, pd.DataFrame] | Path) -> tuple[pd.Timestamp, pd.Timestamp]:
    """First day of usage data and the data end (the first day with no data).

    The start is the first usage day: the contract history may reach further back, but features need
    behaviour. The end is the day after the last usage day. Subscription dates are not used: a start or
    end date may be a pre-booked renewal or a scheduled term end ahead of the export (the contract allows
    both), and one such row would move the end, hence the default as-of and which labels count as
    matured, into days nobody has observed; nor are the optional tables (a late ticket export must not
    move the label horizon). A usage feed that stopped before the rest of the export therefore ends the
    data there: an explicit later ``--as-of`` is refused (:func:`as_of_day`), never scored on missing days.

    Args:
        tables: the contract tables by name, or a folder of ``<table>.parquet`` files.

    Raises:
        ChurnmlError: when usage or subscriptions are missing, or usage has no rows.
    """
    if isinstance(tables, str | Path):
        _table_path(Path(tables), "subscriptions")  # required, though its dates do not move the end
        usage = _table_path(Path(tables), "usage")
        con = duckdb.connect()
        try:
            u_min, u_max = con.execute(
                f"SELECT MIN(CAST(date AS DATE)), MAX(CAST(date AS DATE)) FROM read_parquet({sql_string(usage)})"
            ).fetchone()
        finally:
            con.close()
        lo, hi = [x for x in (u_min,) if x is not None], [x for x in (u_max,) if x is not None]
    else:
        for name in ("usage", "subscriptions"):
            if name not in tables:
                raise ChurnmlError(f"data range: table {name!r} missing")
        usage = tables["usage"]
        if isinstance(usage, UsageScan):  # left in its file; its first and last day were read when checked
            lo, hi = [usage.first_day], [x for x in (usage.last_day,) if pd.notna(x)]
        else:
            u = pd.to_datetime(usage["date"])
            lo = [u.min()] if u.notna().any() else []
            hi = [u.max()] if u.notna().any() else []
    if not lo or not hi:
        raise ChurnmlError("data range: usage has no rows (cannot tell when the data starts and ends)")
    start = pd.Timestamp(min(lo)).normalize()
    end = pd.Timestamp(max(hi)).normalize() + pd.Timedelta(days=1)
    return start, end


def data_end(tables: Mapping[str, pd.DataFrame] | Path) -> pd.Timestamp:
    """The first day with no data: the day after the last usage day (:func:`data_range`).

    Args:
        tables: the contract tables by name, or a folder of ``<table>.parquet`` files.
    """
    return data_range(tables)[1]


def scoring_cutoff(tables: Mapping[str, pd.DataFrame] | Path) -> pd.Timestamp:
    """Scoring's default as-of date: the data end (features then see every row there is)."""
    return data_end(tables)


def as_of_day(
    as_of: pd.Timestamp | str | None, end: pd.Timestamp, start: pd.Timestamp | None = None
) -> pd.Timestamp:
    """The as-of day of a scoring, explain or report run: the given day, or by default the data end.

    The one place the as-of is resolved: scoring, the explain stage and the report all call it, so they
    describe the same day.

    Args:
        as_of: a day (string, date or timestamp); None or "" means the data end.
        end: the data end (:func:`data_end`).
        start: the data start; given, a day on or before it is refused (a batch job's check: no history).

    Raises:
        ChurnmlError: when the day is after the data end (features would miss the days in between), on or
            before ``start``, or is not a whole day.
    """
    day = to_cutoffs([as_of])[0] if as_of is not None and str(as_of) != "" else end
    if day > end:
        raise ChurnmlError(
            f"as-of {day.date()} is after the data end {end.date()} (the day after the last usage day): features "
            "would read the days in between as no use; check that the usage export is complete, or choose an "
            "earlier --as-of"
        )
    if start is not None and day <= start:
        raise ChurnmlError(
            f"as-of {day.date()} is not after the data start {start.date()}: there is no history to build "
            "features from (choose a later --as-of)"
        )
    return day


def training_cutoffs(
    tables: Mapping[str, pd.DataFrame] | Path | tuple,
    cfg: SpineConfig,
    min_history_days: int | None = None,
) -> list[pd.Timestamp]:
    """Observation dates of the training spine.

    One per ``cfg.frequency`` period start (``MS``: the first of each month), from the first period
    start on or after ``data start + min_history_days`` up to and including the data end.
    ``cfg.start`` / ``cfg.end``, when set, replace those bounds (still aligned to the frequency).

    Args:
        tables: the contract tables, a folder of Parquet files, or a ``(start, end)`` pair where ``end``
            is the data end (the first day with no data).
        cfg: the spine section of the configuration.
        min_history_days: history required before the first cutoff; ``cfg.min_history_days`` when None.

    Raises:
        ChurnmlError: on an unknown frequency or when no cutoff fits in the range.
    """
    if isinstance(tables, tuple):
        start, end = (pd.Timestamp(t).normalize() for t in tables)
    else:
        start, end = data_range(tables)
    history = cfg.min_history_days if min_history_days is None else min_history_days
    first = pd.Timestamp(cfg.start) if cfg.start else start + pd.Timedelta(days=history)
    last = pd.Timestamp(cfg.end) if cfg.end else end
    try:
        dates = pd.date_range(first.normalize(), last.normalize(), freq=cfg.frequency)
    except ValueError as exc:
        raise ChurnmlError(f"spine.frequency {cfg.frequency!r}: {str(exc).splitlines()[0]}") from None
    if len(dates) == 0:
        raise ChurnmlError(
            f"spine: no {cfg.frequency} cutoff between {first.date()} and {last.date()} "
            f"(data {start.date()} to {end.date()}, min_history_days={history})"
        )
    return to_cutoffs(dates)


def build_spine(subscriptions: pd.DataFrame, cutoffs: Sequence) -> pd.DataFrame:
    """The accounts with a subscription active on the day before each cutoff.

    Args:
        subscriptions: the subscriptions table (validated).
        cutoffs: the observation dates (whole days).

    Returns:
        One row per (account_id, cutoff), sorted by cutoff then account_id; ``cutoff`` is datetime64[us].
    """
    cuts = to_cutoffs(cutoffs)
    missing = [c for c in ("account_id", "start_date", "end_date") if c not in subscriptions.columns]
    if missing:
        raise ChurnmlError(f"subscriptions: missing column(s) {', '.join(missing)}")
    subs = pd.DataFrame(
        {
            "account_id": subscriptions["account_id"].astype(str),
            "start_date": pd.to_datetime(subscriptions["start_date"]).astype("datetime64[us]"),
            "end_date": pd.to_datetime(subscriptions["end_date"]).astype("datetime64[us]"),
        }
    )
    cut_frame = pd.DataFrame({"cutoff": pd.DatetimeIndex(cuts).astype("datetime64[us]")})
    out = query_frames(
        f"SELECT * FROM ({SPINE_SQL}) AS spine ORDER BY cutoff, account_id",
        {
            "spine_subscriptions": (
                subs,
                "account_id, CAST(start_date AS DATE) AS start_date, CAST(end_date AS DATE) AS end_date",
            ),
            "spine_cutoffs": (cut_frame, "CAST(cutoff AS DATE) AS cutoff"),
        },
    )
    return pd.DataFrame(
        {
            "account_id": out["account_id"].astype(str),
            "cutoff": pd.to_datetime(out["cutoff"]).astype("datetime64[us]"),
        }
    )


def query_frames(sql: str, views: Mapping[str, tuple[pd.DataFrame, str]]) -> pd.DataFrame:
    """The result of ``sql`` in a fresh in-memory DuckDB where each frame is a typed view.

    Args:
        sql: The query; it reads the views by name.
        views: View name -> (frame, the view's select list over the frame's columns, e.g.
            ``CAST(cutoff AS DATE) AS cutoff``); the frame itself is registered as ``<name>_src``.
    """
    con = duckdb.connect()
    try:
        for name, (frame, columns) in views.items():
            con.register(f"{name}_src", frame)
            con.execute(f"CREATE TEMP VIEW {name} AS SELECT {columns} FROM {name}_src")
        return con.execute(sql).df()
    finally:
        con.close()
