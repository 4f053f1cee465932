"""Stage explain: SHAP drivers and plain-word reasons per account at the as-of date, and the global view.

The models explained are the ones scoring uses: each target's ``scoring.model_alias`` (the champion) from the
MLflow registry, not the freshly trained ``models/<target>`` (which stays a candidate whenever evaluate keeps
the champion); every explanation and reason row names its ``model_version``. On simulator data it also checks
the reasons against the truth (:mod:`churnml.explain.cause`), written with the as-of and the account count
to ``paths.explain_metrics``.
"""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import pandas as pd

from churnml.config import Config
from churnml.contract.io import read_output, read_parquet, read_table, write_csv, write_output
from churnml.dataset.spine import as_of_day, build_spine, data_end
from churnml.explain.cause import cause_check
from churnml.explain.contributions import explain_accounts, write_global_view
from churnml.explain.drivers import redundant_groups_of
from churnml.explain.export import TOP_FEATURES
from churnml.explain.reasons import reasons_for, with_reasons
from churnml.features.engine import build_features
from churnml.modeling.registry import load_champion

GLOBAL_SAMPLE = 2000  # accounts behind each model's global view


def explain(cfg: Config, root: Path) -> str:
    """Explain every account active at the as-of day with each target's model; write tables, plots, metrics."""
    paths = cfg.paths
    validated = root / paths.validated
    as_of = as_of_day(cfg.scoring.as_of, data_end(validated))
    features = build_features(
        validated, build_spine(read_table(validated, "subscriptions"), [as_of]), cfg.features
    )
    explanations, reasons, models, versions = [], [], {}, {}
    # the global views go to a fresh sibling folder that replaces the committed one only once all is written
    # (DVC leaves the folder in place: persist, so a failed run keeps the committed plots)
    plots = root / paths.explain_plots
    fresh = plots.with_name(plots.name + ".new")
    shutil.rmtree(fresh, ignore_errors=True)
    for target in cfg.model.targets:
        model, version = load_champion(target, cfg.scoring.model_alias, root=root, cfg=cfg.tracking)
        models[target], versions[target] = model, version
        full = explain_accounts(model, features)
        reasons.append(
            reasons_for(
                full,
                features,
                top=cfg.scoring.top_reasons,
                min_points=cfg.scoring.min_reason_points,
                groups=redundant_groups_of(model),
            ).assign(model_version=version)
        )
        top = with_reasons(full[full["rank"] <= TOP_FEATURES], features)
        explanations.append(top.assign(model_version=version))
        sample = features.sample(min(len(features), GLOBAL_SAMPLE), random_state=0)
        write_global_view(model, sample, fresh)
    table = pd.concat(explanations, ignore_index=True)
    write_output(table, root / paths.explanations, "explanations")
    write_csv(table, root / paths.explanations_csv)
    write_output(pd.concat(reasons, ignore_index=True), root / paths.reasons, "reasons")
    write_output(features, root / paths.scoring_features, "scoring_features")
    summary = {"as_of": str(as_of.date()), "accounts": len(features)}
    if cfg.data.source == "simulator":
        from churnml.sources.simulate import CAUSE_FAMILIES

        summary.update(
            cause_check(
                models["churn"],
                read_output(root / paths.features, "features"),
                read_parquet(root / paths.truth / "accounts.parquet"),
                CAUSE_FAMILIES,
                cfg.labels.horizon_days,
            )
        )
    shutil.rmtree(plots, ignore_errors=True)
    fresh.rename(plots)
    metrics = root / paths.explain_metrics
    metrics.parent.mkdir(parents=True, exist_ok=True)
    metrics.write_text(json.dumps(summary, indent=2) + "\n")
    # the versions stay out of the git-tracked metrics: they count registrations, not the data
    return f"{summary} with model versions {versions}"
