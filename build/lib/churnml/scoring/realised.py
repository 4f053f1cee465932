"""Realised performance of past scores: the exact join with matured labels, and its metrics per as-of."""

from __future__ import annotations

import datetime as dt
import math
from collections.abc import Mapping
from typing import Any

import numpy as np
import pandas as pd

from churnml.config import MonitorConfig
from churnml.contract.tables import RELIABILITY_COLUMNS
from churnml.dataset.labels import build_labels
from churnml.errors import ChurnmlError
from churnml.modeling.drift import psi
from churnml.modeling.metrics import arr_captured_at_k, pr_auc, roc_auc, top_weights
from churnml.names import TARGETS, label_column
from churnml.scoring.backtest import ModelCard

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
_SCORE_COLUMNS = ("account_id", "as_of", "arr", "touch_model", *PROBABILITY.values(), *VERSION.values())


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
    curve_columns = list(RELIABILITY_COLUMNS)
    reliability = (
        pd.concat(curves, ignore_index=True)[curve_columns] if curves else pd.DataFrame(columns=curve_columns)
    )
    return performance, reliability
