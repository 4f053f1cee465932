"""The sentence templates: one function per feature family, rendering a driver with the account's own numbers.

Every feature the engine produces renders, missing values included (tests enforce it); a feature outside the
engine's catalogue still gets a sentence from its name.
"""

from __future__ import annotations

import math
import re
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

import numpy as np
import pandas as pd

from churnml.explain.drivers import feature_info

if TYPE_CHECKING:
    from churnml.features.catalogue import FeatureInfo
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
    if abs(v) < 0.01:
        return "under 0.01" if v > 0 else "above -0.01"
    return f"{v:.2f}".rstrip("0").removesuffix(".")


def _int(v: float) -> str:
    return f"{round(float(v)):,d}"


def _plural(n: float, word: str, many: str | None = None) -> str:
    n = max(float(n), 0.0)  # a count below zero is a feed glitch: it reads as none
    return f"{_int(n)} {word if round(n) == 1 else (many or word + 's')}"


def _count(n: float, word: str, many: str | None = None) -> str:
    """ "3 tickets", "1 ticket", and "No tickets" for zero."""
    if round(float(n)) <= 0:
        return f"No {many or word + 's'}"
    return _plural(n, word, many)


def _money(v: float) -> str:
    v = round(float(v))
    return f"-${-v:,d}" if v < 0 else f"${v:,d}"


def _fraction_pct(v: float) -> str:
    """A share stored as a fraction (0.34) or a percentage (34) shown as 34%."""
    v = float(v)
    return f"{(v * 100 if abs(v) <= 1.5 else v):,.0f}%"


def _change(v: float) -> str:
    """A relative change's size: "45%", and "more than tenfold" past +1,000%."""
    pct = abs(float(v)) * 100
    return "more than tenfold" if pct >= 1000 else f"{pct:.0f}%"


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
    return f"{label} {'down' if v < 0 else 'up'} {_change(v)} vs {_previous(i.window_days)}{tail}"


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
    # a negative count of days (a clock or feed glitch) reads as today, never "-1 days ago"
    return f"{what} today" if round(float(ctx.value)) <= 0 else f"{what} {_plural(ctx.value, 'day')} ago"


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
        size = _money(abs(v)) if i.agg == "delta" and m in ("arr", "mrr") else _change(v)
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
        how = {"annual": "annually", "semiannual": "every six months", "monthly": "monthly"}
        return f"Billed {how.get(period, _words(period))}"
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
            # absent invoices mean something only against the billing period: an annual contract has none
            # due for months, a monthly one should have several
            period = ctx.get("contract_billing_period")
            why = {
                "annual": "billed annually",
                "semiannual": "billed every six months",
                "monthly": "billed monthly",
            }.get(str(period or ""), "")
            text = _join("No invoice due", _window(i.window_days))
            return f"{text} ({why})" if why else text
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
