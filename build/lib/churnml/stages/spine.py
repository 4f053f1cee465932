"""Stage spine: one row per (account_id, cutoff) for every account active at each observation date."""

from __future__ import annotations

from pathlib import Path

from churnml.config import Config
from churnml.contract.io import read_table, write_output
from churnml.dataset.spine import build_spine, training_cutoffs


def spine(cfg: Config, root: Path) -> str:
    """Write the training spine (``paths.spine``) of the validated tables."""
    validated = root / cfg.paths.validated
    cutoffs = training_cutoffs(validated, cfg.spine)
    rows = build_spine(read_table(validated, "subscriptions"), cutoffs)
    write_output(rows, root / cfg.paths.spine, "spine")
    return f"{len(rows)} rows over {len(cutoffs)} cutoffs ({cutoffs[0].date()} to {cutoffs[-1].date()})"
