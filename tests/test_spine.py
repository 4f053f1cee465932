"""Spine: data range, training cutoffs, and active accounts per cutoff against a brute-force loop."""

from __future__ import annotations

import pandas as pd
import pytest

from churnml.config import SpineConfig
from churnml.dataset.spine import (
    build_spine,
    data_end,
    data_range,
    scoring_cutoff,
    to_cutoffs,
    training_cutoffs,
)
from churnml.errors import ChurnmlError

T = pd.Timestamp


def oracle_spine(subscriptions: pd.DataFrame, cutoffs: list) -> pd.DataFrame:
    """Plain loop: an account is in the spine at c if one subscription is active on day c - 1."""
    rows = []
    for c in cutoffs:
        c = T(c)
        day = c - pd.Timedelta(days=1)
        for account, subs in subscriptions.groupby("account_id"):
            for _, s in subs.iterrows():
                if s["start_date"] <= day and (pd.isna(s["end_date"]) or s["end_date"] > day):
                    rows.append((account, c))
                    break
    out = pd.DataFrame(rows, columns=["account_id", "cutoff"])
    out = out.sort_values(["cutoff", "account_id"], ignore_index=True)
    return out.assign(account_id=out["account_id"].astype(str), cutoff=out["cutoff"].astype("datetime64[us]"))


def test_data_end_is_the_first_day_without_data(edge_tables, tmp_path):
    assert data_end(edge_tables) == T("2025-07-01")
    assert scoring_cutoff(edge_tables) == T("2025-07-01")
    assert data_range(edge_tables) == (T("2024-01-01"), T("2025-07-01"))
    # a pre-booked renewal (the contract allows start dates ahead of the export) and a future end date do not
    # move the end: it would carry the default as-of and the labels' maturity into days nobody has observed
    booked = edge_tables["subscriptions"].copy()
    booked.loc[len(booked)] = ["S9", "E7", "pro", "annual", T("2026-02-01"), T("2027-02-01"), 1.0, 1]
    assert data_range({**edge_tables, "subscriptions": booked}) == (T("2024-01-01"), T("2025-07-01"))
    edge_tables["usage"].to_parquet(tmp_path / "usage.parquet")
    booked.to_parquet(tmp_path / "subscriptions.parquet")
    assert data_range(tmp_path) == (T("2024-01-01"), T("2025-07-01"))
    (tmp_path / "subscriptions.parquet").unlink()
    with pytest.raises(ChurnmlError, match="subscriptions"):
        data_range(tmp_path)  # still a required table


def test_training_cutoffs_monthly_after_min_history(edge_tables):
    cuts = training_cutoffs(edge_tables, SpineConfig())
    assert cuts[0] == T("2024-04-01")  # 2024-01-01 + 90 days = 2024-03-31 -> next month start
    assert cuts[-1] == T("2025-07-01")  # the data end itself is a cutoff (scoring's as-of)
    assert len(cuts) == 16 and all(c.day == 1 for c in cuts)
    assert training_cutoffs(edge_tables, SpineConfig(), min_history_days=0)[0] == T("2024-01-01")
    custom = training_cutoffs(edge_tables, SpineConfig(start="2024-06-15", end="2024-09-30"))
    assert custom == [T("2024-07-01"), T("2024-08-01"), T("2024-09-01")]
    weekly = training_cutoffs((T("2024-01-01"), T("2024-05-01")), SpineConfig(frequency="W-MON"))
    assert weekly[0] == T("2024-04-01") and all(c.day_of_week == 0 for c in weekly)


def test_training_cutoffs_errors():
    with pytest.raises(ChurnmlError, match="frequency"):
        training_cutoffs((T("2024-01-01"), T("2025-01-01")), SpineConfig(frequency="fortnightly"))
    with pytest.raises(ChurnmlError, match="no MS cutoff"):
        training_cutoffs((T("2024-01-01"), T("2024-02-01")), SpineConfig())


def test_cutoffs_must_be_whole_days():
    assert to_cutoffs(["2024-02-01", "2024-01-01", "2024-02-01"]) == [T("2024-01-01"), T("2024-02-01")]
    with pytest.raises(ChurnmlError, match="start of a day"):
        to_cutoffs([T("2024-01-01 12:00")])


def test_spine_edge_cases(edge_tables):
    spine = build_spine(edge_tables["subscriptions"], ["2024-06-01", "2024-07-01"])
    at = {c: set(g["account_id"]) for c, g in spine.groupby("cutoff")}
    # E4 ends on 2024-06-01: active on 05-31, so in the spine that day; E2 lapsed (06-10 .. 07-20)
    assert at[T("2024-06-01")] == {"E1", "E2", "E3", "E4", "E5", "E6", "E7"}
    assert at[T("2024-07-01")] == {"E1", "E3", "E5", "E6", "E7"}
    assert list(spine.columns) == ["account_id", "cutoff"]
    assert spine["cutoff"].dtype == "datetime64[us]"
    assert not spine.duplicated().any()


def test_spine_matches_brute_force_on_simulated_data(sim):
    tables, _ = sim
    cuts = training_cutoffs(tables, SpineConfig())[::3]
    got = build_spine(tables["subscriptions"], cuts)
    pd.testing.assert_frame_equal(got, oracle_spine(tables["subscriptions"], cuts))
    assert len(got) > 100


def test_as_of_day_defaults_to_the_data_end_and_refuses_later_days():
    from churnml.dataset.spine import as_of_day

    end = T("2025-07-01")
    assert as_of_day(None, end) == end and as_of_day("", end) == end
    assert as_of_day("2025-06-15", end) == T("2025-06-15")
    with pytest.raises(
        ChurnmlError, match=r"after the data end 2025-07-01 \(the day after the last usage day\)"
    ):
        as_of_day("2025-07-02", end)
