"""Reasons: one template per family rendering every feature (missing values too), drivers grouped, hit rate."""

from __future__ import annotations

import json
import re

import numpy as np
import pandas as pd
import pytest

from churnml.config import FeaturesConfig
from churnml.errors import ChurnmlError
from churnml.explain.drivers import FAMILIES, driver_of, feature_info, is_context, merged_keys
from churnml.explain.reasons import (
    cause_hit_rate,
    cause_hit_summary,
    cause_hits,
    reasons_for,
    top_reasons,
    with_reasons,
)
from churnml.explain.templates import FAMILY_TEMPLATES, render_reason
from churnml.features.catalogue import feature_names
from churnml.features.steps import EXAMPLE_CSM_KINDS, EXAMPLE_METRICS


def _engine_features() -> list[str]:
    """Every feature the engine produces: default windows and others, many metrics and CSM activity kinds."""
    metrics = (*EXAMPLE_METRICS, "feature_exports", "seats-used", "Report Views")
    kinds = (*EXAMPLE_CSM_KINDS, "ebr", "health check")
    names = feature_names(FeaturesConfig(), metrics, kinds)
    names += feature_names(
        FeaturesConfig(windows_days=[14, 60], trend_window_days=28, sponsor_left_window_days=60)
    )
    return list(dict.fromkeys(names))


ENGINE = _engine_features()
# Names outside the engine's catalogue (e.g. added by a user) still get a sentence from the name.
OTHER = [
    "usage_logins_per_seat_30d",
    "adoption_key_feature_share_30d",
    "lifecycle_in_onboarding",
    "contract_seats_change_90d",
    "contract_arr_delta_90d",
    "support_urgent_count_90d",
    "nps_detractor_count_180d",
    "nps_score_mean_180d",
    "csm_days_since_last_qbr",
    "contacts_champion_left_90d",
    "contacts_active_count",
    "invoices_overdue_amount",
    "invoices_unpaid_share_180d",
    "account_age_days",
]
CATEGORICAL = {
    "account_segment": "mid_market",
    "account_touch_model": "low_touch",
    "account_industry": "financial_services",
    "account_region": "emea",
    "contract_plan": "professional",
    "contract_billing_period": "annual",
    "lifecycle_journey_stage": "onboarding",
}


def test_every_family_has_a_template():
    assert set(FeaturesConfig().families) <= set(FAMILY_TEMPLATES)
    assert set(FAMILIES) == set(FAMILY_TEMPLATES)
    assert {feature_info(n).family for n in ENGINE} == set(FAMILIES)  # the catalogue covers every family


@pytest.mark.parametrize("name", ENGINE + OTHER)
def test_every_feature_renders_for_any_value_missing_included(name):
    info = feature_info(name)
    assert info.family in FAMILY_TEMPLATES
    values = (
        [CATEGORICAL[name], None]
        if name in CATEGORICAL
        else [0.0, 1.0, 3.0, -0.4, 0.37, 41.0, 12500.0, np.nan]
    )
    for value in values:
        row = {name: value, "contract_seats": 9.0}
        for median in (None, 2.0, np.nan):
            text = render_reason(name, value, row, median)
            assert isinstance(text, str) and len(text) > 3, (name, value, text)
            assert not re.search(r"\b(nan|inf)\b", text, flags=re.IGNORECASE), (name, value, text)
            assert not re.search(r"\bNone\b|_", text), (name, value, text)  # no raw names or Python reprs
            assert text[0].isupper() or text[0].isdigit() or text[0] in "$-", (name, value, text)


def test_sentences_quote_the_accounts_own_numbers_and_baseline():
    row = {
        "usage_active_users_trend_30d": -0.45,
        "usage_active_users_mean_30d": 12.4,
        "usage_logins_trend_30d": 0.2,
        "usage_logins_sum_30d": 120.0,
        "usage_logins_days_since_last": 9.0,
        "contacts_sponsor_left_90d": 1.0,
        "contacts_days_since_sponsor_left": 23.0,
        "contract_days_to_renewal": 41.0,
        "support_high_priority_count_30d": 3.0,
        "adoption_license_utilisation_30d": 0.34,
        "contract_seats": 9.0,
        "nps_score_latest": 3.0,
        "contract_mrr_change_90d": -0.1,
        "csm_days_since_last_touch": 75.0,
        "invoices_overdue_count_90d": 2.0,
        "adoption_breadth_30d": 0.0,
    }

    def say(name, median=None):
        return render_reason(name, row[name], row, median)

    assert (
        say("usage_active_users_trend_30d")
        == "Active users down 45% vs the previous 30 days (now 12.4 a day)"
    )
    assert say("usage_logins_trend_30d") == "Logins up 20% vs the previous 30 days (120 in the last 30 days)"
    assert say("usage_logins_sum_30d", 340.0) == "Logins: 120 in the last 30 days (median account: 340)"
    assert say("usage_logins_days_since_last") == "Last login 9 days ago"
    assert say("contacts_sponsor_left_90d") == "Sponsor or champion left 23 days ago"
    assert say("contacts_days_since_sponsor_left") == "Sponsor or champion left 23 days ago"
    assert say("contract_days_to_renewal") == "Renewal in 41 days"
    assert say("support_high_priority_count_30d") == "3 high-priority tickets in the last 30 days"
    assert say("adoption_license_utilisation_30d") == "License utilisation 34% (3 of 9 seats active)"
    assert say("nps_score_latest") == "Latest NPS answer 3 / 10 (detractor)"
    assert say("contract_mrr_change_90d") == "MRR down 10% vs 90 days ago"
    assert say("csm_days_since_last_touch") == "Last CSM touch 75 days ago"
    assert say("invoices_overdue_count_90d") == "2 invoices paid late or unpaid in the last 90 days"
    assert say("adoption_breadth_30d") == "No key feature used in the last 30 days"
    assert (
        render_reason("contacts_sponsor_left_90d", 1.0, {}) == "Sponsor or champion left in the last 90 days"
    )
    assert render_reason("nps_score_latest", np.nan, {}) == "No NPS answer yet"
    assert render_reason("usage_active_users_trend_30d", np.nan, {}) == (
        "Active users: no trend (none in the previous 30 days)"
    )


def test_feature_info_and_drivers():
    info = feature_info("usage_feature_dashboards_zscore_7d")
    assert (info.family, info.metric, info.agg, info.window_days) == (
        "usage",
        "feature_dashboards",
        "zscore",
        7,
    )
    same = [
        "usage_logins_sum_30d",
        "usage_logins_trend_30d",
        "usage_logins_zscore_7d",
        "usage_logins_days_since_last",
    ]
    assert {driver_of(feature_info(n)) for n in same} == {"usage_logins"}
    assert driver_of(feature_info("contacts_days_since_sponsor_left")) == driver_of(
        feature_info("contacts_sponsor_left_90d")
    )
    assert driver_of(feature_info("nps_days_since_latest")) == driver_of(feature_info("nps_score_latest"))
    assert driver_of(feature_info("contract_mrr")) == driver_of(feature_info("contract_arr"))
    assert driver_of(feature_info("csm_days_since_last_touch")) == driver_of(
        feature_info("csm_touches_count_90d")
    )
    assert driver_of(feature_info("usage_logins_sum_30d")) != driver_of(
        feature_info("usage_api_calls_sum_30d")
    )
    other = feature_info("support_urgent_count_90d")  # outside the catalogue: read from the name
    assert (other.family, other.metric, other.agg, other.window_days) == ("support", "urgent", "count", 90)
    with pytest.raises(ChurnmlError, match="no known family"):
        feature_info("weird_thing_30d")


# --------------------------------------------------------------------------------------------- drivers


def _explained():
    """Two accounts at one as-of; long-form explanations with hand-set points."""
    as_of = pd.Timestamp("2025-07-01")
    features = pd.DataFrame(
        {
            "account_id": ["A1", "A2"],
            "cutoff": pd.to_datetime([as_of, as_of]).astype("datetime64[us]"),
            "usage_logins_sum_30d": [40.0, 400.0],
            "usage_logins_trend_30d": [-0.5, 0.1],
            "usage_logins_zscore_7d": [-2.2, 0.3],
            "support_high_priority_count_30d": [3.0, 0.0],
            "contract_days_to_renewal": [41.0, 300.0],
            "nps_score_latest": [np.nan, 9.0],
            "account_segment": pd.Series(["smb", "enterprise"], dtype="str"),
        }
    )
    points = {
        "A1": {
            "usage_logins_sum_30d": 0.02,
            "usage_logins_trend_30d": 0.05,
            "usage_logins_zscore_7d": 0.01,
            "support_high_priority_count_30d": 0.04,
            "contract_days_to_renewal": 0.03,
            "nps_score_latest": 0.005,
            "account_segment": -0.01,
        },
        "A2": {
            "usage_logins_sum_30d": -0.03,
            "usage_logins_trend_30d": 0.0,
            "usage_logins_zscore_7d": -0.01,
            "support_high_priority_count_30d": -0.01,
            "contract_days_to_renewal": -0.02,
            "nps_score_latest": -0.04,
            "account_segment": 0.0,
        },
    }
    rows = [
        {
            "account_id": a,
            "as_of": as_of,
            "target": "churn",
            "feature": f,
            "shap_value": p * 4,  # same sign, log-odds scale
            "probability_points": p,
        }
        for a, fs in points.items()
        for f, p in fs.items()
    ]
    return pd.DataFrame(rows).astype({"as_of": "datetime64[us]"}), features


def test_drivers_group_one_root_cause_and_rank_by_points():
    ex, features = _explained()
    before = ex.copy(), features.copy()
    out = reasons_for(ex, features, top=3, context=())  # no context: every driver competes for a slot
    pd.testing.assert_frame_equal(ex, before[0])
    pd.testing.assert_frame_equal(features, before[1])
    assert list(out.columns) == [
        "account_id",
        "as_of",
        "target",
        "rank",
        "direction",
        "driver",
        "family",
        "probability_points",
        "reason",
    ]
    a1 = out[out["account_id"] == "A1"]
    raises = a1[a1["direction"] == "raises"]
    # the three logins features are ONE driver: 0.02 + 0.05 + 0.01, sentence from the trend (largest |shap|)
    assert list(raises["driver"]) == [
        "usage_logins",
        "support_high_priority_tickets",
        "contract_days_to_renewal",
    ]
    assert raises["probability_points"].iloc[0] == pytest.approx(0.08)
    assert raises["reason"].iloc[0] == "Logins down 50% vs the previous 30 days (40 in the last 30 days)"
    assert list(raises["rank"]) == [1, 2, 3]
    assert list(a1.loc[a1["direction"] == "lowers", "reason"]) == ["SMB segment"]
    assert (out["driver"].value_counts() <= 2).all()  # never the same driver twice per account
    a2 = out[out["account_id"] == "A2"]
    assert set(a2["direction"]) == {"lowers"}  # zero-point drivers are dropped
    assert a2["reason"].iloc[0] == "Latest NPS answer 9 / 10 (promoter)"
    assert (out["probability_points"][out["direction"] == "lowers"] < 0).all()


def test_context_drivers_never_take_a_reason_slot():
    ex, features = _explained()
    out = reasons_for(ex, features, top=3)
    assert set(out["direction"]) <= {"raises", "lowers", "context"}
    assert not out.loc[out["direction"] != "context", "driver"].map(is_context).any()
    assert out.loc[out["direction"] == "context", "driver"].map(is_context).all()
    a1 = out[out["account_id"] == "A1"]
    # renewal timing (0.03 points, more than NPS) is context: the third reason slot goes to the NPS answer
    assert list(a1.loc[a1["direction"] == "raises", "driver"]) == [
        "usage_logins",
        "support_high_priority_tickets",
        "nps_nps_score",
    ]
    assert a1.loc[a1["direction"] == "raises", "rank"].tolist() == [1, 2, 3]
    assert a1.loc[a1["direction"] == "lowers"].empty  # the segment was its only lowering driver
    ctx = a1[a1["direction"] == "context"]
    # context keeps its points (sign = which way it moves the score), strongest first, after the reasons
    assert list(ctx["reason"]) == ["Renewal in 41 days", "SMB segment"]
    assert ctx["probability_points"].tolist() == pytest.approx([0.03, -0.01])
    assert ctx["rank"].tolist() == [1, 2]
    assert list(a1["direction"]) == ["raises"] * 3 + ["context"] * 2
    a2 = out[out["account_id"] == "A2"]
    assert list(a2.loc[a2["direction"] == "lowers", "driver"]) == [
        "nps_nps_score",
        "usage_logins",
        "support_high_priority_tickets",
    ]
    assert list(a2.loc[a2["direction"] == "context", "reason"]) == ["Renewal in 300 days"]
    # a context driver ranks first, by far, and still never takes a slot
    loud = ex.assign(
        probability_points=ex["probability_points"].where(ex["feature"] != "contract_days_to_renewal", 0.9)
    )
    top1 = reasons_for(loud, features, top=1)
    # A1's one reason is still logins; A2's renewal (now +0.9) raises its risk, yet A2 has no raising reason
    assert list(top1.loc[top1["direction"] == "raises", "account_id"]) == ["A1"]
    assert list(top1.loc[top1["direction"] == "raises", "driver"]) == ["usage_logins"]
    assert list(top1.loc[top1["direction"] == "context", "driver"]) == ["contract_days_to_renewal"] * 2


def test_points_of_reasons_and_context_add_up_to_every_contribution():
    ex, features = _explained()
    out = reasons_for(ex, features, top=50)
    total = ex.groupby("account_id")["probability_points"].sum()
    shown = out.groupby("account_id")["probability_points"].sum()
    pd.testing.assert_series_equal(shown, total, check_names=False)
    # the choice of what is phrased as a reason moves no points: context or not, each driver sums the same
    plain = reasons_for(ex, features, top=50, context=())
    per = out.set_index(["account_id", "driver"])["probability_points"].sort_index()
    pd.testing.assert_series_equal(
        per, plain.set_index(["account_id", "driver"])["probability_points"].sort_index()
    )


def test_context_is_when_or_what_and_contraction_is_a_reason():
    for name in (
        "contract_days_to_renewal",
        "contract_billing_period",
        "contract_plan",
        "contract_seats",
        "contract_arr",
        "contract_mrr",
        "contract_renewals_count",
        "lifecycle_tenure_days",
        "account_segment",
        "account_touch_model",
        "account_industry",
        "account_region",
        "account_age_days",
    ):
        assert is_context(driver_of(feature_info(name))), name
    why = [n for n in ENGINE + OTHER if not is_context(driver_of(feature_info(n)))]
    families = {feature_info(n).family for n in why}
    assert families == set(FAMILIES) - {"account"}  # every other family has reasons
    for name in (
        "contract_mrr_change_90d",  # a contraction, not the size
        "contract_downgrades_count",
        "lifecycle_time_to_first_value_days",
        "lifecycle_first_value_reached",
        "lifecycle_journey_stage",
        "adoption_license_utilisation_30d",
        "usage_logins_trend_30d",
        "contacts_sponsor_left_90d",
    ):
        assert not is_context(driver_of(feature_info(name))), name
    assert driver_of(feature_info("contract_mrr_change_90d")) == "contract_arr_change"
    assert is_context("usage_logins", context=["usage_logins"]) and not is_context(
        "account_segment", context=()
    )


def test_top_reasons_json_and_with_reasons():
    ex, features = _explained()
    reasons = reasons_for(ex, features, top=3, context=())
    tops = top_reasons(reasons, top=2)
    assert list(tops.columns) == ["account_id", "as_of", "target", "top_reasons"]
    items = json.loads(tops.set_index("account_id").loc["A1", "top_reasons"])
    assert [i["direction"] for i in items] == ["raises", "raises", "lowers"]
    assert items[0] == {
        "reason": "Logins down 50% vs the previous 30 days (40 in the last 30 days)",
        "points": 8.0,
        "direction": "raises",
    }
    annotated = with_reasons(ex, features)
    assert len(annotated) == len(ex) and annotated["reason"].str.len().gt(3).all()
    sel = annotated[(annotated["account_id"] == "A1") & (annotated["feature"] == "contract_days_to_renewal")]
    assert sel["reason"].iloc[0] == "Renewal in 41 days"


def test_top_reasons_json_carries_context_after_the_reasons():
    ex, features = _explained()
    tops = top_reasons(reasons_for(ex, features, top=3), top=2).set_index("account_id")["top_reasons"]
    a1 = json.loads(tops["A1"])
    assert [i["direction"] for i in a1] == ["raises", "raises", "context", "context"]
    assert [i["reason"] for i in a1[:2]] == [
        "Logins down 50% vs the previous 30 days (40 in the last 30 days)",
        "3 high-priority tickets in the last 30 days",
    ]
    assert a1[2] == {"reason": "Renewal in 41 days", "points": 3.0, "direction": "context"}
    assert a1[3] == {"reason": "SMB segment", "points": -1.0, "direction": "context"}
    a2 = json.loads(tops["A2"])
    assert [i["direction"] for i in a2] == ["lowers", "lowers", "context"]
    # the churn_explanations rows say the same about a context feature as the scores' JSON
    annotated = with_reasons(ex, features).set_index(["account_id", "feature"])["reason"]
    assert annotated[("A1", "contract_days_to_renewal")] == a1[2]["reason"]
    assert annotated[("A1", "account_segment")] == a1[3]["reason"]


def test_missing_feature_rows_fail_with_one_line():
    ex, features = _explained()
    with pytest.raises(ChurnmlError, match="no feature row.*A2"):
        reasons_for(ex, features[features["account_id"] == "A1"])
    with pytest.raises(ChurnmlError, match="lack column"):
        reasons_for(ex.drop(columns=["probability_points"]), features)


def test_cause_hit_rate():
    as_of = pd.Timestamp("2025-07-01")
    reasons = pd.DataFrame(
        {
            "account_id": ["A1", "A1", "A2", "A3", "A3", "A4", "A5"],
            "as_of": [as_of] * 7,
            "target": ["churn"] * 7,
            "rank": [1, 2, 1, 1, 4, 1, 1],
            "direction": ["raises", "raises", "raises", "lowers", "raises", "raises", "raises"],
            "driver": [
                "usage_logins",
                "contacts_sponsor_left",
                "support_x",
                "nps_score",
                "nps_score",
                "usage_x",
                "csm_x",
            ],
            "family": ["usage", "contacts", "support", "nps", "nps", "usage", "csm"],
            "probability_points": [0.1, 0.05, 0.1, -0.1, 0.01, 0.1, 0.1],
            "reason": ["r"] * 7,
        }
    )
    truth = pd.DataFrame(
        {
            "account_id": ["A1", "A2", "A3", "A4", "A5", "A6", "A7"],
            "churn_date": pd.to_datetime(
                ["2025-08-01", "2025-07-15", "2025-09-01", "2025-12-31", "2025-07-02", "2025-08-01", None]
            ),
            "dominant_cause": [
                "sponsor_left",
                "low_adoption",
                "detractor_nps",
                "low_adoption",
                "random",
                "poor_roi",
                None,
            ],
        }
    )
    families = {
        "sponsor_left": ("contacts",),
        "low_adoption": ("adoption", "usage"),
        "detractor_nps": ("nps",),
        "poor_roi": ("usage",),
        "random": (),
    }
    # A1 hit (contacts at rank 2); A2 miss (support); A3 miss (nps only lowers / rank 4); A4 churns after the
    # 90-day horizon (not matched); A5 random (no family); A6 has no reasons; A7 did not churn.
    assert cause_hit_rate(reasons, truth, families, top=3) == pytest.approx(1 / 3)
    assert cause_hit_rate(reasons, truth, families, top=4) == pytest.approx(2 / 3)
    assert cause_hit_rate(reasons, truth, families, top=1) == pytest.approx(0.0)
    with pytest.raises(ChurnmlError, match="none of"):
        cause_hit_rate(reasons[reasons["account_id"] == "A4"], truth, families)


def test_cause_hits_per_churner_and_summary_by_cause():
    ex, features = _explained()
    truth = pd.DataFrame(
        {
            "account_id": ["A1", "A2"],
            "churn_date": pd.to_datetime(["2025-08-15", "2025-07-20"]),
            "dominant_cause": ["detractor_nps", "sponsor_left"],
        }
    )
    families = {"detractor_nps": ("nps",), "sponsor_left": ("contacts",)}
    # with renewal timing in a reason slot, A1's NPS answer is 4th: a miss; as context, it is 3rd: a hit
    plain = cause_hits(reasons_for(ex, features, top=3, context=()), truth, families, top=3)
    hits = cause_hits(reasons_for(ex, features, top=3), truth, families, top=3)
    assert list(plain.columns) == ["account_id", "as_of", "churn_date", "dominant_cause", "hit"]
    assert plain["hit"].tolist() == [False, False]
    assert hits["hit"].tolist() == [True, False]  # A2: nothing raises its risk, a miss (not left out)
    assert cause_hit_rate(reasons_for(ex, features, top=3), truth, families, top=3) == pytest.approx(0.5)
    assert cause_hit_summary(hits) == {
        "hit_rate": 0.5,
        "churners": 2,
        "by_cause": {
            "detractor_nps": {"hit_rate": 1.0, "churners": 1},
            "sponsor_left": {"hit_rate": 0.0, "churners": 1},
        },
    }


def test_context_rows_never_count_as_a_hit():
    as_of = pd.Timestamp("2025-07-01")
    reasons = pd.DataFrame(
        {
            "account_id": ["A1", "A1", "A2"],
            "as_of": [as_of] * 3,
            "target": ["churn"] * 3,
            "rank": [1, 1, 1],
            "direction": ["raises", "context", "raises"],
            "driver": ["usage_logins", "lifecycle_tenure", "lifecycle_first_value_reached"],
            "family": ["usage", "lifecycle", "lifecycle"],
            "probability_points": [0.1, 0.2, 0.1],
            "reason": ["r"] * 3,
        }
    )
    truth = pd.DataFrame(
        {
            "account_id": ["A1", "A2"],
            "churn_date": pd.to_datetime(["2025-08-01", "2025-08-01"]),
            "dominant_cause": ["stalled_onboarding", "stalled_onboarding"],
        }
    )
    hits = cause_hits(reasons, truth, {"stalled_onboarding": ("lifecycle",)})
    assert hits.set_index("account_id")["hit"].to_dict() == {"A1": False, "A2": True}


def test_redundant_drivers_take_one_reason_slot_and_their_points_add_up():
    ex, features = _explained()
    # an exact copy of the tickets count under another driver's name (a charge that is minutes x a rate)
    copy = ex[ex["feature"] == "support_high_priority_count_30d"].assign(
        feature="support_tickets_count_30d", probability_points=lambda d: d["probability_points"] * 0.9
    )
    ex2 = pd.concat([ex, copy], ignore_index=True)
    features2 = features.assign(support_tickets_count_30d=features["support_high_priority_count_30d"])
    apart = reasons_for(ex2, features2, top=3, context=())
    a1 = apart[(apart["account_id"] == "A1") & (apart["direction"] == "raises")]
    assert {"support_high_priority_tickets", "support_tickets"} <= set(a1["driver"])  # two slots, one cause
    groups = [["support_high_priority_count_30d", "support_tickets_count_30d"]]
    out = reasons_for(ex2, features2, top=3, context=(), groups=groups)
    a1 = out[(out["account_id"] == "A1") & (out["direction"] == "raises")]
    # one slot, named by its strongest member, worth both members' points (0.04 + 0.036); the renewal date
    # that the copy had pushed out is back
    assert "support_tickets" not in set(a1["driver"])
    row = a1[a1["driver"] == "support_high_priority_tickets"]
    assert row["probability_points"].item() == pytest.approx(0.076)
    assert list(a1["driver"]) == ["usage_logins", "support_high_priority_tickets", "contract_days_to_renewal"]
    # where the copy is the stronger member, the row is named by it, in words and in `driver` alike (the group
    # key stays the first member's driver: the row must not file the copy's sentence under the other metric)
    stronger = pd.concat([ex, copy.assign(shap_value=lambda d: d["shap_value"] * 1.5)], ignore_index=True)
    flipped = reasons_for(stronger, features2, top=3, context=(), groups=groups)
    row = flipped[(flipped["account_id"] == "A1") & (flipped["probability_points"].round(6) == 0.076)]
    alone = apart[(apart["account_id"] == "A1") & (apart["driver"] == "support_tickets")]
    assert row["driver"].item() == "support_tickets" and row["reason"].item() == alone["reason"].item()
    # every point still counted exactly once: the rows of an account add up to all its contributions
    full = reasons_for(ex2, features2, top=50, groups=groups)
    pd.testing.assert_series_equal(
        full.groupby("account_id")["probability_points"].sum(),
        ex2.groupby("account_id")["probability_points"].sum(),
        check_names=False,
    )
    # context never merges with a reason: a copy of the renewal date stays context, the reason stays a reason
    mixed = reasons_for(
        ex2, features2, top=50, groups=[["contract_days_to_renewal", "support_tickets_count_30d"]]
    )
    a1 = mixed[mixed["account_id"] == "A1"]
    assert "contract_days_to_renewal" in set(a1.loc[a1["direction"] == "context", "driver"])
    assert "support_tickets" in set(a1.loc[a1["direction"] == "raises", "driver"])


def test_a_shared_near_copy_moves_one_feature_not_a_whole_driver():
    """Groups do not chain: two drivers sharing one near-copy stay two reasons (bar that one feature)."""
    keys = {
        "usage_active_users_days_since_last": "usage_active_users",
        "usage_active_users_sum_30d": "usage_active_users",
        "usage_logins_days_since_last": "usage_logins",
        "usage_logins_sum_30d": "usage_logins",
        "contract_days_to_renewal": "contract_days_to_renewal",
    }
    groups = [
        ["usage_active_users_days_since_last", "usage_logins_days_since_last"],
        ["contract_days_to_renewal", "usage_logins_sum_30d"],  # context never shares a key with a reason
    ]
    merged = merged_keys(keys, groups, is_context)
    assert merged == keys | {"usage_logins_days_since_last": "usage_active_users"}
