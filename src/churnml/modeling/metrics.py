"""Evaluation metrics for ranked risk scores, computed once as tables that feed DVC, MLflow and reports.

Every metric here is a plain function of arrays (``y`` the 0/1 outcome, ``score`` the model's score or
probability, ``arr`` the account's ARR). :func:`metrics_table` and :func:`curve_tables` turn a long
``scores`` frame (one row per model, split and account-cutoff) into the tables an :class:`Evaluation`
holds; :func:`metrics_json`, :func:`plot_tables` and :func:`figures` only reshape those tables, so the
number in ``metrics/<target>.json``, the CSV behind ``dvc plots`` and the picture in MLflow agree.

Conventions:

- *Top fraction / top k with ties.* Selecting the top ``n`` of a ranking is done with fractional
  inclusion weights: accounts scored strictly above the boundary score count fully, accounts tied at the
  boundary share the remaining places equally. The result is the expected value under random
  tie-breaking, deterministic and independent of row order (a rule-based score has many ties).
  ``n = ceil(fraction x rows)``.
- *arr_captured_at_k* is per scoring run: within each cutoff, the top ``k`` accounts (the CSM team's
  capacity) are selected; the metric is the ARR of the positives selected, summed over cutoffs, divided by
  the ARR of all positives. For a subgroup (touch model, segment) the capacity is scaled to the group's
  share of the split's rows.
- *Names are the contract's*: ``lift_at_10pct`` and ``recall_at_10pct`` use
  ``EvaluationConfig.top_fraction`` (0.1 by default) whatever its value; ``arr_captured_at_k`` uses
  ``csm_capacity_k``; ``emp`` is in currency per account (see :func:`emp`).
- *Undefined* values (AUC of a group without both classes, a rate without positives) are NaN in the
  tables and ``null`` in JSON.
"""

from __future__ import annotations

import json
import math
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np
import pandas as pd

from churnml.config import EvaluationConfig
from churnml.contract.outputs import METRIC_NAMES
from churnml.errors import ChurnmlError

if TYPE_CHECKING:
    from matplotlib.figure import Figure

METRICS = METRIC_NAMES  # the names of metrics/<target>.json are the contract's
HIGHER_IS_BETTER = {m: m not in ("log_loss", "brier") for m in METRICS}
MODELS = ("lightgbm", "logistic", "health_score", "oracle")
GROUP_KINDS = {"all": None, "touch_model": "touch_model", "segment": "segment"}
SCORE_COLUMNS = ("model", "split", "account_id", "cutoff", "y", "score", "arr", "segment", "touch_model")
CURVES = ("roc", "pr", "calibration", "gains")
_PROB_EPS = 1e-15
_CURVE_POINTS = 300


# --------------------------------------------------------------------------------------------- ranking


def n_top(n: int, fraction: float) -> int:
    """How many of ``n`` ranked rows a top ``fraction`` selects: ``ceil(fraction x n)``, at least 1."""
    if n == 0:
        return 0
    # the epsilon keeps 0.1 x 30 = 3.0000000000000004 from rounding up to 4
    return int(min(n, max(1, math.ceil(fraction * n - 1e-9))))


def top_weights(score: np.ndarray, n_selected: float) -> np.ndarray:
    """Inclusion weights (0..1) of selecting the ``n_selected`` highest scores, ties sharing the boundary.

    Rows strictly above the boundary score get 1, rows tied at it share the places left equally, the
    rest get 0; the weights sum to ``min(n_selected, len(score))``.
    """
    score = np.asarray(score, dtype=float)
    n = len(score)
    weights = np.zeros(n)
    if n == 0 or n_selected <= 0:
        return weights
    if n_selected >= n:
        return np.ones(n)
    boundary = np.sort(score)[::-1][int(math.ceil(n_selected)) - 1]
    above = score > boundary
    tied = score == boundary
    weights[above] = 1.0
    weights[tied] = (n_selected - above.sum()) / tied.sum()
    return weights


# ---------------------------------------------------------------------------------------------- metrics


def _both_classes(y: np.ndarray) -> bool:
    return len(y) > 0 and 0 < y.sum() < len(y)


def roc_auc(y: np.ndarray, score: np.ndarray) -> float:
    """Area under the ROC curve (NaN unless both classes are present)."""
    from sklearn.metrics import roc_auc_score

    y = np.asarray(y, dtype=float)
    return float(roc_auc_score(y, score)) if _both_classes(y) else math.nan


def roc_auc_difference(y: np.ndarray, a: np.ndarray, b: np.ndarray) -> tuple[float, float]:
    """ROC-AUC of ``a`` minus that of ``b`` on the same rows, and the standard error of the difference.

    DeLong, DeLong & Clarke-Pearson (1988), in the midrank form of Sun & Xu (2014): each positive's and
    each negative's share of the pairs it wins (its structural components) gives the covariance of the two
    AUCs, which are correlated because they rank the same rows. Written here because scikit-learn and SciPy
    have no paired AUC variance (``tests/test_metrics.py`` checks it against a bootstrap). NaN, NaN unless
    both classes are present.
    """
    from scipy.stats import rankdata

    y = np.asarray(y, dtype=float) > 0
    if not _both_classes(y):
        return math.nan, math.nan
    scores = np.vstack([np.asarray(a, dtype=float), np.asarray(b, dtype=float)])
    pos, neg = scores[:, y], scores[:, ~y]
    m, n = pos.shape[1], neg.shape[1]
    ranks = rankdata(np.hstack([pos, neg]), axis=1)
    v10 = (ranks[:, :m] - rankdata(pos, axis=1)) / n  # per positive: share of negatives ranked below it
    v01 = 1.0 - (ranks[:, m:] - rankdata(neg, axis=1)) / m  # per negative: share of positives above it
    auc = v10.mean(axis=1)
    cov = np.zeros((2, 2))
    if m > 1:
        cov += np.cov(v10) / m
    if n > 1:
        cov += np.cov(v01) / n
    var = cov[0, 0] + cov[1, 1] - 2 * cov[0, 1]
    return float(auc[0] - auc[1]), float(math.sqrt(max(var, 0.0)))


def pr_auc(y: np.ndarray, score: np.ndarray) -> float:
    """Average precision, the step-wise area under the precision-recall curve (NaN without positives)."""
    from sklearn.metrics import average_precision_score

    y = np.asarray(y, dtype=float)
    return float(average_precision_score(y, score)) if _both_classes(y) else math.nan


def log_loss(y: np.ndarray, prob: np.ndarray) -> float:
    """Mean binary cross-entropy in nats, probabilities clipped to [1e-15, 1 - 1e-15]."""
    y = np.asarray(y, dtype=float)
    if len(y) == 0:
        return math.nan
    p = np.clip(np.asarray(prob, dtype=float), _PROB_EPS, 1 - _PROB_EPS)
    return float(-np.mean(y * np.log(p) + (1 - y) * np.log(1 - p)))


def brier(y: np.ndarray, prob: np.ndarray) -> float:
    """Mean squared error of the probability against the 0/1 outcome."""
    y = np.asarray(y, dtype=float)
    return float(np.mean((np.asarray(prob, dtype=float) - y) ** 2)) if len(y) else math.nan


def recall_at(y: np.ndarray, score: np.ndarray, fraction: float) -> float:
    """Share of all positives found in the top ``fraction`` of rows by score."""
    y = np.asarray(y, dtype=float)
    if y.sum() == 0:
        return math.nan
    w = top_weights(score, n_top(len(y), fraction))
    return float((w * y).sum() / y.sum())


def lift_at(y: np.ndarray, score: np.ndarray, fraction: float) -> float:
    """Positive rate in the top ``fraction`` of rows by score, divided by the overall positive rate."""
    y = np.asarray(y, dtype=float)
    if y.sum() == 0:
        return math.nan
    n_sel = n_top(len(y), fraction)
    w = top_weights(score, n_sel)
    return float(((w * y).sum() / n_sel) / y.mean())


def arr_captured_at_k(
    y: np.ndarray, score: np.ndarray, arr: np.ndarray, k: float, period: np.ndarray | None = None
) -> float:
    """Share of the positives' ARR held by the top ``k`` accounts by score, per period.

    Args:
        y: 1 for the accounts that churned (or expanded).
        score: the ranking score.
        arr: each account's ARR.
        k: accounts the team can work per scoring run (may be fractional for a scaled subgroup).
        period: the scoring run (cutoff) of each row; None = one run.

    Returns:
        sum over periods of the selected positives' ARR / the ARR of all positives (NaN if none).
    """
    y = np.asarray(y, dtype=float)
    score = np.asarray(score, dtype=float)
    arr = np.nan_to_num(np.asarray(arr, dtype=float), nan=0.0)
    total = (y * arr).sum()
    if total <= 0:
        return math.nan
    if period is None:
        period = np.zeros(len(y))
    captured = 0.0
    for p in pd.unique(np.asarray(period)):
        rows = np.asarray(period) == p
        w = top_weights(score[rows], k)
        captured += (w * y[rows] * arr[rows]).sum()
    return float(captured / total)


def emp(
    y: np.ndarray,
    score: np.ndarray,
    clv: np.ndarray,
    *,
    offer_cost_fraction: float,
    contact_cost: float,
    alpha: float,
    beta: float,
) -> float:
    """Expected maximum profit of a retention campaign (Verbraken et al. 2013), per account.

    The campaign contacts the top fraction eta of accounts by score. Each account i has its own
    lifetime value ``CLV_i`` (its ARR), offer cost ``d_i = offer_cost_fraction x CLV_i`` and contact
    cost ``f``. A contacted would-be churner accepts the offer with probability gamma and stays
    (gain ``CLV_i - d_i - f``) or leaves anyway (``-f``); a contacted non-churner takes the offer it
    did not need (``-(d_i + f)``). With N accounts, the profit of targeting the set S(eta) is

        P(eta; gamma) = (1/N) [ sum_{i in S, y_i=1} (gamma (CLV_i - d_i) - f)
                                 - sum_{i in S, y_i=0} (d_i + f) ]

    and EMP = integral over gamma ~ Beta(alpha, beta) of max_eta P(eta; gamma). eta ranges over the
    cuts between distinct scores (tied accounts are targeted together) and includes targeting nobody,
    so EMP >= 0. P is linear in gamma for each cut, so the maximum is the upper envelope of lines and
    the integral is computed exactly with the regularised incomplete beta function. This is the
    per-account (heterogeneous CLV) version of the paper's EMPC; with equal CLVs it reduces to it.

    Returns:
        Expected maximum profit in currency per account (NaN for an empty input).
    """
    from scipy.special import betainc

    y = np.asarray(y, dtype=float)
    n = len(y)
    if n == 0:
        return math.nan
    order = np.argsort(-np.asarray(score, dtype=float), kind="stable")
    y = y[order]
    s = np.asarray(score, dtype=float)[order]
    clv = np.nan_to_num(np.asarray(clv, dtype=float)[order], nan=0.0)
    d = offer_cost_fraction * clv
    slope = np.concatenate([[0.0], np.cumsum(y * (clv - d))])
    cost = np.concatenate([[0.0], np.cumsum(y * contact_cost + (1 - y) * (d + contact_cost))])
    # a threshold can only fall between distinct scores: cut before each new score, or after all
    cuts = np.r_[0, np.flatnonzero(s[1:] != s[:-1]) + 1, n]
    lines_a, lines_b = slope[cuts], cost[cuts]

    # upper envelope of gamma -> a*gamma - b: sort by slope, keep the cheapest of equal slopes
    idx = np.lexsort((lines_b, lines_a))
    lines_a, lines_b = lines_a[idx], lines_b[idx]
    keep = np.r_[True, lines_a[1:] != lines_a[:-1]]
    lines_a, lines_b = lines_a[keep], lines_b[keep]
    hull: list[int] = []
    for j in range(len(lines_a)):
        while len(hull) >= 2:
            i, k = hull[-2], hull[-1]
            x_ik = (lines_b[k] - lines_b[i]) / (lines_a[k] - lines_a[i])
            x_ij = (lines_b[j] - lines_b[i]) / (lines_a[j] - lines_a[i])
            if x_ij <= x_ik:
                hull.pop()
            else:
                break
        hull.append(j)
    a, b = lines_a[hull], lines_b[hull]
    # line t of the hull is the maximum between breaks[t] and breaks[t+1]
    breaks = np.r_[-np.inf, (b[1:] - b[:-1]) / (a[1:] - a[:-1]), np.inf]
    lo = np.clip(breaks[:-1], 0.0, 1.0)
    hi = np.clip(breaks[1:], 0.0, 1.0)
    mass = betainc(alpha, beta, hi) - betainc(alpha, beta, lo)
    first_moment = alpha / (alpha + beta) * (betainc(alpha + 1, beta, hi) - betainc(alpha + 1, beta, lo))
    return float((a * first_moment - b * mass).sum() / n)


def compute_metrics(
    y: np.ndarray,
    score: np.ndarray,
    arr: np.ndarray,
    period: np.ndarray,
    cfg: EvaluationConfig,
    k: float | None = None,
) -> dict[str, float]:
    """All of :data:`METRICS` for one set of rows (``score`` must be a probability for log loss/Brier).

    Args:
        y: 0/1 outcomes.
        score: predicted probabilities.
        arr: ARR per row (the CLV of EMP and the weight of arr_captured_at_k).
        period: cutoff of each row (arr_captured_at_k works per scoring run).
        cfg: the evaluation section (top fraction, capacity k, EMP parameters).
        k: capacity per run; default ``cfg.csm_capacity_k``.
    """
    y = np.asarray(y, dtype=float)
    score = np.asarray(score, dtype=float)
    return {
        "roc_auc": roc_auc(y, score),
        "pr_auc": pr_auc(y, score),
        "log_loss": log_loss(y, score),
        "brier": brier(y, score),
        "lift_at_10pct": lift_at(y, score, cfg.top_fraction),
        "recall_at_10pct": recall_at(y, score, cfg.top_fraction),
        "arr_captured_at_k": arr_captured_at_k(y, score, arr, cfg.csm_capacity_k if k is None else k, period),
        "emp": emp(
            y,
            score,
            arr,
            offer_cost_fraction=cfg.emp_offer_cost_fraction,
            contact_cost=cfg.emp_contact_cost,
            alpha=cfg.emp_alpha,
            beta=cfg.emp_beta,
        ),
    }


# ----------------------------------------------------------------------------------------------- tables


@dataclass
class Evaluation:
    """One target's evaluation: the scored rows and the tables every report is drawn from.

    Attributes:
        target: ``churn`` or ``expansion``.
        label_column: the outcome column, e.g. ``churned_within_90d``.
        scores: one row per (model, split, account_id, cutoff): y, score (a probability), arr, segment,
            touch_model.
        metrics: one row per (model, split, group_kind, group) with n, positives and :data:`METRICS`.
        curves: ``roc``, ``pr``, ``calibration``, ``gains`` tables (test split), each with a ``model``
            column.
        n: row counts: train, validation, test, test_positives.
    """

    target: str
    label_column: str
    scores: pd.DataFrame
    metrics: pd.DataFrame
    curves: dict[str, pd.DataFrame]
    n: dict[str, int] = field(default_factory=dict)

    def metric(self, name: str, model: str = "lightgbm", split: str = "test") -> float:
        """One overall metric value from the table."""
        rows = self.metrics[
            (self.metrics["model"] == model)
            & (self.metrics["split"] == split)
            & (self.metrics["group_kind"] == "all")
        ]
        if rows.empty:
            raise ChurnmlError(f"evaluation of {self.target}: no {split} metrics for model {model!r}")
        return float(rows[name].iloc[0])

    def save(self, folder: Path) -> None:
        """Write the tables to ``folder`` (Parquet + JSON), readable with :func:`load_evaluation`."""
        folder = Path(folder)
        folder.mkdir(parents=True, exist_ok=True)
        self.scores.to_parquet(folder / "scores.parquet", index=False)
        self.metrics.to_parquet(folder / "metrics.parquet", index=False)
        for name, table in self.curves.items():
            table.to_parquet(folder / f"curve_{name}.parquet", index=False)
        meta = {
            "target": self.target,
            "label_column": self.label_column,
            "n": self.n,
            "curves": list(self.curves),
        }
        (folder / "evaluation.json").write_text(json.dumps(meta, indent=2) + "\n", encoding="utf-8")


def load_evaluation(folder: Path) -> Evaluation:
    """Read an evaluation written by :meth:`Evaluation.save`."""
    folder = Path(folder)
    meta_path = folder / "evaluation.json"
    if not meta_path.is_file():
        raise ChurnmlError(f"{folder}: no saved evaluation (evaluation.json missing)")
    meta = json.loads(meta_path.read_text(encoding="utf-8"))
    return Evaluation(
        target=meta["target"],
        label_column=meta["label_column"],
        scores=pd.read_parquet(folder / "scores.parquet"),
        metrics=pd.read_parquet(folder / "metrics.parquet"),
        curves={name: pd.read_parquet(folder / f"curve_{name}.parquet") for name in meta["curves"]},
        n={k: int(v) for k, v in meta["n"].items()},
    )


def metrics_table(scores: pd.DataFrame, cfg: EvaluationConfig) -> pd.DataFrame:
    """Metrics per (model, split, group_kind, group) from a long scores frame (see :data:`SCORE_COLUMNS`).

    ``group_kind`` is ``all`` (group ``all``), ``touch_model`` or ``segment``. Within a group the CSM
    capacity k is scaled to the group's share of the split's rows.
    """
    missing = [c for c in SCORE_COLUMNS if c not in scores.columns]
    if missing:
        raise ChurnmlError(f"scores table: missing column(s) {', '.join(missing)}")
    rows: list[dict[str, Any]] = []
    for (model, split), part in scores.groupby(["model", "split"], sort=False, observed=True):
        n_split = len(part)
        for kind, column in GROUP_KINDS.items():
            groups = [("all", part)] if column is None else part.groupby(column, sort=True, observed=True)
            for group, rows_g in groups:
                k = cfg.csm_capacity_k * len(rows_g) / n_split
                values = compute_metrics(
                    rows_g["y"].to_numpy(float),
                    rows_g["score"].to_numpy(float),
                    rows_g["arr"].to_numpy(float),
                    rows_g["cutoff"].to_numpy(),
                    cfg,
                    k=k,
                )
                rows.append(
                    {
                        "model": model,
                        "split": split,
                        "group_kind": kind,
                        "group": str(group),
                        "n": len(rows_g),
                        "positives": int(rows_g["y"].sum()),
                        **values,
                    }
                )
    return pd.DataFrame(rows)


def _thin(frame: pd.DataFrame, points: int = _CURVE_POINTS) -> pd.DataFrame:
    if len(frame) <= points:
        return frame
    keep = np.unique(np.linspace(0, len(frame) - 1, points).round().astype(int))
    return frame.iloc[keep]


def curve_tables(scores: pd.DataFrame, split: str = "test", bins: int = 10) -> dict[str, pd.DataFrame]:
    """ROC, precision-recall, reliability (equal-count bins) and cumulative gains tables for one split.

    Each table has a ``model`` column; ROC and PR curves are thinned to at most 300 points per model.
    """
    from sklearn.metrics import precision_recall_curve, roc_curve

    roc, pr, calibration, gains = [], [], [], []
    fractions = np.round(np.linspace(0.01, 1.0, 100), 2)
    for model, part in scores[scores["split"] == split].groupby("model", sort=False, observed=True):
        y = part["y"].to_numpy(float)
        p = part["score"].to_numpy(float)
        if _both_classes(y):
            fpr, tpr, _ = roc_curve(y, p)
            roc.append(_thin(pd.DataFrame({"model": model, "fpr": fpr, "tpr": tpr})))
            precision, recall, _ = precision_recall_curve(y, p)
            pr_frame = pd.DataFrame({"model": model, "recall": recall[::-1], "precision": precision[::-1]})
            pr.append(_thin(pr_frame))
        # equal-count bins by rank (ties split across bins, so every bin has the same size)
        rank = np.argsort(np.argsort(p, kind="stable"), kind="stable")
        bin_of = (rank * bins) // max(len(p), 1)
        grouped = pd.DataFrame({"bin": bin_of, "p": p, "y": y}).groupby("bin")
        calibration.append(
            pd.DataFrame(
                {
                    "model": model,
                    "bin": grouped.size().index + 1,
                    "mean_predicted": grouped["p"].mean().to_numpy(),
                    "observed_rate": grouped["y"].mean().to_numpy(),
                    "count": grouped.size().to_numpy(),
                }
            )
        )
        captured = [recall_at(y, p, f) for f in fractions]
        gains.append(
            pd.DataFrame(
                {
                    "model": model,
                    "fraction_targeted": fractions,
                    "fraction_captured": captured,
                    "lift": np.asarray(captured) / fractions,
                }
            )
        )

    def cat(parts: list[pd.DataFrame], columns: list[str]) -> pd.DataFrame:
        return pd.concat(parts, ignore_index=True) if parts else pd.DataFrame(columns=columns)

    return {
        "roc": cat(roc, ["model", "fpr", "tpr"]),
        "pr": cat(pr, ["model", "recall", "precision"]),
        "calibration": cat(calibration, ["model", "bin", "mean_predicted", "observed_rate", "count"]),
        "gains": cat(gains, ["model", "fraction_targeted", "fraction_captured", "lift"]),
    }


def build_evaluation(
    scores: pd.DataFrame, cfg: EvaluationConfig, target: str, label_column: str, n_train: int
) -> Evaluation:
    """Compute the metrics and curve tables of a long scores frame, once."""
    test = scores[(scores["split"] == "test") & (scores["model"] == "lightgbm")]
    # the validation rows any model scored: a served model refit on them leaves its own scores out there
    validation = scores[scores["split"] == "validation"].drop_duplicates(["account_id", "cutoff"])
    return Evaluation(
        target=target,
        label_column=label_column,
        scores=scores,
        metrics=metrics_table(scores, cfg),
        curves=curve_tables(scores),
        n={
            "train": int(n_train),
            "validation": len(validation),
            "test": len(test),
            "test_positives": int(test["y"].sum()),
        },
    )


# ------------------------------------------------------------------------------------- views of tables


def _clean(value: float) -> float | None:
    return None if value is None or not math.isfinite(value) else float(value)


def _metric_dict(row: pd.Series) -> dict[str, float | None]:
    return {m: _clean(row[m]) for m in METRICS}


def _rows(ev: Evaluation, model: str, split: str, kind: str) -> pd.DataFrame:
    m = ev.metrics
    return m[(m["model"] == model) & (m["split"] == split) & (m["group_kind"] == kind)]


def metrics_json(evaluation: Evaluation) -> dict[str, Any]:
    """The ``metrics/<target>.json`` document (DESIGN.md, Interfaces), NaN as null.

    Keys: test, validation, baselines.{logistic,health_score}.test, oracle.test and oracle_lift_ratio
    (only when a truth probability was given), by_touch_tier, by_segment (LightGBM, test period) and n.
    """

    def overall(model: str, split: str) -> dict[str, float | None]:
        rows = _rows(evaluation, model, split, "all")
        if rows.empty:
            return {m: None for m in METRICS}
        return _metric_dict(rows.iloc[0])

    def by(kind: str) -> dict[str, dict[str, float | None]]:
        return {
            str(r["group"]): _metric_dict(r)
            for _, r in _rows(evaluation, "lightgbm", "test", kind).iterrows()
        }

    out: dict[str, Any] = {
        "test": overall("lightgbm", "test"),
        "validation": overall("lightgbm", "validation"),
        "baselines": {b: {"test": overall(b, "test")} for b in ("logistic", "health_score")},
    }
    if not _rows(evaluation, "oracle", "test", "all").empty:
        out["oracle"] = {"test": overall("oracle", "test")}
        auc = out["test"]["roc_auc"]
        oracle_auc = out["oracle"]["test"]["roc_auc"]
        ratio = None
        if auc is not None and oracle_auc is not None and oracle_auc != 0.5:
            ratio = _clean((auc - 0.5) / (oracle_auc - 0.5))
        out["oracle_lift_ratio"] = ratio
    out["by_touch_tier"] = by("touch_model")
    out["by_segment"] = by("segment")
    out["n"] = {k: int(evaluation.n.get(k, 0)) for k in ("train", "validation", "test", "test_positives")}
    return out


def plot_tables(evaluation: Evaluation) -> dict[str, pd.DataFrame]:
    """The DVC plot files, ``plots/<target>/<name>.csv``: roc, pr, calibration, gains (with ``model``)."""
    return {name: evaluation.curves[name].reset_index(drop=True) for name in CURVES}


def write_dvc_outputs(evaluation: Evaluation, metrics_file: Path, plots_dir: Path) -> None:
    """Write ``metrics_file`` (JSON) and ``plots_dir/<name>.csv`` from the evaluation tables."""
    metrics_file = Path(metrics_file)
    metrics_file.parent.mkdir(parents=True, exist_ok=True)
    text = json.dumps(metrics_json(evaluation), indent=2, allow_nan=False) + "\n"
    metrics_file.write_text(text, encoding="utf-8")
    plots_dir = Path(plots_dir)
    plots_dir.mkdir(parents=True, exist_ok=True)
    for name, table in plot_tables(evaluation).items():
        table.to_csv(plots_dir / f"{name}.csv", index=False, float_format="%.6g")


def figures(evaluation: Evaluation) -> dict[str, Figure]:
    """Matplotlib figures (no pyplot, no global backend) drawn from :func:`plot_tables`, one per table."""
    from matplotlib.figure import Figure

    tables = plot_tables(evaluation)
    spec = {
        "roc": ("fpr", "tpr", "False positive rate", "True positive rate", True),
        "pr": ("recall", "precision", "Recall", "Precision", False),
        "calibration": (
            "mean_predicted",
            "observed_rate",
            "Mean predicted probability",
            "Observed rate",
            True,
        ),
        "gains": (
            "fraction_targeted",
            "fraction_captured",
            "Fraction of accounts targeted",
            "Share captured",
            True,
        ),
    }
    out: dict[str, Figure] = {}
    for name, (x, y, xlabel, ylabel, diagonal) in spec.items():
        fig = Figure(figsize=(5, 4), dpi=100)
        ax = fig.add_subplot()
        for model, part in tables[name].groupby("model", sort=False):
            ax.plot(part[x], part[y], marker="o" if name == "calibration" else None, ms=3, label=str(model))
        if diagonal:
            top = max(1e-9, float(tables[name][[x, y]].max().max())) if name == "calibration" else 1.0
            ax.plot([0, top], [0, top], ls="--", color="grey", lw=1)
        ax.set_xlabel(xlabel)
        ax.set_ylabel(ylabel)
        ax.set_title(f"{evaluation.target}: {name} (test)")
        ax.legend(loc="best", fontsize=8)
        fig.tight_layout()
        out[name] = fig
    return out
