"""MLflow tracking: store resolution, run logging, the registry, the champion rule, promote and rollback.

Every test gets its own SQLite store (a copy of an empty store initialised once per module, so the
schema migrations run once) through ``MLFLOW_TRACKING_URI``; the repository's mlflow.db is never touched.
"""

from __future__ import annotations

import hashlib
import json
import shutil

import numpy as np
import pytest
from test_modeling import HORIZON, fast_config, synthetic_tables

from churnml.config import Config, EvaluationConfig, SplitConfig, TrackingConfig
from churnml.errors import ChurnmlError
from churnml.modeling.evaluation import evaluate_model
from churnml.modeling.model import train_model
from churnml.modeling.registry import load_champion, promote, rollback
from churnml.modeling.runs import log_training_run
from churnml.modeling.tracking import (
    artifact_location,
    content_version,
    data_version,
    flatten_params,
    redact_url,
    tracking_uri,
)

NOISE = ["usage_noise_a_30d", "usage_noise_b_30d"]


@pytest.fixture(scope="module")
def empty_store(tmp_path_factory):
    """An initialised, empty SQLite store to copy per test."""
    import mlflow

    path = tmp_path_factory.mktemp("template") / "mlflow.db"
    mlflow.MlflowClient(tracking_uri=f"sqlite:///{path}").search_experiments()
    return path


@pytest.fixture
def store(tmp_path, empty_store, monkeypatch):
    db = tmp_path / "store" / "mlflow.db"
    db.parent.mkdir()
    shutil.copy(empty_store, db)
    monkeypatch.setenv("MLFLOW_TRACKING_URI", f"sqlite:///{db}")
    return tmp_path


@pytest.fixture(scope="module")
def trained():
    """(features, labels, good model + evaluation, weak model + evaluation) on the synthetic table."""
    features, labels, truth = synthetic_tables()
    good = train_model(features, labels, "churn", fast_config(), SplitConfig(), HORIZON)
    weak = train_model(features, labels, "churn", fast_config(), SplitConfig(), HORIZON, feature_list=NOISE)
    cfg = EvaluationConfig()
    return {
        "features": features,
        "good": (good, evaluate_model(good, features, labels, cfg, truth=truth["churn"])),
        "weak": (weak, evaluate_model(weak, features, labels, cfg, truth=truth["churn"])),
    }


def _log(trained, which: str, root, **kwargs):
    model, evaluation = trained[which]
    kwargs.setdefault("test_features", trained["features"])
    params = Config()  # the whole resolved configuration: more than one MLflow batch of params
    params.warehouse.url = "postgresql+psycopg://scott:tiger@db.example/scores"
    return log_training_run(model, evaluation, params, "md5-abc", root=root, **kwargs)


def _client():
    import mlflow

    return mlflow.MlflowClient()


def _champion_version(name: str = "churnml-churn") -> str:
    return str(_client().get_model_version_by_alias(name, "champion").version)


def _tags(version: str, name: str = "churnml-churn") -> dict[str, str]:
    return _client().get_model_version(name, version).tags


# -------------------------------------------------------------------------------------- store and params


def test_store_defaults_to_sqlite_and_artifacts_under_the_repository_root(tmp_path, monkeypatch):
    monkeypatch.delenv("MLFLOW_TRACKING_URI", raising=False)
    monkeypatch.setenv("DVC_ROOT", str(tmp_path))  # a temporary `dvc exp run` copy still logs to the parent
    root = tmp_path / "exp-copy"  # the experiment's own copy: the store still resolves to the parent
    assert tracking_uri(root, TrackingConfig()) == f"sqlite:///{tmp_path.resolve()}/mlflow.db"
    assert artifact_location(root, TrackingConfig()) == (tmp_path / "mlartifacts").resolve().as_uri()


def test_environment_store_wins_and_keeps_artifacts_beside_its_database(tmp_path, monkeypatch):
    monkeypatch.setenv("MLFLOW_TRACKING_URI", f"sqlite:///{tmp_path}/elsewhere/x.db")
    assert tracking_uri(tmp_path / "repo", TrackingConfig()) == f"sqlite:///{tmp_path}/elsewhere/x.db"
    assert (
        artifact_location(tmp_path / "repo", TrackingConfig())
        == (tmp_path / "elsewhere" / "mlartifacts").as_uri()
    )
    monkeypatch.setenv("MLFLOW_TRACKING_URI", "http://mlflow.internal:5000")
    assert artifact_location(tmp_path, TrackingConfig()) is None


def test_urls_lose_their_credentials():
    assert redact_url("postgresql+psycopg://scott:tiger@db:5432/x") == "postgresql+psycopg://db:5432/x"
    assert redact_url("https://token@host/path?q=1") == "https://host/path?q=1"
    assert redact_url("sqlite:////tmp/a.db") == "sqlite:////tmp/a.db"
    assert redact_url("plain text") == "plain text"


def test_params_are_flattened_with_urls_redacted():
    cfg = TrackingConfig()
    flat = flatten_params(
        {
            "tracking": cfg,
            "model": {"lgbm": {"num_leaves": 31}, "targets": ["churn"], "monotone_churn": {}},
            "url": "mysql://u:p@h/db",
            "query": "postgresql://u@h/db?password=S3CR3Tq",
        }
    )
    assert flat["tracking.experiment"] == "churnml" and flat["tracking.register"] == "True"
    assert flat["model.lgbm.num_leaves"] == "31"
    assert flat["model.targets"] == '["churn"]' and flat["model.monotone_churn"] == "{}"
    assert flat["url"] == "mysql://h/db"
    assert flat["query"] == "postgresql://h/db?password=***"


def test_data_version_reads_dvc_lock_else_hashes_the_file(tmp_path):
    features = tmp_path / "data" / "features.parquet"
    features.parent.mkdir()
    features.write_bytes(b"not really parquet")
    assert data_version(features, tmp_path) == hashlib.md5(b"not really parquet").hexdigest()
    (tmp_path / "dvc.lock").write_text(
        "schema: '2.0'\nstages:\n  build_features:\n    cmd: python x.py\n    outs:\n"
        "    - path: data/features.parquet\n      hash: md5\n      md5: 0123456789abcdef0123456789abcdef\n      size: 18\n"
    )
    assert data_version(features, tmp_path) == "0123456789abcdef0123456789abcdef"
    with pytest.raises(ChurnmlError, match="no such file"):
        data_version(tmp_path / "missing.parquet", tmp_path)


# ------------------------------------------------------------------------------------------ logging


@pytest.mark.slow
def test_logged_model_from_the_registry_predicts_the_same_probabilities(store, trained):
    import mlflow

    model, evaluation = trained["good"]
    run_id, version = _log(trained, "good", store)
    assert version == "1" and _champion_version() == "1"
    rows = trained["features"][trained["features"]["cutoff"].isin(model.split.test)]

    pyfunc = mlflow.pyfunc.load_model("models:/churnml-churn/1")
    np.testing.assert_array_equal(np.asarray(pyfunc.predict(rows[model.features])), model.predict_proba(rows))
    loaded, loaded_version = load_champion("churn", root=store)
    assert loaded_version == "1"
    np.testing.assert_array_equal(loaded.predict_proba(rows), model.predict_proba(rows))
    by_version, _ = load_champion("churn", "1", root=store)
    assert by_version.features == model.features

    run = _client().get_run(run_id)
    assert run.data.metrics["test.roc_auc"] == pytest.approx(evaluation.metric("roc_auc"))
    assert "baselines.logistic.test.roc_auc" in run.data.metrics
    assert "oracle.test.roc_auc" in run.data.metrics and "oracle_lift_ratio" in run.data.metrics
    assert "by_touch_tier.high_touch.roc_auc" in run.data.metrics
    assert run.data.params["model.seed"] == "42" and len(run.data.params) > 100
    assert run.data.params["warehouse.url"] == "postgresql+psycopg://db.example/scores"
    assert not any("tiger" in v for v in run.data.params.values())
    assert run.data.tags["data_version"] == "md5-abc"
    # the model selection: which candidate is served, each candidate's validation ROC-AUC, the margin
    selection = model.info["selection"]
    assert run.data.tags["chosen_model"] == selection["chosen"]
    assert run.data.metrics["selection.roc_auc.logistic"] == pytest.approx(selection["roc_auc"]["logistic"])
    assert run.data.metrics["selection.margin"] == pytest.approx(selection["margin"])
    # the leader's lead over the logistic regression and its standard error (the one-standard-error rule)
    gain = selection["leader_over_logistic"]
    for key in ("difference", "standard_error"):
        name = f"selection.lead_over_logistic.{key}"
        assert (name in run.data.metrics) == (gain[key] is not None)
        if gain[key] is not None:
            assert run.data.metrics[name] == pytest.approx(gain[key])
    # the served model's refit on train + validation: rows, trees before and after; no in-sample validation
    refit = model.info["refit"]
    assert run.data.tags["refit"] == "train+validation"
    assert run.data.metrics["refit.trees_refit"] == refit["trees_refit"] == model.booster.num_trees()
    assert run.data.metrics["refit.trees_before"] == refit["trees_before"] < refit["trees_refit"]
    assert run.data.metrics["refit.rows"] == refit["rows"]
    assert not any(k.startswith("validation.") for k in run.data.metrics)
    artifacts = {a.path for a in _client().list_artifacts(run_id, "plots")}
    assert {
        f"plots/{n}.{ext}" for n in ("roc", "pr", "calibration", "gains") for ext in ("csv", "png")
    } <= artifacts
    features_json = json.loads(mlflow.artifacts.load_text(f"runs:/{run_id}/features.json"))
    assert features_json["features"] == model.features
    # the store and the artifacts live where the environment says, not in the repository
    assert (store / "store" / "mlartifacts").is_dir()


def test_a_model_registered_before_the_layout_change_still_loads(store, trained, monkeypatch):
    """Versions registered before the subpackages carry a code file importing churnml.tracking."""
    import churnml.modeling.runs as runs

    legacy = '"""MLflow models-from-code entry point."""\n\nfrom churnml.tracking import set_pyfunc_model\n\nset_pyfunc_model()\n'
    monkeypatch.setattr(runs, "_CODE", legacy)
    model, _ = trained["good"]
    _log(trained, "good", store)
    rows = trained["features"][trained["features"]["cutoff"].isin(model.split.test)]
    loaded, version = load_champion("churn", root=store)
    assert version == "1"
    np.testing.assert_array_equal(loaded.predict_proba(rows), model.predict_proba(rows))


@pytest.mark.slow
def test_a_worse_model_does_not_take_the_champion_alias_and_a_better_one_does(store, trained):
    weak_auc = trained["weak"][1].metric("roc_auc")
    good_auc = trained["good"][1].metric("roc_auc")
    assert good_auc > weak_auc + 0.1

    _, v1 = _log(trained, "weak", store)
    assert _champion_version() == v1 == "1"
    assert _tags(v1)["promotion_decision"] == "promoted" and _tags(v1)["compared_with"] == "none"

    _, v2 = _log(trained, "good", store)
    assert _champion_version() == v2 == "2"
    tags = _tags(v2)
    assert tags["promotion_decision"] == "promoted" and tags["compared_with"] == "1"
    assert tags["compared_on"] == "new_test_rows" and tags["previous_champion"] == "1"
    assert float(tags["champion_metric_value"]) == pytest.approx(weak_auc)
    assert float(tags["new_metric_value"]) == pytest.approx(good_auc)

    _, v3 = _log(trained, "weak", store)
    assert _champion_version() == "2"
    tags = _tags(v3)
    assert tags["promotion_decision"] == "kept_champion" and tags["compared_with"] == "2"
    assert float(tags["champion_metric_value"]) == pytest.approx(good_auc)
    assert "previous_champion" not in tags


@pytest.mark.slow
def test_the_champions_logged_metric_is_used_when_it_cannot_be_rescored(store, trained):
    _log(trained, "good", store, test_features=None)
    _, v2 = _log(trained, "weak", store, test_features=None)
    assert _champion_version() == "1"
    assert _tags(v2)["compared_on"] == "champion_logged_metric"
    assert float(_tags(v2)["champion_metric_value"]) == pytest.approx(float(_tags("1")["test_roc_auc"]))


@pytest.mark.slow
def test_a_champion_that_cannot_read_the_new_features_gives_way_and_says_why(store, trained, caplog):
    """README's own-folder recipe after the demo: the new data's features lack columns the demo's champion was
    trained on, so it can be neither compared nor served (explain and score would refuse it); keeping it
    stopped the pipeline at explain. The new version takes the alias, recorded; rollback returns the old one."""
    import logging

    good, _ = trained["good"]
    _log(trained, "good", store)
    other_data = trained["features"].drop(columns=[good.features[0]])
    with caplog.at_level(logging.WARNING, logger="churnml.modeling.registry"):
        _, v2 = _log(trained, "weak", store, test_features=other_data)
    assert _champion_version() == v2 == "2"
    tags = _tags(v2)
    assert tags["promotion_decision"] == "promoted" and tags["previous_champion"] == "1"
    assert tags["compared_on"] == "champion_cannot_read_the_rows"
    assert good.features[0] in tags["champion_unusable"] and "cannot read" in tags["promotion_reason"]
    assert "champion v1 cannot read this run's features" in caplog.text
    # a champion that can read the rows is still compared on them: the weak model does not displace the good one,
    # also where the new rows hold a category value the champion never saw (read as missing, as scoring does)
    assert rollback("churn", root=store) == "1"
    column = next(iter(good.categories))
    new_value = trained["features"].assign(**{column: trained["features"][column].astype(str).mask(
        trained["features"].index % 7 == 0, "galactic")})  # fmt: skip
    _, v3 = _log(trained, "weak", store, test_features=new_value)
    assert _champion_version() == "1" and _tags(v3)["compared_on"] == "new_test_rows"


@pytest.mark.slow
def test_promote_and_rollback_move_the_alias_and_leave_tags(store, trained):
    _log(trained, "weak", store)
    _log(trained, "good", store)
    assert _champion_version() == "2"

    assert promote("churn", "1", "A/B test of the simple model", root=store) == "2"
    assert _champion_version() == "1"
    tags = _tags("1")
    assert (
        tags["promotion_decision"] == "manual" and tags["promotion_reason"] == "A/B test of the simple model"
    )
    assert tags["previous_champion"] == "2" and tags["promoted_by"] and tags["promoted_at"]

    assert rollback("churn", "A/B test over", root=store) == "2"
    assert _champion_version() == "2"
    assert _tags("1")["rolled_back_to"] == "2" and _tags("1")["rolled_back_reason"] == "A/B test over"
    assert _tags("2")["restored_from"] == "1"
    history = json.loads(_client().get_registered_model("churnml-churn").tags["champion_history"])
    assert [(h["version"], h["how"]) for h in history] == [
        ("1", "automatic"),
        ("2", "automatic"),
        ("1", "manual"),
        ("2", "rollback"),
    ]

    # v2 took the alias from v1 automatically: one more rollback returns to v1, then history runs out
    assert rollback("churn", root=store) == "1"
    with pytest.raises(ChurnmlError, match="no previous champion"):
        rollback("churn", root=store)
    with pytest.raises(ChurnmlError, match="no version 9"):
        promote("churn", "9", "typo", root=store)
    assert promote("churn", "2", root=store) == "1"
    assert _tags("2")["promotion_reason"] == "manual promotion (no reason given)"
    with pytest.raises(ChurnmlError, match="already the champion"):
        promote("churn", "2", "again", root=store)


@pytest.mark.slow
def test_an_experiment_registers_a_candidate_and_only_the_workspace_or_promote_moves_the_champion(
    store, trained, monkeypatch
):
    """A better model from a `dvc exp run` (DVC sets DVC_EXP_NAME) stays a candidate; the workspace run
    promotes by the rule; `churnml promote` gives the alias to an experiment's candidate."""
    _log(trained, "weak", store)
    assert _champion_version() == "1"

    monkeypatch.setenv("DVC_EXP_NAME", "bushy-pies")
    monkeypatch.setenv("DVC_EXP_BASELINE_REV", "a" * 40)
    run_id, v2 = _log(trained, "good", store)
    assert _champion_version() == "1"  # production untouched
    tags = _tags(v2)
    assert tags["promotion_decision"] == "candidate" and tags["rule_decision"] == "promoted"
    assert "bushy-pies" in tags["candidate_reason"] and tags["dvc_experiment"] == "bushy-pies"
    run = _client().get_run(run_id)
    assert run.info.run_name.startswith("churn@bushy-pies-")
    assert run.data.tags["dvc_experiment"] == "bushy-pies" and run.data.tags["dvc_baseline_rev"] == "a" * 40
    assert run.data.tags["params_hash"] == tags["params_hash"] and run.data.tags["data_version"] == "md5-abc"

    monkeypatch.delenv("DVC_EXP_NAME")
    monkeypatch.delenv("DVC_EXP_BASELINE_REV")
    run_id, v3 = _log(trained, "good", store)  # the workspace run: the rule decides
    assert _champion_version() == v3 == "3"
    assert _tags(v3)["promotion_decision"] == "promoted" and _tags(v3)["dvc_experiment"] == "workspace"
    assert _client().get_run(run_id).info.run_name.startswith("churn@workspace-")

    assert promote("churn", v2, "experiment bushy-pies reviewed", root=store) == "3"
    assert _champion_version() == v2


def test_a_branch_off_the_main_line_registers_candidates(tmp_path):
    import subprocess

    from churnml.modeling.tracking import run_context

    subprocess.run(["git", "init", "-q", "-b", "feature-x", str(tmp_path)], check=True)
    subprocess.run(
        ["git", "-C", str(tmp_path), "commit", "-q", "--allow-empty", "-m", "x"],
        check=True,
        env={
            "GIT_AUTHOR_NAME": "t",
            "GIT_AUTHOR_EMAIL": "t@x",
            "GIT_COMMITTER_NAME": "t",
            "GIT_COMMITTER_EMAIL": "t@x",
            "PATH": __import__("os").environ["PATH"],
        },
    )
    context = run_context(tmp_path, TrackingConfig())
    assert not context.may_promote and "feature-x" in context.why and context.experiment == "workspace"
    assert run_context(tmp_path, TrackingConfig(promote_branches=["feature-x"])).may_promote
    assert run_context(tmp_path / "nowhere", TrackingConfig()).may_promote  # no git: a scheduler's install


@pytest.mark.slow
def test_off_the_main_line_only_the_first_champion_is_set(store, trained):
    from churnml.modeling.tracking import RunContext

    feature_branch = RunContext("workspace", "feature-x", False, "branch 'feature-x' is not main")
    _, v1 = _log(trained, "weak", store, context=feature_branch)
    assert _champion_version() == v1  # nothing to move yet: the first champion
    _, v2 = _log(trained, "good", store, context=feature_branch)
    assert _champion_version() == v1 and _tags(v2)["promotion_decision"] == "candidate"
    experiment = RunContext("bushy-pies", "", False, "experiment")
    _client().delete_registered_model_alias("churnml-churn", "champion")
    _, v3 = _log(trained, "good", store, context=experiment)
    assert _tags(v3)["promotion_decision"] == "candidate"  # an experiment never sets one, even the first


def test_loading_a_champion_that_does_not_exist_is_a_clear_error(store):
    with pytest.raises(ChurnmlError, match="no version with alias 'champion'"):
        load_champion("churn", root=store)
    with pytest.raises(ChurnmlError, match="unknown target"):
        load_champion("upsell", root=store)


def test_reading_the_registry_where_there_is_no_store_says_so_and_creates_none(tmp_path, monkeypatch):
    """Outside the repository (a scheduler's working directory), promote, rollback and loading a champion name
    the store they looked for, instead of creating an empty one there and saying the model has no version."""
    monkeypatch.delenv("MLFLOW_TRACKING_URI", raising=False)
    monkeypatch.delenv("DVC_ROOT", raising=False)
    for call in (
        lambda: load_champion("churn", root=tmp_path),
        lambda: promote("churn", "1", "reviewed", root=tmp_path),
        lambda: rollback("churn", root=tmp_path),
    ):
        with pytest.raises(ChurnmlError, match=rf"no MLflow store at {tmp_path}/mlflow.db: run the pipeline"):
            call()
    assert not (tmp_path / "mlflow.db").exists()


@pytest.mark.slow
def test_registration_can_be_turned_off(store, trained):
    run_id, version = _log(trained, "good", store, tracking=TrackingConfig(register=False))
    assert version is None and run_id
    assert _client().search_registered_models() == []


def test_content_version_reads_the_bytes_where_data_version_reads_the_lock(tmp_path):
    """A stage naming its own output must read the bytes: until it ends, dvc.lock names the previous output."""
    model = tmp_path / "models" / "m"
    model.mkdir(parents=True)
    (model / "model.txt").write_text("trees v2")
    (tmp_path / "dvc.lock").write_text(
        "schema: '2.0'\nstages:\n  s:\n    outs:\n    - path: models/m\n      md5: previous.dir\n"
    )
    assert data_version(model, tmp_path) == "previous.dir"
    now = content_version(model)
    assert now.endswith(".dir") and now != "previous.dir"
    (model / "model.txt").write_text("trees v3")
    assert content_version(model) != now
