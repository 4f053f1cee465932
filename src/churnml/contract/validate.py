"""Validation of a folder of contract tables: clear errors, or bad rows quarantined, never dropped."""

from __future__ import annotations

import re
from dataclasses import dataclass, field

import numpy as np
import pandas as pd
import pandera.errors as pe

from churnml.contract.schemas import TABLES
from churnml.contract.tables import OUTPUT_TABLES
from churnml.errors import ChurnmlError

REASON = "_quarantine_reason"
MAX_KEYS_SHOWN = 3
DEFAULT_MIN_DATE = "1990-01-01"
# Dates that may lie ahead of the run (a contract's scheduled term, a pre-booked renewal, an invoice's due
# date): bounded by the run's date plus this many years instead of the run's date.
FUTURE_COLUMNS = {("subscriptions", "start_date"), ("subscriptions", "end_date"), ("invoices", "due_date")}
FUTURE_YEARS = 10


@dataclass(frozen=True)
class DateBounds:
    """The plausible range of every date and timestamp of the input: ``[min_date, max_date]`` (days).

    Attributes:
        min_date: the earliest plausible day (default 1990-01-01).
        max_date: the latest plausible day (default: today, the run's wall-clock date, UTC); columns in
            :data:`FUTURE_COLUMNS` may reach :data:`FUTURE_YEARS` years past it.
    """

    min_date: pd.Timestamp
    max_date: pd.Timestamp

    @classmethod
    def of(cls, min_date: str | None = None, max_date: str | None = None) -> DateBounds:
        """Bounds from config text (empty or None: the defaults)."""
        try:
            low = pd.Timestamp(min_date or DEFAULT_MIN_DATE).normalize()
            high = (
                pd.Timestamp(max_date).normalize()
                if max_date
                else pd.Timestamp.now("UTC").tz_localize(None).normalize()
            )
        except (ValueError, TypeError):
            raise ChurnmlError(
                f"data.min_date/max_date: expected YYYY-MM-DD, got {min_date!r}/{max_date!r}"
            ) from None
        return cls(low, high)

    def limit(self, name: str, column: str) -> tuple[pd.Timestamp, pd.Timestamp]:
        """(first allowed instant, first instant past the range) of one column."""
        high = self.max_date + (
            pd.DateOffset(years=FUTURE_YEARS) if (name, column) in FUTURE_COLUMNS else pd.Timedelta(0)
        )
        return self.min_date, high + pd.Timedelta(days=1)


@dataclass
class ValidationResult:
    """Validated (coerced) tables, quarantined rows per table with a reason column, and counts."""

    tables: dict[str, pd.DataFrame]
    quarantined: dict[str, pd.DataFrame] = field(default_factory=dict)

    def counts(self) -> dict[str, dict[str, int]]:
        """Rows kept and quarantined per table."""
        return {
            name: {"valid": len(frame), "quarantined": len(self.quarantined.get(name, []))}
            for name, frame in self.tables.items()
        }


def table_failures(
    name: str, frame: pd.DataFrame, bounds: DateBounds | None = None
) -> tuple[pd.DataFrame | None, pd.DataFrame | None]:
    """Run the table's schema lazily, plus the value rules a schema cannot say: finite numbers, dates in
    ``bounds`` (default :meth:`DateBounds.of`).

    Returns:
        (failure cases, coerced frame): failures has columns column, check, failure_case, index (the
        row label, missing for table-level failures such as a missing column); the frame is None when
        the table failed.
    """
    spec = TABLES[name]
    missing = [c for c in spec.schema.columns if c not in frame.columns]
    if missing:
        raise ChurnmlError(
            f"{name}: missing column(s) {', '.join(missing)} (rule: column present; "
            f"expected {', '.join(spec.schema.columns)})"
        )
    parsed, type_failures = _parse_types(name, frame, bounds or DateBounds.of())
    try:
        validated = spec.schema.validate(parsed, lazy=True)
    except pe.SchemaErrors as exc:
        cases = _tidy(name, exc.failure_cases[["column", "check", "failure_case", "index"]])
        cases = pd.concat([type_failures, cases], ignore_index=True) if len(type_failures) else cases
        return cases.drop_duplicates(["column", "index"]).reset_index(drop=True), None
    if len(type_failures):
        return type_failures, None
    return None, validated


def _parse_types(name: str, frame: pd.DataFrame, bounds: DateBounds) -> tuple[pd.DataFrame, pd.DataFrame]:
    """Parse date and number columns cell by cell, so one bad cell fails its row, not the whole column.

    A cell fails its type, a number that is not finite (inf would become an infinite ARR at risk) or a date
    outside the plausible range (a year 2099 usage row would move the default as-of there; a year 2300 one
    does not even fit the schema's nanosecond dates). Failing cells are blanked in the parsed frame, so the
    schema's coercion never fails a whole column: the row is reported, or quarantined, by its key.
    """
    parsed = {}
    failures = []

    def fail(column: str, rule: str, raw: pd.Series, bad: pd.Series) -> None:
        failures.append(
            pd.DataFrame(
                {
                    "column": column,
                    "check": rule,
                    "failure_case": raw[bad].astype(str),
                    "index": raw.index[bad],
                }
            )
        )

    for column, col in TABLES[name].schema.columns.items():
        dtype = str(col.dtype)
        raw = frame[column]
        if dtype.startswith("datetime64"):
            values = _to_datetime(raw)
            rule = "type datetime (YYYY-MM-DD[ HH:MM:SS])"
        elif dtype in ("float64", "Int64", "int64"):
            values = pd.to_numeric(raw, errors="coerce")
            rule = f"type {'integer' if 'nt' in dtype else 'number'}"
        else:
            continue
        bad = raw.notna() & values.isna()
        if dtype in ("Int64", "int64"):
            # 2.5 seats is not an integer: its row fails (and can be quarantined), not the whole column's
            # coercion; the SQL checks (contract/sqlcheck.py) say the same
            finite = values.notna() & np.isfinite(values.astype("float64"))
            bad = bad | (finite & (values.astype("float64") % 1 != 0))
        if bad.any():
            fail(column, rule, raw, bad)
            values = values.mask(bad)
        if dtype.startswith("datetime64"):
            low, high = bounds.limit(name, column)
            out = values.notna() & ((values < low) | (values >= high))
            if out.any():
                last = (high - pd.Timedelta(days=1)).date()
                fail(
                    column, f"date in plausible range {low.date()}..{last} (data.min_date/max_date)", raw, out
                )
                values = values.mask(out)
            values = values.astype("datetime64[ns]")
        else:
            infinite = values.notna() & ~np.isfinite(values.astype("float64"))
            if infinite.any():
                fail(column, "finite number (not inf)", raw, infinite)
                values = values.mask(infinite)
        parsed[column] = values
    frame = frame.assign(**parsed)
    empty = pd.DataFrame(columns=["column", "check", "failure_case", "index"])
    return frame, (pd.concat(failures, ignore_index=True) if failures else empty)


def _to_datetime(raw: pd.Series) -> pd.Series:
    """UTC-naive timestamps at microsecond resolution (years 1..9999, so a year 2300 is a value to judge, not
    an overflow); unparseable cells become NaT."""
    if pd.api.types.is_datetime64_any_dtype(raw.dtype):
        values = raw if getattr(raw.dt, "tz", None) is None else raw.dt.tz_convert("UTC").dt.tz_localize(None)
        return values.astype("datetime64[us]")
    text = raw.astype(object).where(raw.notna(), None)
    values = pd.to_datetime(text, errors="coerce", format="ISO8601", utc=True)
    return values.dt.tz_localize(None).astype("datetime64[us]")


def _tidy(name: str, cases: pd.DataFrame, key: tuple[str, ...] | None = None) -> pd.DataFrame:
    """One failure per (rule, row): frame-level rules are reported once, on the column they are about."""
    key = TABLES[name].key if key is None else key
    check = cases["check"].astype(str)
    is_dup = check.str.contains("uniqueness") | (check == "unique")
    cases = cases.assign(
        check=check.where(~is_dup, "duplicate key"),
        column=cases["column"].where(~is_dup, ", ".join(key)),
    )
    # frame-level rules are named "<column> <op> <other column>" (schemas._after)
    frame_rule = cases["check"].str.match(r"^\w+ [<>]=? \w+$")
    cases = cases.assign(column=cases["column"].where(~frame_rule, cases["check"].str.split(" ").str[0]))
    return cases.drop_duplicates(["column", "check", "index"]).reset_index(drop=True)


def _key_text(frame: pd.DataFrame, name: str, index_labels: list, key: tuple[str, ...] | None = None) -> str:
    key = TABLES[name].key if key is None else key
    rows = frame.loc[index_labels[:MAX_KEYS_SHOWN], [c for c in key if c in frame.columns]]
    parts = [", ".join(f"{c}={row[c]}" for c in rows.columns) for _, row in rows.iterrows()]
    return "; ".join(f"({p})" for p in dict.fromkeys(parts))  # a duplicated key is shown once


def describe_failures(
    name: str, frame: pd.DataFrame, failures: pd.DataFrame, key: tuple[str, ...] | None = None
) -> str:
    """One line: table, column, rule, how many rows, and a few offending keys (``key``: default the input
    table's)."""
    first = failures.iloc[0]
    same = failures[
        (failures["column"].astype(str) == str(first["column"])) & (failures["check"] == first["check"])
    ]
    labels = [i for i in same["index"].dropna().unique().tolist() if i in frame.index]
    column = first["column"] if pd.notna(first["column"]) else "(table)"
    where = f"; e.g. {_key_text(frame, name, labels, key)}" if labels else ""
    shown = pd.notna(first["failure_case"]) and (not labels or str(first["check"]).startswith("type "))
    value = f" (value {first['failure_case']!r})" if shown else ""
    more = failures[["column", "check"]].drop_duplicates()
    extra = f" [+{len(more) - 1} other failing rule(s)]" if len(more) > 1 else ""
    return f"{name}: column {column!r} fails rule {first['check']!r} in {max(len(labels), 1)} row(s){value}{where}{extra}"


def _bad_rows(name: str, frame: pd.DataFrame, failures: pd.DataFrame) -> pd.Series:
    """Reason per offending row label; table-level failures cannot be quarantined and raise."""
    table_level = failures[failures["index"].isna()]
    if len(table_level):
        raise ChurnmlError(describe_failures(name, frame, table_level))
    reasons = failures.assign(reason=failures["column"].astype(str) + ": " + failures["check"].astype(str))
    return reasons.groupby("index")["reason"].agg(lambda r: "; ".join(sorted(set(r))))


def _split(
    name: str, frame: pd.DataFrame, quarantine: bool, bounds: DateBounds
) -> tuple[pd.DataFrame, pd.DataFrame]:
    failures, coerced = table_failures(name, frame, bounds)
    if failures is None:
        return coerced, frame.iloc[0:0].assign(**{REASON: pd.Series(dtype=str)})
    if not quarantine:
        raise ChurnmlError(describe_failures(name, frame, failures))
    reasons = _bad_rows(name, frame, failures)
    bad_mask = frame.index.isin(reasons.index)
    bad = frame[bad_mask].assign(**{REASON: reasons.reindex(frame.index[bad_mask]).to_numpy()})
    good_failures, good = table_failures(name, frame[~bad_mask], bounds)
    if good_failures is not None:  # a rule over several rows (a key duplicated) can only fail as a set
        raise ChurnmlError(describe_failures(name, frame[~bad_mask], good_failures))
    return good, bad


def _unknown_accounts(name: str, frame: pd.DataFrame, known: pd.Index) -> pd.Series:
    return ~frame["account_id"].isin(known)


def validate_tables(
    tables: dict[str, pd.DataFrame], quarantine: bool = False, bounds: DateBounds | None = None
) -> ValidationResult:
    """Check every table against its schema and every ``account_id`` against ``accounts``.

    Args:
        tables: raw tables by name (as read, before coercion).
        quarantine: move bad rows aside (with a reason) instead of failing on the first bad rule.
        bounds: the plausible range of dates (default: 1990-01-01 to today, UTC).

    Returns:
        The coerced valid tables and, per table, the quarantined rows: valid + quarantined = input.

    Raises:
        ChurnmlError: one line naming the table, column, rule and a few offending keys.
    """
    unknown = sorted(set(tables) - set(TABLES))
    if unknown:
        raise ChurnmlError(f"unknown table(s) {', '.join(unknown)}; the contract has {', '.join(TABLES)}")
    valid: dict[str, pd.DataFrame] = {}
    bad: dict[str, pd.DataFrame] = {}
    for name in TABLES:
        if name not in tables:
            continue
        frame = tables[name].reset_index(drop=True)
        good, rejected = _split(name, frame, quarantine, bounds or DateBounds.of())
        if name != "accounts" and "accounts" in valid:
            orphan = _unknown_accounts(name, good, pd.Index(valid["accounts"]["account_id"]))
            if orphan.any():
                if not quarantine:
                    keys = _key_text(good, name, good.index[orphan].tolist())
                    raise ChurnmlError(
                        f"{name}: column 'account_id' fails rule 'known account (present in accounts)' "
                        f"in {int(orphan.sum())} row(s); e.g. {keys}"
                    )
                labels = good.index[orphan]
                moved = frame.loc[labels].assign(
                    **{REASON: "account_id: known account (present in accounts)"}
                )
                rejected = pd.concat([rejected, moved])
                good = good[~orphan]
        valid[name] = good.reset_index(drop=True)
        if len(rejected):
            bad[name] = rejected.reset_index(drop=True)
    return ValidationResult(valid, bad)


_TYPE_RULE = re.compile(r"^(?:coerce_dtype|dtype)\('(.+)'\)$")
_STRUCTURE_RULES = {
    "column_in_schema": "declared column (the schema has no such column)",
    "column_in_dataframe": "column present",
}


def _output_cases(name: str, cases: pd.DataFrame) -> pd.DataFrame:
    """Pandera's failure cases in the words of :func:`describe_failures`, structural failures first."""
    schema = OUTPUT_TABLES[name].schema
    patterns = {c for c, col in schema.columns.items() if col.regex}
    check = cases["check"].astype(str)
    structural = check.isin(list(_STRUCTURE_RULES)) | check.str.startswith("no_regex_column_match")
    # a regex column's failure is also reported on the real column: keep that one
    cases = cases[structural | ~cases["column"].isin(patterns)]
    check = cases["check"].astype(str)
    structural = check.isin(list(_STRUCTURE_RULES)) | check.str.startswith("no_regex_column_match")
    named = check.isin(list(_STRUCTURE_RULES))
    cases = cases.assign(
        column=cases["column"].where(~named, cases["failure_case"]),
        check=check.map(lambda c: _STRUCTURE_RULES.get(c) or _type_rule(c)),
        failure_case=cases["failure_case"].where(~structural, None),
        index=cases["index"].where(~structural, None),
        _order=(~structural).astype(int),
    )
    cases = _tidy(name, cases, OUTPUT_TABLES[name].key)
    return cases.sort_values("_order", kind="stable").drop(columns="_order").reset_index(drop=True)


def _type_rule(check: str) -> str:
    if check.startswith("no_regex_column_match"):
        return "column present"
    match = _TYPE_RULE.match(check)
    return f"type {match.group(1)}" if match else check


def check_output(name: str, frame: pd.DataFrame) -> pd.DataFrame:
    """Validate a persisted table (:data:`churnml.contract.tables.OUTPUT_TABLES`) and return it coerced.

    Raises:
        ChurnmlError: one line naming the table, column, rule and a few offending keys.
    """
    if name not in OUTPUT_TABLES:
        raise ChurnmlError(f"unknown output table {name!r}; declared: {', '.join(OUTPUT_TABLES)}")
    frame = frame.reset_index(drop=True)
    try:
        return OUTPUT_TABLES[name].schema.validate(frame, lazy=True)
    except pe.SchemaErrors as exc:
        cases = _output_cases(name, exc.failure_cases[["column", "check", "failure_case", "index"]])
    first = cases.iloc[0]
    if pd.isna(first["index"]):  # a missing or undeclared column: no rows to name
        more = len(cases[["column", "check"]].drop_duplicates()) - 1
        extra = f" [+{more} other failing rule(s)]" if more else ""
        raise ChurnmlError(f"{name}: column {first['column']!r} fails rule {first['check']!r}{extra}")
    raise ChurnmlError(describe_failures(name, frame, cases, OUTPUT_TABLES[name].key))
