"""The survival stage's work: out-of-time evaluation against Kaplan-Meier, Cox (and the oracle), the final
model, and the as-of curves of the active accounts.

Protocol. The test cutoffs are the latest ``survival.test_periods`` cutoffs whose months are all observed
(each month's end plus the grace period on or before the data end), so the test spells are censored by the
horizon only. Everything the models learn is censored at the first test cutoff (the test start): no
outcome after it is used, the same purge the 90-day split applies. When the data are too short for whole
horizons (small portfolios) the test follows its spells for as many months as the data allow (at least
one), and the metrics say how many (``follow_up_months``). The final model is refitted on every cutoff,
censored at the data end, with the same procedure.
"""

from __future__ import annotations

import json
import time
from dataclasses import dataclass, field
from typing import Any

import numpy as np
import pandas as pd

from churnml.config import Config
from churnml.contract.tables import CATEGORICAL_FEATURES
from churnml.errors import ChurnmlError
from churnml.modeling.model import TrainedModel
from churnml.modeling.split import feature_columns
from churnml.survival.evaluation import CoxBaseline, calibration, km_by_group, survival_metrics
from churnml.survival.forecast import (
    BACKTEST_COLUMNS,
    CSM,
    FORECAST_MONTHS,
    backtest,
    forecast_book,
    forecast_settings,
    with_csm,
)
from churnml.survival.model import curve_frame, sample_accounts, train_survival
from churnml.survival.profiles import right_customers
from churnml.survival.rows import month_end, outcomes, spells, training_rows

KM_GROUP = "account_segment"
ORACLE_PREFIX = "true_s_"  # the simulator's truth: true_s_1 .. true_s_12 per (account, cutoff)


@dataclass
class SurvivalResult:
    """What the stage writes: the final model, metrics, calibration and curve tables, as-of curves."""

    model: TrainedModel
    metrics: dict[str, Any]
    calibration: pd.DataFrame
    curves: pd.DataFrame  # mean S(t) per model on the test spells, and the observed Kaplan-Meier
    as_of: pd.DataFrame  # curve_frame of the active accounts at the as-of
    forecast: (
        pd.DataFrame
    )  # the revenue forecast of the as-of book (churnml.survival.forecast.summarise rows)
    backtest: pd.DataFrame  # forecasts at the test cutoffs against what happened, and the naive forecast
    profiles: pd.DataFrame  # the right-customer analysis (churnml.survival.profiles.right_customers)
    profile_curves: pd.DataFrame  # its logo and revenue retention curves per profile, with bands
    info: dict[str, Any] = field(default_factory=dict)
    # the out-of-time test, kept to measure a registered champion on the same spells (churnml.survival.register)
    test: pd.DataFrame | None = None  # the test spells' feature rows
    test_spells: pd.DataFrame | None = None
    follow: int = 0  # months each test spell is followed
    test_start: pd.Timestamp | None = None  # the first test cutoff: no outcome after it was learned from


MIN_TRAIN_MONTHS = 3  # the earliest cutoff must have this many months observed before the test start


def test_cutoffs(cutoffs: list[pd.Timestamp], end: pd.Timestamp, grace_days: int, horizon: int, periods: int):
    """(test cutoffs, months each is followed): the latest ``periods`` cutoffs with the longest whole follow-up
    that leaves the earliest cutoff ``MIN_TRAIN_MONTHS`` months observed before the test start (something
    to learn from).

    Raises:
        ChurnmlError: when no such split exists (too little history).
    """
    grace = pd.Timedelta(days=int(grace_days))
    cutoffs = sorted(pd.Timestamp(c) for c in cutoffs)
    if not cutoffs:
        raise ChurnmlError("survival: no cutoffs")
    first = cutoffs[0]
    learnable = month_end(pd.Series([first]), MIN_TRAIN_MONTHS).iloc[0] + grace
    for months in range(horizon, 0, -1):
        ok = [c for c in cutoffs if month_end(pd.Series([c]), months).iloc[0] + grace <= end]
        chosen = ok[-periods:]
        if chosen and learnable <= chosen[0]:
            return chosen, months
    raise ChurnmlError(
        f"survival: too little history: no test cutoff with a month observed (plus {grace_days} days of grace) "
        f"before the data end {end.date()} lies {MIN_TRAIN_MONTHS} months and the grace after the first cutoff "
        f"{first.date()}"
    )


def _categories(features: pd.DataFrame, columns: list[str]) -> dict[str, list[str]]:
    return {
        c: sorted(features[c].dropna().astype(str).unique().tolist())
        for c in columns
        if c in CATEGORICAL_FEATURES or not pd.api.types.is_numeric_dtype(features[c])
    }


def _mean_curves(name: str, surv: np.ndarray) -> pd.DataFrame:
    return pd.DataFrame(
        {"model": name, "month": np.arange(1, surv.shape[1] + 1), "survival": surv.mean(axis=0)}
    )


def run_survival(
    features: pd.DataFrame,
    subscriptions: pd.DataFrame,
    end: pd.Timestamp,
    as_of_features: pd.DataFrame,
    cfg: Config,
    truth: pd.DataFrame | None = None,
    start: pd.Timestamp | None = None,
    as_of: pd.Timestamp | None = None,
    accounts: pd.DataFrame | None = None,
) -> SurvivalResult:
    """Evaluate out of time, fit the final model and give the curves of the accounts active at the as-of.

    Args:
        features: the feature table (every spine cutoff).
        subscriptions: the validated subscriptions.
        end: the data end.
        as_of_features: the features of the accounts to give curves for (the scoring as-of).
        cfg: the configuration (survival, labels.grace_days, model).
        truth: per (account_id, cutoff) the true ``true_s_1..`` survival (simulator data), or None.
        start: the data start (the naive forecast looks no further back); the first cutoff when None.
        as_of: the day of ``as_of_features`` (the forecast's as-of); the data end when None.
        accounts: the validated accounts (their ``csm_id`` gives the forecast's per-CSM rows); None: no CSM
            rows.
    """
    clock = time.perf_counter()
    timings: dict[str, float] = {}

    def lap(name: str) -> None:
        nonlocal clock
        now = time.perf_counter()
        timings[name] = round(now - clock, 2)
        clock = now

    sc, horizon, grace = cfg.survival, int(cfg.survival.horizon_months), int(cfg.labels.grace_days)
    feats = features.assign(cutoff=pd.to_datetime(features["cutoff"]).astype("datetime64[us]"))
    columns = feature_columns(feats)
    cats = _categories(feats, columns)
    chosen, follow = test_cutoffs(list(feats["cutoff"].unique()), end, grace, horizon, int(sc.test_periods))
    test_start = chosen[0]
    # the accounts whose spells train (all of them up to survival.max_train_accounts)
    sampled = sample_accounts(feats["account_id"], int(sc.max_train_accounts), int(cfg.model.seed))
    learn = feats[sampled].reset_index(drop=True) if not sampled.all() else feats

    # learn with everything censored at the test start
    past = learn[learn["cutoff"] < test_start].reset_index(drop=True)
    past_out = outcomes(past, subscriptions, grace, horizon, test_start)
    rows = training_rows(past, past_out, horizon)
    model = train_survival(
        rows,
        cats,
        cfg.model,
        sc.holdout_share,
        info={"test_start": str(test_start.date()), "horizon_months": horizon},
    )
    lap("train_lightgbm")
    train_spells = spells(past_out).merge(past, on=["account_id", "cutoff"], how="left")

    test = feats[feats["cutoff"].isin(chosen)].reset_index(drop=True)
    test_out = outcomes(test, subscriptions, grace, horizon, end)
    keep = test_out["observed_months"].to_numpy() >= follow
    test, test_out = test[keep].reset_index(drop=True), test_out[keep].reset_index(drop=True)
    # the test follows each spell for `follow` months: later months are censored for every model alike
    test_out = test_out.assign(
        event_month=np.where(test_out["event_month"] <= follow, test_out["event_month"], 0),
        observed_months=np.minimum(test_out["observed_months"], follow),
    )
    test_spells = spells(test_out)
    if len(test_spells) != len(test):
        raise ChurnmlError("survival: test spells and test features disagree")

    full = curve_frame(model, test, horizon)[[f"s_{t}" for t in range(1, horizon + 1)]].to_numpy()
    lgbm = full[:, :follow]
    km = km_by_group(train_spells, test, KM_GROUP, horizon)[:, :follow]
    cox = (
        CoxBaseline(columns, sc.cox_alpha)
        .fit(train_spells.dropna(subset=["duration"]))
        .survival(test, horizon)[:, :follow]
    )
    lap("baselines")
    preds = {"lightgbm": lgbm, "kaplan_meier": km, "cox": cox}
    metrics_oracle_missing = None
    if truth is not None:
        true_cols = [f"{ORACLE_PREFIX}{t}" for t in range(1, follow + 1)]
        have = [c for c in true_cols if c in truth.columns]
        if len(have) == follow:
            t = truth.assign(
                cutoff=pd.to_datetime(truth["cutoff"]).astype("datetime64[us]"),
                account_id=truth["account_id"].astype(str),
            )
            joined = test[["account_id", "cutoff"]].merge(t[["account_id", "cutoff", *true_cols]], how="left")
            missing = int(joined[true_cols].isna().any(axis=1).sum())
            metrics_oracle_missing = missing
            if missing == 0:
                preds["oracle"] = joined[true_cols].to_numpy()

    metrics: dict[str, Any] = {"models": {}}
    cal_parts, curve_parts = [], []
    for name, surv in preds.items():
        metrics["models"][name] = survival_metrics(test_spells, surv, follow)
        cal_parts.append(
            calibration(test_spells, surv, sorted({m for m in (3, 6, follow) if m <= follow})).assign(
                model=name
            )
        )
        curve_parts.append(_mean_curves(name, surv))
    from churnml.survival.evaluation import kaplan_meier

    observed = kaplan_meier(test_spells, np.arange(1, follow + 1, dtype=float))
    curve_parts.append(
        pd.DataFrame({"model": "observed", "month": np.arange(1, follow + 1), "survival": observed})
    )
    lg = metrics["models"]["lightgbm"]
    if "oracle" in metrics["models"]:
        orc, base = metrics["models"]["oracle"], metrics["models"]["kaplan_meier"]
        metrics["oracle_share_c"] = (lg["harrell_c"] - 0.5) / max(orc["harrell_c"] - 0.5, 1e-9)
        gain = base["integrated_brier"] - orc["integrated_brier"]
        metrics["oracle_share_ibs"] = (
            (base["integrated_brier"] - lg["integrated_brier"]) / gain if gain > 0 else None
        )
    rule_breaks = int(((rows["survival_at_risk"] == False) & (rows["event"] == 1)).sum())  # noqa: E712
    metrics.update(
        {
            "horizon_months": horizon,
            "follow_up_months": follow,
            "test_cutoffs": [str(c.date()) for c in chosen],
            "test_spells": len(test_spells),
            "test_events": int(test_spells["event"].sum()),
            "train_accounts": int(past["account_id"].nunique()),
            "accounts": int(feats["account_id"].nunique()),
            "train_rows": len(rows),
            "train_events": int(rows["event"].sum()),
            "events_outside_contract_rule": rule_breaks,
            "oracle_rows_missing": metrics_oracle_missing,  # test spells without truth (then no oracle)
            "best_iteration": int(model.params.get("best_iteration", 0)),
        }
    )

    lap("metrics")
    spine = feats[["account_id", "cutoff"]]
    first = pd.Timestamp(start) if start is not None else feats["cutoff"].min()
    months = tuple(h for h in FORECAST_MONTHS if h <= follow)
    books = {
        c: (with_csm(test[test["cutoff"] == c], accounts), full[(test["cutoff"] == c).to_numpy()])
        for c in chosen
    }
    if months:
        bt_rows, bt_summary = backtest(
            books, subscriptions, spine, first, grace, months, **forecast_settings(sc)
        )
    else:  # the test follows its spells for less than the shortest forecast horizon: nothing matured
        bt_rows, bt_summary = (
            pd.DataFrame(columns=list(BACKTEST_COLUMNS)),
            {"as_of": [], "skipped": "no horizon matured"},
        )
    metrics["forecast_backtest"] = bt_summary
    # the right-customer analysis, on the same fully observed spells (one per account)
    customers = right_customers(test, test_spells, subscriptions, grace, follow)
    metrics["findings"] = customers.findings
    lap("forecast_backtest")
    # the final model: every cutoff, censored at the data end
    all_out = outcomes(learn, subscriptions, grace, horizon, end)
    final = train_survival(
        training_rows(learn, all_out, horizon),
        cats,
        cfg.model,
        sc.holdout_share,
        info={"censored_at": str(end.date()), "horizon_months": horizon},
    )
    metrics["final_train_rows"] = int(final.info["n_train"] + final.info["n_validation"])
    curves_now = curve_frame(final, as_of_features, horizon)
    lap("final_model")
    day = pd.Timestamp(as_of) if as_of is not None else end
    s_now = curves_now[[f"s_{t}" for t in range(1, horizon + 1)]].to_numpy()
    book = with_csm(as_of_features.reset_index(drop=True), accounts)
    fc = forecast_book(book, s_now, subscriptions, spine, day, grace, **forecast_settings(sc))
    lap("forecast")
    return SurvivalResult(
        model=final,
        metrics=metrics,
        calibration=pd.concat(cal_parts, ignore_index=True),
        curves=pd.concat(curve_parts, ignore_index=True),
        as_of=curves_now,
        forecast=fc.assign(as_of=day),
        backtest=bt_rows,
        profiles=customers.table,
        profile_curves=customers.curves,
        info={"seconds": timings},
        test=test,
        test_spells=test_spells,
        follow=follow,
        test_start=test_start,
    )


def gap_to_churn_model(as_of: pd.DataFrame, scores: pd.DataFrame, horizon_days: int) -> dict[str, float]:
    """Where the survival curve and the 90-day churn model overlap: 1 - S(3 months) against its probability.

    Three calendar months are 89 to 92 days, the 90-day label's horizon within a day or two.
    """
    months = max(1, round(horizon_days / 30.4))
    col = f"s_{months}"
    if col not in as_of.columns or scores.empty:
        return {}
    s = scores.assign(account_id=scores["account_id"].astype(str))[["account_id", "churn_probability"]]
    j = as_of.assign(account_id=as_of["account_id"].astype(str)).merge(s, on="account_id", how="inner")
    if j.empty:
        return {}
    p_surv = 1.0 - j[col].to_numpy()
    p_90 = j["churn_probability"].to_numpy(dtype=float)
    return {
        "accounts": len(j),
        "months": months,
        "mean_survival_churn": float(p_surv.mean()),
        "mean_90d_model_churn": float(p_90.mean()),
        "mean_abs_gap": float(np.abs(p_surv - p_90).mean()),
        "correlation": float(np.corrcoef(p_surv, p_90)[0, 1]) if len(j) > 2 else float("nan"),
    }


def account_survival_table(
    curves: pd.DataFrame,
    features: pd.DataFrame,
    as_of: pd.Timestamp,
    horizon: int,
    accounts: pd.DataFrame | None = None,
) -> pd.DataFrame:
    """The ``account_survival`` rows of :func:`churnml.survival.model.curve_frame` at one as-of, without the
    columns a forecast run fills (``churnml.contract.tables.FORECAST_RUN_FILLED``).

    Args:
        curves: :func:`churnml.survival.model.curve_frame` of ``features``, in the same order.
        features: the accounts' feature rows (segment, touch model, ARR).
        as_of: the as-of.
        horizon: months of each curve.
        accounts: the validated accounts (``csm_id``); None leaves ``csm_id`` empty.
    """
    s_cols = [f"s_{t}" for t in range(1, horizon + 1)]
    info = with_csm(features.reset_index(drop=True), accounts)

    def col(name: str) -> pd.Series:
        return info[name] if name in info.columns else pd.Series([None] * len(info))

    s3 = curves[f"s_{min(3, horizon)}"].to_numpy()
    return pd.DataFrame(
        {
            "account_id": curves["account_id"].astype(str),
            "as_of": pd.Timestamp(as_of),
            "horizon_months": horizon,
            "survival": [json.dumps([round(float(v), 6) for v in row]) for row in curves[s_cols].to_numpy()],
            "next_renewal_month": curves["next_renewal_month"].astype("int64"),
            "p_renew_next": curves["p_renew_next"].astype(float),
            "expected_months": curves["expected_months"].astype(float),
            "p_churn_3m": 1.0 - s3,
            "p_churn_horizon": curves["p_churn_horizon"].astype(float),
            "segment": col("account_segment").astype("object").to_numpy(),
            "touch_model": col("account_touch_model").astype("object").to_numpy(),
            "csm_id": col(CSM).astype("object").to_numpy(),
            "arr": pd.to_numeric(col("contract_arr")).astype(float).to_numpy(),
        }
    )
