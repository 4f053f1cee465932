"""Stage explain: SHAP drivers and plain-word reasons per account at the as-of date, and the global view.

On simulator data it also checks the reasons against the truth: the share of test-period churners whose top
three risk-raising reasons name their dominant churn cause, overall and per cause, with the churners it counts
(metrics/explain.json). Context (days to renewal, tenure, plan...) is never a reason, so never a hit.
"""

import json
import logging

import pandas as pd

from churnml.config import load_config, repo_root
from churnml.contract.io import read_parquet, read_table, write_parquet
from churnml.dataset.spine import build_spine, data_end, to_cutoffs
from churnml.explain.contributions import explain_accounts, write_explanations, write_global_view
from churnml.explain.reasons import cause_hit_summary, cause_hits, reasons_for, with_reasons
from churnml.features.engine import build_features
from churnml.modeling.model import TrainedModel
from churnml.stage import run_stage

log = logging.getLogger("explain")
TOP_FEATURES = 10  # per account and target, in the explanations export


def main() -> None:
    cfg = load_config()
    root = repo_root()
    validated = root / cfg.paths.validated
    as_of = to_cutoffs([cfg.scoring.as_of])[0] if cfg.scoring.as_of else data_end(validated)
    spine = build_spine(read_table(validated, "subscriptions"), [as_of])
    features = build_features(validated, spine, cfg.features)
    explanations, reasons = [], []
    for target in cfg.model.targets:
        model = TrainedModel.load(root / cfg.paths.models / target)
        full = explain_accounts(model, features)
        reasons.append(reasons_for(full, features, top=cfg.scoring.top_reasons))
        explanations.append(with_reasons(full[full["rank"] <= TOP_FEATURES], features))
        write_global_view(
            model,
            features.sample(min(len(features), 2000), random_state=0),
            root / cfg.paths.plots / "explain",
        )
    write_explanations(pd.concat(explanations, ignore_index=True), root / cfg.paths.explanations)
    write_parquet(pd.concat(reasons, ignore_index=True), root / cfg.paths.reasons)
    write_parquet(features, root / cfg.paths.scoring_features)
    summary = {"as_of": str(as_of.date()), "accounts": len(features)}
    if cfg.data.source == "simulator":
        summary.update(_cause_check(cfg, root))
    (root / cfg.paths.metrics / "explain.json").write_text(json.dumps(summary, indent=2) + "\n")
    log.info("%s", summary)


def _cause_check(cfg, root) -> dict:
    """Reasons for the test-period rows of the churn model vs the simulator's recorded causes."""
    from churnml.sources.simulate import CAUSE_FAMILIES

    model = TrainedModel.load(root / cfg.paths.models / "churn")
    features = read_parquet(root / cfg.paths.features)
    test = features[features["cutoff"].isin(model.split.test)]
    reasons = reasons_for(explain_accounts(model, test), test, top=3)
    truth = read_parquet(root / cfg.paths.truth / "accounts.parquet")
    churners = truth[truth["churn_date"].notna() & truth["dominant_cause"].ne("random")]
    hits = cause_hit_summary(
        cause_hits(reasons, truth, CAUSE_FAMILIES, top=3, horizon_days=cfg.labels.horizon_days)
    )
    return {
        "cause_hit_rate_top3": hits["hit_rate"],
        "churners_with_a_cause": int(len(churners)),
        "churners_scored": hits["churners"],
        "cause_hit_rate_top3_by_cause": hits["by_cause"],
    }


if __name__ == "__main__":
    run_stage(main)
