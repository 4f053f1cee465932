"""Reasons in plain words: per account, the drivers raising and lowering its score, as CSM-readable sentences.

A *driver* is one root cause: the features of one family and metric as the feature engine names them
(:func:`churnml.features.engine.parse_feature`): ``usage_logins_sum_30d``, ``usage_logins_trend_30d`` and
``usage_logins_zscore_7d`` are the driver ``usage_logins``; ``contacts_sponsor_left_90d`` and
``contacts_days_since_sponsor_left`` are ``contacts_sponsor_left``. Its probability points are the sum of
its members' points (see :mod:`churnml.explain.contributions`), and its sentence comes from its strongest member (largest
``|shap_value|``), rendered by the template of the feature's family with the account's own numbers (any
column of its feature row) and a baseline: the previous period for trends, the account's own norm for
z-scores, otherwise the median account of the same as-of date.

Context drivers (:data:`CONTEXT_DRIVERS`, every ``account_*`` driver) say when or what the account is (days to
renewal, tenure, term, plan, size, segment), not why its risk moved: they keep their points but never take a
reason slot; :func:`reasons_for` returns them beside the reasons, direction ``context``.

All sentence templates live here, in :data:`FAMILY_TEMPLATES` (one function per feature family); every
feature the engine produces renders, missing values included (tests enforce both). A feature outside the
engine's catalogue still gets a sentence from its name.
"""

from __future__ import annotations

import json
import math
import re
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass
from functools import cache
from typing import TYPE_CHECKING, Any

import numpy as np
import pandas as pd

from churnml.errors import ChurnmlError
from churnml.names import FEATURE_FAMILIES

if TYPE_CHECKING:
    from churnml.features.engine import FeatureInfo

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
_WORDS = {
    "api": "API",
    "nps": "NPS",
    "csat": "CSAT",
    "arr": "ARR",
    "mrr": "MRR",
    "qbr": "QBR",
    "csm": "CSM",
    "smb": "SMB",
    "utilization": "utilisation",
}
DIRECTIONS = ("raises", "lowers", "context")  # the order rows and JSON items come in
_DIRECTION_ORDER = {d: i for i, d in enumerate(DIRECTIONS)}
REASON_COLUMNS = [
    "account_id",
    "as_of",
    "target",
    "rank",
    "direction",
    "driver",
    "family",
    "probability_points",
    "reason",
]


def _family_of(name: str) -> str | None:
    return next((f for f in FAMILIES if name.startswith(f + "_")), None)


@cache
def feature_info(name: str) -> FeatureInfo:
    """What a feature name means: the engine's :func:`churnml.features.engine.parse_feature`, or, for a name outside
    its catalogue, ``<family>_<metric>[_<agg>][_<window>d]`` read from the name.

    Raises:
        ChurnmlError: when the name does not start with a known family.
    """
    from churnml.features.engine import FeatureInfo, parse_feature

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


# ----------------------------------------------------------------------------------------------- formatting


def _missing(v: Any) -> bool:
    if v is None or v is pd.NA or v is pd.NaT:
        return True
    return bool(isinstance(v, float | np.floating) and math.isnan(v))


def _num(v: float) -> str:
    """A number as a CSM reads it: 1,234 / 12.5 / 0.34."""
    v = float(v)
    if abs(v) >= 1000:
        return f"{v:,.0f}"
    if v == round(v):
        return f"{v:.0f}"
    if abs(v) >= 1:
        return f"{v:.1f}".removesuffix(".0")
    return f"{v:.2g}"


def _int(v: float) -> str:
    return f"{round(float(v)):,d}"


def _plural(n: float, word: str, many: str | None = None) -> str:
    return f"{_int(n)} {word if round(float(n)) == 1 else (many or word + 's')}"


def _count(n: float, word: str, many: str | None = None) -> str:
    """ "3 tickets", "1 ticket", and "No tickets" for zero."""
    if round(float(n)) == 0:
        return f"No {many or word + 's'}"
    return _plural(n, word, many)


def _money(v: float) -> str:
    return f"${float(v):,.0f}"


def _fraction_pct(v: float) -> str:
    """A share stored as a fraction (0.34) or a percentage (34) shown as 34%."""
    v = float(v)
    return f"{(v * 100 if abs(v) <= 1.5 else v):.0f}%"


def _words(metric: str) -> str:
    """``feature_dashboards`` -> "dashboards feature use", ``api_calls`` -> "API calls"."""
    if metric.startswith("feature_"):
        return _words(metric[len("feature_") :]) + " feature use"
    return " ".join(_WORDS.get(t, t) for t in metric.split("_") if t)


def _cap(text: str) -> str:
    return text[:1].upper() + text[1:] if text else text


def _window(days: int | None) -> str:
    return f"in the last {days} days" if days else ""


def _previous(days: int | None) -> str:
    if not days:
        return "the previous period"
    weeks = {7: "week", 14: "2 weeks", 21: "3 weeks", 28: "4 weeks"}
    return f"the previous {weeks.get(days, f'{days} days')}"


def _join(*parts: str) -> str:
    return " ".join(p for p in parts if p)


# -------------------------------------------------------------------------------------------- the context


@dataclass(frozen=True)
class Context:
    """What a template sees: the feature, the account's value, its whole feature row, the portfolio median."""

    info: FeatureInfo
    value: Any
    row: Mapping[str, Any]
    median: float | None = None

    def get(self, column: str) -> Any:
        """Another column of the account's row (None when absent or missing)."""
        try:
            v = self.row[column]
        except (KeyError, IndexError):
            return None
        return None if _missing(v) else v

    @property
    def missing(self) -> bool:
        return _missing(self.value)

    @property
    def since(self) -> bool:
        """Whether the feature counts days since something."""
        return "days_since" in self.info.agg or "days_since" in self.info.metric

    @property
    def typical(self) -> str:
        """ " (median account: 340)", empty when there is no numeric median."""
        if self.median is None or _missing(self.median):
            return ""
        return f" (median account: {_num(self.median)})"


def _label(ctx: Context) -> str:
    return _cap(_words(ctx.info.metric))


def _generic(ctx: Context) -> str:
    """Any feature: its description (or its name in words) and the value, against the median account."""
    i = ctx.info
    head = i.description.rstrip(".") if i.description else _label(ctx)
    if not i.description:
        qual = ", ".join(
            p for p in (_words(i.agg), f"last {i.window_days} days" if i.window_days else "") if p
        )
        head = f"{head} ({qual})" if qual else head
    if ctx.missing:
        return f"{head}: no data"
    if isinstance(ctx.value, str):
        return f"{head}: {_words(ctx.value)}"
    return f"{head}: {_num(ctx.value)}{ctx.typical}"


def _trend(ctx: Context, label: str = "") -> str:
    """A relative change of the current window against the one before (-0.45 = down 45%)."""
    i = ctx.info
    label = label or _label(ctx)
    if ctx.missing:
        return f"{label}: no trend (none in {_previous(i.window_days)})"
    v = float(ctx.value)
    tail = ""
    if i.family == "usage" and i.window_days:
        mean = ctx.get(f"usage_{i.metric}_mean_{i.window_days}d")
        total = ctx.get(f"usage_{i.metric}_sum_{i.window_days}d")
        if i.metric == "active_users" and mean is not None:
            tail = f" (now {_num(mean)} a day)"
        elif total is not None:
            tail = f" ({_num(total)} {_window(i.window_days)})"
    if abs(v) < 0.005:
        return f"{label} flat vs {_previous(i.window_days)}{tail}"
    return f"{label} {'down' if v < 0 else 'up'} {abs(v) * 100:.0f}% vs {_previous(i.window_days)}{tail}"


def _zscore(ctx: Context) -> str:
    i = ctx.info
    label = _label(ctx)
    when = f" in the last {i.window_days} days" if i.window_days else ""
    if ctx.missing:
        return f"{label}{when}: no baseline yet to compare with"
    v = float(ctx.value)
    if abs(v) < 0.05:
        return f"{label}{when} in line with the account's own norm"
    return f"{label}{when} {abs(v):.1f} standard deviations {'below' if v < 0 else 'above'} the account's own norm"


def _days_since(ctx: Context, what: str, never: str) -> str:
    if ctx.missing:
        return never
    return f"{what} today" if round(float(ctx.value)) == 0 else f"{what} {_plural(ctx.value, 'day')} ago"


_LAST_USE = {
    "active_users": "Last day with active users",
    "logins": "Last login",
    "api_calls": "Last API call",
}


def _usage(ctx: Context) -> str:
    i = ctx.info
    if i.agg in ("trend", "pct_change", "change", "slope"):
        return _trend(ctx)
    if i.agg == "zscore":
        return _zscore(ctx)
    if ctx.since:
        metric = re.sub(r"(days_since_|days_since|last_)", "", i.metric)
        what = _LAST_USE.get(metric, f"Last {_words(metric) or 'use'}")
        return _days_since(ctx, what, f"No {_words(metric) or 'use'} on record")
    label = _label(ctx)
    if ctx.missing:
        return _join(f"{label}: no data", _window(i.window_days))
    if i.agg in ("mean", "avg", "median"):
        return (
            f"{_join(label + ':', _num(ctx.value), 'a day on average', _window(i.window_days))}{ctx.typical}"
        )
    if i.metric == "active_users" and i.agg in ("sum", "total"):
        label = "Active user-days"  # a sum of daily active-user counts, not distinct users
    return f"{_join(label + ':', _num(ctx.value), _window(i.window_days))}{ctx.typical}"


def _adoption(ctx: Context) -> str:
    i = ctx.info
    m = i.metric
    if i.agg in ("trend", "pct_change", "change", "slope"):
        return _trend(ctx)
    if i.agg == "zscore":
        return _zscore(ctx)
    if "utili" in m:
        if ctx.missing:
            return "License utilisation unknown (no seats or no usage data)"
        seats = ctx.get("contract_seats")
        share = float(ctx.value) if abs(float(ctx.value)) <= 1.5 else float(ctx.value) / 100
        if seats is not None and float(seats) > 0:
            return (
                f"License utilisation {_fraction_pct(ctx.value)} "
                f"({_int(share * float(seats))} of {_plural(seats, 'seat')} active)"
            )
        return f"License utilisation {_fraction_pct(ctx.value)}"
    if "breadth" in m or "key_feature" in m:
        if ctx.missing:
            return _join("Key features used", _window(i.window_days)) + ": no data"
        v = float(ctx.value)
        if 0 < v < 1:
            return _join(f"Uses {_fraction_pct(v)} of the key features", _window(i.window_days))
        if round(v) == 0:
            return _join("No key feature used", _window(i.window_days))
        return _join(f"Uses {_plural(v, 'key feature')}", _window(i.window_days)) + ctx.typical
    if "active_days" in m:
        if ctx.missing:
            return "Active days: no data"
        if i.window_days:
            return f"Active on {_int(ctx.value)} of the last {i.window_days} days{ctx.typical}"
        return f"{_plural(ctx.value, 'active day')}{ctx.typical}"
    if "first_value" in m or "time_to_value" in m:
        return _first_value(ctx)
    if ctx.since:
        return _days_since(ctx, f"Last {_words(m) or 'use'}", f"No {_words(m) or 'use'} on record")
    return _generic(ctx)


def _first_value(ctx: Context) -> str:
    if ctx.info.agg == "flag" or "reached" in ctx.info.metric:
        if ctx.missing:
            return "First value: unknown"
        return (
            "First value reached (a key feature used)"
            if float(ctx.value) >= 0.5
            else "No key feature used yet"
        )
    if ctx.missing:
        return "No key feature used yet (first value not reached)"
    return f"First key feature used {_plural(ctx.value, 'day')} after the contract started"


def _lifecycle(ctx: Context) -> str:
    m = ctx.info.metric
    if "stage" in m:
        return "Journey stage unknown" if ctx.missing else f"Journey stage: {_words(str(ctx.value))}"
    if "first_value" in m or "time_to_value" in m:
        return _first_value(ctx)
    if "onboarding" in m:
        if ctx.missing:
            return "Onboarding status unknown"
        return "Still in onboarding" if float(ctx.value) >= 0.5 else "Onboarding completed"
    if "tenure" in m or "age" in m:
        if ctx.missing:
            return "Customer since: unknown"
        days = float(ctx.value)
        if days < 61:
            return f"Customer for {_plural(days, 'day')}"
        months = days / 30.44
        span = f"{months:.0f} months" if months < 24 else f"{months / 12:.1f} years"
        return f"Customer for {span}"
    return _generic(ctx)


_CONTRACT_EVENTS = {"renewals": "renewal", "upgrades": "upgrade", "downgrades": "downgrade"}


def _contract(ctx: Context) -> str:
    i = ctx.info
    m = i.metric
    if "renewal" in m and "days" in m:
        if ctx.missing or float(ctx.value) < 0:
            return "No scheduled renewal date"
        return f"Renewal in {_plural(ctx.value, 'day')}"
    if i.agg in ("trend", "pct_change", "change", "delta"):
        name = _words(m)
        name = name if name.isupper() else _cap(name)
        when = f"vs {i.window_days} days ago" if i.window_days else "vs before"
        if ctx.missing:
            return f"{name} change {when}: no data"
        v = float(ctx.value)
        if v == 0:
            return f"{name} unchanged {when}"
        size = _money(abs(v)) if i.agg == "delta" and m in ("arr", "mrr") else f"{abs(v) * 100:.0f}%"
        return f"{name} {'down' if v < 0 else 'up'} {size} {when}"
    if m in ("arr", "mrr", "acv", "revenue"):
        if ctx.missing:
            return f"{m.upper()}: unknown"
        typical = f" (median account: {_money(ctx.median)})" if ctx.typical else ""
        return f"{m.upper()} {_money(ctx.value)}{typical}"
    if m == "seats":
        return (
            "Seats under contract: unknown" if ctx.missing else f"{_plural(ctx.value, 'seat')} under contract"
        )
    if m == "plan":
        return "Plan unknown" if ctx.missing else f"On the {_words(str(ctx.value))} plan"
    if "billing" in m:
        if ctx.missing:
            return "Billing period unknown"
        period = str(ctx.value)
        return f"Billed { {'annual': 'annually', 'monthly': 'monthly'}.get(period, _words(period)) }"
    if m in _CONTRACT_EVENTS:
        noun = _CONTRACT_EVENTS[m]
        if ctx.missing:
            return f"{_cap(noun)}s: no data"
        return f"{_count(ctx.value, noun)} so far"
    return _generic(ctx)


def _support(ctx: Context) -> str:
    i = ctx.info
    m = i.metric
    if i.agg in ("trend", "pct_change", "change", "slope"):
        return _trend(ctx, "Support tickets" if m in ("tickets", "ticket") else "")
    if "csat" in m:
        if ctx.missing:
            return _join("No CSAT rating", _window(i.window_days))
        return _join(f"Average CSAT {float(ctx.value):.1f} / 5", _window(i.window_days)) + ctx.typical
    if "open" in m or "backlog" in m or "unresolved" in m:
        return "Open tickets: no data" if ctx.missing else f"{_count(ctx.value, 'support ticket')} open"
    if "resolution" in m:
        unit = "hours" if "hour" in m else "days"
        if ctx.missing:
            return _join("No resolved tickets", _window(i.window_days))
        return _join(f"Tickets took {_num(ctx.value)} {unit} on average to resolve", _window(i.window_days))
    if ctx.since:
        return _days_since(ctx, "Last support ticket", "No support ticket on record")
    if i.agg in ("count", "sum", "") or "ticket" in m:
        kind = "high-priority " if "high" in m else ("urgent " if "urgent" in m else "")
        noun = f"{kind}ticket" if kind else "support ticket"
        if ctx.missing:
            return _join(f"No {noun}s", _window(i.window_days))
        return _join(_count(ctx.value, noun), _window(i.window_days))
    return _generic(ctx)


def _nps(ctx: Context) -> str:
    i = ctx.info
    m = i.metric
    if ctx.since:
        return _days_since(ctx, "Last NPS answer", "No NPS answer on record")
    for kind in ("detractor", "promoter", "passive"):
        if kind in m:
            if ctx.missing:
                return _join(f"No NPS {kind}s", _window(i.window_days))
            return _join(_count(ctx.value, f"NPS {kind}"), _window(i.window_days))
    if i.agg in ("count", "sum") or "responses" in m:
        return _join(
            "No NPS answers" if ctx.missing else _count(ctx.value, "NPS answer"), _window(i.window_days)
        )
    if i.agg in ("trend", "change", "delta"):
        if ctx.missing:
            return "NPS change: fewer than two answers"
        v = float(ctx.value)
        if v == 0:
            return "Latest NPS answer the same as the one before"
        return f"Latest NPS answer {_num(abs(v))} {'lower' if v < 0 else 'higher'} than the one before"
    if ctx.missing:
        return _join("No NPS answer", _window(i.window_days)) + ("" if i.window_days else " yet")
    v = float(ctx.value)
    which = "Average" if i.agg in ("mean", "avg") else "Latest"
    if v < 0 or v > 10:  # a net score (-100..100), not one answer
        return _join(f"Net Promoter Score {_num(v)}", _window(i.window_days))
    kind = ""
    if which == "Latest":
        kind = " (detractor)" if v <= 6 else (" (passive)" if v <= 8 else " (promoter)")
    return _join(f"{which} NPS answer {_num(v)} / 10{kind}", _window(i.window_days))


def _csm(ctx: Context) -> str:
    i = ctx.info
    m = re.sub(r"(days_since_|last_)", "", i.metric)
    noun = "CSM touch" if m in ("touches", "touch", "activities", "") else f"CSM {_words(m)}"
    many = "CSM touches" if noun == "CSM touch" else None
    if ctx.since:
        return _days_since(ctx, f"Last {noun}", f"No {noun} on record")
    if i.agg in ("count", "sum", ""):
        if ctx.missing:
            return _join(f"No {many or noun + 's'}", _window(i.window_days))
        return _join(_count(ctx.value, noun, many), _window(i.window_days)) + ctx.typical
    return _generic(ctx)


def _contacts(ctx: Context) -> str:
    i = ctx.info
    m = i.metric
    if "left" in m or "departure" in m:
        # the engine's "sponsor left" covers executive sponsors and champions
        who = "Sponsor or champion" if "sponsor" in m else _cap(_words(m.replace("_left", "")))
        if ctx.since:
            return _days_since(ctx, f"{who} left", f"{who}: no departure on record")
        if ctx.missing:
            return f"{who} changes: no data"
        days = ctx.get("contacts_days_since_sponsor_left") if "sponsor" in m else None
        if float(ctx.value) >= 0.5:
            return (
                f"{who} left {_plural(days, 'day')} ago"
                if days is not None
                else _join(f"{who} left", _window(i.window_days))
            )
        return _join(f"{who} in place (no departure", _window(i.window_days)) + ")"
    if "champion" in m or "sponsor" in m:
        if ctx.missing:
            return "Sponsors and champions: no data"
        return f"{_count(ctx.value, 'sponsor or champion', 'sponsors or champions')} in place"
    if ctx.since:
        return _days_since(ctx, f"Last {_words(m)}", f"No {_words(m)} on record")
    if i.agg in ("count", ""):
        return "Contacts: no data" if ctx.missing else _count(ctx.value, f"{_words(m)} contact".strip())
    return _generic(ctx)


def _invoices(ctx: Context) -> str:
    i = ctx.info
    m = i.metric
    if "amount" in m or "balance" in m or "outstanding" in m:
        what = "overdue" if "overdue" in m else "unpaid"
        return (
            f"Amount {what}: no data"
            if ctx.missing
            else _join(f"{_money(ctx.value)} {what}", _window(i.window_days))
        )
    if "late" in m or "days_to_pay" in m or "delay" in m:
        if ctx.missing:
            return _join("No invoice due", _window(i.window_days))
        v = float(ctx.value)
        if v <= 0:
            return _join("Pays on time", _window(i.window_days))
        return _join(f"Pays {_plural(v, 'day')} late on average", _window(i.window_days))
    if "overdue" in m or "unpaid" in m:
        if ctx.missing:
            return "Late or unpaid invoices: no data"
        if i.agg in ("share", "ratio"):
            return _join(
                f"{_fraction_pct(ctx.value)} of invoices paid late or unpaid", _window(i.window_days)
            )
        if round(float(ctx.value)) == 0:
            return _join("No late or unpaid invoice", _window(i.window_days))
        return _join(f"{_plural(ctx.value, 'invoice')} paid late or unpaid", _window(i.window_days))
    if ctx.since:
        return _days_since(ctx, "Last invoice", "No invoice on record")
    return _generic(ctx)


_CATEGORY_WORDS = {"mid_market": "mid-market", "high_touch": "high-touch", "low_touch": "low-touch"}
_CATEGORY_WORDS |= {"tech_touch": "tech-touch"}


def _account(ctx: Context) -> str:
    m = ctx.info.metric
    if ctx.missing:
        return "Account age: unknown" if "age" in m else f"{_label(ctx)}: unknown"
    v = ctx.value
    text = _CATEGORY_WORDS.get(str(v), _words(str(v)))
    if m == "segment":
        return f"{_cap(text)} segment"
    if m == "touch_model":
        return f"{_cap(text)} account"
    if m == "industry":
        return f"Industry: {text}"
    if m == "region":
        return f"Region: {text.upper() if len(text) <= 5 else text}"
    if "age" in m:
        years = float(v) / 365.25
        return (
            f"Account created {years:.1f} years ago"
            if years >= 1
            else f"Account created {_plural(v, 'day')} ago"
        )
    return _generic(ctx)


# The one place where sentences are written: one template per feature family.
FAMILY_TEMPLATES: dict[str, Callable[[Context], str]] = {
    "account": _account,
    "usage": _usage,
    "adoption": _adoption,
    "lifecycle": _lifecycle,
    "contract": _contract,
    "support": _support,
    "nps": _nps,
    "csm": _csm,
    "contacts": _contacts,
    "invoices": _invoices,
}


def render_reason(
    feature: str, value: Any, row: Mapping[str, Any] | None = None, median: float | None = None
) -> str:
    """The sentence for one feature of one account.

    Args:
        feature: The feature name.
        value: The account's value of it (NaN/None allowed).
        row: The account's whole feature row (other columns quoted by the sentence); defaults to just this one.
        median: The median account's value at the same as-of date (the baseline), when numeric.
    """
    info = feature_info(feature)
    row = row if row is not None else {feature: value}
    value = None if _missing(value) else value
    if isinstance(value, np.generic):
        value = value.item()
    return FAMILY_TEMPLATES[info.family](Context(info=info, value=value, row=row, median=median))


# ------------------------------------------------------------------------------------------------ drivers


class _Row(Mapping):
    """One account's feature row, read lazily from column arrays (no per-account frame is built)."""

    __slots__ = ("_cols", "_pos")

    def __init__(self, cols: dict[str, np.ndarray], pos: int) -> None:
        self._cols = cols
        self._pos = pos

    def __getitem__(self, key: str) -> Any:
        v = self._cols[key][self._pos]
        return v.item() if isinstance(v, np.generic) else v

    def __iter__(self):
        return iter(self._cols)

    def __len__(self) -> int:
        return len(self._cols)


def _row_positions(features: pd.DataFrame, keys: pd.DataFrame, cutoff_col: str) -> np.ndarray:
    """Position in ``features`` of each (account_id, as_of) in ``keys``; -1 when absent."""
    left = pd.MultiIndex.from_arrays(
        [
            features["account_id"].astype("str").to_numpy(),
            pd.to_datetime(features[cutoff_col]).astype("datetime64[us]"),
        ]
    )
    right = pd.MultiIndex.from_arrays(
        [keys["account_id"].astype("str").to_numpy(), pd.to_datetime(keys["as_of"]).astype("datetime64[us]")]
    )
    if not left.is_unique:
        raise ChurnmlError(f"reasons: features hold duplicate (account_id, {cutoff_col}) rows")
    return left.get_indexer(right)


def _medians(features: pd.DataFrame, cutoff_col: str, names: Iterable[str]) -> dict[str, dict]:
    """Median account value per numeric feature and as-of date: the baseline sentences quote."""
    numeric = [c for c in names if c in features.columns and pd.api.types.is_numeric_dtype(features[c].dtype)]
    if not numeric:
        return {}
    med = features.groupby(pd.to_datetime(features[cutoff_col]).astype("datetime64[us]"))[numeric].median()
    return {c: med[c].to_dict() for c in numeric}


def _render_rows(
    frame: pd.DataFrame, features: pd.DataFrame, cutoff_col: str, feature_col: str = "feature"
) -> list[str]:
    """Sentences for rows holding account_id, as_of and a feature name, from the accounts' feature rows."""
    if frame.empty:
        return []
    pos = _row_positions(features, frame, cutoff_col)
    missing = pos < 0
    if missing.any():
        first = frame.loc[missing].iloc[0]
        raise ChurnmlError(
            f"reasons: {int(missing.sum())} explained row(s) have no feature row "
            f"(e.g. account {first['account_id']} as of {pd.Timestamp(first['as_of']).date()})"
        )
    cols = {c: features[c].to_numpy() for c in features.columns}
    medians = _medians(features, cutoff_col, frame[feature_col].unique())
    as_of = pd.to_datetime(frame["as_of"]).astype("datetime64[us]").to_numpy()
    out = []
    for feat, p, day in zip(frame[feature_col].to_numpy(), pos, as_of, strict=True):
        if feat not in cols:
            raise ChurnmlError(f"reasons: feature {feat!r} is not a column of the feature table")
        row = _Row(cols, int(p))
        med = medians.get(feat, {}).get(pd.Timestamp(day))
        out.append(render_reason(feat, row[feat], row, med))
    return out


def reasons_for(
    explanations: pd.DataFrame,
    features: pd.DataFrame,
    *,
    top: int = 3,
    cutoff_col: str = "cutoff",
    context: Iterable[str] | None = None,
) -> pd.DataFrame:
    """The top drivers raising and lowering each account's score, each with a sentence, and its context.

    Context drivers (:func:`is_context`: days to renewal, tenure, term, plan, size, segment...) say when or what
    the account is, not why its risk moved: they never take a reason slot, so the ``top`` reasons each way are
    the strongest of the other drivers. The strongest ``top`` context drivers come as rows of their own
    (direction ``context``), with their points, to be shown beside the reasons.

    Args:
        explanations: Long-form explanations (:func:`churnml.explain.contributions.explain_accounts`), ideally with every
            feature (``top_n=None``): a driver's points are the sum over the members present.
        features: The feature table the explanations came from (``account_id``, ``cutoff_col``, features).
        top: Drivers kept per account, as-of, target and direction (context counts as one direction).
        cutoff_col: The as-of column of ``features``.
        context: The context drivers (None: the default of :func:`is_context`; empty: none).

    Returns:
        ``account_id``, ``as_of``, ``target``, ``rank`` (1 = most points, by magnitude, within its direction),
        ``direction`` (``raises`` / ``lowers`` the target's probability, or ``context``: the sign of the
        points says which way it moves it), ``driver`` (family_metric), ``family``, ``probability_points``
        (summed over the driver's features; probability units), ``reason``. Rows come raises, lowers, context,
        each by rank. Drivers with exactly zero points are left out. With every feature explained and ``top``
        at least the number of drivers, the points of all rows of an account add up to p - p0.
    """
    need = ["account_id", "as_of", "target", "feature", "shap_value", "probability_points"]
    missing = [c for c in need if c not in explanations.columns]
    if missing:
        raise ChurnmlError(f"reasons_for: explanations lack column(s) {', '.join(missing)}")
    if top < 1:
        raise ChurnmlError(f"reasons_for: top must be >= 1, got {top}")
    context = None if context is None else frozenset(context)
    infos = {f: feature_info(f) for f in explanations["feature"].unique()}
    ex = explanations[need].assign(
        driver=explanations["feature"].map({f: driver_of(i) for f, i in infos.items()}),
        family=explanations["feature"].map({f: i.family for f, i in infos.items()}),
        abs_shap=explanations["shap_value"].abs(),
    )
    keys = ["account_id", "as_of", "target", "driver"]
    points = ex.groupby(keys, sort=False, observed=True)["probability_points"].sum()
    strongest = (
        ex.sort_values("abs_shap", ascending=False, kind="stable")
        .drop_duplicates(keys)
        .set_index(keys)[["feature", "family"]]
    )
    drivers = strongest.join(points).reset_index()
    drivers = drivers[drivers["probability_points"] != 0]
    contextual = drivers["driver"].map({d: is_context(d, context) for d in drivers["driver"].unique()})
    drivers = drivers.assign(
        direction=np.where(
            contextual.astype(bool),
            "context",
            np.where(drivers["probability_points"] > 0, "raises", "lowers"),
        ),
        magnitude=drivers["probability_points"].abs(),
    ).sort_values(
        ["account_id", "as_of", "target", "direction", "magnitude"],
        ascending=[True, True, True, False, False],
    )
    drivers["rank"] = drivers.groupby(["account_id", "as_of", "target", "direction"]).cumcount() + 1
    kept = drivers[drivers["rank"] <= top].copy()
    kept["_order"] = kept["direction"].map(_DIRECTION_ORDER)
    kept = kept.sort_values(["account_id", "as_of", "target", "_order", "rank"]).reset_index(drop=True)
    kept["reason"] = pd.Series(_render_rows(kept, features, cutoff_col), index=kept.index, dtype="str")
    out = kept[REASON_COLUMNS].astype(
        {"account_id": "str", "target": "str", "driver": "str", "direction": "str"}
    )
    return out.reset_index(drop=True)


def with_reasons(
    explanations: pd.DataFrame, features: pd.DataFrame, *, cutoff_col: str = "cutoff"
) -> pd.DataFrame:
    """Explanations plus a ``reason`` column: each feature's own sentence (for the ``churn_explanations`` table).

    Renders one sentence per row: pass explanations truncated with ``top_n``.
    """
    out = explanations.copy()
    out["reason"] = pd.Series(
        _render_rows(explanations, features, cutoff_col), index=explanations.index, dtype="str"
    )
    return out


def top_reasons(reasons: pd.DataFrame, *, top: int = 3) -> pd.DataFrame:
    """One row per account, as-of and target with ``top_reasons``: a JSON list for the scores table.

    Each item is ``{"reason": str, "points": float, "direction": "raises"|"lowers"|"context"}``; ``points``
    are probability units rounded to 4 decimals (0.045 = 4.5 percentage points). The list holds the ``top``
    risk-raising reasons first, then the ``top`` lowering ones, then up to ``top`` context items (when/what
    the account is, e.g. "Renewal in 41 days": shown beside the reasons, never one of them; the sign of their
    points says which way they move the score), each strongest first.
    """
    keys = ["account_id", "as_of", "target"]
    if reasons.empty:
        return pd.DataFrame(
            {
                **{k: pd.Series(dtype=reasons[k].dtype if k in reasons else "str") for k in keys},
                "top_reasons": pd.Series(dtype="str"),
            }
        )
    kept = reasons[reasons["rank"] <= top]
    kept = kept.assign(_order=kept["direction"].map(_DIRECTION_ORDER)).sort_values([*keys, "_order", "rank"])
    items = [
        {"reason": r, "points": round(float(p), 4), "direction": d}
        for r, p, d in zip(kept["reason"], kept["probability_points"], kept["direction"], strict=True)
    ]
    kept = kept.assign(_item=items)
    grouped = kept.groupby(keys, sort=False)["_item"].agg(list)
    out = grouped.map(lambda xs: json.dumps(xs, ensure_ascii=False)).rename("top_reasons").reset_index()
    return out.astype({"top_reasons": "str"})


def cause_hits(
    reasons: pd.DataFrame,
    truth_accounts: pd.DataFrame,
    cause_families: Mapping[str, Iterable[str]],
    *,
    top: int = 3,
    horizon_days: int = 90,
    target: str = "churn",
) -> pd.DataFrame:
    """Per churner: whether its top ``top`` risk-raising reasons name a feature family of its dominant cause.

    Each churner (``truth_accounts`` rows with a ``churn_date`` and a ``dominant_cause``) is matched with the
    reasons of its latest as-of date ``d`` with ``d <= churn_date < d + horizon_days`` (the prediction that
    covered the churn). Churners without such reasons, and causes mapped to no family (e.g. ``random``), are
    left out. Only ``raises`` rows count: context (:func:`reasons_for`) is never a reason.

    Returns:
        ``account_id``, ``as_of``, ``churn_date``, ``dominant_cause``, ``hit`` (bool), one row per churner.

    Raises:
        ChurnmlError: when no churner can be scored (a rate would be undefined).
    """
    for col in ("account_id", "churn_date", "dominant_cause"):
        if col not in truth_accounts.columns:
            raise ChurnmlError(f"cause_hits: truth_accounts lacks column {col!r}")
    churners = truth_accounts.dropna(subset=["churn_date", "dominant_cause"])
    families = {c: set(fs) for c, fs in cause_families.items()}
    churners = churners[churners["dominant_cause"].map(lambda c: bool(families.get(c)))]
    raising = reasons[
        (reasons["target"] == target) & (reasons["direction"] == "raises") & (reasons["rank"] <= top)
    ]
    if "family" not in raising.columns:  # e.g. read back from a table without it: the driver starts with it
        raising = raising.assign(family=raising["driver"].map(_family_of))
    raising = raising.assign(as_of=pd.to_datetime(raising["as_of"]).astype("datetime64[us]"))
    churn_day = pd.to_datetime(churners["churn_date"]).astype("datetime64[us]")
    scored = reasons.loc[reasons["target"] == target, ["account_id", "as_of"]].drop_duplicates()
    scored = scored.assign(as_of=pd.to_datetime(scored["as_of"]).astype("datetime64[us]"))
    # every explained as-of date counts, even one where nothing raised the risk (that is a miss, not a skip)
    cands = churners.assign(churn_date=churn_day)[["account_id", "churn_date", "dominant_cause"]].merge(
        scored, on="account_id"
    )
    window = (cands["as_of"] <= cands["churn_date"]) & (
        cands["churn_date"] < cands["as_of"] + pd.Timedelta(days=horizon_days)
    )
    matched = cands[window].sort_values("as_of").drop_duplicates("account_id", keep="last")
    if matched.empty:
        raise ChurnmlError(
            f"cause_hit_rate: none of {len(churners)} churner(s) with a known cause has {target} reasons "
            f"dated within {horizon_days} days before its churn"
        )
    named = raising.groupby(["account_id", "as_of"])["family"].agg(set)
    hits = [
        bool(named.get((a, d), set()) & families[c])
        for a, d, c in zip(matched["account_id"], matched["as_of"], matched["dominant_cause"], strict=True)
    ]
    out = matched[["account_id", "as_of", "churn_date", "dominant_cause"]].assign(hit=hits)
    return out.sort_values("account_id").reset_index(drop=True)


def cause_hit_rate(
    reasons: pd.DataFrame,
    truth_accounts: pd.DataFrame,
    cause_families: Mapping[str, Iterable[str]],
    *,
    top: int = 3,
    horizon_days: int = 90,
    target: str = "churn",
) -> float:
    """Share of churners whose top ``top`` risk-raising reasons name a feature family of their dominant cause
    (the mean of :func:`cause_hits`, which says which churners count).

    Raises:
        ChurnmlError: when no churner can be scored (the rate would be undefined).
    """
    hits = cause_hits(
        reasons, truth_accounts, cause_families, top=top, horizon_days=horizon_days, target=target
    )
    return float(hits["hit"].mean())


def cause_hit_summary(hits: pd.DataFrame) -> dict[str, Any]:
    """The hit rate overall and per cause, from :func:`cause_hits`: the numbers metrics files record.

    Returns:
        ``{"hit_rate": x, "churners": n, "by_cause": {cause: {"hit_rate": x, "churners": n}}}``, rates
        rounded to 4 decimals, causes sorted by name.
    """
    by = hits.groupby("dominant_cause")["hit"].agg(["mean", "size"]).sort_index()
    return {
        "hit_rate": round(float(hits["hit"].mean()), 4),
        "churners": len(hits),
        "by_cause": {
            str(c): {"hit_rate": round(float(r["mean"]), 4), "churners": int(r["size"])}
            for c, r in by.iterrows()
        },
    }
