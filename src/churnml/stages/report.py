"""Stage report: the static portfolio report for CSMs (``paths.reports``/index.html), self-contained and offline."""

from __future__ import annotations

from pathlib import Path

from churnml.config import Config
from churnml.contract.io import read_output
from churnml.dataset.spine import as_of_day, data_end
from churnml.report.inputs import check_scores_as_of, monitor_performance, portfolio_inputs
from churnml.report.portfolio import build_report


def report(cfg: Config, root: Path) -> str:
    """Write the report of the scores, reasons and features of the as-of day, with KPIs and monitoring."""
    paths = cfg.paths
    validated = root / paths.validated
    as_of = as_of_day(cfg.scoring.as_of, data_end(validated))
    scores = read_output(root / paths.scores, "scores")
    check_scores_as_of(scores, as_of)
    portfolio = portfolio_inputs(
        validated,
        as_of,
        grace_days=cfg.labels.grace_days,
        usage_metric=cfg.features.active_users_metric,
        cfg=cfg.report,
    )
    path = build_report(
        scores,
        read_output(root / paths.reasons, "reasons"),
        portfolio.usage,
        portfolio.kpis,
        root / paths.reports,
        cfg.scoring.tiers,
        accounts=portfolio.accounts,
        features=read_output(root / paths.scoring_features, "scoring_features"),
        performance=monitor_performance(root / paths.monitor_metrics, root / paths.monitor_plots),
    )
    return f"wrote {path} ({len(scores)} accounts)"
