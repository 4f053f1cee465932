"""Configuration: every option of every group composes and validates; typos and stale params fail early;
a default is written once (in the dataclasses); DVC's own composition writes the same params.yaml."""

from __future__ import annotations

import dataclasses
import os
import re
import shutil
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest
import yaml
from omegaconf import OmegaConf

from churnml.config import (
    CONF_DIR,
    PARAMS_FILE,
    Config,
    StaleParamsError,
    check_overrides,
    compose,
    load_config,
    recorded_overrides,
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
    raw = compose(ROOT / CONF_DIR, [f"{group}={option}"])
    cfg = validate_config(raw)
    assert isinstance(cfg, Config)
    # every key of the schema is in the composition, so `dvc exp run -S section.key=...` can set any of them
    assert raw == OmegaConf.to_container(OmegaConf.structured(cfg))


def _leaves(node: Any, prefix: str = "") -> dict[str, Any]:
    if isinstance(node, dict) and node:
        out: dict[str, Any] = {}
        for k, v in node.items():
            out.update(_leaves(v, f"{prefix}.{k}" if prefix else str(k)))
        return out
    return {prefix: node}


def _option_values(group: str, option: str) -> dict[str, Any]:
    """The values an option file writes itself (not its defaults list), keyed by their path in the config."""
    raw = yaml.safe_load((ROOT / CONF_DIR / group / f"{option}.yaml").read_text()) or {}
    raw.pop("defaults", None)
    text = (ROOT / CONF_DIR / group / f"{option}.yaml").read_text()
    return _leaves(raw if "@package _global_" in text else {group: raw})


@pytest.mark.parametrize(("group", "option"), list(_options()))
def test_no_option_repeats_a_dataclass_default(group, option):
    defaults = _leaves(OmegaConf.to_container(OmegaConf.structured(Config)))
    repeated = {k: v for k, v in _option_values(group, option).items() if k in defaults and defaults[k] == v}
    assert not repeated, f"conf/{group}/{option}.yaml repeats the dataclass defaults {repeated}"


def test_every_default_lives_in_the_dataclasses():
    for section in dataclasses.fields(Config):
        assert section.default_factory is not dataclasses.MISSING, section.name
        for f in dataclasses.fields(section.default_factory()):
            has_default = f.default is not dataclasses.MISSING or f.default_factory is not dataclasses.MISSING
            assert has_default, f"{section.name}.{f.name}"


def test_derived_values_follow_the_label_horizon():
    cfg = validate_config(compose(ROOT / CONF_DIR, ["labels.horizon_days=60"]))
    assert cfg.split.purge_days == cfg.simulator.label_horizon_days == 60
    crm6 = validate_config(compose(ROOT / CONF_DIR, ["data=fightchurn_crm6_signal"]))
    assert crm6.split.purge_days == crm6.labels.horizon_days == 31
    assert validate_config(compose(ROOT / CONF_DIR, ["split.purge_days=120"])).split.purge_days == 120


def test_group_options_inherit_within_their_group():
    spark = validate_config(compose(ROOT / CONF_DIR, ["features=spark"])).features
    assert dataclasses.replace(spark, engine="duckdb") == validate_config(compose(ROOT / CONF_DIR)).features
    pg = validate_config(compose(ROOT / CONF_DIR, ["warehouse=postgres"])).warehouse
    assert dataclasses.replace(pg, schema="") == validate_config(compose(ROOT / CONF_DIR)).warehouse


_DVC_COMPOSE = """
import os, sys
from dvc.config import Config
from dvc.utils.hydra import compose_and_dump
root, out, *overrides = sys.argv[1:]
hydra = Config(dvc_dir=os.path.join(root, ".dvc"))["hydra"]  # read as dvc/repo/experiments/queue/base.py does
plugins = os.path.join(root, hydra.get("plugins_path", ""))
compose_and_dump(out, os.path.join(root, "conf"), None, "config", plugins, overrides)
"""


@pytest.mark.parametrize("overrides", [[], ["labels.horizon_days=60", "model.lgbm.num_leaves=63"]])
def test_dvc_composes_the_same_params_as_churnml_params(repo, overrides):
    """DVC's `dvc exp run` composition (plain Hydra, the schema found through .dvc/config's plugins_path), in
    a fresh interpreter that cannot import churnml but from the repository's src/."""
    shutil.copytree(ROOT / ".dvc", repo / ".dvc", ignore=shutil.ignore_patterns("tmp", "cache"))
    shutil.copytree(ROOT / "src", repo / "src", ignore=shutil.ignore_patterns("__pycache__"))
    code = f"import sys; sys.path = [p for p in sys.path if not p.endswith('src')]\n{_DVC_COMPOSE}"
    env = {k: v for k, v in os.environ.items() if k != "PYTHONPATH"}
    dvc_params = repo / "dvc_params.yaml"
    cmd = [sys.executable, "-c", code, str(repo), str(dvc_params), *overrides]
    done = subprocess.run(cmd, env=env, cwd=repo, capture_output=True, text=True)
    assert done.returncode == 0, done.stderr[-2000:]
    ours = write_params(repo, overrides).read_text()
    if overrides:  # churnml params records them in a first comment line; DVC's file is the rest
        first, ours = ours.split("\n", 1)
        assert first == "# churnml params " + " ".join(overrides)
    assert dvc_params.read_text() == ours
    assert "${" not in ours  # resolved: stages read values, not interpolations


def test_every_dataclass_section_has_a_group():
    assert set(GROUPS) == set(Config.__dataclass_fields__)


def test_committed_params_are_fresh(tmp_path):
    """The committed params.yaml against the committed conf/ (HEAD, not the working files: in the middle of an
    experiment or with a conf/local overlay the working params.yaml differs on purpose)."""

    def git(*args: str) -> subprocess.CompletedProcess:
        return subprocess.run(["git", *args], cwd=ROOT, capture_output=True, text=True)

    if git("rev-parse", "--verify", "HEAD").returncode != 0:
        pytest.skip("not a git checkout with commits")
    text = git("show", "HEAD:params.yaml").stdout
    archive = subprocess.run(["git", "archive", "HEAD", CONF_DIR], cwd=ROOT, capture_output=True, check=True)
    subprocess.run(["tar", "-x", "-C", str(tmp_path)], input=archive.stdout, check=True)
    assert recorded_overrides(text) == [], "the committed params.yaml was composed with overrides"
    committed = yaml.safe_load(text)
    assert committed == compose(tmp_path / CONF_DIR), "params.yaml is stale: run `make params` and commit it"


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
    path.write_text(path.read_text() + "lgbm:\n  num_leaves: 63\n")
    with pytest.raises(StaleParamsError, match=r"stale .* model\.lgbm\.num_leaves.*make params"):
        load_config(repo)
    write_params(repo)
    assert load_config(repo).model.lgbm.num_leaves == 63


def test_experiment_overrides_are_accepted_inside_dvc_exp_run(repo, monkeypatch):
    path = write_params(repo, ["model.lgbm.num_leaves=15"])
    path.write_text(path.read_text().split("\n", 1)[1])  # as DVC writes it: no record of the -S overrides
    monkeypatch.delenv("DVC_EXP_NAME", raising=False)
    with pytest.raises(StaleParamsError):
        load_config(repo)
    monkeypatch.setenv("DVC_EXP_NAME", "exp-1")
    assert load_config(repo).model.lgbm.num_leaves == 15


def test_churnml_params_overrides_are_what_a_plain_repro_runs_with(repo, monkeypatch):
    """The README's own-folder step: `churnml params data=folder data.input_dir=DIR`, then `dvc repro`."""
    monkeypatch.delenv("DVC_EXP_NAME", raising=False)
    write_params(repo, ["data=folder", "data.input_dir=/tmp/my tables"])
    cfg = load_config(repo)  # fresh against conf/ plus the recorded overrides
    assert (cfg.data.source, cfg.data.input_dir, cfg.data.generate) == ("folder", "/tmp/my tables", [])
    path = repo / CONF_DIR / "model" / "lightgbm.yaml"
    path.write_text(path.read_text() + "lgbm:\n  num_leaves: 63\n")
    with pytest.raises(StaleParamsError, match=r"plus its overrides .*churnml params data=folder"):
        load_config(repo)


@pytest.mark.parametrize(
    ("override", "suggestion"),
    [
        ("model.lgbm.num_leafs=63", "did you mean 'model.lgbm.num_leaves'?"),
        ("+nonexistent.key=1", "unknown key 'nonexistent.key'"),
        ("labels.horizon=60", "did you mean 'labels.horizon_days'?"),
        ("data=foldr", "did you mean data=folder?"),
    ],
)
def test_a_mistyped_override_is_refused_with_the_closest_key_and_nothing_written(repo, override, suggestion):
    before = (repo / "params.yaml").read_text()
    with pytest.raises(ChurnmlError, match=re.escape(suggestion)):
        write_params(repo, [override])
    assert (repo / "params.yaml").read_text() == before
    # keys below a free-form mapping of the schema are fine
    check_overrides(repo / CONF_DIR, ["+scoring.tiers.thresholds.severe=0.95", "~scoring.as_of"])


def test_a_value_of_the_wrong_type_says_why_in_one_line_and_nothing_written(repo):
    before = (repo / "params.yaml").read_text()
    with pytest.raises(ChurnmlError) as got:
        write_params(repo, ["model.lgbm.num_leaves=abc"])
    assert str(got.value).endswith(
        "override model.lgbm.num_leaves=abc: Value 'abc' of type 'str' could not be converted to Integer"
    )
    assert "\n" not in str(got.value) and (repo / "params.yaml").read_text() == before


def test_an_unknown_key_in_params_yaml_names_the_closest_key(repo):
    with pytest.raises(ChurnmlError, match=r"num_leafs.*did you mean 'model.lgbm.num_leaves'"):
        validate_config({"model": {"lgbm": {"num_leafs": 63}}})
    with pytest.raises(ChurnmlError, match="data.generate"):
        validate_config({"data": {"source": "folder"}})  # the simulator would still run


@pytest.mark.parametrize(
    ("override", "message"),
    [
        ("simulator.accounts=-5", "'simulator.accounts': -5 must be >= 1"),
        ("model.calibration=platt", "'model.calibration': 'platt' must be one of sigmoid, isotonic, none"),
        ("scoring.as_of=2025-13-01", "'scoring.as_of': '2025-13-01' must be a date (YYYY-MM-DD) or empty"),
        ("simulator.start_date=''", "'simulator.start_date': '' must be a date (YYYY-MM-DD)"),
        ("features.windows_days=[7,0]", "'features.windows_days': 0 (in [7, 0]) must be >= 1"),
        ("model.targets=[churn,upsell]", "'model.targets': 'upsell' (in ['churn', 'upsell']) must be one of"),
        ("survival.holdout_share=1", "'survival.holdout_share': 1.0 must be in (0, 1)"),
        ("model.lgbm.learning_rate=0", "'model.lgbm.learning_rate': 0.0 must be > 0"),
        ("spine.frequency=weekly", "'spine.frequency': 'weekly' must be a pandas frequency alias"),
        ("scoring.tiers.top_shares.critical=1.5", "'scoring.tiers.top_shares': 1.5 (in {"),
    ],
)
def test_a_value_no_stage_can_use_is_refused_in_one_line_naming_the_key_and_nothing_written(
    repo, override, message
):
    """The values each field may hold are declared on the field (churnml.config.param) and checked wherever
    params are validated: `churnml params`, every stage's load, and the check_params gate that runs first."""
    before = (repo / "params.yaml").read_text()
    with pytest.raises(ChurnmlError) as got:
        write_params(repo, [override])
    assert f"invalid configuration at {message}" in str(got.value) and "\n" not in str(got.value)
    assert (repo / "params.yaml").read_text() == before


def test_every_default_and_every_group_option_is_within_its_bounds():
    """A bound that refused a shipped default would stop every run; the options are checked by
    test_every_option_composes_and_validates, the dataclass defaults here."""
    from churnml.config import check_bounds

    check_bounds(Config())
    bounded = [f.name for f in dataclasses.fields(Config().simulator) if "bounds" in f.metadata]
    assert {"accounts", "months", "start_date"} <= set(bounded)


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


@pytest.mark.parametrize(
    "url",
    [
        "postgresql+psycopg://scorer@db.internal/crm?password=S3CR3Tq",
        "postgresql://scorer:S3CR3Tq@db.internal/crm",
    ],
)
def test_a_password_in_a_config_url_is_refused_before_it_reaches_params_or_a_stage(repo, monkeypatch, url):
    """params.yaml is tracked by git and hashed into dvc.lock by DVC; every stage logs its config to MLflow."""
    before = (repo / PARAMS_FILE).read_text()
    local = repo / CONF_DIR / "local"
    local.mkdir(exist_ok=True)
    (local / "local.yaml").write_text(f"# @package _global_\nwarehouse:\n  url: {url}\n")
    with pytest.raises(ChurnmlError) as info:
        write_params(repo)
    message = str(info.value)
    assert "warehouse.url" in message and "CHURNML_WAREHOUSE_URL" in message and "\n" not in message
    assert "S3CR3Tq" not in message
    assert (repo / PARAMS_FILE).read_text() == before  # nothing written

    # `dvc exp run` composes params.yaml itself: every stage then refuses it before doing anything
    params = yaml.safe_load(before)
    params["warehouse"]["url"] = url
    (repo / PARAMS_FILE).write_text(yaml.safe_dump(params))
    monkeypatch.setenv("DVC_EXP_NAME", "exp-1")
    with pytest.raises(
        ChurnmlError, match=r"warehouse\.url in params\.yaml holds a password.*CHURNML_WAREHOUSE_URL"
    ):
        load_config(repo)
