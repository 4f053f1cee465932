"""Nightly batch scoring: features as of a date, the champion models, tiers, plays and reasons, to the warehouse.

The job either writes a complete, consistent set of rows for its as-of date or nothing: guards run before any
write (input schema, model/feature schema, feature drift), and the warehouse replaces the date's rows in one
transaction (:mod:`churnml.warehouse.store`).
"""

from __future__ import annotations

import fnmatch
import json
import logging
from collections.abc import Callable, Iterator, Mapping
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from churnml.config import Config, DataConfig, DriftConfig, ScoringConfig, TiersConfig, repo_root
from churnml.contract.schemas import TABLES
from churnml.contract.sqlcheck import UsageScan, check_usage_window, load_checked
from churnml.contract.tables import EXPLANATIONS_COLUMNS
from churnml.contract.validate import DateBounds, validate_tables
from churnml.dataset.spine import as_of_day, build_spine, data_range
from churnml.errors import ChurnmlError
from churnml.explain.contributions import explain_accounts
from churnml.explain.drivers import redundant_groups_of
from churnml.explain.reasons import reasons_for, top_reasons, with_reasons
from churnml.features.engine import build_features, usage_window_start
from churnml.modeling.model import unseen_as_missing, unseen_line
from churnml.modeling.registry import load_champion
from churnml.names import ACCOUNT, AS_OF, CUTOFF, TARGETS
from churnml.scoring.calls import call_list, carried_calls, changes_since, previous_scores
from churnml.scoring.tiers import TierDefinition, define_tiers
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
    tiers: TierDefinition | None = None
    call_list: pd.DataFrame | None = None


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


def drift_bound(feature: str, kind: str, cfg: DriftConfig) -> float:
    """The fail bound of one drift row: the score's, or the most specific family/glob bound of an input."""
    if kind == "score":
        return cfg.psi_fail
    best, specificity = cfg.feature_psi_fail, -1
    for pattern, bound in cfg.feature_psi_fail_by.items():
        glob = pattern if any(ch in pattern for ch in "*?[") else f"{pattern}_*"
        if fnmatch.fnmatchcase(feature, glob) and len(pattern) > specificity:
            best, specificity = float(bound), len(pattern)
    return best


def check_drift(
    models: Mapping[str, Any], features: pd.DataFrame, cfg: DriftConfig, *, accept: bool = False
) -> tuple[pd.DataFrame, list[str]]:
    """PSI of every model input and of each model's score against its training reference.

    Args:
        models: the models by target.
        features: the rows to score.
        cfg: warn bound, score and input fail bounds (per family or glob: :func:`drift_bound`).
        accept: score despite rows past their fail bound (``--accept-drift``): they stay ``fail`` in the
            table, which the run records.

    Returns:
        (table target/feature/family/kind/psi/bound/status, warning lines: each feature once, at most ten,
        then one summary line).

    Raises:
        ChurnmlError: naming the features whose PSI reaches their bound, unless ``accept``.
    """
    parts = []
    for target, model in models.items():
        table = model.drift(features).assign(target=target)
        parts.append(table)
    drift = pd.concat(parts, ignore_index=True)
    drift["family"] = [
        "score" if k == "score" else f.split("_", 1)[0]
        for f, k in zip(drift["feature"], drift["kind"], strict=True)
    ]
    drift["bound"] = [drift_bound(f, k, cfg) for f, k in zip(drift["feature"], drift["kind"], strict=True)]
    drift["status"] = np.select(
        [drift["psi"] >= drift["bound"], drift["psi"] >= cfg.psi_warn], ["fail", "warn"], default="ok"
    )
    drift = drift[["target", "feature", "family", "kind", "psi", "bound", "status"]]
    failed = drift[drift["status"] == "fail"].sort_values("psi", ascending=False)
    shown = ", ".join(
        f"{r.target}:{r.feature} {r.psi:.2f} (bound {r.bound:g})" for r in failed.head(5).itertuples()
    )
    if len(failed) and not accept:
        raise ChurnmlError(
            f"drift against the training data: {len(failed)} past the fail threshold (PSI {shown}); nothing "
            "written; if the shift is expected, rerun with --accept-drift (recorded with the PSI table)"
        )
    warned = drift[drift["status"] == "warn"].sort_values("psi", ascending=False)
    # One line per feature: the worst of the two models (the same input drifts alike for both).
    warned = warned.drop_duplicates("feature")
    warnings = [
        f"drift warning: {r.target}:{r.feature} PSI {r.psi:.2f}" for r in warned.head(10).itertuples()
    ]
    if len(failed):
        warnings.append(f"drift accepted (--accept-drift): {len(failed)} past the fail threshold: {shown}")
    checked = drift["feature"].nunique()
    worst = drift.loc[drift["psi"].idxmax()] if len(drift) else None
    summary = (
        f"drift: {checked} inputs and scores checked, {len(warned)} past the warning bound {cfg.psi_warn:g}"
    )
    summary += (
        f", {len(failed)} past their fail bound (accepted)" if len(failed) else ", none past a fail bound"
    )
    if worst is not None:
        summary += f"; largest PSI {worst['psi']:.2f} ({worst['target']}:{worst['feature']})"
    warnings.append(summary)
    return drift, warnings


def drift_json(drift: pd.DataFrame) -> str:
    """The PSI table as JSON text for the run record (rows past the warning bound, and every score row)."""
    keep = drift[(drift["status"] != "ok") | (drift["kind"] == "score")]
    rows = [
        {"target": r.target, "feature": r.feature, "family": r.family, "psi": round(float(r.psi), 4),
         "bound": float(r.bound), "status": r.status}
        for r in keep.itertuples()
    ]  # fmt: skip
    return json.dumps(rows)


def _chunks(frame: pd.DataFrame, rows: int) -> Iterator[pd.DataFrame]:
    for start in range(0, len(frame), max(rows, 1)):
        yield frame.iloc[start : start + rows]


def score_chunk(
    features: pd.DataFrame,
    models: Mapping[str, Any],
    versions: Mapping[str, str],
    cfg: ScoringConfig,
    definition: TierDefinition | None = None,
) -> tuple[pd.DataFrame, pd.DataFrame]:
    """Scores and explanation rows for one chunk of feature rows (one as-of date).

    Args:
        features: feature rows whose category values the models know (the callers read unseen ones as missing
            first: :func:`churnml.modeling.model.unseen_as_missing`, once per run or Spark partition chunk).
        definition: the tier cut-offs (default: :func:`churnml.scoring.tiers.define_tiers` of the models).

    Returns:
        (scores in the ``churn_scores`` layout without run columns, explanations in the
        ``churn_explanations`` layout).
    """
    p_churn = models["churn"].predict_proba(features)
    p_expand = models["expansion"].predict_proba(features)
    definition = definition or define_tiers(models["churn"], models["expansion"], cfg.tiers)
    tiers = risk_tier(p_churn, definition.cutoffs)
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
        reasons.append(
            reasons_for(
                full,
                features,
                top=cfg.top_reasons,
                min_points=cfg.min_reason_points,
                groups=redundant_groups_of(models[target]),
            )
        )
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


def load_tables(
    data: Path | None, source_url: str | None, cfg: DataConfig | None = None
) -> dict[str, pd.DataFrame | UsageScan]:
    """Read and validate the input tables (a folder or a database); bad rows fail the run before any write.

    ``cfg`` gives the plausible date range (``data.min_date``/``max_date``; default 1990-01-01 to today) and
    DuckDB's memory limit. A folder's usage is returned as a :class:`~churnml.contract.sqlcheck.UsageScan`
    (never read whole); a database's tables are read into frames (:func:`read_source_url`).
    """

    if (data is None) == (source_url is None):
        raise ChurnmlError("give exactly one of --data DIR or --source-url URL")
    bounds = DateBounds.of(cfg.min_date, cfg.max_date) if cfg is not None else DateBounds.of()
    if data is not None:
        # Out of core (issue #20): checked in DuckDB over the files; every table but usage comes back as a
        # (small) frame, usage stays in its file as a UsageScan whose rows passed the row rules; the rules
        # over several rows run on the look-back window the features read (score_accounts).
        return load_checked(data, bounds, cfg.memory_limit if cfg is not None else "4GB")
    return validate_tables(read_source_url(source_url), bounds=bounds).tables


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


@dataclass
class Prepared:
    """What :func:`prepare_scoring` checked before any feature work: the opened warehouse and the models."""

    models: dict[str, Any]
    versions: dict[str, str]
    warehouse: Warehouse | None = None


def prepare_scoring(
    cfg: Config,
    *,
    model_refs: Mapping[str, str] | None = None,
    warehouse_url: str | None = None,
    root: Path | None = None,
    load_model: Callable[[str, str], tuple[Any, str]] | None = None,
    write: bool = True,
) -> Prepared:
    """Fail fast: the warehouse's identifiers, connection and tables, then both model versions.

    Seconds, against the minutes of reading the input and building features: a run that cannot finish says
    so first. Also marks runs left ``running`` by a dead process as ``abandoned``.
    """
    root = root or repo_root()
    warehouse = None
    if write:
        warehouse = Warehouse.from_config(cfg.warehouse, url_override=warehouse_url or None, root=root)
        warehouse.check()
    models, versions = load_models(cfg, model_refs, load_model, root)
    return Prepared(models, versions, warehouse)


@contextmanager
def progress_bar(enabled: bool) -> Iterator[Any]:
    """A rich progress display on stderr for the long steps (None when disabled: logs only)."""
    if not enabled:
        yield None
        return
    from rich.console import Console
    from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn

    columns = (TextColumn("{task.description}"), BarColumn(), MofNCompleteColumn(), TimeElapsedColumn())
    with Progress(*columns, console=Console(stderr=True)) as bar:
        yield bar


@contextmanager
def _step(bar: Any, description: str) -> Iterator[None]:
    task = None if bar is None else bar.add_task(description, total=1)
    yield
    if task is not None:
        bar.update(task, completed=1)


def score_accounts(
    tables: Mapping[str, pd.DataFrame | UsageScan],
    cfg: Config,
    *,
    as_of: pd.Timestamp | str | None = None,
    model_refs: Mapping[str, str] | None = None,
    warehouse_url: str | None = None,
    run_kind: str = "scheduled",
    root: Path | None = None,
    load_model: Callable[[str, str], tuple[Any, str]] | None = None,
    write: bool = True,
    prepared: Prepared | None = None,
    replace_date: bool = False,
    accept_drift: bool = False,
    progress: bool = False,
) -> ScoreResult:
    """Score every account active at ``as_of`` and write scores and reasons to the warehouse.

    Args:
        tables: validated contract tables (usage may be a :class:`~churnml.contract.sqlcheck.UsageScan`:
            only its look-back window is read, :func:`load_tables`).
        cfg: the whole configuration (features, scoring, warehouse and tracking sections are read).
        as_of: the as-of day (default: the day after the data ends); rows on or after it are never seen.
        model_refs: per target, an MLflow alias or version (default ``cfg.scoring.model_alias``).
        warehouse_url: overrides ``cfg.warehouse`` (credentials in it are never logged).
        run_kind: ``scheduled`` | ``backtest`` | ``manual``, recorded on the run.
        root: repository root (MLflow store and relative paths).
        load_model: ``(target, ref) -> (model, version)``; default loads from the MLflow registry.
        write: False computes everything but writes nothing (a dry run).
        prepared: the warehouse and models :func:`prepare_scoring` already checked (else checked here,
            still before any feature work).
        replace_date: replace every row of the as-of and versions; by default only the scored accounts'
            rows are replaced, so a partial export keeps the other accounts' scores.
        accept_drift: score despite drift past the fail bounds (recorded on the run with the PSI table).
        progress: show rich progress bars on stderr for the long steps.

    Raises:
        ChurnmlError: bad as-of date, missing models, a model/feature schema mismatch, drift past the
            fail threshold, or a warehouse failure (the previous rows stay intact).
    """

    root = root or repo_root()
    start, end = data_range(tables)
    day = as_of_day(as_of, end, start)
    if prepared is None:
        prepared = prepare_scoring(
            cfg,
            model_refs=model_refs,
            warehouse_url=warehouse_url,
            root=root,
            load_model=load_model,
            write=write,
        )
    models, versions = prepared.models, prepared.versions
    spine = build_spine(tables["subscriptions"], [day])
    if spine.empty:
        raise ChurnmlError(f"no account is active at {day.date()}: nothing to score")
    usage = tables["usage"]
    if isinstance(usage, UsageScan):
        # the unique key and known accounts over the rows the features read (the row rules ran on all)
        since = usage_window_start([day], cfg.features)
        check_usage_window(usage, since, day, tables["accounts"], cfg.data.memory_limit)
    with progress_bar(progress) as bar:
        with _step(bar, f"features as of {day.date()} ({len(spine):,} accounts)"):
            features = build_features(dict(tables), spine, cfg.features)
        features, unseen = unseen_as_missing(features, models)
        if unseen:
            log.warning("%s", unseen_line(unseen))
        for model in models.values():
            model.prepare(features.head(1))  # schema guard: missing columns, named
        with _step(bar, "drift against the training data"):
            drift, warnings = check_drift(models, features, cfg.scoring.drift, accept=accept_drift)
        for line in warnings:
            log.warning(line)
        n_chunks = -(-len(features) // max(cfg.scoring.chunk_size, 1))
        task = None if bar is None else bar.add_task("scoring, explaining, writing", total=n_chunks)

        definition = define_tiers(models["churn"], models["expansion"], cfg.scoring.tiers)
        if definition.source != "validation":  # tied validation deciles: the scored portfolio's quantiles
            portfolio = (models["churn"].predict_proba(features), models["expansion"].predict_proba(features))
            definition = define_tiers(models["churn"], models["expansion"], cfg.scoring.tiers, portfolio)

        def batches() -> Iterator[tuple[pd.DataFrame, pd.DataFrame]]:
            for chunk in _chunks(features, cfg.scoring.chunk_size):
                yield score_chunk(chunk, models, versions, cfg.scoring, definition)
                if task is not None:
                    bar.advance(task)

        result = ScoreResult(day, versions, pd.DataFrame(), pd.DataFrame(), drift, warnings, tiers=definition)
        if not write:
            parts = list(batches())
            result.scores = pd.concat([p[0] for p in parts], ignore_index=True)
            result.explanations = pd.concat([p[1] for p in parts], ignore_index=True)
            result.call_list = weekly_calls(
                result.scores, features, tables["accounts"], None, cfg, definition
            )
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
            replace_date=replace_date,
            drift_accepted=bool(accept_drift and (drift["status"] == "fail").any()),
            drift=drift_json(drift),
            unseen_categories=json.dumps(unseen, sort_keys=True) if unseen else None,
        )
        warehouse = prepared.warehouse or Warehouse.from_config(
            cfg.warehouse, url_override=warehouse_url or None, root=root
        )

        def calls() -> pd.DataFrame | None:
            # called inside the write's transaction once every score is written: the list commits with them
            result.scores = pd.concat(kept, ignore_index=True) if kept else pd.DataFrame()
            result.call_list = weekly_calls(
                result.scores, features, tables["accounts"], history, cfg, definition, carried
            )
            if len(carried):
                log.info(
                    "partial export: %d call(s) of accounts this run did not score kept from the date's list "
                    "(their scores of %s stay in the warehouse)",
                    len(set(carried["account_id"]) & set(result.call_list["account_id"])),
                    day.date(),
                )
            return result.call_list if run_kind != "backtest" else None

        with warehouse:
            stored = warehouse.read_scores()
            history = previous_scores(stored, day)
            # a partial export keeps the other accounts' scores of the date: their calls stay candidates
            carried = (
                pd.DataFrame()
                if replace_date or run_kind == "backtest"
                else carried_calls(
                    stored[pd.to_datetime(stored["as_of"]).dt.normalize() == day],
                    warehouse.read_call_list(day),
                    features[ACCOUNT],
                    versions,
                )
            )
            result.run = warehouse.write_batches(keep(batches()), run, call_list=calls)
    result.scores = pd.concat(kept, ignore_index=True) if kept else pd.DataFrame()
    return result


def weekly_calls(
    scores: pd.DataFrame,
    features: pd.DataFrame,
    accounts: pd.DataFrame,
    previous: pd.DataFrame | None,
    cfg: Config,
    definition: TierDefinition,
    carried: pd.DataFrame | None = None,
) -> pd.DataFrame:
    """The call list of one scoring (:func:`churnml.scoring.calls.call_list`) from its scores, features and
    accounts, with the changes since ``previous`` (:func:`churnml.scoring.calls.previous_scores`) and the
    date's calls ``carried`` over for accounts a partial export left out
    (:func:`churnml.scoring.calls.carried_calls`)."""
    order = {tier: i for i, (tier, _) in enumerate(definition.ordered())}
    info = pd.DataFrame(
        {
            ACCOUNT: features[ACCOUNT].astype(str).to_numpy(),
            "days_to_renewal": pd.to_numeric(
                features["contract_days_to_renewal"], errors="coerce"
            ).to_numpy(),
            "billing_period": features["contract_billing_period"].astype("string").to_numpy(),
        }
    )
    if "csm_id" in accounts:
        csm = accounts[[ACCOUNT, "csm_id"]].assign(**{ACCOUNT: accounts[ACCOUNT].astype(str)})
        info = info.merge(csm.drop_duplicates(ACCOUNT), on=ACCOUNT, how="left")
    else:
        info["csm_id"] = None
    changes = changes_since(scores, previous if previous is not None else pd.DataFrame(), order)
    return call_list(
        scores,
        info,
        changes,
        cfg.scoring.calls,
        tier_order=order,
        base_rate=definition.base_rate,
        carried=carried,
    )


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
