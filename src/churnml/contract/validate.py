"""Validation of a folder of contract tables: clear errors, or bad rows quarantined, never dropped."""

from __future__ import annotations

import re
from dataclasses import dataclass, field

import pandas as pd
import pandera.errors as pe

from churnml.contract.schemas import TABLES
from churnml.contract.tables import OUTPUT_TABLES
from churnml.errors import ChurnmlError

REASON = "_quarantine_reason"
MAX_KEYS_SHOWN = 3


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


def table_failures(name: str, frame: pd.DataFrame) -> tuple[pd.DataFrame | None, pd.DataFrame | None]:
    """Run the table's schema lazily.

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
    parsed, type_failures = _parse_types(name, frame)
    try:
        validated = spec.schema.validate(parsed, lazy=True)
    except pe.SchemaErrors as exc:
        cases = _tidy(name, exc.failure_cases[["column", "check", "failure_case", "index"]])
        cases = pd.concat([type_failures, cases], ignore_index=True) if len(type_failures) else cases
        return cases.drop_duplicates(["column", "index"]).reset_index(drop=True), None
    if len(type_failures):
        return type_failures, None
    return None, validated


def _parse_types(name: str, frame: pd.DataFrame) -> tuple[pd.DataFrame, pd.DataFrame]:
    """Parse date and number columns cell by cell, so one bad cell fails its row, not the whole column."""
    parsed = {}
    failures = []
    for column, col in TABLES[name].schema.columns.items():
        dtype = str(col.dtype)
        raw = frame[column]
        if dtype.startswith("datetime64"):
            values = pd.to_datetime(raw, errors="coerce", format="ISO8601", utc=True).dt.tz_localize(None)
            rule = "type datetime (YYYY-MM-DD[ HH:MM:SS])"
        elif dtype in ("float64", "Int64", "int64"):
            values = pd.to_numeric(raw, errors="coerce")
            rule = f"type {'integer' if 'nt' in dtype else 'number'}"
        else:
            continue
        bad = raw.notna() & values.isna()
        if bad.any():
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
        parsed[column] = values
    frame = frame.assign(**parsed)
    empty = pd.DataFrame(columns=["column", "check", "failure_case", "index"])
    return frame, (pd.concat(failures, ignore_index=True) if failures else empty)


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


def _split(name: str, frame: pd.DataFrame, quarantine: bool) -> tuple[pd.DataFrame, pd.DataFrame]:
    failures, coerced = table_failures(name, frame)
    if failures is None:
        return coerced, frame.iloc[0:0].assign(**{REASON: pd.Series(dtype=str)})
    if not quarantine:
        raise ChurnmlError(describe_failures(name, frame, failures))
    reasons = _bad_rows(name, frame, failures)
    bad_mask = frame.index.isin(reasons.index)
    bad = frame[bad_mask].assign(**{REASON: reasons.reindex(frame.index[bad_mask]).to_numpy()})
    good_failures, good = table_failures(name, frame[~bad_mask])
    if good_failures is not None:  # a rule over several rows (a key duplicated) can only fail as a set
        raise ChurnmlError(describe_failures(name, frame[~bad_mask], good_failures))
    return good, bad


def _unknown_accounts(name: str, frame: pd.DataFrame, known: pd.Index) -> pd.Series:
    return ~frame["account_id"].isin(known)


def validate_tables(tables: dict[str, pd.DataFrame], quarantine: bool = False) -> ValidationResult:
    """Check every table against its schema and every ``account_id`` against ``accounts``.

    Args:
        tables: raw tables by name (as read, before coercion).
        quarantine: move bad rows aside (with a reason) instead of failing on the first bad rule.

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
        good, rejected = _split(name, frame, quarantine)
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
