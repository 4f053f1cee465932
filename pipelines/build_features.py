"""Stage build_features: point-in-time features for every spine row, computed by the embedded engine.

What DVC runs; the work is :func:`churnml.stages.build_features.build_features`.
"""

import logging

import _require  # noqa: F401  (first: one line when churnml cannot be imported)

from churnml.config import load_config, repo_root
from churnml.stages import run_stage
from churnml.stages.build_features import build_features

log = logging.getLogger("build_features")


def main() -> None:
    log.info("%s", build_features(load_config(), repo_root()))


if __name__ == "__main__":
    run_stage(main)
