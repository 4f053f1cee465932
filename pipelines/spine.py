"""Stage spine: one row per (account_id, cutoff) for every account active at each observation date.

What DVC runs; the work is :func:`churnml.stages.spine.spine`.
"""

import logging

import _require  # noqa: F401  (first: one line when churnml cannot be imported)

from churnml.config import load_config, repo_root
from churnml.stages import run_stage
from churnml.stages.spine import spine

log = logging.getLogger("spine")


def main() -> None:
    log.info("%s", spine(load_config(), repo_root()))


if __name__ == "__main__":
    run_stage(main)
