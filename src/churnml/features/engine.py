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
from dataclasses import dataclass
from pathlib import Path

import duckdb
import pandas as pd

from churnml.config import FeaturesConfig
from churnml.contract.schemas import REQUIRED_TABLES, TABLES
from churnml.dataset.spine import build_spine, sql_string, to_cutoffs
from churnml.errors import ChurnmlError
from churnml.features import sql as fs
from churnml.features.sql import CATEGORICAL, SqlStep, Windows
from churnml.names import FEATURE_FAMILIES, KEYS

log = logging.getLogger(__name__)

ALWAYS_PRESENT = (
    "contract_arr",
    "contract_mrr",
    "contract_seats",
    "contract_days_to_renewal",
    "account_segment",
    "account_touch_model",
)
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
EXAMPLE_METRICS = (
    "active_users",
    "logins",
    "api_calls",
    "feature_dashboards",
    "feature_reports",
    "feature_automations",
)
EXAMPLE_CSM_KINDS = ("call", "email", "meeting", "qbr", "onboarding_session")

# The typed view of each contract table: only the columns features read, dates as DATE.
_TYPED_COLUMNS: dict[str, str] = {
    "accounts": "CAST(account_id AS VARCHAR) AS account_id, segment, touch_model, industry, region",
    "subscriptions": (
        "CAST(account_id AS VARCHAR) AS account_id, CAST(subscription_id AS VARCHAR) AS subscription_id, plan, "
        "billing_period, CAST(start_date AS DATE) AS start_date, CAST(end_date AS DATE) AS end_date, "
        "CAST(mrr AS DOUBLE) AS mrr, CAST(seats AS DOUBLE) AS seats"
    ),
    "usage": (
        "CAST(account_id AS VARCHAR) AS account_id, CAST(date AS DATE) AS date, "
        "CAST(metric AS VARCHAR) AS metric, CAST(value AS DOUBLE) AS value"
    ),
    "support_tickets": (
        "CAST(account_id AS VARCHAR) AS account_id, CAST(created_at AS TIMESTAMP) AS created_at, "
        "CAST(resolved_at AS TIMESTAMP) AS resolved_at, priority, CAST(csat AS DOUBLE) AS csat"
    ),
    "nps_responses": (
        "CAST(account_id AS VARCHAR) AS account_id, CAST(response_id AS VARCHAR) AS response_id, "
        "CAST(responded_at AS TIMESTAMP) AS responded_at, CAST(score AS DOUBLE) AS score"
    ),
    "csm_activities": (
        "CAST(account_id AS VARCHAR) AS account_id, CAST(occurred_at AS TIMESTAMP) AS occurred_at, "
        "CAST(kind AS VARCHAR) AS kind"
    ),
    "contacts": (
        "CAST(account_id AS VARCHAR) AS account_id, role, CAST(start_date AS DATE) AS start_date, "
        "CAST(end_date AS DATE) AS end_date"
    ),
    "invoices": (
        "CAST(account_id AS VARCHAR) AS account_id, CAST(due_date AS DATE) AS due_date, "
        "CAST(paid_date AS DATE) AS paid_date"
    ),
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


def register_sources(
    con: duckdb.DuckDBPyConnection, source: Mapping[str, pd.DataFrame] | Path | str
) -> set[str]:
    """Expose the contract tables as typed views named after them; return the names present.

    Args:
        con: the connection.
        source: frames by table name (registered as DuckDB relations, not copied), or a folder of
            ``<table>.parquet`` files (read by DuckDB itself, out of core).

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
            if name in TABLES and frame is not None:
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


def _spine_keys(spine: pd.DataFrame) -> pd.DataFrame:
    for col in KEYS:
        if col not in spine.columns:
            raise ChurnmlError(f"spine: missing column {col!r}")
    if len(spine) == 0:
        raise ChurnmlError("spine: no rows (no account is active at the cutoffs)")
    to_cutoffs(spine["cutoff"].unique())
    if spine.duplicated(list(KEYS)).any():
        raise ChurnmlError("spine: duplicate (account_id, cutoff) rows")
    return pd.DataFrame(
        {
            "row_id": range(len(spine)),
            "account_id": spine["account_id"].astype(str).to_numpy(),
            "cutoff": pd.to_datetime(spine["cutoff"]).astype("datetime64[us]").to_numpy(),
        }
    )


def enabled_families(cfg: FeaturesConfig, present: set[str]) -> list[str]:
    """The configured families whose tables are present, in configuration order.

    Raises:
        ChurnmlError: on an unknown family name.
    """
    unknown = [f for f in cfg.families if f not in FEATURE_FAMILIES]
    if unknown:
        raise ChurnmlError(
            f"features.families: unknown {', '.join(unknown)} (known: {', '.join(FEATURE_FAMILIES)})"
        )
    out = []
    for family in dict.fromkeys(cfg.families):
        lacking = [t for t in fs.FAMILY_TABLES[family] if t not in present]
        if lacking:
            log.info("features: family %s skipped (no %s table)", family, ", ".join(lacking))
            continue
        out.append(family)
    return out


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


def family_steps(
    cfg: FeaturesConfig, csm_kinds: Mapping[str, str] | None = None, usage_start: str | None = None
) -> dict[str, list[SqlStep]]:
    """The SQL steps of every family that is not usage-derived, by family (usage steps need the metrics).

    Args:
        cfg: feature configuration.
        csm_kinds: CSM activity kind -> column token.
        usage_start: the first day of usage data (ISO), for the time to first value.
    """
    win = Windows.from_config(cfg)
    return {
        "account": [SqlStep("account_features", "account", fs.account_features_sql())],
        "contract": [
            SqlStep("contract_primary", "contract", fs.contract_primary_sql()),
            SqlStep("subscription_changes", "contract", fs.subscription_changes_sql()),
            SqlStep("contract_features", "contract", fs.contract_features_sql()),
        ],
        "adoption": [SqlStep("adoption_features", "adoption", fs.adoption_features_sql(win))],
        "lifecycle": [
            SqlStep(
                "lifecycle_features",
                "lifecycle",
                fs.lifecycle_features_sql(win, cfg.onboarding_days, usage_start),
            )
        ],
        "support": [SqlStep("support_features", "support", fs.support_features_sql())],
        "nps": [SqlStep("nps_features", "nps", fs.nps_features_sql())],
        "csm": [SqlStep("csm_features", "csm", fs.csm_features_sql(dict(csm_kinds or {})))],
        "contacts": [
            SqlStep("contacts_features", "contacts", fs.contacts_features_sql(cfg.sponsor_left_window_days))
        ],
        "invoices": [SqlStep("invoices_features", "invoices", fs.invoices_features_sql())],
    }


def all_steps(
    cfg: FeaturesConfig,
    metrics: Sequence[str] = EXAMPLE_METRICS,
    csm_kinds: Sequence[str] = EXAMPLE_CSM_KINDS,
) -> list[SqlStep]:
    """Every SQL definition, in execution order, for a given metric and kind list (for review and Spark)."""
    win = Windows.from_config(cfg)
    tokens = fs.column_tokens(list(metrics), "usage metric")
    keys = [m for m in tokens if m.startswith(cfg.key_feature_prefix)] or list(tokens)
    periods = fs.usage_periods(list(pd.date_range("2024-02-01", "2026-01-01", freq="MS")), win)
    steps = [
        SqlStep("contract_state", "contract", fs.contract_state_sql()),
        SqlStep("usage_agg", "usage", fs.usage_agg_sql(periods)),
        SqlStep("usage_metric_features", "usage", fs.usage_metric_sql(win, periods)),
        SqlStep("usage_account", "usage", fs.usage_account_sql(win, tokens, cfg.active_users_metric, keys)),
    ]
    kinds = fs.column_tokens(list(csm_kinds), "CSM activity kind")
    for family_list in family_steps(cfg, kinds, "2024-01-01").values():
        steps += family_list
    columns = {f: family_columns(f, cfg, kinds, tokens) for f in FEATURE_FAMILIES}
    steps.append(SqlStep("features", "all", fs.final_sql(columns)))
    return steps


def family_columns(
    family: str,
    cfg: FeaturesConfig,
    csm_kinds: Mapping[str, str] | None = None,
    metrics: Mapping[str, str] | None = None,
) -> list[str]:
    """The columns a family produces, in order (usage: for the given metric -> token map)."""
    win = Windows.from_config(cfg)
    t = win.trend
    if family == "usage":
        return fs.usage_feature_columns(win, dict(metrics or {}))
    kinds = list((csm_kinds or {}).values())
    fixed = {
        "account": ["account_segment", "account_touch_model", "account_industry", "account_region"],
        "adoption": [
            f"adoption_license_utilisation_{t}d",
            f"adoption_breadth_{t}d",
            f"adoption_active_days_{t}d",
        ],
        "lifecycle": [
            "lifecycle_tenure_days",
            "lifecycle_journey_stage",
            "lifecycle_time_to_first_value_days",
            "lifecycle_first_value_reached",
        ],
        "contract": [
            "contract_mrr",
            "contract_arr",
            "contract_seats",
            "contract_plan",
            "contract_billing_period",
            "contract_days_to_renewal",
            "contract_renewals_count",
            "contract_upgrades_count",
            "contract_downgrades_count",
            f"contract_mrr_change_{fs.CONTRACT_CHANGE_DAYS}d",
        ],
        "support": [
            *(f"support_tickets_count_{w}d" for w in fs.SUPPORT_WINDOWS),
            f"support_high_priority_count_{fs.SUPPORT_HIGH_WINDOW}d",
            f"support_resolution_hours_mean_{fs.SUPPORT_QUALITY_WINDOW}d",
            f"support_csat_mean_{fs.SUPPORT_QUALITY_WINDOW}d",
            "support_open_tickets_count",
        ],
        "nps": ["nps_score_latest", "nps_score_change", "nps_days_since_latest"],
        "csm": [
            f"csm_touches_count_{fs.CSM_WINDOW}d",
            *(f"csm_{k}_count_{fs.CSM_WINDOW}d" for k in kinds),
            "csm_days_since_last_touch",
        ],
        "contacts": [
            f"contacts_sponsor_left_{int(cfg.sponsor_left_window_days)}d",
            "contacts_days_since_sponsor_left",
            "contacts_champion_count",
        ],
        "invoices": [
            f"invoices_overdue_count_{fs.INVOICE_OVERDUE_WINDOW}d",
            f"invoices_days_late_mean_{fs.INVOICE_LATE_WINDOW}d",
        ],
    }
    return fixed[family]


def _tidy(frame: pd.DataFrame) -> pd.DataFrame:
    """The column contract, on the engine's own result (numbers arrive as DOUBLE).

    str ids and categoricals, datetime64[us] cutoff, float64 elsewhere.
    """
    frame["account_id"] = frame["account_id"].astype(str)
    frame["cutoff"] = pd.to_datetime(frame["cutoff"]).astype("datetime64[us]")
    for col in frame.columns[2:]:
        if col in CATEGORICAL:
            frame[col] = frame[col].astype("str")
        elif frame[col].dtype != "float64":
            frame[col] = pd.to_numeric(frame[col], errors="coerce").astype("float64")
    return frame


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
    if cfg.engine == "spark":
        from churnml.features.spark import build_features_spark, spark_session

        return build_features_spark(spark_session(), source, spine, cfg)
    if cfg.engine != "duckdb":
        raise ChurnmlError(f"features.engine {cfg.engine!r}: expected 'duckdb' or 'spark'")
    keys = _spine_keys(spine)
    temp_dir = tempfile.mkdtemp(prefix="churnml-duckdb-")
    try:
        con = connect(cfg, temp_dir)
        try:
            present = register_sources(con, source)
            return _build(con, present, keys, cfg)
        finally:
            con.close()
    finally:
        shutil.rmtree(temp_dir, ignore_errors=True)


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


# --------------------------------------------------------------------------------------------- catalogue


@dataclass(frozen=True)
class FeatureInfo:
    """What a feature name means: its family, the metric measured, the aggregation and the window."""

    name: str
    family: str
    metric: str
    agg: str
    window_days: int | None
    description: str

    @property
    def categorical(self) -> bool:
        """Whether the feature is a category (str) rather than a number."""
        return self.name in CATEGORICAL


def _words(metric: str) -> str:
    if metric.startswith("feature_"):
        return metric[len("feature_") :].replace("_", " ") + " (key feature)"
    return metric.replace("_", " ")


# (pattern, family, metric, agg, description template); {m} the metric words, {w} the window in days
_PATTERNS: list[tuple[str, str, str, str, str]] = [
    (
        r"usage_(?P<metric>.+)_sum_(?P<w>\d+)d",
        "usage",
        "",
        "sum",
        "Total {m} over the {w} days before the cutoff",
    ),
    (
        r"usage_(?P<metric>.+)_mean_(?P<w>\d+)d",
        "usage",
        "",
        "mean",
        "Daily average of {m} over the {w} days before the cutoff (days without use count as 0)",
    ),
    (
        r"usage_(?P<metric>.+)_trend_(?P<w>\d+)d",
        "usage",
        "",
        "trend",
        "Change of {m} in the last {w} days against the {w} days before (ratio minus 1; empty when "
        "the earlier period had none)",
    ),
    (
        r"usage_(?P<metric>.+)_zscore_(?P<w>\d+)d",
        "usage",
        "",
        "zscore",
        "{m} in the last {w} days against the account's own baseline weeks before that, in standard "
        "deviations (empty without enough history or when the baseline never varies)",
    ),
    (
        r"usage_(?P<metric>.+)_days_since_last",
        "usage",
        "",
        "days_since_last",
        "Days since the last day with any {m} (empty if never)",
    ),
    (
        r"adoption_license_utilisation_(?P<w>\d+)d",
        "adoption",
        "license_utilisation",
        "ratio",
        "Average daily active users over the last {w} days divided by the contracted seats",
    ),
    (
        r"adoption_breadth_(?P<w>\d+)d",
        "adoption",
        "breadth",
        "count",
        "Number of key features used in the last {w} days",
    ),
    (
        r"adoption_active_days_(?P<w>\d+)d",
        "adoption",
        "active_days",
        "count",
        "Days with any product usage in the last {w} days",
    ),
    (
        r"csm_touches_count_(?P<w>\d+)d",
        "csm",
        "touches",
        "count",
        "Customer-success touches (calls, emails, meetings...) in the last {w} days",
    ),
    (
        r"csm_(?P<metric>.+)_count_(?P<w>\d+)d",
        "csm",
        "",
        "count",
        "Customer-success activities of kind '{m}' in the last {w} days",
    ),
    (
        r"contacts_sponsor_left_(?P<w>\d+)d",
        "contacts",
        "sponsor_left",
        "flag",
        "1 if an executive sponsor or champion left in the last {w} days",
    ),
    (
        r"support_tickets_count_(?P<w>\d+)d",
        "support",
        "tickets",
        "count",
        "Support tickets opened in the last {w} days",
    ),
    (
        r"support_high_priority_count_(?P<w>\d+)d",
        "support",
        "high_priority_tickets",
        "count",
        "High or urgent support tickets opened in the last {w} days",
    ),
    (
        r"support_resolution_hours_mean_(?P<w>\d+)d",
        "support",
        "resolution_hours",
        "mean",
        "Average hours to resolve the tickets resolved in the last {w} days",
    ),
    (
        r"support_csat_mean_(?P<w>\d+)d",
        "support",
        "csat",
        "mean",
        "Average satisfaction (CSAT, 1-5) given on tickets resolved in the last {w} days",
    ),
    (
        r"contract_mrr_change_(?P<w>\d+)d",
        "contract",
        "mrr",
        "change",
        "Relative change of monthly recurring revenue against {w} days earlier",
    ),
    (
        r"invoices_overdue_count_(?P<w>\d+)d",
        "invoices",
        "overdue_invoices",
        "count",
        "Invoices due in the last {w} days that were paid late or are still unpaid",
    ),
    (
        r"invoices_days_late_mean_(?P<w>\d+)d",
        "invoices",
        "days_late",
        "mean",
        "Average days late of the invoices due in the last {w} days (unpaid ones count up to the cutoff)",
    ),
]

FEATURE_DOCS: dict[str, tuple[str, str, str]] = {
    # name: (metric, agg, description)
    "account_segment": ("segment", "category", "Customer segment (enterprise, mid-market, SMB)"),
    "account_touch_model": ("touch_model", "category", "How the account is served: high, low or tech touch"),
    "account_industry": ("industry", "category", "The account's industry"),
    "account_region": ("region", "category", "The account's region"),
    "lifecycle_tenure_days": ("tenure", "days", "Days since the account's first subscription started"),
    "lifecycle_journey_stage": (
        "journey_stage",
        "category",
        "Onboarding (young, or no key feature used yet), expansion (utilisation at 90% or more, or seats "
        "grew in 90 days) or adoption",
    ),
    "lifecycle_time_to_first_value_days": (
        "time_to_first_value",
        "days",
        "Days from the first subscription start to the first use of a key feature (empty if not yet)",
    ),
    "lifecycle_first_value_reached": ("first_value_reached", "flag", "1 once a key feature has been used"),
    "contract_mrr": ("mrr", "level", "Monthly recurring revenue of the running subscriptions"),
    "contract_arr": ("arr", "level", "Annual recurring revenue (12 x MRR)"),
    "contract_seats": ("seats", "level", "Seats of the running subscriptions"),
    "contract_plan": ("plan", "category", "Plan of the main running subscription"),
    "contract_billing_period": ("billing_period", "category", "Billing period of the main subscription"),
    "contract_days_to_renewal": (
        "days_to_renewal",
        "days",
        "Days until the main contract's scheduled term end (from its start and billing period)",
    ),
    "contract_renewals_count": ("renewals", "count", "Subscriptions so far that continued an earlier one"),
    "contract_upgrades_count": ("upgrades", "count", "Continuations at a higher MRR so far"),
    "contract_downgrades_count": ("downgrades", "count", "Continuations at a lower MRR so far"),
    "support_open_tickets_count": ("open_tickets", "count", "Support tickets open at the cutoff"),
    "nps_score_latest": ("nps_score", "latest", "The latest NPS answer (0-10)"),
    "nps_score_change": ("nps_score", "change", "Latest NPS answer minus the one before it"),
    "nps_days_since_latest": ("nps_score", "days_since", "Days since the latest NPS answer"),
    "csm_days_since_last_touch": ("touches", "days_since", "Days since the last customer-success touch"),
    "contacts_days_since_sponsor_left": (
        "sponsor_left",
        "days_since",
        "Days since an executive sponsor or champion last left (empty if none has)",
    ),
    "contacts_champion_count": ("champions", "count", "Sponsors and champions in place at the cutoff"),
}


def _family(name: str) -> str | None:
    return next((f for f in FEATURE_FAMILIES if name.startswith(f + "_")), None)


def parse_feature(name: str) -> FeatureInfo:
    """What a feature column means.

    Raises:
        ChurnmlError: when the name is not one the engine produces.
    """
    if name in FEATURE_DOCS:
        metric, agg, text = FEATURE_DOCS[name]
        return FeatureInfo(name, _family(name) or "", metric, agg, None, text)
    for pattern, family, metric, agg, template in _PATTERNS:
        m = re.fullmatch(pattern, name)
        if m:
            groups = m.groupdict()
            metric = groups.get("metric") or metric
            window = int(groups["w"]) if groups.get("w") else None
            text = template.format(m=_words(metric), w=window)
            return FeatureInfo(name, family, metric, agg, window, text[:1].upper() + text[1:])
    raise ChurnmlError(f"feature {name!r}: not a feature this engine produces")


def describe_feature(name: str) -> str:
    """The plain-language meaning of a feature column."""
    return parse_feature(name).description


def feature_families(columns: Sequence[str]) -> dict[str, str]:
    """Feature column -> family, for the feature columns among ``columns`` (keys and labels are left out)."""
    out = {}
    for col in columns:
        if col in KEYS:
            continue
        family = _family(col)
        if family is not None:
            out[col] = family
    return out


def feature_names(
    cfg: FeaturesConfig,
    metrics: Sequence[str] = EXAMPLE_METRICS,
    csm_kinds: Sequence[str] = EXAMPLE_CSM_KINDS,
) -> list[str]:
    """The feature columns the engine produces for the enabled families, given metrics and CSM kinds."""
    tokens = fs.column_tokens(list(metrics), "usage metric")
    kinds = fs.column_tokens(list(csm_kinds), "CSM activity kind")
    out = []
    for family in dict.fromkeys(cfg.families):
        if family not in FEATURE_FAMILIES:
            raise ChurnmlError(f"features.families: unknown {family}")
        out += family_columns(family, cfg, kinds, tokens)
    return out
