"""Reasons in plain words: per account, the drivers raising and lowering its score, as CSM-readable sentences.

A *driver* is one root cause: the features of one family and metric as the feature engine names them
(:func:`churnml.features.catalogue.parse_feature`): ``usage_logins_sum_30d``, ``usage_logins_trend_30d`` and
``usage_logins_zscore_7d`` are the driver ``usage_logins``; ``contacts_sponsor_left_90d`` and
``contacts_days_since_sponsor_left`` are ``contacts_sponsor_left``. Its probability points are the sum of
its members' points (see :mod:`churnml.explain.contributions`), and its sentence comes from its strongest member (largest
``|shap_value|``), rendered by the template of the feature's family with the account's own numbers (any
column of its feature row) and a baseline: the previous period for trends, the account's own norm for
z-scores, otherwise the median account of the same as-of date.

Redundant features (near-copies of one quantity: ``|correlation| > model.redundancy_threshold`` on the
training rows, recorded in ``model.info["redundant_groups"]``, see :mod:`churnml.modeling.redundancy`) merge
into one driver: minutes and a charge that is minutes x a rate take one reason slot, not two. A group's members
count under the driver of its first member (:func:`churnml.explain.drivers.merged_keys`; features move, not
whole drivers, so groups do not chain), its points are the sum of its members' (so points still add up), and
its sentence and family come from its strongest member on each account. Context never merges with a reason.

Context drivers (:data:`churnml.explain.drivers.CONTEXT_DRIVERS`, every ``account_*`` driver) say when or what the account is (days to
renewal, tenure, term, plan, size, segment), not why its risk moved: they keep their points but never take a
reason slot; :func:`reasons_for` returns them beside the reasons, direction ``context``.

All sentence templates live in :data:`churnml.explain.templates.FAMILY_TEMPLATES` (one function per
feature family); what a feature name means and which driver it belongs to, in :mod:`churnml.explain.drivers`.
"""

from __future__ import annotations

import json
from collections.abc import Iterable, Mapping
from typing import Any

import numpy as np
import pandas as pd

from churnml.contract.tables import REASON_DIRECTIONS, REASONS
from churnml.errors import ChurnmlError
from churnml.explain.drivers import _family_of, driver_of, feature_info, is_context, merged_keys
from churnml.explain.templates import render_reason

DIRECTIONS = REASON_DIRECTIONS  # the order rows and JSON items come in
_DIRECTION_ORDER = {d: i for i, d in enumerate(DIRECTIONS)}
# the reasons table of the contract, less the model version its caller (who loaded the model) adds
REASON_COLUMNS = [c for c in REASONS.columns if c != "model_version"]


_TARGET_WORDS = {"churn": "churn risk", "expansion": "chance to expand"}


def point_label(points: float, target: str) -> str:
    """How a reason's points read beside it: "raises churn risk +4.0 pts", "lowers chance to expand -0.6 pts".

    The verb follows the sign of the points (one decimal; a driver under 0.05 points rounds to +/-0.0 and
    keeps the verb of its sign). ``points`` is a probability (0.053), shown in percentage points ("+5.3 pts"),
    the unit of ``top_reasons``' JSON (:data:`PERCENT`).
    """
    what = _TARGET_WORDS.get(target, target)
    verb = "raises" if points > 0 else "lowers" if points < 0 else "leaves"
    return f"{verb} {what} {points * PERCENT:+.1f} pts"


# ------------------------------------------------------------------------------------------------ drivers


class _Row(Mapping):
    """One account's feature row, read lazily from column arrays (no per-account frame is built)."""

    __slots__ = ("_cols", "_pos")

    def __init__(self, cols: dict[str, np.ndarray], pos: int) -> None:
        self._cols = cols
        self._pos = pos

    def __getitem__(self, key: str) -> Any:
        v = self._cols[key][self._pos]
        return v.item() if isinstance(v, np.generic) else v

    def __iter__(self):
        return iter(self._cols)

    def __len__(self) -> int:
        return len(self._cols)


def _row_positions(features: pd.DataFrame, keys: pd.DataFrame, cutoff_col: str) -> np.ndarray:
    """Position in ``features`` of each (account_id, as_of) in ``keys``; -1 when absent."""
    left = pd.MultiIndex.from_arrays(
        [
            features["account_id"].astype("str").to_numpy(),
            pd.to_datetime(features[cutoff_col]).astype("datetime64[us]"),
        ]
    )
    right = pd.MultiIndex.from_arrays(
        [keys["account_id"].astype("str").to_numpy(), pd.to_datetime(keys["as_of"]).astype("datetime64[us]")]
    )
    if not left.is_unique:
        raise ChurnmlError(f"reasons: features hold duplicate (account_id, {cutoff_col}) rows")
    return left.get_indexer(right)


def _medians(features: pd.DataFrame, cutoff_col: str, names: Iterable[str]) -> dict[str, dict]:
    """Median account value per numeric feature and as-of date: the baseline sentences quote."""
    numeric = [c for c in names if c in features.columns and pd.api.types.is_numeric_dtype(features[c].dtype)]
    if not numeric:
        return {}
    med = features.groupby(pd.to_datetime(features[cutoff_col]).astype("datetime64[us]"))[numeric].median()
    return {c: med[c].to_dict() for c in numeric}


def _render_rows(
    frame: pd.DataFrame, features: pd.DataFrame, cutoff_col: str, feature_col: str = "feature"
) -> list[str]:
    """Sentences for rows holding account_id, as_of and a feature name, from the accounts' feature rows."""
    if frame.empty:
        return []
    pos = _row_positions(features, frame, cutoff_col)
    missing = pos < 0
    if missing.any():
        first = frame.loc[missing].iloc[0]
        raise ChurnmlError(
            f"reasons: {int(missing.sum())} explained row(s) have no feature row "
            f"(e.g. account {first['account_id']} as of {pd.Timestamp(first['as_of']).date()})"
        )
    cols = {c: features[c].to_numpy() for c in features.columns}
    medians = _medians(features, cutoff_col, frame[feature_col].unique())
    as_of = pd.to_datetime(frame["as_of"]).astype("datetime64[us]").to_numpy()
    out = []
    for feat, p, day in zip(frame[feature_col].to_numpy(), pos, as_of, strict=True):
        if feat not in cols:
            raise ChurnmlError(f"reasons: feature {feat!r} is not a column of the feature table")
        row = _Row(cols, int(p))
        med = medians.get(feat, {}).get(pd.Timestamp(day))
        out.append(render_reason(feat, row[feat], row, med))
    return out


def reasons_for(
    explanations: pd.DataFrame,
    features: pd.DataFrame,
    *,
    top: int = 3,
    cutoff_col: str = "cutoff",
    context: Iterable[str] | None = None,
    min_points: float = 0.0,
    groups: Iterable[Iterable[str]] = (),
) -> pd.DataFrame:
    """The top drivers raising and lowering each account's score, each with a sentence, and its context.

    A driver moving the probability by less than ``min_points`` (``scoring.min_reason_points``) is noise, not
    a reason: it takes no reason slot. A sentence appears at most once per account, as-of and target: when two
    drivers render the same words, only the stronger one is kept (raises before lowers before context).

    Context drivers (:func:`is_context`: days to renewal, tenure, term, plan, size, segment...) say when or what
    the account is, not why its risk moved: they never take a reason slot, so the ``top`` reasons each way are
    the strongest of the other drivers. The strongest ``top`` context drivers come as rows of their own
    (direction ``context``), with their points, to be shown beside the reasons.

    Args:
        explanations: Long-form explanations (:func:`churnml.explain.contributions.explain_accounts`), ideally with every
            feature (``top_n=None``): a driver's points are the sum over the members present.
        features: The feature table the explanations came from (``account_id``, ``cutoff_col``, features).
        top: Drivers kept per account, as-of, target and direction (context counts as one direction).
        cutoff_col: The as-of column of ``features``.
        context: The context drivers (None: the default of :func:`is_context`; empty: none).
        min_points: Drivers whose points are smaller in magnitude are not reasons (context is kept).
        groups: The model's groups of redundant features
            (:func:`churnml.explain.drivers.redundant_groups_of`): a group's members count under the driver
            of its first member, with the sentence of its strongest member on each account.

    Returns:
        ``account_id``, ``as_of``, ``target``, ``rank`` (1 = most points, by magnitude, within its direction),
        ``direction`` (``raises`` / ``lowers`` the target's probability, or ``context``: the sign of the
        points says which way it moves it), ``driver`` (family_metric), ``family``, ``probability_points``
        (summed over the driver's features; probability units), ``reason``. Rows come raises, lowers, context,
        each by rank. Drivers with exactly zero points are left out. With every feature explained and ``top``
        at least the number of drivers, the points of all rows of an account add up to p - p0.
    """
    need = ["account_id", "as_of", "target", "feature", "shap_value", "probability_points"]
    missing = [c for c in need if c not in explanations.columns]
    if missing:
        raise ChurnmlError(f"reasons_for: explanations lack column(s) {', '.join(missing)}")
    if top < 1:
        raise ChurnmlError(f"reasons_for: top must be >= 1, got {top}")
    context = None if context is None else frozenset(context)
    infos = {f: feature_info(f) for f in explanations["feature"].unique()}
    own = {f: driver_of(i) for f, i in infos.items()}
    merged = merged_keys(own, groups, lambda d: is_context(d, context))
    ex = explanations[need].assign(
        key=explanations["feature"].map(merged),
        family=explanations["feature"].map({f: i.family for f, i in infos.items()}),
        abs_shap=explanations["shap_value"].abs(),
    )
    keys = ["account_id", "as_of", "target", "key"]
    points = ex.groupby(keys, sort=False, observed=True)["probability_points"].sum()
    strongest = (
        ex.sort_values("abs_shap", ascending=False, kind="stable")
        .drop_duplicates(keys)
        .set_index(keys)[["feature", "family"]]
    )
    drivers = strongest.join(points).reset_index()
    # a redundant group's row is named, in words and in ``driver``, by its strongest member on this account: the
    # group key is its first member's driver, and a row saying "Dashboards feature use down 7%" under driver
    # usage_active_users would file the cause under another metric for anyone counting drivers
    drivers["driver"] = drivers["feature"].map(own)
    drivers = drivers.drop(columns="key")
    drivers = drivers[drivers["probability_points"] != 0]
    contextual = drivers["driver"].map({d: is_context(d, context) for d in drivers["driver"].unique()})
    big = drivers["probability_points"].abs() >= min_points
    drivers, contextual = drivers[big | contextual.astype(bool)], contextual[big | contextual.astype(bool)]
    drivers = drivers.assign(
        direction=np.where(
            contextual.astype(bool),
            "context",
            np.where(drivers["probability_points"] > 0, "raises", "lowers"),
        ),
        magnitude=drivers["probability_points"].abs(),
    ).sort_values(
        ["account_id", "as_of", "target", "direction", "magnitude"],
        ascending=[True, True, True, False, False],
    )
    group = ["account_id", "as_of", "target", "direction"]
    drivers["rank"] = drivers.groupby(group).cumcount() + 1
    # render a few spares: a sentence that repeats a stronger one is dropped and the next driver moves up
    kept = drivers[drivers["rank"] <= top + 2].copy()
    kept["_order"] = kept["direction"].map(_DIRECTION_ORDER)
    kept = kept.sort_values(["account_id", "as_of", "target", "_order", "rank"]).reset_index(drop=True)
    kept["reason"] = pd.Series(_render_rows(kept, features, cutoff_col), index=kept.index, dtype="str")
    kept = kept.drop_duplicates(["account_id", "as_of", "target", "reason"], keep="first")
    kept["rank"] = kept.groupby(group).cumcount() + 1
    kept = kept[kept["rank"] <= top].reset_index(drop=True)
    out = kept[REASON_COLUMNS].astype(
        {"account_id": "str", "target": "str", "driver": "str", "direction": "str"}
    )
    return out.reset_index(drop=True)


def with_reasons(
    explanations: pd.DataFrame, features: pd.DataFrame, *, cutoff_col: str = "cutoff"
) -> pd.DataFrame:
    """Explanations plus a ``reason`` column: each feature's own sentence (for the ``churn_explanations`` table).

    Renders one sentence per row: pass explanations truncated with ``top_n``.
    """
    out = explanations.copy()
    out["reason"] = pd.Series(
        _render_rows(explanations, features, cutoff_col), index=explanations.index, dtype="str"
    )
    return out


PERCENT = 100.0  # probability -> percentage points (the top_reasons JSON and the report)


def top_reasons(reasons: pd.DataFrame, *, top: int = 3) -> pd.DataFrame:
    """One row per account, as-of and target with ``top_reasons``: a JSON list for the scores table.

    Each item is ``{"reason": str, "points": float, "direction": "raises"|"lowers"|"context"}``; ``points``
    are percentage points, the unit the report shows ("+4.5 pts"), rounded to 2 decimals (4.5 = the reason
    moves the churn probability 4.5 percentage points; ``churn_explanations.probability_points`` keeps the
    same contribution as a probability, 0.045). The list holds the ``top``
    risk-raising reasons first, then the ``top`` lowering ones, then up to ``top`` context items (when/what
    the account is, e.g. "Renewal in 41 days": shown beside the reasons, never one of them; the sign of their
    points says which way they move the score), each strongest first.
    """
    keys = ["account_id", "as_of", "target"]
    if reasons.empty:
        return pd.DataFrame(
            {
                **{k: pd.Series(dtype=reasons[k].dtype if k in reasons else "str") for k in keys},
                "top_reasons": pd.Series(dtype="str"),
            }
        )
    kept = reasons[reasons["rank"] <= top]
    kept = kept.assign(_order=kept["direction"].map(_DIRECTION_ORDER)).sort_values([*keys, "_order", "rank"])
    items = [
        {"reason": r, "points": round(float(p) * PERCENT, 2), "direction": d}
        for r, p, d in zip(kept["reason"], kept["probability_points"], kept["direction"], strict=True)
    ]
    kept = kept.assign(_item=items)
    grouped = kept.groupby(keys, sort=False)["_item"].agg(list)
    out = grouped.map(lambda xs: json.dumps(xs, ensure_ascii=False)).rename("top_reasons").reset_index()
    return out.astype({"top_reasons": "str"})


def cause_hits(
    reasons: pd.DataFrame,
    truth_accounts: pd.DataFrame,
    cause_families: Mapping[str, Iterable[str]],
    *,
    top: int = 3,
    horizon_days: int = 90,
    target: str = "churn",
) -> pd.DataFrame:
    """Per churner: whether its top ``top`` risk-raising reasons name a feature family of its dominant cause.

    Each churner (``truth_accounts`` rows with a ``churn_date`` and a ``dominant_cause``) is matched with the
    reasons of its latest as-of date ``d`` with ``d <= churn_date < d + horizon_days`` (the prediction that
    covered the churn). Churners without such reasons, and causes mapped to no family (e.g. ``random``), are
    left out. Only ``raises`` rows count: context (:func:`reasons_for`) is never a reason.

    Returns:
        ``account_id``, ``as_of``, ``churn_date``, ``dominant_cause``, ``hit`` (bool), one row per churner.

    Raises:
        ChurnmlError: when no churner can be scored (a rate would be undefined).
    """
    for col in ("account_id", "churn_date", "dominant_cause"):
        if col not in truth_accounts.columns:
            raise ChurnmlError(f"cause_hits: truth_accounts lacks column {col!r}")
    churners = truth_accounts.dropna(subset=["churn_date", "dominant_cause"])
    families = {c: set(fs) for c, fs in cause_families.items()}
    churners = churners[churners["dominant_cause"].map(lambda c: bool(families.get(c)))]
    raising = reasons[
        (reasons["target"] == target) & (reasons["direction"] == "raises") & (reasons["rank"] <= top)
    ]
    if "family" not in raising.columns:  # e.g. read back from a table without it: the driver starts with it
        raising = raising.assign(family=raising["driver"].map(_family_of))
    raising = raising.assign(as_of=pd.to_datetime(raising["as_of"]).astype("datetime64[us]"))
    churn_day = pd.to_datetime(churners["churn_date"]).astype("datetime64[us]")
    scored = reasons.loc[reasons["target"] == target, ["account_id", "as_of"]].drop_duplicates()
    scored = scored.assign(as_of=pd.to_datetime(scored["as_of"]).astype("datetime64[us]"))
    # every explained as-of date counts, even one where nothing raised the risk (that is a miss, not a skip)
    cands = churners.assign(churn_date=churn_day)[["account_id", "churn_date", "dominant_cause"]].merge(
        scored, on="account_id"
    )
    window = (cands["as_of"] <= cands["churn_date"]) & (
        cands["churn_date"] < cands["as_of"] + pd.Timedelta(days=horizon_days)
    )
    matched = cands[window].sort_values("as_of").drop_duplicates("account_id", keep="last")
    if matched.empty:
        raise ChurnmlError(
            f"cause_hit_rate: none of {len(churners)} churner(s) with a known cause has {target} reasons "
            f"dated within {horizon_days} days before its churn"
        )
    named = raising.groupby(["account_id", "as_of"])["family"].agg(set)
    hits = [
        bool(named.get((a, d), set()) & families[c])
        for a, d, c in zip(matched["account_id"], matched["as_of"], matched["dominant_cause"], strict=True)
    ]
    out = matched[["account_id", "as_of", "churn_date", "dominant_cause"]].assign(hit=hits)
    return out.sort_values("account_id").reset_index(drop=True)


def cause_hit_rate(
    reasons: pd.DataFrame,
    truth_accounts: pd.DataFrame,
    cause_families: Mapping[str, Iterable[str]],
    *,
    top: int = 3,
    horizon_days: int = 90,
    target: str = "churn",
) -> float:
    """Share of churners whose top ``top`` risk-raising reasons name a feature family of their dominant cause
    (the mean of :func:`cause_hits`, which says which churners count).

    Raises:
        ChurnmlError: when no churner can be scored (the rate would be undefined).
    """
    hits = cause_hits(
        reasons, truth_accounts, cause_families, top=top, horizon_days=horizon_days, target=target
    )
    return float(hits["hit"].mean())


def cause_hit_summary(hits: pd.DataFrame) -> dict[str, Any]:
    """The hit rate overall and per cause, from :func:`cause_hits`: the numbers metrics files record.

    Returns:
        ``{"hit_rate": x, "churners": n, "by_cause": {cause: {"hit_rate": x, "churners": n}}}``, rates
        rounded to 4 decimals, causes sorted by name.
    """
    by = hits.groupby("dominant_cause")["hit"].agg(["mean", "size"]).sort_index()
    return {
        "hit_rate": round(float(hits["hit"].mean()), 4),
        "churners": len(hits),
        "by_cause": {
            str(c): {"hit_rate": round(float(r["mean"]), 4), "churners": int(r["size"])}
            for c, r in by.iterrows()
        },
    }
