"""The whole DVC pipeline on a small portfolio, in a temporary copy of the repository.

Runs `dvc repro` with a network guard loaded into every Python process (tests/netguard), then checks that a
plain `dvc repro` after an edit under conf/ refuses to run on stale parameters, and that `dvc exp run -S`
composes conf/ with the override and logs to the parent repository's MLflow store.
"""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest

from churnml.checkout import copy_checkout, isolated_env

ROOT = Path(__file__).resolve().parents[1]
BIN = Path(sys.executable).parent
SMALL = [
    "simulator.accounts=300",
    "simulator.months=18",
    "model.lgbm.n_estimators=80",
    "evaluation.csm_capacity_k=20",
]

pytestmark = pytest.mark.slow


def _run(cmd: list[str], cwd: Path, env: dict, check: bool = True) -> subprocess.CompletedProcess:
    proc = subprocess.run(cmd, cwd=cwd, env=env, capture_output=True, text=True, timeout=900)
    if check and proc.returncode != 0:
        raise AssertionError(
            f"{' '.join(cmd)} failed ({proc.returncode}):\n{proc.stdout[-3000:]}\n{proc.stderr[-3000:]}"
        )
    return proc


@pytest.fixture(scope="module")
def repo(tmp_path_factory) -> tuple[Path, dict]:
    """A fresh copy of the tracked files, as a git repository, with a small portfolio composed."""
    dest = tmp_path_factory.mktemp("repo")
    env = isolated_env(
        BIN,
        PYTHONPATH=str(ROOT / "tests" / "netguard"),
        CHURNML_NETGUARD_LOG=str(dest.parent / "netguard.log"),
    )
    # a small portfolio through the git-ignored local overlay, as a user would shrink it
    copy_checkout(ROOT, dest, env, overrides=SMALL)
    return dest, env


def test_repro_runs_every_stage_without_network(repo):
    dest, env = repo
    netlog = Path(env["CHURNML_NETGUARD_LOG"])
    _run(["dvc", "repro"], dest, env)
    assert (dest / "data" / "validated" / "usage.parquet").is_file()
    for out in [
        "data/spine.parquet",
        "data/labels.parquet",
        "data/features.parquet",
        "metrics/churn.json",
        "metrics/expansion.json",
        "data/explanations.parquet",
        "reports/index.html",
    ]:
        assert (dest / out).is_file(), out
    assert (dest / "mlflow.db").is_file()
    assert not netlog.exists() or netlog.read_text() == "", f"non-loopback network use:\n{netlog.read_text()}"
    # monitor depends on the score stage's watermark, not on every call: nothing is left to run
    status = _run(["dvc", "status"], dest, env)
    assert "Data and pipelines are up to date" in status.stdout, status.stdout
    watermark = json.loads((dest / "data" / "score_watermark.json").read_text())
    assert watermark["as_of_count"] == 1 and watermark["scored"][0]["scores_rows"] > 0


def test_score_after_repro_writes_one_row_per_active_account(repo):
    """A batch job after `dvc repro`: `churnml score --as-of <last day of data>`, twice, into the DuckDB warehouse."""
    import duckdb
    import pandas as pd

    from churnml.contract.io import read_folder
    from churnml.dataset.spine import build_spine, data_range

    dest, env = repo
    if not (dest / "data" / "warehouse.duckdb").is_file():
        _run(["dvc", "repro"], dest, env)
    validated = dest / "data" / "validated"
    _, end = data_range(validated)
    last_day = end - pd.Timedelta(days=1)
    active = build_spine(read_folder(validated)["subscriptions"], [last_day])
    assert len(active) > 50
    for _ in range(2):  # the nightly job rerun for the same date replaces its rows
        proc = _run(["churnml", "score", "--as-of", str(last_day.date())], dest, env)
        assert f"scored {len(active):,} accounts as of {last_day.date()}" in proc.stderr
    with duckdb.connect(str(dest / "data" / "warehouse.duckdb"), read_only=True) as con:
        rows = con.execute(
            "select account_id, churn_probability, top_reasons from churn_scores where as_of = ?",
            [last_day.date()],
        ).df()
        runs = con.execute("select status from score_runs where as_of = ?", [last_day.date()]).fetchall()
        default_rows = con.execute(
            "select count(*) from churn_scores where as_of = ?", [end.date()]
        ).fetchone()[0]
    assert sorted(rows["account_id"]) == sorted(active["account_id"])  # one row each, no duplicate
    assert rows["churn_probability"].between(0, 1).all() and rows["top_reasons"].str.startswith("[").all()
    assert [r[0] for r in runs] == ["succeeded", "succeeded"]
    assert default_rows > 0  # the score stage's own as-of (the day after the data) is still there


def test_plain_repro_refuses_stale_params(repo):
    dest, env = repo
    conf = dest / "conf" / "labels" / "default.yaml"
    original = conf.read_text()
    conf.write_text(original + "grace_days: 20\n")  # the default is the dataclass's 30
    try:
        proc = _run(["dvc", "repro"], dest, env, check=False)
        assert proc.returncode != 0
        assert "stale" in proc.stderr and "make params" in proc.stderr
        assert "Traceback" not in proc.stderr
    finally:
        conf.write_text(original)


def _mlflow_runs(dest: Path) -> int:
    import sqlite3

    with sqlite3.connect(dest / "mlflow.db") as con:
        return con.execute("select count(*) from runs").fetchone()[0]


def test_exp_run_with_override_logs_to_the_parent_store(repo):
    dest, env = repo
    runs_before = _mlflow_runs(dest)
    # conf/ holds the full-size defaults: repeat the small overrides so only the model stages re-run
    sets = [arg for o in [*SMALL, "model.lgbm.num_leaves=7"] for arg in ("-S", o)]
    proc = _run(["dvc", "exp", "run", "--temp", *sets], dest, env, check=False)
    assert proc.returncode == 0, proc.stderr[-3000:]
    assert _mlflow_runs(dest) > runs_before, "the temporary experiment did not log to the repository's store"
    shown = _run(["dvc", "exp", "show", "--json"], dest, env).stdout
    assert '"num_leaves": 7' in shown.replace(" ", "").replace('"num_leaves":7', '"num_leaves": 7')
    diff = _run(["dvc", "metrics", "diff", "--all"], dest, env)
    assert diff.returncode == 0
