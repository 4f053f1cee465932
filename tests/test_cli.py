"""The command line: help everywhere, expected failures as one line and a non-zero exit code."""

from __future__ import annotations

import sys

import pytest

from churnml import cli
from churnml.contract.io import write_folder

from tables import tiny_tables


def run_cli(monkeypatch, capsys, *args: str) -> tuple[int, str, str]:
    monkeypatch.setattr(sys, "argv", ["churnml", *args])
    try:
        cli.main()
        code = 0
    except SystemExit as exc:
        code = exc.code if isinstance(exc.code, int) else (0 if exc.code is None else 1)
    out = capsys.readouterr()
    return code, out.out, out.err


def _commands() -> list[str]:
    import typer.main

    return sorted(typer.main.get_command(cli.app).commands)


@pytest.mark.parametrize("command", _commands())
def test_every_command_has_help(monkeypatch, capsys, command):
    code, out, _ = run_cli(monkeypatch, capsys, command, "--help")
    assert code == 0
    assert "Usage" in out and command in out


def _one_line_error(code: int, err: str, *parts: str) -> None:
    assert code == 1
    lines = [line for line in err.strip().splitlines() if line]
    assert len(lines) == 1, err
    assert lines[0].startswith("error: ")
    assert "Traceback" not in err
    for part in parts:
        assert part in lines[0]


def test_missing_folder_is_one_line(monkeypatch, capsys, tmp_path):
    code, _, err = run_cli(monkeypatch, capsys, "validate", str(tmp_path / "nope"))
    _one_line_error(code, err, "no such folder")
    (tmp_path / "usage.csv").write_text("account_id,date,metric,value\n")  # the table itself, not its folder
    code, _, err = run_cli(monkeypatch, capsys, "validate", str(tmp_path / "usage.csv"))
    _one_line_error(code, err, "usage.csv is a file: give the folder that holds the tables")


def test_bad_schema_is_one_line(monkeypatch, capsys, tmp_path):
    tables = tiny_tables()
    tables["subscriptions"] = tables["subscriptions"].assign(mrr=[1.0, -2.0, 3.0])
    write_folder(tables, tmp_path)
    code, _, err = run_cli(monkeypatch, capsys, "validate", str(tmp_path))
    _one_line_error(code, err, "subscriptions", "mrr", "subscription_id=S2")


def test_quarantine_writes_bad_rows_and_reports_counts(monkeypatch, capsys, tmp_path):
    tables = tiny_tables()
    tables["subscriptions"] = tables["subscriptions"].assign(mrr=[1.0, -2.0, 3.0])
    write_folder(tables, tmp_path / "in")
    code, _, err = run_cli(
        monkeypatch,
        capsys,
        "validate",
        str(tmp_path / "in"),
        "--quarantine",
        str(tmp_path / "q"),
        "--out",
        str(tmp_path / "ok"),
    )
    assert code == 0
    assert "subscriptions: 2 valid, 1 quarantined" in err
    assert (tmp_path / "q" / "subscriptions.parquet").is_file()
    assert (tmp_path / "ok" / "subscriptions.parquet").is_file()


def test_bad_date_is_one_line(monkeypatch, capsys, tmp_path):
    code, _, err = run_cli(monkeypatch, capsys, "generate", "--out", str(tmp_path), "--start", "2024-13-01")
    _one_line_error(code, err, "2024-13-01", "YYYY-MM-DD")


def test_spark_score_needs_exactly_one_source(monkeypatch, capsys, tmp_path):
    out = str(tmp_path / "scores")
    code, _, err = run_cli(monkeypatch, capsys, "spark-score", "--out", out)
    _one_line_error(code, err, "exactly one of --data PATH or --database NAME")
    code, _, err = run_cli(monkeypatch, capsys, "spark-score", "--out", out, "--data", "x", "--database", "y")
    _one_line_error(code, err, "exactly one of")
    code, _, err = run_cli(
        monkeypatch, capsys, "spark-score", "--out", out, "--data", "x", "--as-of", "2025-13-01"
    )
    _one_line_error(code, err, "bad --as-of")


def test_paths_lists_every_output_make_clean_removes(monkeypatch, capsys):
    from churnml.config import Config

    code, out, _ = run_cli(monkeypatch, capsys, "paths")
    listed = out.split()
    assert code == 0
    assert set(listed) == {*vars(Config().paths).values(), "mlflow.db", "mlartifacts"}
    assert "conf" not in listed and "src" not in listed and "data" not in listed


def test_stage_command_with_an_unknown_target_is_one_line(monkeypatch, capsys):
    code, _, err = run_cli(monkeypatch, capsys, "train", "--target", "upsell")
    _one_line_error(code, err, "unknown target 'upsell'")


@pytest.mark.parametrize("option", ["--warehouse", "--source-url"])
def test_a_password_on_the_command_line_is_refused_naming_the_variable(monkeypatch, capsys, option):
    """Arguments are visible to every user in `ps`: the URL belongs in the environment."""
    url = "postgresql+psycopg://scorer@db.internal/crm?password=S3CR3Tq"
    code, _, err = run_cli(monkeypatch, capsys, "score", option, url)
    env = "CHURNML_WAREHOUSE_URL" if option == "--warehouse" else "CHURNML_SOURCE_URL"
    _one_line_error(code, err, option, env)
    assert "S3CR3Tq" not in err


def test_generate_defaults_to_the_pipeline_simulator_start(monkeypatch, capsys, tmp_path):
    """A newcomer's `churnml generate` then `churnml score` must end where the pipeline's data ends."""
    import pandas as pd

    from churnml.config import SimulatorConfig

    code, _, err = run_cli(
        monkeypatch, capsys, "generate", "--accounts", "5", "--months", "2", "--out", str(tmp_path / "raw")
    )
    assert code == 0, err
    usage = pd.to_datetime(pd.read_parquet(tmp_path / "raw" / "usage.parquet")["date"])
    start = pd.Timestamp(SimulatorConfig().start_date)
    assert start <= usage.min() < start + pd.Timedelta(days=31)


def test_score_checks_warehouse_and_models_before_reading_the_input(monkeypatch, capsys, tmp_path):
    """The folder does not exist: the error is about the models (here: the store named by MLFLOW_TRACKING_URI
    does not exist, and reading the registry creates none), so nothing was read before the checks."""
    monkeypatch.setenv("MLFLOW_TRACKING_URI", f"sqlite:///{tmp_path / 'mlflow.db'}")
    monkeypatch.delenv("CHURNML_WAREHOUSE_URL", raising=False)
    wh = f"duckdb:///{tmp_path / 'wh.duckdb'}"
    code, _, err = run_cli(
        monkeypatch,
        capsys,
        "score",
        "--data",
        str(tmp_path / "nope"),
        "--warehouse",
        wh,
        "--churn-version",
        "99",
    )
    errors = [line for line in err.splitlines() if line.startswith("error: ")]
    assert code == 1 and errors == [
        f"error: no MLflow store at {tmp_path / 'mlflow.db'} (MLFLOW_TRACKING_URI): check the variable"
    ]
    assert "no such folder" not in err and not (tmp_path / "mlflow.db").exists()
    assert (tmp_path / "wh.duckdb").exists()  # the warehouse was opened (and its tables made) first


def test_summary_names_what_the_pipeline_produced_and_what_to_open(tmp_path):
    """`make run` ends with it: headline metrics from the files, missing outputs named, the next commands."""
    import json

    from churnml.config import Config

    cfg = Config()
    metrics = {"test": {"roc_auc": 0.8421, "pr_auc": 0.2043}, "n": {"test": 11002}}
    path = tmp_path / cfg.paths.target_metrics("churn")
    path.parent.mkdir(parents=True)
    path.write_text(json.dumps(metrics))
    (tmp_path / cfg.paths.reports).mkdir()
    (tmp_path / cfg.paths.reports / "index.html").write_text("<html></html>")
    survival = {
        "models": {
            m: {"harrell_c": c, "integrated_brier": b}
            for m, c, b in [("lightgbm", 0.686, 0.0709), ("kaplan_meier", 0.605, 0.0756)]
        }
    }
    (tmp_path / cfg.paths.survival_metrics).write_text(json.dumps(survival))
    text = "\n".join(cli.summary_lines(tmp_path, cfg))
    assert "churn      test ROC-AUC 0.842, PR-AUC 0.204 on 11,002 rows" in text
    assert "survival   Harrell C 0.686, integrated Brier 0.0709 (Kaplan-Meier 0.605, 0.0756)" in text
    assert f"{cfg.paths.target_metrics('expansion')} (missing: run `make run`)" in text
    assert f"{cfg.paths.reports}/index.html (offline pages" in text and "right-customer analysis" in text
    assert "MLFLOW_DISABLE_TELEMETRY=true" in text and "dvc metrics show" in text


def test_params_then_summary_and_check_params_in_a_fresh_checkout(monkeypatch, capsys, tmp_path):
    """`churnml params` composes conf/; the check_params stage passes on it and refuses after an edit under
    conf/ (what a plain `dvc repro` runs then); `churnml summary` names what is still missing."""
    import shutil
    from pathlib import Path

    from churnml.config import CONF_DIR, StaleParamsError, load_config
    from churnml.stages.check_params import check_params

    root = Path(__file__).resolve().parents[1]
    shutil.copytree(root / CONF_DIR, tmp_path / CONF_DIR, ignore=shutil.ignore_patterns("local"))
    (tmp_path / "dvc.yaml").write_text("stages: {}\n")
    monkeypatch.chdir(tmp_path)
    code, _, err = run_cli(monkeypatch, capsys, "params")
    assert code == 0 and "wrote params.yaml" in err
    assert "parameters valid and fresh" in check_params(load_config(tmp_path), tmp_path)
    labels = tmp_path / CONF_DIR / "labels" / "default.yaml"
    labels.write_text(labels.read_text() + "grace_days: 20\n")
    with pytest.raises(StaleParamsError, match="stale.*make params"):
        load_config(tmp_path)
    code, out, _ = run_cli(monkeypatch, capsys, "summary")
    assert code == 0 and "metrics/churn.json (missing: run `make run`)" in out and "Open next:" in out
