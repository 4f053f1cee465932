"""Running a pipeline stage script: config loaded once, expected failures as one line and a non-zero exit."""

from __future__ import annotations

import logging
import os
import sys
from collections.abc import Callable

from churnml.errors import ChurnmlError


def run_stage(main: Callable[[], None]) -> None:
    """Call a stage's ``main`` with telemetry off and logging on stderr; ChurnmlError -> one line, exit 1."""
    os.environ.setdefault("MLFLOW_DISABLE_TELEMETRY", "true")
    os.environ.setdefault("DO_NOT_TRACK", "1")
    os.environ.setdefault("DVC_NO_ANALYTICS", "1")
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(name)s: %(message)s", stream=sys.stderr)
    try:
        main()
    except ChurnmlError as exc:
        print(f"error: {exc}", file=sys.stderr)
        raise SystemExit(1) from None
