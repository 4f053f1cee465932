"""Drivers: the root cause a feature name belongs to (family and metric), which drivers are context, and the
drivers that redundant features (near-copies of one quantity, found at training time) merge into one."""

from __future__ import annotations

import re
from collections.abc import Iterable, Mapping
from functools import cache
from typing import Any

from churnml.errors import ChurnmlError
from churnml.features.catalogue import FeatureInfo, parse_feature
from churnml.names import FEATURE_FAMILIES

FAMILIES = FEATURE_FAMILIES  # one list: churnml.names'
# Aggregations recognised at the end of a name outside the engine's catalogue (before the window).
_AGGS = ("sum", "mean", "avg", "median", "max", "min", "std", "count", "trend", "zscore", "ratio", "share")
_AGGS += ("latest", "last", "change", "delta", "slope", "rate", "total")
# Members of one root cause that the names keep apart (ARR is 12 x MRR).
_DRIVER_ALIASES = {("contract", "mrr"): "arr"}
# Aggregations that make a contract feature a movement (a contraction is a "why"), not the account's size.
_CHANGE_AGGS = ("change", "delta", "trend", "pct_change", "slope")
# Drivers that say when or what the account is (its renewal date, tenure, term, plan, size, segment), not why
# its risk moved: the model may lean on them (annual contracts churn only at the end of the term), so they
# keep their SHAP values and points, but they are shown beside the reasons as context and never take one of
# the top reason slots. Every ``account_*`` driver (who the customer is) is context too.
CONTEXT_DRIVERS = frozenset(
    {
        "contract_days_to_renewal",
        "contract_billing_period",
        "contract_plan",
        "contract_seats",
        "contract_arr",
        "contract_renewals",
        "lifecycle_tenure",
    }
)


def _family_of(name: str) -> str | None:
    return next((f for f in FAMILIES if name.startswith(f + "_")), None)


@cache
def feature_info(name: str) -> FeatureInfo:
    """What a feature name means: the engine's :func:`churnml.features.catalogue.parse_feature`, or, for a name outside
    its catalogue, ``<family>_<metric>[_<agg>][_<window>d]`` read from the name.

    Raises:
        ChurnmlError: when the name does not start with a known family.
    """

    try:
        return parse_feature(name)
    except ChurnmlError:
        pass
    family = _family_of(name)
    if family is None:
        raise ChurnmlError(f"feature {name!r}: no known family prefix ({', '.join(FAMILIES)})") from None
    rest = name[len(family) + 1 :]
    window = None
    m = re.search(r"(?:^|_)(\d+)d$", rest)
    if m:
        window = int(m.group(1))
        rest = rest[: m.start()]
    tokens = [t for t in rest.split("_") if t]
    agg = ""
    if len(tokens) > 2 and tokens[0] == "days" and tokens[1] == "since":
        agg, tokens = "days_since", tokens[2:]
    elif len(tokens) > 1 and tokens[-1] in _AGGS:
        agg, tokens = tokens[-1], tokens[:-1]
    metric = "_".join(tokens) or agg
    return FeatureInfo(name, family, metric, agg if metric != agg else "", window, "")


def driver_of(info: FeatureInfo) -> str:
    """The root-cause key a feature is grouped under: family and metric (``days_since``/``last`` dropped).

    A change of a contract amount (``contract_mrr_change_90d``) is its own driver (``contract_arr_change``):
    a contraction is a reason, the amount itself is the account's size (context).
    """
    metric = re.sub(r"^(days_since_)?(last_)?", "", info.metric) or info.metric
    driver = f"{info.family}_{_DRIVER_ALIASES.get((info.family, metric), metric)}"
    if info.family == "contract" and info.agg in _CHANGE_AGGS:
        driver += "_change"
    return driver


def is_context(driver: str, context: Iterable[str] | None = None) -> bool:
    """Whether a driver is context (when/what: shown beside the reasons, never one of them).

    Args:
        driver: A driver key (:func:`driver_of`).
        context: The context drivers; None: the default, every ``account_*`` driver and
            :data:`CONTEXT_DRIVERS`.
    """
    if context is None:
        return driver.startswith("account_") or driver in CONTEXT_DRIVERS
    return driver in set(context)


def redundant_groups_of(model: Any) -> list[list[str]]:
    """The model's groups of redundant features (``model.info["redundant_groups"]``, recorded at training by
    :func:`churnml.modeling.redundancy.redundant_groups`); none for a model trained before they existed."""
    info = getattr(model, "info", None)
    return [list(g) for g in (info or {}).get("redundant_groups") or []]


def merged_keys(
    keys: Mapping[str, str],
    groups: Iterable[Iterable[str]],
    same_kind: Any = None,
) -> dict[str, str]:
    """Per feature, the key its points are counted under once each redundant group is one reason.

    The members of a group move to the key of its first member (in the group's order, the model's feature
    order); every other feature keeps its own key. Features move, not whole keys: a driver that shares one
    near-copy with another driver (days since the last login ~ days since the last active user) does not
    merge with it, so groups do not chain into one reason for several causes.

    Args:
        keys: feature -> its own key (the driver in the pipeline, the feature itself in tabular mode).
        groups: groups of redundant features (disjoint).
        same_kind: key -> a value that must match for two members to share a key (context never shares
            one with a reason: it never takes a reason slot); None: every key is one kind.

    Returns:
        feature -> key, for every feature of ``keys``.
    """
    out = dict(keys)
    kind = same_kind or (lambda _: None)
    for group in groups:
        present = [f for f in group if f in keys]
        for k in {kind(keys[f]) for f in present}:
            part = [f for f in present if kind(keys[f]) == k]
            for f in part[1:]:
                out[f] = keys[part[0]]
    return out
