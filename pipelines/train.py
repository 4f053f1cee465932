"""Stage train@<target>: fit and calibrate the LightGBM model of one target, out of time.

What DVC runs; the work is :func:`churnml.stages.train.train`.
"""

import logging

import _require  # noqa: F401  (first: one line when churnml cannot be imported)

from churnml.config import load_config, repo_root
from churnml.stages import run_stage, target_argument
from churnml.stages.train import train

log = logging.getLogger("train")


def main() -> None:
    target = target_argument(__doc__)
    log.info("%s", train(load_config(), repo_root(), target))


if __name__ == "__main__":
    run_stage(main)
