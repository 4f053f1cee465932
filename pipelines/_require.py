"""Imported first by every stage script: when the `python` that DVC found on PATH cannot import churnml (the
project's environment not activated), the stage stops with one line saying so instead of a traceback."""

import importlib.util
import sys

if importlib.util.find_spec("churnml") is None:
    sys.exit(
        f"error: this python ({sys.executable}) cannot import churnml: activate the project's environment "
        "(source .venv/bin/activate) or run the pipeline with `make run`"
    )
