"""Stage evaluate@<target>: metrics against baselines (and the oracle on simulator data), DVC files, MLflow run.

What DVC runs; the work is :func:`churnml.stages.evaluate.evaluate`.
"""

import logging

import _require  # noqa: F401  (first: one line when churnml cannot be imported)

from churnml.config import load_config, repo_root
from churnml.stages import run_stage, target_argument
from churnml.stages.evaluate import evaluate

log = logging.getLogger("evaluate")


def main() -> None:
    target = target_argument(__doc__)
    log.info("%s", evaluate(load_config(), repo_root(), target))


if __name__ == "__main__":
    run_stage(main)
