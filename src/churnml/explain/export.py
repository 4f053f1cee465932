"""The explanations export: the strongest drivers per account and target, as a table and as CSV."""

from __future__ import annotations

from pathlib import Path

import pandas as pd

TOP_FEATURES = 10  # drivers kept per account and target in the export


def write_csv(frame: pd.DataFrame, path: Path) -> None:
    """Write a frame as CSV atomically (a crash never leaves half a file behind)."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(f".{path.name}.tmp")
    frame.to_csv(tmp, index=False)
    tmp.replace(path)
