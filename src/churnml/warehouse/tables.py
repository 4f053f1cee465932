"""The warehouse's output tables: their columns, keys and SQL types, and the run record that goes with each write."""

from __future__ import annotations

import datetime as dt
import json
import os
import re
import socket
import uuid
from collections.abc import Callable, Iterable
from dataclasses import asdict, dataclass, field
from typing import TYPE_CHECKING, Any

import pandas as pd

from churnml.contract.tables import (
    ACCOUNT_SURVIVAL_COLUMNS,
    CALL_LIST_COLUMNS,
    EXPLANATIONS_COLUMNS,
    FORECAST_RUNS_COLUMNS,
    PERFORMANCE_COLUMNS,
    REVENUE_FORECAST_COLUMNS,
    RUNS_COLUMNS,
    SCORES_COLUMNS,
    WarehouseColumn,
)
from churnml.errors import ChurnmlError

if TYPE_CHECKING:
    import sqlalchemy as sa


IDENTIFIER = re.compile(r"^[A-Za-z_][A-Za-z0-9_]{0,62}$")
# abandoned: left running by a process that is gone (killed, host rebooted); set by the next run.
RUN_STATUSES = ("running", "succeeded", "failed", "abandoned")
RUN_KINDS = ("scheduled", "backtest", "manual")
TARGET_CHURN = "churn"
TARGET_EXPANSION = "expansion"

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
    "call_list": CALL_LIST_COLUMNS,
    "account_survival": ACCOUNT_SURVIVAL_COLUMNS,
    "revenue_forecast": REVENUE_FORECAST_COLUMNS,
    "forecast_runs": FORECAST_RUNS_COLUMNS,
}
# The tables a scoring run writes (and creates when missing); the performance table is created by its writer.
# A run's call list goes in the same transaction as its scores (write_batches(..., call_list=...)).
_RUN_TABLES = ("scores", "explanations", "runs", "call_list")
# The tables a forecast run writes (and creates when missing): its two outputs, then its run records.
FORECAST_TABLES = ("account_survival", "revenue_forecast")
_FORECAST_RUN_TABLES = (*FORECAST_TABLES, "forecast_runs")


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
        replace_date: Replace every row of the as-of and versions (``--replace-date``); by default a run
            replaces only the accounts it writes, so a partial export never deletes other accounts' scores.
        drift_accepted: The run scores despite drift past the fail thresholds (``--accept-drift``).
        drift: The run's PSI table as JSON text (recorded in the runs table).
        unseen_categories: JSON ``{column: {value: accounts}}`` of the category values the models never saw,
            scored as missing (:func:`churnml.scoring.batch.unseen_as_missing`); None when there were none.
    """

    as_of: dt.date
    churn_model_version: str
    expansion_model_version: str
    run_kind: str = "scheduled"
    data_start: dt.date | None = None
    data_end: dt.date | None = None
    run_id: str = field(default_factory=lambda: uuid.uuid4().hex)
    started_at: dt.datetime | None = None
    replace_date: bool = False
    drift_accepted: bool = False
    drift: str | None = None
    unseen_categories: str | None = None

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
    accounts_untouched: int | None = None
    replace_date: bool = False
    drift_accepted: bool = False
    drift: str | None = None
    host: str | None = None
    pid: int | None = None
    unseen_categories: str | None = None

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
            replace_date=run.replace_date,
            drift_accepted=run.drift_accepted,
            drift=run.drift,
            host=socket.gethostname(),
            pid=os.getpid(),
            unseen_categories=run.unseen_categories,
        )

    def to_json(self) -> str:
        """One JSON line (dates and times in ISO format)."""
        return json.dumps(
            {k: v.isoformat() if hasattr(v, "isoformat") else v for k, v in asdict(self).items()}
        )


@dataclass
class ForecastRunInfo:
    """What one ``churnml forecast`` run writes: its as-of, the survival model version and provenance.

    Attributes:
        as_of: The forecast's as-of (a date, datetime or ``YYYY-MM-DD``); stored as a DATE.
        survival_model_version: The registered survival model's version (or any non-empty text).
        run_kind: scheduled, backtest or manual.
        data_start: First day of the input data (optional, recorded).
        data_end: Last day of the input data (optional, recorded).
        run_id: Unique id of the run (a random hex id by default).
    """

    as_of: dt.date
    survival_model_version: str
    run_kind: str = "scheduled"
    data_start: dt.date | None = None
    data_end: dt.date | None = None
    run_id: str = field(default_factory=lambda: uuid.uuid4().hex)

    def __post_init__(self) -> None:
        self.as_of = _to_date(self.as_of, "as_of")
        self.data_start = None if self.data_start is None else _to_date(self.data_start, "data_start")
        self.data_end = None if self.data_end is None else _to_date(self.data_end, "data_end")
        for name in ("survival_model_version", "run_id"):
            value = getattr(self, name)
            if not isinstance(value, str) or not value.strip():
                raise ChurnmlError(f"forecast run {name} must be non-empty text, got {value!r}")
        if self.run_kind not in RUN_KINDS:
            raise ChurnmlError(f"run_kind {self.run_kind!r} is not one of {', '.join(RUN_KINDS)}")


@dataclass
class ForecastRunRecord:
    """One row of the forecast runs table (:data:`churnml.contract.tables.FORECAST_RUNS_COLUMNS`)."""

    run_id: str
    as_of: dt.date
    survival_model_version: str
    status: str
    run_kind: str
    account_survival_rows: int | None
    revenue_forecast_rows: int | None
    data_start: dt.date | None
    data_end: dt.date | None
    started_at: dt.datetime
    finished_at: dt.datetime | None
    error: str | None
    host: str | None = None
    pid: int | None = None

    @classmethod
    def start(cls, run: ForecastRunInfo) -> ForecastRunRecord:
        """The ``running`` record of a run."""
        return cls(
            run_id=run.run_id,
            as_of=run.as_of,
            survival_model_version=run.survival_model_version,
            status="running",
            run_kind=run.run_kind,
            account_survival_rows=None,
            revenue_forecast_rows=None,
            data_start=run.data_start,
            data_end=run.data_end,
            started_at=_utcnow(),
            finished_at=None,
            error=None,
            host=socket.gethostname(),
            pid=os.getpid(),
        )


# ---------------------------------------------------------------------------------------------- safety


def validate_identifier(name: str, what: str) -> str:
    """Return ``name`` if it is a plain SQL identifier, else raise one line naming ``what``."""
    if not isinstance(name, str) or not IDENTIFIER.match(name):
        raise ChurnmlError(
            f"warehouse {what} {name!r} is not a valid identifier (letters, digits, _; max 63)"
        )
    return name


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


# ---------------------------------------------------------------------------------------------- tables


def _sa_type(kind: str, backend: str = "") -> Any:
    import sqlalchemy as sa

    if kind == "json":
        # jsonb in PostgreSQL (COPY parses the JSON text); JSON in DuckDB (its DDL is PostgreSQL's, so the
        # generic type renders JSON); text elsewhere (SQLAlchemy's JSON type would encode the text again).
        if backend == "postgresql":
            from sqlalchemy.dialects.postgresql import JSONB

            return JSONB()
        return sa.JSON() if backend == "duckdb" else sa.Text()
    return {
        "text": sa.Text(),
        "date": sa.Date(),
        "ts": sa.DateTime(timezone=False),  # UTC, without zone
        "float": sa.Double(),
        "int": sa.Integer(),
        "bool": sa.Boolean(),
    }[kind]


def _build_tables(schema: str, names: dict[str, str], backend: str = "") -> dict[str, sa.Table]:
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
                    quoted_name(c.name, quote=True),
                    _sa_type(c.kind, backend),
                    primary_key=c.key,
                    nullable=not c.key,
                )
                for c in _COLUMNS[logical]
            ),
        )
    return out
