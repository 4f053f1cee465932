"""Stage explain: SHAP drivers and plain-word reasons per account at the as-of date, and the global view.

What DVC runs; the work is :func:`churnml.stages.explain.explain`.
"""

import logging

import _require  # noqa: F401  (first: one line when churnml cannot be imported)

from churnml.config import load_config, repo_root
from churnml.stages import run_stage
from churnml.stages.explain import explain

log = logging.getLogger("explain")


def main() -> None:
    log.info("%s", explain(load_config(), repo_root()))


if __name__ == "__main__":
    run_stage(main)
