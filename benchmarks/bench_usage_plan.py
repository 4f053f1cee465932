"""Where the usage-window build spends its time, against the floor of one pass over the usage rows.

The features benchmark compares the usage family with pandas; this one splits the DuckDB side by step and
times two single aggregations over the same rows, to show how much of the build any plan must spend:

- ``one pass, one sum``: scan, the calendar join and one SUM per (account, period, metric): the least a
  plan that reads every usage row once can cost;
- ``one pass, the plan's aggregates``: the ``usage_agg`` step alone (one sum per (lag, bucket) slot, the
  active-day bits and the positive-day bounds; see churnml.features.sql).

10,000 simulated accounts, 24 monthly cutoffs, usage family only, 2 threads, each figure the median of 3
fresh processes (quick: 200 accounts, one run). ``BENCH_FEATURES_DATA`` reuses the features benchmark's
generated data.
"""

from __future__ import annotations

import os
import shutil
import tempfile
from pathlib import Path

from bench_features import CUTOFFS, MEMORY_LIMIT, THREADS, _generate
from harness import figure, measure_python

SIZE, QUICK_SIZE = 10_000, 200
STEPS = ("usage_agg", "usage_metric_features", "usage_account")

PLAN_CODE = """
import json, logging, time
import pandas as pd
from churnml.config import FeaturesConfig
from churnml.features.engine import build_features
from churnml.dataset.spine import build_spine
steps = {{}}
class Steps(logging.Handler):
    def emit(self, record):
        if str(record.msg).startswith("features: %s in"):
            steps[record.args[0]] = steps.get(record.args[0], 0.0) + record.args[1]
logger = logging.getLogger("churnml.features.engine")
logger.setLevel(logging.DEBUG)
logger.addHandler(Steps())
folder = {folder!r}
cfg = FeaturesConfig(threads={threads}, memory_limit={memory!r}, families=["usage"])
spine = build_spine(pd.read_parquet(folder + "/subscriptions.parquet"), {cutoffs!r})
start, cpu = time.perf_counter(), time.process_time()
build_features(folder, spine, cfg)
out = {{"timed_s": time.perf_counter() - start, "cpu_s": time.process_time() - cpu}}
print(json.dumps(out | {{f"step_{{k}}": v for k, v in steps.items()}}))
"""

FLOOR_CODE = """
import json, time
import pandas as pd
from churnml.features import sql as fs
from churnml.config import FeaturesConfig
from churnml.features.engine import connect, register_sources, register_usage_periods
from churnml.dataset.spine import to_cutoffs
folder = {folder!r}
cfg = FeaturesConfig(threads={threads}, memory_limit={memory!r}, families=["usage"])
con = connect(cfg)
register_sources(con, folder)
periods = fs.usage_periods(to_cutoffs({cutoffs!r}), fs.Windows.from_config(cfg))
register_usage_periods(con, periods)
one_sum = f'''SELECT u.account_id, c.period, u.metric, SUM(u.value) AS total
FROM usage AS u JOIN usage_calendar AS c ON c.date = GREATEST(u.date, DATE '{{periods.lo}}')
WHERE u.date < DATE '{{periods.hi}}' GROUP BY u.account_id, c.period, u.metric'''
out = {{}}
for key, sql in (("one_sum_s", one_sum), ("plan_pass_s", fs.usage_agg_sql(periods))):
    start = time.perf_counter()
    con.execute(f"CREATE OR REPLACE TEMP TABLE t AS {{sql}}")
    out[key] = time.perf_counter() - start
    con.execute("DROP TABLE t")
print(json.dumps({{"timed_s": out["one_sum_s"] + out["plan_pass_s"], **out}}))
"""


def run(quick: bool) -> list[dict]:
    """The usage family by step, and the two single passes, on one generated folder."""
    accounts = QUICK_SIZE if quick else SIZE
    repeats = 1 if quick else 3
    cache = os.environ.get("BENCH_FEATURES_DATA")
    work = Path(cache) if cache else Path(tempfile.mkdtemp(prefix="bench_usage_plan_"))
    try:
        folder = work / f"a{accounts}" / "raw"
        rows = _generate(accounts, folder)
        fmt = {"folder": str(folder), "cutoffs": CUTOFFS, "threads": THREADS, "memory": MEMORY_LIMIT}
        env = {"OMP_NUM_THREADS": str(THREADS)}
        plan = measure_python(
            PLAN_CODE.format(**fmt), repeats=repeats, env=env, keys=[f"step_{s}" for s in STEPS]
        )
        floor = measure_python(
            FLOOR_CODE.format(**fmt), repeats=repeats, env=env, keys=["one_sum_s", "plan_pass_s"]
        )
    finally:
        if not cache:
            shutil.rmtree(work, ignore_errors=True)
    params = {"accounts": accounts, "cutoffs": len(CUTOFFS), "usage_rows": rows["usage"], "threads": THREADS}
    total = plan["median_s"]
    label = f"usage family, {accounts:,} accounts"
    figures = [
        figure(
            f"{label}: build",
            "seconds",
            total,
            "s",
            plan,
            params,
            "build_features(families=[usage]) from Parquet",
        )
    ]
    parts = (  # (measurement, key, figure name, note)
        (
            plan,
            "step_usage_agg",
            "step usage_agg",
            "one pass over the usage rows: a sum per (lag, bucket) slot, active-day bits, positive-day bounds",
        ),
        (
            plan,
            "step_usage_metric_features",
            "step usage_metric_features",
            "per cutoff and metric: the slots of the periods it sees, windows, z-score, carry-forward",
        ),
        (
            plan,
            "step_usage_account",
            "step usage_account",
            "metrics pivoted to one row per spine row, adoption inputs",
        ),
        (
            floor,
            "one_sum_s",
            "one pass, one sum per (account, period, metric)",
            "scan, calendar join, hash aggregation: the least any single pass costs",
        ),
        (
            floor,
            "plan_pass_s",
            "one pass, the plan's aggregates",
            "the usage_agg step's SQL alone, in its own connection",
        ),
    )
    for measured, key, name, note in parts:
        seconds = measured["keys"][key]
        figures.append(
            figure(
                f"{label}: {name}",
                "seconds",
                seconds,
                "s",
                measured | {"median_s": seconds, "runs_s": measured["key_runs"][key]},
                params | {"share_of_build": round(seconds / total, 3)},
                note,
            )
        )
    return figures
