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
    return PortfolioInputs(
        kpis=portfolio_kpis(subscriptions, cfg.kpi_months, as_of=as_of, grace_days=grace_days),
        usage=weekly_usage(
            read_table(validated, "usage"), as_of=as_of, metric=usage_metric, weeks=cfg.usage_weeks
        ),
        accounts=read_table(validated, "accounts"),
    )


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
