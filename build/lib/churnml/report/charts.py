"""The report's charts as inline SVG strings: sparklines, KPI lines against their history, performance decay."""

from __future__ import annotations

import math
from collections.abc import Callable, Sequence

import numpy as np
import pandas as pd
from markupsafe import Markup, escape

# ------------------------------------------------------------------------------------------------ charts


def _f(v: float) -> str:
    return f"{v:.1f}"


def _frame(
    label: str,
    width: int,
    height: int,
    left: int,
    right: int,
    lo: float,
    hi: float,
    y: Callable[[float], float],
    fmt: Callable[[float], str],
) -> list[str]:
    """The opening ``<svg>`` of a chart and its four horizontal grid lines, labelled by ``fmt``."""
    parts = [
        f'<svg class="chart" width="100%" viewBox="0 0 {width} {height}" role="img" aria-label="{escape(label)}">'
    ]
    for t in np.linspace(lo + 0.1 * (hi - lo), hi - 0.1 * (hi - lo), 4):
        parts.append(
            f'<line class="grid" x1="{left}" x2="{width - right}" y1="{_f(y(t))}" y2="{_f(y(t))}"/>'
            f'<text class="axis" x="{left - 6}" y="{_f(y(t) + 3.5)}" text-anchor="end">{escape(fmt(t))}</text>'
        )
    return parts


def sparkline_svg(
    values: Sequence[float], *, width: int = 132, height: int = 32, what: str = "Active users"
) -> Markup:
    """A small inline SVG line of a weekly series (oldest first), coloured by its recent direction.

    The tooltip says what is drawn: the first and last week and the change of the last 4 weeks against
    the 4 before.
    """
    v = np.asarray(values, dtype=float)
    if len(v) == 0 or not np.isfinite(v).any():
        return Markup('<span class="muted">no usage data</span>')
    v = np.nan_to_num(v, nan=0.0)
    pad = 3.0
    top = max(float(v.max()), 1e-9)
    n = len(v)
    xs = [pad + i * (width - 2 * pad) / max(n - 1, 1) for i in range(n)]
    ys = [height - pad - (y / top) * (height - 2 * pad) for y in v]
    recent, prior = v[-4:].mean(), v[-8:-4].mean() if n >= 8 else v[: max(n - 4, 1)].mean()
    change = (recent - prior) / prior if prior > 0 else (0.0 if recent == 0 else 1.0)
    cls = "down" if change <= -0.2 else ("up" if change >= 0.1 else "flat")
    line = " ".join(f"{_f(x)},{_f(y)}" for x, y in zip(xs, ys, strict=True))
    area = f"{_f(xs[0])},{height - pad} {line} {_f(xs[-1])},{height - pad}"
    tip = (
        f"{what}, weekly average of daily counts over the last {n} weeks: {v[0]:.1f} in the first week, "
        f"{v[-1]:.1f} last week; last 4 weeks {change * 100:+.0f}% vs the 4 before"
    )
    return Markup(
        f'<svg class="spark {cls}" width="{width}" height="{height}" viewBox="0 0 {width} {height}" role="img" '
        f'aria-label="{escape(tip)}"><title>{escape(tip)}</title>'
        f'<polygon class="area" points="{area}"/><polyline class="line" points="{line}"/>'
        f'<circle class="dot" cx="{_f(xs[-1])}" cy="{_f(ys[-1])}" r="2.5"/></svg>'
    )


def line_chart_svg(
    months: Sequence[pd.Timestamp],
    values: Sequence[float],
    *,
    fmt: Callable[[float], str],
    name: str,
    median: Sequence[float] | None = None,
    abnormal: Sequence[bool] | None = None,
    final: Sequence[bool] | None = None,
    width: int = 520,
    height: int = 180,
) -> Markup:
    """A monthly KPI history as inline SVG: the series, its trailing median (dashed), abnormal months in red.

    Provisional (not final) months are drawn hollow. Every point has a tooltip with its value.
    """
    v = np.asarray(values, dtype=float)
    n = len(v)
    if n == 0 or not np.isfinite(v).any():
        return Markup('<p class="muted">No history yet.</p>')
    med = np.asarray(median, dtype=float) if median is not None else np.full(n, np.nan)
    bad = np.asarray(abnormal, dtype=bool) if abnormal is not None else np.zeros(n, bool)
    fin = np.asarray(final, dtype=bool) if final is not None else np.ones(n, bool)
    left, right, top, bottom = 56.0, 12.0, 12.0, 26.0
    pool = np.concatenate([v[np.isfinite(v)], med[np.isfinite(med)]])
    lo, hi = float(pool.min()), float(pool.max())
    span = hi - lo if hi > lo else max(abs(hi), 1e-3) * 0.2
    lo, hi = lo - 0.12 * span, hi + 0.12 * span
    plot_w, plot_h = width - left - right, height - top - bottom

    def x(i: int) -> float:
        return left + (i * plot_w / (n - 1) if n > 1 else plot_w / 2)

    def y(val: float) -> float:
        return top + (hi - val) / (hi - lo) * plot_h

    parts = _frame(f"{name}, monthly history", width, height, left, right, lo, hi, y, fmt)
    step = max(1, math.ceil(n / 6))
    for i in range(0, n, step):
        label = pd.Timestamp(months[i]).strftime("%b %y")
        parts.append(
            f'<text class="axis" x="{_f(x(i))}" y="{height - 8}" text-anchor="middle">{escape(label)}</text>'
        )
    med_pts = [(x(i), y(m)) for i, m in enumerate(med) if np.isfinite(m)]
    if len(med_pts) > 1:
        pts = " ".join(f"{_f(a)},{_f(b)}" for a, b in med_pts)
        parts.append(
            f'<polyline class="median" points="{pts}"><title>Trailing 12-month median</title></polyline>'
        )
    line = " ".join(f"{_f(x(i))},{_f(y(val))}" for i, val in enumerate(v) if np.isfinite(val))
    parts.append(f'<polyline class="series" points="{line}"/>')
    for i, val in enumerate(v):
        if not np.isfinite(val):
            continue
        month = pd.Timestamp(months[i]).strftime("%B %Y")
        tip = f"{month}: {name} {fmt(val)}"
        if np.isfinite(med[i]):
            tip += f" (trailing 12-month median {fmt(med[i])})"
        if bad[i]:
            tip += ", abnormal"
        if not fin[i]:
            tip += ", provisional: renewals may still arrive"
        cls = "pt bad" if bad[i] else ("pt prov" if not fin[i] else "pt")
        r = 4.5 if bad[i] else 2.8
        parts.append(
            f'<circle class="{cls}" cx="{_f(x(i))}" cy="{_f(y(val))}" r="{r}"><title>{escape(tip)}</title></circle>'
        )
    parts.append("</svg>")
    return Markup("".join(parts))


def decay_chart_svg(
    months: Sequence[float],
    realised: Sequence[float],
    test: Sequence[float],
    as_of: Sequence[str],
    *,
    name: str,
    width: int = 520,
    height: int = 190,
) -> Markup:
    """Realised ROC-AUC by months since training (one point per matured as-of) against the test ROC-AUC."""
    mx = np.asarray(months, dtype=float)
    v = np.asarray(realised, dtype=float)
    t = np.asarray(test, dtype=float)
    keep = np.isfinite(mx) & np.isfinite(v)
    if not keep.any():
        return Markup('<p class="muted">No matured scores yet.</p>')
    left, right, top, bottom = 46.0, 12.0, 12.0, 30.0
    pool = np.concatenate([v[keep], t[np.isfinite(t)]])
    lo, hi = float(pool.min()), float(pool.max())
    span = max(hi - lo, 0.02)
    lo, hi = lo - 0.15 * span, hi + 0.15 * span
    x_lo, x_hi = float(mx[keep].min()), float(mx[keep].max())
    x_span = x_hi - x_lo if x_hi > x_lo else 1.0
    plot_w, plot_h = width - left - right, height - top - bottom

    def x(m: float) -> float:
        return left + ((m - x_lo) / x_span * plot_w if x_hi > x_lo else plot_w / 2)

    def y(val: float) -> float:
        return top + (hi - val) / (hi - lo) * plot_h

    parts = _frame(
        f"{name}: realised ROC-AUC by months since training",
        width,
        height,
        left,
        right,
        lo,
        hi,
        y,
        lambda tick: f"{tick:.2f}",
    )
    for m in sorted({float(m) for m in mx[keep]}):
        parts.append(f'<text class="axis" x="{_f(x(m))}" y="{height - 14}" text-anchor="middle">{m:g}</text>')
    parts.append(
        f'<text class="axis" x="{_f(left + plot_w / 2)}" y="{height - 2}" text-anchor="middle">'
        "months since training</text>"
    )
    tests = [(x(m), y(tv)) for m, tv, k in zip(mx, t, keep, strict=True) if k and np.isfinite(tv)]
    if tests:
        pts = " ".join(f"{_f(a)},{_f(b)}" for a, b in tests)
        parts.append(
            f'<polyline class="median" points="{pts}"><title>ROC-AUC on the test period</title></polyline>'
        )
    order = np.argsort(mx[keep], kind="stable")
    xs, vs, days = mx[keep][order], v[keep][order], np.asarray(as_of, dtype=object)[keep][order]
    parts.append(
        '<polyline class="series" points="'
        + " ".join(f"{_f(x(a))},{_f(y(b))}" for a, b in zip(xs, vs, strict=True))
        + '"/>'
    )
    for m, val, day in zip(xs, vs, days, strict=True):
        tip = f"scored {day}, {m:g} months after training: realised ROC-AUC {val:.3f}"
        parts.append(
            f'<circle class="pt" cx="{_f(x(m))}" cy="{_f(y(val))}" r="2.8"><title>{escape(tip)}</title></circle>'
        )
    parts.append("</svg>")
    return Markup("".join(parts))
