"""Reading and writing table folders (``DIR/<table>.parquet`` or ``DIR/<table>.csv``), Parquet files and the
pipeline's persisted tables (:func:`read_output` / :func:`write_output`, checked by their declared schemas)."""

from __future__ import annotations

from pathlib import Path

import pandas as pd

from churnml.contract.schemas import REQUIRED_TABLES, TABLES
from churnml.contract.tables import OUTPUT_TABLES
from churnml.contract.validate import describe_failures, table_failures
from churnml.errors import ChurnmlError


def table_path(folder: Path, name: str) -> Path | None:
    """The file holding table ``name`` in ``folder`` (Parquet preferred), or None."""
    folder = Path(folder)
    found = [folder / f"{name}.{ext}" for ext in ("parquet", "csv") if (folder / f"{name}.{ext}").is_file()]
    if len(found) > 1:
        raise ChurnmlError(f"{folder}: both {name}.parquet and {name}.csv exist; keep one")
    return found[0] if found else None


def read_raw_table(path: Path) -> pd.DataFrame:
    """Read one table file as written, without coercion (CSV cells stay text; empty cells are missing)."""
    try:
        if path.suffix == ".csv":
            return pd.read_csv(path, dtype=str, keep_default_na=False, na_values=[""])
        return pd.read_parquet(path)
    except (OSError, ValueError) as exc:
        raise ChurnmlError(f"{path}: cannot read ({str(exc).splitlines()[0]})") from None


def read_folder(folder: Path, *, raw: bool = True) -> dict[str, pd.DataFrame]:
    """Read every contract table present in ``folder``; the required ones must be there.

    With ``raw=False`` the tables are validated against their schemas and coerced (use this for
    folders written by ``churnml validate``).
    """
    return {
        name: frame if raw else coerce_table(name, frame)
        for name, path in table_files(folder).items()
        for frame in (read_raw_table(path),)
    }


def table_files(folder: Path) -> dict[str, Path]:
    """The contract tables present in a folder (``<table>.parquet`` or ``.csv``); the required ones must be."""
    folder = Path(folder)
    if folder.is_file():
        raise ChurnmlError(
            f"{folder} is a file: give the folder that holds the tables (one <table>.parquet or .csv per table)"
        )
    if not folder.is_dir():
        raise ChurnmlError(f"{folder}: no such folder")
    missing = [n for n in REQUIRED_TABLES if table_path(folder, n) is None]
    if missing:
        raise ChurnmlError(
            f"{folder}: required table(s) missing: {', '.join(missing)} (expected <table>.parquet or <table>.csv)"
        )
    return {n: p for n in TABLES if (p := table_path(folder, n)) is not None}


def coerce_table(name: str, frame: pd.DataFrame) -> pd.DataFrame:
    """Validate and coerce a table that is expected to be clean; raise one line naming what is wrong."""

    failures, coerced = table_failures(name, frame)
    if failures is not None and len(failures):
        raise ChurnmlError(describe_failures(name, frame, failures))
    return coerced


def write_folder(tables: dict[str, pd.DataFrame], folder: Path) -> None:
    """Write each table as ``folder/<table>.parquet``."""
    folder = Path(folder)
    folder.mkdir(parents=True, exist_ok=True)
    for name, frame in tables.items():
        write_parquet(frame, folder / f"{name}.parquet")


def _write_atomic(frame: pd.DataFrame, path: Path, fmt: str) -> None:
    """Write to a hidden temporary file beside ``path``, then rename it: a crash never leaves half a file."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(f".{path.name}.tmp")
    if fmt == "csv":
        frame.to_csv(tmp, index=False)
    else:
        frame.to_parquet(tmp, index=False)
    tmp.replace(path)


def write_parquet(frame: pd.DataFrame, path: Path) -> None:
    """Write a frame to Parquet atomically (a crash never leaves half a file behind)."""
    _write_atomic(frame, path, "parquet")


def write_csv(frame: pd.DataFrame, path: Path) -> None:
    """Write a frame as CSV atomically (a crash never leaves half a file behind)."""
    _write_atomic(frame, path, "csv")


def read_table(folder: Path, name: str) -> pd.DataFrame:
    """One contract table from a folder, validated and coerced by its schema."""
    path = table_path(Path(folder), name)
    if path is None:
        raise ChurnmlError(f"{folder}: table {name} missing (expected {name}.parquet or {name}.csv)")
    return coerce_table(name, read_raw_table(path))


def write_table(frame: pd.DataFrame, path: Path, what: str) -> None:
    """Write a pipeline table after checking its key is unique: by its schema when ``what`` names a declared
    output table (:func:`write_output`), else on (account_id, cutoff)."""
    if what in OUTPUT_TABLES:
        write_output(frame, path, what)
        return
    keys = [c for c in ("account_id", "cutoff") if c in frame.columns]
    if keys and frame.duplicated(keys).any():
        dup = frame.loc[frame.duplicated(keys, keep=False), keys].head(3).to_dict("records")
        raise ChurnmlError(f"{what}: duplicate key ({', '.join(keys)}), e.g. {dup}")
    write_parquet(frame, path)


def read_parquet(path: Path) -> pd.DataFrame:
    """Read a Parquet file, with a one-line error when it is missing."""
    path = Path(path)
    if not path.is_file():
        raise ChurnmlError(f"{path}: no such file")
    return pd.read_parquet(path)


def read_output(path: Path, table: str) -> pd.DataFrame:
    """Read a persisted table (``spine``, ``labels``, ``features``, ``explanations``, ``reasons``,
    ``scoring_features``, ``scores``...: :data:`churnml.contract.tables.OUTPUT_TABLES`), validated and
    coerced by its schema.

    Raises:
        ChurnmlError: one line naming the file, the table, and the column, rule and a few keys that fail.
    """
    from churnml.contract.validate import check_output

    path = Path(path)
    if table not in OUTPUT_TABLES:
        raise ChurnmlError(f"{path}: unknown output table {table!r}; declared: {', '.join(OUTPUT_TABLES)}")
    if not path.is_file():
        raise ChurnmlError(f"{path}: no such file (table {table})")
    try:
        frame = pd.read_parquet(path)
    except (OSError, ValueError) as exc:
        raise ChurnmlError(f"{path}: cannot read table {table} ({str(exc).splitlines()[0]})") from None
    try:
        return check_output(table, frame)
    except ChurnmlError as exc:
        raise ChurnmlError(f"{path}: {exc}") from None


def write_output(frame: pd.DataFrame, path: Path, table: str) -> None:
    """Validate ``frame`` by the schema of ``table`` and write it, coerced, to Parquet atomically.

    Nothing is written when the frame fails: the previous file, if any, stays.

    Raises:
        ChurnmlError: one line naming the file, the table, and the column, rule and a few keys that fail.
    """
    from churnml.contract.validate import check_output

    path = Path(path)
    try:
        checked = check_output(table, frame)
    except ChurnmlError as exc:
        raise ChurnmlError(f"{path}: {exc}") from None
    write_parquet(checked, path)


def read_document(path: Path, name: str) -> dict:
    """Read a JSON output (``target_metrics``, ``explain_metrics``, ``monitor_metrics``, ``registry_record``:
    :data:`churnml.contract.outputs.DOCUMENTS`), checking its required keys.

    Raises:
        ChurnmlError: one line naming the file and the first missing key.
    """
    import json

    from churnml.contract.outputs import check_document

    path = Path(path)
    if not path.is_file():
        raise ChurnmlError(f"{path}: no such file ({name})")
    try:
        document = json.loads(path.read_text(encoding="utf-8"))
    except ValueError as exc:
        raise ChurnmlError(f"{path}: not JSON ({str(exc).splitlines()[0]})") from None
    try:
        check_document(document, name)
    except ChurnmlError as exc:
        raise ChurnmlError(f"{path}: {exc}") from None
    return document


def write_document(document: dict, path: Path, name: str) -> None:
    """Check a JSON output's required keys and write it atomically (indented, NaN refused)."""
    import json

    from churnml.contract.outputs import check_document

    path = Path(path)
    try:
        check_document(document, name)
    except ChurnmlError as exc:
        raise ChurnmlError(f"{path}: {exc}") from None
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(f".{path.name}.tmp")
    tmp.write_text(json.dumps(document, indent=2, allow_nan=False) + "\n", encoding="utf-8")
    tmp.replace(path)
