"""The whole DVC pipeline on a small portfolio, in a temporary copy of the repository.

The session's one `dvc repro` of the small portfolio (tests/built.py: run with a network guard loaded into
every Python process, tests/netguard) is checked here, then this file's private copy of it is scored, re-run
with a plain `dvc repro` after an edit under conf/ (refused: stale parameters), run as `dvc exp run -S`
(composes conf/ with the override and logs to the parent repository's MLflow store), and so on. The registry
(test_pipeline_registry.py) and own-folder (test_pipeline_folder.py) checks are in files of their own, so
that xdist runs them beside these.
"""

from __future__ import annotations

import json
from pathlib import Path

import pandas as pd
import pytest

from built import Built, clone_built, guarded_env, mlflow_run_count
from built import run as _run
from tables import SMALL_PIPELINE as SMALL

pytestmark = pytest.mark.slow


@pytest.fixture(scope="module")
def repo(built_pipeline: Built, tmp_path_factory) -> tuple[Path, dict]:
    """This file's private copy of the session's built repository (the tests below change it)."""
    dest = clone_built(built_pipeline, tmp_path_factory.mktemp("pipeline") / "repo")
    return dest, guarded_env(dest.parent / "netguard.log")


def test_repro_runs_every_stage_without_network(built_pipeline, repo):
    dest, env = repo  # a byte copy of the built repository (its dvc status is checked below)
    netlog = built_pipeline.netguard_log
    assert (dest / "data" / "validated" / "usage.parquet").is_file()
    for out in [
        "data/spine.parquet",
        "data/labels.parquet",
        "data/features.parquet",
        "metrics/churn.json",
        "metrics/expansion.json",
        "data/explanations.parquet",
        "reports/index.html",
        "metrics/survival.json",
        "data/account_survival.parquet",
    ]:
        assert (dest / out).is_file(), out
    assert (dest / "mlflow.db").is_file()
    # the survival stage on the small portfolio: evaluated against both baselines and the oracle, and one
    # curve per account scored
    survival = json.loads((dest / "metrics" / "survival.json").read_text())
    assert set(survival["models"]) == {"lightgbm", "kaplan_meier", "cox", "oracle"}
    assert survival["follow_up_months"] >= 1 and survival["test_events"] > 0
    # the survival registry record names the model the stage wrote (not dvc.lock's previous one: the committed
    # lock of a fresh clone names another run's model, and the record must not depend on it)
    from churnml.modeling.tracking import content_version

    record = json.loads((dest / "models" / "survival_registry.json").read_text())
    assert record["model"] == content_version(dest / "models" / "survival")
    curves = pd.read_parquet(dest / "data" / "account_survival.parquet")
    scores = pd.read_parquet(dest / "data" / "scores.parquet")
    assert set(curves["account_id"]) == set(scores["account_id"])
    assert not netlog.exists() or netlog.read_text() == "", f"non-loopback network use:\n{netlog.read_text()}"
    # the copy is a faithful one: the same stages are up to date in it
    # monitor depends on the score stage's watermark, not on every call: nothing is left to run but the
    # check_params gate, which is always_changed (cheap: it only checks params.yaml; its stamp never changes)
    status = _run(["dvc", "status"], dest, env)
    lines = [line.strip() for line in status.stdout.splitlines() if line.strip()]
    stages = [line.rstrip(":") for line in lines if line.endswith(":") and not line.startswith("changed")]
    assert stages == ["check_params"] and "always changed" in status.stdout, status.stdout
    assert not [line for line in lines if "changed" in line and "always changed" not in line], status.stdout
    watermark = json.loads((dest / "data" / "score_watermark.json").read_text())
    assert watermark["as_of_count"] == 1 and watermark["scored"][0]["scores_rows"] > 0
    # the score stage's committed checks agree with its own outputs (tests/test_calls.py reads the default's)
    checks = json.loads((dest / "metrics" / "score.json").read_text())
    scores = pd.read_parquet(dest / "data" / "scores.parquet")
    calls = pd.read_parquet(dest / "data" / "call_list.parquet")
    assert checks["accounts"] == len(scores) == watermark["scored"][0]["scores_rows"]
    assert {t: n for t, n in checks["tiers"].items() if n} == scores["risk_tier"].value_counts().to_dict()
    assert checks["calls"]["by_csm"] == calls["csm_id"].value_counts().to_dict()
    assert checks["calls"]["total"] == len(calls) > 0
    assert [r["account_id"] for r in checks["team_top"]] == list(calls["account_id"].head(10))


def test_score_after_repro_writes_one_row_per_active_account(repo):
    """A batch job after `dvc repro`: `churnml score --as-of <last day of data>`, twice, into the DuckDB warehouse."""
    import duckdb

    from churnml.contract.io import read_folder
    from churnml.dataset.spine import build_spine, data_range

    dest, env = repo
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


def test_exp_run_with_override_logs_to_the_parent_store(repo):
    dest, env = repo
    runs_before = mlflow_run_count(dest)
    # conf/ holds the full-size defaults: repeat the small overrides, and change a key only evaluate reads, so
    # the experiment re-evaluates, logs and registers without retraining (the registry file retrains)
    sets = [arg for o in [*SMALL, "evaluation.promotion_margin=0.003"] for arg in ("-S", o)]
    proc = _run(["dvc", "exp", "run", "--temp", *sets], dest, env, check=False)
    assert proc.returncode == 0, proc.stderr[-3000:]
    assert mlflow_run_count(dest) > runs_before, (
        "the temporary experiment did not log to the repository's store"
    )
    shown = _run(["dvc", "exp", "show", "--json"], dest, env).stdout
    assert '"promotion_margin":0.003' in shown.replace(" ", "")
    diff = _run(["dvc", "metrics", "diff", "--all"], dest, env)
    assert diff.returncode == 0


def test_second_scoring_date_drives_the_call_list_changes_and_screenshots(repo, tmp_path):
    """Two as-of dates in the warehouse: the report compares them, the call list follows the README's rule."""
    import duckdb
    import numpy as np

    from churnml.config import CallListConfig
    from churnml.contract.io import read_document
    from churnml.dataset.spine import data_range
    from churnml.scoring.calls import priority

    from _env import require_chromium
    from browser import with_page

    dest, env = repo
    _, end = data_range(dest / "data" / "validated")
    week_before = end - pd.Timedelta(days=7)
    _run(["churnml", "score", "--as-of", str(week_before.date())], dest, env)
    _run(["churnml", "report"], dest, env)
    with duckdb.connect(str(dest / "data" / "warehouse.duckdb"), read_only=True) as con:
        calls = con.execute(
            "select * from weekly_call_list where as_of = ? order by team_rank", [end.date()]
        ).df()
        dates = [
            r[0] for r in con.execute("select distinct as_of from weekly_call_list order by 1").fetchall()
        ]
        tiers = con.execute(
            "select risk_tier, count(*) from churn_scores where as_of = ? group by 1", [end.date()]
        ).df()
    assert week_before.date() in dates and end.date() in dates
    definition = read_document(dest / "data" / "tiers.json", "tiers")
    assert definition["source"] in ("validation", "portfolio")
    # the riskiest tier is never empty (a small model's tied scores may leave a middle tier empty; on the
    # default data every tier holds accounts, see the README)
    top = max(definition["cutoffs"], key=definition["cutoffs"].get)
    assert top in set(tiers["risk_tier"]) and len(calls) > 0
    cfg = CallListConfig()
    sizes = calls.groupby("csm_id").size()
    assert (sizes.drop("pooled", errors="ignore") <= cfg.capacity_per_csm).all()
    assert sizes.get("pooled", 0) <= cfg.pooled_capacity
    # the order is the rule's: priority = ARR at risk x urgency, non-increasing down the team list
    rescue = (calls["play"] == cfg.renewal_rescue_play).to_numpy()
    urgency = (calls["priority"] / calls["arr_at_risk"]).round(6)
    assert set(urgency) <= {1.0, 1.5, 2.0, 3.0} and ((urgency >= 2) == rescue).all()
    rose = (urgency == 1.5) | (urgency == 3.0)
    assert np.allclose(calls["priority"], priority(calls["arr_at_risk"].to_numpy(), rescue, rose.to_numpy()))
    assert (np.diff(calls["priority"].to_numpy()) <= 1e-9).all()
    assert (calls.loc[rescue, "days_to_renewal"] <= cfg.renewal_soon_days).all()
    html = (dest / "reports" / "index.html").read_text(encoding="utf-8")
    assert "What changed since the last scoring" in html and "No earlier scoring" not in html
    shots = tmp_path / "shots"
    shots.mkdir()

    async def work(page):
        await page.screenshot(shots / "pipeline-calls.png", "#calls")
        await page.screenshot(shots / "pipeline-changes.png", "#changes")

    with_page(require_chromium(), (dest / "reports" / "index.html").as_uri(), tmp_path / "profile", work)
    assert all(p.stat().st_size > 10_000 for p in shots.iterdir())


@pytest.mark.postgres
def test_a_secret_in_the_warehouse_query_string_appears_nowhere(repo):
    """The password of `?password=` reaches PostgreSQL and nothing else: not the MLflow store, params.yaml,
    dvc.lock, the logs or the warehouse. In a config file it is refused, pointing at the environment."""
    import uuid

    import sqlalchemy as sa

    from _env import require_postgres

    dest, env = repo
    plain = require_postgres()
    secret = "Pw" + uuid.uuid4().hex[:12]
    url = f"{plain}{'&' if '?' in plain else '?'}password={secret}"
    schema = f"churnml_test_{uuid.uuid4().hex[:12]}"
    local = dest / "conf" / "local" / "local.yaml"
    overlay = local.read_text()
    logs = []
    try:
        local.write_text(overlay + f"warehouse:\n  url: {url}\n")
        refused = _run(["churnml", "params"], dest, env, check=False)
        logs.append(refused.stdout + refused.stderr)
        assert refused.returncode == 1 and "CHURNML_WAREHOUSE_URL" in refused.stderr
        local.write_text(overlay + f"warehouse:\n  schema: {schema}\n")
        _run(["churnml", "params"], dest, env)
        run_env = dict(env, CHURNML_WAREHOUSE_URL=url)
        scored = _run(["churnml", "score", "--accept-drift"], dest, run_env)
        logs.append(scored.stdout + scored.stderr)
        failed = _run(["churnml", "score", "--as-of", "1999-01-01"], dest, run_env, check=False)
        logs.append(failed.stdout + failed.stderr)
        assert failed.returncode == 1
        engine = sa.create_engine(plain)
        with engine.connect() as conn:
            dumped = "\n".join(
                str(row)
                for table in ("score_runs", "churn_scores", "churn_explanations")
                for row in conn.execute(sa.text(f'SELECT * FROM "{schema}"."{table}"'))
            )
        engine.dispose()
        assert "succeeded" in dumped
        places = {"warehouse": dumped, "logs": "\n".join(logs)}
        for name in ("params.yaml", "dvc.lock", "mlflow.db"):
            places[name] = (dest / name).read_bytes().decode("latin-1")
        places["mlartifacts"] = "".join(
            p.read_bytes().decode("latin-1") for p in (dest / "mlartifacts").rglob("*") if p.is_file()
        )
        leaked = [name for name, text in places.items() if secret in text]
        assert leaked == [], f"the secret appears in {leaked}"
    finally:
        local.write_text(overlay)
        _run(["churnml", "params"], dest, env, check=False)
        engine = sa.create_engine(plain)
        with engine.begin() as conn:
            conn.execute(sa.text(f'DROP SCHEMA IF EXISTS "{schema}" CASCADE'))
        engine.dispose()


def test_a_mistyped_key_or_a_bad_value_is_refused_and_deletes_nothing(repo):
    dest, env = repo
    committed = [p for d in ("metrics", "plots") for p in sorted((dest / d).rglob("*")) if p.is_file()]
    before = {p: p.read_bytes() for p in committed}
    params = (dest / "params.yaml").read_text()
    try:
        proc = _run(["dvc", "exp", "run", "-S", "+nonexistent.key=1"], dest, env, check=False)
        out = proc.stdout + proc.stderr
        assert proc.returncode != 0 and "nonexistent" in out and "check_params" in out, out[-3000:]
        assert {p: p.read_bytes() for p in committed if p.exists()} == before
        assert all(p.exists() for p in committed)
        # a known key with a value no stage can use: refused by the gate before DVC removes the simulator's
        # outputs (generate's check came after DVC had deleted data/raw and data/truth)
        raw = sorted(p.relative_to(dest) for p in (dest / "data" / "raw").rglob("*") if p.is_file())
        proc = _run(["dvc", "exp", "run", "-S", "simulator.accounts=-5"], dest, env, check=False)
        out = proc.stdout + proc.stderr
        assert proc.returncode != 0 and "'simulator.accounts': -5 must be >= 1" in out, out[-3000:]
        assert (
            raw
            and sorted(p.relative_to(dest) for p in (dest / "data" / "raw").rglob("*") if p.is_file()) == raw
        )
        assert (dest / "data" / "truth").is_dir()
        proc = _run(["churnml", "params", "model.lgbm.num_leafs=63"], dest, env, check=False)
        assert proc.returncode == 1
        assert "did you mean 'model.lgbm.num_leaves'?" in proc.stderr and "Traceback" not in proc.stderr
    finally:
        (dest / "params.yaml").write_text(params)
