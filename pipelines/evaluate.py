"""Stage evaluate@<target>: metrics against baselines (and the oracle on simulator data), DVC files, MLflow run.

Metrics, plots and the MLflow run (with registration and the champion decision) come from one evaluation
computed here, so `dvc exp run -S evaluation.*` re-evaluates without retraining.
"""

import argparse
import json
import logging

from churnml.config import load_config, repo_root
from churnml.contract.io import read_parquet
from churnml.modeling.metrics import write_dvc_outputs
from churnml.modeling.model import TrainedModel, evaluate_model
from churnml.modeling.tracking import data_version, log_training_run
from churnml.names import TARGETS
from churnml.stage import run_stage

log = logging.getLogger("evaluate")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--target", required=True, choices=TARGETS)
    target = parser.parse_args().target
    cfg = load_config()
    root = repo_root()
    model = TrainedModel.load(root / cfg.paths.models / target)
    features = read_parquet(root / cfg.paths.features)
    labels = read_parquet(root / cfg.paths.labels)
    # the oracle exists only for simulator data; a stale truth folder must never meet real data
    truth = (
        read_parquet(root / cfg.paths.truth / "monthly.parquet") if cfg.data.source == "simulator" else None
    )
    evaluation = evaluate_model(model, features, labels, cfg.evaluation, truth=truth)
    write_dvc_outputs(
        evaluation, root / cfg.paths.metrics / f"{target}.json", root / cfg.paths.plots / target
    )
    run_id, version = log_training_run(
        model,
        evaluation,
        cfg,
        data_version(root / cfg.paths.features, root),
        evaluation_cfg=cfg.evaluation,
        tracking=cfg.tracking,
        root=root,
        test_features=features,
    )
    # the registration is a side effect DVC cannot see: this record is the stage's output for it, so a
    # fresh clone (metrics in git, registry empty) re-runs evaluate before scoring asks for the champion
    record = root / cfg.paths.models / "registry" / f"{target}.json"
    record.parent.mkdir(parents=True, exist_ok=True)
    record.write_text(json.dumps({"target": target, "run_id": run_id, "version": version}, indent=2) + "\n")
    log.info("%s: MLflow run %s, registered version %s", target, run_id, version)


if __name__ == "__main__":
    run_stage(main)
