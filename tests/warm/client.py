"""The shim behind tests/warm/bin/python: run ``python script.py ...`` in the warm server, else the real Python.

Run by the real interpreter with ``-S -I`` (no site, no user environment: it starts in milliseconds and uses the
standard library only). It hands the request to tests/warm/server.py when all of these hold, and otherwise
replaces itself with the real interpreter, unchanged:

- ``$CHURNML_WARM_SOCKET`` names a server that accepts;
- the first argument is a script file (no interpreter option, no ``-c``/``-m``; tests/warm/bin/churnml passes
  the installed ``churnml`` console script), and stdin, stdout and stderr are open;
- everything the interpreter or a preloaded library reads from the environment at start (``PYTHON*``, the
  thread counts of OpenMP, OpenBLAS and MKL, numba's settings, the locale, the time zone) equals the
  server's, and the server's ``PYTHONPATH`` entries end the caller's (the caller may add entries in front).

Signals the shim receives are passed to the script's process; the shim exits with the script's exit status, or
dies of the same signal.
"""

import json
import os
import signal
import socket
import struct
import sys

HEADER = struct.Struct("!I")
STATUS = struct.Struct("!i")
STARTUP_PREFIXES = ("PYTHON", "OMP_", "OPENBLAS_", "MKL_", "NUMBA_", "LC_", "KMP_")
STARTUP_NAMES = ("LANG", "LANGUAGE", "TZ")
FORWARDED = (signal.SIGTERM, signal.SIGINT, signal.SIGHUP, signal.SIGQUIT, signal.SIGUSR1, signal.SIGUSR2)


def startup_environment(env: dict) -> dict:
    """The variables read at interpreter start, PYTHONPATH aside (compared as a list)."""
    return {
        k: v
        for k, v in env.items()
        if (k.startswith(STARTUP_PREFIXES) or k in STARTUP_NAMES) and k != "PYTHONPATH"
    }


def _path_entries(env: dict) -> list:
    return [p for p in env.get("PYTHONPATH", "").split(os.pathsep) if p]


def _real() -> None:
    real = os.environ.get("CHURNML_WARM_PYTHON") or sys.executable
    os.execv(real, [real, *sys.argv[1:]])


def _servable(argv: list) -> bool:
    if not argv or argv[0].startswith("-") or not os.path.isfile(argv[0]):
        return False
    try:
        for fd in (0, 1, 2):
            os.fstat(fd)
        with open(os.environ["CHURNML_WARM_SOCKET"] + ".env") as fh:
            server_env = json.load(fh)
    except (OSError, KeyError, ValueError):
        return False
    mine, theirs = _path_entries(os.environ), _path_entries(server_env)
    if theirs and mine[-len(theirs) :] != theirs:
        return False
    return startup_environment(dict(os.environ)) == startup_environment(server_env)


def main() -> None:
    argv = sys.argv[1:]
    if not _servable(argv):
        _real()
    # a signal that arrives before the script's pid is known is held, then passed on
    pending = []
    for sig in FORWARDED:
        signal.signal(sig, lambda s, _f: pending.append(s))
    conn = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    try:
        conn.connect(os.environ["CHURNML_WARM_SOCKET"])
    except OSError:
        _real()
    payload = json.dumps({"argv": argv, "cwd": os.getcwd(), "env": dict(os.environ)}).encode()
    data = HEADER.pack(len(payload)) + payload
    sent = socket.send_fds(conn, [data[: 1 << 15]], [0, 1, 2])
    conn.sendall(data[sent:])
    reply = b""
    pid = None
    while True:
        chunk = conn.recv(STATUS.size - len(reply))  # reply holds less than one status here
        if not chunk:
            print("warm python: the server went away while running " + " ".join(argv), file=sys.stderr)
            os._exit(1)
        reply += chunk
        if len(reply) < STATUS.size:
            continue
        (value,) = STATUS.unpack(reply)
        reply = b""
        if pid is None:
            pid = value
            for sig in FORWARDED:
                signal.signal(sig, lambda s, _f, p=pid: os.kill(p, s))
            for sig in pending:
                os.kill(pid, sig)
            continue
        if os.WIFSIGNALED(value):
            sig = os.WTERMSIG(value)
            signal.signal(sig, signal.SIG_DFL)
            os.kill(os.getpid(), sig)
        os._exit(os.waitstatus_to_exitcode(value) if os.WIFEXITED(value) else 1)


main()
