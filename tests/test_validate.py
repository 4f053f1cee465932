"""The data contract: each kind of bad input is rejected with a clear line, quarantine loses no row."""

from __future__ import annotations

import pandas as pd
import pytest

from churnml.contract.io import read_folder, write_folder
from churnml.contract.schemas import TABLES
from churnml.contract.validate import REASON, validate_tables
from churnml.errors import ChurnmlError

from tables import tiny_tables


def _with(table: str, **changes) -> dict[str, pd.DataFrame]:
    tables = tiny_tables()
    frame = tables[table].copy()
    for col, (row, value) in changes.items():
        frame[col] = frame[col].astype(object)  # a user's file may hold anything
        frame.loc[row, col] = value
    tables[table] = frame
    return tables


def test_valid_tables_pass_and_are_typed():
    result = validate_tables(tiny_tables())
    assert all(c["quarantined"] == 0 for c in result.counts().values())
    subs = result.tables["subscriptions"]
    assert str(subs["start_date"].dtype).startswith("datetime64")
    assert subs["end_date"].isna().sum() == 2
    assert str(subs["seats"].dtype) == "Int64"


@pytest.mark.parametrize(
    ("tables", "expected"),
    [
        (
            _with("subscriptions", mrr=(0, "ten")),
            ["subscriptions", "'mrr'", "type number", "subscription_id=S1"],
        ),
        (_with("accounts", created_date=(1, "yesterday")), ["accounts", "'created_date'", "account_id=A2"]),
        (_with("subscriptions", account_id=(1, None)), ["subscriptions", "'account_id'", "not_nullable"]),
        (_with("accounts", account_id=(1, "A1")), ["accounts", "duplicate key", "account_id=A1"]),
        (
            _with("usage", date=(1, "2024-01-02")),
            ["usage", "'account_id, date, metric'", "duplicate key", "metric=logins"],
        ),
        (
            _with("subscriptions", end_date=(0, "2023-12-01")),
            ["subscriptions", "'end_date'", "end_date > start_date", "subscription_id=S1"],
        ),
        (
            _with("subscriptions", mrr=(2, -5.0)),
            ["subscriptions", "'mrr'", "greater_than_or_equal_to(0)", "S3"],
        ),
        (_with("invoices", amount=(0, -1.0)), ["invoices", "'amount'", "invoice_id=I1"]),
        (
            _with("usage", account_id=(2, "A404")),
            ["usage", "'account_id'", "known account", "account_id=A404"],
        ),
        (_with("accounts", segment=(0, "startup")), ["accounts", "'segment'", "isin", "account_id=A1"]),
        (_with("nps_responses", score=(0, 11)), ["nps_responses", "'score'", "response_id=N1"]),
        (
            _with("usage", date=(0, "2024-01-02 13:00")),
            ["usage", "'date'", "whole day", "date=2024-01-02 13:00"],
        ),
    ],
    ids=[
        "wrong-type",
        "bad-date",
        "null-key",
        "duplicate-key",
        "duplicate-composite-key",
        "end-before-start",
        "negative-amount",
        "negative-invoice",
        "unknown-account",
        "not-in-vocabulary",
        "out-of-range",
        "not-a-day",
    ],
)
def test_bad_input_is_rejected_with_table_column_rule_and_keys(tables, expected):
    with pytest.raises(ChurnmlError) as err:
        validate_tables(tables)
    message = str(err.value)
    assert "\n" not in message
    for part in expected:
        assert part in message, f"{part!r} not in {message!r}"


def test_missing_column_is_named():
    tables = tiny_tables()
    tables["usage"] = tables["usage"].drop(columns=["metric"])
    with pytest.raises(ChurnmlError, match=r"usage: missing column\(s\) metric"):
        validate_tables(tables)


def test_missing_required_table_is_named(tmp_path):
    tables = tiny_tables()
    del tables["usage"]
    write_folder(tables, tmp_path)
    with pytest.raises(ChurnmlError, match=r"required table\(s\) missing: usage"):
        read_folder(tmp_path)


def test_optional_tables_may_be_absent():
    tables = {k: v for k, v in tiny_tables().items() if TABLES[k].required}
    result = validate_tables(tables)
    assert set(result.tables) == {"accounts", "subscriptions", "usage"}


def test_quarantine_loses_no_row():
    tables = _with("subscriptions", mrr=(0, -1.0), end_date=(1, "2023-01-01"))
    tables["usage"] = pd.concat([tables["usage"], tables["usage"].iloc[[0]]], ignore_index=True)
    tables["usage"].loc[2, "account_id"] = "A404"
    bad_account = tables["accounts"].assign(segment=["smb", "unknown"])
    tables["accounts"] = bad_account  # A2 quarantined: its rows elsewhere become unknown-account rows
    result = validate_tables(tables, quarantine=True)
    for name, frame in tables.items():
        kept = len(result.tables[name])
        moved = len(result.quarantined.get(name, []))
        assert kept + moved == len(frame), name
    assert result.quarantined["accounts"]["account_id"].tolist() == ["A2"]
    assert (result.quarantined["support_tickets"][REASON].str.contains("known account")).all()
    assert set(result.quarantined["subscriptions"]["subscription_id"]) == {"S1", "S2", "S3"}
    reasons = result.quarantined["subscriptions"].set_index("subscription_id")[REASON]
    assert "mrr" in reasons["S1"]
    # quarantined rows are kept as written (raw values), so a user can fix and resubmit them
    assert result.quarantined["subscriptions"].set_index("subscription_id").loc["S1", "mrr"] == -1.0


def test_csv_and_parquet_folders_read_the_same(tmp_path):
    tables = tiny_tables()
    (tmp_path / "pq").mkdir()
    (tmp_path / "csv").mkdir()
    write_folder(tables, tmp_path / "pq")
    for name, frame in tables.items():
        frame.to_csv(tmp_path / "csv" / f"{name}.csv", index=False)
    a = validate_tables(read_folder(tmp_path / "pq")).tables
    b = validate_tables(read_folder(tmp_path / "csv")).tables
    for name in tables:
        pd.testing.assert_frame_equal(a[name], b[name], check_dtype=False)


def test_readme_documents_the_contract_as_declared():
    from pathlib import Path

    from churnml.contract.schemas import contract_markdown

    readme = (Path(__file__).resolve().parents[1] / "README.md").read_text()
    block = readme.split("<!-- contract:begin -->")[1].split("<!-- contract:end -->")[0]
    assert block.strip() == contract_markdown().strip(), "README contract section is stale"


def test_a_duplicated_key_is_shown_once_with_the_value_of_a_bad_type():
    tables = _with("accounts", account_id=(1, "A1"))
    with pytest.raises(ChurnmlError) as err:
        validate_tables(tables)
    assert str(err.value).count("(account_id=A1)") == 1
    with pytest.raises(
        ChurnmlError, match=r"type number' in 1 row\(s\) \(value 'ten'\); e.g. \(subscription_id=S1\)"
    ):
        validate_tables(_with("subscriptions", mrr=(0, "ten")))


# ---------------------------------------------------------------------------------------------- values and dates


@pytest.mark.parametrize(
    ("table", "changes", "column", "rule", "key"),
    [
        ("subscriptions", {"mrr": (1, float("inf"))}, "mrr", "finite number", "subscription_id=S2"),
        ("usage", {"value": (1, "-inf")}, "value", "finite number", "account_id=A1, date=2024-01-03"),
        (
            "usage",
            {"date": (2, "2099-01-01")},
            "date",
            "date in plausible range 1990-01-01..",
            "account_id=A2",
        ),
        (
            "subscriptions",
            {"start_date": (0, "1900-01-01")},
            "start_date",
            "plausible range",
            "subscription_id=S1",
        ),
        (
            "support_tickets",
            {"created_at": (0, "2300-01-01 00:00:00")},
            "created_at",
            "plausible range",
            "T1",
        ),
    ],
)
def test_non_finite_numbers_and_implausible_dates_name_table_column_rule_and_key(
    table, changes, column, rule, key
):
    with pytest.raises(ChurnmlError) as info:
        validate_tables(_with(table, **changes))
    message = str(info.value)
    assert message.startswith(f"{table}: column {column!r} fails rule")
    assert rule in message and key in message and "\n" not in message


def test_quarantine_moves_implausible_rows_aside_and_never_aborts(tmp_path):
    """Written to Parquet first: a year-2300 date then arrives as a real timestamp that nanosecond dates
    cannot hold (the schema's coercion used to fail the whole column and abort)."""
    tables = tiny_tables()
    usage = tables["usage"].assign(date=pd.to_datetime(tables["usage"]["date"]).astype("datetime64[us]"))
    usage.loc[0, "date"] = pd.Timestamp("2300-01-01").as_unit("us")
    usage.loc[1, "value"] = float("inf")
    tables["usage"] = usage
    write_folder(tables, tmp_path / "in")
    result = validate_tables(read_folder(tmp_path / "in"), quarantine=True)
    bad = result.quarantined["usage"]
    assert len(bad) == 2 and len(result.tables["usage"]) + 2 == len(usage)
    reasons = " | ".join(bad[REASON])
    assert "date: date in plausible range" in reasons and "value: finite number" in reasons


def test_the_plausible_range_is_configurable_and_contract_terms_may_lie_ahead():
    from churnml.contract.validate import DateBounds

    tables = _with("subscriptions", end_date=(1, "2031-01-02"))  # a contract term ends years ahead: fine
    validate_tables(tables, bounds=DateBounds.of("1990-01-01", "2026-12-06"))
    with pytest.raises(
        ChurnmlError, match="accounts: column 'created_date' fails rule 'date in plausible range 2024-01-03"
    ):
        validate_tables(tiny_tables(), bounds=DateBounds.of("2024-01-03", "2030-01-01"))
    with pytest.raises(ChurnmlError, match="plausible range 1990-01-01..2024-01-02"):
        validate_tables(tiny_tables(), bounds=DateBounds.of(None, "2024-01-02"))
