"""Measuring helpers for the benchmarks: wall time and peak memory of fresh processes, medians of repeats."""

from __future__ import annotations

import json
import os
import re
import statistics
import subprocess
import sys
import tempfile
import threading
import time
from collections.abc import Sequence
from pathlib import Path

TREE_SAMPLE_S = 0.1  # sampling interval of a process tree's memory


def _snapshot() -> tuple[dict[int, list[int]], dict[int, int], dict[int, int]]:
    """(children of each pid, resident KiB of each pid, ``VmHWM`` KiB of each pid), from Linux /proc (empty
    elsewhere). ``VmHWM`` is a process's own peak: unlike wait4's ``ru_maxrss`` it starts afresh at exec, while
    ``ru_maxrss`` carries the parent's resident size at fork over."""
    children: dict[int, list[int]] = {}
    rss: dict[int, int] = {}
    hwm: dict[int, int] = {}
    for entry in Path("/proc").iterdir() if Path("/proc/self/status").exists() else ():
        if not entry.name.isdigit():
            continue
        try:
            status = (entry / "status").read_text()
        except OSError:  # gone meanwhile
            continue
        fields = dict(line.split(":", 1) for line in status.splitlines() if ":" in line)
        pid, ppid = int(entry.name), int(fields.get("PPid", "0").strip() or 0)
        children.setdefault(ppid, []).append(pid)
        rss[pid] = int(fields.get("VmRSS", "0 kB").split()[0])  # absent for zombies and kernel threads
        hwm[pid] = int(fields.get("VmHWM", "0 kB").split()[0])
    return children, rss, hwm


def _subtree(children: dict[int, list[int]], root: int) -> list[int]:
    out, stack = [], [root]
    while stack:
        pid = stack.pop()
        out.append(pid)
        stack.extend(children.get(pid, ()))
    return out


# A DVC stage's process: `python pipelines/<stage>.py [--target <item>]` (dvc.yaml's commands)
STAGE_CMD = re.compile(r"pipelines/(\w+)\.py(?:\s+--target\s+(\w+))?")


def _stage_of(pid: int) -> str | None:
    try:
        cmd = (Path("/proc") / str(pid) / "cmdline").read_bytes().replace(b"\0", b" ").decode()
    except OSError:
        return None
    match = STAGE_CMD.search(cmd)
    if match is None or "python" not in cmd.split(" ", 1)[0]:
        return None
    return match.group(1) + (f"@{match.group(2)}" if match.group(2) else "")


class _TreeSampler(threading.Thread):
    """Samples a process tree until stopped; ``peak_kib``: the largest summed RSS, or the root's own peak.

    With ``stages``, also each DVC stage's own figures (the subtree of the process running its command):
    ``stage_peak_kib`` (largest summed RSS) and ``stage_span`` (first and last time it was seen, seconds from
    the start), so one ``dvc repro`` tells which stage set its peak and how long each took.
    """

    def __init__(self, pid: int, interval_s: float, stages: bool = False) -> None:
        super().__init__(daemon=True)
        self.pid, self.interval_s, self.peak_kib, self.stages = pid, interval_s, 0, stages
        self.stage_peak_kib: dict[str, int] = {}
        self.stage_span: dict[str, list[float]] = {}
        self.labels: dict[int, str | None] = {}  # pid -> stage, read once per process
        self.running: set[str] = set()
        self.done = threading.Event()
        self.start_t = time.perf_counter()

    def run(self) -> None:
        while not self.done.is_set():
            children, rss, hwm = _snapshot()
            tree = _subtree(children, self.pid)
            self.peak_kib = max(self.peak_kib, sum(rss.get(p, 0) for p in tree), hwm.get(self.pid, 0))
            if self.stages:
                self._sample_stages(children, rss, tree)
            self.done.wait(self.interval_s)

    def _sample_stages(self, children: dict[int, list[int]], rss: dict[int, int], tree: list[int]) -> None:
        now = time.perf_counter() - self.start_t
        running = set()
        for pid in tree:
            if pid not in self.labels:
                self.labels[pid] = _stage_of(pid)
            label = self.labels[pid]
            if label is None:
                continue
            total = sum(rss.get(p, 0) for p in _subtree(children, pid))
            self.stage_peak_kib[label] = max(self.stage_peak_kib.get(label, 0), total)
            span = self.stage_span.setdefault(label, [now, now])
            span[1] = now
            running.add(label)
        # a stage that ended: one progress line (a run at scale takes hours; its figures so far survive a kill)
        for label in self.running - running:
            span = self.stage_span[label]
            print(
                f"  stage {label}: {span[1] - span[0]:.0f} s, peak {self.stage_peak_kib[label] / 1024:.0f} MB",
                file=sys.stderr,
                flush=True,
            )
        self.running = running


def _run_once(
    argv: list[str], env: dict | None, cwd: str | Path | None, tree: bool = False, stages: bool = False
) -> tuple[float, float, str, dict]:
    """Run argv once; return (wall seconds, peak RSS in MB, stdout, each DVC stage's figures when ``stages``).

    The peak is the process's own (from wait4); with ``tree`` it is the largest summed RSS of the process
    and all its descendants, sampled every 0.1 s (a JVM or worker processes started by the command count
    too), or the process's own ``VmHWM`` when larger. ``tree`` also leaves out what wait4 adds: on Linux a
    child's ``ru_maxrss`` starts from the parent's resident size at fork, so a benchmark process that grew
    during preparation inflates the peak of every command it starts.
    """
    full_env = {**os.environ, **(env or {})}
    with tempfile.TemporaryFile() as out:
        start = time.perf_counter()
        proc = subprocess.Popen(argv, env=full_env, cwd=cwd, stdout=out, stderr=subprocess.PIPE)
        sampler = _TreeSampler(proc.pid, TREE_SAMPLE_S, stages) if tree or stages else None
        if sampler is not None:
            sampler.start()
        # stderr is drained meanwhile: a chatty child (a JVM's log) must not block on a full pipe
        err_chunks: list[bytes] = []

        def read_stderr() -> None:
            while chunk := proc.stderr.read1(65536):
                err_chunks.append(chunk)

        drain = threading.Thread(target=read_stderr, daemon=True)
        drain.start()
        # wait4 gives the child's own rusage: ru_maxrss is its peak resident set (KiB on Linux)
        _, status, usage = os.wait4(proc.pid, 0)
        wall = time.perf_counter() - start
        if sampler is not None:
            sampler.done.set()
            sampler.join()
        drain.join(timeout=5)  # a grandchild still holding stderr open must not hang the benchmark
        stderr = b"".join(err_chunks).decode(errors="replace")
        proc.stderr.close()
        proc.returncode = os.waitstatus_to_exitcode(status)
        out.seek(0)
        stdout = out.read().decode(errors="replace")
    if proc.returncode != 0:
        raise RuntimeError(
            f"benchmark command failed ({proc.returncode}): {' '.join(argv)}\n{stderr[-2000:]}"
        )
    peak_kib = sampler.peak_kib if sampler is not None else usage.ru_maxrss
    per_stage = (
        {
            label: {"peak_rss_mb": round(kib / 1024.0, 1), "seconds": round(span[1] - span[0], 1)}
            for label in sampler.stage_peak_kib
            for kib, span in [(sampler.stage_peak_kib[label], sampler.stage_span[label])]
        }
        if stages
        else {}
    )
    return wall, peak_kib / 1024.0, stdout, per_stage


def _timed_from_stdout(stdout: str, key: str = "timed_s") -> float | None:
    for line in reversed(stdout.strip().splitlines()):
        line = line.strip()
        if line.startswith("{") and '"timed_s"' in line:
            value = json.loads(line).get(key)
            return None if value is None else float(value)
    return None


def measure_command(
    argv: list[str],
    repeats: int = 3,
    env: dict | None = None,
    cwd: str | Path | None = None,
    tree: bool = False,
    keys: Sequence[str] = (),
    stages: bool = False,
) -> dict:
    """Run a command ``repeats`` times in fresh processes.

    ``tree=True`` counts the memory of the processes the command starts too (a Spark JVM and its Python
    workers), summed over the process tree (see :func:`_run_once`).

    Returns:
        {"median_s", "runs_s", "peak_rss_mb"}: the median wall time (or of the ``{"timed_s": x}`` JSON line the
        command printed last, when it prints one), every run, and the largest peak RSS seen; plus
        "median_cpu_s" and "cpu_runs_s" when that line also carries ``"cpu_s"`` (the timed section's CPU
        seconds, every thread: steadier than wall time on a shared machine); and, for each of ``keys`` (other
        numbers on that line, such as the time of one step), "keys" (its median) and "key_runs" (every run);
        with ``stages`` (a ``dvc repro``; implies ``tree``), "stages": per run, each stage's peak RSS (its
        own process tree) and seconds (sampled, to 0.1 s).
    """
    runs, peaks, cpus, per_stage = [], [], [], []
    key_runs: dict[str, list[float]] = {k: [] for k in keys}
    for _ in range(repeats):
        wall, peak, stdout, stage_figures = _run_once(argv, env, cwd, tree, stages)
        per_stage.append(stage_figures)
        timed = _timed_from_stdout(stdout)
        runs.append(round(timed if timed is not None else wall, 4))
        peaks.append(peak)
        cpu = _timed_from_stdout(stdout, "cpu_s")
        if cpu is not None:
            cpus.append(round(cpu, 4))
        for key in keys:
            value = _timed_from_stdout(stdout, key)
            if value is None:
                raise RuntimeError(f"benchmark command printed no {key!r}: {' '.join(argv)[:200]}")
            key_runs[key].append(round(value, 4))
    out = {"median_s": statistics.median(runs), "runs_s": runs, "peak_rss_mb": round(max(peaks), 1)}
    if len(cpus) == len(runs):
        out |= {"median_cpu_s": statistics.median(cpus), "cpu_runs_s": cpus}
    if keys:
        out |= {"keys": {k: statistics.median(v) for k, v in key_runs.items()}, "key_runs": key_runs}
    if stages:
        out["stages"] = per_stage
    return out


def combine(measured: list[dict]) -> dict:
    """Single measurements (taken interleaved with another command's) as one ``measure_command`` result."""
    runs = [r for m in measured for r in m["runs_s"]]
    out = {
        "median_s": statistics.median(runs),
        "runs_s": runs,
        "peak_rss_mb": max(m["peak_rss_mb"] for m in measured),
    }
    if all("cpu_runs_s" in m for m in measured):
        cpus = [c for m in measured for c in m["cpu_runs_s"]]
        out |= {"median_cpu_s": statistics.median(cpus), "cpu_runs_s": cpus}
    return out


def measure_python(
    code: str,
    repeats: int = 3,
    env: dict | None = None,
    cwd: str | Path | None = None,
    tree: bool = False,
    keys: Sequence[str] = (),
) -> dict:
    """:func:`measure_command` for ``python -c code`` in a fresh interpreter of this environment."""
    return measure_command(
        [sys.executable, "-c", code], repeats=repeats, env=env, cwd=cwd, tree=tree, keys=keys
    )


def figure(
    name: str, metric: str, value: float, unit: str, measured: dict, params: dict, note: str = ""
) -> dict:
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


DEFAULT_PG_URL = "postgresql+psycopg://postgres@127.0.0.1:5432/test"


def postgres_url() -> str | None:
    """CHURNML_PG_URL (or the CI default) when a PostgreSQL server answers there, else None."""
    import sqlalchemy as sa

    url = os.environ.get("CHURNML_PG_URL") or DEFAULT_PG_URL
    try:
        engine = sa.create_engine(url, connect_args={"connect_timeout": 3})
        with engine.connect() as conn:
            conn.execute(sa.text("select 1"))
        engine.dispose()
    except Exception:
        return None
    return url


def warehouse_backends(duckdb_url: str) -> list[tuple[str, str]]:
    """(backend, URL) to measure: DuckDB at ``duckdb_url``, and PostgreSQL when one answers (else said, skipped)."""
    backends = [("duckdb", duckdb_url)]
    pg_url = postgres_url()
    if pg_url:
        backends.append(("postgresql", pg_url))
    else:
        print("   postgresql: not reachable (CHURNML_PG_URL), skipped")
    return backends


def drop_schema(url: str, schema: str) -> None:
    """Drop a benchmark's PostgreSQL schema and everything in it."""
    import sqlalchemy as sa

    engine = sa.create_engine(url)
    with engine.begin() as conn:
        conn.execute(sa.text(f'DROP SCHEMA IF EXISTS "{schema}" CASCADE'))
    engine.dispose()
