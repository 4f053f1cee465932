"""Out of core end to end (issue #20): `churnml score` and `dvc repro` on a 100,000-account portfolio.

What is measured, each in fresh processes, memory as the peak resident set of the whole process tree:

- ``churnml score --data DIR`` on the simulator's 100,000-account portfolio (about 300 M usage rows, 840 MB of
  Parquet): the tables checked in DuckDB (every usage row against the row rules, the key and known accounts
  over the look-back window), the features of the last day built from the usage rows inside the look-back
  window plus a summary of older rows, both champion models, exact SHAP reasons, the call list, one
  transaction into a DuckDB warehouse file (each run replaces the previous run's rows of the date, as a
  nightly re-run does). Target: under 8 GB. Before issue #20 the same command read every table into pandas:
  20,000 accounts (58.5 M usage rows) peaked at 10.0 GB, so 100,000 did not fit the 24 GB machine.
- ``dvc repro`` of the whole DAG in a fresh copy of the repository, its input the same folder
  (``data.source=folder``: validate ... report; the generate stage is not in the DAG, the portfolio is made
  once beforehand). Target: under 12 GB. Each stage's own time and peak (its command's process tree) are
  sampled too, so the survival stage (issue #17's survival training at this size) is read from the same runs.
- ``churnml forecast --data DIR`` in the last ``dvc repro``'s copy, with the survival model that run trained:
  every active account's curve and the revenue forecast into a DuckDB warehouse file (``BENCH_FORECAST_RUNS``,
  default 3).

Why a benchmark of its own (not a figure of bench_scoring / bench_pipeline): it needs the 100,000-account
portfolio, which the generator takes about twelve minutes to write, so it is made once and passed in
(``BENCH_DATA_100K=DIR``, a folder written by ``churnml generate --accounts 100000 --out DIR``; without it the
portfolio is generated into a temporary folder), and one ``dvc repro`` at that size takes about half an hour:
``BENCH_REPRO_RUNS`` (default 3) sets how many, ``BENCH_SCORE_RUNS`` (default 3) the scoring runs. ``churnml score`` uses this checkout's champion models (run
``dvc repro`` here first: the default data's models, the same features). Quick: 2,000 accounts, one run each.
"""

from __future__ import annotations

import json
import os
import shutil
import statistics
import subprocess
import sys
import tempfile
from pathlib import Path

from churnml.checkout import copy_checkout, isolated_env

from harness import figure, measure_command

ROOT = Path(__file__).resolve().parents[1]
BIN = Path(sys.executable).parent
ACCOUNTS, ACCOUNTS_QUICK = 100_000, 2_000


def _portfolio(work: Path, quick: bool) -> tuple[Path, int]:
    """The input folder (``BENCH_DATA_100K`` or generated here) and its number of accounts."""
    given = os.environ.get("BENCH_DATA_100K")
    if given and not quick:
        return Path(given), ACCOUNTS
    out = work / "raw"
    n = ACCOUNTS_QUICK if quick else ACCOUNTS
    subprocess.run(
        [str(BIN / "churnml"), "generate", "--accounts", str(n), "--out", str(out)], check=True, cwd=ROOT
    )
    return out, n


def _usage_rows(folder: Path) -> int:
    import duckdb

    con = duckdb.connect()
    try:
        path = str(folder / "usage.parquet")
        return int(con.execute("SELECT COUNT(*) FROM read_parquet(?)", [path]).fetchone()[0])
    finally:
        con.close()


def _score(work: Path, data: Path, params: dict, repeats: int) -> list[dict]:
    env = isolated_env(BIN, CHURNML_WAREHOUSE_URL=f"duckdb:///{work / 'warehouse.duckdb'}")
    argv = [str(BIN / "churnml"), "score", "--data", str(data), "--accept-drift"]
    measured = measure_command(argv, repeats=repeats, env=env, cwd=ROOT, tree=True)
    return [
        figure(
            f"churnml score, {params['accounts']:,} accounts from Parquet",
            "seconds",
            measured["median_s"],
            "s",
            measured,
            params,
            "validate in DuckDB (row rules on every usage row, key and accounts on the look-back window), "
            "features from the usage window + older rows' summary, both models, SHAP reasons, call list, one "
            "transaction into a DuckDB file; this checkout's champions; memory: process tree; target < 8 GB",
        )
    ]


def _stage_summary(per_run: list[dict]) -> dict:
    """Each stage over the runs: median seconds, largest peak RSS (MB), in the order the stages ran."""
    labels = list(dict.fromkeys(label for run in per_run for label in run))
    return {
        label: {
            "median_s": statistics.median(run[label]["seconds"] for run in per_run if label in run),
            "peak_rss_mb": max(run[label]["peak_rss_mb"] for run in per_run if label in run),
        }
        for label in labels
    }


def _repro(work: Path, data: Path, params: dict, repeats: int, forecast_runs: int) -> list[dict]:
    """``dvc repro`` ``repeats`` times, each in a fresh copy; then ``churnml forecast`` in the last copy (its
    champion survival model, trained at this size by that run)."""
    overrides = [
        "data.source=folder",
        "data.generate=[]",
        "data.truth_dep=${data.input_dir}",
        f"data.input_dir={data}",
    ]
    runs, peaks, per_stage = [], [], []
    for i in range(repeats):
        dest = work / f"repo{i}"
        dest.mkdir()
        env = isolated_env(BIN)
        copy_checkout(ROOT, dest, env, overrides=overrides)
        once = measure_command(["dvc", "repro"], repeats=1, env=env, cwd=dest, tree=True, stages=True)
        runs += once["runs_s"]
        peaks.append(once["peak_rss_mb"])
        per_stage += once["stages"]
        print(
            f"dvc repro {i + 1}/{repeats}: {once['runs_s'][0]:.0f} s, {once['peak_rss_mb']:.0f} MB; stages "
            + json.dumps(once["stages"]),
            file=sys.stderr,
            flush=True,
        )
        if i < repeats - 1:
            shutil.rmtree(dest, ignore_errors=True)
    stages = _stage_summary(per_stage)
    full = {"median_s": statistics.median(runs), "runs_s": runs, "peak_rss_mb": max(peaks)}
    figures = [
        figure(
            f"dvc repro, whole DAG, {params['accounts']:,} accounts",
            "seconds",
            full["median_s"],
            "s",
            full,
            {**params, "runs": repeats, "stages": stages},
            "fresh copy of the repository per run, input folder given (data.source=folder: validate ... "
            "monitor, report; no generate stage); memory: process tree, and per stage (its command's own tree; "
            "median seconds, largest peak over the runs); target < 12 GB",
        )
    ]
    if "survival" in stages:
        survival = {
            "median_s": stages["survival"]["median_s"],
            "runs_s": [run["survival"]["seconds"] for run in per_stage if "survival" in run],
            "peak_rss_mb": stages["survival"]["peak_rss_mb"],
        }
        figures.append(
            figure(
                f"survival stage (training), {params['accounts']:,} accounts",
                "seconds",
                survival["median_s"],
                "s",
                survival,
                {**params, "runs": repeats},
                "the survival stage inside the dvc repro runs above: account-month rows, out-of-time LightGBM "
                "hazard model, Kaplan-Meier and Cox baselines, backtest, final model, forecast; memory: its tree",
            )
        )
    if forecast_runs > 0:
        warehouse = f"duckdb:///{work / 'forecast.duckdb'}"
        argv = [str(BIN / "churnml"), "forecast", "--data", str(data), "--warehouse", warehouse]
        measured = measure_command(argv, repeats=forecast_runs, env=env, cwd=dest, tree=True)
        figures.append(
            figure(
                f"churnml forecast, {params['accounts']:,} accounts from Parquet",
                "seconds",
                measured["median_s"],
                "s",
                measured,
                params,
                "survival curves of every active account with the champion survival model trained by the last "
                "dvc repro above, the revenue forecast (account-level simulation), one transaction into a DuckDB "
                "file (a re-run replaces the as-of); memory: process tree",
            )
        )
    return figures


def run(quick: bool) -> list[dict]:
    """`churnml score` three times (one when quick), then `dvc repro` ``BENCH_REPRO_RUNS`` times."""
    work = Path(tempfile.mkdtemp(prefix="bench_outofcore_"))
    try:
        data, accounts = _portfolio(work, quick)
        params = {
            "accounts": accounts,
            "usage_rows": _usage_rows(data),
            "parquet_mb": round(sum(p.stat().st_size for p in data.glob("*.parquet")) / 1e6, 1),
        }
        figures = []
        if os.environ.get("BENCH_SKIP_SCORE") != "1":
            figures += _score(
                work, data, params, 1 if quick else int(os.environ.get("BENCH_SCORE_RUNS", "3"))
            )
        repro_runs = 1 if quick else int(os.environ.get("BENCH_REPRO_RUNS", "3"))
        if repro_runs > 0:
            forecast_runs = 1 if quick else int(os.environ.get("BENCH_FORECAST_RUNS", "3"))
            figures += _repro(work, data, params, repro_runs, forecast_runs)
    finally:
        shutil.rmtree(work, ignore_errors=True)
    return figures


if __name__ == "__main__":  # python benchmarks/bench_outofcore.py [--quick]
    print(json.dumps(run("--quick" in sys.argv), indent=1))
