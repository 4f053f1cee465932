"""MLflow runs: a training run (params, metrics, plots, the registered model and its promotion) and a monitoring run."""

from __future__ import annotations

import json
import os
import tempfile
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import pandas as pd

from churnml.config import EvaluationConfig, TrackingConfig, repo_root
from churnml.errors import ChurnmlError
from churnml.modeling.metrics import (
    Evaluation,
    metrics_json,
    plot_tables,
)
from churnml.modeling.metrics import figures as draw_figures
from churnml.modeling.model import TrainedModel
from churnml.modeling.registry import ChampionScore, _set_tags, apply_promotion_rule, decide_promotion
from churnml.modeling.tracking import (
    _CODE,
    _CODE_FILE,
    MODEL_ARTIFACT,
    RunContext,
    _client,
    _experiment_id,
    _mlflow,
    _requirements,
    flatten_metrics,
    flatten_params,
    params_hash,
    redact_url,
    registered_name,
    run_context,
    tracking_uri,
)

# ------------------------------------------------------------------------------------------------ runs


def log_training_run(
    model: TrainedModel,
    evaluation: Evaluation,
    params: Any,
    data_version: str,
    feature_list: list[str] | None = None,
    figures: Mapping[str, Any] | None = None,
    input_example: pd.DataFrame | None = None,
    *,
    evaluation_cfg: EvaluationConfig | None = None,
    tracking: TrackingConfig | None = None,
    root: Path | None = None,
    test_features: pd.DataFrame | None = None,
    run_name: str | None = None,
    context: RunContext | None = None,
) -> tuple[str, str | None]:
    """Log one trained and evaluated model as an MLflow run; register it and apply the promotion rule.

    Args:
        model: the trained model.
        evaluation: its evaluation (every metric, table and figure logged comes from it).
        params: the resolved configuration (a dataclass or mapping), logged flattened, URLs redacted.
        data_version: the features file's version (:func:`data_version`).
        feature_list: the model's inputs (default ``model.features``), logged as ``features.json``.
        figures: matplotlib figures by name (default :func:`churnml.modeling.metrics.figures`).
        input_example: a few feature rows for the model signature (default: 5 test rows of
            ``test_features``, else no example).
        evaluation_cfg: the evaluation section (promotion metric and margin, metric parameters).
        tracking: the tracking section (experiment, store, register).
        root: the repository root (default :func:`churnml.config.repo_root`).
        test_features: feature rows covering the test period, to re-score the champion on them.
        run_name: the MLflow run name (default ``<target>@<experiment>-<params hash>``).
        context: where the run happens (default :func:`run_context`): names the run, tags it and its
            registered version, and decides whether the promotion rule may move the champion.

    Returns:
        (run id, registered version or None when registration is off).
    """
    mlflow = _mlflow()
    tracking = tracking or TrackingConfig()
    evaluation_cfg = evaluation_cfg or EvaluationConfig()
    root = Path(root or repo_root())
    client = _client(root, tracking)
    experiment_id = _experiment_id(client, root, tracking)
    features = list(feature_list or model.features)
    document = metrics_json(evaluation)
    split = model.info.get("split", {})
    test_period = ",".join(split.get("test", []))
    if input_example is None and test_features is not None:
        input_example = test_features[model.features].head(5)
    name = registered_name(model.target) if tracking.register else None
    context = context or run_context(root, tracking)
    identity = _identity(context, params, data_version)
    run_name = run_name or f"{model.target}@{context.experiment}-{identity['params_hash']}"

    with mlflow.start_run(experiment_id=experiment_id, run_name=run_name) as run:
        mlflow.log_params(flatten_params(params))
        mlflow.log_params(flatten_params({"trained": {k: v for k, v in model.params.items()}}))
        mlflow.log_metrics(flatten_metrics(document))
        selection = model.info.get("selection") or {}
        if selection:  # the candidates' held-out ROC-AUC and the chosen model's margin over the runner-up
            mlflow.log_metrics(
                {f"selection.roc_auc.{k}": v for k, v in selection["roc_auc"].items() if v == v}
                | (
                    {"selection.margin": selection["margin"]}
                    if selection["margin"] == selection["margin"]
                    else {}
                )
                | {
                    f"selection.lead_over_logistic.{k}": v
                    for k, v in (selection.get("leader_over_logistic") or {}).items()
                    if k in ("difference", "standard_error") and v is not None
                }
            )
        searched = model.info.get("tuning") or {}
        if searched:  # the nested search's verdict: ROC-AUC of the defaults and of the tuned parameters, on
            # held-out rows the search never saw, and the gain (what the search is worth on this data)
            mlflow.log_metrics(
                {
                    f"tuning.{k}": float(searched[k])
                    for k in ("default_roc_auc", "tuned_roc_auc", "gain", "seconds", "trials")
                    if searched[k] == searched[k]
                }
            )
        refit = model.info.get("refit") or {}
        if refit:  # the served model refit on train + validation: rows and trees before and after
            mlflow.log_metrics(
                {f"refit.{k}": float(refit[k]) for k in ("rows", "trees_before", "trees_refit")}
            )
        mlflow.set_tags(
            {
                "chosen_model": selection.get("chosen", "lightgbm"),
                "refit": "train+validation" if refit else "off",
                "tuning": "off" if not searched else "kept" if searched["kept"] else "defaults kept",
                "target": model.target,
                "label_column": model.label_column,
                "data_version": data_version,
                "test_period": test_period,
                "split": json.dumps(split),
                "tracking_uri": redact_url(tracking_uri(root, tracking)),
            }
            | identity
        )
        mlflow.log_dict(document, "metrics.json")
        mlflow.log_dict({"features": features}, "features.json")
        mlflow.log_dict(model.info, "model_info.json")
        for table_name, table in plot_tables(evaluation).items():
            mlflow.log_text(table.to_csv(index=False), f"plots/{table_name}.csv")
        for fig_name, fig in (figures if figures is not None else draw_figures(evaluation)).items():
            mlflow.log_figure(fig, f"plots/{fig_name}.png")

        info = _log_pyfunc(model, input_example, name)
        run_id = run.info.run_id

    version = None
    if name is not None:
        version = str(info.registered_model_version)
        test_metrics = {f"test_{k}": repr(v) for k, v in document["test"].items() if v is not None}
        _set_tags(
            client,
            name,
            version,
            {
                "target": model.target,
                "data_version": data_version,
                "test_period": test_period,
                "run_id": run_id,
            }
            | identity
            | test_metrics,
        )
        decide_promotion(
            model.target,
            version,
            evaluation,
            evaluation_cfg,
            test_features=test_features,
            root=root,
            tracking=tracking,
            context=context,
        )
    return run_id, version


def _log_pyfunc(model: TrainedModel, input_example: pd.DataFrame | None, name: str | None) -> Any:
    """Log the model as the churnml pyfunc of the active run (registered as ``name`` unless None)."""
    mlflow = _mlflow()
    from mlflow.models import infer_signature

    with tempfile.TemporaryDirectory(prefix="churnml-log-") as tmp:
        model_dir = model.save(Path(tmp) / "model_dir")
        code = Path(tmp) / _CODE_FILE
        code.write_text(_CODE, encoding="utf-8")
        signature = None
        if input_example is not None:
            signature = infer_signature(input_example, model.predict_proba(input_example))
        return mlflow.pyfunc.log_model(
            name=MODEL_ARTIFACT,
            python_model=str(code),
            artifacts={"model_dir": str(model_dir)},
            signature=signature,
            input_example=input_example,
            pip_requirements=_requirements(),
            registered_model_name=name,
        )


def log_survival_run(
    model: TrainedModel,
    document: Mapping[str, Any],
    tables: Mapping[str, pd.DataFrame],
    params: Any,
    data_version: str,
    *,
    metric: str,
    higher_is_better: bool,
    margin: float,
    rescore: ChampionScore | None = None,
    input_example: pd.DataFrame | None = None,
    tracking: TrackingConfig | None = None,
    root: Path | None = None,
    context: RunContext | None = None,
) -> tuple[str, str | None]:
    """Log the survival model as an MLflow run; register it and apply the promotion rule.

    Args:
        model: the final survival model (the one the as-of curves and ``churnml forecast`` use).
        document: the survival stage's metrics document (``metrics/survival.json``): its numbers become the
            run's metrics (``models.lightgbm.integrated_brier``...), the whole of it ``survival.json``, and
            ``models.lightgbm`` the version's ``test_<metric>`` tags.
        tables: the stage's plot tables, kept as ``plots/<name>.csv``.
        params: the resolved configuration, logged flattened (URLs redacted).
        data_version: the features file's version.
        metric: the promotion metric (a key of ``document["models"]["lightgbm"]``).
        higher_is_better: its direction.
        margin: the promotion margin.
        rescore: the champion's metric on this run's test spells
            (:func:`churnml.modeling.registry.apply_promotion_rule`).
        input_example: a few account-month design rows for the model signature.
        tracking: the tracking section.
        root: the repository root.
        context: where the run happens (default :func:`run_context`).

    Returns:
        (run id, registered version or None when registration is off).
    """
    mlflow = _mlflow()
    tracking = tracking or TrackingConfig()
    root = Path(root or repo_root())
    client = _client(root, tracking)
    experiment_id = _experiment_id(client, root, tracking)
    measured = dict(document["models"]["lightgbm"])
    if metric not in measured:
        raise ChurnmlError(f"survival.promotion_metric: {metric!r} is not one of {', '.join(measured)}")
    name = registered_name(model.target) if tracking.register else None
    context = context or run_context(root, tracking)
    identity = _identity(context, params, data_version)
    run_name = f"{model.target}@{context.experiment}-{identity['params_hash']}"
    test_period = ",".join(document.get("test_cutoffs", []))
    with mlflow.start_run(experiment_id=experiment_id, run_name=run_name) as run:
        mlflow.log_params(flatten_params(params))
        mlflow.log_params(flatten_params({"trained": dict(model.params)}))
        mlflow.log_metrics(flatten_metrics(document))
        mlflow.set_tags(
            {
                "target": model.target,
                "data_version": data_version,
                "test_period": test_period,
                "tracking_uri": redact_url(tracking_uri(root, tracking)),
            }
            | identity
        )
        mlflow.log_dict(dict(document), "survival.json")
        mlflow.log_dict({"features": list(model.features)}, "features.json")
        mlflow.log_dict(model.info, "model_info.json")
        for table_name, table in tables.items():
            mlflow.log_text(table.to_csv(index=False), f"plots/{table_name}.csv")
        info = _log_pyfunc(model, input_example, name)
        run_id = run.info.run_id
    version = None
    if name is not None:
        version = str(info.registered_model_version)
        test_metrics = {f"test_{k}": repr(v) for k, v in measured.items() if v is not None}
        tags = {"target": model.target, "data_version": data_version, "test_period": test_period}
        _set_tags(client, name, version, tags | {"run_id": run_id} | identity | test_metrics)
        apply_promotion_rule(
            model.target,
            version,
            metric,
            higher_is_better,
            margin,
            float(measured[metric]),
            rescore,
            root=root,
            tracking=tracking,
            context=context,
        )
    return run_id, version


def _identity(context: RunContext, params: Any, data_version: str) -> dict[str, str]:
    """The tags that tie an MLflow run (and its registered version) to its DVC experiment and inputs."""
    tags = {
        "dvc_experiment": context.experiment,
        "params_hash": params_hash(params) if params is not None else "",
        "data_version": data_version,
        "git_branch": context.branch,
    }
    baseline = os.environ.get("DVC_EXP_BASELINE_REV", "")
    if baseline:
        tags["dvc_baseline_rev"] = baseline
    return tags


def log_monitoring(
    document: Mapping[str, Any],
    tables: Mapping[str, pd.DataFrame],
    *,
    params: Any = None,
    tracking: TrackingConfig | None = None,
    root: Path | None = None,
    run_name: str | None = None,
    data_version: str = "",
) -> str:
    """Log one monitoring pass as an MLflow run of the project's experiment.

    Args:
        document: the ``metrics/monitor.json`` document: its numbers become metrics
            (``targets.churn.realised_roc_auc``...), the whole of it ``monitor.json``.
        tables: tables to keep beside it as ``monitor/<name>.csv`` (performance, decay, reliability).
        params: the resolved monitor configuration (logged flattened), optional.
        tracking: the tracking section.
        root: the repository root (default :func:`churnml.config.repo_root`).
        run_name: the MLflow run name (default ``monitor@<experiment>-<params hash>``).
        data_version: the version of the data monitored (tagged).

    Returns:
        The run id.
    """
    mlflow = _mlflow()
    tracking = tracking or TrackingConfig()
    root = Path(root or repo_root())
    client = _client(root, tracking)
    experiment_id = _experiment_id(client, root, tracking)
    identity = _identity(run_context(root, tracking), params, data_version)
    run_name = run_name or f"monitor@{identity['dvc_experiment']}-{identity['params_hash']}"
    with mlflow.start_run(experiment_id=experiment_id, run_name=run_name) as run:
        mlflow.set_tags(
            {
                "kind": "monitor",
                "retrain_recommended": str(bool(document.get("retrain_recommended", False))).lower(),
                "tracking_uri": redact_url(tracking_uri(root, tracking)),
            }
            | identity
        )
        if params is not None:
            mlflow.log_params(flatten_params(params))
        mlflow.log_metrics(flatten_metrics(document))
        mlflow.log_dict(dict(document), "monitor.json")
        for name, table in tables.items():
            mlflow.log_text(table.to_csv(index=False), f"monitor/{name}.csv")
        return run.info.run_id
