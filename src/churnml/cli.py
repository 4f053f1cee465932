"""The ``churnml`` command line: the pipeline's stages, runnable with or without DVC."""

from __future__ import annotations

import datetime as dt
import os
import sys
from contextlib import contextmanager
from pathlib import Path
from typing import Annotated

import typer

from churnml.errors import ChurnmlError

app = typer.Typer(
    name="churnml",
    help="Point-in-time churn and expansion prediction for customer-success teams.",
    no_args_is_help=True,
    pretty_exceptions_enable=False,
    add_completion=False,
)


def _quiet_telemetry() -> None:
    # MLflow and DVC phone home by default; nothing leaves this machine.
    os.environ.setdefault("MLFLOW_DISABLE_TELEMETRY", "true")
    os.environ.setdefault("DO_NOT_TRACK", "1")
    os.environ.setdefault("DVC_NO_ANALYTICS", "1")


def parse_day(text: str, what: str = "date") -> dt.date:
    """A YYYY-MM-DD day, or a one-line error."""
    try:
        return dt.date.fromisoformat(text)
    except ValueError:
        raise ChurnmlError(f"bad {what} {text!r}: expected YYYY-MM-DD") from None


@contextmanager
def _progress(description: str):
    """A rich progress bar; yields a callback(done, total)."""
    from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn

    with Progress(
        TextColumn("{task.description}"),
        BarColumn(),
        MofNCompleteColumn(),
        TimeElapsedColumn(),
        transient=True,
        disable=not sys.stderr.isatty(),
    ) as bar:
        task = bar.add_task(description, total=None)

        def update(done: int, total: int) -> None:
            bar.update(task, completed=done, total=total)

        yield update


def _echo(text: str) -> None:
    typer.echo(text, err=True)


@app.command()
def params(
    overrides: Annotated[list[str] | None, typer.Argument(help="Hydra overrides, e.g. model.lgbm.num_leaves=63")] = None,
) -> None:
    """Compose conf/ (Hydra) into params.yaml, the parameters DVC tracks."""
    from churnml.config import repo_root, write_params

    path = write_params(repo_root(), overrides)
    _echo(f"wrote {path.name}")


@app.command()
def generate(
    out: Annotated[Path, typer.Option("--out", help="Folder for the contract's tables")],
    accounts: Annotated[int, typer.Option(min=1, help="Number of accounts")] = 5000,
    seed: Annotated[int, typer.Option(help="Random seed (same seed, same data)")] = 42,
    months: Annotated[int, typer.Option(min=1, help="Months of history")] = 24,
    start: Annotated[str, typer.Option(help="First day of the data, YYYY-MM-DD")] = "2024-01-01",
    truth: Annotated[Path | None, typer.Option(help="Folder for the ground truth (default: OUT/../truth)")] = None,
) -> None:
    """Write a synthetic SaaS portfolio (the contract's tables) and its ground truth."""
    parse_day(start, "--start")
    from churnml.config import SimulatorConfig
    from churnml.simulate import generate as run_generate

    cfg = SimulatorConfig(accounts=accounts, seed=seed, months=months, start_date=start)
    truth_dir = truth or out.parent / "truth"
    with _progress("generating") as progress:
        summary = run_generate(cfg, out, truth_dir, progress=progress)
    rows = summary.get("rows", {})
    _echo(f"wrote {sum(rows.values()):,} rows to {out} ({', '.join(f'{k} {v:,}' for k, v in rows.items())})")


@app.command()
def validate(
    folder: Annotated[Path, typer.Argument(help="Folder of <table>.parquet / <table>.csv files")],
    quarantine: Annotated[
        Path | None, typer.Option(help="Write bad rows here (with a reason column) instead of failing")
    ] = None,
    out: Annotated[Path | None, typer.Option(help="Write the valid, typed tables here as Parquet")] = None,
) -> None:
    """Check a folder of tables against the data contract."""
    from churnml.io import read_folder, write_folder
    from churnml.validate import validate_tables

    result = validate_tables(read_folder(folder), quarantine=quarantine is not None)
    if out is not None:
        write_folder(result.tables, out)
    if quarantine is not None:
        write_folder(result.quarantined, quarantine)
    for name, c in result.counts().items():
        bad = f", {c['quarantined']:,} quarantined" if c["quarantined"] else ""
        _echo(f"{name}: {c['valid']:,} valid{bad}")
    total_bad = sum(c["quarantined"] for c in result.counts().values())
    if total_bad:
        _echo(f"{total_bad:,} row(s) quarantined to {quarantine}")


@app.command()
def ingest(
    source: Annotated[str, typer.Argument(help="Layout of SRC: fightchurn | ravenstack")],
    src: Annotated[Path, typer.Argument(help="Folder holding the third-party files")],
    out: Annotated[Path, typer.Option("--out", help="Folder for the contract's tables")],
) -> None:
    """Map a third-party layout onto the data contract, then validate it (bad rows quarantined, counted)."""
    from churnml.ingest import ingest as run_ingest
    from churnml.io import read_folder, write_folder
    from churnml.validate import validate_tables

    summary = run_ingest(source, src, out)
    rows = summary.get("rows", {})
    _echo(f"ingested {source} into {out}: {', '.join(f'{k} {v:,}' for k, v in rows.items())}")
    for key, value in summary.get("notes", {}).items():
        _echo(f"  note: {key}: {value}")
    result = validate_tables(read_folder(out), quarantine=True)
    quarantined = {k: v for k, v in result.quarantined.items() if len(v)}
    if quarantined:
        write_folder(quarantined, out.parent / f"{out.name}_quarantine")
        write_folder(result.tables, out)
        _echo(
            f"quarantined {', '.join(f'{k} {len(v):,}' for k, v in quarantined.items())} row(s) to "
            f"{out.parent / (out.name + '_quarantine')}; {out} now holds the valid rows"
        )


def main() -> None:
    """Entry point: expected failures are one line on stderr and exit code 1, never a traceback."""
    _quiet_telemetry()
    try:
        app()
    except ChurnmlError as exc:
        typer.echo(f"error: {exc}", err=True)
        raise SystemExit(1) from None
    except KeyboardInterrupt:
        typer.echo("interrupted", err=True)
        raise SystemExit(130) from None


if __name__ == "__main__":
    main()
