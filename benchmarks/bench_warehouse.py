"""Warehouse writes: 100k scores + 300k explanations into DuckDB and PostgreSQL (when reachable), rows per second."""

from __future__ import annotations

import json
import shutil
import tempfile
import uuid
from pathlib import Path

import numpy as np
import pandas as pd

from harness import drop_schema, figure, measure_python, warehouse_backends

N_SCORES, N_SCORES_QUICK = 100_000, 2_000
REASONS_PER_ACCOUNT = 3
FEATURES = ["usage_active_users_trend_30d", "adoption_license_utilisation_30d", "support_high_priority_count_30d",
            "nps_score_latest", "contacts_sponsor_left_90d", "contract_days_to_renewal", "csm_touches_count_90d"]  # fmt: skip

# Timed part only: the write (reading the frames and importing are setup). The fresh mode writes into a new
# file/schema each run; the replace mode rewrites the rows an earlier run left (the nightly rerun case).
CODE = """
import json, sys, time, uuid
from pathlib import Path
import pandas as pd
from churnml.warehouse.store import RunInfo, Warehouse
folder, url, mode = {folder!r}, {url!r}, {mode!r}
scores = pd.read_parquet(Path(folder) / "scores.parquet")
expl = pd.read_parquet(Path(folder) / "explanations.parquet")
schema = ""
if url.startswith("duckdb"):
    if mode == "fresh":
        url = "duckdb:///" + str(Path(folder) / f"fresh-{{uuid.uuid4().hex}}.duckdb")
else:
    schema = {schema!r} if mode == "replace" else "bench_" + uuid.uuid4().hex[:12]
wh = Warehouse(url, schema=schema)
run = RunInfo("2025-03-01", "v1", "e1", run_kind="manual")
start = time.perf_counter()
record = wh.write_scores(scores, expl, run)
elapsed = time.perf_counter() - start
assert record.scores_rows == len(scores) and record.explanations_rows == len(expl)
if mode == "fresh" and schema:
    import sqlalchemy as sa
    with wh._engine_for().begin() as conn:
        conn.execute(sa.text(f'DROP SCHEMA "{{schema}}" CASCADE'))
wh.close()
print(json.dumps({{"timed_s": elapsed}}))
"""


def synthetic_frames(n_scores: int, seed: int = 0) -> tuple[pd.DataFrame, pd.DataFrame]:
    """Scores and top-3 churn explanations shaped like scoring's output."""
    rng = np.random.default_rng(seed)
    ids = np.array([f"A{i:07d}" for i in range(n_scores)])
    churn = rng.beta(1.2, 8, n_scores)
    arr = np.round(rng.lognormal(9.5, 1.2, n_scores), 2)
    tiers = np.select([churn >= 0.5, churn >= 0.25, churn >= 0.1], ["critical", "high", "medium"], "low")
    touch = rng.choice(["high_touch", "low_touch", "tech_touch"], n_scores)
    reasons = [
        json.dumps(
            [
                "weekly active users down 45% vs the previous 4 weeks",
                "sponsor left 21 days ago",
                "2 urgent tickets",
            ]
        )
    ] * n_scores
    scores = pd.DataFrame(
        {
            "account_id": ids,
            "churn_probability": churn,
            "risk_tier": tiers,
            "expansion_probability": rng.beta(1.5, 6, n_scores),
            "arr": arr,
            "arr_at_risk": arr * churn,
            "segment": rng.choice(["enterprise", "mid_market", "smb"], n_scores),
            "touch_model": touch,
            "recommended_play": [f"play for {t}" for t in touch],
            "top_reasons": reasons,
        }
    )
    n = n_scores * REASONS_PER_ACCOUNT
    features = np.array(FEATURES)[rng.integers(0, len(FEATURES), n)]
    shap = rng.normal(0, 0.4, n)
    explanations = pd.DataFrame(
        {
            "account_id": np.repeat(ids, REASONS_PER_ACCOUNT),
            "target": "churn",
            "model_version": "v1",
            "rank": np.tile(np.arange(1, REASONS_PER_ACCOUNT + 1), n_scores),
            # distinct features per account (the key includes the feature)
            "feature": [
                FEATURES[(i // REASONS_PER_ACCOUNT + i % REASONS_PER_ACCOUNT) % len(FEATURES)]
                for i in range(n)
            ],
            "feature_value": rng.normal(0, 1, n),
            "shap_value": shap,
            "probability_points": shap * 10,
            "reason": [f"{f} moved the risk" for f in features],
        }
    )
    return scores, explanations


def run(quick: bool) -> list[dict]:
    """Figures for DuckDB (and PostgreSQL when reachable), fresh tables and a replacing rerun."""
    from churnml.warehouse.secrets import redact_url
    from churnml.warehouse.store import Warehouse
    from churnml.warehouse.tables import RunInfo

    n_scores = N_SCORES_QUICK if quick else N_SCORES
    repeats = 1 if quick else 3
    scores, expl = synthetic_frames(n_scores)
    rows = len(scores) + len(expl)
    folder = Path(tempfile.mkdtemp(prefix="bench_warehouse_"))
    figures = []
    try:
        scores.to_parquet(folder / "scores.parquet")
        expl.to_parquet(folder / "explanations.parquet")
        for backend, url in warehouse_backends(f"duckdb:///{folder / 'replace.duckdb'}"):
            schema = f"bench_{uuid.uuid4().hex[:12]}" if backend == "postgresql" else ""
            # the replace mode rewrites rows written here, outside the timing
            with Warehouse(url, schema=schema) as wh:
                wh.write_scores(scores, expl, RunInfo("2025-03-01", "v1", "e1", run_kind="manual"))
            try:
                for mode in ("fresh", "replace"):
                    code = CODE.format(folder=str(folder), url=url, mode=mode, schema=schema)
                    measured = measure_python(code, repeats=repeats)
                    figures.append(
                        figure(
                            f"{backend} write ({mode})",
                            "rows_per_s",
                            rows / measured["median_s"],
                            "rows/s",
                            measured,
                            {
                                "scores_rows": len(scores),
                                "explanations_rows": len(expl),
                                "backend": backend,
                                "mode": mode,
                            },
                            note=(
                                "one transaction: delete as-of rows + insert; "
                                + (
                                    "DuckDB register + INSERT"
                                    if backend == "duckdb"
                                    else "COPY (CSV by Arrow)"
                                )
                                + ("; into empty tables" if mode == "fresh" else "; replacing an earlier run")
                                + (f"; {redact_url(url).split('@')[-1]}" if backend == "postgresql" else "")
                            ),
                        )
                    )
            finally:
                if schema:
                    drop_schema(url, schema)
    finally:
        shutil.rmtree(folder, ignore_errors=True)
    return figures
