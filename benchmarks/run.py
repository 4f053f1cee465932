"""Run every benchmarks/bench_*.py, write benchmarks/results/<name>.json and the table in benchmarks/README.md.

Usage: python benchmarks/run.py [--quick] [--only NAME ...] [--results DIR] [--no-readme]
"""

from __future__ import annotations

import argparse
import datetime as dt
import importlib.util
import json
import os
import platform
import sys
from importlib import metadata
from pathlib import Path

HERE = Path(__file__).resolve().parent
BEGIN, END = "<!-- results:begin -->", "<!-- results:end -->"
VERSIONS = ("churnml", "duckdb", "pandas", "lightgbm", "shap", "mlflow", "dvc", "pyspark")


def machine() -> dict:
    """What the figures ran on."""
    mem_gb = os.sysconf("SC_PAGE_SIZE") * os.sysconf("SC_PHYS_PAGES") / 1024**3
    cpu = platform.processor() or platform.machine()
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                cpu = line.split(":", 1)[1].strip()
                break
    except OSError:
        pass
    versions = {}
    for pkg in VERSIONS:
        try:
            versions[pkg] = metadata.version(pkg)
        except metadata.PackageNotFoundError:
            continue
    return {
        "cpu": cpu,
        "cores": os.cpu_count(),
        "memory_gb": round(mem_gb, 1),
        "python": platform.python_version(),
        "os": f"{platform.system()} {platform.release()}",
        "versions": versions,
    }


def discover(only: list[str] | None) -> list[tuple[str, Path]]:
    """Benchmark modules, by name (bench_<name>.py)."""
    mods = sorted(HERE.glob("bench_*.py"))
    out = [(p.stem.removeprefix("bench_"), p) for p in mods]
    return [(n, p) for n, p in out if not only or n in only]


def load(path: Path):
    """Import a benchmark module from its file."""
    spec = importlib.util.spec_from_file_location(path.stem, path)
    module = importlib.util.module_from_spec(spec)
    sys.path.insert(0, str(HERE))
    spec.loader.exec_module(module)
    return module


def render_table(results_dir: Path) -> str:
    """Markdown table over every results JSON file."""
    rows = [
        "| benchmark | figure | value | median s (runs) | peak RSS MB | params | date | note |",
        "|---|---|---|---|---|---|---|---|",
    ]
    machines = {}
    for path in sorted(results_dir.glob("*.json")):
        if path.name.startswith("quality_"):  # model quality, tabulated by quality.py
            continue
        data = json.loads(path.read_text())
        m = data["machine"]
        machines[f"{m['cpu']}, {m['cores']} cores, {m['memory_gb']} GB"] = m
        for f in data["figures"]:
            params = ", ".join(f"{k}={v}" for k, v in f.get("params", {}).items())
            runs = ", ".join(f"{r:g}" for r in f.get("runs_s", []))
            rows.append(
                f"| {data['benchmark']} | {f['name']} | {f['value']:,.3g} {f['unit']} | {f['median_s']:.3g} ({runs}) | "
                f"{f['peak_rss_mb']:,.0f} | {params} | {data['date'][:10]} | {f.get('note', '')} |"
            )
    head = []
    for desc, m in machines.items():
        vers = ", ".join(f"{k} {v}" for k, v in m["versions"].items())
        head.append(f"Machine: {desc}; Python {m['python']}; {vers}.")
    return "\n".join([*head, "", *rows])


def write_readme(results_dir: Path) -> None:
    """Replace the results block of benchmarks/README.md."""
    readme = HERE / "README.md"
    text = readme.read_text() if readme.exists() else f"# Benchmarks\n\n{BEGIN}\n{END}\n"
    start, end = text.index(BEGIN) + len(BEGIN), text.index(END)
    readme.write_text(text[:start] + "\n" + render_table(results_dir) + "\n" + text[end:])


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--quick", action="store_true", help="tiny sizes (a smoke run)")
    parser.add_argument("--only", nargs="*", help="benchmark names (bench_<name>.py)")
    parser.add_argument("--results", type=Path, default=HERE / "results")
    parser.add_argument("--no-readme", action="store_true")
    args = parser.parse_args(argv)
    args.results.mkdir(parents=True, exist_ok=True)
    info = machine()
    for name, path in discover(args.only):
        print(f"== {name}", flush=True)
        figures = load(path).run(quick=args.quick)
        for f in figures:
            print(
                f"   {f['name']}: {f['value']:,.3g} {f['unit']} (median {f['median_s']:.3g} s, peak {f['peak_rss_mb']:,.0f} MB)"
            )
        out = {
            "benchmark": name,
            "quick": args.quick,
            "date": dt.datetime.now(dt.UTC).isoformat(timespec="seconds"),
            "machine": info,
            "figures": figures,
        }
        (args.results / f"{name}.json").write_text(json.dumps(out, indent=2) + "\n")
    if not args.no_readme:
        write_readme(args.results)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
