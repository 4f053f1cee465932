"""The data contract: one pandera schema per table, declared once, used at every I/O boundary.

Input tables (one file per table in a folder, ``DIR/<table>.parquet`` or ``DIR/<table>.csv``):
``accounts``, ``subscriptions`` and ``usage`` are required; ``support_tickets``, ``nps_responses``,
``csm_activities``, ``contacts`` and ``invoices`` are optional. Dates are UTC calendar days
(``*_date``), timestamps are UTC (``*_at``); a subscription's ``end_date`` is exclusive (the first day
it is no longer active) and empty while it runs open-ended.
"""

from __future__ import annotations

from dataclasses import dataclass

import pandas as pd
import pandera.pandas as pa

DATE = "datetime64[ns]"  # pandera coerces datetimes to ns; one unit everywhere
SEGMENTS = ("enterprise", "mid_market", "smb")
TOUCH_MODELS = ("high_touch", "low_touch", "tech_touch")
# Each billing period and its term in months: a contract renews every term from its start. The features' term
# end and the survival model's contract rule read the term from here.
BILLING_PERIOD_MONTHS = {"monthly": 1, "semiannual": 6, "annual": 12}
BILLING_PERIODS = tuple(BILLING_PERIOD_MONTHS)
PRIORITIES = ("low", "normal", "high", "urgent")
CONTACT_ROLES = ("sponsor", "champion", "admin", "user")


def _is_day(s: pd.Series) -> pd.Series:
    return s.isna() | (s == s.dt.normalize())


def _after(later: str, earlier: str, strict: bool) -> pa.Check:
    def check(df: pd.DataFrame) -> pd.Series:
        ok = df[later] > df[earlier] if strict else df[later] >= df[earlier]
        return df[later].isna() | ok

    op = ">" if strict else ">="
    return pa.Check(check, name=f"{later} {op} {earlier}")


def _day(nullable: bool = False) -> pa.Column:
    return pa.Column(
        DATE, pa.Check(_is_day, name="calendar day", error="must be a whole day"), nullable=nullable
    )


def _key() -> pa.Column:
    return pa.Column(str, pa.Check.str_length(min_value=1), nullable=False)


def _text(nullable: bool = True) -> pa.Column:
    return pa.Column(str, nullable=nullable)


@dataclass(frozen=True)
class TableSpec:
    """A table of the contract: its schema, key, whether it is required, and an example row."""

    name: str
    schema: pa.DataFrameSchema
    key: tuple[str, ...]
    required: bool
    description: str
    example: dict


def _schema(name: str, columns: dict, key: tuple[str, ...], checks: list | None = None) -> pa.DataFrameSchema:
    return pa.DataFrameSchema(
        columns, checks=checks or [], unique=list(key), coerce=True, strict="filter", name=name
    )


ACCOUNTS = TableSpec(
    "accounts",
    _schema(
        "accounts",
        {
            "account_id": _key(),
            "account_name": _text(),
            "segment": pa.Column(str, pa.Check.isin(SEGMENTS)),
            "touch_model": pa.Column(str, pa.Check.isin(TOUCH_MODELS)),
            "industry": _text(),
            "region": _text(),
            "csm_id": _text(),
            "created_date": _day(),
        },
        ("account_id",),
    ),
    ("account_id",),
    True,
    "One row per customer account: segment and touch model drive the play a CSM runs.",
    {
        "account_id": "A000001",
        "account_name": "Acme Corp",
        "segment": "mid_market",
        "touch_model": "low_touch",
        "industry": "software",
        "region": "emea",
        "csm_id": "csm_07",
        "created_date": "2024-01-15",
    },
)

SUBSCRIPTIONS = TableSpec(
    "subscriptions",
    _schema(
        "subscriptions",
        {
            "subscription_id": _key(),
            "account_id": _key(),
            "plan": _text(nullable=False),
            "billing_period": pa.Column(str, pa.Check.isin(BILLING_PERIODS)),
            "start_date": _day(),
            "end_date": _day(nullable=True),
            "mrr": pa.Column(float, pa.Check.ge(0)),
            "seats": pa.Column("Int64", pa.Check.ge(0)),
        },
        ("subscription_id",),
        [_after("end_date", "start_date", strict=True)],
    ),
    ("subscription_id",),
    True,
    "Contract history: one row per contract period with constant plan, price and seats. "
    "A renewal or a change starts a new row; end_date is exclusive and empty while open-ended.",
    {
        "subscription_id": "S0000001",
        "account_id": "A000001",
        "plan": "professional",
        "billing_period": "annual",
        "start_date": "2024-01-15",
        "end_date": "2025-01-15",
        "mrr": 1250.0,
        "seats": 25,
    },
)

USAGE = TableSpec(
    "usage",
    _schema(
        "usage",
        {
            "account_id": _key(),
            "date": _day(),
            "metric": _key(),
            "value": pa.Column(float, pa.Check.ge(0)),
        },
        ("account_id", "date", "metric"),
    ),
    ("account_id", "date", "metric"),
    True,
    "Daily product usage in long form; the metric list comes from the data. Days without a row mean 0.",
    {"account_id": "A000001", "date": "2024-03-04", "metric": "active_users", "value": 17.0},
)

SUPPORT_TICKETS = TableSpec(
    "support_tickets",
    _schema(
        "support_tickets",
        {
            "ticket_id": _key(),
            "account_id": _key(),
            "created_at": pa.Column(DATE),
            "resolved_at": pa.Column(DATE, nullable=True),
            "priority": pa.Column(str, pa.Check.isin(PRIORITIES)),
            "category": _text(),
            "csat": pa.Column(float, pa.Check.in_range(1, 5), nullable=True),
        },
        ("ticket_id",),
        [_after("resolved_at", "created_at", strict=False)],
    ),
    ("ticket_id",),
    False,
    "Support tickets; csat is the satisfaction rating (1-5) given when the ticket was resolved.",
    {
        "ticket_id": "T0000001",
        "account_id": "A000001",
        "created_at": "2024-03-04 09:12:00",
        "resolved_at": "2024-03-05 16:40:00",
        "priority": "high",
        "category": "bug",
        "csat": 4.0,
    },
)

NPS_RESPONSES = TableSpec(
    "nps_responses",
    _schema(
        "nps_responses",
        {
            "response_id": _key(),
            "account_id": _key(),
            "contact_id": _text(),
            "responded_at": pa.Column(DATE),
            "score": pa.Column("Int64", pa.Check.in_range(0, 10)),
        },
        ("response_id",),
    ),
    ("response_id",),
    False,
    "Net Promoter Score survey answers (0-10).",
    {
        "response_id": "N0000001",
        "account_id": "A000001",
        "contact_id": "C0000001",
        "responded_at": "2024-06-01 10:00:00",
        "score": 9,
    },
)

CSM_ACTIVITIES = TableSpec(
    "csm_activities",
    _schema(
        "csm_activities",
        {
            "activity_id": _key(),
            "account_id": _key(),
            "occurred_at": pa.Column(DATE),
            "kind": _text(nullable=False),
            "csm_id": _text(),
        },
        ("activity_id",),
    ),
    ("activity_id",),
    False,
    "Customer-success touches: calls, emails, meetings, QBRs, onboarding sessions.",
    {
        "activity_id": "M0000001",
        "account_id": "A000001",
        "occurred_at": "2024-04-02 15:00:00",
        "kind": "qbr",
        "csm_id": "csm_07",
    },
)

CONTACTS = TableSpec(
    "contacts",
    _schema(
        "contacts",
        {
            "contact_id": _key(),
            "account_id": _key(),
            "role": pa.Column(str, pa.Check.isin(CONTACT_ROLES)),
            "start_date": _day(),
            "end_date": _day(nullable=True),
        },
        ("contact_id",),
        [_after("end_date", "start_date", strict=False)],
    ),
    ("contact_id",),
    False,
    "People at the customer and their role; end_date is the day they left (sponsor/champion changes).",
    {
        "contact_id": "C0000001",
        "account_id": "A000001",
        "role": "sponsor",
        "start_date": "2024-01-15",
        "end_date": "",
    },
)

INVOICES = TableSpec(
    "invoices",
    _schema(
        "invoices",
        {
            "invoice_id": _key(),
            "account_id": _key(),
            "issued_date": _day(),
            "due_date": _day(),
            "amount": pa.Column(float, pa.Check.ge(0)),
            "paid_date": _day(nullable=True),
        },
        ("invoice_id",),
        [_after("due_date", "issued_date", strict=False)],
    ),
    ("invoice_id",),
    False,
    "Invoices and payments; paid_date empty while unpaid.",
    {
        "invoice_id": "I0000001",
        "account_id": "A000001",
        "issued_date": "2024-02-15",
        "due_date": "2024-03-16",
        "amount": 15000.0,
        "paid_date": "2024-03-10",
    },
)

TABLES: dict[str, TableSpec] = {
    t.name: t
    for t in (
        ACCOUNTS,
        SUBSCRIPTIONS,
        USAGE,
        SUPPORT_TICKETS,
        NPS_RESPONSES,
        CSM_ACTIVITIES,
        CONTACTS,
        INVOICES,
    )
}
REQUIRED_TABLES = tuple(name for name, t in TABLES.items() if t.required)
OPTIONAL_TABLES = tuple(name for name, t in TABLES.items() if not t.required)


def _type_name(column) -> str:
    dtype = str(column.dtype)
    if "string" in dtype or dtype == "str":
        return "text"
    return {
        "datetime64[ns]": "date" if "calendar day" in [c.name for c in column.checks] else "timestamp",
        "float64": "float",
        "Int64": "integer",
    }.get(dtype, dtype)


def _rule_text(check) -> str:
    stats = check.statistics or {}
    if check.name == "isin":
        return "one of " + ", ".join(map(str, stats["allowed_values"]))
    if check.name == "greater_than_or_equal_to":
        return f">= {stats['min_value']}"
    if check.name == "in_range":
        return f"{stats['min_value']} to {stats['max_value']}"
    if check.name == "str_length":
        return "non-empty"
    return check.name


def contract_markdown() -> str:
    """The contract as Markdown (the README's section is generated from this; a test keeps them equal)."""
    out = []
    for spec in TABLES.values():
        need = "required" if spec.required else "optional"
        out += [f"#### `{spec.name}` ({need}; key: {', '.join(spec.key)})", "", spec.description, ""]
        out += ["| column | type | nullable | rules | example |", "|---|---|---|---|---|"]
        for name, col in spec.schema.columns.items():
            rules = ", ".join(_rule_text(c) for c in col.checks)
            example = spec.example.get(name, "")
            out.append(
                f"| `{name}` | {_type_name(col)} | {'yes' if col.nullable else 'no'} | {rules} | {example} |"
            )
        frame_rules = ", ".join(c.name for c in spec.schema.checks)
        if frame_rules:
            out += ["", f"Row rule: {frame_rules}."]
        out.append("")
    return "\n".join(out)
