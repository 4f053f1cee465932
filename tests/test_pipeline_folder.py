"""The README's own-folder recipe on a fresh copy of the repository: `churnml params data=folder
data.input_dir=DIR`, then `dvc repro`, on a folder written by `churnml generate`. It builds its own pipeline (a
user's folder replaces the simulator), so it does not wait for the session's built one.
"""

from __future__ import annotations

import pytest

from churnml.checkout import copy_checkout

from built import ROOT, guarded_env
from built import run as _run
from tables import SMALL_PIPELINE as SMALL

pytestmark = pytest.mark.slow


def test_the_readme_own_folder_recipe_runs_without_the_simulator(tmp_path):
    """README: `churnml params data=folder data.input_dir=DIR`, then `dvc repro`, on a folder written by
    `churnml generate`; nothing of the simulator runs and no truth exists to be read."""
    import json
    import shutil

    dest, env = tmp_path / "repo", guarded_env(tmp_path / "netguard.log")
    copy_checkout(ROOT, dest, env, overrides=SMALL)  # a fresh checkout, with the small model settings
    folder = tmp_path / "own" / "tables"
    _run(["churnml", "generate", "--accounts", "300", "--months", "18", "--out", str(folder)], dest, env)
    shutil.rmtree(folder.parent / "truth")  # a user's folder has no ground truth
    _run(["churnml", "params", "data=folder", f"data.input_dir={folder}"], dest, env)
    assert "generate" not in _run(["dvc", "stage", "list"], dest, env).stdout
    proc = _run(["dvc", "repro"], dest, env)
    assert "generate" not in proc.stdout
    assert not (dest / "data" / "truth").exists()
    metrics = json.loads((dest / "metrics" / "churn.json").read_text())
    assert "oracle" not in metrics and metrics["test"]["roc_auc"] > 0.5
    assert (dest / "reports" / "index.html").is_file()
