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
    assert out["targets"]["churn"]["models"]["lightgbm"]["roc_auc"] > 0.714
    assert out["targets"]["expansion"]["models"]["lightgbm"]["roc_auc"] > 0.891
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
        assert 0 <= targets[target]["models"]["lightgbm"]["roc_auc"] <= 1
