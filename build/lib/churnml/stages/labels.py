"""Stage labels: churn, expansion and contraction within the horizon after each cutoff, from contract history."""

from __future__ import annotations

from pathlib import Path

from churnml.config import Config
from churnml.contract.io import read_output, read_table, write_output
from churnml.dataset.labels import build_labels
from churnml.dataset.spine import data_end


def labels(cfg: Config, root: Path) -> str:
    """Write the labels (``paths.labels``) of every spine row, as known at the data end."""
    validated = root / cfg.paths.validated
    spine = read_output(root / cfg.paths.spine, "spine")
    table = build_labels(read_table(validated, "subscriptions"), spine, cfg.labels, data_end(validated))
    write_output(table, root / cfg.paths.labels, "labels")
    rates = table.drop(columns=["account_id", "cutoff"]).mean().round(4).to_dict()
    return f"{len(table)} rows; positive rates: {rates}"
