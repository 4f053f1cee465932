"""A warm Python for the stage scripts of the tests' pipelines: imports the heavy libraries once, forks per script.

Every ``dvc repro`` in the suite starts about fifteen stage processes (``python pipelines/<stage>.py``), and each
spends 3 to 4 s of its 6 to 12 s importing pandas, scikit-learn, LightGBM, MLflow and SHAP before it does any
work; the suite runs about eighty of them. This server imports those libraries once (never churnml: the code
under test is imported fresh by every script, from the script's own environment), then serves each stage
command the shim ``tests/warm/bin/python`` hands it: a supervisor process forks the script's process, which
takes the caller's argv, working directory, environment and standard streams, runs the script as ``__main__``
(as the interpreter would) and exits as Python would; the supervisor sends its pid (for signals) and its wait status to the shim,
which exits the same way. No library does this for a Python script run by another program (a fork server
such as multiprocessing's serves Python callers), so it is written here; the shim runs the real interpreter
whenever the request is not a plain ``python script.py ...`` or its environment differs in anything read at
interpreter start (tests/warm/client.py).

Usage (tests/conftest.py starts one per test process): python server.py SOCKET_PATH
"""

from __future__ import annotations

import atexit
import builtins
import contextlib
import gc
import importlib
import importlib.machinery
import importlib.util
import json
import os
import signal
import socket
import struct
import sys
import types

# What the stages import that is slow to import (numba comes with SHAP). matplotlib without pyplot: the backend
# is chosen at the first figure, in the script's own environment.
PRELOAD = (
    "numpy",
    "pandas",
    "pyarrow",
    "pyarrow.parquet",
    "scipy.stats",
    "sklearn.linear_model",
    "sklearn.metrics",
    "sklearn.model_selection",
    "lightgbm",
    "mlflow",
    "mlflow.pyfunc",
    # the tracking and registry stores (SQLAlchemy models, alembic): 0.6-0.8 s of every stage that logs or loads
    "mlflow.store.tracking.sqlalchemy_store",
    "mlflow.store.model_registry.sqlalchemy_store",
    "mlflow.tracing.processor.base_mlflow",
    "git",
    "shap",
    "matplotlib",
    "duckdb",
    "sqlalchemy",
    "pandera.pandas",
    "pandera.backends.pandas.builtin_checks",
    "pyarrow.dataset",
    "sqlalchemy.dialects.sqlite",
    "sqlalchemy.dialects.postgresql",
    "omegaconf",
    "hydra",
    "jinja2",
    "sksurv.linear_model",
    "sksurv.metrics",
)

HEADER = struct.Struct("!I")
STATUS = struct.Struct("!i")


def _receive(conn: socket.socket) -> tuple[dict, list[int]]:
    """The request (length-prefixed JSON) and the caller's three standard stream descriptors."""
    data, fds, _, _ = socket.recv_fds(conn, 1 << 16, 3)
    while len(data) < HEADER.size or len(data) < HEADER.size + HEADER.unpack_from(data)[0]:
        chunk = conn.recv(1 << 16)
        if not chunk:
            raise ConnectionError("request cut short")
        data += chunk
    (size,) = HEADER.unpack_from(data)
    return json.loads(data[HEADER.size : HEADER.size + size]), fds


def _exit_code(exc: SystemExit) -> int:
    """What the interpreter does with ``SystemExit(code)``: None is 0, an int is itself, anything else is
    printed and gives 1."""
    if exc.code is None:
        return 0
    if isinstance(exc.code, int):
        return exc.code
    print(exc.code, file=sys.stderr)
    return 1


def _run_script(request: dict, fds: list[int]) -> None:
    """In the script's process: become the caller's ``python script.py ...`` and run it; never returns."""
    for target, fd in zip((0, 1, 2), fds, strict=True):
        os.dup2(fd, target)
        os.close(fd)
    os.chdir(request["cwd"])
    os.environ.clear()
    os.environ.update(ADDED_BY_IMPORTS | request["env"])
    # the caller's PYTHONPATH entries this server started without go first, as the interpreter puts them (the
    # shim checked that the server's own entries end the caller's list); then its sitecustomize, as site does
    extra = [p for p in request["env"].get("PYTHONPATH", "").split(os.pathsep) if p and p not in sys.path]
    sys.path[1:1] = [os.path.abspath(p) for p in extra]
    spec = importlib.machinery.PathFinder.find_spec("sitecustomize", sys.path[1:])
    loaded = sys.modules.get("sitecustomize")
    if spec is not None and spec.origin != getattr(loaded, "__file__", None):
        module = importlib.util.module_from_spec(spec)
        sys.modules["sitecustomize"] = module
        spec.loader.exec_module(module)
    sys.stdin = open(0, closefd=False)  # noqa: SIM115 (the process's own streams, open until it exits)
    sys.stdout = open(1, "w", closefd=False)  # noqa: SIM115
    sys.stderr = open(2, "w", closefd=False, buffering=1, errors="backslashreplace")  # noqa: SIM115
    sys.__stdin__, sys.__stdout__, sys.__stderr__ = sys.stdin, sys.stdout, sys.stderr
    script = os.path.abspath(request["argv"][0])
    sys.argv = list(request["argv"])
    sys.path[0] = os.path.dirname(script)
    # the __main__ module the interpreter makes of a script: an absolute __file__, no spec, argv as given
    main = types.ModuleType("__main__")
    main.__dict__.update(
        __file__=script,
        __cached__=None,
        __spec__=None,
        __loader__=importlib.machinery.SourceFileLoader("__main__", script),
        __builtins__=builtins,
    )
    sys.modules["__main__"] = main
    code = 0
    try:
        with open(script, "rb") as fh:
            compiled = compile(fh.read(), script, "exec", dont_inherit=True)
        exec(compiled, main.__dict__)
    except SystemExit as exc:
        code = _exit_code(exc)
    except BaseException as exc:
        sys.excepthook(type(exc), exc, exc.__traceback__.tb_next)  # from the script's frame on, as the
        code = 1  # interpreter prints it
        if isinstance(exc, KeyboardInterrupt):
            sys.stderr.flush()
            signal.signal(signal.SIGINT, signal.SIG_DFL)  # as the interpreter does: die of the SIGINT
            os.kill(os.getpid(), signal.SIGINT)
    # what the interpreter's exit does that a script can see: atexit handlers (logging's flush among them),
    # then the streams flushed; the heap is not torn down object by object (it is the server's, shared
    # copy-on-write: freeing it would copy every page)
    atexit._run_exitfuncs()
    for stream in (sys.stdout, sys.stderr):
        with contextlib.suppress(OSError, ValueError):
            stream.flush()
    os._exit(code & 0xFF)


def _supervise(conn: socket.socket) -> None:
    """In a supervisor process: fork the script's process, report its pid and then its wait status."""
    # the server's dispositions are not a script's: SIGCHLD ignored (so supervisors need no reaping), SIGTERM
    # an immediate exit
    signal.signal(signal.SIGCHLD, signal.SIG_DFL)
    signal.signal(signal.SIGTERM, signal.SIG_DFL)
    try:
        request, fds = _receive(conn)
    except (OSError, ValueError):
        os._exit(1)
    pid = os.fork()
    if pid == 0:
        conn.close()
        gc.enable()
        _run_script(request, fds)
    for fd in fds:
        os.close(fd)
    try:
        conn.sendall(STATUS.pack(pid))
        _, status = os.waitpid(pid, 0)
        conn.sendall(STATUS.pack(status))
    finally:
        os._exit(0)


# What the preloaded libraries put into the environment as they were imported (a cold script's imports would)
ADDED_BY_IMPORTS: dict[str, str] = {}


def main(path: str) -> None:
    started_with = dict(os.environ)
    for name in PRELOAD:
        with contextlib.suppress(ImportError):
            importlib.import_module(name)
    ADDED_BY_IMPORTS.update({k: v for k, v in os.environ.items() if k not in started_with})
    # the preloaded objects live in a generation the collector never walks: a collection in a script's process
    # would otherwise visit (and so copy) every page of them (the gc module's advice for pre-fork servers)
    gc.disable()
    gc.freeze()
    signal.signal(signal.SIGCHLD, signal.SIG_IGN)  # supervisors are reaped by the kernel
    signal.signal(signal.SIGTERM, lambda *_: os._exit(0))
    with open(path + ".env", "w") as fh:  # what the shim compares the caller's start-up environment with
        json.dump(started_with, fh)
    server = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    server.bind(path + ".tmp")
    server.listen(64)
    os.rename(path + ".tmp", path)  # the socket appears once it accepts
    while True:
        conn, _ = server.accept()
        if os.fork() == 0:
            server.close()
            _supervise(conn)
        conn.close()


if __name__ == "__main__":
    main(sys.argv[1])
