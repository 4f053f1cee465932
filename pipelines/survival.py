"""Stage survival: time to churn per account, its out-of-time evaluation and the as-of curves.

What DVC runs; the work is :func:`churnml.stages.survival.survival`.
"""

import logging

import _require  # noqa: F401  (first: one line when churnml cannot be imported)

from churnml.config import load_config, repo_root
from churnml.stages import run_stage
from churnml.stages.survival import survival

log = logging.getLogger("survival")


def main() -> None:
    log.info("%s", survival(load_config(), repo_root()))


if __name__ == "__main__":
    run_stage(main)
