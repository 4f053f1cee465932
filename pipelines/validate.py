"""Stage validate: the input tables checked against the contract; bad rows fail the run or are quarantined.

What DVC runs; the work is :func:`churnml.stages.validate.validate`.
"""

import logging

import _require  # noqa: F401  (first: one line when churnml cannot be imported)

from churnml.config import load_config, repo_root
from churnml.stages import run_stage
from churnml.stages.validate import validate

log = logging.getLogger("validate")


def main() -> None:
    log.info("%s", validate(load_config(), repo_root()))


if __name__ == "__main__":
    run_stage(main)
