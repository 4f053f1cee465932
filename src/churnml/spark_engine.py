"""Spark engine: the feature SQL of :mod:`churnml.feature_sql` run on Spark, and batch scoring with mapInPandas.

The definitions are not written twice. Each :class:`~churnml.feature_sql.SqlStep` (DuckDB dialect) is
transpiled by sqlglot to Spark SQL and exposed as a temporary view under the step's name, in the order
:func:`churnml.features.build_features` runs them (a step read by several later ones is persisted first,
see :func:`step_reads`); the final frame goes through the same tidy step as the DuckDB path. Two dialect gaps are closed here rather than in the definitions:

- Spark reads a literal such as ``3600000000.0`` as DECIMAL, DuckDB divides it as DOUBLE: decimal literals
  are cast to DOUBLE after parsing, so the arithmetic (and its rounding) is the same.
- Spark 4 runs ANSI SQL by default (errors on a zero divisor or an overflow); DuckDB does not raise there.
  Feature runs switch ANSI off and the session time zone to UTC (dates are UTC calendar days), and put both
  settings back afterwards, so a session handed in by a cluster (Databricks) works too.

Scoring ships the models as the text of their saved ``model.txt`` / ``model.json`` (a broadcast variable;
no pickled boosters) and applies :func:`churnml.scoring.score_chunk`, the function the DuckDB path uses, to
chunks of each partition. pyspark is imported lazily: the rest of the package never needs it.
"""

from __future__ import annotations

import atexit
import contextlib
import hashlib
import logging
import os
import shutil
import sys
import tempfile
import time
from collections import Counter
from collections.abc import Iterator, Mapping, Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Any

import pandas as pd
import pyarrow as pa
import pyarrow.parquet as pq

from churnml import feature_sql as fs
from churnml.config import FeaturesConfig, ScoringConfig
from churnml.errors import ChurnmlError
from churnml.feature_sql import CATEGORICAL, SqlStep, Windows
from churnml.features import (
    _TYPED_COLUMNS,
    _spine_keys,
    _tidy,
    all_steps,
    enabled_families,
    family_columns,
    family_steps,
)
from churnml.schemas import REQUIRED_TABLES, TABLES
from churnml.spine import SPINE_SQL, to_cutoffs

if TYPE_CHECKING:
    from pyspark.sql import DataFrame as SparkDataFrame
    from pyspark.sql import SparkSession

log = logging.getLogger(__name__)

LOCAL_SHUFFLE_PARTITIONS = 4  # Spark's default of 200 is tuned for clusters; local runs drown in tiny tasks
# Runtime settings every feature run needs (restored afterwards): DuckDB's arithmetic, UTC calendar days.
FEATURE_RUNTIME_CONF = {"spark.sql.ansi.enabled": "false", "spark.sql.session.timeZone": "UTC"}
# Spark type of each warehouse column kind (churnml.warehouse.SCORES_COLUMNS).
_SPARK_TYPES = {"text": "string", "date": "date", "ts": "timestamp", "float": "double", "int": "bigint"}
_MODEL_CACHE: dict[str, dict[str, Any]] = {}  # per Python worker: models by payload digest


# ----------------------------------------------------------------------------------------------- session


def _is_local(master: str) -> bool:
    return master == "local" or master.startswith("local[")


def spark_session(
    app: str = "churnml",
    master: str = "local[2]",
    warehouse_dir: str | Path | None = None,
    *,
    driver_memory: str = "2g",
    shuffle_partitions: int | None = None,
    quick_start: bool = False,
    conf: Mapping[str, str] | None = None,
) -> SparkSession:
    """A Spark session set up for churnml: UTC, no UI, no network, a per-run warehouse folder.

    On a cluster the cluster's settings win: an active session (a Databricks job or notebook) is returned
    as it is, and under ``spark-submit`` the session takes its master, catalog and warehouse from the
    submit command (``master`` is ignored). :func:`build_features_spark` sets the runtime settings it
    needs itself (UTC, ANSI off), so either works.

    Args:
        app: application name.
        master: ``local[N]`` for a run on this machine, or a cluster master URL.
        warehouse_dir: ``spark.sql.warehouse.dir``; locally default a fresh temporary folder removed at
            exit (a shared folder makes re-runs fail with LOCATION_ALREADY_EXISTS).
        driver_memory: JVM heap of a local driver (in local mode it also runs the tasks).
        shuffle_partitions: ``spark.sql.shuffle.partitions``; default 4 locally, Spark's own on a cluster.
        quick_start: for short local runs (tests, small data): the driver JVM compiles with C1 only and
            collects with the serial GC, which about halves the first feature build on a busy two-core
            machine; long computations run slower with it.
        conf: further settings, applied last.

    Raises:
        ChurnmlError: when pyspark is not installed or Java cannot start.
    """
    try:
        from pyspark.sql import SparkSession
    except ImportError:
        raise ChurnmlError(
            "features.engine=spark needs pyspark: pip install 'churnml[spark]' (and Java 17)"
        ) from None
    active = SparkSession.getActiveSession()
    if active is not None:
        return active
    # Python workers must run this environment's interpreter, or pandas UDFs fail on import.
    os.environ.setdefault("PYSPARK_PYTHON", sys.executable)
    os.environ.setdefault("PYSPARK_DRIVER_PYTHON", sys.executable)
    submitted = "PYSPARK_GATEWAY_PORT" in os.environ  # a JVM (spark-submit) started this interpreter
    local = _is_local(master) and not submitted
    settings = {
        "spark.app.name": app,
        "spark.ui.showConsoleProgress": "false",
        "spark.sql.session.timeZone": "UTC",
        "spark.sql.execution.arrow.pyspark.enabled": "true",
        "spark.sql.ansi.enabled": "false",
    }
    if not submitted:
        settings["spark.master"] = master
    if warehouse_dir is None and local:
        warehouse_dir = tempfile.mkdtemp(prefix="churnml-spark-")
        atexit.register(shutil.rmtree, warehouse_dir, True)
    if warehouse_dir is not None:
        settings["spark.sql.warehouse.dir"] = str(warehouse_dir)
    if local:
        os.environ.setdefault("SPARK_LOCAL_IP", "127.0.0.1")
        jvm = "-Duser.timezone=UTC" + (" -XX:TieredStopAtLevel=1 -XX:+UseSerialGC" if quick_start else "")
        settings |= {
            "spark.ui.enabled": "false",
            "spark.log.level": "ERROR",
            "spark.driver.host": "127.0.0.1",
            "spark.driver.bindAddress": "127.0.0.1",
            "spark.driver.memory": driver_memory,
            "spark.driver.extraJavaOptions": jvm,
            "spark.sql.catalogImplementation": "in-memory",  # no Derby metastore_db in the working directory
            "spark.local.dir": str(Path(warehouse_dir).resolve() / "_local"),
            "spark.sql.shuffle.partitions": str(shuffle_partitions or LOCAL_SHUFFLE_PARTITIONS),
            # one task per core already: LightGBM and BLAS in a Python worker must not spawn more threads
            "spark.executorEnv.OMP_NUM_THREADS": "1",
        }
    elif shuffle_partitions:
        settings["spark.sql.shuffle.partitions"] = str(shuffle_partitions)
    settings |= dict(conf or {})
    builder = SparkSession.builder
    for key, value in settings.items():
        builder = builder.config(key, value)
    try:
        return builder.getOrCreate()
    except Exception as exc:  # py4j / JVM start-up failures carry long Java traces
        first = str(exc).strip().splitlines()[:1]
        raise ChurnmlError(f"spark: cannot start a session on {master} ({''.join(first)[:200]})") from None


# ------------------------------------------------------------------------------------------- SQL dialect


def to_spark_sql(sql: str) -> str:
    """One DuckDB-dialect statement as Spark SQL (sqlglot), decimal literals cast to DOUBLE as DuckDB divides.

    Raises:
        ChurnmlError: when sqlglot cannot express a construct in Spark SQL.
    """
    import sqlglot
    from sqlglot import exp
    from sqlglot.errors import ErrorLevel, SqlglotError

    def doubles(node: exp.Expression) -> exp.Expression:
        if (
            isinstance(node, exp.Literal)
            and not node.is_string
            and "." in node.this
            and "e" not in node.this.lower()
        ):
            return exp.cast(node, exp.DataType.build("double"))
        return node

    try:
        tree = sqlglot.parse_one(sql, read="duckdb").transform(doubles)
        return tree.sql(dialect="spark", unsupported_level=ErrorLevel.RAISE)
    except SqlglotError as exc:
        raise ChurnmlError(
            f"spark: cannot transpile a feature definition ({str(exc).splitlines()[0]})"
        ) from None


class _SparkRun:
    """The steps of one feature build, each a temporary view (persisted when read more than once); the
    views, cached frames and staged inputs go at the end."""

    def __init__(self, spark: SparkSession) -> None:
        self.spark = spark
        self.frames: dict[str, SparkDataFrame] = {}
        self.views: list[str] = []
        self.stage: Path | None = None  # local Parquet copies of in-memory inputs

    def from_arrow(self, name: str, table: pa.Table) -> SparkDataFrame:
        """An in-memory table as a Spark frame that does not carry its rows in the query plan.

        ``createDataFrame`` embeds the rows in every plan that reads them (planning slows down, and each task
        ships its slice of them); a local session reads a Parquet copy instead, a cluster a cached frame.
        """
        if _is_local_session(self.spark):
            if self.stage is None:
                self.stage = Path(tempfile.mkdtemp(prefix="churnml-spark-stage-"))
            path = self.stage / f"{name}.parquet"
            pq.write_table(table, path)
            return self.spark.read.parquet(str(path))
        from pyspark import StorageLevel

        frame = self.spark.createDataFrame(table).persist(StorageLevel.MEMORY_AND_DISK)
        frame.count()
        self.frames[f"_arrow_{name}"] = frame
        return frame

    def view(self, name: str, frame: SparkDataFrame) -> None:
        frame.createOrReplaceTempView(name)
        self.views.append(name)

    def query(self, sql: str, what: str) -> SparkDataFrame:
        try:
            return self.spark.sql(to_spark_sql(sql))
        except ChurnmlError:
            raise
        except Exception as exc:  # AnalysisException and friends: first line only, no Java trace
            raise ChurnmlError(f"features (spark): {what} failed ({_first_line(exc)})") from None

    def materialise(self, step: SqlStep, persist: bool = True) -> SparkDataFrame:
        """Expose a step under its name: computed and kept now, or (read once only) a lazy view."""
        from pyspark import StorageLevel

        began = time.perf_counter()
        frame = self.query(step.sql, f"step {step.name}")
        if persist:
            frame = frame.persist(StorageLevel.MEMORY_AND_DISK)
            try:
                frame.count()
            except Exception as exc:
                raise ChurnmlError(
                    f"features (spark): step {step.name} failed ({_first_line(exc)})"
                ) from None
        self.drop(step.name)
        if persist:
            self.frames[step.name] = frame
        self.view(step.name, frame)
        log.debug("features (spark): %s in %.2f s", step.name, time.perf_counter() - began)
        return frame

    def drop(self, name: str) -> None:
        frame = self.frames.pop(name, None)
        if frame is not None:
            frame.unpersist()

    def values(self, sql: str, what: str) -> list:
        return [r[0] for r in self.query(sql, what).collect()]

    def close(self, keep_stage: bool = False) -> None:
        """Unpersist the steps and drop the views; the staged copies go too unless a lazy result needs them."""
        for name in list(self.frames):
            self.drop(name)
        for name in dict.fromkeys(self.views):
            self.spark.catalog.dropTempView(name)
        if self.stage is not None:
            if keep_stage:
                atexit.register(shutil.rmtree, str(self.stage), True)
            else:
                shutil.rmtree(self.stage, ignore_errors=True)


def _is_local_session(spark: SparkSession) -> bool:
    try:
        return _is_local(spark.sparkContext.master)
    except Exception:  # Spark Connect: no SparkContext, and no shared local disk either
        return False


def _first_line(exc: BaseException) -> str:
    """The message of a Spark error without its Java trace (py4j's own first line only names the call)."""
    text = str(getattr(exc, "desc", None) or exc).strip()
    java = getattr(exc, "java_exception", None)
    if java is not None:
        with contextlib.suppress(Exception):  # the JVM may be gone (out of memory): keep py4j's text
            text = str(java.toString()).strip()
    return (text.splitlines() or [type(exc).__name__])[0][:300]


# --------------------------------------------------------------------------------------------- features


def _is_spark_frame(value: object) -> bool:
    return type(value).__module__.startswith("pyspark.") and hasattr(value, "createOrReplaceTempView")


def _arrow_for_spark(frame: pd.DataFrame) -> pa.Table:
    """A pandas frame as Arrow for ``createDataFrame`` (pandas 3's ``str`` columns go through Arrow cleanly)."""
    return pa.Table.from_pandas(frame, preserve_index=False)


def _read_parquet(spark: SparkSession, location: str) -> SparkDataFrame | None:
    """The Parquet file or folder at ``location``, or None when there is none."""
    try:
        return spark.read.parquet(location)
    except Exception as exc:
        if "PATH_NOT_FOUND" in str(exc) or "does not exist" in str(exc):
            return None
        raise ChurnmlError(f"{location}: cannot read Parquet ({_first_line(exc)})") from None


def register_sources_spark(
    spark: SparkSession, source: Mapping[str, Any] | Path | str, run: _SparkRun | None = None
) -> set[str]:
    """Expose the contract tables as typed temporary views named after them; return the names present.

    Args:
        spark: the session.
        source: a folder (local path or a URI such as ``s3://bucket/crm``, ``dbfs:/...``) holding
            ``<table>.parquet`` files or folders; or a mapping table name -> pandas frame, Spark
            DataFrame, or catalog table name (``"crm.usage"``).
        run: the run whose views these are (dropped with it).

    Raises:
        ChurnmlError: when a required table is missing or a column the features read is absent.
    """
    run = run or _SparkRun(spark)
    frames: dict[str, SparkDataFrame] = {}
    if isinstance(source, str | Path):
        text = str(source)
        remote = "://" in text or text.startswith("dbfs:")
        if not remote and not Path(text).is_dir():
            raise ChurnmlError(f"{text}: no such folder")
        for name in TABLES:
            if not remote and not (Path(text) / f"{name}.parquet").exists():
                if (Path(text) / f"{name}.csv").is_file():
                    raise ChurnmlError(
                        f"{text}: {name}.csv found; features read Parquet (run `churnml validate` to write it)"
                    )
                continue
            frame = _read_parquet(spark, f"{text.rstrip('/')}/{name}.parquet")
            if frame is not None:
                frames[name] = frame
    else:
        for name, value in source.items():
            if name not in TABLES or value is None:
                continue
            if isinstance(value, str):
                try:
                    frames[name] = spark.table(value)
                except Exception as exc:
                    raise ChurnmlError(f"{name}: catalog table {value!r} ({_first_line(exc)})") from None
            elif _is_spark_frame(value):
                frames[name] = value
            elif isinstance(value, pd.DataFrame):
                frames[name] = run.from_arrow(name, _arrow_for_spark(value))
            else:
                raise ChurnmlError(f"{name}: expected a pandas or Spark DataFrame or a table name")
    missing = [n for n in REQUIRED_TABLES if n not in frames]
    if missing:
        raise ChurnmlError(f"features: required table(s) missing: {', '.join(missing)}")
    for name, frame in frames.items():
        run.view(f"src_{name}", frame)
        try:
            typed = run.spark.sql(to_spark_sql(f"SELECT {_TYPED_COLUMNS[name]} FROM src_{name}"))
        except ChurnmlError:
            raise
        except Exception as exc:
            raise ChurnmlError(f"{name}: cannot read for features ({_first_line(exc)})") from None
        run.view(name, typed)
    return set(frames)


def _dates(values: pd.Series) -> pa.Array:
    """Whole days as Arrow date32: Spark gets DATE values, whatever its session or JVM time zone."""
    return pa.array(
        pd.to_datetime(values).to_numpy().astype("datetime64[D]"), type=pa.date32(), from_pandas=True
    )


def _spine_rows(
    spark: SparkSession, spine: pd.DataFrame | SparkDataFrame, run: _SparkRun
) -> list[pd.Timestamp]:
    """Register ``spine_rows`` (row_id, account_id, cutoff DATE) and ``spine_keys``; return the cutoffs."""
    if _is_spark_frame(spine):
        from pyspark.sql import functions as F

        missing = [c for c in ("account_id", "cutoff") if c not in spine.columns]
        if missing:
            raise ChurnmlError(f"spine: missing column {missing[0]!r}")
        rows = spine.select(
            F.monotonically_increasing_id().alias("row_id"),
            F.col("account_id").cast("string").alias("account_id"),
            F.col("cutoff").cast("date").alias("cutoff"),
        )
        run.view("spine_rows_src", rows)
        step = run.materialise(SqlStep("spine_rows", "spine", "SELECT * FROM spine_rows_src"))
        stats = step.selectExpr("COUNT(*) AS n", "COUNT(DISTINCT account_id, cutoff) AS keys").first()
        if stats["n"] == 0:
            raise ChurnmlError("spine: no rows (no account is active at the cutoffs)")
        if stats["keys"] != stats["n"]:
            raise ChurnmlError("spine: duplicate (account_id, cutoff) rows")
        cutoffs = to_cutoffs(pd.to_datetime(run.values("SELECT DISTINCT cutoff FROM spine_rows", "spine")))
    else:
        keys = _spine_keys(spine)
        cutoffs = to_cutoffs(keys["cutoff"].unique())
        table = pa.table(
            {
                "row_id": pa.array(keys["row_id"].to_numpy(), type=pa.int64()),
                "account_id": pa.array(keys["account_id"].to_numpy(dtype=object), type=pa.string()),
                "cutoff": _dates(keys["cutoff"]),
            }
        )
        run.view("spine_rows_src", run.from_arrow("spine_rows", table))
        run.materialise(SqlStep("spine_rows", "spine", "SELECT * FROM spine_rows_src"))
    run.view("spine_keys", spark.sql("SELECT account_id, cutoff FROM spine_rows"))
    return cutoffs


def _usage_periods(cutoffs: list[pd.Timestamp], win: Windows, run: _SparkRun) -> fs.UsagePeriods:
    """Register ``usage_calendar`` and ``usage_cutoffs`` (:func:`churnml.feature_sql.usage_periods`, dates as DATE)."""
    periods = fs.usage_periods(cutoffs, win)
    for name, frame in (("usage_calendar", periods.calendar), ("usage_cutoffs", periods.cutoffs)):
        table = pa.Table.from_pandas(frame, preserve_index=False)
        for col in frame.columns:
            if frame[col].dtype.kind == "M":
                table = table.set_column(table.schema.get_field_index(col), col, _dates(frame[col]))
        run.view(f"{name}_src", run.from_arrow(name, table))
        run.materialise(SqlStep(name, "usage", f"SELECT * FROM {name}_src"))
    return periods


def step_reads(cfg: FeaturesConfig) -> Counter[str]:
    """How often each relation is read by the steps and the final join (CTE names aside).

    The table graph does not depend on the metric or activity-kind names, so the example lists of
    :func:`churnml.features.all_steps` give it.
    """
    import sqlglot
    from sqlglot import exp

    reads: Counter[str] = Counter()
    for step in all_steps(cfg):
        tree = sqlglot.parse_one(step.sql, read="duckdb")
        ctes = {cte.alias for cte in tree.find_all(exp.CTE)}
        reads.update(t.name for t in tree.find_all(exp.Table) if t.name not in ctes)
    return reads


def _build_spark(run: _SparkRun, present: set[str], cutoffs: list[pd.Timestamp], cfg: FeaturesConfig) -> str:
    """Run every step in the DuckDB engine's order; return the final SELECT (DuckDB dialect).

    A step read by several later ones (or by a metric / kind look-up) is computed once and kept; a step
    read once stays a lazy view, computed inside the query that reads it (a dozen fewer Spark jobs).
    """
    win = Windows.from_config(cfg)
    families = enabled_families(cfg, present)
    reads = step_reads(cfg)
    reads["usage_agg"] += 1  # the metric look-up below

    def materialise(step: SqlStep) -> None:
        run.materialise(step, persist=reads[step.name] > 1)

    materialise(SqlStep("contract_state", "contract", fs.contract_state_sql()))
    columns: dict[str, list[str]] = {}
    usage_start = None
    if {"usage", "adoption", "lifecycle"} & set(families):
        periods = _usage_periods(cutoffs, win, run)
        hi = periods.hi
        # one pass: Spark's aggregation spills and spreads by itself (DuckDB's account ranges are not needed)
        materialise(SqlStep("usage_agg", "usage", fs.usage_agg_sql(periods)))
        found = run.values("SELECT DISTINCT metric FROM usage_agg", "usage metrics")
        metrics = fs.column_tokens(sorted(str(m) for m in found if m is not None), "usage metric")
        key_metrics = [m for m in metrics if m.startswith(cfg.key_feature_prefix)] or list(metrics)
        materialise(SqlStep("usage_metric_features", "usage", fs.usage_metric_sql(win, periods)))
        materialise(
            SqlStep(
                "usage_account",
                "usage",
                fs.usage_account_sql(win, metrics, cfg.active_users_metric, key_metrics),
            )
        )
        first = run.values(f"SELECT MIN(date) FROM usage WHERE date < DATE '{hi}'", "usage start")[0]
        usage_start = None if first is None else pd.Timestamp(first).date().isoformat()
        run.drop("usage_agg")
        run.drop("usage_metric_features")
        columns["usage"] = fs.usage_feature_columns(win, metrics)
    kinds: dict[str, str] = {}
    if "csm" in families:
        found = run.values(
            f"SELECT DISTINCT kind FROM csm_activities WHERE occurred_at < DATE '{cutoffs[-1].date()}'",
            "CSM activity kinds",
        )
        kinds = fs.column_tokens(sorted(str(k) for k in found if k is not None), "CSM activity kind")
    steps = family_steps(cfg, kinds, usage_start)
    for family in families:
        for step in steps.get(family, []):
            materialise(step)
    ordered = {family: columns.get(family) or family_columns(family, cfg, kinds) for family in families}
    return fs.final_sql(ordered)


def tidy_spark(frame: SparkDataFrame) -> SparkDataFrame:
    """The feature column contract on a Spark frame: string ids and categoricals, TIMESTAMP_NTZ cutoff
    (a naive midnight, as pandas' datetime64[us]), DOUBLE elsewhere."""
    from pyspark.sql import functions as F

    cols = [F.col("account_id").cast("string").alias("account_id")]
    cols.append(F.col("cutoff").cast("timestamp_ntz").alias("cutoff"))
    for name in frame.columns[2:]:
        kind = "string" if name in CATEGORICAL else "double"
        cols.append(F.col(name).cast(kind).alias(name))
    return frame.select(*cols)


def build_features_spark(
    spark: SparkSession,
    source: Mapping[str, Any] | Path | str,
    spine: pd.DataFrame | SparkDataFrame,
    cfg: FeaturesConfig,
    *,
    as_pandas: bool = True,
) -> pd.DataFrame | SparkDataFrame:
    """Features for every spine row, as of its cutoff, computed by Spark from the same SQL definitions.

    Args:
        spark: a session (:func:`spark_session`, or the one a cluster provides).
        source: see :func:`register_sources_spark` (folder or URI of Parquet files, frames, catalog tables).
        spine: unique (account_id, cutoff) rows, pandas or Spark.
        cfg: feature families and windows (``memory_limit`` and ``threads`` are DuckDB's and ignored).
        as_pandas: collect the result to the driver as the pandas frame the DuckDB engine returns (same
            columns, dtypes and row order); False returns a persisted Spark DataFrame (call
            ``unpersist()`` when done) in the same column contract (see :func:`tidy_spark`), unordered.

    Raises:
        ChurnmlError: on a bad spine, a missing table or column, an unknown family, or a failed step.
    """
    saved = {key: spark.conf.get(key, None) for key in FEATURE_RUNTIME_CONF}
    for key, value in FEATURE_RUNTIME_CONF.items():
        spark.conf.set(key, value)
    run = _SparkRun(spark)
    try:
        present = register_sources_spark(spark, source, run)
        cutoffs = _spine_rows(spark, spine, run)
        final = _build_spark(run, present, cutoffs, cfg)
        if as_pandas:
            try:
                table = run.query(final, "final join").toArrow()
            except ChurnmlError:
                raise
            except Exception as exc:
                raise ChurnmlError(f"features (spark): final join failed ({_first_line(exc)})") from None
            return _tidy(table.to_pandas())
        import sqlglot
        from pyspark import StorageLevel

        # the final SELECT orders by row_id, an order a distributed result need not keep (a global sort)
        tree = sqlglot.parse_one(final, read="duckdb")
        tree.set("order", None)
        body = tree.sql(dialect="duckdb")
        out = tidy_spark(run.query(body, "final join")).persist(StorageLevel.MEMORY_AND_DISK)
        try:
            out.count()
        except Exception as exc:
            raise ChurnmlError(f"features (spark): final join failed ({_first_line(exc)})") from None
        return out
    finally:
        run.close(keep_stage=not as_pandas)
        for key, value in saved.items():
            if value is None:
                spark.conf.unset(key)
            else:
                spark.conf.set(key, value)


def build_spine_spark(
    spark: SparkSession, source: Mapping[str, Any] | Path | str, cutoffs: Sequence
) -> SparkDataFrame:
    """The spine on Spark: the accounts with a subscription active on the day before each cutoff.

    The same SQL as :func:`churnml.spine.build_spine` (``SPINE_SQL``), for portfolios whose subscriptions
    are not collected to the driver. Returns a Spark frame (account_id, cutoff DATE).
    """
    cuts = to_cutoffs(cutoffs)
    run = _SparkRun(spark)
    try:
        register_sources_spark(spark, source, run)
        run.view("spine_cutoffs", spark.createDataFrame(pa.table({"cutoff": _dates(pd.Series(cuts))})))
        run.view(
            "spine_subscriptions", spark.sql("SELECT account_id, start_date, end_date FROM subscriptions")
        )
        # the frame's plan holds the views' plans: they may go once it exists
        return run.query(SPINE_SQL, "spine")
    finally:
        run.close(keep_stage=True)


# ---------------------------------------------------------------------------------------------- scoring


def model_payload(models: Mapping[str, Any]) -> dict[str, dict[str, str]]:
    """Each model as the text of its saved files: {target: {"model.txt": ..., "model.json": ...}}."""
    from churnml.modeling import META_FILE, MODEL_FILE

    out = {}
    with tempfile.TemporaryDirectory(prefix="churnml-models-") as tmp:
        for target, model in models.items():
            folder = model.save(Path(tmp) / target)
            out[target] = {
                name: (folder / name).read_text(encoding="utf-8") for name in (MODEL_FILE, META_FILE)
            }
    return out


def models_from_payload(payload: Mapping[str, Mapping[str, str]]) -> dict[str, Any]:
    """The models of :func:`model_payload`, loaded with ``TrainedModel.load`` (cached per worker process)."""
    from churnml.modeling import TrainedModel

    digest = hashlib.sha256(
        "".join(
            f"{t}\0{n}\0{text}" for t, files in sorted(payload.items()) for n, text in sorted(files.items())
        ).encode()
    ).hexdigest()
    if digest not in _MODEL_CACHE:
        models = {}
        with tempfile.TemporaryDirectory(prefix="churnml-models-") as tmp:
            for target, files in payload.items():
                folder = Path(tmp) / target
                folder.mkdir()
                for name, text in files.items():
                    (folder / name).write_text(text, encoding="utf-8")
                models[target] = TrainedModel.load(folder)
        _MODEL_CACHE.clear()  # one model set per worker: a new run replaces the previous one
        _MODEL_CACHE[digest] = models
    return _MODEL_CACHE[digest]


def scores_schema() -> str:
    """The Spark schema (DDL) of the ``churn_scores`` table, from the warehouse's column list."""
    from churnml.warehouse import SCORES_COLUMNS

    return ", ".join(f"{c.name} {_SPARK_TYPES[c.kind]}" for c in SCORES_COLUMNS)


def _score_partitions(
    payload_ref: Any, versions: dict[str, str], cfg: ScoringConfig, run_id: str, scored_at: pd.Timestamp
):
    """The mapInPandas function: chunks of ``cfg.chunk_size`` rows of a partition through score_chunk."""
    from churnml.warehouse import SCORES_COLUMNS

    names = [c.name for c in SCORES_COLUMNS]

    def apply(batches: Iterator[pd.DataFrame]) -> Iterator[pd.DataFrame]:
        from churnml.scoring import score_chunk

        payload = payload_ref.value if hasattr(payload_ref, "value") else payload_ref
        models = models_from_payload(payload)

        def score(parts: list[pd.DataFrame]) -> pd.DataFrame:
            chunk = _tidy(pd.concat(parts, ignore_index=True))
            scores, _ = score_chunk(chunk, models, versions, cfg)
            out = scores.assign(
                as_of=pd.to_datetime(scores["as_of"]).dt.date, run_id=run_id, scored_at=scored_at
            )
            return out[names]

        held: list[pd.DataFrame] = []
        rows = 0
        for batch in batches:
            if len(batch) == 0:
                continue
            held.append(batch)
            rows += len(batch)
            if rows >= cfg.chunk_size:
                yield score(held)
                held, rows = [], 0
        if held:
            yield score(held)

    return apply


def _check_inputs(features_sdf: SparkDataFrame, models: Mapping[str, Any]) -> None:
    """The schema guard of :func:`churnml.scoring.score_accounts`, on the driver: every model input is a
    column, and no categorical column holds a value unseen at training (one aggregation job)."""
    from pyspark.sql import functions as F

    for model in models.values():
        absent = [c for c in model.features if c not in features_sdf.columns]
        if absent:
            raise ChurnmlError(
                f"{model.target} model: input lacks feature column(s) {', '.join(absent[:5])} "
                f"({len(absent)} of {len(model.features)})"
            )
    categorical = sorted({c for m in models.values() for c in m.categories})
    if not categorical:
        return
    found = features_sdf.agg(*(F.collect_set(F.col(c).cast("string")).alias(c) for c in categorical)).first()
    for model in models.values():
        unseen = {c: sorted(set(found[c]) - set(levels)) for c, levels in model.categories.items()}
        unseen = {c: v for c, v in unseen.items() if v}
        if unseen:
            shown = "; ".join(f"{c}: {', '.join(map(repr, v[:5]))}" for c, v in unseen.items())
            raise ChurnmlError(
                f"{model.target} model: unseen categories in column(s) {', '.join(unseen)} ({shown}); "
                "retrain the model or map them to known values"
            )


def score_spark(
    spark: SparkSession,
    features_sdf: SparkDataFrame,
    models: Mapping[str, Any],
    versions: Mapping[str, str],
    cfg: ScoringConfig,
    *,
    run_id: str | None = None,
) -> SparkDataFrame:
    """Score a Spark feature frame: the ``churn_scores`` rows, computed per partition with score_chunk.

    Each partition is scored in chunks of ``cfg.chunk_size`` rows, as :func:`churnml.scoring.score_accounts`
    does; the reasons' sentences quote medians of the chunk they were scored in, so give each partition
    whole as-of dates (or chunks as large as the DuckDB run's) when the text must match it word for word.

    Args:
        spark: the session.
        features_sdf: features (account_id, cutoff, the models' inputs), e.g. from
            ``build_features_spark(..., as_pandas=False)``.
        models: the trained models by target (``churn``, ``expansion``).
        versions: model version by target, written on every row.
        cfg: tiers, plays, reasons kept, chunk size.
        run_id: written on every row (default a random hex id).

    Returns:
        A lazy Spark frame in the ``churn_scores`` layout (:func:`scores_schema`).

    Raises:
        ChurnmlError: a missing target or version, model inputs absent from the features, or categories
            unseen at training (checked on the driver before any task runs).
    """
    import uuid

    missing = [t for t in ("churn", "expansion") if t not in models or t not in versions]
    if missing:
        raise ChurnmlError(f"score_spark: no model or version for {', '.join(missing)}")
    _check_inputs(features_sdf, models)
    payload = model_payload(models)
    try:
        payload_ref: Any = spark.sparkContext.broadcast(payload)
    except Exception:  # Spark Connect has no SparkContext: the closure carries the text instead
        payload_ref = payload
    scored_at = pd.Timestamp.now(tz="UTC").tz_localize(None).as_unit("us")
    apply = _score_partitions(payload_ref, dict(versions), cfg, run_id or uuid.uuid4().hex, scored_at)
    # every column goes along: reason sentences may quote features the models do not use
    ordered = [
        "account_id",
        "cutoff",
        *(c for c in features_sdf.columns if c not in ("account_id", "cutoff")),
    ]
    return features_sdf.select(*ordered).mapInPandas(apply, scores_schema())


def write_scores_spark(scores: SparkDataFrame, target: str, *, partition_by: str = "as_of") -> None:
    """Write scores to Parquet (a path or URI) or a catalog table, replacing only the as-of dates written.

    A re-run of the same date overwrites that date's partition (dynamic partition overwrite), so the job is
    idempotent per as-of like the warehouse writer; other dates stay.

    Args:
        scores: :func:`score_spark` output.
        target: a path (``/lake/churn_scores``, ``s3://...``) or a table name (``analytics.churn_scores``).
        partition_by: the partition column.
    """
    spark = scores.sparkSession
    is_path = "/" in target or "://" in target or target.startswith("dbfs:")
    previous = spark.conf.get("spark.sql.sources.partitionOverwriteMode", None)
    spark.conf.set("spark.sql.sources.partitionOverwriteMode", "dynamic")
    try:
        if is_path:
            scores.write.mode("overwrite").partitionBy(partition_by).parquet(target)
        elif spark.catalog.tableExists(target):
            columns = [c.name for c in spark.catalog.listColumns(target)]
            scores.select(*columns).write.insertInto(target, overwrite=True)
        else:
            scores.write.partitionBy(partition_by).saveAsTable(target)
    except ChurnmlError:
        raise
    except Exception as exc:
        raise ChurnmlError(f"scores: cannot write {target} ({_first_line(exc)})") from None
    finally:
        if previous is None:
            spark.conf.unset("spark.sql.sources.partitionOverwriteMode")
        else:
            spark.conf.set("spark.sql.sources.partitionOverwriteMode", previous)


DRIFT_SAMPLE_ROWS = 50_000  # the drift guard's sample, collected to the driver (PSI needs no more)


def data_end_spark(spark: SparkSession, source: Mapping[str, Any] | Path | str) -> pd.Timestamp:
    """The data end as :func:`churnml.spine.data_range` defines it (day after the last usage day or start)."""
    run = _SparkRun(spark)
    try:
        register_sources_spark(spark, source, run)
        u_max, s_max = run.query(
            "SELECT (SELECT MAX(date) FROM usage) AS u, (SELECT MAX(start_date) FROM subscriptions) AS s",
            "data end",
        ).collect()[0]
    finally:
        run.close()
    if u_max is None:
        raise ChurnmlError("usage: no rows, so there is no data end")
    last = max(pd.Timestamp(u_max), pd.Timestamp(s_max) if s_max is not None else pd.Timestamp(u_max))
    return last.normalize() + pd.Timedelta(days=1)


def score_accounts_spark(
    spark: SparkSession,
    source: Mapping[str, Any] | Path | str,
    cfg: Any,
    out: str,
    *,
    as_of: pd.Timestamp | str | None = None,
    model_refs: Mapping[str, str] | None = None,
    load_model: Any = None,
    root: Path | None = None,
) -> dict[str, Any]:
    """The nightly scoring job on Spark: spine, features, guards, champion models, scores written back.

    The Spark counterpart of :func:`churnml.scoring.score_accounts`, for portfolios that do not fit one
    machine: the spine and features are built on the cluster from the same SQL, the guards run on the
    driver before anything is written (model/feature schema on the whole frame; feature and score drift
    on a random sample of at most ``DRIFT_SAMPLE_ROWS`` rows), and the scores (the ``churn_scores``
    layout, reasons included) replace the as-of date's partition of ``out`` (a Parquet path or URI, or a
    catalog table). A warehouse reached through SQLAlchemy is the single-machine writer's job; on a
    cluster the scores land where the cluster's other tables live.

    Args:
        spark: the session.
        source: see :func:`register_sources_spark` (a folder or URI of Parquet, or catalog table names).
        cfg: the whole :class:`churnml.config.Config` (features, scoring, tracking sections are read).
        out: where the scores go.
        as_of: the as-of day (default: the day after the data ends).
        model_refs: per target, an MLflow alias or version (default ``cfg.scoring.model_alias``).
        load_model: ``(target, ref) -> (model, version)``; default loads from the MLflow registry.
        root: repository root (MLflow store).

    Returns:
        as_of, versions, rows written, run_id, tiers (counts) and drift warnings.

    Raises:
        ChurnmlError: a bad as-of date, missing models, a schema mismatch, drift past the fail threshold,
            or a failed write (nothing written for that date then).
    """
    import uuid

    from churnml.scoring import check_drift, load_models, scoring_day

    day = scoring_day(as_of, data_end_spark(spark, source))
    models, versions = load_models(cfg, model_refs, load_model, root)
    spine = build_spine_spark(spark, source, [day])
    features = build_features_spark(spark, source, spine, cfg.features, as_pandas=False)
    try:
        total = features.count()
        if total == 0:
            raise ChurnmlError(f"no account is active at {day.date()}: nothing to score")
        # unseen categories are checked on the whole frame by score_spark, before any task runs
        fraction = min(1.0, DRIFT_SAMPLE_ROWS / total)
        sample = features.sample(fraction=fraction, seed=0) if fraction < 1.0 else features
        sample_pd = _tidy(sample.toArrow().to_pandas())
        for model in models.values():
            model.prepare(sample_pd.head(1))  # missing model inputs are named before any task runs
        _, warnings = check_drift(models, sample_pd, cfg.scoring.drift)
        for line in warnings:
            log.warning(line)
        run_id = uuid.uuid4().hex
        scores = score_spark(spark, features, models, versions, cfg.scoring, run_id=run_id).persist()
        try:
            tiers = {r["risk_tier"]: r["count"] for r in scores.groupBy("risk_tier").count().collect()}
            write_scores_spark(scores, out)
        finally:
            scores.unpersist()
    finally:
        features.unpersist()
    log.info("scored %d accounts as of %s into %s", total, day.date(), out)
    return {
        "as_of": day,
        "versions": versions,
        "rows": int(total),
        "run_id": run_id,
        "tiers": tiers,
        "warnings": warnings,
    }
