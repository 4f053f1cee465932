"""Measuring helpers for the benchmarks: wall time and peak memory of fresh processes, medians of repeats."""

from __future__ import annotations

import json
import os
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path


def _run_once(argv: list[str], env: dict | None, cwd: str | Path | None) -> tuple[float, float, str]:
    """Run argv once; return (wall seconds, peak RSS in MB of that process tree's largest member, stdout)."""
    full_env = {**os.environ, **(env or {})}
    with tempfile.TemporaryFile() as out:
        start = time.perf_counter()
        proc = subprocess.Popen(argv, env=full_env, cwd=cwd, stdout=out, stderr=subprocess.PIPE)
        # wait4 gives the child's own rusage: ru_maxrss is its peak resident set (KiB on Linux)
        _, status, usage = os.wait4(proc.pid, 0)
        wall = time.perf_counter() - start
        stderr = proc.stderr.read().decode(errors="replace") if proc.stderr else ""
        if proc.stderr:
            proc.stderr.close()
        proc.returncode = os.waitstatus_to_exitcode(status)
        out.seek(0)
        stdout = out.read().decode(errors="replace")
    if proc.returncode != 0:
        raise RuntimeError(f"benchmark command failed ({proc.returncode}): {' '.join(argv)}\n{stderr[-2000:]}")
    return wall, usage.ru_maxrss / 1024.0, stdout


def _timed_from_stdout(stdout: str) -> float | None:
    for line in reversed(stdout.strip().splitlines()):
        line = line.strip()
        if line.startswith("{") and '"timed_s"' in line:
            return float(json.loads(line)["timed_s"])
    return None


def measure_command(
    argv: list[str], repeats: int = 3, env: dict | None = None, cwd: str | Path | None = None
) -> dict:
    """Run a command ``repeats`` times in fresh processes.

    Returns:
        {"median_s", "runs_s", "peak_rss_mb"}: the median wall time (or of the ``{"timed_s": x}`` JSON line the
        command printed last, when it prints one), every run, and the largest peak RSS seen.
    """
    runs, peaks = [], []
    for _ in range(repeats):
        wall, peak, stdout = _run_once(argv, env, cwd)
        timed = _timed_from_stdout(stdout)
        runs.append(round(timed if timed is not None else wall, 4))
        peaks.append(peak)
    return {"median_s": statistics.median(runs), "runs_s": runs, "peak_rss_mb": round(max(peaks), 1)}


def measure_python(code: str, repeats: int = 3, env: dict | None = None, cwd: str | Path | None = None) -> dict:
    """:func:`measure_command` for ``python -c code`` in a fresh interpreter of this environment."""
    return measure_command([sys.executable, "-c", code], repeats=repeats, env=env, cwd=cwd)


def figure(name: str, metric: str, value: float, unit: str, measured: dict, params: dict, note: str = "") -> dict:
    """One benchmark figure in the shape run.py writes."""
    return {
        "name": name,
        "metric": metric,
        "value": round(float(value), 3),
        "unit": unit,
        "median_s": measured["median_s"],
        "runs_s": measured["runs_s"],
        "peak_rss_mb": measured["peak_rss_mb"],
        "params": params,
        "note": note,
    }
