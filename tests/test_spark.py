"""Spark engine: the same features and scores as the DuckDB path on the same simulated input (parity)."""

from __future__ import annotations

import json
import os
from dataclasses import replace

import numpy as np
import pandas as pd
import pytest

from churnml.config import (
    FeaturesConfig,
    LabelsConfig,
    ModelConfig,
    ScoringConfig,
    SpineConfig,
    SplitConfig,
)
from churnml.contract.io import write_folder
from churnml.dataset.labels import build_labels
from churnml.dataset.spine import build_spine, data_end, training_cutoffs
from churnml.errors import ChurnmlError
from churnml.features.engine import build_features
from churnml.features.sql import CATEGORICAL
from churnml.modeling.model import train_model
from churnml.names import TARGETS
from churnml.scoring.batch import score_chunk

from _env import require_java
from tables import fast_lgbm

# pyspark 4.0 passes pandas a keyword that pandas 3 deprecates
pytestmark = pytest.mark.filterwarnings("ignore:The copy keyword is deprecated")

VERSIONS = {"churn": "3", "expansion": "5"}
TOLERANCE = {"rtol": 1e-9, "atol": 1e-9}  # summation order differs between engines, nothing else may


def _require_pyspark() -> None:
    """pyspark installed: under CI a missing one fails, elsewhere the test is skipped (as tests/_env.py)."""
    try:
        import pyspark  # noqa: F401
    except ImportError:
        reason = "pyspark is not installed (pip install -e '.[spark]')"
        if os.environ.get("CI"):
            pytest.fail(f"{reason} (CI is set, so this dependency is required)", pytrace=False)
        pytest.skip(reason)


@pytest.fixture(scope="module")
def spark():
    require_java()
    _require_pyspark()
    from churnml.features.spark import spark_session

    session = spark_session(app="churnml-tests", master="local[2]", quick_start=True)
    yield session
    session.stop()


@pytest.fixture(scope="module")
def portfolio(sim, tmp_path_factory):
    """The simulated tables, also as a Parquet folder, and the spine of three cutoffs (the last unlabeled)."""
    tables, _ = sim
    folder = tmp_path_factory.mktemp("spark_input")
    write_folder(tables, folder)
    cutoffs = training_cutoffs(tables, SpineConfig())
    chosen = [cutoffs[2], cutoffs[len(cutoffs) // 2], cutoffs[-1]]
    return tables, folder, build_spine(tables["subscriptions"], chosen), cutoffs


@pytest.fixture(scope="module")
def spark_features(spark, portfolio):
    """The cluster path: spine and features built by Spark from the Parquet folder, kept as a Spark frame."""
    from churnml.features.spark import build_features_spark, build_spine_spark

    _, folder, spine, _ = portfolio
    spark_spine = build_spine_spark(spark, folder, sorted(spine["cutoff"].unique()))
    frame = build_features_spark(spark, folder, spark_spine, FeaturesConfig(), as_pandas=False)
    yield frame
    frame.unpersist()


def _differences(expected: pd.DataFrame, got: pd.DataFrame) -> list[str]:
    """Columns whose values differ (floats beyond TOLERANCE, text exactly), with a count each."""
    out = []
    for col in expected.columns:
        a, b = expected[col], got[col]
        if col in CATEGORICAL or col == "account_id":
            same = (a.astype(object).where(a.notna(), None) == b.astype(object).where(b.notna(), None)).all()
            bad = 0 if same else int((a.fillna("<null>") != b.fillna("<null>")).sum())
        elif col == "cutoff":
            bad = int((a.to_numpy() != b.to_numpy()).sum())
        else:
            close = np.isclose(a.to_numpy(float), b.to_numpy(float), equal_nan=True, **TOLERANCE)
            bad = int((~close).sum())
        if bad:
            out.append(f"{col} ({bad} rows)")
    return out


@pytest.mark.spark
def test_spark_features_equal_duckdb_on_every_column_and_row(spark_features, portfolio):
    tables, _, spine, _ = portfolio
    expected = build_features(tables, spine, FeaturesConfig())
    kinds = dict(spark_features.dtypes)
    assert kinds["account_id"] == "string" and kinds["cutoff"] == "timestamp_ntz"
    assert all(kinds[c] == ("string" if c in CATEGORICAL else "double") for c in expected.columns[2:])
    got = spark_features.toArrow().to_pandas()
    got = got.assign(cutoff=pd.to_datetime(got["cutoff"]).astype("datetime64[us]"))
    keys = ["account_id", "cutoff"]
    expected = expected.sort_values(keys, ignore_index=True)
    got = got.sort_values(keys, ignore_index=True)

    assert list(got.columns) == list(expected.columns)
    assert len(got) == len(expected) == len(spine)
    assert got["cutoff"].nunique() == 3
    assert _differences(expected, got) == []
    # not a vacuous match: the families are there and mostly filled
    assert len(expected.columns) > 60 and expected.notna().to_numpy().mean() > 0.9


@pytest.mark.spark
def test_engine_spark_from_frames_keeps_the_spine_order_and_dtypes(spark, portfolio):
    tables, _, spine, _ = portfolio
    cfg = FeaturesConfig(families=["account", "contract", "support"])
    shuffled = spine.sample(frac=1.0, random_state=3).reset_index(drop=True)
    got = build_features(tables, shuffled, replace(cfg, engine="spark"))  # on the active session
    expected = build_features(tables, shuffled, cfg)

    assert list(got.columns) == list(expected.columns)
    assert (got.dtypes == expected.dtypes).all()
    assert got[["account_id", "cutoff"]].equals(expected[["account_id", "cutoff"]])
    assert _differences(expected, got) == []


@pytest.mark.spark
def test_spark_refuses_a_source_without_a_required_table(spark, portfolio):
    from churnml.features.spark import build_features_spark

    tables, _, spine, _ = portfolio
    partial = {k: v for k, v in tables.items() if k != "usage"}
    with pytest.raises(ChurnmlError, match="required table.*usage"):
        build_features_spark(spark, partial, spine, FeaturesConfig())


@pytest.fixture(scope="module")
def models(portfolio):
    """Both models, trained quickly on DuckDB features of every monthly cutoff."""
    tables, _, _, cutoffs = portfolio
    spine = build_spine(tables["subscriptions"], cutoffs)
    features = build_features(tables, spine, FeaturesConfig())
    labels = build_labels(tables["subscriptions"], spine, LabelsConfig(), data_end(tables))
    lgbm = fast_lgbm(n_estimators=40, early_stopping_rounds=10)
    cfg = ModelConfig(lgbm=lgbm)
    return {t: train_model(features, labels, t, cfg, SplitConfig(), 90) for t in TARGETS}


def _items(text: str) -> list[tuple[float, str]]:
    return [(item["points"], item["direction"]) for item in json.loads(text)]


@pytest.mark.spark
def test_spark_scores_equal_score_chunk_and_write_idempotently(
    spark, spark_features, portfolio, models, tmp_path, caplog
):
    from pyspark.sql import functions as F

    from churnml.scoring.spark import score_spark, scores_schema, write_scores_spark

    tables, _, spine, _ = portfolio
    as_of = spine["cutoff"].max()
    duck = build_features(tables, spine[spine["cutoff"] == as_of], FeaturesConfig())
    expected, _ = score_chunk(duck, models, VERSIONS, ScoringConfig())
    expected = expected.sort_values("account_id", ignore_index=True)
    one_day = spark_features.where(F.to_date("cutoff") == F.lit(as_of.date()))

    # one partition holds the whole date, as one chunk does on DuckDB: every column equal, reasons too
    scores = score_spark(spark, one_day.coalesce(1), models, VERSIONS, ScoringConfig(), run_id="run-1")
    assert [f"{name} {kind}" for name, kind in scores.dtypes] == scores_schema().split(", ")
    got = scores.toPandas().sort_values("account_id", ignore_index=True)
    assert len(got) == len(expected) == len(duck) > 100
    assert got["account_id"].tolist() == expected["account_id"].tolist()
    for col in ("churn_probability", "expansion_probability", "arr", "arr_at_risk"):
        np.testing.assert_allclose(got[col], expected[col], **TOLERANCE, err_msg=col)
    for col in ("risk_tier", "segment", "touch_model", "recommended_play", "top_reasons"):
        assert got[col].tolist() == expected[col].tolist(), col
    assert (pd.to_datetime(got["as_of"]) == as_of).all() and set(got["run_id"]) == {"run-1"}
    assert set(got["churn_model_version"]) == {"3"} and got["top_reasons"].str.startswith("[{").mean() > 0.9

    # spread over partitions, with one account moved to an industry the models never saw: the same
    # probabilities and drivers as DuckDB scoring the same rows with that industry missing (sentences quote each
    # chunk's medians); the value is counted on the driver, before any task, in one warning line, and scored as
    # missing by the tasks, as on DuckDB (churnml.scoring.batch.unseen_as_missing)
    first = expected["account_id"].iloc[0]
    odd = one_day.withColumn(
        "account_industry",
        F.when(F.col("account_id") == first, F.lit("agritech")).otherwise(F.col("account_industry")),
    )
    blank = duck.assign(account_industry=duck["account_industry"].mask(duck["account_id"] == first, None))
    want, _ = score_chunk(blank, models, VERSIONS, ScoringConfig())
    want = want.sort_values("account_id", ignore_index=True)
    caplog.set_level("WARNING")
    spread = score_spark(spark, odd.repartition(3), models, VERSIONS, ScoringConfig()).toPandas()
    assert (
        "never saw, scored as missing" in caplog.text
        and "account_industry 'agritech' (1 rows)" in caplog.text
    )
    spread = spread.sort_values("account_id", ignore_index=True)
    np.testing.assert_allclose(spread["churn_probability"], want["churn_probability"], **TOLERANCE)
    assert [_items(t) for t in spread["top_reasons"]] == [_items(t) for t in want["top_reasons"]]

    # a re-run of the same date replaces its rows, in Parquet and in a catalog table
    path = str(tmp_path / "churn_scores")
    for _ in range(2):
        write_scores_spark(scores, path)
        write_scores_spark(scores, "churn_scores_test")
    assert len(pd.read_parquet(path)) == len(expected)
    assert spark.table("churn_scores_test").count() == len(expected)
    spark.sql("DROP TABLE churn_scores_test")


@pytest.mark.spark
def test_spark_scoring_job_scores_every_active_account_once_per_as_of(spark, portfolio, models, tmp_path):
    from churnml.config import Config
    from churnml.scoring.batch import score_accounts
    from churnml.scoring.spark import score_accounts_spark

    tables, folder, spine, _ = portfolio
    as_of = spine["cutoff"].max()

    def load(target: str, ref: str):
        assert ref == "champion"
        return models[target], VERSIONS[target]

    cfg = Config()
    expected = score_accounts(tables, cfg, as_of=as_of, load_model=load, write=False).scores
    out = str(tmp_path / "lake" / "churn_scores")
    # one run (a minute of Spark): that a re-run of the date replaces its rows is write_scores_spark's
    # dynamic partition overwrite, checked in test_spark_scores_equal_score_chunk_and_write_idempotently
    result = score_accounts_spark(spark, folder, cfg, out, as_of=as_of, load_model=load)
    got = pd.read_parquet(out).sort_values("account_id", ignore_index=True)
    expected = expected.sort_values("account_id", ignore_index=True)
    assert result["rows"] == len(got) == len(expected) == int((spine["cutoff"] == as_of).sum())
    assert got["account_id"].tolist() == expected["account_id"].tolist()
    np.testing.assert_allclose(got["churn_probability"], expected["churn_probability"], **TOLERANCE)
    np.testing.assert_allclose(got["expansion_probability"], expected["expansion_probability"], **TOLERANCE)
    assert got["risk_tier"].tolist() == expected["risk_tier"].tolist()
    assert set(got["run_id"]) == {result["run_id"]} and sum(result["tiers"].values()) == len(got)

    # scoring a date past the data is refused before anything is built
    late = pd.Timestamp(result["as_of"]) + pd.Timedelta(days=400)
    with pytest.raises(ChurnmlError, match="after the data end"):
        score_accounts_spark(spark, folder, cfg, out, as_of=late, load_model=load)


def test_spark_sql_casts_decimal_literals_to_double_as_duckdb_divides():
    pytest.importorskip("sqlglot")
    from churnml.features.spark import to_spark_sql

    sql = to_spark_sql(
        "SELECT DATE_DIFF('microsecond', a, b) / 3600000000.0 AS h, x * 1e-9 AS y, 0.9 AS z FROM t"
    )
    assert "CAST(3600000000.0 AS DOUBLE)" in sql and "CAST(0.9 AS DOUBLE)" in sql
    assert "1e-9" in sql.lower() and "DATE_DIFF(" not in sql.upper()
