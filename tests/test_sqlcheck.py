"""The contract's rules as DuckDB SQL (contract/sqlcheck.py) agree with the pandas path rule by rule: the same
rows kept, the same rows quarantined with the same reasons, the same one-line errors; from CSV and Parquet."""

from __future__ import annotations

import dataclasses

import pandas as pd
import pandera.pandas as pa
import pytest

from churnml.contract.io import coerce_table, read_folder
from churnml.contract.schemas import TABLES
from churnml.contract.sqlcheck import column_rules, frame_rules, validate_folder
from churnml.contract.validate import REASON, DateBounds, validate_tables
from churnml.errors import ChurnmlError

from tables import tiny_tables

BOUNDS = DateBounds.of("1990-01-01", "2026-12-01")


def _bad_rows() -> dict[str, pd.DataFrame]:
    """The tiny tables plus one bad row per rule of the contract (and a few rows failing two)."""
    tables = tiny_tables()

    def add(name: str, **values) -> None:
        frame = tables[name]
        row = frame.iloc[[0]].astype(object).copy()
        for column, value in values.items():
            row[column] = value
        tables[name] = pd.concat([frame.astype(object), row], ignore_index=True)

    add("accounts", account_id="A9", segment="bad")
    add("accounts", account_id="A8", created_date="2024-01-01 10:00")
    add("accounts", account_id="A7", created_date="x")
    add("accounts", account_id="A6", created_date="1900-01-01")
    add("accounts", account_id="A5", touch_model=None)
    add("accounts", account_id="")
    add("accounts", account_id="A1")  # duplicate key
    add("subscriptions", subscription_id="S9", mrr="inf")
    add("subscriptions", subscription_id="S8", mrr=-1.0)
    add("subscriptions", subscription_id="S7", seats=2.5)
    add("subscriptions", subscription_id="S6", end_date="2023-01-01")  # end before start
    add("subscriptions", subscription_id="S5", account_id="A404")  # unknown account
    add("subscriptions", subscription_id="S4", plan=None, billing_period="weekly")
    add("subscriptions", subscription_id="S3b", start_date="2036-01-02", end_date="2037-01-02")  # future
    add("usage", date="2099-01-01")
    add("usage", date="2300-01-01", metric="x")
    add("usage", value="ten", metric="y")
    add("usage", value=-3.0, metric="z")
    add("usage", metric="logins", date="2024-01-02")  # duplicate key
    add("support_tickets", ticket_id="T9", csat=7.0)
    add("support_tickets", ticket_id="T8", resolved_at="2024-01-01 00:00:00")
    add("nps_responses", response_id="N9", score=11)
    add("nps_responses", response_id="N8", score="nine")
    add("invoices", invoice_id="I9", due_date="2020-01-01")
    add("contacts", contact_id="C9", role="boss")
    add("csm_activities", activity_id="M9", kind=None, occurred_at="2024-02-30 10:00:00")
    return tables


def _write(tables: dict[str, pd.DataFrame], folder, fmt: str) -> None:
    folder.mkdir(parents=True, exist_ok=True)
    for name, frame in tables.items():
        if fmt == "csv":
            frame.to_csv(folder / f"{name}.csv", index=False)
        else:  # a user's Parquet of text cells (as a CSV export converted without types)
            frame.astype(object).where(frame.notna(), None).map(
                lambda v: None if v is None else str(v)
            ).to_parquet(folder / f"{name}.parquet")


def test_every_rule_of_the_schemas_has_its_sql():
    for name in TABLES:
        rules = column_rules(name, BOUNDS, {})
        declared = sum(len(col.checks) + (not col.nullable) for col in TABLES[name].schema.columns.values())
        assert sum(len(r.rules) for r in rules) == declared
        assert len(frame_rules(name)) == len(TABLES[name].schema.checks)


def test_a_check_without_sql_is_refused(monkeypatch):
    schema = TABLES["usage"].schema
    column = schema.columns["value"]
    odd = column.set_checks([pa.Check.le(5)])
    changed = dataclasses.replace(TABLES["usage"], schema=schema.update_column("value", checks=odd.checks))
    monkeypatch.setitem(TABLES, "usage", changed)
    with pytest.raises(NotImplementedError, match="less_than_or_equal_to"):
        column_rules("usage", BOUNDS, {})


def _pairs(frame: pd.DataFrame, key: str) -> list[tuple[str, str]]:
    return sorted(zip(frame[key].map(str), frame[REASON].map(str), strict=True))


@pytest.mark.parametrize("fmt", ["csv", "parquet"])
def test_sql_and_pandas_quarantine_the_same_rows_for_the_same_reasons(fmt, tmp_path):
    _write(_bad_rows(), tmp_path / "in", fmt)
    want = validate_tables(read_folder(tmp_path / "in"), quarantine=True, bounds=BOUNDS)
    counts = validate_folder(
        tmp_path / "in", tmp_path / "out", quarantine=True, quarantine_dir=tmp_path / "q", bounds=BOUNDS
    )
    assert counts == want.counts()
    assert all(c["quarantined"] for c in counts.values())
    for name in TABLES:
        expected = want.quarantined.get(name)
        path = tmp_path / "q" / f"{name}.parquet"
        assert path.exists() == (expected is not None)
        if expected is not None:
            got = pd.read_parquet(path)
            key = TABLES[name].key[0]
            assert _pairs(got, key) == _pairs(expected, key), name
        valid = coerce_table(name, pd.read_parquet(tmp_path / "out" / f"{name}.parquet"))
        pd.testing.assert_frame_equal(valid, want.tables[name].reset_index(drop=True))


def _one_bad(table: str, **changes) -> dict[str, pd.DataFrame]:
    tables = tiny_tables()
    frame = tables[table].copy()
    for col, (row, value) in changes.items():
        frame[col] = frame[col].astype(object)
        frame.loc[row, col] = value
    tables[table] = frame
    return tables


@pytest.mark.parametrize(
    "tables",
    [
        _one_bad("subscriptions", mrr=(0, "ten")),
        _one_bad("accounts", created_date=(1, "yesterday")),
        _one_bad("subscriptions", account_id=(1, None)),
        _one_bad("accounts", account_id=(1, "A1")),
        _one_bad("usage", date=(1, "2024-01-02")),
        _one_bad("subscriptions", end_date=(0, "2023-12-01")),
        _one_bad("subscriptions", mrr=(2, -5.0), seats=(1, 1.5)),
        _one_bad("usage", value=(0, "inf"), date=(1, "2099-01-01")),
        _one_bad("support_tickets", csat=(0, 9.0)),
    ],
)
def test_sql_and_pandas_fail_with_the_same_line(tables, tmp_path):
    _write(tables, tmp_path / "in", "csv")
    with pytest.raises(ChurnmlError) as want:
        validate_tables(read_folder(tmp_path / "in"), bounds=BOUNDS)
    with pytest.raises(ChurnmlError) as got:
        validate_folder(tmp_path / "in", tmp_path / "out", bounds=BOUNDS)
    assert str(got.value) == str(want.value)


def test_an_unknown_account_fails_naming_the_rule(tmp_path):
    _write(_one_bad("usage", account_id=(2, "A404")), tmp_path / "in", "parquet")
    with pytest.raises(
        ChurnmlError, match=r"usage: column 'account_id' fails rule 'known account .*\(account_id=A404"
    ):
        validate_folder(tmp_path / "in", tmp_path / "out", bounds=BOUNDS)


def test_valid_rows_keep_their_file_order(tmp_path):
    tables = tiny_tables()
    usage = pd.concat([tables["usage"]] * 1, ignore_index=True).iloc[::-1].reset_index(drop=True)
    _write({**tables, "usage": usage}, tmp_path / "in", "parquet")
    validate_folder(tmp_path / "in", tmp_path / "out", bounds=BOUNDS)
    got = pd.read_parquet(tmp_path / "out" / "usage.parquet")
    assert list(got["date"].astype(str).str[:10]) == list(usage["date"])


@pytest.mark.parametrize("fmt", ["csv", "parquet"])
def test_a_truncated_export_fails_in_one_line_naming_table_and_file(fmt, tmp_path):
    """A file cut short (a copy killed mid-way) or not of its format: one line naming the table and the file,
    from the out-of-core reader as from pandas' (contract.io), and nothing is written."""
    from churnml.contract.sqlcheck import check_usage_rows

    _write(tiny_tables(), tmp_path / "in", fmt)
    usage = tmp_path / "in" / f"usage.{fmt}"
    data = usage.read_bytes()
    # Parquet without its footer; a CSV whose bytes are not text
    usage.write_bytes(
        data[: len(data) // 2] if fmt == "parquet" else b"\xff\xfe\x00" + bytes(range(256)) * 40
    )
    with pytest.raises(ChurnmlError) as got:
        validate_folder(tmp_path / "in", tmp_path / "out", bounds=BOUNDS)
    line = str(got.value)
    assert line.startswith("usage: cannot read (") and str(usage) in line and "\n" not in line
    assert not (tmp_path / "out" / "usage.parquet").exists()
    with pytest.raises(ChurnmlError, match=r"^usage: cannot read \(.*usage\."):
        check_usage_rows(usage, BOUNDS)
