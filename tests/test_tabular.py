"""Tabular mode on small synthetic tables: label mapping, column typing, folds, time split, errors, MLflow, SHAP.

The table has a known mechanism: short tenure, the ``monthly`` plan and low usage raise churn; ``noise`` does
nothing. It also carries what real snapshots carry: an identifier, numbers stored as text with blanks (Telco's
TotalCharges), a leaked column to drop and text labels.
"""

from __future__ import annotations

import dataclasses
import json
import sys
import tempfile
import warnings
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from churnml import cli
from churnml.config import EvaluationConfig, ModelConfig
from churnml.errors import ChurnmlError
from churnml.explain.contributions import explain_accounts
from churnml.modeling.model import TrainedModel
from churnml.modeling.redundancy import pairwise_correlation, redundant_groups
from churnml.tabular import (
    TabularSpec,
    evaluate_table,
    explain_table,
    fit_final,
    grouped_explanations,
    load_run,
    map_label,
    prepare_table,
    score_table,
    time_split,
)

from tables import fast_lgbm

N = 600


def snapshot(n: int = N, seed: int = 0, dated: bool = False) -> pd.DataFrame:
    rng = np.random.default_rng(seed)
    tenure = rng.integers(1, 72, n)
    plan = rng.choice(["monthly", "annual", "two_year"], n, p=[0.5, 0.3, 0.2])
    usage = rng.gamma(2.0, 10.0, n)
    logit = 1.5 - 0.08 * tenure + 2.0 * (plan == "monthly") - 0.06 * usage
    churn = rng.random(n) < 1 / (1 + np.exp(-logit))
    charges = np.round(tenure * rng.uniform(20, 100, n), 2).astype(str)
    charges[:5] = " "  # blanks in a numeric text column
    frame = pd.DataFrame(
        {
            "customer": [f"C{i:05d}" for i in range(n)],
            "tenure": tenure,
            "plan": plan,
            "usage": usage,
            "charges": charges,
            "noise": rng.normal(size=n),
            "leak": churn.astype(float),
            "Churn": np.where(churn, "Yes", "No"),
        }
    )
    if dated:
        months = pd.date_range("2024-01-01", periods=10, freq="MS")
        frame["snapshot"] = months[np.sort(rng.integers(0, 10, n))].strftime("%Y-%m-%d")
    return frame


def fast_model() -> ModelConfig:
    return ModelConfig(
        seed=0,
        lgbm=fast_lgbm(n_estimators=120, num_leaves=7),
    )


SPEC = dict(label="Churn", id="customer", drop=["leak"], as_of="2025-01-01")


# ------------------------------------------------------------------------------------------- reading


def test_text_labels_map_on_the_positive_word_or_the_given_value():
    assert map_label(pd.Series(["Yes", "No", "No"]), "Churn", None).tolist() == [1, 0, 0]
    values = pd.Series(["Attrited Customer", "Existing Customer", "Existing Customer"])
    assert map_label(values, "Attrition_Flag", None).tolist() == [1, 0, 0]
    assert map_label(values, "Attrition_Flag", "Existing Customer").tolist() == [0, 1, 1]
    assert map_label(pd.Series([0, 1, None]), "y", None).tolist() == [0, 1, pd.NA]
    assert map_label(pd.Series([True, False]), "y", None).tolist() == [1, 0]


def test_label_errors_are_one_line_and_say_what_to_do():
    with pytest.raises(ChurnmlError, match="--positive VALUE"):
        map_label(pd.Series(["gold", "silver", "bronze"]), "tier", None)
    with pytest.raises(ChurnmlError, match="is not a value of label"):
        map_label(pd.Series(["Yes", "No"]), "Churn", "yes please")
    with pytest.raises(ChurnmlError, match="one class only"):
        map_label(pd.Series(["No", "No", "No"]), "Churn", "No")
    with pytest.raises(ChurnmlError, match="one class only"):
        map_label(pd.Series([0, 0, 0]), "y", None)


def test_columns_are_typed_ids_and_dropped_columns_left_out():
    data = prepare_table(snapshot(), TabularSpec(**SPEC))
    assert data.columns == ["tenure", "plan", "usage", "charges", "noise"]
    assert data.categories == {"plan": ["annual", "monthly", "two_year"]}
    assert data.features["charges"].dtype == "float64"
    assert data.features["charges"].isna().sum() == 5  # blanks are missing, not a category
    assert data.features["account_id"].iloc[0] == "C00000"
    assert data.y.sum() == (snapshot()["Churn"] == "Yes").sum()


def test_unlabeled_rows_are_left_out_and_counted():
    frame = snapshot()
    frame.loc[:9, "Churn"] = None
    data = prepare_table(frame, TabularSpec(**SPEC))
    assert data.counts["unlabeled_rows_left_out"] == 10 and len(data.y) == N - 10


@pytest.mark.parametrize(
    ("change", "spec", "message"),
    [
        (lambda f: f.drop(columns="Churn"), {}, "--label: no column 'Churn'"),
        (lambda f: f, {"drop": ["nope"]}, "--drop: no column 'nope'"),
        (lambda f: f, {"id": None}, "pass it as --id or --drop"),
        (lambda f: f.assign(customer="C1"), {}, "--id 'customer' is not unique"),
        (lambda f: f.assign(Churn="No"), {}, "one class only"),
        (lambda f: f.assign(Churn=np.where(f["Churn"] == "Yes", "left", "stayed")), {}, "--positive VALUE"),
        (lambda f: f, {"health": {"plan": 1.0}}, "must be numeric"),
        (lambda f: f.assign(snapshot="not a date"), {"date": "snapshot"}, "are not dates"),
    ],
)
def test_bad_input_is_a_one_line_error(change, spec, message):
    with pytest.raises(ChurnmlError, match=message.replace("(", r"\(").replace("?", r"\?")):
        prepare_table(change(snapshot()), TabularSpec(**{**SPEC, **spec}))


# ------------------------------------------------------------------------------------------ protocol


def test_stratified_folds_predict_every_row_once_out_of_fold():
    spec = TabularSpec(**SPEC, health={"tenure": 1.0, "usage": 1.0})
    data = prepare_table(snapshot(), spec)
    result = evaluate_table(data, spec, fast_model(), EvaluationConfig())
    scores = result.evaluation.scores
    assert set(scores["model"]) == {"lightgbm", "logistic", "health_score"}
    oof = scores[scores["model"] == "lightgbm"]
    assert sorted(oof["account_id"]) == sorted(data.features["account_id"])  # each row once
    folds = result.folds[result.folds["model"] == "lightgbm"]
    assert len(folds) == 5 and folds["n"].sum() == N
    rate = data.y.mean()
    assert ((folds["positives"] - folds["n"] * rate).abs() <= 1).all()  # stratified
    doc = result.document()
    assert doc["protocol"]["kind"] == "stratified_kfold" and doc["protocol"]["folds"] == 5
    assert doc["test"]["roc_auc"] > 0.75  # the mechanism is learnable
    assert doc["baselines"]["health_score"]["test"]["roc_auc"] > 0.6  # tenure and usage are real signals
    assert 0 < doc["test"]["brier"] < 0.25 and doc["test"]["log_loss"] < 0.6


def test_no_health_signals_no_health_baseline():
    spec = TabularSpec(**SPEC, folds=3)
    data = prepare_table(snapshot(), spec)
    result = evaluate_table(data, spec, fast_model(), EvaluationConfig())
    assert set(result.evaluation.scores["model"]) == {"lightgbm", "logistic"}
    assert result.document()["baselines"]["health_score"]["test"]["roc_auc"] is None


def test_a_date_column_gives_a_time_split_with_whole_dates():
    spec = TabularSpec(**SPEC, date="snapshot")
    data = prepare_table(snapshot(dated=True), spec)
    period = time_split(data.features["cutoff"], spec)
    days = data.features["cutoff"]
    assert days[period == "train"].max() < days[period == "validation"].min()
    assert days[period == "validation"].max() < days[period == "test"].min()
    assert 0.1 < (period == "test").mean() < 0.35
    result = evaluate_table(data, spec, fast_model(), EvaluationConfig())
    doc = result.document()
    assert doc["protocol"]["kind"] == "time_split"
    assert doc["protocol"]["test"]["from"] == str(days[period == "test"].min().date())
    assert doc["n"]["test"] == int((period == "test").sum())


def test_a_single_date_cannot_be_split_in_time():
    frame = snapshot().assign(snapshot="2024-01-01")
    spec = TabularSpec(**SPEC, date="snapshot")
    with pytest.raises(ChurnmlError, match="distinct date"):
        evaluate_table(prepare_table(frame, spec), spec, fast_model(), EvaluationConfig())


# ----------------------------------------------------------------------------------- explain and score


@pytest.fixture(scope="module")
def final():
    spec = TabularSpec(**SPEC)
    data = prepare_table(snapshot(), spec)
    return spec, data, fit_final(data, spec, fast_model(), EvaluationConfig())


def test_explanations_add_up_to_the_score(final):
    _, data, model = final
    head = dataclasses.replace(data, features=data.features.head(50), y=data.y[:50], arr=data.arr[:50])
    ex = explain_table(model, head)
    per_row = ex.groupby("account_id").agg(
        shap=("shap_value", "sum"),
        base=("base_value", "first"),
        raw=("raw_score", "first"),
        points=("probability_points", "sum"),
        p=("probability", "first"),
        p0=("base_probability", "first"),
    )
    np.testing.assert_allclose(per_row["shap"] + per_row["base"], per_row["raw"], atol=1e-6)
    np.testing.assert_allclose(per_row["points"], per_row["p"] - per_row["p0"], atol=1e-9)
    expected = pd.Series(
        model.predict_proba(data.features.head(50)), index=data.features["account_id"].head(50)
    )
    np.testing.assert_allclose(per_row["p"], expected.loc[per_row.index], atol=1e-12)
    assert ex["reason"].str.contains(" = ").all()


def test_scores_carry_tiers_and_reasons_that_raise_risk(final):
    _, data, model = final
    scores = score_table(model, data, {"high": 0.5, "low": 0.0}, top=2)
    assert len(scores) == N and scores["probability"].between(0, 1).all()
    assert set(scores["risk_tier"]) <= {"high", "low"}
    assert (scores.loc[scores["probability"] >= 0.5, "risk_tier"] == "high").all()
    reasons = [json.loads(r) for r in scores["top_reasons"]]
    assert all(len(r) <= 2 and all(x["probability_points"] > 0 for x in r) for r in reasons)


def test_scoring_text_in_a_numeric_column_is_named_blanks_are_missing(final):
    spec, data, model = final
    new = snapshot(40, seed=5)
    clean = prepare_table(new, spec, model=model, require_label=False)
    assert clean.features["charges"].isna().sum() == 5  # the blank cells: missing, as in training
    as_text = new.assign(usage=new["usage"].astype(str), tenure=new["tenure"].astype(str))
    again = prepare_table(as_text, spec, model=model, require_label=False)
    np.testing.assert_array_equal(again.features["usage"], clean.features["usage"])
    bad = as_text.copy()
    bad.loc[[3, 7], "usage"] = ["n/a", "12,5"]
    with pytest.raises(ChurnmlError) as got:
        prepare_table(bad, spec, model=model, require_label=False)
    line = str(got.value)
    assert line.startswith("column 'usage': 2 cell(s) are not numbers, e.g. 'n/a' (account 'C00003')")
    assert "\n" not in line
    with pytest.raises(ChurnmlError, match=r"--arr 'usage': 2 cell\(s\) are not numbers"):
        prepare_table(bad, dataclasses.replace(spec, arr="usage"), require_label=False)


def test_scoring_a_plan_the_model_never_saw_reads_it_as_missing_in_one_warning_line(final, caplog):
    """A new snapshot where two customers are on a plan launched after training: the batch is scored, those
    rows as if their plan were blank, with one warning line (a model asked directly still refuses it)."""
    import logging

    spec, _, model = final
    new = snapshot(40, seed=5)
    launched = new.assign(plan=new["plan"].mask(new.index.isin([2, 9]), "lifetime"))
    with caplog.at_level(logging.WARNING, logger="churnml.tabular"):
        got = prepare_table(launched, spec, model=model, require_label=False)
    assert "plan 'lifetime' (2 rows)" in caplog.text and "scored as missing" in caplog.text
    blank = prepare_table(new.assign(plan=new["plan"].mask(new.index.isin([2, 9]), "")), spec, model=model,
                          require_label=False)  # fmt: skip
    np.testing.assert_array_equal(model.predict_proba(got.features), model.predict_proba(blank.features))
    assert score_table(model, got, {"high": 0.5, "low": 0.0})["probability"].between(0, 1).all()
    raw = prepare_table(
        launched, spec, require_label=False
    ).features  # not read for this model: the value kept
    with pytest.raises(ChurnmlError, match="unseen categories in column.*plan.*'lifetime'"):
        model.predict_proba(raw)


def test_shortening_tenure_raises_risk(final):
    _, data, model = final
    longer = data.features.assign(tenure=60.0)
    shorter = data.features.assign(tenure=2.0)
    assert model.predict_proba(shorter).mean() > model.predict_proba(longer).mean()


# ----------------------------------------------------------------------------------------------- CLI


def run_cli(monkeypatch, capsys, *args: str) -> tuple[int, str]:
    monkeypatch.setattr(sys, "argv", ["churnml", *args])
    try:
        cli.main()
        code = 0
    except SystemExit as exc:
        code = exc.code if isinstance(exc.code, int) else 1
    return code, capsys.readouterr().err


@pytest.fixture
def mlflow_store(tmp_path, monkeypatch):
    monkeypatch.setenv("MLFLOW_TRACKING_URI", f"sqlite:///{tmp_path / 'mlflow.db'}")
    return tmp_path / "mlflow.db"


def test_cli_trains_logs_to_mlflow_then_explains_and_scores(tmp_path, monkeypatch, capsys, mlflow_store):
    table = tmp_path / "snapshot.csv"
    snapshot(400).to_csv(table, index=False)
    monkeypatch.chdir(tmp_path)  # no checkout here: the dataclass defaults are the configuration
    args = ["--label", "Churn", "--positive", "Yes", "--id", "customer", "--drop", "leak", "--folds", "3"]
    code, err = run_cli(
        monkeypatch,
        capsys,
        "tabular",
        "train",
        str(table),
        *args,
        "--health",
        "tenure=1",
        "--out",
        str(tmp_path / "run"),
    )
    assert code == 0, err
    assert "stratified 3-fold" in err and "ROC-AUC" in err and "MLflow run" in err
    model, spec = load_run(tmp_path / "run")
    from churnml.report.portfolio import model_choice

    # the served candidate is named, in the report's words
    assert f"  served: {model_choice(model.info['selection'])}" in err
    assert spec.positive == "Yes" and model.features == ["tenure", "plan", "usage", "charges", "noise"]
    assert (tmp_path / "run" / "plots" / "roc.csv").is_file()

    import mlflow

    client = mlflow.MlflowClient(tracking_uri=f"sqlite:///{mlflow_store}")
    experiment = client.get_experiment_by_name("churnml-tabular")
    (run,) = client.search_runs([experiment.experiment_id])
    assert run.data.metrics["test.roc_auc"] > 0.7
    assert "baselines.health_score.test.roc_auc" in run.data.metrics
    assert run.data.params["tabular.label"] == "Churn"
    assert client.search_registered_models() == []  # tabular runs never touch the registry

    unlabeled = snapshot(30, seed=5).drop(columns=["Churn"])
    unlabeled.to_csv(tmp_path / "batch.csv", index=False)
    code, err = run_cli(
        monkeypatch,
        capsys,
        "tabular",
        "score",
        str(tmp_path / "batch.csv"),
        "--model",
        str(tmp_path / "run"),
        "--out",
        str(tmp_path / "scores.csv"),
    )
    assert code == 0, err
    scores = pd.read_csv(tmp_path / "scores.csv")
    assert len(scores) == 30 and scores["account_id"].iloc[0] == "C00000"
    code, err = run_cli(
        monkeypatch,
        capsys,
        "tabular",
        "explain",
        str(tmp_path / "batch.csv"),
        "--model",
        str(tmp_path / "run"),
        "--out",
        str(tmp_path / "ex.parquet"),
    )
    assert code == 0, err
    assert pd.read_parquet(tmp_path / "ex.parquet")["rank"].max() == 5
    code, err = run_cli(
        monkeypatch, capsys, "tabular", "evaluate", str(table), "--model", str(tmp_path / "run")
    )
    assert code == 0 and "ROC-AUC" in err


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (["--label", "nope"], "no column 'nope'"),
        (["--label", "Churn", "--positive", "Maybe"], "is not a value of label"),
        (["--label", "Churn", "--folds", "1"], "--folds must be at least 2"),
        (["--label", "Churn", "--id", "customer", "--health", "tenure"], "expected COLUMN=WEIGHT"),
    ],
)
def test_cli_bad_input_is_one_line_and_exit_1(tmp_path, monkeypatch, capsys, args, message):
    table = tmp_path / "t.csv"
    snapshot(100).to_csv(table, index=False)
    monkeypatch.chdir(tmp_path)
    code, err = run_cli(
        monkeypatch, capsys, "tabular", "train", str(table), *args, "--no-track", "--out", str(tmp_path / "o")
    )
    lines = [line for line in err.splitlines() if line.strip()]
    assert code == 1 and len(lines) == 1 and lines[0].startswith("error: ") and message in lines[0], err


# ------------------------------------------------------------------------------ real data (opt-in)


@pytest.mark.shared_data
@pytest.mark.parametrize(
    ("folder", "file", "spec", "floor"),
    [
        (
            "telco_customer_churn_ibm",
            "Telco-Customer-Churn.csv",
            {"label": "Churn", "positive": "Yes", "id": "customerID"},
            0.845,
        ),
        (
            "bankchurners_credit_card",
            "BankChurners.csv",
            {
                "label": "Attrition_Flag",
                "positive": "Attrited Customer",
                "id": "CLIENTNUM",
                "drop_prefix": "Naive_Bayes",
            },
            0.99,
        ),
    ],
)
def test_published_tables_reach_their_reference_auc(folder, file, spec, floor):
    from churnml.config import Config
    from churnml.sources.ingest import shared_data_dir
    from churnml.tabular import read_table

    path = shared_data_dir() / folder / file
    if not path.is_file():
        pytest.skip(f"no {path} (set CHURNML_SHARED_DATA)")
    frame = read_table(path)
    prefix = spec.pop("drop_prefix", None)
    drop = [c for c in frame.columns if prefix and c.startswith(prefix)]
    tab = TabularSpec(**spec, drop=drop, as_of="2026-01-01")
    cfg = Config()
    result = evaluate_table(prepare_table(frame, tab), tab, cfg.model, cfg.evaluation)
    assert result.document()["test"]["roc_auc"] >= floor


def test_redundant_groups_are_found_on_the_training_rows():
    rng = np.random.default_rng(0)
    n = 400
    minutes = rng.gamma(2.0, 50.0, n)
    x = pd.DataFrame(
        {
            "minutes": minutes,
            "charge": minutes * 0.17,  # an exact linear copy
            "refund": -minutes * 0.02 + rng.normal(0, 1e-3, n),  # a negative near-copy
            "calls": rng.poisson(3, n).astype(float),
            "flat": np.ones(n),  # constant: no correlation, never grouped
            "gappy": np.where(rng.random(n) < 0.3, np.nan, rng.normal(size=n)),
        }
    )
    x["gappy_copy"] = x["gappy"] * 3 + 1  # missing on the same rows: groups on the rows both have
    cols = list(x.columns)
    assert redundant_groups(x, cols, 0.95) == [["minutes", "charge", "refund"], ["gappy", "gappy_copy"]]
    assert redundant_groups(x, cols, 1.0) == []  # 1.0 turns it off
    assert redundant_groups(x, ["calls", "minutes"], 0.95) == []
    with pytest.raises(ChurnmlError, match="redundancy_threshold"):
        redundant_groups(x, cols, 0.0)
    # the matrix-product correlation is pandas' pairwise-complete one (gaps, a large offset, a constant)
    wide = x.assign(arr=3e7 + 1e5 * x["calls"] + rng.normal(0, 1, n))
    expected = wide.corr(min_periods=30).fillna(0.0).to_numpy()
    np.testing.assert_allclose(pairwise_correlation(wide.to_numpy()), expected, atol=1e-9)
    # a feature missing on every row (its table or metric absent from the data) correlates with nothing, silently
    empty = wide.assign(absent=np.nan)
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        got = pairwise_correlation(empty.to_numpy())
    assert not got[-1].any() and not got[:, -1].any()


def test_an_exact_copy_is_one_reason_and_points_still_add_up():
    spec = TabularSpec(**SPEC)
    frame = snapshot()
    frame["usage_copy"] = frame["usage"] * 2.5  # minutes and a charge at a flat rate
    data = prepare_table(frame, spec)
    model = fit_final(data, spec, fast_model(), EvaluationConfig())
    assert ["usage", "usage_copy"] in model.info["redundant_groups"]
    loaded = TrainedModel.load(model.save(Path(tempfile.mkdtemp()) / "m"))
    assert loaded.info["redundant_groups"] == model.info["redundant_groups"]  # travels with the model
    scores = score_table(model, data, {"high": 0.5, "low": 0.0}, top=3)
    both = 0
    for items in map(json.loads, scores["top_reasons"]):
        named = [i["feature"] for i in items]
        assert not {"usage", "usage_copy"} <= set(named)  # never two slots for one quantity
        for i in items:
            if i["feature"] in ("usage", "usage_copy"):
                both += 1
                assert i["grouped_with"] == ["usage_copy" if i["feature"] == "usage" else "usage"]
                assert "(with usage" in i["reason"]
    assert both > 0
    grouped = grouped_explanations(model, explain_accounts(model, data.features.head(50)))
    per_row = grouped.groupby("account_id").agg(
        points=("probability_points", "sum"), p=("probability", "first"), p0=("base_probability", "first")
    )
    np.testing.assert_allclose(per_row["points"], per_row["p"] - per_row["p0"], atol=1e-9)
    assert grouped.groupby("account_id").size().max() == len(model.features) - 1


def test_the_cross_fitted_search_is_nested_in_the_first_fold_and_judged_on_its_held_out_rows():
    spec = TabularSpec(**SPEC)
    data = prepare_table(snapshot(), spec)
    cfg = dataclasses.replace(fast_model(), optuna_trials=3)
    result = evaluate_table(data, spec, cfg, EvaluationConfig())
    folds = result.protocol["tuning"]
    assert [f["fold"] for f in folds] == list(range(spec.folds))  # one verdict per outer fold
    for f in folds:
        assert f["trials"] == 3 and "first inner fold" in f["judge_rows"]
        assert f["gain"] == pytest.approx(f["tuned_roc_auc"] - f["default_roc_auc"])
        assert f["kept"] == (f["gain"] > 0)
        # the search saw the first inner fold's training part only (4/5 of the outer fold's rows)
        inner = f["search_rows"]["fit"] + f["search_rows"]["held_out"]
        assert inner < 0.85 * N * (spec.folds - 1) / spec.folds
