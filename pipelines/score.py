"""Stage score: every active account at the as-of date scored by the champion models, written to the warehouse.

Schedulers call the same function through `churnml score --as-of DATE [--data DIR | --source-url URL]`.
"""

import logging

from churnml.config import load_config, repo_root
from churnml.contract.io import write_parquet
from churnml.scoring.batch import load_tables, score_accounts
from churnml.stage import run_stage

log = logging.getLogger("score")


def main() -> None:
    cfg = load_config()
    root = repo_root()
    tables = load_tables(root / cfg.paths.validated, None)
    result = score_accounts(tables, cfg, as_of=cfg.scoring.as_of or None, root=root)
    write_parquet(result.scores, root / cfg.paths.scores)
    log.info("scored %d accounts as of %s with %s", len(result.scores), result.as_of.date(), result.versions)


if __name__ == "__main__":
    run_stage(main)
