"""Stage report: the static portfolio report for CSMs (reports/index.html), self-contained and offline."""

import json
import logging

import pandas as pd

from churnml.config import load_config, repo_root
from churnml.contract.io import read_parquet, read_table
from churnml.dataset.spine import data_end
from churnml.report.kpis import portfolio_kpis, weekly_usage
from churnml.report.portfolio import build_report
from churnml.scoring.monitor import monitor_section
from churnml.stage import run_stage

log = logging.getLogger("report")


def main() -> None:
    cfg = load_config()
    root = repo_root()
    validated = root / cfg.paths.validated
    scores = read_parquet(root / cfg.paths.scores)
    as_of = scores["as_of"].max()
    kpis = portfolio_kpis(
        read_table(validated, "subscriptions"),
        24,
        as_of=data_end(validated),
        grace_days=cfg.labels.grace_days,
    )
    usage = weekly_usage(read_table(validated, "usage"), as_of=as_of, metric=cfg.features.active_users_metric)
    # the monitor stage's outputs: realised performance of past scores (absent before its first run)
    perf_file = root / cfg.paths.plots / "monitor" / "performance.csv"
    doc_file = root / cfg.paths.metrics / "monitor.json"
    performance = None
    if perf_file.is_file() and doc_file.is_file():
        document = json.loads(doc_file.read_text(encoding="utf-8"))
        performance = monitor_section(pd.read_csv(perf_file), document)
    path = build_report(
        scores,
        read_parquet(root / cfg.paths.reasons),
        usage,
        kpis,
        root / cfg.paths.reports,
        cfg.scoring.tiers,
        accounts=read_table(validated, "accounts"),
        features=read_parquet(root / cfg.paths.scoring_features),
        performance=performance,
    )
    log.info("wrote %s (%d accounts)", path, len(scores))


if __name__ == "__main__":
    run_stage(main)
