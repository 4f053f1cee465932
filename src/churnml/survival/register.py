"""The survival model in the MLflow registry: logged, registered as ``churnml-survival`` and promoted by the
same rule as the 90-day models (:func:`churnml.modeling.registry.apply_promotion_rule`).

What is registered is the final model (every cutoff, censored at the data end): the one the as-of curves and
``churnml forecast`` use. Its metrics are those of the same procedure out of time (the model fitted with
everything censored at the test start, :mod:`churnml.survival.pipeline`): the metrics document of
``metrics/survival.json``, logged as it is.

Comparing with the champion. The rule prefers the champion's value on the new run's test spells. A final
model has learned every outcome up to its data end, so it may only be measured on test spells that start on
or after that day (``censored_at`` <= the new test start): otherwise it would be graded on outcomes it was
fitted to, and keep its alias by leakage. When it cannot be, the champion's logged metric is used, as for
the 90-day models whose champion cannot be re-scored (the tag ``compared_on`` says which).
"""

from __future__ import annotations

from collections.abc import Mapping
from pathlib import Path
from typing import Any

import pandas as pd

from churnml.config import Config
from churnml.errors import ChurnmlError
from churnml.modeling.model import unseen_as_missing
from churnml.modeling.registry import load_champion
from churnml.modeling.runs import log_survival_run
from churnml.modeling.tracking import RunContext
from churnml.survival.evaluation import HIGHER_IS_BETTER, survival_metrics
from churnml.survival.model import TARGET, curve_frame
from churnml.survival.pipeline import SurvivalResult
from churnml.survival.rows import month_design


def promotion_metric(cfg: Config) -> tuple[str, bool]:
    """The survival model's promotion metric and its direction, checked (one line naming the valid ones)."""
    metric = cfg.survival.promotion_metric
    if metric not in HIGHER_IS_BETTER:
        raise ChurnmlError(
            f"survival.promotion_metric: {metric!r} is not one of {', '.join(HIGHER_IS_BETTER)}"
        )
    return metric, HIGHER_IS_BETTER[metric]


def champion_on_test(model: Any, result: SurvivalResult, horizon: int, metric: str) -> float:
    """A registered model's ``metric`` on the result's test spells, refusing a model that saw their outcomes.

    Raises:
        FeatureSchemaError: when the model cannot read the test rows' features (a model of other data: the
            promotion rule then lets the new version take the alias); checked first.
        ChurnmlError: when the model was censored after the test start (or says nothing of it), or when the
            result kept no test.
    """
    if result.test is None or result.test_spells is None or result.test_start is None:
        raise ChurnmlError("survival: the result kept no test spells")
    test, _ = unseen_as_missing(result.test, {TARGET: model})  # as the forecast serves a new category value
    model.prepare(month_design(test.head(1), 1, horizon))  # its features: missing columns, named
    censored = model.info.get("censored_at")
    if not censored or pd.Timestamp(censored) > pd.Timestamp(result.test_start):
        raise ChurnmlError(
            f"the champion learned outcomes up to {censored or 'an unknown day'}, after this run's test start "
            f"{pd.Timestamp(result.test_start).date()}"
        )
    cols = [f"s_{t}" for t in range(1, result.follow + 1)]
    surv = curve_frame(model, test, horizon)[cols].to_numpy()
    return float(survival_metrics(result.test_spells, surv, result.follow)[metric])


def register_survival(
    result: SurvivalResult,
    document: Mapping[str, Any],
    tables: Mapping[str, pd.DataFrame],
    cfg: Config,
    data_version: str,
    *,
    root: Path | None = None,
    context: RunContext | None = None,
) -> tuple[str, str | None]:
    """Log the survival stage's final model and metrics to MLflow, register it and apply the champion rule.

    Args:
        result: :func:`churnml.survival.pipeline.run_survival`'s result.
        document: the metrics document the stage writes to ``metrics/survival.json`` (logged unchanged).
        tables: the stage's plot tables by name (logged as CSV).
        cfg: the configuration (``survival.promotion_metric``/``promotion_margin``, ``tracking``).
        data_version: the features' version.
        root: the repository root.
        context: where the run happens (default: from DVC's environment and the branch).

    Returns:
        (MLflow run id, registered version or None when registration is off).
    """
    metric, higher = promotion_metric(cfg)
    horizon = int(cfg.survival.horizon_months)

    def rescore(version: str) -> float:
        champion, _ = load_champion(TARGET, version, root=root, cfg=cfg.tracking)
        return champion_on_test(champion, result, horizon, metric)

    example = None
    if result.test is not None and len(result.test):
        example = month_design(result.test.head(5), 1, horizon)[list(result.model.features)]
    return log_survival_run(
        result.model,
        document,
        tables,
        cfg,
        data_version,
        metric=metric,
        higher_is_better=higher,
        margin=float(cfg.survival.promotion_margin),
        rescore=rescore,
        input_example=example,
        tracking=cfg.tracking,
        root=root,
        context=context,
    )


__all__ = ["champion_on_test", "promotion_metric", "register_survival"]
