"""Reproducible runs: the pipeline run twice, each time from a clean copy, writes every committed output
byte for byte the same (dvc.lock, metrics/, plots/), so a fresh clone's first `make run` leaves git clean.

The small portfolio of the pipeline test; two full runs, so it is slow.
"""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest

from churnml.checkout import copy_checkout, isolated_env

from tables import SMALL_PIPELINE as SMALL

ROOT = Path(__file__).resolve().parents[1]
BIN = Path(sys.executable).parent

pytestmark = pytest.mark.slow


def _committed_outputs(repo: Path, env: dict) -> dict[str, bytes]:
    subprocess.run(
        ["dvc", "repro"], cwd=repo, env=env, capture_output=True, text=True, check=True, timeout=1800
    )
    listed = subprocess.run(
        ["git", "ls-files", "dvc.lock", "metrics", "plots"],
        cwd=repo,
        capture_output=True,
        text=True,
        check=True,
    ).stdout.split()
    return {path: (repo / path).read_bytes() for path in listed if (repo / path).is_file()}


def test_two_clean_runs_write_the_same_committed_outputs(tmp_path):
    env = isolated_env(BIN)
    runs = []
    for name in ("first", "second"):
        dest = tmp_path / name
        copy_checkout(ROOT, dest, env, overrides=SMALL)
        runs.append(_committed_outputs(dest, env))
    first, second = runs
    assert set(first) == set(second)
    differ = sorted(path for path in first if first[path] != second[path])
    shown = ""
    if "dvc.lock" in differ:
        import difflib

        lines = difflib.unified_diff(
            first["dvc.lock"].decode().splitlines(),
            second["dvc.lock"].decode().splitlines(),
            lineterm="",
            n=6,
        )
        shown = "\n".join(list(lines)[:60])
    assert not differ, f"these committed outputs differ between two clean runs: {differ}\n{shown}"
