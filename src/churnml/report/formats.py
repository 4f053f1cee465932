"""How the report writes numbers and category codes: money, percentages, labels a CSM reads."""

from __future__ import annotations

from typing import Any

import numpy as np

LABELS = {
    "smb": "SMB",
    "mid_market": "Mid-market",
    "high_touch": "High touch",
    "low_touch": "Low touch",
    "tech_touch": "Tech touch",
    "na": "North America",
    "emea": "EMEA",
    "apac": "APAC",
    "latam": "LATAM",
}


def money(v: float | None) -> str:
    """``$1.2M``, ``$36k``, ``$8.0k``, ``$960``; a dash for a missing value."""
    if v is None or not np.isfinite(v):
        return "–"
    a = abs(v)
    if a >= 1e6:
        return f"${v / 1e6:.1f}M"
    if a >= 1e4:
        return f"${v / 1e3:.0f}k"
    if a >= 1e3:
        return f"${v / 1e3:.1f}k"
    return f"${v:,.0f}"


def pct(v: float | None, digits: int = 0) -> str:
    """A share as a percentage; a dash for a missing value."""
    return "–" if v is None or not np.isfinite(v) else f"{v * 100:.{digits}f}%"


def nice(value: Any) -> str:
    """A category code as a CSM reads it: ``mid_market`` -> "Mid-market"."""
    text = str(value)
    return LABELS.get(text, text.replace("_", " ")[:1].upper() + text.replace("_", " ")[1:])
