"""The cause check: do the reasons name what really drove each churner (simulator data only)?"""

from __future__ import annotations

from typing import Any

import pandas as pd

from churnml.explain.contributions import explain_accounts
from churnml.explain.drivers import redundant_groups_of
from churnml.explain.reasons import cause_hit_summary, cause_hits, reasons_for

TOP = 3  # a hit is the dominant cause among the top three risk-raising reasons


def cause_check(
    model: Any,
    features: pd.DataFrame,
    truth_accounts: pd.DataFrame,
    cause_families: dict[str, tuple[str, ...]],
    horizon_days: int,
) -> dict[str, Any]:
    """The share of test-period churners whose top three risk-raising reasons name their dominant cause.

    Context (days to renewal, tenure, plan...) is never a reason, so never a hit.

    Args:
        model: the trained churn model (its split says which cutoffs are the test period).
        features: the training feature table (every cutoff).
        truth_accounts: the simulator's ``truth/accounts`` table (``churn_date``, ``dominant_cause``).
        cause_families: cause -> the feature families that express it.
        horizon_days: the label horizon.

    Returns:
        ``cause_hit_rate_top3`` overall, ``churners_with_a_cause``, ``churners_scored`` and
        ``cause_hit_rate_top3_by_cause``.
    """
    test = features[features["cutoff"].isin(model.split.test)]
    reasons = reasons_for(explain_accounts(model, test), test, top=TOP, groups=redundant_groups_of(model))
    churners = truth_accounts[
        truth_accounts["churn_date"].notna() & truth_accounts["dominant_cause"].ne("random")
    ]
    hits = cause_hit_summary(
        cause_hits(reasons, truth_accounts, cause_families, top=TOP, horizon_days=horizon_days)
    )
    return {
        "cause_hit_rate_top3": hits["hit_rate"],
        "churners_with_a_cause": int(len(churners)),
        "churners_scored": hits["churners"],
        "cause_hit_rate_top3_by_cause": hits["by_cause"],
    }
