"""The pipeline's costs on the default data: training, scoring with explanations, `dvc repro` end to end and no-op.

- training: ``train_model`` (churn, the default model configuration: 600 rounds at most, early stopping)
  on the feature table of the default portfolio (5,000 simulated accounts, two years, monthly cutoffs);
- scoring: ``score_chunk`` (probabilities, tiers, plays and the exact-SHAP reasons of both models) on every
  account active at the last cutoff, in accounts per second;
- ``dvc repro`` of the whole DAG in a temporary copy of the repository (the tracked files, as a fresh git
  repository, as tests/test_pipeline.py does), three times, each in a new copy, then a no-op ``dvc repro``
  right after (three runs; nothing runs: monitor depends on the score stage's watermark, not on every call).

Preparation (data, features, labels, the models scoring uses) is untimed; every measurement runs in a fresh
process and, except ``dvc repro``, times only the call. Quick: 400 accounts, 18 months, 60 rounds, one run
each, no ``dvc repro``.
"""

from __future__ import annotations

import json
import shutil
import statistics
import subprocess
import sys
import tempfile
from pathlib import Path
from typing import Any

from churnml.checkout import copy_checkout, isolated_env

from harness import figure, measure_command, measure_python

ROOT = Path(__file__).resolve().parents[1]
BIN = Path(sys.executable).parent
QUICK = {"accounts": 400, "months": 18, "n_estimators": 60}
VERSIONS = {"churn": "1", "expansion": "1"}

TRAIN_CODE = """
import json, time
from churnml.config import ModelConfig, SplitConfig, LabelsConfig
from churnml.contract.io import read_parquet
from churnml.modeling.model import train_model
from churnml.names import TARGETS
from pathlib import Path
work = Path({work!r})
features, labels = read_parquet(work / "features.parquet"), read_parquet(work / "labels.parquet")
cfg = ModelConfig()
cfg.lgbm.n_estimators = {n_estimators}
start = time.perf_counter()
model = train_model(features, labels, "churn", cfg, SplitConfig(), LabelsConfig().horizon_days)
print(json.dumps({{"timed_s": time.perf_counter() - start}}))
"""

SCORE_CODE = """
import json, time
from pathlib import Path
from churnml.config import ScoringConfig
from churnml.contract.io import read_parquet
from churnml.modeling.model import TrainedModel
from churnml.names import TARGETS
from churnml.scoring.batch import score_chunk
work = Path({work!r})
features = read_parquet(work / "features.parquet")
features = features[features["cutoff"] == features["cutoff"].max()].reset_index(drop=True)
models = {{t: TrainedModel.load(work / "models" / t) for t in TARGETS}}
start = time.perf_counter()
scores, explanations = score_chunk(features, models, {versions!r}, ScoringConfig())
assert len(scores) == len(features)
print(json.dumps({{"timed_s": time.perf_counter() - start}}))
"""


def prepare_portfolio(work: Path, sim: Any, n_estimators: int | None = None) -> Any:
    """A simulated portfolio under ``work``: features.parquet, labels.parquet, and both models in models/<target>.

    Returns the feature table (every monthly cutoff). ``n_estimators`` caps the model's rounds (None: default).
    """
    from churnml.config import (
        FeaturesConfig,
        LabelsConfig,
        ModelConfig,
        SpineConfig,
        SplitConfig,
    )
    from churnml.contract.io import read_folder, write_parquet
    from churnml.contract.validate import validate_tables
    from churnml.dataset.labels import build_labels
    from churnml.dataset.spine import build_spine, data_end, training_cutoffs
    from churnml.features.engine import build_features
    from churnml.modeling.model import train_model
    from churnml.names import TARGETS
    from churnml.sources.simulate import generate

    raw = work / "raw"
    generate(sim, raw, work / "truth")
    tables = validate_tables(read_folder(raw)).tables
    spine = build_spine(tables["subscriptions"], training_cutoffs(tables, SpineConfig()))
    features = build_features(tables, spine, FeaturesConfig())
    labels = build_labels(tables["subscriptions"], spine, LabelsConfig(), data_end(tables))
    write_parquet(features, work / "features.parquet")
    write_parquet(labels, work / "labels.parquet")
    model_cfg = ModelConfig()
    if n_estimators is not None:
        model_cfg.lgbm.n_estimators = n_estimators
    for target in TARGETS:
        train_model(features, labels, target, model_cfg, SplitConfig(), LabelsConfig().horizon_days).save(
            work / "models" / target
        )
    return features


def _prepare(work: Path, quick: bool) -> dict:
    """Default (or quick) data, spine, labels, features, and both models for scoring, under ``work``."""
    from churnml.config import SimulatorConfig

    sim = SimulatorConfig(accounts=QUICK["accounts"], months=QUICK["months"]) if quick else SimulatorConfig()
    features = prepare_portfolio(work, sim, QUICK["n_estimators"] if quick else None)
    last = features["cutoff"].max()
    return {
        "accounts": sim.accounts,
        "months": sim.months,
        "feature_rows": len(features),
        "feature_columns": features.shape[1] - 2,
        "cutoffs": int(features["cutoff"].nunique()),
        "scored_accounts": int((features["cutoff"] == last).sum()),
    }


def run(quick: bool) -> list[dict]:
    """Prepare (untimed), then time training, scoring and, in the full run, `dvc repro` twice."""
    repeats = 1 if quick else 3
    n_estimators = QUICK["n_estimators"] if quick else 600
    work = Path(tempfile.mkdtemp(prefix="bench_pipeline_"))
    figures = []
    try:
        info = _prepare(work, quick)
        size = f"{info['accounts']:,} accounts"
        params = {**info, "n_estimators": n_estimators}
        train = measure_python(
            TRAIN_CODE.format(work=str(work), n_estimators=n_estimators), repeats=repeats, tree=True
        )
        figures.append(
            figure(
                f"train churn model, {size} ({info['feature_rows']:,} feature rows)",
                "seconds",
                train["median_s"],
                "s",
                train,
                params,
                "train_model: out-of-time split, LightGBM with early stopping, calibration, drift reference",
            )
        )
        score = measure_python(
            SCORE_CODE.format(work=str(work), versions=VERSIONS), repeats=repeats, tree=True
        )
        figures.append(
            figure(
                f"score and explain {info['scored_accounts']:,} accounts",
                "accounts_per_s",
                info["scored_accounts"] / score["median_s"],
                "accounts/s",
                score,
                params,
                "score_chunk: both models' probabilities, tiers, plays, exact-SHAP explanations and reasons",
            )
        )
        if not quick:
            figures += _dvc_repro(work)
    finally:
        shutil.rmtree(work, ignore_errors=True)
    return figures


def _dvc_repro(work: Path, repeats: int = 3) -> list[dict]:
    """The whole DAG in ``repeats`` fresh copies (a second run in one copy would be a no-op), then no-ops."""
    runs, peaks = [], []
    for i in range(repeats):
        dest = work / f"repo{i}"
        dest.mkdir()
        env = isolated_env(BIN)
        copy_checkout(ROOT, dest, env)
        once = measure_command(["dvc", "repro"], repeats=1, env=env, cwd=dest, tree=True)
        runs += once["runs_s"]
        peaks.append(once["peak_rss_mb"])
        if i < repeats - 1:
            shutil.rmtree(dest, ignore_errors=True)
    full = {"median_s": statistics.median(runs), "runs_s": runs, "peak_rss_mb": max(peaks)}
    noop = measure_command(["dvc", "repro"], repeats=3, env=env, cwd=dest, tree=True)
    stages = subprocess.run(
        ["dvc", "stage", "list", "--all"], cwd=dest, env=env, capture_output=True, text=True
    )
    params = {"stages": len(stages.stdout.splitlines()), "data": "default (conf/)"}
    return [
        figure(
            "dvc repro, whole DAG on the default data",
            "seconds",
            full["median_s"],
            "s",
            full,
            params,
            "each run in a fresh copy of the repository (generate ... monitor, report); memory: process tree",
        ),
        figure(
            "dvc repro, nothing changed",
            "seconds",
            noop["median_s"],
            "s",
            noop,
            params,
            "right after a full run; no stage runs (monitor depends on the score stage's watermark)",
        ),
    ]


if __name__ == "__main__":  # python benchmarks/bench_pipeline.py [--quick]
    print(json.dumps(run("--quick" in sys.argv), indent=1))
