"""The warehouse backends: a DuckDB file written through DuckDB itself, and any SQLAlchemy URL (PostgreSQL with COPY)."""

from __future__ import annotations

import io
import logging
import threading
import uuid
from collections.abc import Callable, Iterable, Iterator, Mapping
from contextlib import suppress
from dataclasses import asdict
from typing import TYPE_CHECKING, Any

from churnml.errors import ChurnmlError
from churnml.warehouse.frames import _SLICE_ROWS, _hash64, _slices
from churnml.warehouse.secrets import _one_line
from churnml.warehouse.tables import (
    _COLUMNS,
    _RUN_TABLES,
    PERFORMANCE_COLUMNS,
    RUNS_COLUMNS,
    TARGET_CHURN,
    TARGET_EXPANSION,
    ChunkHook,
    RunInfo,
    RunRecord,
    _sa_type,
)

if TYPE_CHECKING:
    import pyarrow as pa
    import sqlalchemy as sa

    from churnml.warehouse.store import Warehouse


log = logging.getLogger(__name__)
# Builds the succeeded run record from the row counts and the accounts of the as-of the run left alone.
Finish = Callable[[dict[str, int], int], RunRecord]
# Builds a dated write's final run-record row (its columns by name, run_id included) from the row counts.
FinishRow = Callable[[dict[str, int]], Mapping[str, Any]]
_ABANDONED = "abandoned: its process is gone (killed, or the host restarted) while the run was running"


def _missing_run_columns(present: set[str]) -> list[Any]:
    """The runs table's columns an older table lacks (added in place, nullable)."""
    return [c for c in RUNS_COLUMNS if c.name not in present]


def sa_select_lock(table: str, as_of: Any) -> Any:
    """A transaction-level advisory lock on one (table, as-of): PostgreSQL writers of the same date queue."""
    import sqlalchemy as sa

    return sa.select(sa.func.pg_advisory_xact_lock(_hash64(f"{table}|{as_of}")))


class _Unavailable(ChurnmlError):
    """The warehouse could not be opened or locked; the message is one safe line."""


# ---------------------------------------------------------------------------------------------- backends


_PATH_LOCKS: dict[str, threading.Lock] = {}
_PATH_LOCKS_GUARD = threading.Lock()


def _path_lock(key: str) -> threading.Lock:
    with _PATH_LOCKS_GUARD:
        return _PATH_LOCKS.setdefault(key, threading.Lock())


class _Session:
    """One opened warehouse: DDL, run records and the replace transaction."""

    # Rows per statement; None = each chunk whole (DuckDB scans an Arrow table of any size without copying).
    slice_rows: int | None = _SLICE_ROWS

    def ensure_tables(self, logicals: Iterable[str] = _RUN_TABLES) -> None:
        raise NotImplementedError

    def insert_run(self, record: RunRecord) -> None:
        raise NotImplementedError

    def insert_record(self, logical: str, row: Mapping[str, Any]) -> None:
        """Insert one row (a run record) into a table, in a transaction of its own."""
        raise NotImplementedError

    def update_record(self, logical: str, row: Mapping[str, Any]) -> None:
        """Update the row whose ``run_id`` is ``row["run_id"]`` with the other values, in its own transaction."""
        raise NotImplementedError

    def replace_dated(
        self,
        tables: Mapping[str, pa.Table],
        as_of: Any,
        runs: str,
        finish: FinishRow,
        on_chunk: ChunkHook | None,
    ) -> Mapping[str, Any]:
        """In ONE transaction: delete every row of ``as_of`` from each table, insert its new rows, and update
        the run record in ``runs`` to ``finish(counts)``; return that row. ``on_chunk(table, rows)`` runs
        inside the transaction after each table's insert (raising rolls everything back)."""
        raise NotImplementedError

    def update_run(self, record: RunRecord) -> None:
        raise NotImplementedError

    def running_runs(self, logical: str = "runs") -> list[tuple[str, str | None, int | None, Any]]:
        """(run_id, host, pid, started_at) of every run recorded as ``running`` in a runs table."""
        raise NotImplementedError

    def abandon_runs(self, run_ids: list[str], now: Any, logical: str = "runs") -> None:
        """Mark these runs ``abandoned`` (only while they still say ``running``)."""
        raise NotImplementedError

    def replace(
        self,
        run: RunInfo,
        batches: Iterator[tuple[str, pa.Table]],
        on_chunk: ChunkHook | None,
        finish: Finish,
    ) -> RunRecord:
        """Write the run's rows and its final record (``finish(counts, accounts_untouched)``) in ONE
        transaction; return that record."""
        raise NotImplementedError

    def replace_performance(self, table: pa.Table) -> None:
        raise NotImplementedError

    def replace_as_of(self, logical: str, table: pa.Table, as_of: Any) -> None:
        """Delete the rows of ``as_of`` and insert ``table`` in one transaction."""
        raise NotImplementedError


class _DuckDBSession(_Session):
    slice_rows = None

    def __init__(self, con: Any, wh: Warehouse):
        self.con = con
        self.wh = wh

    def ensure_tables(self, logicals: Iterable[str] = _RUN_TABLES) -> None:
        for statement in self.wh._ddl(logicals):
            self.con.execute(statement)
        if "runs" not in logicals:
            return
        present = {
            r[0]
            for r in self.con.execute(
                "SELECT column_name FROM information_schema.columns WHERE table_name = ? AND table_schema = ?",
                [self.wh.table_names["runs"], self.wh.schema or "main"],
            ).fetchall()
        }
        for col in _missing_run_columns(present):
            kind = _sa_type(col.kind, "duckdb").compile(dialect=self.wh._dialect)
            self.con.execute(
                f"ALTER TABLE {self.wh._qtable('runs')} ADD COLUMN IF NOT EXISTS {self.wh._q(col.name)} {kind}"
            )

    def running_runs(self, logical: str = "runs") -> list[tuple[str, str | None, int | None, Any]]:
        q = self.wh._q
        return [
            tuple(r)
            for r in self.con.execute(
                f"SELECT {q('run_id')}, {q('host')}, {q('pid')}, {q('started_at')} "
                f"FROM {self.wh._qtable(logical)} WHERE {q('status')} = 'running'"
            ).fetchall()
        ]

    def abandon_runs(self, run_ids: list[str], now: Any, logical: str = "runs") -> None:
        q = self.wh._q
        self.con.execute(
            f"UPDATE {self.wh._qtable(logical)} SET {q('status')} = 'abandoned', {q('finished_at')} = ?, "
            f"{q('error')} = ? WHERE {q('status')} = 'running' AND {q('run_id')} IN "
            f"({', '.join('?' * len(run_ids))})",
            [now, _ABANDONED, *run_ids],
        )

    def replace_performance(self, table: pa.Table) -> None:
        """Upsert by key in one transaction (the same result as deleting the keys, then inserting)."""
        q, wh, con = self.wh._q, self.wh, self.con
        for statement in wh._ddl(("performance",)):
            con.execute(statement)
        view = f"churnml_perf_{uuid.uuid4().hex}"
        names = wh._qcols(table.column_names)
        updates = [c.name for c in PERFORMANCE_COLUMNS if not c.key]
        con.begin()
        try:
            con.register(view, table)
            con.execute(
                f"INSERT INTO {wh._qtable('performance')} ({names}) SELECT {names} FROM {q(view)} "
                "ON CONFLICT DO UPDATE SET " + ", ".join(f"{q(c)} = excluded.{q(c)}" for c in updates)
            )
            con.commit()
        except BaseException:
            with suppress(Exception):  # the original error matters more
                con.rollback()
            raise
        finally:
            with suppress(Exception):
                con.unregister(view)

    def replace_as_of(self, logical: str, table: pa.Table, as_of: Any) -> None:
        q, wh, con = self.wh._q, self.wh, self.con
        for statement in wh._ddl((logical,)):
            con.execute(statement)
        view = f"churnml_{logical}_{uuid.uuid4().hex}"
        names = wh._qcols(table.column_names)
        con.begin()
        try:
            con.execute(f"DELETE FROM {wh._qtable(logical)} WHERE {q('as_of')} = ?", [as_of])
            if table.num_rows:
                con.register(view, table)
                con.execute(f"INSERT INTO {wh._qtable(logical)} ({names}) SELECT {names} FROM {q(view)}")
            con.commit()
        except BaseException:
            with suppress(Exception):
                con.rollback()
            raise
        finally:
            with suppress(Exception):
                con.unregister(view)

    def insert_record(self, logical: str, row: Mapping[str, Any]) -> None:
        names = list(row)
        self.con.execute(
            f"INSERT INTO {self.wh._qtable(logical)} ({self.wh._qcols(names)}) VALUES ({', '.join('?' * len(names))})",
            list(row.values()),
        )

    def update_record(self, logical: str, row: Mapping[str, Any]) -> None:
        q = self.wh._q
        sets = [k for k in row if k != "run_id"]
        self.con.execute(
            f"UPDATE {self.wh._qtable(logical)} SET {', '.join(f'{q(s)} = ?' for s in sets)} WHERE {q('run_id')} = ?",
            [*(row[s] for s in sets), row["run_id"]],
        )

    def replace_dated(
        self,
        tables: Mapping[str, pa.Table],
        as_of: Any,
        runs: str,
        finish: FinishRow,
        on_chunk: ChunkHook | None,
    ) -> Mapping[str, Any]:
        # delete-then-insert, simpler than the scores' upsert (replace); DuckDB commits mass deletes slowly,
        # which costs a rerun of a large book's as-of seconds (one account_survival row per account)
        q, wh, con = self.wh._q, self.wh, self.con
        view = f"churnml_dated_{uuid.uuid4().hex}"
        counts: dict[str, int] = {}
        con.begin()
        try:
            for logical, table in tables.items():
                con.execute(f"DELETE FROM {wh._qtable(logical)} WHERE {q('as_of')} = ?", [as_of])
                if table.num_rows:
                    names = wh._qcols(table.column_names)
                    con.register(view, table)
                    try:
                        con.execute(
                            f"INSERT INTO {wh._qtable(logical)} ({names}) SELECT {names} FROM {q(view)}"
                        )
                    finally:
                        with suppress(Exception):
                            con.unregister(view)
                counts[logical] = table.num_rows
                if on_chunk is not None:
                    on_chunk(logical, counts[logical])
            row = finish(counts)
            self.update_record(runs, row)
            con.commit()
        except BaseException:
            with suppress(Exception):  # the original error matters more
                con.rollback()
            raise
        return row

    def insert_run(self, record: RunRecord) -> None:
        names = [c.name for c in RUNS_COLUMNS]
        values = [getattr(record, n) for n in names]
        self.con.execute(
            f"INSERT INTO {self.wh._qtable('runs')} ({self.wh._qcols(names)}) VALUES ({', '.join('?' * len(names))})",
            values,
        )

    def update_run(self, record: RunRecord) -> None:
        sets = ["status", "scores_rows", "explanations_rows", "accounts_untouched", "finished_at", "error"]
        q = self.wh._q
        self.con.execute(
            f"UPDATE {self.wh._qtable('runs')} SET {', '.join(f'{q(s)} = ?' for s in sets)} WHERE {q('run_id')} = ?",
            [*(getattr(record, s) for s in sets), record.run_id],
        )

    def replace(
        self,
        run: RunInfo,
        batches: Iterator[tuple[str, pa.Table]],
        on_chunk: ChunkHook | None,
        finish: Finish,
    ) -> RunRecord:
        """Replace the run's rows in one transaction with its final record: plain inserts when the scope is
        empty (a new as-of), else upserts followed by deleting what the run replaced but did not rewrite:
        the scope's other rows with ``replace_date``, else only the explanations of the accounts it wrote
        (other accounts' rows stay: a partial export deletes nothing).

        Same result as delete-then-insert, but DuckDB commits deletions from a primary-key table slowly
        (300k rows: 6 s against 0.5 s for an upsert), and a rerun rewrites nearly the same keys. On the
        upsert path the keys written go to temporary tables with primary keys, so a key repeated within or
        across chunks still fails, as the target's primary key makes it fail on the insert path.
        """
        q, wh, con = self.wh._q, self.wh, self.con
        scores, expl = wh._qtable("scores"), wh._qtable("explanations")
        scores_scope = (
            f"{q('as_of')} = ? AND {q('churn_model_version')} = ? AND {q('expansion_model_version')} = ?",
            [run.as_of, run.churn_model_version, run.expansion_model_version],
        )
        expl_scope = (
            f"{q('as_of')} = ? AND (({q('target')} = ? AND {q('model_version')} = ?) "
            f"OR ({q('target')} = ? AND {q('model_version')} = ?))",
            [run.as_of, TARGET_CHURN, run.churn_model_version, TARGET_EXPANSION, run.expansion_model_version],
        )
        varying = {  # key columns that vary within one run's scope
            "scores": ["account_id"],
            "explanations": ["account_id", "target", "model_version", "feature"],
        }
        suffix = uuid.uuid4().hex
        written = {
            "scores": f"churnml_written_scores_{suffix}",
            "explanations": f"churnml_written_expl_{suffix}",
        }
        view = f"churnml_stage_{suffix}"
        counts = {"scores": 0, "explanations": 0}
        con.begin()
        try:
            # Nothing else writes this file meanwhile (file lock + per-file thread lock), so this stays true.
            upsert = con.execute(
                f"SELECT EXISTS (SELECT 1 FROM {scores} WHERE {scores_scope[0]}) "
                f"OR EXISTS (SELECT 1 FROM {expl} WHERE {expl_scope[0]})",
                scores_scope[1] + expl_scope[1],
            ).fetchall()[0][0]
            if upsert:
                for table, keys in varying.items():
                    columns = ", ".join(f"{q(k)} TEXT NOT NULL" for k in keys)
                    con.execute(
                        f"CREATE TEMP TABLE {q(written[table])} ({columns}, PRIMARY KEY ({wh._qcols(keys)}))"
                    )
            cleared = False
            for table, chunk in batches:
                names = wh._qcols(chunk.column_names)
                if table == "call_list":  # this as-of's list is replaced whole, in the run's transaction
                    if not cleared:
                        con.execute(f"DELETE FROM {wh._qtable(table)} WHERE {q('as_of')} = ?", [run.as_of])
                        cleared = True
                    con.register(view, chunk)
                    try:
                        con.execute(
                            f"INSERT INTO {wh._qtable(table)} ({names}) SELECT {names} FROM {q(view)}"
                        )
                    finally:
                        with suppress(Exception):
                            con.unregister(view)
                    counts[table] = counts.get(table, 0) + chunk.num_rows
                    continue
                con.register(view, chunk)
                try:
                    if upsert:
                        keys = wh._qcols(varying[table])
                        con.execute(f"INSERT INTO {q(written[table])} ({keys}) SELECT {keys} FROM {q(view)}")
                        updates = [c.name for c in _COLUMNS[table] if not c.key]
                        con.execute(
                            f"INSERT INTO {wh._qtable(table)} ({names}) SELECT {names} FROM {q(view)} "
                            f"ON CONFLICT DO UPDATE SET "
                            + ", ".join(f"{q(c)} = excluded.{q(c)}" for c in updates)
                        )
                    else:
                        con.execute(
                            f"INSERT INTO {wh._qtable(table)} ({names}) SELECT {names} FROM {q(view)}"
                        )
                finally:
                    # After a failed insert the transaction is aborted and unregister fails too: keep
                    # the first error (the view dies with the connection anyway).
                    with suppress(Exception):
                        con.unregister(view)
                counts[table] += chunk.num_rows
                if on_chunk is not None:
                    on_chunk(table, counts[table])
            if upsert:
                match = " AND ".join(f"w.{q(k)} = {expl}.{q(k)}" for k in varying["explanations"])
                if run.replace_date:
                    con.execute(
                        f"DELETE FROM {scores} WHERE {scores_scope[0]} AND {q('account_id')} NOT IN "
                        f"(SELECT {q('account_id')} FROM {q(written['scores'])})",
                        scores_scope[1],
                    )
                    mine = ""
                else:
                    mine = (
                        f"AND {q('account_id')} IN (SELECT {q('account_id')} FROM {q(written['scores'])} "
                        f"UNION SELECT {q('account_id')} FROM {q(written['explanations'])}) "
                    )
                con.execute(
                    f"DELETE FROM {expl} WHERE {expl_scope[0]} {mine}"
                    f"AND NOT EXISTS (SELECT 1 FROM {q(written['explanations'])} AS w WHERE {match})",
                    expl_scope[1],
                )
                for name in written.values():
                    con.execute(f"DROP TABLE {q(name)}")
            total = con.execute(f"SELECT count(*) FROM {scores} WHERE {scores_scope[0]}", scores_scope[1])
            record = finish(counts, int(total.fetchall()[0][0]) - counts["scores"])
            self.update_run(record)
            con.commit()
        except BaseException:
            try:
                con.rollback()
            except (
                Exception
            ) as exc:  # the original error matters more; the transaction dies with the connection
                log.debug("rollback failed: %s", wh._scrub(_one_line(exc)))
            raise
        return record


class _SQLSession(_Session):
    def __init__(self, engine: sa.Engine, wh: Warehouse):
        self.engine = engine
        self.wh = wh
        self.postgres = engine.dialect.name == "postgresql"

    def ensure_tables(self, logicals: Iterable[str] = _RUN_TABLES) -> None:
        import sqlalchemy as sa

        with self.engine.begin() as conn:
            if self.postgres:
                # Concurrent CREATE ... IF NOT EXISTS can still collide in PostgreSQL's catalog: serialise DDL.
                conn.execute(
                    sa.select(sa.func.pg_advisory_xact_lock(_hash64(f"churnml-ddl|{self.wh.schema}")))
                )
            for element in self.wh._ddl_elements(logicals):
                conn.execute(element)
            if "runs" in logicals:
                self._upgrade(conn)

    def _upgrade(self, conn: sa.Connection) -> None:
        """Bring tables of an older release up to date: new run columns; jsonb reasons in PostgreSQL."""
        import sqlalchemy as sa

        inspector = sa.inspect(conn)
        schema = self.wh.schema or None
        present = {c["name"] for c in inspector.get_columns(self.wh.table_names["runs"], schema=schema)}
        for col in _missing_run_columns(present):
            kind = _sa_type(col.kind, self.engine.dialect.name).compile(dialect=self.engine.dialect)
            conn.execute(
                sa.text(f"ALTER TABLE {self.wh._qtable('runs')} ADD COLUMN {self.wh._q(col.name)} {kind}")
            )
        if self.postgres:
            types = {
                c["name"]: str(c["type"]).upper()
                for c in inspector.get_columns(self.wh.table_names["scores"], schema=schema)
            }
            if types.get("top_reasons") == "TEXT":
                column = self.wh._q("top_reasons")
                conn.execute(
                    sa.text(
                        f"ALTER TABLE {self.wh._qtable('scores')} ALTER COLUMN {column} TYPE jsonb "
                        f"USING {column}::jsonb"
                    )
                )

    def replace_performance(self, table: pa.Table) -> None:
        """Delete the frame's keys and insert its rows in one transaction (PostgreSQL: one writer at a time)."""
        import sqlalchemy as sa

        self.ensure_tables(("performance",))
        target = self.wh.tables["performance"]
        keys = [c.name for c in PERFORMANCE_COLUMNS if c.key]
        rows = table.to_pylist()
        delete = target.delete().where(*(target.c[k] == sa.bindparam(f"key_{k}") for k in keys))
        with self.engine.begin() as conn:
            if self.postgres:
                lock = _hash64(f"{self.wh._qtable('performance')}|performance")
                conn.execute(sa.select(sa.func.pg_advisory_xact_lock(lock)))
            conn.execute(delete, [{f"key_{k}": row[k] for k in keys} for row in rows])
            conn.execute(target.insert(), rows)

    def replace_as_of(self, logical: str, table: pa.Table, as_of: Any) -> None:
        self.ensure_tables((logical,))
        target = self.wh.tables[logical]
        with self.engine.begin() as conn:
            if self.postgres:
                conn.execute(sa_select_lock(self.wh._qtable(logical), as_of))
            conn.execute(target.delete().where(target.c["as_of"] == as_of))
            rows = table.to_pylist()
            if rows:
                conn.execute(target.insert(), rows)

    def insert_run(self, record: RunRecord) -> None:
        with self.engine.begin() as conn:
            conn.execute(self.wh.tables["runs"].insert().values(**asdict(record)))

    def insert_record(self, logical: str, row: Mapping[str, Any]) -> None:
        with self.engine.begin() as conn:
            conn.execute(self.wh.tables[logical].insert().values(**row))

    def update_record(self, logical: str, row: Mapping[str, Any], conn: sa.Connection | None = None) -> None:
        table = self.wh.tables[logical]
        statement = (
            table.update()
            .where(table.c.run_id == row["run_id"])
            .values(**{k: v for k, v in row.items() if k != "run_id"})
        )
        if conn is not None:
            conn.execute(statement)
            return
        with self.engine.begin() as own:
            own.execute(statement)

    def replace_dated(
        self,
        tables: Mapping[str, pa.Table],
        as_of: Any,
        runs: str,
        finish: FinishRow,
        on_chunk: ChunkHook | None,
    ) -> Mapping[str, Any]:
        counts: dict[str, int] = {}
        with self.engine.begin() as conn:
            if (
                self.postgres
            ):  # writers of the same as-of queue (the table and date's lock, as for call lists)
                self._lock_keys(conn, (_hash64(f"{self.wh._qtable(name)}|{as_of}") for name in tables))
            for logical, table in tables.items():
                target = self.wh.tables[logical]
                conn.execute(target.delete().where(target.c["as_of"] == as_of))
                for piece in _slices(table, _SLICE_ROWS):
                    if self.postgres:
                        self._copy(conn, logical, piece)
                    else:
                        conn.execute(target.insert(), piece.to_pylist())
                counts[logical] = table.num_rows
                if on_chunk is not None:
                    on_chunk(logical, counts[logical])
            row = finish(counts)
            self.update_record(runs, row, conn)
        return row

    def update_run(self, record: RunRecord, conn: sa.Connection | None = None) -> None:
        """Update the run's record in ``conn``'s transaction, or in a transaction of its own."""
        table = self.wh.tables["runs"]
        sets = ("status", "scores_rows", "explanations_rows", "accounts_untouched", "finished_at", "error")
        statement = (
            table.update()
            .where(table.c.run_id == record.run_id)
            .values(**{s: getattr(record, s) for s in sets})
        )
        if conn is not None:
            conn.execute(statement)
            return
        with self.engine.begin() as own:
            own.execute(statement)

    def running_runs(self, logical: str = "runs") -> list[tuple[str, str | None, int | None, Any]]:
        import sqlalchemy as sa

        table = self.wh.tables[logical]
        with self.engine.connect() as conn:
            rows = conn.execute(
                sa.select(table.c.run_id, table.c.host, table.c.pid, table.c.started_at).where(
                    table.c.status == "running"
                )
            )
            return [tuple(r) for r in rows]

    def abandon_runs(self, run_ids: list[str], now: Any, logical: str = "runs") -> None:
        table = self.wh.tables[logical]
        with self.engine.begin() as conn:
            conn.execute(
                table.update()
                .where(table.c.status == "running", table.c.run_id.in_(run_ids))
                .values(status="abandoned", finished_at=now, error=_ABANDONED)
            )

    def _lock(self, conn: sa.Connection, run: RunInfo) -> None:
        """Advisory locks on every (as-of, versions) unit this run rewrites, in sorted order (no deadlock)."""
        scores, expl = self.wh._qtable("scores"), self.wh._qtable("explanations")
        self._lock_keys(
            conn,
            {
                _hash64(f"{scores}|{run.as_of}|{run.churn_model_version}|{run.expansion_model_version}"),
                _hash64(f"{expl}|{run.as_of}|{TARGET_CHURN}|{run.churn_model_version}"),
                _hash64(f"{expl}|{run.as_of}|{TARGET_EXPANSION}|{run.expansion_model_version}"),
            },
        )

    def _lock_keys(self, conn: sa.Connection, keys: Iterable[int]) -> None:
        """Transaction-level advisory locks on ``keys`` in sorted order, waiting up to ``lock_timeout_s``."""
        import sqlalchemy as sa

        keys = sorted(set(keys))
        timeout = self.wh.lock_timeout_s
        if timeout is not None and timeout <= 0:
            for key in keys:
                if not conn.execute(sa.select(sa.func.pg_try_advisory_xact_lock(key))).scalar():
                    raise _Unavailable(f"warehouse {self.wh.url} is locked by another writer")
            return
        lock_ms = "0" if timeout is None else str(max(1, int(timeout * 1000)))
        conn.execute(sa.select(sa.func.set_config("lock_timeout", lock_ms, True)))
        try:
            for key in keys:
                conn.execute(sa.select(sa.func.pg_advisory_xact_lock(key)))
        except sa.exc.OperationalError as exc:
            if getattr(getattr(exc, "orig", None), "sqlstate", None) == "55P03":  # lock_not_available
                raise _Unavailable(
                    f"warehouse {self.wh.url} is locked by another writer (waited {timeout:g} s)"
                ) from None
            raise

    def replace(
        self,
        run: RunInfo,
        batches: Iterator[tuple[str, pa.Table]],
        on_chunk: ChunkHook | None,
        finish: Finish,
    ) -> RunRecord:
        """Delete what the run replaces, insert its rows and write its final record in one transaction.

        With ``replace_date`` every row of the as-of and versions goes first; otherwise each chunk first
        deletes the rows of its own accounts (scores and explanations of an account together, once), so
        accounts missing from a partial export keep their rows.
        """
        import sqlalchemy as sa

        scores, expl = self.wh.tables["scores"], self.wh.tables["explanations"]
        scores_scope = (
            scores.c.as_of == run.as_of,
            scores.c.churn_model_version == run.churn_model_version,
            scores.c.expansion_model_version == run.expansion_model_version,
        )
        expl_scope = (
            expl.c.as_of == run.as_of,
            sa.or_(
                sa.and_(expl.c.target == TARGET_CHURN, expl.c.model_version == run.churn_model_version),
                sa.and_(
                    expl.c.target == TARGET_EXPANSION, expl.c.model_version == run.expansion_model_version
                ),
            ),
        )
        counts = {"scores": 0, "explanations": 0}
        cleared: dict[str, set[str]] = {"scores": set(), "explanations": set()}
        with self.engine.begin() as conn:
            if self.postgres:
                self._lock(conn, run)
            if run.replace_date:
                conn.execute(scores.delete().where(*scores_scope))
                conn.execute(expl.delete().where(*expl_scope))
            call_list_cleared = False
            for table, chunk in batches:
                if table == "call_list":  # this as-of's list is replaced whole, in the run's transaction
                    if not call_list_cleared:
                        if self.postgres:
                            conn.execute(sa_select_lock(self.wh._qtable(table), run.as_of))
                        target = self.wh.tables[table]
                        conn.execute(target.delete().where(target.c["as_of"] == run.as_of))
                        call_list_cleared = True
                elif not run.replace_date:
                    ids = set(chunk.column("account_id").to_pylist())
                    # An account's explanations go with its score: clear both the first time it is seen.
                    for logical, target, scope in (
                        ("scores", scores, scores_scope),
                        ("explanations", expl, expl_scope),
                    ):
                        if table == "explanations" and logical == "scores":
                            continue
                        new = sorted(ids - cleared[logical])
                        for start in range(0, len(new), 10_000):
                            conn.execute(
                                target.delete().where(
                                    *scope, target.c.account_id.in_(new[start : start + 10_000])
                                )
                            )
                        cleared[logical].update(new)
                if self.postgres:
                    self._copy(conn, table, chunk)
                else:
                    conn.execute(self.wh.tables[table].insert(), chunk.to_pylist())
                counts[table] = counts.get(table, 0) + chunk.num_rows
                if on_chunk is not None:
                    on_chunk(table, counts[table])
            total = conn.execute(sa.select(sa.func.count()).select_from(scores).where(*scores_scope)).scalar()
            record = finish(counts, int(total or 0) - counts["scores"])
            self.update_run(record, conn)
        return record

    def _copy(self, conn: sa.Connection, table: str, chunk: pa.Table) -> None:
        """COPY a chunk as CSV (Arrow writes it: strings quoted, nulls as bare empty fields)."""
        import pyarrow.csv as pacsv

        buffer = io.BytesIO()
        pacsv.write_csv(chunk, buffer, pacsv.WriteOptions(include_header=False))
        sql = f"COPY {self.wh._qtable(table)} ({self.wh._qcols(chunk.column_names)}) FROM STDIN WITH (FORMAT csv)"
        driver = conn.connection.driver_connection
        with driver.cursor() as cursor, cursor.copy(sql) as copy:
            copy.write(buffer.getbuffer())
