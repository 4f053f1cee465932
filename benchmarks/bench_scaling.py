"""DuckDB feature build at 1x, 4x and 16x the default data: time and peak memory grow no worse than linearly.

1x is the default portfolio: 5,000 simulated accounts over two years, 24 monthly cutoffs; 4x is 20,000
accounts and 16x 80,000 (about 230 M daily usage rows), all families, 2 threads, a 4 GB memory limit. Each
size is generated once into a temporary folder (untimed), measured three times in fresh processes (the clock
covers ``build_features`` only; the spine is built before it), then deleted. The headline figure is the
time per feature row at 16x divided by that at 1x: 1.0 is linear, above 1 worse than linear.

Quick: 100, 400 and 1,600 accounts, one run each.
"""

from __future__ import annotations

import json
import shutil
import tempfile
from pathlib import Path

import pandas as pd
import pyarrow.parquet as pq

from harness import figure, measure_python

SIZES = {"1x": 5_000, "4x": 20_000, "16x": 80_000}
QUICK_SIZES = {"1x": 100, "4x": 400, "16x": 1_600}
CUTOFFS = [str(d.date()) for d in pd.date_range("2024-02-01", "2026-01-01", freq="MS")]  # 24 monthly cutoffs
THREADS, MEMORY_LIMIT = 2, "4GB"
SEED, SIM_MONTHS = 7, 24

CODE = """
import json, time
import pandas as pd
from churnml.config import FeaturesConfig
from churnml.features.engine import build_features
from churnml.dataset.spine import build_spine
folder, cutoffs = {folder!r}, {cutoffs!r}
spine = build_spine(pd.read_parquet(folder + "/subscriptions.parquet"), cutoffs)
cfg = FeaturesConfig(threads={threads}, memory_limit={memory!r})
start = time.perf_counter()
features = build_features(folder, spine, cfg)
elapsed = time.perf_counter() - start
assert len(features) == len(spine)
print(json.dumps({{"timed_s": elapsed}}))
"""


def _generate(accounts: int, work: Path) -> tuple[Path, dict[str, int]]:
    from churnml.config import SimulatorConfig
    from churnml.dataset.spine import build_spine
    from churnml.sources.simulate import generate

    folder = work / "raw"
    generate(SimulatorConfig(accounts=accounts, months=SIM_MONTHS, seed=SEED), folder, work / "truth")
    rows = {p.stem: pq.ParquetFile(p).metadata.num_rows for p in folder.glob("*.parquet")}
    subs = pd.read_parquet(folder / "subscriptions.parquet", columns=["account_id", "start_date", "end_date"])
    rows["feature_rows"] = len(build_spine(subs, CUTOFFS))
    return folder, rows


def run(quick: bool) -> list[dict]:
    """Generate, measure and delete each size in turn; then the growth ratios 16x/1x."""
    sizes = QUICK_SIZES if quick else SIZES
    repeats = 1 if quick else 3
    figures, seen = [], {}
    for label, accounts in sizes.items():
        work = Path(tempfile.mkdtemp(prefix=f"bench_scaling_{label}_"))
        try:
            folder, rows = _generate(accounts, work)
            code = CODE.format(folder=str(folder), cutoffs=CUTOFFS, threads=THREADS, memory=MEMORY_LIMIT)
            measured = measure_python(code, repeats=repeats, env={"OMP_NUM_THREADS": str(THREADS)}, tree=True)
        finally:
            shutil.rmtree(work, ignore_errors=True)
        seen[label] = (measured, rows)
        params = {
            "scale": label,
            "accounts": accounts,
            "cutoffs": len(CUTOFFS),
            "feature_rows": rows["feature_rows"],
            "usage_rows": rows["usage"],
            "threads": THREADS,
            "memory_limit": MEMORY_LIMIT,
        }
        figures.append(
            figure(
                f"scaling {label}: features {accounts:,} accounts x {len(CUTOFFS)} cutoffs",
                "feature_rows_per_s",
                rows["feature_rows"] / measured["median_s"],
                "feature rows/s",
                measured,
                params,
                "DuckDB, all families from Parquet, fresh process; spine built before the clock starts",
            )
        )
    (small, small_rows), (large, large_rows) = seen["1x"], seen["16x"]
    per_row = (large["median_s"] / large_rows["feature_rows"]) / (
        small["median_s"] / small_rows["feature_rows"]
    )
    per_usage_row = (large["median_s"] / large_rows["usage"]) / (small["median_s"] / small_rows["usage"])
    memory = large["peak_rss_mb"] / small["peak_rss_mb"]
    growth = {
        "accounts_ratio": sizes["16x"] / sizes["1x"],
        "feature_rows_ratio": round(large_rows["feature_rows"] / small_rows["feature_rows"], 3),
        "time_ratio": round(large["median_s"] / small["median_s"], 3),
        "time_per_usage_row_ratio": round(per_usage_row, 3),
        "peak_memory_ratio": round(memory, 3),
    }
    figures.append(
        figure(
            "scaling: time per feature row, 16x / 1x",
            "ratio",
            per_row,
            "x",
            large,
            growth,
            "1.0 = linear growth, below 1 better than linear (fixed costs spread over more rows)",
        )
    )
    return figures


if __name__ == "__main__":  # python benchmarks/bench_scaling.py [--quick]
    import sys

    print(json.dumps(run("--quick" in sys.argv), indent=1))
