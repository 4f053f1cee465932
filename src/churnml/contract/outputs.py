"""Every output the DVC pipeline declares, mapped to its schema or to the kind of artifact it is.

Keys are dvc.yaml's output paths with ``${paths.X}`` written ``X`` and the ``foreach`` item written
``<target>`` (``spine``, ``metrics/<target>.json``, ``plots/explain``); an output dvc.yaml writes as a
literal path is keyed by that path. tests/test_tables.py walks dvc.yaml and fails on any output missing
here. Tables point at :data:`churnml.contract.tables.OUTPUT_TABLES`; JSON documents at a light shape
(required keys, :func:`check_document`); plot folders list their CSV files and columns.
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

from churnml.contract.tables import PERFORMANCE_COLUMNS, RELIABILITY_COLUMNS
from churnml.errors import ChurnmlError

# The evaluation metrics of metrics/<target>.json (DESIGN.md, Interfaces).
METRIC_NAMES = (
    "roc_auc",
    "pr_auc",
    "log_loss",
    "brier",
    "lift_at_10pct",
    "recall_at_10pct",
    "arr_captured_at_k",
    "emp",
)

# A document shape: a tuple of required keys, or a mapping of required keys to the shape of their values
# (None: present, any value). Keys not listed are allowed.
Shape = tuple[str, ...] | Mapping[str, Any] | None

DOCUMENTS: dict[str, Shape] = {
    # metrics/<target>.json; "oracle" and "oracle_lift_ratio" only on simulator data, so not required
    "target_metrics": {
        "test": METRIC_NAMES,
        "validation": METRIC_NAMES,
        "baselines": {"logistic": {"test": METRIC_NAMES}, "health_score": {"test": METRIC_NAMES}},
        "by_touch_tier": None,
        "by_segment": None,
        "n": ("train", "validation", "test", "test_positives"),
    },
    # metrics/explain.json; the cause check (cause_hit_rate_top3...) only on simulator data
    "explain_metrics": ("as_of", "accounts"),
    "monitor_metrics": {
        "data_end": None,
        "retrain_recommended": None,
        "targets": None,
        "as_of_dates": ("scored", "matured"),
    },
    # metrics/score.json: the score stage's checks (churnml.scoring.calls.call_list_metrics)
    "score_metrics": {
        "accounts": None,
        "tiers": None,
        "likely_to_expand": None,
        "calls": ("total", "capacity_per_csm", "pooled_capacity", "by_csm"),
        "team_top": None,
    },
    # data/score_watermark.json: what the warehouse held after the score stage (scoring.batch.score_watermark)
    "score_watermark": ("scored", "as_of_count"),
    # metrics/survival.json: the survival stage's out-of-time comparison (churnml.survival.pipeline)
    "survival_metrics": (
        "models",
        "horizon_months",
        "follow_up_months",
        "test_spells",
        "as_of",
        "forecast_backtest",
    ),
    # models/registry/<target>.json: the MLflow registration the evaluate stage made
    "registry_record": ("target", "model", "data_version", "registered"),
    # data/tiers.json: the tier cut-offs the score stage used (churnml.scoring.tiers.TierDefinition)
    "tiers": ("cutoffs", "shares", "base_rate", "expansion_cutoff", "source"),
}


def check_document(document: Any, name: str, shape: Shape | None = None) -> None:
    """Raise a one-line ChurnmlError naming the first required key missing from a JSON document.

    Args:
        document: the parsed JSON.
        name: a key of :data:`DOCUMENTS` (its shape is used unless ``shape`` is given).
        shape: the shape to check against (used for nested values).
    """
    if shape is None and name not in DOCUMENTS:
        raise ChurnmlError(f"unknown document {name!r}; declared: {', '.join(DOCUMENTS)}")
    _check(document, DOCUMENTS[name] if shape is None else shape, name, "")


def _check(value: Any, shape: Shape, name: str, where: str) -> None:
    if shape is None:
        return
    if not isinstance(value, Mapping):
        raise ChurnmlError(f"{name}: {where or 'the document'} must be an object, got {type(value).__name__}")
    required = shape if isinstance(shape, tuple) else tuple(shape)
    missing = [k for k in required if k not in value]
    if missing:
        raise ChurnmlError(f"{name}: missing key {where + '.' if where else ''}{missing[0]}")
    if isinstance(shape, Mapping):
        for key, inner in shape.items():
            _check(value[key], inner, name, f"{where}.{key}" if where else key)


@dataclass(frozen=True)
class Output:
    """What one DVC output is.

    Attributes:
        kind: ``table`` (Parquet, ``table`` names its schema), ``table_csv`` (a CSV copy of ``table``),
            ``input_folder`` (one file per contract input table), ``quarantine_folder`` (rejected input rows
            with a reason column), ``truth_folder`` (the simulator's ground truth), ``model_folder`` (a
            saved model), ``document`` (JSON, ``document`` names its shape), ``plots_folder`` (CSV files,
            ``files`` maps each name to its columns; ``<target>`` stands for each model target) or
            ``report_folder`` (static HTML) or ``stamp`` (a constant text file other stages depend on).
    """

    kind: str
    description: str
    table: str | None = None
    document: str | None = None
    files: Mapping[str, tuple[str, ...]] = field(default_factory=dict)


_CURVE_FILES = {
    "roc.csv": ("model", "fpr", "tpr"),
    "pr.csv": ("model", "recall", "precision"),
    "calibration.csv": ("model", "bin", "mean_predicted", "observed_rate", "count"),
    "gains.csv": ("model", "fraction_targeted", "fraction_captured", "lift"),
}
_EXPLAIN_FILES = {
    "<target>_importance.csv": ("feature", "mean_abs_shap"),
    "<target>_dependence.csv": ("feature", "feature_value", "shap_value"),
}
_SURVIVAL_FILES = {
    "calibration.csv": ("model", "month", "bin", "count", "mean_predicted", "observed_km"),
    "curves.csv": ("model", "month", "survival"),
    # the right-customer analysis (churnml.survival.profiles): one row per profile at the follow-up's end,
    # with the unadjusted Cox hazard ratio against the dimension's reference profile
    "profiles.csv": (
        "dimension",
        "profile",
        "accounts",
        "events",
        "logo_retention",
        "logo_retention_low",
        "logo_retention_high",
        "grr",
        "grr_low",
        "grr_high",
        "nrr",
        "nrr_low",
        "nrr_high",
        "reference",
        "hazard_ratio",
        "hazard_ratio_low",
        "hazard_ratio_high",
        "p_value",
    ),
    # logo (Kaplan-Meier) and revenue retention curves per profile, month 0 to the follow-up's end
    "profile_curves.csv": (
        "dimension",
        "profile",
        "month",
        "accounts",
        "logo_retention",
        "logo_retention_low",
        "logo_retention_high",
        "grr",
        "grr_low",
        "grr_high",
        "nrr",
        "nrr_low",
        "nrr_high",
    ),
    "forecast_backtest.csv": (
        "as_of",
        "horizon_months",
        "dimension",
        "group",
        "grr_mean",
        "grr_p10",
        "grr_p90",
        "realised_grr",
        "naive_grr",
        "nrr_mean",
        "nrr_p10",
        "nrr_p90",
        "realised_nrr",
        "naive_nrr",
    ),
}
_MONITOR_FILES = {
    "decay.csv": (
        "target",
        "model_version",
        "as_of",
        "months_since_training",
        "roc_auc",
        "test_roc_auc",
        "pr_auc",
        "ece",
        "lift_at_k",
        "arr_captured",
        "psi_score",
        "n",
        "n_positive",
    ),
    "reliability.csv": RELIABILITY_COLUMNS,
    # the score_performance rows without the time they were evaluated (keeps the file input-determined)
    "performance.csv": tuple(c.name for c in PERFORMANCE_COLUMNS if c.name != "evaluated_at"),
}


def _table(name: str, description: str) -> Output:
    return Output("table", description, table=name)


OUTPUTS: dict[str, Output] = {
    "params_check": Output("stamp", "check_params' stamp: params.yaml was valid and fresh (constant text)"),
    "raw": Output("input_folder", "the input tables as generated or supplied (contract.schemas.TABLES)"),
    "truth": Output(
        "truth_folder", "simulator ground truth: accounts.parquet, monthly.parquet (sources.simulate)"
    ),
    "validated": Output("input_folder", "the input tables, validated and coerced (contract.schemas.TABLES)"),
    "quarantine": Output(
        "quarantine_folder", "rejected input rows per table, with a _quarantine_reason column"
    ),
    "spine": _table("spine", "the observation spine"),
    "labels": _table("labels", "labels per spine row"),
    "features": _table("features", "point-in-time features per spine row"),
    "models/<target>": Output("model_folder", "a trained model (modeling.model.TrainedModel.save)"),
    "registry/<target>.json": Output(
        "document", "the model's MLflow registration", document="registry_record"
    ),
    "metrics/<target>.json": Output(
        "document", "test/validation/baseline metrics", document="target_metrics"
    ),
    "plots/<target>": Output("plots_folder", "evaluation curves (dvc plots)", files=_CURVE_FILES),
    "explanations": _table("explanations", "SHAP contributions of the top features, with sentences"),
    "explanations_csv": Output("table_csv", "a CSV copy of the explanations", table="explanations"),
    "reasons": _table("reasons", "top reasons per account and target"),
    "scoring_features": _table("scoring_features", "features at the scoring as-of"),
    "explain_plots": Output("plots_folder", "global SHAP view: CSVs and PNG figures", files=_EXPLAIN_FILES),
    "explain_metrics": Output("document", "the explain stage's summary", document="explain_metrics"),
    "scores": _table("scores", "the score stage's rows (the churn_scores layout)"),
    "call_list": _table("call_list", "this week's call list (the weekly_call_list layout)"),
    "tiers": Output(
        "document", "the tier cut-offs the score stage used and how they were chosen", document="tiers"
    ),
    "score_metrics": Output(
        "document",
        "tier counts, calls per CSM against capacity and the top of the team list",
        document="score_metrics",
    ),
    "score_watermark": Output(
        "document",
        "every (as-of, model versions) the warehouse holds: monitor's dependency",
        document="score_watermark",
    ),
    "reports": Output("report_folder", "the static HTML portfolio report (index.html)"),
    "monitor_metrics": Output(
        "document", "realised performance and retrain advice", document="monitor_metrics"
    ),
    "monitor_plots": Output("plots_folder", "realised performance tables (dvc plots)", files=_MONITOR_FILES),
    "survival_model": Output("model_folder", "the survival (discrete-time hazard) model"),
    "survival_registry": Output(
        "document", "the survival model's MLflow registration", document="registry_record"
    ),
    "survival_metrics": Output(
        "document",
        "survival model vs Kaplan-Meier, Cox and the oracle, out of time",
        document="survival_metrics",
    ),
    "survival_plots": Output(
        "plots_folder", "survival calibration by decile and mean curves (dvc plots)", files=_SURVIVAL_FILES
    ),
    "account_survival": _table("account_survival", "survival curves of the accounts active at the as-of"),
    "revenue_forecast": _table(
        "revenue_forecast", "expected ARR, GRR and NRR of the as-of book, with intervals"
    ),
}

_PATHS_REF = re.compile(r"\$\{paths\.(\w+)\}")


def output_key(declared: str) -> str:
    """The registry key of an output as dvc.yaml writes it (``${paths.metrics}/${item}.json`` ->
    ``metrics/<target>.json``)."""
    return _PATHS_REF.sub(lambda m: m.group(1), declared).replace("${item}", "<target>")
