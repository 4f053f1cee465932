"""The template sweep: every sentence template with edge values, checked for grammar-level invariants.

Edge values: 0, missing, a negative change, a small fraction and huge values, with and without the columns a
template quotes from the account's row. Invariants: numbers are formatted (no scientific notation, no long
decimals, thousands separated, no "-0"), singular and plural agree, direction words agree with the sign of a
change, and a reason list never says one sentence twice and labels each point with the word its sign means.
"""

from __future__ import annotations

import re

import numpy as np
import pandas as pd
import pytest
from test_reasons import CATEGORICAL, ENGINE, OTHER

from churnml.explain.drivers import feature_info
from churnml.explain.reasons import point_label, reasons_for
from churnml.explain.templates import render_reason

EDGE_VALUES = (0.0, None, np.nan, -0.45, -1.0, 0.003, 0.5, 1.0, 2.0, 1234567.0, 98765432.1)
ROWS = (
    {},  # nothing else known about the account
    {
        "contract_seats": 12.0,
        "contract_billing_period": "monthly",
        "usage_active_users_mean_30d": 7.25,
        "usage_logins_sum_30d": 15320.0,
        "contacts_days_since_sponsor_left": 23.0,
    },
    {"contract_seats": 0.0, "contract_billing_period": "annual", "contacts_days_since_sponsor_left": 0.0},
)
_CHANGE_AGGS = ("trend", "pct_change", "change", "delta", "slope", "zscore")
_PLURALS = (
    r"days|tickets|seats|answers|invoices|touches|features|renewals|upgrades|downgrades|detractors|promoters"
)


def _sentences(name: str):
    values = (CATEGORICAL[name], None) if name in CATEGORICAL else EDGE_VALUES
    for value in values:
        for extra in ROWS:
            row = {**extra, name: value}
            for median in (None, 0.0, 3.5, 2500000.0):
                yield value, render_reason(name, value, row, median)


@pytest.mark.parametrize("name", ENGINE + OTHER)
def test_template_sweep_numbers_grammar_and_direction(name):
    info = feature_info(name)
    for value, text in _sentences(name):
        where = (name, value, text)
        assert text and text == text.strip() and "  " not in text, where
        assert not re.search(r"\b(nan|inf)\b", text, flags=re.IGNORECASE), where
        assert not re.search(r"\bNone\b|_", text), where
        assert not re.search(r"\d[eE][+-]?\d", text), where  # no scientific notation
        assert not re.search(r"\d\.\d{3,}", text), where  # at most two decimals
        assert not re.search(r"(?<![\d.,])\d{5,}(?![\d.,])", text), where  # 12,345, not 12345
        assert not re.search(r"(?<![\w.])-0(\.0+)?(?![\d.])", text), where  # no negative zero
        assert not re.search(rf"(?<![\d.,])1 ({_PLURALS})\b", text), where  # "1 day", not "1 days"
        assert not re.search(
            r"\b(0|[2-9]|\d{2,}) (day|ticket|seat|invoice|answer|touch)\b(?! ago)", text
        ) or ("of" in text), where
        if info.agg in _CHANGE_AGGS and isinstance(value, float) and np.isfinite(value):
            lowered = text.lower()
            if value < 0:
                assert re.search(r"\b(down|below|lower|fewer)\b", lowered), where
                assert not re.search(r"\b(up|above|higher)\b", lowered), where
            elif value > 0.01:
                assert re.search(r"\b(up|above|higher|more)\b", lowered), where
                assert not re.search(r"\b(down|below|lower)\b", lowered), where


def test_absent_invoices_read_naturally_by_billing_period():
    name = "invoices_days_late_mean_180d"
    annual = render_reason(name, None, {"contract_billing_period": "annual"})
    monthly = render_reason(name, None, {"contract_billing_period": "monthly"})
    assert "billed annually" in annual and "expected" not in annual
    assert "billed monthly" in monthly
    assert annual != monthly


def test_point_labels_agree_with_the_sign_of_the_points():
    for target in ("churn", "expansion"):
        for points in (-0.31, -0.0004, 0.0004, 0.05, 0.5):
            label = point_label(points, target)
            assert ("raises" in label) == (points > 0) and ("lowers" in label) == (points < 0), label
            assert re.search(r"[+-]\d+\.\d pts$", label), label
            assert label.endswith(f"{points * 100:+.1f} pts"), label
            assert target in label or (target == "expansion" and "expand" in label), label


def test_reasons_never_say_one_sentence_twice_and_drop_tiny_drivers():
    as_of = pd.Timestamp("2025-06-01")
    features = pd.DataFrame(
        {
            "account_id": ["A1"],
            "cutoff": [as_of],
            # two drivers whose sentences are the same words: the stronger one is kept
            "support_tickets_count_30d": [0.0],
            "support_high_priority_count_30d": [0.0],
            "usage_logins_trend_30d": [-0.45],
            "nps_score_latest": [3.0],
        }
    )
    rows = [
        ("support_tickets_count_30d", 0.4, 0.03),
        ("support_high_priority_count_30d", 0.2, 0.02),
        ("usage_logins_trend_30d", 0.9, 0.06),
        ("nps_score_latest", 0.01, 0.001),  # below the minimum driver size
    ]
    explanations = pd.DataFrame(
        [
            {
                "account_id": "A1",
                "as_of": as_of,
                "target": "churn",
                "feature": f,
                "shap_value": s,
                "probability_points": p,
            }
            for f, s, p in rows
        ]
    )
    out = reasons_for(explanations, features, top=3, min_points=0.005)
    assert not out.duplicated(["account_id", "as_of", "target", "reason"]).any()
    assert "nps_score" not in set(out["driver"])  # 0.1 pts: noise, not a reason
    assert list(out["rank"]) == list(range(1, len(out) + 1))
