"""Backtests: as-of grids, when a model exists, which model each as-of uses, cards, the registry as a source,
and the point-in-time guarantee (rows and labels after an as-of never change its scores).
"""

from __future__ import annotations

import math

import numpy as np
import pandas as pd
import pytest

from churnml.config import Config, LabelsConfig, ModelConfig, SplitConfig
from churnml.dataset.labels import build_labels
from churnml.dataset.spine import data_end
from churnml.errors import ChurnmlError
from churnml.scoring.backtest import (
    Candidate,
    ModelCard,
    as_of_dates,
    backtest,
    candidate_of,
    load_card,
    plan_models,
    registry_candidates,
    save_card,
    trained_through,
)

from tables import fast_lgbm

DAY = pd.Timestamp


def fast_model_config() -> ModelConfig:
    return ModelConfig(lgbm=fast_lgbm(n_estimators=40, early_stopping_rounds=10))


def candidate(target: str, version: str, since: str) -> Candidate:
    def load():  # never called by planning
        raise AssertionError("planning must not load models")

    return Candidate(target, version, DAY(since), math.nan, load)


# ---------------------------------------------------------------------------------------------- as-ofs


def test_as_of_grids():
    assert as_of_dates("2025-01-31", "2025-04-30", "1mo") == [
        DAY("2025-01-31"),
        DAY("2025-02-28"),
        DAY("2025-03-31"),
        DAY("2025-04-30"),
    ]
    assert as_of_dates("2025-01-01", "2025-01-29", "2w") == [
        DAY("2025-01-01"),
        DAY("2025-01-15"),
        DAY("2025-01-29"),
    ]
    assert as_of_dates("2025-01-01", "2025-01-20", "10d") == [DAY("2025-01-01"), DAY("2025-01-11")]
    assert as_of_dates("2025-01-01", "2025-01-01") == [DAY("2025-01-01")]
    for every in ("1 month", "0mo", "mo", "1y"):
        with pytest.raises(ChurnmlError, match="--every"):
            as_of_dates("2025-01-01", "2025-06-01", every)
    with pytest.raises(ChurnmlError, match="after --to"):
        as_of_dates("2025-06-01", "2025-01-01")
    with pytest.raises(ChurnmlError, match="not the start of a day"):
        as_of_dates("2025-01-01 12:00", "2025-06-01")


# ------------------------------------------------------------------------------------------ model choice


def test_a_model_exists_once_its_labels_and_their_grace_matured():
    from test_modeling import HORIZON, synthetic_tables

    from churnml.modeling.model import train_model

    features, labels, _ = synthetic_tables(n_accounts=150, n_cutoffs=18)
    model = train_model(features, labels, "churn", fast_model_config(), SplitConfig(), HORIZON)
    last_seen = max(model.split.train + model.split.validation)
    assert trained_through(model, LabelsConfig()) == last_seen + pd.Timedelta(days=90 + 30)
    assert trained_through(model, LabelsConfig(grace_days=0)) == last_seen + pd.Timedelta(days=90)
    assert max(model.split.test) > last_seen  # test labels chose nothing: they do not delay the model
    with pytest.raises(ChurnmlError, match="horizon_days is 60"):
        trained_through(model, LabelsConfig(horizon_days=60))
    picked = candidate_of(model, "7", LabelsConfig(), test_roc_auc=0.8, test_n=300, test_positives=30)
    assert picked.trained_through == trained_through(model, LabelsConfig()) and picked.load() is model


def test_each_as_of_uses_the_latest_model_that_existed_then():
    days = [DAY("2025-01-01"), DAY("2025-02-01"), DAY("2025-03-01"), DAY("2025-04-01")]
    pool = [
        candidate("churn", "1", "2024-12-15"),
        candidate("churn", "2", "2025-02-01"),  # exists from 2025-02-01 itself
        candidate("churn", "3", "2025-05-01"),  # from the future of every as-of
        candidate("churn", "10", "2025-02-01"),  # same day as "2": the later version wins
        candidate("expansion", "1", "2025-03-15"),
    ]
    plan = plan_models(days, pool, "as_of")
    assert [p["churn"].candidate.version for p in plan] == ["1", "10", "10", "10"]
    expansion = [p["expansion"] for p in plan]
    assert [c.candidate is None for c in expansion] == [True, True, True, False]
    assert [c.trained_at for c in expansion[:3]] == days[:3]  # walk-forward at the as-of itself
    fixed = plan_models(days, pool, "fixed")
    assert [p["churn"].candidate.version for p in fixed] == ["1"] * 4
    assert {p["expansion"].trained_at for p in fixed} == {days[0]}
    with pytest.raises(ChurnmlError, match="--retrain"):
        plan_models(days, pool, "weekly")


def test_cards_round_trip(tmp_path):
    card = ModelCard(
        "churn",
        "backtest-2025-03-01",
        DAY("2025-01-29"),
        0.81,
        600,
        42,
        {"edges": [0.1], "fractions": [0.5, 0.5, 0]},
    )
    save_card(card, tmp_path)
    assert load_card(tmp_path, "churn", "backtest-2025-03-01") == card
    assert load_card(tmp_path, "churn", "9") is None
    unknown = ModelCard("expansion", "3", DAY("2025-01-29"))
    save_card(unknown, tmp_path)
    assert math.isnan(load_card(tmp_path, "expansion", "3").test_roc_auc)
    (tmp_path / "churn-9.json").write_text("{not json")
    with pytest.raises(ChurnmlError, match="not a model card"):
        load_card(tmp_path, "churn", "9")
    assert card.months_since_training(DAY("2025-07-30")) == pytest.approx(182 / (365.25 / 12))


def test_backtest_refuses_bad_arguments(edge_tables, tmp_path):
    with pytest.raises(ChurnmlError, match="--retrain"):
        backtest(
            edge_tables, Config(), "2025-01-01", "2025-02-01", root=tmp_path, retrain="never", candidates=[]
        )
    with pytest.raises(ChurnmlError, match="after the data end 2025-07-01"):
        backtest(edge_tables, Config(), "2025-06-01", "2025-08-01", root=tmp_path, candidates=[])


# ----------------------------------------------------------------------------------------- point in time


def _after(tables: dict[str, pd.DataFrame], day: pd.Timestamp) -> dict[str, pd.DataFrame]:
    """Every fact dated on or after ``day`` changed (values, statuses, dates moved within the future,
    renewals removed); nothing dated before it touched."""
    out = {name: frame.copy() for name, frame in tables.items()}
    usage = out["usage"]
    late = usage["date"] >= day
    usage.loc[late, "value"] = usage.loc[late, "value"] * 7 + 3
    tickets = out["support_tickets"]
    tickets.loc[tickets["created_at"] >= day, "priority"] = "urgent"
    resolved_late = tickets["resolved_at"] >= day
    tickets.loc[resolved_late, "resolved_at"] = tickets.loc[resolved_late, "resolved_at"] + pd.Timedelta(
        days=20
    )
    tickets.loc[resolved_late, "csat"] = 1.0
    nps = out["nps_responses"]
    nps.loc[nps["responded_at"] >= day, "score"] = 0
    out["csm_activities"] = out["csm_activities"][out["csm_activities"]["occurred_at"] < day]
    contacts = out["contacts"]
    contacts = contacts[contacts["start_date"] < day].copy()
    contacts.loc[contacts["end_date"] >= day, "end_date"] = day + pd.Timedelta(days=3)
    out["contacts"] = contacts
    invoices = out["invoices"]
    invoices.loc[invoices["issued_date"] >= day, "amount"] *= 3
    invoices.loc[invoices["due_date"] >= day, "due_date"] = invoices["due_date"] + pd.Timedelta(days=10)
    invoices.loc[invoices["paid_date"] >= day, "paid_date"] = pd.NaT
    subs = out["subscriptions"]
    subs = subs[subs["start_date"] < day].copy()  # every renewal on or after the day is gone...
    subs.loc[subs["end_date"].isna() | (subs["end_date"] >= day), "end_date"] = day + pd.Timedelta(days=15)
    out["subscriptions"] = subs  # ...and every running contract ends two weeks later
    return out


def _keyed(scores: pd.DataFrame) -> pd.DataFrame:
    columns = [
        "as_of",
        "account_id",
        "churn_model_version",
        "churn_probability",
        "expansion_probability",
        "top_reasons",
    ]
    return scores[columns].sort_values(["as_of", "account_id"], ignore_index=True)


@pytest.mark.slow
def test_rows_and_labels_after_the_as_of_never_change_its_scores(sim, tmp_path):
    tables = sim[0]
    cfg = Config()
    cfg.model = fast_model_config()
    cfg.features.threads = 1
    split = SplitConfig(test_periods=1, validation_periods=2, purge_days=90)
    last = DAY("2025-07-01")

    def run(data: dict[str, pd.DataFrame], start: str) -> tuple[pd.DataFrame, dict]:
        result = backtest(
            data, cfg, start, last, "1mo", root=tmp_path, candidates=[], split=split, write=False
        )
        assert (result.runs["status"] == "succeeded").all()
        return _keyed(result.scores), result.cards

    scores, cards = run(tables, "2025-06-01")
    assert set(scores["churn_model_version"]) == {"backtest-2025-06-01", "backtest-2025-07-01"}
    mutated = _after(tables, last)
    # the mutation is visible to anything that looks past the as-of: its own labels change
    spine = scores.loc[scores["as_of"] == last, ["account_id", "as_of"]].rename(columns={"as_of": "cutoff"})
    labels_before = build_labels(tables["subscriptions"], spine, cfg.labels, data_end(tables))
    labels_after = build_labels(mutated["subscriptions"], spine, cfg.labels, data_end(mutated))
    assert labels_after["churned_within_90d"].sum() > labels_before["churned_within_90d"].sum()
    scores_mutated, cards_mutated = run(mutated, "2025-06-01")
    pd.testing.assert_frame_equal(scores, scores_mutated)  # walk-forward models and scores alike
    assert cards == cards_mutated
    # the control: a change the day before the as-of does reach its scores
    usage = tables["usage"].copy()
    usage.loc[usage["date"] == last - pd.Timedelta(days=1), "value"] = 0.0
    control, _ = run({**tables, "usage": usage}, "2025-07-01")
    same_day = scores[scores["as_of"] == last].reset_index(drop=True)
    assert (
        ~np.isclose(control["churn_probability"], same_day["churn_probability"], rtol=0, atol=1e-12)
    ).any()


# -------------------------------------------------------------------------------------------- registry


@pytest.mark.slow
def test_registered_versions_are_candidates_from_their_training_end(tmp_path, monkeypatch):
    from test_modeling import HORIZON, synthetic_tables

    from churnml.config import EvaluationConfig, TrackingConfig
    from churnml.modeling.evaluation import evaluate_model
    from churnml.modeling.model import train_model
    from churnml.modeling.registry import model_versions
    from churnml.modeling.runs import log_training_run

    monkeypatch.delenv("MLFLOW_TRACKING_URI", raising=False)
    cfg = Config()
    assert model_versions("churn", root=tmp_path, cfg=cfg.tracking).empty
    assert not (tmp_path / "mlflow.db").exists()  # looking did not create a store
    assert registry_candidates(cfg, tmp_path) == []
    features, labels, _ = synthetic_tables(n_accounts=150, n_cutoffs=18)
    model = train_model(features, labels, "churn", fast_model_config(), SplitConfig(), HORIZON)
    evaluation = evaluate_model(model, features, labels, EvaluationConfig())
    log_training_run(
        model, evaluation, cfg, "md5", tracking=TrackingConfig(), root=tmp_path, test_features=features
    )
    [found] = registry_candidates(cfg, tmp_path)
    assert (found.target, found.version, found.source) == ("churn", "1", "registry")
    assert found.trained_through == trained_through(model, cfg.labels)
    assert found.test_roc_auc == pytest.approx(evaluation.metric("roc_auc"))
    assert (found.test_n, found.test_positives) == (evaluation.n["test"], evaluation.n["test_positives"])
    loaded = found.load()
    assert np.allclose(loaded.predict_proba(features.head(50)), model.predict_proba(features.head(50)))
