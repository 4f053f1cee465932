"""Stage monitor: realised performance of every score in the warehouse once its labels matured, retrain advice.

What DVC runs; the work is :func:`churnml.stages.monitor.monitor`.
"""

import logging

import _require  # noqa: F401  (first: one line when churnml cannot be imported)

from churnml.config import load_config, repo_root
from churnml.stages import run_stage
from churnml.stages.monitor import monitor

log = logging.getLogger("monitor")


def main() -> None:
    log.info("%s", monitor(load_config(), repo_root()))


if __name__ == "__main__":
    run_stage(main)
