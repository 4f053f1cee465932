"""Reproducible runs: the pipeline run twice, each time from a clean copy, writes every committed output
byte for byte the same (dvc.lock, metrics/, plots/), so a fresh clone's first `make run` leaves git clean.

The first run is the session's built pipeline (tests/built.py, shared with the pipeline tests); the second is
a clean copy run here, so it is slow.
"""

from __future__ import annotations

import os
import platform
import subprocess
import sys
from pathlib import Path

import pytest

from churnml.checkout import copy_checkout

from built import run, stage_env
from tables import SMALL_PIPELINE as SMALL

ROOT = Path(__file__).resolve().parents[1]

pytestmark = pytest.mark.slow


def _committed_outputs(repo: Path) -> dict[str, bytes]:
    listed = subprocess.run(
        ["git", "ls-files", "dvc.lock", "metrics", "plots"],
        cwd=repo,
        capture_output=True,
        text=True,
        check=True,
    ).stdout.split()
    return {path: (repo / path).read_bytes() for path in listed if (repo / path).is_file()}


def test_two_clean_runs_write_the_same_committed_outputs(built_pipeline, tmp_path):
    env = stage_env()
    dest = tmp_path / "second"
    copy_checkout(ROOT, dest, env, overrides=SMALL)
    run(["dvc", "repro"], dest, env)
    first, second = _committed_outputs(built_pipeline.path), _committed_outputs(dest)
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


_KERNEL_SCRIPT = """
import hashlib, sys
import numpy as np, pandas as pd
from churnml.modeling.baselines import _logistic_pipeline, logistic_raw
rng = np.random.default_rng(0)
n = 6000
frame = pd.DataFrame({f"x{i}": rng.normal(size=n) * (i + 1) ** 2 for i in range(30)})
frame["x30"] = frame["x3"] * 2 + rng.normal(size=n) * 1e-3  # a near-copy, as charge and minutes
frame["segment"] = rng.choice(["smb", "mid", "ent"], size=n)
y = (frame["x0"] / 1 - frame["x1"] / 4 + rng.logistic(size=n) > 2).astype(int).to_numpy()
pipe = _logistic_pipeline([c for c in frame if c != "segment"], ["segment"], 0).fit(frame, y)
raw = logistic_raw(pipe, frame)
with_bits = pipe.decision_function(frame)
print(hashlib.sha256(raw.tobytes()).hexdigest(), hashlib.sha256(with_bits.tobytes()).hexdigest())
"""


@pytest.mark.skipif(platform.machine() not in ("x86_64", "AMD64"), reason="OpenBLAS x86 kernel names")
def test_the_logistic_baseline_gives_the_same_scores_under_two_blas_kernels():
    """The committed baseline metrics must not depend on the machine: the same fit under OpenBLAS' SSE3 and
    AVX kernels (what an older and a newer CPU pick by themselves) gives the same rounded raw scores."""
    digests = []
    for kernel in ("Prescott", "Sandybridge"):
        env = {**os.environ, "OPENBLAS_CORETYPE": kernel}
        proc = subprocess.run(
            [sys.executable, "-c", _KERNEL_SCRIPT], env=env, capture_output=True, text=True, check=True
        )
        digests.append(proc.stdout.split())
    (rounded_a, _), (rounded_b, _) = digests
    assert rounded_a == rounded_b, digests
