"""Shared fixtures: a small simulated portfolio and hand-built edge-case tables for spine, labels, features."""

from __future__ import annotations

import contextlib
import os
import signal
import subprocess
import sys

import pandas as pd
import pytest

from churnml.config import SimulatorConfig

from built import WARM, Built, build_once

# The files that take minutes (a whole `dvc repro`, a Spark session, backtests), in the order they should start.
# `make test` hands whole files to two xdist workers in this order (a worker takes the next file when two or fewer
# of its tests are pending): the session's pipeline build (test_pipeline.py, tests/built.py) starts on one
# worker while the other runs the own-folder pipeline, which does not need it, then Spark; the files that reuse
# the build come after it is ready. Started first, the long files run beside the short ones instead of alone
# at the end.
LONG_FILES = (
    "test_pipeline.py",
    "test_pipeline_folder.py",
    "test_spark.py",
    "test_reproducible.py",
    "test_pipeline_registry.py",
    "test_backtest.py",
    "test_monitor.py",
    "test_tracking.py",
)


def pytest_collection_modifyitems(items: list[pytest.Item]) -> None:
    """Run the long files first (order within a file unchanged; every test still runs)."""

    def rank(item: pytest.Item) -> int:
        name = item.path.name
        return LONG_FILES.index(name) if name in LONG_FILES else len(LONG_FILES)

    items.sort(key=rank)


@pytest.fixture(scope="session", autouse=True)
def warm_python(tmp_path_factory):
    """One warm interpreter per test process for the stage scripts of the tests' pipelines (tests/warm): the
    commands built by tests/built.py's environments find its shim first on PATH. ``CHURNML_TEST_WARM=0`` runs
    every stage in a cold interpreter, as `dvc repro` outside the tests does."""
    if os.environ.get("CHURNML_TEST_WARM", "1") == "0":
        yield None
        return
    folder = tmp_path_factory.mktemp("warm")
    path = folder / "socket"
    log = (folder / "server.log").open("w")
    server = subprocess.Popen(
        [sys.executable, str(WARM / "server.py"), str(path)],
        stdin=subprocess.DEVNULL,
        stdout=log,
        stderr=subprocess.STDOUT,
        start_new_session=True,  # its process group: the scripts it runs go with it at the end
    )
    os.environ["CHURNML_WARM_SOCKET"], os.environ["CHURNML_WARM_PYTHON"] = str(path), sys.executable
    try:
        yield path
    finally:
        del os.environ["CHURNML_WARM_SOCKET"], os.environ["CHURNML_WARM_PYTHON"]
        with contextlib.suppress(ProcessLookupError):
            os.killpg(server.pid, signal.SIGTERM)
        server.wait(timeout=30)
        log.close()


@pytest.fixture(scope="session")
def built_pipeline(tmp_path_factory, worker_id) -> Built:
    """The small portfolio's `dvc repro`, once per session for all xdist workers (tests/built.py); read-only."""
    base = tmp_path_factory.getbasetemp()
    return build_once(base if worker_id == "master" else base.parent)


def _days(values: list) -> pd.Series:
    return pd.Series(pd.to_datetime(values), dtype="datetime64[us]")


@pytest.fixture(scope="session")
def sim() -> tuple[dict[str, pd.DataFrame], dict[str, pd.DataFrame]]:
    """(tables, truth) of a 200-account, two-year simulated portfolio."""
    simulate = pytest.importorskip("churnml.sources.simulate", reason="simulator not written yet").simulate
    return simulate(SimulatorConfig(accounts=200, months=24, seed=11))


@pytest.fixture(scope="session")
def edge_tables() -> dict[str, pd.DataFrame]:
    """Contract histories built to hit each label rule once, with events on and around 2024-06-01 (read-only).

    E1 late renewal within grace; E2 renewal after grace (churn 2024-06-10); E3 annual contract ending
    2025-01-01 whose usage stopped in May 2024; E4 ends exactly on 2024-06-01; E5 seats 10 -> 11 on
    2024-07-01 (expansion by seats only); E6 MRR 100 -> 85 on 2024-07-01 (contraction); E7 open-ended.
    Usage runs to 2025-06-30, so the data end is 2025-07-01.
    """
    subs = [
        ("S1a", "E1", "monthly", "2024-01-01", "2024-06-10", 100.0, 10),
        ("S1b", "E1", "monthly", "2024-06-25", None, 100.0, 10),
        ("S2a", "E2", "monthly", "2024-01-01", "2024-06-10", 100.0, 10),
        ("S2b", "E2", "monthly", "2024-07-20", None, 100.0, 10),
        ("S3", "E3", "annual", "2024-01-01", "2025-01-01", 1000.0, 50),
        ("S4", "E4", "monthly", "2024-01-15", "2024-06-01", 50.0, 5),
        ("S5a", "E5", "monthly", "2024-01-01", "2024-07-01", 100.0, 10),
        ("S5b", "E5", "monthly", "2024-07-01", None, 100.0, 11),
        ("S6a", "E6", "annual", "2023-07-01", "2024-07-01", 100.0, 10),
        ("S6b", "E6", "annual", "2024-07-01", None, 85.0, 10),
        ("S7", "E7", "annual", "2024-02-29", None, 300.0, 20),
    ]
    subscriptions = pd.DataFrame(
        {
            "subscription_id": [r[0] for r in subs],
            "account_id": [r[1] for r in subs],
            "plan": ["pro"] * len(subs),
            "billing_period": [r[2] for r in subs],
            "start_date": _days([r[3] for r in subs]),
            "end_date": _days([r[4] for r in subs]),
            "mrr": [r[5] for r in subs],
            "seats": pd.array([r[6] for r in subs], dtype="Int64"),
        }
    )
    ids = sorted({r[1] for r in subs})
    accounts = pd.DataFrame(
        {
            "account_id": ids,
            "account_name": ids,
            "segment": ["smb"] * len(ids),
            "touch_model": ["tech_touch"] * len(ids),
            "industry": ["retail"] * len(ids),
            "region": ["emea"] * len(ids),
            "csm_id": [None] * len(ids),
            "created_date": _days(["2024-01-01"] * len(ids)),
        }
    )
    usage_days = pd.date_range("2024-01-01", "2025-06-30", freq="D")
    e3_days = pd.date_range("2024-01-01", "2024-05-15", freq="D")
    usage = pd.concat(
        [
            pd.DataFrame({"account_id": "E7", "date": usage_days, "metric": "logins", "value": 3.0}),
            pd.DataFrame({"account_id": "E3", "date": e3_days, "metric": "logins", "value": 5.0}),
            pd.DataFrame(
                {"account_id": "E3", "date": e3_days[::7], "metric": "feature_reports", "value": 1.0}
            ),
        ],
        ignore_index=True,
    ).assign(date=lambda d: d["date"].astype("datetime64[us]"))
    return {"accounts": accounts, "subscriptions": subscriptions, "usage": usage}
