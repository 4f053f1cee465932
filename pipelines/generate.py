"""Stage generate: the default data, a synthetic SaaS portfolio, with its ground truth apart.

What DVC runs; the work is :func:`churnml.stages.generate.generate`.
"""

import logging

import _require  # noqa: F401  (first: one line when churnml cannot be imported)

from churnml.config import load_config, repo_root
from churnml.stages import run_stage
from churnml.stages.generate import generate

log = logging.getLogger("generate")


def main() -> None:
    log.info("%s", generate(load_config(), repo_root()))


if __name__ == "__main__":
    run_stage(main)
