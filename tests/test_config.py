"""Configuration: every option of every group composes and validates; typos and stale params fail early."""

from __future__ import annotations

import shutil
from pathlib import Path

import pytest
import yaml

from churnml.config import (
    CONF_DIR,
    Config,
    StaleParamsError,
    compose,
    load_config,
    repo_root,
    validate_config,
    write_params,
)
from churnml.errors import ChurnmlError

ROOT = Path(__file__).resolve().parents[1]
GROUPS = sorted(p.name for p in (ROOT / CONF_DIR).iterdir() if p.is_dir() and p.name != "local")


def _options():
    for group in GROUPS:
        for option in sorted((ROOT / CONF_DIR / group).glob("*.yaml")):
            yield group, option.stem


@pytest.mark.parametrize(("group", "option"), list(_options()))
def test_every_option_composes_and_validates(group, option):
    cfg = validate_config(compose(ROOT / CONF_DIR, [f"{group}={option}"]))
    assert isinstance(cfg, Config)


def test_every_dataclass_section_has_a_group():
    assert set(GROUPS) == set(Config.__dataclass_fields__)


def test_committed_params_are_fresh():
    committed = yaml.safe_load((ROOT / "params.yaml").read_text())
    assert committed == compose(ROOT / CONF_DIR), "params.yaml is stale: run `make params` and commit it"


@pytest.fixture()
def repo(tmp_path) -> Path:
    shutil.copytree(ROOT / CONF_DIR, tmp_path / CONF_DIR)
    (tmp_path / "dvc.yaml").write_text("stages: {}\n")
    write_params(tmp_path)
    return tmp_path


def test_typo_fails_at_load_naming_the_key(repo):
    with pytest.raises(ChurnmlError, match="lgbm.num_leavs"):
        validate_config(compose(repo / CONF_DIR, ["+model.lgbm.num_leavs=3"]))


def test_wrong_type_fails_at_load_naming_the_key(repo):
    with pytest.raises(ChurnmlError, match="model.lgbm.num_leaves"):
        validate_config(compose(repo / CONF_DIR, ["model.lgbm.num_leaves=many"]))


def test_edit_under_conf_makes_a_plain_run_refuse(repo, monkeypatch):
    monkeypatch.delenv("DVC_EXP_NAME", raising=False)
    assert load_config(repo).model.lgbm.num_leaves == 31
    path = repo / CONF_DIR / "model" / "lightgbm.yaml"
    path.write_text(path.read_text().replace("num_leaves: 31", "num_leaves: 63"))
    with pytest.raises(StaleParamsError, match=r"stale .* model\.lgbm\.num_leaves.*make params"):
        load_config(repo)
    write_params(repo)
    assert load_config(repo).model.lgbm.num_leaves == 63


def test_experiment_overrides_are_accepted_inside_dvc_exp_run(repo, monkeypatch):
    write_params(repo, ["model.lgbm.num_leaves=15"])
    monkeypatch.delenv("DVC_EXP_NAME", raising=False)
    with pytest.raises(StaleParamsError):
        load_config(repo)
    monkeypatch.setenv("DVC_EXP_NAME", "exp-1")
    assert load_config(repo).model.lgbm.num_leaves == 15


def test_missing_params_says_what_to_run(repo):
    (repo / "params.yaml").unlink()
    with pytest.raises(StaleParamsError, match="make params"):
        load_config(repo)


def test_only_the_tracking_store_follows_dvc_root(tmp_path, monkeypatch):
    from churnml.config import TrackingConfig
    from churnml.modeling.tracking import tracking_uri

    monkeypatch.delenv("MLFLOW_TRACKING_URI", raising=False)
    monkeypatch.setenv("DVC_ROOT", str(tmp_path))  # a temporary experiment's parent repository
    assert repo_root(ROOT / "src" / "churnml") == ROOT  # its data and models stay in its own copy
    assert tracking_uri(ROOT, TrackingConfig()) == f"sqlite:///{tmp_path.resolve()}/mlflow.db"
    monkeypatch.delenv("DVC_ROOT")
    assert tracking_uri(ROOT, TrackingConfig()) == f"sqlite:///{ROOT}/mlflow.db"
