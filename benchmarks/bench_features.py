"""Feature build: DuckDB over simulated Parquet (24 monthly cutoffs), rows per second, peak memory, and pandas.

Sizes: full mode builds every family for 10,000 and 100,000 simulated accounts (about 30 M and 300 M daily
usage rows) with DuckDB on 2 threads and a 4 GB memory limit; the usage-window features alone are also
built by a vectorised pandas implementation (below; what a competent user would write: per cutoff, filter
the window, group by, pivot) on 10,000 accounts, with DuckDB's time on the same data and features, as a
ratio (runs interleaved, wall and CPU time). Quick mode: 200 accounts, one run each. ``BENCH_FEATURES_SIZES``
(comma-separated account counts) and ``BENCH_FEATURES_REPEATS`` narrow a full run (the figures say how many
runs each median is of). Before timing, the pandas reference is checked to give the
engine's values on 200 accounts (``reference_checked`` in the figures' parameters).

Data is generated once into a temporary folder (untimed; set ``BENCH_FEATURES_DATA`` to a folder to keep
and reuse it across runs); every measurement runs in a fresh process and times only the feature build
(imports and building the spine are outside).
"""

from __future__ import annotations

import json
import os
import shutil
import tempfile
from pathlib import Path

import numpy as np
import pandas as pd
import pyarrow.parquet as pq

from harness import combine, figure, measure_python

FULL_SIZES = (10_000, 100_000)
PANDAS_SIZE = 10_000
QUICK_SIZE = 200
CHECK_SIZE = 200  # the pandas reference is checked against the engine on this many accounts
CUTOFFS = [str(d.date()) for d in pd.date_range("2024-02-01", "2026-01-01", freq="MS")]  # 24 monthly cutoffs
THREADS, MEMORY_LIMIT = 2, "4GB"
SEED, SIM_MONTHS = 3, 24
WINDOWS, TREND, WEEKS = (7, 30, 90), 30, 12

DUCKDB_CODE = """
import json, time
import pandas as pd
from churnml.config import FeaturesConfig
from churnml.features.engine import build_features
from churnml.dataset.spine import build_spine
folder, cutoffs, families = {folder!r}, {cutoffs!r}, {families!r}
cfg = FeaturesConfig(threads={threads}, memory_limit={memory!r}, **({{"families": families}} if families else {{}}))
spine = build_spine(pd.read_parquet(folder + "/subscriptions.parquet"), cutoffs)
start, cpu = time.perf_counter(), time.process_time()
features = build_features(folder, spine, cfg)
elapsed, cpu = time.perf_counter() - start, time.process_time() - cpu
assert len(features) == len(spine)
print(json.dumps({{"timed_s": elapsed, "cpu_s": cpu, "rows": len(features), "columns": features.shape[1]}}))
"""

PANDAS_CODE = """
import json, sys, time
import pandas as pd
sys.path.insert(0, {bench_dir!r})
from bench_features import pandas_usage_features
from churnml.dataset.spine import build_spine
folder, cutoffs = {folder!r}, {cutoffs!r}
usage = pd.read_parquet(folder + "/usage.parquet")
subs = pd.read_parquet(folder + "/subscriptions.parquet")
spine = build_spine(subs, cutoffs)
start, cpu = time.perf_counter(), time.process_time()
features = pandas_usage_features(usage, subs, spine)
elapsed, cpu = time.perf_counter() - start, time.process_time() - cpu
assert len(features) == len(spine)
print(json.dumps({{"timed_s": elapsed, "cpu_s": cpu}}))
"""


# ------------------------------------------------------------------------------ the pandas reference


def pandas_usage_features(
    usage: pd.DataFrame, subscriptions: pd.DataFrame, spine: pd.DataFrame
) -> pd.DataFrame:
    """The usage family (sums, mean, trend, days since last use, z-score) the way a pandas user writes it.

    Vectorised per cutoff: filter the 91-day window, group by (account, metric), pivot the metrics wide;
    categorical keys; no loop over accounts. Same definitions as ``churnml.features.sql``.
    """
    usage = usage.assign(
        account_id=usage["account_id"].astype("category"), metric=usage["metric"].astype("category")
    )
    positive = usage.loc[usage["value"] > 0, ["account_id", "metric", "date"]]
    first_start = subscriptions.groupby("account_id")["start_date"].min()
    lookback = 7 * (WEEKS + 1)
    parts = []
    for cutoff, keys in spine.groupby("cutoff", sort=True):
        c = pd.Timestamp(cutoff)
        win = usage[(usage["date"] >= c - pd.Timedelta(days=lookback)) & (usage["date"] < c)]
        k = ((c - win["date"]).dt.days).to_numpy()
        v = win["value"].to_numpy()
        cols = {f"sum_{w}d": np.where(k <= w, v, 0.0) for w in WINDOWS}
        cols["prev"] = np.where((k > TREND) & (k <= 2 * TREND), v, 0.0)
        frame = pd.DataFrame(
            {
                "account_id": win["account_id"].to_numpy(),
                "metric": win["metric"].to_numpy(),
                "week": (k - 1) // 7,
                **cols,
            }
        )
        frame["value"] = v
        sums = frame.groupby(["account_id", "metric"], observed=True)[list(cols)].sum()
        weekly = (
            frame.groupby(["account_id", "metric", "week"], observed=True)["value"]
            .sum()
            .unstack("week", fill_value=0.0)
            .reindex(columns=range(WEEKS + 1), fill_value=0.0)
        )
        last = positive[positive["date"] < c].groupby(["account_id", "metric"], observed=True)["date"].max()
        # every (spine account, metric) pair: no rows means zero use
        index = pd.MultiIndex.from_product(
            [keys["account_id"].astype("category").cat.categories, usage["metric"].cat.categories],
            names=["account_id", "metric"],
        )
        stats = sums.reindex(index, fill_value=0.0)
        weeks = weekly.reindex(index, fill_value=0.0)
        base = weeks[list(range(1, WEEKS + 1))]
        mean, std = base.mean(axis=1), base.std(axis=1, ddof=1)
        starts = first_start.reindex(index.get_level_values("account_id")).to_numpy()
        enough = starts <= (c - pd.Timedelta(days=lookback)).to_datetime64()
        out = pd.DataFrame(index=index)
        for w in WINDOWS:
            out[f"sum_{w}d"] = stats[f"sum_{w}d"]
        out[f"mean_{TREND}d"] = stats[f"sum_{TREND}d"] / TREND
        out[f"trend_{TREND}d"] = (stats[f"sum_{TREND}d"] / stats["prev"] - 1).where(stats["prev"] > 0)
        out["days_since_last"] = (c - last.reindex(index)).dt.days
        out["zscore_7d"] = ((weeks[0] - mean) / std).where((std > 1e-9) & enough)
        wide = out.unstack("metric")
        wide.columns = [f"usage_{m}_{f}" for f, m in wide.columns]
        wide = wide.reindex(keys["account_id"].to_numpy())
        wide.insert(0, "cutoff", c)
        parts.append(wide.reset_index(names="account_id"))
    return pd.concat(parts, ignore_index=True)


# ----------------------------------------------------------------------------------------- running


def _rows(folder: Path) -> dict[str, int]:
    """Rows per table, from the Parquet footers."""
    return {p.stem: pq.ParquetFile(p).metadata.num_rows for p in folder.glob("*.parquet")}


def _generate(accounts: int, folder: Path) -> dict[str, int]:
    from churnml.config import SimulatorConfig
    from churnml.sources.simulate import generate

    if not (folder / "usage.parquet").is_file():
        generate(
            SimulatorConfig(accounts=accounts, months=SIM_MONTHS, seed=SEED), folder, folder.parent / "truth"
        )
    return _rows(folder)


def _check_reference(folder: Path) -> bool:
    """The pandas reference computes what the engine computes (on the given data)."""
    from churnml.config import FeaturesConfig
    from churnml.dataset.spine import build_spine
    from churnml.features.engine import build_features

    usage, subs = pd.read_parquet(folder / "usage.parquet"), pd.read_parquet(folder / "subscriptions.parquet")
    spine = build_spine(subs, CUTOFFS)
    ours = build_features(folder, spine, FeaturesConfig(families=["usage"]))
    ref = pandas_usage_features(usage, subs, spine)
    ref = ref[list(ours.columns)]
    return bool(
        np.allclose(
            ours.iloc[:, 2:].to_numpy(float), ref.iloc[:, 2:].to_numpy(float), rtol=1e-9, equal_nan=True
        )
    )


def _duckdb(folder: Path, families: list[str] | None, repeats: int) -> dict:
    code = DUCKDB_CODE.format(
        folder=str(folder), cutoffs=CUTOFFS, families=families, threads=THREADS, memory=MEMORY_LIMIT
    )
    return measure_python(code, repeats=repeats, env={"OMP_NUM_THREADS": str(THREADS)})


def run(quick: bool) -> list[dict]:
    """Generate the data (untimed), then time DuckDB at each size and pandas vs DuckDB on one size."""
    sizes = (QUICK_SIZE,) if quick else FULL_SIZES
    if not quick and os.environ.get("BENCH_FEATURES_SIZES"):
        sizes = tuple(int(n) for n in os.environ["BENCH_FEATURES_SIZES"].split(","))
    pandas_size = QUICK_SIZE if quick else PANDAS_SIZE
    repeats = 1 if quick else int(os.environ.get("BENCH_FEATURES_REPEATS", "3"))
    cache = os.environ.get("BENCH_FEATURES_DATA")
    work = Path(cache) if cache else Path(tempfile.mkdtemp(prefix="bench_features_"))
    bench_dir = str(Path(__file__).resolve().parent)
    figures = []
    try:
        check_folder = work / f"a{CHECK_SIZE}" / "raw"
        _generate(CHECK_SIZE, check_folder)
        verified = _check_reference(check_folder)
        for accounts in sizes:
            folder = work / f"a{accounts}" / "raw"
            rows = _generate(accounts, folder) if accounts != CHECK_SIZE else _rows(folder)
            params = {
                "accounts": accounts,
                "cutoffs": len(CUTOFFS),
                "usage_rows": rows["usage"],
                "threads": THREADS,
                "memory_limit": MEMORY_LIMIT,
            }
            measured = _duckdb(folder, None, repeats)
            spine_rows = _spine_rows(folder)
            note = "all families from Parquet, DuckDB, fresh process; spine built before the clock starts"
            figures.append(
                figure(
                    f"features {accounts:,} accounts x {len(CUTOFFS)} cutoffs",
                    "usage_rows_per_s",
                    rows["usage"] / measured["median_s"],
                    "usage rows/s",
                    measured,
                    {**params, "feature_rows": spine_rows},
                    note,
                )
            )
            figures.append(
                figure(
                    f"features {accounts:,} accounts x {len(CUTOFFS)} cutoffs (output)",
                    "feature_rows_per_s",
                    spine_rows / measured["median_s"],
                    "feature rows/s",
                    measured,
                    {**params, "feature_rows": spine_rows},
                    note,
                )
            )
            if accounts == pandas_size:
                # interleaved, one run of each at a time: both see the same (shared, noisy) machine
                code = PANDAS_CODE.format(bench_dir=bench_dir, folder=str(folder), cutoffs=CUTOFFS)
                duck_runs, pandas_runs = [], []
                for _ in range(repeats):
                    duck_runs.append(_duckdb(folder, ["usage"], 1))
                    pandas_runs.append(measure_python(code, repeats=1))
                duck, pandas_run = combine(duck_runs), combine(pandas_runs)
                cpu_ratio = pandas_run["median_cpu_s"] / duck["median_cpu_s"]
                p_params = {
                    **params,
                    "feature_rows": spine_rows,
                    "reference_checked": verified,
                    "pandas_cpu_s": pandas_run["median_cpu_s"],
                    "duckdb_cpu_s": duck["median_cpu_s"],
                }
                figures.append(
                    figure(
                        f"usage windows {accounts:,} accounts: pandas",
                        "usage_rows_per_s",
                        rows["usage"] / pandas_run["median_s"],
                        "usage rows/s",
                        pandas_run,
                        p_params,
                        "vectorised pandas per cutoff (bench_features.pandas_usage_features), data in memory",
                    )
                )
                figures.append(
                    figure(
                        f"usage windows {accounts:,} accounts: DuckDB",
                        "usage_rows_per_s",
                        rows["usage"] / duck["median_s"],
                        "usage rows/s",
                        duck,
                        p_params,
                        "churnml usage family only, reading Parquet",
                    )
                )
                figures.append(
                    figure(
                        f"usage windows {accounts:,} accounts: DuckDB speed-up over pandas",
                        "ratio",
                        pandas_run["median_s"] / duck["median_s"],
                        "x",
                        duck,
                        p_params,
                        "pandas median time / DuckDB median time, same data and features (runs interleaved)",
                    )
                )
                figures.append(
                    figure(
                        f"usage windows {accounts:,} accounts: DuckDB speed-up over pandas, CPU time",
                        "ratio",
                        cpu_ratio,
                        "x",
                        duck,
                        p_params,
                        "pandas median CPU s / DuckDB median CPU s (all its threads), same runs",
                    )
                )
            if accounts != CHECK_SIZE and not cache:
                shutil.rmtree(folder.parent, ignore_errors=True)
    finally:
        if not cache:
            shutil.rmtree(work, ignore_errors=True)
    return figures


def _spine_rows(folder: Path) -> int:
    from churnml.dataset.spine import build_spine

    subs = pd.read_parquet(folder / "subscriptions.parquet", columns=["account_id", "start_date", "end_date"])
    return len(build_spine(subs, CUTOFFS))


if __name__ == "__main__":  # python benchmarks/bench_features.py [--quick]
    import sys

    print(json.dumps(run("--quick" in sys.argv), indent=1))
