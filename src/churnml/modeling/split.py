"""The out-of-time split of labelled rows into train, validation and test periods, and the model's input frame."""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass

import pandas as pd

from churnml.config import SplitConfig, check_bounds
from churnml.errors import ChurnmlError
from churnml.names import KEYS, LABEL_PREFIXES

# ------------------------------------------------------------------------------------------------ split


@dataclass
class Split:
    """Cutoffs of the train, validation and test periods (out of time, purged)."""

    train: list[pd.Timestamp]
    validation: list[pd.Timestamp]
    test: list[pd.Timestamp]

    def assign(self, cutoffs: pd.Series) -> pd.Series:
        """The period name of each cutoff (``train``, ``validation``, ``test``; missing when in none)."""
        lookup = {c: name for name in ("train", "validation", "test") for c in getattr(self, name)}
        days = pd.to_datetime(cutoffs).astype("datetime64[us]")
        return pd.Series(days.map(lookup), index=cutoffs.index, dtype="str")

    def to_dict(self) -> dict[str, list[str]]:
        """ISO dates per period (JSON-friendly)."""
        return {
            name: [c.date().isoformat() for c in getattr(self, name)]
            for name in ("train", "validation", "test")
        }

    @classmethod
    def from_dict(cls, data: dict[str, list[str]]) -> Split:
        """Inverse of :meth:`to_dict`."""
        return cls(
            **{
                name: [pd.Timestamp(d).as_unit("us") for d in data[name]]
                for name in ("train", "validation", "test")
            }
        )

    def describe(self) -> str:
        """One line: the periods' date ranges."""
        parts = []
        for name in ("train", "validation", "test"):
            days = getattr(self, name)
            parts.append(f"{name} {days[0].date()}..{days[-1].date()} ({len(days)})" if days else f"{name} -")
        return "; ".join(parts)


def _day(text: str, key: str) -> pd.Timestamp:
    try:
        return pd.Timestamp(text).as_unit("us").normalize()
    except ValueError:
        raise ChurnmlError(f"split.{key}: {text!r} is not a date (YYYY-MM-DD)") from None


def split_periods(cutoffs: Iterable, cfg: SplitConfig, horizon_days: int) -> Split:
    """Out-of-time split of the cutoffs of labeled rows.

    Args:
        cutoffs: cutoffs of the labeled rows (repeats are fine; pass only rows whose label is known).
        cfg: number of test and validation periods and the purge between train and validation, and
            optionally fixed dates (``test_start``, ``test_end``, ``train_end``) to reproduce a protocol.
        horizon_days: label horizon; a validation cutoff's label window must end by the first test cutoff.

    Returns:
        test = the latest ``test_periods`` cutoffs (or those in ``[test_start, test_end)``); validation =
        the latest ``validation_periods`` cutoffs (before ``train_end`` when set) with
        ``cutoff + horizon <= first test cutoff``; train = every cutoff (before ``train_end`` when set)
        with ``cutoff + purge_days <= first validation cutoff``.
    """
    days = sorted({pd.Timestamp(c).as_unit("us") for c in pd.to_datetime(pd.Series(list(cutoffs))).dropna()})
    check_bounds(cfg, "split.")  # the schema's bounds (also checked where params.yaml is loaded)
    if cfg.test_start:
        first = _day(cfg.test_start, "test_start")
        stop = _day(cfg.test_end, "test_end") if cfg.test_end else None
        test = [c for c in days if c >= first and (stop is None or c < stop)]
        if not test:
            raise ChurnmlError(
                f"split: no labeled cutoff in [{cfg.test_start}, {cfg.test_end or 'end'}) "
                f"({len(days)} labeled cutoffs{f' from {days[0].date()} to {days[-1].date()}' if days else ''})"
            )
    else:
        if len(days) < cfg.test_periods:
            raise ChurnmlError(
                f"split: {len(days)} labeled cutoff(s), fewer than test_periods={cfg.test_periods}"
            )
        test = days[-cfg.test_periods :]
    pool = days
    if cfg.train_end:
        end = _day(cfg.train_end, "train_end")
        pool = [c for c in days if c < end]
    horizon = pd.Timedelta(days=horizon_days)
    candidates = [c for c in pool if c + horizon <= test[0]]
    validation = candidates[-cfg.validation_periods :]
    if len(validation) < cfg.validation_periods:
        raise ChurnmlError(
            f"split: only {len(validation)} cutoff(s) end their {horizon_days}-day label window before the "
            f"first test cutoff {test[0].date()}; validation_periods={cfg.validation_periods} needs more history"
        )
    purge = pd.Timedelta(days=cfg.purge_days)
    train = [c for c in pool if c < validation[0] and c + purge <= validation[0]]
    if not train:
        raise ChurnmlError(
            f"split: no training cutoff is {cfg.purge_days} days before the first validation cutoff "
            f"{validation[0].date()} ({len(days)} labeled cutoffs from {days[0].date()}); "
            "lower split.test_periods/validation_periods/purge_days or bring more history"
        )
    return Split(train=train, validation=validation, test=test)


# ------------------------------------------------------------------------------------------ input frames


def _with_day_keys(frame: pd.DataFrame, what: str) -> pd.DataFrame:
    missing = [k for k in KEYS if k not in frame.columns]
    if missing:
        raise ChurnmlError(f"{what}: missing key column(s) {', '.join(missing)}")
    # pandas 3 mixes datetime64[us] and [ns]; merges need one unit
    return frame.assign(
        account_id=frame["account_id"].astype("str"),
        cutoff=pd.to_datetime(frame["cutoff"]).astype("datetime64[us]"),
    )


def feature_columns(features: pd.DataFrame) -> list[str]:
    """The model inputs of a feature table: every column but the keys and any label column."""
    return [c for c in features.columns if c not in KEYS and not c.startswith(LABEL_PREFIXES)]


def _is_categorical(series: pd.Series) -> bool:
    return isinstance(series.dtype, pd.CategoricalDtype) or pd.api.types.is_string_dtype(series.dtype)


def labeled_frame(features: pd.DataFrame, labels: pd.DataFrame, label: str) -> pd.DataFrame:
    """Features joined with one label on (account_id, cutoff), labeled rows only, label as int ``y``."""
    features = _with_day_keys(features, "features")
    labels = _with_day_keys(labels, "labels")
    if label not in labels.columns:
        raise ChurnmlError(f"labels: no column {label!r} (have {', '.join(map(str, labels.columns))})")
    if features.duplicated(list(KEYS)).any():
        raise ChurnmlError("features: (account_id, cutoff) is not unique")
    y = labels[[*KEYS, label]].dropna(subset=[label])
    if "y" in features.columns:
        raise ChurnmlError("features: a column named 'y' clashes with the label; rename it")
    merged = features.merge(y.rename(columns={label: "y"}), on=list(KEYS), how="inner", validate="one_to_one")
    merged["y"] = merged["y"].astype(int)
    return merged
