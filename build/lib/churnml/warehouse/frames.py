"""Score and explanation frames as the checked Arrow slices the backends insert (types, time zones, run columns)."""

from __future__ import annotations

import datetime as dt
import hashlib
import json
from collections.abc import Iterable, Iterator
from typing import TYPE_CHECKING, Any

import pandas as pd

from churnml.contract.schemas import DATE
from churnml.errors import ChurnmlError
from churnml.warehouse.secrets import _one_line
from churnml.warehouse.tables import (
    _COLUMNS,
    PERFORMANCE_COLUMNS,
    TARGET_CHURN,
    TARGET_EXPANSION,
    Frames,
    RunInfo,
    _Col,
)

if TYPE_CHECKING:
    import pyarrow as pa

# Rows per COPY / INSERT statement: bounds the memory of the CSV text and the executemany parameter lists.
_SLICE_ROWS = 50_000


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
        if col.kind in ("text", "json"):
            values = series.astype(object) if isinstance(series.dtype, pd.CategoricalDtype) else series
            if values.dtype == object and col.kind == "json":
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
    if table == "call_list" and n:
        days = set(out.column("as_of").to_pylist())
        if days != {run.as_of}:
            raise ChurnmlError(
                f"call_list.as_of holds {sorted(map(str, days))[:3]}, but the run writes {run.as_of}"
            )
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
    return _checked_arrow(frame, PERFORMANCE_COLUMNS, "performance")


def _checked_arrow(frame: pd.DataFrame, columns: tuple[_Col, ...], what: str) -> pa.Table:
    """A frame checked against ``columns`` (no unknown or missing column, non-null unique keys), as Arrow."""
    import pyarrow as pa

    names = [c.name for c in columns]
    unknown = [c for c in frame.columns if c not in names]
    if unknown:
        raise ChurnmlError(
            f"{what}: unknown column(s) {', '.join(map(str, unknown))} (allowed: {', '.join(names)})"
        )
    missing = [c for c in names if c not in frame.columns]
    if missing:
        raise ChurnmlError(f"{what}: missing column(s) {', '.join(missing)}")
    keys = [c.name for c in columns if c.key]
    arrays = []
    for col in columns:
        array = _arrow_column(frame[col.name], col, what)
        if col.key and array.null_count:
            raise ChurnmlError(f"{what}.{col.name}: {array.null_count} null value(s) in a key column")
        arrays.append(array)
    out = pa.Table.from_arrays(arrays, names=names)
    duplicated = out.select(keys).to_pandas().duplicated()
    if duplicated.any():
        first = out.select(keys).slice(int(duplicated.to_numpy().argmax()), 1).to_pylist()[0]
        raise ChurnmlError(f"{what}: key {first} appears more than once")
    return out


def _slices(table: pa.Table, rows: int) -> Iterator[pa.Table]:
    for start in range(0, max(table.num_rows, 1), rows):
        piece = table.slice(start, rows)
        if piece.num_rows:
            yield piece


def _normalise(frame: pd.DataFrame, columns: tuple[_Col, ...]) -> pd.DataFrame:
    """Read-back frames with one set of dtypes whatever the backend: dates/times as the schemas' unit."""

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
        elif col.kind == "json":  # PostgreSQL's jsonb comes back parsed: the same JSON text as elsewhere
            out[col.name] = values.map(
                lambda v: v if isinstance(v, str) or _is_missing(v) else json.dumps(v)
            ).astype("str")
        else:
            out[col.name] = values.astype("str")
    return pd.DataFrame(out, index=pd.RangeIndex(len(frame)))


def _hash64(text: str) -> int:
    """A signed 64-bit key for pg_advisory_xact_lock."""
    return int.from_bytes(hashlib.blake2b(text.encode(), digest_size=8).digest(), "big", signed=True)


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
