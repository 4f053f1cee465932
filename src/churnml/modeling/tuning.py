"""Nested Optuna search of the LightGBM parameters, with a budget in trials and seconds.

Nested, so that the gain it reports is honest: the search never sees the rows that judge it.

- **The search** (Optuna's seeded TPE sampler; the defaults are its first trial) fits LightGBM on part of the
  *training* rows and scores each trial by ROC-AUC on the rest of them (an inner holdout of
  :data:`INNER_FRACTION`, whole accounts on one side where an account has several rows). It stops at
  ``model.optuna_trials`` trials or ``model.optuna_seconds`` seconds, whichever comes first (0 = no bound of
  that kind; both 0 = no search).
- **The judge**: the defaults and the search's best are then each fitted as usual (early stopping on the
  held-out rows of the normal protocol: the validation period, or in tabular mode the first inner fold's held-out
  part) and compared by ROC-AUC on those rows, which the search never saw. The tuned parameters are kept only
  when they win; ``model.info["tuning"]`` records both ROC-AUCs, the gain, the trials and the seconds spent.
- The honest estimate of the whole procedure is one level further out: the test period, or the outer folds
  of ``make bench-quality --optuna-seconds S`` (which trains with and without the search on the same folds).
"""

from __future__ import annotations

import math
import time
from collections.abc import Callable
from typing import Any

import numpy as np
import pandas as pd

from churnml.config import ModelConfig

INNER_FRACTION = 0.25  # of the training rows: the search's own held-out part


def enabled(cfg: ModelConfig) -> bool:
    """Whether the configuration asks for a search (a budget of trials or seconds)."""
    return cfg.optuna_trials > 0 or cfg.optuna_seconds > 0


def inner_holdout(rows: pd.DataFrame, y: np.ndarray, seed: int) -> tuple[np.ndarray, np.ndarray]:
    """Positions of the search's training and held-out rows: stratified, whole accounts on one side."""
    from sklearn.model_selection import StratifiedGroupKFold

    groups = rows["account_id"].astype("str").to_numpy() if "account_id" in rows else np.arange(len(rows))
    splits = max(2, round(1 / INNER_FRACTION))
    kfold = StratifiedGroupKFold(n_splits=splits, shuffle=True, random_state=seed)
    fit_part, held_out = next(kfold.split(np.zeros(len(y)), y, groups))
    return fit_part, held_out


def search(
    params: dict[str, Any], cfg: ModelConfig, score: Callable[[dict[str, Any]], float]
) -> tuple[dict[str, Any], list[dict[str, Any]], float]:
    """Optuna TPE search maximising ``score(params)`` (ROC-AUC on the search's held-out rows).

    Returns:
        The best parameters (``params`` with the searched ones replaced), every trial (number, ROC-AUC,
        parameters) and the seconds spent.
    """
    import optuna

    optuna.logging.set_verbosity(optuna.logging.WARNING)
    study = optuna.create_study(direction="maximize", sampler=optuna.samplers.TPESampler(seed=cfg.seed))
    # the defaults first: the search starts from where an untuned model is
    study.enqueue_trial({k: params[k] for k in SPACE})

    def objective(trial: Any) -> float:
        value = score({**params, **{k: suggest(trial) for k, suggest in SPACE.items()}})
        return value if math.isfinite(value) else 0.0

    start = time.perf_counter()
    study.optimize(
        objective,
        n_trials=cfg.optuna_trials or None,
        timeout=cfg.optuna_seconds or None,
    )
    seconds = time.perf_counter() - start
    trials = [
        {"number": t.number, "roc_auc": t.value, **t.params} for t in study.trials if t.value is not None
    ]
    return {**params, **study.best_params}, trials, seconds


# The parameters that matter on small tables (leaves, leaf size, regularisation) and large ones (learning rate,
# sampling); the number of trees is not searched: early stopping sets it in every fit.
SPACE: dict[str, Callable[[Any], Any]] = {
    "learning_rate": lambda t: t.suggest_float("learning_rate", 0.01, 0.2, log=True),
    "num_leaves": lambda t: t.suggest_int("num_leaves", 4, 128, log=True),
    "min_data_in_leaf": lambda t: t.suggest_int("min_data_in_leaf", 5, 300, log=True),
    "feature_fraction": lambda t: t.suggest_float("feature_fraction", 0.3, 1.0),
    "bagging_fraction": lambda t: t.suggest_float("bagging_fraction", 0.5, 1.0),
    "lambda_l2": lambda t: t.suggest_float("lambda_l2", 1e-3, 30.0, log=True),
}


def judged(
    trials: list[dict[str, Any]],
    seconds: float,
    cfg: ModelConfig,
    default_auc: float,
    tuned_auc: float,
    tuned: dict[str, Any],
    search_rows: tuple[int, int],
    judge_rows: str,
) -> dict[str, Any]:
    """The record of a search and its verdict (``model.info["tuning"]``): kept only when it beat the defaults."""
    gain = tuned_auc - default_auc
    return {
        "budget": {"trials": cfg.optuna_trials, "seconds": cfg.optuna_seconds},
        "trials": len(trials),
        "seconds": round(seconds, 1),
        "search_rows": {"fit": search_rows[0], "held_out": search_rows[1]},
        "inner_default_roc_auc": trials[0]["roc_auc"] if trials else math.nan,
        "inner_best_roc_auc": max((t["roc_auc"] for t in trials), default=math.nan),
        "judge_rows": judge_rows,
        "default_roc_auc": default_auc,
        "tuned_roc_auc": tuned_auc,
        "gain": gain,
        "kept": bool(gain > 0),
        "params": {k: tuned[k] for k in SPACE},
        "history": trials,
    }
