"""The schemas of the tables the pipeline persists (spine to scores, and the warehouse's), declared once.

Every Parquet file a stage writes and the next one reads has one pandera schema here, checked by
:func:`churnml.contract.io.write_output` and :func:`churnml.contract.io.read_output` (``coerce=True``: dates
come back as :data:`~churnml.contract.schemas.DATE`, whatever unit the writer used). The column names other
modules need (explanation and reason layouts, warehouse columns, label names, categorical features) are
taken from here, never typed again.

Tables: ``spine``, ``labels``, ``features``, ``scoring_features``, ``explanations``, ``reasons``, ``scores``
(the score stage's Parquet: the ``churn_scores`` layout before the warehouse adds ``run_id``/``scored_at``),
``account_survival``, ``revenue_forecast`` (the survival stage's Parquet and, with their run columns, the
warehouse tables ``churnml forecast`` writes), and the warehouse tables ``churn_scores``,
``churn_explanations``, ``score_runs``, ``score_performance``, ``weekly_call_list``, ``forecast_runs``.
"""

from __future__ import annotations

import re
from dataclasses import dataclass

import pandera.pandas as pa

from churnml.contract.schemas import DATE
from churnml.names import CONTRACTION, KEYS, LABEL_PREFIXES, label_column

# ------------------------------------------------------------------------------------------ vocabulary

LABEL_DTYPE = "Int8"  # 0/1, null when the row is unlabeled (its horizon runs past the data)
# Feature columns that are categories (text); every other feature is a float.
CATEGORICAL_FEATURES = (
    "account_segment",
    "account_touch_model",
    "account_industry",
    "account_region",
    "contract_plan",
    "contract_billing_period",
    "lifecycle_journey_stage",
)
REASON_DIRECTIONS = ("raises", "lowers", "context")  # the order reason rows and JSON items come in


# The monitor's reliability curves (plots/monitor/reliability.csv): one row per as-of, target, version, tier and bin.
RELIABILITY_COLUMNS = (
    "as_of",
    "target",
    "model_version",
    "touch_model",
    "bin",
    "mean_predicted",
    "observed_rate",
    "count",
)

# ------------------------------------------------------------------------------------ warehouse columns


@dataclass(frozen=True)
class WarehouseColumn:
    """A column of a warehouse table: its storage kind, whether it is part of the key, who fills it."""

    name: str
    kind: str  # text | date | ts | float | int | bool | json (jsonb in PostgreSQL, JSON in DuckDB)
    key: bool = False
    filled: bool = False  # the writer fills it from the run when the frame lacks it


_W = WarehouseColumn
SCORES_COLUMNS: tuple[WarehouseColumn, ...] = (
    _W("account_id", "text", key=True),
    _W("as_of", "date", key=True, filled=True),
    _W("churn_model_version", "text", key=True, filled=True),
    _W("expansion_model_version", "text", key=True, filled=True),
    _W("churn_probability", "float"),
    _W("risk_tier", "text"),
    _W("expansion_probability", "float"),
    _W("arr", "float"),
    _W("arr_at_risk", "float"),
    _W("segment", "text"),
    _W("touch_model", "text"),
    _W("recommended_play", "text"),
    _W("top_reasons", "json"),
    _W("run_id", "text", filled=True),
    _W("scored_at", "ts", filled=True),
)
EXPLANATIONS_COLUMNS: tuple[WarehouseColumn, ...] = (
    _W("account_id", "text", key=True),
    _W("as_of", "date", key=True, filled=True),
    _W("target", "text", key=True),
    _W("model_version", "text", key=True),
    _W("rank", "int"),
    _W("feature", "text", key=True),
    _W("feature_value", "text"),  # as shown to a CSM: numbers and categories alike
    _W("shap_value", "float"),
    _W("probability_points", "float"),
    _W("reason", "text"),
)
RUNS_COLUMNS: tuple[WarehouseColumn, ...] = (
    _W("run_id", "text", key=True),
    _W("as_of", "date"),
    _W("churn_model_version", "text"),
    _W("expansion_model_version", "text"),
    _W("status", "text"),
    _W("run_kind", "text"),
    _W("scores_rows", "int"),
    _W("explanations_rows", "int"),
    _W("data_start", "date"),
    _W("data_end", "date"),
    _W("started_at", "ts"),
    _W("finished_at", "ts"),
    _W("error", "text"),
    # Added by issue 20 (existing tables get them with ALTER TABLE ... ADD COLUMN IF NOT EXISTS):
    _W("accounts_untouched", "int"),  # rows of this as-of and versions the run kept (not in its input)
    _W("replace_date", "bool"),  # the run replaced the whole as-of (--replace-date), not only its accounts
    _W("drift_accepted", "bool"),  # scored despite drift past the fail thresholds (--accept-drift)
    _W("drift", "text"),  # JSON: the PSI table of the run (target, feature, family, psi, bound, status)
    _W("host", "text"),  # where the run's process ran: a run left running by a dead process is abandoned
    _W("pid", "int"),
    # JSON {column: {value: accounts}}: category values the models never saw, scored as missing (else null)
    _W("unseen_categories", "text"),
)
# Realised performance of scores once their labels matured (churnml.scoring.monitor): one row per as-of,
# target, model version and touch model ("all" for every account). Written with write_performance, not by
# scoring runs.
PERFORMANCE_COLUMNS: tuple[WarehouseColumn, ...] = (
    _W("as_of", "date", key=True),
    _W("target", "text", key=True),
    _W("model_version", "text", key=True),
    _W("touch_model", "text", key=True),
    _W("n", "int"),
    _W("n_positive", "int"),
    _W("roc_auc", "float"),
    _W("pr_auc", "float"),
    _W("ece", "float"),
    _W("lift_at_k", "float"),
    _W("arr_captured", "float"),
    _W("psi_score", "float"),
    _W("test_roc_auc", "float"),
    _W("months_since_training", "float"),
    _W("evaluated_at", "ts"),
    _W("matured", "bool"),
)
# This week's call list a CRM can sync (churnml.scoring.calls): one row per account to call, per as-of; a
# rerun of an as-of replaces its rows. rank is the place in the CSM's own list (csm_id "pooled" for accounts
# without a named CSM), team_rank the place in the team's list; due is the day the call should be made by.
CALL_LIST_COLUMNS: tuple[WarehouseColumn, ...] = (
    _W("account_id", "text", key=True),
    _W("as_of", "date", key=True),
    _W("csm_id", "text"),
    _W("rank", "int"),
    _W("team_rank", "int"),
    _W("priority", "float"),
    _W("churn_probability", "float"),
    _W("risk_change", "float"),
    _W("risk_tier", "text"),
    _W("arr", "float"),
    _W("arr_at_risk", "float"),
    _W("days_to_renewal", "float"),
    _W("reason", "text"),
    _W("play", "text"),
    _W("due", "date"),
    _W("churn_model_version", "text"),
    _W("expansion_model_version", "text"),
)
# Survival curves of the accounts active at an as-of (churnml.survival): one row per account and as-of.
# ``survival`` is the JSON list S(1..horizon_months): the probability of still being a customer at the end
# of each month from the as-of; the rest are read off it (churnml.survival.model.curve_frame). The survival
# stage's Parquet has the same layout without the last three columns, which ``churnml forecast`` fills from
# its run (the registry version differs in every MLflow store: a DVC output must not depend on it).
ACCOUNT_SURVIVAL_COLUMNS: tuple[WarehouseColumn, ...] = (
    _W("account_id", "text", key=True),
    _W("as_of", "date", key=True, filled=True),
    _W("horizon_months", "int"),
    _W("survival", "json"),
    _W("next_renewal_month", "int"),  # first month at risk (annual: its term end); 0 = none in the horizon
    _W("p_renew_next", "float"),  # probability of still being a customer after the next renewal decision
    _W("expected_months", "float"),  # restricted mean: expected months as a customer within the horizon
    _W("p_churn_3m", "float"),  # 1 - S(3): the 90-day churn model's question, for comparison
    _W("p_churn_horizon", "float"),  # 1 - S(horizon)
    _W("segment", "text"),
    _W("touch_model", "text"),
    _W("csm_id", "text"),  # the account's CSM (accounts.csm_id); "pooled" when it has none
    _W("arr", "float"),
    _W("survival_model_version", "text", filled=True),  # the registered survival model's version
    _W("run_id", "text", filled=True),  # the forecast_runs record of the write
    _W("forecast_at", "ts", filled=True),  # when the run wrote it (UTC)
)
# The revenue forecast of the book active at an as-of (churnml.survival.forecast): one row per as-of, horizon,
# dimension (portfolio, segment, touch_model, csm) and group; means and quantiles of the simulated ARR, GRR,
# NRR (p10..p90: the 80% interval, p025..p975: the 95% one). Filled columns as for account_survival.
REVENUE_FORECAST_COLUMNS: tuple[WarehouseColumn, ...] = (
    _W("as_of", "date", key=True, filled=True),
    _W("horizon_months", "int", key=True),
    _W("dimension", "text", key=True),
    _W("group", "text", key=True),
    _W("accounts", "int"),
    _W("arr_start", "float"),
    *(
        _W(f"{m}_{q}", "float")
        for m in ("arr", "grr", "nrr")
        for q in ("mean", "p025", "p10", "p50", "p90", "p975")
    ),
    # what drives the change (churnml.survival.forecast.movements): expected ARR lost to churn, lost to
    # contraction and gained by expansion; arr_start - churn - contraction + expansion = arr_mean
    _W("churn_arr_mean", "float"),
    _W("contraction_arr_mean", "float"),
    _W("expansion_arr_mean", "float"),
    _W("survival_model_version", "text", filled=True),
    _W("run_id", "text", filled=True),
    _W("forecast_at", "ts", filled=True),
)
# The columns a forecast run fills in both tables; the survival stage's Parquet leaves them out.
FORECAST_RUN_FILLED = ("survival_model_version", "run_id", "forecast_at")
# One row per `churnml forecast` run: its as-of, the survival model version, status and row counts. A run's
# account_survival and revenue_forecast rows commit in the same transaction as its "succeeded" record.
FORECAST_RUNS_COLUMNS: tuple[WarehouseColumn, ...] = (
    _W("run_id", "text", key=True),
    _W("as_of", "date"),
    _W("survival_model_version", "text"),
    _W("status", "text"),
    _W("run_kind", "text"),
    _W("account_survival_rows", "int"),
    _W("revenue_forecast_rows", "int"),
    _W("data_start", "date"),
    _W("data_end", "date"),
    _W("started_at", "ts"),
    _W("finished_at", "ts"),
    _W("error", "text"),
    _W("host", "text"),
    _W("pid", "int"),
)
_PANDERA_DTYPE = {
    "text": str,
    "json": str,
    "date": DATE,
    "ts": DATE,
    "float": float,
    "int": "Int64",
    "bool": "boolean",
}


# ----------------------------------------------------------------------------------------------- tables


@dataclass(frozen=True)
class OutputTable:
    """A table the pipeline persists: its schema, key and what one row is."""

    name: str
    schema: pa.DataFrameSchema
    key: tuple[str, ...]
    description: str

    @property
    def columns(self) -> list[str]:
        """The declared column names in order (regex-matched feature columns excluded)."""
        return [name for name, col in self.schema.columns.items() if not col.regex]


def _schema(name: str, columns: dict, key: tuple[str, ...]) -> pa.DataFrameSchema:
    # strict: a column nobody declared fails the write, so the declaration stays complete
    return pa.DataFrameSchema(columns, unique=list(key), coerce=True, strict=True, name=name)


def _key_text() -> pa.Column:
    return pa.Column(str, pa.Check.str_length(min_value=1), nullable=False)


def _day() -> pa.Column:
    return pa.Column(DATE, pa.Check(lambda s: s == s.dt.normalize(), name="calendar day"), nullable=False)


def _float() -> pa.Column:
    return pa.Column(float, nullable=True)


def _text() -> pa.Column:
    return pa.Column(str, nullable=True)


def _rank() -> pa.Column:
    return pa.Column(int, pa.Check.ge(1), nullable=False)


def _warehouse(
    name: str, columns: tuple[WarehouseColumn, ...], optional: tuple[str, ...] = ()
) -> OutputTable:
    key = tuple(c.name for c in columns if c.key)
    spec = {
        c.name: pa.Column(_PANDERA_DTYPE[c.kind], nullable=not c.key, required=c.name not in optional)
        for c in columns
    }
    return OutputTable(name, _schema(name, spec, key), key, f"the warehouse table {name}")


def _not_named(names: tuple[str, ...]) -> str:
    """A regex matching every column name except ``names``."""
    return rf"^(?!({'|'.join(map(re.escape, names))})$).+$"


SPINE = OutputTable(
    "spine",
    _schema("spine", {"account_id": _key_text(), "cutoff": _day()}, KEYS),
    KEYS,
    "One row per account active at a cutoff: which accounts are observed when (churnml.dataset.spine).",
)

LABELS = OutputTable(
    "labels",
    _schema(
        "labels",
        {
            "account_id": _key_text(),
            "cutoff": _day(),
            # the horizon is configuration: any <kind>_within_<h>d column (label_column builds the names)
            **{
                rf"^{prefix}\d+d$": pa.Column(
                    LABEL_DTYPE,
                    pa.Check.isin([0, 1]),
                    nullable=True,
                    regex=True,
                    required=prefix != label_column(CONTRACTION, 0)[: -len("0d")],
                )
                for prefix in LABEL_PREFIXES
            },
        },
        KEYS,
    ),
    KEYS,
    "Per spine row, 1/0 for churned/expanded/contracted within the horizon; null when unlabeled.",
)


def _features(name: str, description: str) -> OutputTable:
    columns = {
        "account_id": _key_text(),
        "cutoff": _day(),
        **{c: pa.Column(str, nullable=True, required=False) for c in CATEGORICAL_FEATURES},
        _not_named((*KEYS, *CATEGORICAL_FEATURES)): pa.Column(
            float, nullable=True, regex=True, required=False
        ),
    }
    return OutputTable(name, _schema(name, columns, KEYS), KEYS, description)


FEATURES = _features(
    "features", "Point-in-time features per spine row: categoricals as text, the rest float."
)
SCORING_FEATURES = _features(
    "scoring_features",
    "The features of every account active at the scoring as-of (the explain stage's input).",
)

EXPLANATION_KEY = ("account_id", "as_of", "target", "feature")
EXPLANATIONS = OutputTable(
    "explanations",
    _schema(
        "explanations",
        {
            "account_id": _key_text(),
            "as_of": _day(),
            "target": _key_text(),
            "feature": _key_text(),
            "feature_value": _text(),  # display text; null when the value is missing
            "shap_value": _float(),
            "probability_points": _float(),
            "rank": _rank(),
            "base_value": _float(),
            "raw_score": _float(),
            "base_probability": _float(),
            "probability": _float(),
            "model_version": _key_text(),  # the registered version explained (one per target and run)
            # the feature's sentence, added by churnml.explain.reasons.with_reasons (the explain stage does)
            "reason": pa.Column(str, nullable=True, required=False),
        },
        EXPLANATION_KEY,
    ),
    EXPLANATION_KEY,
    "SHAP contributions per account, as-of, target and feature (top features), each with its sentence.",
)

REASON_KEY = ("account_id", "as_of", "target", "direction", "rank")
REASONS = OutputTable(
    "reasons",
    _schema(
        "reasons",
        {
            "account_id": _key_text(),
            "as_of": _day(),
            "target": _key_text(),
            "rank": _rank(),
            "direction": pa.Column(str, pa.Check.isin(REASON_DIRECTIONS)),
            "driver": pa.Column(str),
            "family": _text(),
            "probability_points": _float(),
            "reason": _text(),
            "model_version": _key_text(),  # the registered version whose SHAP values gave the reason
        },
        REASON_KEY,
    ),
    REASON_KEY,
    "The top drivers raising and lowering each account's score, and its context, in plain words.",
)

CHURN_SCORES = _warehouse("churn_scores", SCORES_COLUMNS)
CHURN_EXPLANATIONS = _warehouse("churn_explanations", EXPLANATIONS_COLUMNS)
SCORE_RUNS = _warehouse("score_runs", RUNS_COLUMNS)
SCORE_PERFORMANCE = _warehouse("score_performance", PERFORMANCE_COLUMNS)
WEEKLY_CALL_LIST = _warehouse("weekly_call_list", CALL_LIST_COLUMNS)
CALL_LIST = _warehouse("call_list", CALL_LIST_COLUMNS)  # the score stage's Parquet copy
# The survival stage's Parquet files: the warehouse layouts without the columns a forecast run fills.
ACCOUNT_SURVIVAL = _warehouse("account_survival", ACCOUNT_SURVIVAL_COLUMNS, optional=FORECAST_RUN_FILLED)
REVENUE_FORECAST = _warehouse("revenue_forecast", REVENUE_FORECAST_COLUMNS, optional=FORECAST_RUN_FILLED)
FORECAST_RUNS = _warehouse("forecast_runs", FORECAST_RUNS_COLUMNS)
# The score stage's Parquet: the churn_scores rows before the warehouse fills run_id and scored_at.
SCORES = _warehouse("scores", SCORES_COLUMNS, optional=("run_id", "scored_at"))

OUTPUT_TABLES: dict[str, OutputTable] = {
    t.name: t
    for t in (
        SPINE,
        LABELS,
        FEATURES,
        SCORING_FEATURES,
        EXPLANATIONS,
        REASONS,
        SCORES,
        CHURN_SCORES,
        CHURN_EXPLANATIONS,
        SCORE_RUNS,
        SCORE_PERFORMANCE,
        WEEKLY_CALL_LIST,
        CALL_LIST,
        ACCOUNT_SURVIVAL,
        REVENUE_FORECAST,
        FORECAST_RUNS,
    )
}
