"""Model quality on the third-party data (`make bench-quality`): every dataset, its protocol, churnml's model and
its baselines beside the reference numbers of the data's SOURCE.md.

Writes benchmarks/results/quality_<dataset>.json (dataset, protocol, and per target and model the metrics)
and the quality table of benchmarks/README.md (between the quality markers).

- crm6_signal, crm6_default (fightchurn ChurnSim, events + subscriptions): the pipeline's own stages, in
  process: ingest -> validate -> spine -> labels -> build_features -> train -> evaluate, with the
  configuration composed from conf/ with ``data=fightchurn_crm6_<variant>`` (which brings the SOURCE.md
  protocol: monthly cutoffs 2022-03..2023-11, 31-day horizon, train before 2023-05 with validation from
  its last months, test 2023-06..2023-11). LightGBM is trained with ``--seeds`` seeds; the table gives
  the mean, and a 95% interval from an account-level bootstrap of the test rows (each resample re-scores
  every seed's predictions, so the interval is that of the seed-mean). For the signal variant the churn
  model's top SHAP drivers (mean |SHAP| on the test rows) are compared with the simulator's utility
  weights as the simulator applies them (per-event weights of sim_config/crm6_conf.yaml scaled by each
  behaviour's expected monthly total, see :func:`utility_weights`).
- telco, bankchurners (one row per customer): tabular mode (:mod:`churnml.tabular`), stratified 5-fold
  with out-of-fold metrics, seed 0 (the SOURCE.md protocol).
- ravenstack: ingest, validation with quarantine (counts reported), then the event pipeline end to end
  with ``data=ravenstack``: a run-through; SOURCE.md says the tables carry no signal, so its verdicts are
  reported and not judged, each with the 95% interval of the gap to the better yardstick (:func:`unjudged`).

Yardsticks, in the same run on the same folds or split: ``plain_lgbm`` (``LGBMClassifier()`` with its defaults)
and ``plain_logistic`` (median-imputed standardised numbers, one-hot text, ``LogisticRegression()``), fitted on every
training row of the fold (crm6: the train and validation periods) without calibration. ``chosen`` is churnml's
served model (LightGBM, the logistic regression or their blend, chosen per fold or seed; on a time split refit on
the train and validation periods, ``model.refit_on_validation``, its trees in ``selection``); each target's
``verdict`` says whether it is at least as good as the better yardstick (mean ROC-AUC over folds, and in all
folds but at most one; on a time split the test ROC-AUC).

- simulator: churnml's own simulator with the default conf/ (``churnml generate``), then the event pipeline's
  stages as for crm6, with the simulator's true probabilities as the ``oracle`` row.

Tuning: ``--optuna-seconds S`` trains the tabular datasets a second time on the same folds with the nested
Optuna search (:mod:`churnml.modeling.tuning`, ``model.optuna_seconds=S`` per fit) and reports the row
``chosen_tuned`` and the gain over the defaults judged by the outer folds.

Usage: python benchmarks/quality.py [--only NAME ...] [--seeds N] [--bootstrap N] [--optuna-seconds S] [--no-readme]
Reads ``$CHURNML_SHARED_DATA`` (default ../shared/data from the repository root).
"""

from __future__ import annotations

import argparse
import dataclasses
import datetime as dt
import json
import math
import os
import sys
import tempfile
import time
import warnings
from collections.abc import Iterator
from pathlib import Path

import numpy as np
import pandas as pd

from churnml.names import TARGETS, label_column

HERE = Path(__file__).resolve().parent
ROOT = HERE.parent
sys.path.insert(0, str(HERE))

from run import machine  # noqa: E402

BEGIN, END = "<!-- quality:begin -->", "<!-- quality:end -->"
MODELS = (
    "chosen",
    "chosen_tuned",
    "lightgbm",
    "logistic",
    "health_score",
    "plain_lgbm",
    "plain_logistic",
    "oracle",
)
# the yardsticks: what a plain script gets on the same rows (fitted on every training row of the fold or split)
PLAIN = ("plain_lgbm", "plain_logistic")
SHOWN = ("roc_auc", "pr_auc", "log_loss", "brier")
THREADS = 2
# what a time split's served model records of its refit on train + validation (model.info["refit"])
REFIT_KEYS = ("trees_before", "trees_refit", "rows", "rows_train")

# Reference numbers, copied from each folder's SOURCE.md ("Benchmarks"); None where SOURCE.md gives none.
REFERENCE = {
    "crm6_signal": {
        "churn": {"lightgbm": {"roc_auc": 0.714, "log_loss": 0.082}, "logistic": {"roc_auc": 0.715}},
        "expansion": {"lightgbm": {"roc_auc": 0.891, "log_loss": 0.078}, "logistic": {"roc_auc": 0.817}},
    },
    "crm6_default": {
        "churn": {"lightgbm": {"roc_auc": 0.542}, "logistic": {"roc_auc": 0.550}},
        "expansion": {"lightgbm": {"roc_auc": 0.884, "log_loss": 0.101}, "logistic": {"roc_auc": 0.794}},
    },
    "telco": {
        "churn": {
            "lightgbm": {"roc_auc": 0.8453, "log_loss": 0.4163, "pr_auc": 0.662},
            "logistic": {"roc_auc": 0.8452, "log_loss": 0.4175},
        }
    },
    "bankchurners": {
        "churn": {
            "lightgbm": {"roc_auc": 0.9937, "log_loss": 0.0760, "pr_auc": 0.971},
            "logistic": {"roc_auc": 0.9234, "log_loss": 0.2364},
        }
    },
    "ravenstack": {"churn": {"lightgbm": {"roc_auc": 0.512}}},
}

# The tabular tables: the SOURCE.md column rules, and a health score as a CS team would write it from the
# columns' meaning (chosen by hand, not fitted).
TABULAR = {
    "telco": {
        "folder": "telco_customer_churn_ibm",
        "file": "Telco-Customer-Churn.csv",
        "spec": {"label": "Churn", "positive": "Yes", "id": "customerID", "health": {"tenure": 1.0}},
    },
    "bankchurners": {
        "folder": "bankchurners_credit_card",
        "file": "BankChurners.csv",
        "spec": {
            "label": "Attrition_Flag",
            "positive": "Attrited Customer",
            "id": "CLIENTNUM",
            "drop": [
                "Naive_Bayes_Classifier_Attrition_Flag_Card_Category_Contacts_Count_12_mon_Dependent_count_"
                "Education_Level_Months_Inactive_12_mon_1",
                "Naive_Bayes_Classifier_Attrition_Flag_Card_Category_Contacts_Count_12_mon_Dependent_count_"
                "Education_Level_Months_Inactive_12_mon_2",
            ],
            "health": {
                "Total_Trans_Ct": 1.0,
                "Total_Ct_Chng_Q4_Q1": 1.0,
                "Months_Inactive_12_mon": -1.0,
                "Contacts_Count_12_mon": -1.0,
            },
        },
    },
}


def _clean(value):
    if isinstance(value, dict):
        return {k: _clean(v) for k, v in value.items()}
    if isinstance(value, list | tuple):
        return [_clean(v) for v in value]
    if isinstance(value, float | np.floating):
        return None if not math.isfinite(float(value)) else round(float(value), 6)
    if isinstance(value, np.integer):
        return int(value)
    return value


def _config(overrides: list[str]):
    from churnml.config import compose, validate_config

    return validate_config(
        compose(ROOT / "conf", [f"model.lgbm.n_jobs={THREADS}", f"features.threads={THREADS}", *overrides])
    )


def _test_metrics(evaluation) -> dict[str, dict[str, float]]:
    m = evaluation.metrics
    rows = m[(m["split"] == "test") & (m["group_kind"] == "all")]
    return {
        r["model"]: {k: float(r[k]) for k in SHOWN} | {"n": int(r["n"]), "positives": int(r["positives"])}
        for _, r in rows.iterrows()
    }


def account_resamples(accounts: np.ndarray, y: np.ndarray, n_boot: int, seed: int) -> Iterator[np.ndarray]:
    """The row indices of ``n_boot`` resamples of accounts with replacement (every row of each drawn account, in
    row order); a resample whose rows hold one outcome only is drawn and skipped (no ROC-AUC on it)."""
    keys, inverse = np.unique(accounts, return_inverse=True)
    order = np.argsort(inverse, kind="stable")
    starts = np.searchsorted(inverse[order], np.arange(len(keys)))
    ends = np.append(starts[1:], len(order))
    rng = np.random.default_rng(seed)
    for _ in range(n_boot):
        pick = np.concatenate([order[starts[i] : ends[i]] for i in rng.integers(0, len(keys), len(keys))])
        if 0 < y[pick].sum() < len(pick):
            yield pick


def cluster_bootstrap(scores: pd.DataFrame, n_boot: int, seed: int = 0) -> dict[str, list[float]]:
    """95% interval of the seed-mean ROC-AUC per model, resampling accounts (all their test rows) with replacement.

    Args:
        scores: account_id, y, and one score column per (model, seed) named ``<model>|<seed>``, one row per
            test account-cutoff.
        n_boot: resamples.
    """
    from sklearn.metrics import roc_auc_score

    y = scores["y"].to_numpy()
    cols = [c for c in scores.columns if "|" in c]
    models = sorted({c.split("|")[0] for c in cols})
    draws: dict[str, list[float]] = {m: [] for m in models}
    for pick in account_resamples(scores["account_id"].to_numpy(), y, n_boot, seed):
        for m in models:
            aucs = [roc_auc_score(y[pick], scores[c].to_numpy()[pick]) for c in cols if c.startswith(m + "|")]
            draws[m].append(float(np.mean(aucs)))
    return {m: [float(np.percentile(v, 2.5)), float(np.percentile(v, 97.5))] for m, v in draws.items() if v}


def gap_interval(rows: pd.DataFrame, mine: str, theirs: str, n_boot: int, seed: int = 0) -> list[float]:
    """95% interval of ROC-AUC(``mine``) - ROC-AUC(``theirs``) on the same rows, resampling accounts (all their
    rows) with replacement: whether a gap between two models could be chance on this many rows.

    Args:
        rows: account_id, y and the two score columns, one row per scored account-cutoff.
    """
    from sklearn.metrics import roc_auc_score

    y, a, b = (rows[c].to_numpy() for c in ("y", mine, theirs))
    gaps = [
        roc_auc_score(y[pick], a[pick]) - roc_auc_score(y[pick], b[pick])
        for pick in account_resamples(rows["account_id"].astype(str).to_numpy(), y, n_boot, seed)
    ]
    return [float(np.percentile(gaps, 2.5)), float(np.percentile(gaps, 97.5))]


def unjudged(found: dict | None, rows: pd.DataFrame, why: str, n_boot: int) -> dict | None:
    """A verdict on data that cannot judge a model: the comparison stays reported, with the interval of the gap
    to the better yardstick (``rows``: account_id, y, ``chosen`` and each yardstick's scores), and is not
    counted as holding or failing."""
    if found is None:
        return None
    if rows[["chosen", found["better_yardstick"]]].isna().any().any():
        raise ValueError("the chosen model's and the yardstick's scores are not on the same rows")
    gap = gap_interval(rows, "chosen", found["better_yardstick"], n_boot)
    return found | {
        "judged": False,
        "why": why,
        "gap_ci95": gap,
        "gap_could_be_chance": gap[0] <= 0 <= gap[1],
    }


# ------------------------------------------------------------------------------------------- yardsticks


def _plain_frame(frame: pd.DataFrame, columns: list[str]) -> pd.DataFrame:
    """The feature columns as a plain script would hand them over: numbers as float, text as category."""
    out = {}
    for c in columns:
        col = frame[c]
        if pd.api.types.is_numeric_dtype(col) or pd.api.types.is_bool_dtype(col):
            out[c] = col.astype("float64")
        else:
            out[c] = col.astype("object").where(col.notna(), "__missing__").astype("str").astype("category")
    return pd.DataFrame(out, index=frame.index)


def plain_scores(
    train: pd.DataFrame, y_train: np.ndarray, test: pd.DataFrame, columns: list[str]
) -> dict[str, np.ndarray]:
    """Test-row probabilities of the two yardsticks fitted on the training rows.

    ``plain_lgbm``: ``LGBMClassifier()`` with its defaults (categoricals native as pandas categories).
    ``plain_logistic``: median imputation + standardisation of numbers, one-hot text, ``LogisticRegression``
    with its defaults (``max_iter`` raised so it converges). No validation carve-out, no calibration.
    """
    import lightgbm as lgb
    from sklearn.compose import ColumnTransformer
    from sklearn.impute import SimpleImputer
    from sklearn.linear_model import LogisticRegression
    from sklearn.pipeline import make_pipeline
    from sklearn.preprocessing import OneHotEncoder, StandardScaler

    x_train, x_test = _plain_frame(train, columns), _plain_frame(test, columns)
    cats = [c for c in columns if isinstance(x_train[c].dtype, pd.CategoricalDtype)]
    for c in cats:  # the test rows share the training vocabulary (unseen levels become missing)
        x_test[c] = pd.Categorical(x_test[c].astype("object"), categories=x_train[c].cat.categories)
    nums = [c for c in columns if c not in cats]
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        gbm = lgb.LGBMClassifier(n_jobs=THREADS, verbose=-1).fit(x_train, y_train)
        prep = ColumnTransformer(
            [
                (
                    "num",
                    make_pipeline(
                        SimpleImputer(strategy="median", keep_empty_features=True), StandardScaler()
                    ),
                    nums,
                ),
                ("cat", OneHotEncoder(handle_unknown="ignore"), cats),
            ]
        )
        lr = make_pipeline(prep, LogisticRegression(max_iter=5000)).fit(
            x_train.replace([np.inf, -np.inf], np.nan), y_train
        )
        return {
            "plain_lgbm": gbm.predict_proba(x_test)[:, 1],
            "plain_logistic": lr.predict_proba(x_test.replace([np.inf, -np.inf], np.nan))[:, 1],
        }


def _metrics_of(y: np.ndarray, p: np.ndarray) -> dict[str, float]:
    from sklearn.metrics import average_precision_score, brier_score_loss, log_loss, roc_auc_score

    p = np.clip(p, 1e-15, 1 - 1e-15)
    return {
        "roc_auc": float(roc_auc_score(y, p)),
        "pr_auc": float(average_precision_score(y, p)),
        "log_loss": float(log_loss(y, p, labels=[0, 1])),
        "brier": float(brier_score_loss(y, p)),
        "n": len(y),
        "positives": int(np.sum(y)),
    }


def verdict(models: dict[str, dict]) -> dict | None:
    """churnml's chosen model against the better yardstick: mean ROC-AUC, and per fold where there are folds."""
    if "chosen" not in models or not all(k in models for k in PLAIN):
        return None
    key = "roc_auc_fold_mean" if "roc_auc_fold_mean" in models["chosen"] else "roc_auc"
    best = max(PLAIN, key=lambda k: models[k][key])
    out = {
        "better_yardstick": best,
        "compared_on": key,
        "margin_roc_auc": models["chosen"][key] - models[best][key],
        "holds": models["chosen"][key] >= models[best][key],
    }
    mine, theirs = models["chosen"].get("roc_auc_per_fold"), models[best].get("roc_auc_per_fold")
    if mine and theirs:
        wins = sum(a >= b for a, b in zip(mine, theirs, strict=True))
        out |= {"folds_at_least_as_good": wins, "folds": len(mine)}
        out["holds"] = out["holds"] and wins >= len(mine) - 1
    return out


def plain_split(
    features: pd.DataFrame, labels: pd.DataFrame, label: str, split, scores: list | None = None
) -> dict[str, dict]:
    """The yardsticks on the pipeline's own split: fitted on the train and validation periods, tested on test.
    ``scores``, when given, receives the test rows (account_id, cutoff, y) with each yardstick's scores."""
    from churnml.modeling.split import feature_columns, labeled_frame

    data = labeled_frame(features, labels, label)
    period = split.assign(data["cutoff"])
    train, test = data[period.isin(["train", "validation"])], data[period == "test"]
    p = plain_scores(train, train["y"].to_numpy(), test, feature_columns(features))
    if scores is not None:
        scores.append(test[["account_id", "cutoff", "y"]].reset_index(drop=True).assign(**p))
    return {k: _metrics_of(test["y"].to_numpy(), p[k]) for k in PLAIN}


# ------------------------------------------------------------------------------------------------- crm6


def utility_weights(sim_config: Path) -> pd.DataFrame:
    """The simulator's utility weight of each behaviour, raw and as the simulator applies it.

    ChurnSim (``UtilityModel.setExpectations``/``utility_function``) scales each per-event weight by the
    behaviour's expected monthly total (channel-weighted mean count, times the mean value for behaviours
    with a ``<b>_value``, times the mean number of users); a behaviour contributes that expected
    contribution times ``1 - exp(-2 x count / mean)``, so the expected contribution is the weight that
    decides how much it moves utility (its ceiling). The raw per-event weights in ``crm6_utility.csv``
    alone rank behaviours differently (win_opportunity: +0.4 per event, but each win carries its value).

    Returns:
        One row per behaviour: ``raw`` (per event), ``effective`` (expected contribution), sorted by
        ``|effective|``.
    """
    import yaml

    conf = yaml.safe_load((sim_config / "crm6_conf.yaml").read_text(encoding="utf-8"))
    raw = pd.Series(conf["utility"], dtype=float).drop(labels=["mrr", "users"], errors="ignore")
    effective = pd.Series(0.0, index=raw.index)
    for channel, share in conf["population"].items():
        model = pd.read_csv(sim_config / f"crm6_{channel}_simulation_model.csv", encoding="utf-8-sig")
        means = model.set_index("behavior")["mean"].astype(float)
        totals = means.reindex(raw.index)
        for b in raw.index:
            if f"{b}_value" in means.index:
                totals[b] *= means[f"{b}_value"]
        effective += float(share) * totals * float(means.get("users", 1.0)) * raw
    out = pd.DataFrame({"raw": raw, "effective": effective})
    return out.reindex(out["effective"].abs().sort_values(ascending=False).index)


def _behaviour_of(feature: str, behaviours) -> str | None:
    """The behaviour a usage feature measures: ``feature_<b>`` counts and ``<b>_value`` sums (else None)."""
    from churnml.explain.drivers import feature_info

    try:
        metric = feature_info(feature).metric
    except Exception:  # noqa: BLE001 - a name outside the vocabulary measures no behaviour
        return None
    name = metric.removeprefix("feature_") if metric.startswith("feature_") else metric.removesuffix("_value")
    return (
        name if name in behaviours and (metric.startswith("feature_") or metric.endswith("_value")) else None
    )


def shap_vs_utility(models, test: pd.DataFrame, weights: pd.DataFrame, top: int = 10) -> dict:
    """Top drivers of the churn models by mean |SHAP| on the test rows, against the simulator's utility weights."""
    from churnml.explain.contributions import explain_accounts, global_importance

    tables = [global_importance(explain_accounts(m, test, num_threads=THREADS)) for m in models]
    imp = pd.concat(tables).groupby("feature", as_index=False)["mean_abs_shap"].mean()
    imp = imp.sort_values("mean_abs_shap", ascending=False, ignore_index=True)
    behaviours = list(weights.index)
    rank_eff = {b: i + 1 for i, b in enumerate(weights.index)}
    rank_raw = {
        b: i + 1 for i, b in enumerate(weights["raw"].abs().sort_values(ascending=False, kind="stable").index)
    }
    top_weighted = behaviours[:6]
    drivers = []
    for _, row in imp.head(top).iterrows():
        b = _behaviour_of(row["feature"], behaviours)
        drivers.append(
            {
                "feature": row["feature"],
                "mean_abs_shap": float(row["mean_abs_shap"]),
                "behaviour": b,
                "raw_weight": float(weights.loc[b, "raw"]) if b else None,
                "effective_weight": float(weights.loc[b, "effective"]) if b else None,
                "rank_by_effective_weight": rank_eff.get(b),
                "rank_by_raw_weight": rank_raw.get(b),
            }
        )
    usage = [d for d in drivers if d["behaviour"] is not None]
    # per behaviour: its features summed (windows and aggregates split one behaviour over many columns)
    mapped = imp.assign(behaviour=imp["feature"].map(lambda f: _behaviour_of(f, behaviours)))
    by_b = mapped.dropna(subset=["behaviour"]).groupby("behaviour")["mean_abs_shap"].sum()
    by_b = by_b.reindex(behaviours, fill_value=0.0).sort_values(ascending=False)
    top3 = list(by_b.index[:3])
    return {
        "top_drivers": drivers,
        "top_weighted_behaviours": {b: float(weights.loc[b, "effective"]) for b in top_weighted},
        "usage_drivers_in_top": len(usage),
        "usage_drivers_among_top_weighted": sum(d["behaviour"] in top_weighted for d in usage),
        "first_usage_driver": usage[0]["behaviour"] if usage else None,
        "behaviour_importance": {k: float(v) for k, v in by_b.items()},
        "top3_behaviours": top3,
        "top3_behaviours_among_top_weighted": sum(b in top_weighted for b in top3),
        "spearman_vs_effective_weight": float(
            by_b.corr(weights["effective"].abs().reindex(by_b.index), method="spearman")
        ),
        "spearman_vs_raw_weight": float(
            by_b.corr(weights["raw"].abs().reindex(by_b.index), method="spearman")
        ),
        "rule": f"top {top} features by mean |SHAP| (churn model, test rows, mean over seeds); a feature's behaviour: "
        "feature_<b> counts and <b>_value sums; behaviour importance = the sum over its features; top-weighted = "
        "the 6 behaviours with the largest |effective weight| (the simulator's expected contribution, see "
        "utility_weights); mrr left out",
    }


def run_crm6(variant: str, shared: Path, work: Path, seeds: int, n_boot: int) -> dict:
    from churnml.contract.io import read_folder, write_folder
    from churnml.contract.validate import validate_tables
    from churnml.sources.ingest import ingest

    folder = shared / f"fightchurn_crm6_{variant}"
    cfg = _config([f"data=fightchurn_crm6_{variant}"])
    t0 = time.perf_counter()
    ingested, validated = work / "ingested", work / "validated"
    notes = ingest("fightchurn", folder, ingested)["notes"]
    result = validate_tables(read_folder(ingested), quarantine=cfg.data.quarantine)
    write_folder(result.tables, validated)
    features, labels = _event_tables(cfg, validated, variant, t0)
    targets, churn_models, split = event_targets(cfg, features, labels, seeds, n_boot, variant)
    out = {
        "dataset": f"crm6_{variant}",
        "source": f"fightchurn_crm6_{variant}",
        "protocol": _event_protocol(cfg, f"data=fightchurn_crm6_{variant}", split, seeds, n_boot, features),
        "validation_counts": result.counts(),
        "ingest_notes": {k: v for k, v in notes.items() if isinstance(v, int | str)},
        "targets": targets,
        "seconds": round(time.perf_counter() - t0, 1),
    }
    if variant == "signal":
        utility = utility_weights(folder / "sim_config")
        test = features[features["cutoff"].isin(split.test)]
        out["shap_vs_utility"] = shap_vs_utility(churn_models, test, utility)
    return out


def run_simulator(work: Path, seeds: int, n_boot: int) -> dict:
    """The default data: churnml's own simulator (conf/simulator), the pipeline's stages, the oracle beside."""
    from churnml.contract.io import read_folder, read_parquet, write_folder
    from churnml.contract.validate import validate_tables
    from churnml.sources.simulate import generate

    cfg = _config([])
    t0 = time.perf_counter()
    generate(cfg.simulator, work / "raw", work / "truth")
    result = validate_tables(read_folder(work / "raw"), quarantine=cfg.data.quarantine)
    write_folder(result.tables, work / "validated")
    features, labels = _event_tables(cfg, work / "validated", "simulator", t0)
    truth = read_parquet(work / "truth" / "monthly.parquet")
    targets, _, split = event_targets(cfg, features, labels, seeds, n_boot, "simulator", truth=truth)
    return {
        "dataset": "simulator",
        "source": "churnml generate (conf/simulator defaults)",
        "protocol": _event_protocol(
            cfg,
            f"data=simulator ({cfg.simulator.accounts:,} accounts, seed {cfg.simulator.seed}, "
            f"{cfg.simulator.months} months)",
            split,
            seeds,
            n_boot,
            features,
        ),
        "validation_counts": result.counts(),
        "targets": targets,
        "seconds": round(time.perf_counter() - t0, 1),
    }


def _event_tables(cfg, validated: Path, name: str, t0: float) -> tuple[pd.DataFrame, pd.DataFrame]:
    """Spine, labels and features of a validated folder, as the pipeline's stages build them."""
    from churnml.contract.io import read_table
    from churnml.dataset.labels import build_labels
    from churnml.dataset.spine import build_spine, data_end, training_cutoffs
    from churnml.features.engine import build_features

    cutoffs = training_cutoffs(validated, cfg.spine)
    spine = build_spine(read_table(validated, "subscriptions"), cutoffs)
    labels = build_labels(read_table(validated, "subscriptions"), spine, cfg.labels, data_end(validated))
    features = build_features(validated, spine, cfg.features)
    print(
        f"   {name}: {len(features):,} feature rows x {features.shape[1] - 2} in "
        f"{time.perf_counter() - t0:.0f} s",
        flush=True,
    )
    return features, labels


def _event_protocol(cfg, config: str, split, seeds: int, n_boot: int, features: pd.DataFrame) -> dict:
    return {
        "kind": "time_split",
        "stages": "ingest/generate -> validate -> spine -> labels -> build_features -> train -> evaluate (in process)",
        "config": config,
        "cutoffs": f"{cfg.spine.frequency} {cfg.spine.start}..{cfg.spine.end}",
        "horizon_days": cfg.labels.horizon_days,
        "grace_days": cfg.labels.grace_days,
        "expansion_threshold": cfg.labels.expansion_threshold,
        "split": split.to_dict() if split else None,
        "split_text": split.describe() if split else None,
        "seeds": seeds,
        "bootstrap": f"{n_boot} resamples of test accounts (all their test rows), seed-mean ROC-AUC, 2.5/97.5 percentiles",
        "feature_rows": len(features),
        "features": features.shape[1] - 2,
    }


def event_targets(cfg, features, labels, seeds: int, n_boot: int, name: str, truth=None):
    """Per target: churnml's chosen model over ``seeds`` seeds (mean, bootstrap interval), its baselines, and
    the yardsticks on the same split. Returns (targets, the churn models, the split)."""
    from churnml.modeling.evaluation import evaluate_model
    from churnml.modeling.model import train_model

    targets, churn_models, split = {}, [], None
    for target in TARGETS:
        per_seed, score_cols, base, picks = [], {}, None, []
        for seed in range(seeds):
            model_cfg = dataclasses.replace(cfg.model, seed=seed)
            with warnings.catch_warnings():
                warnings.simplefilter("ignore")
                model = train_model(features, labels, target, model_cfg, cfg.split, cfg.labels.horizon_days)
                evaluation = evaluate_model(model, features, labels, cfg.evaluation, truth=truth)
            split = model.split
            refit = model.info.get("refit") or {}
            picks.append({"seed": seed, **model.info["selection"]} | {k: refit.get(k) for k in REFIT_KEYS})
            per_seed.append(_test_metrics(evaluation))
            s = evaluation.scores[evaluation.scores["split"] == "test"]
            if base is None:
                base = s[s["model"] == "lightgbm"][["account_id", "cutoff", "y"]].reset_index(drop=True)
            for m in s["model"].unique():
                score_cols[f"{m}|{seed}"] = s[s["model"] == m]["score"].to_numpy()
            if target == "churn":
                churn_models.append(model)
            print(
                f"   {name} {target} seed {seed}: ROC-AUC {per_seed[-1]['lightgbm']['roc_auc']:.4f} "
                f"({model.info['selection']['chosen']})",
                flush=True,
            )
        scores = pd.concat([base, pd.DataFrame(score_cols)], axis=1)
        interval = cluster_bootstrap(scores, n_boot)
        models = {}
        for m in per_seed[0]:
            values = {k: [p[m][k] for p in per_seed] for k in SHOWN}
            models[m] = {
                **{k: float(np.mean(v)) for k, v in values.items()},
                "seed_sd": {k: float(np.std(v, ddof=1)) if len(v) > 1 else 0.0 for k, v in values.items()},
                "roc_auc_per_seed": values["roc_auc"],
                "roc_auc_ci95": interval.get(m),
                "n": per_seed[0][m]["n"],
                "positives": per_seed[0][m]["positives"],
            }
        models["chosen"] = models.pop("lightgbm")  # the served model (LightGBM, logistic or blend per seed)
        models |= plain_split(features, labels, label_column(target, cfg.labels.horizon_days), split)
        targets[target] = {
            "label": label_column(target, cfg.labels.horizon_days),
            "models": models,
            "verdict": verdict(models),
            "selection": [
                {k: v for k, v in c.items() if k in ("seed", "chosen", "roc_auc", "margin", *REFIT_KEYS)}
                for c in picks
            ],
            # the features the last seed's model groups as one reason (|r| > model.redundancy_threshold)
            "redundant_groups": model.info.get("redundant_groups"),
        }
    return targets, churn_models, split


# ---------------------------------------------------------------------------------------------- tabular


def run_tabular(name: str, shared: Path, optuna_seconds: float = 0.0) -> dict:
    from churnml.tabular import TabularSpec, evaluate_table, prepare_table, read_table

    info = TABULAR[name]
    cfg = _config([])
    spec = TabularSpec(**info["spec"], as_of="2026-01-01")
    t0 = time.perf_counter()
    data = prepare_table(read_table(shared / info["folder"] / info["file"]), spec)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        result = evaluate_table(data, spec, cfg.model, cfg.evaluation)
    metrics = tabular_metrics(result, data, spec)
    tuning = None
    if optuna_seconds > 0:  # the same folds again with the nested search: the outer folds judge it
        t1 = time.perf_counter()
        tuned_cfg = dataclasses.replace(cfg.model, optuna_seconds=optuna_seconds)
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            tuned = evaluate_table(data, spec, tuned_cfg, cfg.evaluation)
        part = tuned.folds[tuned.folds["model"] == "lightgbm"].sort_values("fold")
        metrics["chosen_tuned"] = _test_metrics(tuned.evaluation)["lightgbm"] | {
            "roc_auc_per_fold": [float(v) for v in part["roc_auc"]]
        }
        tuning = {"budget_seconds": optuna_seconds, "seconds": round(time.perf_counter() - t1, 1)}
        tuning["folds"] = tuned.protocol.get("tuning", [])
        metrics["chosen_tuned"]["roc_auc_fold_mean"] = float(np.mean(part["roc_auc"]))
    target = {"label": f"{spec.label} == {spec.positive!r}", "models": metrics}
    target["verdict"] = verdict(metrics)
    if tuning is not None:
        mine, tuned_folds = metrics["chosen"]["roc_auc_per_fold"], metrics["chosen_tuned"]["roc_auc_per_fold"]
        tuning |= {
            "gain_mean_fold_roc_auc": metrics["chosen_tuned"]["roc_auc_fold_mean"]
            - metrics["chosen"]["roc_auc_fold_mean"],
            "gain_per_fold": [b - a for a, b in zip(mine, tuned_folds, strict=True)],
            "gain_log_loss": metrics["chosen_tuned"]["log_loss"] - metrics["chosen"]["log_loss"],
        }
        target["tuning"] = tuning
    if "selection" in result.protocol:
        target["selection"] = [
            {k: v for k, v in c.items() if k in ("fold", "chosen", "roc_auc", "margin")}
            for c in result.protocol["selection"]
        ]
    return {
        "dataset": name,
        "source": info["folder"],
        "protocol": {
            **result.protocol,
            "spec": spec.to_dict(),
            "out_of_fold": "metrics on the pooled out-of-fold predictions",
        },
        "targets": {"churn": target},
        "seconds": round(time.perf_counter() - t0, 1),
    }


def tabular_metrics(result, data, spec, scores: list | None = None) -> dict[str, dict]:
    """Per model the pooled out-of-fold metrics, per-fold ROC-AUC and its mean; the served model as ``chosen``;
    the yardsticks on the same folds (``scores``: as :func:`plain_folds`)."""
    metrics = _test_metrics(result.evaluation)
    for model, part in result.folds.groupby("model"):
        metrics[model]["roc_auc_per_fold"] = [float(v) for v in part.sort_values("fold")["roc_auc"]]
    metrics["chosen"] = metrics.pop("lightgbm")  # tabular mode's served model: the one it chose per fold
    metrics |= plain_folds(data, spec, scores)
    for m in metrics.values():
        if "roc_auc_per_fold" in m:
            m["roc_auc_fold_mean"] = float(np.mean(m["roc_auc_per_fold"]))
    return metrics


def plain_folds(data, spec, scores: list | None = None) -> dict[str, dict]:
    """The yardsticks on tabular mode's own folds (same StratifiedKFold, same seed): pooled and per fold.
    ``scores``, when given, receives every row (account_id, y) with each yardstick's out-of-fold score."""
    from sklearn.model_selection import StratifiedKFold

    kfold = StratifiedKFold(n_splits=spec.folds, shuffle=True, random_state=spec.seed)
    pooled = {k: np.zeros(len(data.y)) for k in PLAIN}
    per_fold: dict[str, list[float]] = {k: [] for k in PLAIN}
    for rest, test in kfold.split(np.zeros(len(data.y)), data.y):
        p = plain_scores(data.features.iloc[rest], data.y[rest], data.features.iloc[test], data.columns)
        for k in PLAIN:
            pooled[k][test] = p[k]
            per_fold[k].append(_metrics_of(data.y[test], p[k])["roc_auc"])
    if scores is not None:
        scores.append(
            pd.DataFrame({"account_id": data.features["account_id"].to_numpy(), "y": data.y, **pooled})
        )
    return {k: _metrics_of(data.y, pooled[k]) | {"roc_auc_per_fold": per_fold[k]} for k in PLAIN}


# ------------------------------------------------------------------------------------------- ravenstack


# Why RavenStack's comparisons are reported and not judged (its SOURCE.md, measured when the data was chosen)
NO_SIGNAL = (
    "SOURCE.md: the tables are generated nearly independently, no recoverable signal (LightGBM 0.512 on all-time "
    "aggregates); for plumbing, not to judge model quality"
)


def _beside_chosen(rows: pd.DataFrame, evaluation, keys: list[str]) -> pd.DataFrame:
    """The yardsticks' test rows (``keys``, y and their scores) with the served model's test score as ``chosen``
    (the evaluation's ``lightgbm`` rows), matched on ``keys`` as text and datetime."""
    served = evaluation.scores
    served = served[(served["model"] == "lightgbm") & (served["split"] == "test")]

    def keyed(frame: pd.DataFrame) -> pd.DataFrame:
        frame = frame.assign(account_id=frame["account_id"].astype(str).to_numpy())
        if "cutoff" in keys:
            frame["cutoff"] = pd.to_datetime(frame["cutoff"]).astype("datetime64[us]")
        return frame

    chosen = keyed(served[[*keys, "score"]].rename(columns={"score": "chosen"}))
    return keyed(rows).merge(chosen, on=keys, how="left", validate="one_to_one")


def run_ravenstack(shared: Path, work: Path, n_boot: int = 1000) -> dict:
    from churnml.contract.io import read_folder, read_table, write_folder
    from churnml.contract.validate import REASON, validate_tables
    from churnml.dataset.labels import build_labels
    from churnml.dataset.spine import build_spine, data_end, training_cutoffs
    from churnml.errors import ChurnmlError
    from churnml.features.engine import build_features
    from churnml.modeling.evaluation import evaluate_model
    from churnml.modeling.model import train_model
    from churnml.names import label_column
    from churnml.sources.ingest import ingest

    cfg = _config(["data=ravenstack"])
    t0 = time.perf_counter()
    notes = ingest("ravenstack", shared / "ravenstack_saas", work / "ingested")["notes"]
    result = validate_tables(read_folder(work / "ingested"), quarantine=cfg.data.quarantine)
    write_folder(result.tables, work / "validated")
    quarantined = {k: len(v) for k, v in result.quarantined.items() if len(v)}
    validated = work / "validated"
    spine = build_spine(read_table(validated, "subscriptions"), training_cutoffs(validated, cfg.spine))
    labels = build_labels(read_table(validated, "subscriptions"), spine, cfg.labels, data_end(validated))
    features = build_features(validated, spine, cfg.features)
    targets, split = {}, None
    for target in TARGETS:
        column = label_column(target, cfg.labels.horizon_days)
        known = labels[column].dropna()
        counts = {"labeled_rows": len(known), "positives": int(known.sum())}
        try:
            with warnings.catch_warnings():
                warnings.simplefilter("ignore")
                model = train_model(features, labels, target, cfg.model, cfg.split, cfg.labels.horizon_days)
                evaluation = evaluate_model(model, features, labels, cfg.evaluation)
        except ChurnmlError as exc:  # the pipeline's own one-line refusal is the result
            targets[target] = {"label": column, **counts, "refused": str(exc), "models": {}}
            continue
        split = model.split
        models = _test_metrics(evaluation)
        models["chosen"] = models.pop("lightgbm")  # the served model (LightGBM, logistic or blend)
        rows: list[pd.DataFrame] = []
        models |= plain_split(features, labels, column, split, rows)
        targets[target] = {
            "label": column,
            **counts,
            "models": models,
            "verdict": unjudged(
                verdict(models),
                _beside_chosen(rows[0], evaluation, ["account_id", "cutoff"]),
                NO_SIGNAL,
                n_boot,
            ),
            "selection": [{"seed": cfg.model.seed, **model.info["selection"]}],
        }
    # the account table's own churn_flag (SOURCE.md's label candidate) through tabular mode
    from churnml.tabular import TabularSpec, evaluate_table, prepare_table
    from churnml.tabular import read_table as read_flat

    spec = TabularSpec(
        label="churn_flag", id="account_id", drop=["account_name", "signup_date"], as_of="2025-01-01"
    )
    data = prepare_table(read_flat(shared / "ravenstack_saas" / "ravenstack_accounts.csv"), spec)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        flat = evaluate_table(data, spec, cfg.model, cfg.evaluation)
    flat_rows: list[pd.DataFrame] = []
    flat_metrics = tabular_metrics(flat, data, spec, flat_rows)
    targets["churn_flag_tabular"] = {
        "label": "accounts.churn_flag (tabular mode, stratified 5-fold on the account table)",
        "protocol": "5-fold CV (tabular mode, accounts table)",
        "models": flat_metrics,
        "verdict": unjudged(
            verdict(flat_metrics),
            _beside_chosen(flat_rows[0], flat.evaluation, ["account_id"]),
            NO_SIGNAL,
            n_boot,
        ),
        "selection": [{"fold": c["fold"], "chosen": c["chosen"]} for c in flat.protocol["selection"]],
    }
    return {
        "dataset": "ravenstack",
        "source": "ravenstack_saas",
        "protocol": {
            "kind": "time_split",
            "stages": "ingest -> validate (quarantine) -> spine -> labels -> build_features -> train -> evaluate",
            "config": "data=ravenstack (default spine, labels and split)",
            "horizon_days": cfg.labels.horizon_days,
            "split_text": split.describe() if split else None,
            "note": "run-through: SOURCE.md measured no recoverable signal (reference AUC 0.512 is 5-fold CV on "
            "all-time per-account aggregates, a different protocol)",
        },
        "validation_counts": result.counts(),
        "quarantined": quarantined,
        "quarantine_reasons": {
            k: sorted(v[REASON].astype(str).unique().tolist())
            for k, v in result.quarantined.items()
            if len(v)
        },
        "ingest_notes": {k: v for k, v in notes.items() if isinstance(v, int | str)},
        "targets": targets,
        "seconds": round(time.perf_counter() - t0, 1),
    }


# ---------------------------------------------------------------------------------------------- report


def _fmt(v, digits: int = 3) -> str:
    return "-" if v is None or (isinstance(v, float) and not math.isfinite(v)) else f"{v:.{digits}f}"


def render_table(results_dir: Path) -> str:
    """The quality table over every quality_*.json file."""
    rows = [
        "| dataset | target | model | ROC-AUC | 95% CI | PR-AUC | log loss | Brier | reference ROC-AUC (log loss) | protocol |",
        "|---|---|---|---|---|---|---|---|---|---|",
    ]
    head: dict[str, list[str]] = {}
    notes, protocols = [], []
    for path in sorted(results_dir.glob("quality_*.json")):
        data = json.loads(path.read_text())
        m = data["machine"]
        vers = ", ".join(f"{k} {v}" for k, v in m["versions"].items())
        load = data.get("load")
        ran = f"{data['dataset']} ({data['date'][:10]}"
        if load:
            ran += f", load {load['start'][0]:.1f} at start, {load['end'][0]:.1f} at end, 1-min average"
        head.setdefault(
            f"{m['cpu']}, {m['cores']} cores, {m['memory_gb']} GB; Python {m['python']}; {vers}", []
        ).append(ran + ")")
        p = data["protocol"]
        if p["kind"] == "stratified_kfold":
            protocol = f"{p['folds']}-fold CV"
            protocols.append(
                f"{data['dataset']}: stratified {p['folds']}-fold, seed {p['seed']}, metrics on the pooled out-of-fold predictions"
            )
        else:
            protocol = f"time split, {p['seeds']} seeds" if p.get("seeds") else "time split"
            text = f"{data['dataset']}: {p.get('split_text')}; {p.get('config', '')}"
            if p.get("seeds"):
                text += f"; horizon {p['horizon_days']} days; LightGBM mean of {p['seeds']} seeds, 95% CI from {p['bootstrap']}"
            protocols.append(text)
        ref_all = REFERENCE.get(data["dataset"], {})
        for target, t in data["targets"].items():
            if t.get("refused"):
                notes.append(
                    f"{data['dataset']} {target} ({t['label']}: {t['positives']} positive of {t['labeled_rows']:,} "
                    f'labeled rows): the pipeline refused to train, as designed: "{t["refused"]}"'
                )
            for model in MODELS:
                if model not in t["models"]:
                    continue
                r = t["models"][model]
                # SOURCE.md's numbers are of a LightGBM and a logistic regression: beside churnml's served model
                # and the baselines of the same kind
                ref = ref_all.get(target, {}).get({"chosen": "lightgbm"}.get(model, model), {})
                ref_text = (
                    "-"
                    if not ref
                    else _fmt(ref.get("roc_auc"))
                    + (f" ({_fmt(ref['log_loss'])})" if "log_loss" in ref else "")
                )
                ci = r.get("roc_auc_ci95")
                rows.append(
                    f"| {data['dataset']} | {target} | {model} | {_fmt(r['roc_auc'], 4)} | "
                    f"{'-' if not ci else f'{ci[0]:.3f}..{ci[1]:.3f}'} | {_fmt(r['pr_auc'])} | {_fmt(r['log_loss'])} | "
                    f"{_fmt(r['brier'])} | {ref_text} | {t.get('protocol', protocol)} |"
                )
        for target, t in data["targets"].items():
            v = t.get("verdict")
            if not v:
                continue
            chosen = t["models"]["chosen"]
            best = t["models"][v["better_yardstick"]]
            picks = [c["chosen"] for c in t.get("selection", [])]
            unit = "seeds" if any("seed" in c for c in t.get("selection", [])) else "folds"
            folds = (
                f"; per fold {', '.join(f'{a:.4f}' for a in chosen['roc_auc_per_fold'])} against "
                f"{', '.join(f'{b:.4f}' for b in best['roc_auc_per_fold'])}, at least as good in "
                f"{v['folds_at_least_as_good']} of {v['folds']}"
                if "folds" in v
                else ""
            )
            notes.append(
                f"{data['dataset']} {target}: churnml's chosen model"
                f"{' (' + ', '.join(f'{k} in {picks.count(k)}' for k in sorted(set(picks))) + f' of the {unit})' if picks else ''}"
                f" {'mean fold ' if v['compared_on'] == 'roc_auc_fold_mean' else ''}ROC-AUC "
                f"{chosen[v['compared_on']]:.4f} against the better yardstick, {v['better_yardstick']}, "
                f"{best[v['compared_on']]:.4f} (margin {v['margin_roc_auc']:+.4f}){folds}: "
                + (
                    f"{'holds' if v['holds'] else 'DOES NOT HOLD'}."
                    if v.get("judged", True)
                    else f"not judged ({v['why']}); the gap's 95% interval over resampled accounts "
                    f"[{v['gap_ci95'][0]:+.3f}, {v['gap_ci95'][1]:+.3f}] "
                    f"{'holds zero: chance' if v['gap_could_be_chance'] else 'excludes zero'}."
                )
            )
        for target, t in data["targets"].items():
            tu = t.get("tuning")
            if not tu:
                continue
            kept = sum(bool(f.get("kept")) for f in tu["folds"])
            inner = ", ".join(f"{f['gain']:+.4f}" for f in tu["folds"])
            notes.append(
                f"{data['dataset']} {target}: nested Optuna search, {tu['budget_seconds']:g} s per fit "
                f"(`model.optuna_seconds`; {', '.join(str(f['trials']) for f in tu['folds'])} trials per fold), "
                f"judged by the outer folds: mean fold ROC-AUC {t['models']['chosen_tuned']['roc_auc_fold_mean']:.4f} "
                f"against {t['models']['chosen']['roc_auc_fold_mean']:.4f} with the defaults "
                f"(gain {tu['gain_mean_fold_roc_auc']:+.4f}; per fold "
                f"{', '.join(f'{g:+.4f}' for g in tu['gain_per_fold'])}; log loss {tu['gain_log_loss']:+.4f}); "
                f"the inner judge kept the tuned parameters in {kept} of {len(tu['folds'])} folds (its own gains "
                f"{inner}); {tu['seconds']:.0f} s for the tuned run."
            )
        if "shap_vs_utility" in data:
            s = data["shap_vs_utility"]
            shown = ", ".join(
                d["feature"]
                + (f" ({d['behaviour']}, rank {d['rank_by_effective_weight']})" if d["behaviour"] else "")
                for d in s["top_drivers"][:6]
            )
            notes.append(
                f"{data['dataset']}: top churn drivers by mean |SHAP| (behaviour and its rank by the simulator's "
                f"effective utility weight): {shown}. Top-weighted behaviours (expected utility contribution): "
                f"{', '.join(f'{k} {v:+,.0f}' for k, v in s['top_weighted_behaviours'].items())}. "
                f"{s['usage_drivers_among_top_weighted']} of the {s['usage_drivers_in_top']} usage features in the top "
                f"{len(s['top_drivers'])} measure a top-6 behaviour; per behaviour (its features summed) the top three "
                f"are {', '.join(s['top3_behaviours'])} ({s['top3_behaviours_among_top_weighted']} in the top 6); "
                f"Spearman correlation of behaviour importance with |effective weight| "
                f"{s['spearman_vs_effective_weight']:.2f} (with the raw per-event weight {s['spearman_vs_raw_weight']:.2f})."
            )
        if data.get("quarantined") is not None:
            notes.append(
                f"{data['dataset']}: validation quarantined {data['quarantined'] or 'no rows'} "
                f"({'; '.join(f'{k}: {v}' for k, v in data.get('quarantine_reasons', {}).items())}); ran end to end."
            )
    return "\n".join(
        [
            *[f"Machine: {k}; ran {', '.join(v)}." for k, v in sorted(head.items())],
            "",
            *rows,
            "",
            "Protocols:",
            "",
            *[f"- {x}" for x in protocols],
            "",
            "Notes:",
            "",
            *[f"- {n}" for n in notes],
        ]
    )


def write_readme(results_dir: Path) -> None:
    """Replace (or add) the quality block of benchmarks/README.md."""
    readme = HERE / "README.md"
    text = readme.read_text()
    if BEGIN not in text:
        text += f"\n## Model quality (`make bench-quality`)\n\n{BEGIN}\n{END}\n"
    start, end = text.index(BEGIN) + len(BEGIN), text.index(END)
    readme.write_text(text[:start] + "\n" + render_table(results_dir) + "\n" + text[end:])


DATASETS = ("crm6_signal", "crm6_default", "telco", "bankchurners", "ravenstack", "simulator")


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--only", nargs="*", choices=DATASETS)
    parser.add_argument("--seeds", type=int, default=5, help="LightGBM seeds on crm6 (mean reported)")
    parser.add_argument(
        "--bootstrap", type=int, default=1000, help="bootstrap resamples of the crm6 test accounts"
    )
    parser.add_argument(
        "--optuna-seconds",
        type=float,
        default=0.0,
        help="tabular datasets: also train with the nested Optuna search (model.optuna_seconds per fit) on the "
        "same folds and report the gain over the defaults (row chosen_tuned)",
    )
    parser.add_argument("--results", type=Path, default=HERE / "results")
    parser.add_argument("--no-readme", action="store_true")
    args = parser.parse_args(argv)
    from churnml.sources.ingest import shared_data_dir

    shared = shared_data_dir()
    if not shared.is_dir():
        print(f"no third-party data at {shared} (set CHURNML_SHARED_DATA)", file=sys.stderr)
        return 1
    args.results.mkdir(parents=True, exist_ok=True)
    info = machine()
    for name in args.only or DATASETS:
        print(f"== {name}", flush=True)
        load_start = os.getloadavg()  # the machines are shared: the load says how far to trust the seconds
        with tempfile.TemporaryDirectory(prefix=f"churnml-quality-{name}-") as tmp:
            if name.startswith("crm6_"):
                out = run_crm6(name.removeprefix("crm6_"), shared, Path(tmp), args.seeds, args.bootstrap)
            elif name == "ravenstack":
                out = run_ravenstack(shared, Path(tmp), args.bootstrap)
            elif name == "simulator":
                out = run_simulator(Path(tmp), args.seeds, args.bootstrap)
            else:
                out = run_tabular(name, shared, args.optuna_seconds)
        out = {
            **out,
            "reference": REFERENCE.get(name, {}),
            "date": dt.datetime.now(dt.UTC).isoformat(timespec="seconds"),
            "machine": info,
            "load": {"start": list(load_start), "end": list(os.getloadavg())},
        }
        for target, t in out["targets"].items():
            if t.get("refused"):
                print(f"   {target}: refused: {t['refused']}")
            for model, r in t["models"].items():
                print(
                    f"   {target} {model}: ROC-AUC {_fmt(r['roc_auc'])} PR-AUC {_fmt(r['pr_auc'])} log loss {_fmt(r['log_loss'])}"
                )
        (args.results / f"quality_{name}.json").write_text(json.dumps(_clean(out), indent=2) + "\n")
    if not args.no_readme:
        write_readme(args.results)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
