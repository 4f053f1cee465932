"""The model registry on the small portfolio's built pipeline: a queued `dvc exp run` registers a candidate and
never moves the champion; a run the rule cannot promote keeps the champion, and every row and the report name
that one version. Each test works on its own copy of the session's built repository (tests/built.py).
"""

from __future__ import annotations

import time
from pathlib import Path

import pandas as pd
import pytest

from built import Built, champion, clone_built, guarded_env, latest, version_tags
from built import run as _run
from tables import SMALL_PIPELINE as SMALL

pytestmark = pytest.mark.slow


@pytest.fixture
def repo(built_pipeline: Built, tmp_path) -> tuple[Path, dict]:
    """A private copy of the session's built repository."""
    dest = clone_built(built_pipeline, tmp_path / "repo")
    return dest, guarded_env(tmp_path / "netguard.log")


def _wait_for_queue(dest: Path, env: dict, timeout_s: float = 900) -> str:
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        status = _run(["dvc", "queue", "status"], dest, env).stdout
        if "Queued" not in status and "Running" not in status:
            return status
        time.sleep(5)
    raise AssertionError(f"the queue did not finish:\n{status}")


def test_a_queued_experiment_registers_a_candidate_and_never_moves_thechampion(repo):
    """A queued experiment the rule would promote stays a candidate; `churnml promote` can take it; the
    workspace run on main then promotes by the rule."""
    from churnml.names import TARGETS

    dest, env = repo
    champions = {t: champion(dest, t) for t in TARGETS}
    before = latest(dest, "churn")
    # promotion_margin=-1: by the rule this run's model wins whatever its metric (a "better model"); only the
    # evaluation changes, so the experiment re-evaluates and registers without retraining (the next test retrains)
    overrides = [*SMALL, "evaluation.promotion_margin=-1"]
    sets = [arg for o in overrides for arg in ("-S", o)]
    _run(["dvc", "exp", "run", "--queue", "--name", "queued-candidate", *sets], dest, env)
    _run(["dvc", "queue", "start"], dest, env)
    status = _wait_for_queue(dest, env)
    assert "Success" in status and "Failed" not in status, status
    candidate = latest(dest, "churn")
    assert int(candidate) > int(before)
    tags = version_tags(dest, "churn", candidate)
    assert tags["promotion_decision"] == "candidate" and tags["rule_decision"] == "promoted", tags
    assert tags["dvc_experiment"] == "queued-candidate" and tags["params_hash"]
    assert {t: champion(dest, t) for t in TARGETS} == champions  # production untouched

    _run(
        ["churnml", "promote", "--target", "churn", "--version", candidate, "--reason", "reviewed"], dest, env
    )
    assert champion(dest, "churn") == candidate
    _run(["churnml", "rollback", "--target", "churn"], dest, env)
    assert champion(dest, "churn") == champions["churn"]

    # the workspace run on main: the same settings, and the rule moves the alias
    _run(["churnml", "params", "evaluation.promotion_margin=-1"], dest, env)
    _run(["dvc", "repro"], dest, env)
    promoted = latest(dest, "churn")
    assert champion(dest, "churn") == promoted and int(promoted) > int(candidate)
    tags = version_tags(dest, "churn", promoted)
    assert tags["promotion_decision"] == "promoted" and tags["dvc_experiment"] == "workspace"


def test_when_evaluate_keeps_the_champion_every_row_and_the_report_name_that_one_version(repo):
    from churnml.names import TARGETS

    dest, env = repo
    champions = {t: champion(dest, t) for t in TARGETS}
    # a different model that the rule cannot promote (it would need +0.5 ROC-AUC)
    _run(["churnml", "params", "model.lgbm.num_leaves=3", "evaluation.promotion_margin=0.5"], dest, env)
    _run(["dvc", "repro"], dest, env)
    for target in TARGETS:
        newest = latest(dest, target)
        assert newest != champions[target]
        assert version_tags(dest, target, newest)["promotion_decision"] == "kept_champion"
        assert champion(dest, target) == champions[target]
    scores = pd.read_parquet(dest / "data" / "scores.parquet")
    reasons = pd.read_parquet(dest / "data" / "reasons.parquet")
    explanations = pd.read_parquet(dest / "data" / "explanations.parquet")
    html = (dest / "reports" / "index.html").read_text(encoding="utf-8")
    for target in TARGETS:
        version = champions[target]
        assert set(scores[f"{target}_model_version"].astype(str)) == {version}
        # reasons under scoring.min_reason_points are not shown (#16), so a small portfolio may have none
        assert set(reasons.loc[reasons["target"] == target, "model_version"]) <= {version}
        assert set(explanations.loc[explanations["target"] == target, "model_version"]) == {version}
        assert f"{target} model {version}" in html
    assert set(reasons["account_id"]) <= set(scores["account_id"])
