"""Adapters from third-party layouts: each mapping rule on tiny source-layout frames, then real slices."""

from __future__ import annotations

import shutil
from pathlib import Path

import pandas as pd
import pytest

from churnml.contract.io import read_folder
from churnml.contract.validate import REASON, validate_tables
from churnml.errors import ChurnmlError
from churnml.sources.ingest import (
    _days_without_contract,
    fightchurn_accounts,
    fightchurn_subscriptions,
    fightchurn_usage,
    ingest,
    ravenstack_tables,
    shared_data_dir,
)

DATA_END = pd.Timestamp("2024-01-01")
PLANS = pd.DataFrame(
    {
        "plan": ["starter_mthly", "basic_mthly", "standard_biann", "premier_annual", "advanced_mthly"],
        "mrr": [100, 200, 475, 1800, 1000],
    }
)
SUB_COLUMNS = [
    "account_id",
    "product",
    "start_date",
    "end_date",
    "mrr",
    "quantity",
    "units",
    "bill_period_months",
    "discount",
]


def _subs(*rows) -> pd.DataFrame:
    return pd.DataFrame(list(rows), columns=SUB_COLUMNS)


def _by_start(frame: pd.DataFrame, account: str) -> pd.DataFrame:
    return frame[frame["account_id"] == account].sort_values("start_date").reset_index(drop=True)


# ------------------------------------------------------------------------------------------ fightchurn


def test_mrr_is_taken_net_of_discount_and_addons_are_skipped():
    subs = _subs(
        (1, "basic_mthly", "2023-01-05", "2023-02-05", 180, 10, "users", 1, 0.1),
        (1, "meetings", "2023-01-05", "2023-02-05", 300, 5000, "schedule_meeting", 1, 0.1),
        (1, "search_unlimited", "2023-01-05", "2023-02-05", 200, 5000, "search", 1, 0.1),
        (2, "premier_annual", "2023-03-01", "2024-03-01", 900, 100, "users", 12, 0.5),
    )
    out, notes = fightchurn_subscriptions(subs, DATA_END, plans=PLANS)
    assert len(out) == 2
    assert notes["subscriptions_addon_rows_skipped"] == 2
    # the source MRR already carries the discount: applying it again would give 162 and 450
    assert out.set_index("account_id")["mrr"].to_dict() == {"1": 180.0, "2": 900.0}
    assert notes["subscriptions_mrr_not_list_price_net_of_discount"] == 0
    assert str(out["seats"].dtype) == "Int64"
    assert out.set_index("account_id")["seats"].to_dict() == {"1": 10, "2": 100}


def test_mrr_off_the_list_price_is_counted():
    subs = _subs((1, "basic_mthly", "2023-01-05", "2023-02-05", 200, 10, "users", 1, 0.1))
    _, notes = fightchurn_subscriptions(subs, DATA_END, plans=PLANS)
    assert notes["subscriptions_mrr_not_list_price_net_of_discount"] == 1


def test_end_date_stays_exclusive_and_renewals_abut():
    subs = _subs(
        (1, "starter_mthly", "2023-01-05", "2023-02-05", 100, 5, "users", 1, 0.0),
        (1, "starter_mthly", "2023-02-05", "2023-03-05", 100, 5, "users", 1, 0.0),
        (1, "basic_mthly", "2023-03-05", "2023-04-05", 200, 10, "users", 1, 0.0),
    )
    out, _ = fightchurn_subscriptions(subs, DATA_END)
    rows = _by_start(out, "1")
    # one contract row per monthly renewal, each ending on the day the next one starts
    assert len(rows) == 3
    assert (rows["end_date"].iloc[:-1].to_numpy() == rows["start_date"].iloc[1:].to_numpy()).all()
    assert rows["end_date"].iloc[-1] == pd.Timestamp("2023-04-05")  # churned: the last day active is 04-04
    assert rows["subscription_id"].is_unique


def test_month_end_gaps_are_closed_and_real_gaps_kept():
    subs = _subs(
        (1, "standard_biann", "2022-04-30", "2022-10-30", 475, 25, "users", 6, 0.0),
        (1, "standard_biann", "2022-10-31", "2023-04-30", 475, 25, "users", 6, 0.0),
        (2, "starter_mthly", "2023-01-10", "2023-02-10", 100, 5, "users", 1, 0.0),
        (2, "starter_mthly", "2023-03-01", "2023-04-01", 100, 5, "users", 1, 0.0),  # back after 19 days
    )
    out, notes = fightchurn_subscriptions(subs, DATA_END)
    assert notes["subscriptions_gaps_closed"] == 1
    assert _by_start(out, "1")["end_date"].iloc[0] == pd.Timestamp("2022-10-31")
    assert _by_start(out, "2")["end_date"].iloc[0] == pd.Timestamp("2023-02-10")


def test_overlap_is_cut_at_the_next_start():
    subs = _subs(
        (1, "starter_mthly", "2023-01-10", "2023-02-10", 100, 5, "users", 1, 0.0),
        (1, "basic_mthly", "2023-02-01", "2023-03-01", 200, 10, "users", 1, 0.0),
    )
    out, notes = fightchurn_subscriptions(subs, DATA_END)
    assert notes["subscriptions_overlaps_cut"] == 1
    assert _by_start(out, "1")["end_date"].iloc[0] == pd.Timestamp("2023-02-01")


def test_contracts_running_at_the_end_of_the_simulation_become_open_ended():
    subs = _subs(
        (1, "starter_mthly", "2023-12-24", "2024-01-24", 100, 5, "users", 1, 0.0),  # renewal undecided
        (2, "starter_mthly", "2023-12-01", "2024-01-01", 100, 5, "users", 1, 0.0),
        (2, "starter_mthly", "2024-01-01", "2024-02-01", 100, 5, "users", 1, 0.0),  # starts at the end
        (3, "starter_mthly", "2023-11-20", "2023-12-20", 100, 5, "users", 1, 0.0),  # churned before the end
    )
    out, notes = fightchurn_subscriptions(subs, DATA_END)
    assert notes["subscriptions_starting_at_or_after_data_end_skipped"] == 1
    assert notes["subscriptions_open_ended_at_data_end"] == 2
    ends = out.set_index("account_id")["end_date"]
    assert pd.isna(ends["1"]) and pd.isna(ends["2"])
    assert ends["3"] == pd.Timestamp("2023-12-20")
    assert len(out) == 3


def test_bill_periods_map_onto_the_contract_and_unknown_ones_fail_validation():
    subs = _subs(
        (1, "starter_mthly", "2023-01-01", "2023-02-01", 100, 5, "users", 1, 0.0),
        (2, "standard_biann", "2023-01-01", "2023-07-01", 475, 25, "users", 6, 0.0),
        (3, "premier_annual", "2023-01-01", "2024-01-01", 1800, 100, "users", 12, 0.0),
        (4, "odd_quarterly", "2023-01-01", "2023-04-01", 300, 5, "users", 3, 0.0),
    )
    out, notes = fightchurn_subscriptions(subs, DATA_END)
    periods = out.set_index("account_id")["billing_period"].to_dict()
    assert periods == {"1": "monthly", "2": "semiannual", "3": "annual", "4": "3_months"}
    assert notes["subscriptions_unknown_bill_period"] == 1
    result = validate_tables({"subscriptions": out}, quarantine=True)
    bad = result.quarantined["subscriptions"]
    assert bad["account_id"].tolist() == ["4"]
    assert "billing_period" in bad[REASON].iloc[0]


def _fc_accounts() -> pd.DataFrame:
    return pd.DataFrame(
        {
            "account_id": [1, 2, 3, 4],
            "channel": ["web", "web", "appstore1", "web"],
            "date_of_birth": ["2015-01-01", "2019-06-01", "2020-01-01", "2010-01-01"],
            "country": ["CA", None, "NY", "TX"],
        }
    )


def test_accounts_segment_from_the_first_plan_list_price_and_touch_from_channel():
    subs = _subs(
        (1, "premier_annual", "2022-02-01", "2023-02-01", 900, 100, "users", 12, 0.5),  # list 1800
        (1, "starter_mthly", "2023-02-01", "2023-03-01", 100, 5, "users", 1, 0.0),  # later downgrade
        (2, "standard_biann", "2022-03-15", "2022-09-15", 475, 25, "users", 6, 0.0),
        (3, "advanced_mthly", "2022-04-01", "2022-05-01", 1000, 50, "users", 1, 0.0),
        (3, "meetings", "2022-01-01", "2022-05-01", 300, 5000, "schedule_meeting", 1, 0.0),  # add-on
        (4, "starter_mthly", "2022-05-01", "2022-06-01", 50, 5, "users", 1, 0.5),
    )
    out = fightchurn_accounts(_fc_accounts(), subs).set_index("account_id")
    assert out["segment"].to_dict() == {"1": "enterprise", "2": "mid_market", "3": "enterprise", "4": "smb"}
    assert out["touch_model"].to_dict() == {
        "1": "high_touch",
        "2": "low_touch",
        "3": "tech_touch",  # app-store signup
        "4": "tech_touch",
    }
    assert out.loc["3", "created_date"] == pd.Timestamp("2022-04-01")  # the add-on is not a plan
    assert pd.isna(out.loc["2", "region"]) and out.loc["1", "region"] == "CA"


def test_account_without_a_plan_is_left_for_validation_to_reject():
    subs = _subs((1, "starter_mthly", "2023-01-01", "2023-02-01", 100, 5, "users", 1, 0.0))
    accounts = fightchurn_accounts(_fc_accounts().head(2), subs)
    result = validate_tables({"accounts": accounts}, quarantine=True)
    assert result.quarantined["accounts"]["account_id"].tolist() == ["2"]


def test_usage_becomes_long_form_and_days_after_the_end_are_counted():
    daily = pd.DataFrame(
        {
            "account_id": [1, 1, 1, 2, 2],
            "event_date": ["2023-05-01", "2023-05-01", "2023-05-01", "2023-12-31", "2024-01-03"],
            "event_type": ["search", "win_opportunity", "meeting", "search", "search"],
            "n_events": [12, 2, 3, 4, 9],
            "n_users": [5, 2, 7, 3, 4],
            "value_sum": [None, 1500.5, None, None, None],
        }
    )
    out, notes = fightchurn_usage(daily, DATA_END)
    got = {(r.account_id, r.date.date().isoformat(), r.metric): r.value for r in out.itertuples()}
    assert got == {
        ("1", "2023-05-01", "feature_search"): 12.0,
        ("1", "2023-05-01", "feature_win_opportunity"): 2.0,
        ("1", "2023-05-01", "feature_meeting"): 3.0,
        ("1", "2023-05-01", "active_users"): 7.0,  # the most users seen on any event type that day
        ("1", "2023-05-01", "win_opportunity_value"): 1500.5,
        ("2", "2023-12-31", "feature_search"): 4.0,
        ("2", "2023-12-31", "active_users"): 3.0,
    }
    assert notes["usage_source_rows_on_or_after_data_end_skipped"] == 1
    assert notes["usage_event_rows"] + notes["usage_source_rows_on_or_after_data_end_skipped"] == len(daily)
    assert validate_tables({"usage": out}).counts()["usage"]["quarantined"] == 0


def test_fightchurn_cells_the_mapping_computes_with_must_parse():
    subs = _subs((1, "starter_mthly", "2023-01-01", "someday", 100, 5, "users", 1, 0.0))
    with pytest.raises(ChurnmlError, match="subscription.end_date: 1 cell"):
        fightchurn_subscriptions(subs, DATA_END)
    daily = pd.DataFrame(
        {
            "account_id": [1],
            "event_date": ["2023-05-01"],
            "event_type": ["search"],
            "n_events": ["many"],
            "n_users": [1],
            "value_sum": [None],
        }
    )
    with pytest.raises(ChurnmlError, match="usage_daily.n_events: 1 cell"):
        fightchurn_usage(daily, DATA_END)


def test_days_without_contract_sees_through_overlapping_subscriptions():
    subs = pd.DataFrame(
        {
            "account_id": ["A", "A", "A", "B"],
            "start_date": pd.to_datetime(["2023-01-01", "2023-01-10", "2023-06-01", "2023-01-01"]),
            "end_date": pd.to_datetime(["2023-03-01", "2023-02-01", None, "2023-01-05"]),
        }
    )
    days = pd.DataFrame(
        {
            "account_id": ["A", "A", "A", "A", "B", "B", "C"],
            "date": pd.to_datetime(
                [
                    "2023-02-15",
                    "2023-03-01",
                    "2023-05-31",
                    "2030-01-01",
                    "2023-01-04",
                    "2023-01-05",
                    "2023-01-01",
                ]
            ),
        }
    )
    assert _days_without_contract(days, subs).tolist() == [False, True, True, False, False, True, True]


def _write_fightchurn_folder(folder: Path, accounts, subs, usage, end_date="2024-01-01") -> Path:
    (folder / "sim_config").mkdir(parents=True)
    (folder / "sim_config" / "crm6_conf.yaml").write_text(f"end_date: '{end_date}'\n", encoding="utf-8")
    pd.DataFrame({"plan": ["meetings", "search_unlimited"], "mrr": [300, 200]}).to_csv(
        folder / "sim_config" / "crm6_addons.csv", index=False
    )
    PLANS.to_csv(folder / "sim_config" / "crm6_plans.csv", index=False)
    accounts.to_csv(folder / "crm6_account.csv", index=False)
    subs.to_csv(folder / "crm6_subscription.csv.gz", index=False)
    usage.to_csv(folder / "crm6_usage_daily.csv.gz", index=False)
    return folder


def test_ingest_writes_a_folder_that_validates(tmp_path):
    subs = _subs(
        (1, "starter_mthly", "2023-11-10", "2023-12-10", 100, 5, "users", 1, 0.0),
        (1, "basic_mthly", "2023-12-10", "2024-01-10", 180, 10, "users", 1, 0.1),
        (1, "meetings", "2023-12-10", "2024-01-10", 300, 5000, "schedule_meeting", 1, 0.1),
        (2, "premier_annual", "2023-02-01", "2024-02-01", 1800, 100, "users", 12, 0.0),
        (3, "starter_mthly", "2023-03-01", "2023-04-01", 100, 5, "users", 1, 0.0),
        (4, "standard_biann", "2023-01-01", "2023-07-01", 475, 25, "users", 6, 0.0),
    )
    usage = pd.DataFrame(
        {
            "account_id": [1, 2, 3],
            "event_date": ["2023-11-11", "2023-06-01", "2023-03-31"],
            "event_type": ["search", "quote", "search"],
            "n_events": [3, 1, 1],
            "n_users": [2, 1, 1],
            "value_sum": [None, None, None],
        }
    )
    src = _write_fightchurn_folder(tmp_path / "src", _fc_accounts(), subs, usage)
    report = ingest("fightchurn", src, tmp_path / "out")
    assert report["rows"] == {"accounts": 4, "subscriptions": 5, "usage": 6}
    assert report["notes"]["accounts_churned_before_data_end"] == 2
    assert report["notes"]["usage_account_days_without_active_subscription"] == 0
    tables = read_folder(tmp_path / "out")
    assert sorted(tables) == ["accounts", "subscriptions", "usage"]
    counts = validate_tables(tables).counts()
    assert all(c["quarantined"] == 0 for c in counts.values())
    # a second run into the same folder replaces its own tables
    assert ingest("fightchurn", src, tmp_path / "out")["rows"] == report["rows"]


def test_addons_file_holding_the_plans_table_is_detected_and_an_empty_table_refused(tmp_path):
    subs = _subs(
        (1, "starter_mthly", "2023-11-10", "2023-12-10", 100, 5, "users", 1, 0.0),
        (1, "meetings", "2023-11-10", "2023-12-10", 300, 5000, "schedule_meeting", 1, 0.0),
        (2, "premier_annual", "2023-02-01", "2024-02-01", 1800, 100, "users", 12, 0.0),
    )
    usage = pd.DataFrame(
        {
            "account_id": [1],
            "event_date": ["2023-11-11"],
            "event_type": ["search"],
            "n_events": [3],
            "n_users": [2],
            "value_sum": [None],
        }
    )
    src = _write_fightchurn_folder(tmp_path / "src", _fc_accounts().head(2), subs, usage)
    PLANS.to_csv(src / "sim_config" / "crm6_addons.csv", index=False)  # what fightchurn 1.2.0 writes
    report = ingest("fightchurn", src, tmp_path / "out")
    assert "holds the plans table" in report["notes"]["addons_file_defect"]
    assert report["rows"]["subscriptions"] == 2 and report["notes"]["subscriptions_addon_rows_skipped"] == 1
    # add-ons that name every product would leave no subscription: refused in one line naming the cause
    pd.DataFrame({"plan": ["starter_mthly", "premier_annual", "meetings"], "mrr": [1, 2, 3]}).to_csv(
        src / "sim_config" / "crm6_addons.csv", index=False
    )
    (src / "sim_config" / "crm6_plans.csv").unlink()
    with pytest.raises(
        ChurnmlError, match=r"leaves table\(s\) subscriptions empty \(subscriptions_addon_rows_skipped: 3\)"
    ):
        ingest("fightchurn", src, tmp_path / "out2")


def test_ingest_refuses_unknown_sources_missing_files_and_cluttered_output(tmp_path):
    with pytest.raises(ChurnmlError, match="unknown source 'kaggle'"):
        ingest("kaggle", tmp_path, tmp_path / "out")
    with pytest.raises(ChurnmlError, match="_account.csv"):
        ingest("fightchurn", tmp_path, tmp_path / "out")
    with pytest.raises(ChurnmlError, match="ravenstack_accounts.csv: missing"):
        ingest("ravenstack", tmp_path, tmp_path / "out")
    src = _write_fightchurn_folder(
        tmp_path / "src",
        _fc_accounts().head(1),
        _subs((1, "starter_mthly", "2023-01-01", "2023-02-01", 100, 5, "users", 1, 0.0)),
        pd.DataFrame(columns=["account_id", "event_date", "event_type", "n_events", "n_users", "value_sum"]),
    )
    out = tmp_path / "cluttered"
    out.mkdir()
    (out / "support_tickets.csv").write_text("ticket_id\n", encoding="utf-8")
    with pytest.raises(ChurnmlError, match="already holds support_tickets.csv"):
        ingest("fightchurn", src, out)
    (src / "sim_config" / "crm6_conf.yaml").unlink()
    with pytest.raises(ChurnmlError, match="crm6_conf.yaml: missing"):
        ingest("fightchurn", src, tmp_path / "out")


# ------------------------------------------------------------------------------------------ ravenstack


def _ravenstack_raw() -> dict[str, pd.DataFrame]:
    """RavenStack's layout (as read: text cells), with the kinds of inconsistency the real data has."""
    return {
        "accounts": pd.DataFrame(
            {
                "account_id": ["A-1", "A-2"],
                "account_name": ["Company_0", "Company_1"],
                "industry": ["EdTech", "FinTech"],
                "country": ["US", "UK"],
                "signup_date": ["2023-01-01", "2023-06-01"],
                "referral_source": ["organic", "ads"],
                "plan_tier": ["Enterprise", "Basic"],
                "seats": ["9", "3"],
                "is_trial": ["False", "False"],
                "churn_flag": ["False", "True"],
            }
        ),
        "subscriptions": pd.DataFrame(
            {
                "subscription_id": ["S-1", "S-2", "S-3", "S-4", "S-5"],
                "account_id": ["A-1", "A-1", "A-2", "A-2", "A-2"],
                # S-4 ends the day it starts; S-5 starts on a day that does not exist
                "start_date": ["2023-01-10", "2023-03-01", "2023-06-05", "2024-12-31", "2023-02-30"],
                "end_date": [None, "2023-09-01", "2023-07-05", "2024-12-31", None],
                "plan_tier": ["Enterprise", "Pro", "Basic", "Basic", "Basic"],
                "seats": ["14", "5", "3", "3", "3"],
                "mrr_amount": ["2786", "0", "57", "57", "57"],
                "arr_amount": ["33432", "0", "684", "684", "684"],
                "is_trial": ["False", "True", "False", "False", "False"],
                "upgrade_flag": ["False"] * 5,
                "downgrade_flag": ["False"] * 5,
                "churn_flag": ["False", "False", "True", "True", "False"],
                # S-3: not a billing period of the contract
                "billing_frequency": ["annual", "monthly", "quarterly", "monthly", "monthly"],
                "auto_renew_flag": ["True"] * 5,
            }
        ),
        "feature_usage": pd.DataFrame(
            {
                "usage_id": ["U-1", "U-2", "U-2", "U-4"],  # an id used twice, as in the real data
                "subscription_id": ["S-1", "S-2", "S-1", "S-404"],
                "usage_date": ["2023-04-01", "2023-04-01", "2023-04-02", "2023-04-01"],
                "feature_name": ["feature_7", "feature_7", "feature_3", "feature_7"],
                "usage_count": ["9", "5", "2", "1"],
                "usage_duration_secs": ["600", "60", "30", "10"],
                "error_count": ["1", "0", "2", "0"],
                "is_beta_feature": ["False", "True", "False", "False"],
            }
        ),
        "support_tickets": pd.DataFrame(
            {
                "ticket_id": ["T-1", "T-2", "T-3"],
                "account_id": ["A-1", "A-2", "A-3"],  # A-3 is not an account
                "submitted_at": ["2023-07-27", "2023-08-01", "2023-08-02"],
                "closed_at": ["2023-07-28 03:00:00", "2023-07-31 10:00:00", "2023-08-03 01:00:00"],
                "resolution_time_hours": ["27.0", "-14.0", "25.0"],
                "priority": ["medium", "urgent", "low"],
                "first_response_time_minutes": ["74", "10", "5"],
                "satisfaction_score": [None, "4.0", "3.0"],
                "escalation_flag": ["False"] * 3,
            }
        ),
        "churn_events": pd.DataFrame(
            {"churn_event_id": ["C-1"], "account_id": ["A-2"], "churn_date": ["2023-07-05"]}
        ),
    }


def test_ravenstack_maps_faithfully():
    tables, notes = ravenstack_tables(_ravenstack_raw())
    accounts = tables["accounts"].set_index("account_id")
    assert accounts["segment"].to_dict() == {"A-1": "enterprise", "A-2": "smb"}
    assert accounts["touch_model"].to_dict() == {"A-1": "high_touch", "A-2": "tech_touch"}
    subs = tables["subscriptions"].set_index("subscription_id")
    assert subs.loc["S-2", "plan"] == "pro_trial" and subs.loc["S-2", "mrr"] == 0.0
    assert subs.loc["S-1", "plan"] == "enterprise" and pd.isna(subs.loc["S-1", "end_date"])
    usage = {
        (r.account_id, r.date.date().isoformat(), r.metric): r.value for r in tables["usage"].itertuples()
    }
    assert usage[("A-1", "2023-04-01", "feature_7")] == 14.0  # two records of one feature on one day
    assert usage[("A-1", "2023-04-01", "usage_seconds")] == 660.0
    assert usage[("A-1", "2023-04-02", "errors")] == 2.0
    assert tables["support_tickets"].set_index("ticket_id").loc["T-1", "priority"] == "normal"
    assert notes["usage_source_duplicate_usage_ids"] == 1
    assert notes["usage_rows_with_unknown_subscription"] == 1
    assert notes["usage_source_rows_summed_into_one_account_day_feature"] == 2
    assert notes["churn_events_not_mapped"] == 1


def test_ravenstack_inconsistencies_are_quarantined_with_counts():
    tables, _ = ravenstack_tables(_ravenstack_raw())
    result = validate_tables(tables, quarantine=True)
    counts = {name: c["quarantined"] for name, c in result.counts().items()}
    # S-3 (billing 'quarterly'), S-4 (ends the day it starts), S-5 (no such day); the three usage rows of
    # the unknown subscription; T-2 (closed before it was submitted) and T-3 (unknown account)
    assert counts == {"accounts": 0, "subscriptions": 3, "usage": 3, "support_tickets": 2}
    reasons = result.quarantined["subscriptions"].set_index("subscription_id")[REASON]
    assert "billing_period" in reasons["S-3"] and "end_date > start_date" in reasons["S-4"]
    assert "type datetime" in reasons["S-5"]
    tickets = result.quarantined["support_tickets"].set_index("ticket_id")[REASON]
    assert "resolved_at >= created_at" in tickets["T-2"] and "known account" in tickets["T-3"]
    assert result.quarantined["usage"]["account_id"].isna().all()
    for name, frame in tables.items():  # nothing lost: valid + quarantined = mapped
        assert len(result.tables[name]) + len(result.quarantined.get(name, [])) == len(frame)


def test_ravenstack_numbers_that_cannot_be_summed_stop_the_mapping():
    raw = _ravenstack_raw()
    raw["feature_usage"] = raw["feature_usage"].assign(usage_count=["9", "five", "2", "1"])
    with pytest.raises(ChurnmlError, match="feature_usage.usage_count: 1 cell"):
        ravenstack_tables(raw)


# ------------------------------------------------------------------------------ real data (opt-in slices)

SLICE_ACCOUNTS = 150


@pytest.fixture(scope="module")
def shared() -> Path:
    folder = shared_data_dir()
    if not folder.is_dir():
        pytest.skip(f"no third-party data at {folder} (set CHURNML_SHARED_DATA)")
    return folder


def _fightchurn_slice(src: Path, dst: Path, n_accounts: int) -> Path:
    """The first ``n_accounts`` accounts of a fightchurn export, same layout."""
    shutil.copytree(src / "sim_config", dst / "sim_config")
    for name in (
        "crm6_account.csv",
        "crm6_account_lifetime.csv",
        "crm6_subscription.csv.gz",
        "crm6_usage_daily.csv.gz",
    ):
        frame = pd.read_csv(src / name, keep_default_na=False, na_values=[""])
        frame[frame["account_id"] < n_accounts].to_csv(dst / name, index=False)
    return dst


@pytest.mark.shared_data
@pytest.mark.parametrize("folder", ["fightchurn_crm6_signal", "fightchurn_crm6_default"])
def test_fightchurn_slice_validates_without_quarantine(shared, tmp_path, folder):
    src = _fightchurn_slice(shared / folder, tmp_path / "src", SLICE_ACCOUNTS)
    report = ingest("fightchurn", src, tmp_path / "out")
    notes = report["notes"]
    assert report["rows"]["accounts"] == SLICE_ACCOUNTS
    assert notes["subscriptions_mrr_not_list_price_net_of_discount"] == 0
    assert notes["accounts_churn_disagreeing_with_lifetime_file"] == 0
    assert notes["usage_account_days_before_account_created"] == 0
    result = validate_tables(read_folder(tmp_path / "out"), quarantine=True)
    assert {n: c["quarantined"] for n, c in result.counts().items()} == {
        "accounts": 0,
        "subscriptions": 0,
        "usage": 0,
    }
    subs = result.tables["subscriptions"].sort_values(["account_id", "start_date"])
    following = subs.groupby("account_id")["start_date"].shift(-1)
    assert (subs["end_date"][following.notna()] == following.dropna()).all()  # every renewal abuts
    assert set(subs["billing_period"]) <= {"monthly", "annual"}
    metrics = set(result.tables["usage"]["metric"])
    assert "active_users" in metrics and "feature_search" in metrics and "win_opportunity_value" in metrics
    assert result.tables["usage"]["date"].max() < pd.Timestamp(notes["data_end"])


@pytest.mark.shared_data
def test_ravenstack_ingests_and_its_inconsistencies_are_quarantined(shared, tmp_path):
    report = ingest("ravenstack", shared / "ravenstack_saas", tmp_path / "out")
    assert report["rows"]["accounts"] == 500 and report["rows"]["subscriptions"] == 5000
    # usage dated outside its own subscription: SOURCE.md measured 77.7 %
    assert report["notes"]["usage_rows_outside_own_subscription_window"] / 25_000 == pytest.approx(
        0.777, abs=0.001
    )
    result = validate_tables(read_folder(tmp_path / "out"), quarantine=True)
    counts = {n: c["quarantined"] for n, c in result.counts().items()}
    assert counts == {"accounts": 0, "subscriptions": 13, "usage": 0, "support_tickets": 0}
    assert set(result.quarantined["subscriptions"][REASON]) == {"end_date: end_date > start_date"}
