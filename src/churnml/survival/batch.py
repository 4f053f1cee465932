"""``churnml forecast``: survival curves and the revenue forecast of the accounts active at an as-of, from the
champion survival model, to the warehouse tables ``account_survival`` and ``revenue_forecast``.

The same shape as nightly scoring (:mod:`churnml.scoring.batch`): the warehouse and the model are checked
before minutes of reading and feature work; features are built as of the day (only rows strictly before it);
the warehouse replaces the as-of's rows of both tables and marks the run ``succeeded`` in one transaction
(:meth:`churnml.warehouse.store.Warehouse.write_forecast`), so a rerun of the same as-of replaces it and a
failure leaves the previous rows.
"""

from __future__ import annotations

import logging
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from churnml.config import Config, repo_root
from churnml.contract.sqlcheck import UsageScan, check_usage_window
from churnml.dataset.spine import as_of_day, build_spine, data_range, training_cutoffs
from churnml.errors import ChurnmlError
from churnml.features.engine import build_features, usage_window_start
from churnml.modeling.model import unseen_as_missing, unseen_line
from churnml.modeling.registry import CHAMPION, load_champion
from churnml.survival.forecast import DRAWS, forecast_book, forecast_settings, with_csm
from churnml.survival.model import TARGET, curve_frame
from churnml.survival.pipeline import account_survival_table
from churnml.survival.rows import month_design
from churnml.warehouse.store import Warehouse
from churnml.warehouse.tables import ForecastRunInfo, ForecastRunRecord

log = logging.getLogger(__name__)


@dataclass
class PreparedForecast:
    """What :func:`prepare_forecast` checked before any feature work: the model, its version, the warehouse."""

    model: Any
    version: str
    warehouse: Warehouse | None = None


@dataclass
class ForecastResult:
    """What a forecast run computed and wrote."""

    as_of: pd.Timestamp
    version: str
    account_survival: pd.DataFrame
    revenue_forecast: pd.DataFrame
    run: ForecastRunRecord | None = None


def prepare_forecast(
    cfg: Config,
    *,
    model_ref: str | None = None,
    warehouse_url: str | None = None,
    root: Path | None = None,
    load_model: Callable[[str], tuple[Any, str]] | None = None,
    write: bool = True,
) -> PreparedForecast:
    """Fail fast: the warehouse (opened, forecast tables created) and then the survival model version.

    Args:
        cfg: the configuration (warehouse, tracking, scoring.model_alias).
        model_ref: an MLflow alias or version of ``churnml-survival`` (default ``scoring.model_alias``,
            the champion).
        warehouse_url: overrides ``cfg.warehouse``.
        root: the repository root.
        load_model: ``ref -> (model, version)``; default loads from the MLflow registry.
        write: False skips the warehouse (a dry run).
    """
    root = root or repo_root()
    warehouse = None
    if write:
        warehouse = Warehouse.from_config(cfg.warehouse, url_override=warehouse_url or None, root=root)
        warehouse.check(forecast=True)
    ref = model_ref or cfg.scoring.model_alias or CHAMPION
    if load_model is None:
        model, version = load_champion(TARGET, ref, root=root, cfg=cfg.tracking)
    else:
        model, version = load_model(ref)
    if getattr(model, "target", TARGET) != TARGET:
        raise ChurnmlError(f"forecast: model {ref!r} is a {model.target} model, not a survival model")
    return PreparedForecast(model, str(version), warehouse)


def forecast_accounts(
    tables: Mapping[str, pd.DataFrame | UsageScan],
    cfg: Config,
    *,
    as_of: pd.Timestamp | str | None = None,
    model_ref: str | None = None,
    warehouse_url: str | None = None,
    run_kind: str = "manual",
    root: Path | None = None,
    load_model: Callable[[str], tuple[Any, str]] | None = None,
    write: bool = True,
    prepared: PreparedForecast | None = None,
    draws: int = DRAWS,
) -> ForecastResult:
    """Survival curves and the revenue forecast of every account active at ``as_of``, written to the warehouse.

    Args:
        tables: validated contract tables (:func:`churnml.scoring.batch.load_tables`).
        cfg: the configuration (features, spine, labels.grace_days, survival, warehouse, tracking).
        as_of: the as-of day (default: the data end); rows on or after it are never seen.
        model_ref: alias or version of the survival model (default: the champion).
        warehouse_url: overrides ``cfg.warehouse``.
        run_kind: ``scheduled`` | ``backtest`` | ``manual``, recorded on the run.
        root: the repository root (MLflow store, relative warehouse path).
        load_model: ``ref -> (model, version)``; default the MLflow registry.
        write: False computes everything and writes nothing.
        prepared: what :func:`prepare_forecast` already checked.
        draws: Monte Carlo draws of the revenue forecast.

    Raises:
        ChurnmlError: a bad as-of, a missing model, a model/feature mismatch, no active account, or a failed
            write (rolled back: the previous rows stay).
    """
    root = root or repo_root()
    start, end = data_range(tables)
    day = as_of_day(as_of, end, start)
    if prepared is None:
        prepared = prepare_forecast(
            cfg,
            model_ref=model_ref,
            warehouse_url=warehouse_url,
            root=root,
            load_model=load_model,
            write=write,
        )
    model, version = prepared.model, prepared.version
    # the horizon the model was trained on (its survival_month input runs 1..H); older models: the config's
    horizon = int(model.info.get("horizon_months", cfg.survival.horizon_months))
    subscriptions = tables["subscriptions"]
    spine = build_spine(subscriptions, [day])
    if spine.empty:
        raise ChurnmlError(f"no account is active at {day.date()}: nothing to forecast")
    usage = tables["usage"]
    if isinstance(usage, UsageScan):
        since = usage_window_start([day], cfg.features)
        check_usage_window(usage, since, day, tables["accounts"], cfg.data.memory_limit)
    features = build_features(dict(tables), spine, cfg.features)
    # a category value the model never saw is read as missing for the curves, as nightly scoring does
    model_input, unseen = unseen_as_missing(features, {TARGET: model})
    if unseen:
        log.warning("%s", unseen_line(unseen))
    model.prepare(month_design(model_input.head(1), 1, horizon))  # schema guard: missing columns, named
    curves = curve_frame(model, model_input, horizon)
    accounts = tables.get("accounts")
    survival = account_survival_table(curves, features, day, horizon, accounts)
    # the monthly ARR moves are learned from every account-month of the training spine before the as-of
    history = build_spine(subscriptions, training_cutoffs((start, day), cfg.spine))
    s = curves[[f"s_{t}" for t in range(1, horizon + 1)]].to_numpy(dtype=np.float64)
    book = with_csm(features.reset_index(drop=True), accounts)
    revenue = forecast_book(
        book,
        s,
        subscriptions,
        history,
        day,
        int(cfg.labels.grace_days),
        draws=draws,
        **forecast_settings(cfg.survival),
    )
    revenue = revenue.assign(as_of=day)
    result = ForecastResult(day, version, survival, revenue)
    if not write:
        return result
    run = ForecastRunInfo(
        as_of=day.date(),
        survival_model_version=version,
        run_kind=run_kind,
        data_start=start.date(),
        data_end=(end - pd.Timedelta(days=1)).date(),
    )
    warehouse = prepared.warehouse or Warehouse.from_config(
        cfg.warehouse, url_override=warehouse_url or None, root=root
    )
    with warehouse:
        result.run = warehouse.write_forecast(survival, revenue, run)
    return result


__all__ = ["ForecastResult", "PreparedForecast", "forecast_accounts", "prepare_forecast"]
