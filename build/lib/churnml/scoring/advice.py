"""Retrain advice per target (ok, warn, retrain) from the realised performance of the model version in use.

The rules are in :mod:`churnml.scoring.monitor`'s docstring.
"""

from __future__ import annotations

import math
from collections.abc import Mapping
from typing import Any

import numpy as np
import pandas as pd

from churnml.config import MonitorConfig
from churnml.modeling.metrics import roc_auc
from churnml.scoring.backtest import ModelCard
from churnml.scoring.realised import (
    ALL,
    TARGETS,
    auc_standard_error,
    bootstrap_auc,
    ece_by_chance,
    expected_calibration_error,
    reliability_table,
)

ADVICE_COLUMNS = [
    "target", "status", "model_version", "as_of_first", "as_of_last", "periods", "n", "n_positive",
    "realised_roc_auc", "roc_auc_low", "roc_auc_high", "test_roc_auc", "auc_drop", "auc_drop_se", "ece",
    "ece_by_chance", "psi_score",
    "months_since_training", "reasons",
]  # fmt: skip
STATUS_ORDER = ("ok", "warn", "retrain")


# --------------------------------------------------------------------------------------------- advice


def _current_version(rows: pd.DataFrame, cards: Mapping[tuple[str, str], ModelCard], target: str) -> str:
    """The version scored at the target's latest as-of (the most recently trained one if several)."""
    latest = rows.loc[rows["as_of"] == rows["as_of"].max(), "model_version"].unique()

    def order(version: str) -> tuple:
        card = cards.get((target, version))
        return (card.trained_through if card is not None else pd.Timestamp.min, version)

    return max((str(v) for v in latest), key=order)


def advise(
    rows: pd.DataFrame,
    performance: pd.DataFrame,
    cards: Mapping[tuple[str, str], ModelCard],
    mcfg: MonitorConfig,
) -> pd.DataFrame:
    """Retrain advice per target (:data:`ADVICE_COLUMNS`), for the version in use at the latest as-of.

    Status: ``retrain``, ``warn``, ``ok``; ``awaiting_labels`` while none of the version's as-ofs has
    matured; ``insufficient_labels`` below ``min_labeled`` rows or ``min_positives`` positives pooled.
    """
    out = []
    for target in TARGETS:
        mine = rows[rows["target"] == target]
        if mine.empty:
            continue
        version = _current_version(mine, cards, target)
        card = cards.get((target, version))
        used = mine[mine["model_version"] == version]
        matured_days = sorted(used.loc[used["matured"], "as_of"].unique())[-max(mcfg.decision_periods, 1) :]
        perf = performance[
            (performance["target"] == target)
            & (performance["model_version"] == version)
            & (performance["touch_model"] == ALL)
        ].sort_values("as_of")
        record: dict[str, Any] = dict.fromkeys(ADVICE_COLUMNS, math.nan)
        record |= {
            "target": target,
            "model_version": version,
            "periods": len(matured_days),
            "test_roc_auc": math.nan if card is None else card.test_roc_auc,
            "psi_score": float(perf["psi_score"].iloc[-1]) if len(perf) else math.nan,
            "reasons": [],
        }
        if not matured_days:
            last = pd.Timestamp(used["as_of"].max()).date()
            out.append(
                record
                | {"status": "awaiting_labels", "reasons": [f"no matured label yet (latest as-of {last})"]}
            )
            continue
        pooled = used[used["as_of"].isin(matured_days)]
        y = pooled["y"].to_numpy(dtype="float64")
        p = pooled["probability"].to_numpy(dtype="float64")
        auc = roc_auc(y, p)
        lo, hi = bootstrap_auc(y, p, mcfg.bootstrap, mcfg.seed)
        ece = expected_calibration_error(reliability_table(y, p, mcfg.calibration_bins))
        chance = ece_by_chance(p, mcfg.calibration_bins, mcfg.bootstrap, mcfg.seed)
        se_realised = auc_standard_error(auc, y.sum(), len(y) - y.sum())
        se_test = math.nan
        if card is not None:
            se_test = auc_standard_error(
                card.test_roc_auc, card.test_positives, card.test_n - card.test_positives
            )
        # an unknown test sample size counts as none: only the realised AUC's own error is allowed for
        drop_se = (
            math.sqrt(np.nansum([se_realised**2, se_test**2])) if math.isfinite(se_realised) else math.nan
        )
        record |= {
            "as_of_first": pd.Timestamp(matured_days[0]),
            "as_of_last": pd.Timestamp(matured_days[-1]),
            "n": len(pooled),
            "n_positive": int(y.sum()),
            "realised_roc_auc": auc,
            "roc_auc_low": lo,
            "roc_auc_high": hi,
            "ece": ece,
            "ece_by_chance": chance,
            "auc_drop": record["test_roc_auc"] - auc,
            "auc_drop_se": drop_se,
            "months_since_training": math.nan
            if card is None
            else card.months_since_training(pd.Timestamp(matured_days[-1])),
        }
        if len(pooled) < mcfg.min_labeled or y.sum() < mcfg.min_positives:
            reason = (
                f"{len(pooled)} matured rows with {int(y.sum())} positives; at least {mcfg.min_labeled} rows "
                f"and {mcfg.min_positives} positives are needed to judge"
            )
            out.append(record | {"status": "insufficient_labels", "reasons": [reason]})
            continue
        flags: list[tuple[str, str]] = []  # (level, reason)
        drop, test = record["auc_drop"], record["test_roc_auc"]
        if not math.isfinite(test):
            flags.append(("ok", "test ROC-AUC at training unknown: AUC rule not applied"))
        elif drop > mcfg.auc_drop_warn and not drop <= mcfg.significance_z * drop_se:
            # below the margin, and by more than the sampling error of both AUCs allows
            retrain = drop > mcfg.auc_drop_retrain
            bound = mcfg.auc_drop_retrain if retrain else mcfg.auc_drop_warn
            flags.append(
                (
                    "retrain" if retrain else "warn",
                    f"realised ROC-AUC {auc:.3f} (95% {lo:.3f}-{hi:.3f}) is {drop:.3f} below the test ROC-AUC "
                    f"{test:.3f} at training (margin {bound:g}; standard error of the drop {drop_se:.3f})",
                )
            )
        if math.isfinite(ece) and ece > mcfg.ece_warn and not ece <= chance:
            retrain = ece > mcfg.ece_retrain
            bound = mcfg.ece_retrain if retrain else mcfg.ece_warn
            flags.append(
                (
                    "retrain" if retrain else "warn",
                    f"expected calibration error {ece:.3f} above {bound:g} (chance alone gives up to {chance:.3f})",
                )
            )
        psi_value = record["psi_score"]
        if math.isfinite(psi_value) and psi_value > mcfg.psi_warn:
            flags.append(
                ("warn", f"score PSI {psi_value:.2f} against the training reference above {mcfg.psi_warn:g}")
            )
        status = max((level for level, _ in flags), key=STATUS_ORDER.index, default="ok")
        reasons = [reason for _, reason in flags]
        out.append(record | {"status": status, "reasons": reasons})
    return pd.DataFrame(out, columns=ADVICE_COLUMNS)
