"""The warm interpreter of the tests' pipelines (tests/warm) behaves as ``python script.py`` does.

The pipeline tests run their stage scripts through it, so a difference here would be a difference between what
the suite checks and what `dvc repro` does: arguments, working directory, environment, standard streams, exit
codes, uncaught exceptions, signals, the network guard, and the cases it must leave to the real interpreter.
"""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

from built import ROOT, WARM, guarded_env, stage_env, wait_for_warm

SCRIPT = """
import json, os, sys
data = sys.stdin.read()
print(json.dumps({
    "argv": sys.argv, "cwd": os.getcwd(), "marker": os.environ.get("WARM_TEST_MARKER"), "stdin": data,
    "warm": "lightgbm" in sys.modules, "path0": sys.path[0], "file": __file__,
}))
print("to stderr", file=sys.stderr)
sys.exit(int(os.environ.get("WARM_TEST_EXIT", "0")))
"""


@pytest.fixture
def served(warm_python, tmp_path) -> tuple[Path, dict[str, str]]:
    if warm_python is None:
        pytest.skip("CHURNML_TEST_WARM=0: every stage runs cold")
    wait_for_warm(warm_python)
    (tmp_path / "pipelines").mkdir()
    (tmp_path / "pipelines" / "probe.py").write_text(SCRIPT)
    return tmp_path, stage_env()


def _python(args: list[str], cwd: Path, env: dict, stdin: str = "") -> subprocess.CompletedProcess:
    return subprocess.run(["python", *args], cwd=cwd, env=env, input=stdin, capture_output=True, text=True)


def test_a_script_runs_warm_with_the_callers_arguments_directory_environment_and_streams(served):
    import json

    cwd, env = served
    assert env["PATH"].startswith(str(WARM / "bin"))
    for code in (0, 7):
        proc = _python(
            ["pipelines/probe.py", "--target", "churn"],
            cwd,
            env | {"WARM_TEST_MARKER": "m1", "WARM_TEST_EXIT": str(code)},
            stdin="hello",
        )
        assert proc.returncode == code and proc.stderr == "to stderr\n", proc.stderr
        seen = json.loads(proc.stdout)
        assert seen["warm"], "the script ran cold: the server did not serve it"
        assert seen["argv"] == ["pipelines/probe.py", "--target", "churn"]
        assert seen["cwd"] == str(cwd) and seen["marker"] == "m1" and seen["stdin"] == "hello"
        assert seen["path0"] == str(cwd / "pipelines") and seen["file"] == str(cwd / "pipelines" / "probe.py")


def test_an_uncaught_exception_and_sys_exit_with_text_end_as_in_a_cold_interpreter(served):
    cwd, env = served
    cases = {
        "boom.py": "raise ValueError('boom')\n",
        "text.py": "import sys\nsys.exit('error: said once')\n",
        "atexit_.py": "import atexit\natexit.register(lambda: print('at exit'))\nprint('body')\n",
    }
    for name, body in cases.items():
        (cwd / "pipelines" / name).write_text(body)
        warm = _python([f"pipelines/{name}"], cwd, env)
        cold = subprocess.run(
            [sys.executable, f"pipelines/{name}"], cwd=cwd, env=env, capture_output=True, text=True
        )
        assert (warm.returncode, warm.stdout) == (cold.returncode, cold.stdout), name
        assert warm.stderr.splitlines()[-1:] == cold.stderr.splitlines()[-1:], (name, warm.stderr)


def test_a_signal_to_the_shim_reaches_the_script(served):
    cwd, env = served
    (cwd / "pipelines" / "wait.py").write_text(
        "import signal, sys, time\n"
        "signal.signal(signal.SIGTERM, lambda *_: sys.exit(143))\n"
        "print('ready', flush=True)\n"
        "time.sleep(60)\n"
    )
    (cwd / "pipelines" / "die.py").write_text("import time\nprint('ready', flush=True)\ntime.sleep(60)\n")
    for name, expected in (("wait.py", 143), ("die.py", -signal.SIGTERM)):
        proc = subprocess.Popen(
            ["python", f"pipelines/{name}"], cwd=cwd, env=env, stdout=subprocess.PIPE, text=True
        )
        assert proc.stdout.readline() == "ready\n"
        started = time.monotonic()
        proc.send_signal(signal.SIGTERM)
        assert proc.wait(timeout=30) == expected, name  # handled: its exit code; not handled: died of it
        assert time.monotonic() - started < 30
        proc.stdout.close()


def test_the_network_guard_is_loaded_in_a_warm_script(served, tmp_path):
    cwd, _ = served
    log = tmp_path / "netguard.log"
    (cwd / "pipelines" / "dial.py").write_text(
        "import sys\n"
        "print('lightgbm' in sys.modules)\n"
        # the audit event a connect raises, without connecting anywhere
        "sys.audit('socket.connect', None, ('192.0.2.1', 80))\n"
    )
    proc = _python(["pipelines/dial.py"], cwd, guarded_env(log))
    assert proc.returncode == 0 and proc.stdout == "True\n", proc.stderr
    assert "192.0.2.1" in log.read_text()


def test_what_the_server_cannot_reproduce_runs_in_the_real_interpreter(served):
    cwd, env = served
    probe = "import sys; print('lightgbm' in sys.modules)"
    (cwd / "pipelines" / "cold.py").write_text(probe + "\n")
    cases = {
        "an option before the script": (["-c", probe], env),
        "another thread count": (["pipelines/cold.py"], env | {"OMP_NUM_THREADS": "3"}),
        "another hash seed": (["pipelines/cold.py"], env | {"PYTHONHASHSEED": "123"}),
        "no server": (["pipelines/cold.py"], env | {"CHURNML_WARM_SOCKET": str(cwd / "none")}),
    }
    for why, (args, case_env) in cases.items():
        proc = _python(args, cwd, case_env)
        assert proc.returncode == 0 and proc.stdout == "False\n", (why, proc.stdout, proc.stderr)
    assert os.environ.get("CHURNML_WARM_SOCKET")  # the session's server is the one the cases above avoided


def test_the_churnml_command_answers_as_the_installed_one(served):
    cwd, env = served
    installed = str(Path(sys.executable).parent / "churnml")
    for args in (["paths"], ["no-such-command"]):
        warm = subprocess.run(["churnml", *args], cwd=ROOT, env=env, capture_output=True, text=True)
        cold = subprocess.run([installed, *args], cwd=ROOT, env=env, capture_output=True, text=True)
        assert (warm.returncode, warm.stdout, warm.stderr) == (cold.returncode, cold.stdout, cold.stderr)
    assert subprocess.run(
        ["sh", "-c", "command -v churnml"], env=env, capture_output=True, text=True
    ).stdout == (f"{WARM / 'bin' / 'churnml'}\n")
