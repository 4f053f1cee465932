"""Population stability: a feature's training reference (bins or levels) and the PSI of new values against it."""

from __future__ import annotations

from typing import Any

import numpy as np
import pandas as pd

# ------------------------------------------------------------------------------------------------- drift


def _numeric_reference(values: np.ndarray, bins: int) -> dict[str, Any]:
    finite = values[np.isfinite(values)]
    qs = np.quantile(finite, np.linspace(0, 1, bins + 1)[1:-1]) if len(finite) else np.array([])
    edges = np.unique(qs)
    return {
        "kind": "numeric",
        "edges": edges.tolist(),
        "fractions": _numeric_fractions(values, edges).tolist(),
    }


def _numeric_fractions(values: np.ndarray, edges: np.ndarray) -> np.ndarray:
    """Shares of values per bin (-inf, e1], (e1, e2], ..., (ek, inf), then missing (NaN) last."""
    values = np.asarray(values, dtype=float)
    n = max(len(values), 1)
    missing = np.isnan(values)
    idx = np.searchsorted(np.asarray(edges, dtype=float), values[~missing], side="left")
    counts = np.bincount(idx, minlength=len(edges) + 1)
    return np.r_[counts, missing.sum()] / n


def _categorical_reference(values: pd.Series) -> dict[str, Any]:
    shares = values.astype("object").where(values.notna(), "__missing__").value_counts(normalize=True)
    return {"kind": "categorical", "shares": {str(k): float(v) for k, v in shares.sort_index().items()}}


def psi(expected: np.ndarray, actual: np.ndarray, eps: float = 1e-4) -> float:
    """Population stability index sum((a - e) ln(a / e)), shares floored at ``eps``."""
    e = np.maximum(np.asarray(expected, dtype=float), eps)
    a = np.maximum(np.asarray(actual, dtype=float), eps)
    return float(((a - e) * np.log(a / e)).sum())
