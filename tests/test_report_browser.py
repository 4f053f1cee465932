"""The portfolio report in headless Chromium, driven as a CSM would: typing a search, contrast, screenshots.

The page is built from a synthetic portfolio as large as the default data's (3,596 accounts, 72 pages of 50)
through the real report code, with a call list, a previous scoring to compare with and the monitor's section, so
every part of the page is drawn and search is shown to reach accounts far beyond the first page. The forecast and
right-customer pages beside it come from the survival stage's outputs of a small book (test_report's).
"""

from __future__ import annotations

import json
import os
import shutil
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
from test_report import _performance, _survival_report

from churnml.config import CallListConfig, TiersConfig
from churnml.report.portfolio import build_report
from churnml.scoring.batch import risk_tier
from churnml.scoring.calls import call_list, changes_since
from churnml.scoring.tiers import TierDefinition

from _env import require_chromium
from browser import CONTRAST_JS, with_page

pytestmark = pytest.mark.chromium
AS_OF = pd.Timestamp("2025-12-01")
N = 3596  # the default data's portfolio
DEFINITION = TierDefinition(
    cutoffs={"critical": 0.14, "high": 0.09, "medium": 0.05, "low": 0.0},
    shares={"critical": 0.1, "high": 0.25, "medium": 0.5, "low": 1.0},
    base_rate=0.05,
    expansion_cutoff=0.12,
    expansion_share=0.1,
    expansion_base_rate=0.06,
    source="validation",
)
ORDER = {"critical": 0, "high": 1, "medium": 2, "low": 3}


def _portfolio():
    rng = np.random.default_rng(7)
    ids = [f"A{i:05d}" for i in range(N)]
    p = rng.beta(1.2, 18, N)
    arr = rng.choice([6_000.0, 24_000.0, 96_000.0, 250_000.0], N)
    tiers = risk_tier(p, DEFINITION.cutoffs)
    plays = TiersConfig().plays
    touch = rng.choice(["high_touch", "low_touch", "tech_touch"], N)
    reasons = [
        [
            {
                "reason": f"Logins down {10 + i % 60}% vs the previous 30 days",
                "points": 0.02 + i / 1e4,
                "direction": "raises",
            },
            {"reason": "Latest NPS answer 9 / 10 (promoter)", "points": -0.01, "direction": "lowers"},
            {"reason": f"Renewal in {5 + i % 300} days", "points": 0.01, "direction": "context"},
        ]
        for i in range(N)
    ]
    scores = pd.DataFrame(
        {
            "account_id": ids,
            "as_of": AS_OF,
            "churn_model_version": "3",
            "expansion_model_version": "4",
            "churn_probability": p,
            "risk_tier": tiers,
            "expansion_probability": rng.beta(1.5, 14, N),
            "arr": arr,
            "arr_at_risk": arr * p,
            "segment": rng.choice(["enterprise", "mid_market", "smb"], N),
            "touch_model": touch,
            "recommended_play": [plays[t][m] for t, m in zip(tiers, touch, strict=True)],
            "top_reasons": [json.dumps(r) for r in reasons],
            "days_to_renewal": rng.integers(1, 365, N).astype(float),
            "billing_period": rng.choice(["annual", "monthly"], N),
        }
    )
    accounts = pd.DataFrame(
        {
            "account_id": ids,
            "account_name": [f"Customer {i:04d} Ltd" for i in range(N)],
            "csm_id": rng.choice(["csm_01", "csm_02", "csm_03", None], N),
        }
    )
    previous = scores.assign(
        churn_probability=np.clip(p - rng.normal(0.01, 0.02, N), 0.001, 1),
        top_reasons=json.dumps(
            [{"reason": "Logins down 5% vs the previous 30 days", "points": 0.02, "direction": "raises"}]
        ),
    )
    previous["risk_tier"] = risk_tier(previous["churn_probability"].to_numpy(), DEFINITION.cutoffs)
    changes = changes_since(scores, previous.assign(as_of=AS_OF - pd.Timedelta(days=7)), ORDER)
    info = scores[["account_id", "days_to_renewal", "billing_period"]].merge(accounts, on="account_id")
    calls = call_list(scores, info, changes, CallListConfig(), tier_order=ORDER, base_rate=0.05)
    return scores, accounts, calls, changes


@pytest.fixture(scope="module")
def page_url(tmp_path_factory) -> str:
    scores, accounts, calls, changes = _portfolio()
    out = tmp_path_factory.mktemp("report")
    path = build_report(
        scores.drop(columns=["days_to_renewal", "billing_period"]),
        None,
        None,
        None,
        out,
        accounts=accounts,
        features=scores.rename(
            columns={
                "as_of": "cutoff",
                "days_to_renewal": "contract_days_to_renewal",
                "billing_period": "contract_billing_period",
            }
        )[["account_id", "cutoff", "contract_days_to_renewal", "contract_billing_period"]],
        performance=_performance(),
        definition=DEFINITION,
        calls=calls,
        changes=changes,
        survival=_survival_report(AS_OF),
    )
    return path.as_uri()


def test_typing_finds_an_account_beyond_the_first_page(page_url, tmp_path):
    chromium = require_chromium()
    scores, accounts = _portfolio()[:2]
    target = scores.sort_values("arr_at_risk")["account_id"].iloc[0]  # the last page: least ARR at risk
    number = int(target[1:])
    # typed by name: another account far down the list (the 3,000th by ARR at risk)
    by_name = scores.sort_values("arr_at_risk", ascending=False)["account_id"].iloc[3000]
    name_of = accounts.set_index("account_id")["account_name"]

    async def work(page):
        first = await page.js(
            "Array.from(document.querySelectorAll('#accounts tbody tr')).map(r => r.dataset.account)"
        )
        assert len(first) == 50 and target not in first
        assert await page.js("document.getElementById('count').textContent") == "3,596"
        await page.type("#search", target.lower())
        await page.wait_for("document.querySelectorAll('#accounts tbody tr').length === 1")
        shown = await page.js(
            "Array.from(document.querySelectorAll('#accounts tbody tr')).map(r => r.dataset.account)"
        )
        name = await page.js("document.querySelector('#accounts tbody tr .acct').textContent")
        assert shown == [target] and name == f"Customer {number:04d} Ltd"
        assert await page.js("location.hash") == f"#q={target.lower()}"  # the search is in the address
        # by name too, and paging walks the whole portfolio
        await page.js(
            "(() => { const s = document.getElementById('search'); s.value = ''; s.dispatchEvent(new Event('input')); })()"
        )
        await page.type("#search", name_of[by_name].removesuffix(" Ltd"))  # "Customer 1234": as a CSM types
        await page.wait_for("document.querySelectorAll('#accounts tbody tr').length === 1")
        shown = await page.js(
            "Array.from(document.querySelectorAll('#accounts tbody tr')).map(r => r.dataset.account)"
        )
        assert shown == [by_name] and by_name not in first
        await page.js(
            "(() => { const s = document.getElementById('search'); s.value = ''; s.dispatchEvent(new Event('input')); })()"
        )
        await page.type("#search", "r 029")  # part of a name: Customer 0290..0299
        assert await page.js("document.getElementById('count').textContent") == "10"
        await page.js(
            "(() => { const s = document.getElementById('search'); s.value = ''; s.dispatchEvent(new Event('input')); })()"
        )
        for _ in range(5):
            await page.js("document.getElementById('next').click()")
        last = await page.js(
            "Array.from(document.querySelectorAll('#accounts tbody tr')).map(r => r.dataset.account)"
        )
        assert len(last) == 50 and not set(last) & set(first)
        info = await page.js("document.getElementById('pageinfo').textContent")
        assert info.startswith("page 6 of 72"), info

    with_page(chromium, page_url, tmp_path / "profile", work)


def test_a_csm_view_is_bookmarkable(page_url, tmp_path):
    chromium = require_chromium()

    async def work(page):
        calls = await page.js(
            "Array.from(document.querySelectorAll('#calls tbody tr:not([hidden])')).map(r => r.dataset.csm)"
        )
        rows = await page.js(
            "Array.from(document.querySelectorAll('#accounts tbody tr')).map(r => r.dataset.csm)"
        )
        return calls, rows

    calls, rows = with_page(chromium, page_url + "#csm=csm_02", tmp_path / "profile", work)
    assert calls and set(calls) == {"csm_02"} and len(calls) <= CallListConfig().capacity_per_csm
    assert rows and set(rows) == {"csm_02"}


def test_every_text_meets_wcag_aa_contrast_at_1280x800(page_url, tmp_path):
    chromium = require_chromium()

    async def work(page):
        return await page.js(CONTRAST_JS)

    result = with_page(chromium, page_url, tmp_path / "profile", work)
    assert result["checked"] > 500
    distinct = {(f["cls"], f["color"], f["ratio"]) for f in result["failures"]}
    assert not distinct, sorted(distinct)


def test_screenshots_of_the_call_list_an_account_and_the_changes(page_url, tmp_path):
    """The pictures a CSM sees; with CHURNML_SCREENSHOTS=DIR they are kept there (the README's come from it)."""
    chromium = require_chromium()
    shots = {}

    async def work(page):
        shots["calls"] = await page.screenshot(tmp_path / "call-list.png", "#calls")
        await page.type("#search", "A00042")
        await page.wait_for("document.querySelectorAll('#accounts tbody tr').length === 1")
        shots["account"] = await page.screenshot(tmp_path / "account.png", "#accounts-section")
        shots["changes"] = await page.screenshot(tmp_path / "changes.png", "#changes")
        shots["top"] = await page.screenshot(tmp_path / "top-1280x800.png")

    with_page(chromium, page_url, tmp_path / "profile", work)
    for path in shots.values():
        assert path.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n" and path.stat().st_size > 10_000, path
    keep = os.environ.get("CHURNML_SCREENSHOTS")
    if keep:
        Path(keep).mkdir(parents=True, exist_ok=True)
        for path in shots.values():
            shutil.copy(path, Path(keep) / path.name)


@pytest.mark.parametrize(
    ("name", "parts"),
    [
        ("forecast.html", ("#forecast-3m", "#forecast-12m", "#backtest")),
        ("customers.html", ("#findings", "#hazard-ratios", "#curves")),
    ],
)
def test_the_forecast_and_right_customer_pages_open_from_the_nav_and_meet_wcag_aa(
    page_url, tmp_path, name, parts
):
    """From the portfolio page's navigation to each page: every text meets AA contrast, every chart is drawn."""
    chromium = require_chromium()
    shots = {}

    async def work(page):
        await page.js(f"document.querySelector('nav.pages a[href=\"{name}\"]').click()")
        await page.wait_for(
            f"location.pathname.endsWith('/{name}') && document.readyState === 'complete'"
            " && document.body.getAttribute('data-ready') === '1'"
        )
        current = await page.js(
            "document.querySelector('nav.pages a[aria-current=\"page\"]').getAttribute('href')"
        )
        drawn = await page.js(
            "Array.from(document.querySelectorAll('svg')).filter(s => s.getBoundingClientRect().width > 0).length"
        )
        contrast = await page.js(CONTRAST_JS)
        stem = name.removesuffix(".html")
        for selector in parts:
            shots[selector] = await page.screenshot(tmp_path / f"{stem}-{selector[1:]}.png", selector)
        shots["top"] = await page.screenshot(tmp_path / f"{stem}-top-1280x800.png")
        return current, drawn, contrast

    current, drawn, contrast = with_page(chromium, page_url, tmp_path / "profile", work)
    assert current == name
    # forecast: 2 bridges, an NRR interval per group and per backtest row; customers: logo and NRR curves of
    # 2 dimensions, and the forest row of the one profile with a finite ratio against its reference (SMB)
    assert drawn >= 20 if name == "forecast.html" else drawn == 5
    assert contrast["checked"] > 100
    distinct = {(f["cls"], f["color"], f["ratio"]) for f in contrast["failures"]}
    assert not distinct, sorted(distinct)
    for path in shots.values():
        assert path.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n" and path.stat().st_size > 5_000, path
    keep = os.environ.get("CHURNML_SCREENSHOTS")
    if keep:
        Path(keep).mkdir(parents=True, exist_ok=True)
        for path in shots.values():
            shutil.copy(path, Path(keep) / path.name)
