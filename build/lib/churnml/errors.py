"""The one exception type for expected failures, and the interruptions (SIGINT, SIGTERM) a run records."""

from __future__ import annotations

import signal
import threading
from collections.abc import Iterator
from contextlib import contextmanager


class ChurnmlError(Exception):
    """An expected failure (bad input, missing file, stale parameters): shown to the user as one line."""


class Terminated(BaseException):
    """SIGTERM arrived (a scheduler's timeout, ``kill``): unwinds like KeyboardInterrupt, so writers roll back."""


class Interrupted(BaseException):
    """A run was interrupted and what it had started was recorded; the message is one line for the user.

    Attributes:
        exit_code: 130 for SIGINT, 143 for SIGTERM (the shell's 128 + signal number).
    """

    def __init__(self, message: str, exit_code: int):
        super().__init__(message)
        self.exit_code = exit_code


def interruption(exc: BaseException) -> tuple[str, int] | None:
    """(signal name, exit code) when ``exc`` is an interruption, else None."""
    if isinstance(exc, Terminated):
        return "SIGTERM", 143
    if isinstance(exc, KeyboardInterrupt):
        return "SIGINT", 130
    if isinstance(exc, Interrupted):
        return "signal", exc.exit_code
    return None


@contextmanager
def sigterm_raises() -> Iterator[None]:
    """Within the block, SIGTERM raises :class:`Terminated` in the main thread (once: a second is ignored
    while the first unwinds, so the run's failure is recorded); the previous handler is restored after."""
    if threading.current_thread() is not threading.main_thread():
        yield
        return

    def handler(signum, frame):  # noqa: ARG001 - signal handler signature
        signal.signal(signal.SIGTERM, signal.SIG_IGN)
        raise Terminated("terminated by SIGTERM")

    previous = signal.signal(signal.SIGTERM, handler)
    try:
        yield
    finally:
        signal.signal(signal.SIGTERM, previous)
