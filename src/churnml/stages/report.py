"""Stage report: the static portfolio report for CSMs (``paths.reports``/index.html), self-contained and offline,
with the revenue forecast (forecast.html) and the right-customer analysis (customers.html) beside it."""

from __future__ import annotations

from pathlib import Path

import pandas as pd

from churnml.config import Config
from churnml.contract.io import read_document, read_output
from churnml.dataset.spine import as_of_day, data_end
from churnml.modeling.registry import load_champion
from churnml.report.inputs import check_scores_as_of, monitor_performance, portfolio_inputs
from churnml.report.portfolio import VERSION_COLUMNS, build_report
from churnml.report.survival_pages import read_survival_report
from churnml.scoring.calls import changes_since, previous_scores
from churnml.scoring.tiers import TierDefinition
from churnml.warehouse.store import Warehouse


def report(cfg: Config, root: Path) -> str:
    """Write the report of the scores, reasons and features of the as-of day, with KPIs and monitoring, this
    week's call list, the tiers used, and the changes since the previous scoring in the warehouse."""
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
    definition = TierDefinition.from_dict(read_document(root / paths.tiers, "tiers"))
    order = {tier: i for i, (tier, _) in enumerate(definition.ordered())}
    with Warehouse.from_config(cfg.warehouse, root=root) as warehouse:
        history = warehouse.read_scores()
    # the warehouse keeps every scoring: the latest one before this as-of is "last week"
    previous = previous_scores(history, pd.Timestamp(as_of))
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
        definition=definition,
        calls=read_output(root / paths.call_list, "call_list"),
        changes=changes_since(scores, previous, order),
        renewal_window_days=cfg.scoring.calls.renewal_window_days,
        # the forecast and right-customer pages: the survival stage's outputs of the same as-of
        survival=read_survival_report(
            root / paths.revenue_forecast, root / paths.survival_metrics, root / paths.survival_plots
        ),
        selections=_selections(cfg, root, scores),
    )
    return f"wrote {path} ({len(scores)} accounts)"


def _selections(cfg: Config, root: Path, scores: pd.DataFrame) -> dict[str, dict]:
    """Per target, how the registered version its scores name was chosen (``model.info["selection"]``)."""
    out = {}
    for target, column in VERSION_COLUMNS.items():
        if target in cfg.model.targets and column in scores.columns and scores[column].nunique() == 1:
            model, _ = load_champion(target, str(scores[column].iloc[0]), root=root, cfg=cfg.tracking)
            out[target] = model.info.get("selection")
    return out
