"""What the report reads besides the scoring tables: KPIs and usage from the contract, the monitor's outputs."""

from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pandas as pd

from churnml.config import ReportConfig
from churnml.contract.io import read_table
from churnml.errors import ChurnmlError
from churnml.report.kpis import portfolio_kpis, weekly_usage
from churnml.scoring.monitor import monitor_section


@dataclass
class PortfolioInputs:
    """The contract-derived parts of the report, all as of one day."""

    kpis: pd.DataFrame
    usage: pd.DataFrame
    accounts: pd.DataFrame


def portfolio_inputs(
    validated: Path, as_of: pd.Timestamp, *, grace_days: int, usage_metric: str, cfg: ReportConfig
) -> PortfolioInputs:
    """Monthly KPIs (the complete months before ``as_of``), weekly usage before it, and the accounts table.

    Args:
        validated: the folder written by the validate stage.
        as_of: the report's as-of day (:func:`churnml.dataset.spine.as_of_day`).
        grace_days: the labels' grace period (a renewal within it is not churn).
        usage_metric: the daily usage metric charted per week.
        cfg: the report section (how many months of KPIs, weeks of usage).
    """
    subscriptions = read_table(validated, "subscriptions")
    usage, accounts = usage_weeks(Path(validated) / "usage.parquet", as_of, usage_metric, cfg.usage_weeks)
    return PortfolioInputs(
        kpis=portfolio_kpis(subscriptions, cfg.kpi_months, as_of=as_of, grace_days=grace_days),
        usage=weekly_usage(usage, as_of=as_of, metric=usage_metric, weeks=cfg.usage_weeks, accounts=accounts),
        accounts=read_table(validated, "accounts"),
    )


def usage_weeks(path: Path, as_of: pd.Timestamp, metric: str, weeks: int) -> tuple[pd.DataFrame, list[str]]:
    """(the metric's usage rows of the ``weeks`` weeks before ``as_of``, every account with the metric).

    Read by DuckDB with the filters pushed down to the validated Parquet: the chart needs half a year of one
    metric, not the whole history (300 M rows for 100,000 accounts) in pandas.
    """
    import duckdb

    if not Path(path).is_file():
        raise ChurnmlError(f"{path}: no such file (table usage)")
    cutoff = pd.Timestamp(as_of).normalize()
    first = cutoff - pd.Timedelta(days=7 * weeks)
    src = "read_parquet(?)"
    con = duckdb.connect()
    try:
        rows = con.execute(
            f"SELECT account_id, CAST(date AS TIMESTAMP) AS date, metric, value FROM {src} "
            "WHERE metric = ? AND date >= ? AND date < ?",
            [str(path), metric, first.to_pydatetime(), cutoff.to_pydatetime()],
        ).df()
        accounts = [
            r[0]
            for r in con.execute(
                f"SELECT DISTINCT CAST(account_id AS VARCHAR) FROM {src} WHERE metric = ?",
                [str(path), metric],
            ).fetchall()
        ]
    finally:
        con.close()
    return rows, sorted(accounts)


def check_scores_as_of(scores: pd.DataFrame, as_of: pd.Timestamp) -> None:
    """Refuse scores of another day than the report's: the KPIs and the scores must describe one day."""
    days = pd.to_datetime(scores["as_of"]).dt.normalize().unique()
    if len(days) != 1 or pd.Timestamp(days[0]) != pd.Timestamp(as_of):
        shown = ", ".join(str(pd.Timestamp(d).date()) for d in days[:3]) or "none"
        raise ChurnmlError(
            f"report: the scores are as of {shown}, the report as of {pd.Timestamp(as_of).date()}: rerun the score stage"
        )


def monitor_performance(metrics_file: Path, plots_dir: Path) -> dict[str, Any] | None:
    """The monitor stage's realised performance for the report, or None before its first run."""
    perf_file = Path(plots_dir) / "performance.csv"
    if not (perf_file.is_file() and Path(metrics_file).is_file()):
        return None
    document = json.loads(Path(metrics_file).read_text(encoding="utf-8"))
    return monitor_section(pd.read_csv(perf_file), document)
