"""The feature catalogue: what each feature name means (family, metric, aggregation, window) in plain words."""

from __future__ import annotations

import re
from collections.abc import Sequence
from dataclasses import dataclass

from churnml.config import FeaturesConfig
from churnml.errors import ChurnmlError
from churnml.features import sql as fs
from churnml.features.sql import CATEGORICAL
from churnml.features.steps import EXAMPLE_CSM_KINDS, EXAMPLE_METRICS, family_columns
from churnml.names import FEATURE_FAMILIES, KEYS

# --------------------------------------------------------------------------------------------- catalogue


@dataclass(frozen=True)
class FeatureInfo:
    """What a feature name means: its family, the metric measured, the aggregation and the window."""

    name: str
    family: str
    metric: str
    agg: str
    window_days: int | None
    description: str

    @property
    def categorical(self) -> bool:
        """Whether the feature is a category (str) rather than a number."""
        return self.name in CATEGORICAL


def _words(metric: str) -> str:
    if metric.startswith("feature_"):
        return metric[len("feature_") :].replace("_", " ") + " (key feature)"
    return metric.replace("_", " ")


# (pattern, family, metric, agg, description template); {m} the metric words, {w} the window in days
_PATTERNS: list[tuple[str, str, str, str, str]] = [
    (
        r"usage_(?P<metric>.+)_sum_(?P<w>\d+)d",
        "usage",
        "",
        "sum",
        "Total {m} over the {w} days before the cutoff",
    ),
    (
        r"usage_(?P<metric>.+)_mean_(?P<w>\d+)d",
        "usage",
        "",
        "mean",
        "Daily average of {m} over the {w} days before the cutoff (days without use count as 0)",
    ),
    (
        r"usage_(?P<metric>.+)_trend_(?P<w>\d+)d",
        "usage",
        "",
        "trend",
        "Change of {m} in the last {w} days against the {w} days before (ratio minus 1; empty when "
        "the earlier period had none)",
    ),
    (
        r"usage_(?P<metric>.+)_zscore_(?P<w>\d+)d",
        "usage",
        "",
        "zscore",
        "{m} in the last {w} days against the account's own baseline weeks before that, in standard "
        "deviations (empty without enough history or when the baseline never varies)",
    ),
    (
        r"usage_(?P<metric>.+)_days_since_last",
        "usage",
        "",
        "days_since_last",
        "Days since the last day with any {m} (empty if never)",
    ),
    (
        r"adoption_license_utilisation_(?P<w>\d+)d",
        "adoption",
        "license_utilisation",
        "ratio",
        "Average daily active users over the last {w} days divided by the contracted seats",
    ),
    (
        r"adoption_breadth_(?P<w>\d+)d",
        "adoption",
        "breadth",
        "count",
        "Number of key features used in the last {w} days",
    ),
    (
        r"adoption_active_days_(?P<w>\d+)d",
        "adoption",
        "active_days",
        "count",
        "Days with any product usage in the last {w} days",
    ),
    (
        r"csm_touches_count_(?P<w>\d+)d",
        "csm",
        "touches",
        "count",
        "Customer-success touches (calls, emails, meetings...) in the last {w} days",
    ),
    (
        r"csm_(?P<metric>.+)_count_(?P<w>\d+)d",
        "csm",
        "",
        "count",
        "Customer-success activities of kind '{m}' in the last {w} days",
    ),
    (
        r"contacts_sponsor_left_(?P<w>\d+)d",
        "contacts",
        "sponsor_left",
        "flag",
        "1 if an executive sponsor or champion left in the last {w} days",
    ),
    (
        r"support_tickets_count_(?P<w>\d+)d",
        "support",
        "tickets",
        "count",
        "Support tickets opened in the last {w} days",
    ),
    (
        r"support_high_priority_count_(?P<w>\d+)d",
        "support",
        "high_priority_tickets",
        "count",
        "High or urgent support tickets opened in the last {w} days",
    ),
    (
        r"support_resolution_hours_mean_(?P<w>\d+)d",
        "support",
        "resolution_hours",
        "mean",
        "Average hours to resolve the tickets resolved in the last {w} days",
    ),
    (
        r"support_csat_mean_(?P<w>\d+)d",
        "support",
        "csat",
        "mean",
        "Average satisfaction (CSAT, 1-5) given on tickets resolved in the last {w} days",
    ),
    (
        r"contract_mrr_change_(?P<w>\d+)d",
        "contract",
        "mrr",
        "change",
        "Relative change of monthly recurring revenue against {w} days earlier",
    ),
    (
        r"invoices_overdue_count_(?P<w>\d+)d",
        "invoices",
        "overdue_invoices",
        "count",
        "Invoices due in the last {w} days that were paid late or are still unpaid",
    ),
    (
        r"invoices_days_late_mean_(?P<w>\d+)d",
        "invoices",
        "days_late",
        "mean",
        "Average days late of the invoices due in the last {w} days (unpaid ones count up to the cutoff)",
    ),
]

FEATURE_DOCS: dict[str, tuple[str, str, str]] = {
    # name: (metric, agg, description)
    "account_segment": ("segment", "category", "Customer segment (enterprise, mid-market, SMB)"),
    "account_touch_model": ("touch_model", "category", "How the account is served: high, low or tech touch"),
    "account_industry": ("industry", "category", "The account's industry"),
    "account_region": ("region", "category", "The account's region"),
    "lifecycle_tenure_days": ("tenure", "days", "Days since the account's first subscription started"),
    "lifecycle_journey_stage": (
        "journey_stage",
        "category",
        "Onboarding (young, or no key feature used yet), expansion (utilisation at 90% or more, or seats "
        "grew in 90 days) or adoption",
    ),
    "lifecycle_time_to_first_value_days": (
        "time_to_first_value",
        "days",
        "Days from the first subscription start to the first use of a key feature (empty if not yet)",
    ),
    "lifecycle_first_value_reached": ("first_value_reached", "flag", "1 once a key feature has been used"),
    "contract_mrr": ("mrr", "level", "Monthly recurring revenue of the running subscriptions"),
    "contract_arr": ("arr", "level", "Annual recurring revenue (12 x MRR)"),
    "contract_seats": ("seats", "level", "Seats of the running subscriptions"),
    "contract_plan": ("plan", "category", "Plan of the main running subscription"),
    "contract_billing_period": ("billing_period", "category", "Billing period of the main subscription"),
    "contract_days_to_renewal": (
        "days_to_renewal",
        "days",
        "Days until the main contract's scheduled term end (from its start and billing period)",
    ),
    "contract_renewals_count": ("renewals", "count", "Subscriptions so far that continued an earlier one"),
    "contract_upgrades_count": ("upgrades", "count", "Continuations at a higher MRR so far"),
    "contract_downgrades_count": ("downgrades", "count", "Continuations at a lower MRR so far"),
    "support_open_tickets_count": ("open_tickets", "count", "Support tickets open at the cutoff"),
    "nps_score_latest": ("nps_score", "latest", "The latest NPS answer (0-10)"),
    "nps_score_change": ("nps_score", "change", "Latest NPS answer minus the one before it"),
    "nps_days_since_latest": ("nps_score", "days_since", "Days since the latest NPS answer"),
    "csm_days_since_last_touch": ("touches", "days_since", "Days since the last customer-success touch"),
    "contacts_days_since_sponsor_left": (
        "sponsor_left",
        "days_since",
        "Days since an executive sponsor or champion last left (empty if none has)",
    ),
    "contacts_champion_count": ("champions", "count", "Sponsors and champions in place at the cutoff"),
}


def _family(name: str) -> str | None:
    return next((f for f in FEATURE_FAMILIES if name.startswith(f + "_")), None)


def parse_feature(name: str) -> FeatureInfo:
    """What a feature column means.

    Raises:
        ChurnmlError: when the name is not one the engine produces.
    """
    if name in FEATURE_DOCS:
        metric, agg, text = FEATURE_DOCS[name]
        return FeatureInfo(name, _family(name) or "", metric, agg, None, text)
    for pattern, family, metric, agg, template in _PATTERNS:
        m = re.fullmatch(pattern, name)
        if m:
            groups = m.groupdict()
            metric = groups.get("metric") or metric
            window = int(groups["w"]) if groups.get("w") else None
            text = template.format(m=_words(metric), w=window)
            return FeatureInfo(name, family, metric, agg, window, text[:1].upper() + text[1:])
    raise ChurnmlError(f"feature {name!r}: not a feature this engine produces")


def describe_feature(name: str) -> str:
    """The plain-language meaning of a feature column."""
    return parse_feature(name).description


def feature_families(columns: Sequence[str]) -> dict[str, str]:
    """Feature column -> family, for the feature columns among ``columns`` (keys and labels are left out)."""
    out = {}
    for col in columns:
        if col in KEYS:
            continue
        family = _family(col)
        if family is not None:
            out[col] = family
    return out


def feature_names(
    cfg: FeaturesConfig,
    metrics: Sequence[str] = EXAMPLE_METRICS,
    csm_kinds: Sequence[str] = EXAMPLE_CSM_KINDS,
) -> list[str]:
    """The feature columns the engine produces for the enabled families, given metrics and CSM kinds."""
    tokens = fs.column_tokens(list(metrics), "usage metric")
    kinds = fs.column_tokens(list(csm_kinds), "CSM activity kind")
    out = []
    for family in dict.fromkeys(cfg.families):
        if family not in FEATURE_FAMILIES:
            raise ChurnmlError(f"features.families: unknown {family}")
        out += family_columns(family, cfg, kinds, tokens)
    return out
