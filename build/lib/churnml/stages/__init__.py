"""The pipeline's stages, one module and one function per stage: ``<stage>(cfg, root[, target]) -> summary``.

Each stage function reads its inputs (paths from ``cfg.paths``, persisted tables through
:func:`churnml.contract.io.read_output` / :func:`~churnml.contract.io.write_output`), calls the package and
writes its outputs; it returns a one-line summary. ``pipelines/<stage>.py`` (what DVC runs) and the ``churnml``
command line call the same functions. A stage lives in its own module so that its DVC dependencies are exactly
the modules it imports (tests/test_dvc_deps.py): this package's ``__init__`` imports nothing of churnml's but
:mod:`churnml.errors`.

This is the top layer, beside the CLI: it may import every subpackage; nothing but pipelines/ and the CLI
imports it.
"""

from __future__ import annotations

import argparse
import logging
import os
import sys
from collections.abc import Callable

from churnml.errors import ChurnmlError, Interrupted, Terminated, interruption, sigterm_raises


def quiet_telemetry() -> None:
    """MLflow and DVC phone home by default; nothing leaves this machine."""
    os.environ.setdefault("MLFLOW_DISABLE_TELEMETRY", "true")
    os.environ.setdefault("DO_NOT_TRACK", "1")
    os.environ.setdefault("DVC_NO_ANALYTICS", "1")


def run_stage(main: Callable[[], None]) -> None:
    """Call a stage script's ``main`` with telemetry off and logging on stderr; ChurnmlError -> one line, exit 1."""
    quiet_telemetry()
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(name)s: %(message)s", stream=sys.stderr)
    with sigterm_raises():  # a scheduler's SIGTERM unwinds like Ctrl-C: writes roll back, runs are recorded
        try:
            main()
        except ChurnmlError as exc:
            print(f"error: {exc}", file=sys.stderr)
            raise SystemExit(1) from None
        except Interrupted as exc:
            print(f"error: {exc}", file=sys.stderr)
            raise SystemExit(exc.exit_code) from None
        except (KeyboardInterrupt, Terminated) as exc:
            name, code = interruption(exc) or ("SIGINT", 130)
            print(f"interrupted by {name}", file=sys.stderr)
            raise SystemExit(code) from None


def target_argument(description: str | None) -> str:
    """The ``--target`` of a per-target stage script (train, evaluate), from the command line."""
    parser = argparse.ArgumentParser(description=description)
    parser.add_argument("--target", required=True)
    return parser.parse_args().target


def check_target(targets: list[str], target: str) -> None:
    """Refuse a target the configuration does not train."""
    if target not in targets:
        raise ChurnmlError(f"unknown target {target!r}: expected one of {', '.join(targets)}")
