"""Portfolio report: KPIs against hand-computed values, abnormal flags, escaping, and the page in Chromium."""

from __future__ import annotations

import base64
import hashlib
import json
import re
import subprocess
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from churnml.config import TiersConfig
from churnml.contract.io import write_document, write_output
from churnml.errors import ChurnmlError
from churnml.report.charts import line_chart_svg, sparkline_svg
from churnml.report.kpis import churn_events, flag_abnormal, portfolio_kpis, weekly_usage
from churnml.report.portfolio import arr_at_risk_by_segment, build_report, model_choice
from churnml.report.survival_pages import SurvivalReport, customers_view, forecast_view, read_survival_report
from churnml.scoring.monitor import monitor_section
from churnml.survival.forecast import BACKTEST_COLUMNS, Movement, simulate_book, summarise
from churnml.survival.model import survival_from_hazards
from churnml.survival.profiles import findings, hazard_ratios, profile_curves, profile_table

from _env import require_chromium

XSS_NAME = "<script>alert(1)</script>"
XSS_IMG = "<img src=x onerror=\"document.body.setAttribute('data-pwned', 1)\">"


def _subscriptions() -> pd.DataFrame:
    rows = [
        # A: steady 12k ARR
        ("S1", "A", "2024-01-01", None, 1000.0),
        # B: ends 2025-03-10, never renews -> churn in March
        ("S2", "B", "2024-01-01", "2025-03-10", 500.0),
        # C: lapses 2025-03-25, renews 2025-04-10 (16 days, within grace) at a higher price -> not churn
        ("S3", "C", "2024-01-01", "2025-03-25", 200.0),
        ("S4", "C", "2025-04-10", None, 300.0),
        # D: contracts on 2025-03-05 (abutting rows)
        ("S5", "D", "2024-01-01", "2025-03-05", 100.0),
        ("S6", "D", "2025-03-05", None, 50.0),
        # E: new customer in March
        ("S7", "E", "2025-03-10", None, 400.0),
        # F: churns 2025-01-10, comes back 2025-03-01 (50 days later: a churn, then new ARR)
        ("S8", "F", "2024-01-01", "2025-01-10", 100.0),
        ("S9", "F", "2025-03-01", None, 100.0),
    ]
    frame = pd.DataFrame(rows, columns=["subscription_id", "account_id", "start_date", "end_date", "mrr"])
    return frame.assign(
        start_date=pd.to_datetime(frame["start_date"]).astype("datetime64[us]"),
        end_date=pd.to_datetime(frame["end_date"]).astype("datetime64[us]"),
    )


def test_churn_events_follow_the_label_definition():
    events = churn_events(_subscriptions(), grace_days=30)
    assert events.to_dict("records") == [
        {"account_id": "B", "churn_date": pd.Timestamp("2025-03-10")},
        {"account_id": "F", "churn_date": pd.Timestamp("2025-01-10")},
    ]


def test_portfolio_kpis_match_hand_computed_values():
    subs = _subscriptions()
    before = subs.copy()
    kpis = portfolio_kpis(subs, months=24, as_of="2025-05-01", grace_days=30).set_index("month")
    pd.testing.assert_frame_equal(subs, before)
    assert kpis.index.min() == pd.Timestamp("2024-02-01")  # the first month with a full cohort before it
    assert kpis.index.max() == pd.Timestamp("2025-04-01")  # the last month ending by the as-of date
    march = kpis.loc[pd.Timestamp("2025-03-01")]
    # cohort on Feb 28: A 12,000, B 6,000, C 2,400, D 1,200 (F left in January)
    assert march["accounts_start"] == 4
    assert march["arr_start"] == pytest.approx(21600.0)
    assert march["churned_accounts"] == 1 and march["logo_churn_rate"] == pytest.approx(0.25)
    assert march["churned_arr"] == pytest.approx(6000.0)
    # C's lapse is bridged by its renewal (3,600), D contracts to 600
    assert march["grr"] == pytest.approx((12000 + 2400 + 600) / 21600)
    assert march["nrr"] == pytest.approx((12000 + 3600 + 600) / 21600)
    assert march["contraction_arr"] == pytest.approx(600.0)
    assert march["expansion_arr"] == pytest.approx(1200.0)
    assert march["new_arr"] == pytest.approx(4800 + 1200)  # E, and F back after a churn
    assert march["arr"] == pytest.approx(12000 + 600 + 4800 + 1200)  # C is between contracts on Mar 31
    assert bool(march["final"])
    january = kpis.loc[pd.Timestamp("2025-01-01")]
    assert january["accounts_start"] == 5 and january["logo_churn_rate"] == pytest.approx(0.2)
    assert not bool(kpis.loc[pd.Timestamp("2025-04-01"), "final"])  # renewals may still arrive
    assert {"logo_churn_rate_abnormal", "grr_robust_z", "nrr_median_12m"} <= set(kpis.columns)
    with pytest.raises(ChurnmlError, match="lack column"):
        portfolio_kpis(subs.drop(columns=["mrr"]))


def test_abnormal_months_are_flagged_against_their_own_history():
    months = pd.date_range("2023-01-01", periods=20, freq="MS").astype("datetime64[us]")
    rng = np.random.default_rng(3)
    churn = 0.02 + rng.normal(0, 0.002, 20)
    grr = 0.98 + rng.normal(0, 0.001, 20)
    churn[15] = 0.05  # a spike: 2.5x the usual, far outside the noise
    grr[17] = 0.94  # a dip
    churn[19] = 0.09  # the latest month is provisional: not judged
    kpis = pd.DataFrame(
        {
            "month": months,
            "logo_churn_rate": churn,
            "grr": grr,
            "nrr": grr + 0.02,
            "final": [True] * 19 + [False],
        }
    )
    flagged = flag_abnormal(kpis)
    assert list(np.flatnonzero(flagged["logo_churn_rate_abnormal"])) == [15]
    assert list(np.flatnonzero(flagged["grr_abnormal"])) == [17]
    assert list(np.flatnonzero(flagged["nrr_abnormal"])) == [17]
    assert flagged["logo_churn_rate_median_12m"].iloc[:6].isna().all()  # too little history to judge
    assert flagged["logo_churn_rate_median_12m"].iloc[15] == pytest.approx(np.median(churn[3:15]))
    assert np.isnan(flagged["logo_churn_rate_robust_z"].iloc[19])
    # a rise within the noise, or below 1.5x the median, is normal
    calm = kpis.assign(logo_churn_rate=np.r_[np.full(15, 0.02), 0.027, np.full(4, 0.02)], final=True)
    assert not flag_abnormal(calm)["logo_churn_rate_abnormal"].any()


def test_weekly_usage_is_point_in_time_and_fills_zero_weeks():
    usage = pd.DataFrame(
        {
            "account_id": ["A", "A", "A", "B", "A"],
            "date": pd.to_datetime(["2025-06-30", "2025-06-24", "2025-06-10", "2025-06-29", "2025-07-01"]),
            "metric": ["active_users", "active_users", "active_users", "active_users", "active_users"],
            "value": [14.0, 7.0, 70.0, 21.0, 999.0],  # the last row is on the as-of day: not seen
        }
    )
    out = weekly_usage(usage, as_of="2025-07-01", weeks=4)
    a = out[out["account_id"] == "A"].set_index("week_start")["value"]
    assert list(a.index) == list(pd.to_datetime(["2025-06-03", "2025-06-10", "2025-06-17", "2025-06-24"]))
    assert list(a) == [0.0, 10.0, 0.0, 3.0]  # (70)/7 in the week of June 10; (7 + 14)/7 in the last week
    assert out[out["account_id"] == "B"]["value"].tolist() == [0.0, 0.0, 0.0, 3.0]


def test_svg_charts():
    spark = sparkline_svg([10, 10, 10, 10, 10, 10, 10, 10, 5, 5, 5, 5])
    assert spark.startswith("<svg") and 'class="spark down"' in spark and "-50%" in spark
    assert "no usage data" in sparkline_svg([])
    months = pd.date_range("2024-01-01", periods=6, freq="MS")
    chart = line_chart_svg(
        months,
        [0.01, 0.02, 0.015, 0.05, 0.02, 0.02],
        fmt=lambda v: f"{v:.1%}",
        name="Logo churn rate",
        abnormal=[False, False, False, True, False, False],
        final=[True] * 5 + [False],
    )
    assert (
        chart.count("<circle") == 6
        and chart.count('class="pt bad"') == 1
        and chart.count('class="pt prov"') == 1
    )
    assert "April 2024: Logo churn rate 5.0%, abnormal" in chart


# ----------------------------------------------------------------------------------------------- the page


def _inputs():
    as_of = pd.Timestamp("2025-07-01")
    names = ["Acme Corp", XSS_NAME, XSS_IMG, "Globex & Sons", "Initech", "Umbrella"]
    n = len(names)
    ids = [f"A{i}" for i in range(n)]
    scores = pd.DataFrame(
        {
            "account_id": ids,
            "as_of": [as_of] * n,
            "churn_probability": [0.62, 0.30, 0.12, 0.05, 0.40, 0.02],
            "expansion_probability": [0.01, 0.05, 0.2, 0.45, np.nan, 0.1],
            "arr": [50000.0, 120000.0, 8000.0, 300000.0, 15000.0, 2000.0],
            "segment": ["mid_market", "enterprise", "smb", "enterprise", "smb", "smb"],
            "touch_model": [
                "low_touch",
                "high_touch",
                "tech_touch",
                "high_touch",
                "tech_touch",
                "tech_touch",
            ],
            "days_to_renewal": [41.0, 200.0, 12.0, 330.0, np.nan, 90.0],
            "churn_model_version": ["3"] * n,
            "expansion_model_version": ["2"] * n,
        }
    )
    scores["arr_at_risk"] = scores["arr"] * scores["churn_probability"]
    accounts = pd.DataFrame(
        {"account_id": ids, "account_name": names, "csm_id": ["csm_1", "csm_2", None, "csm_2", None, None]}
    )
    reasons = pd.DataFrame(
        {
            "account_id": ["A0", "A0", "A0", "A1", "A3"],
            "as_of": [as_of] * 5,
            "target": ["churn", "churn", "churn", "churn", "expansion"],
            "rank": [1, 2, 1, 1, 1],
            "direction": ["raises", "raises", "lowers", "raises", "raises"],
            "driver": ["usage_active_users", "contacts_sponsor_left", "nps_score", "support_x", "adoption_x"],
            "family": ["usage", "contacts", "nps", "support", "adoption"],
            "probability_points": [0.21, 0.08, -0.03, 0.1, 0.2],
            "reason": [
                "Active users down 45% vs the previous 4 weeks",
                "Sponsor left 23 days ago",
                "Latest NPS answer 9 / 10 (promoter)",
                f"Ticket titled {XSS_NAME}",
                "License utilisation 97% (97 of 100 seats active)",
            ],
            "model_version": ["3", "3", "3", "3", "2"],  # the versions the scores name
        }
    )
    weeks = pd.date_range(end=as_of - pd.Timedelta(days=7), periods=12, freq="7D")
    usage_weekly = pd.DataFrame(
        {
            "account_id": np.repeat(ids, len(weeks)),
            "week_start": np.tile(weeks, n),
            "value": np.concatenate([np.linspace(40, 40 - 3 * i, len(weeks)) for i in range(n)]),
        }
    )
    kpis = portfolio_kpis(_subscriptions(), months=24, as_of="2025-05-01")
    return scores, reasons, usage_weekly, kpis, accounts


def _performance() -> dict:
    """The monitor's section: churn judged on three matured as-of dates (decaying), expansion still waiting."""
    rows = []
    for month, (day, auc) in enumerate([("2025-02-01", 0.84), ("2025-03-01", 0.80), ("2025-04-01", 0.71)], 1):
        for touch, n in (("all", 300), ("high_touch", 60), ("low_touch", 90), ("tech_touch", 150)):
            rows.append(
                {"target": "churn", "as_of": day, "touch_model": touch, "model_version": "3", "matured": True,
                 "n": n, "n_positive": n // 10, "roc_auc": auc, "test_roc_auc": 0.842, "pr_auc": 0.2, "ece": 0.03,
                 "lift_at_k": 3.1, "arr_captured": 0.4, "psi_score": 0.05, "months_since_training": month}
            )  # fmt: skip
    rows.append(
        {"target": "expansion", "as_of": "2025-07-01", "touch_model": "all", "model_version": "2", "matured": False,
         "n": 300, "n_positive": None, "roc_auc": None, "test_roc_auc": 0.83, "pr_auc": None, "ece": None,
         "lift_at_k": None, "arr_captured": None, "psi_score": 0.02, "months_since_training": 0}
    )  # fmt: skip
    document = {
        "retrain_recommended": True,
        "targets": {
            "churn": {"status": "retrain", "model_version": "3", "realised_roc_auc": 0.71, "test_roc_auc": 0.842,
                      "reasons": ["realised ROC-AUC 0.710 is 0.132 below the test ROC-AUC 0.842"]},
            "expansion": {"status": "awaiting_labels", "model_version": "2",
                          "reasons": ["no matured label yet (latest as-of 2025-07-01)"]},
        },
    }  # fmt: skip
    return monitor_section(pd.DataFrame(rows), document)


@pytest.fixture()
def report(tmp_path) -> Path:
    scores, reasons, usage_weekly, kpis, accounts = _inputs()
    return build_report(
        scores,
        reasons,
        usage_weekly,
        kpis,
        tmp_path / "reports",
        TiersConfig(),
        accounts=accounts,
        performance=_performance(),
    )


def test_report_shows_realised_performance_and_its_decay(report, tmp_path):
    html = report.read_text(encoding="utf-8")
    page = html[html.index('<section id="performance"') :]
    page = page[: page.index("</section>")]
    assert '<a class="toplink" href="#performance">' in html
    assert "Retraining recommended" in page and "Retrain recommended" in page
    assert "retrain: realised ROC-AUC 0.710 vs 0.842 at training" in page
    # one point per matured as-of, placed by months since training, and the test ROC-AUC as reference
    tips = re.findall(r"<title>(scored [^<]*)</title>", page)
    assert tips == [
        f"scored {d}, {m} months after training: realised ROC-AUC {a}"
        for d, m, a in (("2025-02-01", 1, "0.840"), ("2025-03-01", 2, "0.800"), ("2025-04-01", 3, "0.710"))
    ]
    assert "ROC-AUC on the test period" in page
    # the latest matured as-of, overall and per touch tier
    assert "<td>2025-04-01</td>" in page and page.count("<td>&nbsp;&nbsp;") == 3 and "High touch" in page
    # the expansion model has no matured outcome yet: said, not drawn
    assert "Awaiting outcomes" in page and "No matured scores yet." in page
    # without a monitor run the page is left out
    scores, reasons, usage_weekly, kpis, accounts = _inputs()
    bare = build_report(
        scores, reasons, usage_weekly, kpis, tmp_path / "bare", TiersConfig(), accounts=accounts
    )
    assert 'id="performance"' not in bare.read_text(encoding="utf-8")


def test_report_is_self_contained_and_lists_accounts_by_arr_at_risk(report):
    html = report.read_text(encoding="utf-8")
    assert report.name == "index.html"
    assert not re.search(r"""(src|href)\s*=\s*["']?(https?:|//)""", html)
    assert "@import" not in html and "url(" not in html
    records = _records(html)
    # every account is embedded, ARR at risk largest first: 36,000 / 31,000 / 15,000 / 6,000 / 960 / 40
    assert [r["i"] for r in records] == ["A1", "A0", "A3", "A4", "A2", "A5"]
    a0 = next(r for r in records if r["i"] == "A0")
    assert a0["u"][0] == ["Active users down 45% vs the previous 4 weeks", "raises churn risk +21.0 pts"]
    assert a0["w"] == [["Latest NPS answer 9 / 10 (promoter)", "lowers churn risk -3.0 pts"]]
    a3 = next(r for r in records if r["i"] == "A3")
    assert a3["eu"] == [
        ["License utilisation 97% (97 of 100 seats active)", "raises chance to expand +20.0 pts"]
    ]
    assert a3["u"] == []  # an expansion signal is never listed among churn reasons
    assert "Sponsor left 23 days ago" in html and "Renewal in" in html
    assert a0["p"].startswith("CSM call within 5 days")  # A0: critical tier, low touch
    assert any(r["p"] == "Business as usual" for r in records)  # the play from the tiers config
    # the CSP allows exactly the inline script that is there, by hash, and nothing from the network
    csp = re.search(r'http-equiv="Content-Security-Policy" content="([^"]+)"', html).group(1)
    assert "default-src 'none'" in csp
    script = re.search(r"<script>(.*?)</script>", html, flags=re.DOTALL).group(1)
    digest = base64.b64encode(hashlib.sha256(script.encode("utf-8")).digest()).decode()
    assert f"'sha256-{digest}'" in csp
    assert html.count("<script") == 2 and html.count('<script type="application/json"') == 1  # data is inert


def test_report_refuses_to_mix_model_versions_and_shows_the_one_it_used(report, tmp_path):
    """Scores from the champion beside reasons from a challenger (evaluate kept the champion): refused."""
    html = report.read_text()
    assert "churn model 3" in html and "expansion model 2" in html
    scores, reasons, usage_weekly, kpis, accounts = _inputs()
    challenger = reasons.assign(
        model_version=reasons["model_version"].where(reasons["target"] != "churn", "4")
    )
    with pytest.raises(
        ChurnmlError, match="churn probabilities come from model version 3 but its reasons from"
    ):
        build_report(scores, challenger, usage_weekly, kpis, tmp_path / "mixed", TiersConfig())
    mixed = scores.assign(churn_model_version=["3", "4"] * (len(scores) // 2))
    with pytest.raises(ChurnmlError, match="scores mix churn model versions 3, 4"):
        build_report(mixed, reasons, usage_weekly, kpis, tmp_path / "mixed", TiersConfig())
    assert not (tmp_path / "mixed" / "index.html").exists()


def test_arr_at_risk_by_segment():
    scores, *_ = _inputs()
    seg = arr_at_risk_by_segment(scores).set_index("segment")
    assert list(seg.index) == ["enterprise", "mid_market", "smb"]  # 51,000 / 31,000 / 7,000 at risk
    assert seg.loc["enterprise", "arr_at_risk"] == pytest.approx(120000 * 0.30 + 300000 * 0.05)
    assert seg.loc["smb", "accounts"] == 3
    assert seg.loc["smb", "share_at_risk"] == pytest.approx((960 + 6000 + 40) / 25000)


def _records(html: str) -> list[dict]:
    """The accounts embedded in the page (the script builds the table from them)."""
    m = re.search(
        r'<script type="application/json" id="portfolio-data">(.*?)</script>', html, flags=re.DOTALL
    )
    assert m
    return json.loads(m.group(1))


def test_report_escapes_account_data(report):
    html = report.read_text(encoding="utf-8")
    assert XSS_NAME not in html and XSS_IMG not in html
    data = re.search(r'id="portfolio-data">(.*?)</script>', html, flags=re.DOTALL).group(1)
    assert "<" not in data and ">" not in data  # the embedded JSON cannot close its script element
    names = {r["n"] for r in _records(html)}
    assert XSS_IMG in names  # intact once parsed: the script sets it as text, never as markup


def test_report_embeds_every_account_and_fails_clearly(tmp_path):
    scores, reasons, usage_weekly, kpis, accounts = _inputs()
    # values as a warehouse may return them: nullable objects
    scores = scores.assign(days_to_renewal=pd.Series([41, None, 12, None, None, 90], dtype=object))
    path = build_report(scores, None, None, None, tmp_path, accounts=accounts, page_size=2)
    html = path.read_text(encoding="utf-8")
    assert len(_records(html)) == 6 and 'data-page-size="2"' in html and "of 6 match" in html
    with pytest.raises(ChurnmlError, match="lack column.*churn_probability"):
        build_report(scores.drop(columns=["churn_probability"]), None, None, None, tmp_path)
    with pytest.raises(ChurnmlError, match="more than one row per account"):
        build_report(pd.concat([scores, scores]), None, None, None, tmp_path)


def _row_of(html: str, account_id: str) -> dict:
    return next(r for r in _records(html) if r["i"] == account_id)


def test_context_is_shown_beside_the_reasons_not_as_one(tmp_path):
    scores, reasons, usage_weekly, kpis, accounts = _inputs()
    context = pd.DataFrame(
        {
            "account_id": ["A0", "A0"],
            "as_of": [reasons["as_of"].iloc[0]] * 2,
            "target": ["churn", "churn"],
            "rank": [1, 2],
            "direction": ["context", "context"],
            "driver": ["contract_days_to_renewal", "contract_billing_period"],
            "family": ["contract", "contract"],
            "probability_points": [0.3, 0.01],
            "reason": ["Renewal in 41 days", "Billed annually"],
            "model_version": ["3", "3"],
        }
    )
    path = build_report(
        scores,
        pd.concat([reasons, context], ignore_index=True),
        None,
        None,
        tmp_path / "a",
        accounts=accounts,
    )
    row = _row_of(path.read_text(encoding="utf-8"), "A0")
    assert row["cx"] == ["Renewal in 41 days", "Billed annually"]
    assert all("Renewal in 41 days" not in t for t, _ in row["u"] + row["w"])
    assert len(row["u"]) == 2 and len(row["w"]) == 1
    # the same from the warehouse's JSON column (no reasons frame)
    items = [
        {"reason": "Active users down 45% vs the previous 4 weeks", "points": 21.0, "direction": "raises"},
        {"reason": "Latest NPS answer 9 / 10 (promoter)", "points": -3.0, "direction": "lowers"},
        {"reason": "Renewal in 41 days", "points": 30.0, "direction": "context"},
    ]
    scored = scores.assign(top_reasons=[json.dumps(items)] + ["[]"] * (len(scores) - 1))
    row = _row_of(build_report(scored, None, None, None, tmp_path / "b", accounts=accounts).read_text(), "A0")
    assert row["cx"] == ["Renewal in 41 days"]
    assert len(row["u"]) == 1 and len(row["w"]) == 1
    # the JSON's percentage points, shown as they are
    assert row["u"][0][1] == "raises churn risk +21.0 pts" and row["w"][0][1] == "lowers churn risk -3.0 pts"


# ------------------------------------------------------------------------------- forecast and right customers


def _survival_report(as_of: pd.Timestamp) -> SurvivalReport:
    """The survival stage's outputs for a small book, through the real forecast and profile code: 240 accounts
    in three segments, a 12-month forecast that the backtest's last as-of missed for SMB, and profiles with an
    industry of 30 accounts (few) that never churned and is named with markup."""
    rng = np.random.default_rng(4)
    n = 240
    arr0 = rng.lognormal(10, 1, n)
    surv = survival_from_hazards(rng.uniform(0.0, 0.03, (n, 12)))
    by = {
        "segment": rng.choice(["enterprise", "mid_market", "smb"], n),
        "touch_model": rng.choice(["high_touch", "tech_touch"], n),
        "csm": rng.choice(["csm_1", "csm_2"], n),
    }
    moves = {"all": Movement(0.06, 0.03, np.array([1.1, 1.3, 1.6]), np.array([0.8, 0.6]), 100)}
    forecast = pd.concat(
        [
            summarise(arr0, simulate_book(arr0, surv, by["segment"], moves, h, 400, h), by).assign(
                horizon_months=h
            )
            for h in (3, 12)
        ],
        ignore_index=True,
    ).assign(as_of=as_of)
    past = forecast[forecast["dimension"].isin(["portfolio", "segment", "touch_model"])]
    backtest = pd.concat(
        [past.assign(as_of=day) for day in ("2024-09-01", "2024-10-01")], ignore_index=True
    ).assign(
        realised_grr=lambda f: f["grr_p50"],
        realised_nrr=lambda f: f["nrr_p50"],
        naive_grr=lambda f: f["grr_mean"] - 0.01,
        naive_nrr=lambda f: f["nrr_mean"] + 0.02,
    )
    miss = (
        (backtest["as_of"] == "2024-10-01")
        & (backtest["group"] == "smb")
        & (backtest["horizon_months"] == 12)
    )
    backtest.loc[miss, "realised_nrr"] = backtest.loc[miss, "nrr_p90"] + 0.05
    backtest = backtest[list(BACKTEST_COLUMNS)]
    # profiles: smb loses half its accounts in month 6, enterprise one in ten; an odd industry never churns
    m = 430
    feats = pd.DataFrame(
        {
            "account_id": [f"P{i}" for i in range(m)],
            "cutoff": pd.Timestamp("2024-09-01"),
            "account_segment": ["smb"] * 200 + ["enterprise"] * 200 + ["mid_market"] * 30,
            "account_industry": ["retail"] * 400 + [XSS_NAME] * 30,
        }
    )
    event = np.r_[np.arange(200) % 2 == 0, np.arange(200) % 10 == 0, np.zeros(30, bool)]
    spells = pd.DataFrame({"duration": np.where(event, 6, 12), "event": event})
    arr = np.column_stack(
        [np.full(m, 100.0)] + [np.where(event & (k >= 6), 0.0, 100.0 + k) for k in range(1, 13)]
    )
    curves = profile_curves(feats, spells, arr, draws=200)
    table = profile_table(curves, hazard_ratios(feats, spells))
    summary = {
        "as_of": ["2024-09-01", "2024-10-01"],
        **{
            f"{h}m": {
                "rows": 12,
                "grr_abs_error": 0.001,
                "grr_abs_error_naive": 0.01,
                "nrr_abs_error": 0.002,
                "nrr_abs_error_naive": 0.02,
                **{
                    f"{x}_coverage_{c}": 0.9
                    for x in ("grr", "nrr")
                    for c in ("80", "95", "80_portfolio", "95_portfolio")
                },
            }
            for h in (3, 12)
        },
    }
    metrics = {
        "follow_up_months": 12,
        "test_cutoffs": ["2024-09-01"],
        "findings": findings(table, 12),
        "forecast_backtest": summary,
    }
    return SurvivalReport(
        forecast=forecast, backtest=backtest, metrics=metrics, profiles=table, curves=curves
    )


def _section(html: str, ident: str) -> str:
    page = html[html.index(f'<section id="{ident}"') :]
    return page[: page.index("</section>")]


def test_forecast_and_right_customer_pages(tmp_path):
    scores, reasons, usage_weekly, kpis, accounts = _inputs()
    as_of = pd.Timestamp(scores["as_of"].iloc[0])
    sr = _survival_report(as_of)
    index = build_report(
        scores,
        reasons,
        usage_weekly,
        kpis,
        tmp_path / "reports",
        TiersConfig(),
        accounts=accounts,
        survival=sr,
    )
    html = index.read_text(encoding="utf-8")
    assert '<nav class="pages"' in html and 'href="forecast.html"' in html and 'href="customers.html"' in html
    assert '<a href="index.html" aria-current="page">' in html
    forecast = (tmp_path / "reports" / "forecast.html").read_text(encoding="utf-8")
    customers = (tmp_path / "reports" / "customers.html").read_text(encoding="utf-8")
    for page in (forecast, customers):
        # the same offline rules as the portfolio page, and no script at all
        assert "script-src 'none'" in page and "<script" not in page
        assert not re.search(r"""(src|href)\s*=\s*["']?(https?:|//)""", page) and "url(" not in page
        assert '<nav class="pages"' in page and page.count('aria-current="page">') == 1
    # the forecast: the whole book at 3 and 12 months, with both intervals, from the forecast's rows
    book = sr.forecast[
        (sr.forecast["dimension"] == "portfolio") & (sr.forecast["horizon_months"] == 12)
    ].iloc[0]
    twelve = _section(forecast, "forecast-12m")
    assert f"{book['nrr_mean'] * 100:.1f}%" in twelve
    assert f"95%: {book['nrr_p025'] * 100:.1f}% to {book['nrr_p975'] * 100:.1f}%" in twelve
    assert "<h2" in _section(forecast, "forecast-3m")
    # what drives the change: churn, contraction, expansion, adding up to the expected ARR
    bridge = re.findall(r"<rect class=\"(total|loss|gain)\"[^>]*><title>([^<]*)</title>", twelve)
    assert [c for c, _ in bridge] == ["total", "loss", "loss", "gain", "total"]
    assert bridge[1][1].startswith("Churn: −$") and bridge[3][1].startswith("Expansion: +$")
    assert book["arr_start"] - book["churn_arr_mean"] - book["contraction_arr_mean"] + book[
        "expansion_arr_mean"
    ] == pytest.approx(book["arr_mean"])
    assert "Mid-market" in twelve and "High touch" in twelve and "By CSM (2 books)" in twelve
    # the backtest: errors against naive in words, and the miss marked
    bt = _section(forecast, "backtest")
    assert "Beats the naive forecast" in bt and "NRR by 0.20 pts (naive 2.00 pts)" in bt
    assert "SMB as of 2024-10-01 (NRR" in bt and "1 segment or touch-model outcome(s) outside" in bt
    # the right customer: findings with their account counts, the hazard-ratio table, curves with bands
    found = _section(customers, "findings")
    assert "By segment: enterprise keeps 90% of its logos over 12 months (200 accounts" in found
    hr = _section(customers, "hazard-ratios")
    rows = re.findall(r"<tr( class=\"few\")?><td><span class=\"swatch\"[^>]*></span>([^<]*)</td>", hr)
    assert ("", "Enterprise") in rows and ("", "SMB") in rows and (' class="few"', "Mid-market") in rows
    assert (
        "reference: Enterprise" in hr and "1 (reference)" in hr and "no churn" in hr
    )  # mid-market never churned
    smb = sr.profiles[(sr.profiles["dimension"] == "segment") & (sr.profiles["profile"] == "smb")].iloc[0]
    assert f"{smb['hazard_ratio']:.2f}" in hr and smb["hazard_ratio"] == pytest.approx(5.0, rel=1e-3)
    curves = _section(customers, "curves")
    # a band for each profile of 100 accounts or more (smb, enterprise, retail); lines for every profile
    assert (
        curves.count('<polyline class="curve"') == 2 * (3 + 2)
        and curves.count('<polygon class="band"') == 2 * 3
    )
    assert "SMB, month 6: logo retention 50%" in curves
    # a profile named with markup is text, never markup
    assert XSS_NAME not in customers and "&lt;script&gt;" in customers


def test_the_pages_refuse_a_forecast_of_another_day(tmp_path):
    scores, reasons, usage_weekly, kpis, accounts = _inputs()
    sr = _survival_report(pd.Timestamp("2025-06-01"))
    with pytest.raises(
        ChurnmlError, match="revenue forecast is as of 2025-06-01, the report as of 2025-07-01"
    ):
        build_report(scores, reasons, usage_weekly, kpis, tmp_path, TiersConfig(), survival=sr)


def test_the_survival_outputs_round_trip_and_fail_clearly(tmp_path):
    sr = _survival_report(pd.Timestamp("2025-07-01"))
    where = (tmp_path / "forecast.parquet", tmp_path / "survival.json", tmp_path / "plots")
    with pytest.raises(ChurnmlError, match=r"forecast.parquet: no such file \(table revenue_forecast\)"):
        read_survival_report(*where)
    write_output(sr.forecast, where[0], "revenue_forecast")  # validated: the decomposition is in the layout
    write_document(
        {**sr.metrics, "models": {}, "horizon_months": 12, "test_spells": 1, "as_of": "x"},
        where[1],
        "survival_metrics",
    )
    with pytest.raises(ChurnmlError, match=r"forecast_backtest.csv: no such file .*dvc repro survival"):
        read_survival_report(*where)
    where[2].mkdir()
    sr.backtest.to_csv(where[2] / "forecast_backtest.csv", index=False)
    sr.profiles.to_csv(where[2] / "profiles.csv", index=False)
    sr.curves.drop(columns=["nrr_low"]).to_csv(where[2] / "profile_curves.csv", index=False)
    with pytest.raises(ChurnmlError, match=r"profile_curves.csv: lacks column\(s\) nrr_low"):
        read_survival_report(*where)
    sr.curves.to_csv(where[2] / "profile_curves.csv", index=False)
    back = read_survival_report(*where)
    assert forecast_view(back)["horizons"][1]["cards"] == forecast_view(sr)["horizons"][1]["cards"]
    assert [r["hr"] for d in customers_view(back)["dimensions"] for r in d["rows"]] == [
        r["hr"] for d in customers_view(sr)["dimensions"] for r in d["rows"]
    ]
    assert back.profiles["reference"].dtype == bool and back.metrics["findings"] == sr.metrics["findings"]


# ------------------------------------------------------------------------------------------------ browser


def _chromium(binary: str, url: str, profile: Path, *args: str) -> subprocess.CompletedProcess:
    cmd = [
        binary,
        "--headless",
        "--no-sandbox",
        "--disable-gpu",
        "--disable-quic",
        "--no-first-run",
        "--disable-background-networking",
        "--disable-component-update",
        "--disable-sync",
        f"--user-data-dir={profile}",
        "--enable-logging=stderr",
        "--v=0",
        *args,
        url,
    ]
    return subprocess.run(cmd, capture_output=True, text=True, timeout=120, check=False)


def _console_messages(stderr: str) -> list[str]:
    """Every message the page wrote to the console (Chromium logs them all, errors included, as CONSOLE)."""
    return [line for line in stderr.splitlines() if ":CONSOLE" in line or "Uncaught" in line]


@pytest.mark.chromium
def test_report_opens_in_chromium_without_console_messages(report, tmp_path):
    chromium = require_chromium()
    # the detector works: a page with a script error is caught
    broken = tmp_path / "broken.html"
    broken.write_text("<html><body><script>undefinedFunction();</script></body></html>", encoding="utf-8")
    assert _console_messages(_chromium(chromium, broken.as_uri(), tmp_path / "p0", "--dump-dom").stderr)

    run = _chromium(chromium, report.as_uri(), tmp_path / "p1", "--dump-dom")
    assert run.returncode == 0, run.stderr[-2000:]
    assert _console_messages(run.stderr) == []
    dom = run.stdout
    assert 'data-ready="1"' in dom  # the script ran to its end
    # injected markup never became elements (a parsed <img> would serialise as <img src="x" ...>)
    assert not re.search(r"<body[^>]*data-pwned", dom) and '<img src="x"' not in dom
    assert "&lt;script&gt;alert(1)&lt;/script&gt;" in dom

    # filters in the address are applied: only the SMB rows stay visible
    filtered = _chromium(chromium, report.as_uri() + "#segment=smb", tmp_path / "p2", "--dump-dom")
    assert _console_messages(filtered.stderr) == []
    rows = re.findall(r"<tr ([^>]*data-segment=\"(\w+)\"[^>]*)>", filtered.stdout)
    assert len(rows) == 3 and all(segment == "smb" for _, segment in rows)  # only the matches are built

    shot = tmp_path / "report.png"
    run = _chromium(
        chromium,
        report.as_uri(),
        tmp_path / "p3",
        f"--screenshot={shot}",
        "--window-size=1400,2000",
        "--hide-scrollbars",
    )
    assert _console_messages(run.stderr) == []
    assert shot.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n" and shot.stat().st_size > 20_000


def test_header_names_the_chosen_model_and_its_margin(tmp_path):
    blend = {
        "chosen": "blend",
        "roc_auc": {"lightgbm": 0.8412, "logistic": 0.8390, "blend": 0.8454},
        "margin": 0.8454 - 0.8412,
        "rows": "validation period",
    }
    assert model_choice(blend) == (
        "blend of LightGBM and logistic regression, ROC-AUC +0.0042 over LightGBM on the validation period"
    )
    lone = {"chosen": "lightgbm", "roc_auc": {"lightgbm": 0.9}, "margin": float("nan"), "rows": "x"}
    assert model_choice(lone) == "LightGBM"  # no runner-up, no margin
    assert model_choice(None) == "" and model_choice({}) == ""
    logistic = {
        "chosen": "logistic",
        "roc_auc": {"lightgbm": 0.70, "logistic": 0.72, "blend": 0.715},
        "margin": 0.72 - 0.715,
        "rows": "5 inner folds, out of fold",
    }
    assert model_choice(logistic).endswith("+0.0050 over blend on the 5 inner folds, out of fold")
    simpler = {
        "chosen": "logistic",
        "leader": "lightgbm",
        "leader_over_logistic": {"over": "logistic", "difference": 0.0031, "standard_error": 0.0042},
        "roc_auc": {"lightgbm": 0.7231, "logistic": 0.72, "blend": 0.7215},
        "margin": 0.72 - 0.7231,
        "rows": "validation period",
    }
    assert model_choice(simpler) == (
        "logistic regression: LightGBM led by ROC-AUC 0.0031 on the validation period, within its standard "
        "error (0.0042), so the simpler model is served"
    )
    simpler["leader_over_logistic"]["rule_standard_errors"] = 2.0
    assert "within 2 standard errors (0.0042)" in model_choice(simpler)
    scores, reasons, usage_weekly, kpis, accounts = _inputs()
    page = build_report(
        scores,
        reasons,
        usage_weekly,
        kpis,
        tmp_path / "chosen",
        TiersConfig(),
        accounts=accounts,
        selections={"churn": blend, "expansion": logistic},
    ).read_text()
    header = page[page.index('<p class="sub">') : page.index("</header>")]
    assert "churn model 3 (blend of LightGBM and logistic regression, ROC-AUC +0.0042 over LightGBM" in header
    assert "expansion model 2 (logistic regression, ROC-AUC +0.0050 over blend" in header
    plain = build_report(scores, reasons, usage_weekly, kpis, tmp_path / "plain", TiersConfig()).read_text()
    assert "churn model 3\n" in plain or "churn model 3 " in plain
    assert "ROC-AUC +" not in plain[plain.index('<p class="sub">') : plain.index("</header>")]


def test_the_report_stage_reads_the_selection_of_the_versions_its_scores_name(monkeypatch):
    from types import SimpleNamespace

    from churnml.config import Config
    from churnml.stages import report as stage

    asked = []

    def champion(target, ref, *, root, cfg):
        asked.append((target, ref))
        return SimpleNamespace(info={"selection": {"chosen": f"{target}-{ref}"}}), ref

    monkeypatch.setattr(stage, "load_champion", champion)
    scores = _inputs()[0]
    got = stage._selections(Config(), Path("."), scores)
    assert asked == [("churn", "3"), ("expansion", "2")]
    assert got == {"churn": {"chosen": "churn-3"}, "expansion": {"chosen": "expansion-2"}}
    # no version column (or a mix, which build_report refuses): nothing is loaded
    assert stage._selections(Config(), Path("."), scores.drop(columns=["churn_model_version"])) == {
        "expansion": {"chosen": "expansion-2"}
    }
