"""Survival baselines (Kaplan-Meier by segment, Cox) and metrics, out of time, with scikit-survival.

scikit-survival rather than lifelines: lifelines 0.30 requires pandas < 3, which this project left behind;
scikit-survival has both baselines and the metrics (Harrell's and Uno's C, the IPCW Brier score).

Time is in months. A spell's event time is its event month ``k`` (churn during ``(k-1, k]``); a spell
without an event observed for ``m`` months is censored at ``m + 0.5``: it is known to be a customer at the
end of month ``m`` (the usual "censored at t means still at risk at t", made explicit so the metrics'
strict comparisons count it as a survivor of month ``m``).
"""

from __future__ import annotations

import numpy as np
import pandas as pd

from churnml.errors import ChurnmlError

CENSOR_OFFSET = 0.5
CALIBRATION_BINS = 10
# The metrics of :func:`survival_metrics` a champion rule may use, and their direction.
HIGHER_IS_BETTER = {"integrated_brier": False, "harrell_c": True, "uno_c": True, "calibration_error": False}


def survival_times(spells: pd.DataFrame) -> np.ndarray:
    """scikit-survival's structured array (event, time) of spells (duration and event columns)."""
    from sksurv.util import Surv

    event = spells["event"].to_numpy(dtype=bool)
    time = spells["duration"].to_numpy(dtype=float) + np.where(event, 0.0, CENSOR_OFFSET)
    return Surv.from_arrays(event=event, time=time)


def kaplan_meier(spells: pd.DataFrame, times: np.ndarray) -> np.ndarray:
    """The Kaplan-Meier survival of spells at ``times`` (a step function, right-continuous)."""
    from sksurv.nonparametric import kaplan_meier_estimator

    y = survival_times(spells)
    if len(y) == 0:
        return np.full(len(times), np.nan)
    grid, surv = kaplan_meier_estimator(y["event"], y["time"])
    idx = np.searchsorted(grid, np.asarray(times, dtype=float), side="right") - 1
    return np.where(idx >= 0, surv[np.maximum(idx, 0)], 1.0)


def km_by_group(train: pd.DataFrame, test: pd.DataFrame, column: str, horizon: int) -> np.ndarray:
    """Per test spell, S(1..horizon) of the Kaplan-Meier curve of its group in ``train`` (overall if unseen)."""
    times = np.arange(1, horizon + 1, dtype=float)
    overall = kaplan_meier(train, times)
    out = np.tile(overall, (len(test), 1))
    if column not in train.columns:
        return out
    keys = test[column].astype("object").to_numpy()
    for value, group in train.groupby(train[column].astype("object"), observed=True):
        if len(group) and (keys == value).any():
            out[keys == value] = kaplan_meier(group, times)
    return out


class CoxBaseline:
    """Cox proportional hazards on the features at the cutoff (ridge-penalised, scikit-survival).

    Inputs: numeric features imputed with the training median and standardised, categoricals one-hot
    (levels seen at training). It knows nothing of contract terms: the baseline a survival analyst would
    fit first.
    """

    def __init__(self, columns: list[str], alpha: float) -> None:
        self.columns = list(columns)
        self.alpha = float(alpha)

    def _matrix(self, frame: pd.DataFrame, fit: bool) -> np.ndarray:
        parts = []
        if fit:
            self.numeric = [c for c in self.columns if pd.api.types.is_numeric_dtype(frame[c])]
            self.categorical = [c for c in self.columns if c not in self.numeric]
            num = frame[self.numeric].astype("float64")
            self.median = num.median()
            filled = num.fillna(self.median)
            self.mean, self.std = filled.mean(), filled.std().replace(0.0, np.nan)
            self.levels = {c: sorted(frame[c].dropna().astype(str).unique()) for c in self.categorical}
        num = frame[self.numeric].astype("float64").fillna(self.median)
        z = ((num - self.mean) / self.std).fillna(0.0)
        parts.append(z.to_numpy())
        for c in self.categorical:
            values = frame[c].astype("object").astype(str).to_numpy()
            parts.append(
                np.stack([values == v for v in self.levels[c][1:]], axis=1).astype(float)
                if len(self.levels[c]) > 1
                else np.zeros((len(frame), 0))
            )
        return np.concatenate(parts, axis=1)

    def fit(self, spells: pd.DataFrame) -> CoxBaseline:
        from sksurv.linear_model import CoxPHSurvivalAnalysis

        x = self._matrix(spells, fit=True)
        self.model = CoxPHSurvivalAnalysis(alpha=self.alpha, ties="breslow").fit(x, survival_times(spells))
        return self

    def survival(self, frame: pd.DataFrame, horizon: int) -> np.ndarray:
        """S(1..horizon) per row."""
        times = np.arange(1, horizon + 1, dtype=float)
        fns = self.model.predict_survival_function(self._matrix(frame, fit=False))
        return np.array([fn(np.clip(times, fn.domain[0], fn.domain[1])) for fn in fns]).reshape(
            len(frame), horizon
        )


def calibration(
    spells: pd.DataFrame, surv: np.ndarray, months: list[int], bins: int = CALIBRATION_BINS
) -> pd.DataFrame:
    """Mean predicted S(t) against the Kaplan-Meier S(t) of each decile of predicted S(t).

    Returns:
        month, bin (1 = lowest predicted survival), count, mean_predicted, observed_km.
    """
    rows = []
    for t in months:
        pred = surv[:, t - 1]
        order = np.argsort(pred, kind="stable")
        for b, idx in enumerate(np.array_split(order, bins), start=1):
            if len(idx) == 0:
                continue
            observed = kaplan_meier(spells.iloc[idx], np.array([float(t)]))[0]
            rows.append(
                {
                    "month": t,
                    "bin": b,
                    "count": len(idx),
                    "mean_predicted": float(pred[idx].mean()),
                    "observed_km": float(observed),
                }
            )
    return pd.DataFrame(rows)


def survival_metrics(test: pd.DataFrame, surv: np.ndarray, horizon: int) -> dict[str, float]:
    """Harrell's and Uno's C (risk = 1 - S(horizon)), the integrated Brier score over months 1..horizon
    and the count-weighted mean absolute calibration error of S(3), S(6), S(horizon) by decile.

    The inverse-probability-of-censoring weights come from the test spells' own censoring (the training
    spells are censored at the test start, so their censoring says nothing of the test's follow-up)."""
    from sksurv.metrics import concordance_index_censored, concordance_index_ipcw, integrated_brier_score

    if len(test) == 0:
        raise ChurnmlError("survival evaluation: no test spells")
    y_test = survival_times(test)
    y_train = y_test  # the censoring distribution: the test's own
    risk = 1.0 - surv[:, horizon - 1]
    harrell = concordance_index_censored(y_test["event"], y_test["time"], risk)[0]
    tau = float(horizon)
    uno = concordance_index_ipcw(y_train, y_test, risk, tau=tau)[0]
    max_time = float(y_test["time"].max())
    times = np.arange(1, horizon + 1, dtype=float)
    keep = (times >= y_test["time"].min()) & (times < max_time)
    ibs = integrated_brier_score(y_train, y_test, surv[:, keep], times[keep]) if keep.sum() >= 2 else np.nan
    months = sorted({m for m in (3, 6, horizon) if m <= horizon})
    cal = calibration(test, surv, months)
    cal_err = float(
        (cal["mean_predicted"] - cal["observed_km"]).abs().mul(cal["count"]).sum() / cal["count"].sum()
    )
    return {
        "harrell_c": float(harrell),
        "uno_c": float(uno),
        "integrated_brier": float(ibs),
        "calibration_error": cal_err,
        "mean_s_horizon": float(surv[:, horizon - 1].mean()),
    }
