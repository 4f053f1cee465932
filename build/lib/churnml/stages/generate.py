"""Stage generate: the default data, a synthetic SaaS portfolio, with its ground truth apart."""

from __future__ import annotations

from pathlib import Path

from churnml.config import Config
from churnml.sources.simulate import generate as simulate_portfolio


def generate(cfg: Config, root: Path) -> str:
    """Write the simulator's contract tables to ``paths.raw`` and its ground truth to ``paths.truth``."""
    summary = simulate_portfolio(cfg.simulator, root / cfg.paths.raw, root / cfg.paths.truth)
    return f"wrote {summary.get('rows')}"
