"""The report's charts as inline SVG strings: sparklines, KPI lines against their history, performance decay,
retention curves with bands, the forecast's bridge and forest-plot intervals."""

from __future__ import annotations

import math
from collections.abc import Callable, Mapping, Sequence

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


# the profiles' line colours: dark enough for a 3:1 contrast with white (WCAG's graphics rule)
PALETTE = (
    "#1d4ed8", "#b42318", "#067647", "#8a5a00", "#6d28d9", "#0e7490", "#be185d", "#475467", "#c2410c", "#4d7c0f",
)  # fmt: skip


def curves_chart_svg(
    lines: Sequence[Mapping[str, object]],
    *,
    name: str,
    fmt: Callable[[float], str],
    x_label: str = "months",
    width: int = 520,
    height: int = 220,
) -> Markup:
    """Curves over months with their bands as inline SVG (one colour per line, the band shaded behind it).

    Args:
        lines: each with ``label``, ``colour``, ``x`` (months), ``y``, ``low`` and ``high`` (the band; None
            draws the line alone).
        name: what is drawn (the chart's accessible label and every tooltip's first words).
        fmt: how a value reads (axis and tooltips).
        x_label: the x axis' title.
    """
    lines = [ln for ln in lines if np.isfinite(np.asarray(ln["y"], dtype=float)).any()]
    if not lines:
        return Markup('<p class="muted">No curve to draw.</p>')
    pool = np.concatenate(
        [
            np.asarray(ln[k], dtype=float)
            for ln in lines
            for k in ("y", "low", "high")
            if ln.get(k) is not None
        ]
        + [np.array([1.0])]
    )
    pool = pool[np.isfinite(pool)]
    lo, hi = float(pool.min()), float(pool.max())
    span = max(hi - lo, 0.02)
    lo, hi = lo - 0.06 * span, hi + 0.06 * span
    xs_all = np.concatenate([np.asarray(ln["x"], dtype=float) for ln in lines])
    x_lo, x_hi = float(xs_all.min()), float(xs_all.max())
    left, right, top, bottom = 50.0, 12.0, 10.0, 34.0
    plot_w, plot_h = width - left - right, height - top - bottom

    def x(m: float) -> float:
        return left + (m - x_lo) / max(x_hi - x_lo, 1e-9) * plot_w

    def y(v: float) -> float:
        return top + (hi - v) / (hi - lo) * plot_h

    parts = _frame(name, width, height, int(left), int(right), lo, hi, y, fmt)
    for m in np.unique(xs_all):
        if m in (x_lo, x_hi) or m % 3 == 0:
            parts.append(
                f'<text class="axis" x="{_f(x(m))}" y="{height - 18}" text-anchor="middle">{m:g}</text>'
            )
    parts.append(
        f'<text class="axis" x="{_f(left + plot_w / 2)}" y="{height - 4}" text-anchor="middle">'
        f"{escape(x_label)}</text>"
    )
    for ln in lines:
        if ln.get("low") is None or ln.get("high") is None:
            continue  # a line without its band
        mx, my = np.asarray(ln["x"], dtype=float), np.asarray(ln["y"], dtype=float)
        ml, mh = np.asarray(ln["low"], dtype=float), np.asarray(ln["high"], dtype=float)
        ok = np.isfinite(my) & np.isfinite(ml) & np.isfinite(mh)
        upper = [f"{_f(x(a))},{_f(y(b))}" for a, b in zip(mx[ok], mh[ok], strict=True)]
        lower = [f"{_f(x(a))},{_f(y(b))}" for a, b in zip(mx[ok][::-1], ml[ok][::-1], strict=True)]
        parts.append(f'<polygon class="band" fill="{ln["colour"]}" points="{" ".join(upper + lower)}"/>')
    for ln in lines:
        mx, my = np.asarray(ln["x"], dtype=float), np.asarray(ln["y"], dtype=float)
        banded = ln.get("low") is not None and ln.get("high") is not None
        ml = np.asarray(ln["low"] if banded else my, dtype=float)
        mh = np.asarray(ln["high"] if banded else my, dtype=float)
        ok = np.isfinite(my)
        pts = " ".join(f"{_f(x(a))},{_f(y(b))}" for a, b in zip(mx[ok], my[ok], strict=True))
        parts.append(f'<polyline class="curve" stroke="{ln["colour"]}" points="{pts}"/>')
        for a, b, bl, bh in zip(mx[ok], my[ok], ml[ok], mh[ok], strict=True):
            band = f" (95% band {fmt(bl)} to {fmt(bh)})" if banded else ""
            tip = f"{ln['label']}, month {a:g}: {name} {fmt(b)}{band}"
            parts.append(
                f'<circle class="cpt" fill="{ln["colour"]}" cx="{_f(x(a))}" cy="{_f(y(b))}" r="2.2">'
                f"<title>{escape(tip)}</title></circle>"
            )
    parts.append("</svg>")
    return Markup("".join(parts))


def bridge_chart_svg(
    steps: Sequence[tuple[str, float]],
    *,
    name: str,
    fmt: Callable[[float], str],
    width: int = 520,
    height: int = 210,
) -> Markup:
    """A waterfall from a starting total through signed changes to the end total, as inline SVG.

    Args:
        steps: (label, value): the first is the start, the last the end (both totals), the ones between are
            signed changes (negative: a loss, drawn red; positive: a gain, drawn green).
        name: what is drawn.
        fmt: how an amount reads.

    The axis does not start at zero (the changes are a few percent of the total): its labelled grid says so.
    """
    if len(steps) < 2:
        return Markup('<p class="muted">Nothing to draw.</p>')
    levels = [steps[0][1]]
    for _, v in steps[1:-1]:
        levels.append(levels[-1] + v)
    levels.append(steps[-1][1])
    lo, hi = min(levels), max(levels)
    span = max(hi - lo, abs(hi) * 0.01, 1e-9)
    lo, hi = lo - 0.35 * span, hi + 0.15 * span
    left, right, top, bottom = 60.0, 12.0, 18.0, 26.0
    plot_w, plot_h = width - left - right, height - top - bottom
    slot = plot_w / len(steps)

    def y(v: float) -> float:
        return top + (hi - v) / (hi - lo) * plot_h

    parts = _frame(name, width, height, int(left), int(right), lo, hi, y, fmt)
    before = steps[0][1]
    for i, (label, value) in enumerate(steps):
        total = i in (0, len(steps) - 1)
        a, b = (lo, value) if total else (before, before + value)
        cls = "total" if total else ("loss" if value < 0 else "gain")
        x0 = left + i * slot + slot * 0.18
        top_y, bot_y = y(max(a, b)), y(min(a, b))
        shown = fmt(value) if total else ("−" if value < 0 else "+") + fmt(abs(value))
        tip = f"{label}: {shown}"
        parts.append(
            f'<rect class="{cls}" x="{_f(x0)}" y="{_f(top_y)}" width="{_f(slot * 0.64)}" '
            f'height="{_f(max(bot_y - top_y, 1.0))}"><title>{escape(tip)}</title></rect>'
            f'<text class="axis" x="{_f(x0 + slot * 0.32)}" y="{_f(top_y - 4)}" text-anchor="middle">'
            f"{escape(shown)}</text>"
            f'<text class="axis" x="{_f(x0 + slot * 0.32)}" y="{height - 8}" text-anchor="middle">'
            f"{escape(label)}</text>"
        )
        if not total:
            before += value
    parts.append("</svg>")
    return Markup("".join(parts))


def interval_svg(
    point: float,
    outer: tuple[float, float],
    *,
    scale: tuple[float, float],
    label: str,
    inner: tuple[float, float] | None = None,
    log: bool = False,
    reference: float | None = None,
    mark: float | None = None,
    width: int = 150,
    height: int = 18,
) -> Markup:
    """One estimate with its interval(s) on a shared axis: a forest-plot row, inline in a table cell.

    Args:
        point: the estimate (a dot).
        outer: the wide interval (a thin line); ``inner`` the narrow one (a thick line), if any.
        scale: the axis range shared by the rows of one table; values beyond it are clipped (arrow heads).
        label: the tooltip.
        log: a log axis (hazard ratios).
        reference: a vertical line (1 for a ratio).
        mark: a second value to show as a diamond (the realised outcome of a forecast).
    """
    if not np.isfinite(point):
        return Markup("")
    tr = np.log if log else (lambda v: v)
    a, b = float(tr(scale[0])), float(tr(scale[1]))
    pad = 5.0

    def x(v: float) -> float:
        v = float(tr(min(max(v, scale[0]), scale[1]))) if np.isfinite(v) else (b if v > 0 else a)
        return pad + (v - a) / max(b - a, 1e-12) * (width - 2 * pad)

    mid = height / 2
    parts = [
        f'<svg class="interval" width="{width}" height="{height}" viewBox="0 0 {width} {height}" role="img" '
        f'aria-label="{escape(label)}"><title>{escape(label)}</title>'
    ]
    if reference is not None:
        parts.append(
            f'<line class="ref" x1="{_f(x(reference))}" x2="{_f(x(reference))}" y1="1" y2="{height - 1}"/>'
        )
    parts.append(
        f'<line class="outer" x1="{_f(x(outer[0]))}" x2="{_f(x(outer[1]))}" y1="{_f(mid)}" y2="{_f(mid)}"/>'
    )
    if inner is not None:
        parts.append(
            f'<line class="inner" x1="{_f(x(inner[0]))}" x2="{_f(x(inner[1]))}" y1="{_f(mid)}" y2="{_f(mid)}"/>'
        )
    parts.append(f'<circle class="est" cx="{_f(x(point))}" cy="{_f(mid)}" r="3.5"/>')
    if mark is not None and np.isfinite(mark):
        mx = x(mark)
        parts.append(
            f'<polygon class="mark" points="{_f(mx)},{_f(mid - 5)} {_f(mx + 5)},{_f(mid)} {_f(mx)},{_f(mid + 5)} '
            f'{_f(mx - 5)},{_f(mid)}"/>'
        )
    parts.append("</svg>")
    return Markup("".join(parts))
