"""The quality benchmark's claims on the real third-party files (opt-in: ``-m shared_data``, minutes, not CI)."""

from __future__ import annotations

import sys
from pathlib import Path

import pytest

from churnml.sources.ingest import shared_data_dir

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "benchmarks"))

import quality  # noqa: E402

pytestmark = pytest.mark.shared_data


@pytest.fixture(scope="module")
def shared() -> Path:
    folder = shared_data_dir()
    if not (folder / "fightchurn_crm6_signal").is_dir():
        pytest.skip(f"no third-party data at {folder} (set CHURNML_SHARED_DATA)")
    return folder


def test_crm6_signal_beats_the_reference_on_its_protocol(shared, tmp_path):
    out = quality.run_crm6("signal", shared, tmp_path, seeds=1, n_boot=0)
    split = out["protocol"]["split"]
    assert split["test"][0] == "2023-06-01" and split["test"][-1] == "2023-11-01"
    assert max(split["train"] + split["validation"]) < "2023-05-01"
    for target, reference in (("churn", 0.714), ("expansion", 0.891)):
        t = out["targets"][target]
        assert t["models"]["chosen"]["roc_auc"] > reference
        # the yardsticks ran on the same test rows, and the served model is at least as good as the better
        assert t["models"]["plain_lgbm"]["n"] == t["models"]["chosen"]["n"]
        assert t["verdict"]["holds"], t["verdict"]
    shap = out["shap_vs_utility"]
    # the first behaviour among the SHAP drivers is one the simulator weights most
    assert shap["first_usage_driver"] in shap["top_weighted_behaviours"]


def test_ravenstack_runs_end_to_end_with_its_rows_quarantined(shared, tmp_path):
    out = quality.run_ravenstack(shared, tmp_path)
    assert out["quarantined"] == {"subscriptions": 13}
    targets = out["targets"]
    # contract-derived churn has a handful of positives: the pipeline's one-line refusal, not a crash
    assert targets["churn"]["positives"] < 10 and "both outcomes are needed" in targets["churn"]["refused"]
    for target in ("expansion", "churn_flag_tabular"):
        models = targets[target]["models"]
        assert 0 <= models["chosen"]["roc_auc"] <= 1
        # the yardsticks ran on the same rows
        assert models["plain_lgbm"]["n"] == models["plain_logistic"]["n"] == models["chosen"]["n"]


def test_tabular_yardsticks_share_the_folds_and_the_chosen_model_is_at_least_as_good(shared):
    out = quality.run_tabular("telco", shared)
    t = out["targets"]["churn"]
    assert {"chosen", "plain_lgbm", "plain_logistic"} <= set(t["models"])
    assert all(
        len(t["models"][m]["roc_auc_per_fold"]) == 5 for m in ("chosen", "plain_lgbm", "plain_logistic")
    )
    assert t["verdict"]["holds"] and t["verdict"]["folds_at_least_as_good"] >= 4, t["verdict"]
