"""Survival: account-month rows against a brute-force loop (censoring, contract rule), the curves' contract
rule, Kaplan-Meier and Cox against values worked out by hand, the metrics, and the out-of-time protocol."""

from __future__ import annotations

import math

import numpy as np
import pandas as pd
import pytest

from churnml.config import ModelConfig, SurvivalConfig
from churnml.errors import ChurnmlError
from churnml.survival.evaluation import CoxBaseline, kaplan_meier, km_by_group, survival_metrics
from churnml.survival.forecast import (
    Movement,
    arr_band,
    arr_band_edges,
    arr_on,
    forecast_book,
    forecast_settings,
    monthly_movements,
    movement_for,
    realised,
    simulate_book,
    summarise,
    tenure_band,
    tenure_months,
)
from churnml.survival.model import curve_frame, survival_from_hazards, train_survival
from churnml.survival.pipeline import test_cutoffs as choose_test_cutoffs
from churnml.survival.rows import (
    AT_RISK,
    EVENT,
    MONTH,
    RENEWAL,
    design,
    outcomes,
    renewal_month,
    spells,
    training_rows,
)
from tests.tables import fast_lgbm

T = pd.Timestamp
DAY = pd.Timedelta(days=1)
H, G = 6, 30


def _generated(seed: int, n_accounts: int = 40) -> tuple[pd.DataFrame, pd.DataFrame, pd.Timestamp]:
    """Random contract histories (renewals on time, late within and beyond the grace, gaps, open rows) and
    feature rows (billing period, days to renewal) at monthly cutoffs."""
    rng = np.random.default_rng(seed)
    subs = []
    for a in range(n_accounts):
        day = T("2024-01-01") + int(rng.integers(0, 60)) * DAY
        period = str(rng.choice(["annual", "semiannual", "monthly"]))
        for _ in range(int(rng.integers(1, 5))):
            length = {
                "annual": 365 * DAY,
                "semiannual": pd.DateOffset(months=6),
                "monthly": 30 * int(rng.integers(1, 4)) * DAY,
            }[period]
            end = day + length
            open_ended = rng.random() < 0.15
            subs.append(
                {
                    "account_id": f"A{a}",
                    "billing_period": period,
                    "start_date": day,
                    "end_date": pd.NaT if open_ended else end,
                    "mrr": 100.0,
                    "seats": 5,
                }
            )
            if open_ended:
                break
            day = end + int(rng.choice([0, 0, 5, 25, 31, 60])) * DAY
    subs = pd.DataFrame(subs)
    cutoffs = pd.date_range("2024-03-01", "2025-06-01", freq="MS")
    rows = []
    for c in cutoffs:
        for r in subs.itertuples():
            if r.start_date < c and (pd.isna(r.end_date) or r.end_date >= c):
                term = r.start_date + {"annual": 365 * DAY, "semiannual": pd.DateOffset(months=6)}.get(
                    r.billing_period, 30 * DAY
                )
                rows.append(
                    {
                        "account_id": r.account_id,
                        "cutoff": c,
                        "contract_billing_period": r.billing_period,
                        "contract_days_to_renewal": float((term - c).days),
                        "usage_x": float(rng.normal()),
                    }
                )
    feats = pd.DataFrame(rows).drop_duplicates(["account_id", "cutoff"]).reset_index(drop=True)
    return subs, feats, T("2025-09-01")


def _brute_force(
    subs: pd.DataFrame, feats: pd.DataFrame, censor: pd.Timestamp, horizon: int = H
) -> set[tuple]:
    """(account, cutoff, month, event) of every training row, by plain loops over days and months."""

    def churn_events(rows):
        out = []
        for r in rows:
            e = r.end_date
            if pd.isna(e):
                continue
            active = any(o.start_date <= e and (pd.isna(o.end_date) or o.end_date > e) for o in rows)
            restart = any(e <= o.start_date <= e + G * DAY for o in rows)
            if not active and not restart:
                out.append(e)
        return sorted(out)

    by_account = {a: list(f.itertuples()) for a, f in subs.groupby("account_id")}
    want = set()
    for f in feats.itertuples():
        c = T(f.cutoff)
        events = [e for e in churn_events(by_account[f.account_id]) if e >= c]
        term = c + f.contract_days_to_renewal * DAY
        # a term contract's term ends: the running one (a lapsed one decides in month 1), then one per term
        months = {"annual": 12, "semiannual": 6}.get(f.contract_billing_period)
        ends = [max(term, c) + pd.DateOffset(months=j * months) for j in range(horizon)] if months else []
        for k in range(1, horizon + 1):
            lo, hi = c + pd.DateOffset(months=k - 1), c + pd.DateOffset(months=k)
            if hi + G * DAY > censor:  # month k not observed: censored from here on
                break
            at_risk = not months or any(lo <= e < hi for e in ends)
            churned = bool(events) and lo <= events[0] < hi
            if at_risk or churned:
                want.add((f.account_id, c, k, int(churned)))
            if churned:
                break
    return want


@pytest.mark.parametrize("seed", [0, 1, 2])
@pytest.mark.parametrize("censor_shift", [0, -200])
@pytest.mark.parametrize("horizon", [H, 12])  # 12: a semiannual term's second end falls inside
def test_training_rows_match_brute_force(seed, censor_shift, horizon):
    subs, feats, end = _generated(seed)
    censor = end + censor_shift * DAY
    out = outcomes(feats, subs, G, horizon, censor)
    rows = training_rows(feats, out, horizon)
    got = {(r.account_id, T(r.cutoff), int(getattr(r, MONTH)), int(r.event)) for r in rows.itertuples()}
    assert got == _brute_force(subs, feats, censor, horizon)
    assert rows[EVENT].sum() > 0 and (rows[EVENT] == 0).sum() > 0  # both outcomes exercised


def test_an_annual_contract_is_at_risk_only_in_its_term_end_month():
    feats = pd.DataFrame(
        {
            "account_id": ["a", "m", "u"],
            "cutoff": [T("2024-05-01")] * 3,
            "contract_billing_period": ["annual", "monthly", None],
            "contract_days_to_renewal": [100.0, 10.0, np.nan],
        }
    )
    d = design(feats, 12)
    annual = d[d["account_id"] == "a"]
    # 2024-05-01 + 100 days = 2024-08-09: month 4 (Aug)
    assert annual.loc[annual[AT_RISK], MONTH].tolist() == [4.0]
    assert annual.loc[annual[RENEWAL] == 1, MONTH].tolist() == [4.0]
    assert d.loc[d["account_id"] == "m", AT_RISK].all()
    assert d.loc[d["account_id"] == "u", AT_RISK].all()  # unknown billing: every month


def test_a_semiannual_contract_is_at_risk_at_each_term_end_within_the_horizon():
    """Its term renews every 6 months: both ends within a year are at risk, the months between are not."""
    feats = pd.DataFrame(
        {
            "account_id": ["s", "l"],
            "cutoff": [T("2024-05-01")] * 2,
            "contract_billing_period": ["semiannual", "semiannual"],
            "contract_days_to_renewal": [40.0, -3.0],  # June 10 (month 2); lapsed: decides in month 1
        }
    )
    d = design(feats, 12)
    semi = d[d["account_id"] == "s"]
    assert semi.loc[semi[AT_RISK], MONTH].tolist() == [2.0, 8.0]
    assert semi.loc[semi[RENEWAL] == 1, MONTH].tolist() == [2.0, 8.0]
    lapsed = d[d["account_id"] == "l"]
    assert lapsed.loc[lapsed[AT_RISK], MONTH].tolist() == [1.0, 7.0]


def test_churn_at_a_later_term_end_keeps_its_hazard():
    """A semiannual customer who renews once and leaves at the second term end: that month is at risk, so
    the rows keep the event inside the rule and the curve can fall there."""
    subs = pd.DataFrame(
        {
            "account_id": ["a", "a"],
            "billing_period": ["semiannual", "semiannual"],
            "start_date": [T("2024-03-15"), T("2024-09-15")],
            "end_date": [T("2024-09-15"), T("2025-03-15")],
            "mrr": [1.0, 1.0],
            "seats": [1, 1],
        }
    )
    feats = pd.DataFrame(
        {
            "account_id": ["a"],
            "cutoff": [T("2024-05-01")],
            "contract_billing_period": ["semiannual"],
            "contract_days_to_renewal": [float((T("2024-09-15") - T("2024-05-01")).days)],
        }
    )
    out = outcomes(feats, subs, G, 12, T("2026-01-01"))
    assert out["event_month"].tolist() == [11]  # 2025-03-15: month 11 from May 2024
    rows = training_rows(feats, out, 12)
    assert rows[MONTH].tolist() == [5.0, 11.0] and rows[EVENT].tolist() == [0, 1]
    assert rows[AT_RISK].all()  # the churn is inside the contract rule


def test_censoring_drops_the_event_that_is_not_yet_known():
    subs = pd.DataFrame(
        {
            "account_id": ["a"],
            "billing_period": ["monthly"],
            "start_date": [T("2024-01-10")],
            "end_date": [T("2024-06-10")],
            "mrr": [1.0],
            "seats": [1],
        }
    )
    keys = pd.DataFrame({"account_id": ["a"], "cutoff": [T("2024-03-01")]})
    # the churn on June 10 is month 4; known once its month and the grace are over (2024-07-01 + 30 days)
    assert outcomes(keys, subs, G, 12, T("2024-07-31")).iloc[0][
        ["event_month", "observed_months"]
    ].tolist() == [4, 4]
    early = outcomes(keys, subs, G, 12, T("2024-07-30")).iloc[0]
    assert early[["event_month", "observed_months"]].tolist() == [0, 3]
    # a renewal within the grace period undoes it
    renewed = pd.concat([subs, subs.assign(start_date=T("2024-07-01"), end_date=pd.NaT)], ignore_index=True)
    assert outcomes(keys, renewed, G, 12, T("2025-12-01")).iloc[0]["event_month"] == 0


def test_kaplan_meier_matches_the_hand_computation():
    # events at 1, 2, 3; censored after 2 and after 4 months observed
    sp = pd.DataFrame({"duration": [1, 2, 2, 3, 4], "event": [True, True, False, True, False]})
    # at risk 5, 4 (the spell censored after month 2 is still at risk in month 2), 2, 1
    np.testing.assert_allclose(kaplan_meier(sp, np.array([1.0, 2.0, 3.0, 4.0])), [0.8, 0.6, 0.3, 0.3])
    by = km_by_group(sp.assign(g=["x", "x", "y", "y", "y"]), pd.DataFrame({"g": ["x", "z"]}), "g", 3)
    np.testing.assert_allclose(by, [[0.5, 0.0, 0.0], [0.8, 0.6, 0.3]])  # x's own curve; z unseen: overall


def test_cox_matches_the_hand_computed_partial_likelihood_maximum():
    # x = 1, 0, 1, 0 dying at months 1..4: L(b) = u/(2u+2) * 1/(u+2) * u/(u+1), u = e^b; the score equation
    # 2 - 2u/(u+1) - u/(u+2) = 0 gives u^2 - u - 4 = 0, u = (1 + sqrt 17) / 2
    sp = pd.DataFrame({"duration": [1, 2, 3, 4], "event": [True] * 4, "x": [1.0, 0.0, 1.0, 0.0]})
    cox = CoxBaseline(["x"], alpha=0.0).fit(sp)
    beta = cox.model.coef_[0] / cox.std["x"]  # the model sees x standardised
    assert beta == pytest.approx(math.log((1 + math.sqrt(17)) / 2), abs=1e-6)
    s = cox.survival(sp.iloc[:2], 3)
    assert (s[0] <= s[1]).all() and s[0, 0] < s[1, 0]  # the higher hazard survives less


def test_metrics_rank_a_perfect_curve_first():
    sp = pd.DataFrame({"duration": [1, 2, 3, 4, 4], "event": [True, True, True, False, False]})
    # each event's curve drops in its month; C ranks by 1 - S(4), distinct here
    perfect = np.array([[0.0] * 4, [1, 0.02, 0.02, 0.02], [1, 1, 0.04, 0.04], [1.0] * 4, [1.0] * 4])
    flat = np.tile([0.8, 0.6, 0.5, 0.4], (5, 1))
    good, bad = survival_metrics(sp, perfect, 4), survival_metrics(sp, flat, 4)
    assert good["harrell_c"] == pytest.approx(1.0) and good["uno_c"] == pytest.approx(1.0)
    assert bad["harrell_c"] == pytest.approx(0.5)
    assert good["integrated_brier"] < 0.01 < bad["integrated_brier"]


def test_curves_follow_the_contract_rule_and_the_hazards():
    subs, feats, end = _generated(3, n_accounts=120)
    out = outcomes(feats, subs, G, H, end)
    rows = training_rows(feats, out, H)
    cfg = ModelConfig(lgbm=fast_lgbm())
    periods = ["annual", "monthly", "semiannual"]
    model = train_survival(rows, {"contract_billing_period": periods}, cfg, 0.3)
    curves = curve_frame(model, feats, H)
    s = curves[[f"s_{t}" for t in range(1, H + 1)]].to_numpy()
    assert (np.diff(s, axis=1) <= 1e-12).all() and ((s > 0) & (s <= 1)).all()
    term = (feats["contract_billing_period"] != "monthly").to_numpy()
    r = renewal_month(feats, H)
    # a term contract's curve moves only at its term ends (one month within these 6 months), and a curve
    # that moves does so in its renewal month
    steps = np.abs(np.diff(np.concatenate([np.ones((len(s), 1)), s], axis=1), axis=1)) > 0
    assert (steps[term].sum(axis=1) <= 1).all()
    moved = term & steps.any(axis=1)
    assert moved.any() and (steps[moved].argmax(axis=1) + 1 == r[moved]).all()
    nxt = curves["next_renewal_month"].to_numpy()
    padded = np.concatenate([np.ones((len(s), 1)), s], axis=1)
    np.testing.assert_allclose(curves["p_renew_next"], padded[np.arange(len(s)), nxt])
    np.testing.assert_allclose(curves["expected_months"], s.sum(axis=1))
    assert (nxt[~term] == 1).all() and (nxt[term] == np.where(r[term] <= H, r[term], 0)).all()
    np.testing.assert_allclose(survival_from_hazards(np.array([[0.1, 0.5]])), [[0.9, 0.45]])


def test_spells_shift_censored_durations_and_keep_events():
    out = pd.DataFrame(
        {
            "account_id": ["a", "b", "c"],
            "cutoff": [T("2024-01-01")] * 3,
            "event_month": [2, 0, 0],
            "observed_months": [5, 3, 0],
        }
    )
    sp = spells(out)
    assert sp[["duration", "event"]].values.tolist() == [[2.0, True], [3.0, False]]


def test_test_cutoffs_leave_something_to_learn_and_follow_as_long_as_the_data_allow():
    cuts = list(pd.date_range("2024-03-01", "2025-12-01", freq="MS"))
    chosen, months = choose_test_cutoffs(cuts, T("2025-12-01"), 30, 12, 3)
    assert months == 12 and [c.strftime("%Y-%m") for c in chosen] == ["2024-09", "2024-10", "2024-11"]
    short = list(pd.date_range("2024-03-01", "2024-11-01", freq="MS"))
    chosen, months = choose_test_cutoffs(short, T("2024-11-01"), 30, 12, 3)
    # three months and the grace after the first cutoff (2024-07-01) come first
    assert months == 1 and [c.strftime("%Y-%m") for c in chosen] == ["2024-07", "2024-08", "2024-09"]
    with pytest.raises(ChurnmlError, match="too little history"):
        choose_test_cutoffs(short[:2], T("2024-05-01"), 30, 12, 3)


# ------------------------------------------------------------------------------------------ forecast


def test_forecast_intervals_cover_the_truth_at_their_nominal_rate():
    """A book whose outcome distribution is known (curves and monthly moves given): 1,000 independent
    realised books fall inside the 80% and 95% intervals at those rates, within three binomial errors."""
    rng = np.random.default_rng(5)
    n = 60
    arr0 = np.exp(rng.normal(9, 1, n))  # a few large accounts: the totals are skewed
    hazard = rng.uniform(0.0, 0.06, (n, 12))
    surv = survival_from_hazards(hazard)
    groups = np.where(rng.random(n) < 0.5, "a", "b")
    moves = {
        "all": Movement(0.05, 0.03, np.array([1.2, 1.5, 2.0]), np.array([0.8, 0.5]), 100),
        "a": Movement(0.08, 0.02, np.array([1.1, 1.3, 1.6]), np.array([0.7]), 50),
    }
    forecast = simulate_book(arr0, surv, groups, moves, 12, 4000, seed=1)
    table = summarise(arr0, forecast, {"segment": groups}).set_index(["dimension", "group"])
    truth = simulate_book(arr0, surv, groups, moves, 12, 1000, seed=2)
    for (dim, group), row in table.iterrows():
        idx = np.ones(n, bool) if dim == "portfolio" else groups == group
        nrr = truth[idx].sum(axis=0) / arr0[idx].sum()
        grr = np.minimum(truth[idx], arr0[idx][:, None]).sum(axis=0) / arr0[idx].sum()
        for name, real in (("nrr", nrr), ("grr", grr)):
            for lo, hi, p in (("p10", "p90", 0.8), ("p025", "p975", 0.95)):
                cover = ((row[f"{name}_{lo}"] <= real) & (real <= row[f"{name}_{hi}"])).mean()
                assert abs(cover - p) <= 3 * math.sqrt(p * (1 - p) / len(real)), (dim, group, name, p, cover)
    # the mean follows the curves: expected NRR without moves is the ARR-weighted S(12)
    still = simulate_book(
        arr0, surv, groups, {"all": Movement(0, 0, np.array([]), np.array([]), 1)}, 12, 4000, 3
    )
    expect = (arr0 * surv[:, 11]).sum() / arr0.sum()
    assert summarise(arr0, still, {}).iloc[0]["nrr_mean"] == pytest.approx(expect, abs=0.01)


def test_arr_grr_and_nrr_by_hand():
    subs = pd.DataFrame(
        {
            "account_id": ["a", "a", "b", "c"],
            "start_date": [T("2024-01-01"), T("2024-06-10"), T("2024-01-01"), T("2024-01-01")],
            "end_date": [T("2024-06-01"), pd.NaT, T("2024-03-01"), pd.NaT],
            "mrr": [10.0, 15.0, 5.0, 20.0],
        }
    )
    accounts = pd.Series(["a", "b", "c"])
    np.testing.assert_allclose(arr_on(subs, accounts, T("2024-02-01"), 30), [120, 60, 240])
    # a's renewal gap (June 1-9) is within the grace: its renewal's ARR counts; b is gone
    np.testing.assert_allclose(arr_on(subs, accounts, T("2024-06-05"), 30), [180, 0, 240])
    np.testing.assert_allclose(arr_on(subs, accounts, T("2024-06-05"), 3), [0, 0, 240])
    # monthly renewals two within the grace (Feb 1 and Mar 1, 29 days apart): only the first one counts
    monthly = pd.DataFrame(
        {
            "account_id": ["m", "m"],
            "start_date": [T("2024-02-01"), T("2024-03-01")],
            "end_date": [T("2024-03-01"), T("2024-04-01")],
            "mrr": [10.0, 20.0],
        }
    )
    np.testing.assert_allclose(arr_on(monthly, pd.Series(["m"]), T("2024-01-31"), 30), [120])
    real = realised(np.array([120.0, 60, 240]), np.array([180.0, 0, 240]), {}).iloc[0]
    assert real["realised_grr"] == pytest.approx((120 + 0 + 240) / 420)
    assert real["realised_nrr"] == pytest.approx((180 + 240) / 420)


def test_the_backtest_plot_columns_are_the_forecast_backtest_columns():
    from churnml.contract.outputs import OUTPUTS
    from churnml.survival.forecast import BACKTEST_COLUMNS

    assert OUTPUTS["survival_plots"].files["forecast_backtest.csv"] == BACKTEST_COLUMNS


def _profile_data():
    """400 accounts: smb loses every other account in month 6, enterprise one in ten; regions alike. Survivors
    grow their ARR by 10% over the year (in twelve equal steps)."""
    n = 400
    feats = pd.DataFrame(
        {
            "account_id": [f"A{i}" for i in range(n)],
            "cutoff": T("2024-01-01"),
            "account_segment": ["smb"] * 200 + ["enterprise"] * 200,
            "account_region": (["eu"] * 100 + ["us"] * 100) * 2,
        }
    )
    event = np.r_[np.arange(200) % 2 == 0, np.arange(200) % 10 == 0]
    sp = pd.DataFrame({"duration": np.where(event, 6, 12), "event": event})
    arr = np.column_stack(
        [np.full(n, 100.0)] + [np.where(event & (k >= 6), 0.0, 100.0 + 10.0 * k / 12) for k in range(1, 13)]
    )
    return feats, sp, arr


def test_profiles_report_km_with_intervals_and_claim_only_clear_differences():
    from churnml.survival.profiles import findings, hazard_ratios, profile_curves, profile_table

    feats, sp, arr = _profile_data()
    curves = profile_curves(feats, sp, arr)
    table = profile_table(curves, hazard_ratios(feats, sp)).set_index(["dimension", "profile"])
    smb = table.loc[("segment", "smb")]
    assert smb["logo_retention"] == pytest.approx(0.5) and smb["accounts"] == 200 and smb["events"] == 100
    assert smb["logo_retention_low"] < 0.5 < smb["logo_retention_high"]
    assert smb["nrr"] == pytest.approx(0.55) and smb["grr"] == pytest.approx(0.5)
    assert smb["nrr_low"] < 0.55 < smb["nrr_high"] and smb["grr_low"] < 0.5 < smb["grr_high"]
    # the reference is the largest profile with a churn (a tie here: by name); smb churns 5x as often
    ent = table.loc[("segment", "enterprise")]
    assert ent["reference"] and ent["hazard_ratio"] == 1.0 and not smb["reference"]
    assert smb["hazard_ratio"] == pytest.approx(5.0, rel=1e-4)  # one tied event time: 50% / 10%
    assert smb["hazard_ratio_low"] < 5.0 < smb["hazard_ratio_high"] and smb["p_value"] < 1e-6
    assert table.loc[("region", "us"), "hazard_ratio"] == pytest.approx(1.0, abs=1e-6)
    # curves: month 0 is the start; logo retention drops in month 6 and stays; revenue follows the ARR
    seg = curves[(curves["dimension"] == "segment") & (curves["profile"] == "smb")].set_index("month")
    assert list(seg.index) == list(range(13)) and seg.loc[0, "logo_retention"] == 1.0
    assert seg.loc[5, "logo_retention"] == 1.0 and seg.loc[6, "logo_retention"] == pytest.approx(0.5)
    assert seg.loc[5, "nrr"] == pytest.approx(1 + 10 * 5 / 12 / 100)
    words = findings(table.reset_index(), 12)
    assert any("enterprise keeps 90%" in w and "200 accounts" in w and "5.0x" in w for w in words)
    assert any("enterprise keeps the most revenue" in w and "smb the least, 55%" in w for w in words)
    assert any(w.startswith("By region: no profile retains") for w in words)
    few = findings(table.reset_index(), 12, min_accounts=500)  # no claim from too few accounts: said so
    assert few and all("no claim: fewer than two profiles of 500 accounts" in w for w in few)
    # an unknown value is listed, never claimed about, however well it retains
    t = table.reset_index()
    unknown = t[t["profile"] == "enterprise"].assign(
        profile="unknown (signed before the usage data)", logo_retention=0.99, logo_retention_low=0.98
    )
    words = findings(pd.concat([t, unknown], ignore_index=True), 12)
    assert not any("unknown" in w for w in words) and any("enterprise keeps 90%" in w for w in words)
    # nor is it the reference of a hazard ratio, even when it is the largest profile
    feats, sp, _ = _profile_data()
    feats = feats.assign(
        account_segment=np.where(np.arange(len(feats)) < 250, None, feats["account_segment"])
    )
    hr = hazard_ratios(feats, sp).set_index(["dimension", "profile"])
    assert hr.loc[("segment", "unknown"), "events"] > 0 and not hr.loc[("segment", "unknown"), "reference"]
    assert hr.loc[("segment", "enterprise"), "reference"]


def test_a_hazard_ratio_the_data_cannot_pin_down_is_left_empty():
    """A profile of two accounts that both churn in month 1, before anyone else: its partial likelihood rises
    for ever, so no ratio is printed; the others keep theirs."""
    from churnml.survival.profiles import hazard_ratios

    feats, sp, _ = _profile_data()
    feats = pd.concat(
        [feats, pd.DataFrame({"account_id": ["Z1", "Z2"], "account_segment": "odd", "account_region": "eu"})],
        ignore_index=True,
    )
    sp = pd.concat([sp, pd.DataFrame({"duration": [1, 1], "event": [True, True]})], ignore_index=True)
    hr = hazard_ratios(feats, sp).set_index(["dimension", "profile"])
    assert hr.loc[("segment", "odd"), "events"] == 2 and np.isnan(hr.loc[("segment", "odd"), "hazard_ratio"])
    assert hr.loc[("segment", "smb"), "hazard_ratio"] == pytest.approx(5.0, rel=0.05)


def test_right_customers_keep_one_spell_per_account():
    """Three monthly cutoffs share one future: only each account's earliest spell counts."""
    from churnml.survival.profiles import first_spells

    feats = pd.DataFrame(
        {
            "account_id": ["a", "a", "b", "a", "c", "c"],
            "cutoff": [T("2024-10-01"), T("2024-09-01"), T("2024-10-01"), T("2024-11-01")]
            + [T("2024-11-01")] * 2,
        }
    )
    assert first_spells(feats).tolist() == [False, True, True, False, True, False]  # c: once, not twice


def test_revenue_retention_bands_come_from_a_bootstrap_over_accounts():
    """The band of a profile's NRR holds the NRR of resampled books: one huge account makes it wide and
    skewed; and the 95% band covers the truth of a known population at about its rate."""
    from churnml.survival.profiles import profile_curves

    rng = np.random.default_rng(3)
    n = 300
    feats = pd.DataFrame({"account_id": [f"A{i}" for i in range(n)], "account_segment": "smb"})
    sp = pd.DataFrame({"duration": np.full(n, 2.0), "event": np.zeros(n, bool)})
    covered, trials = 0, 60
    for trial in range(trials):
        arr0 = rng.lognormal(9, 0.5, n)
        ratio = rng.choice([0.0, 1.0, 1.3], size=n, p=[0.1, 0.7, 0.2])  # true NRR = 0.96
        arr = np.column_stack([arr0, arr0, arr0 * ratio])
        c = profile_curves(feats, sp, arr, draws=300, seed=trial).set_index("month").loc[2]
        covered += c["nrr_low"] <= 0.96 <= c["nrr_high"]
    assert abs(covered / trials - 0.95) <= 3 * math.sqrt(0.95 * 0.05 / trials) + 0.02
    arr0 = np.full(n, 100.0)
    arr0[0] = 1e5  # one account holds three quarters of the ARR
    arr = np.column_stack([arr0, arr0, np.where(np.arange(n) == 0, 0.0, arr0)])
    c = profile_curves(feats, sp, arr, draws=400).set_index("month").loc[2]
    assert c["nrr"] == pytest.approx(29_900 / 129_900)
    assert c["nrr_high"] - c["nrr"] > 0.3 and c["nrr_low"] < c["nrr"]  # the huge account may or may not go


# ------------------------------------------------------------------------------------------ Cox information


def _breslow_by_loop(time, event, x, beta) -> float:
    """Breslow's log partial likelihood, one event time at a time (the textbook formula, no vectorising)."""
    total = 0.0
    for t in sorted(set(time[event])):
        dying = (time == t) & event
        at_risk = time >= t
        total += float((x[dying] @ beta).sum()) - dying.sum() * math.log(np.exp(x[at_risk] @ beta).sum())
    return total


def test_cox_information_is_the_logrank_variance_for_two_groups_without_ties():
    """x = 1, 0, 1, 0 dying at months 1..4. At b = 0 the score is O - E of group 1 and the information the
    log-rank variance, sum over deaths of n1 n0 / n^2: 2/4 - ... (risk sets 2:2, 1:2, 1:1, 0:1) = 13/18;
    at the maximum u = e^b = (1 + sqrt 17) / 2 it is 2u/(u+1)^2 + 2u/(u+2)^2."""
    from churnml.survival.cox import breslow_information, breslow_score, fit_cox

    time, event, x = np.array([1.0, 2, 3, 4]), np.ones(4, bool), np.array([[1.0], [0], [1], [0]])
    assert breslow_score(time, event, x, [0.0])[0] == pytest.approx(2 - (1 / 2 + 1 / 3 + 1 / 2))
    assert breslow_information(time, event, x, [0.0])[0, 0] == pytest.approx(13 / 18)
    beta, cov = fit_cox(time, event, x)
    u = (1 + math.sqrt(17)) / 2
    assert beta[0] == pytest.approx(math.log(u), abs=1e-6)
    assert 1 / cov[0, 0] == pytest.approx(2 * u / (u + 1) ** 2 + 2 * u / (u + 2) ** 2, rel=1e-6)


@pytest.mark.parametrize("seed", [0, 1])
def test_cox_information_is_minus_the_numerical_hessian_with_ties(seed):
    from churnml.survival.cox import breslow_information, breslow_loglik, breslow_score, fit_cox

    rng = np.random.default_rng(seed)
    n, p = 120, 3
    x = rng.normal(size=(n, p))
    time = rng.integers(1, 7, n).astype(float) + np.where(rng.random(n) < 0.3, 0.5, 0.0)  # ties, censoring
    event = time == np.round(time)
    beta = np.array([0.4, -0.3, 0.1])
    assert breslow_loglik(time, event, x, beta) == pytest.approx(_breslow_by_loop(time, event, x, beta))
    h = 1e-4
    eye = np.eye(p) * h
    hess = np.array(
        [
            [
                (
                    breslow_loglik(time, event, x, beta + eye[i] + eye[j])
                    - breslow_loglik(time, event, x, beta + eye[i] - eye[j])
                    - breslow_loglik(time, event, x, beta - eye[i] + eye[j])
                    + breslow_loglik(time, event, x, beta - eye[i] - eye[j])
                )
                / (4 * h * h)
                for j in range(p)
            ]
            for i in range(p)
        ]
    )
    np.testing.assert_allclose(breslow_information(time, event, x, beta), -hess, atol=1e-4)
    grad = [
        (breslow_loglik(time, event, x, beta + eye[i]) - breslow_loglik(time, event, x, beta - eye[i]))
        / (2 * h)
        for i in range(p)
    ]
    np.testing.assert_allclose(breslow_score(time, event, x, beta), grad, rtol=1e-5, atol=1e-6)
    fitted, cov = fit_cox(time, event, x)  # scikit-survival's maximum: the score vanishes there
    np.testing.assert_allclose(breslow_score(time, event, x, fitted), 0.0, atol=1e-6)
    assert np.all(np.linalg.eigvalsh(cov) > 0)


def test_cox_wald_intervals_cover_the_true_hazard_ratio():
    """Exponential times with a known hazard ratio of 2 between two groups, censored at 12 months: the 95%
    interval from the observed information covers log 2 at about its rate over 200 samples."""
    from churnml.survival.cox import fit_cox

    rng = np.random.default_rng(11)
    covered, trials = 0, 200
    for _ in range(trials):
        x = (rng.random(150) < 0.5).astype(float)
        t = rng.exponential(1 / (0.05 * np.exp(np.log(2) * x)))
        time, event = np.minimum(t, 12.0), t < 12.0
        beta, cov = fit_cox(time, event, x[:, None])
        se = math.sqrt(cov[0, 0])
        covered += abs(beta[0] - math.log(2)) <= 1.959964 * se
    assert abs(covered / trials - 0.95) <= 3 * math.sqrt(0.95 * 0.05 / trials)


def test_forecast_decomposition_adds_up_to_the_expected_change():
    """Start - churn - contraction + expansion = expected ARR, and GRR = 1 - (churn + contraction) / start,
    per group; churn alone follows the curves: the ARR-weighted 1 - S(h)."""
    rng = np.random.default_rng(2)
    n = 50
    arr0 = rng.lognormal(9, 1, n)
    surv = survival_from_hazards(rng.uniform(0.0, 0.05, (n, 12)))
    groups = np.where(rng.random(n) < 0.5, "a", "b")
    moves = {"all": Movement(0.1, 0.05, np.array([1.2, 1.5]), np.array([0.7, 0.9]), 100)}
    sim = simulate_book(arr0, surv, groups, moves, 12, 3000, seed=4)
    table = summarise(arr0, sim, {"segment": groups})
    for row in table.to_dict("records"):
        change = row["expansion_arr_mean"] - row["churn_arr_mean"] - row["contraction_arr_mean"]
        assert row["arr_start"] + change == pytest.approx(row["arr_mean"], rel=1e-9)
        lost = (row["churn_arr_mean"] + row["contraction_arr_mean"]) / row["arr_start"]
        assert 1 - lost == pytest.approx(row["grr_mean"], rel=1e-9)
        assert min(row["churn_arr_mean"], row["contraction_arr_mean"], row["expansion_arr_mean"]) > 0
    book = table[table["dimension"] == "portfolio"].iloc[0]
    assert book["churn_arr_mean"] == pytest.approx((arr0 * (1 - surv[:, 11])).sum(), rel=0.03)


def _ladder(seed: int) -> tuple[pd.DataFrame, pd.DataFrame]:
    """Monthly subscriptions renewing on the 1st, no churn; an account doubles its MRR at its renewals at
    tenure 1 and 2 months with probability 0.3 each, never later (expansion early in life, as on ChurnSim).
    Accounts start every month of 2023-01 .. 2024-06."""
    rng = np.random.default_rng(seed)
    subs = []
    for offset in range(18):
        for i in range(40):
            start = T("2023-01-01") + pd.DateOffset(months=offset)
            mrr = 100.0
            for t in range((2024 - start.year) * 12 + 12 - start.month + 1):
                day = start + pd.DateOffset(months=t)
                if t in (1, 2) and rng.random() < 0.3:
                    mrr *= 2
                subs.append(
                    {
                        "account_id": f"A{offset}_{i}",
                        "start_date": day,
                        "end_date": day + pd.DateOffset(months=1),
                        "mrr": mrr,
                        "seats": 5,
                    }
                )
    subs = pd.DataFrame(subs)
    accounts = subs["account_id"].unique()
    first = subs.groupby("account_id")["start_date"].min()
    months = pd.date_range("2023-02-01", "2024-12-01", freq="MS")
    pairs = [(a, c) for a in accounts for c in months if c > first[a]]  # the spine: accounts already started
    spine = pd.DataFrame(pairs, columns=["account_id", "cutoff"]).astype({"cutoff": "datetime64[us]"})
    return subs, spine


def test_tenure_months_count_whole_calendar_months():
    subs = pd.DataFrame(
        {"account_id": ["a", "a", "b"], "start_date": [T("2024-01-31"), T("2024-03-01"), pd.NaT]}
    )
    got = tenure_months(
        subs,
        pd.Series(["a", "a", "a", "b"]),
        pd.Series([T("2024-02-29"), T("2024-03-31"), T("2024-01-01"), T("2024-05-01")]),
    )
    assert got.tolist() == [0, 2, 0, 0]
    assert tenure_band(np.array([0, 2, 3, 5, 6, 11, 12, 23, 24, 60])).tolist() == [
        0,
        0,
        1,
        1,
        2,
        2,
        3,
        3,
        4,
        4,
    ]


def test_forecast_moves_follow_tenure_so_young_accounts_expansion_is_not_compounded_on_old_ones():
    """Pooled over tenure, the early upgrades are applied to every account every month; by tenure band an
    old book does not move, and a one-month-old book moves only in its first two months."""
    subs, spine = _ladder(0)
    as_of = T("2024-07-01")
    seg = pd.Series(["smb"] * len(spine))
    moves = monthly_movements(spine, subs, G, as_of, seg, by_tenure=True)
    young = movement_for(moves, "smb", 0)
    assert young.p_up == pytest.approx(0.3, abs=0.05) and young.p_down == 0  # tenure 1 and 2
    assert movement_for(moves, "smb", 2).p_up == 0 and movement_for(moves, "smb", 4).p_up == 0  # 24+: unseen
    start = subs.groupby("account_id")["start_date"].min()
    for first, expect in ((T("2024-01-01"), 1.0), (T("2024-06-01"), None)):
        ids = start[start <= first].index if expect else start[start == first].index
        book = pd.DataFrame({"account_id": ids, "account_segment": "smb"})
        ones = np.ones((len(book), 12))
        fc = forecast_book(book, ones, subs, spine, as_of, G, months=(12,), draws=400)
        nrr = fc[fc["dimension"] == "portfolio"].iloc[0]["nrr_mean"]
        # the one-month-old book draws from band 0 (tenure 1 and 2) twice, then from band 1 (no moves)
        want = expect if expect else (1 + young.p_up) ** 2
        assert nrr == pytest.approx(want, rel=0.02), (first, nrr, want)
    # the same book with the moves pooled over tenure compounds the young accounts' upgrades for a year
    old = pd.DataFrame({"account_id": start[start <= T("2024-01-01")].index, "account_segment": "smb"})
    arr0 = arr_on(subs, old["account_id"], as_of - DAY, G)
    pooled = simulate_book(arr0, np.ones((len(old), 12)), np.array(["smb"] * len(old)), moves, 12, 200, 1)
    assert pooled.sum(axis=0).mean() / arr0.sum() > 1.2


def test_the_training_sample_keeps_whole_accounts_up_to_the_cap():
    from churnml.survival.model import sample_accounts

    ids = pd.Series([f"a{i % 50}" for i in range(500)])  # 50 accounts, 10 rows each, interleaved
    mask = sample_accounts(ids, 20, seed=3)
    chosen = set(ids[mask])
    assert len(chosen) == 20 and mask.sum() == 200  # every row of a chosen account, none of the others
    # reproducible, whatever the row order; another seed picks other accounts
    assert set(ids[::-1][sample_accounts(ids[::-1], 20, seed=3)]) == chosen
    assert set(ids[sample_accounts(ids, 20, seed=4)]) != chosen
    assert sample_accounts(ids, 0, seed=3).all() and sample_accounts(ids, 50, seed=3).all()
    with pytest.raises(ChurnmlError, match="max_train_accounts"):
        sample_accounts(ids, -1, seed=3)


def _sized(seed: int) -> tuple[pd.DataFrame, pd.DataFrame]:
    """Monthly subscriptions of 60 accounts of lognormal sizes and two segments, starting over 2023, each
    month moving up (x1.2 .. x2), down (x0.5 .. x0.9) or not, and ending for good with probability 0.03;
    the spine: every month start after an account's start."""
    rng = np.random.default_rng(seed)
    subs, first = [], {}
    for a in range(60):
        start = T("2023-01-01") + pd.DateOffset(months=int(rng.integers(0, 12)))
        first[f"S{a}"] = start
        mrr = float(np.exp(rng.normal(6, 1.2)))
        day = start
        while day < T("2025-01-01"):
            subs.append(
                {
                    "account_id": f"S{a}",
                    "start_date": day,
                    "end_date": day + pd.DateOffset(months=1),
                    "mrr": mrr,
                }
            )
            day = day + pd.DateOffset(months=1)
            u = rng.random()
            if u < 0.03:
                break
            mrr *= (
                float(rng.uniform(1.2, 2.0))
                if u < 0.12
                else float(rng.uniform(0.5, 0.9))
                if u < 0.16
                else 1.0
            )
    subs = pd.DataFrame(subs).assign(seats=5)
    months = pd.date_range("2023-02-01", "2025-01-01", freq="MS")
    pairs = [(a, c) for a in first for c in months if c > first[a]]
    spine = pd.DataFrame(pairs, columns=["account_id", "cutoff"]).astype({"cutoff": "datetime64[us]"})
    return subs, spine


def _brute_moves(subs, spine, as_of, segment_of, edges) -> dict[str, tuple[int, int, int, list, list]]:
    """Per cell key, (rows, ups, downs, sorted up ratios, sorted down ratios) by a plain loop over the
    account-months whose month and grace ended before the as-of (no renewal gaps in :func:`_sized`: the ARR
    of a day is 12 x the MRR of the subscription active on it)."""

    def arr(account, day):
        own = subs[subs["account_id"] == account]
        on = own[(own["start_date"] <= day) & (own["end_date"] > day)]
        return 12.0 * float(on["mrr"].sum())

    cells: dict[str, list] = {}
    for account, cutoff in spine.itertuples(index=False):
        nxt = cutoff + pd.DateOffset(months=1)
        if nxt + pd.Timedelta(days=G) > as_of:
            continue
        a0, a1 = arr(account, cutoff - DAY), arr(account, nxt - DAY)
        if a0 <= 0 or a1 <= 0:
            continue
        own = subs[subs["account_id"] == account]
        start = own["start_date"].min()
        tenure = (cutoff.year - start.year) * 12 + cutoff.month - start.month - int(cutoff.day < start.day)
        band = sum(tenure >= e for e in (3, 6, 12, 24))
        size = sum(a0 >= e for e in edges)
        seg = segment_of[account]
        for key in (
            "all",
            seg,
            f"all@tenure{band}",
            f"{seg}@tenure{band}",
            f"all@tenure{band}@arr{size}",
            f"{seg}@tenure{band}@arr{size}",
        ):
            cells.setdefault(key, []).append(a1 / a0)
    out = {}
    for key, ratios in cells.items():
        r = np.array(ratios)
        up, down = np.sort(r[r > 1 + 1e-6]), np.sort(r[r < 1 - 1e-6])
        out[key] = (len(r), len(up), len(down), up.tolist(), down.tolist())
    return out


def test_move_cells_by_segment_tenure_and_arr_band_match_a_brute_force_loop_and_ignore_later_months():
    """Every cell (segment, tenure band, ARR band) of the monthly moves, against a plain loop over the
    account-months before the as-of; then every subscription from the as-of on is tripled or removed, and no
    cell changes (point in time)."""
    subs, spine = _sized(3)
    as_of = T("2024-07-01")
    segment_of = {
        a: ("big" if i % 2 else "small") for i, a in enumerate(sorted(spine["account_id"].unique()))
    }
    book_arr = arr_on(subs, pd.Series(sorted(segment_of)), as_of - DAY, G)
    edges = arr_band_edges(book_arr, [0.25, 0.5, 0.75])
    assert len(edges) == 3 and np.all(np.diff(edges) > 0)
    seg = spine["account_id"].map(segment_of)
    moves = monthly_movements(spine, subs, G, as_of, seg, by_tenure=True, arr_edges=edges)
    brute = _brute_moves(subs, spine, as_of, segment_of, edges)
    assert set(moves) == set(brute)
    assert any("@arr" in key for key in moves) and brute["all"][0] > 300
    for key, (n, n_up, n_down, up, down) in brute.items():
        mv = moves[key]
        assert (mv.n, round(mv.p_up * n), round(mv.p_down * n)) == (n, n_up, n_down), key
        np.testing.assert_allclose(np.sort(mv.up), up, rtol=1e-12, err_msg=key)
        np.testing.assert_allclose(np.sort(mv.down), down, rtol=1e-12, err_msg=key)
    later = subs["start_date"] >= as_of
    for changed in (subs.assign(mrr=np.where(later, subs["mrr"] * 3, subs["mrr"])), subs[~later]):
        again = monthly_movements(spine, changed, G, as_of, seg, by_tenure=True, arr_edges=edges)
        assert set(again) == set(moves)
        for key, mv in moves.items():
            assert (again[key].n, again[key].p_up, again[key].p_down) == (mv.n, mv.p_up, mv.p_down), key
            np.testing.assert_array_equal(again[key].up, mv.up)


def test_the_pool_holds_every_account_month_even_where_a_group_is_named_all():
    """Accounts outside the book come as group "all": they count in the pools ("all", "all@tenure<b>"), and
    never replace a pool with their own rows."""
    subs, spine = _sized(4)
    as_of = T("2024-07-01")
    ids = sorted(spine["account_id"].unique())
    seg = spine["account_id"].map({a: ("all" if i < 10 else "smb") for i, a in enumerate(ids)})
    moves = monthly_movements(spine, subs, G, as_of, seg, by_tenure=True)
    plain = monthly_movements(spine, subs, G, as_of, pd.Series(["smb"] * len(spine)), by_tenure=True)
    assert moves["all"].n == plain["all"].n > moves["smb"].n
    for key in [k for k in plain if k.startswith("all@")]:
        assert moves[key].n == plain[key].n, key


def test_arr_bands_choose_the_moves_of_the_accounts_size():
    """Two sizes that move differently: with ARR bands each account draws its own size's moves (the book's
    expected ARR follows each), without them both draw the pooled moves."""
    small = Movement(0.2, 0.0, np.array([2.0]), np.array([]), 100)
    large = Movement(0.2, 0.0, np.array([1.1]), np.array([]), 100)
    pooled = Movement(0.2, 0.0, np.array([1.55]), np.array([]), 200)
    moves = {"all": pooled, "all@tenure4": pooled, "all@tenure4@arr0": small, "all@tenure4@arr1": large}
    arr0 = np.array([100.0] * 50 + [10_000.0] * 50)
    edges = arr_band_edges(arr0, [0.5])
    size = arr_band(arr0, edges)
    assert size.tolist() == [0] * 50 + [1] * 50
    assert (
        movement_for(moves, "smb", 4, 1) is large and movement_for(moves, "smb", 2, 1) is large
    )  # nearest band
    assert movement_for(moves, "smb", 4) is pooled
    ones = np.ones((100, 1))
    tenure = np.full(100, 60)
    sized = simulate_book(arr0, ones, np.array(["smb"] * 100), moves, 1, 4000, 0, tenure=tenure, size=size)
    blind = simulate_book(arr0, ones, np.array(["smb"] * 100), moves, 1, 4000, 0, tenure=tenure)
    assert sized[50:].mean() == pytest.approx(10_000 * 1.02, rel=0.005)
    assert sized[:50].mean() == pytest.approx(100 * 1.2, rel=0.02)
    assert blind[50:].mean() == pytest.approx(10_000 * 1.11, rel=0.01)


def _learned(rng: np.random.Generator, accounts: int, months: int, truth: Movement) -> Movement:
    """The movement learned from ``accounts`` x ``months`` account-months drawn from ``truth``, with each
    row's and ratio's account."""
    who = np.repeat(np.arange(accounts), months)
    u = rng.random(len(who))
    up, down = u < truth.p_up, (u >= truth.p_up) & (u < truth.p_up + truth.p_down)
    ups, downs = rng.choice(truth.up, int(up.sum())), rng.choice(truth.down, int(down.sum()))
    return Movement(
        up.mean(),
        down.mean(),
        ups,
        downs,
        len(who),
        row_account=who,
        up_account=who[up],
        down_account=who[down],
    )


def test_rate_draws_make_intervals_cover_when_the_moves_are_learned_from_a_short_history():
    """The moves are learned from 40 accounts x 3 months, the book is 200 accounts for 6 months: the error
    of the learned rates dominates. Over 150 such histories the 80% interval of the book's NRR covers the
    truth (a book drawn from the true moves) at about 80% with rate draws, and far less without them."""
    truth = Movement(0.08, 0.04, np.array([1.2, 1.5, 2.0]), np.array([0.5, 0.8]), 10_000)
    rng = np.random.default_rng(8)
    n, trials, h = 200, 150, 6
    arr0, ones = np.ones(n), np.ones((n, h))
    groups = np.array(["all"] * n)
    covered = {0: 0, 100: 0}
    for t in range(trials):
        moves = {"all": _learned(rng, 40, 3, truth)}
        real = simulate_book(arr0, ones, groups, {"all": truth}, h, 1, seed=10_000 + t)[:, 0].sum() / n
        for rate_draws in covered:
            sim = simulate_book(arr0, ones, groups, moves, h, 300, seed=t, rate_draws=rate_draws)
            nrr = sim.sum(axis=0) / n
            covered[rate_draws] += bool(np.quantile(nrr, 0.1) <= real <= np.quantile(nrr, 0.9))
    share = {k: v / trials for k, v in covered.items()}
    assert abs(share[100] - 0.8) <= 3 * math.sqrt(0.8 * 0.2 / trials), share
    assert share[0] < 0.5, share


def test_rate_draws_leave_the_accounts_draws_and_the_mean_alone():
    """Rate draws change which rates a draw uses, not the accounts' own random numbers: without the
    accounts of the learning rows the forecast is the same draw for draw, and with them the mean moves by
    no more than the Monte Carlo error."""
    rng = np.random.default_rng(2)
    mv = _learned(rng, 200, 6, Movement(0.05, 0.02, np.array([1.3, 1.6]), np.array([0.6]), 1))
    bare = Movement(mv.p_up, mv.p_down, mv.up, mv.down, mv.n)
    arr0 = np.exp(rng.normal(8, 1, 80))
    surv = survival_from_hazards(rng.uniform(0, 0.04, (80, 12)))
    g = np.array(["all"] * 80)
    base = simulate_book(arr0, surv, g, {"all": bare}, 12, 2000, seed=5)
    np.testing.assert_array_equal(
        simulate_book(arr0, surv, g, {"all": bare}, 12, 2000, seed=5, rate_draws=50), base
    )
    drawn = simulate_book(arr0, surv, g, {"all": mv}, 12, 2000, seed=5, rate_draws=50)
    assert drawn.sum(axis=0).mean() == pytest.approx(base.sum(axis=0).mean(), rel=0.01)
    assert drawn.sum(axis=0).std() > base.sum(axis=0).std()


def test_forecast_settings_refuse_a_bad_quantile_or_rate_draws():
    assert forecast_settings(SurvivalConfig()) == {"arr_quantiles": (0.25, 0.5, 0.75), "rate_draws": 200}
    with pytest.raises(ChurnmlError, match="forecast_arr_quantiles"):
        forecast_settings(SurvivalConfig(forecast_arr_quantiles=[0.5, 1.0]))
    with pytest.raises(ChurnmlError, match="forecast_rate_draws"):
        forecast_settings(SurvivalConfig(forecast_rate_draws=-1))


def test_rate_draws_keep_a_cell_learned_from_one_account_where_a_resample_leaves_it_out():
    """A cell of one account's months: a resample weighs it 0 about a third of the time, and then the cell
    keeps its rates as learned (instead of none, or a draw that never ends): P(up) 0.5 either way."""
    one = np.zeros(4, dtype=np.int64)
    mv = Movement(0.5, 0.0, np.array([2.0, 2.0]), np.array([]), 4, one, one[:2], one[:0])
    sim = simulate_book(
        np.ones(20), np.ones((20, 1)), np.array(["all"] * 20), {"all": mv}, 1, 2000, 0, rate_draws=50
    )
    assert sim.mean() == pytest.approx(1.5, rel=0.02)
