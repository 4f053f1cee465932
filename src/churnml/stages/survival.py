"""Stage survival: time to churn per account (discrete-time hazard model), out of time against Kaplan-Meier,
Cox and, on simulator data, the oracle; curves of the accounts active at the as-of.

Writes the model (``paths.survival_model``), ``paths.survival_metrics`` (with the gap to the 90-day churn
model on the as-of accounts), ``paths.survival_plots`` (calibration by decile, mean curves, the forecast's
backtest, and the right-customer analysis: profiles.csv, profile_curves.csv), ``paths.account_survival`` and
``paths.revenue_forecast`` (the warehouse layouts without the run columns). Logs the same metrics document and plot tables to MLflow with the model, registered as
``churnml-survival`` under the champion rule (:mod:`churnml.survival.register`), and records that in
``paths.survival_registry`` (the registration DVC cannot see, as evaluate does for the 90-day models).
"""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import pandas as pd

from churnml.config import Config
from churnml.contract.io import read_output, read_parquet, read_table, write_document, write_output
from churnml.contract.outputs import OUTPUTS
from churnml.dataset.spine import as_of_day, data_end
from churnml.modeling.registry_record import write_registry_record
from churnml.modeling.tracking import content_version, data_version
from churnml.survival.model import TARGET
from churnml.survival.pipeline import account_survival_table, gap_to_churn_model, run_survival
from churnml.survival.register import promotion_metric, register_survival


def survival(cfg: Config, root: Path) -> str:
    """Evaluate, fit and apply the survival model; write its model, metrics, plots and the as-of curves."""
    paths = cfg.paths
    promotion_metric(cfg)  # a bad metric name fails before minutes of training
    validated = root / paths.validated
    end = data_end(validated)
    as_of = as_of_day(cfg.scoring.as_of, end)
    features = read_output(root / paths.features, "features")
    as_of_features = read_output(root / paths.scoring_features, "scoring_features")
    # the oracle exists only for simulator data; a stale truth folder must never meet real data
    truth_file = root / paths.truth / "survival.parquet"
    truth = read_parquet(truth_file) if cfg.data.source == "simulator" and truth_file.is_file() else None
    accounts = read_table(validated, "accounts")
    result = run_survival(
        features,
        read_table(validated, "subscriptions"),
        end,
        as_of_features,
        cfg,
        truth=truth,
        accounts=accounts,
    )

    model_dir = root / paths.survival_model
    shutil.rmtree(model_dir, ignore_errors=True)
    result.model.save(model_dir)
    table = account_survival_table(result.as_of, as_of_features, as_of, cfg.survival.horizon_months, accounts)
    write_output(table, root / paths.account_survival, "account_survival")
    write_output(result.forecast, root / paths.revenue_forecast, "revenue_forecast")
    scores = read_output(root / paths.scores, "scores")
    metrics = {
        **result.metrics,
        "as_of": str(as_of.date()),
        "as_of_accounts": len(table),
        "gap_to_90d_model": gap_to_churn_model(result.as_of, scores, cfg.labels.horizon_days),
    }
    document = json.loads(json.dumps(metrics, default=float))
    write_document(document, root / paths.survival_metrics, "survival_metrics")
    plots = root / paths.survival_plots
    plots.mkdir(parents=True, exist_ok=True)
    declared = OUTPUTS["survival_plots"].files  # each file's columns, in their declared order
    bt = result.backtest.assign(as_of=pd.to_datetime(result.backtest["as_of"]).dt.date.astype(str))
    tables = {
        name: frame[list(declared[name])].round(6)
        for name, frame in (
            ("calibration.csv", result.calibration),
            ("curves.csv", result.curves),
            ("profiles.csv", result.profiles),
            ("profile_curves.csv", result.profile_curves),
            ("forecast_backtest.csv", bt),
        )
    }
    for name, frame in tables.items():
        frame.to_csv(plots / name, index=False)
    # MLflow gets the very document and tables DVC tracks, with the model the as-of curves came from
    features_version = data_version(root / paths.features, root)
    run_id, version = register_survival(
        result,
        document,
        {name.removesuffix(".csv"): frame for name, frame in tables.items()},
        cfg,
        features_version,
        root=root,
    )
    write_registry_record(
        root / paths.survival_registry,
        TARGET,
        content_version(model_dir),  # this stage's own output: dvc.lock still names the previous model
        features_version,
        version is not None,
    )
    lg = metrics["models"]["lightgbm"]
    return (
        f"survival: {metrics['test_spells']} test spells over {metrics['follow_up_months']} months, "
        f"Harrell C {lg['harrell_c']:.3f}, IBS {lg['integrated_brier']:.4f}; {len(table)} accounts at {as_of.date()} "
        f"(seconds {result.info.get('seconds')}); 12-month forecast backtest {metrics['forecast_backtest']}; "
        f"MLflow run {run_id}, registered version {version}"
    )


__all__ = ["survival"]
