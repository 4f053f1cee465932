"""Stage monitor: realised performance of every score in the warehouse once its labels matured, retrain advice.

Writes the score_performance table, metrics/monitor.json and plots/monitor/*.csv, and logs an MLflow run; the
advice is reported, never acted on. Schedulers call the same function through `churnml monitor`.
"""

import logging

from churnml.config import load_config, repo_root
from churnml.scoring.batch import load_tables
from churnml.scoring.monitor import run_monitor
from churnml.stage import run_stage

log = logging.getLogger("monitor")


def main() -> None:
    cfg = load_config()
    root = repo_root()
    tables = load_tables(root / cfg.paths.validated, None)
    result = run_monitor(tables, cfg, root=root)
    counts = result.document["as_of_dates"]
    log.info(
        "monitored %d as-of date(s), %d with matured labels; retrain recommended: %s",
        counts["scored"],
        counts["matured"],
        result.retrain_recommended,
    )


if __name__ == "__main__":
    run_stage(main)
