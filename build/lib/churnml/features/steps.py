"""What both feature engines share: the families enabled, their SQL steps in order, the columns they make and the tidy output frame."""

from __future__ import annotations

import logging
from collections.abc import Mapping, Sequence

import pandas as pd

from churnml.config import FeaturesConfig
from churnml.dataset.spine import to_cutoffs
from churnml.errors import ChurnmlError
from churnml.features import sql as fs
from churnml.features.sql import CATEGORICAL, SqlStep, Windows
from churnml.names import FEATURE_FAMILIES, KEYS

log = logging.getLogger(__name__)

ALWAYS_PRESENT = (
    "contract_arr",
    "contract_mrr",
    "contract_seats",
    "contract_days_to_renewal",
    "account_segment",
    "account_touch_model",
)
EXAMPLE_METRICS = (
    "active_users",
    "logins",
    "api_calls",
    "feature_dashboards",
    "feature_reports",
    "feature_automations",
)
EXAMPLE_CSM_KINDS = ("call", "email", "meeting", "qbr", "onboarding_session")

# The typed view of each contract table: only the columns features read, dates as DATE.
_TYPED_COLUMNS: dict[str, str] = {
    "accounts": "CAST(account_id AS VARCHAR) AS account_id, segment, touch_model, industry, region",
    "subscriptions": (
        "CAST(account_id AS VARCHAR) AS account_id, CAST(subscription_id AS VARCHAR) AS subscription_id, plan, "
        "billing_period, CAST(start_date AS DATE) AS start_date, CAST(end_date AS DATE) AS end_date, "
        "CAST(mrr AS DOUBLE) AS mrr, CAST(seats AS DOUBLE) AS seats"
    ),
    "usage": (
        "CAST(account_id AS VARCHAR) AS account_id, CAST(date AS DATE) AS date, "
        "CAST(metric AS VARCHAR) AS metric, CAST(value AS DOUBLE) AS value"
    ),
    "support_tickets": (
        "CAST(account_id AS VARCHAR) AS account_id, CAST(created_at AS TIMESTAMP) AS created_at, "
        "CAST(resolved_at AS TIMESTAMP) AS resolved_at, priority, CAST(csat AS DOUBLE) AS csat"
    ),
    "nps_responses": (
        "CAST(account_id AS VARCHAR) AS account_id, CAST(response_id AS VARCHAR) AS response_id, "
        "CAST(responded_at AS TIMESTAMP) AS responded_at, CAST(score AS DOUBLE) AS score"
    ),
    "csm_activities": (
        "CAST(account_id AS VARCHAR) AS account_id, CAST(occurred_at AS TIMESTAMP) AS occurred_at, "
        "CAST(kind AS VARCHAR) AS kind"
    ),
    "contacts": (
        "CAST(account_id AS VARCHAR) AS account_id, role, CAST(start_date AS DATE) AS start_date, "
        "CAST(end_date AS DATE) AS end_date"
    ),
    "invoices": (
        "CAST(account_id AS VARCHAR) AS account_id, CAST(due_date AS DATE) AS due_date, "
        "CAST(paid_date AS DATE) AS paid_date"
    ),
}


def _spine_keys(spine: pd.DataFrame) -> pd.DataFrame:
    for col in KEYS:
        if col not in spine.columns:
            raise ChurnmlError(f"spine: missing column {col!r}")
    if len(spine) == 0:
        raise ChurnmlError("spine: no rows (no account is active at the cutoffs)")
    to_cutoffs(spine["cutoff"].unique())
    if spine.duplicated(list(KEYS)).any():
        raise ChurnmlError("spine: duplicate (account_id, cutoff) rows")
    return pd.DataFrame(
        {
            "row_id": range(len(spine)),
            "account_id": spine["account_id"].astype(str).to_numpy(),
            "cutoff": pd.to_datetime(spine["cutoff"]).astype("datetime64[us]").to_numpy(),
        }
    )


def enabled_families(cfg: FeaturesConfig, present: set[str]) -> list[str]:
    """The configured families whose tables are present, in configuration order.

    Raises:
        ChurnmlError: on an unknown family name.
    """
    unknown = [f for f in cfg.families if f not in FEATURE_FAMILIES]
    if unknown:
        raise ChurnmlError(
            f"features.families: unknown {', '.join(unknown)} (known: {', '.join(FEATURE_FAMILIES)})"
        )
    out = []
    for family in dict.fromkeys(cfg.families):
        lacking = [t for t in fs.FAMILY_TABLES[family] if t not in present]
        if lacking:
            log.info("features: family %s skipped (no %s table)", family, ", ".join(lacking))
            continue
        out.append(family)
    return out


def family_steps(
    cfg: FeaturesConfig, csm_kinds: Mapping[str, str] | None = None, usage_start: str | None = None
) -> dict[str, list[SqlStep]]:
    """The SQL steps of every family that is not usage-derived, by family (usage steps need the metrics).

    Args:
        cfg: feature configuration.
        csm_kinds: CSM activity kind -> column token.
        usage_start: the first day of usage data (ISO), for the time to first value.
    """
    win = Windows.from_config(cfg)
    return {
        "account": [SqlStep("account_features", "account", fs.account_features_sql())],
        "contract": [
            SqlStep("contract_primary", "contract", fs.contract_primary_sql()),
            SqlStep("subscription_changes", "contract", fs.subscription_changes_sql()),
            SqlStep("contract_features", "contract", fs.contract_features_sql()),
        ],
        "adoption": [SqlStep("adoption_features", "adoption", fs.adoption_features_sql(win))],
        "lifecycle": [
            SqlStep(
                "lifecycle_features",
                "lifecycle",
                fs.lifecycle_features_sql(win, cfg.onboarding_days, usage_start),
            )
        ],
        "support": [SqlStep("support_features", "support", fs.support_features_sql())],
        "nps": [SqlStep("nps_features", "nps", fs.nps_features_sql())],
        "csm": [SqlStep("csm_features", "csm", fs.csm_features_sql(dict(csm_kinds or {})))],
        "contacts": [
            SqlStep("contacts_features", "contacts", fs.contacts_features_sql(cfg.sponsor_left_window_days))
        ],
        "invoices": [SqlStep("invoices_features", "invoices", fs.invoices_features_sql())],
    }


def all_steps(
    cfg: FeaturesConfig,
    metrics: Sequence[str] = EXAMPLE_METRICS,
    csm_kinds: Sequence[str] = EXAMPLE_CSM_KINDS,
) -> list[SqlStep]:
    """Every SQL definition, in execution order, for a given metric and kind list (for review and Spark)."""
    win = Windows.from_config(cfg)
    tokens = fs.column_tokens(list(metrics), "usage metric")
    keys = [m for m in tokens if m.startswith(cfg.key_feature_prefix)] or list(tokens)
    periods = fs.usage_periods(list(pd.date_range("2024-02-01", "2026-01-01", freq="MS")), win)
    steps = [
        SqlStep("contract_state", "contract", fs.contract_state_sql()),
        SqlStep("usage_agg", "usage", fs.usage_agg_sql(periods)),
        SqlStep("usage_metric_features", "usage", fs.usage_metric_sql(win, periods)),
        SqlStep("usage_account", "usage", fs.usage_account_sql(win, tokens, cfg.active_users_metric, keys)),
    ]
    kinds = fs.column_tokens(list(csm_kinds), "CSM activity kind")
    for family_list in family_steps(cfg, kinds, "2024-01-01").values():
        steps += family_list
    columns = {f: family_columns(f, cfg, kinds, tokens) for f in FEATURE_FAMILIES}
    steps.append(SqlStep("features", "all", fs.final_sql(columns)))
    return steps


def family_columns(
    family: str,
    cfg: FeaturesConfig,
    csm_kinds: Mapping[str, str] | None = None,
    metrics: Mapping[str, str] | None = None,
) -> list[str]:
    """The columns a family produces, in order (usage: for the given metric -> token map)."""
    win = Windows.from_config(cfg)
    t = win.trend
    if family == "usage":
        return fs.usage_feature_columns(win, dict(metrics or {}))
    kinds = list((csm_kinds or {}).values())
    fixed = {
        "account": ["account_segment", "account_touch_model", "account_industry", "account_region"],
        "adoption": [
            f"adoption_license_utilisation_{t}d",
            f"adoption_breadth_{t}d",
            f"adoption_active_days_{t}d",
        ],
        "lifecycle": [
            "lifecycle_tenure_days",
            "lifecycle_journey_stage",
            "lifecycle_time_to_first_value_days",
            "lifecycle_first_value_reached",
        ],
        "contract": [
            "contract_mrr",
            "contract_arr",
            "contract_seats",
            "contract_plan",
            "contract_billing_period",
            "contract_days_to_renewal",
            "contract_renewals_count",
            "contract_upgrades_count",
            "contract_downgrades_count",
            f"contract_mrr_change_{fs.CONTRACT_CHANGE_DAYS}d",
        ],
        "support": [
            *(f"support_tickets_count_{w}d" for w in fs.SUPPORT_WINDOWS),
            f"support_high_priority_count_{fs.SUPPORT_HIGH_WINDOW}d",
            f"support_resolution_hours_mean_{fs.SUPPORT_QUALITY_WINDOW}d",
            f"support_csat_mean_{fs.SUPPORT_QUALITY_WINDOW}d",
            "support_open_tickets_count",
        ],
        "nps": ["nps_score_latest", "nps_score_change", "nps_days_since_latest"],
        "csm": [
            f"csm_touches_count_{fs.CSM_WINDOW}d",
            *(f"csm_{k}_count_{fs.CSM_WINDOW}d" for k in kinds),
            "csm_days_since_last_touch",
        ],
        "contacts": [
            f"contacts_sponsor_left_{int(cfg.sponsor_left_window_days)}d",
            "contacts_days_since_sponsor_left",
            "contacts_champion_count",
        ],
        "invoices": [
            f"invoices_overdue_count_{fs.INVOICE_OVERDUE_WINDOW}d",
            f"invoices_days_late_mean_{fs.INVOICE_LATE_WINDOW}d",
        ],
    }
    return fixed[family]


def _tidy(frame: pd.DataFrame) -> pd.DataFrame:
    """The column contract, on the engine's own result (numbers arrive as DOUBLE).

    str ids and categoricals, datetime64[us] cutoff, float64 elsewhere.
    """
    frame["account_id"] = frame["account_id"].astype(str)
    frame["cutoff"] = pd.to_datetime(frame["cutoff"]).astype("datetime64[us]")
    for col in frame.columns[2:]:
        if col in CATEGORICAL:
            frame[col] = frame[col].astype("str")
        elif frame[col].dtype != "float64":
            frame[col] = pd.to_numeric(frame[col], errors="coerce").astype("float64")
    return frame
