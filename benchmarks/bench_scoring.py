"""Nightly scoring of 100,000 accounts with explanations, into DuckDB and PostgreSQL: accounts/s, rows/s, memory.

The measured process does what ``churnml.scoring.batch.score_accounts`` does once the features exist (the feature
build has its own benchmark): the model/feature schema guard, the drift guard (PSI of every input and of
both scores), then chunk by chunk (``scoring.chunk_size``) both models' probabilities, tiers, plays, exact
TreeSHAP explanations and reasons (``score_chunk``), streamed into one warehouse transaction
(``Warehouse.write_batches``: ``churn_scores``, ten ``churn_explanations`` rows per account and target, the
``score_runs`` record). Peak memory is the measured process's, so it shows whether chunking bounds it.

Preparation (untimed): a simulated portfolio (2,000 accounts over two years), its features, both models
trained with the default configuration, and 100,000 scoring rows drawn with replacement from the accounts
active at the last cutoff, under new account ids (a real portfolio of that size would take the generator
about twelve minutes, and scoring cost depends on rows and model, not on where the rows came from).
Quick: 300 accounts over 18 months, 2,000 rows, 60 rounds, one run.
"""

from __future__ import annotations

import json
import shutil
import sys
import tempfile
import uuid
from pathlib import Path

import numpy as np

from harness import drop_schema, figure, measure_python, warehouse_backends

N_ROWS, N_ROWS_QUICK = 100_000, 2_000
SIM = {"accounts": 2_000, "months": 24}
SIM_QUICK = {"accounts": 300, "months": 18, "n_estimators": 60}
VERSIONS = {"churn": "1", "expansion": "1"}

CODE = """
import json, time
from pathlib import Path
from churnml.config import ScoringConfig
from churnml.contract.io import read_parquet
from churnml.modeling.model import TrainedModel
from churnml.scoring.batch import _chunks, check_drift, score_chunk
from churnml.warehouse.store import RunInfo, Warehouse
work, url, schema = Path({work!r}), {url!r}, {schema!r}
features = read_parquet(work / "scoring.parquet")
models = {{t: TrainedModel.load(work / "models" / t) for t in ("churn", "expansion")}}
versions = {versions!r}
cfg = ScoringConfig()
if url.startswith("duckdb"):
    url = "duckdb:///" + str(work / "warehouse-{{}}.duckdb".format(time.time_ns()))
start = time.perf_counter()
for model in models.values():
    model.prepare(features.head(1))
check_drift(models, features, cfg.drift)
batches = (score_chunk(chunk, models, versions, cfg) for chunk in _chunks(features, cfg.chunk_size))
with Warehouse(url, schema=schema) as wh:
    as_of = features["cutoff"].iloc[0].date()
    record = wh.write_batches(batches, RunInfo(as_of, versions["churn"], versions["expansion"]))
elapsed = time.perf_counter() - start
assert record.scores_rows == len(features), record
with open(work / "rows.json", "w") as fh:
    json.dump({{"scores": record.scores_rows, "explanations": record.explanations_rows}}, fh)
print(json.dumps({{"timed_s": elapsed}}))
"""


def _prepare(work: Path, quick: bool) -> dict:
    """Portfolio, features, both models (bench_pipeline's preparation), and the scoring rows (untimed)."""
    from churnml.config import SimulatorConfig
    from churnml.contract.io import write_parquet

    from bench_pipeline import prepare_portfolio

    size = SIM_QUICK if quick else SIM
    sim = SimulatorConfig(accounts=size["accounts"], months=size["months"])
    features = prepare_portfolio(work, sim, SIM_QUICK["n_estimators"] if quick else None)
    last = features[features["cutoff"] == features["cutoff"].max()].reset_index(drop=True)
    n = N_ROWS_QUICK if quick else N_ROWS
    rows = last.iloc[np.random.default_rng(7).integers(0, len(last), n)].reset_index(drop=True)
    rows = rows.assign(account_id=[f"B{i:07d}" for i in range(n)])
    write_parquet(rows, work / "scoring.parquet")
    return {
        "accounts": n,
        "source_accounts": len(last),
        "feature_columns": features.shape[1] - 2,
        "trees_churn": _trees(work / "models" / "churn"),
        "trees_expansion": _trees(work / "models" / "expansion"),
    }


def _trees(folder: Path) -> int:
    from churnml.modeling.model import TrainedModel

    return int(TrainedModel.load(folder).booster.num_trees())


def run(quick: bool) -> list[dict]:
    """Scoring with explanations into DuckDB, then PostgreSQL when reachable (fresh tables each run)."""
    from churnml.warehouse.secrets import redact_url

    repeats = 1 if quick else 3
    work = Path(tempfile.mkdtemp(prefix="bench_scoring_"))
    figures = []
    try:
        info = _prepare(work, quick)
        for backend, url in warehouse_backends("duckdb:///"):
            schema = f"bench_{uuid.uuid4().hex[:12]}" if backend == "postgresql" else ""
            try:
                code = CODE.format(work=str(work), url=url, schema=schema, versions=VERSIONS)
                measured = measure_python(code, repeats=repeats)
            finally:
                if schema:
                    drop_schema(url, schema)
            rows = json.loads((work / "rows.json").read_text())
            where = "a DuckDB file" if backend == "duckdb" else redact_url(url).split("@")[-1]
            params = {**info, "backend": backend, "explanation_rows": rows["explanations"]}
            note = (
                f"schema and drift guards, score_chunk per {_chunk_size():,} rows (both models, tiers, plays, "
                f"exact SHAP, reasons), one transaction into {where}; each run into new tables"
            )
            figures.append(
                figure(
                    f"score with explanations, {info['accounts']:,} accounts into {backend}",
                    "accounts_per_s",
                    info["accounts"] / measured["median_s"],
                    "accounts/s",
                    measured,
                    params,
                    note,
                )
            )
            figures.append(
                figure(
                    f"score with explanations into {backend}: rows written",
                    "rows_per_s",
                    (rows["scores"] + rows["explanations"]) / measured["median_s"],
                    "rows/s",
                    measured,
                    params,
                    "churn_scores + churn_explanations rows per second of the whole job",
                )
            )
    finally:
        shutil.rmtree(work, ignore_errors=True)
    return figures


def _chunk_size() -> int:
    from churnml.config import ScoringConfig

    return ScoringConfig().chunk_size


if __name__ == "__main__":  # python benchmarks/bench_scoring.py [--quick]
    print(json.dumps(run("--quick" in sys.argv), indent=1))
