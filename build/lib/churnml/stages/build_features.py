"""Stage build_features: point-in-time features for every spine row, computed by the embedded engine."""

from __future__ import annotations

from pathlib import Path

from churnml.config import Config
from churnml.contract.io import read_output, write_output
from churnml.features.engine import build_features as compute_features


def build_features(cfg: Config, root: Path) -> str:
    """Write the features (``paths.features``) of every spine row from the validated tables."""
    spine = read_output(root / cfg.paths.spine, "spine")
    features = compute_features(root / cfg.paths.validated, spine, cfg.features)
    write_output(features, root / cfg.paths.features, "features")
    return f"{len(features)} rows x {features.shape[1] - 2} features"
