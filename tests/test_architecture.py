"""The package's layers and acyclic subpackages, as pyproject.toml's import-linter contracts state them.

The contracts are checked on the real package, and shown to fail on a copy of it with an upward import or a
cycle injected: a contract that cannot fail would protect nothing.
"""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
PACKAGE = ROOT / "src" / "churnml"


def lint_imports(src: Path) -> subprocess.CompletedProcess:
    """``lint-imports`` on the churnml found under ``src``, with the repository's contracts."""
    script = Path(sys.executable).with_name("lint-imports")
    command = [str(script)] if script.exists() else ["lint-imports"]
    env = {**os.environ, "PYTHONPATH": str(src)}
    return subprocess.run(
        [*command, "--config", str(ROOT / "pyproject.toml"), "--no-cache"],
        cwd=src,
        env=env,
        capture_output=True,
        text=True,
        timeout=120,
    )


def inject(copy: Path, module: str, line: str) -> None:
    """Add ``line`` after the ``from __future__`` import of ``module`` in the copied package."""
    path = copy.joinpath(*module.split(".")).with_suffix(".py")
    text = path.read_text()
    anchor = "from __future__ import annotations\n"
    assert anchor in text, path
    path.write_text(text.replace(anchor, anchor + line + "\n", 1))


@pytest.fixture
def copy(tmp_path) -> Path:
    shutil.copytree(PACKAGE, tmp_path / "churnml", ignore=shutil.ignore_patterns("__pycache__"))
    return tmp_path


def test_the_package_keeps_its_contracts():
    result = lint_imports(ROOT / "src")
    assert result.returncode == 0, result.stdout + result.stderr
    assert "0 broken" in result.stdout


def test_an_upward_import_breaks_the_layers(copy):
    inject(copy, "churnml.contract.schemas", "from churnml.report import portfolio  # noqa: F401")
    result = lint_imports(copy)
    assert result.returncode != 0
    assert "churnml.contract.schemas -> churnml.report.portfolio" in result.stdout, result.stdout


def test_a_cycle_inside_a_subpackage_is_caught(copy):
    # model imports split; split importing model closes a cycle inside one layer, which only the
    # acyclic-siblings contract sees.
    inject(copy, "churnml.modeling.split", "import churnml.modeling.model  # noqa: F401")
    result = lint_imports(copy)
    assert result.returncode != 0
    assert "No cycles are allowed in churnml.modeling" in result.stdout, result.stdout
    assert ".split -> .model" in result.stdout or ".model -> .split" in result.stdout, result.stdout


def test_a_stage_script_under_a_python_without_churnml_says_so_in_one_line():
    """DVC runs `python pipelines/<stage>.py` with whatever `python` is first on PATH; without the project's
    environment each stage stops with one line (pipelines/_require.py), not an import traceback."""
    env = {k: v for k, v in os.environ.items() if k != "PYTHONPATH"}
    scripts = sorted(p for p in (ROOT / "pipelines").glob("*.py") if not p.name.startswith("_"))
    assert len(scripts) > 10
    for script in scripts:
        # -S: no site-packages, so neither the installed churnml nor its dependencies
        done = subprocess.run([sys.executable, "-S", str(script)], env=env, capture_output=True, text=True)
        assert done.returncode == 1, (script.name, done.stderr)
        assert done.stderr.startswith("error: this python (") and done.stderr.count("\n") == 1, done.stderr
        assert "cannot import churnml" in done.stderr and "source .venv/bin/activate" in done.stderr
