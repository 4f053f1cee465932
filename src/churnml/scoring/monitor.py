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
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from churnml.config import Config, MonitorConfig
from churnml.errors import ChurnmlError
from churnml.modeling.metrics import arr_captured_at_k, pr_auc, roc_auc, top_weights
from churnml.names import TARGETS, label_column
from churnml.scoring.backtest import ModelCard, card_of, cards_dir, load_card

log = logging.getLogger(__name__)

ALL = "all"
PROBABILITY = {"churn": "churn_probability", "expansion": "expansion_probability"}
VERSION = {"churn": "churn_model_version", "expansion": "expansion_model_version"}
PERFORMANCE_COLUMNS = [
    "as_of", "target", "model_version", "touch_model", "n", "n_positive", "roc_auc", "pr_auc", "ece",
    "lift_at_k", "arr_captured", "psi_score", "test_roc_auc", "months_since_training", "evaluated_at", "matured",
]  # fmt: skip
ROW_COLUMNS = [
    "target",
    "account_id",
    "as_of",
    "model_version",
    "probability",
    "y",
    "arr",
    "touch_model",
    "matured",
]
ADVICE_COLUMNS = [
    "target", "status", "model_version", "as_of_first", "as_of_last", "periods", "n", "n_positive",
    "realised_roc_auc", "roc_auc_low", "roc_auc_high", "test_roc_auc", "auc_drop", "auc_drop_se", "ece",
    "ece_by_chance", "psi_score",
    "months_since_training", "reasons",
]  # fmt: skip
STATUS_ORDER = ("ok", "warn", "retrain")
_SCORE_COLUMNS = ("account_id", "as_of", "arr", "touch_model", *PROBABILITY.values(), *VERSION.values())


def monitor_config(cfg: Config) -> MonitorConfig:
    """The monitor section of a config (its defaults while the config has none)."""
    return getattr(cfg, "monitor", None) or MonitorConfig()


# ----------------------------------------------------------------------------------------------- metrics


def reliability_table(y: np.ndarray, probability: np.ndarray, bins: int = 10) -> pd.DataFrame:
    """Reliability curve on equal-count bins by rank (ties split across bins, as the evaluate stage's).

    Returns:
        bin (1..), mean_predicted, observed_rate, count.
    """
    y = np.asarray(y, dtype=float)
    p = np.asarray(probability, dtype=float)
    if len(p) == 0:
        return pd.DataFrame(columns=["bin", "mean_predicted", "observed_rate", "count"])
    rank = np.argsort(np.argsort(p, kind="stable"), kind="stable")
    bin_of = (rank * bins) // len(p)
    grouped = pd.DataFrame({"bin": bin_of + 1, "p": p, "y": y}).groupby("bin")
    return pd.DataFrame(
        {
            "bin": grouped.size().index.to_numpy(),
            "mean_predicted": grouped["p"].mean().to_numpy(),
            "observed_rate": grouped["y"].mean().to_numpy(),
            "count": grouped.size().to_numpy(),
        }
    )


def expected_calibration_error(table: pd.DataFrame) -> float:
    """ECE of a :func:`reliability_table`: sum over bins of count share x |mean predicted - observed rate|."""
    total = table["count"].sum()
    if total == 0:
        return math.nan
    gap = (table["mean_predicted"] - table["observed_rate"]).abs()
    return float((table["count"] * gap).sum() / total)


def ece_by_chance(probability: np.ndarray, bins: int = 10, n: int = 200, seed: int = 0) -> float:
    """The 95th percentile of the ECE of perfectly calibrated outcomes (``y ~ Bernoulli(p)``) on these rows.

    ECE is biased upwards on few rows per bin (each bin's observed rate is noisy): an observed ECE only
    says "miscalibrated" when it is above what chance alone gives.
    """
    p = np.asarray(probability, dtype=float)
    if len(p) == 0 or n < 1:
        return math.nan
    rank = np.argsort(np.argsort(p, kind="stable"), kind="stable")
    bin_of = (rank * bins) // len(p)
    counts = np.bincount(bin_of, minlength=bins)
    mean_p = np.bincount(bin_of, weights=p, minlength=bins) / np.maximum(counts, 1)
    rng = np.random.default_rng(seed)
    values = np.empty(n)
    for i in range(n):
        y = (rng.random(len(p)) < p).astype(float)
        rate = np.bincount(bin_of, weights=y, minlength=bins) / np.maximum(counts, 1)
        values[i] = float((counts * np.abs(mean_p - rate)).sum() / len(p))
    return float(np.quantile(values, 0.95))


def lift_at_k(y: np.ndarray, score: np.ndarray, k: float) -> float:
    """Positive rate among the top ``k`` by score (ties share the boundary) over the overall rate."""
    y = np.asarray(y, dtype=float)
    if len(y) == 0 or y.sum() == 0:
        return math.nan
    w = top_weights(score, min(k, len(y)))
    return float(((w * y).sum() / w.sum()) / y.mean()) if w.sum() > 0 else math.nan


def score_psi(probability: np.ndarray, reference: Mapping[str, list[float]]) -> float:
    """PSI of scores against a model's reference (the bins of :mod:`churnml.modeling.model`'s drift check).

    The reference holds decile ``edges`` and the ``fractions`` of bins (-inf, e1], ..., (ek, inf) and of
    missing values; NaN when the reference is unknown.
    """
    from churnml.modeling.model import psi

    if not reference or "edges" not in reference or "fractions" not in reference:
        return math.nan
    values = np.asarray(probability, dtype=float)
    if len(values) == 0:
        return math.nan
    edges = np.asarray(reference["edges"], dtype=float)
    missing = np.isnan(values)
    idx = np.searchsorted(edges, values[~missing], side="left")
    actual = np.r_[np.bincount(idx, minlength=len(edges) + 1), missing.sum()] / len(values)
    return psi(np.asarray(reference["fractions"], dtype=float), actual)


def auc_standard_error(auc: float, n_positive: float, n_negative: float) -> float:
    """Standard error of a ROC-AUC from its value and class counts (Hanley & McNeil 1982); NaN if unknown."""
    if not (math.isfinite(auc) and math.isfinite(n_positive) and math.isfinite(n_negative)):
        return math.nan
    if n_positive < 1 or n_negative < 1:
        return math.nan
    q1, q2 = auc / (2 - auc), 2 * auc**2 / (1 + auc)
    variance = (auc * (1 - auc) + (n_positive - 1) * (q1 - auc**2) + (n_negative - 1) * (q2 - auc**2)) / (
        n_positive * n_negative
    )
    return math.sqrt(max(variance, 0.0))


def bootstrap_auc(y: np.ndarray, score: np.ndarray, n: int = 200, seed: int = 0) -> tuple[float, float]:
    """95% percentile interval of the ROC-AUC over ``n`` resamples of the rows (NaN when undefined)."""
    y = np.asarray(y, dtype=float)
    score = np.asarray(score, dtype=float)
    if n < 1 or not (0 < y.sum() < len(y)):
        return math.nan, math.nan
    from scipy.stats import rankdata

    rng = np.random.default_rng(seed)
    values = []
    for _ in range(n):
        idx = rng.integers(0, len(y), len(y))
        yy = y[idx]
        positives = yy.sum()
        if 0 < positives < len(yy):
            # Mann-Whitney with average ranks for ties: the ROC-AUC, without sklearn's per-call overhead
            ranks = rankdata(score[idx])
            values.append(
                (ranks[yy == 1].sum() - positives * (positives + 1) / 2) / (positives * (len(yy) - positives))
            )
    if not values:
        return math.nan, math.nan
    lo, hi = np.percentile(values, [2.5, 97.5])
    return float(lo), float(hi)


# --------------------------------------------------------------------------------------------- the join


def realised_rows(
    scores: pd.DataFrame, subscriptions: pd.DataFrame, labels_cfg: Any, data_end: pd.Timestamp
) -> pd.DataFrame:
    """Score rows of both targets joined exactly with their labels as known at ``data_end``.

    Args:
        scores: ``churn_scores`` rows (:meth:`churnml.warehouse.store.Warehouse.read_scores`).
        subscriptions: the subscriptions table as of now.
        labels_cfg: the labels section.
        data_end: the first day with no data (labels mature against it).

    Returns:
        One row per (target, account_id, as_of, model_version) (:data:`ROW_COLUMNS`): the probability, the
        label ``y`` (null until matured), arr, touch_model and ``matured``. A score row rewritten for the
        same key keeps its latest write.
    """
    from churnml.dataset.labels import build_labels

    missing = [c for c in _SCORE_COLUMNS if c not in scores.columns]
    if missing:
        raise ChurnmlError(f"scores: missing column(s) {', '.join(missing)}")
    if scores.empty:
        return pd.DataFrame(columns=ROW_COLUMNS)
    frame = scores.assign(
        account_id=scores["account_id"].astype("str"),
        as_of=pd.to_datetime(scores["as_of"]).astype("datetime64[us]"),
    )
    if "scored_at" in frame.columns:
        frame = frame.sort_values("scored_at", kind="stable")
    keys = frame[["account_id", "as_of"]].drop_duplicates().rename(columns={"as_of": "cutoff"})
    labels = build_labels(subscriptions, keys, labels_cfg, data_end).rename(columns={"cutoff": "as_of"})
    parts = []
    for target in TARGETS:
        label = label_column(target, labels_cfg.horizon_days)
        part = frame[["account_id", "as_of", VERSION[target], PROBABILITY[target], "arr", "touch_model"]]
        part = part.rename(columns={VERSION[target]: "model_version", PROBABILITY[target]: "probability"})
        # one churn version may be stored beside several expansion versions: its scores count once
        part = part.drop_duplicates(["account_id", "as_of", "model_version"], keep="last")
        part = part.merge(
            labels[["account_id", "as_of", label]].rename(columns={label: "y"}),
            on=["account_id", "as_of"],
            how="left",
            validate="many_to_one",
        )
        parts.append(part.assign(target=target))
    rows = pd.concat(parts, ignore_index=True)
    rows["y"] = rows["y"].astype("Int8")
    rows["matured"] = rows["y"].notna()
    rows["model_version"] = rows["model_version"].astype("str")
    rows["touch_model"] = rows["touch_model"].astype("str")
    rows["probability"] = rows["probability"].astype("float64")
    rows["arr"] = rows["arr"].astype("float64")
    return rows[ROW_COLUMNS].sort_values(
        ["target", "as_of", "model_version", "account_id"], ignore_index=True
    )


def _metrics(part: pd.DataFrame, k: float, bins: int) -> tuple[dict[str, float], pd.DataFrame]:
    y = part["y"].to_numpy(dtype="float64")
    p = part["probability"].to_numpy(dtype="float64")
    table = reliability_table(y, p, bins)
    values = {
        "n_positive": int(y.sum()),
        "roc_auc": roc_auc(y, p),
        "pr_auc": pr_auc(y, p),
        "ece": expected_calibration_error(table),
        "lift_at_k": lift_at_k(y, p, k),
        "arr_captured": arr_captured_at_k(y, p, part["arr"].to_numpy(float), k),
    }
    return values, table


def performance_table(
    rows: pd.DataFrame,
    cards: Mapping[tuple[str, str], ModelCard],
    capacity_k: float,
    mcfg: MonitorConfig,
    evaluated_at: dt.datetime,
) -> tuple[pd.DataFrame, pd.DataFrame]:
    """Metrics per (as_of, target, model_version, touch_model) and the reliability tables behind the ECE.

    Args:
        rows: :func:`realised_rows`.
        cards: model cards by (target, version); a missing card leaves PSI, test AUC and months NaN.
        capacity_k: accounts the CSM team works per as-of (scaled to a tier's share of the accounts).
        mcfg: the monitor section (calibration bins).
        evaluated_at: the time stamped on every row.

    Returns:
        (performance in the ``score_performance`` layout, reliability rows: as_of, target, model_version,
        touch_model, bin, mean_predicted, observed_rate, count). Rows of as-ofs not matured yet carry n,
        PSI and months since training only.
    """
    records, curves = [], []
    nan_metrics = dict.fromkeys(["roc_auc", "pr_auc", "ece", "lift_at_k", "arr_captured"], math.nan)
    for (target, as_of, version), scored in rows.groupby(["target", "as_of", "model_version"], sort=True):
        card = cards.get((target, version))
        matured = bool(scored["matured"].all())
        if scored["matured"].any() and not matured:  # maturity is per as-of: a mix means a broken join
            raise ChurnmlError(f"{target} {version} at {pd.Timestamp(as_of).date()}: partly matured labels")
        groups = [(ALL, scored), *scored.groupby("touch_model", sort=True)]
        for touch, part in groups:
            record = {
                "as_of": as_of,
                "target": target,
                "model_version": version,
                "touch_model": str(touch),
                "n": len(part),
                "n_positive": pd.NA,
                **nan_metrics,
                "psi_score": math.nan,
                "test_roc_auc": math.nan if card is None else card.test_roc_auc,
                "months_since_training": math.nan if card is None else card.months_since_training(as_of),
                "evaluated_at": evaluated_at,
                "matured": matured,
            }
            if touch == ALL and card is not None:
                record["psi_score"] = score_psi(part["probability"].to_numpy(float), card.score_reference)
            if matured:
                values, table = _metrics(part, capacity_k * len(part) / len(scored), mcfg.calibration_bins)
                record |= values
                curves.append(
                    table.assign(as_of=as_of, target=target, model_version=version, touch_model=str(touch))
                )
            records.append(record)
    performance = pd.DataFrame(records, columns=PERFORMANCE_COLUMNS)
    performance["n"] = performance["n"].astype("Int64")
    performance["n_positive"] = performance["n_positive"].astype("Int64")
    performance["matured"] = performance["matured"].astype(bool)
    curve_columns = [
        "as_of",
        "target",
        "model_version",
        "touch_model",
        "bin",
        "mean_predicted",
        "observed_rate",
        "count",
    ]
    reliability = (
        pd.concat(curves, ignore_index=True)[curve_columns] if curves else pd.DataFrame(columns=curve_columns)
    )
    return performance, reliability


# --------------------------------------------------------------------------------------------- advice


def _current_version(rows: pd.DataFrame, cards: Mapping[tuple[str, str], ModelCard], target: str) -> str:
    """The version scored at the target's latest as-of (the most recently trained one if several)."""
    latest = rows.loc[rows["as_of"] == rows["as_of"].max(), "model_version"].unique()

    def order(version: str) -> tuple:
        card = cards.get((target, version))
        return (card.trained_through if card is not None else pd.Timestamp.min, version)

    return max((str(v) for v in latest), key=order)


def advise(
    rows: pd.DataFrame,
    performance: pd.DataFrame,
    cards: Mapping[tuple[str, str], ModelCard],
    mcfg: MonitorConfig,
) -> pd.DataFrame:
    """Retrain advice per target (:data:`ADVICE_COLUMNS`), for the version in use at the latest as-of.

    Status: ``retrain``, ``warn``, ``ok``; ``awaiting_labels`` while none of the version's as-ofs has
    matured; ``insufficient_labels`` below ``min_labeled`` rows or ``min_positives`` positives pooled.
    """
    out = []
    for target in TARGETS:
        mine = rows[rows["target"] == target]
        if mine.empty:
            continue
        version = _current_version(mine, cards, target)
        card = cards.get((target, version))
        used = mine[mine["model_version"] == version]
        matured_days = sorted(used.loc[used["matured"], "as_of"].unique())[-max(mcfg.decision_periods, 1) :]
        perf = performance[
            (performance["target"] == target)
            & (performance["model_version"] == version)
            & (performance["touch_model"] == ALL)
        ].sort_values("as_of")
        record: dict[str, Any] = dict.fromkeys(ADVICE_COLUMNS, math.nan)
        record |= {
            "target": target,
            "model_version": version,
            "periods": len(matured_days),
            "test_roc_auc": math.nan if card is None else card.test_roc_auc,
            "psi_score": float(perf["psi_score"].iloc[-1]) if len(perf) else math.nan,
            "reasons": [],
        }
        if not matured_days:
            last = pd.Timestamp(used["as_of"].max()).date()
            out.append(
                record
                | {"status": "awaiting_labels", "reasons": [f"no matured label yet (latest as-of {last})"]}
            )
            continue
        pooled = used[used["as_of"].isin(matured_days)]
        y = pooled["y"].to_numpy(dtype="float64")
        p = pooled["probability"].to_numpy(dtype="float64")
        auc = roc_auc(y, p)
        lo, hi = bootstrap_auc(y, p, mcfg.bootstrap, mcfg.seed)
        ece = expected_calibration_error(reliability_table(y, p, mcfg.calibration_bins))
        chance = ece_by_chance(p, mcfg.calibration_bins, mcfg.bootstrap, mcfg.seed)
        se_realised = auc_standard_error(auc, y.sum(), len(y) - y.sum())
        se_test = math.nan
        if card is not None:
            se_test = auc_standard_error(
                card.test_roc_auc, card.test_positives, card.test_n - card.test_positives
            )
        # an unknown test sample size counts as none: only the realised AUC's own error is allowed for
        drop_se = (
            math.sqrt(np.nansum([se_realised**2, se_test**2])) if math.isfinite(se_realised) else math.nan
        )
        record |= {
            "as_of_first": pd.Timestamp(matured_days[0]),
            "as_of_last": pd.Timestamp(matured_days[-1]),
            "n": len(pooled),
            "n_positive": int(y.sum()),
            "realised_roc_auc": auc,
            "roc_auc_low": lo,
            "roc_auc_high": hi,
            "ece": ece,
            "ece_by_chance": chance,
            "auc_drop": record["test_roc_auc"] - auc,
            "auc_drop_se": drop_se,
            "months_since_training": math.nan
            if card is None
            else card.months_since_training(pd.Timestamp(matured_days[-1])),
        }
        if len(pooled) < mcfg.min_labeled or y.sum() < mcfg.min_positives:
            reason = (
                f"{len(pooled)} matured rows with {int(y.sum())} positives; at least {mcfg.min_labeled} rows "
                f"and {mcfg.min_positives} positives are needed to judge"
            )
            out.append(record | {"status": "insufficient_labels", "reasons": [reason]})
            continue
        flags: list[tuple[str, str]] = []  # (level, reason)
        drop, test = record["auc_drop"], record["test_roc_auc"]
        if not math.isfinite(test):
            flags.append(("ok", "test ROC-AUC at training unknown: AUC rule not applied"))
        elif drop > mcfg.auc_drop_warn and not drop <= mcfg.significance_z * drop_se:
            # below the margin, and by more than the sampling error of both AUCs allows
            retrain = drop > mcfg.auc_drop_retrain
            bound = mcfg.auc_drop_retrain if retrain else mcfg.auc_drop_warn
            flags.append(
                (
                    "retrain" if retrain else "warn",
                    f"realised ROC-AUC {auc:.3f} (95% {lo:.3f}-{hi:.3f}) is {drop:.3f} below the test ROC-AUC "
                    f"{test:.3f} at training (margin {bound:g}; standard error of the drop {drop_se:.3f})",
                )
            )
        if math.isfinite(ece) and ece > mcfg.ece_warn and not ece <= chance:
            retrain = ece > mcfg.ece_retrain
            bound = mcfg.ece_retrain if retrain else mcfg.ece_warn
            flags.append(
                (
                    "retrain" if retrain else "warn",
                    f"expected calibration error {ece:.3f} above {bound:g} (chance alone gives up to {chance:.3f})",
                )
            )
        psi_value = record["psi_score"]
        if math.isfinite(psi_value) and psi_value > mcfg.psi_warn:
            flags.append(
                ("warn", f"score PSI {psi_value:.2f} against the training reference above {mcfg.psi_warn:g}")
            )
        status = max((level for level, _ in flags), key=STATUS_ORDER.index, default="ok")
        reasons = [reason for _, reason in flags]
        out.append(record | {"status": status, "reasons": reasons})
    return pd.DataFrame(out, columns=ADVICE_COLUMNS)


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
    from churnml.dataset.spine import data_range

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
    from churnml.modeling.tracking import load_champion, model_versions

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
    # its inputs keeps a no-op `dvc repro` (monitor is always_changed) from re-running the report after it
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
        track: log the pass to MLflow (:func:`churnml.modeling.tracking.log_monitoring`).
        now: the evaluation time (default: now, UTC).

    Raises:
        ChurnmlError: when the warehouse holds no scores.
    """
    from churnml.config import repo_root
    from churnml.warehouse.store import Warehouse

    root = Path(root or repo_root())
    warehouse = Warehouse.from_config(
        cfg.warehouse,
        url_override=warehouse_url or None,
        root=root,
        lock_timeout_s=cfg.warehouse.lock_timeout_s,
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
        write_monitor_outputs(
            result, root / cfg.paths.metrics / "monitor.json", root / cfg.paths.plots / "monitor"
        )
    if track:
        from dataclasses import asdict

        from churnml.modeling.tracking import log_monitoring

        log_monitoring(
            result.document,
            {**plot_tables(result), "advice": result.advice},
            params={"monitor": asdict(monitor_config(cfg))},
            tracking=cfg.tracking,
            root=root,
        )
    return result


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
