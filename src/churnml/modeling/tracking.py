"""MLflow tracking: the store, run logging, the model registry and the champion alias (the only mlflow importer).

Store. ``MLFLOW_TRACKING_URI`` wins when set; otherwise ``sqlite:///<root>/mlflow.db`` with artifacts in
``<root>/mlartifacts``, where ``root`` is :func:`churnml.config.store_root` (which honours ``DVC_ROOT``, so
queued and temporary ``dvc exp run`` copies log to the parent repository's store). With a
``sqlite:///`` URI from the environment, artifacts go beside that database file. mlflow is imported
lazily, after its telemetry is turned off.

Registry. Each logged model is a pyfunc wrapping the saved ``models/<target>/`` folder (predicting
calibrated probabilities), registered as ``churnml-churn`` / ``churnml-expansion``.

Promotion rule (automatic, after each registered run): the ``champion`` alias moves to the new version
only if it beats the current champion on ``promotion_metric`` by more than ``promotion_margin`` (higher
is better, except log_loss and Brier). The champion is re-scored on the new run's test rows whenever
the test features are given and the champion can be loaded and applied to them (then both numbers come
from the same rows, whatever period or data the champion was first tested on); otherwise its own
logged test metric (tag ``test_<metric>``) is used, and the tag ``compared_on`` says which. With no
champion the new version is promoted; with a champion that has no comparable number the champion is
kept. Every decision is written as tags on the new version (``promotion_decision``, ``compared_with``,
``promotion_metric``, ``new_metric_value``, ``champion_metric_value``, ``compared_on``); every alias
move records ``previous_champion`` and who/when/why on the version that takes it, and appends to the
registered model's ``champion_history`` tag, a stack that :func:`rollback` pops (each rollback steps one
champion further back).
"""

from __future__ import annotations

import dataclasses
import datetime as dt
import getpass
import hashlib
import json
import logging
import math
import os
import re
import tempfile
from collections.abc import Mapping
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit, urlunsplit

import numpy as np
import pandas as pd

from churnml.config import EvaluationConfig, TrackingConfig, repo_root, store_root
from churnml.errors import ChurnmlError
from churnml.modeling.metrics import (
    HIGHER_IS_BETTER,
    METRICS,
    Evaluation,
    compute_metrics,
    metrics_json,
    plot_tables,
)
from churnml.modeling.metrics import figures as draw_figures
from churnml.modeling.model import TrainedModel
from churnml.names import KEYS

log = logging.getLogger(__name__)

CHAMPION = "champion"
REGISTERED_NAMES = {"churn": "churnml-churn", "expansion": "churnml-expansion"}
MODEL_ARTIFACT = "model"
_HISTORY_TAG = "champion_history"
_HISTORY_MAX_CHARS = 4500  # MLflow caps tag values at 5000 characters
_PARAM_MAX_CHARS = 6000
_CODE_FILE = "churnml_pyfunc.py"
_CODE = '"""MLflow models-from-code entry point: the churnml calibrated-probability model."""\n\n' + (
    "from churnml.modeling.tracking import set_pyfunc_model\n\nset_pyfunc_model()\n"
)


def _mlflow() -> Any:
    # MLflow looks up a telemetry host on import and on use; nothing leaves this machine
    os.environ.setdefault("MLFLOW_DISABLE_TELEMETRY", "true")
    os.environ.setdefault("DO_NOT_TRACK", "1")
    # progress bars on stderr for local copies are noise in stage logs
    os.environ.setdefault("MLFLOW_ENABLE_ARTIFACTS_PROGRESS_BAR", "false")
    import mlflow

    return mlflow


# ------------------------------------------------------------------------------------------------- store


def redact_url(text: str) -> str:
    """``text`` with any user:password@ removed from a URL in it (other text unchanged)."""
    if "://" not in text:
        return text
    try:
        parts = urlsplit(text)
    except ValueError:
        return re.sub(r"//[^/@\s]*@", "//", text)
    if "@" not in parts.netloc:
        return text
    return urlunsplit(parts._replace(netloc=parts.netloc.rsplit("@", 1)[1]))


def tracking_uri(root: Path, cfg: TrackingConfig) -> str:
    """``MLFLOW_TRACKING_URI`` if set, else ``sqlite:///<root>/<cfg.store>``."""
    env = os.environ.get("MLFLOW_TRACKING_URI")
    if env:
        return env
    return f"sqlite:///{(store_root(root) / cfg.store).resolve()}"


def artifact_location(root: Path, cfg: TrackingConfig) -> str | None:
    """Where a new experiment keeps its artifacts (a file URI), or None to let a tracking server decide."""
    uri = tracking_uri(root, cfg)
    if uri.startswith("sqlite:///"):
        db = Path(uri[len("sqlite:///") :])
        folder = (
            store_root(root) / cfg.artifacts
            if "MLFLOW_TRACKING_URI" not in os.environ
            else db.parent / cfg.artifacts
        )
        return folder.resolve().as_uri()
    if "://" not in uri or uri.startswith("file:"):
        return None  # a file store keeps artifacts inside itself
    return None


def _client(root: Path | None, cfg: TrackingConfig) -> Any:
    mlflow = _mlflow()
    uri = tracking_uri(root or repo_root(), cfg)
    mlflow.set_tracking_uri(uri)
    mlflow.set_registry_uri(uri)
    return mlflow.MlflowClient(tracking_uri=uri, registry_uri=uri)


def _experiment_id(client: Any, root: Path, cfg: TrackingConfig) -> str:
    found = client.get_experiment_by_name(cfg.experiment)
    if found is not None:
        return found.experiment_id
    return client.create_experiment(cfg.experiment, artifact_location=artifact_location(root, cfg))


def registered_name(target: str) -> str:
    """The registry name of a target's model."""
    if target not in REGISTERED_NAMES:
        raise ChurnmlError(f"unknown target {target!r}: expected one of {', '.join(REGISTERED_NAMES)}")
    return REGISTERED_NAMES[target]


# ----------------------------------------------------------------------------------------------- params


def flatten_params(params: Any, prefix: str = "") -> dict[str, str]:
    """A nested config (mapping or dataclass) as ``{"model.lgbm.num_leaves": "31", ...}``, URLs redacted."""
    if dataclasses.is_dataclass(params) and not isinstance(params, type):
        params = dataclasses.asdict(params)
    out: dict[str, str] = {}
    if isinstance(params, Mapping) and (params or not prefix):
        for key, value in params.items():
            out.update(flatten_params(value, f"{prefix}.{key}" if prefix else str(key)))
        return out
    text = json.dumps(params, default=str) if isinstance(params, (list, tuple, Mapping)) else str(params)
    out[prefix] = redact_url(text)[:_PARAM_MAX_CHARS]
    return out


def _metric_name(*parts: str) -> str:
    # MLflow metric names: alphanumerics, underscores, dashes, periods, spaces, slashes
    return ".".join(re.sub(r"[^A-Za-z0-9_\-/ ]", "_", p) for p in parts)


def flatten_metrics(document: Mapping[str, Any], prefix: tuple[str, ...] = ()) -> dict[str, float]:
    """The ``metrics_json`` document as MLflow metrics (``test.roc_auc``, ``by_touch_tier.high_touch.emp``)."""
    out: dict[str, float] = {}
    for key, value in document.items():
        path = (*prefix, str(key))
        if isinstance(value, Mapping):
            out.update(flatten_metrics(value, path))
        elif isinstance(value, (int, float)) and not isinstance(value, bool) and math.isfinite(value):
            out[_metric_name(*path)] = float(value)
    return out


def data_version(path: Path, root: Path | None = None) -> str:
    """The DVC md5 of ``path`` from ``dvc.lock`` when it is a tracked output, else the file's own md5."""
    root = Path(root or repo_root())
    path = Path(path)
    lock = root / "dvc.lock"
    if lock.is_file():
        import yaml

        try:
            rel = path.resolve().relative_to(root.resolve()).as_posix()
        except ValueError:
            rel = path.as_posix()
        stages = (yaml.safe_load(lock.read_text(encoding="utf-8")) or {}).get("stages", {})
        for stage in stages.values():
            for out in stage.get("outs", []) or []:
                if out.get("path") == rel and out.get("md5"):
                    return str(out["md5"])
    if not path.is_file():
        raise ChurnmlError(f"{path}: no such file (cannot compute its data version)")
    digest = hashlib.md5()
    with path.open("rb") as handle:
        for block in iter(lambda: handle.read(1 << 20), b""):
            digest.update(block)
    return digest.hexdigest()


# ------------------------------------------------------------------------------------------------ pyfunc


def _pyfunc_class() -> type:
    mlflow = _mlflow()

    class ChurnmlPyfunc(mlflow.pyfunc.PythonModel):
        """Predicts calibrated probabilities with the saved churnml model in the ``model_dir`` artifact."""

        def load_context(self, context: Any) -> None:
            self.model = TrainedModel.load(Path(context.artifacts["model_dir"]))

        def predict(self, context: Any, model_input: pd.DataFrame, params: dict | None = None) -> np.ndarray:
            return self.model.predict_proba(pd.DataFrame(model_input))

    return ChurnmlPyfunc


def set_pyfunc_model() -> None:
    """Declare the churnml pyfunc for MLflow's models-from-code loader (called by the logged code file)."""
    _mlflow().models.set_model(_pyfunc_class()())


def _requirements() -> list[str]:
    import lightgbm
    import sklearn

    mlflow = _mlflow()
    return [
        f"mlflow=={mlflow.__version__}",
        f"lightgbm=={lightgbm.__version__}",
        f"pandas=={pd.__version__}",
        f"numpy=={np.__version__}",
        f"scikit-learn=={sklearn.__version__}",
        "churnml",  # this project, installed from its repository
    ]


# -------------------------------------------------------------------------------------------- registry


def _now() -> str:
    return dt.datetime.now(dt.UTC).isoformat(timespec="seconds")


def _user() -> str:
    try:
        return getpass.getuser()
    except (KeyError, OSError):
        return "unknown"


def _champion(client: Any, name: str) -> Any | None:
    mlflow = _mlflow()
    try:
        return client.get_model_version_by_alias(name, CHAMPION)
    except mlflow.exceptions.MlflowException:
        return None


def _version(client: Any, name: str, version: str) -> Any:
    mlflow = _mlflow()
    try:
        return client.get_model_version(name, str(version))
    except mlflow.exceptions.MlflowException:
        raise ChurnmlError(f"registry: {name} has no version {version}") from None


def _set_tags(client: Any, name: str, version: str, tags: Mapping[str, Any]) -> None:
    for key, value in tags.items():
        client.set_model_version_tag(name, str(version), key, str(value))


def _history(client: Any, name: str) -> list[dict[str, Any]]:
    try:
        return list(json.loads(client.get_registered_model(name).tags.get(_HISTORY_TAG, "[]")))
    except (json.JSONDecodeError, TypeError):
        return []


def _holders(history: list[dict[str, Any]]) -> list[str]:
    """The stack of champions: promotions push, rollbacks pop (replayed from the history tag)."""
    stack: list[str] = []
    for event in history:
        if event.get("how") == "rollback":
            if stack:
                stack.pop()
        else:
            stack.append(str(event["version"]))
    return stack


def _move_alias(client: Any, name: str, version: str, how: str, reason: str, previous: str | None) -> None:
    client.set_registered_model_alias(name, CHAMPION, str(version))
    history = _history(client, name)
    history.append(
        {"version": str(version), "from": previous, "how": how, "by": _user(), "at": _now(), "why": reason}
    )
    while history and len(json.dumps(history)) > _HISTORY_MAX_CHARS:
        history.pop(0)
    client.set_registered_model_tag(name, _HISTORY_TAG, json.dumps(history))


def _load_version(name: str, version: str) -> TrainedModel:
    mlflow = _mlflow()
    loaded = mlflow.pyfunc.load_model(f"models:/{name}/{version}")
    return loaded.unwrap_python_model().model


def _champion_metric_on_rows(
    name: str,
    version: str,
    evaluation: Evaluation,
    test_features: pd.DataFrame,
    metric: str,
    cfg: EvaluationConfig,
) -> float:
    rows = evaluation.scores[
        (evaluation.scores["model"] == "lightgbm") & (evaluation.scores["split"] == "test")
    ]
    feats = test_features.assign(
        account_id=test_features["account_id"].astype("str"),
        cutoff=pd.to_datetime(test_features["cutoff"]).astype("datetime64[us]"),
    )
    keys = rows[list(KEYS)].assign(cutoff=pd.to_datetime(rows["cutoff"]).astype("datetime64[us]"))
    aligned = keys.merge(feats, on=list(KEYS), how="left", validate="one_to_one", indicator=True)
    if (aligned["_merge"] != "both").any():
        raise ChurnmlError("test features do not cover every evaluated test row")
    champion = _load_version(name, version)
    proba = champion.predict_proba(aligned.drop(columns="_merge"))
    values = compute_metrics(
        rows["y"].to_numpy(float), proba, rows["arr"].to_numpy(float), rows["cutoff"].to_numpy(), cfg
    )
    return values[metric]


def _better(new: float, old: float, metric: str, margin: float) -> bool:
    if not (math.isfinite(new) and math.isfinite(old)):
        return False
    return new - old > margin if HIGHER_IS_BETTER[metric] else old - new > margin


def decide_promotion(
    target: str,
    version: str,
    evaluation: Evaluation,
    cfg: EvaluationConfig,
    *,
    test_features: pd.DataFrame | None = None,
    root: Path | None = None,
    tracking: TrackingConfig | None = None,
) -> dict[str, str]:
    """Apply the promotion rule (module docstring) to a registered version; move the alias if it wins.

    Returns:
        The decision tags written on the version.
    """
    metric = cfg.promotion_metric
    if metric not in METRICS:
        raise ChurnmlError(f"evaluation.promotion_metric: {metric!r} is not one of {', '.join(METRICS)}")
    client = _client(root, tracking or TrackingConfig())
    name = registered_name(target)
    new_value = evaluation.metric(metric)
    champion = _champion(client, name)
    decision: dict[str, str] = {
        "promotion_metric": metric,
        "promotion_margin": str(cfg.promotion_margin),
        "new_metric_value": repr(new_value),
        "decided_at": _now(),
    }
    if champion is None:
        decision |= {"promotion_decision": "promoted", "compared_with": "none", "compared_on": "no_champion"}
        promote_it = True
    else:
        old_value, compared_on = math.nan, "champion_logged_metric"
        if test_features is not None:
            try:
                old_value = _champion_metric_on_rows(
                    name, champion.version, evaluation, test_features, metric, cfg
                )
                compared_on = "new_test_rows"
            except (ChurnmlError, _mlflow().exceptions.MlflowException, KeyError, OSError, ValueError) as exc:
                log.warning("champion v%s not re-scored on the new test rows (%s)", champion.version, exc)
        if compared_on == "champion_logged_metric":
            try:
                old_value = float(champion.tags.get(f"test_{metric}", "nan"))
            except ValueError:
                old_value = math.nan
        promote_it = _better(new_value, old_value, metric, cfg.promotion_margin)
        decision |= {
            "promotion_decision": "promoted" if promote_it else "kept_champion",
            "compared_with": str(champion.version),
            "champion_metric_value": repr(old_value),
            "compared_on": compared_on if math.isfinite(old_value) else "no_comparable_metric",
        }
    if promote_it:
        previous = None if champion is None else str(champion.version)
        decision |= {
            "previous_champion": previous or "none",
            "promoted_at": decision["decided_at"],
            "promoted_by": _user(),
        }
        why = f"{metric} {new_value:.6g} vs champion {decision.get('champion_metric_value', 'none')}"
        decision["promotion_reason"] = why
        _move_alias(client, name, version, "automatic", why, previous)
    _set_tags(client, name, version, decision)
    log.info("%s v%s: %s (%s)", name, version, decision["promotion_decision"], decision.get("compared_on"))
    return decision


def promote(
    target: str,
    version: str,
    reason: str = "",
    *,
    root: Path | None = None,
    cfg: TrackingConfig | None = None,
) -> str:
    """Give the champion alias to ``version`` by hand; recorded on the version (who, when, why, previous).

    Returns:
        The previous champion version ("none" if there was none).
    """
    reason = reason.strip() or "manual promotion (no reason given)"
    client = _client(root, cfg or TrackingConfig())
    name = registered_name(target)
    _version(client, name, version)
    champion = _champion(client, name)
    previous = None if champion is None else str(champion.version)
    if previous == str(version):
        raise ChurnmlError(f"promote: {name} v{version} is already the champion")
    _move_alias(client, name, str(version), "manual", reason, previous)
    _set_tags(
        client,
        name,
        version,
        {
            "promotion_decision": "manual",
            "previous_champion": previous or "none",
            "promoted_by": _user(),
            "promoted_at": _now(),
            "promotion_reason": reason,
        },
    )
    return previous or "none"


def rollback(
    target: str, reason: str = "", *, root: Path | None = None, cfg: TrackingConfig | None = None
) -> str:
    """Return the champion alias to the champion before the current one.

    The registered model's ``champion_history`` is a stack: each promotion (automatic or manual)
    pushes, each rollback pops, so repeated rollbacks step further back in time.

    Returns:
        The version that is champion now.
    """
    client = _client(root, cfg or TrackingConfig())
    name = registered_name(target)
    champion = _champion(client, name)
    if champion is None:
        raise ChurnmlError(f"rollback: {name} has no champion")
    current = str(champion.version)
    stack = _holders(_history(client, name))
    if not stack or stack[-1] != current:
        stack.append(current)  # the alias was moved outside churnml: roll back to the last recorded one
    if len(stack) < 2:
        raise ChurnmlError(f"rollback: {name} v{current} has no previous champion recorded")
    previous = stack[-2]
    _version(client, name, previous)
    why = reason or "rollback"
    _move_alias(client, name, previous, "rollback", why, current)
    stamp = {"by": _user(), "at": _now(), "reason": why}
    _set_tags(
        client,
        name,
        current,
        {f"rolled_back_{k}": v for k, v in stamp.items()} | {"rolled_back_to": previous},
    )
    _set_tags(
        client, name, previous, {f"restored_{k}": v for k, v in stamp.items()} | {"restored_from": current}
    )
    return previous


def load_champion(
    target: str, ref: str = CHAMPION, *, root: Path | None = None, cfg: TrackingConfig | None = None
) -> tuple[TrainedModel, str]:
    """Load a registered model for scoring.

    Args:
        target: ``churn`` or ``expansion``.
        ref: an alias (default ``champion``) or a version number.
        root: the repository root (default :func:`churnml.config.repo_root`).
        cfg: the tracking section.

    Returns:
        The model and its registry version.
    """
    mlflow = _mlflow()
    client = _client(root, cfg or TrackingConfig())
    name = registered_name(target)
    if str(ref).isdigit():
        version = _version(client, name, str(ref)).version
    else:
        try:
            version = client.get_model_version_by_alias(name, ref).version
        except mlflow.exceptions.MlflowException:
            raise ChurnmlError(
                f"registry: {name} has no version with alias {ref!r} (train and promote one)"
            ) from None
    return _load_version(name, str(version)), str(version)


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
        run_name: the MLflow run name (default ``<target>``).

    Returns:
        (run id, registered version or None when registration is off).
    """
    mlflow = _mlflow()
    from mlflow.models import infer_signature

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

    with mlflow.start_run(experiment_id=experiment_id, run_name=run_name or model.target) as run:
        mlflow.log_params(flatten_params(params))
        mlflow.log_params(flatten_params({"trained": {k: v for k, v in model.params.items()}}))
        mlflow.log_metrics(flatten_metrics(document))
        mlflow.set_tags(
            {
                "target": model.target,
                "label_column": model.label_column,
                "data_version": data_version,
                "test_period": test_period,
                "split": json.dumps(split),
                "tracking_uri": redact_url(tracking_uri(root, tracking)),
            }
        )
        mlflow.log_dict(document, "metrics.json")
        mlflow.log_dict({"features": features}, "features.json")
        mlflow.log_dict(model.info, "model_info.json")
        for table_name, table in plot_tables(evaluation).items():
            mlflow.log_text(table.to_csv(index=False), f"plots/{table_name}.csv")
        for fig_name, fig in (figures if figures is not None else draw_figures(evaluation)).items():
            mlflow.log_figure(fig, f"plots/{fig_name}.png")

        with tempfile.TemporaryDirectory(prefix="churnml-log-") as tmp:
            model_dir = model.save(Path(tmp) / "model_dir")
            code = Path(tmp) / _CODE_FILE
            code.write_text(_CODE, encoding="utf-8")
            signature = None
            if input_example is not None:
                signature = infer_signature(input_example, model.predict_proba(input_example))
            info = mlflow.pyfunc.log_model(
                name=MODEL_ARTIFACT,
                python_model=str(code),
                artifacts={"model_dir": str(model_dir)},
                signature=signature,
                input_example=input_example,
                pip_requirements=_requirements(),
                registered_model_name=name,
            )
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
        )
    return run_id, version


# ------------------------------------------------------------------------------------------ monitoring


def model_versions(
    target: str, *, root: Path | None = None, cfg: TrackingConfig | None = None
) -> pd.DataFrame:
    """Every registered version of a target's model, with what a backtest needs to place it in time.

    Args:
        target: ``churn`` or ``expansion``.
        root: the repository root (default :func:`churnml.config.repo_root`).
        cfg: the tracking section.

    Returns:
        One row per version: version, run_id, split (the JSON of the periods its training run logged;
        empty when unknown), test_roc_auc, test_n and test_positives (the test rows and positives it was
        measured on; NaN when not logged), created_at (UTC). Empty when the local store does not exist
        yet (a backtest must not create one just to find it empty).
    """
    columns = ["version", "run_id", "split", "test_roc_auc", "test_n", "test_positives", "created_at"]
    cfg = cfg or TrackingConfig()
    root = Path(root or repo_root())
    uri = tracking_uri(root, cfg)
    if uri.startswith("sqlite:///") and not Path(uri[len("sqlite:///") :]).is_file():
        return pd.DataFrame(columns=columns)
    mlflow = _mlflow()
    client = _client(root, cfg)
    name = registered_name(target)
    try:
        found = client.search_model_versions(f"name = '{name}'")
    except mlflow.exceptions.MlflowException:
        return pd.DataFrame(columns=columns)
    rows = []
    for mv in found:
        split, metrics = "", {}
        try:
            if mv.run_id:
                run = client.get_run(mv.run_id)
                split, metrics = run.data.tags.get("split", ""), run.data.metrics
        except mlflow.exceptions.MlflowException:
            log.warning("%s v%s: its training run %s is gone; no split known", name, mv.version, mv.run_id)
        try:
            test_auc = float(mv.tags.get("test_roc_auc", "nan"))
        except ValueError:
            test_auc = math.nan
        rows.append(
            {
                "version": str(mv.version),
                "run_id": mv.run_id or "",
                "split": split,
                "test_roc_auc": test_auc,
                "test_n": float(metrics.get("n.test", math.nan)),
                "test_positives": float(metrics.get("n.test_positives", math.nan)),
                "created_at": pd.Timestamp(int(mv.creation_timestamp or 0), unit="ms"),
            }
        )
    frame = pd.DataFrame(rows, columns=columns)
    return frame.sort_values("version", key=lambda v: v.astype(int), ignore_index=True) if rows else frame


def log_monitoring(
    document: Mapping[str, Any],
    tables: Mapping[str, pd.DataFrame],
    *,
    params: Any = None,
    tracking: TrackingConfig | None = None,
    root: Path | None = None,
    run_name: str = "monitor",
) -> str:
    """Log one monitoring pass as an MLflow run of the project's experiment.

    Args:
        document: the ``metrics/monitor.json`` document: its numbers become metrics
            (``targets.churn.realised_roc_auc``...), the whole of it ``monitor.json``.
        tables: tables to keep beside it as ``monitor/<name>.csv`` (performance, decay, reliability).
        params: the resolved monitor configuration (logged flattened), optional.
        tracking: the tracking section.
        root: the repository root (default :func:`churnml.config.repo_root`).
        run_name: the MLflow run name.

    Returns:
        The run id.
    """
    mlflow = _mlflow()
    tracking = tracking or TrackingConfig()
    root = Path(root or repo_root())
    client = _client(root, tracking)
    experiment_id = _experiment_id(client, root, tracking)
    with mlflow.start_run(experiment_id=experiment_id, run_name=run_name) as run:
        mlflow.set_tags(
            {
                "kind": "monitor",
                "retrain_recommended": str(bool(document.get("retrain_recommended", False))).lower(),
                "tracking_uri": redact_url(tracking_uri(root, tracking)),
            }
        )
        if params is not None:
            mlflow.log_params(flatten_params(params))
        mlflow.log_metrics(flatten_metrics(document))
        mlflow.log_dict(dict(document), "monitor.json")
        for name, table in tables.items():
            mlflow.log_text(table.to_csv(index=False), f"monitor/{name}.csv")
        return run.info.run_id
