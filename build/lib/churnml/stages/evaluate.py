"""Stage evaluate@<target>: metrics against baselines (and the oracle on simulator data), DVC files, MLflow run.

Metrics, plots and the MLflow run (with registration and the champion decision) come from one evaluation
computed here, so `dvc exp run -S evaluation.*` re-evaluates without retraining.
"""

from __future__ import annotations

from pathlib import Path

from churnml.config import Config
from churnml.contract.io import read_output, read_parquet
from churnml.modeling.evaluation import evaluate_model
from churnml.modeling.metrics import write_dvc_outputs
from churnml.modeling.model import TrainedModel
from churnml.modeling.registry_record import write_registry_record
from churnml.modeling.runs import log_training_run
from churnml.modeling.tracking import data_version
from churnml.stages import check_target


def evaluate(cfg: Config, root: Path, target: str) -> str:
    """Evaluate one target's model; write its DVC metrics and plots, log and register it, record that."""
    check_target(cfg.model.targets, target)
    paths = cfg.paths
    model = TrainedModel.load(root / paths.model(target))
    features = read_output(root / paths.features, "features")
    labels = read_output(root / paths.labels, "labels")
    # the oracle exists only for simulator data; a stale truth folder must never meet real data
    truth = read_parquet(root / paths.truth / "monthly.parquet") if cfg.data.source == "simulator" else None
    evaluation = evaluate_model(model, features, labels, cfg.evaluation, truth=truth)
    write_dvc_outputs(evaluation, root / paths.target_metrics(target), root / paths.target_plots(target))
    features_version = data_version(root / paths.features, root)
    run_id, version = log_training_run(
        model,
        evaluation,
        cfg,
        features_version,
        evaluation_cfg=cfg.evaluation,
        tracking=cfg.tracking,
        root=root,
        test_features=features,
    )
    model_version = data_version(root / paths.model(target), root)
    write_registry_record(
        root / paths.registry_record(target), target, model_version, features_version, version is not None
    )
    return f"{target}: MLflow run {run_id}, registered version {version}"
