"""Stage report: the static portfolio report for CSMs (``paths.reports``/index.html), self-contained and offline.

What DVC runs; the work is :func:`churnml.stages.report.report`.
"""

import logging

import _require  # noqa: F401  (first: one line when churnml cannot be imported)

from churnml.config import load_config, repo_root
from churnml.stages import run_stage
from churnml.stages.report import report

log = logging.getLogger("report")


def main() -> None:
    log.info("%s", report(load_config(), repo_root()))


if __name__ == "__main__":
    run_stage(main)
