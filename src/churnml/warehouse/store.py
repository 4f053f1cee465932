"""Warehouse writes of scores, explanations and run records: idempotent, transactional, safe for concurrent runs.

One run of nightly scoring writes the scores of one as-of date for one pair of model versions. The writer
records the run as ``running`` (its own transaction), then in ONE transaction deletes the rows of that as-of
for the same model versions (scores, and explanations of the same target/version) and inserts the new ones,
then marks the run ``succeeded`` with row counts. On any error the transaction rolls back (previous rows stay),
the run is marked ``failed`` with a one-line error and a :class:`ChurnmlError` is raised.

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

import datetime as dt
import hashlib
import io
import json
import logging
import re
import threading
import time
import uuid
from collections.abc import Callable, Iterable, Iterator
from contextlib import contextmanager, suppress
from dataclasses import asdict, dataclass, field, fields, replace
from pathlib import Path
from typing import TYPE_CHECKING, Any

import pandas as pd

from churnml.contract.tables import (
    EXPLANATIONS_COLUMNS,
    PERFORMANCE_COLUMNS,
    RUNS_COLUMNS,
    SCORES_COLUMNS,
    WarehouseColumn,
)
from churnml.errors import ChurnmlError

if TYPE_CHECKING:
    import pyarrow as pa
    import sqlalchemy as sa

    from churnml.config import WarehouseConfig

log = logging.getLogger(__name__)

IDENTIFIER = re.compile(r"^[A-Za-z_][A-Za-z0-9_]{0,62}$")
RUN_STATUSES = ("running", "succeeded", "failed")
RUN_KINDS = ("scheduled", "backtest", "manual")
TARGET_CHURN = "churn"
TARGET_EXPANSION = "expansion"
DEFAULT_LOCK_TIMEOUT_S = 60.0
FALLBACK_SUFFIX = ".runs.jsonl"
# Rows per COPY / INSERT statement: bounds the memory of the CSV text and the executemany parameter lists.
_SLICE_ROWS = 50_000
_MAX_ERROR_CHARS = 500
_SECRET_QUERY_KEYS = ("password", "passwd", "pwd", "secret", "token", "api_key", "apikey", "private_key")

# A chunk hook: called inside the transaction after each inserted chunk with the logical table
# ("scores" or "explanations") and that table's rows written so far; raising aborts the write.
ChunkHook = Callable[[str, int], None]
Frames = pd.DataFrame | Iterable[pd.DataFrame]


# ---------------------------------------------------------------------------------------------- columns


# The column specs are the contract's (churnml.contract.tables): one declaration for the warehouse, the
# score stage's Parquet and the schemas that check them.
_Col = WarehouseColumn
_COLUMNS = {
    "scores": SCORES_COLUMNS,
    "explanations": EXPLANATIONS_COLUMNS,
    "runs": RUNS_COLUMNS,
    "performance": PERFORMANCE_COLUMNS,
}
# The tables a scoring run writes (and creates when missing); the performance table is created by its writer.
_RUN_TABLES = ("scores", "explanations", "runs")


# ---------------------------------------------------------------------------------------------- records


@dataclass
class RunInfo:
    """What one scoring run writes: its as-of date, model versions and provenance.

    Attributes:
        as_of: The scoring date (a date, datetime or ``YYYY-MM-DD``); stored as a DATE.
        churn_model_version: Version of the churn model (registry version or any text).
        expansion_model_version: Version of the expansion model.
        run_kind: scheduled, backtest or manual.
        data_start: First day of the input data (optional, recorded).
        data_end: Last day of the input data (optional, recorded).
        run_id: Unique id of the run (a random hex id by default).
        started_at: When the run started (UTC); the time of the write when missing.
    """

    as_of: dt.date
    churn_model_version: str
    expansion_model_version: str
    run_kind: str = "scheduled"
    data_start: dt.date | None = None
    data_end: dt.date | None = None
    run_id: str = field(default_factory=lambda: uuid.uuid4().hex)
    started_at: dt.datetime | None = None

    def __post_init__(self) -> None:
        self.as_of = _to_date(self.as_of, "as_of")
        self.data_start = None if self.data_start is None else _to_date(self.data_start, "data_start")
        self.data_end = None if self.data_end is None else _to_date(self.data_end, "data_end")
        self.started_at = None if self.started_at is None else _to_utc_naive(self.started_at)
        for name in ("churn_model_version", "expansion_model_version", "run_id"):
            value = getattr(self, name)
            if not isinstance(value, str) or not value.strip():
                raise ChurnmlError(f"run {name} must be non-empty text, got {value!r}")
        if self.run_kind not in RUN_KINDS:
            raise ChurnmlError(f"run_kind {self.run_kind!r} is not one of {', '.join(RUN_KINDS)}")


@dataclass
class RunRecord:
    """One row of the runs table."""

    run_id: str
    as_of: dt.date
    churn_model_version: str
    expansion_model_version: str
    status: str
    run_kind: str
    scores_rows: int | None
    explanations_rows: int | None
    data_start: dt.date | None
    data_end: dt.date | None
    started_at: dt.datetime
    finished_at: dt.datetime | None
    error: str | None

    @classmethod
    def start(cls, run: RunInfo) -> RunRecord:
        """The ``running`` record of a run."""
        return cls(
            run_id=run.run_id,
            as_of=run.as_of,
            churn_model_version=run.churn_model_version,
            expansion_model_version=run.expansion_model_version,
            status="running",
            run_kind=run.run_kind,
            scores_rows=None,
            explanations_rows=None,
            data_start=run.data_start,
            data_end=run.data_end,
            started_at=run.started_at or _utcnow(),
            finished_at=None,
            error=None,
        )

    def to_json(self) -> str:
        """One JSON line (dates and times in ISO format)."""
        return json.dumps(
            {k: v.isoformat() if hasattr(v, "isoformat") else v for k, v in asdict(self).items()}
        )


# ---------------------------------------------------------------------------------------------- safety


def validate_identifier(name: str, what: str) -> str:
    """Return ``name`` if it is a plain SQL identifier, else raise one line naming ``what``."""
    if not isinstance(name, str) or not IDENTIFIER.match(name):
        raise ChurnmlError(
            f"warehouse {what} {name!r} is not a valid identifier (letters, digits, _; max 63)"
        )
    return name


def redact_url(url: Any) -> str:
    """The URL as text with its password, and secret-looking query parameters, replaced by ``***``."""
    from sqlalchemy.engine import make_url
    from sqlalchemy.exc import ArgumentError

    text = str(url) if not hasattr(url, "render_as_string") else url.render_as_string(hide_password=False)
    try:
        parsed = make_url(text)
    except (ArgumentError, ValueError, TypeError):
        # Not parseable as a URL: still hide anything between "scheme://user:" and "@", and secret params.
        text = re.sub(r"(://[^:/@\s]*:)[^@\s]*@", r"\1***@", text)
        return re.sub(rf"(?i)(\b(?:{'|'.join(_SECRET_QUERY_KEYS)})=)[^&\s]*", r"\1***", text)
    query = {k: ("***" if _secret_key(k) else v) for k, v in parsed.query.items()}
    return parsed.set(query=query).render_as_string(hide_password=True).replace("%2A%2A%2A", "***")


def _secret_key(key: str) -> bool:
    low = key.lower()
    return any(s in low for s in _SECRET_QUERY_KEYS)


def _url_secrets(url: str) -> list[str]:
    """Every secret string of a URL, raw and percent-encoded, longest first (so scrubbing is complete)."""
    from urllib.parse import quote, quote_plus

    from sqlalchemy.engine import make_url
    from sqlalchemy.exc import ArgumentError

    found: set[str] = set()
    try:
        parsed = make_url(url)
        if parsed.password:
            found.add(str(parsed.password))
        for key, value in parsed.query.items():
            if _secret_key(key):
                found.update(value if isinstance(value, tuple) else (value,))
    except (ArgumentError, ValueError, TypeError):
        match = re.search(r"://[^:/@\s]*:([^@\s]*)@", url)
        if match:
            found.add(match.group(1))
    out = set()
    for secret in found:
        # Very short secrets would blank out ordinary words; they cannot be scrubbed meaningfully.
        if len(secret) >= 3:
            out.update({secret, quote(secret, safe=""), quote_plus(secret)})
    return sorted(out, key=len, reverse=True)


def scrub_secrets(text: str, url: str) -> str:
    """``text`` with every secret of ``url`` (password, secret query parameters; raw or encoded) as ``***``."""
    for secret in _url_secrets(url):
        text = text.replace(secret, "***")
    return text


def _one_line(exc: BaseException) -> str:
    """The first line of an exception's message, with its type when it is not one of ours."""
    if isinstance(exc, ChurnmlError):
        text = str(exc)
    else:
        orig = getattr(exc, "orig", None)  # SQLAlchemy wraps the driver's error: show the driver's text
        base = orig if isinstance(orig, BaseException) else exc
        message = str(base).strip()
        text = f"{type(base).__name__}: {message}" if message else type(base).__name__
    first = next((line.strip() for line in text.splitlines() if line.strip()), text)
    return first[:_MAX_ERROR_CHARS]


# ---------------------------------------------------------------------------------------------- conversions


def _utcnow() -> dt.datetime:
    return dt.datetime.now(dt.UTC).replace(tzinfo=None)


def _to_date(value: Any, what: str) -> dt.date:
    if isinstance(value, dt.datetime | pd.Timestamp):
        return value.date()
    if isinstance(value, dt.date):
        return value
    try:
        return pd.Timestamp(value).date()
    except (ValueError, TypeError):
        raise ChurnmlError(f"{what} {value!r} is not a date (expected YYYY-MM-DD)") from None


def _to_utc_naive(value: Any) -> dt.datetime:
    stamp = pd.Timestamp(value)
    if stamp.tzinfo is not None:
        stamp = stamp.tz_convert("UTC").tz_localize(None)
    return stamp.to_pydatetime()


def _is_missing(value: Any) -> bool:
    return value is None or (isinstance(value, float) and value != value)


def _iter_frames(frames: Frames | None) -> Iterator[pd.DataFrame]:
    if frames is None:
        return iter(())
    if isinstance(frames, pd.DataFrame):
        return iter((frames,))
    return iter(frames)


def _arrow_column(series: pd.Series, col: _Col, table: str) -> pa.Array:
    """One column of a chunk as an Arrow array of the column's storage type."""
    import pyarrow as pa

    where = f"{table}.{col.name}"
    try:
        if col.kind == "text":
            values = series.astype(object) if isinstance(series.dtype, pd.CategoricalDtype) else series
            if values.dtype == object and col.name == "top_reasons":
                # Reasons may come as lists/dicts: store them as JSON text.
                values = values.map(
                    lambda v: v if isinstance(v, str) or _is_missing(v) else json.dumps(v, default=str)
                )
            if isinstance(values.dtype, pd.StringDtype):  # pandas 3 text: already Arrow, no per-value work
                array = pa.array(values, from_pandas=True)
                array = array.combine_chunks() if isinstance(array, pa.ChunkedArray) else array
                return array.cast(pa.string())
            try:
                return pa.array(values.astype(object), type=pa.string(), from_pandas=True)
            except (pa.ArrowTypeError, pa.ArrowInvalid):
                mask = values.isna()
                return pa.array(values.astype(str).astype(object).where(~mask, None), type=pa.string())
        if col.kind == "float":
            return pa.array(
                pd.to_numeric(series, errors="raise").astype("float64"), type=pa.float64(), from_pandas=True
            )
        if col.kind == "int":
            numbers = pd.to_numeric(series, errors="raise")
            if not ((numbers.dropna() % 1) == 0).all():
                raise ValueError("not whole numbers")
            return pa.array(numbers.astype("Int64"), type=pa.int64(), from_pandas=True).cast(pa.int32())
        if col.kind == "bool":
            if series.isna().any():
                raise ValueError("missing values")
            if not series.isin([True, False]).all():
                raise ValueError("not true/false")
            return pa.array(series.astype(bool), type=pa.bool_())
        if col.kind == "date":
            stamps = pd.to_datetime(series)
            if stamps.dt.tz is not None:
                stamps = stamps.dt.tz_convert("UTC").dt.tz_localize(None)
            return pa.array(stamps.dt.floor("D").astype("datetime64[us]"), from_pandas=True).cast(pa.date32())
        if col.kind == "ts":
            stamps = pd.to_datetime(series, utc=True).dt.tz_localize(None)
            return pa.array(stamps.astype("datetime64[us]"), type=pa.timestamp("us"), from_pandas=True)
    except ChurnmlError:
        raise
    except (ValueError, TypeError, OverflowError, pa.ArrowException) as exc:
        raise ChurnmlError(f"column {where}: cannot store as {col.kind} ({_one_line(exc)})") from None
    raise AssertionError(col.kind)


def _prepare(frame: pd.DataFrame, table: str, run: RunInfo, scored_at: dt.datetime) -> pa.Table:
    """Check one chunk against its table's columns and the run, and convert it to Arrow in table order.

    Columns the writer owns (as-of, versions, run id, scored-at) are filled from the run when absent and must
    agree with it when present: rows of another as-of or version would break the delete-then-insert.
    """
    import pyarrow as pa
    import pyarrow.compute as pc

    columns = _COLUMNS[table]
    names = [c.name for c in columns]
    unknown = [c for c in frame.columns if c not in names]
    if unknown:
        raise ChurnmlError(
            f"{table}: unknown column(s) {', '.join(map(str, unknown))} (allowed: {', '.join(names)})"
        )
    missing = [c.name for c in columns if not c.filled and c.name not in frame.columns]
    if missing:
        raise ChurnmlError(f"{table}: missing column(s) {', '.join(missing)}")
    fills: dict[str, Any] = {
        "as_of": run.as_of,
        "churn_model_version": run.churn_model_version,
        "expansion_model_version": run.expansion_model_version,
        "run_id": run.run_id,
        "scored_at": scored_at,
    }
    arrays = []
    n = len(frame)
    for col in columns:
        if col.name in frame.columns:
            array = _arrow_column(frame[col.name], col, table)
            if col.filled and col.name != "scored_at":
                expected = pa.scalar(fills[col.name], type=array.type)
                bad = pc.invert(pc.fill_null(pc.equal(array, expected), False))
                if pc.any(bad).as_py():
                    first = array.filter(bad)[0].as_py()
                    raise ChurnmlError(
                        f"{table}.{col.name} holds {first!r}, but the run writes {fills[col.name]!r}"
                    )
        else:
            array = _arrow_column(pd.Series([fills[col.name]] * n, dtype=object), col, table)
        if col.key and array.null_count:
            raise ChurnmlError(f"{table}.{col.name}: {array.null_count} null value(s) in a key column")
        arrays.append(array)
    out = pa.Table.from_arrays(arrays, names=names)
    if table == "explanations" and n:
        allowed = {(TARGET_CHURN, run.churn_model_version), (TARGET_EXPANSION, run.expansion_model_version)}
        pairs = frame[["target", "model_version"]].drop_duplicates().astype(str).itertuples(index=False)
        wrong = [tuple(p) for p in pairs if tuple(p) not in allowed]
        if wrong:
            raise ChurnmlError(
                f"explanations: target/model_version {wrong[0]!r} is not one of the run's {sorted(allowed)!r}"
            )
    return out


def _performance_arrow(frame: pd.DataFrame) -> pa.Table:
    """A performance frame checked (columns, non-null unique keys) and converted to Arrow in table order."""
    import pyarrow as pa

    names = [c.name for c in PERFORMANCE_COLUMNS]
    unknown = [c for c in frame.columns if c not in names]
    if unknown:
        raise ChurnmlError(
            f"performance: unknown column(s) {', '.join(map(str, unknown))} (allowed: {', '.join(names)})"
        )
    missing = [c for c in names if c not in frame.columns]
    if missing:
        raise ChurnmlError(f"performance: missing column(s) {', '.join(missing)}")
    keys = [c.name for c in PERFORMANCE_COLUMNS if c.key]
    arrays = []
    for col in PERFORMANCE_COLUMNS:
        array = _arrow_column(frame[col.name], col, "performance")
        if col.key and array.null_count:
            raise ChurnmlError(f"performance.{col.name}: {array.null_count} null value(s) in a key column")
        arrays.append(array)
    out = pa.Table.from_arrays(arrays, names=names)
    duplicated = out.select(keys).to_pandas().duplicated()
    if duplicated.any():
        first = out.select(keys).slice(int(duplicated.to_numpy().argmax()), 1).to_pylist()[0]
        raise ChurnmlError(f"performance: key {first} appears more than once")
    return out


def _slices(table: pa.Table, rows: int) -> Iterator[pa.Table]:
    for start in range(0, max(table.num_rows, 1), rows):
        piece = table.slice(start, rows)
        if piece.num_rows:
            yield piece


def _normalise(frame: pd.DataFrame, columns: tuple[_Col, ...]) -> pd.DataFrame:
    """Read-back frames with one set of dtypes whatever the backend: dates/times as the schemas' unit."""
    from churnml.contract.schemas import DATE

    out = {}
    for col in columns:
        values = frame[col.name] if col.name in frame.columns else pd.Series([None] * len(frame))
        if col.kind in ("date", "ts"):
            stamps = pd.to_datetime(values)
            if getattr(stamps.dt, "tz", None) is not None:
                stamps = stamps.dt.tz_convert("UTC").dt.tz_localize(None)
            out[col.name] = stamps.astype(DATE)
        elif col.kind == "float":
            out[col.name] = pd.to_numeric(values).astype("float64")
        elif col.kind == "int":
            out[col.name] = pd.to_numeric(values).astype("Int64")
        elif col.kind == "bool":
            out[col.name] = values.astype("boolean")
        else:
            out[col.name] = values.astype("str")
    return pd.DataFrame(out, index=pd.RangeIndex(len(frame)))


# ---------------------------------------------------------------------------------------------- tables


def _sa_type(kind: str) -> Any:
    import sqlalchemy as sa

    return {
        "text": sa.Text(),
        "date": sa.Date(),
        "ts": sa.DateTime(timezone=False),  # UTC, without zone
        "float": sa.Double(),
        "int": sa.Integer(),
        "bool": sa.Boolean(),
    }[kind]


def _build_tables(schema: str, names: dict[str, str]) -> dict[str, sa.Table]:
    """SQLAlchemy Core tables, every identifier force-quoted (reflection is never used)."""
    import sqlalchemy as sa
    from sqlalchemy.sql.elements import quoted_name

    metadata = sa.MetaData(schema=quoted_name(schema, quote=True) if schema else None)
    out = {}
    for logical, table_name in names.items():
        out[logical] = sa.Table(
            quoted_name(table_name, quote=True),
            metadata,
            *(
                sa.Column(
                    quoted_name(c.name, quote=True), _sa_type(c.kind), primary_key=c.key, nullable=not c.key
                )
                for c in _COLUMNS[logical]
            ),
        )
    return out


def _hash64(text: str) -> int:
    """A signed 64-bit key for pg_advisory_xact_lock."""
    return int.from_bytes(hashlib.blake2b(text.encode(), digest_size=8).digest(), "big", signed=True)


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

    def ensure_tables(self) -> None:
        raise NotImplementedError

    def insert_run(self, record: RunRecord) -> None:
        raise NotImplementedError

    def update_run(self, record: RunRecord) -> None:
        raise NotImplementedError

    def replace(
        self, run: RunInfo, batches: Iterator[tuple[str, pa.Table]], on_chunk: ChunkHook | None
    ) -> dict:
        raise NotImplementedError

    def replace_performance(self, table: pa.Table) -> None:
        raise NotImplementedError


class _DuckDBSession(_Session):
    slice_rows = None

    def __init__(self, con: Any, wh: Warehouse):
        self.con = con
        self.wh = wh

    def ensure_tables(self) -> None:
        for statement in self.wh._ddl():
            self.con.execute(statement)

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

    def insert_run(self, record: RunRecord) -> None:
        names = [c.name for c in RUNS_COLUMNS]
        values = [getattr(record, n) for n in names]
        self.con.execute(
            f"INSERT INTO {self.wh._qtable('runs')} ({self.wh._qcols(names)}) VALUES ({', '.join('?' * len(names))})",
            values,
        )

    def update_run(self, record: RunRecord) -> None:
        sets = ["status", "scores_rows", "explanations_rows", "finished_at", "error"]
        q = self.wh._q
        self.con.execute(
            f"UPDATE {self.wh._qtable('runs')} SET {', '.join(f'{q(s)} = ?' for s in sets)} WHERE {q('run_id')} = ?",
            [*(getattr(record, s) for s in sets), record.run_id],
        )

    def replace(
        self, run: RunInfo, batches: Iterator[tuple[str, pa.Table]], on_chunk: ChunkHook | None
    ) -> dict:
        """Replace the run's scope in one transaction: plain inserts when the scope is empty (a new as-of),
        else upserts followed by deleting the scope's rows this run did not write.

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
            for table, chunk in batches:
                names = wh._qcols(chunk.column_names)
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
                con.execute(
                    f"DELETE FROM {scores} WHERE {scores_scope[0]} AND {q('account_id')} NOT IN "
                    f"(SELECT {q('account_id')} FROM {q(written['scores'])})",
                    scores_scope[1],
                )
                match = " AND ".join(f"w.{q(k)} = {expl}.{q(k)}" for k in varying["explanations"])
                con.execute(
                    f"DELETE FROM {expl} WHERE {expl_scope[0]} "
                    f"AND NOT EXISTS (SELECT 1 FROM {q(written['explanations'])} AS w WHERE {match})",
                    expl_scope[1],
                )
                for name in written.values():
                    con.execute(f"DROP TABLE {q(name)}")
            con.commit()
        except BaseException:
            try:
                con.rollback()
            except (
                Exception
            ) as exc:  # the original error matters more; the transaction dies with the connection
                log.debug("rollback failed: %s", wh._scrub(_one_line(exc)))
            raise
        return counts


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

    def insert_run(self, record: RunRecord) -> None:
        with self.engine.begin() as conn:
            conn.execute(self.wh.tables["runs"].insert().values(**asdict(record)))

    def update_run(self, record: RunRecord) -> None:
        table = self.wh.tables["runs"]
        sets = ("status", "scores_rows", "explanations_rows", "finished_at", "error")
        with self.engine.begin() as conn:
            conn.execute(
                table.update()
                .where(table.c.run_id == record.run_id)
                .values(**{s: getattr(record, s) for s in sets})
            )

    def _lock(self, conn: sa.Connection, run: RunInfo) -> None:
        """Advisory locks on every (as-of, versions) unit this run rewrites, in sorted order (no deadlock)."""
        import sqlalchemy as sa

        scores, expl = self.wh._qtable("scores"), self.wh._qtable("explanations")
        keys = sorted(
            {
                _hash64(f"{scores}|{run.as_of}|{run.churn_model_version}|{run.expansion_model_version}"),
                _hash64(f"{expl}|{run.as_of}|{TARGET_CHURN}|{run.churn_model_version}"),
                _hash64(f"{expl}|{run.as_of}|{TARGET_EXPANSION}|{run.expansion_model_version}"),
            }
        )
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
        self, run: RunInfo, batches: Iterator[tuple[str, pa.Table]], on_chunk: ChunkHook | None
    ) -> dict:
        import sqlalchemy as sa

        scores, expl = self.wh.tables["scores"], self.wh.tables["explanations"]
        counts = {"scores": 0, "explanations": 0}
        with self.engine.begin() as conn:
            if self.postgres:
                self._lock(conn, run)
            conn.execute(
                scores.delete().where(
                    scores.c.as_of == run.as_of,
                    scores.c.churn_model_version == run.churn_model_version,
                    scores.c.expansion_model_version == run.expansion_model_version,
                )
            )
            conn.execute(
                expl.delete().where(
                    expl.c.as_of == run.as_of,
                    sa.or_(
                        sa.and_(
                            expl.c.target == TARGET_CHURN, expl.c.model_version == run.churn_model_version
                        ),
                        sa.and_(
                            expl.c.target == TARGET_EXPANSION,
                            expl.c.model_version == run.expansion_model_version,
                        ),
                    ),
                )
            )
            for table, chunk in batches:
                if self.postgres:
                    self._copy(conn, table, chunk)
                else:
                    conn.execute(self.wh.tables[table].insert(), chunk.to_pylist())
                counts[table] += chunk.num_rows
                if on_chunk is not None:
                    on_chunk(table, counts[table])
        return counts

    def _copy(self, conn: sa.Connection, table: str, chunk: pa.Table) -> None:
        """COPY a chunk as CSV (Arrow writes it: strings quoted, nulls as bare empty fields)."""
        import pyarrow.csv as pacsv

        buffer = io.BytesIO()
        pacsv.write_csv(chunk, buffer, pacsv.WriteOptions(include_header=False))
        sql = f"COPY {self.wh._qtable(table)} ({self.wh._qcols(chunk.column_names)}) FROM STDIN WITH (FORMAT csv)"
        driver = conn.connection.driver_connection
        with driver.cursor() as cursor, cursor.copy(sql) as copy:
            copy.write(buffer.getbuffer())


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
        lock_timeout_s: How long a writer waits for another writer (DuckDB file lock, PostgreSQL advisory
            lock) before failing; 0 fails at once, None waits forever.
        fallback_path: Where a DuckDB run record goes when the file cannot be opened (default
            ``<file>.runs.jsonl``).
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
        lock_timeout_s: float | None = DEFAULT_LOCK_TIMEOUT_S,
        fallback_path: Path | None = None,
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
        self.tables = _build_tables(schema, names)
        self.backend = self._url.get_backend_name()
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
        *,
        lock_timeout_s: float | None = DEFAULT_LOCK_TIMEOUT_S,
    ) -> Warehouse:
        """The warehouse a config names; an empty URL means the DuckDB file ``cfg.duckdb_path``.

        A relative DuckDB path (in the config or in a ``duckdb:///relative`` URL) is resolved against
        ``root`` (default: the repository root), so every stage and scheduler finds the same file.
        """
        from sqlalchemy.engine import make_url
        from sqlalchemy.exc import ArgumentError

        from churnml.config import repo_root

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
            lock_timeout_s=lock_timeout_s,
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
        try:
            with self._session() as session:
                session.ensure_tables()
        except _Unavailable as exc:
            raise ChurnmlError(self._scrub(str(exc))) from None
        except ChurnmlError:
            raise
        except Exception as exc:
            raise ChurnmlError(
                self._scrub(f"warehouse {self.url}: cannot create tables: {_one_line(exc)}")
            ) from None

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
    ) -> RunRecord:
        """Like :meth:`write_scores`, for a stream of (scores chunk, explanations chunk) pairs.

        Scoring that computes scores and explanations chunk by chunk passes one generator; every chunk
        goes into the same transaction. Either element of a pair may be None.
        """
        return self._write(_pairs(batches), run, on_chunk)

    def _write(
        self, named: Iterator[tuple[str, pd.DataFrame | None]], run: RunInfo, on_chunk: ChunkHook | None
    ) -> RunRecord:
        record = RunRecord.start(run)
        committed = False
        try:
            with self._session() as session:
                session.ensure_tables()
                session.insert_run(record)
                try:
                    chunks = _arrow_batches(named, run, record.started_at, session.slice_rows)
                    counts = session.replace(run, chunks, on_chunk)
                except BaseException as exc:
                    error = self._scrub(_one_line(exc))
                    record = replace(record, status="failed", finished_at=_utcnow(), error=error)
                    where = self._record_failure(session, record)
                    if not isinstance(exc, Exception):  # interrupted: recorded, then let it propagate
                        raise
                    if isinstance(exc, _Unavailable):
                        raise ChurnmlError(f"{error}; run {run.run_id} {where}") from None
                    raise ChurnmlError(
                        f"warehouse write of run {run.run_id} (as_of {run.as_of}) to {self.url} failed and "
                        f"was rolled back: {error}; run {where}"
                    ) from None
                committed = True
                record = replace(
                    record,
                    status="succeeded",
                    scores_rows=counts["scores"],
                    explanations_rows=counts["explanations"],
                    finished_at=_utcnow(),
                )
                session.update_run(record)
        except _Unavailable as exc:  # the warehouse could not be opened: nothing is recorded there
            message = self._scrub(str(exc))
            record = replace(record, status="failed", finished_at=_utcnow(), error=message)
            raise ChurnmlError(f"{message}; run {run.run_id} {self._write_fallback(record)}") from None
        except ChurnmlError:
            raise
        except Exception as exc:
            message = f"warehouse {self.url}: {self._scrub(_one_line(exc))}"
            if committed:
                raise ChurnmlError(
                    f"{message}; the rows of run {run.run_id} were written, but its record still says running"
                ) from None
            record = replace(record, status="failed", finished_at=_utcnow(), error=message)
            raise ChurnmlError(f"{message}; run {run.run_id} {self._write_fallback(record)}") from None
        log.info(
            "wrote %d scores and %d explanations for as_of %s (run %s) to %s",
            record.scores_rows,
            record.explanations_rows,
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
        try:
            with self._session() as session:
                session.replace_performance(table)
        except _Unavailable as exc:
            raise ChurnmlError(self._scrub(str(exc))) from None
        except ChurnmlError:
            raise
        except Exception as exc:
            raise ChurnmlError(
                self._scrub(
                    f"warehouse {self.url}: performance write failed and was rolled back: {_one_line(exc)}"
                )
            ) from None
        log.info("wrote %d performance rows to %s", table.num_rows, self.url)
        return table.num_rows

    # -------------------------------------------------------------------------------- reading

    def _read(self, logical: str, where: dict[str, Any], order: list[str]) -> pd.DataFrame:
        columns = _COLUMNS[logical]
        names = [c.name for c in columns]
        try:
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
        except _Unavailable as exc:
            raise ChurnmlError(self._scrub(str(exc))) from None
        except ChurnmlError:
            raise
        except Exception as exc:
            raise ChurnmlError(
                self._scrub(f"warehouse {self.url}: cannot read {logical}: {_one_line(exc)}")
            ) from None
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

    def read_performance(self) -> pd.DataFrame:
        """Realised-performance rows ordered by as-of, target, model version and touch model."""
        return self._read("performance", {}, ["as_of", "target", "model_version", "touch_model"])

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


def _resolve(root: Path, path: str) -> Path:
    candidate = Path(path).expanduser()
    return candidate if candidate.is_absolute() else (root / candidate).absolute()


def _chain(*iterables: Iterable[Any]) -> Iterator[Any]:
    for iterable in iterables:
        yield from iterable


def _pairs(batches: Iterable[Any]) -> Iterator[tuple[str, pd.DataFrame | None]]:
    for item in batches:
        if not isinstance(item, tuple) or len(item) != 2:
            raise ChurnmlError(
                f"write_batches expects (scores, explanations) pairs, got {type(item).__name__}"
            )
        yield "scores", item[0]
        yield "explanations", item[1]


def _arrow_batches(
    named: Iterable[tuple[str, pd.DataFrame | None]],
    run: RunInfo,
    scored_at: dt.datetime,
    slice_rows: int | None,
) -> Iterator[tuple[str, pa.Table]]:
    """Checked Arrow slices of every chunk, in the order given (consumed inside the transaction)."""
    for table, frame in named:
        if frame is None:
            continue
        if not isinstance(frame, pd.DataFrame):
            raise ChurnmlError(f"{table}: expected a DataFrame chunk, got {type(frame).__name__}")
        prepared = _prepare(frame, table, run, scored_at)
        if slice_rows is None:
            yield table, prepared
        else:
            yield from ((table, piece) for piece in _slices(prepared, slice_rows))
