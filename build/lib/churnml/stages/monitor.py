"""Stage monitor: realised performance of every score in the warehouse once its labels matured, retrain advice.

Writes the score_performance table, ``paths.monitor_metrics`` and ``paths.monitor_plots``, and logs an MLflow
run; the advice is reported, never acted on. Schedulers call the same package function through `churnml monitor`.
"""

from __future__ import annotations

from pathlib import Path

from churnml.config import Config
from churnml.scoring.batch import load_tables
from churnml.scoring.monitor import run_monitor


def monitor(cfg: Config, root: Path) -> str:
    """Monitor the warehouse's scores against the validated tables."""
    result = run_monitor(load_tables(root / cfg.paths.validated, None, cfg.data), cfg, root=root)
    counts = result.document["as_of_dates"]
    return (
        f"monitored {counts['scored']} as-of date(s), {counts['matured']} with matured labels; "
        f"retrain recommended: {result.retrain_recommended}"
    )
