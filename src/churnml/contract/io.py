"""Reading and writing table folders (``DIR/<table>.parquet`` or ``DIR/<table>.csv``) and Parquet files."""

from __future__ import annotations

from pathlib import Path

import pandas as pd

from churnml.contract.schemas import REQUIRED_TABLES, TABLES
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
    folder = Path(folder)
    if not folder.is_dir():
        raise ChurnmlError(f"{folder}: no such folder")
    missing = [n for n in REQUIRED_TABLES if table_path(folder, n) is None]
    if missing:
        raise ChurnmlError(
            f"{folder}: required table(s) missing: {', '.join(missing)} (expected <table>.parquet or <table>.csv)"
        )
    out: dict[str, pd.DataFrame] = {}
    for name in TABLES:
        path = table_path(folder, name)
        if path is None:
            continue
        frame = read_raw_table(path)
        out[name] = frame if raw else coerce_table(name, frame)
    return out


def coerce_table(name: str, frame: pd.DataFrame) -> pd.DataFrame:
    """Validate and coerce a table that is expected to be clean; raise one line naming what is wrong."""
    from churnml.contract.validate import describe_failures, table_failures

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


def write_parquet(frame: pd.DataFrame, path: Path) -> None:
    """Write a frame to Parquet atomically (a crash never leaves half a file behind)."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(f".{path.name}.tmp")
    frame.to_parquet(tmp, index=False)
    tmp.replace(path)


def read_table(folder: Path, name: str) -> pd.DataFrame:
    """One contract table from a folder, validated and coerced by its schema."""
    path = table_path(Path(folder), name)
    if path is None:
        raise ChurnmlError(f"{folder}: table {name} missing (expected {name}.parquet or {name}.csv)")
    return coerce_table(name, read_raw_table(path))


def write_table(frame: pd.DataFrame, path: Path, what: str) -> None:
    """Write a pipeline table (spine, labels, features...) after checking its key is unique."""
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
    """Read a persisted pipeline table (``spine``, ``labels``, ``features``, ``scores``...) by its declared name.

    Placeholder until the typed output schemas land: it reads the Parquet file without validating.
    """
    return read_parquet(path)


def write_output(frame: pd.DataFrame, path: Path, table: str) -> None:
    """Write a persisted pipeline table by its declared name (``spine``, ``labels``, ``features``, ``scores``...).

    Placeholder until the typed output schemas land: it writes atomically, checking the (account_id, cutoff)
    key of the tables keyed by it (explanations, reasons and scores hold several rows per account).
    """
    if table in ("spine", "labels", "features", "scoring_features"):
        write_table(frame, path, table)
    else:
        write_parquet(frame, path)
