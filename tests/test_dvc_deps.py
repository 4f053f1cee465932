"""dvc.yaml against the code: each stage depends on every churnml module it runs, and its paths are the config's.

How "every module it runs" is computed: the stage's entry is ``pipelines/<stage>.py`` (its ``cmd``); its churnml
imports, and everything those import in turn (grimp's graph counts imports inside functions too), plus each
module's parent packages (Python runs their ``__init__`` on the way) make the import closure. A module of the
closure not under one of the stage's ``deps`` is a change DVC would not see.

The touch test (editing the feature SQL re-runs build_features and what follows) has two halves, chosen to be
cheap and still faithful. (1) Which stages depend on ``features/sql.py``, and which follow them, is read from
the resolved dvc.yaml through DVC's own ``Repo`` API (every stage, no run needed). (2) One real ``dvc status``
proves DVC itself reacts: in a minimal copy (dvc.yaml, params.yaml, pipelines/ and src/, no git), with
placeholder files for build_features' data deps and outputs, ``dvc commit`` locks that one stage, ``dvc
status`` says it is up to date, and after a comment is appended to ``features/sql.py`` it says it changed. A
full ``dvc repro`` for the same proof would take minutes; locking every stage with placeholders would only
repeat (1).
"""

from __future__ import annotations

import ast
import importlib.util
import shutil
import subprocess
import sys
from pathlib import Path, PurePosixPath

import pytest

grimp = pytest.importorskip("grimp")

ROOT = Path(__file__).resolve().parents[1]
BIN = Path(sys.executable).parent
SQL = "src/churnml/features/sql.py"


@pytest.fixture(scope="module")
def stages() -> dict[str, dict]:
    """Every stage of the resolved dvc.yaml: cmd, deps, outs (paths relative to the repository root)."""
    from dvc.repo import Repo

    with Repo(str(ROOT)) as repo:
        return {
            stage.addressing: {
                "cmd": stage.cmd,
                "deps": [str(PurePosixPath(d.def_path)) for d in stage.deps],
                "outs": [str(PurePosixPath(o.def_path)) for o in stage.outs],
            }
            for stage in repo.index.stages
        }


@pytest.fixture(scope="module")
def graph():
    return grimp.build_graph("churnml", cache_dir=None)


def _entry_imports(script: Path) -> set[str]:
    """The churnml modules a pipeline script imports (``from churnml.x import y`` may name a module y)."""
    found: set[str] = set()
    for node in ast.walk(ast.parse(script.read_text())):
        if isinstance(node, ast.ImportFrom) and node.module and node.module.split(".")[0] == "churnml":
            found.add(node.module)
            if _is_package(node.module):
                found |= {
                    f"{node.module}.{a.name}"
                    for a in node.names
                    if importlib.util.find_spec(f"{node.module}.{a.name}") is not None
                }
        elif isinstance(node, ast.Import):
            found |= {a.name for a in node.names if a.name.split(".")[0] == "churnml"}
    return found


def _is_package(module: str) -> bool:
    spec = importlib.util.find_spec(module)
    return spec is not None and spec.submodule_search_locations is not None


def _closure(graph, modules: set[str]) -> set[str]:
    out = set(modules)
    for module in modules:
        out |= graph.find_upstream_modules(module)
    for module in list(out):  # parent packages run on import
        parts = module.split(".")
        out |= {".".join(parts[:i]) for i in range(1, len(parts))}
    return out


def _file(module: str) -> str:
    origin = importlib.util.find_spec(module).origin
    return Path(origin).resolve().relative_to(ROOT).as_posix()


def _covered(path: str, deps: list[str]) -> bool:
    return any(path == d or path.startswith(d.rstrip("/") + "/") for d in deps)


def test_every_stage_runs_a_pipeline_script(stages):
    for name, stage in stages.items():
        script = stage["cmd"].split()[1]
        assert stage["cmd"].startswith("python pipelines/") and (ROOT / script).is_file(), name
        assert script in stage["deps"], f"{name}: its own script {script} is not a dependency"


def test_each_stage_depends_on_its_import_closure(stages, graph):
    missing = {}
    for name, stage in stages.items():
        script = ROOT / stage["cmd"].split()[1]
        modules = _closure(graph, _entry_imports(script))
        assert any(m.startswith("churnml.stages.") for m in modules), f"{name}: no stage function imported"
        gaps = sorted(_file(m) for m in modules if not _covered(_file(m), stage["deps"]))
        if gaps:
            missing[name] = gaps
    assert not missing, f"modules a stage runs but DVC does not watch: {missing}"


def test_a_stage_does_not_depend_on_what_it_never_imports(stages, graph):
    """The converse, per subpackage: a stage listing a subpackage it never imports re-runs for nothing."""
    for name, stage in stages.items():
        modules = _closure(graph, _entry_imports(ROOT / stage["cmd"].split()[1]))
        files = {_file(m) for m in modules}
        for dep in stage["deps"]:
            if dep.startswith("src/churnml/"):
                assert any(_covered(f, [dep]) for f in files), f"{name}: {dep} is never imported"


def test_stage_paths_are_the_configs(stages):
    """Every output in dvc.yaml is a ``paths`` entry, or a per-target path of PathsConfig, and vice versa."""
    from churnml.config import load_config

    cfg = load_config(ROOT, check_fresh=False)
    paths = cfg.paths
    expected = set(vars(paths).values()) - {paths.models, paths.metrics, paths.plots, paths.registry}
    for target in cfg.model.targets:
        expected |= {
            paths.model(target),
            paths.registry_record(target),
            paths.target_metrics(target),
            paths.target_plots(target),
        }
    declared = {out for stage in stages.values() for out in stage["outs"]}
    assert declared == expected


def _affected(stages: dict[str, dict], path: str) -> set[str]:
    """Stages whose deps cover ``path``, and every stage that follows them (a dep under another's out)."""
    hit = {name for name, s in stages.items() if _covered(path, s["deps"])}
    grew = True
    while grew:
        outs = [o for name in hit for o in stages[name]["outs"]]
        more = {
            name
            for name, s in stages.items()
            if name not in hit and any(_covered(d, outs) or _covered(o, [d]) for d in s["deps"] for o in outs)
        }
        hit |= more
        grew = bool(more)
    return hit


def test_feature_sql_change_reaches_build_features_and_what_follows(stages):
    affected = _affected(stages, SQL)
    assert {"build_features", "explain", "score", "report", "monitor"} <= affected
    assert {"train@churn", "train@expansion", "evaluate@churn", "evaluate@expansion"} <= affected
    assert not affected & {"generate", "validate", "spine", "labels"}


@pytest.mark.slow
def test_dvc_status_sees_a_feature_sql_edit(tmp_path, stages):
    env = {"PATH": f"{BIN}:/usr/bin:/bin", "DVC_NO_ANALYTICS": "1", "HOME": str(tmp_path)}

    def dvc(*args: str) -> str:
        proc = subprocess.run(
            ["dvc", *args], cwd=tmp_path, env=env, capture_output=True, text=True, timeout=120
        )
        assert proc.returncode == 0, proc.stdout + proc.stderr
        return proc.stdout

    for rel in ("dvc.yaml", "params.yaml"):
        shutil.copy2(ROOT / rel, tmp_path / rel)
    for folder in ("pipelines", "src"):
        shutil.copytree(ROOT / folder, tmp_path / folder, ignore=shutil.ignore_patterns("__pycache__"))
    stage = stages["build_features"]
    for path in [d for d in stage["deps"] if d.startswith("data/")] + stage["outs"]:
        target = tmp_path / path
        if target.suffix:  # a file; a folder gets one placeholder file
            target.parent.mkdir(parents=True, exist_ok=True)
            target.write_text("placeholder\n")
        else:
            target.mkdir(parents=True, exist_ok=True)
            (target / "usage.parquet").write_text("placeholder\n")
    dvc("init", "--no-scm", "-q")
    dvc("commit", "-f", "-q", "build_features")
    assert "changed" not in dvc("status", "build_features")
    with (tmp_path / SQL).open("a") as f:
        f.write("# touched\n")
    after = dvc("status", "build_features")
    assert "build_features" in after and "modified:" in after and "src/churnml/features" in after, after


def test_each_plot_is_drawn_once():
    """`dvc plots show --json` lists every curve once: the stage outputs under the top-level plots are plain
    outs, not stage-level plots too (those came back as a second, x=step copy of each file)."""
    import json

    proc = subprocess.run(
        [str(BIN / "dvc"), "plots", "show", "--json"], cwd=ROOT, capture_output=True, text=True, timeout=120
    )
    assert proc.returncode == 0, proc.stderr[-2000:]
    names = list(json.loads(proc.stdout)["data"])
    files = [name.split("::", 1)[-1] for name in names]
    assert len(files) == len(set(files)), sorted(names)
    assert "plots/churn/roc.csv" in files and "plots/monitor/decay.csv" in files
