"""Stage check_params: a plain `dvc repro` after an edit under conf/ refuses until `make params`.

What DVC runs; the check is :func:`churnml.config.load_config`, the stage :func:`churnml.stages.check_params.check_params`.
"""

import logging

from churnml.config import load_config, repo_root
from churnml.stages import run_stage
from churnml.stages.check_params import check_params

log = logging.getLogger("check_params")


def main() -> None:
    log.info("%s", check_params(load_config(), repo_root()))


if __name__ == "__main__":
    run_stage(main)
