"""Stage check_params: validate params.yaml before any other stage runs (or deletes an output).

What DVC runs; the work is :func:`churnml.stages.check_params.check_params`.
"""

import logging

import _require  # noqa: F401  (first: one line when churnml cannot be imported)

from churnml.config import load_config, repo_root
from churnml.stages import run_stage
from churnml.stages.check_params import check_params

log = logging.getLogger("check_params")


def main() -> None:
    log.info("%s", check_params(load_config(), repo_root()))


if __name__ == "__main__":
    run_stage(main)
