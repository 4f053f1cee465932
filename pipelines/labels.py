"""Stage labels: churn, expansion and contraction within the horizon after each cutoff, from contract history.

What DVC runs; the work is :func:`churnml.stages.labels.labels`.
"""

import logging

import _require  # noqa: F401  (first: one line when churnml cannot be imported)

from churnml.config import load_config, repo_root
from churnml.stages import run_stage
from churnml.stages.labels import labels

log = logging.getLogger("labels")


def main() -> None:
    log.info("%s", labels(load_config(), repo_root()))


if __name__ == "__main__":
    run_stage(main)
