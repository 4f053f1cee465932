"""Cox hazard ratios with confidence intervals: the Breslow partial likelihood's observed information.

scikit-survival fits the coefficients (``CoxPHSurvivalAnalysis``, Breslow ties, no penalty) but returns no
standard errors, and lifelines (which does) requires pandas < 3. The observed information matrix is short to
write by hand, so it is written here and tested against the log-rank variance (two groups, no ties: the Cox
score test at zero is the log-rank test) and against a numerical Hessian of the partial likelihood.

Breslow's log partial likelihood, over the distinct event times ``t`` with ``d_t`` events and risk set
``R(t)`` (every spell with time >= t)::

    l(b) = sum_t [ sum_{i dies at t} x_i b - d_t log S0(t) ],   S0 = sum_R w_j,  w_j = exp(x_j b)

and its negative Hessian (the observed information)::

    I(b) = sum_t d_t [ S2(t) / S0(t) - S1(t) S1(t)' / S0(t)^2 ],  S1 = sum_R w_j x_j,  S2 = sum_R w_j x_j x_j'
"""

from __future__ import annotations

import warnings

import numpy as np

from churnml.errors import ChurnmlError


def _risk_sums(time: np.ndarray, event: np.ndarray, x: np.ndarray, beta: np.ndarray):
    """(event-time indices into the sorted order, d_t, S0, S1, S2 at each distinct event time)."""
    order = np.argsort(time, kind="stable")
    t, e, z = time[order], event[order], x[order]
    shift = z @ beta
    w = np.exp(shift - shift.max())  # scaled: every ratio below is scale-free
    # risk set of time t = the suffix of the sorted spells from the first with time >= t
    s0 = np.cumsum(w[::-1])[::-1]
    s1 = np.cumsum((w[:, None] * z)[::-1], axis=0)[::-1]
    s2 = np.cumsum((w[:, None, None] * z[:, :, None] * z[:, None, :])[::-1], axis=0)[::-1]
    times = np.unique(t[e])
    first = np.searchsorted(t, times, side="left")
    deaths = np.array([int(e[(t == s)].sum()) for s in times])
    return t, e, z, times, first, deaths, s0[first], s1[first], s2[first]


def breslow_loglik(time: np.ndarray, event: np.ndarray, x: np.ndarray, beta: np.ndarray) -> float:
    """Breslow's log partial likelihood at ``beta``."""
    time, event, x, beta = _as_arrays(time, event, x, beta)
    t, e, z, times, first, deaths, s0, _, _ = _risk_sums(time, event, x, beta)
    shift = float((z @ beta).max())
    return float((z[e] @ beta).sum() - (deaths * (np.log(s0) + shift)).sum())


def breslow_score(time: np.ndarray, event: np.ndarray, x: np.ndarray, beta: np.ndarray) -> np.ndarray:
    """The gradient of Breslow's log partial likelihood at ``beta`` (zero at the maximum)."""
    time, event, x, beta = _as_arrays(time, event, x, beta)
    t, e, z, times, first, deaths, s0, s1, _ = _risk_sums(time, event, x, beta)
    return z[e].sum(axis=0) - (deaths[:, None] * s1 / s0[:, None]).sum(axis=0)


def breslow_information(time: np.ndarray, event: np.ndarray, x: np.ndarray, beta: np.ndarray) -> np.ndarray:
    """The observed information (minus the Hessian) of Breslow's log partial likelihood at ``beta``.

    Args:
        time: each spell's time (event or censoring).
        event: whether the spell ends in the event.
        x: covariates, spells x p.
        beta: the coefficients (p).

    Returns:
        The p x p matrix; its inverse at the fitted coefficients is the coefficients' covariance.
    """
    time, event, x, beta = _as_arrays(time, event, x, beta)
    t, e, z, times, first, deaths, s0, s1, s2 = _risk_sums(time, event, x, beta)
    mean = s1 / s0[:, None]
    per_time = s2 / s0[:, None, None] - mean[:, :, None] * mean[:, None, :]
    return (deaths[:, None, None] * per_time).sum(axis=0)


def _as_arrays(time, event, x, beta):
    time = np.asarray(time, dtype=float)
    event = np.asarray(event, dtype=bool)
    x = np.asarray(x, dtype=float)
    x = x[:, None] if x.ndim == 1 else x
    beta = np.atleast_1d(np.asarray(beta, dtype=float))
    if not (len(time) == len(event) == len(x)) or x.shape[1] != len(beta):
        raise ChurnmlError("cox: time, event, covariates and coefficients disagree in size")
    return time, event, x, beta


def fit_cox(time: np.ndarray, event: np.ndarray, x: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Unpenalised Cox model (Breslow ties): (coefficients, their covariance from the observed information).

    Raises:
        ChurnmlError: when the information is singular (a covariate without variation among the spells at
            risk, or no event).
    """
    from sksurv.linear_model import CoxPHSurvivalAnalysis
    from sksurv.util import Surv

    x = np.asarray(x, dtype=float)
    time, event, x, _ = _as_arrays(time, event, x, np.zeros(x.shape[1] if x.ndim == 2 else 1))
    if not event.any():
        raise ChurnmlError("cox: no event to fit")
    try:
        with warnings.catch_warnings():
            # a coefficient running off to infinity (a group whose every member churns before anyone else
            # at risk) is not an error here: its standard error says the ratio is not estimable
            warnings.simplefilter("ignore")
            model = CoxPHSurvivalAnalysis(alpha=0.0, ties="breslow").fit(
                x, Surv.from_arrays(event=event, time=time)
            )
        beta = np.asarray(model.coef_, dtype=float)
        cov = np.linalg.inv(breslow_information(time, event, x, beta))
    except (np.linalg.LinAlgError, ValueError) as err:
        raise ChurnmlError("cox: the information matrix is singular (a covariate does not vary)") from err
    return beta, cov
