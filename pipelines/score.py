"""Stage score: every active account at the as-of date scored by the champion models, written to the warehouse.

What DVC runs; the work is :func:`churnml.stages.score.score`.
"""

import logging

import _require  # noqa: F401  (first: one line when churnml cannot be imported)

from churnml.config import load_config, repo_root
from churnml.stages import run_stage
from churnml.stages.score import score

log = logging.getLogger("score")


def main() -> None:
    log.info("%s", score(load_config(), repo_root()))


if __name__ == "__main__":
    run_stage(main)
