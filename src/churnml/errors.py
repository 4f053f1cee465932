"""The one exception type for expected failures: the CLI prints it as one line and exits non-zero."""


class ChurnmlError(Exception):
    """An expected failure (bad input, missing file, stale parameters): shown to the user as one line."""
