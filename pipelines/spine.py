"""Stage spine: one row per (account_id, cutoff) for every account active at each observation date."""

import logging

from churnml.config import load_config, repo_root
from churnml.contract.io import read_table, write_table
from churnml.dataset.spine import build_spine, training_cutoffs
from churnml.stage import run_stage

log = logging.getLogger("spine")


def main() -> None:
    cfg = load_config()
    root = repo_root()
    validated = root / cfg.paths.validated
    cutoffs = training_cutoffs(validated, cfg.spine)
    spine = build_spine(read_table(validated, "subscriptions"), cutoffs)
    write_table(spine, root / cfg.paths.spine, "spine")
    log.info(
        "%d rows over %d cutoffs (%s to %s)", len(spine), len(cutoffs), cutoffs[0].date(), cutoffs[-1].date()
    )


if __name__ == "__main__":
    run_stage(main)
