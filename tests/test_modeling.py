"""Out-of-time split, LightGBM training and calibration, the saved model, baselines and evaluation.

The data is a small synthetic feature table with the feature contract's columns and a known churn
mechanism (low licence utilisation, falling logins, urgent tickets and a departed sponsor raise risk).
"""

from __future__ import annotations

import json
import warnings

import numpy as np
import pandas as pd
import pytest

from churnml.config import EvaluationConfig, ModelConfig, SplitConfig
from churnml.errors import ChurnmlError
from churnml.modeling.baselines import HealthScore, fit_baselines
from churnml.modeling.calibration import Calibrator
from churnml.modeling.evaluation import evaluate_model
from churnml.modeling.metrics import brier
from churnml.modeling.model import TrainedModel, _lgbm_params, train_model
from churnml.modeling.split import feature_columns, split_periods
from churnml.names import KEYS, TARGETS

from tables import fast_lgbm

HORIZON = 90


def synthetic_tables(n_accounts: int = 300, n_cutoffs: int = 24, seed: int = 0, unlabeled: int = 4):
    """(features, labels, truth by target) on monthly cutoffs from 2023-01-01; the last cutoffs unlabeled."""
    rng = np.random.default_rng(seed)
    cutoffs = pd.date_range("2023-01-01", periods=n_cutoffs, freq="MS").astype("datetime64[us]")
    segment = rng.choice(["enterprise", "mid_market", "smb"], n_accounts, p=[0.2, 0.3, 0.5])
    touch = pd.Series(segment).map(
        {"enterprise": "high_touch", "mid_market": "low_touch", "smb": "tech_touch"}
    )
    plan = rng.choice(["starter", "pro", "enterprise"], n_accounts)
    size = pd.Series(segment).map({"enterprise": 5.0, "mid_market": 2.0, "smb": 1.0}).to_numpy()
    arr = np.exp(rng.normal(9, 1, n_accounts)) * size
    quality = rng.normal(0, 1, n_accounts)
    segment_effect = pd.Series(segment).map({"enterprise": -0.7, "mid_market": 0.0, "smb": 0.5}).to_numpy()
    frames = []
    for cutoff in cutoffs:
        util = np.clip(0.6 + 0.2 * quality + rng.normal(0, 0.2, n_accounts), 0, 1.5)
        trend = rng.normal(0, 1, n_accounts) + 0.3 * quality
        tickets = rng.poisson(np.exp(0.3 - 0.4 * quality)).astype(float)
        nps = np.clip(np.round(7 + 2 * quality + rng.normal(0, 1.5, n_accounts)), 0, 10)
        sponsor_left = (rng.random(n_accounts) < 0.05).astype(float)
        frame = pd.DataFrame(
            {
                "account_id": pd.array([f"A{i:04d}" for i in range(n_accounts)], dtype="str"),
                "cutoff": cutoff,
                "account_segment": pd.array(segment, dtype="str"),
                "account_touch_model": pd.array(touch.to_numpy(), dtype="str"),
                "contract_plan": pd.array(plan, dtype="str"),
                "contract_arr": arr,
                "usage_logins_trend_30d": trend,
                "adoption_license_utilisation_30d": util,
                "adoption_breadth_30d": np.clip(3 + quality + rng.normal(0, 1, n_accounts), 0, None),
                "support_high_priority_count_30d": tickets,
                "nps_score_latest": np.where(rng.random(n_accounts) < 0.3, np.nan, nps),
                "contacts_sponsor_left_90d": sponsor_left,
                "usage_noise_a_30d": rng.normal(0, 1, n_accounts),
                "usage_noise_b_30d": rng.normal(0, 1, n_accounts),
            }
        )
        logit = -2.6 - 2.5 * (util - 0.6) - 0.6 * trend + 0.35 * tickets + 1.5 * sponsor_left + segment_effect
        frame["_p_churn"] = 1 / (1 + np.exp(-logit))
        frame["_p_expansion"] = 1 / (1 + np.exp(-(-2.5 + 3.0 * (util - 0.8) + 0.5 * trend)))
        frames.append(frame)
    data = pd.concat(frames, ignore_index=True)
    churned = (rng.random(len(data)) < data["_p_churn"]).astype(float)
    expanded = np.where(churned == 1, 0.0, (rng.random(len(data)) < data["_p_expansion"]).astype(float))
    labeled = (data["cutoff"] < cutoffs[-unlabeled]) if unlabeled else np.ones(len(data), bool)
    labels = pd.DataFrame(
        {
            "account_id": data["account_id"],
            "cutoff": data["cutoff"],
            "churned_within_90d": pd.array(np.where(labeled, churned, np.nan), dtype="Int8"),
            "expanded_within_90d": pd.array(np.where(labeled, expanded, np.nan), dtype="Int8"),
        }
    )
    truth = {t: data[list(KEYS)].assign(horizon_days=HORIZON, probability=data[f"_p_{t}"]) for t in TARGETS}
    return data.drop(columns=["_p_churn", "_p_expansion"]), labels, truth


def fast_config(**changes) -> ModelConfig:
    """A model config that trains in a fraction of a second on the synthetic table."""
    lgbm = fast_lgbm()
    return ModelConfig(lgbm=lgbm, **changes)


@pytest.fixture(scope="module")
def tables():
    return synthetic_tables()


@pytest.fixture(scope="module")
def churn_model(tables):
    features, labels, _ = tables
    return train_model(features, labels, "churn", fast_config(), SplitConfig(), HORIZON)


def _test_rows(model: TrainedModel, features: pd.DataFrame) -> pd.DataFrame:
    return features[features["cutoff"].isin(model.split.test)]


# --------------------------------------------------------------------------------------------- split


@pytest.mark.parametrize(
    ("freq", "periods", "cfg", "horizon"),
    [
        ("MS", 20, SplitConfig(), 90),
        ("MS", 30, SplitConfig(test_periods=2, validation_periods=4, purge_days=120), 60),
        ("W-MON", 80, SplitConfig(test_periods=4, validation_periods=6, purge_days=30), 28),
        ("MS", 12, SplitConfig(test_periods=1, validation_periods=1, purge_days=0), 90),
    ],
)
def test_split_is_out_of_time_and_purged(freq, periods, cfg, horizon):
    cutoffs = pd.date_range("2023-01-02", periods=periods, freq=freq)
    split = split_periods(np.repeat(cutoffs, 3), cfg, horizon)  # repeats: one per labeled row
    train, valid, test = split.train, split.validation, split.test
    assert len(test) == cfg.test_periods and len(valid) == cfg.validation_periods and train
    assert test == [pd.Timestamp(c) for c in cutoffs[-cfg.test_periods :]]
    assert max(train) < min(valid) and max(valid) < min(test)
    assert max(train) + pd.Timedelta(days=cfg.purge_days) <= min(valid)
    assert max(valid) + pd.Timedelta(days=horizon) <= min(test)
    assert not (set(train) & set(valid)) and not (set(valid) & set(test)) and not (set(train) & set(test))
    # validation is the latest admissible period; nothing admissible is left between train and validation
    admissible = [
        pd.Timestamp(c) for c in cutoffs if pd.Timestamp(c) + pd.Timedelta(days=horizon) <= min(test)
    ]
    assert valid == admissible[-cfg.validation_periods :]
    purge = pd.Timedelta(days=cfg.purge_days)
    assert train == [
        pd.Timestamp(c) for c in cutoffs if pd.Timestamp(c) + purge <= min(valid) and c < min(valid)
    ]


def test_split_without_enough_history_is_a_clear_error():
    cutoffs = pd.date_range("2024-01-01", periods=8, freq="MS")
    with pytest.raises(ChurnmlError, match="no training cutoff"):
        split_periods(cutoffs, SplitConfig(), 90)
    with pytest.raises(ChurnmlError, match="validation_periods=3"):
        split_periods(cutoffs[:6], SplitConfig(), 90)
    with pytest.raises(ChurnmlError, match="fewer than test_periods"):
        split_periods(cutoffs[:2], SplitConfig(), 90)


def test_training_uses_labeled_cutoffs_only(tables, churn_model):
    features, labels, _ = tables
    unlabeled = set(labels.loc[labels["churned_within_90d"].isna(), "cutoff"])
    assert unlabeled
    periods = churn_model.split
    used = set(periods.train) | set(periods.validation) | set(periods.test)
    assert not used & unlabeled
    assert max(periods.test) == max(set(labels["cutoff"]) - unlabeled)
    n_train = labels["cutoff"].isin(periods.train).sum()
    assert churn_model.info["n_train"] == n_train


# ------------------------------------------------------------------------------------------ training


def test_feature_columns_exclude_keys_and_labels(tables):
    features, labels, _ = tables
    merged = features.merge(labels, on=["account_id", "cutoff"])
    cols = feature_columns(merged)
    assert "account_id" not in cols and "cutoff" not in cols
    assert not any(c.startswith(("churned_within", "expanded_within")) for c in cols)
    assert "account_segment" in cols and "contract_arr" in cols


def test_model_ranks_churners_and_stores_categories(tables, churn_model):
    features, labels, _ = tables
    test = _test_rows(churn_model, features).merge(labels, on=["account_id", "cutoff"])
    from sklearn.metrics import roc_auc_score

    assert roc_auc_score(test["churned_within_90d"].astype(int), churn_model.predict_proba(test)) > 0.65
    assert churn_model.categories["account_segment"] == ["enterprise", "mid_market", "smb"]
    assert churn_model.categories["contract_plan"] == ["enterprise", "pro", "starter"]
    assert 0 < churn_model.params["best_iteration"] <= 80


def test_same_seed_same_predictions(tables, churn_model):
    features, labels, _ = tables
    again = train_model(features, labels, "churn", fast_config(), SplitConfig(), HORIZON)
    rows = _test_rows(churn_model, features)
    np.testing.assert_array_equal(again.predict_proba(rows), churn_model.predict_proba(rows))
    other_seed = train_model(features, labels, "churn", fast_config(seed=7), SplitConfig(), HORIZON)
    # the seed moves LightGBM (the logistic candidate has no randomness)
    assert not np.array_equal(
        other_seed.booster.predict(other_seed.prepare(rows), raw_score=True),
        churn_model.booster.predict(churn_model.prepare(rows), raw_score=True),
    )


def test_calibration_lowers_brier_on_the_test_period(tables, churn_model):
    features, labels, _ = tables
    test = _test_rows(churn_model, features).merge(labels, on=["account_id", "cutoff"])
    y = test["churned_within_90d"].astype(int).to_numpy()
    calibrated = brier(y, churn_model.predict_proba(test))
    uncalibrated = brier(y, churn_model.predict_uncalibrated(test))
    assert calibrated < uncalibrated
    # class weights inflate LightGBM's raw probability (the logistic part is unweighted); calibration brings the
    # served mean back near the base rate
    tree = 1 / (1 + np.exp(-churn_model.booster.predict(churn_model.prepare(test), raw_score=True)))
    assert tree.mean() > 2 * y.mean()
    assert abs(churn_model.predict_proba(test).mean() - y.mean()) < 0.05


def test_sigmoid_and_no_calibration(tables):
    features, labels, _ = tables
    sig = train_model(features, labels, "churn", fast_config(calibration="sigmoid"), SplitConfig(), HORIZON)
    assert sig.calibrator.method == "sigmoid" and sig.calibrator.a > 0
    rows = _test_rows(sig, features)
    raw = sig.predict_raw(rows)
    expected = 1 / (1 + np.exp(-(sig.calibrator.a * raw + sig.calibrator.b)))
    np.testing.assert_allclose(sig.predict_proba(rows), np.clip(expected, 1e-4, 1 - 1e-4))
    none = train_model(
        features,
        labels,
        "churn",
        fast_config(calibration="none", class_weight="none"),
        SplitConfig(),
        HORIZON,
    )
    np.testing.assert_allclose(
        none.predict_proba(rows), np.clip(none.predict_uncalibrated(rows), 1e-4, 1 - 1e-4)
    )


def test_isotonic_calibrator_is_monotone_and_bounded():
    rng = np.random.default_rng(1)
    raw = rng.normal(size=500)
    y = (rng.random(500) < 1 / (1 + np.exp(-2 * raw))).astype(int)
    cal = Calibrator.fit("isotonic", raw, y)
    grid = np.linspace(-5, 5, 101)
    p = cal.transform(grid)
    assert np.all(np.diff(p) >= 0) and p.min() >= 1e-4 and p.max() <= 1 - 1e-4
    assert Calibrator.from_dict(json.loads(json.dumps(cal.to_dict()))).transform(grid).tolist() == p.tolist()
    with pytest.raises(ChurnmlError, match="both outcomes"):
        Calibrator.fit("isotonic", raw, np.zeros(500))


def test_platt_keeps_the_models_order_when_held_out_scores_rank_below_chance(caplog):
    from sklearn.linear_model import LogisticRegression
    from sklearn.metrics import roc_auc_score

    rng = np.random.default_rng(2)
    raw = rng.normal(size=400)
    # with signal: exactly Platt's unconstrained fit
    y = (rng.random(400) < 1 / (1 + np.exp(-1.5 * raw))).astype(int)
    lr = LogisticRegression(C=np.inf).fit(raw.reshape(-1, 1), y)
    cal = Calibrator.fit("sigmoid", raw, y)
    assert (cal.a, cal.b) == (float(lr.coef_[0, 0]), float(lr.intercept_[0])) and cal.a > 0
    # reversed: the unconstrained slope is negative and would serve the riskiest-ranked account as the safest
    flipped = 1 - y
    assert LogisticRegression(C=np.inf).fit(raw.reshape(-1, 1), flipped).coef_[0, 0] < 0
    with caplog.at_level("WARNING"):
        cal = Calibrator.fit("sigmoid", raw, flipped)
    assert "no better than chance" in caplog.text and "base rate" in caplog.text
    p = cal.transform(raw)
    assert cal.a > 0 and roc_auc_score(flipped, p) == roc_auc_score(flipped, raw)  # the order is kept
    assert abs(p.mean() - flipped.mean()) < 1e-9  # ... and every probability is the base rate
    assert np.ptp(p) < 1e-5
    assert Calibrator.from_dict(json.loads(json.dumps(cal.to_dict()))).transform(raw).tolist() == p.tolist()


def test_monotone_constraint_holds_for_the_churn_model(tables):
    features, labels, _ = tables
    cfg = fast_config(monotone_churn={"adoption_license_utilisation_30d": -1})
    model = train_model(features, labels, "churn", cfg, SplitConfig(), HORIZON)
    rows = _test_rows(model, features).head(50)
    risks = [
        model.predict_raw(rows.assign(adoption_license_utilisation_30d=v)) for v in np.linspace(0, 1.5, 16)
    ]
    assert np.all(np.diff(np.vstack(risks), axis=0) <= 1e-12)
    with pytest.raises(ChurnmlError, match="usage_typo_30d"):
        train_model(
            features,
            labels,
            "churn",
            fast_config(monotone_churn={"usage_typo_30d": 1}),
            SplitConfig(),
            HORIZON,
        )


def test_optuna_search_is_nested_seeded_judged_and_recorded(tables, churn_model):
    features, labels, _ = tables
    assert churn_model.info["tuning"] is None  # off by default
    cfg = fast_config(optuna_trials=4)
    a = train_model(features, labels, "expansion", cfg, SplitConfig(), HORIZON)
    b = train_model(features, labels, "expansion", cfg, SplitConfig(), HORIZON)
    t = a.info["tuning"]
    assert t["trials"] == 4 and len(t["history"]) == 4
    # seeded: the same search twice (all but the seconds it took)
    assert a.params == b.params and {**t, "seconds": 0} == {**b.info["tuning"], "seconds": 0}
    rows = _test_rows(a, features)
    np.testing.assert_array_equal(a.predict_proba(rows), b.predict_proba(rows))
    # nested: the search fits and scores on the train period only, whole accounts on one side
    assert t["search_rows"]["fit"] + t["search_rows"]["held_out"] == a.info["n_train"]
    assert t["inner_default_roc_auc"] == t["history"][0]["roc_auc"]  # the defaults are the first trial
    assert t["inner_best_roc_auc"] >= t["inner_default_roc_auc"]
    # judged on the validation period: the gain is tuned minus defaults there, kept only when positive
    assert t["gain"] == pytest.approx(t["tuned_roc_auc"] - t["default_roc_auc"])
    assert t["kept"] == (t["gain"] > 0)
    served = {k: a.params[k] for k in t["params"]}
    defaults = {k: v for k, v in _lgbm_params(cfg).items() if k in t["params"]}
    assert served == (t["params"] if t["kept"] else defaults)


def test_optuna_budget_in_seconds_stops_the_search(tables):
    features, labels, _ = tables
    cfg = fast_config(optuna_seconds=1.0)
    model = train_model(features, labels, "churn", cfg, SplitConfig(), HORIZON)
    t = model.info["tuning"]
    assert t["budget"] == {"trials": 0, "seconds": 1.0}
    assert t["trials"] >= 1 and t["seconds"] < 1.0 + 5.0  # one trial may run past the deadline


# ---------------------------------------------------------------------------------- prepare, save, load


def test_missing_columns_are_named(tables, churn_model):
    features, _, _ = tables
    rows = _test_rows(churn_model, features).drop(columns=["contract_arr", "account_segment"])
    with pytest.raises(ChurnmlError, match=r"contract_arr.*account_segment|account_segment.*contract_arr"):
        churn_model.predict_proba(rows)


def test_unseen_categories_are_an_error_naming_column_and_value(tables, churn_model):
    features, _, _ = tables
    rows = _test_rows(churn_model, features).copy()
    rows.loc[rows.index[:3], "contract_plan"] = "platinum"
    with pytest.raises(ChurnmlError, match=r"contract_plan.*'platinum'"):
        churn_model.predict_proba(rows)
    # a missing category is not new: it is scored as missing
    rows = _test_rows(churn_model, features).copy()
    rows.loc[rows.index[:3], "contract_plan"] = None
    assert np.isfinite(churn_model.predict_proba(rows)).all()


def test_prepare_orders_columns_and_does_not_mutate_input(tables, churn_model):
    features, _, _ = tables
    rows = _test_rows(churn_model, features)
    shuffled = rows[list(reversed(rows.columns))]
    before = shuffled.copy()
    prepared = churn_model.prepare(shuffled)
    assert list(prepared.columns) == churn_model.features
    assert isinstance(prepared["account_segment"].dtype, pd.CategoricalDtype)
    pd.testing.assert_frame_equal(shuffled, before)
    np.testing.assert_array_equal(churn_model.predict_proba(shuffled), churn_model.predict_proba(rows))


def test_save_and_load_give_identical_predictions_without_pickles(tmp_path, tables, churn_model):
    features, _, _ = tables
    folder = churn_model.save(tmp_path / "models" / "churn")
    assert sorted(p.name for p in folder.iterdir()) == ["model.json", "model.txt"]
    meta = json.loads((folder / "model.json").read_text())
    assert (
        meta["calibrator"]["method"] == ModelConfig().calibration and meta["features"] == churn_model.features
    )
    assert (folder / "model.txt").read_text().startswith("tree")
    loaded = TrainedModel.load(folder)
    rows = features  # every row, unlabeled included
    np.testing.assert_array_equal(loaded.predict_proba(rows), churn_model.predict_proba(rows))
    np.testing.assert_array_equal(loaded.predict_raw(rows), churn_model.predict_raw(rows))
    assert loaded.split == churn_model.split
    with pytest.raises(ChurnmlError, match="not a saved churnml model"):
        TrainedModel.load(tmp_path)


def test_drift_reference_is_stable_on_training_data_and_flags_a_shift(tables, churn_model):
    features, _, _ = tables
    train_rows = features[features["cutoff"].isin(churn_model.split.train)]
    drift = churn_model.drift(train_rows).set_index("feature")["psi"]
    assert set(drift.index) == {*churn_model.features, "score"}
    assert drift.drop("score").max() < 0.01
    shifted = churn_model.drift(
        train_rows.assign(
            adoption_license_utilisation_30d=lambda f: f["adoption_license_utilisation_30d"] + 0.5
        )
    )
    assert shifted.set_index("feature").loc["adoption_license_utilisation_30d", "psi"] > 0.5


# ----------------------------------------------------------------------------------------- baselines


def test_health_score_is_a_weighted_sum_of_standardised_signals(caplog):
    train = pd.DataFrame({"good": [0.0, 2.0, 4.0], "bad": [1.0, 1.0, 4.0], "text": ["a", "b", "c"]})
    with warnings.catch_warnings(), caplog.at_level("INFO", logger="churnml.modeling.baselines"):
        warnings.simplefilter("error")  # one log line, no UserWarning
        hs = HealthScore.fit(train, {"good": 2.0, "bad": -1.0, "absent_signal": 1.0}, "churn")
    assert [r.getMessage() for r in caplog.records] == [
        "health score: rebuilt from good, bad; not in the feature table: absent_signal"
    ]
    assert hs.weights == {"good": 2.0, "bad": -1.0}
    frame = pd.DataFrame({"good": [4.0, np.nan], "bad": [1.0, 4.0]})
    z_good = (4.0 - 2.0) / np.std([0.0, 2.0, 4.0])
    z_bad = (np.array([1.0, 4.0]) - 2.0) / np.std([1.0, 1.0, 4.0])
    expected_health = np.array([2 * z_good - z_bad[0], 0.0 - z_bad[1]])  # missing counts as average
    np.testing.assert_allclose(hs.health(frame), expected_health)
    np.testing.assert_allclose(hs.score(frame), -expected_health)  # churn risk = -health
    assert HealthScore.fit(train, {"good": 1.0}, "expansion").sign == 1.0
    with pytest.raises(ChurnmlError, match="none of"):
        HealthScore.fit(train, {"absent_signal": 1.0}, "churn")


def test_baselines_are_fitted_on_the_model_periods_and_are_informative(tables, churn_model):
    features, labels, _ = tables
    with warnings.catch_warnings():
        warnings.simplefilter("error")  # every configured health signal exists in this table
        baselines = fit_baselines(churn_model, features, labels, EvaluationConfig())
    rows = _test_rows(churn_model, features).merge(labels, on=["account_id", "cutoff"])
    from sklearn.metrics import roc_auc_score

    y = rows["churned_within_90d"].astype(int)
    preds = baselines.predict_proba(rows)
    assert set(preds) == {"logistic", "health_score"}
    assert roc_auc_score(y, preds["logistic"]) > 0.65 and roc_auc_score(y, preds["health_score"]) > 0.6
    assert baselines.logistic.named_steps["model"].class_weight == "balanced"


# --------------------------------------------------------------------------------------- evaluation


def test_evaluation_scores_every_model_on_the_same_test_rows(tables, churn_model):
    features, labels, truth = tables
    ev = evaluate_model(churn_model, features, labels, EvaluationConfig(), truth=truth["churn"])
    test = ev.scores[ev.scores["split"] == "test"]
    keys = {m: set(map(tuple, g[["account_id", "cutoff"]].to_numpy())) for m, g in test.groupby("model")}
    assert set(keys) == {"lightgbm", "logistic", "health_score", "oracle"}
    assert len({frozenset(v) for v in keys.values()}) == 1
    assert set(test["cutoff"]) == set(churn_model.split.test)
    assert ev.n["test"] == len(next(iter(keys.values()))) and ev.n["train"] == churn_model.info["n_train"]
    # the oracle knows the true probabilities: the model cannot rank better than it by much
    assert ev.metric("roc_auc", "oracle") > ev.metric("roc_auc") - 0.03
    assert ev.metric("roc_auc") > 0.65
    without_truth = evaluate_model(churn_model, features, labels, EvaluationConfig())
    assert "oracle" not in set(without_truth.metrics["model"])


def test_oracle_reads_the_simulator_truth_columns_and_needs_full_coverage(tables, churn_model):
    features, labels, truth = tables
    monthly = truth["churn"].rename(columns={"probability": "p_churn"}).assign(p_expand=0.5, health=0.0)
    ev = evaluate_model(churn_model, features, labels, EvaluationConfig(), truth=monthly)
    oracle = ev.scores[ev.scores["model"] == "oracle"].merge(truth["churn"], on=["account_id", "cutoff"])
    np.testing.assert_array_equal(oracle["score"], oracle["probability"])
    partial = monthly[monthly["cutoff"] != max(churn_model.split.test)]
    with pytest.warns(UserWarning, match="no oracle"):
        ev = evaluate_model(churn_model, features, labels, EvaluationConfig(), truth=partial)
    assert "oracle" not in set(ev.metrics["model"])


def test_oracle_refuses_truth_at_another_horizon(tables):
    """`-S labels.horizon_days=60` with data/truth still at 90 days: a 60-day model against a 90-day ceiling is
    refused, naming both horizons; truth regenerated at 60 days is the oracle."""
    features, labels, truth = tables
    labels60 = labels.rename(columns=lambda c: c.replace("_within_90d", "_within_60d"))
    model60 = train_model(features, labels60, "churn", fast_config(), SplitConfig(), 60)
    with pytest.raises(ChurnmlError, match=r"truth: .* at a 90-day horizon, labels at 60 days"):
        evaluate_model(model60, features, labels60, EvaluationConfig(), truth=truth["churn"])
    at60 = truth["churn"].assign(horizon_days=60)
    ev = evaluate_model(model60, features, labels60, EvaluationConfig(), truth=at60)
    assert "oracle" in set(ev.metrics["model"])
    with pytest.raises(ChurnmlError, match="horizon_days"):  # a truth that does not say its horizon
        evaluate_model(
            model60, features, labels60, EvaluationConfig(), truth=at60.drop(columns="horizon_days")
        )


def test_evaluation_needs_arr_segment_and_touch_columns(tables, churn_model):
    features, labels, _ = tables
    with pytest.raises(ChurnmlError, match="account_touch_model"):
        evaluate_model(
            churn_model, features.drop(columns=["account_touch_model"]), labels, EvaluationConfig()
        )


def test_expansion_uses_its_own_label(tables):
    features, labels, _ = tables
    model = train_model(
        features, labels, "expansion", fast_config(monotone_churn={"usage_typo": 1}), SplitConfig(), HORIZON
    )
    # the churn-only monotone map is ignored for expansion
    assert model.label_column == "expanded_within_90d" and "monotone_constraints" not in model.params


def test_fixed_split_dates_reproduce_a_published_protocol():
    # the crm6 SOURCE.md protocol: monthly 2022-03..2023-11, train before 2023-05, test 2023-06..2023-11
    cutoffs = pd.date_range("2022-03-01", "2023-11-01", freq="MS")
    cfg = SplitConfig(
        validation_periods=3,
        purge_days=31,
        test_start="2023-06-01",
        test_end="2023-12-01",
        train_end="2023-05-01",
    )
    split = split_periods(cutoffs, cfg, 31)
    days = split.to_dict()
    assert days["test"] == [f"2023-{m:02d}-01" for m in range(6, 12)]
    assert days["validation"] == ["2023-02-01", "2023-03-01", "2023-04-01"]
    assert days["train"][0] == "2022-03-01" and days["train"][-1] == "2023-01-01"
    assert "2023-05-01" not in days["train"] + days["validation"] + days["test"]


def test_fixed_split_dates_outside_the_data_fail_clearly():
    cutoffs = pd.date_range("2022-03-01", "2023-11-01", freq="MS")
    with pytest.raises(ChurnmlError, match=r"no labeled cutoff in \[2030-01-01"):
        split_periods(cutoffs, SplitConfig(test_start="2030-01-01"), 31)
    with pytest.raises(ChurnmlError, match="split.train_end"):
        split_periods(cutoffs, SplitConfig(test_start="2023-06-01", train_end="soon"), 31)


# ---------------------------------------------------------------- model selection, points from the base rate


def _validation_rows(model: TrainedModel, features: pd.DataFrame) -> pd.DataFrame:
    return features[features["cutoff"].isin(model.split.validation)]


@pytest.mark.parametrize(
    "weights", [None, {"lightgbm": 0.0, "logistic": 1.0}, {"lightgbm": 0.5, "logistic": 0.5}]
)
def test_points_start_from_the_mean_predicted_probability_and_add_up(tables, churn_model, weights, tmp_path):
    from churnml.explain.contributions import explain_accounts
    from churnml.modeling.model import explanation_reference

    features, _, _ = tables
    model = churn_model
    if weights is not None:  # the same fitted parts, served as the logistic model or the blend
        model = TrainedModel.load(churn_model.save(tmp_path / "model"))
        model.weights = dict(weights)
        model.info["reference"] = explanation_reference(model, _validation_rows(model, features))
    assert model.info["selection"]["chosen"] in ("lightgbm", "logistic", "blend")
    calibration_rows = _validation_rows(model, features)
    out = explain_accounts(model, calibration_rows)
    first = out.groupby(["account_id", "as_of"], sort=False).first()
    mean_p = model.predict_proba(calibration_rows).mean()
    assert abs(first["base_probability"].iloc[0] - mean_p) < 1e-9
    assert np.ptp(first["base_probability"]) == 0
    sums = out.groupby(["account_id", "as_of"], sort=False)
    np.testing.assert_allclose(
        sums["probability_points"].sum(), first["probability"] - first["base_probability"], atol=1e-12
    )
    np.testing.assert_allclose(first["base_value"] + sums["shap_value"].sum(), first["raw_score"], atol=1e-9)
    np.testing.assert_allclose(first["probability"], model.predict_proba(calibration_rows), atol=1e-12)


def test_linear_shap_is_exact_for_a_linear_model(tables, churn_model):
    from churnml.modeling.model import linear_contributions, linear_raw

    features, _, _ = tables
    rows = _test_rows(churn_model, features).head(40)
    x = churn_model.prepare(rows)
    phi, base = linear_contributions(churn_model.linear, x, churn_model.features)
    np.testing.assert_allclose(base + phi.sum(axis=1), linear_raw(churn_model.linear, x), atol=1e-9)
    # a linear model's exact Shapley value of a feature depends on that feature only
    moved = x.copy()
    numeric = next(c for c in churn_model.features if c not in churn_model.categories)
    moved[numeric] = moved[numeric] + 1.0
    phi2, _ = linear_contributions(churn_model.linear, moved, churn_model.features)
    j = churn_model.features.index(numeric)
    np.testing.assert_allclose(np.delete(phi2, j, axis=1), np.delete(phi, j, axis=1), atol=1e-12)
    assert not np.allclose(phi2[:, j], phi[:, j])


def test_selection_is_recorded_and_the_served_model_is_the_chosen_one(tables, churn_model):
    features, _, _ = tables
    sel = churn_model.info["selection"]
    assert set(sel["roc_auc"]) == {"lightgbm", "logistic", "blend"}
    assert sel["roc_auc"][sel["chosen"]] - max(
        v for k, v in sel["roc_auc"].items() if k != sel["chosen"]
    ) == (pytest.approx(sel["margin"]))
    only = train_model(*tables[:2], "churn", fast_config(candidates=["lightgbm"]), SplitConfig(), HORIZON)
    assert only.info["selection"]["chosen"] == "lightgbm" and only.weights == {
        "lightgbm": 1.0,
        "logistic": 0.0,
    }
    rows = _test_rows(churn_model, features)
    from churnml.modeling.model import linear_raw

    x = churn_model.prepare(rows)
    w = churn_model.weights
    expected = w["lightgbm"] * churn_model.booster.predict(x, raw_score=True) + w["logistic"] * linear_raw(
        churn_model.linear, x
    )
    np.testing.assert_allclose(churn_model.predict_raw(rows), expected, atol=1e-12)


def test_a_lead_over_the_logistic_regression_inside_its_standard_error_serves_the_logistic_regression():
    from churnml.modeling.metrics import roc_auc_difference
    from churnml.modeling.model import select_candidate

    rng = np.random.default_rng(0)
    n = 400
    y = (rng.random(n) < 0.25).astype(int)
    signal = y + rng.normal(size=n)
    linear = signal + 0.3 * rng.normal(size=n)
    tree = signal + 0.3 * rng.normal(size=n) + 0.02 * y  # a little better on these rows, by chance or not
    d, se = roc_auc_difference(y, tree, linear)
    assert 0 < d < se  # the premise: LightGBM leads by less than one standard error
    cfg = fast_config(candidates=["lightgbm", "logistic"])
    chosen = select_candidate(y, tree, linear, cfg, "rows")
    assert chosen["leader"] == "lightgbm" and chosen["chosen"] == "logistic"
    assert chosen["weights"] == {"lightgbm": 0.0, "logistic": 1.0}
    gain = chosen["leader_over_logistic"]
    assert gain["difference"] == pytest.approx(d) and gain["standard_error"] == pytest.approx(se)
    assert gain["rule_standard_errors"] == 1.0
    # the rule's width: 0 lets the higher ROC-AUC win outright, as a lead of many standard errors always does
    assert select_candidate(y, tree, linear, fast_config(selection_se=0.0), "rows")["chosen"] == "lightgbm"
    strong = signal + 0.05 * rng.normal(size=n) + 0.8 * y
    assert select_candidate(y, strong, linear, cfg, "rows")["chosen"] == "lightgbm"
    # the blend's lead is judged the same way, on the blend's own log-odds
    blend = select_candidate(y, strong, linear, fast_config(), "rows")
    assert blend["leader"] in ("lightgbm", "blend") and blend["chosen"] == blend["leader"]


def test_out_of_fold_trees_are_scored_with_the_number_the_other_folds_chose():
    import lightgbm as lgb

    from churnml.modeling.model import _honest_scores

    rng = np.random.default_rng(1)
    x = pd.DataFrame({"a": rng.normal(size=300), "b": rng.normal(size=300)})
    y = (x["a"] + rng.normal(size=300) > 0).astype(int).to_numpy()
    w = np.ones(300)
    params = {"objective": "binary", "verbosity": -1, "learning_rate": 0.1, "seed": 0, "deterministic": True}
    booster = lgb.train(params, lgb.Dataset(x[:200], label=y[:200]), num_boost_round=30)
    held = x[200:]
    # the other folds stopped at 10 and 20 trees: this fold's held-out rows are scored with 15, never its own 30
    got = _honest_scores(booster, [30, 10, 20], 0, (x[:200], y[:200], w[:200]), held, params, [])
    np.testing.assert_allclose(got, booster.predict(held, raw_score=True, num_iteration=15))
    # more than this fold's booster has: trained on from its own training rows, to exactly that many trees
    more = _honest_scores(booster, [30, 50, 60], 0, (x[:200], y[:200], w[:200]), held, params, [])
    longer = lgb.train(params, lgb.Dataset(x[:200], label=y[:200]), num_boost_round=55)
    np.testing.assert_allclose(more, longer.predict(held, raw_score=True), atol=1e-9)
    assert booster.current_iteration() == 30  # the fold's own booster is left as it was


def test_health_score_without_most_of_its_signals_is_left_out_in_one_line(tables, churn_model, caplog):
    features, labels, _ = tables
    from churnml.config import HealthScoreConfig

    kept = next(iter(EvaluationConfig().health_score.weights))
    # one signal of three present (a third of the weight): not the rule a CS team wrote
    weights = {kept: 1.0, "signal_of_another_product": 1.0, "another_absent_signal": -1.0}
    cfg = EvaluationConfig(health_score=HealthScoreConfig(weights=weights))
    with warnings.catch_warnings(), caplog.at_level("INFO", logger="churnml.modeling.baselines"):
        warnings.simplefilter("error")
        baselines = fit_baselines(churn_model, features, labels, cfg)
    assert baselines.health is None
    assert len(caplog.records) == 1 and "left out of the comparison" in caplog.records[0].getMessage()


# ------------------------------------------------------------------ refit on train + validation (out of time)


def _period_rows(
    model: TrainedModel, features: pd.DataFrame, labels: pd.DataFrame, period: str
) -> pd.DataFrame:
    """The labeled rows of one period, in the order train_model reads them."""
    from churnml.modeling.split import labeled_frame

    data = labeled_frame(features[[*KEYS, *model.features]], labels, model.label_column)
    return data[model.split.assign(data["cutoff"]) == period]


@pytest.fixture(scope="module")
def unrefit_model(tables):
    features, labels, _ = tables
    return train_model(
        features, labels, "churn", fast_config(refit_on_validation=False), SplitConfig(), HORIZON
    )


def test_served_model_is_refit_on_train_and_validation_with_trees_scaled(tables, churn_model):
    import lightgbm as lgb

    from churnml.modeling.model import _class_weights, fit_linear

    features, labels, _ = tables
    refit = churn_model.info["refit"]
    train = _period_rows(churn_model, features, labels, "train")
    valid = _period_rows(churn_model, features, labels, "validation")
    assert refit["rows_train"] == len(train) == churn_model.info["n_train"]
    assert refit["rows"] == len(train) + len(valid) and len(valid) == churn_model.info["n_validation"] > 0
    assert refit["trees_before"] == churn_model.params["best_iteration"]
    assert refit["trees_refit"] == round(refit["trees_before"] * refit["rows"] / refit["rows_train"])
    assert refit["trees_refit"] > refit["trees_before"]
    assert churn_model.booster.num_trees() == refit["trees_refit"]
    # the served parts are exactly a fit on the train and validation rows, nothing else
    x = churn_model.prepare(pd.concat([train, valid]))
    y = np.concatenate([train["y"].to_numpy(), valid["y"].to_numpy()])
    w = _class_weights(y, "balanced")
    params = {k: v for k, v in churn_model.params.items() if k not in ("num_boost_round", "best_iteration")}
    expected = lgb.train(
        params,
        lgb.Dataset(x, label=y, weight=w, categorical_feature=list(churn_model.categories)),
        num_boost_round=refit["trees_refit"],
    )
    test = churn_model.prepare(_test_rows(churn_model, features))
    np.testing.assert_allclose(
        churn_model.booster.predict(test, raw_score=True), expected.predict(test, raw_score=True), atol=1e-12
    )
    linear = fit_linear(x, y, churn_model.categories)
    np.testing.assert_allclose(churn_model.linear["coef"], linear["coef"], atol=1e-12)
    # the logistic part is unweighted whatever model.class_weight says (LightGBM's): the plain logistic
    # regression on the same standardised design, no sample weights
    from sklearn.linear_model import LogisticRegression

    from churnml.modeling.model import _linear_design

    plain = LogisticRegression(C=1.0, solver="newton-cholesky", max_iter=200).fit(
        _linear_design(linear, x), y
    )
    np.testing.assert_allclose(churn_model.linear["coef"], plain.coef_[0], atol=1e-9)


def test_refit_keeps_the_train_period_choice_and_calibration_and_off_is_the_old_model(
    tables, churn_model, unrefit_model
):
    from churnml.modeling.model import fit_linear

    features, labels, _ = tables
    assert unrefit_model.info["refit"] is None
    # the validation period decided with train-period fits either way: same trees, choice and calibration
    assert unrefit_model.info["selection"] == churn_model.info["selection"]
    assert unrefit_model.calibrator == churn_model.calibrator
    # the score reference (drift, tiers) is the served model's own: the refit's probabilities on validation
    from churnml.modeling.drift import _numeric_reference

    valid = _period_rows(churn_model, features, labels, "validation")
    assert churn_model.distributions["score"] == _numeric_reference(churn_model.predict_proba(valid), 10)
    assert unrefit_model.distributions["score"] == _numeric_reference(unrefit_model.predict_proba(valid), 10)
    assert unrefit_model.booster.num_trees() == churn_model.info["refit"]["trees_before"]
    # off: the train period's early-stopped booster and logistic part, as before the refit existed
    train = _period_rows(unrefit_model, features, labels, "train")
    y = train["y"].to_numpy()
    linear = fit_linear(unrefit_model.prepare(train), y, unrefit_model.categories)
    np.testing.assert_allclose(unrefit_model.linear["coef"], linear["coef"], atol=1e-12)
    rows = _test_rows(churn_model, features)
    assert not np.allclose(unrefit_model.predict_raw(rows), churn_model.predict_raw(rows))


def test_refit_never_sees_the_test_period(tables, churn_model):
    features, labels, _ = tables
    test_cutoffs = churn_model.split.test
    in_test = labels["cutoff"].isin(test_cutoffs)
    flipped = labels.assign(
        churned_within_90d=labels["churned_within_90d"].where(~in_test, 1 - labels["churned_within_90d"])
    )
    rng = np.random.default_rng(1)
    moved = features.copy()
    tf = features["cutoff"].isin(test_cutoffs)
    for col in (
        "adoption_license_utilisation_30d",
        "usage_logins_trend_30d",
        "support_high_priority_count_30d",
    ):
        moved.loc[tf, col] = rng.permutation(moved.loc[tf, col].to_numpy())
    again = train_model(moved, flipped, "churn", fast_config(), SplitConfig(), HORIZON)
    assert again.split.to_dict() == churn_model.split.to_dict()
    assert again.info["refit"] == churn_model.info["refit"]
    assert again.booster.model_to_string() == churn_model.booster.model_to_string()
    assert again.linear == churn_model.linear and again.calibrator == churn_model.calibrator


def test_evaluation_leaves_out_the_refit_models_in_sample_validation_scores(
    tables, churn_model, unrefit_model
):
    from churnml.modeling.metrics import metrics_json

    features, labels, _ = tables
    refit_ev = evaluate_model(churn_model, features, labels, EvaluationConfig())
    plain_ev = evaluate_model(unrefit_model, features, labels, EvaluationConfig())
    served = refit_ev.scores[refit_ev.scores["model"] == "lightgbm"]
    assert set(served["split"]) == {"test"}
    assert {"validation", "test"} <= set(refit_ev.scores[refit_ev.scores["model"] == "logistic"]["split"])
    assert set(plain_ev.scores[plain_ev.scores["model"] == "lightgbm"]["split"]) == {"validation", "test"}
    doc, plain_doc = metrics_json(refit_ev), metrics_json(plain_ev)
    assert all(v is None for v in doc["validation"].values())
    assert plain_doc["validation"]["roc_auc"] is not None
    assert doc["n"]["validation"] == plain_doc["n"]["validation"] == churn_model.info["n_validation"]
    assert doc["test"]["roc_auc"] > 0.65 and doc["n"]["test"] == plain_doc["n"]["test"]
