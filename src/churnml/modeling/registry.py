"""The MLflow model registry: registered versions, the champion alias, promotion and rollback.

Registry. Each logged model is a pyfunc wrapping the saved ``models/<target>/`` folder (predicting
calibrated probabilities), registered as ``churnml-churn`` / ``churnml-expansion``; the survival model
(``models/survival``, its pyfunc predicting the monthly hazard of account-month rows) as
``churnml-survival``, under the same rule with its own metric (:func:`apply_promotion_rule`).

Promotion rule (automatic, after each registered run): the ``champion`` alias moves to the new version
only if it beats the current champion on ``promotion_metric`` by more than ``promotion_margin`` (higher
is better, except log_loss and Brier). The champion is re-scored on the new run's test rows whenever
the test features are given and the champion can be loaded and applied to them (then both numbers come
from the same rows, whatever period or data the champion was first tested on); otherwise its own
logged test metric (tag ``test_<metric>``) is used, and the tag ``compared_on`` says which. With no
champion the new version is promoted; with a champion that has no comparable number the champion is
kept. A champion that cannot read the new run's features at all (columns it was trained on are missing:
:class:`~churnml.modeling.model.FeatureSchemaError`; a model of other data, such as the demo's after
``churnml params data=folder``) is no comparison and could not serve this data either: the new version takes
the alias (``compared_on`` ``champion_cannot_read_the_rows``, the reason in ``champion_unusable``, one warning
line); :func:`rollback` returns the old one. A category value the champion never saw is read as missing, as
scoring serves it, and is no reason to skip the comparison. Every decision is written as tags on the new
version (``promotion_decision``, ``compared_with``,
``promotion_metric``, ``new_metric_value``, ``champion_metric_value``, ``compared_on``); every alias
move records ``previous_champion`` and who/when/why on the version that takes it, and appends to the
registered model's ``champion_history`` tag, a stack that :func:`rollback` pops (each rollback steps one
champion further back).

Candidates. Production moves only on purpose: a run whose :class:`~churnml.modeling.tracking.RunContext`
may not promote (any ``dvc exp run``, queued, temporary or in the workspace; a branch outside
``tracking.promote_branches``) registers its version, applies the rule and records what it says
(``rule_decision``), but leaves the alias where it is: ``promotion_decision`` is ``candidate`` and
``candidate_reason`` says why. :func:`promote` gives the alias to a candidate by hand. One exception: with no
champion yet, a workspace run on another branch sets the first one (an experiment still does not).
"""

from __future__ import annotations

import datetime as dt
import getpass
import json
import logging
import math
from collections.abc import Callable, Mapping
from pathlib import Path
from typing import Any

import pandas as pd

from churnml.config import EvaluationConfig, TrackingConfig, repo_root
from churnml.errors import ChurnmlError
from churnml.modeling.metrics import (
    HIGHER_IS_BETTER,
    METRICS,
    Evaluation,
    compute_metrics,
)
from churnml.modeling.model import FeatureSchemaError, TrainedModel, unseen_as_missing
from churnml.modeling.tracking import RunContext, _client, _mlflow, registered_name, tracking_uri
from churnml.names import KEYS

log = logging.getLogger(__name__)

CHAMPION = "champion"
_HISTORY_TAG = "champion_history"
_HISTORY_MAX_CHARS = 4500  # MLflow caps tag values at 5000 characters


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
    # as scoring would serve it: a category value it never saw (a new industry in the new data) is missing; only
    # absent columns make it unable to read these rows (FeatureSchemaError)
    rows_in, _ = unseen_as_missing(aligned.drop(columns="_merge"), {name: champion})
    proba = champion.predict_proba(rows_in)
    values = compute_metrics(
        rows["y"].to_numpy(float), proba, rows["arr"].to_numpy(float), rows["cutoff"].to_numpy(), cfg
    )
    return values[metric]


def _clip(text: str, limit: int = 300) -> str:
    """``text`` cut to ``limit`` characters (a tag value, a log line), marked when cut."""
    return text if len(text) <= limit else text[: limit - 5] + " ..."


def _better(new: float, old: float, higher_is_better: bool, margin: float) -> bool:
    if not (math.isfinite(new) and math.isfinite(old)):
        return False
    return new - old > margin if higher_is_better else old - new > margin


# Given the champion's registered version, its metric on the new run's rows and ``compared_on``; raises
# (ChurnmlError, MLflow, OS, key or value errors) when it cannot, and the champion's logged metric is used.
ChampionScore = Callable[[str], float]


def apply_promotion_rule(
    target: str,
    version: str,
    metric: str,
    higher_is_better: bool,
    margin: float,
    new_value: float,
    rescore: ChampionScore | None = None,
    *,
    root: Path | None = None,
    tracking: TrackingConfig | None = None,
    context: RunContext | None = None,
) -> dict[str, str]:
    """The promotion rule (module docstring) for any registered model: move the alias if the new version wins.

    Args:
        target: the model's target (its registered name, :func:`churnml.modeling.tracking.registered_name`).
        version: the new registered version.
        metric: the promotion metric's name; the champion's logged value is its tag ``test_<metric>``.
        higher_is_better: the metric's direction.
        margin: the new version must beat the champion by more than this.
        new_value: the new version's value.
        rescore: the champion's value on the new version's test rows (``compared_on`` ``new_test_rows``);
            when absent or when it raises, the champion's logged metric is used.
        root: the repository root.
        tracking: the tracking section.
        context: whether this run may move the alias at all (default: may promote); when it may not, the
            version stays a candidate whatever the rule says.

    Returns:
        The decision tags written on the version.
    """
    client = _client(root, tracking or TrackingConfig())
    name = registered_name(target)
    champion = _champion(client, name)
    decision: dict[str, str] = {
        "promotion_metric": metric,
        "promotion_margin": str(margin),
        "new_metric_value": repr(new_value),
        "decided_at": _now(),
    }
    if champion is None:
        decision |= {"promotion_decision": "promoted", "compared_with": "none", "compared_on": "no_champion"}
        promote_it = True
    else:
        old_value, compared_on, unusable = math.nan, "champion_logged_metric", ""
        if rescore is not None:
            try:
                old_value = float(rescore(str(champion.version)))
                compared_on = "new_test_rows"
            except FeatureSchemaError as exc:
                unusable = _clip(str(exc))
                log.warning(
                    "champion v%s cannot read this run's features (%s): it was trained on other data or features, "
                    "so v%s takes the alias (`churnml rollback --target %s` returns v%s)",
                    champion.version,
                    unusable,
                    version,
                    target,
                    champion.version,
                )
            except (ChurnmlError, _mlflow().exceptions.MlflowException, KeyError, OSError, ValueError) as exc:
                log.warning("champion v%s not re-scored on the new test rows (%s)", champion.version, exc)
        if unusable:
            promote_it = True
            decision |= {
                "compared_on": "champion_cannot_read_the_rows",
                "champion_unusable": unusable,
            }
        else:
            if compared_on == "champion_logged_metric":
                try:
                    old_value = float(champion.tags.get(f"test_{metric}", "nan"))
                except ValueError:
                    old_value = math.nan
            promote_it = _better(new_value, old_value, higher_is_better, margin)
            decision["compared_on"] = compared_on if math.isfinite(old_value) else "no_comparable_metric"
        decision |= {
            "promotion_decision": "promoted" if promote_it else "kept_champion",
            "compared_with": str(champion.version),
            "champion_metric_value": repr(old_value),
        }
    decision["rule_decision"] = decision["promotion_decision"]
    # a workspace run off the main line may still set the very first champion (there is no production to move
    # yet, and explain and score need one); an experiment never does
    bootstrap = champion is None and context is not None and context.experiment == "workspace"
    if context is not None and not context.may_promote and not bootstrap:
        promote_it = False
        decision |= {"promotion_decision": "candidate", "candidate_reason": context.why}
    if promote_it:
        previous = None if champion is None else str(champion.version)
        decision |= {
            "previous_champion": previous or "none",
            "promoted_at": decision["decided_at"],
            "promoted_by": _user(),
        }
        why = f"{metric} {new_value:.6g} vs champion {decision.get('champion_metric_value', 'none')}"
        if "champion_unusable" in decision:
            why = f"{metric} {new_value:.6g}; champion v{previous} cannot read this data's features"
        decision["promotion_reason"] = why
        _move_alias(client, name, version, "automatic", why, previous)
    _set_tags(client, name, version, decision)
    log.info("%s v%s: %s (%s)", name, version, decision["promotion_decision"], decision.get("compared_on"))
    return decision


def decide_promotion(
    target: str,
    version: str,
    evaluation: Evaluation,
    cfg: EvaluationConfig,
    *,
    test_features: pd.DataFrame | None = None,
    root: Path | None = None,
    tracking: TrackingConfig | None = None,
    context: RunContext | None = None,
) -> dict[str, str]:
    """Apply the promotion rule (module docstring) to a registered 90-day model version; move the alias if it
    wins. The champion is re-scored on the evaluation's test rows when ``test_features`` are given.

    Returns:
        The decision tags written on the version.
    """
    metric = cfg.promotion_metric
    if metric not in METRICS:
        raise ChurnmlError(f"evaluation.promotion_metric: {metric!r} is not one of {', '.join(METRICS)}")
    name = registered_name(target)

    def rescore(champion_version: str) -> float:
        return _champion_metric_on_rows(name, champion_version, evaluation, test_features, metric, cfg)

    return apply_promotion_rule(
        target,
        version,
        metric,
        HIGHER_IS_BETTER[metric],
        cfg.promotion_margin,
        evaluation.metric(metric),
        rescore if test_features is not None else None,
        root=root,
        tracking=tracking,
        context=context,
    )


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
    client = _client(root, cfg or TrackingConfig(), existing=True)
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
    client = _client(root, cfg or TrackingConfig(), existing=True)
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
        target: ``churn``, ``expansion`` or ``survival``.
        ref: an alias (default ``champion``) or a version number.
        root: the repository root (default :func:`churnml.config.repo_root`).
        cfg: the tracking section.

    Returns:
        The model and its registry version.
    """
    mlflow = _mlflow()
    client = _client(root, cfg or TrackingConfig(), existing=True)
    name = registered_name(target)
    if str(ref).isdigit():
        version = _version(client, name, str(ref)).version
    else:
        try:
            version = client.get_model_version_by_alias(name, ref).version
        except mlflow.exceptions.MlflowException:
            raise ChurnmlError(
                f"registry: {name} has no version with alias {ref!r} (experiments register candidates "
                "only: run the pipeline on the main line, `dvc repro`, or `churnml promote` a version)"
            ) from None
    return _load_version(name, str(version)), str(version)


# -------------------------------------------------------------------------------------------- versions


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
    client = _client(root, cfg, existing=True)
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
