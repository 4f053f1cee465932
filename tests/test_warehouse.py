"""Warehouse writes: idempotent, transactional, concurrent-safe, injection-proof, credential-free messages.

Parametrised over DuckDB (a temporary file), PostgreSQL (``CHURNML_PG_URL``, one fresh schema per test,
dropped afterwards) and SQLite (the generic SQLAlchemy path).
"""

from __future__ import annotations

import datetime as dt
import json
import logging
import os
import signal
import subprocess
import sys
import textwrap
import threading
import time
import traceback
import uuid
from dataclasses import replace as dataclasses_replace
from pathlib import Path

import pandas as pd
import pytest

from churnml.config import WarehouseConfig
from churnml.contract.schemas import DATE
from churnml.errors import ChurnmlError
from churnml.warehouse.secrets import redact_url
from churnml.warehouse.store import Warehouse
from churnml.warehouse.tables import RunInfo

from _env import require_postgres

AS_OF = dt.date(2025, 3, 1)
BACKENDS = ["duckdb", pytest.param("postgresql", marks=pytest.mark.postgres), "sqlite"]
VALUE_COLUMNS = ["account_id", "as_of", "churn_model_version", "expansion_model_version", "churn_probability",
                 "risk_tier", "expansion_probability", "arr", "arr_at_risk", "segment", "touch_model",
                 "recommended_play", "top_reasons"]  # fmt: skip


def make_scores(n: int, generation: int = 0, start: int = 0) -> pd.DataFrame:
    """``n`` score rows; ``generation`` changes every value so a test can tell which write survived."""
    ids = [f"A{i:06d}" for i in range(start, start + n)]
    prob = [round(((i * 37 + generation * 11) % 100) / 100, 2) for i in range(start, start + n)]
    return pd.DataFrame(
        {
            "account_id": ids,
            "churn_probability": prob,
            "risk_tier": ["critical" if p >= 0.5 else "low" for p in prob],
            "expansion_probability": [1 - p for p in prob],
            "arr": [1000.0 * (i + 1) for i in range(n)],
            "arr_at_risk": [1000.0 * (i + 1) * p for i, p in enumerate(prob)],
            "segment": ["smb"] * n,
            "touch_model": ["tech_touch"] * n,
            "recommended_play": [f'play g{generation}; it\'s "quoted", with commas' for _ in range(n)],
            "top_reasons": [[f"reason {generation}-{i}", "usage down 45%"] for i in range(n)],
        }
    )


def make_explanations(scores: pd.DataFrame, churn_v: str = "v1", expansion_v: str = "v1") -> pd.DataFrame:
    """Two reasons per account and target."""
    rows = []
    for acc, p in zip(scores["account_id"], scores["churn_probability"], strict=True):
        for target, version in (("churn", churn_v), ("expansion", expansion_v)):
            for rank, feature in enumerate(("usage_logins_trend_30d", "account_segment"), start=1):
                value = p if rank == 1 else "smb"  # a categorical feature's value is text
                rows.append(
                    (acc, target, version, rank, feature, value, p / 2, p * 10, f"{feature} is {value}")
                )
    return pd.DataFrame(
        rows,
        columns=[
            "account_id",
            "target",
            "model_version",
            "rank",
            "feature",
            "feature_value",
            "shap_value",
            "probability_points",
            "reason",
        ],  # fmt: skip
    )


def values(frame: pd.DataFrame) -> pd.DataFrame:
    """The columns a rerun must reproduce exactly (run id and time differ by design)."""
    return frame[VALUE_COLUMNS].reset_index(drop=True)


def expected_scores(scores: pd.DataFrame, churn_v: str = "v1", expansion_v: str = "v1") -> pd.DataFrame:
    out = scores.assign(
        as_of=pd.Timestamp(AS_OF),
        churn_model_version=churn_v,
        expansion_model_version=expansion_v,
        top_reasons=scores["top_reasons"].map(json.dumps),
    ).astype({"as_of": DATE})
    return out[VALUE_COLUMNS].sort_values("account_id", ignore_index=True)


# ---------------------------------------------------------------------------------------------- fixtures


@pytest.fixture
def make_warehouse(request, tmp_path):
    """Factory of warehouses on the parametrised backend, all on the same database/schema within a test."""
    backend = request.param
    created: list[Warehouse] = []
    if backend == "duckdb":
        url = f"duckdb:///{tmp_path / 'wh.duckdb'}"
        schema = ""
    elif backend == "sqlite":
        url = f"sqlite:///{tmp_path / 'wh.sqlite'}"
        schema = ""
    else:
        url = require_postgres()
        schema = f"churnml_test_{uuid.uuid4().hex[:12]}"

    def factory(**kwargs) -> Warehouse:
        wh = Warehouse(url, schema=kwargs.pop("schema", schema), **kwargs)
        created.append(wh)
        return wh

    factory.backend = backend
    factory.url = url
    factory.schema = schema
    yield factory
    for wh in created:
        wh.close()
    if backend == "postgresql":
        import sqlalchemy as sa

        engine = sa.create_engine(url)
        with engine.begin() as conn:
            conn.execute(sa.text(f'DROP SCHEMA IF EXISTS "{schema}" CASCADE'))
        engine.dispose()


def parametrize_backends(func):
    return pytest.mark.parametrize("make_warehouse", BACKENDS, indirect=True)(func)


# ---------------------------------------------------------------------------------------------- idempotency


@parametrize_backends
def test_writing_twice_gives_the_same_rows_without_duplicates(make_warehouse):
    wh = make_warehouse()
    scores = make_scores(25)
    expl = make_explanations(scores)
    first = wh.write_scores(scores, expl, RunInfo(AS_OF, "v1", "v1", data_end=dt.date(2025, 2, 28)))
    after_first = wh.read_scores(AS_OF)
    second = wh.write_scores(scores, expl, RunInfo(AS_OF, "v1", "v1"))
    after_second = wh.read_scores()

    pd.testing.assert_frame_equal(values(after_second), values(after_first))
    pd.testing.assert_frame_equal(values(after_second), expected_scores(scores))
    assert set(after_second["run_id"]) == {second.run_id}
    assert len(wh.read_explanations(AS_OF)) == len(expl)
    assert json.loads(after_second["top_reasons"][0]) == ["reason 0-0", "usage down 45%"]

    runs = wh.read_runs()
    assert list(runs["run_id"]) == [first.run_id, second.run_id]
    assert list(runs["status"]) == ["succeeded", "succeeded"]
    assert list(runs["scores_rows"]) == [25, 25]
    assert list(runs["explanations_rows"]) == [100, 100]
    assert runs["data_end"][0] == pd.Timestamp("2025-02-28")
    assert runs["finished_at"].notna().all()


@parametrize_backends
def test_a_replace_date_rerun_replaces_the_as_of_rows_of_its_versions_only(make_warehouse):
    wh = make_warehouse()
    other_day = dt.date(2025, 2, 1)
    wh.write_scores(make_scores(10), None, RunInfo(other_day, "v1", "v1"))
    wh.write_scores(make_scores(10), make_explanations(make_scores(10)), RunInfo(AS_OF, "v1", "v1"))
    smaller = make_scores(4, generation=1)
    record = wh.write_scores(
        smaller, make_explanations(smaller), RunInfo(AS_OF, "v1", "v1", replace_date=True)
    )

    pd.testing.assert_frame_equal(values(wh.read_scores(AS_OF)), expected_scores(smaller))
    assert len(wh.read_scores(other_day)) == 10  # another as-of is untouched
    assert set(wh.read_explanations(AS_OF)["account_id"]) == set(smaller["account_id"])
    assert record.accounts_untouched == 0
    assert bool(wh.read_runs()["replace_date"].iloc[-1]) is True


@parametrize_backends
def test_a_partial_export_keeps_the_other_accounts_scores(make_warehouse):
    wh = make_warehouse()
    full = make_scores(10)
    wh.write_scores(full, make_explanations(full), RunInfo(AS_OF, "v1", "v1"))
    partial = make_scores(4, generation=1, start=3)  # accounts 3..6 rescored, 0-2 and 7-9 absent
    expl = make_explanations(partial)
    expl = expl[expl["rank"] == 1]  # fewer reasons than before: the account's old extra rows must go
    record = wh.write_scores(partial, expl, RunInfo(AS_OF, "v1", "v1"))

    got = wh.read_scores(AS_OF).set_index("account_id")
    assert len(got) == 10
    for i in range(10):
        source = partial if 3 <= i < 7 else full
        row = source[source["account_id"] == f"A{i:06d}"].iloc[0]
        assert got.loc[f"A{i:06d}", "churn_probability"] == row["churn_probability"]
    explanations = wh.read_explanations(AS_OF)
    per_account = explanations.groupby("account_id").size()
    assert all(per_account[f"A{i:06d}"] == (2 if 3 <= i < 7 else 4) for i in range(10))
    assert record.scores_rows == 4
    assert record.accounts_untouched == 6
    runs = wh.read_runs()
    assert list(runs["accounts_untouched"]) == [0, 6]
    assert not runs["replace_date"].astype(bool).any()


@parametrize_backends
def test_different_model_versions_keep_both_histories(make_warehouse):
    wh = make_warehouse()
    scores = make_scores(6)
    wh.write_scores(scores, make_explanations(scores, "v1", "e1"), RunInfo(AS_OF, "v1", "e1"))
    wh.write_scores(scores, make_explanations(scores, "v2", "e1"), RunInfo(AS_OF, "v2", "e1"))

    got = wh.read_scores(AS_OF)
    assert len(got) == 12
    assert sorted(set(zip(got["churn_model_version"], got["expansion_model_version"], strict=True))) == [
        ("v1", "e1"),
        ("v2", "e1"),
    ]
    expl = wh.read_explanations(AS_OF)
    counts = expl.groupby(["target", "model_version"]).size().to_dict()
    # the expansion model's explanations are shared by both runs: rewritten, not duplicated
    assert counts == {("churn", "v1"): 12, ("churn", "v2"): 12, ("expansion", "e1"): 12}


@parametrize_backends
def test_chunks_and_pairs_are_written_in_one_transaction(make_warehouse):
    wh = make_warehouse()
    parts = [make_scores(5, start=i * 5) for i in range(3)]
    record = wh.write_scores(iter(parts), (make_explanations(p) for p in parts), RunInfo(AS_OF, "v1", "v1"))
    assert (record.scores_rows, record.explanations_rows) == (15, 60)

    regenerated = [make_scores(5, generation=2, start=i * 5) for i in range(2)]
    pairs = ((p, make_explanations(p)) for p in regenerated)
    record = wh.write_batches(pairs, RunInfo(AS_OF, "v1", "v1", replace_date=True))
    assert (record.scores_rows, record.explanations_rows) == (10, 40)
    pd.testing.assert_frame_equal(values(wh.read_scores(AS_OF)), expected_scores(pd.concat(regenerated)))


# ---------------------------------------------------------------------------------------------- failures


@parametrize_backends
def test_failure_mid_write_keeps_previous_rows_and_marks_the_run_failed(make_warehouse):
    wh = make_warehouse()
    old = make_scores(12)
    wh.write_scores(old, make_explanations(old), RunInfo(AS_OF, "v1", "v1"))
    before = wh.read_scores(AS_OF)

    new_parts = [make_scores(6, generation=1, start=0), make_scores(6, generation=1, start=6)]

    def fail_half_way(table: str, rows: int) -> None:
        if table == "scores" and rows >= 6:
            raise RuntimeError("injected failure after 6 rows")

    run = RunInfo(AS_OF, "v1", "v1", run_kind="manual")
    with pytest.raises(ChurnmlError, match="injected failure after 6 rows") as info:
        wh.write_scores(iter(new_parts), None, run, on_chunk=fail_half_way)
    assert "\n" not in str(info.value)

    pd.testing.assert_frame_equal(wh.read_scores(AS_OF), before)
    assert len(wh.read_explanations(AS_OF)) == len(make_explanations(old))
    failed = wh.read_runs().set_index("run_id").loc[run.run_id]
    assert failed["status"] == "failed"
    assert failed["run_kind"] == "manual"
    assert failed["error"] == "RuntimeError: injected failure after 6 rows"
    assert pd.notna(failed["finished_at"])


@parametrize_backends
@pytest.mark.parametrize(
    ("change", "message"),
    [
        (lambda s, e: (s.assign(extra=1), e), "unknown column"),
        (lambda s, e: (s.drop(columns="risk_tier"), e), "missing column"),
        (lambda s, e: (s.assign(as_of=pd.Timestamp("2024-01-01")), e), "as_of holds"),
        (lambda s, e: (s, e.assign(model_version="v9")), "target/model_version"),
        (lambda s, e: (pd.concat([s, s.head(1)]), e), "(?i)duplicate|unique|constraint"),
        (lambda s, e: (s.assign(arr="lots"), e), "churn_scores|scores.arr"),
    ],
    ids=["unknown", "missing", "other-as-of", "other-version", "duplicate-key", "bad-type"],
)
def test_bad_frames_are_refused_and_roll_back(make_warehouse, change, message):
    wh = make_warehouse()
    old = make_scores(5)
    wh.write_scores(old, make_explanations(old), RunInfo(AS_OF, "v1", "v1"))
    new = make_scores(5, generation=3)
    scores, expl = change(new, make_explanations(new))
    run = RunInfo(AS_OF, "v1", "v1")
    with pytest.raises(ChurnmlError, match=message):
        wh.write_scores(scores, expl, run)
    pd.testing.assert_frame_equal(values(wh.read_scores(AS_OF)), expected_scores(old))
    assert wh.read_runs().set_index("run_id").loc[run.run_id, "status"] == "failed"


@parametrize_backends
@pytest.mark.parametrize("rerun", [False, True], ids=["new-as-of", "rerun"])
def test_a_key_repeated_across_chunks_fails(make_warehouse, rerun):
    wh = make_warehouse()
    if rerun:
        wh.write_scores(make_scores(4), None, RunInfo(AS_OF, "v1", "v1"))
    before = wh.read_scores(AS_OF)
    chunks = [make_scores(3, generation=5), make_scores(3, generation=6, start=2)]  # A000002 twice
    with pytest.raises(ChurnmlError, match="(?i)duplicate|unique|constraint"):
        wh.write_scores(iter(chunks), None, RunInfo(AS_OF, "v1", "v1"))
    pd.testing.assert_frame_equal(wh.read_scores(AS_OF), before)


# ---------------------------------------------------------------------------------------------- safety


@pytest.mark.parametrize(
    "field",
    ["scores_table", "explanations_table", "runs_table", "schema"],
)
@pytest.mark.parametrize(
    "name", ["scores; DROP TABLE x", 'x" ; DROP TABLE y; --', "1abc", "a-b", "a" * 64, "sp ace", "naïve"]
)
def test_identifiers_from_config_cannot_inject_sql(tmp_path, field, name):
    cfg = WarehouseConfig(**{field: name})
    with pytest.raises(ChurnmlError, match="not a valid identifier"):
        Warehouse.from_config(cfg, root=tmp_path)
    assert not (tmp_path / "data").exists()  # refused before anything was opened


def test_quoted_identifiers_with_reserved_words_and_case_work(tmp_path):
    cfg = WarehouseConfig(
        schema="Select", scores_table="order", explanations_table="Group", runs_table="TABLE"
    )
    wh = Warehouse.from_config(cfg, root=tmp_path)
    scores = make_scores(3)
    wh.write_scores(scores, make_explanations(scores), RunInfo(AS_OF, "v1", "v1"))
    assert len(wh.read_scores()) == 3
    assert list(wh.read_runs()["status"]) == ["succeeded"]


@parametrize_backends
def test_reserved_and_mixed_case_table_names_are_quoted(make_warehouse):
    wh = make_warehouse(scores_table="order", explanations_table="Group", runs_table="TABLE")
    scores = make_scores(3)
    wh.write_scores(scores, make_explanations(scores), RunInfo(AS_OF, "v1", "v1"))
    wh.write_scores(scores, make_explanations(scores), RunInfo(AS_OF, "v1", "v1"))
    assert len(wh.read_scores()) == 3 and len(wh.read_explanations()) == 12
    assert list(wh.read_runs()["status"]) == ["succeeded", "succeeded"]


def test_values_are_bound_not_interpolated(tmp_path):
    wh = Warehouse(f"duckdb:///{tmp_path / 'wh.duckdb'}")
    version = "v1'); DROP TABLE churn_scores; --"
    scores = make_scores(2).assign(account_id=["A'1", 'B";2'])
    wh.write_scores(scores, make_explanations(scores, version, "e1"), RunInfo(AS_OF, version, "e1"))
    wh.write_scores(scores, make_explanations(scores, version, "e1"), RunInfo(AS_OF, version, "e1"))
    got = wh.read_scores(AS_OF)
    assert sorted(got["account_id"]) == ["A'1", 'B";2']
    assert set(got["churn_model_version"]) == {version}


def test_credentials_never_appear_in_errors_or_logs(caplog):
    caplog.set_level(logging.DEBUG)
    url = "postgresql+psycopg://user:s3cret@127.0.0.1:1/x?connect_timeout=3"
    wh = Warehouse(url)
    assert "s3cret" not in repr(wh) and "s3cret" not in wh.url
    with pytest.raises(ChurnmlError) as info:
        wh.write_scores(make_scores(2), None, RunInfo(AS_OF, "v1", "v1"))
    with pytest.raises(ChurnmlError) as read_info:
        wh.read_runs()
    for exc in (info.value, read_info.value):
        shown = "".join(traceback.format_exception(exc))
        assert "127.0.0.1" in str(exc)  # the error still says where
        assert "s3cret" not in shown
        assert "\n" not in str(exc)
    assert "s3cret" not in caplog.text


def test_redact_url_hides_passwords_in_userinfo_and_query():
    assert redact_url("postgresql+psycopg://u:p%40ss@h:5432/db") == "postgresql+psycopg://u:***@h:5432/db"
    hidden = redact_url("postgresql://h/db?user=u&password=hunter22&sslmode=require")
    assert "hunter22" not in hidden and "sslmode=require" in hidden
    assert "hunter22" not in redact_url("not a url ://u:hunter22@host")


# ---------------------------------------------------------------------------------------------- config


def test_from_config_defaults_to_a_duckdb_file_under_root(tmp_path):
    wh = Warehouse.from_config(WarehouseConfig(), root=tmp_path)
    assert wh.duckdb_path == tmp_path / "data" / "warehouse.duckdb"
    assert wh.read_scores().empty and not wh.duckdb_path.exists()  # reading creates nothing
    wh.write_scores(make_scores(2), None, RunInfo(AS_OF, "v1", "v1"))
    assert wh.duckdb_path.exists()
    override = Warehouse.from_config(WarehouseConfig(), url_override="duckdb:///other.duckdb", root=tmp_path)
    assert override.duckdb_path == tmp_path / "other.duckdb"


def test_run_info_refuses_unknown_kinds_and_empty_versions():
    with pytest.raises(ChurnmlError, match="run_kind"):
        RunInfo(AS_OF, "v1", "v1", run_kind="nightly")
    with pytest.raises(ChurnmlError, match="churn_model_version"):
        RunInfo(AS_OF, "", "v1")
    assert RunInfo("2025-03-01", "v1", "v1").as_of == AS_OF


# ---------------------------------------------------------------------------------------------- concurrency


@pytest.mark.postgres
@pytest.mark.parametrize("make_warehouse", ["postgresql"], indirect=True)
def test_concurrent_postgres_runs_serialise(make_warehouse):
    import sqlalchemy as sa

    wh = make_warehouse()
    wh.ensure_tables()
    first_scores, second_scores = make_scores(40, generation=1), make_scores(30, generation=2)
    runs = [RunInfo(AS_OF, "v1", "v1", replace_date=True), RunInfo(AS_OF, "v1", "v1", replace_date=True)]
    inside, release = threading.Event(), threading.Event()
    errors: list[BaseException] = []

    def hold(table: str, rows: int) -> None:
        inside.set()
        assert release.wait(30)

    def write(scores, run, hook=None) -> None:
        try:
            make_warehouse().write_scores(scores, make_explanations(scores), run, on_chunk=hook)
        except BaseException as exc:
            errors.append(exc)

    first = threading.Thread(target=write, args=(first_scores, runs[0], hold))
    first.start()
    assert inside.wait(30)
    second = threading.Thread(target=write, args=(second_scores, runs[1]))
    second.start()
    engine = sa.create_engine(make_warehouse.url)
    deadline = time.monotonic() + 30
    with engine.connect() as conn:  # wait until the second writer blocks on the first one's advisory lock
        while not conn.execute(
            sa.text("select count(*) from pg_locks where locktype = 'advisory' and not granted")
        ).scalar():
            assert time.monotonic() < deadline, "second writer never waited on the lock"
            time.sleep(0.02)
            conn.rollback()
    engine.dispose()
    release.set()
    first.join(60)
    second.join(60)
    assert errors == []

    got = wh.read_scores(AS_OF)
    assert set(got["run_id"]) == {runs[1].run_id}  # exactly one set of rows: the later run's
    pd.testing.assert_frame_equal(values(got), expected_scores(second_scores))
    assert len(wh.read_explanations(AS_OF)) == len(make_explanations(second_scores))
    status = wh.read_runs().set_index("run_id")["status"]
    assert status.to_dict() == {runs[0].run_id: "succeeded", runs[1].run_id: "succeeded"}


@pytest.mark.postgres
@pytest.mark.parametrize("make_warehouse", ["postgresql"], indirect=True)
def test_postgres_writer_that_cannot_wait_fails_and_is_recorded(make_warehouse):
    wh = make_warehouse()
    wh.ensure_tables()
    inside, release = threading.Event(), threading.Event()
    holder = RunInfo(AS_OF, "v1", "v1")

    def hold(table: str, rows: int) -> None:
        inside.set()
        assert release.wait(30)

    thread = threading.Thread(
        target=lambda: make_warehouse().write_scores(make_scores(5), None, holder, on_chunk=hold)
    )
    thread.start()
    assert inside.wait(30)
    impatient = RunInfo(AS_OF, "v1", "v1")
    try:
        with pytest.raises(ChurnmlError, match="is locked by another writer"):
            make_warehouse(lock_timeout_s=0).write_scores(make_scores(3, generation=9), None, impatient)
    finally:
        release.set()
        thread.join(60)
    runs = wh.read_runs().set_index("run_id")
    assert runs.loc[holder.run_id, "status"] == "succeeded"
    assert runs.loc[impatient.run_id, "status"] == "failed"
    assert "locked by another writer" in runs.loc[impatient.run_id, "error"]
    assert set(wh.read_scores(AS_OF)["run_id"]) == {holder.run_id}


CHILD = textwrap.dedent(
    """
    import logging, sys, time
    from pathlib import Path
    import pandas as pd
    from churnml.errors import ChurnmlError
    from churnml.warehouse.store import RunInfo, Warehouse

    db, frames, run_id, timeout, hold = sys.argv[1:6]
    logging.basicConfig(level=logging.INFO, stream=sys.stderr, format="%(message)s")

    def wait_for_release(table, rows):
        Path(db + ".started").touch()
        deadline = time.monotonic() + 60
        while not Path(db + ".release").exists() and time.monotonic() < deadline:
            time.sleep(0.02)

    wh = Warehouse(f"duckdb:///{db}", lock_timeout_s=float(timeout))
    scores = pd.read_parquet(Path(frames) / "scores.parquet")
    expl = pd.read_parquet(Path(frames) / "explanations.parquet")
    run = RunInfo("2025-03-01", "v1", "v1", run_id=run_id, replace_date=True)
    try:
        wh.write_scores(scores, expl, run, on_chunk=wait_for_release if hold == "1" else None)
    except ChurnmlError as exc:
        print(exc, file=sys.stderr)
        sys.exit(3)
    """
)


def _frames(folder: Path, scores: pd.DataFrame) -> Path:
    folder.mkdir()
    scores.assign(top_reasons=scores["top_reasons"].map(json.dumps)).to_parquet(folder / "scores.parquet")
    make_explanations(scores).assign(
        feature_value=lambda f: pd.to_numeric(f["feature_value"], errors="coerce")
    ).to_parquet(folder / "explanations.parquet")
    return folder


def _start(tmp_path: Path, db: Path, frames: Path, run_id: str, timeout: float, hold: bool, name: str):
    script = tmp_path / "child.py"
    script.write_text(CHILD)
    err = (tmp_path / f"{name}.err").open("w")
    proc = subprocess.Popen(
        [sys.executable, str(script), str(db), str(frames), run_id, str(timeout), "1" if hold else "0"],
        stderr=err,
        stdout=subprocess.DEVNULL,
        env={**os.environ, "PYTHONUNBUFFERED": "1"},
    )
    return proc, tmp_path / f"{name}.err"


def _wait_for(predicate, proc: subprocess.Popen, what: str, seconds: float = 60) -> None:
    deadline = time.monotonic() + seconds
    while not predicate():
        assert proc.poll() is None, f"process exited ({proc.returncode}) before {what}"
        assert time.monotonic() < deadline, f"timed out waiting for {what}"
        time.sleep(0.02)


@pytest.mark.slow
def test_second_duckdb_process_waits_for_the_first(tmp_path):
    db = tmp_path / "wh.duckdb"
    first_scores, second_scores = make_scores(40, generation=1), make_scores(30, generation=2)
    a, _ = _start(tmp_path, db, _frames(tmp_path / "fa", first_scores), "run-a", 60, True, "a")
    try:
        _wait_for(Path(f"{db}.started").exists, a, "the first writer's transaction")
        b, b_err = _start(tmp_path, db, _frames(tmp_path / "fb", second_scores), "run-b", 60, False, "b")
        _wait_for(lambda: "waiting up to" in b_err.read_text(), b, "the second writer to wait")
    finally:
        Path(f"{db}.release").touch()
    assert a.wait(60) == 0
    assert b.wait(60) == 0, b_err.read_text()

    wh = Warehouse(f"duckdb:///{db}")
    got = wh.read_scores(AS_OF)
    assert set(got["run_id"]) == {"run-b"}
    pd.testing.assert_frame_equal(values(got), expected_scores(second_scores))
    assert len(wh.read_explanations(AS_OF)) == len(make_explanations(second_scores))
    assert wh.read_runs().set_index("run_id")["status"].to_dict() == {
        "run-a": "succeeded",
        "run-b": "succeeded",
    }


@pytest.mark.slow
def test_duckdb_process_that_cannot_wait_fails_in_one_line_and_records_its_run(tmp_path):
    db = tmp_path / "wh.duckdb"
    first_scores = make_scores(20, generation=1)
    a, _ = _start(tmp_path, db, _frames(tmp_path / "fa", first_scores), "run-a", 60, True, "a")
    try:
        _wait_for(Path(f"{db}.started").exists, a, "the first writer's transaction")
        b, b_err = _start(tmp_path, db, _frames(tmp_path / "fb", make_scores(5)), "run-b", 0, False, "b")
        assert b.wait(60) == 3
    finally:
        Path(f"{db}.release").touch()
    assert a.wait(60) == 0

    message = b_err.read_text().strip().splitlines()[-1]
    assert message.startswith(f"warehouse {db} is locked by another writer")
    assert f"recorded in {db}.runs.jsonl" in message
    wh = Warehouse(f"duckdb:///{db}")
    runs = wh.read_runs().set_index("run_id")
    assert runs.loc["run-a", "status"] == "succeeded"
    assert runs.loc["run-b", "status"] == "failed"
    assert "locked by another writer" in runs.loc["run-b", "error"]
    assert set(wh.read_scores(AS_OF)["run_id"]) == {"run-a"}


def test_duckdb_threads_of_one_process_serialise(tmp_path):
    db = tmp_path / "wh.duckdb"
    parts = {i: make_scores(30, generation=i) for i in range(4)}
    errors: list[BaseException] = []

    def write(i: int) -> None:
        try:
            wh = Warehouse(f"duckdb:///{db}")
            wh.write_scores(parts[i], make_explanations(parts[i]), RunInfo(AS_OF, "v1", "v1", run_id=f"r{i}"))
        except BaseException as exc:
            errors.append(exc)

    threads = [threading.Thread(target=write, args=(i,)) for i in parts]
    for t in threads:
        t.start()
    for t in threads:
        t.join(60)
    assert errors == []
    wh = Warehouse(f"duckdb:///{db}")
    got = wh.read_scores(AS_OF)
    (winner,) = set(got["run_id"])  # one run's rows, never a mix
    pd.testing.assert_frame_equal(values(got), expected_scores(parts[int(winner[1:])]))
    assert (wh.read_runs()["status"] == "succeeded").all() and len(wh.read_runs()) == 4


def test_duckdb_file_that_cannot_be_opened_records_the_run_beside_it(tmp_path):
    db = tmp_path / "wh.duckdb"
    db.write_bytes(b"this is not a duckdb file" * 100)
    wh = Warehouse(f"duckdb:///{db}", lock_timeout_s=0)
    run = RunInfo(AS_OF, "v1", "v1", run_kind="backtest")
    with pytest.raises(ChurnmlError, match=f"warehouse {db} cannot be opened.*recorded in {db}.runs.jsonl"):
        wh.write_scores(make_scores(3), None, run)
    (line,) = (tmp_path / "wh.duckdb.runs.jsonl").read_text().splitlines()
    record = json.loads(line)
    assert (record["run_id"], record["status"], record["run_kind"]) == (run.run_id, "failed", "backtest")
    assert "cannot be opened" in record["error"]


def test_in_memory_duckdb_keeps_rows_for_the_warehouse_lifetime():
    with Warehouse("duckdb:///:memory:") as wh:
        wh.write_scores(make_scores(3), None, RunInfo(AS_OF, "v1", "v1"))
        assert len(wh.read_scores(AS_OF)) == 3
        assert list(wh.read_runs()["status"]) == ["succeeded"]


def test_missing_postgres_skips_locally_and_fails_under_ci(monkeypatch):
    monkeypatch.delenv("CHURNML_PG_URL", raising=False)
    monkeypatch.delenv("CI", raising=False)
    with pytest.raises(pytest.skip.Exception, match="CHURNML_PG_URL is not set"):
        require_postgres()
    monkeypatch.setenv("CI", "true")
    with pytest.raises(pytest.fail.Exception, match="CI is set"):
        require_postgres()
    monkeypatch.setenv("CHURNML_PG_URL", "postgresql+psycopg://user:s3cret@127.0.0.1:1/x")
    with pytest.raises(pytest.fail.Exception, match="not reachable") as info:
        require_postgres()
    assert "s3cret" not in str(info.value)


@parametrize_backends
def test_call_list_is_replaced_per_as_of_on_every_backend(make_warehouse):
    """weekly_call_list: a rerun of an as-of replaces its rows, other dates stay (DuckDB, SQLite, PostgreSQL)."""
    from churnml.contract.tables import CALL_LIST_COLUMNS

    def calls(day: str, n: int) -> pd.DataFrame:
        return pd.DataFrame(
            {
                "account_id": [f"A{i}" for i in range(n)],
                "as_of": pd.Timestamp(day),
                "csm_id": ["csm_1"] * n,
                "rank": range(1, n + 1),
                "team_rank": range(1, n + 1),
                "priority": [100.0 - i for i in range(n)],
                "churn_probability": 0.2,
                "risk_change": [None] + [0.01] * (n - 1),
                "risk_tier": "critical",
                "arr": 1000.0,
                "arr_at_risk": 200.0,
                "days_to_renewal": 12.0,
                "reason": "Renews in 12 days at 20% churn risk",
                "play": "Renewal rescue",
                "due": pd.Timestamp(day) + pd.Timedelta(days=7),
                "churn_model_version": "3",
                "expansion_model_version": "4",
            }
        )[[c.name for c in CALL_LIST_COLUMNS]]

    wh = make_warehouse()
    # with a scoring run: the list commits with the scores, and a failure rolls both back
    scores = make_scores(6)
    day = str(AS_OF)
    wh.write_batches([(scores, None)], RunInfo(AS_OF, "v1", "v1"), call_list=lambda: calls(day, 3))
    assert len(wh.read_call_list(AS_OF)) == 3 and len(wh.read_scores(AS_OF)) == 6

    def broken() -> pd.DataFrame:
        raise RuntimeError("call list failed")

    with pytest.raises(ChurnmlError, match="call list failed"):
        wh.write_batches([(make_scores(2), None)], RunInfo(AS_OF, "v1", "v1"), call_list=broken)
    assert len(wh.read_call_list(AS_OF)) == 3 and len(wh.read_scores(AS_OF)) == 6  # both as before
    with pytest.raises(ChurnmlError, match="but the run writes"):
        wh.write_batches(
            [(scores, None)], RunInfo(AS_OF, "v1", "v1"), call_list=lambda: calls("2025-06-01", 2)
        )
    assert wh.write_call_list(calls("2025-06-01", 5), "2025-06-01") == 5
    assert wh.write_call_list(calls("2025-06-08", 4), "2025-06-08") == 4
    assert wh.write_call_list(calls("2025-06-01", 2), "2025-06-01") == 2
    back = wh.read_call_list()
    assert back.groupby(back["as_of"].astype(str)).size().to_dict() == {
        "2025-06-01": 2,
        "2025-06-08": 4,
        str(pd.Timestamp(AS_OF).date()): 3,
    }
    one = wh.read_call_list("2025-06-08")
    assert list(one["team_rank"]) == [1, 2, 3, 4] and pd.isna(one["risk_change"].iloc[0])


# ---------------------------------------------------------------------------------------------- run record and data


@parametrize_backends
def test_a_failure_between_data_and_run_record_leaves_no_visible_rows(make_warehouse, monkeypatch):
    """The rows and the run's 'succeeded' commit together: when the record cannot be updated (a revoked
    UPDATE, a crash), no row of the run is visible and the previous rows stay."""
    from churnml.warehouse import backends

    wh = make_warehouse()
    before = make_scores(5)
    wh.write_scores(before, make_explanations(before), RunInfo(AS_OF, "v1", "v1"))

    def refuse(self, record, *args, **kwargs):
        if record.status == "succeeded":
            raise RuntimeError("permission denied for table score_runs")
        return original[type(self)](self, record, *args, **kwargs)

    original = {cls: cls.update_run for cls in (backends._DuckDBSession, backends._SQLSession)}
    for cls in original:
        monkeypatch.setattr(cls, "update_run", refuse)
    after = make_scores(8, generation=3)
    run = RunInfo(AS_OF, "v1", "v1")
    with pytest.raises(ChurnmlError, match="rolled back: RuntimeError: permission denied"):
        wh.write_scores(after, make_explanations(after), run)

    pd.testing.assert_frame_equal(values(wh.read_scores(AS_OF)), expected_scores(before))
    assert run.run_id not in set(wh.read_scores()["run_id"])
    assert len(wh.read_explanations(AS_OF)) == len(make_explanations(before))
    runs = wh.read_runs().set_index("run_id")
    assert runs.loc[run.run_id, "status"] == "failed"


SIGNAL_CHILD = textwrap.dedent(
    """
    import sys, time
    from pathlib import Path
    import pandas as pd
    from churnml import cli
    from churnml.warehouse.store import RunInfo, Warehouse

    url, schema, marker, run_id = sys.argv[1:5]
    # A shell's background job starts with SIGINT ignored (Python then installs no handler): act as a terminal.
    import signal
    signal.signal(signal.SIGINT, signal.default_int_handler)

    @cli.app.command("test-write")
    def test_write() -> None:
        def hold(table, rows):  # inside the transaction, after the first chunk: wait to be killed
            Path(marker).touch()
            time.sleep(120)

        scores = pd.DataFrame({
            "account_id": [f"B{i:04d}" for i in range(50)], "churn_probability": 0.5, "risk_tier": "low",
            "expansion_probability": 0.5, "arr": 1.0, "arr_at_risk": 0.5, "segment": "smb",
            "touch_model": "tech_touch", "recommended_play": "p", "top_reasons": "[]",
        })
        with Warehouse(url, schema=schema) as wh:
            wh.write_scores(scores, None, RunInfo("2025-03-01", "v1", "v1", run_id=run_id), on_chunk=hold)

    sys.argv = ["churnml", "test-write"]
    cli.main()
    """
)


def _signal_child(tmp_path: Path, make_warehouse, run_id: str) -> tuple[subprocess.Popen, Path]:
    script = tmp_path / "signal_child.py"
    script.write_text(SIGNAL_CHILD)
    marker = tmp_path / f"{run_id}.inside"
    proc = subprocess.Popen(
        [sys.executable, str(script), make_warehouse.url, make_warehouse.schema, str(marker), run_id],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        env={**os.environ, "PYTHONUNBUFFERED": "1"},
    )
    _wait_for(marker.exists, proc, "the child's write to start")
    return proc, marker


@pytest.mark.slow
@pytest.mark.parametrize(
    ("signum", "code", "name"), [(signal.SIGTERM, 143, "SIGTERM"), (signal.SIGINT, 130, "SIGINT")]
)
@pytest.mark.parametrize("make_warehouse", BACKENDS[:2], indirect=True)
def test_a_signal_mid_write_leaves_no_rows_and_a_failed_run(make_warehouse, tmp_path, signum, code, name):
    """SIGTERM is what a scheduler sends on timeout; SIGINT is Ctrl-C. Both roll back and record the run."""
    wh = make_warehouse()
    before = make_scores(3)
    wh.write_scores(before, None, RunInfo(AS_OF, "v1", "v1"))
    wh.close()  # DuckDB: one process holds the file
    proc, _ = _signal_child(tmp_path, make_warehouse, "run-sig")
    proc.send_signal(signum)
    _, err = proc.communicate(timeout=60)

    assert proc.returncode == code
    lines = [line for line in err.splitlines() if line.strip()]
    assert len(lines) == 1, err
    assert "run run-sig" in lines[0] and f"interrupted by {name}" in lines[0] and "marked failed" in lines[0]
    pd.testing.assert_frame_equal(values(wh.read_scores(AS_OF)), expected_scores(before))
    runs = wh.read_runs().set_index("run_id")
    assert runs.loc["run-sig", "status"] == "failed"
    assert runs.loc["run-sig", "error"] == f"interrupted by {name}"


@pytest.mark.slow
@pytest.mark.parametrize("make_warehouse", BACKENDS[:2], indirect=True)
def test_a_run_left_running_by_a_killed_process_is_marked_abandoned(make_warehouse, tmp_path):
    proc, _ = _signal_child(tmp_path, make_warehouse, "run-killed")
    proc.kill()  # kill -9: no handler runs, the record stays "running"
    proc.communicate(timeout=60)
    wh = make_warehouse()
    assert wh.read_runs().set_index("run_id").loc["run-killed", "status"] == "running"

    after = make_scores(4)
    wh.write_scores(after, None, RunInfo(AS_OF, "v1", "v1", run_id="run-next"))

    runs = wh.read_runs().set_index("run_id")
    assert runs.loc["run-killed", "status"] == "abandoned"
    assert pd.notna(runs.loc["run-killed", "finished_at"])
    assert "process is gone" in runs.loc["run-killed", "error"]
    assert runs.loc["run-next", "status"] == "succeeded"
    assert set(wh.read_scores(AS_OF)["run_id"]) == {"run-next"}  # the killed run's rows never appeared


@parametrize_backends
def test_a_live_run_is_not_abandoned_and_another_hosts_run_only_after_a_day(make_warehouse):
    import socket

    from churnml.warehouse import backends

    wh = make_warehouse()
    wh.check()
    now = dt.datetime.now(dt.UTC).replace(tzinfo=None)
    rows = [  # (run_id, host, pid, started): this process, another host recently, another host long ago
        ("live", socket.gethostname(), os.getpid(), now),
        ("elsewhere-recent", "another-host", 1, now - dt.timedelta(hours=1)),
        ("elsewhere-old", "another-host", 1, now - dt.timedelta(hours=30)),
    ]
    with wh._session() as session:
        for run_id, host, pid, started in rows:
            record = backends.RunRecord.start(RunInfo(AS_OF, "v1", "v1", run_id=run_id, started_at=started))
            session.insert_run(dataclasses_replace(record, host=host, pid=pid))
    wh.check()
    status = wh.read_runs().set_index("run_id")["status"].to_dict()
    assert status == {"live": "running", "elsewhere-recent": "running", "elsewhere-old": "abandoned"}


@parametrize_backends
def test_tables_of_an_older_release_are_upgraded_in_place(make_warehouse):
    """score_runs without the new columns gains them; PostgreSQL's text top_reasons becomes jsonb."""
    import sqlalchemy as sa

    from churnml.contract.tables import RUNS_COLUMNS, SCORES_COLUMNS

    wh = make_warehouse()
    old_runs = [c for c in RUNS_COLUMNS if c.name != "accounts_untouched" and c.name not in ("replace_date",
                "drift_accepted", "drift", "host", "pid", "unseen_categories")]  # fmt: skip
    qt = wh._qtable
    kinds = {"text": "TEXT", "date": "DATE", "ts": "TIMESTAMP", "int": "INTEGER"}
    ddl = [
        *([f'CREATE SCHEMA IF NOT EXISTS "{wh.schema}"'] if wh.schema else []),
        f"CREATE TABLE {qt('runs')} ("
        + ", ".join(f'"{c.name}" {kinds[c.kind]}' for c in old_runs)
        + ', PRIMARY KEY ("run_id"))',
        f"CREATE TABLE {qt('scores')} ("
        + ", ".join(
            f'"{c.name}" {"TEXT" if c.kind == "json" else kinds.get(c.kind, "DOUBLE PRECISION")}'
            for c in SCORES_COLUMNS
        )
        + ', PRIMARY KEY ("account_id", "as_of", "churn_model_version", "expansion_model_version"))',
    ]
    if make_warehouse.backend == "duckdb":
        import duckdb

        with duckdb.connect(str(wh.duckdb_path)) as con:
            for statement in ddl:
                con.execute(statement)
    else:
        engine = sa.create_engine(make_warehouse.url)
        with engine.begin() as conn:
            for statement in ddl:
                conn.execute(sa.text(statement))
        engine.dispose()
    scores = make_scores(3)
    record = wh.write_scores(scores, None, RunInfo(AS_OF, "v1", "v1"))
    runs = wh.read_runs()
    assert runs["accounts_untouched"].tolist() == [0] and runs["pid"].tolist() == [os.getpid()]
    assert record.status == "succeeded"
    got = wh.read_scores(AS_OF)
    assert json.loads(got["top_reasons"][0]) == ["reason 0-0", "usage down 45%"]
    if make_warehouse.backend == "postgresql":
        engine = sa.create_engine(make_warehouse.url)
        with engine.connect() as conn:
            kind = conn.execute(
                sa.text(
                    "SELECT data_type FROM information_schema.columns WHERE table_schema = :s "
                    "AND table_name = 'churn_scores' AND column_name = 'top_reasons'"
                ),
                {"s": make_warehouse.schema},
            ).scalar()
            # jsonb: a BI tool can query into the reasons
            first = conn.execute(
                sa.text(f"SELECT top_reasons->>0 FROM {qt('scores')} WHERE account_id = 'A000000'")
            ).scalar()
        engine.dispose()
        assert kind == "jsonb" and first == "reason 0-0"


@pytest.mark.parametrize("make_warehouse", BACKENDS[:2], indirect=True)
def test_top_reasons_is_json_in_new_tables(make_warehouse):
    wh = make_warehouse()
    wh.write_scores(make_scores(2), None, RunInfo(AS_OF, "v1", "v1"))
    if make_warehouse.backend == "duckdb":
        import duckdb

        with duckdb.connect(str(wh.duckdb_path)) as con:
            kind = con.execute(
                "SELECT data_type FROM information_schema.columns WHERE column_name = 'top_reasons'"
            ).fetchall()[0][0]
        assert kind == "JSON"
    else:
        import sqlalchemy as sa

        engine = sa.create_engine(make_warehouse.url)
        with engine.connect() as conn:
            kind = conn.execute(
                sa.text(
                    "SELECT data_type FROM information_schema.columns WHERE table_schema = :s "
                    "AND column_name = 'top_reasons'"
                ),
                {"s": make_warehouse.schema},
            ).scalar()
        engine.dispose()
        assert kind == "jsonb"
