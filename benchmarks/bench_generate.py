"""Default data: `churnml generate` for 100,000 accounts (2,000 quick), all tables' rows per second and peak memory."""

from __future__ import annotations

import shutil
import sys
import tempfile
from pathlib import Path

import pyarrow.parquet as pq

from harness import figure, measure_command

N_ACCOUNTS, N_ACCOUNTS_QUICK = 100_000, 2_000
SEED = 1


def _rows(folder: Path) -> dict[str, int]:
    """Rows per Parquet file, from the footers (nothing is read)."""
    return {p.stem: pq.ParquetFile(p).metadata.num_rows for p in sorted(folder.glob("*.parquet"))}


def run(quick: bool) -> list[dict]:
    """Time the CLI in a fresh process (import and writing included) and count what it wrote."""
    accounts = N_ACCOUNTS_QUICK if quick else N_ACCOUNTS
    repeats = 1 if quick else 3
    churnml = Path(sys.executable).with_name("churnml")
    work = Path(tempfile.mkdtemp(prefix="bench_generate_"))
    try:
        raw, truth = work / "raw", work / "truth"
        argv = [str(churnml), "generate", "--accounts", str(accounts), "--seed", str(SEED)]
        measured = measure_command([*argv, "--out", str(raw), "--truth", str(truth)], repeats=repeats)
        rows = _rows(raw)
        truth_rows = _rows(truth)
        size_mb = sum(p.stat().st_size for p in raw.glob("*.parquet")) / 1e6
    finally:
        shutil.rmtree(work, ignore_errors=True)
    total = sum(rows.values())
    return [
        figure(
            f"generate {accounts:,} accounts",
            "rows_per_s",
            total / measured["median_s"],
            "rows/s",
            measured,
            {
                "accounts": accounts,
                "seed": SEED,
                "months": 24,
                "rows": total,
                "usage_rows": rows.get("usage", 0),
                "truth_rows": sum(truth_rows.values()),
                "parquet_mb": round(size_mb, 1),
            },
            "churnml generate (8 tables + ground truth with Monte Carlo probabilities), fresh process",
        )
    ]
