"""Spark scoring: batch scoring with mapInPandas over features built by :mod:`churnml.features.spark`.

Scoring ships the models as the text of their saved ``model.txt`` / ``model.json`` (a broadcast variable;
no pickled boosters) and applies :func:`churnml.scoring.batch.score_chunk`, the function the DuckDB path uses, to
chunks of each partition. pyspark is imported lazily: the rest of the package never needs it.
"""

from __future__ import annotations

import hashlib
import logging
import tempfile
import uuid
from collections.abc import Iterator, Mapping
from pathlib import Path
from typing import TYPE_CHECKING, Any

import pandas as pd

from churnml.config import ScoringConfig
from churnml.contract.tables import SCORES_COLUMNS
from churnml.dataset.spine import as_of_day
from churnml.errors import ChurnmlError
from churnml.features.spark import (
    SparkRun,
    build_features_spark,
    build_spine_spark,
    first_line,
    register_sources_spark,
)
from churnml.features.steps import _tidy
from churnml.modeling.model import (
    META_FILE,
    MODEL_FILE,
    TrainedModel,
    known_levels,
    unseen_as_missing,
    unseen_line,
)
from churnml.names import KEYS, TARGETS
from churnml.scoring.batch import check_drift, load_models, score_chunk

if TYPE_CHECKING:
    from pyspark.sql import DataFrame as SparkDataFrame
    from pyspark.sql import SparkSession


log = logging.getLogger(__name__)

# Spark type of each warehouse column kind (churnml.contract.tables.SCORES_COLUMNS).
_SPARK_TYPES = {
    "text": "string",
    "json": "string",
    "date": "date",
    "ts": "timestamp",
    "float": "double",
    "int": "bigint",
}
_MODEL_CACHE: dict[str, dict[str, Any]] = {}  # per Python worker: models by payload digest

# ---------------------------------------------------------------------------------------------- scoring


def model_payload(models: Mapping[str, Any]) -> dict[str, dict[str, str]]:
    """Each model as the text of its saved files: {target: {"model.txt": ..., "model.json": ...}}."""

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
    return ", ".join(f"{c.name} {_SPARK_TYPES[c.kind]}" for c in SCORES_COLUMNS)


def _score_partitions(
    payload_ref: Any, versions: dict[str, str], cfg: ScoringConfig, run_id: str, scored_at: pd.Timestamp
):
    """The mapInPandas function: chunks of ``cfg.chunk_size`` rows of a partition through score_chunk."""
    names = [c.name for c in SCORES_COLUMNS]

    def apply(batches: Iterator[pd.DataFrame]) -> Iterator[pd.DataFrame]:

        payload = payload_ref.value if hasattr(payload_ref, "value") else payload_ref
        models = models_from_payload(payload)

        def score(parts: list[pd.DataFrame]) -> pd.DataFrame:
            # category values the models never saw: missing (counted once on the driver, by _check_inputs)
            chunk, _ = unseen_as_missing(_tidy(pd.concat(parts, ignore_index=True)), models)
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
    """The schema guard of :func:`churnml.scoring.batch.score_accounts`, on the driver: every model input is a
    column; category values unseen at training are found (one aggregation job; a second counts their rows when
    there are any) and reported in one warning line; the tasks score them as missing
    (:func:`churnml.modeling.model.unseen_as_missing`, before score_chunk)."""
    from pyspark.sql import functions as F

    for model in models.values():
        absent = [c for c in model.features if c not in features_sdf.columns]
        if absent:
            raise ChurnmlError(
                f"{model.target} model: input lacks feature column(s) {', '.join(absent[:5])} "
                f"({len(absent)} of {len(model.features)})"
            )
    known = known_levels(models)
    categorical = sorted(known)
    if not categorical:
        return
    found = features_sdf.agg(*(F.collect_set(F.col(c).cast("string")).alias(c) for c in categorical)).first()
    new = {c: sorted(set(found[c]) - known[c]) for c in categorical if set(found[c]) - known[c]}
    if not new:
        return
    pairs = [(c, v) for c, values in new.items() for v in values]
    counts = features_sdf.agg(
        *(F.sum((F.col(c).cast("string") == v).cast("int")).alias(f"n{i}") for i, (c, v) in enumerate(pairs))
    ).first()
    unseen: dict[str, dict[str, int]] = {}
    for i, (c, v) in enumerate(pairs):
        unseen.setdefault(c, {})[v] = int(counts[f"n{i}"])
    log.warning("%s", unseen_line(unseen, "rows"))


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

    Each partition is scored in chunks of ``cfg.chunk_size`` rows, as :func:`churnml.scoring.batch.score_accounts`
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
        ChurnmlError: a missing target or version, or model inputs absent from the features (checked on the
            driver before any task runs; category values unseen at training are scored as missing, reported).
    """

    missing = [t for t in TARGETS if t not in models or t not in versions]
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
        *KEYS,
        *(c for c in features_sdf.columns if c not in KEYS),
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
        raise ChurnmlError(f"scores: cannot write {target} ({first_line(exc)})") from None
    finally:
        if previous is None:
            spark.conf.unset("spark.sql.sources.partitionOverwriteMode")
        else:
            spark.conf.set("spark.sql.sources.partitionOverwriteMode", previous)


DRIFT_SAMPLE_ROWS = 50_000  # the drift guard's sample, collected to the driver (PSI needs no more)


def data_end_spark(spark: SparkSession, source: Mapping[str, Any] | Path | str) -> pd.Timestamp:
    """The data end as :func:`churnml.dataset.spine.data_range` defines it (the day after the last usage day)."""
    run = SparkRun(spark)
    try:
        register_sources_spark(spark, source, run)
        (u_max,) = run.query("SELECT MAX(date) AS u FROM usage", "data end").collect()[0]
    finally:
        run.close()
    if u_max is None:
        raise ChurnmlError("usage: no rows, so there is no data end")
    return pd.Timestamp(u_max).normalize() + pd.Timedelta(days=1)


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

    The Spark counterpart of :func:`churnml.scoring.batch.score_accounts`, for portfolios that do not fit one
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
    day = as_of_day(as_of, data_end_spark(spark, source))
    models, versions = load_models(cfg, model_refs, load_model, root)
    spine = build_spine_spark(spark, source, [day])
    features = build_features_spark(spark, source, spine, cfg.features, as_pandas=False)
    try:
        total = features.count()
        if total == 0:
            raise ChurnmlError(f"no account is active at {day.date()}: nothing to score")
        # category values unseen at training are counted on the whole frame by score_spark, before any task
        # runs; the sample is masked as the tasks mask them, so the drift guard sees what they score
        fraction = min(1.0, DRIFT_SAMPLE_ROWS / total)
        sample = features.sample(fraction=fraction, seed=0) if fraction < 1.0 else features
        sample_pd, _ = unseen_as_missing(
            _tidy(sample.toArrow().to_pandas()), models
        )  # as the tasks score them
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
