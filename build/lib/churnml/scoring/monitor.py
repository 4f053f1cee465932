"""Realised performance: past scores against the labels matured since, decay over time and retrain advice.

The monitor reads every score in the warehouse (scheduled, manual and backtest runs alike), computes the
labels of those (account, as-of) rows from the subscriptions as they are now (:func:`churnml.dataset.labels.build_labels`
with today's data end) and joins them exactly: a score row of (account_id, as_of, model versions) gets the
label of the same account and the same as-of, nothing nearer. A label counts only once matured
(``as_of + horizon + grace <= data end``); until then an as-of is reported as scored, not judged.

Per as-of, target, model version and touch tier (``all`` for every account) it reports ROC-AUC, PR-AUC,
expected calibration error (equal-count bins, the reliability table it comes from), lift and ARR captured
at the CSM capacity (``evaluation.csm_capacity_k``, scaled to a tier's share of the accounts), the score PSI
against the model's training reference, and months since training (:class:`churnml.scoring.backtest.ModelCard`).

Retrain advice, per target, for the model version in use at the latest scored as-of, on the pooled rows of
its latest ``decision_periods`` matured as-ofs (the test period at training pools as many cutoffs): *retrain*
when the realised ROC-AUC is more than ``auc_drop_retrain`` below the model's test ROC-AUC at training or
the ECE is above ``ece_retrain``; *warn* at the ``*_warn`` bounds or a score PSI above ``psi_warn``. Small
samples do not raise alarms by chance: the AUC rule also needs the drop to exceed ``significance_z``
standard errors (both AUCs' errors, :func:`auc_standard_error`), the ECE rule an ECE above what perfectly
calibrated outcomes give 95% of the time (:func:`ece_by_chance`). The advice is a log line, a field of ``metrics/monitor.json`` and a line of the
report; nothing is retrained.
"""

from __future__ import annotations

import datetime as dt
import json
import logging
import math
from collections.abc import Mapping
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from churnml.config import Config, MonitorConfig, repo_root
from churnml.dataset.spine import data_range
from churnml.errors import ChurnmlError
from churnml.modeling.registry import load_champion, model_versions
from churnml.modeling.runs import log_monitoring
from churnml.modeling.tracking import data_version
from churnml.scoring.advice import advise
from churnml.scoring.backtest import ModelCard, card_of, cards_dir, load_card
from churnml.scoring.realised import ALL, TARGETS, VERSION, performance_table, realised_rows
from churnml.warehouse.store import Warehouse

log = logging.getLogger(__name__)


def monitor_config(cfg: Config) -> MonitorConfig:
    """The monitor section of a config (its defaults while the config has none)."""
    return getattr(cfg, "monitor", None) or MonitorConfig()


# ------------------------------------------------------------------------------------------------ result


@dataclass
class MonitorResult:
    """One monitoring pass.

    Attributes:
        performance: the ``score_performance`` rows.
        reliability: the reliability tables behind each ECE.
        rows: the exact join of scores and labels (:func:`realised_rows`).
        advice: retrain advice per target (:func:`advise`).
        document: the ``metrics/monitor.json`` document.
    """

    performance: pd.DataFrame
    reliability: pd.DataFrame
    rows: pd.DataFrame
    advice: pd.DataFrame
    document: dict[str, Any] = field(default_factory=dict)

    @property
    def retrain_recommended(self) -> bool:
        """True when any target's advice is ``retrain``."""
        return bool((self.advice["status"] == "retrain").any()) if len(self.advice) else False

    def decay(self) -> pd.DataFrame:
        """Matured ``all`` rows as a decay table: target, model_version, as_of, months_since_training, metrics."""
        perf = self.performance
        keep = perf[(perf["touch_model"] == ALL) & perf["matured"]]
        columns = [
            "target", "model_version", "as_of", "months_since_training", "roc_auc", "test_roc_auc", "pr_auc",
            "ece", "lift_at_k", "arr_captured", "psi_score", "n", "n_positive",
        ]  # fmt: skip
        return keep[columns].sort_values(["target", "as_of", "model_version"], ignore_index=True)


def _clean(value: Any) -> Any:
    if isinstance(value, (pd.Timestamp, dt.date)):
        return pd.Timestamp(value).date().isoformat()
    if isinstance(value, list):
        return [_clean(v) for v in value]
    if isinstance(value, (np.integer,)):
        return int(value)
    if isinstance(value, (float, np.floating)):
        return float(value) if math.isfinite(value) else None
    if value is pd.NA or value is None:
        return None
    return value


def _decay_slope(decay: pd.DataFrame) -> float:
    """ROC-AUC change per month since training (least squares over matured as-ofs; NaN under 3 points)."""
    ok = decay.dropna(subset=["roc_auc", "months_since_training"])
    if len(ok) < 3 or ok["months_since_training"].nunique() < 2:
        return math.nan
    return float(np.polyfit(ok["months_since_training"].astype(float), ok["roc_auc"].astype(float), 1)[0])


def monitor_document(
    result: MonitorResult, data_end: pd.Timestamp, evaluated_at: dt.datetime
) -> dict[str, Any]:
    """The ``metrics/monitor.json`` document: per-target advice with its numbers, counts, thresholds."""
    decay = result.decay()
    targets = {}
    for record in result.advice.to_dict("records"):
        target = record["target"]
        targets[target] = {k: _clean(v) for k, v in record.items() if k != "target"}
        targets[target]["auc_decay_per_month"] = _clean(_decay_slope(decay[decay["target"] == target]))
    perf = result.performance[result.performance["touch_model"] == ALL]
    return {
        "evaluated_at": evaluated_at.isoformat(timespec="seconds"),
        "data_end": data_end.date().isoformat(),
        "retrain_recommended": result.retrain_recommended,
        "targets": targets,
        "as_of_dates": {
            "scored": int(perf["as_of"].nunique()),
            "matured": int(perf.loc[perf["matured"], "as_of"].nunique()),
        },
    }


def monitor_performance(
    scores: pd.DataFrame,
    tables: Mapping[str, pd.DataFrame],
    cfg: Config,
    *,
    cards: Mapping[tuple[str, str], ModelCard],
    now: dt.datetime | None = None,
) -> MonitorResult:
    """Realised performance of every scored as-of, with the retrain advice (pure: reads and writes nothing).

    Args:
        scores: ``churn_scores`` rows.
        tables: the contract tables as of now (subscriptions give the labels, usage the data end).
        cfg: the configuration (labels, evaluation.csm_capacity_k, monitor).
        cards: model cards by (target, version) (:func:`resolve_cards`).
        now: the evaluation time (default: now, UTC).

    Returns:
        The :class:`MonitorResult`.
    """

    mcfg = monitor_config(cfg)
    evaluated_at = (now or dt.datetime.now(dt.UTC)).replace(tzinfo=None, microsecond=0)
    data_end = data_range(tables)[1]
    rows = realised_rows(scores, tables["subscriptions"], cfg.labels, data_end)
    performance, reliability = performance_table(
        rows, cards, cfg.evaluation.csm_capacity_k, mcfg, evaluated_at
    )
    advice = advise(rows, performance, cards, mcfg)
    result = MonitorResult(performance, reliability, rows, advice)
    result.document = monitor_document(result, data_end, evaluated_at)
    return result


def advice_lines(result: MonitorResult) -> list[tuple[str, str]]:
    """(status, one line) per target, for the log and the command line; nothing is acted on."""
    lines = []
    for record in result.advice.to_dict("records"):
        reasons = "; ".join(record["reasons"]) or "within bounds"
        line = f"{record['target']} model {record['model_version']}: {record['status']}: {reasons}"
        if record["status"] == "retrain":
            line = f"retrain recommended (not acted on): {line}"
        lines.append((record["status"], line))
    return lines


# ------------------------------------------------------------------------------------------------ I/O


def resolve_cards(scores: pd.DataFrame, cfg: Config, root: Path) -> dict[tuple[str, str], ModelCard]:
    """The card of every (target, version) in the scores: saved by a backtest, else from the registry.

    A version with neither is left out (its PSI, test AUC and months since training stay NaN) with a warning.
    """

    folder = cards_dir(root, cfg.paths)
    out: dict[tuple[str, str], ModelCard] = {}
    registry: dict[str, pd.DataFrame] = {}
    for target in TARGETS:
        for version in sorted(scores[VERSION[target]].astype("str").unique()):
            card = load_card(folder, target, version)
            if card is None and version.isdigit():
                if target not in registry:
                    registry[target] = model_versions(target, root=root, cfg=cfg.tracking)
                known = registry[target]
                match = known[known["version"] == version]
                if len(match):
                    model, _ = load_champion(target, version, root=root, cfg=cfg.tracking)
                    first = match.iloc[0]
                    card = card_of(
                        model,
                        version,
                        cfg.labels,
                        test_roc_auc=float(first["test_roc_auc"]),
                        test_n=float(first["test_n"]),
                        test_positives=float(first["test_positives"]),
                        source="registry",
                    )
            if card is None:
                log.warning(
                    "%s model %s: no card and not in the registry; PSI and test AUC unknown", target, version
                )
                continue
            out[(target, version)] = card
    return out


def write_monitor_outputs(result: MonitorResult, metrics_file: Path, plots_dir: Path) -> None:
    """Write ``metrics_file`` (the document) and ``plots_dir``/{decay,reliability,performance}.csv."""
    metrics_file = Path(metrics_file)
    metrics_file.parent.mkdir(parents=True, exist_ok=True)
    # the time of evaluation stays in the warehouse rows and MLflow: a DVC metrics file that depends only on
    # its inputs keeps a re-run of monitor with the same inputs from re-running the report after it
    document = {k: v for k, v in result.document.items() if k != "evaluated_at"}
    text = json.dumps(document, indent=2, allow_nan=False) + "\n"
    metrics_file.write_text(text, encoding="utf-8")
    plots_dir = Path(plots_dir)
    plots_dir.mkdir(parents=True, exist_ok=True)
    for name, table in plot_tables(result).items():
        table.to_csv(plots_dir / f"{name}.csv", index=False, float_format="%.6g", date_format="%Y-%m-%d")


def plot_tables(result: MonitorResult) -> dict[str, pd.DataFrame]:
    """The DVC plot tables: ``decay`` (x months_since_training, y roc_auc), ``reliability``, ``performance``."""
    return {
        "decay": result.decay(),
        "reliability": result.reliability,
        "performance": result.performance.drop(columns=["evaluated_at"]),
    }


def run_monitor(
    tables: Mapping[str, pd.DataFrame],
    cfg: Config,
    *,
    root: Path | None = None,
    warehouse_url: str | None = None,
    cards: Mapping[tuple[str, str], ModelCard] | None = None,
    write: bool = True,
    track: bool = True,
    now: dt.datetime | None = None,
) -> MonitorResult:
    """Monitor every score in the warehouse: compute, then write the performance table, DVC files and MLflow run.

    Args:
        tables: the contract tables as of now.
        cfg: the configuration.
        root: repository root (warehouse file, cards, metrics/plots, MLflow store).
        warehouse_url: overrides ``cfg.warehouse``.
        cards: model cards (default :func:`resolve_cards`).
        write: False writes nothing (no table, no files).
        track: log the pass to MLflow (:func:`churnml.modeling.runs.log_monitoring`).
        now: the evaluation time (default: now, UTC).

    Raises:
        ChurnmlError: when the warehouse holds no scores.
    """

    root = Path(root or repo_root())
    warehouse = Warehouse.from_config(
        cfg.warehouse,
        url_override=warehouse_url or None,
        root=root,
    )
    with warehouse:
        scores = warehouse.read_scores()
        if scores.empty:
            raise ChurnmlError(
                f"warehouse {warehouse.url} holds no scores: run `churnml score` or `churnml backtest` first"
            )
        if cards is None:
            cards = resolve_cards(scores, cfg, root)
        result = monitor_performance(scores, tables, cfg, cards=cards, now=now)
        for status, line in advice_lines(result):
            (log.warning if status in ("warn", "retrain") else log.info)("%s", line)
        if write:
            warehouse.write_performance(result.performance)
    if write:
        write_monitor_outputs(result, root / cfg.paths.monitor_metrics, root / cfg.paths.monitor_plots)
    if track:
        log_monitoring(
            result.document,
            {**plot_tables(result), "advice": result.advice},
            params={"monitor": asdict(monitor_config(cfg))},
            tracking=cfg.tracking,
            root=root,
            data_version=_data_version(root / cfg.paths.validated, root),
        )
    return result


def _data_version(path: Path, root: Path) -> str:
    """The validated tables' DVC md5 (dvc.lock) for the run's tags; empty outside a DVC checkout."""
    try:
        return data_version(path, root)
    except ChurnmlError:
        return ""


# ------------------------------------------------------------------------------------------------ report


def monitor_section(performance: pd.DataFrame, document: Mapping[str, Any] | None = None) -> dict[str, Any]:
    """What the report shows about realised performance, as plain JSON-friendly values.

    Args:
        performance: ``score_performance`` rows (:attr:`MonitorResult.performance` or
            :meth:`churnml.warehouse.store.Warehouse.read_performance`).
        document: the ``metrics/monitor.json`` document, for the advice (optional).

    Returns:
        ``retrain_recommended``; ``advice`` (per target: status, model version, headline, reasons);
        ``latest`` (per target, its latest matured as-of: the metrics beside the test ROC-AUC);
        ``by_touch_tier`` (the same as-of per tier); ``decay`` (per target: months since training,
        realised and test ROC-AUC, as-of and version per point, for a line chart); ``awaiting`` (as-of
        dates scored but not matured); ``note`` (when a label counts).
    """
    perf = performance.copy()
    perf["as_of"] = pd.to_datetime(perf["as_of"])
    matured = perf[perf["matured"].astype(bool)]
    shown = ["as_of", "model_version", "n", "n_positive", "roc_auc", "test_roc_auc", "pr_auc", "ece",
             "lift_at_k", "arr_captured", "psi_score", "months_since_training"]  # fmt: skip

    def records(frame: pd.DataFrame) -> list[dict[str, Any]]:
        return [{k: _clean(v) for k, v in r.items()} for r in frame.to_dict("records")]

    latest, tiers, decay = {}, {}, {}
    for target, part in matured.groupby("target", sort=True):
        # several versions at one as-of: the most recently trained one comes last
        overall = part[part["touch_model"] == ALL].sort_values(
            ["as_of", "months_since_training"], ascending=[True, False], na_position="first"
        )
        if overall.empty:
            continue
        last = overall.iloc[-1]
        latest[target] = records(overall.tail(1)[shown])[0]
        same = part[(part["as_of"] == last["as_of"]) & (part["model_version"] == last["model_version"])]
        tiers[target] = records(same[same["touch_model"] != ALL][["touch_model", *shown]])
        decay[target] = {
            "months_since_training": [_clean(v) for v in overall["months_since_training"]],
            "roc_auc": [_clean(v) for v in overall["roc_auc"]],
            "test_roc_auc": [_clean(v) for v in overall["test_roc_auc"]],
            "as_of": [_clean(v) for v in overall["as_of"]],
            "model_version": [str(v) for v in overall["model_version"]],
        }
    advice = {}
    for target, info in ((document or {}).get("targets") or {}).items():
        auc, test = info.get("realised_roc_auc"), info.get("test_roc_auc")
        headline = info.get("status", "")
        if auc is not None and test is not None:
            headline = f"{info.get('status')}: realised ROC-AUC {auc:.3f} vs {test:.3f} at training"
        advice[target] = {
            "status": info.get("status"),
            "model_version": info.get("model_version"),
            "headline": headline,
            "reasons": list(info.get("reasons") or []),
        }
    overall_rows = perf[perf["touch_model"] == ALL]
    return {
        "retrain_recommended": bool((document or {}).get("retrain_recommended", False)),
        "advice": advice,
        "latest": latest,
        "by_touch_tier": tiers,
        "decay": decay,
        "awaiting": int(overall_rows.loc[~overall_rows["matured"].astype(bool), "as_of"].nunique()),
        "note": "A score is judged once its label has matured: as-of + horizon + grace on or before the data end.",
    }
