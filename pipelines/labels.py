"""Stage labels: churn, expansion and contraction within the horizon after each cutoff, from contract history."""

import logging

from churnml.config import load_config, repo_root
from churnml.contract.io import read_parquet, read_table, write_table
from churnml.dataset.labels import build_labels
from churnml.dataset.spine import data_end
from churnml.stage import run_stage

log = logging.getLogger("labels")


def main() -> None:
    cfg = load_config()
    root = repo_root()
    validated = root / cfg.paths.validated
    spine = read_parquet(root / cfg.paths.spine)
    labels = build_labels(read_table(validated, "subscriptions"), spine, cfg.labels, data_end(validated))
    write_table(labels, root / cfg.paths.labels, "labels")
    log.info(
        "%d rows; positive rates: %s",
        len(labels),
        labels.drop(columns=["account_id", "cutoff"]).mean().round(4).to_dict(),
    )


if __name__ == "__main__":
    run_stage(main)
