"""Stage build_features: point-in-time features for every spine row, computed by the embedded engine."""

import logging

from churnml.config import load_config, repo_root
from churnml.contract.io import read_parquet, write_table
from churnml.features.engine import build_features
from churnml.stage import run_stage

log = logging.getLogger("build_features")


def main() -> None:
    cfg = load_config()
    root = repo_root()
    spine = read_parquet(root / cfg.paths.spine)
    features = build_features(root / cfg.paths.validated, spine, cfg.features)
    write_table(features, root / cfg.paths.features, "features")
    log.info("%d rows x %d features", len(features), features.shape[1] - 2)


if __name__ == "__main__":
    run_stage(main)
