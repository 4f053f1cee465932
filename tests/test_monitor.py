"""Realised performance: the exact join with matured labels, the metrics and advice, outputs, and on the simulator
a 12-month backtest whose realised metrics match the evaluate stage's test metrics, and a drift that shows decay.
"""

from __future__ import annotations

import datetime as dt
import json
import math
import shutil
import uuid

import numpy as np
import pandas as pd
import pytest

from churnml.config import Config, LabelsConfig, ModelConfig, SimulatorConfig
from churnml.errors import ChurnmlError
from churnml.modeling.metrics import roc_auc
from churnml.names import TARGETS
from churnml.scoring.advice import advise
from churnml.scoring.backtest import ModelCard, backtest, candidate_of
from churnml.scoring.batch import score_watermark
from churnml.scoring.monitor import (
    MonitorConfig,
    MonitorResult,
    monitor_document,
    monitor_performance,
    monitor_section,
    run_monitor,
    write_monitor_outputs,
)
from churnml.scoring.realised import (
    ALL,
    PERFORMANCE_COLUMNS,
    auc_standard_error,
    bootstrap_auc,
    expected_calibration_error,
    lift_at_k,
    performance_table,
    realised_rows,
    reliability_table,
    score_psi,
)
from churnml.warehouse.store import Warehouse

from _env import require_postgres
from tables import fast_lgbm

NOW = dt.datetime(2026, 1, 1, 12, 0, 0)
DAY = pd.Timestamp


def small_config(**monitor: float) -> Config:
    """The default config with a model that trains in a fraction of a second on one thread."""
    cfg = Config()
    cfg.model = ModelConfig(lgbm=fast_lgbm(n_estimators=60, early_stopping_rounds=15))
    cfg.features.threads = 1
    cfg.evaluation.csm_capacity_k = 20
    if monitor:
        cfg.monitor = MonitorConfig(**monitor)  # type: ignore[attr-defined]
    return cfg


def score_rows(entries: list[tuple], touch: str = "tech_touch") -> pd.DataFrame:
    """churn_scores rows from (account_id, as_of, churn version, expansion version, churn p, expansion p)."""
    return pd.DataFrame(
        {
            "account_id": [e[0] for e in entries],
            "as_of": pd.to_datetime([e[1] for e in entries]).astype("datetime64[us]"),
            "churn_model_version": [e[2] for e in entries],
            "expansion_model_version": [e[3] for e in entries],
            "churn_probability": [e[4] for e in entries],
            "expansion_probability": [e[5] for e in entries],
            "arr": 1200.0,
            "touch_model": touch,
            "scored_at": pd.Timestamp("2025-07-02"),
        }
    )


# ------------------------------------------------------------------------------------------- the join


def test_join_is_exact_on_account_and_as_of(edge_tables):
    # E4's only subscription ends on 2024-06-01: churned within 90 days of 06-01, not of 06-02
    scores = score_rows(
        [("E4", "2024-06-01", "v1", "e1", 0.9, 0.1), ("E4", "2024-06-02", "v1", "e1", 0.9, 0.1)]
    )
    rows = realised_rows(scores, edge_tables["subscriptions"], LabelsConfig(), DAY("2025-07-01"))
    churn = rows[rows["target"] == "churn"].set_index("as_of")["y"]
    assert churn[DAY("2024-06-01")] == 1
    assert churn[DAY("2024-06-02")] == 0


def test_a_label_counts_only_once_matured(edge_tables):
    # data end 2025-07-01: as_of + 90 + 30 <= data end holds up to 2025-03-03
    scores = score_rows(
        [("E7", day, "v1", "e1", 0.1, 0.1) for day in ("2025-03-02", "2025-03-03", "2025-03-04")]
    )
    rows = realised_rows(scores, edge_tables["subscriptions"], LabelsConfig(), DAY("2025-07-01"))
    matured = rows[rows["target"] == "churn"].set_index("as_of")["matured"]
    assert matured.to_dict() == {DAY("2025-03-02"): True, DAY("2025-03-03"): True, DAY("2025-03-04"): False}
    assert rows.loc[~rows["matured"], "y"].isna().all()


def test_versions_are_kept_apart_and_counted_once(edge_tables):
    scores = score_rows(
        [
            ("E2", "2024-06-01", "v1", "e1", 0.8, 0.1),
            ("E2", "2024-06-01", "v1", "e2", 0.8, 0.3),  # same churn model beside a second expansion model
            ("E2", "2024-06-01", "v2", "e1", 0.4, 0.1),
            ("E7", "2024-06-01", "v1", "e1", 0.2, 0.1),
        ]
    )
    rows = realised_rows(scores, edge_tables["subscriptions"], LabelsConfig(), DAY("2025-07-01"))
    churn = rows[rows["target"] == "churn"]
    assert churn.groupby("model_version").size().to_dict() == {"v1": 2, "v2": 1}
    assert churn.loc[churn["account_id"] == "E2", "y"].tolist() == [1, 1]  # E2 churns on 2024-06-10
    expansion = rows[rows["target"] == "expansion"]
    assert expansion.groupby("model_version").size().to_dict() == {"e1": 2, "e2": 1}


def test_scores_missing_a_column_fail_with_its_name(edge_tables):
    scores = score_rows([("E2", "2024-06-01", "v1", "e1", 0.8, 0.1)]).drop(columns="touch_model")
    with pytest.raises(ChurnmlError, match="touch_model"):
        realised_rows(scores, edge_tables["subscriptions"], LabelsConfig(), DAY("2025-07-01"))


# ---------------------------------------------------------------------------------------------- metrics


def test_reliability_and_ece():
    rng = np.random.default_rng(0)
    p = rng.uniform(0, 0.6, 20_000)
    y = (rng.random(len(p)) < p).astype(float)
    calibrated = reliability_table(y, p, bins=10)
    assert calibrated["count"].sum() == len(p) and len(calibrated) == 10
    assert expected_calibration_error(calibrated) < 0.02
    shifted = expected_calibration_error(reliability_table(y, p + 0.2, bins=10))
    assert shifted == pytest.approx(0.2, abs=0.02)


def test_lift_at_k_and_psi():
    y = np.array([1, 0, 0, 0, 1, 0, 0, 0, 0, 0], dtype=float)
    score = np.arange(10, 0, -1, dtype=float)  # row 0 ranks first
    # top 2: one positive of two; overall rate 0.2
    assert lift_at_k(y, score, 2) == pytest.approx(0.5 / 0.2)
    assert math.isnan(lift_at_k(np.zeros(10), score, 2))
    rng = np.random.default_rng(1)
    reference_scores = rng.beta(2, 8, 5000)
    edges = np.unique(np.quantile(reference_scores, np.linspace(0, 1, 11)[1:-1]))
    fractions = (
        np.r_[np.bincount(np.searchsorted(edges, reference_scores), minlength=len(edges) + 1), 0] / 5000
    )
    reference = {"edges": edges.tolist(), "fractions": fractions.tolist()}
    assert score_psi(rng.beta(2, 8, 5000), reference) < 0.02
    assert score_psi(rng.beta(4, 6, 5000), reference) > 0.5
    assert math.isnan(score_psi(reference_scores, {}))


def test_bootstrap_interval_covers_the_auc():
    rng = np.random.default_rng(2)
    p = rng.random(400)
    y = (rng.random(400) < p).astype(float)
    lo, hi = bootstrap_auc(y, p, n=200, seed=0)
    assert lo < roc_auc(y, p) < hi
    assert hi - lo < 0.2
    assert all(math.isnan(v) for v in bootstrap_auc(np.zeros(10), p[:10]))


def synthetic_rows(as_ofs: list[str], n: int = 300, shift: float = 0.0, seed: int = 0) -> pd.DataFrame:
    """Realised rows of one churn model ``"1"`` with a known relation between probability and outcome."""
    rng = np.random.default_rng(seed)
    parts = []
    for day in as_ofs:
        p = rng.uniform(0.01, 0.5, n)
        y = (rng.random(n) < p).astype(int)
        parts.append(
            pd.DataFrame(
                {
                    "target": "churn",
                    "account_id": [f"A{i:04d}" for i in range(n)],
                    "as_of": DAY(day),
                    "model_version": "1",
                    "probability": np.clip(p + shift, 0, 1),
                    "y": pd.array(y, dtype="Int8"),
                    "arr": rng.uniform(1000, 5000, n),
                    "touch_model": rng.choice(["high_touch", "low_touch", "tech_touch"], n),
                    "matured": True,
                }
            )
        )
    return pd.concat(parts, ignore_index=True)


def card(test_roc_auc: float, trained_through: str = "2025-01-01") -> dict[tuple[str, str], ModelCard]:
    return {("churn", "1"): ModelCard("churn", "1", DAY(trained_through), test_roc_auc=test_roc_auc)}


def test_performance_table_rows_per_tier_and_immature_as_ofs():
    rows = synthetic_rows(["2025-03-01", "2025-04-01"])
    later = rows[rows["as_of"] == DAY("2025-04-01")].index
    rows.loc[later, "y"] = pd.NA
    rows.loc[later, "matured"] = False
    perf, reliability = performance_table(rows, card(0.8), 20, MonitorConfig(), NOW)
    assert list(perf.columns) == PERFORMANCE_COLUMNS
    assert len(perf) == 2 * 4  # all + three tiers, per as-of
    first = perf[(perf["as_of"] == DAY("2025-03-01")) & (perf["touch_model"] == ALL)].iloc[0]
    mine = rows[rows["as_of"] == DAY("2025-03-01")]
    assert first["n"] == 300 and first["n_positive"] == int(mine["y"].sum())
    assert first["roc_auc"] == pytest.approx(roc_auc(mine["y"].to_numpy(float), mine["probability"]))
    assert first["months_since_training"] == pytest.approx(59 / (365.25 / 12))
    tiers = perf[(perf["as_of"] == DAY("2025-03-01")) & (perf["touch_model"] != ALL)]
    assert tiers["n"].sum() == 300
    pending = perf[perf["as_of"] == DAY("2025-04-01")]
    assert (
        not pending["matured"].any()
        and pending["roc_auc"].isna().all()
        and pending["n_positive"].isna().all()
    )
    assert set(reliability["as_of"]) == {DAY("2025-03-01")}


def test_advice_follows_the_margins():
    rows = synthetic_rows(["2025-01-01", "2025-02-01", "2025-03-01"])
    realised = roc_auc(rows["y"].to_numpy(float), rows["probability"])
    mcfg = MonitorConfig(
        auc_drop_warn=0.03, auc_drop_retrain=0.05, ece_warn=0.05, ece_retrain=0.1, significance_z=0
    )

    def status(test_auc: float, shift: float = 0.0) -> pd.Series:
        data = synthetic_rows(["2025-01-01", "2025-02-01", "2025-03-01"], shift=shift)
        perf, _ = performance_table(data, card(test_auc), 20, mcfg, NOW)
        return advise(data, perf, card(test_auc), mcfg).iloc[0]

    assert status(realised)["status"] == "ok"
    assert status(realised + 0.04)["status"] == "warn"
    advice = status(realised + 0.10)
    assert advice["status"] == "retrain" and "below the test ROC-AUC" in advice["reasons"][0]
    assert advice["realised_roc_auc"] == pytest.approx(realised)
    assert advice["roc_auc_low"] < realised < advice["roc_auc_high"]
    miscalibrated = status(realised, shift=0.3)
    assert miscalibrated["status"] == "retrain" and "calibration" in miscalibrated["reasons"][0]


def test_a_drop_must_exceed_its_sampling_error():
    def advice(n: int, test_n: int) -> pd.Series:
        rows = synthetic_rows(["2025-01-01", "2025-02-01", "2025-03-01"], n=n)
        auc = roc_auc(rows["y"].to_numpy(float), rows["probability"])
        positives = float(rows["y"].mean() * test_n)
        cards = {
            ("churn", "1"): ModelCard(
                "churn", "1", DAY("2025-01-01"), auc + 0.06, test_n=test_n, test_positives=positives
            )
        }
        perf, _ = performance_table(rows, cards, 20, MonitorConfig(), NOW)
        return advise(rows, perf, cards, MonitorConfig()).iloc[0]

    small = advice(n=100, test_n=300)  # ~75 positives a side: a 0.06 drop is within sampling error
    assert small["status"] == "ok" and 1.96 * small["auc_drop_se"] > 0.06
    large = advice(n=3000, test_n=9000)
    assert large["status"] == "retrain" and large["auc_drop"] > 1.96 * large["auc_drop_se"]


def test_auc_standard_error_matches_the_bootstrap():
    rng = np.random.default_rng(3)
    p = rng.random(600)
    y = (rng.random(600) < p * 0.5).astype(float)
    auc = roc_auc(y, p)
    resampled = []
    for _ in range(400):
        idx = rng.integers(0, 600, 600)
        resampled.append(roc_auc(y[idx], p[idx]))
    assert auc_standard_error(auc, y.sum(), 600 - y.sum()) == pytest.approx(np.std(resampled), rel=0.2)
    assert math.isnan(auc_standard_error(auc, math.nan, 10))


def test_advice_waits_for_enough_matured_labels():
    rows = synthetic_rows(["2025-01-01"], n=50)
    perf, _ = performance_table(rows, card(0.9), 20, MonitorConfig(), NOW)
    assert advise(rows, perf, card(0.9), MonitorConfig())["status"].iloc[0] == "insufficient_labels"
    rows = rows.assign(y=pd.array([pd.NA] * len(rows), dtype="Int8"), matured=False)
    perf, _ = performance_table(rows, card(0.9), 20, MonitorConfig(), NOW)
    assert advise(rows, perf, card(0.9), MonitorConfig())["status"].iloc[0] == "awaiting_labels"


def test_advice_judges_the_version_in_use_at_the_latest_as_of():
    old = synthetic_rows(["2025-01-01", "2025-02-01"], shift=0.3)  # badly calibrated old model ...
    new = synthetic_rows(["2025-03-01"], seed=5).assign(model_version="2")  # ... replaced by a good one
    rows = pd.concat([old, new], ignore_index=True)
    cards = card(0.5) | {("churn", "2"): ModelCard("churn", "2", DAY("2025-02-15"), test_roc_auc=0.5)}
    perf, _ = performance_table(rows, cards, 20, MonitorConfig(), NOW)
    advice = advise(rows, perf, cards, MonitorConfig()).iloc[0]
    assert advice["model_version"] == "2" and advice["periods"] == 1 and advice["n"] == 300
    assert advice["status"] != "retrain"  # the old model's miscalibration is not held against the new one


def test_outputs_document_and_report_section(tmp_path):
    rows = synthetic_rows(["2025-01-01", "2025-02-01", "2025-03-01"])
    perf, reliability = performance_table(rows, card(0.95), 20, MonitorConfig(), NOW)
    advice = advise(rows, perf, card(0.95), MonitorConfig())
    result = MonitorResult(perf, reliability, rows, advice)
    result.document = monitor_document(result, DAY("2025-08-01"), NOW)
    write_monitor_outputs(result, tmp_path / "metrics" / "monitor.json", tmp_path / "plots" / "monitor")
    document = json.loads((tmp_path / "metrics" / "monitor.json").read_text())
    assert document["retrain_recommended"] is True
    assert document["targets"]["churn"]["status"] == "retrain"
    assert document["as_of_dates"] == {"scored": 3, "matured": 3}
    decay = pd.read_csv(tmp_path / "plots" / "monitor" / "decay.csv")
    assert len(decay) == 3 and {"months_since_training", "roc_auc", "test_roc_auc"} <= set(decay.columns)
    assert (tmp_path / "plots" / "monitor" / "reliability.csv").is_file()
    section = monitor_section(perf, document)
    assert section["retrain_recommended"] is True
    assert section["advice"]["churn"]["status"] == "retrain"
    assert len(section["decay"]["churn"]["roc_auc"]) == 3
    assert section["latest"]["churn"]["as_of"] == "2025-03-01"
    assert {r["touch_model"] for r in section["by_touch_tier"]["churn"]} == {
        "high_touch",
        "low_touch",
        "tech_touch",
    }
    json.dumps(section)  # JSON-friendly throughout


# ------------------------------------------------------------------------------------- the warehouse table


@pytest.fixture(params=["duckdb", pytest.param("postgresql", marks=pytest.mark.postgres), "sqlite"])
def warehouse(request, tmp_path):
    if request.param == "duckdb":
        wh, schema = Warehouse(f"duckdb:///{tmp_path / 'wh.duckdb'}"), ""
    elif request.param == "sqlite":
        wh, schema = Warehouse(f"sqlite:///{tmp_path / 'wh.sqlite'}"), ""
    else:
        url = require_postgres()
        schema = f"churnml_test_{uuid.uuid4().hex[:12]}"
        wh = Warehouse(url, schema=schema)
    yield wh
    wh.close()
    if schema:
        import sqlalchemy as sa

        engine = sa.create_engine(require_postgres())
        with engine.begin() as conn:
            conn.execute(sa.text(f'DROP SCHEMA IF EXISTS "{schema}" CASCADE'))
        engine.dispose()


def test_performance_writes_replace_by_key_in_one_transaction(warehouse):
    rows = synthetic_rows(["2025-01-01", "2025-02-01"])
    perf, _ = performance_table(rows, card(0.8), 20, MonitorConfig(), NOW)
    assert warehouse.write_performance(perf) == len(perf)
    assert warehouse.write_performance(perf) == len(perf)  # idempotent
    back = warehouse.read_performance()
    assert len(back) == len(perf)
    assert back["matured"].dtype == "boolean" and back["matured"].all()
    expected = perf.sort_values(["as_of", "target", "model_version", "touch_model"], ignore_index=True)
    assert np.allclose(back["roc_auc"], expected["roc_auc"]) and (back["n"] == expected["n"]).all()
    # one key rewritten: its row changes, the others stay
    changed = perf.iloc[[0]].assign(roc_auc=0.123, matured=False)
    warehouse.write_performance(changed)
    back = warehouse.read_performance()
    assert len(back) == len(perf)
    key = back[
        (back["as_of"] == perf["as_of"].iloc[0]) & (back["touch_model"] == perf["touch_model"].iloc[0])
    ]
    assert key["roc_auc"].iloc[0] == pytest.approx(0.123) and not key["matured"].iloc[0]
    # a bad frame writes nothing
    bad = pd.concat([perf.iloc[[1]].assign(roc_auc=0.5), perf.iloc[[1]]], ignore_index=True)
    with pytest.raises(ChurnmlError, match="appears more than once"):
        warehouse.write_performance(bad)
    with pytest.raises(ChurnmlError, match="unknown column"):
        warehouse.write_performance(perf.assign(extra=1))
    assert np.allclose(
        warehouse.read_performance()["roc_auc"].iloc[1:], back["roc_auc"].iloc[1:], equal_nan=True
    )


# ------------------------------------------------------------------------------------------ on the simulator


def _eval_auc_by_cutoff(evaluation) -> dict:
    test = evaluation.scores[
        (evaluation.scores["model"] == "lightgbm") & (evaluation.scores["split"] == "test")
    ]
    return test


@pytest.fixture(scope="module")
def replay(tmp_path_factory):
    """A 3-year portfolio; the evaluate stage's model ("1") and an older one ("0"); a 12-month backtest; monitor.

    "0" is what the pipeline would have trained on the first as-of of the backtest; "1" is trained on the
    whole history. The backtest runs over the 12 months ending at the last test cutoff of "1".
    """
    from churnml.contract.validate import DateBounds, validate_tables
    from churnml.dataset.labels import build_labels
    from churnml.dataset.spine import build_spine, data_range, training_cutoffs
    from churnml.features.engine import build_features
    from churnml.modeling.evaluation import evaluate_model
    from churnml.modeling.model import train_model
    from churnml.sources.simulate import simulate

    root = tmp_path_factory.mktemp("replay")
    # three years from the simulator's start reach near today: pin the plausible range's end
    history = simulate(SimulatorConfig(accounts=250, months=36, seed=3))[0]
    tables = validate_tables(history, bounds=DateBounds.of(max_date="2027-12-31")).tables
    cfg = small_config()
    spine = build_spine(tables["subscriptions"], training_cutoffs(tables, cfg.spine))
    features = build_features(tables, spine, cfg.features)
    data_end = data_range(tables)[1]
    labels = build_labels(tables["subscriptions"], spine, cfg.labels, data_end)
    models = {t: train_model(features, labels, t, cfg.model, cfg.split, 90) for t in TARGETS}
    evaluation = evaluate_model(models["churn"], features, labels, cfg.evaluation)
    test_cutoffs = models["churn"].split.test
    first = test_cutoffs[-1] - pd.DateOffset(months=11)
    early_features = features[features["cutoff"] <= first]
    early_labels = build_labels(
        tables["subscriptions"], early_features[["account_id", "cutoff"]], cfg.labels, first
    )
    early = {t: train_model(early_features, early_labels, t, cfg.model, cfg.split, 90) for t in models}
    candidates = []
    for target in models:
        test_auc = evaluation.metric("roc_auc") if target == "churn" else math.nan
        candidates.append(candidate_of(models[target], "1", cfg.labels, test_auc))
        candidates.append(candidate_of(early[target], "0", cfg.labels))
    url = f"duckdb:///{root / 'warehouse.duckdb'}"
    result = backtest(
        tables, cfg, first, test_cutoffs[-1], "1mo", root=root, warehouse_url=url, candidates=candidates
    )
    monitored = run_monitor(tables, cfg, root=root, warehouse_url=url, track=False, now=NOW)
    return {
        "tables": tables,
        "cfg": cfg,
        "root": root,
        "url": url,
        "models": models,
        "early": early,
        "evaluation": evaluation,
        "backtest": result,
        "monitor": monitored,
        "data_end": data_end,
    }


@pytest.mark.slow
def test_backtest_uses_the_latest_model_that_existed(replay):
    runs = replay["backtest"].runs
    cards = replay["backtest"].cards
    assert len(runs) == 12 and (runs["status"] == "succeeded").all()
    for run in runs.itertuples():
        for target in TARGETS:
            version = getattr(run, f"{target}_model_version")
            assert cards[(target, version)].trained_through <= run.as_of  # never a model from the future
            newer = cards[(target, "1")].trained_through <= run.as_of
            assert version == ("1" if newer else "0")
    assert {"0", "1"} == set(runs["churn_model_version"])
    with Warehouse(replay["url"]) as wh:
        recorded = wh.read_runs()
        assert len(recorded) == 12 and (recorded["run_kind"] == "backtest").all()
        assert (recorded["status"] == "succeeded").all()


@pytest.mark.slow
def test_realised_auc_equals_the_test_auc_with_the_same_model_and_rows(replay):
    evaluation, rows = replay["evaluation"], replay["monitor"].rows
    test = _eval_auc_by_cutoff(evaluation)
    churn = rows[(rows["target"] == "churn") & (rows["model_version"] == "1")]
    same = sorted(set(churn["as_of"]) & set(test["cutoff"]))
    assert len(same) >= 2  # the test cutoffs at which the evaluated model already existed
    realised = churn[churn["as_of"].isin(same)].rename(columns={"as_of": "cutoff"})
    expected = test[test["cutoff"].isin(same)]
    joined = expected.merge(realised, on=["account_id", "cutoff"], how="outer", indicator=True)
    assert (joined["_merge"] == "both").all()  # the same accounts x cutoffs
    assert (joined["y_x"] == joined["y_y"]).all()  # the same labels
    assert np.allclose(joined["score"], joined["probability"], rtol=0, atol=1e-9)  # the same scores
    perf = replay["monitor"].performance
    for day in same:
        row = perf[(perf["target"] == "churn") & (perf["as_of"] == day) & (perf["model_version"] == "1")]
        day_rows = expected[expected["cutoff"] == day]
        assert row[row["touch_model"] == ALL]["roc_auc"].iloc[0] == pytest.approx(
            roc_auc(day_rows["y"].to_numpy(float), day_rows["score"]), abs=1e-12
        )
    assert roc_auc(realised["y"].to_numpy(float), realised["probability"]) == pytest.approx(
        roc_auc(expected["y"].to_numpy(float), expected["score"]), abs=1e-12
    )


@pytest.mark.slow
def test_realised_metrics_agree_with_the_test_metrics_within_sampling_error(replay):
    evaluation, rows = replay["evaluation"], replay["monitor"].rows
    test = _eval_auc_by_cutoff(evaluation)
    period = rows[(rows["target"] == "churn") & rows["as_of"].isin(set(test["cutoff"]))]
    assert set(period["as_of"]) == set(test["cutoff"])  # the whole test period was backtested and has matured
    y, p = period["y"].to_numpy(float), period["probability"].to_numpy(float)
    lo, hi = bootstrap_auc(y, p, n=300, seed=0)
    assert lo <= evaluation.metric("roc_auc") <= hi
    assert period["y"].mean() == pytest.approx(test["y"].mean(), abs=1e-12)  # same accounts, same outcomes


@pytest.mark.slow
def test_monitor_writes_the_table_and_files_and_reruns_idempotently(replay, tmp_path, monkeypatch):
    root, url, cfg = replay["root"], replay["url"], replay["cfg"]
    result = replay["monitor"]
    with Warehouse(url) as wh:
        stored = wh.read_performance()
    assert len(stored) == len(result.performance) > 0
    assert set(stored["touch_model"]) >= {ALL, "high_touch", "low_touch", "tech_touch"}
    assert stored.loc[stored["touch_model"] == ALL, "psi_score"].notna().all()  # cards came from the backtest
    assert stored["matured"].all()  # every as-of ended by the last labeled cutoff
    document = json.loads((root / cfg.paths.metrics / "monitor.json").read_text())
    assert document["as_of_dates"] == {"scored": 12, "matured": 12}
    assert document["targets"]["churn"]["model_version"] == "1"
    decay = pd.read_csv(root / cfg.paths.plots / "monitor" / "decay.csv")
    assert len(decay) == 24
    store = f"sqlite:///{tmp_path / 'mlflow.db'}"
    monkeypatch.setenv("MLFLOW_TRACKING_URI", store)
    again = run_monitor(replay["tables"], cfg, root=root, warehouse_url=url, track=True, now=NOW)
    with Warehouse(url) as wh:
        assert len(wh.read_performance()) == len(again.performance) == len(stored)
    import mlflow

    client = mlflow.MlflowClient(tracking_uri=store)
    [run] = client.search_runs([client.get_experiment_by_name(cfg.tracking.experiment).experiment_id])
    assert run.data.tags["kind"] == "monitor"
    assert run.data.tags["retrain_recommended"] == str(again.retrain_recommended).lower()
    assert run.data.metrics["targets.churn.realised_roc_auc"] == pytest.approx(
        again.document["targets"]["churn"]["realised_roc_auc"]
    )
    shutil.rmtree(root / cfg.paths.models / "cards")
    with pytest.raises(ChurnmlError, match="no scores"):
        run_monitor(
            replay["tables"], cfg, root=root, warehouse_url=f"duckdb:///{root / 'empty.duckdb'}", track=False
        )


@pytest.mark.slow
def test_concept_drift_shows_decay_and_a_retrain_recommendation(tmp_path):
    """From 2025-11-01 usage stops protecting accounts (the simulator's drift); a model trained before it and
    kept (``retrain="fixed"``) is judged on the as-ofs after it. The same run without the drift is "ok"
    (measured: realised ROC-AUC within 0.02 of the test ROC-AUC; not repeated here, it costs another run)."""
    from churnml.contract.validate import DateBounds, validate_tables
    from churnml.sources.simulate import simulate

    drift = DAY("2025-11-01")
    sim = SimulatorConfig(
        accounts=500, months=48, start_date="2023-01-01", seed=5, drift_date="2025-11-01", drift_strength=1.0
    )
    # the simulated history runs past today: widen the plausible range to the end of the simulation
    tables = validate_tables(simulate(sim)[0], bounds=DateBounds.of(max_date="2027-12-31")).tables
    cfg = small_config()
    result = backtest(
        tables,
        cfg,
        "2025-08-01",
        "2026-01-01",
        "1mo",
        root=tmp_path,
        retrain="fixed",
        candidates=[],
        write=False,
    )
    assert result.runs["churn_model_version"].unique().tolist() == ["backtest-2025-08-01"]
    scores = result.scores.assign(scored_at=pd.Timestamp("2027-01-01"))
    monitored = monitor_performance(scores, tables, cfg, cards=result.cards, now=NOW)
    churn = monitored.decay().query("target == 'churn'").sort_values("as_of")
    assert churn["months_since_training"].is_monotonic_increasing and len(churn) == 6
    before = churn[churn["as_of"] + pd.Timedelta(days=90) <= drift]  # label windows wholly before the drift
    after = churn[churn["as_of"] >= drift]  # wholly after it
    assert len(before) == 1 and len(after) == 3
    test_auc = churn["test_roc_auc"].iloc[0]
    assert abs(before["roc_auc"].iloc[0] - test_auc) < 0.1  # as promised at training, before the drift
    pooled_after = _pooled_auc(monitored.rows, after["as_of"])
    assert pooled_after < test_auc - 0.1  # the decay
    assert after["ece"].min() > 2 * before["ece"].iloc[0]  # and calibration is lost with it
    advice = monitored.advice.set_index("target").loc["churn"]
    assert advice["status"] == "retrain" and advice["as_of_first"] == drift
    assert advice["auc_drop"] > 1.96 * advice["auc_drop_se"]
    assert any("below the test ROC-AUC" in reason for reason in advice["reasons"])
    assert monitored.document["retrain_recommended"] is True
    assert monitored.document["targets"]["churn"]["auc_decay_per_month"] < 0


def _pooled_auc(rows: pd.DataFrame, days: pd.Series) -> float:
    part = rows[(rows["target"] == "churn") & rows["as_of"].isin(set(days))]
    return roc_auc(part["y"].to_numpy(float), part["probability"].to_numpy(float))


def _run(
    run_id: str, as_of: str, churn: str, status: str = "succeeded", rows: int = 10, minute: int = 0
) -> dict:
    return {
        "run_id": run_id,
        "as_of": dt.date.fromisoformat(as_of),
        "churn_model_version": churn,
        "expansion_model_version": "1",
        "status": status,
        "scores_rows": rows if status == "succeeded" else None,
        "started_at": NOW + dt.timedelta(minutes=minute),
    }


def test_score_watermark_changes_with_new_scores_only():
    """monitor's DVC dependency: a rerun of the same scores leaves it, a new as-of or model version moves it."""
    first = pd.DataFrame([_run("a", "2025-06-01", "1"), _run("b", "2025-07-01", "1", status="failed")])
    mark = score_watermark(first)
    assert mark == {
        "scored": [
            {
                "as_of": "2025-06-01",
                "churn_model_version": "1",
                "expansion_model_version": "1",
                "scores_rows": 10,
            }
        ],
        "as_of_count": 1,
    }
    rerun = pd.concat([first, pd.DataFrame([_run("c", "2025-06-01", "1", minute=5)])], ignore_index=True)
    assert score_watermark(rerun) == mark  # same rows replaced: the monitor need not run again
    grown = pd.concat([rerun, pd.DataFrame([_run("d", "2025-06-01", "1", rows=12, minute=9)])])
    assert score_watermark(grown)["scored"][0]["scores_rows"] == 12  # the latest run of a key counts
    new_as_of = pd.concat([rerun, pd.DataFrame([_run("e", "2025-07-01", "1", minute=7)])], ignore_index=True)
    new_model = pd.concat([rerun, pd.DataFrame([_run("f", "2025-06-01", "2", minute=7)])], ignore_index=True)
    assert score_watermark(new_as_of)["as_of_count"] == 2
    assert len(score_watermark(new_model)["scored"]) == 2
