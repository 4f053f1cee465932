"""The report's two pages from the survival stage: the revenue forecast and the right-customer analysis.

``forecast.html``: expected ARR, GRR and NRR of the as-of book at 3 and 12 months with their 80% and 95%
intervals, for the portfolio, each segment, touch model and CSM; what drives the change (the expected ARR
lost to churn and contraction and gained by expansion, from the forecast's account-level draws); and how the
forecast did on past as-of dates against the naive forecast. ``customers.html``: retention curves (logo and
revenue) with their bands, the hazard-ratio table with 12-month retention per profile, and the findings in
words. Both pages are static (no script: the policy forbids any), like the portfolio page.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from churnml.contract.io import read_document, read_output
from churnml.contract.outputs import OUTPUTS
from churnml.errors import ChurnmlError
from churnml.report.charts import PALETTE, bridge_chart_svg, curves_chart_svg, interval_svg
from churnml.report.formats import money, nice, pct
from churnml.survival.profiles import MIN_ACCOUNTS

FORECAST_FILE = "forecast.html"
CUSTOMERS_FILE = "customers.html"
DIMENSIONS = {
    "segment": "Segment",
    "touch_model": "Touch model",
    "plan": "Plan",
    "industry": "Industry",
    "region": "Region",
    "time_to_first_value": "Time to first value",
    "signup_cohort": "Tenure (signup cohort)",
    "csm": "CSM",
}
_FORECAST_GROUPS = ("segment", "touch_model")  # the tables; CSMs are listed apart (many rows)
HR_SCALE = (0.25, 4.0)  # the forest plot's axis: hazard ratios beyond it are clipped


@dataclass
class SurvivalReport:
    """What the two pages read: the survival stage's forecast, backtest, metrics and profile tables."""

    forecast: pd.DataFrame  # the revenue_forecast rows of the as-of
    backtest: pd.DataFrame  # forecast_backtest.csv
    metrics: Mapping[str, Any]  # survival.json
    profiles: pd.DataFrame  # profiles.csv
    curves: pd.DataFrame  # profile_curves.csv


def read_survival_report(forecast: Path, metrics: Path, plots: Path) -> SurvivalReport:
    """The survival stage's outputs for the report (paths from ``cfg.paths``)."""
    files = OUTPUTS["survival_plots"].files

    def csv(name: str) -> pd.DataFrame:
        path = Path(plots) / name
        if not path.is_file():
            raise ChurnmlError(
                f"{path}: no such file (the survival stage's {name}); run `dvc repro survival`"
            )
        frame = pd.read_csv(path, keep_default_na=True, na_values=[""])
        missing = [c for c in files[name] if c not in frame.columns]
        if missing:
            raise ChurnmlError(f"{path}: lacks column(s) {', '.join(missing)}; rerun the survival stage")
        return frame

    return SurvivalReport(
        forecast=read_output(Path(forecast), "revenue_forecast"),
        backtest=csv("forecast_backtest.csv"),
        metrics=read_document(Path(metrics), "survival_metrics"),
        profiles=csv("profiles.csv"),
        curves=csv("profile_curves.csv"),
    )


def check_forecast_as_of(report: SurvivalReport, as_of: pd.Timestamp) -> None:
    """Refuse a forecast of another day than the report's (the pages would describe another book)."""
    days = pd.to_datetime(report.forecast["as_of"]).dt.normalize().unique()
    if len(days) != 1 or pd.Timestamp(days[0]) != pd.Timestamp(as_of).normalize():
        shown = ", ".join(str(pd.Timestamp(d).date()) for d in days[:3]) or "none"
        raise ChurnmlError(
            f"report: the revenue forecast is as of {shown}, the report as of {pd.Timestamp(as_of).date()}: "
            "rerun the survival stage"
        )


# ------------------------------------------------------------------------------------------------ forecast


def _points(v: float) -> str:
    return f"{v * 100:.2f} pts" if np.isfinite(v) else "–"


def _range(lo: float, hi: float, fmt=pct, digits: int = 1) -> str:
    if fmt is pct:
        return f"{pct(lo, digits)} to {pct(hi, digits)}"
    return f"{fmt(lo)} to {fmt(hi)}"


def _forecast_row(r: Mapping[str, Any], label: str, scale: tuple[float, float]) -> dict[str, Any]:
    start = float(r["arr_start"])
    return {
        "label": label,
        "accounts": f"{int(r['accounts']):,}",
        "arr_start": money(start),
        "arr": money(r["arr_mean"]),
        "arr80": _range(r["arr_p10"], r["arr_p90"], money),
        "grr": pct(r["grr_mean"], 1),
        "grr80": _range(r["grr_p10"], r["grr_p90"]),
        "grr95": _range(r["grr_p025"], r["grr_p975"]),
        "nrr": pct(r["nrr_mean"], 1),
        "nrr80": _range(r["nrr_p10"], r["nrr_p90"]),
        "nrr95": _range(r["nrr_p025"], r["nrr_p975"]),
        "nrr_chart": interval_svg(
            r["nrr_mean"],
            (r["nrr_p025"], r["nrr_p975"]),
            inner=(r["nrr_p10"], r["nrr_p90"]),
            scale=scale,
            reference=1.0,
            label=f"{label}: expected NRR {pct(r['nrr_mean'], 1)}, 80% interval "
            f"{_range(r['nrr_p10'], r['nrr_p90'])}, 95% interval {_range(r['nrr_p025'], r['nrr_p975'])}",
        ),
        "churn": money(r["churn_arr_mean"]),
        "churn_share": pct(r["churn_arr_mean"] / start, 1) if start else "–",
        "contraction": money(r["contraction_arr_mean"]),
        "contraction_share": pct(r["contraction_arr_mean"] / start, 1) if start else "–",
        "expansion": money(r["expansion_arr_mean"]),
        "expansion_share": pct(r["expansion_arr_mean"] / start, 1) if start else "–",
    }


def _scale(frame: pd.DataFrame, low: str, high: str) -> tuple[float, float]:
    lo, hi = float(frame[low].min()), float(frame[high].max())
    lo, hi = min(lo, 1.0), max(hi, 1.0)
    pad = 0.04 * max(hi - lo, 0.01)
    return lo - pad, hi + pad


def _backtest_view(backtest: pd.DataFrame, summary: Mapping[str, Any]) -> dict[str, Any]:
    """The backtest in words (point error against naive, interval coverage) and its portfolio rows."""
    horizons = []
    for h in sorted(backtest["horizon_months"].unique()) if len(backtest) else []:
        s = summary.get(f"{int(h)}m", {})
        rows = backtest[backtest["horizon_months"] == h]
        port = rows[rows["dimension"] == "portfolio"].sort_values("as_of")
        scale = _scale(
            pd.concat(
                [
                    port[["grr_p10", "grr_p90"]].set_axis(["lo", "hi"], axis=1),
                    port[["nrr_p10", "nrr_p90"]].set_axis(["lo", "hi"], axis=1),
                    port[["realised_grr", "realised_nrr"]].set_axis(["lo", "hi"], axis=1),
                    port[["naive_grr", "naive_nrr"]].set_axis(["lo", "hi"], axis=1),
                ]
            ),
            "lo",
            "hi",
        )
        table = []
        for r in port.to_dict("records"):
            row = {"as_of": str(r["as_of"])}
            for m in ("grr", "nrr"):
                inside = r[f"{m}_p10"] <= r[f"realised_{m}"] <= r[f"{m}_p90"]
                row[m] = {
                    "forecast": pct(r[f"{m}_mean"], 1),
                    "band": _range(r[f"{m}_p10"], r[f"{m}_p90"]),
                    "realised": pct(r[f"realised_{m}"], 1),
                    "naive": pct(r[f"naive_{m}"], 1),
                    "inside": bool(inside),
                    "chart": interval_svg(
                        r[f"{m}_mean"],
                        (r[f"{m}_p10"], r[f"{m}_p90"]),
                        scale=scale,
                        mark=r[f"realised_{m}"],
                        label=f"{m.upper()} as of {r['as_of']}: forecast {pct(r[f'{m}_mean'], 1)}, 80% interval "
                        f"{_range(r[f'{m}_p10'], r[f'{m}_p90'])}, realised {pct(r[f'realised_{m}'], 1)}",
                    ),
                }
            table.append(row)
        groups = rows[rows["dimension"] != "portfolio"]
        missed = [
            f"{nice(g['group'])} as of {g['as_of']} ({m.upper()} {pct(g[f'realised_{m}'], 1)} outside "
            f"{_range(g[f'{m}_p10'], g[f'{m}_p90'])})"
            for g in groups.to_dict("records")
            for m in ("grr", "nrr")
            if not (g[f"{m}_p10"] <= g[f"realised_{m}"] <= g[f"{m}_p90"])
        ]
        horizons.append(
            {
                "months": int(h),
                "rows": int(s.get("rows", len(rows))),
                "as_of_count": len(port),
                "grr_error": _points(s.get("grr_abs_error", np.nan)),
                "grr_error_naive": _points(s.get("grr_abs_error_naive", np.nan)),
                "nrr_error": _points(s.get("nrr_abs_error", np.nan)),
                "nrr_error_naive": _points(s.get("nrr_abs_error_naive", np.nan)),
                "beats": s.get("grr_abs_error", np.inf) < s.get("grr_abs_error_naive", -np.inf)
                and s.get("nrr_abs_error", np.inf) < s.get("nrr_abs_error_naive", -np.inf),
                "coverage": {
                    f"{m}_{c}": pct(s.get(f"{m}_coverage_{c}", np.nan))
                    for m in ("grr", "nrr")
                    for c in ("80", "95", "80_portfolio", "95_portfolio")
                },
                "table": table,
                "missed": missed,
            }
        )
    return {"as_of": list(summary.get("as_of", [])), "horizons": horizons, "skipped": summary.get("skipped")}


def forecast_view(report: SurvivalReport) -> dict[str, Any]:
    """The forecast page's values."""
    fc = report.forecast
    if fc.empty:
        raise ChurnmlError("report: the revenue forecast is empty")
    horizons = []
    for h in sorted(fc["horizon_months"].astype(int).unique()):
        rows = fc[fc["horizon_months"].astype(int) == h]
        book = rows[rows["dimension"] == "portfolio"].iloc[0]
        start = float(book["arr_start"])
        scale = _scale(rows, "nrr_p025", "nrr_p975")
        tables = [
            {
                "title": DIMENSIONS.get(dim, nice(dim)),
                "rows": [
                    _forecast_row(r, nice(r["group"]), scale)
                    for r in rows[rows["dimension"] == dim]
                    .sort_values("arr_start", ascending=False)
                    .to_dict("records")
                ],
            }
            for dim in _FORECAST_GROUPS
            if (rows["dimension"] == dim).any()
        ]
        csm = rows[rows["dimension"] == "csm"].sort_values("arr_start", ascending=False)
        horizons.append(
            {
                "months": int(h),
                "book": _forecast_row(book, "Whole book", scale),
                "cards": [
                    {
                        "title": f"ARR in {h} months",
                        "value": money(book["arr_mean"]),
                        "i80": _range(book["arr_p10"], book["arr_p90"], money),
                        "i95": _range(book["arr_p025"], book["arr_p975"], money),
                        "help": "Expected ARR of today's accounts (no new logos), with the ranges that hold the "
                        "outcome 8 and 19 times in 20.",
                    },
                    {
                        "title": f"Gross revenue retention, {h} months",
                        "value": pct(book["grr_mean"], 1),
                        "i80": _range(book["grr_p10"], book["grr_p90"]),
                        "i95": _range(book["grr_p025"], book["grr_p975"]),
                        "help": "Share of today's ARR still there, churn and contraction counted, expansion not.",
                    },
                    {
                        "title": f"Net revenue retention, {h} months",
                        "value": pct(book["nrr_mean"], 1),
                        "i80": _range(book["nrr_p10"], book["nrr_p90"]),
                        "i95": _range(book["nrr_p025"], book["nrr_p975"]),
                        "help": "Today's accounts' ARR in the future over their ARR today: churn, contraction "
                        "and expansion counted, new customers not.",
                    },
                ],
                "bridge": bridge_chart_svg(
                    [
                        ("ARR today", start),
                        ("Churn", -float(book["churn_arr_mean"])),
                        ("Contraction", -float(book["contraction_arr_mean"])),
                        ("Expansion", float(book["expansion_arr_mean"])),
                        (f"In {h} months", float(book["arr_mean"])),
                    ],
                    name=f"Expected ARR bridge over {h} months",
                    fmt=money,
                ),
                "tables": tables,
                "csm": [_forecast_row(r, str(r["group"]), scale) for r in csm.to_dict("records")],
            }
        )
    return {
        "as_of": pd.Timestamp(fc["as_of"].iloc[0]).date().isoformat(),
        "accounts": f"{int(fc.loc[fc['dimension'] == 'portfolio', 'accounts'].iloc[0]):,}",
        "arr": money(float(fc.loc[fc["dimension"] == "portfolio", "arr_start"].iloc[0])),
        "horizons": horizons,
        "backtest": _backtest_view(report.backtest, report.metrics.get("forecast_backtest", {})),
    }


# ------------------------------------------------------------------------------------------ right customers


def _hr_text(r: Mapping[str, Any]) -> str:
    if bool(r["reference"]):
        return "1 (reference)"
    if not np.isfinite(r["hazard_ratio"]):
        return "no churn" if int(r["events"]) == 0 else "–"
    return f"{r['hazard_ratio']:.2f}"


def customers_view(report: SurvivalReport) -> dict[str, Any]:
    """The right-customer page's values."""
    prof, curves, m = report.profiles, report.curves, report.metrics
    months = int(curves["month"].max()) if len(curves) else int(m.get("follow_up_months", 0))
    order = [d for d in DIMENSIONS if d in set(prof["dimension"])]
    dims = []
    for dim in order:
        rows = prof[prof["dimension"] == dim].sort_values("accounts", ascending=False, kind="stable")
        colours = {p: PALETTE[i % len(PALETTE)] for i, p in enumerate(rows["profile"])}
        table = []
        for r in rows.to_dict("records"):
            finite = np.isfinite(r["hazard_ratio"]) and not bool(r["reference"])
            table.append(
                {
                    "profile": nice(r["profile"]),
                    "colour": colours[r["profile"]],
                    "accounts": f"{int(r['accounts']):,}",
                    "few": int(r["accounts"]) < MIN_ACCOUNTS,
                    "events": f"{int(r['events']):,}",
                    "logo": pct(r["logo_retention"], 1),
                    "logo95": _range(r["logo_retention_low"], r["logo_retention_high"]),
                    "grr": pct(r["grr"], 1),
                    "nrr": pct(r["nrr"], 1),
                    "nrr95": _range(r["nrr_low"], r["nrr_high"]),
                    "hr": _hr_text(r),
                    "hr95": f"{r['hazard_ratio_low']:.2f} to {r['hazard_ratio_high']:.2f}" if finite else "",
                    "p": (f"{r['p_value']:.3f}" if r["p_value"] >= 0.001 else "< 0.001") if finite else "",
                    "reference": bool(r["reference"]),
                    "forest": interval_svg(
                        r["hazard_ratio"],
                        (r["hazard_ratio_low"], r["hazard_ratio_high"]),
                        scale=HR_SCALE,
                        log=True,
                        reference=1.0,
                        label=f"{nice(r['profile'])}: hazard ratio {r['hazard_ratio']:.2f}, 95% interval "
                        f"{r['hazard_ratio_low']:.2f} to {r['hazard_ratio_high']:.2f}",
                    )
                    if finite
                    else "",
                }
            )
        reference = rows.loc[rows["reference"].astype(bool), "profile"]
        big = set(rows.loc[rows["accounts"] >= MIN_ACCOUNTS, "profile"])
        lines = {
            key: [
                {
                    "label": nice(p),
                    "colour": colours[p],
                    "x": g["month"].to_numpy(),
                    "y": g[key].to_numpy(),
                    # a band for the profiles a claim may rest on: a handful of accounts' band would cover
                    # the chart and hide the others
                    "low": g[f"{key}_low"].to_numpy() if p in big else None,
                    "high": g[f"{key}_high"].to_numpy() if p in big else None,
                }
                for p in rows["profile"]
                for g in [
                    curves[(curves["dimension"] == dim) & (curves["profile"] == p)].sort_values("month")
                ]
                if len(g)
            ]
            for key in ("logo_retention", "nrr")
        }
        dims.append(
            {
                "key": dim,
                "title": DIMENSIONS.get(dim, nice(dim)),
                "reference": nice(reference.iloc[0]) if len(reference) else None,
                "rows": table,
                "logo_chart": curves_chart_svg(
                    lines["logo_retention"], name="logo retention", fmt=pct, x_label="months after the cutoff"
                ),
                "nrr_chart": curves_chart_svg(
                    lines["nrr"], name="net revenue retention", fmt=pct, x_label="months after the cutoff"
                ),
            }
        )
    test = list(m.get("test_cutoffs", []))
    return {
        "months": months,
        "cutoffs": ", ".join(test),
        "accounts": f"{int(prof.loc[prof['dimension'] == order[0], 'accounts'].sum()):,}" if order else "0",
        "findings": list(m.get("findings", [])),
        "min_accounts": MIN_ACCOUNTS,
        "dimensions": dims,
        "hr_scale": f"{HR_SCALE[0]:g} to {HR_SCALE[1]:g}",
    }


def render_pages(env: Any, report: SurvivalReport, out_dir: Path, common: Mapping[str, Any]) -> list[Path]:
    """Write ``forecast.html`` and ``customers.html`` with the portfolio page's look (``common``: its
    header values and styles)."""
    written = []
    for name, template, view, title in (
        (FORECAST_FILE, "forecast.html.j2", forecast_view(report), "Revenue forecast"),
        (CUSTOMERS_FILE, "customers.html.j2", customers_view(report), "The right customer"),
    ):
        html = env.get_template(template).render(page=view, page_title=title, current=name, **common)
        path = Path(out_dir) / name
        tmp = path.with_name(f".{path.name}.tmp")
        tmp.write_text(html, encoding="utf-8")
        tmp.replace(path)
        written.append(path)
    return written


__all__ = [
    "CUSTOMERS_FILE",
    "FORECAST_FILE",
    "SurvivalReport",
    "check_forecast_as_of",
    "customers_view",
    "forecast_view",
    "read_survival_report",
    "render_pages",
]
