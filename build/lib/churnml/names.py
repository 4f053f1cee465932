"""The pipeline's vocabulary, in one place: targets, key columns, label columns and feature families.

The base layer: it imports nothing from churnml but :mod:`churnml.errors`, so every layer (and the config
dataclasses) may import it.
"""

from __future__ import annotations

from churnml.errors import ChurnmlError

ACCOUNT = "account_id"
# The point-in-time column has two names. Spine, labels and features call it ``cutoff`` (the as-of date of a
# row: features see only what happened before it). Scores, explanations and the warehouse call it ``as_of``,
# a public interface (DESIGN.md, the warehouse tables): a row is renamed from CUTOFF to AS_OF where scores
# are built from features (churnml.scoring.batch, and churnml.explain.contributions for explanations).
CUTOFF = "cutoff"
AS_OF = "as_of"
KEYS = (ACCOUNT, CUTOFF)  # the key of every spine, label and feature row

CHURN = "churn"
EXPANSION = "expansion"
CONTRACTION = "contraction"  # labelled (a reported outcome), not modelled
TARGETS = (CHURN, EXPANSION)  # the modelled targets, in training order

# Label columns: ``<verb>_within_<horizon>d`` (DESIGN.md, Interfaces).
_LABEL_VERBS = {CHURN: "churned", EXPANSION: "expanded", CONTRACTION: "contracted"}
LABEL_PREFIXES = tuple(f"{verb}_within_" for verb in _LABEL_VERBS.values())

# Feature families, in catalogue order; every feature column starts with ``<family>_``. Here rather than in
# churnml.features: the features config's default (churnml.config) needs the list, and config sits below
# the features layer.
FEATURE_FAMILIES = (
    "account",
    "usage",
    "adoption",
    "lifecycle",
    "contract",
    "support",
    "nps",
    "csm",
    "contacts",
    "invoices",
)


def label_column(target: str, horizon_days: int) -> str:
    """The label column of a target (or of ``contraction``), e.g. ``churned_within_90d``."""
    if target not in _LABEL_VERBS:
        raise ChurnmlError(f"unknown target {target!r}: expected one of {', '.join(_LABEL_VERBS)}")
    return f"{_LABEL_VERBS[target]}_within_{int(horizon_days)}d"


def label_horizon(column: str) -> int:
    """The horizon in days a label column is named after (``churned_within_90d`` -> 90)."""
    prefix = next((p for p in LABEL_PREFIXES if column.startswith(p)), None)
    days = column[len(prefix) :].removesuffix("d") if prefix and column.endswith("d") else ""
    if not days.isdigit():
        raise ChurnmlError(f"{column!r} is not a label column (<verb>_within_<days>d)")
    return int(days)


def label_columns(horizon_days: int) -> list[str]:
    """Every label column at a horizon: churned, expanded, contracted."""
    return [label_column(t, horizon_days) for t in _LABEL_VERBS]
