"""Stage train@<target>: fit and calibrate the LightGBM model of one target, out of time."""

from __future__ import annotations

from pathlib import Path

from churnml.config import Config
from churnml.contract.io import read_output
from churnml.modeling.model import train_model
from churnml.stages import check_target


def train(cfg: Config, root: Path, target: str) -> str:
    """Fit one target's model on the features and labels; save it to ``paths.model(target)``."""
    check_target(cfg.model.targets, target)
    features = read_output(root / cfg.paths.features, "features")
    labels = read_output(root / cfg.paths.labels, "labels")
    model = train_model(features, labels, target, cfg.model, cfg.split, cfg.labels.horizon_days)
    model.save(root / cfg.paths.model(target))
    return f"{target}: {model.split}"
