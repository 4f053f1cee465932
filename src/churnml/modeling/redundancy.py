"""Redundant features: near-copies of one quantity, found at training time so that they take one reason slot.

Two numeric features are redundant when the absolute Pearson correlation of their values on the training rows
exceeds ``model.redundancy_threshold`` (0.95): a charge that is minutes x a flat rate, ARR and MRR, a count and
its sum over the same window. The model keeps both (nothing is dropped, the scores do not change); the groups
(connected components of the "redundant with" graph) are recorded in ``model.info["redundant_groups"]`` and
travel with the saved model, so explanations (:func:`churnml.explain.reasons.reasons_for`, tabular mode's
reasons) sum a group's points into one reason instead of showing the same cause twice.

Pearson, not a rank correlation: the copies this is for are linear (a unit, a rate, a sum over the same
rows), and it needs one pass of pandas' pairwise-complete ``DataFrame.corr`` (missing values are left out per
pair, so a feature missing on some rows still groups on the rows where both exist). Categorical features
never group (a correlation needs numbers). Components chain: with a threshold of 0.95, a~b and b~c put a, b
and c in one group even where a and c correlate less; at such high thresholds that is one quantity measured
three ways.
"""

from __future__ import annotations

import numpy as np
import pandas as pd

from churnml.errors import ChurnmlError

# rows the correlations are computed on (a seeded sample above it: correlations of 0.95 are stable long before)
SAMPLE_ROWS = 50_000
# pairs need this many rows where both are present to count as redundant
MIN_PAIR_ROWS = 30


def redundant_groups(
    x: pd.DataFrame,
    numeric: list[str],
    threshold: float,
    *,
    seed: int = 0,
) -> list[list[str]]:
    """Groups of at least two numeric features whose pairwise |correlation| exceeds ``threshold``.

    Args:
        x: the training rows (the model's prepared input: numeric columns as float).
        numeric: the columns that may group, in the model's feature order.
        threshold: in (0, 1]; 1 turns the grouping off (no |r| exceeds it).
        seed: of the row sample above :data:`SAMPLE_ROWS`.

    Returns:
        Each group's members in the order of ``numeric``; groups ordered by their first member.
    """
    if not 0 < threshold <= 1:
        raise ChurnmlError(f"model.redundancy_threshold: {threshold} is not in (0, 1]")
    if threshold >= 1 or len(numeric) < 2 or len(x) < MIN_PAIR_ROWS:
        return []
    frame = x[numeric]
    if len(frame) > SAMPLE_ROWS:
        frame = frame.sample(SAMPLE_ROWS, random_state=seed)
    frame = frame.astype("float64").replace([np.inf, -np.inf], np.nan)
    corr = frame.corr(min_periods=MIN_PAIR_ROWS).to_numpy()  # constant columns: NaN, never grouped
    pairs = np.argwhere(np.triu(np.abs(np.nan_to_num(corr, nan=0.0)) > threshold, k=1))
    # union-find over the pairs: a handful of pairs among a few hundred features, nothing a library adds here
    parent = list(range(len(numeric)))

    def root(i: int) -> int:
        while parent[i] != i:
            parent[i] = parent[parent[i]]
            i = parent[i]
        return i

    for i, j in pairs:
        a, b = root(int(i)), root(int(j))
        if a != b:
            parent[max(a, b)] = min(a, b)
    members: dict[int, list[str]] = {}
    for i, name in enumerate(numeric):
        members.setdefault(root(i), []).append(name)
    return [group for _, group in sorted(members.items()) if len(group) > 1]
