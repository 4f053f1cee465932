"""Feature build on Spark (local[2]) against DuckDB (2 threads) on the same data: feature rows/s, peak memory.

Both engines run the same SQL definitions (Spark through sqlglot) over the same simulated Parquet folder and
spine, and both return the pandas frame the pipeline uses. Each measurement runs in a fresh process; the
clock covers the feature build only (the Spark session is started before it, and its start-up is reported
as a figure of its own). Peak memory is that of the whole process tree: the Python driver, the JVM it
starts and Spark's Python workers, summed (harness ``tree=True``).

Full: 3,000 accounts, 24 monthly cutoffs, 3 runs each. Quick: 150 accounts, 2 cutoffs, the account
family only, one run each.
"""

from __future__ import annotations

import json
import shutil
import statistics
import tempfile
from pathlib import Path

import pandas as pd
import pyarrow.parquet as pq

from harness import figure, measure_python

ACCOUNTS, QUICK_ACCOUNTS = 3_000, 150
CUTOFFS = [str(d.date()) for d in pd.date_range("2024-02-01", "2026-01-01", freq="MS")]  # 24 monthly cutoffs
QUICK_CUTOFFS = ["2025-01-01", "2025-12-01"]
QUICK_FAMILIES = ["account"]
THREADS, MEMORY_LIMIT = 2, "4GB"
MASTER, DRIVER_MEMORY = "local[2]", "3g"
SEED, SIM_MONTHS = 5, 24

DUCKDB_CODE = """
import json, time
import pandas as pd
from churnml.config import FeaturesConfig
from churnml.features.engine import build_features
cfg = FeaturesConfig(threads={threads}, memory_limit={memory!r}, **{extra!r})
spine = pd.read_parquet({spine!r})
start = time.perf_counter()
features = build_features({folder!r}, spine, cfg)
elapsed = time.perf_counter() - start
assert len(features) == len(spine)
print(json.dumps({{"timed_s": elapsed}}))
"""

SPARK_CODE = """
import json, time
import pandas as pd
from churnml.config import FeaturesConfig
from churnml.features.spark import build_features_spark, spark_session
began = time.perf_counter()
spark = spark_session(master={master!r}, driver_memory={driver_memory!r}, quick_start={quick!r})
started = time.perf_counter() - began
cfg = FeaturesConfig(**{extra!r})
spine = pd.read_parquet({spine!r})
start = time.perf_counter()
features = build_features_spark(spark, {folder!r}, spine, cfg)
elapsed = time.perf_counter() - start
spark.stop()
assert len(features) == len(spine)
with open({startup_log!r}, "a") as log:
    log.write(json.dumps({{"startup_s": started}}) + "\\n")
print(json.dumps({{"timed_s": elapsed}}))
"""


def _prepare(work: Path, accounts: int, cutoffs: list[str]) -> tuple[Path, Path, dict[str, int]]:
    """Simulated tables and their spine, written once (untimed)."""
    from churnml.config import SimulatorConfig
    from churnml.dataset.spine import build_spine
    from churnml.sources.simulate import generate

    folder = work / "raw"
    generate(SimulatorConfig(accounts=accounts, months=SIM_MONTHS, seed=SEED), folder, work / "truth")
    spine = build_spine(pd.read_parquet(folder / "subscriptions.parquet"), cutoffs)
    spine_path = work / "spine.parquet"
    spine.to_parquet(spine_path, index=False)
    rows = {p.stem: pq.ParquetFile(p).metadata.num_rows for p in folder.glob("*.parquet")}
    return folder, spine_path, {**rows, "spine": len(spine)}


def run(quick: bool) -> list[dict]:
    """Time both engines on one simulated portfolio; report rows/s, the ratio and Spark's start-up."""
    accounts = QUICK_ACCOUNTS if quick else ACCOUNTS
    cutoffs = QUICK_CUTOFFS if quick else CUTOFFS
    extra = {"families": QUICK_FAMILIES} if quick else {}
    repeats = 1 if quick else 3
    work = Path(tempfile.mkdtemp(prefix="bench_spark_"))
    try:
        folder, spine_path, rows = _prepare(work, accounts, cutoffs)
        startup_log = work / "startup.jsonl"
        common = {"folder": str(folder), "spine": str(spine_path), "extra": extra}
        duck = measure_python(
            DUCKDB_CODE.format(threads=THREADS, memory=MEMORY_LIMIT, **common), repeats=repeats, tree=True
        )
        spark = measure_python(
            SPARK_CODE.format(
                master=MASTER,
                driver_memory=DRIVER_MEMORY,
                quick=quick,
                startup_log=str(startup_log),
                **common,
            ),
            repeats=repeats,
            tree=True,
        )
        startups = [round(json.loads(line)["startup_s"], 4) for line in startup_log.read_text().splitlines()]
    finally:
        shutil.rmtree(work, ignore_errors=True)
    params = {
        "accounts": accounts,
        "cutoffs": len(cutoffs),
        "feature_rows": rows["spine"],
        "usage_rows": rows["usage"],
        "families": ",".join(QUICK_FAMILIES) if quick else "all",
    }
    name = f"{accounts:,} accounts x {len(cutoffs)} cutoffs"
    start_measured = {"median_s": statistics.median(startups), "runs_s": startups, "peak_rss_mb": 0.0}
    return [
        figure(
            f"features on DuckDB, {name}",
            "feature_rows_per_s",
            rows["spine"] / duck["median_s"],
            "feature rows/s",
            duck,
            {**params, "threads": THREADS, "memory_limit": MEMORY_LIMIT},
            "build_features from Parquet, fresh process; memory: process tree",
        ),
        figure(
            f"features on Spark {MASTER}, {name}",
            "feature_rows_per_s",
            rows["spine"] / spark["median_s"],
            "feature rows/s",
            spark,
            {**params, "master": MASTER, "driver_memory": DRIVER_MEMORY},
            "build_features_spark from Parquet (same SQL via sqlglot), session already started; memory: "
            "driver + JVM + Python workers, summed",
        ),
        figure(
            f"Spark / DuckDB time, {name}",
            "ratio",
            spark["median_s"] / duck["median_s"],
            "x",
            spark,
            params,
            "median Spark build time / median DuckDB build time, same data, spine and definitions",
        ),
        figure(
            f"Spark session start ({MASTER})",
            "seconds",
            start_measured["median_s"],
            "s",
            start_measured,
            {"master": MASTER, "driver_memory": DRIVER_MEMORY},
            "spark_session() in a fresh process (JVM launch included), measured inside the Spark runs",
        ),
    ]


if __name__ == "__main__":  # python benchmarks/bench_spark.py [--quick]
    import sys

    print(json.dumps(run("--quick" in sys.argv), indent=1))
