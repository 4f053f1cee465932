"""The simulator: deterministic, chunk-proof, valid against the contract, and as hard as promised."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest
from sklearn.metrics import roc_auc_score

from churnml.config import FeaturesConfig, LabelsConfig, SimulatorConfig
from churnml.contract.schemas import TABLES
from churnml.contract.validate import validate_tables
from churnml.errors import ChurnmlError
from churnml.sources.simulate import CAUSE_FAMILIES, CAUSES, CHUNK_ACCOUNTS, METRICS, generate, simulate

GRACE = LabelsConfig().grace_days
DAY = pd.Timedelta(days=1)


@pytest.fixture(scope="module")
def portfolio():
    cfg = SimulatorConfig(accounts=800, seed=7)
    tables, truth = simulate(cfg)
    return cfg, tables, truth


def _data_end(cfg: SimulatorConfig) -> pd.Timestamp:
    return pd.Timestamp(cfg.start_date) + pd.DateOffset(months=cfg.months)


def _churn_events(subs: pd.DataFrame, grace: int = GRACE) -> pd.DataFrame:
    """Churn events by the label rule: an end with no subscription active on it or starting within grace."""
    s = subs.sort_values(["account_id", "start_date"])
    next_start = s.groupby("account_id")["start_date"].shift(-1)
    ends = s.assign(next_start=next_start)[s["end_date"].notna()]
    churn = ends["next_start"].isna() | (ends["next_start"] > ends["end_date"] + grace * DAY)
    return ends.loc[churn, ["account_id", "end_date"]].rename(columns={"end_date": "churn_date"})


def _active_on(subs: pd.DataFrame, day: pd.Timestamp) -> pd.Index:
    """Accounts with a subscription active on ``day``."""
    on = (subs["start_date"] <= day) & (subs["end_date"].isna() | (subs["end_date"] > day))
    return pd.Index(subs.loc[on, "account_id"].unique())


def _expanded_within(subs: pd.DataFrame, accounts: pd.Index, day: pd.Timestamp, days: int) -> pd.Series:
    """Whether MRR or seats reach 1.1x their value on ``day - 1`` on some day of [day, day + days)."""
    s = subs[subs["account_id"].isin(accounts)]
    end = s["end_date"].fillna(pd.Timestamp("2200-01-01"))
    base = s[(s["start_date"] <= day - DAY) & (end > day - DAY)].groupby("account_id")[["mrr", "seats"]].sum()
    ahead = s[(s["start_date"] < day + days * DAY) & (end > day)]
    ahead = ahead.groupby("account_id")[["mrr", "seats"]].max()
    ahead = ahead.reindex(base.index)
    grew = (ahead["mrr"] >= 1.1 * base["mrr"]) | (ahead["seats"] >= 1.1 * base["seats"])
    return grew.reindex(accounts, fill_value=False)


def _labelled(cfg: SimulatorConfig, truth: dict[str, pd.DataFrame], horizon: int = 90) -> pd.DataFrame:
    """Monthly truth rows whose horizon lies in the window, with the realised churn label."""
    m = truth["monthly"].merge(truth["accounts"][["account_id", "churn_date"]], on="account_id")
    m = m[m["cutoff"] + horizon * DAY <= _data_end(cfg)]
    churned = (m["churn_date"] >= m["cutoff"]) & (m["churn_date"] < m["cutoff"] + horizon * DAY)
    return m.assign(churned=churned.astype(int))


# ---- determinism and chunking


def test_same_seed_same_data_other_seed_other_data():
    cfg = SimulatorConfig(accounts=200, seed=3, months=12)
    a_tables, a_truth = simulate(cfg)
    b_tables, b_truth = simulate(SimulatorConfig(accounts=200, seed=3, months=12))
    for name, frame in a_tables.items():
        pd.testing.assert_frame_equal(frame, b_tables[name], obj=name)
    for name, frame in a_truth.items():
        pd.testing.assert_frame_equal(frame, b_truth[name], obj=name)
    c_tables, _ = simulate(SimulatorConfig(accounts=200, seed=4, months=12))
    assert not c_tables["usage"].equals(a_tables["usage"])
    assert not c_tables["subscriptions"].equals(a_tables["subscriptions"])


def test_generate_streams_the_same_data_as_simulate(tmp_path):
    cfg = SimulatorConfig(accounts=CHUNK_ACCOUNTS + 150, seed=11, months=14)
    calls = []
    summary = generate(cfg, tmp_path / "raw", tmp_path / "truth", progress=lambda d, t: calls.append((d, t)))
    tables, truth = simulate(cfg)
    assert calls == [(1, 2), (2, 2)]
    for name, frame in tables.items():
        on_disk = pd.read_parquet(tmp_path / "raw" / f"{name}.parquet")
        pd.testing.assert_frame_equal(on_disk, frame, obj=name)
        assert summary["rows"][name] == len(frame)
    for name, frame in truth.items():
        on_disk = pd.read_parquet(tmp_path / "truth" / f"{name}.parquet")
        pd.testing.assert_frame_equal(on_disk, frame, obj=name)
    assert sorted(p.name for p in (tmp_path / "raw").iterdir()) == sorted(f"{n}.parquet" for n in TABLES)


def test_bad_config_is_one_clear_error(tmp_path):
    with pytest.raises(ChurnmlError, match="start_date.*first day of a month"):
        simulate(SimulatorConfig(accounts=10, start_date="2024-01-15"))
    with pytest.raises(ChurnmlError, match="accounts"):
        generate(SimulatorConfig(accounts=0), tmp_path / "raw", tmp_path / "truth")
    assert not (tmp_path / "raw").exists()


# ---- the contract


def test_tables_pass_the_contract_with_nothing_quarantined(portfolio):
    _, tables, _ = portfolio
    result = validate_tables(tables, quarantine=True)
    assert result.quarantined == {}
    assert {name: c["valid"] for name, c in result.counts().items()} == {n: len(f) for n, f in tables.items()}
    assert set(tables) == set(TABLES)
    assert set(tables["usage"]["metric"]) == set(METRICS)
    assert FeaturesConfig().active_users_metric in METRICS
    assert all(len(f) for f in tables.values())


def test_portfolio_is_plausible(portfolio):
    cfg, tables, _ = portfolio
    acc = tables["accounts"]
    touch = pd.crosstab(acc["segment"], acc["touch_model"], normalize="index")
    assert touch.loc["enterprise", "high_touch"] > 0.8 and touch.loc["smb", "tech_touch"] > 0.7
    assert acc.loc[acc["touch_model"] == "tech_touch", "csm_id"].isna().all()
    assert acc.loc[acc["touch_model"] != "tech_touch", "csm_id"].notna().all()
    subs = tables["subscriptions"].merge(acc[["account_id", "segment"]], on="account_id")
    per_account = subs.drop_duplicates("account_id")
    annual = (per_account["billing_period"] == "annual").groupby(per_account["segment"]).mean()
    assert annual["enterprise"] > 0.7 > 0.3 > annual["smb"]
    first = subs.groupby("account_id")["start_date"].min()
    start = pd.Timestamp(cfg.start_date)
    assert (first < start).mean() > 0.6  # most accounts were customers before the window
    assert 0.1 < (first >= start).mean() < 0.35  # and new ones arrive during it
    # weekly seasonality: weekends are quiet
    au = tables["usage"][tables["usage"]["metric"] == "active_users"]
    by_day = au.groupby(au["date"].dt.day_of_week)["value"].sum()
    assert by_day.loc[[5, 6]].mean() < 0.6 * by_day.loc[[0, 1, 2, 3, 4]].mean()
    qbr = tables["csm_activities"].merge(acc, on="account_id")
    assert set(qbr.loc[qbr["kind"] == "qbr", "touch_model"]) == {"high_touch"}
    left = tables["contacts"].dropna(subset=["end_date"])
    assert {"sponsor", "champion"} <= set(left["role"])
    # NPS answers come from the account's own contacts, while they are in post
    nps = tables["nps_responses"].merge(tables["contacts"], on="contact_id", suffixes=("", "_contact"))
    assert len(nps) == len(tables["nps_responses"])
    assert (nps["account_id"] == nps["account_id_contact"]).all()
    in_post = (nps["start_date"] <= nps["responded_at"]) & ~(nps["end_date"] <= nps["responded_at"])
    assert in_post.all()


# ---- time invariants


def test_no_usage_before_the_first_subscription_nor_after_churn(portfolio):
    _, tables, truth = portfolio
    usage = tables["usage"].groupby("account_id")["date"].agg(["min", "max"])
    first = tables["subscriptions"].groupby("account_id")["start_date"].min()
    assert (usage["min"] >= first.reindex(usage.index)).all()
    churn = truth["accounts"].set_index("account_id")["churn_date"].dropna()
    assert len(churn) > 20
    used = usage.reindex(churn.index)
    assert (used["max"].isna() | (used["max"] < churn)).all()
    # churn dates are the exclusive end of the account's final subscription
    last_end = tables["subscriptions"].sort_values("start_date").groupby("account_id")["end_date"].last()
    pd.testing.assert_series_equal(last_end.reindex(churn.index), churn, check_names=False)


def test_late_renewals_exist_and_stay_within_grace(portfolio):
    _, tables, _ = portfolio
    s = tables["subscriptions"].sort_values(["account_id", "start_date"])
    next_start = s.groupby("account_id")["start_date"].shift(-1)
    gap = (next_start - s["end_date"]).dropna().dt.days
    assert (gap >= 0).all()  # rows never overlap
    assert (gap > 0).sum() >= 5  # some renewals come late
    assert gap.max() < GRACE
    assert (s.loc[gap.index[gap > 0], "billing_period"] == "annual").all()


def test_churn_events_in_the_data_are_the_true_churn_dates(portfolio):
    cfg, tables, truth = portfolio
    events = _churn_events(tables["subscriptions"])
    known = _data_end(cfg) - (GRACE + 1) * DAY  # later ends cannot be told from late renewals yet
    events = events[events["churn_date"] <= known].set_index("account_id")["churn_date"].sort_index()
    true = truth["accounts"].dropna(subset=["churn_date"])
    true = true[true["churn_date"] <= known].set_index("account_id")["churn_date"].sort_index()
    pd.testing.assert_series_equal(events, true, check_names=False)


def test_truth_rows_are_the_spine_with_valid_probabilities(portfolio):
    cfg, tables, truth = portfolio
    monthly = truth["monthly"]
    cutoffs = pd.date_range(cfg.start_date, periods=cfg.months, freq="MS")
    assert sorted(monthly["cutoff"].unique()) == list(cutoffs)
    for cutoff in cutoffs[::6]:
        spine = _active_on(tables["subscriptions"], cutoff - DAY)
        rows = monthly.loc[monthly["cutoff"] == cutoff, "account_id"]
        assert sorted(rows) == sorted(spine)
    for col in ("p_churn", "p_expand"):
        assert monthly[col].between(0, 1).all()
    assert (monthly["p_churn"] + monthly["p_expand"] <= 1 + 1e-9).all()
    assert (monthly["horizon_days"] == cfg.label_horizon_days).all()  # the oracle refuses another horizon
    acc = truth["accounts"]
    assert (acc["dominant_cause"].notna() == acc["churn_date"].notna()).all()
    assert set(acc["dominant_cause"].dropna()) <= set(CAUSES)
    assert acc["expansion_count"].gt(0).eq(acc["first_expansion_date"].notna()).all()


def test_cause_families_name_every_cause_and_only_feature_families():
    assert set(CAUSE_FAMILIES) == set(CAUSES)
    families = set(FeaturesConfig().families)
    assert all(set(f) <= families for f in CAUSE_FAMILIES.values())
    assert CAUSE_FAMILIES["sponsor_left"] == ("contacts",) and CAUSE_FAMILIES["support_pain"] == ("support",)


def test_drift_changes_behaviour_only_after_its_date():
    drift_date = pd.Timestamp("2025-01-01")
    base = SimulatorConfig(accounts=CHUNK_ACCOUNTS, seed=5, months=18)
    drift = SimulatorConfig(
        accounts=CHUNK_ACCOUNTS, seed=5, months=18, drift_date="2025-01-01", drift_strength=1.0
    )
    (_, plain), (_, shifted) = simulate(base), simulate(drift)
    horizon = base.label_horizon_days * DAY

    def before(monthly: pd.DataFrame) -> pd.DataFrame:
        return monthly[monthly["cutoff"] + horizon <= drift_date].reset_index(drop=True)

    pd.testing.assert_frame_equal(before(plain["monthly"]), before(shifted["monthly"]))

    def health_vs_risk(monthly: pd.DataFrame) -> float:
        after = monthly[monthly["cutoff"] >= pd.Timestamp("2025-01-01")]
        return after["health"].corr(after["p_churn"])

    # after the drift, the (pre-drift) health no longer orders the true risk as it did
    assert health_vs_risk(shifted["monthly"]) > health_vs_risk(plain["monthly"]) + 0.1


# ---- difficulty (fixed here; later work relies on it)


@pytest.mark.slow
def test_default_portfolio_rates_and_oracle():
    cfg = SimulatorConfig()
    tables, truth = simulate(cfg)
    subs, acc = tables["subscriptions"], tables["accounts"].set_index("account_id")
    churn_date = truth["accounts"].set_index("account_id")["churn_date"]
    for day in (pd.Timestamp(cfg.start_date), pd.Timestamp(cfg.start_date) + 365 * DAY):
        active = _active_on(subs, day)
        churned = churn_date.reindex(active).between(day, day + 364 * DAY)
        assert 0.08 <= churned.mean() <= 0.25, (day, churned.mean())
        by_segment = churned.groupby(acc["segment"].reindex(active).to_numpy()).mean()
        assert by_segment["smb"] > by_segment["enterprise"] + 0.05
        expanded = _expanded_within(subs, active, day, 365)
        assert 0.15 <= expanded.mean() <= 0.35, (day, expanded.mean())
    rows = _labelled(cfg, truth)
    auc = roc_auc_score(rows["churned"], rows["p_churn"])
    assert 0.80 <= auc <= 0.92
    # the true probabilities are calibrated: predicted and realised rates agree
    assert abs(rows["p_churn"].mean() - rows["churned"].mean()) < 0.01
    assert np.corrcoef(rows["health"], rows["p_churn"])[0, 1] < -0.3
