"""The contract's rules as DuckDB SQL over table files: validation out of core, for tables pandas cannot hold.

Why: the usage table is the one large input (300 M rows for 100,000 accounts over two years, about 170 bytes
a row once in pandas). :func:`churnml.contract.validate.validate_tables` parses and checks frames in memory;
this module runs the same rules as SQL over the Parquet (or CSV) files, streaming, so memory stays bounded
by DuckDB's ``memory_limit`` whatever the row count; only failing rows and the few aggregates come back.

One set of rules: nothing here restates a rule. :func:`column_rules` derives every SQL condition from the
pandera schemas of :mod:`churnml.contract.schemas` (a column's type, nullability and checks, the frame's
``later >= earlier`` checks, the unique key) and from :class:`~churnml.contract.validate.DateBounds`; a check
kind it does not know is refused (:class:`NotImplementedError`, which the tests turn into a failure for
every declared table), and tests/test_sqlcheck.py runs both engines on one bad row per rule and requires the
same rows kept, the same rows quarantined with the same reasons, and errors naming the same column and rule.

Rule order follows the pandas path, one reason per (column, row): the cell's type, a finite number, a date
in the plausible range (a failing cell is blanked, so later rules see it missing), not null, the column's
checks in declared order, then frame rules on their first column; the unique key (rows sharing a key, on the
blanked values) is reported on the key's columns; last, on the rows that passed, ``account_id`` present in
the valid accounts.
"""

from __future__ import annotations

import re
import shutil
import tempfile
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path

import duckdb
import pandas as pd

from churnml.contract.io import table_files
from churnml.contract.schemas import TABLES
from churnml.contract.validate import MAX_KEYS_SHOWN, REASON, DateBounds
from churnml.errors import ChurnmlError

KNOWN_ACCOUNT = "known account (present in accounts)"
ROW = "_row"  # the row's position in its file (the raw frame's index in the pandas path)
FRAME_RULE = re.compile(r"^(\w+) ([<>]=?) (\w+)$")  # schemas._after's names


def q(name: str) -> str:
    """A quoted SQL identifier."""
    return '"' + str(name).replace('"', '""') + '"'


def lit(text: object) -> str:
    """A SQL string literal."""
    return "'" + str(text).replace("'", "''") + "'"


def scan_sql(path: Path | str) -> str:
    """A relation reading one table file as written: Parquet with its types, CSV as text (empty = missing),
    each with its row position as ``_row``."""
    path = Path(path)
    if path.suffix == ".csv":
        # as read_raw_table: every cell text, only an empty cell missing
        return (
            f"(SELECT *, (row_number() OVER ()) - 1 AS {ROW} FROM read_csv({lit(path)}, header = true, "
            "all_varchar = true, nullstr = '', quote = '\"', escape = '\"'))"
        )
    return f"(SELECT * EXCLUDE (file_row_number), file_row_number AS {ROW} FROM read_parquet({lit(path)}, file_row_number = true))"


@dataclass(frozen=True)
class ColumnRules:
    """One column's parsed value, its blanked value and its rules, as SQL over the raw column ``r_<col>``."""

    column: str
    kind: str  # text | date | number | integer
    parsed: str  # the typed value (NULL where missing or unparseable)
    cell_rules: tuple[tuple[str, str], ...]  # (rule, fails-when SQL over parsed) before blanking
    rules: tuple[tuple[str, str], ...]  # (rule, fails-when SQL over the blanked value v_<col>)
    output: str  # the valid value's SQL type


def _kind(dtype: str) -> str:
    if dtype.startswith("datetime64"):
        return "date"
    if dtype in ("float64",):
        return "number"
    if dtype in ("Int64", "int64"):
        return "integer"
    return "text"


def _check_sql(check, value: str) -> str:
    """Fails-when SQL of one pandera column check (missing values pass, as pandera ignores them)."""
    stats = check.statistics or {}
    if check.name == "isin":
        return f"{value} NOT IN ({', '.join(lit(v) for v in stats['allowed_values'])})"
    if check.name == "greater_than_or_equal_to":
        return f"{value} < {float(stats['min_value'])!r}"
    if check.name == "in_range":
        low = ">=" if stats.get("include_min", True) else ">"
        high = "<=" if stats.get("include_max", True) else "<"
        return f"NOT ({value} {low} {float(stats['min_value'])!r} AND {value} {high} {float(stats['max_value'])!r})"
    if check.name == "str_length" and stats.get("max_value") is None and stats.get("exact_value") is None:
        return f"length({value}) < {int(stats['min_value'])}"
    if check.name == "calendar day":
        return f"{value} <> date_trunc('day', {value})"
    raise NotImplementedError(f"no SQL for the schema check {check.name!r} ({check.error})")


def rule_text(check) -> str:
    """The rule's name as the pandas path reports it (pandera's error text)."""
    return str(check.error)


def column_rules(name: str, bounds: DateBounds, types: Mapping[str, str]) -> list[ColumnRules]:
    """Every declared column's rules as SQL, derived from the table's schema.

    Args:
        name: the table.
        bounds: the plausible date range.
        types: the DuckDB type of each raw column (``r_<col>``): a Parquet NaN in a float column is a missing
            value, as in pandas; in a text column ``'nan'`` is a cell that is not a number.
    """
    out = []
    for column, col in TABLES[name].schema.columns.items():
        raw = q(f"r_{column}")
        kind = _kind(str(col.dtype))
        raw_type = types.get(column, "VARCHAR").upper()
        cell: list[tuple[str, str]] = []
        if kind == "date":
            if raw_type == "VARCHAR":
                parsed = f"TRY_CAST(TRY_CAST({raw} AS TIMESTAMPTZ) AS TIMESTAMP)"
            else:
                parsed = f"TRY_CAST({raw} AS TIMESTAMP)"
            cell.append(("type datetime (YYYY-MM-DD[ HH:MM:SS])", f"{raw} IS NOT NULL AND p IS NULL"))
            low, high = bounds.limit(name, column)
            last = (high - pd.Timedelta(days=1)).date()
            cell.append(
                (
                    f"date in plausible range {low.date()}..{last} (data.min_date/max_date)",
                    f"p < TIMESTAMP '{low}' OR p >= TIMESTAMP '{high}'",
                )
            )
            output = "TIMESTAMP"
        elif kind in ("number", "integer"):
            numeric = any(t in raw_type for t in ("DOUBLE", "FLOAT", "DECIMAL", "INT"))
            parsed = f"TRY_CAST({raw} AS DOUBLE)"
            if numeric:  # a float NaN is pandas' missing value
                parsed = f"(CASE WHEN isnan(TRY_CAST({raw} AS DOUBLE)) THEN NULL ELSE {parsed} END)"
            raw_missing = (
                f"({raw} IS NULL OR isnan(TRY_CAST({raw} AS DOUBLE)))" if numeric else f"{raw} IS NULL"
            )
            if kind == "integer":
                cell.append(
                    (
                        "type integer",
                        f"NOT {raw_missing} AND (p IS NULL OR (NOT isinf(p) AND p <> floor(p)))",
                    )
                )
            else:
                cell.append(("type number", f"NOT {raw_missing} AND p IS NULL"))
            cell.append(("finite number (not inf)", "isinf(p)"))
            output = "BIGINT" if kind == "integer" else "DOUBLE"
        else:
            parsed = f"CAST({raw} AS VARCHAR)"
            output = "VARCHAR"
        value = q(f"v_{column}")
        rules: list[tuple[str, str]] = []
        if not col.nullable:
            rules.append(("not_nullable", f"{value} IS NULL"))
        rules += [(rule_text(c), _check_sql(c, value)) for c in col.checks]
        out.append(ColumnRules(column, kind, parsed, tuple(cell), tuple(rules), output))
    return out


def frame_rules(name: str) -> list[tuple[str, str, str]]:
    """(column reported on, rule, fails-when SQL) of the schema's frame checks (``later op earlier``)."""
    out = []
    for check in TABLES[name].schema.checks:
        m = FRAME_RULE.match(str(check.name))
        if not m:
            raise NotImplementedError(f"no SQL for the frame check {check.name!r} of {name}")
        later, op, earlier = m.groups()
        ok = f"{q('v_' + later)} IS NULL OR {q('v_' + later)} {op} {q('v_' + earlier)}"
        out.append((later, str(check.name), f"NOT COALESCE({ok}, FALSE)"))
    return out


def _p(cond: str, column: str) -> str:
    """A cell rule's condition over the column's parsed value (``p`` in :func:`column_rules`)."""
    return re.sub(r"\bp\b", q("p_" + column), cond)


def checked_sql(name: str, source: str, bounds: DateBounds, types: Mapping[str, str]) -> str:
    """Per raw row: ``_row``, the raw columns ``r_<col>``, the blanked typed values ``v_<col>`` and, per
    column, the first rule it fails (``f_<col>``, NULL when it passes; frame rules on their first column)."""
    cols = column_rules(name, bounds, types)
    raw = ", ".join(f"{q(c)} AS {q('r_' + c)}" for c in TABLES[name].schema.columns)
    parsed = ", ".join(f"{c.parsed} AS {q('p_' + c.column)}" for c in cols)
    cell = []
    for c in cols:
        whens = " ".join(f"WHEN {_p(cond, c.column)} THEN {lit(rule)}" for rule, cond in c.cell_rules)
        cell.append(f"{f'CASE {whens} END' if whens else 'CAST(NULL AS VARCHAR)'} AS {q('c_' + c.column)}")
    # a cell failing its type, finiteness or range is blanked: the rules after it see it missing
    blanked = ", ".join(
        f"CASE WHEN {q('c_' + c.column)} IS NULL THEN {q('p_' + c.column)} END AS {q('v_' + c.column)}"
        for c in cols
    )
    by_column: dict[str, list[tuple[str, str]]] = {c.column: list(c.rules) for c in cols}
    for column, rule, cond in frame_rules(name):
        by_column[column].append((rule, cond))
    fails = []
    for c in cols:
        whens = " ".join(f"WHEN {cond} THEN {lit(rule)}" for rule, cond in by_column[c.column])
        rest = f"CASE {whens} END" if whens else "CAST(NULL AS VARCHAR)"
        fails.append(f"COALESCE({q('c_' + c.column)}, {rest}) AS {q('f_' + c.column)}")
    return f"""
SELECT *, {", ".join(fails)} FROM (
  SELECT *, {blanked} FROM (
    SELECT *, {", ".join(cell)} FROM (
      SELECT {ROW}, {raw}, {parsed} FROM {source}
    )
  )
)"""


def valid_sql(name: str) -> str:
    """The SELECT list of a valid row: the blanked values under their names, in the output types."""
    return ", ".join(
        f"CAST({q('v_' + c.column)} AS {c.output}) AS {q(c.column)}"
        for c in column_rules(name, DateBounds.of(), {})
    )


def connect(memory_limit: str = "4GB", temp_dir: str | Path | None = None) -> duckdb.DuckDBPyConnection:
    """A DuckDB connection for validation: UTC, bounded memory, insertion order kept (valid rows stay in
    their file's order, so what is built from them does not move)."""
    config: dict[str, object] = {"memory_limit": memory_limit, "preserve_insertion_order": True}
    if temp_dir is not None:
        config["temp_directory"] = str(temp_dir)
    try:
        con = duckdb.connect(config=config)
    except duckdb.Error as exc:
        raise ChurnmlError(f"validate: cannot start DuckDB ({str(exc).splitlines()[0]})") from None
    con.execute("SET TimeZone = 'UTC'")
    return con


@dataclass
class Checked:
    """One table checked in DuckDB (views and temp tables on the connection, named after the table).

    ``chk_<t>``: every row checked (``_row``, ``r_*``, ``v_*``, ``f_*``); ``bad_<t>``: the failing rows, one
    per row, with ``reason`` (``column: rule; ...``) and ``first`` (the first failure's stage, column
    position, column and rule, for the one-line error).
    """

    name: str
    bad: int
    set_rules: bool  # whether the unique key and known accounts were checked


DAY_BITS = 63  # days per bucket of the duplicate screen: one BIGINT bit mask each


def _duplicate_keys(con: duckdb.DuckDBPyConnection, name: str) -> None:
    """The keys held by more than one row of ``chk_<name>``, as the temp table ``dup_<name>``.

    A plain ``GROUP BY key HAVING COUNT(*) > 1`` holds one group per row: for the usage table (300 M rows,
    key account/date/metric) that is 300 M string groups, and it ran at about 250,000 groups a second on the
    2-core machine (20 s for 5 M rows). A key with a day in it is screened first instead: per (other key columns,
    block of 63 days) one count and one bit per day (``BIT_OR``); a block holds a duplicate exactly when
    its count exceeds its bits. That is about 60 times fewer groups, of fixed size; the exact ``GROUP BY``
    then runs only over the rows of the blocks the screen flagged, and over rows with a missing key part
    (which fail ``not_nullable`` anyway, but pandas counts two of them as duplicates, so this does too).
    """
    spec = TABLES[name]
    chk, dup = q("chk_" + name), q("dup_" + name)
    keys = ", ".join(q("v_" + k) for k in spec.key)
    days = [k for k in spec.key if _kind(str(spec.schema.columns[k].dtype)) == "date"]
    if not days or len(spec.key) < 2:
        con.execute(
            f"CREATE OR REPLACE TEMP TABLE {dup} AS SELECT {keys} FROM {chk} GROUP BY ALL HAVING COUNT(*) > 1"
        )
        return
    day = q("v_" + days[0])
    others = [q("v_" + k) for k in spec.key if k != days[0]]
    complete = " AND ".join(f"{q('v_' + k)} IS NOT NULL" for k in spec.key)
    offset = f"date_diff('day', TIMESTAMP '1970-01-01', {day})"
    # the other key columns as one 64-bit hash: fixed-size groups, no string heap; a collision only flags a
    # block for the exact check, never hides a duplicate
    con.execute(
        f"""CREATE OR REPLACE TEMP TABLE dup_screen AS
SELECT _h, _block FROM (
  SELECT hash({", ".join(others)}) AS _h, CAST(floor({offset} / {DAY_BITS}) AS BIGINT) AS _block,
    CAST(1 AS BIGINT) << CAST({offset} - {DAY_BITS} * floor({offset} / {DAY_BITS}) AS INTEGER) AS _bit
  FROM {chk} WHERE {complete}
)
GROUP BY ALL HAVING COUNT(*) > bit_count(BIT_OR(_bit))"""
    )
    flagged = con.execute("SELECT COUNT(*) FROM dup_screen").fetchone()[0]
    parts = [f"SELECT {keys} FROM {chk} WHERE NOT ({complete}) GROUP BY ALL HAVING COUNT(*) > 1"]
    if flagged:
        on = f"hash({', '.join('c.' + o for o in others)}) = s._h"
        block = f"CAST(floor(date_diff('day', TIMESTAMP '1970-01-01', c.{day}) / {DAY_BITS}) AS BIGINT)"
        cols = ", ".join(f"c.{q('v_' + k)}" for k in spec.key)
        present = " AND ".join(f"c.{q('v_' + k)} IS NOT NULL" for k in spec.key)
        parts.append(
            f"SELECT {cols} FROM {chk} AS c JOIN dup_screen AS s ON {on} AND {block} = s._block "
            f"WHERE {present} GROUP BY ALL HAVING COUNT(*) > 1"
        )
    con.execute(f"CREATE OR REPLACE TEMP TABLE {dup} AS {' UNION ALL '.join(parts)}")
    con.execute("DROP TABLE dup_screen")


def check_table(
    con: duckdb.DuckDBPyConnection,
    name: str,
    source: str,
    bounds: DateBounds,
    *,
    where: str | None = None,
    set_rules: bool = True,
    known_accounts: str | None = None,
) -> Checked:
    """Check one table's rows in DuckDB and keep its failing rows (``bad_<name>``) on the connection.

    Args:
        con: a connection from :func:`connect`.
        name: the contract table.
        source: a relation (:func:`scan_sql`) with the raw columns and ``_row``.
        bounds: the plausible dates.
        where: only the rows this SQL condition (over the raw columns) selects are checked.
        set_rules: also check the rules over several rows: the unique key (rows sharing it all fail) and,
            when ``known_accounts`` names a relation of ``account_id``, that each row's account is in it (on
            the rows that pass every other rule, as the pandas path does).

    Raises:
        ChurnmlError: the source cannot be read (a truncated or foreign file: DuckDB's first line, which
            names the file), or a declared column is missing from it.
    """
    try:  # the first read of the file: a truncated export fails here, as pandas' reader does in contract.io
        types = {str(r[0]): str(r[1]) for r in con.execute(f"DESCRIBE SELECT * FROM {source}").fetchall()}
    except duckdb.Error as exc:
        raise ChurnmlError(f"{name}: cannot read ({str(exc).strip().splitlines()[0]})") from None
    missing = [c for c in TABLES[name].schema.columns if c not in types]
    if missing:
        raise ChurnmlError(
            f"{name}: missing column(s) {', '.join(missing)} (rule: column present; "
            f"expected {', '.join(TABLES[name].schema.columns)})"
        )
    if where:
        source = f"(SELECT * FROM {source} WHERE {where})"
    chk, dup, bad = q("chk_" + name), q("dup_" + name), q("bad_" + name)
    con.execute(f"CREATE OR REPLACE TEMP VIEW {chk} AS {checked_sql(name, source, bounds, types)}")
    spec = TABLES[name]
    columns = list(spec.schema.columns)
    label = ", ".join(spec.key)
    has_dups = False
    if set_rules:
        _duplicate_keys(con, name)
        has_dups = con.execute(f"SELECT COUNT(*) FROM {dup}").fetchone()[0] > 0
    joined = chk
    is_dup = "FALSE"
    if has_dups:
        on = " AND ".join(f"c.{q('v_' + k)} IS NOT DISTINCT FROM d.{q('v_' + k)}" for k in spec.key)
        joined = (
            f"(SELECT c.*, d._hit IS NOT NULL AS _dup FROM {chk} AS c "
            f"LEFT JOIN (SELECT *, TRUE AS _hit FROM {dup}) AS d ON {on})"
        )
        is_dup = "_dup"
    row_fails = " OR ".join(f"{q('f_' + c)} IS NOT NULL" for c in columns)
    orphan = "FALSE"
    if set_rules and known_accounts is not None and "account_id" in columns:
        orphan = f"{q('v_account_id')} NOT IN (SELECT account_id FROM {known_accounts})"
    # one reason per (column, row): a single-column key's duplicate comes before the column's other rules
    # but after its cell rules (type), as in the pandas path
    parts = []
    for i, c in enumerate(columns):
        f = q("f_" + c)
        if label == c:
            text = (
                f"CASE WHEN {q('c_' + c)} IS NOT NULL THEN {q('c_' + c)} WHEN {is_dup} THEN 'duplicate key' "
                f"ELSE {f} END"
            )
        else:
            text = f
        parts.append((i, c, text))
    reason_items = [f"CASE WHEN ({t}) IS NOT NULL THEN {lit(c + ': ')} || ({t}) END" for _, c, t in parts]
    if label not in columns:
        reason_items.append(f"CASE WHEN {is_dup} THEN {lit(label + ': duplicate key')} END")
    any_fail = f"({row_fails} OR {is_dup})"
    reason_items.append(
        f"CASE WHEN NOT {any_fail} AND {orphan} THEN {lit('account_id: ' + KNOWN_ACCOUNT)} END"
    )
    # the first failure of the row for the one-line error: (stage, column position, column, rule)
    firsts = []
    for i, c, _ in parts:
        cell = q("c_" + c)
        firsts.append(
            f"CASE WHEN {cell} IS NOT NULL THEN {{'stage': 0, 'pos': {i}, 'column': {lit(c)}, 'rule': {cell}}} END"
        )
    firsts.append(
        f"CASE WHEN {is_dup} THEN {{'stage': 1, 'pos': 0, 'column': {lit(label)}, 'rule': 'duplicate key'}} END"
    )
    for i, c, _ in parts:
        f = q("f_" + c)
        firsts.append(
            f"CASE WHEN {q('c_' + c)} IS NULL AND {f} IS NOT NULL AND NOT ({is_dup} AND {lit(label)} = {lit(c)}) "
            f"THEN {{'stage': 2, 'pos': {i}, 'column': {lit(c)}, 'rule': {f}}} END"
        )
    firsts.append(
        f"CASE WHEN NOT {any_fail} AND {orphan} THEN "
        f"{{'stage': 3, 'pos': 0, 'column': 'account_id', 'rule': {lit(KNOWN_ACCOUNT)}}} END"
    )
    raw = ", ".join(q("r_" + c) for c in columns)
    con.execute(
        f"""CREATE OR REPLACE TEMP TABLE {bad} AS
SELECT {ROW}, {raw},
  array_to_string(list_sort(list_distinct(list_filter([{", ".join(reason_items)}], lambda x: x IS NOT NULL))), '; ')
    AS reason,
  list_sort(list_filter([{", ".join(firsts)}], lambda x: x IS NOT NULL))[1] AS first
FROM {joined}
WHERE {any_fail} OR {orphan}"""
    )
    n_bad = con.execute(f"SELECT COUNT(*) FROM {bad}").fetchone()[0]
    return Checked(name, n_bad, set_rules)


def describe_bad(con: duckdb.DuckDBPyConnection, name: str) -> str:
    """The one-line error of a checked table's failures: table, column, rule, how many rows, a few keys (the
    words of :func:`churnml.contract.validate.describe_failures`)."""
    bad = q("bad_" + name)
    key = [k for k in TABLES[name].key]
    firsts = con.execute(
        f"SELECT first.stage, first.pos, first.column, first.rule, COUNT(*) FROM {bad} "
        "GROUP BY ALL ORDER BY 1, 2, MIN(_row)"
    ).fetchall()
    _, _, column, rule, _ = firsts[0]
    key_cols = ", ".join(f"CAST({q('r_' + k)} AS VARCHAR)" for k in key)
    rows = con.execute(
        f"SELECT {key_cols}, "
        f"CAST({q('r_' + column) if column in TABLES[name].schema.columns else 'NULL'} AS VARCHAR) "
        f"FROM {bad} WHERE first.column = ? AND first.rule = ? ORDER BY {ROW}",
        [column, rule],
    ).fetchall()
    # rows failing the same (column, rule) beyond their first failure count too
    count = con.execute(
        f"SELECT COUNT(*) FROM {bad} WHERE list_contains(string_split(reason, '; '), ?)",
        [f"{column}: {rule}"],
    ).fetchone()[0]
    keys = list(
        dict.fromkeys(
            ", ".join(f"{k}={'None' if v is None else v}" for k, v in zip(key, r[:-1], strict=True))
            for r in rows[:MAX_KEYS_SHOWN]
        )
    )
    where = f"; e.g. {'; '.join(f'({k})' for k in keys)}" if keys else ""
    value = (
        f" (value {rows[0][-1]!r})" if rule.startswith("type ") and rows and rows[0][-1] is not None else ""
    )
    pairs = con.execute(
        f"SELECT COUNT(*) FROM (SELECT DISTINCT unnest(string_split(reason, '; ')) FROM {bad})"
    ).fetchone()[0]
    extra = f" [+{pairs - 1} other failing rule(s)]" if pairs > 1 else ""
    return f"{name}: column {column!r} fails rule {rule!r} in {max(count, 1)} row(s){value}{where}{extra}"


def _copy(con: duckdb.DuckDBPyConnection, sql: str, path: Path) -> None:
    """COPY a query to Parquet through a hidden temporary file: a crash never leaves half a file."""
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(f".{path.name}.tmp")
    con.execute(f"COPY ({sql}) TO {lit(tmp)} (FORMAT parquet)")
    tmp.replace(path)


def valid_rows_sql(name: str, checked: Checked) -> str:
    """The valid rows of a checked table, typed, in their file's order."""
    chk, bad = q("chk_" + name), q("bad_" + name)
    if checked.bad == 0:
        return f"SELECT {valid_sql(name)} FROM {chk}"
    return f"SELECT {valid_sql(name)} FROM {chk} WHERE {ROW} NOT IN (SELECT {ROW} FROM {bad}) ORDER BY {ROW}"


def quarantined_sql(name: str) -> str:
    """The failing rows as read (declared columns) with their reasons, in their file's order."""
    raw = ", ".join(f"{q('r_' + c)} AS {q(c)}" for c in TABLES[name].schema.columns)
    return f"SELECT {raw}, reason AS {q(REASON)} FROM {q('bad_' + name)} ORDER BY {ROW}"


def validate_folder(
    folder: Path | str,
    out: Path | str | None = None,
    *,
    quarantine: bool = False,
    quarantine_dir: Path | str | None = None,
    bounds: DateBounds | None = None,
    memory_limit: str = "4GB",
) -> dict[str, dict[str, int]]:
    """Validate a folder of contract tables in DuckDB; write the valid rows to ``out/<table>.parquet``.

    The out-of-core twin of :func:`churnml.contract.validate.validate_tables` (same rules, same reasons,
    same row order): bad rows fail the run with one line, or, with ``quarantine``, are set aside and written
    to ``quarantine_dir/<table>.parquet`` with a ``_quarantine_reason`` column (tables without bad rows get
    no file). Valid + quarantined = input. Memory stays within DuckDB's ``memory_limit`` (it spills to a
    temporary folder beside ``out``): the usage table never enters pandas.

    Returns:
        Rows kept and quarantined per table.

    Raises:
        ChurnmlError: one line naming the table, column, rule and a few offending keys.
    """
    files = table_files(Path(folder))
    bounds = bounds or DateBounds.of()
    counts: dict[str, dict[str, int]] = {}
    temp = tempfile.mkdtemp(prefix="churnml-validate-", dir=None if out is None else Path(out).parent)
    con = connect(memory_limit, temp)
    try:
        for name, path in files.items():
            known = "known_accounts" if name != "accounts" and "accounts" in files else None
            checked = check_table(con, name, scan_sql(path), bounds, known_accounts=known)
            if checked.bad and not quarantine:
                raise ChurnmlError(describe_bad(con, name))
            if out is not None:
                _copy(con, valid_rows_sql(name, checked), Path(out) / f"{name}.parquet")
            if name == "accounts":
                con.execute(
                    "CREATE OR REPLACE TEMP TABLE known_accounts AS SELECT DISTINCT CAST(v_account_id AS VARCHAR) "
                    f"AS account_id FROM {q('chk_accounts')} WHERE {ROW} NOT IN (SELECT {ROW} FROM {q('bad_accounts')})"
                )
            if checked.bad and quarantine_dir is not None:
                _copy(con, quarantined_sql(name), Path(quarantine_dir) / f"{name}.parquet")
            total = con.execute(f"SELECT COUNT(*) FROM {scan_sql(path)}").fetchone()[0]
            counts[name] = {"valid": int(total - checked.bad), "quarantined": int(checked.bad)}
    finally:
        con.close()
        shutil.rmtree(temp, ignore_errors=True)
    return counts


# ------------------------------------------------------------------------------------------ usage for scoring


@dataclass(frozen=True)
class UsageScan:
    """The usage table left in its file, checked row by row, for readers that need only a window of it.

    Scoring reads the usage rows of the features' look-back window (:func:`window_sql`, a filter on the
    raw date column that DuckDB pushes down to the Parquet scan, so row groups outside it are skipped) and
    a per-(account, metric) summary of the older rows; nothing of it becomes a pandas frame.

    Attributes:
        path: the table's file (Parquet, or CSV).
        date_type: the DuckDB type of the raw ``date`` column (window bounds are cast to it).
        first_day, last_day: the first and last usage day (every row passed the row rules).
        bounds: the plausible dates the rows were checked against.
    """

    path: Path
    date_type: str
    first_day: pd.Timestamp
    last_day: pd.Timestamp
    bounds: DateBounds

    def scan(self) -> str:
        """The raw rows with ``_row`` (:func:`scan_sql`)."""
        return scan_sql(self.path)

    def _bound(self, day: pd.Timestamp) -> str:
        text = f"TIMESTAMP '{pd.Timestamp(day).normalize()}'"
        if self.date_type.upper() == "VARCHAR":
            return text
        return f"CAST({text} AS {self.date_type})"

    def where(self, since: pd.Timestamp | None, until: pd.Timestamp | None) -> str:
        """SQL over the raw columns selecting ``since <= date < until`` (either side open when None)."""
        column = (
            '"date"'
            if self.date_type.upper() != "VARCHAR"
            else 'TRY_CAST(TRY_CAST("date" AS TIMESTAMPTZ) AS TIMESTAMP)'
        )
        parts = []
        if since is not None:
            parts.append(f"{column} >= {self._bound(since)}")
        if until is not None:
            parts.append(f"{column} < {self._bound(until)}")
        return " AND ".join(parts) or "TRUE"

    def typed_sql(self, since: pd.Timestamp | None, until: pd.Timestamp | None) -> str:
        """The rows with ``since <= date < until``, typed as the contract says (the rows passed the rules)."""
        date = '"date"' if self.date_type.upper() != "VARCHAR" else 'TRY_CAST("date" AS TIMESTAMPTZ)'
        return (
            f"SELECT CAST(account_id AS VARCHAR) AS account_id, CAST({date} AS TIMESTAMP) AS date, "
            f"CAST(metric AS VARCHAR) AS metric, CAST(value AS DOUBLE) AS value FROM {self.scan()} "
            f"WHERE {self.where(since, until)}"
        )


def check_usage_rows(path: Path, bounds: DateBounds, memory_limit: str = "4GB") -> UsageScan:
    """Check every usage row against the row rules (type, finite, date range, not null, value >= 0), in one
    streaming pass that holds only the failing rows; return the table as a :class:`UsageScan`.

    The rules over several rows (the unique key, known accounts) need the rows grouped, which costs memory
    in proportion to the rows checked: :func:`check_usage_window` runs them over the rows a run reads.

    Raises:
        ChurnmlError: one line naming the column, rule and a few keys of the failing rows.
    """
    con = connect(memory_limit)
    try:
        checked = check_table(con, "usage", scan_sql(path), bounds, set_rules=False)
        if checked.bad:
            raise ChurnmlError(describe_bad(con, "usage"))
        types = {
            str(r[0]): str(r[1]) for r in con.execute(f"DESCRIBE SELECT * FROM {scan_sql(path)}").fetchall()
        }
        first, last = con.execute('SELECT MIN(v_date), MAX(v_date) FROM "chk_usage"').fetchone()
    finally:
        con.close()
    if first is None:
        raise ChurnmlError("data range: usage has no rows (cannot tell when the data starts and ends)")
    return UsageScan(Path(path), types["date"], pd.Timestamp(first), pd.Timestamp(last), bounds)


def check_usage_window(
    usage: UsageScan,
    since: pd.Timestamp | None,
    until: pd.Timestamp | None,
    accounts: pd.DataFrame,
    memory_limit: str = "4GB",
) -> None:
    """Every rule over the usage rows with ``since <= date < until``: the row rules again, the unique key and
    ``account_id`` present in ``accounts`` (the rows a scoring run's features read).

    Raises:
        ChurnmlError: one line naming the column, rule and a few keys of the failing rows.
    """
    con = connect(memory_limit)
    try:
        con.register("known_accounts_src", accounts[["account_id"]])
        con.execute(
            "CREATE TEMP TABLE known_accounts AS SELECT DISTINCT CAST(account_id AS VARCHAR) AS account_id "
            "FROM known_accounts_src"
        )
        checked = check_table(
            con,
            "usage",
            usage.scan(),
            usage.bounds,
            where=usage.where(since, until),
            known_accounts="known_accounts",
        )
        if checked.bad:
            raise ChurnmlError(describe_bad(con, "usage"))
    finally:
        con.close()


def load_checked(
    folder: Path | str, bounds: DateBounds, memory_limit: str = "4GB"
) -> dict[str, pd.DataFrame | UsageScan]:
    """The tables of a folder, checked in DuckDB: every table but usage as a coerced frame (they are small:
    one row per account, contract, ticket...), usage as a :class:`UsageScan` checked row by row.

    Raises:
        ChurnmlError: one line naming the table, column, rule and a few keys of the failing rows.
    """
    files = table_files(Path(folder))
    out: dict[str, pd.DataFrame | UsageScan] = {}
    con = connect(memory_limit)
    try:
        for name, path in files.items():
            if name == "usage":
                continue
            known = "known_accounts" if name != "accounts" and "accounts" in files else None
            checked = check_table(con, name, scan_sql(path), bounds, known_accounts=known)
            if checked.bad:
                raise ChurnmlError(describe_bad(con, name))
            frame = con.execute(valid_rows_sql(name, checked)).df()
            # the rules passed: the schema only gives the frame the contract's pandas types
            out[name] = TABLES[name].schema.validate(frame)
            if name == "accounts":
                con.execute(
                    "CREATE OR REPLACE TEMP TABLE known_accounts AS "
                    'SELECT DISTINCT CAST(v_account_id AS VARCHAR) AS account_id FROM "chk_accounts"'
                )
    finally:
        con.close()
    out["usage"] = check_usage_rows(files["usage"], bounds, memory_limit)
    return {name: out[name] for name in files}
