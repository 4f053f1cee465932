"""The ``churnml`` command line: the pipeline's stages, runnable with or without DVC.

Each command imports what it runs inside its own function, on purpose: ``churnml --help``, ``churnml params``
and a one-line usage error then start in well under a second instead of paying for LightGBM, MLflow, pyspark
and the feature engine that only some commands need. The import graph of the package itself is
``churnml.stages`` (checked by import-linter); the CLI only dispatches to it.
"""

from __future__ import annotations

import datetime as dt
import os
import sys
from contextlib import contextmanager
from pathlib import Path
from typing import TYPE_CHECKING, Annotated

import typer

from churnml.errors import ChurnmlError, Interrupted, Terminated, interruption, sigterm_raises

if TYPE_CHECKING:
    from churnml.config import Config

app = typer.Typer(
    name="churnml",
    help="Point-in-time churn and expansion prediction for customer-success teams.",
    no_args_is_help=True,
    pretty_exceptions_enable=False,
    add_completion=False,
)


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
    overrides: Annotated[
        list[str] | None, typer.Argument(help="Hydra overrides, e.g. model.lgbm.num_leaves=63")
    ] = None,
) -> None:
    """Compose conf/ (Hydra) into params.yaml, the parameters DVC tracks."""
    from churnml.config import repo_root, write_params

    path = write_params(repo_root(), overrides)
    _echo(f"wrote {path.name}")


@app.command()
def generate(
    out: Annotated[Path, typer.Option("--out", help="Folder for the contract's tables")],
    accounts: Annotated[
        int | None, typer.Option(min=1, help="Number of accounts (default: simulator's)")
    ] = None,
    seed: Annotated[int | None, typer.Option(help="Random seed (same seed, same data)")] = None,
    months: Annotated[
        int | None, typer.Option(min=1, help="Months of history (default: simulator's)")
    ] = None,
    start: Annotated[
        str | None, typer.Option(help="First day of the data, YYYY-MM-DD (default: the pipeline's simulator)")
    ] = None,
    truth: Annotated[
        Path | None, typer.Option(help="Folder for the ground truth (default: OUT/../truth)")
    ] = None,
) -> None:
    """Write a synthetic SaaS portfolio (the contract's tables) and its ground truth.

    Defaults are the pipeline's simulator (``SimulatorConfig``), start date included, so the data ends in an
    ordinary week and its default as-of is not a year-end one.
    """
    if start is not None:
        parse_day(start, "--start")
    from churnml.config import SimulatorConfig
    from churnml.sources.simulate import generate as run_generate

    given = {"accounts": accounts, "seed": seed, "months": months, "start_date": start}
    cfg = SimulatorConfig(**{k: v for k, v in given.items() if v is not None})
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
    min_date: Annotated[str | None, typer.Option(help="Earliest plausible date (default 1990-01-01)")] = None,
    max_date: Annotated[str | None, typer.Option(help="Latest plausible date (default: today, UTC)")] = None,
) -> None:
    """Check a folder of tables against the data contract."""
    from churnml.contract.sqlcheck import validate_folder
    from churnml.contract.validate import DateBounds

    bounds = DateBounds.of(min_date, max_date)
    if quarantine is not None:
        quarantine.mkdir(parents=True, exist_ok=True)
    counts = validate_folder(
        folder, out, quarantine=quarantine is not None, quarantine_dir=quarantine, bounds=bounds
    )
    for name, c in counts.items():
        bad = f", {c['quarantined']:,} quarantined" if c["quarantined"] else ""
        _echo(f"{name}: {c['valid']:,} valid{bad}")
    total_bad = sum(c["quarantined"] for c in counts.values())
    if total_bad:
        _echo(f"{total_bad:,} row(s) quarantined to {quarantine}")


@app.command()
def ingest(
    source: Annotated[str, typer.Argument(help="Layout of SRC: fightchurn | ravenstack")],
    src: Annotated[Path, typer.Argument(help="Folder holding the third-party files")],
    out: Annotated[Path, typer.Option("--out", help="Folder for the contract's tables")],
) -> None:
    """Map a third-party layout onto the data contract, then validate it (bad rows quarantined, counted)."""
    from churnml.contract.io import read_folder, write_folder
    from churnml.contract.validate import validate_tables
    from churnml.sources.ingest import ingest as run_ingest

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


@app.command()
def features(
    folder: Annotated[
        Path, typer.Argument(help="Folder of contract tables (one that passes `churnml validate`)")
    ],
    cutoff: Annotated[list[str], typer.Option(help="As-of date YYYY-MM-DD (repeatable)")],
    out: Annotated[Path, typer.Option("--out", help="Output Parquet file")],
) -> None:
    """Point-in-time features for every account active at each cutoff."""
    cutoffs = [parse_day(c, "--cutoff") for c in cutoff]
    from churnml.config import load_config
    from churnml.contract.io import read_folder, write_table
    from churnml.contract.validate import validate_tables
    from churnml.dataset.spine import build_spine
    from churnml.features.engine import build_features

    cfg = load_config(check_fresh=False)
    tables = validate_tables(read_folder(folder)).tables
    spine = build_spine(tables["subscriptions"], cutoffs)
    frame = build_features(tables, spine, cfg.features)
    write_table(frame, out, "features")
    _echo(f"wrote {len(frame):,} rows x {frame.shape[1] - 2} features to {out}")


def _run_stage(stage: str, *args: str) -> None:
    """Run one pipeline stage in this checkout (config from params.yaml), as DVC would; log to stderr."""
    import importlib
    import logging

    from churnml.config import load_config, repo_root

    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(name)s: %(message)s", stream=sys.stderr)
    function = getattr(importlib.import_module(f"churnml.stages.{stage}"), stage)
    _echo(function(load_config(), repo_root(), *args))


@app.command()
def train(target: Annotated[str, typer.Option(help="churn | expansion")] = "churn") -> None:
    """Stage train: fit and calibrate one target's model (in a checkout, from params.yaml)."""
    _run_stage("train", target)


@app.command()
def evaluate(target: Annotated[str, typer.Option(help="churn | expansion")] = "churn") -> None:
    """Stage evaluate: metrics, plots and the MLflow run with registration and the champion decision."""
    _run_stage("evaluate", target)


@app.command()
def explain() -> None:
    """Stage explain: SHAP drivers and reasons per account, global importance plots."""
    _run_stage("explain")


@app.command()
def report() -> None:
    """Stage report: the static portfolio report (reports/index.html)."""
    _run_stage("report")


@app.command()
def paths() -> None:
    """Print what the pipeline writes, one path a line: every ``paths`` entry and the local MLflow store.

    ``make clean`` removes exactly these; the list comes from conf/ (composed), so it never goes stale.
    """
    from churnml.config import CONF_DIR, compose, repo_root, validate_config

    cfg = validate_config(compose(repo_root() / CONF_DIR))
    for value in [*vars(cfg.paths).values(), cfg.tracking.store, cfg.tracking.artifacts]:
        typer.echo(value)


@app.command()
def summary() -> None:
    """What the pipeline produced and what to open next (``make run`` ends with it); reads files only."""

    from churnml.config import load_config, repo_root

    root = repo_root()
    cfg = load_config(root, check_fresh=False)
    for line in summary_lines(root, cfg):
        typer.echo(line)


def summary_lines(root: Path, cfg: Config) -> list[str]:
    """The lines of ``churnml summary``: each output present (or missing), headline metrics, next commands."""
    import json

    paths = cfg.paths

    def doc(path: str) -> dict | None:
        try:
            return json.loads((root / path).read_text(encoding="utf-8"))
        except (OSError, ValueError):
            return None

    def there(path: str) -> str:
        return path if (root / path).exists() else f"{path} (missing: run `make run`)"

    lines = ["", "churnml: what the pipeline produced"]
    for target in cfg.model.targets:
        metrics = doc(paths.target_metrics(target))
        if metrics:
            test = metrics["test"]
            lines.append(
                f"  {target:<10} test ROC-AUC {test['roc_auc']:.3f}, PR-AUC {test['pr_auc']:.3f} "
                f"on {metrics['n']['test']:,} rows ({paths.target_metrics(target)})"
            )
        else:
            lines.append(f"  {target:<10} {there(paths.target_metrics(target))}")
    reasons = paths.reasons if (root / paths.reasons).exists() else there(paths.reasons)
    lines.append(f"  reasons    {reasons} (top reasons per account; SHAP values in {paths.explanations})")
    watermark = doc(paths.score_watermark)
    scored = f", {watermark['as_of_count']} as-of date(s) in the warehouse" if watermark else ""
    lines.append(f"  scores     {there(paths.scores)}{scored}")
    monitor = doc(paths.monitor_metrics)
    if monitor:
        lines.append(
            f"  monitor    retrain recommended: {monitor['retrain_recommended']} ({paths.monitor_metrics})"
        )
    survival = doc(paths.survival_metrics)
    if survival:
        lg, km = survival["models"]["lightgbm"], survival["models"].get("kaplan_meier", {})
        versus = f" (Kaplan-Meier {km['harrell_c']:.3f}, {km['integrated_brier']:.4f})" if km else ""
        lines.append(
            f"  survival   Harrell C {lg['harrell_c']:.3f}, integrated Brier {lg['integrated_brier']:.4f}{versus}; "
            f"curves {paths.account_survival}, revenue forecast {paths.revenue_forecast}"
        )
    else:
        lines.append(f"  survival   {there(paths.survival_metrics)}")
    lines += [
        "",
        "Open next:",
        f"  the report     {there(f'{paths.reports}/index.html')} (offline pages: open it in a browser; the revenue "
        "forecast and the right-customer analysis are linked from its header)",
        "  the metrics    .venv/bin/dvc metrics show",
        f"  the MLflow UI  make mlflow-ui  (= MLFLOW_DISABLE_TELEMETRY=true .venv/bin/mlflow ui "
        f"--backend-store-uri sqlite:///{cfg.tracking.store}), then http://127.0.0.1:5000",
    ]
    return lines


# the scoring commands' shared options: the as-of day, and which model version each target uses
ScoringDay = Annotated[
    str | None, typer.Option("--as-of", help="YYYY-MM-DD (default: the day after the data ends)")
]
ModelRef = Annotated[str | None, typer.Option(help="Model version or alias (default: champion)")]


def _model_refs(churn_version: str | None, expansion_version: str | None) -> dict[str, str]:
    """The model references given on the command line, by target (the others stay champion)."""
    return {k: v for k, v in (("churn", churn_version), ("expansion", expansion_version)) if v}


@app.command()
def score(
    as_of: ScoringDay = None,
    data: Annotated[Path | None, typer.Option(help="Folder of contract tables")] = None,
    source_url: Annotated[str | None, typer.Option(help="Database holding the contract's tables")] = None,
    warehouse: Annotated[
        str | None, typer.Option(help="SQLAlchemy URL of the warehouse (default: config)")
    ] = None,
    churn_version: ModelRef = None,
    expansion_version: ModelRef = None,
    run_kind: Annotated[str, typer.Option(help="scheduled | manual | backtest")] = "manual",
    replace_date: Annotated[
        bool,
        typer.Option(
            "--replace-date", help="Replace every score of the as-of (default: only the accounts scored)"
        ),
    ] = False,
    accept_drift: Annotated[
        bool,
        typer.Option(
            "--accept-drift", help="Score despite drift past the fail bounds (recorded in score_runs)"
        ),
    ] = False,
) -> None:
    """Score every active account as of a date with the champion models; write scores and reasons."""
    day = parse_day(as_of, "--as-of") if as_of else None
    from churnml.scoring.batch import load_tables, prepare_scoring, progress_bar, score_accounts

    cfg, url, source_url, data = _batch_inputs(warehouse, source_url, data)
    refs = _model_refs(churn_version, expansion_version)
    # Fail fast: warehouse and models are checked before minutes of reading and feature work.
    prepared = prepare_scoring(cfg, model_refs=refs, warehouse_url=url)
    interactive = sys.stderr.isatty()
    with progress_bar(interactive) as bar:
        task = None if bar is None else bar.add_task("reading and validating the input", total=1)
        tables = load_tables(data, source_url, cfg.data)
        if task is not None:
            bar.update(task, completed=1)
    result = score_accounts(
        tables,
        cfg,
        as_of=day,
        model_refs=refs,
        warehouse_url=url,
        run_kind=run_kind,
        prepared=prepared,
        replace_date=replace_date,
        accept_drift=accept_drift,
        progress=interactive,
    )
    tiers = result.scores["risk_tier"].value_counts().to_dict()
    kept = result.run.accounts_untouched or 0
    _echo(
        f"scored {len(result.scores):,} accounts as of {result.as_of.date()} (churn model v{result.versions['churn']}, "
        f"expansion v{result.versions['expansion']}); {kept:,} other account(s) of the date kept"
        f"{' (whole date replaced)' if replace_date else ''}; tiers {tiers}; run {result.run.run_id}"
    )


@app.command()
def forecast(
    as_of: ScoringDay = None,
    data: Annotated[Path | None, typer.Option(help="Folder of contract tables")] = None,
    source_url: Annotated[str | None, typer.Option(help="Database holding the contract's tables")] = None,
    warehouse: Annotated[
        str | None, typer.Option(help="SQLAlchemy URL of the warehouse (default: config)")
    ] = None,
    survival_version: ModelRef = None,
    run_kind: Annotated[str, typer.Option(help="scheduled | manual | backtest")] = "manual",
) -> None:
    """Survival curves and the revenue forecast as of a date with the champion survival model; write
    account_survival and revenue_forecast (a rerun of the as-of replaces its rows)."""
    day = parse_day(as_of, "--as-of") if as_of else None
    from churnml.scoring.batch import load_tables
    from churnml.survival.batch import forecast_accounts, prepare_forecast

    cfg, url, source_url, data = _batch_inputs(warehouse, source_url, data)
    # Fail fast: the warehouse and the model are checked before minutes of reading and feature work.
    prepared = prepare_forecast(cfg, model_ref=survival_version, warehouse_url=url)
    tables = load_tables(data, source_url, cfg.data)
    result = forecast_accounts(
        tables, cfg, as_of=day, warehouse_url=url, run_kind=run_kind, prepared=prepared
    )
    fc = result.revenue_forecast
    book = fc[(fc["dimension"] == "portfolio") & (fc["horizon_months"] == fc["horizon_months"].max())]
    headline = ""
    if len(book):
        r = book.iloc[0]
        headline = (
            f"; {int(r['horizon_months'])}-month GRR {r['grr_mean']:.3f} (80% {r['grr_p10']:.3f}-{r['grr_p90']:.3f}), "
            f"NRR {r['nrr_mean']:.3f} (80% {r['nrr_p10']:.3f}-{r['nrr_p90']:.3f})"
        )
    _echo(
        f"forecast {len(result.account_survival):,} accounts as of {result.as_of.date()} (survival model "
        f"v{result.version}): {len(fc):,} revenue_forecast rows{headline}; run {result.run.run_id}"
    )


def _batch_inputs(
    warehouse: str | None, source_url: str | None, data: Path | None
) -> tuple[Config, str | None, str | None, Path | None]:
    """A batch command's (score, forecast, backtest, monitor) config, warehouse URL, source URL and input folder:
    passwords refused on the command line, the URLs from the environment when not given, the validated folder by
    default."""
    from churnml.config import load_config, repo_root

    _refuse_password_option(warehouse, "--warehouse", "CHURNML_WAREHOUSE_URL")
    _refuse_password_option(source_url, "--source-url", "CHURNML_SOURCE_URL")
    cfg = load_config(check_fresh=False)
    url = warehouse or os.environ.get("CHURNML_WAREHOUSE_URL")
    if data is None and source_url is None:
        source_url = os.environ.get("CHURNML_SOURCE_URL") or None
    if data is None and source_url is None:
        data = repo_root() / cfg.paths.validated
    return cfg, url, source_url, data


def _refuse_password_option(url: str | None, option: str, env: str) -> None:
    """A password on the command line is visible to every user in ``ps``: refuse it, naming the variable."""
    from churnml.config import has_password

    if url and has_password(url):
        raise ChurnmlError(
            f"{option} holds a password, which every user of this machine can read in the process list: "
            f"pass the URL in the environment variable {env} instead"
        )


@app.command("spark-score")
def spark_score(
    out: Annotated[str, typer.Option(help="Scores target: a Parquet path or URI, or a catalog table name")],
    data: Annotated[str | None, typer.Option(help="Folder or URI of the contract's Parquet tables")] = None,
    database: Annotated[
        str | None, typer.Option(help="Spark catalog database with the contract's tables")
    ] = None,
    as_of: ScoringDay = None,
    master: Annotated[str, typer.Option(help="Spark master when run outside spark-submit")] = "local[2]",
    churn_version: ModelRef = None,
    expansion_version: ModelRef = None,
) -> None:
    """Score on Spark: features from the same SQL, the champion models by mapInPandas, scores written back."""
    day = parse_day(as_of, "--as-of") if as_of else None
    if (data is None) == (database is None):
        raise ChurnmlError("give exactly one of --data PATH or --database NAME")
    from churnml.config import load_config
    from churnml.contract.schemas import TABLES
    from churnml.features.spark import spark_session
    from churnml.scoring.spark import score_accounts_spark

    cfg = load_config(check_fresh=False)
    spark = spark_session(app="churnml-score", master=master)
    if database is not None:
        present = {t.name for t in spark.catalog.listTables(database)}
        source: object = {name: f"{database}.{name}" for name in TABLES if name in present}
    else:
        source = data
    refs = _model_refs(churn_version, expansion_version)
    result = score_accounts_spark(spark, source, cfg, out, as_of=day, model_refs=refs)
    for line in result["warnings"]:
        _echo(line)
    _echo(
        f"scored {result['rows']:,} accounts as of {result['as_of'].date()} on Spark (churn model "
        f"v{result['versions']['churn']}, expansion v{result['versions']['expansion']}); "
        f"tiers {result['tiers']}; run {result['run_id']}; written to {out}"
    )


def _score_inputs(data: Path | None, source_url: str | None, warehouse: str | None):
    """Config, validated tables and warehouse URL, as the backtest and monitor commands read them."""
    from churnml.scoring.batch import load_tables

    cfg, url, source_url, data = _batch_inputs(warehouse, source_url, data)
    return cfg, load_tables(data, source_url, cfg.data), url


@app.command()
def backtest(
    from_: Annotated[str, typer.Option("--from", help="First as-of date, YYYY-MM-DD")],
    to: Annotated[str, typer.Option("--to", help="Last as-of date, YYYY-MM-DD")],
    every: Annotated[str, typer.Option(help="Step: <n>mo, <n>w or <n>d")] = "1mo",
    retrain: Annotated[str, typer.Option(help="as_of: the models of each date; fixed: one model")] = "as_of",
    data: Annotated[Path | None, typer.Option(help="Folder of contract tables")] = None,
    source_url: Annotated[str | None, typer.Option(help="Database holding the contract's tables")] = None,
    warehouse: Annotated[str | None, typer.Option(help="SQLAlchemy URL of the warehouse")] = None,
) -> None:
    """Score past as-of dates as the models of that time would have (recorded as backtest runs)."""
    start, end = parse_day(from_, "--from"), parse_day(to, "--to")
    from churnml.config import repo_root
    from churnml.scoring.backtest import backtest as run_backtest

    cfg, tables, url = _score_inputs(data, source_url, warehouse)
    result = run_backtest(
        tables, cfg, start, end, every, root=repo_root(), warehouse_url=url, retrain=retrain
    )
    for r in result.runs.itertuples():
        _echo(f"{r.as_of.date()} {r.status} churn {r.churn_model_version} ({r.churn_source}) {r.reason}")


@app.command()
def monitor(
    data: Annotated[Path | None, typer.Option(help="Folder of contract tables")] = None,
    source_url: Annotated[str | None, typer.Option(help="Database holding the contract's tables")] = None,
    warehouse: Annotated[str | None, typer.Option(help="SQLAlchemy URL of the warehouse")] = None,
) -> None:
    """Realised performance of past scores once their labels matured, and retrain advice (never acted on)."""
    from churnml.config import repo_root
    from churnml.scoring.monitor import advice_lines, run_monitor

    cfg, tables, url = _score_inputs(data, source_url, warehouse)
    result = run_monitor(tables, cfg, root=repo_root(), warehouse_url=url)
    for _, line in advice_lines(result):
        _echo(line)


@app.command()
def promote(
    target: Annotated[str, typer.Option(help="churn | expansion | survival")],
    version: Annotated[str, typer.Option(help="Registered model version")],
    reason: Annotated[str, typer.Option(help="Why (recorded on the version)")] = "",
) -> None:
    """Give the champion alias to a model version by hand (recorded as a tag)."""
    from churnml.config import load_config
    from churnml.modeling.registry import promote as do_promote

    previous = do_promote(target, version, reason, cfg=load_config(check_fresh=False).tracking)
    _echo(f"churnml-{target}: champion is now v{version} (was {previous})")


@app.command()
def rollback(
    target: Annotated[str, typer.Option(help="churn | expansion | survival")],
    reason: Annotated[str, typer.Option(help="Why (recorded on the version)")] = "",
) -> None:
    """Return the champion alias to the previous champion (recorded as a tag)."""
    from churnml.config import load_config
    from churnml.modeling.registry import rollback as do_rollback

    now = do_rollback(target, reason, cfg=load_config(check_fresh=False).tracking)
    _echo(f"churnml-{target}: champion rolled back to v{now}")


tabular_app = typer.Typer(
    help="Tabular mode: a table with one row per account and a label column (train, evaluate, explain, score).",
    no_args_is_help=True,
)
app.add_typer(tabular_app, name="tabular")

TableArg = Annotated[Path, typer.Argument(help="CSV (.csv, .csv.gz) or Parquet file, one row per account")]


def _tabular_spec(
    label: str,
    positive: str | None,
    id_column: str | None,
    date: str | None,
    drop: list[str] | None,
    categorical: list[str] | None,
    arr: str | None,
    health: list[str] | None,
    target: str,
    folds: int,
    seed: int,
    as_of: str | None,
):
    from churnml.tabular import TabularSpec

    weights = {}
    for item in health or []:
        name, sep, weight = item.rpartition("=")
        try:
            weights[name] = float(weight)
        except ValueError:
            sep = ""
        if not sep or not name:
            raise ChurnmlError(f"--health {item!r}: expected COLUMN=WEIGHT, e.g. tenure=1 or complaints=-1")
    if as_of:
        parse_day(as_of, "--as-of")
    spec = TabularSpec(
        label=label,
        positive=positive,
        id=id_column,
        date=date,
        drop=list(drop or []),
        categorical=list(categorical or []),
        arr=arr,
        health=weights,
        target=target,
        folds=folds,
        seed=seed,
        as_of=as_of or "",
    )
    spec.check()
    return spec


@tabular_app.command("train")
def tabular_train(
    table: TableArg,
    label: Annotated[str, typer.Option(help="The outcome column")],
    out: Annotated[Path, typer.Option("--out", help="Folder for the model, metrics.json and plots/")],
    positive: Annotated[
        str | None, typer.Option(help="The label value meaning the event, e.g. Yes or 'Attrited Customer'")
    ] = None,
    id_column: Annotated[
        str | None, typer.Option("--id", help="Account key column (default: row number)")
    ] = None,
    date: Annotated[
        str | None, typer.Option(help="Snapshot date column: time split instead of k-fold")
    ] = None,
    drop: Annotated[
        list[str] | None, typer.Option(help="Column to leave out (repeatable): ids, leaked outputs")
    ] = None,
    categorical: Annotated[
        list[str] | None, typer.Option(help="Integer-coded column to treat as categorical")
    ] = None,
    arr: Annotated[str | None, typer.Option(help="Column holding each account's ARR (ARR metrics)")] = None,
    health: Annotated[
        list[str] | None,
        typer.Option(help="Health-score baseline signal COLUMN=WEIGHT (repeatable; + = healthier)"),
    ] = None,
    target: Annotated[str, typer.Option(help="churn | expansion (what the label means)")] = "churn",
    folds: Annotated[int, typer.Option(help="Stratified folds when there is no --date")] = 5,
    seed: Annotated[int, typer.Option(help="Seed of the folds and the validation carve")] = 0,
    as_of: Annotated[
        str | None, typer.Option("--as-of", help="As-of day of rows without a date (default today)")
    ] = None,
    track: Annotated[bool, typer.Option(help="Log the run to MLflow")] = True,
) -> None:
    """Evaluate out of fold (or out of time), refit on every row, save the model and log the run."""
    import dataclasses

    from churnml.config import load_config, repo_root
    from churnml.report.portfolio import model_choice
    from churnml.tabular import evaluate_table, fit_final, log_run, prepare_table, read_table, save_run

    spec = _tabular_spec(
        label, positive, id_column, date, drop, categorical, arr, health, target, folds, seed, as_of
    )
    cfg = load_config(check_fresh=False)
    data = prepare_table(read_table(table), spec)
    result = evaluate_table(data, spec, cfg.model, cfg.evaluation)
    model = fit_final(data, spec, cfg.model, cfg.evaluation, result.protocol)
    save_run(out, model, spec, result)
    doc = result.document()
    kind = f"stratified {spec.folds}-fold" if not spec.date else "time split"
    base = ", ".join(
        f"{name} {doc['baselines'][name]['test']['roc_auc']:.4f}"
        for name in ("logistic", "health_score")
        if doc["baselines"][name]["test"]["roc_auc"] is not None
    )
    _echo(
        f"{kind} on {data.counts['labeled_rows']:,} rows ({data.counts['positives']:,} positive): "
        f"ROC-AUC {doc['test']['roc_auc']:.4f}, PR-AUC {doc['test']['pr_auc']:.4f}, "
        f"log loss {doc['test']['log_loss']:.4f}, Brier {doc['test']['brier']:.4f}; baselines {base or '-'}"
    )
    # which candidate the saved model serves, and why (the same words as the report's header)
    served = model_choice(model.info.get("selection"))
    if served:
        _echo(f"  served: {served}")
    if data.counts["unlabeled_rows_left_out"]:
        _echo(f"  {data.counts['unlabeled_rows_left_out']:,} row(s) without a label were left out")
    if track:
        params = {
            "tabular": spec.to_dict(),
            "model": dataclasses.asdict(cfg.model),
            "evaluation": cfg.evaluation,
        }
        run_id = log_run(model, result, data, table, params, cfg.tracking, cfg.evaluation, root=repo_root())
        _echo(f"  MLflow run {run_id}")
    _echo(f"wrote {out}")


@tabular_app.command("evaluate")
def tabular_evaluate(
    table: TableArg,
    model_dir: Annotated[Path, typer.Option("--model", help="Folder written by `churnml tabular train`")],
    out: Annotated[Path | None, typer.Option("--out", help="Metrics JSON (default: print only)")] = None,
) -> None:
    """Metrics of a trained tabular model on another labeled table (e.g. a later snapshot)."""
    import json

    from churnml.config import load_config
    from churnml.modeling.metrics import compute_metrics
    from churnml.tabular import load_run, prepare_table, read_table

    model, spec = load_run(model_dir)
    cfg = load_config(check_fresh=False)
    data = prepare_table(read_table(table), spec, model=model)
    p = model.predict_proba(data.features)
    values = compute_metrics(data.y, p, data.arr, data.features["cutoff"].to_numpy(), cfg.evaluation)
    doc = {
        "test": {k: (None if v != v else v) for k, v in values.items()},
        "n": {"test": len(data.y), "test_positives": int(data.y.sum())},
    }
    if out is not None:
        out.parent.mkdir(parents=True, exist_ok=True)
        out.write_text(json.dumps(doc, indent=2) + "\n", encoding="utf-8")
    _echo(
        f"{len(data.y):,} rows ({int(data.y.sum()):,} positive): ROC-AUC {values['roc_auc']:.4f}, "
        f"PR-AUC {values['pr_auc']:.4f}, log loss {values['log_loss']:.4f}, Brier {values['brier']:.4f}"
    )


@tabular_app.command("explain")
def tabular_explain(
    table: TableArg,
    model_dir: Annotated[Path, typer.Option("--model", help="Folder written by `churnml tabular train`")],
    out: Annotated[Path, typer.Option("--out", help="Parquet file: one row per account and feature")],
    top: Annotated[int, typer.Option(help="Features kept per account (0 = all)")] = 10,
) -> None:
    """Exact SHAP contributions and probability points per account and feature, and the global importance."""
    from churnml.contract.io import write_parquet
    from churnml.explain.contributions import global_importance
    from churnml.tabular import explain_table, load_run, prepare_table, read_table

    model, spec = load_run(model_dir)
    data = prepare_table(read_table(table), spec, require_label=False, model=model)
    full = explain_table(model, data)
    write_parquet(full[full["rank"] <= top] if top > 0 else full, out)
    importance = global_importance(full)
    write_parquet(importance, out.with_name(out.stem + "_importance.parquet"))
    shown = ", ".join(importance["feature"].head(5))
    _echo(f"explained {len(data.features):,} accounts; top drivers: {shown}; wrote {out}")


@tabular_app.command("score")
def tabular_score(
    table: TableArg,
    model_dir: Annotated[Path, typer.Option("--model", help="Folder written by `churnml tabular train`")],
    out: Annotated[Path, typer.Option("--out", help="Output file (.csv or .parquet)")],
    top: Annotated[int, typer.Option(help="Reasons per account")] = 3,
) -> None:
    """Probability, risk tier and top reasons per account (the label column may be absent)."""
    from churnml.config import load_config
    from churnml.contract.io import write_parquet
    from churnml.tabular import load_run, prepare_table, read_table, score_table

    model, spec = load_run(model_dir)
    cfg = load_config(check_fresh=False)
    data = prepare_table(read_table(table), spec, require_label=False, model=model)
    scores = score_table(model, data, cfg.scoring.tiers.thresholds, top=top)
    if out.suffix.lower() == ".parquet":
        write_parquet(scores, out)
    else:
        out.parent.mkdir(parents=True, exist_ok=True)
        scores.to_csv(out, index=False)
    _echo(
        f"scored {len(scores):,} accounts; tiers {scores['risk_tier'].value_counts().to_dict()}; wrote {out}"
    )


def main() -> None:
    """Entry point: expected failures are one line on stderr and exit code 1, never a traceback.

    SIGTERM (a scheduler's timeout) unwinds like Ctrl-C: a scoring run in progress rolls back, is recorded
    as failed, and the command exits 143 (130 for SIGINT) with one line.
    """
    from churnml.stages import quiet_telemetry

    quiet_telemetry()
    with sigterm_raises():
        try:
            app()
        except ChurnmlError as exc:
            typer.echo(f"error: {exc}", err=True)
            raise SystemExit(1) from None
        except Interrupted as exc:
            typer.echo(f"error: {exc}", err=True)
            raise SystemExit(exc.exit_code) from None
        except (KeyboardInterrupt, Terminated) as exc:  # outside a write: nothing to record
            name, code = interruption(exc) or ("SIGINT", 130)
            typer.echo(f"interrupted by {name}", err=True)
            raise SystemExit(code) from None


if __name__ == "__main__":
    main()
