"""`churnml forecast` and the survival model in the registry: warehouse writes of account_survival and
revenue_forecast (idempotent per as-of, one transaction with the run record, DuckDB / PostgreSQL / SQLite),
the forecast of a small simulated portfolio (curves, per-CSM book, fail-fast checks), and the survival model
registered under the champion rule.

The survival model is fitted once, by the stage's own :func:`churnml.survival.pipeline.run_survival`, on 200
simulated accounts over two years.
"""

from __future__ import annotations

import datetime as dt
import json
import math
import shutil
import sys
import uuid

import numpy as np
import pandas as pd
import pytest

from churnml import cli
from churnml.config import Config, ModelConfig, SimulatorConfig
from churnml.contract.tables import (
    ACCOUNT_SURVIVAL_COLUMNS,
    FORECAST_RUN_FILLED,
    REVENUE_FORECAST_COLUMNS,
)
from churnml.contract.validate import validate_tables
from churnml.errors import ChurnmlError
from churnml.warehouse.store import Warehouse
from churnml.warehouse.tables import ForecastRunInfo

from _env import require_postgres
from tables import fast_lgbm

AS_OF = dt.date(2025, 3, 1)
BACKENDS = ["duckdb", pytest.param("postgresql", marks=pytest.mark.postgres), "sqlite"]
H = 12


# ------------------------------------------------------------------------------------------- warehouse


@pytest.fixture
def make_warehouse(request, tmp_path):
    """A warehouse on the backend named by the parameter (PostgreSQL: a fresh schema, dropped afterwards)."""
    backend = request.param
    schemas: list[str] = []

    def make(**kwargs) -> Warehouse:
        if backend == "duckdb":
            return Warehouse(f"duckdb:///{tmp_path / 'wh.duckdb'}", **kwargs)
        if backend == "sqlite":
            return Warehouse(f"sqlite:///{tmp_path / 'wh.sqlite'}", **kwargs)
        url = require_postgres()
        if not schemas:
            schemas.append(f"churnml_test_{uuid.uuid4().hex[:12]}")
        return Warehouse(url, schema=schemas[0], **kwargs)

    make.backend = backend
    yield make
    if schemas:
        import sqlalchemy as sa

        engine = sa.create_engine(require_postgres())
        with engine.begin() as conn:
            conn.execute(sa.text(f'DROP SCHEMA IF EXISTS "{schemas[0]}" CASCADE'))
        engine.dispose()


def curves(n: int, generation: int = 0) -> pd.DataFrame:
    """``n`` account_survival rows without the run columns; ``generation`` changes every value."""
    rows = []
    for i in range(n):
        h = 0.01 * (1 + (i + generation) % 5)
        s = [(1 - h) ** t for t in range(1, H + 1)]
        rows.append(
            {
                "account_id": f"A{i:04d}",
                "horizon_months": H,
                "survival": json.dumps([round(v, 6) for v in s]),
                "next_renewal_month": 1 + i % 12,
                "p_renew_next": s[i % 12],
                "expected_months": sum(s),
                "p_churn_3m": 1 - s[2],
                "p_churn_horizon": 1 - s[-1],
                "segment": "smb",
                "touch_model": "tech_touch",
                "csm_id": "pooled" if i % 2 else f"csm_{generation}",
                "arr": 1000.0 * (i + 1),
            }
        )
    return pd.DataFrame(rows)


def book(generation: int = 0) -> pd.DataFrame:
    """revenue_forecast rows (portfolio and two CSMs, 3 and 12 months) without the run columns."""
    values = [c.name for c in REVENUE_FORECAST_COLUMNS if c.name.split("_")[0] in ("arr", "grr", "nrr")]
    rows = []
    for h in (3, 12):
        for dim, group in (("portfolio", "all"), ("csm", "csm_0"), ("csm", "pooled")):
            row = {"horizon_months": h, "dimension": dim, "group": group, "accounts": 10, "arr_start": 1e4}
            row |= {v: 0.9 + generation / 100 + h / 1000 for v in values if v != "arr_start"}
            # what drives the change: churn and contraction take, expansion gives (any amounts serve here)
            row |= {"churn_arr_mean": 100.0, "contraction_arr_mean": 50.0, "expansion_arr_mean": 150.0}
            rows.append(row)
    return pd.DataFrame(rows)


@pytest.mark.parametrize("make_warehouse", BACKENDS, indirect=True)
def test_a_rerun_of_an_as_of_replaces_both_tables_and_leaves_other_dates(make_warehouse):
    wh = make_warehouse()
    other = AS_OF - dt.timedelta(days=28)
    first = wh.write_forecast(curves(6), book(), ForecastRunInfo(as_of=AS_OF, survival_model_version="1"))
    wh.write_forecast(curves(5), book(), ForecastRunInfo(as_of=other, survival_model_version="1"))
    again = wh.write_forecast(
        curves(4, generation=1), book(generation=1), ForecastRunInfo(as_of=AS_OF, survival_model_version="2")
    )
    assert (first.status, first.account_survival_rows, first.revenue_forecast_rows) == ("succeeded", 6, 6)
    assert (again.account_survival_rows, again.revenue_forecast_rows) == (4, 6)

    acc = wh.read_account_survival(AS_OF)
    assert list(acc.columns) == [c.name for c in ACCOUNT_SURVIVAL_COLUMNS]
    assert acc["account_id"].tolist() == [
        f"A{i:04d}" for i in range(4)
    ]  # the 6 rows of the first run are gone
    assert set(acc["survival_model_version"]) == {"2"} and set(acc["run_id"]) == {again.run_id}
    expected = curves(4, generation=1)
    np.testing.assert_allclose(acc["p_churn_horizon"], expected["p_churn_horizon"])
    assert [json.loads(s) if isinstance(s, str) else list(s) for s in acc["survival"]] == [
        json.loads(s) for s in expected["survival"]
    ]
    fc = wh.read_revenue_forecast(AS_OF)
    assert len(fc) == 6 and set(fc["survival_model_version"]) == {"2"}
    assert fc.set_index(["horizon_months", "dimension", "group"])["grr_p10"].round(6).to_dict() == (
        book(generation=1).set_index(["horizon_months", "dimension", "group"])["grr_p10"].round(6).to_dict()
    )
    # the other as-of is untouched
    assert len(wh.read_account_survival(other)) == 5 and len(wh.read_revenue_forecast(other)) == 6
    assert set(wh.read_account_survival(other)["survival_model_version"]) == {"1"}
    runs = wh.read_forecast_runs()
    assert runs["status"].tolist() == ["succeeded"] * 3
    assert runs["account_survival_rows"].tolist() == [6, 5, 4]


@pytest.mark.parametrize("make_warehouse", BACKENDS, indirect=True)
def test_a_failed_forecast_write_rolls_back_both_tables_and_is_recorded(make_warehouse):
    wh = make_warehouse()
    wh.write_forecast(curves(6), book(), ForecastRunInfo(as_of=AS_OF, survival_model_version="1"))

    def fail_after_the_curves(table: str, rows: int) -> None:
        if table == "account_survival":
            raise RuntimeError("disk full")

    run = ForecastRunInfo(as_of=AS_OF, survival_model_version="2")
    with pytest.raises(ChurnmlError, match="rolled back: RuntimeError: disk full; run marked failed") as err:
        wh.write_forecast(curves(3, 1), book(1), run, on_chunk=fail_after_the_curves)
    assert "\n" not in str(err.value)
    acc, fc = wh.read_account_survival(AS_OF), wh.read_revenue_forecast(AS_OF)
    assert len(acc) == 6 and set(acc["survival_model_version"]) == {"1"}
    assert len(fc) == 6 and set(fc["survival_model_version"]) == {"1"}
    runs = wh.read_forecast_runs().set_index("run_id")
    assert runs.loc[run.run_id, "status"] == "failed" and "disk full" in runs.loc[run.run_id, "error"]

    # rows of another as-of or version would escape the delete: refused, recorded, nothing changed
    stray = curves(2).assign(as_of=pd.Timestamp("2025-02-01"))
    bad = ForecastRunInfo(as_of=AS_OF, survival_model_version="3")
    with pytest.raises(ChurnmlError, match=r"account_survival.as_of holds .*2025-02-01"):
        wh.write_forecast(stray, book(), bad)
    missing = ForecastRunInfo(as_of=AS_OF, survival_model_version="3")
    with pytest.raises(ChurnmlError, match="account_survival: missing column.s. p_renew_next"):
        wh.write_forecast(curves(2).drop(columns=["p_renew_next"]), book(), missing)
    runs = wh.read_forecast_runs().set_index("run_id")
    assert runs.loc[[bad.run_id, missing.run_id], "status"].tolist() == ["failed", "failed"]
    assert set(wh.read_account_survival(AS_OF)["survival_model_version"]) == {"1"}


def test_the_forecast_tables_are_the_survival_stages_parquet_plus_the_run_columns():
    from churnml.contract.tables import OUTPUT_TABLES

    for name, columns in (
        ("account_survival", ACCOUNT_SURVIVAL_COLUMNS),
        ("revenue_forecast", REVENUE_FORECAST_COLUMNS),
    ):
        table = OUTPUT_TABLES[name]
        assert table.columns == [c.name for c in columns]
        optional = {n for n, c in table.schema.columns.items() if not c.required}
        assert optional == set(FORECAST_RUN_FILLED)


# -------------------------------------------------------------------------------------------- forecast


def small_config() -> Config:
    cfg = Config()
    cfg.model = ModelConfig(lgbm=fast_lgbm(n_estimators=40, early_stopping_rounds=10))
    cfg.features.threads = 1
    cfg.survival.test_periods = 2
    return cfg


@pytest.fixture(scope="module")
def fitted():
    """(validated tables, config, SurvivalResult, as-of features): 200 accounts over two years."""
    from churnml.dataset.spine import as_of_day, build_spine, data_range, training_cutoffs
    from churnml.features.engine import build_features
    from churnml.sources.simulate import simulate
    from churnml.survival.pipeline import run_survival

    tables = validate_tables(simulate(SimulatorConfig(accounts=200, months=24, seed=11))[0]).tables
    cfg = small_config()
    start, end = data_range(tables)
    spine = build_spine(tables["subscriptions"], training_cutoffs(tables, cfg.spine))
    features = build_features(tables, spine, cfg.features)
    day = as_of_day(None, end)
    now = build_features(tables, build_spine(tables["subscriptions"], [day]), cfg.features)
    result = run_survival(
        features, tables["subscriptions"], end, now, cfg, start=start, as_of=day, accounts=tables["accounts"]
    )
    return tables, cfg, result, now


def test_the_hazard_model_and_baselines_learn_from_at_most_the_capped_accounts(monkeypatch):
    """survival.max_train_accounts caps the accounts whose spells train (whole accounts, every cutoff of
    each); the out-of-time test still takes every account."""
    from churnml.dataset.spine import as_of_day, build_spine, data_range, training_cutoffs
    from churnml.features.engine import build_features
    from churnml.sources.simulate import simulate
    from churnml.survival import pipeline

    tables = validate_tables(simulate(SimulatorConfig(accounts=120, months=24, seed=12))[0]).tables
    cfg = small_config()
    cfg.survival.max_train_accounts = 30
    start, end = data_range(tables)
    spine = build_spine(tables["subscriptions"], training_cutoffs(tables, cfg.spine))
    features = build_features(tables, spine, cfg.features)
    now = build_features(tables, build_spine(tables["subscriptions"], [as_of_day(None, end)]), cfg.features)
    seen: dict[str, pd.DataFrame] = {}

    class Stop(Exception):
        pass

    def cox_fit(self, train_spells):
        seen["cox"] = train_spells
        raise Stop

    def train(rows, *args, **kwargs):
        seen["rows"] = rows
        return real_train(rows, *args, **kwargs)

    real_train = pipeline.train_survival
    monkeypatch.setattr(pipeline, "train_survival", train)
    monkeypatch.setattr(pipeline.CoxBaseline, "fit", cox_fit)
    with pytest.raises(Stop):
        pipeline.run_survival(features, tables["subscriptions"], end, now, cfg, start=start)
    from churnml.survival.model import sample_accounts

    ids = features["account_id"].astype(str)
    sample = set(ids[sample_accounts(ids, 30, cfg.model.seed)])
    learned = set(seen["rows"]["account_id"].astype(str))
    spells = set(seen["cox"]["account_id"].astype(str))
    assert len(sample) == 30 and learned <= sample and spells <= sample
    # far more accounts had spells before the test start: the cap is what left them out
    before = ids[pd.to_datetime(features["cutoff"]) < seen["rows"]["cutoff"].max()]
    assert before.nunique() > 2 * len(spells) and len(learned) >= 20


def loader(result, calls: list | None = None):
    def load(ref: str):
        if calls is not None:
            calls.append(ref)
        if ref not in ("champion", "4"):
            raise ChurnmlError(f"registry: churnml-survival has no version {ref}")
        return result.model, "4"

    return load


@pytest.mark.slow
@pytest.mark.parametrize(
    "make_warehouse", ["duckdb", pytest.param("postgresql", marks=pytest.mark.postgres)], indirect=True
)
def test_forecast_writes_every_active_account_and_the_book_per_csm(fitted, make_warehouse, tmp_path):
    from churnml.survival.batch import forecast_accounts

    tables, cfg, result, now = fitted
    wh = make_warehouse()
    cfg.warehouse.schema = wh.schema
    url = str(wh._url.render_as_string(hide_password=False))
    first = forecast_accounts(tables, cfg, warehouse_url=url, root=tmp_path, load_model=loader(result))
    acc = wh.read_account_survival(first.as_of)
    # one row per account active at the as-of, with the stage's own curves for the same model and day
    assert sorted(acc["account_id"]) == sorted(now["account_id"].astype(str))
    assert set(acc["survival_model_version"]) == {"4"} and set(acc["run_id"]) == {first.run.run_id}
    stage = result.as_of.set_index("account_id").loc[acc["account_id"]]
    np.testing.assert_allclose(acc["p_churn_horizon"], stage["p_churn_horizon"], atol=1e-12)
    s = np.array([json.loads(v) if isinstance(v, str) else v for v in acc["survival"]])
    assert s.shape == (len(acc), H) and (np.diff(s, axis=1) <= 1e-9).all()
    np.testing.assert_allclose(acc["p_churn_horizon"], 1 - s[:, -1], atol=1e-6)
    np.testing.assert_allclose(acc["expected_months"], s.sum(axis=1), atol=1e-4)
    csm = tables["accounts"].set_index("account_id")["csm_id"]
    expected = csm.reindex(acc["account_id"]).fillna("pooled").to_numpy()
    assert (acc["csm_id"].to_numpy() == expected).all()

    fc = wh.read_revenue_forecast(first.as_of)
    assert set(fc["dimension"]) == {"portfolio", "segment", "touch_model", "csm"}
    assert set(fc["horizon_months"]) == {3, 12}
    for h in (3, 12):
        rows = fc[fc["horizon_months"] == h]
        portfolio = rows[rows["dimension"] == "portfolio"].iloc[0]
        per_csm = rows[rows["dimension"] == "csm"]
        # every account with ARR sits in exactly one CSM's book
        assert per_csm["accounts"].sum() == portfolio["accounts"]
        assert per_csm["arr_start"].sum() == pytest.approx(portfolio["arr_start"])
        for m in ("arr", "grr", "nrr"):
            assert (rows[f"{m}_p025"] <= rows[f"{m}_p10"] + 1e-9).all()
            assert (rows[f"{m}_p10"] <= rows[f"{m}_p90"] + 1e-9).all()
            assert (rows[f"{m}_p90"] <= rows[f"{m}_p975"] + 1e-9).all()
        assert (rows["grr_mean"] <= 1 + 1e-9).all()
    # the stage's forecast of the same book, day and model is the same numbers
    mine = first.revenue_forecast.set_index(["horizon_months", "dimension", "group"])["nrr_mean"]
    theirs = result.forecast.set_index(["horizon_months", "dimension", "group"])["nrr_mean"]
    pd.testing.assert_series_equal(mine.sort_index(), theirs.sort_index(), check_exact=False, rtol=1e-9)

    # a rerun of the same as-of replaces its rows: same count, same values, a second run record
    again = forecast_accounts(tables, cfg, warehouse_url=url, root=tmp_path, load_model=loader(result))
    acc2, fc2 = wh.read_account_survival(first.as_of), wh.read_revenue_forecast(first.as_of)
    assert len(acc2) == len(acc) and len(fc2) == len(fc) and set(acc2["run_id"]) == {again.run.run_id}
    np.testing.assert_allclose(fc2["nrr_mean"], fc["nrr_mean"])
    assert wh.read_forecast_runs()["status"].tolist() == ["succeeded", "succeeded"]


@pytest.mark.slow
def test_forecast_reads_a_category_value_the_model_never_saw_as_missing(fitted, tmp_path, caplog):
    """A nightly forecast where three accounts moved to a new industry: written, their curves those of the same
    accounts with the industry blank, with one warning line (as nightly scoring)."""
    import logging

    from churnml.survival.batch import forecast_accounts

    tables, cfg, result, now = fitted
    moved = set(sorted(now["account_id"].astype(str))[:3])
    accounts = tables["accounts"]

    def industry(value):
        moved_rows = accounts["account_id"].astype(str).isin(moved)
        return dict(tables, accounts=accounts.assign(industry=accounts["industry"].mask(moved_rows, value)))

    url = f"duckdb:///{tmp_path / 'wh.duckdb'}"
    with caplog.at_level(logging.WARNING, logger="churnml.survival.batch"):
        got = forecast_accounts(
            industry("agritech"), cfg, warehouse_url=url, root=tmp_path, load_model=loader(result)
        )
    assert "account_industry 'agritech' (3 accounts)" in caplog.text
    blank = forecast_accounts(
        industry(None), cfg, warehouse_url=url, root=tmp_path, load_model=loader(result)
    )
    pd.testing.assert_frame_equal(
        got.account_survival.sort_values("account_id", ignore_index=True)[["account_id", "p_churn_horizon"]],
        blank.account_survival.sort_values("account_id", ignore_index=True)[
            ["account_id", "p_churn_horizon"]
        ],
    )


@pytest.mark.slow
def test_forecast_fails_fast_on_a_bad_as_of_or_an_unknown_model(fitted, tmp_path):
    from churnml.survival.batch import forecast_accounts, prepare_forecast

    tables, cfg, result, _ = fitted
    url = f"duckdb:///{tmp_path / 'wh.duckdb'}"
    calls: list[str] = []
    with pytest.raises(ChurnmlError, match="has no version 9"):
        prepare_forecast(
            cfg, model_ref="9", warehouse_url=url, root=tmp_path, load_model=loader(result, calls)
        )
    assert calls == ["9"]
    with pytest.raises(ChurnmlError, match="after the data end"):
        forecast_accounts(
            tables, cfg, as_of="2099-01-01", warehouse_url=url, root=tmp_path, load_model=loader(result)
        )
    with pytest.raises(ChurnmlError, match="not after the data start"):
        forecast_accounts(
            tables, cfg, as_of="2000-01-01", warehouse_url=url, root=tmp_path, load_model=loader(result)
        )
    churn_like = type("M", (), {"target": "churn", "info": {}})()
    with pytest.raises(ChurnmlError, match="is a churn model, not a survival model"):
        prepare_forecast(cfg, warehouse_url=url, root=tmp_path, load_model=lambda ref: (churn_like, "1"))
    assert Warehouse(url).read_account_survival().empty


def run_cli(monkeypatch, capsys, *args: str) -> tuple[int, str]:
    monkeypatch.setattr(sys, "argv", ["churnml", *args])
    try:
        cli.main()
        code = 0
    except SystemExit as exc:
        code = exc.code if isinstance(exc.code, int) else 1
    return code, capsys.readouterr().err


def test_forecast_command_checks_warehouse_and_model_before_reading_the_input(monkeypatch, capsys, tmp_path):
    monkeypatch.setenv("MLFLOW_TRACKING_URI", f"sqlite:///{tmp_path / 'mlflow.db'}")
    monkeypatch.delenv("CHURNML_WAREHOUSE_URL", raising=False)
    wh = f"duckdb:///{tmp_path / 'wh.duckdb'}"
    code, err = run_cli(
        monkeypatch, capsys, "forecast", "--data", str(tmp_path / "nope"), "--warehouse", wh,
        "--survival-version", "99",
    )  # fmt: skip
    errors = [line for line in err.splitlines() if line.startswith("error: ")]
    assert (
        code == 1 and len(errors) == 1 and "no MLflow store at" in errors[0]
    )  # the registry, before the input
    assert "no such folder" not in err and "Traceback" not in err
    assert (tmp_path / "wh.duckdb").exists()  # the warehouse was opened (and its tables made) first
    code, err = run_cli(monkeypatch, capsys, "forecast", "--as-of", "2025-13-01", "--warehouse", wh)
    assert code == 1 and err.strip() == "error: bad --as-of '2025-13-01': expected YYYY-MM-DD"


# -------------------------------------------------------------------------------------------- registry


@pytest.fixture(scope="module")
def empty_store(tmp_path_factory):
    import mlflow

    path = tmp_path_factory.mktemp("template") / "mlflow.db"
    mlflow.MlflowClient(tracking_uri=f"sqlite:///{path}").search_experiments()
    return path


@pytest.fixture
def store(tmp_path, empty_store, monkeypatch):
    db = tmp_path / "store" / "mlflow.db"
    db.parent.mkdir()
    shutil.copy(empty_store, db)
    monkeypatch.setenv("MLFLOW_TRACKING_URI", f"sqlite:///{db}")
    monkeypatch.delenv("DVC_EXP_NAME", raising=False)
    return tmp_path


def _register(result, cfg, root, document=None, **kwargs):
    from churnml.survival.register import register_survival

    doc = document or json.loads(json.dumps({"models": {"lightgbm": result.metrics["models"]["lightgbm"]},
                                             "test_cutoffs": result.metrics["test_cutoffs"]}))  # fmt: skip
    tables = {"curves": result.curves}
    return register_survival(result, doc, tables, cfg, "md5-features", root=root, **kwargs)


def _mlflow():
    import mlflow

    return mlflow.MlflowClient()


def _champion() -> str:
    return str(_mlflow().get_model_version_by_alias("churnml-survival", "champion").version)


def _tags(version: str) -> dict[str, str]:
    return _mlflow().get_model_version("churnml-survival", version).tags


@pytest.mark.slow
def test_the_survival_model_is_registered_with_the_stages_metrics_and_loads_back(fitted, store):
    from churnml.modeling.registry import load_champion
    from churnml.survival.model import curve_frame

    tables, cfg, result, now = fitted
    run_id, version = _register(result, cfg, store)
    assert version == "1" and _champion() == "1"
    lg = result.metrics["models"]["lightgbm"]
    run = _mlflow().get_run(run_id)
    # the metrics MLflow holds are the document's, name for name
    assert run.data.metrics["models.lightgbm.integrated_brier"] == pytest.approx(lg["integrated_brier"])
    assert run.data.metrics["models.lightgbm.harrell_c"] == pytest.approx(lg["harrell_c"])
    tags = _tags("1")
    assert tags["promotion_metric"] == "integrated_brier" and tags["compared_on"] == "no_champion"
    assert float(tags["test_integrated_brier"]) == pytest.approx(lg["integrated_brier"])
    model, loaded_version = load_champion("survival", root=store)
    assert loaded_version == "1"
    pd.testing.assert_frame_equal(curve_frame(model, now, H), curve_frame(result.model, now, H))


@pytest.mark.slow
def test_the_survival_champion_moves_only_by_the_margin_and_never_from_an_experiment(
    fitted, store, monkeypatch
):
    tables, cfg, result, _ = fitted
    lg = dict(result.metrics["models"]["lightgbm"])
    base = {"models": {"lightgbm": lg}, "test_cutoffs": result.metrics["test_cutoffs"]}

    def doc(ibs: float) -> dict:
        return {**base, "models": {"lightgbm": {**lg, "integrated_brier": ibs}}}

    _register(result, cfg, store, doc(0.080))
    # the final model learned the test spells' outcomes: it is compared on its logged metric, never re-scored
    _, v2 = _register(result, cfg, store, doc(0.080 - 0.0004))  # better, but within the margin 0.0005
    assert _champion() == "1" and _tags(v2)["promotion_decision"] == "kept_champion"
    assert _tags(v2)["compared_on"] == "champion_logged_metric"
    assert float(_tags(v2)["champion_metric_value"]) == pytest.approx(0.080)
    monkeypatch.setenv("DVC_EXP_NAME", "bushy-pies")
    _, v3 = _register(result, cfg, store, doc(0.070))
    assert _champion() == "1" and _tags(v3)["promotion_decision"] == "candidate"
    assert _tags(v3)["rule_decision"] == "promoted"
    monkeypatch.delenv("DVC_EXP_NAME")
    _, v4 = _register(result, cfg, store, doc(0.070))
    assert _champion() == v4 == "4" and _tags(v4)["previous_champion"] == "1"
    # harrell_c: higher is better
    cfg_c = small_config()
    cfg_c.survival.promotion_metric = "harrell_c"
    _, v5 = _register(result, cfg_c, store, {**base, "models": {"lightgbm": {**lg, "harrell_c": 0.2}}})
    assert _tags(v5)["promotion_decision"] == "kept_champion"
    # by hand, as for the 90-day models
    from churnml.modeling.registry import promote, rollback

    assert promote("survival", v3, "experiment reviewed", root=store) == "4"
    assert _champion() == v3
    assert rollback("survival", root=store) == "4"
    cfg_bad = small_config()
    cfg_bad.survival.promotion_metric = "roc_auc"
    with pytest.raises(
        ChurnmlError, match="survival.promotion_metric: 'roc_auc' is not one of integrated_brier"
    ):
        _register(result, cfg_bad, store)


@pytest.mark.slow
def test_a_champion_is_rescored_only_on_spells_it_never_saw(fitted):
    import copy

    from churnml.modeling.model import FeatureSchemaError
    from churnml.survival.evaluation import survival_metrics
    from churnml.survival.model import curve_frame
    from churnml.survival.register import champion_on_test

    _, _, result, _ = fitted
    with pytest.raises(ChurnmlError, match="after this run's test start"):
        champion_on_test(result.model, result, H, "integrated_brier")  # censored at the data end
    # a model of other data (a feature this run's rows lack) cannot be compared: said before anything else,
    # so the promotion rule lets the new version take the alias (test_tracking: the 90-day models)
    col = next(c for c in result.model.features if c in result.test.columns and not c.startswith("survival_"))
    other = copy.copy(result)
    other.test = result.test.drop(columns=[col])
    with pytest.raises(FeatureSchemaError, match=col):
        champion_on_test(result.model, other, H, "integrated_brier")
    earlier = copy.copy(result.model)
    earlier.info = {**result.model.info, "censored_at": str(pd.Timestamp(result.test_start).date())}
    value = champion_on_test(earlier, result, H, "integrated_brier")
    surv = curve_frame(result.model, result.test, H)[
        [f"s_{t}" for t in range(1, result.follow + 1)]
    ].to_numpy()
    expected = survival_metrics(result.test_spells, surv, result.follow)["integrated_brier"]
    assert value == pytest.approx(expected) and math.isfinite(value)


def test_the_readme_documents_every_forecast_table_column_and_key():
    """The README's table of the forecast tables against their one declaration (churnml.contract.tables)."""
    import re
    from pathlib import Path

    from churnml.contract.tables import FORECAST_RUNS_COLUMNS

    readme = (Path(__file__).resolve().parents[1] / "README.md").read_text(encoding="utf-8")
    for name, columns in (
        ("account_survival", ACCOUNT_SURVIVAL_COLUMNS),
        ("revenue_forecast", REVENUE_FORECAST_COLUMNS),
        ("forecast_runs", FORECAST_RUNS_COLUMNS),
    ):
        row = re.search(rf"^\| `{name}` \| ([^|]+) \| ([^|]+) \|$", readme, re.MULTILINE)
        assert row, f"README: no row for {name}"
        key = [k.strip() for k in row.group(1).split(",")]
        assert key == [c.name for c in columns if c.key], name
        text = row.group(2)
        for col in columns:
            if col.key:
                continue
            measure = re.match(r"^(arr|grr|nrr)_(mean|p025|p10|p50|p90|p975)$", col.name)
            if measure:  # written once for the three measures: "arr_/grr_/nrr_ mean, p025, ..."
                assert "arr_/grr_/nrr_" in text and measure.group(2) in text, col.name
            else:
                assert re.search(rf"\b{col.name}\b", text), f"README: {name}.{col.name} undocumented"
