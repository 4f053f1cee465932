"""Tiers relative to the portfolio, this week's call list (ranked by the README's rule) and its warehouse table."""

from __future__ import annotations

import json
from types import SimpleNamespace

import numpy as np
import pandas as pd
import pytest

from churnml.config import CallListConfig, TiersConfig
from churnml.errors import ChurnmlError
from churnml.scoring.batch import risk_tier
from churnml.scoring.calls import POOLED, call_list, changes_since, previous_scores, priority
from churnml.scoring.tiers import TierDefinition, define_tiers
from churnml.warehouse.store import Warehouse

AS_OF = pd.Timestamp("2025-12-01")
ORDER = {"critical": 0, "high": 1, "medium": 2, "low": 3}


def _model(edges, n=1000, positives=50):
    return SimpleNamespace(
        info={"n_validation": n, "positives_validation": positives},
        distributions={"score": {"edges": list(edges)}},
    )


def test_tiers_are_quantiles_of_validation_scores_stated_against_the_base_rate():
    edges = np.linspace(0.01, 0.09, 9)  # validation deciles 10%..90%
    d = define_tiers(_model(edges), _model(edges / 2, positives=80), TiersConfig())
    assert d.source == "validation" and d.base_rate == pytest.approx(0.05)
    assert d.cutoffs["critical"] == pytest.approx(0.09)  # the riskiest 10%: above the 90th percentile
    assert d.cutoffs["high"] == pytest.approx(0.075)  # 25%: halfway between the 70th and 80th
    assert d.cutoffs["medium"] == pytest.approx(0.05) and d.cutoffs["low"] == 0.0
    assert d.expansion_cutoff == pytest.approx(0.045) and d.expansion_base_rate == pytest.approx(0.08)
    words = d.describe()
    assert (
        words[0]
        == "Critical: the riskiest 10% of accounts on validation data (risk from 9.0%, 1.8x the base rate)"
    )
    assert words[1].startswith("High: the next 15%") and words[-1] == "Low: every other account"
    assert "10% most likely to expand" in d.describe_expansion()
    assert TierDefinition.from_dict(json.loads(json.dumps(d.to_dict()))) == d
    # every tier holds accounts of a portfolio scored like the validation one (never empty by construction)
    portfolio = np.random.default_rng(0).uniform(0.0, 0.1, 5000)
    assert set(risk_tier(portfolio, d.cutoffs)) == set(ORDER)


def test_tiers_fall_back_to_fixed_thresholds_without_a_validation_reference():
    bare = SimpleNamespace(info={}, distributions={})
    d = define_tiers(bare, bare, TiersConfig())
    assert d.source == "fixed" and d.cutoffs == TiersConfig().thresholds
    # tied validation deciles (a nearly constant model): the scored portfolio's own quantiles
    tied = _model([0.04] * 9)
    scored = np.linspace(0.0, 0.2, 101)
    d = define_tiers(tied, tied, TiersConfig(), (scored, scored))
    assert d.source == "portfolio" and d.cutoffs["critical"] == pytest.approx(0.18)
    assert d.describe()[0].startswith("Critical: the riskiest 10% of accounts scored today")
    with pytest.raises(ChurnmlError, match="strictly between"):
        define_tiers(bare, bare, TiersConfig(top_shares={"critical": 1.5, "high": 0.3, "medium": 0.5}))


def _scores(n=40, seed=1):
    rng = np.random.default_rng(seed)
    p = rng.uniform(0.0, 0.3, n)
    arr = rng.choice([5_000.0, 20_000.0, 120_000.0], n)
    tiers = risk_tier(p, {"critical": 0.2, "high": 0.12, "medium": 0.06, "low": 0.0})
    return pd.DataFrame(
        {
            "account_id": [f"A{i:03d}" for i in range(n)],
            "as_of": AS_OF,
            "churn_model_version": "3",
            "expansion_model_version": "4",
            "churn_probability": p,
            "risk_tier": tiers,
            "arr": arr,
            "arr_at_risk": arr * p,
            "recommended_play": [f"play for {t}" for t in tiers],
            "top_reasons": [
                json.dumps(
                    [
                        {
                            "reason": f"Logins down {i}% vs the previous 30 days",
                            "points": 0.02,
                            "direction": "raises",
                        }
                    ]
                )
                for i in range(n)
            ],
        }
    )


def _accounts(scores, seed=2):
    rng = np.random.default_rng(seed)
    n = len(scores)
    return pd.DataFrame(
        {
            "account_id": scores["account_id"],
            "csm_id": rng.choice(["csm_01", "csm_02", None], n),
            "days_to_renewal": rng.choice([5.0, 25.0, 60.0, 200.0, np.nan], n),
            "billing_period": rng.choice(["annual", "monthly"], n),
        }
    )


def test_call_list_follows_the_ranking_rule_within_capacity():
    scores = _scores()
    accounts = _accounts(scores)
    previous = scores.assign(
        churn_probability=scores["churn_probability"] - np.where(np.arange(40) % 5 == 0, 0.05, 0.0)
    )
    changes = changes_since(scores, previous, ORDER)
    cfg = CallListConfig(capacity_per_csm=4, pooled_capacity=3)
    calls = call_list(scores, accounts, changes, cfg, tier_order=ORDER, base_rate=0.05)

    # the rule, recomputed independently: candidates, priority, capacity per CSM
    df = scores.merge(accounts, on="account_id").merge(changes, on="account_id")
    soon = (
        (df["churn_probability"] >= 0.05)
        & (df["billing_period"] != "monthly")
        & (df["days_to_renewal"] <= 30)
    )
    rose = (df["risk_change"] >= cfg.rise_points) | (df["tier_move"] == "up")
    df["value"] = df["arr_at_risk"] * np.where(soon, 2.0, 1.0) * np.where(rose, 1.5, 1.0)
    df["csm"] = df["csm_id"].fillna(POOLED)
    df = df[(df["risk_tier"] != "low") | rose].sort_values(["value", "churn_probability"], ascending=False)
    expected = pd.concat(
        [g.head(cfg.pooled_capacity if c == POOLED else cfg.capacity_per_csm) for c, g in df.groupby("csm")]
    )
    expected = expected.sort_values(["value", "churn_probability"], ascending=False)

    assert list(calls["account_id"]) == list(expected["account_id"])
    assert list(calls["team_rank"]) == list(range(1, len(calls) + 1))
    assert np.allclose(calls["priority"], expected["value"])
    assert calls.groupby("csm_id").size().to_dict() == expected.groupby("csm").size().to_dict()
    for csm, group in calls.groupby("csm_id"):
        assert len(group) <= (cfg.pooled_capacity if csm == POOLED else cfg.capacity_per_csm)
        assert list(group["rank"]) == list(range(1, len(group) + 1))
    # a renewal within 30 days at elevated risk gets the rescue play and is due before the term ends
    merged = calls.merge(accounts, on="account_id", suffixes=("", "_a"))
    urgent = (
        (merged["churn_probability"] >= 0.05)
        & (merged["billing_period"] == "annual")
        & (merged["days_to_renewal_a"] <= 30)
    )
    assert (merged.loc[urgent, "play"] == cfg.renewal_rescue_play).all()
    assert (merged.loc[~urgent, "play"] != cfg.renewal_rescue_play).all()
    assert merged.loc[urgent, "reason"].str.startswith("Renews in").all()
    assert (pd.to_datetime(merged["due"]) <= AS_OF + pd.Timedelta(days=cfg.due_days)).all()
    assert calls["reason"].str.contains("; top reason: Logins down").all()
    assert "x the base rate" in calls["reason"].iloc[0]


def test_priority_rule_and_changes_since_the_previous_scoring():
    assert list(
        priority(np.array([100.0, 100, 100, 100]), np.array([0, 1, 0, 1], bool), np.array([0, 0, 1, 1], bool))
    ) == [100, 200, 150, 300]
    now = pd.DataFrame(
        {
            "account_id": ["A", "B", "C"],
            "churn_probability": [0.3, 0.05, 0.1],
            "risk_tier": ["critical", "low", "medium"],
            "top_reasons": [
                json.dumps([{"reason": r, "points": 0.1, "direction": "raises"}])
                for r in ("New", "Old", "Old")
            ],
        }
    )
    history = pd.concat(
        [
            now.assign(as_of=AS_OF - pd.Timedelta(days=14), churn_probability=0.9),
            now.iloc[:2].assign(
                as_of=AS_OF - pd.Timedelta(days=7),
                churn_probability=[0.1, 0.2],
                risk_tier=["medium", "high"],
                top_reasons=[json.dumps([{"reason": "Old", "points": 0.1, "direction": "raises"}])] * 2,
            ),
        ]
    )
    prev = previous_scores(history, AS_OF)
    assert set(prev["account_id"]) == {"A", "B"}  # the latest earlier date only
    changes = changes_since(now, prev, ORDER).set_index("account_id")
    assert changes.loc["A", "risk_change"] == pytest.approx(0.2) and changes.loc["A", "tier_move"] == "up"
    assert changes.loc["B", "tier_move"] == "down" and changes.loc["C", "tier_move"] == "new"
    assert changes.loc["A", "new_reasons"] == ["New"] and changes.loc["B", "new_reasons"] == []
    empty = changes_since(now, previous_scores(history, AS_OF - pd.Timedelta(days=14)), ORDER)
    assert empty["risk_change"].isna().all()


def test_call_list_table_is_replaced_per_as_of(tmp_path):
    scores = _scores()
    calls = call_list(
        scores, _accounts(scores), changes_since(scores, None, ORDER), CallListConfig(), tier_order=ORDER
    )
    with Warehouse(f"duckdb:///{tmp_path / 'w.duckdb'}") as wh:
        assert wh.write_call_list(calls, AS_OF) == len(calls)
        assert wh.write_call_list(calls.head(3), AS_OF) == 3  # a rerun replaces the date's rows
        later = calls.assign(as_of=AS_OF + pd.Timedelta(days=7))
        wh.write_call_list(later, AS_OF + pd.Timedelta(days=7))
        back = wh.read_call_list()
        assert back.groupby("as_of").size().tolist() == [3, len(calls)]
        assert list(wh.read_call_list(AS_OF)["account_id"]) == list(calls.head(3)["account_id"])
        with pytest.raises(ChurnmlError, match="expected 2025-12-01"):
            wh.write_call_list(later, AS_OF)
