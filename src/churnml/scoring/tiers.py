"""Risk tiers and the expansion flag relative to the portfolio, chosen on the models' validation data.

A fixed probability threshold ("critical >= 50%") cannot fire on a portfolio whose 90-day churn base rate is
5%. Here a tier is a share of the portfolio, from the riskiest down (``scoring.tiers.top_shares``): its
cut-off is the calibrated probability at that quantile of the model's validation-period scores (the decile
edges saved with the model as its drift reference), so the cut-offs come from data the model did not train
on, and each tier holds about its share of a portfolio like the validation one. Each cut-off is also stated
as a multiple of the validation base rate (positives / rows), which is how the report words it.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import asdict, dataclass
from typing import Any

import numpy as np

from churnml.config import TiersConfig
from churnml.errors import ChurnmlError

_DECILES = np.linspace(0.1, 0.9, 9)


@dataclass
class TierDefinition:
    """The tier cut-offs one scoring run used, and where they came from.

    Attributes:
        cutoffs: tier -> lower bound of the calibrated churn probability (the lowest tier 0.0).
        shares: tier -> the share of validation accounts at or above its cut-off (1.0 for the lowest).
        base_rate: the churn model's validation base rate (positives / rows); None when unknown.
        expansion_cutoff: the expansion probability from which an account is "likely to expand".
        expansion_share: the share of validation accounts at or above it.
        expansion_base_rate: the expansion model's validation base rate.
        source: ``validation`` (quantiles of validation scores), ``portfolio`` (quantiles of the scored
            accounts, when the validation deciles are tied) or ``fixed`` (``thresholds`` from config).
    """

    cutoffs: dict[str, float]
    shares: dict[str, float]
    base_rate: float | None
    expansion_cutoff: float
    expansion_share: float | None
    expansion_base_rate: float | None
    source: str

    def to_dict(self) -> dict[str, Any]:
        """A JSON-ready dict (the score stage's ``paths.tiers`` document)."""
        return asdict(self)

    @classmethod
    def from_dict(cls, data: Mapping[str, Any]) -> TierDefinition:
        """Read :meth:`to_dict`'s output back."""
        return cls(**{k: data[k] for k in cls.__dataclass_fields__})

    def ordered(self) -> list[tuple[str, float]]:
        """Tiers from the highest cut-off down."""
        return sorted(self.cutoffs.items(), key=lambda kv: -kv[1])

    def describe(self) -> list[str]:
        """One sentence per tier, as the report states them ("Critical: the riskiest 10% ...")."""
        lines = []
        previous = 0.0
        for tier, cut in self.ordered():
            share = self.shares.get(tier)
            what = tier.capitalize()
            where = "on validation data" if self.source == "validation" else "scored today"
            if self.source in ("validation", "portfolio") and share is not None and share < 1.0:
                band = (
                    f"the riskiest {share * 100:.0f}%"
                    if previous == 0
                    else f"the next {(share - previous) * 100:.0f}%"
                )
                times = f", {cut / self.base_rate:.1f}x the base rate" if self.base_rate else ""
                lines.append(f"{what}: {band} of accounts {where} (risk from {cut * 100:.1f}%{times})")
                previous = share
            elif share is not None and share >= 1.0 or cut == 0.0:
                lines.append(f"{what}: every other account")
            else:
                lines.append(f"{what}: risk from {cut * 100:.1f}%")
        return lines

    def describe_expansion(self) -> str:
        """The expansion flag in words."""
        times = (
            f", {self.expansion_cutoff / self.expansion_base_rate:.1f}x the base rate"
            if self.expansion_base_rate
            else ""
        )
        if self.source in ("validation", "portfolio") and self.expansion_share is not None:
            where = "on validation data" if self.source == "validation" else "scored today"
            return (
                f"the {self.expansion_share * 100:.0f}% most likely to expand {where} "
                f"(expansion probability from {self.expansion_cutoff * 100:.1f}%{times})"
            )
        return f"expansion probability from {self.expansion_cutoff * 100:.1f}%"


def _reference(model: Any) -> tuple[np.ndarray | None, float | None]:
    """The model's validation decile edges of its calibrated score, and its validation base rate."""
    info = getattr(model, "info", None) or {}
    n, pos = info.get("n_validation"), info.get("positives_validation")
    base = float(pos) / float(n) if n and pos is not None else None
    score = (getattr(model, "distributions", None) or {}).get("score", {})
    edges = np.asarray(score["edges"], dtype=float) if score.get("edges") is not None else None
    fractions = score.get("fractions")
    if edges is not None and len(edges) < len(_DECILES) and fractions and len(fractions) > len(edges):
        # the drift reference keeps distinct edges only: a model whose scores tie (few trees, a mass of
        # accounts at the lowest score) has fewer than nine. Its deciles follow from the share of validation
        # scores at or below each edge; falling back to the scored batch's quantiles instead would make an
        # account's tier depend on which other accounts were scored with it (a partial export, a partition)
        at_or_below = np.cumsum(np.asarray(fractions[: len(edges)], dtype=float))
        at_or_below, first = np.unique(at_or_below, return_index=True)
        edges = np.interp(_DECILES, at_or_below, edges[first]) if len(first) > 1 else None
    # tied edges are fine (np.interp needs only the deciles increasing)
    if edges is None or len(edges) != len(_DECILES) or np.any(np.diff(edges) < 0) or np.ptp(edges) == 0:
        return None, base
    return edges, base


def _quantile(edges: np.ndarray, top_share: float) -> float:
    """The score above which ``top_share`` of validation accounts lie (linear between deciles)."""
    return float(np.interp(1.0 - top_share, _DECILES, edges))


def define_tiers(
    churn_model: Any,
    expansion_model: Any,
    cfg: TiersConfig,
    portfolio: tuple[np.ndarray, np.ndarray] | None = None,
) -> TierDefinition:
    """The tier cut-offs of a scoring run, from the models' validation scores.

    A model whose validation scores have tied deciles (a nearly constant model, e.g. a few trees on a small
    portfolio) gives no usable quantiles: the cut-offs are then the same quantiles of the scored
    ``portfolio`` (source ``portfolio``), and only without it the fixed ``thresholds`` (source ``fixed``).

    Args:
        churn_model, expansion_model: trained models (:class:`churnml.modeling.model.TrainedModel`); their
            ``distributions["score"]`` decile edges and ``info`` validation counts are read.
        cfg: the tiers section.
        portfolio: (churn probabilities, expansion probabilities) of the accounts being scored.

    Raises:
        ChurnmlError: shares outside (0, 1), not increasing with the tier order, or a tier without a play.
    """
    shares = dict(sorted(cfg.top_shares.items(), key=lambda kv: kv[1]))
    if any(not 0 < s < 1 for s in shares.values()) or not 0 < cfg.expansion_top_share < 1:
        raise ChurnmlError(
            "scoring.tiers: top_shares and expansion_top_share must lie strictly between 0 and 1"
        )
    lowest = [t for t in cfg.plays if t not in shares]
    if len(lowest) != 1:
        raise ChurnmlError(
            f"scoring.tiers: plays must name exactly one tier beyond top_shares (the rest); got {lowest}"
        )
    edges, base = _reference(churn_model)
    exp_edges, exp_base = _reference(expansion_model)
    source = "validation"
    if (edges is None or exp_edges is None) and portfolio is not None and len(portfolio[0]):
        edges = np.quantile(np.asarray(portfolio[0], dtype=float), _DECILES)
        exp_edges = np.quantile(np.asarray(portfolio[1], dtype=float), _DECILES)
        source = "portfolio"
    if edges is None or exp_edges is None:
        ordered = sorted(cfg.thresholds.items(), key=lambda kv: -kv[1])
        return TierDefinition(
            cutoffs=dict(ordered),
            shares={},
            base_rate=base,
            expansion_cutoff=0.3,
            expansion_share=None,
            expansion_base_rate=exp_base,
            source="fixed",
        )
    cutoffs = {tier: _quantile(edges, share) for tier, share in shares.items()}
    cutoffs[lowest[0]] = 0.0
    return TierDefinition(
        cutoffs=cutoffs,
        shares={**shares, lowest[0]: 1.0},
        base_rate=base,
        expansion_cutoff=_quantile(exp_edges, cfg.expansion_top_share),
        expansion_share=cfg.expansion_top_share,
        expansion_base_rate=exp_base,
        source=source,
    )
