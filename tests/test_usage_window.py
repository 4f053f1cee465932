"""Scoring reads only the usage rows inside the features' look-back window (issue #20, out of core): the
features (and the scores) built from that window and a summary of older rows equal those from the whole
history, including accounts with no recent usage, metrics seen only long ago and rows exactly at the window's
edges."""

from __future__ import annotations

import pandas as pd
import pytest

from churnml.config import FeaturesConfig
from churnml.contract.io import write_folder
from churnml.contract.sqlcheck import UsageScan, check_usage_rows, load_checked
from churnml.contract.validate import DateBounds, validate_tables
from churnml.dataset.spine import build_spine, data_range
from churnml.features.engine import build_features, usage_window_start
from churnml.features.sql import Windows

CFG = FeaturesConfig()


def _edge_usage(tables: dict[str, pd.DataFrame], cutoff: pd.Timestamp) -> dict[str, pd.DataFrame]:
    """The simulated tables plus rows on each side of the window's first day, for a few accounts: one whose
    last use lies just before the window (days since last use counts from it), one with a metric used only
    long ago, and one with rows exactly on the first day, the day before it and the day before the cutoff."""
    since = usage_window_start([cutoff], CFG)
    usage = tables["usage"]
    ids = sorted(tables["subscriptions"]["account_id"].unique())
    quiet, old_metric, edges = ids[0], ids[1], ids[2]
    usage = usage[~((usage["account_id"] == quiet) & (usage["date"] >= since - pd.Timedelta(days=1)))]
    extra = pd.DataFrame(
        {
            "account_id": [old_metric, old_metric, edges, edges, edges, edges],
            "date": [
                since - pd.Timedelta(days=400),
                since - pd.Timedelta(days=300),
                since,
                since - pd.Timedelta(days=1),
                cutoff - pd.Timedelta(days=1),
                cutoff,  # on the cutoff: the future, never seen
            ],
            "metric": [
                "feature_legacy",
                "feature_legacy",
                "feature_edge",
                "feature_edge",
                "feature_edge",
                "feature_edge",
            ],
            "value": [0.0, 3.0, 5.0, 7.0, 2.0, 9.0],
        }
    )
    extra["date"] = extra["date"].astype(usage["date"].dtype)
    return {**tables, "usage": pd.concat([usage, extra], ignore_index=True)}


@pytest.fixture(scope="module")
def windowed(sim, tmp_path_factory):
    tables, _ = sim
    cutoff = pd.Timestamp(data_range(tables)[1]) - pd.Timedelta(days=45)
    full = validate_tables(_edge_usage(tables, cutoff)).tables
    folder = tmp_path_factory.mktemp("window")
    write_folder(full, folder)
    return full, folder, cutoff


def test_the_window_is_derived_from_the_feature_config():
    cutoff = pd.Timestamp("2025-06-01")
    assert usage_window_start([cutoff], CFG) == cutoff - pd.Timedelta(days=Windows.from_config(CFG).lookback)
    longer = FeaturesConfig(windows_days=[7, 30, 180])
    assert usage_window_start([cutoff], longer) == cutoff - pd.Timedelta(days=180)


def test_windowed_read_gives_the_features_of_the_whole_history(windowed):
    full, folder, cutoff = windowed
    spine = build_spine(full["subscriptions"], [cutoff])
    want = build_features(full, spine, CFG)
    scan = check_usage_rows(folder / "usage.parquet", DateBounds.of())
    assert isinstance(scan, UsageScan)
    got = build_features({**full, "usage": scan}, spine, CFG)
    pd.testing.assert_frame_equal(got, want)
    # the edge cases are in the spine and their usage features are not all empty
    assert "usage_feature_legacy_sum_30d" in got.columns and "usage_feature_edge_sum_90d" in got.columns


def test_windowed_read_over_several_cutoffs(windowed):
    full, folder, cutoff = windowed
    spine = build_spine(full["subscriptions"], [cutoff - pd.Timedelta(days=60), cutoff])
    want = build_features(full, spine, CFG)
    got = build_features(
        {**full, "usage": check_usage_rows(folder / "usage.parquet", DateBounds.of())}, spine, CFG
    )
    pd.testing.assert_frame_equal(got, want)


def test_the_window_alone_would_not_do(windowed):
    """The summary of older rows matters: without it days since last use and time to first value move."""
    full, _, cutoff = windowed
    since = usage_window_start([cutoff], CFG)
    spine = build_spine(full["subscriptions"], [cutoff])
    want = build_features(full, spine, CFG)
    recent = {**full, "usage": full["usage"][full["usage"]["date"] >= since]}
    got = build_features(recent, spine, CFG)
    assert not got.drop(columns=["account_id", "cutoff"]).equals(want.drop(columns=["account_id", "cutoff"]))


def test_load_checked_keeps_small_tables_as_frames_and_usage_in_its_file(windowed):
    full, folder, _ = windowed
    tables = load_checked(folder, DateBounds.of())
    assert isinstance(tables["usage"], UsageScan)
    for name, frame in full.items():
        if name != "usage":
            pd.testing.assert_frame_equal(tables[name], frame, check_dtype=False)
    assert data_range(tables) == data_range(full)
