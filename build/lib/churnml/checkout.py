"""A fresh copy of a churnml checkout, as its own git repository, to run the whole pipeline in isolation.

Used by the pipeline test and the pipeline benchmark (development only: a user's checkout is never touched).
It lives in the package, not in tests/, because benchmarks do not import from tests and both need it.
"""

from __future__ import annotations

import os
import shutil
import subprocess
from collections.abc import Mapping, Sequence
from pathlib import Path

import yaml

SKIPPED = ("notebooks/", "benchmarks/results")  # not needed by the pipeline, and large


def isolated_env(bin_dir: Path, **extra: str) -> dict[str, str]:
    """This process's environment for commands in a copy: no MLflow/DVC settings leak in, telemetry off,
    ``bin_dir`` first on PATH, a git identity; ``extra`` added last (PYTHONPATH is prepended, not replaced,
    so a checkout run through PYTHONPATH keeps running its own code)."""
    env = {k: v for k, v in os.environ.items() if not k.startswith(("MLFLOW_", "DVC_"))}
    env.update(
        {
            "PATH": f"{bin_dir}{os.pathsep}{os.environ['PATH']}",
            "MLFLOW_DISABLE_TELEMETRY": "true",
            "DO_NOT_TRACK": "1",
            "DVC_NO_ANALYTICS": "1",
            "GIT_AUTHOR_NAME": "churnml",
            "GIT_AUTHOR_EMAIL": "churnml@example.com",
            "GIT_COMMITTER_NAME": "churnml",
            "GIT_COMMITTER_EMAIL": "churnml@example.com",
        }
    )
    for key, value in extra.items():
        if key == "PYTHONPATH" and os.environ.get("PYTHONPATH"):
            value = f"{value}{os.pathsep}{os.environ['PYTHONPATH']}"
        env[key] = value
    return env


def local_overlay(overrides: Sequence[str]) -> str:
    """``key.sub=value`` overrides as the git-ignored ``conf/local/local.yaml`` a user would write."""
    overlay: dict = {}
    for override in overrides:
        key, value = override.split("=", 1)
        *parents, leaf = key.split(".")
        node = overlay
        for part in parents:
            node = node.setdefault(part, {})
        node[leaf] = yaml.safe_load(value)
    return "# @package _global_\n" + yaml.safe_dump(overlay)


def copy_checkout(
    root: Path, dest: Path, env: Mapping[str, str], *, overrides: Sequence[str] = (), timeout_s: float = 300
) -> None:
    """Copy the tracked (and untracked, not ignored) files of ``root`` to ``dest``, make it a git repository
    with one commit, and compose its params.yaml (with ``overrides`` through ``conf/local``).

    Raises:
        RuntimeError: when a setup command fails (its output attached).
    """
    root, dest = Path(root), Path(dest)
    files = subprocess.run(
        ["git", "ls-files", "-co", "--exclude-standard"], cwd=root, capture_output=True, text=True, check=True
    )
    for rel in files.stdout.splitlines():
        src = root / rel
        if src.is_file() and not src.is_symlink() and not rel.startswith(SKIPPED):
            (dest / rel).parent.mkdir(parents=True, exist_ok=True)
            shutil.copy2(src, dest / rel)
    if overrides:
        (dest / "conf" / "local").mkdir(parents=True, exist_ok=True)
        (dest / "conf" / "local" / "local.yaml").write_text(local_overlay(overrides))
    for cmd in (
        ["git", "init", "-q", "-b", "main"],
        ["churnml", "params"],
        ["git", "add", "-A"],
        ["git", "commit", "-qm", "copy"],
    ):
        proc = subprocess.run(cmd, cwd=dest, env=dict(env), capture_output=True, text=True, timeout=timeout_s)
        if proc.returncode != 0:
            raise RuntimeError(
                f"{' '.join(cmd)} failed ({proc.returncode}):\n{proc.stdout[-2000:]}\n{proc.stderr[-2000:]}"
            )
