"""Behaviour of a churn model trained the default way on simulator data (Made-With-ML style directional test).

The model sees the portfolio as the pipeline builds it; then each account's usage in the 30 days before the
cutoff is cut to a fifth, the features are rebuilt from the changed rows, and its churn risk must rise for the
large majority of accounts.
"""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest

from churnml.config import (
    FeaturesConfig,
    LabelsConfig,
    LightGBMConfig,
    ModelConfig,
    SimulatorConfig,
    SpineConfig,
    SplitConfig,
)
from churnml.contract.validate import validate_tables
from churnml.dataset.labels import build_labels
from churnml.dataset.spine import build_spine, data_end, training_cutoffs
from churnml.features.engine import build_features
from churnml.modeling.model import train_model
from churnml.sources.simulate import simulate


@pytest.fixture(scope="module")
def trained():
    tables = validate_tables(simulate(SimulatorConfig(accounts=1500, seed=3))[0]).tables
    spine = build_spine(tables["subscriptions"], training_cutoffs(tables, SpineConfig()))
    labels = build_labels(tables["subscriptions"], spine, LabelsConfig(), data_end(tables))
    features = build_features(tables, spine, FeaturesConfig())
    cfg = ModelConfig(lgbm=LightGBMConfig(n_estimators=300, n_jobs=1))
    model = train_model(features, labels, "churn", cfg, SplitConfig(), LabelsConfig().horizon_days)
    return tables, features, model


@pytest.mark.slow
def test_cutting_recent_usage_raises_churn_risk_for_most_accounts(trained):
    tables, features, model = trained
    cutoff = max(model.split.test)
    rows = features[features["cutoff"] == cutoff]
    usage = tables["usage"]
    recent = (usage["date"] >= cutoff - pd.Timedelta(days=30)) & (usage["date"] < cutoff)
    cut = {**tables, "usage": usage.assign(value=np.where(recent, usage["value"] * 0.2, usage["value"]))}
    spine = rows[["account_id", "cutoff"]]
    after = (
        build_features(cut, spine, FeaturesConfig())
        .set_index("account_id")
        .loc[rows["account_id"]]
        .reset_index()
    )
    before_p = model.predict_proba(rows.reset_index(drop=True))
    after_p = model.predict_proba(after)
    active = (
        rows["usage_logins_sum_30d"].fillna(0).to_numpy() > 0
    )  # an account with no usage has nothing to cut
    raised = (after_p > before_p)[active].mean()
    assert active.sum() > 300
    assert raised >= 0.8, f"churn risk rose for only {raised:.0%} of accounts after their usage was cut"


@pytest.mark.slow
def test_features_of_unchanged_accounts_do_not_move_the_score(trained):
    _, features, model = trained
    rows = features[features["cutoff"] == max(model.split.test)].reset_index(drop=True)
    shuffled = rows.sample(frac=1.0, random_state=0)
    np.testing.assert_allclose(
        model.predict_proba(shuffled), model.predict_proba(rows)[shuffled.index.to_numpy()], rtol=0, atol=0
    )
