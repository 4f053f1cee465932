"""Point-in-time features per (account, cutoff), computed by DuckDB from SQL definitions portable to Spark.

Why SQL (and not Ibis or pandas): the definitions in :mod:`churnml.features.sql` read like the warehouse
SQL an analyst writes and reviews, they run where the data lives (DuckDB embedded here, reading Parquet
out of core; the same text on Spark when data outgrows one machine), and sqlglot, the transpiler Ibis
itself uses, turns them into Spark SQL for the parity check. DuckDB runs them with a memory limit and a
spill directory, never loading the usage table into pandas; Python only builds the SQL and a small
date -> cutoff calendar, and never loops over accounts.

The point-in-time rule is the spine module's (:mod:`churnml.dataset.spine`): features see rows dated strictly
before the cutoff. Column contract: ``account_id`` (str), ``cutoff`` (datetime64[us]), then features
``<family>_<measure>_<agg>_<window>d``; the categoricals in ``CATEGORICAL`` are str, the rest float64.
:func:`parse_feature` / :func:`describe_feature` say what each name means.
"""

from __future__ import annotations

import logging
import math
import re
import shutil
import tempfile
import time
from collections.abc import Mapping, Sequence
from pathlib import Path

import duckdb
import pandas as pd

from churnml.config import FEATURE_ENGINES, FeaturesConfig
from churnml.contract.schemas import REQUIRED_TABLES, TABLES
from churnml.contract.sqlcheck import UsageScan
from churnml.dataset.spine import build_spine, sql_string, to_cutoffs
from churnml.errors import ChurnmlError
from churnml.features import sql as fs
from churnml.features.spark import build_features_spark, spark_session
from churnml.features.sql import SqlStep, Windows
from churnml.features.steps import (
    _TYPED_COLUMNS,
    _spine_keys,
    _tidy,
    enabled_families,
    family_columns,
    family_steps,
)

log = logging.getLogger(__name__)
# The usage aggregation's hash table holds about 450 bytes per (account, cutoff, metric) group; a pass
# holds at most memory_limit / BYTES_PER_GROUP groups (a third of the limit), more are split by account
# ranges (row groups of Parquet sorted by account are then skipped by the other passes).
BYTES_PER_GROUP = 1_500
GROUPS_PER_PARTITION = 3_000_000  # when the memory limit is not a plain size
ASSUMED_METRICS = 6  # to size partitions before the metric list is known
_UNITS = {
    "": 1,
    "B": 1,
    "KB": 1e3,
    "MB": 1e6,
    "GB": 1e9,
    "TB": 1e12,
    "KIB": 2**10,
    "MIB": 2**20,
    "GIB": 2**30,
}


# ------------------------------------------------------------------------------------------------ engine


def connect(cfg: FeaturesConfig, temp_dir: str | Path | None = None) -> duckdb.DuckDBPyConnection:
    """An in-memory DuckDB connection with the configured memory limit, threads and a spill directory."""
    config: dict[str, object] = {"memory_limit": cfg.memory_limit, "preserve_insertion_order": False}
    if temp_dir is not None:
        config["temp_directory"] = str(temp_dir)
    if cfg.threads and cfg.threads > 0:
        config["threads"] = int(cfg.threads)
    try:
        return duckdb.connect(config=config)
    except duckdb.Error as exc:
        raise ChurnmlError(f"features: cannot start DuckDB ({str(exc).splitlines()[0]})") from None


def usage_window_start(cutoffs: Sequence, cfg: FeaturesConfig) -> pd.Timestamp:
    """The first day whose usage rows a windowed feature of these cutoffs can see: the earliest cutoff minus
    the longest look-back of the configured windows (:attr:`churnml.features.sql.Windows.lookback`: the
    largest sum window, twice the trend window, the z-score's baseline weeks plus its recent week)."""
    return to_cutoffs(cutoffs)[0] - pd.Timedelta(days=Windows.from_config(cfg).lookback)


def windowed_usage_sql(usage: UsageScan, since: pd.Timestamp, until: pd.Timestamp) -> tuple[str, str]:
    """(summary SQL, rows SQL): what the usage steps need of ``usage`` for cutoffs in ``(since, until]``; the
    summary is materialised as ``usage_before_summary`` (the rows SQL reads it).

    The rows dated in ``[since, until)`` as they are, read with the date filter pushed down to the file.
    An older row feeds no window (:func:`usage_window_start`): the usage aggregation clamps it to the
    calendar's first day, where it falls in no bucket and sets no active-day bit, so it counts only through
    the unbounded look-backs, the first and last day with a value above zero per account and metric (days
    since last use, time to first value), and by making its metric and group exist. The summary keeps
    exactly that: per (account, metric) of the older rows, its first day (value 0), and its first and last
    positive day (value 1): at most three rows for any number of older rows. The parity test
    (tests/test_usage_window.py) builds features both ways and requires them equal.
    """
    summary = f"""
SELECT account_id, metric, MIN(date) AS any_day,
  MIN(CASE WHEN value > 0 THEN date END) AS first_positive,
  MAX(CASE WHEN value > 0 THEN date END) AS last_positive
FROM ({usage.typed_sql(None, since)})
GROUP BY account_id, metric"""
    rows = f"""
SELECT account_id, any_day AS date, metric, 0.0 AS value FROM usage_before_summary
UNION ALL
SELECT account_id, first_positive, metric, 1.0 FROM usage_before_summary WHERE first_positive IS NOT NULL
UNION ALL
SELECT account_id, last_positive, metric, 1.0 FROM usage_before_summary WHERE last_positive > first_positive
UNION ALL
{usage.typed_sql(since, until)}"""
    return summary, rows


def register_sources(
    con: duckdb.DuckDBPyConnection,
    source: Mapping[str, pd.DataFrame | UsageScan] | Path | str,
    cutoffs: Sequence | None = None,
    cfg: FeaturesConfig | None = None,
) -> set[str]:
    """Expose the contract tables as typed views named after them; return the names present.

    Args:
        con: the connection.
        source: frames by table name (registered as DuckDB relations, not copied), or a folder of
            ``<table>.parquet`` files (read by DuckDB itself, out of core). In a mapping, ``usage`` may be a
            :class:`~churnml.contract.sqlcheck.UsageScan`: only the rows inside the look-back window of
            ``cutoffs`` (by ``cfg``'s windows) are read, and a summary of the older ones
            (:func:`windowed_usage_sql`).

    Raises:
        ChurnmlError: when a required table is missing, a folder table is CSV, or a column is missing.
    """
    present: set[str] = set()
    if isinstance(source, str | Path):
        folder = Path(source)
        if not folder.is_dir():
            raise ChurnmlError(f"{folder}: no such folder")
        for name in TABLES:
            path = folder / f"{name}.parquet"
            if path.is_file():
                con.execute(
                    f"CREATE OR REPLACE TEMP VIEW src_{name} AS SELECT * FROM read_parquet({sql_string(path)})"
                )
                present.add(name)
            elif (folder / f"{name}.csv").is_file():
                raise ChurnmlError(
                    f"{folder}: {name}.csv found; features read Parquet (run `churnml validate` to write it)"
                )
    else:
        for name, frame in source.items():
            if isinstance(frame, UsageScan):
                if cutoffs is None or cfg is None:
                    raise ChurnmlError("features: a usage scan needs the cutoffs and the feature windows")
                since = usage_window_start(cutoffs, cfg)
                summary, rows = windowed_usage_sql(frame, since, max(to_cutoffs(cutoffs)))
                try:
                    con.execute(f"CREATE OR REPLACE TEMP TABLE usage_before_summary AS {summary}")
                    con.execute(f"CREATE OR REPLACE TEMP VIEW src_{name} AS {rows}")
                except duckdb.Error as exc:
                    raise ChurnmlError(
                        f"usage: cannot read for features ({str(exc).splitlines()[0]})"
                    ) from None
                present.add(name)
            elif name in TABLES and frame is not None:
                con.register(f"src_{name}", frame)
                present.add(name)
    missing = [n for n in REQUIRED_TABLES if n not in present]
    if missing:
        raise ChurnmlError(f"features: required table(s) missing: {', '.join(missing)}")
    for name in present:
        try:
            con.execute(
                f"CREATE OR REPLACE TEMP VIEW {name} AS SELECT {_TYPED_COLUMNS[name]} FROM src_{name}"
            )
        except duckdb.Error as exc:
            raise ChurnmlError(f"{name}: cannot read for features ({str(exc).splitlines()[0]})") from None
    return present


def _groups_per_pass(memory_limit: str) -> int:
    """How many aggregation groups one pass may hold under DuckDB's memory limit."""
    m = re.fullmatch(r"\s*([0-9.]+)\s*([a-zA-Z]*)\s*", str(memory_limit))
    if not m or m.group(2).upper() not in _UNITS:
        return GROUPS_PER_PARTITION
    return max(1_000, int(float(m.group(1)) * _UNITS[m.group(2).upper()] / BYTES_PER_GROUP))


def _partitions(account_ids: Sequence[str], n_rows: int, groups_per_pass: int) -> list[fs.AccountRange]:
    """Account ranges splitting the usage aggregation into passes of bounded size."""
    parts = max(1, math.ceil(n_rows * ASSUMED_METRICS / groups_per_pass))
    ids = sorted(set(account_ids))
    if parts == 1 or len(ids) < 2 * parts:
        return [fs.ALL_ACCOUNTS]
    bounds: list[str | None] = [None, *(ids[len(ids) * i // parts] for i in range(1, parts)), None]
    return list(zip(bounds[:-1], bounds[1:], strict=True))


def _materialise(con: duckdb.DuckDBPyConnection, step: SqlStep, insert: bool = False) -> None:
    began, cpu = time.perf_counter(), time.process_time()
    verb = f"INSERT INTO {step.name}" if insert else f"CREATE OR REPLACE TEMP TABLE {step.name} AS"
    try:
        con.execute(f"{verb} {step.sql}")
    except duckdb.Error as exc:
        raise ChurnmlError(f"features: step {step.name} failed ({str(exc).splitlines()[0]})") from None
    log.debug(
        "features: %s in %.2f s (%.2f s CPU)",
        step.name,
        time.perf_counter() - began,
        time.process_time() - cpu,
    )


def _distinct(con: duckdb.DuckDBPyConnection, sql: str) -> list[str]:
    return sorted(str(r[0]) for r in con.execute(sql).fetchall() if r[0] is not None)


def register_usage_periods(con: duckdb.DuckDBPyConnection, periods: fs.UsagePeriods) -> None:
    """The usage steps' parameter tables, ``usage_calendar`` and ``usage_cutoffs``, with DATE columns."""
    for name, frame in (("usage_calendar", periods.calendar), ("usage_cutoffs", periods.cutoffs)):
        con.register(f"{name}_src", frame)
        dates = ", ".join(f"CAST({c} AS DATE) AS {c}" for c in frame.columns if frame[c].dtype.kind == "M")
        con.execute(f"CREATE OR REPLACE TEMP TABLE {name} AS SELECT * REPLACE ({dates}) FROM {name}_src")
        con.unregister(f"{name}_src")


def _build(
    con: duckdb.DuckDBPyConnection, present: set[str], keys: pd.DataFrame, cfg: FeaturesConfig
) -> pd.DataFrame:
    win = Windows.from_config(cfg)
    families = enabled_families(cfg, present)
    cutoffs = to_cutoffs(keys["cutoff"].unique())
    con.register("spine_rows_src", keys)
    con.execute(
        "CREATE OR REPLACE TEMP TABLE spine_rows AS "
        "SELECT row_id, account_id, CAST(cutoff AS DATE) AS cutoff FROM spine_rows_src"
    )
    con.execute("CREATE OR REPLACE TEMP VIEW spine_keys AS SELECT account_id, cutoff FROM spine_rows")
    _materialise(con, SqlStep("contract_state", "contract", fs.contract_state_sql()))

    columns: dict[str, list[str]] = {}
    if {"usage", "adoption", "lifecycle"} & set(families):
        periods = fs.usage_periods(cutoffs, win)
        register_usage_periods(con, periods)
        # per range of accounts: aggregate the usage periods, finish the per-metric features, drop the rest
        starts = []
        passes = _partitions(keys["account_id"].tolist(), len(keys), _groups_per_pass(cfg.memory_limit))
        for i, accounts in enumerate(passes):
            _materialise(con, SqlStep("usage_agg", "usage", fs.usage_agg_sql(periods, accounts)))
            starts.append(con.execute("SELECT MIN(first_positive_date) FROM usage_agg").fetchone()[0])
            step = SqlStep("usage_metric_features", "usage", fs.usage_metric_sql(win, periods, accounts))
            _materialise(con, step, insert=i > 0)
            con.execute("DROP TABLE usage_agg")
        metrics = fs.column_tokens(
            _distinct(con, "SELECT DISTINCT metric FROM usage_metric_features"), "usage metric"
        )
        key_metrics = [m for m in metrics if m.startswith(cfg.key_feature_prefix)] or list(metrics)
        account_sql = fs.usage_account_sql(win, metrics, cfg.active_users_metric, key_metrics)
        _materialise(con, SqlStep("usage_account", "usage", account_sql))
        con.execute("DROP TABLE usage_metric_features")
        # the first day of usage data seen (any metric above zero), for the time to first value
        usage_start = min((d for d in starts if d is not None), default=None)
        columns["usage"] = fs.usage_feature_columns(win, metrics)
    else:
        usage_start = None
    kinds = {}
    if "csm" in families:
        kinds = fs.column_tokens(
            _distinct(
                con,
                f"SELECT DISTINCT kind FROM csm_activities WHERE occurred_at < DATE '{cutoffs[-1].date()}'",
            ),
            "CSM activity kind",
        )
    steps = family_steps(
        cfg, kinds, None if usage_start is None else pd.Timestamp(usage_start).date().isoformat()
    )
    for family in families:
        for step in steps.get(family, []):
            _materialise(con, step)
    ordered = {}
    for family in families:
        cols = columns.get(family) or family_columns(family, cfg, kinds)
        ordered[family] = cols
    # through Arrow: half the cost of .df(), and the Arrow buffers are freed while converting
    result = con.sql(fs.final_sql(ordered)).to_arrow_table()
    return _tidy(result.to_pandas(split_blocks=True, self_destruct=True))


def build_features(
    source: Mapping[str, pd.DataFrame] | Path | str, spine: pd.DataFrame, cfg: FeaturesConfig
) -> pd.DataFrame:
    """Features for every spine row, as of its cutoff.

    Args:
        source: the contract tables by name (frames, registered with DuckDB as relations), or a folder of
            validated ``<table>.parquet`` files that DuckDB reads itself (out of core).
        spine: unique (account_id, cutoff) rows; cutoffs are whole days.
        cfg: feature families and windows; ``memory_limit`` and ``threads`` bound DuckDB.

    Returns:
        One row per spine row, in its order: account_id, cutoff, then the enabled families' features
        (families whose optional table is absent are skipped; usage columns follow the metrics found in
        the data before the last cutoff, CSM columns the activity kinds).

    Raises:
        ChurnmlError: on a bad spine, a missing required table or column, or an unknown family.
    """
    if cfg.engine not in FEATURE_ENGINES:
        raise ChurnmlError(f"features.engine {cfg.engine!r}: expected one of {', '.join(FEATURE_ENGINES)}")
    keys = _spine_keys(spine)
    if cfg.engine == "spark":
        if not isinstance(source, str | Path) and isinstance(source.get("usage"), UsageScan):
            source = {**source, "usage": usage_window_frame(source["usage"], keys["cutoff"].unique(), cfg)}
        return build_features_spark(spark_session(), source, spine, cfg)
    temp_dir = tempfile.mkdtemp(prefix="churnml-duckdb-")
    try:
        con = connect(cfg, temp_dir)
        try:
            present = register_sources(con, source, keys["cutoff"].unique(), cfg)
            return _build(con, present, keys, cfg)
        finally:
            con.close()
    finally:
        shutil.rmtree(temp_dir, ignore_errors=True)


def usage_window_frame(usage: UsageScan, cutoffs: Sequence, cfg: FeaturesConfig) -> pd.DataFrame:
    """The windowed usage rows and the older rows' summary (:func:`windowed_usage_sql`) as a frame, for the
    Spark engine (the look-back window of one scoring date is a small part of the history)."""
    con = connect(cfg)
    try:
        since = usage_window_start(cutoffs, cfg)
        summary, rows = windowed_usage_sql(usage, since, max(to_cutoffs(cutoffs)))
        con.execute(f"CREATE TEMP TABLE usage_before_summary AS {summary}")
        return con.execute(rows).df()
    finally:
        con.close()


def features_for_folder(folder: Path | str, cutoffs: Sequence, cfg: FeaturesConfig) -> pd.DataFrame:
    """Features as of the given cutoffs for every account active then, from a folder of Parquet tables.

    Builds the spine from ``folder/subscriptions.parquet`` (accounts with a subscription active on the day
    before each cutoff) and the features with DuckDB reading the folder (``churnml features DIR --cutoff``).
    """
    folder = Path(folder)
    path = folder / "subscriptions.parquet"
    if not path.is_file():
        raise ChurnmlError(
            f"{folder}: subscriptions.parquet missing (a folder written by `churnml validate`)"
        )
    subscriptions = pd.read_parquet(path, columns=["account_id", "start_date", "end_date"])
    spine = build_spine(subscriptions, cutoffs)
    return build_features(folder, spine, cfg)


compute_features_for_cutoffs = features_for_folder
