"""Stage train@<target>: fit and calibrate the LightGBM model of one target, out of time."""

import argparse
import logging

from churnml.config import load_config, repo_root
from churnml.contract.io import read_parquet
from churnml.modeling.model import train_model
from churnml.names import TARGETS
from churnml.stage import run_stage

log = logging.getLogger("train")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--target", required=True, choices=TARGETS)
    target = parser.parse_args().target
    cfg = load_config()
    root = repo_root()
    features = read_parquet(root / cfg.paths.features)
    labels = read_parquet(root / cfg.paths.labels)
    model = train_model(features, labels, target, cfg.model, cfg.split, cfg.labels.horizon_days)
    model.save(root / cfg.paths.models / target)
    log.info("%s: %s", target, model.split)


if __name__ == "__main__":
    run_stage(main)
