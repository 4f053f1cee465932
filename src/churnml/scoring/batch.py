"""Nightly batch scoring: features as of a date, the champion models, tiers, plays and reasons, to the warehouse.

The job either writes a complete, consistent set of rows for its as-of date or nothing: guards run before any
write (input schema, model/feature schema, feature drift), and the warehouse replaces the date's rows in one
transaction (:mod:`churnml.warehouse.store`).
"""

from __future__ import annotations

import logging
from collections.abc import Callable, Iterator, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from churnml.config import Config, DriftConfig, ScoringConfig, TiersConfig, repo_root
from churnml.contract.io import read_folder
from churnml.contract.schemas import TABLES
from churnml.contract.tables import EXPLANATIONS_COLUMNS
from churnml.contract.validate import validate_tables
from churnml.dataset.spine import as_of_day, build_spine, data_range
from churnml.errors import ChurnmlError
from churnml.explain.contributions import explain_accounts
from churnml.explain.reasons import reasons_for, top_reasons, with_reasons
from churnml.features.engine import build_features
from churnml.modeling.registry import load_champion
from churnml.names import ACCOUNT, AS_OF, CUTOFF, TARGETS
from churnml.warehouse.secrets import redact_url, scrub_secrets
from churnml.warehouse.store import Warehouse
from churnml.warehouse.tables import RunInfo

log = logging.getLogger(__name__)

EXPLANATION_TOP_N = 10  # features per account and target kept in churn_explanations


@dataclass
class ScoreResult:
    """What a scoring run produced and wrote."""

    as_of: pd.Timestamp
    versions: dict[str, str]
    scores: pd.DataFrame
    explanations: pd.DataFrame
    drift: pd.DataFrame
    warnings: list[str] = field(default_factory=list)
    run: Any = None  # the warehouse's RunRecord, when written


def risk_tier(probability: np.ndarray, thresholds: Mapping[str, float]) -> np.ndarray:
    """The highest tier whose threshold the probability reaches (thresholds: tier -> lower bound)."""
    ordered = sorted(thresholds.items(), key=lambda kv: kv[1], reverse=True)
    out = np.full(len(probability), ordered[-1][0], dtype=object)
    assigned = np.zeros(len(probability), dtype=bool)
    for tier, bound in ordered:
        hit = ~assigned & (np.asarray(probability) >= bound)
        out[hit] = tier
        assigned |= hit
    return out


def recommended_play(tiers: np.ndarray, touch_models: np.ndarray, cfg: TiersConfig) -> np.ndarray:
    """The play configured for each (tier, touch model); a missing combination is a configuration error."""
    plays = np.empty(len(tiers), dtype=object)
    for i, (tier, touch) in enumerate(zip(tiers, touch_models, strict=True)):
        try:
            plays[i] = cfg.plays[tier][touch]
        except KeyError:
            raise ChurnmlError(
                f"scoring.tiers.plays has no play for tier {tier!r} and touch model {touch!r}"
            ) from None
    return plays


def check_drift(
    models: Mapping[str, Any], features: pd.DataFrame, cfg: DriftConfig
) -> tuple[pd.DataFrame, list[str]]:
    """PSI of every model input and of each model's score against its training reference.

    Returns:
        (table target/feature/kind/psi/status, warning lines).

    Raises:
        ChurnmlError: naming the features whose PSI reaches ``cfg.psi_fail``.
    """
    parts = []
    for target, model in models.items():
        table = model.drift(features).assign(target=target)
        parts.append(table)
    drift = pd.concat(parts, ignore_index=True)
    bound = np.where(drift["kind"] == "score", cfg.psi_fail, cfg.feature_psi_fail)
    drift["status"] = np.select(
        [drift["psi"] >= bound, drift["psi"] >= cfg.psi_warn], ["fail", "warn"], default="ok"
    )
    failed = drift[drift["status"] == "fail"].sort_values("psi", ascending=False)
    if len(failed):
        shown = ", ".join(f"{r.target}:{r.feature} {r.psi:.2f}" for r in failed.head(5).itertuples())
        raise ChurnmlError(
            f"drift against the training data: {len(failed)} past the fail threshold (PSI {shown}; score bound "
            f"{cfg.psi_fail}, input bound {cfg.feature_psi_fail}); nothing written"
        )
    warned = drift[drift["status"] == "warn"].sort_values("psi", ascending=False)
    warnings = [
        f"drift warning: {r.target}:{r.feature} PSI {r.psi:.2f}" for r in warned.head(10).itertuples()
    ]
    return drift, warnings


def _chunks(frame: pd.DataFrame, rows: int) -> Iterator[pd.DataFrame]:
    for start in range(0, len(frame), max(rows, 1)):
        yield frame.iloc[start : start + rows]


def score_chunk(
    features: pd.DataFrame, models: Mapping[str, Any], versions: Mapping[str, str], cfg: ScoringConfig
) -> tuple[pd.DataFrame, pd.DataFrame]:
    """Scores and explanation rows for one chunk of feature rows (one as-of date).

    Returns:
        (scores in the ``churn_scores`` layout without run columns, explanations in the
        ``churn_explanations`` layout).
    """

    p_churn = models["churn"].predict_proba(features)
    p_expand = models["expansion"].predict_proba(features)
    tiers = risk_tier(p_churn, cfg.tiers.thresholds)
    touch = features["account_touch_model"].astype(str).to_numpy()
    arr = features["contract_arr"].astype(float).to_numpy()
    scores = pd.DataFrame(
        {
            ACCOUNT: features[ACCOUNT].astype(str).to_numpy(),
            # the one place a feature row's cutoff becomes a score's as_of
            AS_OF: features[CUTOFF].to_numpy(),
            "churn_model_version": versions["churn"],
            "expansion_model_version": versions["expansion"],
            "churn_probability": p_churn,
            "risk_tier": tiers,
            "expansion_probability": p_expand,
            "arr": arr,
            "arr_at_risk": arr * p_churn,
            "segment": features["account_segment"].astype(str).to_numpy(),
            "touch_model": touch,
            "recommended_play": recommended_play(tiers, touch, cfg.tiers),
        }
    )
    explanations, reasons = [], []
    for target in TARGETS:
        full = explain_accounts(models[target], features)
        reasons.append(reasons_for(full, features, top=cfg.top_reasons))
        top = full[full["rank"] <= EXPLANATION_TOP_N]
        explanations.append(with_reasons(top, features).assign(model_version=versions[target]))
    churn_reasons = top_reasons(reasons[0], top=cfg.top_reasons)
    scores = scores.merge(churn_reasons[["account_id", "top_reasons"]], on="account_id", how="left")
    scores["top_reasons"] = scores["top_reasons"].fillna("[]")
    columns = [c.name for c in EXPLANATIONS_COLUMNS]
    return scores, pd.concat(explanations, ignore_index=True)[columns]


def read_source_url(url: str) -> dict[str, pd.DataFrame]:
    """The contract's tables from a database (any SQLAlchemy URL; DuckDB files through DuckDB itself)."""

    tables: dict[str, pd.DataFrame] = {}
    try:
        if url.startswith("duckdb:///"):
            import duckdb

            path = url.removeprefix("duckdb:///")
            if not Path(path).is_file():
                raise ChurnmlError(f"source {url}: no such DuckDB file")
            with duckdb.connect(path, read_only=True) as con:
                present = {
                    r[0] for r in con.execute("select table_name from information_schema.tables").fetchall()
                }
                for name in TABLES:
                    if name in present:
                        tables[name] = con.execute(f'select * from "{name}"').df()
        else:
            import sqlalchemy as sa

            engine = sa.create_engine(url)
            try:
                inspector = sa.inspect(engine)
                with engine.connect() as conn:
                    for name in TABLES:
                        if inspector.has_table(name):
                            table = sa.table(name)
                            tables[name] = pd.read_sql_query(sa.select(sa.text("*")).select_from(table), conn)
            finally:
                engine.dispose()
    except ChurnmlError:
        raise
    except Exception as exc:  # driver errors carry the URL: never show its credentials
        message = str(exc).splitlines()[0] if str(exc) else type(exc).__name__

        raise ChurnmlError(f"source {redact_url(url)}: {scrub_secrets(message, url)}") from None
    missing = [n for n in ("accounts", "subscriptions", "usage") if n not in tables]
    if missing:
        raise ChurnmlError(f"source {redact_url(url)}: required table(s) missing: {', '.join(missing)}")
    return tables


def load_tables(data: Path | None, source_url: str | None) -> dict[str, pd.DataFrame]:
    """Read and validate the input tables (a folder or a database); bad rows fail the run before any write."""

    if (data is None) == (source_url is None):
        raise ChurnmlError("give exactly one of --data DIR or --source-url URL")
    raw = read_folder(data) if data is not None else read_source_url(source_url)
    return validate_tables(raw).tables


def load_models(
    cfg: Config,
    model_refs: Mapping[str, str] | None,
    load_model: Callable[[str, str], tuple[Any, str]] | None,
    root: Path | None,
) -> tuple[dict[str, Any], dict[str, str]]:
    """Both targets' models and versions: ``model_refs`` (alias or version) or ``cfg.scoring.model_alias``.

    ``load_model(target, ref) -> (model, version)`` defaults to the MLflow registry.
    """
    if load_model is None:

        def load_model(target: str, ref: str) -> tuple[Any, str]:
            return load_champion(target, ref, root=root, cfg=cfg.tracking)

    refs = {t: (model_refs or {}).get(t, cfg.scoring.model_alias) for t in TARGETS}
    models, versions = {}, {}
    for target in TARGETS:
        models[target], versions[target] = load_model(target, refs[target])
    return models, versions


def score_accounts(
    tables: Mapping[str, pd.DataFrame],
    cfg: Config,
    *,
    as_of: pd.Timestamp | str | None = None,
    model_refs: Mapping[str, str] | None = None,
    warehouse_url: str | None = None,
    run_kind: str = "scheduled",
    root: Path | None = None,
    load_model: Callable[[str, str], tuple[Any, str]] | None = None,
    write: bool = True,
) -> ScoreResult:
    """Score every account active at ``as_of`` and write scores and reasons to the warehouse.

    Args:
        tables: validated contract tables.
        cfg: the whole configuration (features, scoring, warehouse and tracking sections are read).
        as_of: the as-of day (default: the day after the data ends); rows on or after it are never seen.
        model_refs: per target, an MLflow alias or version (default ``cfg.scoring.model_alias``).
        warehouse_url: overrides ``cfg.warehouse`` (credentials in it are never logged).
        run_kind: ``scheduled`` | ``backtest`` | ``manual``, recorded on the run.
        root: repository root (MLflow store and relative paths).
        load_model: ``(target, ref) -> (model, version)``; default loads from the MLflow registry.
        write: False computes everything but writes nothing (a dry run).

    Raises:
        ChurnmlError: bad as-of date, missing models, a model/feature schema mismatch, drift past the
            fail threshold, or a warehouse failure (the previous rows stay intact).
    """

    root = root or repo_root()
    start, end = data_range(tables)
    day = as_of_day(as_of, end)
    models, versions = load_models(cfg, model_refs, load_model, root)
    spine = build_spine(tables["subscriptions"], [day])
    if spine.empty:
        raise ChurnmlError(f"no account is active at {day.date()}: nothing to score")
    features = build_features(dict(tables), spine, cfg.features)
    for model in models.values():
        model.prepare(features.head(1))  # schema guard: missing columns / unseen categories, named
    drift, warnings = check_drift(models, features, cfg.scoring.drift)
    for line in warnings:
        log.warning(line)

    def batches() -> Iterator[tuple[pd.DataFrame, pd.DataFrame]]:
        for chunk in _chunks(features, cfg.scoring.chunk_size):
            yield score_chunk(chunk, models, versions, cfg.scoring)

    result = ScoreResult(day, versions, pd.DataFrame(), pd.DataFrame(), drift, warnings)
    if not write:
        parts = list(batches())
        result.scores = pd.concat([p[0] for p in parts], ignore_index=True)
        result.explanations = pd.concat([p[1] for p in parts], ignore_index=True)
        return result

    kept: list[pd.DataFrame] = []

    def keep(
        batch: Iterator[tuple[pd.DataFrame, pd.DataFrame]],
    ) -> Iterator[tuple[pd.DataFrame, pd.DataFrame]]:
        for scores, explanations in batch:
            kept.append(scores)
            yield scores, explanations

    run = RunInfo(
        as_of=day.date(),
        churn_model_version=versions["churn"],
        expansion_model_version=versions["expansion"],
        run_kind=run_kind,
        data_start=start.date(),
        data_end=(end - pd.Timedelta(days=1)).date(),
    )
    warehouse = Warehouse.from_config(
        cfg.warehouse,
        url_override=warehouse_url or None,
        root=root,
    )
    with warehouse:
        result.run = warehouse.write_batches(keep(batches()), run)
    result.scores = pd.concat(kept, ignore_index=True) if kept else pd.DataFrame()
    return result


def score_watermark(runs: pd.DataFrame) -> dict[str, Any]:
    """What the warehouse holds for the monitor: one entry per (as-of, model versions) scored successfully.

    The score stage writes it as a DVC output and the monitor stage depends on it, so ``dvc repro`` re-runs the
    monitor when the warehouse has scores it has not seen (a new as-of, a new model version, a changed row
    count), not on every call. Entries carry no run ids or times: a rerun that replaces the same rows leaves
    the watermark, and so the monitor, unchanged.

    Args:
        runs: the warehouse's run records (:meth:`churnml.warehouse.store.Warehouse.read_runs`).
    """
    keys = ["as_of", "churn_model_version", "expansion_model_version"]
    done = runs[runs["status"] == "succeeded"]
    latest = done.sort_values("started_at", kind="stable").drop_duplicates(keys, keep="last")
    entries = [
        {
            "as_of": str(pd.Timestamp(row.as_of).date()),
            "churn_model_version": str(row.churn_model_version),
            "expansion_model_version": str(row.expansion_model_version),
            "scores_rows": int(row.scores_rows),
        }
        for row in latest.sort_values(keys, kind="stable").itertuples(index=False)
    ]
    return {"scored": entries, "as_of_count": len({e["as_of"] for e in entries})}
