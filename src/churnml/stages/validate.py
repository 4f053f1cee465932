"""Stage validate: the input tables checked against the contract; bad rows fail the run or are quarantined."""

from __future__ import annotations

import json
from pathlib import Path

from churnml.config import Config
from churnml.contract.io import read_folder, write_folder
from churnml.contract.validate import DateBounds, validate_tables


def validate(cfg: Config, root: Path) -> str:
    """Validate ``data.input_dir`` into ``paths.validated``; bad rows (and their counts) to ``paths.quarantine``."""
    bounds = DateBounds.of(cfg.data.min_date, cfg.data.max_date)
    result = validate_tables(
        read_folder(root / cfg.data.input_dir), quarantine=cfg.data.quarantine, bounds=bounds
    )
    write_folder(result.tables, root / cfg.paths.validated)
    quarantine = root / cfg.paths.quarantine
    write_folder(result.quarantined, quarantine)
    (quarantine / "counts.json").write_text(json.dumps(result.counts(), indent=2) + "\n")
    return f"rows per table: {result.counts()}"
