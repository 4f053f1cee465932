"""Warehouse writes of scores, explanations and run records: idempotent, transactional, safe for concurrent runs.

One run of nightly scoring writes the scores of one as-of date for one pair of model versions. The writer
records the run as ``running`` (its own transaction, so a monitor sees it), then in ONE transaction replaces
the rows of the accounts it scored (every row of the as-of and versions with ``replace_date``), inserts the new
ones AND marks the run ``succeeded`` with its row counts. A score or explanation row therefore exists only if
its run succeeded: readers (BI tools, the report) need no join on the runs table, and a crash, a kill or a
revoked privilege anywhere before the commit leaves the previous rows and no new ones. (The alternative,
rows written invisible and published by marking the run, would need every reader to filter on the run's
status.) On any error the transaction rolls back, the run is marked ``failed`` with a one-line error and a
:class:`ChurnmlError` is raised; an interruption (SIGINT, or SIGTERM turned into
:class:`~churnml.errors.Terminated`) is recorded the same way and re-raised as
:class:`~churnml.errors.Interrupted`. A run left ``running`` by a process that is gone (same host, pid no longer
alive; or older than ``abandon_after_s`` from another host) is marked ``abandoned`` by the next writer.

Backends:

- DuckDB (the default: a file): written through DuckDB itself (Arrow chunks registered and inserted), since
  duckdb-engine's SQLAlchemy writes are slow and its reflection fails. A rerun upserts and then deletes the
  rows it did not rewrite (same result as delete-then-insert; DuckDB commits mass deletes slowly). DuckDB allows one writing process per
  file: a second process waits for the file up to ``lock_timeout_s`` and then fails with one line; when the
  file cannot be opened at all, the run record goes to ``<file>.runs.jsonl`` beside it (read back by
  :meth:`Warehouse.read_runs`). Threads of one process are serialised by a per-file lock.
- PostgreSQL: rows are streamed with ``COPY`` (CSV written by Arrow) inside the transaction; concurrent runs
  that touch the same (as-of, versions) serialise on transaction-level advisory locks.
- Any other SQLAlchemy URL: Core ``DELETE`` and executemany ``INSERT`` in one transaction.

Table, schema and column names are validated identifiers and always quoted; values are always bound
parameters. Passwords in URLs never reach messages or logs: everything shown passes :func:`redact_url` and a
scrubber that removes the password itself.
"""

from __future__ import annotations

import json
import logging
import os
import re
import socket
import time
from collections.abc import Callable, Iterable, Iterator
from contextlib import contextmanager
from dataclasses import fields, replace
from pathlib import Path
from typing import TYPE_CHECKING, Any

import pandas as pd

from churnml.config import repo_root
from churnml.errors import ChurnmlError, Interrupted, interruption
from churnml.warehouse.backends import _DuckDBSession, _path_lock, _Session, _SQLSession, _Unavailable
from churnml.warehouse.frames import (
    _arrow_batches,
    _chain,
    _checked_arrow,
    _iter_frames,
    _normalise,
    _pairs,
    _performance_arrow,
)
from churnml.warehouse.secrets import _one_line, _url_secrets, redact_url
from churnml.warehouse.tables import (
    _COLUMNS,
    _FORECAST_RUN_TABLES,
    _RUN_TABLES,
    CALL_LIST_COLUMNS,
    FORECAST_TABLES,
    RUNS_COLUMNS,
    ChunkHook,
    ForecastRunInfo,
    ForecastRunRecord,
    Frames,
    RunInfo,
    RunRecord,
    _build_tables,
    _to_date,
    _utcnow,
    validate_identifier,
)

if TYPE_CHECKING:
    import sqlalchemy as sa

    from churnml.config import WarehouseConfig


log = logging.getLogger(__name__)
DEFAULT_LOCK_TIMEOUT_S = 60.0
DEFAULT_ABANDON_AFTER_S = 24 * 3600.0
FALLBACK_SUFFIX = ".runs.jsonl"


# ---------------------------------------------------------------------------------------------- warehouse


class Warehouse:
    """Scores, explanations and run records in a SQL warehouse (DuckDB file, PostgreSQL, any SQLAlchemy URL).

    Args:
        url: SQLAlchemy URL (``duckdb:///path.duckdb``, ``postgresql+psycopg://user@host/db``, ...).
        schema: Optional schema for the three tables (created if missing).
        scores_table: Name of the scores table.
        explanations_table: Name of the explanations table.
        runs_table: Name of the run records table.
        performance_table: Name of the realised-performance table (:meth:`write_performance`).
        call_list_table: Name of the weekly call list table (:meth:`write_call_list`).
        account_survival_table: Name of the survival curves table (:meth:`write_forecast`).
        revenue_forecast_table: Name of the revenue forecast table (:meth:`write_forecast`).
        forecast_runs_table: Name of the forecast run records table (:meth:`write_forecast`).
        lock_timeout_s: How long a writer waits for another writer (DuckDB file lock, PostgreSQL advisory
            lock) before failing; 0 fails at once, None waits forever.
        fallback_path: Where a DuckDB run record goes when the file cannot be opened (default
            ``<file>.runs.jsonl``).
        abandon_after_s: A run another host left ``running`` this long ago is marked ``abandoned`` (a run
            of this host is marked as soon as its process is gone); None never marks another host's runs.
    """

    def __init__(
        self,
        url: str,
        *,
        schema: str = "",
        scores_table: str = "churn_scores",
        explanations_table: str = "churn_explanations",
        runs_table: str = "score_runs",
        performance_table: str = "score_performance",
        call_list_table: str = "weekly_call_list",
        account_survival_table: str = "account_survival",
        revenue_forecast_table: str = "revenue_forecast",
        forecast_runs_table: str = "forecast_runs",
        lock_timeout_s: float | None = DEFAULT_LOCK_TIMEOUT_S,
        fallback_path: Path | None = None,
        abandon_after_s: float | None = DEFAULT_ABANDON_AFTER_S,
    ):
        from sqlalchemy.engine import make_url
        from sqlalchemy.exc import ArgumentError

        self._secrets = _url_secrets(str(url))
        try:
            self._url = make_url(str(url))
        except ArgumentError:
            raise ChurnmlError(f"invalid warehouse URL {redact_url(url)!r}") from None
        self.url = redact_url(self._url)
        if schema:
            validate_identifier(schema, "schema")
        self.schema = schema
        names = {
            "scores": scores_table,
            "explanations": explanations_table,
            "runs": runs_table,
            "performance": performance_table,
            "call_list": call_list_table,
            "account_survival": account_survival_table,
            "revenue_forecast": revenue_forecast_table,
            "forecast_runs": forecast_runs_table,
        }
        for logical, name in names.items():
            validate_identifier(name, f"{logical} table")
        if len(set(names.values())) < len(names):
            raise ChurnmlError(f"warehouse table names must differ: {names}")
        for cols in _COLUMNS.values():
            for col in cols:
                validate_identifier(col.name, "column")
        self.table_names = names
        self.lock_timeout_s = lock_timeout_s
        self.abandon_after_s = abandon_after_s
        self.backend = self._url.get_backend_name()
        self.tables = _build_tables(schema, names, self.backend)
        self.duckdb_path: Path | None = None
        self.fallback_path: Path | None = None
        if self.backend == "duckdb":
            database = self._url.database or ":memory:"
            if database != ":memory:":
                self.duckdb_path = Path(database).expanduser().absolute()
                self.fallback_path = fallback_path or self.duckdb_path.with_name(
                    self.duckdb_path.name + FALLBACK_SUFFIX
                )
        self._engine: sa.Engine | None = None
        self._memory_con: Any = None
        from sqlalchemy.dialects import postgresql

        # DuckDB speaks PostgreSQL's DDL and quoting; other backends use their own dialect.
        self._dialect = postgresql.dialect()

    # -------------------------------------------------------------------------------- construction

    @classmethod
    def from_config(
        cls,
        cfg: WarehouseConfig,
        url_override: str | None = None,
        root: Path | None = None,
    ) -> Warehouse:
        """The warehouse a config names, its tables and lock timeout; an empty URL means the file ``cfg.duckdb_path``.

        A relative DuckDB path (in the config or in a ``duckdb:///relative`` URL) is resolved against
        ``root`` (default: the repository root), so every stage and scheduler finds the same file.
        """
        from sqlalchemy.engine import make_url
        from sqlalchemy.exc import ArgumentError

        root = Path(root) if root is not None else repo_root()
        url = url_override or cfg.url
        if not url:
            url = f"duckdb:///{_resolve(root, cfg.duckdb_path)}"
        else:
            try:
                parsed = make_url(url)
            except ArgumentError:
                raise ChurnmlError(f"invalid warehouse URL {redact_url(url)!r}") from None
            if parsed.get_backend_name() == "duckdb" and parsed.database not in (None, "", ":memory:"):
                url = parsed.set(database=str(_resolve(root, parsed.database))).render_as_string(
                    hide_password=False
                )
        return cls(
            url,
            schema=cfg.schema,
            scores_table=cfg.scores_table,
            explanations_table=cfg.explanations_table,
            runs_table=cfg.runs_table,
            performance_table=cfg.performance_table,
            call_list_table=cfg.call_list_table,
            account_survival_table=cfg.account_survival_table,
            revenue_forecast_table=cfg.revenue_forecast_table,
            forecast_runs_table=cfg.forecast_runs_table,
            lock_timeout_s=cfg.lock_timeout_s,
        )

    def __repr__(self) -> str:
        return f"Warehouse({self.url!r}, schema={self.schema!r})"

    def __enter__(self) -> Warehouse:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def close(self) -> None:
        """Release connections (the DuckDB file is only held during a call anyway)."""
        if self._engine is not None:
            self._engine.dispose()
            self._engine = None
        if self._memory_con is not None:
            self._memory_con.close()
            self._memory_con = None

    # -------------------------------------------------------------------------------- helpers

    def _scrub(self, text: str) -> str:
        for secret in self._secrets:
            text = text.replace(secret, "***")
        return text

    @contextmanager
    def _errors(self, what: str) -> Iterator[None]:
        """Any error inside as one scrubbed line: ``warehouse <url>: <what>: <error>`` (ChurnmlErrors pass)."""
        try:
            yield
        except _Unavailable as exc:
            raise ChurnmlError(self._scrub(str(exc))) from None
        except ChurnmlError:
            raise
        except Exception as exc:
            raise ChurnmlError(self._scrub(f"warehouse {self.url}: {what}: {_one_line(exc)}")) from None

    def _q(self, name: str) -> str:
        return self._dialect.identifier_preparer.quote_identifier(name)

    def _qcols(self, names: Iterable[str]) -> str:
        return ", ".join(self._q(n) for n in names)

    def _qtable(self, logical: str) -> str:
        name = self._q(self.table_names[logical])
        return f"{self._q(self.schema)}.{name}" if self.schema else name

    def _ddl_elements(self, logicals: Iterable[str] = _RUN_TABLES) -> list[Any]:
        """CREATE SCHEMA / CREATE TABLE IF NOT EXISTS statements, with primary keys."""
        from sqlalchemy.schema import CreateSchema, CreateTable

        out: list[Any] = [CreateSchema(self.tables["runs"].schema, if_not_exists=True)] if self.schema else []
        return out + [CreateTable(self.tables[name], if_not_exists=True) for name in logicals]

    def _ddl(self, logicals: Iterable[str] = _RUN_TABLES) -> list[str]:
        """The DDL as text for DuckDB (which accepts PostgreSQL's DDL)."""
        return [str(e.compile(dialect=self._dialect)).strip() for e in self._ddl_elements(logicals)]

    def _engine_for(self) -> sa.Engine:
        import sqlalchemy as sa

        if self._engine is None:
            kwargs: dict[str, Any] = {"pool_pre_ping": True}
            if self.backend == "postgresql" and "connect_timeout" not in self._url.query:
                kwargs["connect_args"] = {"connect_timeout": 10}
            self._engine = sa.create_engine(self._url, **kwargs)
        return self._engine

    def _duckdb_connect(self, create: bool) -> Any:
        """Open the DuckDB file, waiting while another process holds it (up to ``lock_timeout_s``)."""
        import duckdb

        if self.duckdb_path is None:
            if self._memory_con is None:
                self._memory_con = duckdb.connect(":memory:")
            return self._memory_con.cursor()
        path = self.duckdb_path
        if create:
            try:
                path.parent.mkdir(parents=True, exist_ok=True)
            except OSError as exc:
                raise _Unavailable(f"warehouse {path} cannot be created: {_one_line(exc)}") from None
        timeout = self.lock_timeout_s
        deadline = None if timeout is None else time.monotonic() + max(timeout, 0.0)
        delay, warned = 0.05, False
        while True:
            try:
                return duckdb.connect(str(path))
            except duckdb.IOException as exc:
                message = _one_line(exc)
                if "lock" not in message.lower():
                    raise _Unavailable(f"warehouse {path} cannot be opened: {message}") from None
                holder = re.search(r"\(PID (\d+)\)", message)
                if deadline is not None and time.monotonic() >= deadline:
                    waited = f"waited {timeout:g} s" if timeout and timeout > 0 else "not waiting"
                    who = f"PID {holder.group(1)}; " if holder else ""
                    raise _Unavailable(
                        f"warehouse {path} is locked by another writer ({who}{waited})"
                    ) from None
                if not warned:
                    log.info("warehouse %s is locked by another writer; waiting up to %s s", path, timeout)
                    warned = True
                pause = delay if deadline is None else min(delay, max(deadline - time.monotonic(), 0.0))
                time.sleep(pause)
                delay = min(delay * 2, 1.0)
            except duckdb.Error as exc:
                raise _Unavailable(f"warehouse {path} cannot be opened: {_one_line(exc)}") from None

    @contextmanager
    def _session(self) -> Iterator[_Session]:
        """An opened warehouse for one write; DuckDB writers of one file are serialised across threads."""
        if self.backend != "duckdb":
            yield _SQLSession(self._engine_for(), self)
            return
        key = str(self.duckdb_path or f"memory:{id(self)}")
        lock = _path_lock(key)
        timeout = self.lock_timeout_s
        acquired = lock.acquire(timeout=-1 if timeout is None else max(timeout, 0.0))
        if not acquired:
            raise _Unavailable(f"warehouse {key} is locked by another writer (a thread of this process)")
        try:
            con = self._duckdb_connect(create=True)
            try:
                yield _DuckDBSession(con, self)
            finally:
                con.close()
        finally:
            lock.release()

    def _write_fallback(self, record: RunRecord) -> str:
        """Append the run record beside the DuckDB file; return a phrase saying where it went."""
        if self.fallback_path is None:
            # No file to write beside (a server warehouse): the log is the only record left.
            log.error("run record not stored in the warehouse: %s", self._scrub(record.to_json()))
            return "not recorded in the warehouse (logged)"
        try:
            self.fallback_path.parent.mkdir(parents=True, exist_ok=True)
            with self.fallback_path.open("a", encoding="utf-8") as fh:
                fh.write(record.to_json() + "\n")
        except OSError as exc:
            log.error("run record not stored: %s", self._scrub(record.to_json()))
            return f"not recorded ({_one_line(exc)})"
        return f"recorded in {self.fallback_path}"

    # -------------------------------------------------------------------------------- writing

    def ensure_tables(self) -> None:
        """Create the schema and the three tables if missing."""
        with self._errors("cannot create tables"), self._session() as session:
            session.ensure_tables()

    def write_scores(
        self,
        scores: Frames,
        explanations: Frames | None,
        run: RunInfo,
        *,
        on_chunk: ChunkHook | None = None,
    ) -> RunRecord:
        """Replace the scores and explanations of ``run.as_of`` for the run's model versions.

        Args:
            scores: A frame, or an iterable of chunks, with the scores columns (as_of, the versions,
                run_id and scored_at are filled from ``run`` when absent and checked when present).
                ``top_reasons`` may hold JSON text or lists/dicts (serialised to JSON).
            explanations: A frame or chunks with the explanations columns (as_of filled when absent);
                target/model_version must be (``churn``, churn version) or (``expansion``, expansion version).
            run: The run; recorded in the runs table.
            on_chunk: Test hook called after each inserted chunk inside the transaction with the table
                ("scores"/"explanations") and its rows so far; raising aborts and rolls back the write.

        Returns:
            The final run record (status ``succeeded`` with row counts).

        Raises:
            ChurnmlError: on any failure, after the transaction rolled back and the run was marked failed.
        """
        named = _chain(
            (("scores", f) for f in _iter_frames(scores)),
            (("explanations", f) for f in _iter_frames(explanations)),
        )
        return self._write(named, run, on_chunk)

    def write_batches(
        self,
        batches: Iterable[tuple[pd.DataFrame | None, pd.DataFrame | None]],
        run: RunInfo,
        *,
        on_chunk: ChunkHook | None = None,
        call_list: Callable[[], pd.DataFrame | None] | None = None,
    ) -> RunRecord:
        """Like :meth:`write_scores`, for a stream of (scores chunk, explanations chunk) pairs.

        Scoring that computes scores and explanations chunk by chunk passes one generator; every chunk
        goes into the same transaction. Either element of a pair may be None. ``call_list``, called once
        every chunk is written, returns the run's call list (``weekly_call_list`` rows of ``run.as_of``):
        it replaces that date's list in the same transaction, so scores and their calls commit together.
        """

        def named() -> Iterator[tuple[str, pd.DataFrame | None]]:
            yield from _pairs(batches)
            if call_list is not None:
                yield "call_list", call_list()

        return self._write(named(), run, on_chunk)

    def _write(
        self, named: Iterator[tuple[str, pd.DataFrame | None]], run: RunInfo, on_chunk: ChunkHook | None
    ) -> RunRecord:
        record = RunRecord.start(run)

        def finish(counts: dict[str, int], untouched: int) -> RunRecord:
            # Written by the backend inside the data's transaction: rows and "succeeded" commit together.
            return replace(
                record,
                status="succeeded",
                scores_rows=counts["scores"],
                explanations_rows=counts["explanations"],
                accounts_untouched=untouched,
                finished_at=_utcnow(),
            )

        try:
            with self._session() as session:
                session.ensure_tables()
                self._abandon_stale(session)
                session.insert_run(record)
                try:
                    chunks = _arrow_batches(named, run, record.started_at, session.slice_rows)
                    record = session.replace(run, chunks, on_chunk, finish)
                except BaseException as exc:
                    signal_name = interruption(exc)
                    error = f"interrupted by {signal_name[0]}" if signal_name else self._scrub(_one_line(exc))
                    record = replace(record, status="failed", finished_at=_utcnow(), error=error)
                    where = self._record_failure(session, record)
                    if signal_name is not None:
                        raise Interrupted(
                            f"run {run.run_id} (as_of {run.as_of}) {error}: the write was rolled back and "
                            f"the run {where}",
                            signal_name[1],
                        ) from None
                    if not isinstance(exc, Exception):
                        raise
                    if isinstance(exc, _Unavailable):
                        raise ChurnmlError(f"{error}; run {run.run_id} {where}") from None
                    raise ChurnmlError(
                        f"warehouse write of run {run.run_id} (as_of {run.as_of}) to {self.url} failed and "
                        f"was rolled back: {error}; run {where}"
                    ) from None
        except _Unavailable as exc:  # the warehouse could not be opened: nothing is recorded there
            message = self._scrub(str(exc))
            record = replace(record, status="failed", finished_at=_utcnow(), error=message)
            raise ChurnmlError(f"{message}; run {run.run_id} {self._write_fallback(record)}") from None
        except ChurnmlError:
            raise
        except Exception as exc:
            message = f"warehouse {self.url}: {self._scrub(_one_line(exc))}"
            record = replace(record, status="failed", finished_at=_utcnow(), error=message)
            raise ChurnmlError(f"{message}; run {run.run_id} {self._write_fallback(record)}") from None
        log.info(
            "wrote %d scores and %d explanations for as_of %s (run %s; %d account(s) of the date kept) to %s",
            record.scores_rows,
            record.explanations_rows,
            run.as_of,
            run.run_id,
            record.accounts_untouched or 0,
            self.url,
        )
        return record

    def _abandon_stale(self, session: _Session, runs: str = "runs") -> list[str]:
        """Mark ``running`` runs (of the ``runs`` table) whose process is gone as ``abandoned``; return their ids."""
        here = socket.gethostname()
        now = _utcnow()
        stale = []
        for run_id, host, pid, started_at in session.running_runs(runs):
            if host == here and pid is not None:
                gone = pid != os.getpid() and not _pid_alive(int(pid))
            else:  # another host (or a record from before hosts were recorded): only by age
                age = (now - started_at).total_seconds() if started_at is not None else None
                gone = self.abandon_after_s is not None and age is not None and age >= self.abandon_after_s
            if gone:
                stale.append(run_id)
        if stale:
            session.abandon_runs(stale, now, runs)
            log.warning("marked %d run(s) left running by a dead process as abandoned: %s", len(stale),
                        ", ".join(stale))  # fmt: skip
        return stale

    def check(self, forecast: bool = False) -> None:
        """Fail fast: open the warehouse, create or upgrade its tables and mark abandoned runs, before any
        feature or model work. Raises one scrubbed line when the warehouse is unreachable or refuses.

        Args:
            forecast: check the tables ``churnml forecast`` writes instead of the scoring ones.
        """
        logicals, runs = (_FORECAST_RUN_TABLES, "forecast_runs") if forecast else (_RUN_TABLES, "runs")
        with self._errors("cannot open"), self._session() as session:
            session.ensure_tables(logicals)
            self._abandon_stale(session, runs)

    def write_forecast(
        self,
        account_survival: pd.DataFrame,
        revenue_forecast: pd.DataFrame,
        run: ForecastRunInfo,
        *,
        on_chunk: ChunkHook | None = None,
    ) -> ForecastRunRecord:
        """Replace the as-of's survival curves and revenue forecast with a run's, in one transaction.

        The run is recorded ``running`` in the forecast runs table first (its own transaction); then every
        ``account_survival`` and ``revenue_forecast`` row of ``run.as_of`` is deleted, the new rows inserted
        and the run marked ``succeeded`` with its row counts, all in ONE transaction: a rerun of the as-of
        (with any model version) replaces it whole, and a failure anywhere leaves the previous rows. The as-of
        is the unit, not (as-of, version) as for scores: a book has one forecast per day, and a BI sum over
        the table must not count two.

        Args:
            account_survival: rows in the ``account_survival`` layout; ``as_of``,
                ``survival_model_version``, ``run_id`` and ``forecast_at`` are filled from the run when
                absent and must agree with it when present.
            revenue_forecast: rows in the ``revenue_forecast`` layout (the same filled columns).
            run: the run.
            on_chunk: test hook called inside the transaction after each table's insert with the table and
                its rows; raising aborts and rolls back the write.

        Returns:
            The final run record (status ``succeeded`` with row counts).

        Raises:
            ChurnmlError: on a bad frame or a failed write, after the transaction rolled back and the run
                was marked failed.
        """
        record = ForecastRunRecord.start(run)
        fills = {
            "as_of": run.as_of,
            "survival_model_version": run.survival_model_version,
            "run_id": run.run_id,
            "forecast_at": record.started_at,
        }
        frames = dict(zip(FORECAST_TABLES, (account_survival, revenue_forecast), strict=True))

        def finish(counts: dict[str, int]) -> dict[str, Any]:
            nonlocal record
            record = replace(
                record,
                status="succeeded",
                account_survival_rows=counts["account_survival"],
                revenue_forecast_rows=counts["revenue_forecast"],
                finished_at=_utcnow(),
            )
            return {k: getattr(record, k) for k in ("run_id", "status", *counts_columns, "finished_at")}

        counts_columns = ("account_survival_rows", "revenue_forecast_rows")
        with self._errors("forecast write failed"), self._session() as session:
            session.ensure_tables(_FORECAST_RUN_TABLES)
            self._abandon_stale(session, "forecast_runs")
            session.insert_record("forecast_runs", {f.name: getattr(record, f.name) for f in fields(record)})
            try:
                tables = {name: _filled_arrow(frame, name, fills) for name, frame in frames.items()}
                session.replace_dated(tables, run.as_of, "forecast_runs", finish, on_chunk)
            except BaseException as exc:
                signal_name = interruption(exc)
                error = f"interrupted by {signal_name[0]}" if signal_name else self._scrub(_one_line(exc))
                record = replace(record, status="failed", finished_at=_utcnow(), error=error)
                try:
                    session.update_record(
                        "forecast_runs",
                        {"run_id": record.run_id, "status": "failed", "finished_at": record.finished_at,
                         "error": error},
                    )  # fmt: skip
                    where = "marked failed"
                except Exception as mark:
                    log.warning(
                        "could not mark forecast run %s failed: %s", run.run_id, self._scrub(_one_line(mark))
                    )
                    where = "left running (could not be marked failed)"
                if signal_name is not None:
                    raise Interrupted(
                        f"forecast run {run.run_id} (as_of {run.as_of}) {error}: the write was rolled back "
                        f"and the run {where}",
                        signal_name[1],
                    ) from None
                if not isinstance(exc, Exception):
                    raise
                raise ChurnmlError(
                    f"warehouse forecast write of run {run.run_id} (as_of {run.as_of}) to {self.url} failed "
                    f"and was rolled back: {error}; run {where}"
                ) from None
        log.info(
            "wrote %d account_survival and %d revenue_forecast rows for as_of %s (run %s) to %s",
            record.account_survival_rows,
            record.revenue_forecast_rows,
            run.as_of,
            run.run_id,
            self.url,
        )
        return record

    def _record_failure(self, session: _Session, record: RunRecord) -> str:
        """Mark the run failed in its own transaction (else in the fallback); return where it went."""
        try:
            session.update_run(record)
        except Exception as exc:
            log.warning("could not mark run %s failed: %s", record.run_id, self._scrub(_one_line(exc)))
            return self._write_fallback(record)
        return "marked failed"

    def write_performance(self, frame: pd.DataFrame) -> int:
        """Replace the realised-performance rows that have the keys of ``frame``; other rows stay.

        Args:
            frame: rows in the ``score_performance`` layout (:data:`PERFORMANCE_COLUMNS`); key
                (as_of, target, model_version, touch_model), unique within the frame.

        Returns:
            The number of rows written.

        Raises:
            ChurnmlError: on a bad frame (nothing written) or a failed write (rolled back: the previous
                rows stay).
        """
        table = _performance_arrow(frame)
        if table.num_rows == 0:
            return 0
        with self._errors("performance write failed and was rolled back"), self._session() as session:
            session.replace_performance(table)
        log.info("wrote %d performance rows to %s", table.num_rows, self.url)
        return table.num_rows

    def write_call_list(self, frame: pd.DataFrame, as_of: Any) -> int:
        """Replace the call list of ``as_of`` with ``frame`` in one transaction (other dates stay).

        Args:
            frame: rows in the ``weekly_call_list`` layout (:data:`CALL_LIST_COLUMNS`), all of ``as_of``;
                key (account_id, as_of). An empty frame clears the date.

        Returns:
            The number of rows written.

        Raises:
            ChurnmlError: on a bad frame (nothing written) or a failed write (rolled back: the previous
                rows stay).
        """
        day = _to_date(as_of, "as_of")
        table = _checked_arrow(frame, CALL_LIST_COLUMNS, "call_list")
        days = {d for d in table.column("as_of").to_pylist()}
        if days - {day}:
            raise ChurnmlError(f"call_list: rows dated {sorted(map(str, days - {day}))[:3]}, expected {day}")
        with self._errors("call list write failed and was rolled back"), self._session() as session:
            session.replace_as_of("call_list", table, day)
        log.info("wrote %d call list rows for as_of %s to %s", table.num_rows, day, self.url)
        return table.num_rows

    # -------------------------------------------------------------------------------- reading

    def _read(self, logical: str, where: dict[str, Any], order: list[str]) -> pd.DataFrame:
        columns = _COLUMNS[logical]
        names = [c.name for c in columns]
        with self._errors(f"cannot read {logical}"):
            if self.backend == "duckdb":
                if self.duckdb_path is not None and not self.duckdb_path.exists():
                    return _normalise(pd.DataFrame(columns=names), columns)
                con = self._duckdb_connect(create=False)
                try:
                    exists = con.execute(
                        "SELECT count(*) FROM information_schema.tables WHERE table_name = ? AND table_schema = ?",
                        [self.table_names[logical], self.schema or "main"],
                    ).fetchall()[0][0]
                    if not exists:
                        return _normalise(pd.DataFrame(columns=names), columns)
                    clause = " AND ".join(f"{self._q(k)} = ?" for k in where)
                    sql = (
                        f"SELECT {self._qcols(names)} FROM {self._qtable(logical)}"
                        + (f" WHERE {clause}" if clause else "")
                        + f" ORDER BY {self._qcols(order)}"
                    )
                    frame = con.execute(sql, list(where.values())).df()
                finally:
                    con.close()
            else:
                import sqlalchemy as sa

                table = self.tables[logical]
                engine = self._engine_for()
                if not sa.inspect(engine).has_table(self.table_names[logical], schema=self.schema or None):
                    return _normalise(pd.DataFrame(columns=names), columns)
                stmt = sa.select(table).where(*(table.c[k] == v for k, v in where.items()))
                stmt = stmt.order_by(*(table.c[k] for k in order))
                with engine.connect() as conn:
                    result = conn.execute(stmt)
                    frame = pd.DataFrame.from_records(list(result), columns=names)
        return _normalise(frame, columns)

    def read_scores(self, as_of: Any = None) -> pd.DataFrame:
        """Scores (all as-of dates, or one), ordered by as-of, versions and account."""
        where = {} if as_of is None else {"as_of": _to_date(as_of, "as_of")}
        order = ["as_of", "churn_model_version", "expansion_model_version", "account_id"]
        return self._read("scores", where, order)

    def read_explanations(self, as_of: Any = None) -> pd.DataFrame:
        """Explanations (all as-of dates, or one), ordered by as-of, target, version, account and rank."""
        where = {} if as_of is None else {"as_of": _to_date(as_of, "as_of")}
        order = ["as_of", "target", "model_version", "account_id", "rank", "feature"]
        return self._read("explanations", where, order)

    def read_call_list(self, as_of: Any = None) -> pd.DataFrame:
        """The call list (all as-of dates, or one), ordered by as-of and team rank."""
        where = {} if as_of is None else {"as_of": _to_date(as_of, "as_of")}
        return self._read("call_list", where, ["as_of", "team_rank"])

    def read_performance(self) -> pd.DataFrame:
        """Realised-performance rows ordered by as-of, target, model version and touch model."""
        return self._read("performance", {}, ["as_of", "target", "model_version", "touch_model"])

    def read_account_survival(self, as_of: Any = None) -> pd.DataFrame:
        """Survival curves (all as-of dates, or one), ordered by as-of and account."""
        where = {} if as_of is None else {"as_of": _to_date(as_of, "as_of")}
        return self._read("account_survival", where, ["as_of", "account_id"])

    def read_revenue_forecast(self, as_of: Any = None) -> pd.DataFrame:
        """Revenue forecast rows (all as-of dates, or one), ordered by as-of, horizon, dimension and group."""
        where = {} if as_of is None else {"as_of": _to_date(as_of, "as_of")}
        return self._read("revenue_forecast", where, ["as_of", "horizon_months", "dimension", "group"])

    def read_forecast_runs(self) -> pd.DataFrame:
        """Forecast run records ordered by start time."""
        return self._read("forecast_runs", {}, ["started_at", "run_id"])

    def read_runs(self) -> pd.DataFrame:
        """Run records ordered by start time, including those a DuckDB writer had to put in the fallback file.

        A fallback record replaces a table record of the same run only while that one still says running.
        """
        runs = self._read("runs", {}, ["started_at", "run_id"])
        fallback = self._read_fallback()
        if fallback.empty:
            return runs
        open_runs = set(runs.loc[runs["status"] == "running", "run_id"])
        known = set(runs["run_id"])
        keep = fallback[~fallback["run_id"].isin(known) | fallback["run_id"].isin(open_runs)]
        keep = keep.drop_duplicates("run_id", keep="last")
        merged = pd.concat([runs[~runs["run_id"].isin(set(keep["run_id"]))], keep], ignore_index=True)
        merged = merged.sort_values(["started_at", "run_id"], kind="stable", ignore_index=True)
        return _normalise(merged, RUNS_COLUMNS)

    def _read_fallback(self) -> pd.DataFrame:
        names = [f.name for f in fields(RunRecord)]
        if self.fallback_path is None or not self.fallback_path.exists():
            return pd.DataFrame(columns=names)
        rows = []
        for number, line in enumerate(self.fallback_path.read_text(encoding="utf-8").splitlines(), start=1):
            if not line.strip():
                continue
            try:
                rows.append(json.loads(line))
            except json.JSONDecodeError:
                # A line cut short by a crash must not hide the other records.
                log.warning("%s:%d: not a JSON run record, skipped", self.fallback_path, number)
        return _normalise(pd.DataFrame.from_records(rows, columns=names), RUNS_COLUMNS)


def _filled_arrow(frame: pd.DataFrame, logical: str, fills: dict[str, Any]) -> Any:
    """A forecast frame with the run's columns filled (when absent) or checked (when present), as Arrow.

    A row of another as-of or model version would escape the as-of's delete-then-insert: it fails here.
    """
    if not isinstance(frame, pd.DataFrame):
        raise ChurnmlError(f"{logical}: expected a DataFrame, got {type(frame).__name__}")
    out = frame.copy()
    for col in _COLUMNS[logical]:
        if not col.filled:
            continue
        value = fills[col.name]
        if col.name not in out.columns:
            out[col.name] = [value] * len(out)
        elif col.name != "forecast_at" and len(out):
            given = out[col.name]
            same = (
                (pd.to_datetime(given).dt.date == value) if col.kind == "date" else given.astype(str) == value
            )
            if not same.all():
                raise ChurnmlError(
                    f"{logical}.{col.name} holds {given[~same].iloc[0]!r}, but the run writes {value!r}"
                )
    return _checked_arrow(out, _COLUMNS[logical], logical)


def _resolve(root: Path, path: str) -> Path:
    candidate = Path(path).expanduser()
    return candidate if candidate.is_absolute() else (root / candidate).absolute()


def _pid_alive(pid: int) -> bool:
    """Whether a process with this id exists on this host (a zombie counts as gone)."""
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    try:  # Linux: a killed child not yet reaped by its parent is a zombie, not a live writer
        with open(f"/proc/{pid}/stat", encoding="ascii") as fh:
            return fh.read().rsplit(")", 1)[1].split()[0] != "Z"
    except (OSError, IndexError):
        return True
