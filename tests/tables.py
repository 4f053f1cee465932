"""Tiny, valid contract tables for tests, built in raw form (as a user's CSV would be read)."""

from __future__ import annotations

import pandas as pd

from churnml.config import LightGBMConfig


def tiny_tables() -> dict[str, pd.DataFrame]:
    """Two accounts with every table of the contract, valid as they stand."""
    return {
        "accounts": pd.DataFrame(
            {
                "account_id": ["A1", "A2"],
                "account_name": ["Acme", "Globex"],
                "segment": ["smb", "enterprise"],
                "touch_model": ["tech_touch", "high_touch"],
                "industry": ["retail", "software"],
                "region": ["emea", "na"],
                "csm_id": [None, "csm_1"],
                "created_date": ["2024-01-01", "2024-01-02"],
            }
        ),
        "subscriptions": pd.DataFrame(
            {
                "subscription_id": ["S1", "S2", "S3"],
                "account_id": ["A1", "A2", "A2"],
                "plan": ["starter", "enterprise", "enterprise"],
                "billing_period": ["monthly", "annual", "annual"],
                "start_date": ["2024-01-01", "2024-01-02", "2025-01-02"],
                "end_date": [None, "2025-01-02", None],
                "mrr": [99.0, 5000.0, 5500.0],
                "seats": [3, 100, 110],
            }
        ),
        "usage": pd.DataFrame(
            {
                "account_id": ["A1", "A1", "A2"],
                "date": ["2024-01-02", "2024-01-03", "2024-01-03"],
                "metric": ["logins", "logins", "active_users"],
                "value": [4.0, 2.0, 40.0],
            }
        ),
        "support_tickets": pd.DataFrame(
            {
                "ticket_id": ["T1"],
                "account_id": ["A2"],
                "created_at": ["2024-02-01 10:00:00"],
                "resolved_at": ["2024-02-02 09:00:00"],
                "priority": ["high"],
                "category": ["bug"],
                "csat": [4.0],
            }
        ),
        "nps_responses": pd.DataFrame(
            {
                "response_id": ["N1"],
                "account_id": ["A2"],
                "contact_id": ["C1"],
                "responded_at": ["2024-03-01 12:00:00"],
                "score": [9],
            }
        ),
        "csm_activities": pd.DataFrame(
            {
                "activity_id": ["M1"],
                "account_id": ["A2"],
                "occurred_at": ["2024-03-05 15:00:00"],
                "kind": ["qbr"],
                "csm_id": ["csm_1"],
            }
        ),
        "contacts": pd.DataFrame(
            {
                "contact_id": ["C1", "C2"],
                "account_id": ["A2", "A2"],
                "role": ["sponsor", "user"],
                "start_date": ["2024-01-02", "2024-01-02"],
                "end_date": [None, "2024-06-01"],
            }
        ),
        "invoices": pd.DataFrame(
            {
                "invoice_id": ["I1"],
                "account_id": ["A2"],
                "issued_date": ["2024-01-02"],
                "due_date": ["2024-02-01"],
                "amount": [60000.0],
                "paid_date": ["2024-01-25"],
            }
        ),
    }


def fast_lgbm(**changes) -> LightGBMConfig:
    """LightGBM settings that train in a fraction of a second on the tests' small tables (one thread);
    ``changes`` set the rounds (or leaves) a test needs."""
    fast = {
        "n_estimators": 80,
        "learning_rate": 0.1,
        "num_leaves": 15,
        "min_child_samples": 20,
        "early_stopping_rounds": 20,
        "n_jobs": 1,
    }
    return LightGBMConfig(**{**fast, **changes})


# The small portfolio the end-to-end pipeline tests run (test_pipeline, test_reproducible): one list, so both
# run the same pipeline.
SMALL_PIPELINE = [
    "simulator.accounts=300",
    "simulator.months=18",
    "model.lgbm.n_estimators=80",
    "evaluation.csm_capacity_k=20",
]
