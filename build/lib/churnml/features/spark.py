"""Spark engine: the feature SQL of :mod:`churnml.features.sql` run on Spark (scoring on Spark: :mod:`churnml.scoring.spark`).

The definitions are not written twice. Each :class:`~churnml.features.sql.SqlStep` (DuckDB dialect) is
transpiled by sqlglot to Spark SQL and exposed as a temporary view under the step's name, in the order
:func:`churnml.features.engine.build_features` runs them (a step read by several later ones is persisted first,
see :func:`step_reads`); the final frame goes through the same tidy step as the DuckDB path. Two dialect gaps are closed here rather than in the definitions:

- Spark reads a literal such as ``3600000000.0`` as DECIMAL, DuckDB divides it as DOUBLE: decimal literals
  are cast to DOUBLE after parsing, so the arithmetic (and its rounding) is the same.
- Spark 4 runs ANSI SQL by default (errors on a zero divisor or an overflow); DuckDB does not raise there.
  Feature runs switch ANSI off and the session time zone to UTC (dates are UTC calendar days), and put both
  settings back afterwards, so a session handed in by a cluster (Databricks) works too.

pyspark is imported lazily: the rest of the package never needs it.

Kept whole (about 600 lines): the one optional engine, so that pyspark stays behind one module.
"""

from __future__ import annotations

import atexit
import contextlib
import logging
import os
import shutil
import sys
import tempfile
import time
from collections import Counter
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Any

import pandas as pd
import pyarrow as pa
import pyarrow.parquet as pq

from churnml.config import FeaturesConfig
from churnml.contract.schemas import REQUIRED_TABLES, TABLES
from churnml.dataset.spine import SPINE_SQL, to_cutoffs
from churnml.errors import ChurnmlError
from churnml.features import sql as fs
from churnml.features.sql import CATEGORICAL, SqlStep, Windows
from churnml.features.steps import (
    _TYPED_COLUMNS,
    _spine_keys,
    _tidy,
    all_steps,
    enabled_families,
    family_columns,
    family_steps,
)
from churnml.names import KEYS

if TYPE_CHECKING:
    from pyspark.sql import DataFrame as SparkDataFrame
    from pyspark.sql import SparkSession

log = logging.getLogger(__name__)

LOCAL_SHUFFLE_PARTITIONS = 4  # Spark's default of 200 is tuned for clusters; local runs drown in tiny tasks
# Runtime settings every feature run needs (restored afterwards): DuckDB's arithmetic, UTC calendar days.
FEATURE_RUNTIME_CONF = {"spark.sql.ansi.enabled": "false", "spark.sql.session.timeZone": "UTC"}


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


class SparkRun:
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
            raise ChurnmlError(f"features (spark): {what} failed ({first_line(exc)})") from None

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
                raise ChurnmlError(f"features (spark): step {step.name} failed ({first_line(exc)})") from None
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


def first_line(exc: BaseException) -> str:
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
        raise ChurnmlError(f"{location}: cannot read Parquet ({first_line(exc)})") from None


def register_sources_spark(
    spark: SparkSession, source: Mapping[str, Any] | Path | str, run: SparkRun | None = None
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
    run = run or SparkRun(spark)
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
                    raise ChurnmlError(f"{name}: catalog table {value!r} ({first_line(exc)})") from None
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
            raise ChurnmlError(f"{name}: cannot read for features ({first_line(exc)})") from None
        run.view(name, typed)
    return set(frames)


def _dates(values: pd.Series) -> pa.Array:
    """Whole days as Arrow date32: Spark gets DATE values, whatever its session or JVM time zone."""
    return pa.array(
        pd.to_datetime(values).to_numpy().astype("datetime64[D]"), type=pa.date32(), from_pandas=True
    )


def _spine_rows(
    spark: SparkSession, spine: pd.DataFrame | SparkDataFrame, run: SparkRun
) -> list[pd.Timestamp]:
    """Register ``spine_rows`` (row_id, account_id, cutoff DATE) and ``spine_keys``; return the cutoffs."""
    if _is_spark_frame(spine):
        from pyspark.sql import functions as F

        missing = [c for c in KEYS if c not in spine.columns]
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


def _usage_periods(cutoffs: list[pd.Timestamp], win: Windows, run: SparkRun) -> fs.UsagePeriods:
    """Register ``usage_calendar`` and ``usage_cutoffs`` (:func:`churnml.features.sql.usage_periods`, dates as DATE)."""
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
    :func:`churnml.features.steps.all_steps` give it.
    """
    import sqlglot
    from sqlglot import exp

    reads: Counter[str] = Counter()
    for step in all_steps(cfg):
        tree = sqlglot.parse_one(step.sql, read="duckdb")
        ctes = {cte.alias for cte in tree.find_all(exp.CTE)}
        reads.update(t.name for t in tree.find_all(exp.Table) if t.name not in ctes)
    return reads


def _build_spark(run: SparkRun, present: set[str], cutoffs: list[pd.Timestamp], cfg: FeaturesConfig) -> str:
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
    run = SparkRun(spark)
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
                raise ChurnmlError(f"features (spark): final join failed ({first_line(exc)})") from None
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
            raise ChurnmlError(f"features (spark): final join failed ({first_line(exc)})") from None
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

    The same SQL as :func:`churnml.dataset.spine.build_spine` (``SPINE_SQL``), for portfolios whose subscriptions
    are not collected to the driver. Returns a Spark frame (account_id, cutoff DATE).
    """
    cuts = to_cutoffs(cutoffs)
    run = SparkRun(spark)
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
