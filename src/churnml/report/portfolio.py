"""The static portfolio report for CSMs (reports/index.html): accounts, reasons, KPIs against their history;
with the survival stage's outputs, two more pages beside it (:mod:`churnml.report.survival_pages`).

The page is one self-contained HTML file: inline CSS, a small vanilla script (filters and sorting) allowed by
a Content-Security-Policy hash, and charts as inline SVG. Nothing is loaded from the network (the
policy forbids it), and every value coming from the data is escaped by Jinja2's autoescaping.

The KPIs and their history come from :mod:`churnml.report.kpis`, the charts from :mod:`churnml.report.charts`.
"""

from __future__ import annotations

import base64
import datetime as dt
import hashlib
import json
import math
from collections.abc import Mapping
from importlib import resources
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
from markupsafe import Markup

from churnml.config import TiersConfig
from churnml.errors import ChurnmlError
from churnml.explain.reasons import PERCENT, point_label
from churnml.report.charts import decay_chart_svg, line_chart_svg
from churnml.report.formats import money as _money
from churnml.report.formats import nice as _nice
from churnml.report.formats import pct as _pct
from churnml.report.kpis import KPI_COLUMNS, flag_abnormal
from churnml.report.survival_pages import (
    CUSTOMERS_FILE,
    FORECAST_FILE,
    SurvivalReport,
    check_forecast_as_of,
    render_pages,
)
from churnml.scoring.tiers import TierDefinition

TIER_COLOURS = {"critical": "#b42318", "high": "#c4320a", "medium": "#8a5a00", "low": "#067647"}
REPORT_FILE = "index.html"


# ------------------------------------------------------------------------------------------ formatting


def _pts(v: float) -> str:
    return f"{v * 100:+.1f} pts"


STATUS_LABELS = {
    "ok": ("Performing as at training", "ok"),
    "warn": ("Watch", "warn"),
    "retrain": ("Retrain recommended", "bad"),
    "awaiting_labels": ("Awaiting outcomes", "muted"),
    "insufficient_labels": ("Too few outcomes yet", "muted"),
}


def _metric(v: Any, digits: int = 3) -> str:
    return f"{v:.{digits}f}" if isinstance(v, int | float) and math.isfinite(v) else "–"


def _performance_view(section: Mapping[str, Any]) -> dict[str, Any]:
    """The monitor's report section (:func:`churnml.scoring.monitor.monitor_section`) as template values."""
    targets = []
    names = sorted(set(section.get("advice", {})) | set(section.get("latest", {})))
    for target in names:
        advice = section.get("advice", {}).get(target, {})
        label, cls = STATUS_LABELS.get(str(advice.get("status")), (str(advice.get("status") or "–"), "muted"))
        decay = section.get("decay", {}).get(target)
        latest = section.get("latest", {}).get(target)
        tiers = section.get("by_touch_tier", {}).get(target, [])

        def row(r: Mapping[str, Any], first: str) -> dict[str, str]:
            return {
                "first": first,
                "n": f"{int(r['n']):,}" if r.get("n") is not None else "–",
                "pos": f"{int(r['n_positive']):,}" if r.get("n_positive") is not None else "–",
                "auc": _metric(r.get("roc_auc")),
                "test_auc": _metric(r.get("test_roc_auc")),
                "pr_auc": _metric(r.get("pr_auc")),
                "ece": _metric(r.get("ece")),
                "lift": _metric(r.get("lift_at_k"), 2),
                "arr": _pct(r["arr_captured"]) if isinstance(r.get("arr_captured"), int | float) else "–",
                "psi": _metric(r.get("psi_score")),
            }

        targets.append(
            {
                "title": "Churn model"
                if target == "churn"
                else "Expansion model"
                if target == "expansion"
                else target,
                "version": advice.get("model_version") or (latest or {}).get("model_version") or "",
                "status": label,
                "status_class": cls,
                # the monitor's headline is the bare status when there is no realised ROC-AUC to quote
                "headline": ""
                if advice.get("headline") == advice.get("status")
                else advice.get("headline") or "",
                "reasons": list(advice.get("reasons") or []),
                "chart": decay_chart_svg(
                    decay["months_since_training"],
                    decay["roc_auc"],
                    decay["test_roc_auc"],
                    decay["as_of"],
                    name=target,
                )
                if decay
                else Markup('<p class="muted">No matured scores yet.</p>'),
                "latest": row(latest, str(latest["as_of"])) if latest else None,
                "tiers": [row(r, _nice(r["touch_model"])) for r in tiers],
            }
        )
    return {
        "retrain": bool(section.get("retrain_recommended")),
        "awaiting": int(section.get("awaiting") or 0),
        "note": str(section.get("note") or ""),
        "targets": targets,
    }


# ------------------------------------------------------------------------------------------------ report


def _tier_of(p: float, thresholds: dict[str, float]) -> str:
    for tier, cut in sorted(thresholds.items(), key=lambda kv: -kv[1]):
        if p >= cut:
            return tier
    return min(thresholds, key=thresholds.get)


def _accounts_frame(
    scores: pd.DataFrame, accounts: pd.DataFrame | None, features: pd.DataFrame | None, tiers: TiersConfig
) -> pd.DataFrame:
    need = ["account_id", "churn_probability", "arr", "segment", "touch_model"]
    missing = [c for c in need if c not in scores.columns]
    if missing:
        raise ChurnmlError(f"build_report: scores lack column(s) {', '.join(missing)}")
    df = scores.copy()
    df["account_id"] = df["account_id"].astype("str")
    if df["account_id"].duplicated().any():
        raise ChurnmlError("build_report: scores hold more than one row per account (pass one as-of date)")
    if accounts is not None:
        extra = [c for c in ("account_name", "csm_id") if c in accounts.columns and c not in df.columns]
        if extra:
            df = df.merge(
                accounts[["account_id", *extra]].astype({"account_id": "str"}), on="account_id", how="left"
            )
    wanted = {"contract_days_to_renewal": "days_to_renewal", "contract_billing_period": "billing_period"}
    take = [f for f, c in wanted.items() if c not in df.columns and features is not None and f in features]
    if take:
        feats = features[["account_id", "cutoff", *take]].astype({"account_id": "str"})
        if "as_of" in df.columns:
            feats = feats.assign(as_of=pd.to_datetime(feats["cutoff"]).astype("datetime64[us]"))
            df = df.assign(as_of=pd.to_datetime(df["as_of"]).astype("datetime64[us]")).merge(
                feats[["account_id", "as_of", *take]], on=["account_id", "as_of"], how="left"
            )
        else:
            latest = feats.sort_values("cutoff").drop_duplicates("account_id", keep="last")
            df = df.merge(latest[["account_id", *take]], on="account_id", how="left")
        df = df.rename(columns=wanted)
    for col, default in (
        ("account_name", None),
        ("csm_id", None),
        ("days_to_renewal", np.nan),
        ("billing_period", None),
        ("expansion_probability", np.nan),
    ):
        if col not in df.columns:
            df[col] = default
    for col in ("churn_probability", "expansion_probability", "arr", "days_to_renewal"):
        df[col] = pd.to_numeric(df[col], errors="coerce").astype(float)
    if "arr_at_risk" not in df.columns:
        df["arr_at_risk"] = df["arr"] * df["churn_probability"]
    if "risk_tier" not in df.columns:
        df["risk_tier"] = [_tier_of(p, tiers.thresholds) for p in df["churn_probability"]]
    if "recommended_play" not in df.columns:
        df["recommended_play"] = [
            tiers.plays.get(t, {}).get(m, "") for t, m in zip(df["risk_tier"], df["touch_model"], strict=True)
        ]
    return df.sort_values(["arr_at_risk", "arr"], ascending=False, kind="stable").reset_index(drop=True)


VERSION_COLUMNS = {"churn": "churn_model_version", "expansion": "expansion_model_version"}


def check_one_model(scores: pd.DataFrame, reasons: pd.DataFrame | None) -> dict[str, str]:
    """Refuse a page that would mix models: per target, one version across the scores and their reasons.

    Returns:
        The version of each target whose scores carry one (shown in the page's header).
    """
    versions: dict[str, str] = {}
    for target, column in VERSION_COLUMNS.items():
        if column not in scores.columns or not len(scores):
            continue
        found = sorted(set(scores[column].astype(str)))
        if len(found) > 1:
            raise ChurnmlError(f"report: the scores mix {target} model versions {', '.join(found)}")
        versions[target] = found[0]
        if reasons is None or "model_version" not in reasons.columns:
            continue
        explained = sorted(set(reasons.loc[reasons["target"] == target, "model_version"].astype(str)))
        if explained and explained != found:
            raise ChurnmlError(
                f"report: {target} probabilities come from model version {found[0]} but its reasons from "
                f"version {', '.join(explained)}; rerun explain and score with one model (`dvc repro`)"
            )
    return versions


_MODEL_NAMES = {"lightgbm": "LightGBM", "logistic": "logistic regression", "blend": "blend"}


def model_choice(selection: Mapping[str, Any] | None) -> str:
    """The chosen model and its margin in words, from ``model.info["selection"]`` (empty when unknown).

    "blend of LightGBM and logistic regression, ROC-AUC +0.0042 over LightGBM on the validation period".
    """
    if not selection or not selection.get("chosen"):
        return ""
    chosen = selection["chosen"]
    name = (
        "blend of LightGBM and logistic regression" if chosen == "blend" else _MODEL_NAMES.get(chosen, chosen)
    )
    lead, gain = selection.get("leader"), selection.get("leader_over_logistic") or {}
    if lead and lead != chosen and gain.get("difference") is not None:
        # served by the one-standard-error rule: the leader's edge was inside the noise of the rows that chose
        lead_name = "the blend" if lead == "blend" else _MODEL_NAMES.get(lead, lead)
        width = float(gain.get("rule_standard_errors") or 1.0)
        errors = "its standard error" if width == 1 else f"{width:g} standard errors"
        return (
            f"{name}: {lead_name} led by ROC-AUC {gain['difference']:.4f} on the "
            f"{selection.get('rows') or 'held-out rows'}, within {errors} "
            f"({gain['standard_error']:.4f}), so the simpler model is served"
        )
    scores = {k: v for k, v in (selection.get("roc_auc") or {}).items() if k != chosen and v == v}
    margin = selection.get("margin")
    if not scores or margin is None or margin != margin:
        return name
    runner_up = max(scores, key=lambda k: scores[k])
    return (
        f"{name}, ROC-AUC {margin:+.4f} over {_MODEL_NAMES.get(runner_up, runner_up)} "
        f"on the {selection.get('rows') or 'held-out rows'}"
    )


def _reasons_by_account(reasons: pd.DataFrame | None, scores: pd.DataFrame) -> dict[str, dict[str, list]]:
    """Per account: churn raising / lowering reasons, churn context and expansion signals, each [(text, points)]."""
    out: dict[str, dict[str, list]] = {}
    if reasons is not None and len(reasons):
        r = reasons.sort_values(["account_id", "target", "direction", "rank"])
        for (acct, target, direction), g in r.groupby(["account_id", "target", "direction"], sort=False):
            key = {
                "churn": {"raises": "up", "lowers": "down", "context": "ctx"},
                "expansion": {"raises": "exp", "lowers": "exp_down"},
            }.get(target, {}).get(direction)
            if key:
                out.setdefault(str(acct), {}).setdefault(key, []).extend(
                    zip(g["reason"].astype(str), g["probability_points"].astype(float), strict=True)
                )
        return out
    if "top_reasons" in scores.columns:  # the warehouse's JSON column
        for acct, text in zip(scores["account_id"].astype(str), scores["top_reasons"], strict=True):
            if isinstance(text, str) and text:
                for item in json.loads(text):
                    key = {"raises": "up", "context": "ctx"}.get(item.get("direction"), "down")
                    out.setdefault(acct, {}).setdefault(key, []).append(
                        # the JSON holds percentage points; point_label takes a probability
                        (str(item["reason"]), float(item["points"]) / PERCENT)
                    )
    return out


def _kpi_cards(kpis: pd.DataFrame) -> list[dict[str, Any]]:
    if kpis is None or kpis.empty:
        return []
    k = kpis if all(f"{c}_abnormal" in kpis for c in KPI_COLUMNS) else flag_abnormal(kpis)
    k = k.sort_values("month").reset_index(drop=True)
    finals = k[k["final"]] if "final" in k else k
    latest = finals.iloc[-1] if len(finals) else k.iloc[-1]
    specs = [
        (
            "logo_churn_rate",
            "Logo churn rate",
            lambda v: _pct(v, 1),
            "Share of the accounts active at the start of the month that churned during it "
            "(no renewal within the grace period).",
        ),
        (
            "grr",
            "Gross revenue retention",
            lambda v: _pct(v, 1),
            "ARR kept from the accounts active at the start of the month, counting churn and contraction "
            "but not expansion (100% = nothing lost). Monthly, not annualised.",
        ),
        (
            "nrr",
            "Net revenue retention",
            lambda v: _pct(v, 1),
            "ARR at month end of the accounts active at its start, divided by their ARR at the start: "
            "expansion counts, new customers do not. Monthly, not annualised.",
        ),
    ]
    cards = []
    for col, title, fmt, help_text in specs:
        med, z = latest.get(f"{col}_median_12m", np.nan), latest.get(f"{col}_robust_z", np.nan)
        abnormal = bool(latest.get(f"{col}_abnormal", False))
        cards.append(
            {
                "title": title,
                "help": help_text,
                "value": fmt(latest[col]),
                "month": pd.Timestamp(latest["month"]).strftime("%B %Y"),
                "median": fmt(med) if np.isfinite(med) else None,
                "z": f"{z:+.1f}" if np.isfinite(z) else None,
                "abnormal": abnormal,
                "chart": line_chart_svg(
                    k["month"],
                    k[col],
                    fmt=fmt,
                    name=title,
                    median=k.get(f"{col}_median_12m"),
                    abnormal=k.get(f"{col}_abnormal"),
                    final=k.get("final"),
                ),
            }
        )
    cards.append(
        {
            "title": "ARR",
            "help": "Annual recurring revenue (12 x MRR) of all active subscriptions on the last day of the month.",
            "value": _money(k["arr"].iloc[-1]),
            "month": pd.Timestamp(k["month"].iloc[-1]).strftime("%B %Y"),
            "median": None,
            "z": None,
            "abnormal": False,
            "chart": line_chart_svg(k["month"], k["arr"], fmt=_money, name="ARR", final=k.get("final")),
        }
    )
    return cards


def arr_at_risk_by_segment(scores: pd.DataFrame) -> pd.DataFrame:
    """ARR and ARR at risk per segment for one as-of date (largest ARR at risk first).

    Args:
        scores: One row per account with ``segment``, ``arr`` and ``arr_at_risk`` (ARR x churn probability;
            computed from ``churn_probability`` when absent).

    Returns:
        ``segment``, ``accounts``, ``arr``, ``arr_at_risk``, ``share_at_risk`` (arr_at_risk / arr).
    """
    at_risk = (
        scores["arr_at_risk"] if "arr_at_risk" in scores else scores["arr"] * scores["churn_probability"]
    )
    frame = pd.DataFrame(
        {"segment": scores["segment"].astype("str"), "arr": scores["arr"], "arr_at_risk": at_risk}
    )
    out = frame.groupby("segment", as_index=False).agg(
        accounts=("arr", "size"), arr=("arr", "sum"), arr_at_risk=("arr_at_risk", "sum")
    )
    out["share_at_risk"] = np.where(
        out["arr"] > 0, out["arr_at_risk"] / out["arr"].where(out["arr"] > 0), np.nan
    )
    return out.sort_values("arr_at_risk", ascending=False, kind="stable").reset_index(drop=True)


def _template_text(name: str) -> str:
    return resources.files("churnml.report").joinpath("templates", name).read_text(encoding="utf-8")


def _records(
    df: pd.DataFrame,
    by_reason: dict[str, dict[str, list]],
    series: dict[str, np.ndarray],
    definition: TierDefinition | None,
) -> list[dict[str, Any]]:
    """Every account as a compact record for the page's script (the whole portfolio, searchable offline)."""
    expand_from = definition.expansion_cutoff if definition is not None else 0.3
    out = []
    for rec in df.to_dict("records"):
        acct = rec["account_id"]
        values = series.get(acct)
        days = rec["days_to_renewal"]
        exp = rec["expansion_probability"]
        rs = by_reason.get(acct, {})
        has_days = days is not None and np.isfinite(days)
        has_exp = exp is not None and np.isfinite(exp)
        out.append(
            {
                "i": acct,
                "n": rec["account_name"]
                if isinstance(rec["account_name"], str) and rec["account_name"]
                else acct,
                "s": str(rec["segment"]),
                "sl": _nice(rec["segment"]),
                "t": str(rec["touch_model"]),
                "tl": _nice(rec["touch_model"]).lower(),
                "c": rec["csm_id"] if isinstance(rec["csm_id"], str) and rec["csm_id"] else "",
                "a": round(float(rec["arr"]), 2),
                "af": _money(float(rec["arr"])),
                "r": round(float(rec["churn_probability"]), 5),
                "rf": _pct(float(rec["churn_probability"])),
                "ti": str(rec["risk_tier"]),
                "k": round(float(rec["arr_at_risk"]), 2),
                "kf": _money(float(rec["arr_at_risk"])),
                "e": round(float(exp), 5) if has_exp else -1.0,
                "ef": _pct(float(exp)) if has_exp else "–",
                "x": 1 if has_exp and exp >= expand_from else 0,
                "d": float(days) if has_days else None,
                "df": f"{days:.0f} d" if has_days else "–",
                "b": str(rec.get("billing_period") or ""),
                "sp": [round(float(v), 1) for v in values] if values is not None else [],
                "u": [[t, point_label(p, "churn")] for t, p in rs.get("up", [])][:3],
                "w": [[t, point_label(p, "churn")] for t, p in rs.get("down", [])][:2],
                "eu": [[t, point_label(p, "expansion")] for t, p in rs.get("exp", [])][:2],
                "ed": [[t, point_label(p, "expansion")] for t, p in rs.get("exp_down", [])][:1],
                "cx": [t for t, _ in rs.get("ctx", [])][:3],
                "p": str(rec["recommended_play"] or ""),
            }
        )
    return out


def _calls_view(calls: pd.DataFrame | None, df: pd.DataFrame) -> list[dict[str, Any]]:
    if calls is None or calls.empty:
        return []
    names = df.set_index("account_id")["account_name"].to_dict()
    rows = []
    for rec in calls.sort_values("team_rank").to_dict("records"):
        acct = str(rec["account_id"])
        change = rec.get("risk_change")
        days = rec.get("days_to_renewal")
        rows.append(
            {
                "team_rank": int(rec["team_rank"]),
                "rank": int(rec["rank"]),
                "id": acct,
                "name": names.get(acct) if isinstance(names.get(acct), str) and names.get(acct) else acct,
                "csm": str(rec["csm_id"]),
                "tier": str(rec["risk_tier"]),
                "risk": _pct(float(rec["churn_probability"])),
                "at_risk": _money(float(rec["arr_at_risk"])),
                "change": f"{change * 100:+.1f} pts" if change is not None and np.isfinite(change) else "–",
                "renewal": f"{days:.0f} d" if days is not None and np.isfinite(days) else "–",
                "reason": str(rec["reason"]),
                "play": str(rec["play"]),
                "due": pd.Timestamp(rec["due"]).date().isoformat(),
                "rescue": str(rec["play"]).startswith("Renewal rescue"),
            }
        )
    return rows


def _changes_view(changes: pd.DataFrame | None, df: pd.DataFrame, top: int = 10) -> dict[str, Any] | None:
    if changes is None or changes.empty or changes["risk_change"].isna().all():
        return None
    c = changes.merge(
        df[["account_id", "account_name", "csm_id", "arr_at_risk", "churn_probability", "risk_tier"]],
        on="account_id",
    )
    c["name"] = c["account_name"].where(c["account_name"].astype("string").fillna("") != "", c["account_id"])

    def row(r: Mapping[str, Any]) -> dict[str, Any]:
        return {
            "id": r["account_id"],
            "name": r["name"],
            "csm": r["csm_id"] if isinstance(r["csm_id"], str) else "",
            "risk": _pct(float(r["churn_probability"])),
            "before": _pct(float(r["previous_probability"]))
            if np.isfinite(r["previous_probability"])
            else "–",
            "change": f"{r['risk_change'] * 100:+.1f} pts" if np.isfinite(r["risk_change"]) else "new",
            "tier": str(r["risk_tier"]),
            "previous_tier": str(r["previous_tier"]) or "–",
            "new_reasons": list(r["new_reasons"]),
        }

    risers = c[c["risk_change"] > 0].sort_values("risk_change", ascending=False).head(top)
    moved_up = c[c["tier_move"] == "up"].sort_values("arr_at_risk", ascending=False)
    with_new = c[c["new_reasons"].map(len) > 0].sort_values("arr_at_risk", ascending=False)
    return {
        "previous_as_of": pd.Timestamp(c["previous_as_of"].dropna().iloc[0]).date().isoformat(),
        "risers": [row(r) for r in risers.to_dict("records")],
        "up": int((c["tier_move"] == "up").sum()),
        "down": int((c["tier_move"] == "down").sum()),
        "new": int((c["tier_move"] == "new").sum()),
        "moved_up": [row(r) for r in moved_up.head(top).to_dict("records")],
        "new_reasons": [row(r) for r in with_new.head(top).to_dict("records")],
        "new_reason_accounts": len(with_new),
    }


def _renewals_view(df: pd.DataFrame, window: int) -> dict[str, Any]:
    """Term ends of annual and multi-year contracts within ``window`` days; monthly terms summarised apart."""
    days = df["days_to_renewal"]
    within = df[(days >= 0) & (days <= window)]
    monthly = within["billing_period"].astype("string").fillna("") == "monthly"
    term = within[~monthly].sort_values(["days_to_renewal", "arr_at_risk"], ascending=[True, False])
    return {
        "window": window,
        "count": len(term),
        "arr": _money(float(term["arr"].sum())),
        "at_risk": _money(float(term["arr_at_risk"].sum())),
        "rows": [
            {
                "id": r["account_id"],
                "name": r["account_name"]
                if isinstance(r["account_name"], str) and r["account_name"]
                else r["account_id"],
                "csm": r["csm_id"] if isinstance(r["csm_id"], str) and r["csm_id"] else "pooled",
                "days": f"{r['days_to_renewal']:.0f} d",
                "term": _nice(r["billing_period"]) if isinstance(r["billing_period"], str) else "–",
                "arr": _money(float(r["arr"])),
                "risk": _pct(float(r["churn_probability"])),
                "tier": str(r["risk_tier"]),
                "at_risk": _money(float(r["arr_at_risk"])),
            }
            for r in term.to_dict("records")
        ],
        "monthly": int(monthly.sum()),
        "monthly_arr": _money(float(within.loc[monthly, "arr"].sum())),
        "monthly_at_risk": _money(float(within.loc[monthly, "arr_at_risk"].sum())),
    }


def build_report(
    scores: pd.DataFrame,
    reasons: pd.DataFrame | None,
    usage_weekly: pd.DataFrame | None,
    kpis: pd.DataFrame | None,
    out_dir: Path,
    tiers: TiersConfig | None = None,
    *,
    accounts: pd.DataFrame | None = None,
    features: pd.DataFrame | None = None,
    performance: Mapping[str, Any] | None = None,
    definition: TierDefinition | None = None,
    calls: pd.DataFrame | None = None,
    changes: pd.DataFrame | None = None,
    renewal_window_days: int = 90,
    survival: SurvivalReport | None = None,
    selections: Mapping[str, Mapping[str, Any] | None] | None = None,
    page_size: int = 50,
    title: str = "Customer portfolio: churn risk and expansion",
    generated_at: dt.datetime | None = None,
) -> Path:
    """Write the portfolio report ``out_dir/index.html`` (one self-contained file).

    Args:
        scores: One row per account (the ``churn_scores`` table of one as-of date): ``account_id``,
            ``churn_probability``, ``arr``, ``segment``, ``touch_model``; used when present: ``as_of``,
            ``risk_tier``, ``arr_at_risk``, ``expansion_probability``, ``recommended_play``, ``top_reasons``,
            ``account_name``, ``csm_id``, ``days_to_renewal``, ``churn_model_version``,
            ``expansion_model_version``.
        reasons: :func:`churnml.explain.reasons.reasons_for` output for both targets (None: use ``top_reasons``);
            with ``model_version``, each target's must be the version its scores name, or the page is refused.
        usage_weekly: :func:`weekly_usage` output (None: no sparklines).
        kpis: :func:`portfolio_kpis` output (None: no KPI section).
        out_dir: Folder to write ``index.html`` into.
        tiers: Tier thresholds and plays (fill ``risk_tier`` / ``recommended_play`` when absent).
        accounts: The accounts table, for names and CSMs when the scores lack them.
        features: The feature table, for ``contract_days_to_renewal`` and ``contract_billing_period``.
        performance: :func:`churnml.scoring.monitor.monitor_section` output (None leaves it out).
        definition: The tier cut-offs the scores used (:class:`churnml.scoring.tiers.TierDefinition`), stated
            in words; None: the fixed ``tiers.thresholds``.
        calls: This week's call list (:func:`churnml.scoring.calls.call_list`); None: no call list section.
        changes: :func:`churnml.scoring.calls.changes_since` output; None or no history: the section says so.
        renewal_window_days: How far ahead "renewals that matter" look.
        survival: The survival stage's outputs (:func:`churnml.report.survival_pages.read_survival_report`):
            with them the report gains two pages beside ``index.html``, the revenue forecast
            (``forecast.html``) and the right-customer analysis (``customers.html``), linked from every page.
        selections: Per target, the ``model.info["selection"]`` of the model version its scores name: the
            chosen model and its margin over the runner-up, shown beside the version (None: not shown).
        page_size: Accounts per page of the portfolio table (every account is embedded and searchable).
        title: Page title.
        generated_at: Timestamp shown in the header (default: none shown, so that the same inputs give the same
            page byte for byte: its hash is in the committed dvc.lock).

    Returns:
        The path of the written page (``index.html``).
    """
    from jinja2 import Environment, PackageLoader, StrictUndefined

    tiers = tiers or TiersConfig()
    versions = check_one_model(scores, reasons)
    df = _accounts_frame(scores, accounts, features, tiers)
    if definition is None:
        ordered = sorted(tiers.thresholds.items(), key=lambda kv: -kv[1])
        definition = TierDefinition(dict(ordered), {}, None, 0.3, None, None, "fixed")
    by_reason = _reasons_by_account(reasons, df)
    series: dict[str, np.ndarray] = {}
    if usage_weekly is not None and len(usage_weekly):
        uw = usage_weekly.sort_values(["account_id", "week_start"])
        series = {str(a): g["value"].to_numpy(float) for a, g in uw.groupby("account_id", sort=False)}
    weeks = max((len(s) for s in series.values()), default=0)
    records = _records(df, by_reason, series, definition)
    total_arr = float(df["arr"].sum())
    at_risk = float(df["arr_at_risk"].sum())
    ordered_tiers = definition.ordered()
    tier_counts = df.groupby("risk_tier")["arr"].agg(["size", "sum"])
    likely = df["expansion_probability"] >= definition.expansion_cutoff
    renewals = _renewals_view(df, renewal_window_days)
    summary = {
        "accounts": len(df),
        "arr": _money(total_arr),
        "at_risk": _money(at_risk),
        "at_risk_share": _pct(at_risk / total_arr if total_arr else np.nan, 1),
        "urgent": int(tier_counts["size"].reindex([t for t, _ in ordered_tiers[:2]]).fillna(0).sum()),
        "urgent_arr": _money(
            float(tier_counts["sum"].reindex([t for t, _ in ordered_tiers[:2]]).fillna(0).sum())
        ),
        "urgent_tiers": " or ".join(t for t, _ in ordered_tiers[:2]),
        "renewals": renewals["count"],
        "renewals_arr": renewals["arr"],
        "monthly": renewals["monthly"],
        "expansion": int(likely.sum()),
        "expansion_arr": _money(float(df.loc[likely, "arr"].sum())),
        "expansion_words": definition.describe_expansion(),
        "base_rate": _pct(definition.base_rate, 1) if definition.base_rate else None,
    }
    seg = arr_at_risk_by_segment(df)
    biggest = float(seg["arr_at_risk"].max()) if len(seg) else 0.0
    segments = [
        {
            "name": _nice(r.segment),
            "accounts": f"{int(r.accounts):,}",
            "arr": _money(r.arr),
            "at_risk": _money(r.arr_at_risk),
            "share": _pct(r.share_at_risk, 1),
            "bar": round(100 * r.arr_at_risk / biggest, 1) if biggest > 0 else 0.0,
        }
        for r in seg.itertuples()
    ]
    as_of = (
        pd.Timestamp(df["as_of"].iloc[0]).date().isoformat() if "as_of" in df.columns and len(df) else None
    )
    call_rows = _calls_view(calls, df)
    script = _template_text("report.js")
    script_hash = base64.b64encode(hashlib.sha256(script.encode("utf-8")).digest()).decode()
    env = Environment(
        loader=PackageLoader("churnml.report", "templates"),
        autoescape=True,
        undefined=StrictUndefined,
        trim_blocks=True,
        lstrip_blocks=True,
    )
    counts = df["risk_tier"].value_counts()
    pages = (
        [
            (REPORT_FILE, "Accounts"),
            (FORECAST_FILE, "Revenue forecast"),
            (CUSTOMERS_FILE, "The right customer"),
        ]
        if survival is not None
        else []
    )
    if survival is not None and as_of is not None:
        check_forecast_as_of(survival, pd.Timestamp(as_of))
    css = Markup(_template_text("report.css"))
    html = env.get_template("report.html.j2").render(
        pages=pages,
        current=REPORT_FILE,
        title=title,
        as_of=as_of,
        generated=generated_at.strftime("%Y-%m-%d %H:%M UTC") if generated_at else "",
        versions=versions,
        choices={t: model_choice((selections or {}).get(t)) for t in versions},
        summary=summary,
        kpis=_kpi_cards(kpis) if kpis is not None else [],
        segments=segments,
        records=records,
        total=len(df),
        page_size=page_size,
        weeks=weeks,
        calls=call_rows,
        call_csms=sorted({r["csm"] for r in call_rows}),
        changes=_changes_view(changes, df),
        renewals=renewals,
        tiers=[
            {
                "name": t,
                "cut": _pct(c, 1),
                "words": w,
                "count": f"{int(counts.get(t, 0)):,}",
                "colour": TIER_COLOURS.get(t, "#475467"),
            }
            for (t, c), w in zip(ordered_tiers, definition.describe(), strict=True)
        ],
        filters={
            "segment": [(v, _nice(v)) for v in sorted({r["s"] for r in records})],
            "touch": [(v, _nice(v)) for v in sorted({r["t"] for r in records})],
            "csm": sorted({r["c"] for r in records if r["c"]}),
            "tier": [t for t, _ in ordered_tiers],
        },
        performance=_performance_view(performance) if performance is not None else None,
        css=css,
        script=Markup(script),
        script_hash=script_hash,
    )
    out_dir = Path(out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    path = out_dir / REPORT_FILE
    tmp = path.with_name(f".{path.name}.tmp")
    tmp.write_text(html, encoding="utf-8")
    tmp.replace(path)
    if survival is not None:
        common = {
            "css": css,
            "as_of": as_of,
            "generated": generated_at.strftime("%Y-%m-%d %H:%M UTC") if generated_at else "",
            "pages": pages,
        }
        render_pages(env, survival, out_dir, common)
    return path
