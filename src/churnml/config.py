"""Typed configuration: the dataclasses are the schema and hold every default; conf/ states only choices.

Each default lives in one place, the dataclass field below. Hydra composes ``conf/`` on top of these
dataclasses (registered in Hydra's ConfigStore as ``churnml_schema``, the first entry of
``conf/config.yaml``'s defaults list), so a group's YAML file holds only what differs from the dataclass
(``conf/labels/fightchurn_crm6.yaml``: a 31-day horizon) and a derived value is an interpolation
(``split.purge_days`` and ``simulator.label_horizon_days`` follow ``${labels.horizon_days}``).

Why this way and not ``MISSING`` in the dataclasses with the values in YAML: the tests (and notebooks)
build sections with their defaults (``LabelsConfig(horizon_days=60)``) and must get a working section,
and a typo in YAML fails at compose because the schema is there first. DVC composes ``conf/`` itself on
``dvc exp run`` with plain Hydra; it finds the schema through ``[hydra] plugins_path = src`` in
``.dvc/config``: DVC puts that folder on ``sys.path`` and Hydra's plugin scan imports
``hydra_plugins.churnml_schema``, which calls :func:`register_schema`. So every key of every section is
in DVC's composition too and ``dvc exp run -S model.lgbm.num_leaves=63`` works for any key.
:func:`write_params` (``churnml params``) dumps the composition as DVC does (resolved, ``OmegaConf.to_yaml``),
so both write the same ``params.yaml`` (tests/test_config.py composes both ways and compares).

Every stage loads ``params.yaml`` through :func:`load_config`, which merges it into the dataclasses
(a typo or a wrong type fails here, at load, with the key named) and refuses stale parameters:
``dvc repro`` never composes ``conf/`` (treeverse/dvc#10750), so a plain run after an edit under
``conf/`` would otherwise use the old values silently.
"""

from __future__ import annotations

import os
import re
from dataclasses import dataclass, field, fields, is_dataclass
from pathlib import Path
from typing import Any

from churnml.errors import ChurnmlError
from churnml.names import FEATURE_FAMILIES, TARGETS

PARAMS_FILE = "params.yaml"
CONF_DIR = "conf"
_SIBLING = re.compile(r"\$\{\.(\w+)\}")  # a relative interpolation of a sibling key
SCHEMA_NAME = (
    "churnml_schema"  # the dataclasses in Hydra's ConfigStore: the head of conf/config.yaml's defaults
)
# The values of the choice parameters, here once: the schema's bounds and the components' own checks read them.
FEATURE_ENGINES = ("duckdb", "spark")
CLASS_WEIGHTS = ("balanced", "none")
CALIBRATIONS = ("sigmoid", "isotonic", "none")


@dataclass(frozen=True)
class Bounds:
    """What a parameter may hold beyond its type, declared on its field (:func:`param`).

    The type is the schema's (OmegaConf refuses ``accounts=abc``); these are the values no stage can use
    (``simulator.accounts=-5``, ``model.calibration=platt``, ``scoring.as_of=2025-13-01``). They are checked
    by :func:`validate_config`, so by every stage's load and by the check_params gate, which runs first: a bad
    value stops ``dvc repro`` / ``dvc exp run`` before DVC has deleted any stage's outputs. A list's items
    and a mapping's values are each checked.
    """

    low: float | None = None
    high: float | None = None
    low_open: bool = False  # ``low`` itself is refused
    high_open: bool = False
    choices: tuple[str, ...] = ()
    date: bool = False  # an ISO date (YYYY-MM-DD)
    empty: bool = False  # "" is allowed too (a date whose default is empty: "the data's own")
    frequency: bool = False  # a pandas offset alias (MS, W-MON, ...)

    def problem(self, value: Any) -> str:
        """Why ``value`` is refused, or ``""``."""
        if self.choices:
            return "" if value in self.choices else f"must be one of {', '.join(self.choices)}"
        if self.frequency:
            from pandas.tseries.frequencies import to_offset

            try:
                to_offset(str(value))
            except ValueError:
                return "must be a pandas frequency alias (MS: month starts, W-MON: Mondays, ...)"
            return ""
        if self.date:
            import datetime

            if value == "" and self.empty:
                return ""
            try:
                datetime.date.fromisoformat(str(value))
            except ValueError:
                return f"must be a date (YYYY-MM-DD){' or empty' if self.empty else ''}"
            return ""
        low_ok = self.low is None or (value > self.low if self.low_open else value >= self.low)
        high_ok = self.high is None or (value < self.high if self.high_open else value <= self.high)
        return "" if low_ok and high_ok else f"must be {self}"

    def __str__(self) -> str:
        if self.low is not None and self.high is not None:
            return f"in {'(' if self.low_open else '['}{self.low:g}, {self.high:g}{')' if self.high_open else ']'}"
        if self.low is not None:
            return f"{'>' if self.low_open else '>='} {self.low:g}"
        return f"{'<' if self.high_open else '<='} {self.high:g}"


def param(default: Any = None, *, factory: Any = None, **bounds: Any) -> Any:
    """A schema field with its default (or ``factory``) and its :class:`Bounds`."""
    if bounds.get("date"):
        bounds["empty"] = default == ""
    meta = {"bounds": Bounds(**bounds)}
    if factory is not None:
        return field(default_factory=factory, metadata=meta)
    return field(default=default, metadata=meta)


def check_bounds(section: Any, prefix: str = "") -> None:
    """Raise, naming the key, at the first parameter of ``section`` (a config dataclass, walked into its
    sections) whose value its :class:`Bounds` refuse."""
    for f in fields(section):
        value, key = getattr(section, f.name), f"{prefix}{f.name}"
        if is_dataclass(value):
            check_bounds(value, f"{key}.")
            continue
        bounds = f.metadata.get("bounds")
        if bounds is None:
            continue
        items = value.values() if isinstance(value, dict) else value if isinstance(value, list) else [value]
        for item in items:
            problem = bounds.problem(item)
            if problem:
                shown = repr(item) if item is value else f"{item!r} (in {value!r})"
                raise ChurnmlError(f"invalid configuration at {key!r}: {shown} {problem}")


@dataclass
class PathsConfig:
    """Where each stage reads and writes, relative to the repository root.

    Paths inside another path's folder are interpolations (``${.models}/registry``): composed by Hydra and
    resolved by :func:`load_config`, so moving ``metrics`` moves ``explain_metrics`` and ``monitor_metrics``.
    """

    params_check: str = "data/params.checked"  # check_params' stamp: every stage depends on it
    raw: str = "data/raw"
    truth: str = "data/truth"
    validated: str = "data/validated"
    quarantine: str = "data/quarantine"
    spine: str = "data/spine.parquet"
    labels: str = "data/labels.parquet"
    features: str = "data/features.parquet"
    models: str = "models"  # one folder per target: <models>/<target>
    registry: str = "${.models}/registry"  # evaluate's record of each registration: <registry>/<target>.json
    metrics: str = "metrics"  # evaluate's <metrics>/<target>.json
    plots: str = "plots"  # evaluate's <plots>/<target>/ tables
    explanations: str = "data/explanations.parquet"
    explanations_csv: str = "data/explanations.csv"  # the same rows, for spreadsheets
    explain_plots: str = "${.plots}/explain"
    explain_metrics: str = "${.metrics}/explain.json"
    reasons: str = "data/reasons.parquet"
    scoring_features: str = "data/scoring_features.parquet"
    scores: str = "data/scores.parquet"
    call_list: str = "data/call_list.parquet"  # this week's call list (the weekly_call_list rows)
    tiers: str = "data/tiers.json"  # the tier cut-offs the score stage used, and how they were chosen
    # what the warehouse held after the score stage wrote: monitor's dependency (the warehouse is outside DVC)
    score_watermark: str = "data/score_watermark.json"
    # the score stage's checks of its scoring: tier counts, calls per CSM vs capacity, the team list's top
    score_metrics: str = "${.metrics}/score.json"
    monitor_metrics: str = "${.metrics}/monitor.json"
    monitor_plots: str = "${.plots}/monitor"
    reports: str = "reports"
    survival_model: str = "${.models}/survival"
    # the survival stage's record of its MLflow registration (as evaluate's <registry>/<target>.json; not in that
    # folder, which explain depends on to follow the 90-day champions)
    survival_registry: str = "${.models}/survival_registry.json"
    survival_metrics: str = "${.metrics}/survival.json"
    survival_plots: str = "${.plots}/survival"
    account_survival: str = "data/account_survival.parquet"
    revenue_forecast: str = "data/revenue_forecast.parquet"

    def __post_init__(self) -> None:
        # Built by Hydra/OmegaConf the interpolations arrive resolved; built in Python (``PathsConfig()``,
        # ``Config()`` in tests and notebooks) they would stay literal, so the sibling references resolve here.
        for name, value in vars(self).items():
            if isinstance(value, str) and "${." in value:
                setattr(self, name, _SIBLING.sub(lambda m: str(getattr(self, m.group(1))), value))

    # DVC cannot look a key up by ${item} (no nested interpolation, treeverse/dvc#5167), so the per-target
    # paths are <folder>/<target> on both sides; tests/test_dvc_deps.py checks dvc.yaml against these.
    def model(self, target: str) -> str:
        """The folder of one target's trained model."""
        return f"{self.models}/{target}"

    def registry_record(self, target: str) -> str:
        """The JSON record of one target's latest registration (evaluate's output)."""
        return f"{self.registry}/{target}.json"

    def target_metrics(self, target: str) -> str:
        """One target's DVC metrics file."""
        return f"{self.metrics}/{target}.json"

    def target_plots(self, target: str) -> str:
        """The folder of one target's DVC plot tables."""
        return f"{self.plots}/{target}"


@dataclass
class DataConfig:
    """Where the input tables come from: the simulator, or a folder the user brings."""

    source: str = param("simulator", choices=("simulator", "folder"))
    input_dir: str = "data/raw"  # read by validate when source=folder
    quarantine: bool = False  # write bad rows aside (counts reported) instead of failing
    # earlier dates are bad rows (a 1900 start date is a placeholder)
    min_date: str = param("1990-01-01", date=True)
    max_date: str = param("", date=True)  # later dates are bad rows; empty: the run's wall-clock date (UTC)
    memory_limit: str = "4GB"  # DuckDB's, when validating and when scoring reads the input (out of core)
    # dvc.yaml's generate stage is `foreach: ${data.generate}`: [simulator] runs it (generate@simulator),
    # [] (every folder source) leaves the simulator out of the DAG
    generate: list[str] = field(default_factory=lambda: ["simulator"])
    # what evaluate and explain depend on for the oracle: the simulator's truth; a folder source names its
    # input folder instead (DVC needs an existing path; nothing of it is read as truth)
    truth_dep: str = "${paths.truth}"


@dataclass
class SimulatorConfig:
    """The synthetic SaaS portfolio written by ``churnml generate`` (the default data)."""

    accounts: int = param(5000, low=1)
    seed: int = param(42, low=0)
    # the data then ends in November: scoring as of a normal week, not the holidays
    start_date: str = param("2023-12-01", date=True)
    months: int = param(24, low=1)
    # Horizon of the true probabilities written to data/truth/; composed as ${labels.horizon_days}.
    label_horizon_days: int = param(90, low=1)
    # A behaviour shift after this date (concept drift); empty = none.
    drift_date: str = param("", date=True)
    drift_strength: float = param(0.0, low=0)


@dataclass
class SpineConfig:
    """Observation dates of the training spine."""

    frequency: str = param("MS", frequency=True)  # pandas offset alias: MS monthly, W-MON weekly
    # empty: first full frequency period after the data starts plus min_history_days
    start: str = param("", date=True)
    end: str = param("", date=True)  # empty: the day after the data ends
    min_history_days: int = param(90, low=0)


@dataclass
class LabelsConfig:
    """Label definitions (DESIGN.md, Interfaces)."""

    horizon_days: int = param(90, low=1)
    grace_days: int = param(30, low=0)
    expansion_threshold: float = param(0.10, low=0, low_open=True)
    contraction_threshold: float = param(0.10, low=0, high=1, low_open=True, high_open=True)


@dataclass
class FeaturesConfig:
    """Feature families and windows."""

    engine: str = param("duckdb", choices=FEATURE_ENGINES)
    windows_days: list[int] = param(factory=lambda: [7, 30, 90], low=1)
    trend_window_days: int = param(30, low=1)
    baseline_weeks: int = param(12, low=2)
    active_users_metric: str = "active_users"
    key_feature_prefix: str = "feature_"
    onboarding_days: int = param(90, low=1)
    sponsor_left_window_days: int = param(90, low=1)
    families: list[str] = param(factory=lambda: list(FEATURE_FAMILIES), choices=FEATURE_FAMILIES)
    memory_limit: str = "4GB"
    threads: int = param(0, low=0)  # 0: DuckDB's default (all cores)


@dataclass
class SplitConfig:
    """Out-of-time split: train < validation < test, purged by one label horizon."""

    test_periods: int = param(3, low=1)
    validation_periods: int = param(3, low=1)
    purge_days: int = param(90, low=0)  # composed as ${labels.horizon_days}
    # Fixed dates instead of "the latest periods" (a published protocol to reproduce); empty = unused.
    # test = the labeled cutoffs on or after this day (not the latest test_periods)
    test_start: str = param("", date=True)
    test_end: str = param("", date=True)  # ... and before this day
    # train and validation cutoffs lie before this day (validation = its last periods)
    train_end: str = param("", date=True)


@dataclass
class LightGBMConfig:
    """LightGBM hyperparameters (sweepable with ``dvc exp run -S model.lgbm.x=...``)."""

    n_estimators: int = param(600, low=1)
    learning_rate: float = param(0.03, low=0, low_open=True)
    num_leaves: int = param(31, low=2)
    min_child_samples: int = param(50, low=1)
    subsample: float = param(0.8, low=0, high=1, low_open=True)
    subsample_freq: int = param(1, low=0)
    colsample_bytree: float = param(0.8, low=0, high=1, low_open=True)
    reg_lambda: float = param(1.0, low=0)
    early_stopping_rounds: int = param(50, low=0)  # 0: no early stopping
    # LightGBM's threads; 0: OpenMP's default, OMP_NUM_THREADS if set (a scheduler's or Spark task's limit,
    # `make test`'s one per worker), else every core. deterministic=True keeps the model the same either way.
    n_jobs: int = param(0, low=0)


@dataclass
class ModelConfig:
    """Training of both targets."""

    targets: list[str] = param(factory=lambda: list(TARGETS), choices=TARGETS)
    seed: int = param(42, low=0)
    class_weight: str = param("balanced", choices=CLASS_WEIGHTS)
    # sigmoid (Platt) by default: isotonic's flat steps give many accounts zero probability points,
    # and so no reasons to show a CSM (see churnml.explain.contributions)
    calibration: str = param("sigmoid", choices=CALIBRATIONS)
    lgbm: LightGBMConfig = field(default_factory=LightGBMConfig)
    # feature name -> +1 (risk rises with it) / -1; applied to the churn model only
    monotone_churn: dict[str, int] = field(default_factory=dict)
    # Optuna search of the LightGBM parameters, nested (churnml.modeling.tuning): off while both are 0; a budget
    # of trials and/or seconds (whichever ends first) turns it on
    optuna_trials: int = param(0, low=0)
    optuna_seconds: float = param(0.0, low=0)
    # the candidates the served model is chosen from, by ROC-AUC on the validation period (or on inner
    # folds in tabular mode): lightgbm always; logistic (a plain L2 logistic regression); blend (their mean
    # log-odds, chosen only when it beats the better single model by more than blend_margin)
    candidates: list[str] = param(
        factory=lambda: ["lightgbm", "logistic", "blend"], choices=("lightgbm", "logistic", "blend")
    )
    blend_margin: float = param(0.001, low=0)
    # one-standard-error rule (Breiman et al. 1984; Hastie et al., ESL 7.10): the logistic regression, the
    # simplest candidate, is served unless the leader beats it by more than this many standard errors of the
    # paired ROC-AUC difference (DeLong) on the rows that choose; 0: the higher ROC-AUC wins outright
    selection_se: float = param(1.0, low=0)
    # tabular mode without dates: inner folds that pick the trees, the model and fit the calibration
    crossfit_folds: int = param(5, low=2)
    # out of time: after the validation period has stopped the trees, chosen the model and fitted the calibration
    # (all on train-period fits), serve a refit on train + validation (trees scaled by the row ratio). The
    # validation months are the latest labeled ones, the closest to what is scored; without the refit churnml
    # lost to plain models fitted on them (churnml.modeling.model.fit_rows)
    refit_on_validation: bool = True
    # numeric features whose |correlation| on the training rows exceeds this are one reason (their points
    # summed; churnml.modeling.redundancy); 1.0 turns the grouping off
    redundancy_threshold: float = param(0.95, low=0, high=1, low_open=True)


@dataclass
class HealthScoreConfig:
    """Rule-based health score baseline: weights on standardised signals (positive = healthier)."""

    weights: dict[str, float] = field(
        default_factory=lambda: {
            "usage_logins_trend_30d": 1.0,
            "adoption_license_utilisation_30d": 1.5,
            "adoption_breadth_30d": 1.0,
            "support_high_priority_count_30d": -1.0,
            "nps_score_latest": 1.0,
            "contacts_sponsor_left_90d": -1.0,
        }
    )


@dataclass
class EvaluationConfig:
    """Metrics and their business parameters."""

    top_fraction: float = param(0.10, low=0, high=1, low_open=True)
    csm_capacity_k: int = param(100, low=1)
    # Expected maximum profit (Verbraken et al. 2013): retention offer cost, contact cost,
    # acceptance rate gamma ~ Beta(alpha, beta)
    emp_offer_cost_fraction: float = param(0.1, low=0)
    emp_contact_cost: float = param(50.0, low=0)
    emp_alpha: float = param(6.0, low=0, low_open=True)
    emp_beta: float = param(14.0, low=0, low_open=True)
    promotion_metric: str = "roc_auc"
    # the new model must beat the champion by more than this: a tie, or noise in the 4th decimal, keeps it
    promotion_margin: float = 0.002
    health_score: HealthScoreConfig = field(default_factory=HealthScoreConfig)


@dataclass
class TiersConfig:
    """Risk tiers and the play a CSM runs per tier and touch model.

    Tiers are relative to the portfolio: ``top_shares`` gives, per tier, the cumulative share of accounts
    from the riskiest down (0.10 = the riskiest 10%; multiples of 0.1 are exact, others interpolated between deciles), read off the churn model's calibrated probabilities on
    its validation period, so the cut-offs are probabilities chosen on validation data and every tier holds
    about its share of a portfolio like the validation one (never empty by construction). The lowest tier
    (absent from ``top_shares``) holds the rest. ``expansion_top_share`` flags "likely to expand" the same way.
    ``thresholds`` are fixed probabilities used only for a model that carries no validation reference
    (tabular mode).
    """

    top_shares: dict[str, float] = param(
        factory=lambda: {"critical": 0.10, "high": 0.25, "medium": 0.50},
        low=0,
        high=1,
        low_open=True,
        high_open=True,
    )
    expansion_top_share: float = param(0.10, low=0, high=1, low_open=True, high_open=True)
    thresholds: dict[str, float] = field(
        default_factory=lambda: {"critical": 0.5, "high": 0.25, "medium": 0.1, "low": 0.0}
    )
    plays: dict[str, dict[str, str]] = field(
        default_factory=lambda: {
            "critical": {
                "high_touch": "Executive sponsor call this week; build a save plan with the account team",
                "low_touch": "CSM call within 5 days; review adoption gaps and offer a success plan",
                "tech_touch": "Trigger win-back sequence and route to a pooled CSM",
            },
            "high": {
                "high_touch": "Schedule a value review (QBR) and re-engage the champion",
                "low_touch": "Targeted adoption webinar invite and a CSM check-in",
                "tech_touch": "In-app guidance on unused key features",
            },
            "medium": {
                "high_touch": "Check renewal plan and usage trend at next touch",
                "low_touch": "Add to next 1:N adoption campaign",
                "tech_touch": "Automated best-practice email series",
            },
            "low": {
                "high_touch": "Business as usual; look for expansion",
                "low_touch": "Business as usual",
                "tech_touch": "Business as usual",
            },
        }
    )


@dataclass
class DriftConfig:
    """Population stability index thresholds for scoring's drift guard.

    Any input or score past ``psi_warn`` is reported; a score distribution past ``psi_fail`` or a single
    input past ``feature_psi_fail`` stops the run before anything is written. Single inputs get a looser
    bound: some drift by construction (windows truncated at the start of the history), while a broken
    feed (a metric renamed, a unit changed) moves them far past it.
    """

    psi_warn: float = param(0.1, low=0, low_open=True)
    psi_fail: float = param(0.5, low=0, low_open=True)
    feature_psi_fail: float = param(2.0, low=0, low_open=True)
    # Input bounds per feature family or glob of feature names (the most specific match wins over
    # feature_psi_fail). Baseline-deviation features (z-scores of a short window against the account's own
    # trailing weeks) move with the calendar: a year-end or holiday dip shifts every account at once, so
    # their PSI against a training period of ordinary weeks runs far past the input bound on a sound feed.
    feature_psi_fail_by: dict[str, float] = param(
        factory=lambda: {"usage_*_zscore_*": 10.0}, low=0, low_open=True
    )
    bins: int = param(10, low=2)


@dataclass
class CallListConfig:
    """This week's call list: who each CSM calls, ranked by the rule in the README, within capacity."""

    capacity_per_csm: int = param(8, low=0)  # calls per named CSM per week
    # calls per week for accounts without a named CSM (the pooled team)
    pooled_capacity: int = param(20, low=0)
    renewal_soon_days: int = param(30, low=0)  # a term end this close makes a renewal urgent
    # "renewals that matter": annual/multi-year term ends this close
    renewal_window_days: int = param(90, low=0)
    # a risk rise of at least this (probability) since the last scoring counts
    rise_points: float = param(0.02, low=0, high=1)
    due_days: int = param(7, low=0)  # a call is due this many days after the as-of
    renewal_rescue_play: str = (
        "Renewal rescue: call the sponsor this week, confirm the renewal decision and clear what blocks it"
    )


@dataclass
class ScoringConfig:
    """Batch scoring."""

    as_of: str = param("", date=True)  # empty: the day after the data ends
    model_alias: str = "champion"
    chunk_size: int = param(50000, low=1)
    top_reasons: int = param(3, low=1)
    tiers: TiersConfig = field(default_factory=TiersConfig)
    calls: CallListConfig = field(default_factory=CallListConfig)
    # a driver moving the probability less than this is not shown as a reason
    min_reason_points: float = param(0.005, low=0, high=1)
    drift: DriftConfig = field(default_factory=DriftConfig)


@dataclass
class WarehouseConfig:
    """Where scores go (any SQLAlchemy URL; empty = the DuckDB file below)."""

    url: str = ""
    duckdb_path: str = "data/warehouse.duckdb"
    schema: str = ""
    scores_table: str = "churn_scores"
    explanations_table: str = "churn_explanations"
    runs_table: str = "score_runs"
    performance_table: str = "score_performance"
    call_list_table: str = "weekly_call_list"
    # what `churnml forecast` writes (churnml.contract.tables: ACCOUNT_SURVIVAL_COLUMNS, ...)
    account_survival_table: str = "account_survival"
    revenue_forecast_table: str = "revenue_forecast"
    forecast_runs_table: str = "forecast_runs"
    # how long a writer waits for another writer of the same file/as-of (0: fail)
    lock_timeout_s: float = param(60.0, low=0)


@dataclass
class MonitorConfig:
    """Realised-performance monitoring and its retrain advice (reported, never acted on)."""

    # realised ROC-AUC this far below the test ROC-AUC at training: warn
    auc_drop_warn: float = param(0.03, low=0)
    auc_drop_retrain: float = param(0.05, low=0)  # ... this far below: recommend retraining
    ece_warn: float = param(0.05, low=0)
    ece_retrain: float = param(0.10, low=0)
    psi_warn: float = param(0.25, low=0, low_open=True)  # score PSI against the training reference
    min_labeled: int = param(200, low=1)  # matured rows needed (pooled) before judging
    min_positives: int = param(10, low=1)
    # latest matured as-ofs pooled for the advice (the test period's length)
    decision_periods: int = param(3, low=1)
    calibration_bins: int = param(10, low=2)
    # resamples of the ROC-AUC interval and of the ECE reached by chance
    bootstrap: int = param(200, low=1)
    # a drop must also exceed z standard errors (test and realised); 0: off
    significance_z: float = param(1.96, low=0)
    seed: int = param(0, low=0)


@dataclass
class TrackingConfig:
    """MLflow tracking (MLFLOW_TRACKING_URI overrides the local store)."""

    experiment: str = "churnml"
    store: str = "mlflow.db"
    artifacts: str = "mlartifacts"
    register: bool = True
    # the git branches whose workspace runs (`dvc repro`, `make run`) may move the champion alias; a
    # `dvc exp run` (queued, temporary or in the workspace) never does: it registers candidates
    promote_branches: list[str] = field(default_factory=lambda: ["main", "master"])


@dataclass
class ReportConfig:
    """The portfolio report's history: how far back its KPI and usage charts look."""

    kpi_months: int = param(24, low=1)  # complete months of KPIs (churn, GRR, NRR, ARR) before the as-of
    usage_weeks: int = param(26, low=1)  # full weeks of the portfolio's usage chart before the as-of


@dataclass
class SurvivalConfig:
    """Time to churn: the discrete-time hazard model's horizon, its out-of-time test and the baselines."""

    horizon_months: int = param(12, low=1)  # the curve: S(1..horizon) per account
    test_periods: int = param(3, low=1)  # the latest cutoffs whose whole horizon is observed
    # accounts whose rows stop boosting (early stopping), not fit it
    holdout_share: float = param(0.2, low=0, high=1, low_open=True, high_open=True)
    # At most this many accounts' spells train the hazard model and the Cox and Kaplan-Meier baselines (a
    # seeded hash picks them; 0: every account). An account gives a spell at every cutoff and up to a row per
    # month of each: the rows grow as accounts x cutoffs x months (5,000 accounts: about a million rows;
    # 100,000 would need tens of GB), while its spells at consecutive cutoffs are near-copies of each other.
    # A sample of whole accounts is an unbiased sample of the book; the test, the backtest, the
    # right-customer analysis and the as-of curves still use every account.
    max_train_accounts: int = param(10_000, low=0)
    cox_alpha: float = param(1.0, low=0)  # ridge penalty of the Cox baseline (scikit-survival's alpha)
    # The champion rule of the registered survival model (churnml.survival.registry): the integrated Brier
    # score over the horizon by default (lower is better), the one metric that judges the whole curve's
    # probabilities, which the revenue forecast consumes; Harrell's or Uno's C (harrell_c, uno_c) judge only
    # the ranking. The new version must beat the champion by more than the margin (0.0005: about 0.7% of the
    # default data's 0.071, a tenth of the survival model's lead over Kaplan-Meier there).
    promotion_metric: str = "integrated_brier"
    promotion_margin: float = 0.0005
    # The revenue forecast's monthly ARR moves (churnml.survival.forecast): learned and drawn per ARR band as
    # well as segment and tenure band, the bands' edges being these quantiles of the book's ARR at the as-of
    # (larger accounts move more often by smaller ratios; empty: no ARR bands); and the uncertainty of the
    # learned moves themselves: each Monte Carlo draw takes its rates from one of this many bootstrap
    # resamples of the learning accounts (0: the rates as estimated, intervals carry the accounts' own
    # randomness only).
    forecast_arr_quantiles: list[float] = param(
        factory=lambda: [0.25, 0.5, 0.75], low=0, high=1, low_open=True, high_open=True
    )
    forecast_rate_draws: int = param(200, low=0)


@dataclass
class Config:
    """The whole composed configuration."""

    paths: PathsConfig = field(default_factory=PathsConfig)
    data: DataConfig = field(default_factory=DataConfig)
    simulator: SimulatorConfig = field(default_factory=SimulatorConfig)
    spine: SpineConfig = field(default_factory=SpineConfig)
    labels: LabelsConfig = field(default_factory=LabelsConfig)
    features: FeaturesConfig = field(default_factory=FeaturesConfig)
    split: SplitConfig = field(default_factory=SplitConfig)
    model: ModelConfig = field(default_factory=ModelConfig)
    evaluation: EvaluationConfig = field(default_factory=EvaluationConfig)
    scoring: ScoringConfig = field(default_factory=ScoringConfig)
    warehouse: WarehouseConfig = field(default_factory=WarehouseConfig)
    monitor: MonitorConfig = field(default_factory=MonitorConfig)
    tracking: TrackingConfig = field(default_factory=TrackingConfig)
    report: ReportConfig = field(default_factory=ReportConfig)
    survival: SurvivalConfig = field(default_factory=SurvivalConfig)


# Query parameters whose value is a secret (``?password=...``, ``?sslpassword=...``, ``?api_key=...``).
SECRET_QUERY_KEYS = ("password", "passwd", "pwd", "secret", "token", "api_key", "apikey", "private_key")
_USERINFO_PASSWORD = re.compile(r"^[A-Za-z][A-Za-z0-9+.\-]*://[^/@?#\s]*:[^/@?#\s]*@")
_SECRET_QUERY = re.compile(rf"(?i)[?&;][^=&;#]*(?:{'|'.join(SECRET_QUERY_KEYS)})[^=&;#]*=[^&;#]")


def has_password(value: str) -> bool:
    """Whether a URL carries a password: ``user:pass@`` in its authority, or a secret query parameter."""
    return bool(_USERINFO_PASSWORD.match(value) or ("://" in value and _SECRET_QUERY.search(value)))


# Where each URL setting's secret belongs instead of a file that git and DVC keep.
_URL_ENV = {"warehouse.url": "CHURNML_WAREHOUSE_URL"}


def _refuse_passwords(raw: Any, where: str, prefix: str = "") -> None:
    """Refuse any config value that is a URL with a password, naming the key and the environment variable.

    params.yaml is tracked by git and hashed by DVC (dvc.lock), and every stage logs its section to MLflow:
    a password there would be kept forever. The URL goes in an environment variable instead.
    """
    if isinstance(raw, dict):
        for key, value in raw.items():
            _refuse_passwords(value, where, f"{prefix}.{key}" if prefix else str(key))
    elif isinstance(raw, list | tuple):
        for i, value in enumerate(raw):
            _refuse_passwords(value, where, f"{prefix}[{i}]")
    elif isinstance(raw, str) and has_password(raw):
        env = _URL_ENV.get(prefix, "an environment variable")
        raise ChurnmlError(
            f"{prefix} in {where} holds a password, which git, DVC (params.yaml, dvc.lock) and MLflow would "
            f"keep: remove it there and pass the URL in {env} instead"
        )


class StaleParamsError(ChurnmlError):
    """params.yaml no longer matches what conf/ composes to."""


def repo_root(start: Path | None = None) -> Path:
    """The repository the stage runs in: the nearest folder upwards holding ``dvc.yaml`` and ``conf/``, else
    the working directory. Inside a temporary or queued ``dvc exp run`` that is the experiment's own copy
    (its data and models stay there); the MLflow store alone follows ``DVC_ROOT`` to the parent repository
    (:func:`churnml.modeling.tracking.tracking_uri`)."""
    here = (start or Path.cwd()).resolve()
    for folder in (here, *here.parents):
        if (folder / "dvc.yaml").is_file() and (folder / CONF_DIR).is_dir():
            return folder
    return here


def store_root(root: Path) -> Path:
    """Where the tracking store lives: DVC's ``DVC_ROOT`` (the parent repository, even in temporary and queued
    experiments, so every run lands in one store), else ``root``."""
    env = os.environ.get("DVC_ROOT")
    return Path(env) if env else Path(root)


def validate_config(raw: dict[str, Any] | Any) -> Config:
    """Merge a plain mapping into the dataclass schema; unknown keys and wrong types fail, naming the key
    (and the closest valid key for an unknown one)."""
    import difflib

    from omegaconf import OmegaConf
    from omegaconf.errors import ConfigKeyError, OmegaConfBaseException

    try:
        merged = OmegaConf.merge(OmegaConf.structured(Config), raw)
        cfg: Config = OmegaConf.to_object(merged)  # type: ignore[assignment]
    except OmegaConfBaseException as exc:
        key = getattr(exc, "full_key", "") or ""
        msg = str(exc).splitlines()[0]
        hint = ""
        if isinstance(exc, ConfigKeyError) and key:
            near = difflib.get_close_matches(key, list(_schema_keys()), n=1, cutoff=0.6)
            hint = f"; did you mean {near[0]!r}?" if near else ""
        raise ChurnmlError(f"invalid configuration{f' at {key!r}' if key else ''}: {msg}{hint}") from None
    check_bounds(cfg)
    if (cfg.data.source == "simulator") != bool(cfg.data.generate):
        raise ChurnmlError(
            f"invalid configuration at 'data.generate': {cfg.data.generate} with data.source={cfg.data.source!r} "
            "(the simulator runs exactly when it is the source)"
        )
    return cfg


def register_schema() -> None:
    """Put :class:`Config` in Hydra's ConfigStore as ``churnml_schema`` (idempotent).

    ``conf/config.yaml`` composes on top of it; DVC gets it from ``hydra_plugins.churnml_schema``.
    """
    from hydra.core.config_store import ConfigStore

    ConfigStore.instance().store(name=SCHEMA_NAME, node=Config)


def _compose(conf_dir: Path, overrides: list[str] | None) -> Any:
    """Compose ``conf/`` on the schema and resolve it in place, as DVC does before dumping params.yaml."""
    from hydra import compose as hydra_compose
    from hydra import initialize_config_dir
    from hydra.core.global_hydra import GlobalHydra
    from hydra.errors import HydraException
    from omegaconf import OmegaConf
    from omegaconf.errors import OmegaConfBaseException

    register_schema()
    GlobalHydra.instance().clear()
    try:
        with initialize_config_dir(str(conf_dir.resolve()), version_base=None):
            cfg = hydra_compose(config_name="config", overrides=list(overrides or []))
        OmegaConf.resolve(cfg)
    except (HydraException, OmegaConfBaseException) as exc:
        # Hydra's line names the override, its direct cause says what is wrong with it ("Value 'abc' of type
        # 'str' could not be converted to Integer"): the first line of both (deeper causes hold OmegaConf's
        # unformatted templates, "Value '$VALUE' ...")
        lines = [
            str(e).strip().splitlines()[0] for e in (exc, exc.__cause__) if e is not None and str(e).strip()
        ]
        raise ChurnmlError(f"cannot compose {conf_dir}: {': '.join(dict.fromkeys(lines))}") from None
    finally:
        GlobalHydra.instance().clear()
    return cfg


def compose(conf_dir: Path, overrides: list[str] | None = None) -> dict[str, Any]:
    """Compose ``conf/`` with Hydra into a plain, resolved mapping."""
    from omegaconf import OmegaConf

    return OmegaConf.to_container(_compose(conf_dir, overrides), resolve=True)  # type: ignore[return-value]


_OVERRIDES_LINE = "# churnml params "


def _schema_keys(cls: type | None = None, prefix: str = "") -> dict[str, bool]:
    """Every dotted key of the schema, mapped to whether it is a free-form mapping (new keys allowed below)."""
    import dataclasses
    import typing

    cls = cls or Config
    out: dict[str, bool] = {}
    hints = typing.get_type_hints(cls)
    for f in dataclasses.fields(cls):
        key = f"{prefix}{f.name}"
        kind = hints[f.name]
        if dataclasses.is_dataclass(kind):
            out[key] = False
            out |= _schema_keys(kind, f"{key}.")
        else:
            out[key] = typing.get_origin(kind) is dict
    return out


def check_overrides(conf_dir: Path, overrides: list[str] | None) -> None:
    """Refuse an override whose key or group option does not exist, naming the closest valid one.

    A key is valid when the schema has it, or when it lies under a free-form mapping of the schema
    (``scoring.tiers.thresholds.critical``); ``group=option`` needs ``conf/<group>/<option>.yaml``.
    """
    import difflib

    keys = _schema_keys()
    groups = {
        d.name: sorted(f.stem for f in d.glob("*.yaml")) for d in Path(conf_dir).iterdir() if d.is_dir()
    }
    for override in overrides or []:
        key, sep, value = override.partition("=")
        key = key.lstrip("+~").strip()
        if not sep or not key:
            continue  # Hydra's own grammar error is clear enough
        if key in groups and value.strip() not in ("", "null"):
            if value.strip() not in groups[key]:
                near = difflib.get_close_matches(value.strip(), groups[key], n=1)
                hint = f"did you mean {key}={near[0]}?" if near else f"options: {', '.join(groups[key])}"
                raise ChurnmlError(f"override {override!r}: {key} has no option {value.strip()!r}; {hint}")
            continue
        parts = key.split(".")
        known = key in keys or any(keys.get(".".join(parts[:i])) for i in range(1, len(parts)))
        if not known:
            near = difflib.get_close_matches(key, list(keys), n=1, cutoff=0.6)
            hint = f"did you mean {near[0]!r}?" if near else "no key of the configuration is close"
            raise ChurnmlError(f"override {override!r}: unknown key {key!r}; {hint}")


def recorded_overrides(params_text: str) -> list[str]:
    """The overrides :func:`write_params` composed ``params.yaml`` with (its first line), else none."""
    import shlex

    first = params_text.split("\n", 1)[0]
    return shlex.split(first[len(_OVERRIDES_LINE) :]) if first.startswith(_OVERRIDES_LINE) else []


def write_params(root: Path, overrides: list[str] | None = None) -> Path:
    """Compose ``conf/`` (plus overrides) and write ``params.yaml``, validated first.

    The text is what DVC writes on ``dvc exp run`` (``OmegaConf.to_yaml`` of the resolved composition), so
    neither rewrites the other's file; with overrides, a first comment line records them
    (``# churnml params data=folder data.input_dir=DIR``), so that the freshness check of every stage
    composes exactly what was asked for.
    """
    import shlex

    from omegaconf import OmegaConf

    check_overrides(root / CONF_DIR, overrides)
    cfg = _compose(root / CONF_DIR, overrides)
    composed = OmegaConf.to_container(cfg, resolve=True)
    _refuse_passwords(composed, f"{CONF_DIR}/ (composed into {PARAMS_FILE})")
    validate_config(composed)
    out = root / PARAMS_FILE
    text = OmegaConf.to_yaml(cfg)
    if overrides:
        text = f"{_OVERRIDES_LINE}{shlex.join(overrides)}\n{text}"
    if not out.exists() or out.read_text(encoding="utf-8") != text:
        out.write_text(text, encoding="utf-8")
    return out


def _diff_keys(a: Any, b: Any, prefix: str = "") -> list[str]:
    if isinstance(a, dict) and isinstance(b, dict):
        out: list[str] = []
        for k in sorted(set(a) | set(b), key=str):
            out += _diff_keys(a.get(k), b.get(k), f"{prefix}.{k}" if prefix else str(k))
        return out
    return [] if a == b else [prefix or "<root>"]


def load_config(root: Path | None = None, *, check_fresh: bool = True) -> Config:
    """Load ``params.yaml`` from the repository root into :class:`Config`.

    With ``check_fresh`` (the default for stages) it refuses parameters that differ from what ``conf/``
    composes to, except inside ``dvc exp run``, where DVC has just composed them with the ``-S``
    overrides. Outside a repository with ``conf/``, the dataclass defaults are used.
    """
    import yaml

    root = root or repo_root()
    params = root / PARAMS_FILE
    conf = root / CONF_DIR
    if not conf.is_dir():
        return validate_config({})  # the defaults, interpolations resolved
    if not params.is_file():
        raise StaleParamsError(f"{PARAMS_FILE} is missing: run `make params` (or `dvc exp run`)")
    text = params.read_text(encoding="utf-8")
    try:
        raw = yaml.safe_load(text) or {}
    except yaml.YAMLError as exc:
        raise ChurnmlError(f"{params}: not valid YAML ({str(exc).splitlines()[0]})") from None
    _refuse_passwords(raw, PARAMS_FILE)  # e.g. composed by `dvc exp run`: refused before any stage work
    overrides = recorded_overrides(text)
    if check_fresh and not os.environ.get("DVC_EXP_NAME"):
        fresh = compose(conf, overrides)
        diff = _diff_keys(raw, fresh)
        if diff:
            shown = ", ".join(diff[:5]) + (" ..." if len(diff) > 5 else "")
            again = f"`churnml params {' '.join(overrides)}`" if overrides else "`make params`"
            raise StaleParamsError(
                f"{PARAMS_FILE} is stale against {CONF_DIR}/"
                f"{' plus its overrides' if overrides else ''} (differs at {shown}): "
                f"run {again} (or `dvc exp run`) before `dvc repro`"
            )
    return validate_config(raw)
