"""One `dvc repro` of the small portfolio per test session, shared by every xdist worker, and cheap copies of it.

The end-to-end tests (test_pipeline*.py, test_reproducible.py) each need a repository in which the whole
pipeline has run. Running it once per file cost one full pipeline per file; here the first worker that asks
builds it under a file lock (pytest-xdist's documented recipe for a once-per-session fixture) and the others
wait for it and reuse it. The built repository is read-only by convention: a test that changes anything works
on :func:`clone_built`, a copy whose MLflow store points at the copy's own artifacts.
"""

from __future__ import annotations

import os
import shutil
import sqlite3
import subprocess
import sys
import time
from dataclasses import dataclass
from pathlib import Path

from filelock import FileLock

from churnml.checkout import copy_checkout, isolated_env

from tables import SMALL_PIPELINE

ROOT = Path(__file__).resolve().parents[1]
BIN = Path(sys.executable).parent
WARM = ROOT / "tests" / "warm"
REPRO_TIMEOUT_S = 1800


@dataclass(frozen=True)
class Built:
    """A repository where `dvc repro` ran on the small portfolio; ``env`` runs commands in it (and its copies)."""

    path: Path
    env: dict[str, str]
    netguard_log: Path


def run(cmd: list[str], cwd: Path, env: dict, check: bool = True, timeout: float = REPRO_TIMEOUT_S):
    """Run ``cmd`` in ``cwd``; on failure (with ``check``) raise with the tail of its output."""
    proc = subprocess.run(cmd, cwd=cwd, env=env, capture_output=True, text=True, timeout=timeout)
    if check and proc.returncode != 0:
        raise AssertionError(
            f"{' '.join(cmd)} failed ({proc.returncode}):\n{proc.stdout[-3000:]}\n{proc.stderr[-3000:]}"
        )
    return proc


def stage_env(**extra: str) -> dict[str, str]:
    """The isolated environment for commands in a copy (:func:`churnml.checkout.isolated_env`); while the
    session's warm interpreter runs (tests/conftest.py), its ``python`` shim first on PATH, so the stage scripts
    DVC starts skip the imports (tests/warm/server.py)."""
    env = isolated_env(BIN, **extra)
    if env.get("CHURNML_WARM_SOCKET"):
        env["PATH"] = f"{WARM / 'bin'}{os.pathsep}{env['PATH']}"
    return env


def wait_for_warm(path: Path, timeout_s: float = 60) -> None:
    """Until the warm server accepts (its imports take a few seconds; the shim runs cold meanwhile)."""
    deadline = time.monotonic() + timeout_s
    while not path.exists():
        if time.monotonic() > deadline:
            raise AssertionError(f"the warm server did not start: {path.parent / 'server.log'}")
        time.sleep(0.1)


def guarded_env(netguard_log: Path) -> dict[str, str]:
    """The isolated environment with the network guard (tests/netguard) loaded into every Python process."""
    return stage_env(PYTHONPATH=str(ROOT / "tests" / "netguard"), CHURNML_NETGUARD_LOG=str(netguard_log))


def build_once(shared: Path) -> Built:
    """The built repository under ``shared`` (a folder every worker sees), building it if no worker has.

    A failed build is recorded, so the other workers fail with its message instead of building again.
    """
    repo, done, failed = shared / "built" / "repo", shared / "built" / "done", shared / "built" / "failed"
    built = Built(repo, guarded_env(shared / "built" / "netguard.log"), shared / "built" / "netguard.log")
    (shared / "built").mkdir(parents=True, exist_ok=True)
    with FileLock(str(shared / "built" / "lock")):
        if failed.exists():
            raise AssertionError(f"the shared pipeline build failed in another worker:\n{failed.read_text()}")
        if not done.exists():
            try:
                copy_checkout(ROOT, repo, built.env, overrides=SMALL_PIPELINE)
                run(["dvc", "repro"], repo, built.env)
            except Exception as exc:
                failed.write_text(str(exc))
                raise
            done.write_text("ok\n")
    return built


def _repoint_mlflow(db: Path, old: Path, new: Path) -> None:
    """Replace ``old`` by ``new`` in every text value of the MLflow store (artifact locations, run and model
    URIs are absolute paths and file URIs of the folder they were made in)."""
    with sqlite3.connect(db) as con:
        tables = [r[0] for r in con.execute("select name from sqlite_master where type = 'table'")]
        for table in tables:
            columns = [
                r[1]
                for r in con.execute(f'pragma table_info("{table}")')
                if "CHAR" in r[2].upper() or "TEXT" in r[2].upper()
            ]
            for col in columns:
                con.execute(
                    f'update "{table}" set "{col}" = replace("{col}", ?, ?) where instr("{col}", ?) > 0',
                    [str(old), str(new), str(old)],
                )


def clone_built(built: Built, dest: Path) -> Path:
    """A private copy of the built repository at ``dest`` (git history, DVC cache, outputs, MLflow store)."""
    # DVC's tmp holds locks, the experiment queue and a state database keyed by inode: rebuilt on demand
    shutil.copytree(
        built.path, dest, symlinks=True, ignore=lambda d, names: ["tmp"] if d.endswith(".dvc") else []
    )
    db = dest / "mlflow.db"
    if db.is_file():
        _repoint_mlflow(db, built.path.resolve(), dest.resolve())
    return dest


# ---------------------------------------------------------------- the MLflow store of a built repository


def mlflow_rows(dest: Path, sql: str, args: list) -> list[tuple]:
    """Rows of ``sql`` on the repository's MLflow store (read directly: no MLflow client in the test)."""
    with sqlite3.connect(dest / "mlflow.db") as con:
        return con.execute(sql, args).fetchall()


def mlflow_run_count(dest: Path) -> int:
    return mlflow_rows(dest, "select count(*) from runs", [])[0][0]


def champion(dest: Path, target: str) -> str | None:
    """The version the ``champion`` alias of ``target``'s registered model points at, or None."""
    if not (dest / "mlflow.db").is_file():  # no run has logged to this copy's store yet
        return None
    rows = mlflow_rows(
        dest,
        "select version from registered_model_aliases where name = ? and alias = 'champion'",
        [f"churnml-{target}"],
    )
    return str(rows[0][0]) if rows else None


def latest(dest: Path, target: str) -> str:
    rows = mlflow_rows(dest, "select max(version) from model_versions where name = ?", [f"churnml-{target}"])
    return str(rows[0][0])


def version_tags(dest: Path, target: str, version: str) -> dict[str, str]:
    rows = mlflow_rows(
        dest,
        "select key, value from model_version_tags where name = ? and version = ?",
        [f"churnml-{target}", version],
    )
    return dict(rows)
