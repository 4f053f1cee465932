"""Tabular mode: train, evaluate, explain and score from a table that already has one row per account and a label.

Some teams bring a snapshot, not event history: one row per customer with its attributes and whether it
churned (the shape of IBM's Telco sample or the BankChurners table). Tabular mode reads such a table and
runs the same model code as the event pipeline on it: the LightGBM trainer with class weights, early
stopping and calibration (:func:`churnml.modeling.model.fit_rows`), the logistic-regression and health-score
baselines (:func:`churnml.modeling.baselines.fit_baselines_rows`), the metrics tables
(:func:`churnml.modeling.metrics.build_evaluation`), MLflow run logging (:func:`churnml.modeling.runs.log_training_run`)
and exact TreeSHAP explanations (:func:`churnml.explain.contributions.explain_accounts`).

How the table is read (:class:`TabularSpec`, :func:`prepare_table`):

- **Label.** ``label`` names the outcome column. ``positive`` names the value that means the event
  (``--positive Yes``, ``--positive "Attrited Customer"``); without it a 0/1 or true/false column is
  used as is, and a two-valued text column whose values include one of yes / true / churned is mapped
  on that value. Anything else is an error asking for ``--positive``. Rows without a label are not
  trained on (counted). A label with one class only is an error.
- **Columns.** ``id`` is the account key (unique; default: the row number). ``drop`` removes columns
  (identifiers, leaked model outputs). ``date`` is the snapshot date of each row. Every other column is
  a feature: numbers and booleans are numeric; a text column whose non-blank cells all parse as
  numbers is numeric (blank = missing: Telco's ``TotalCharges``); any other text column is categorical
  (``categorical`` forces an integer-coded column to be one). A text column with a distinct value on
  almost every row is refused as a likely identifier (pass it as ``id`` or ``drop``).
- **Protocol.** Without ``date``: stratified k-fold (``folds``, 5 by default); in each fold the
  training rows give up a stratified ``validation_fraction`` for early stopping and calibration; the
  metrics are computed once on the pooled out-of-fold predictions, and per fold. With ``date``: out of
  time: the latest dates holding ``test_fraction`` of the rows are the test set, the latest dates
  before them holding ``validation_fraction`` of the rest validate, the earlier rows train (a date is
  never split between two sets). The model that is saved for explaining and scoring is then refit on
  every labeled row (its validation carved the same way).
- **Money.** ``arr`` names a column holding each account's annual recurring revenue; it feeds
  ``arr_captured_at_k`` and ``emp`` (without it they are undefined, null). ``health`` gives the
  health-score baseline's signals and weights (positive = healthier); without any the baseline is not run.

Runs are logged to MLflow in the experiment ``<tracking.experiment>-tabular`` and are not registered:
the registry's ``churnml-churn`` champion belongs to the event pipeline and is never moved from here.

Kept whole (about 720 lines): one mode end to end (read, protocol, save, explain, score) over the modeling
and explain layers, with one protocol object threaded through every step.
"""

from __future__ import annotations

import dataclasses
import datetime as dt
import json
import logging
import math
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from churnml.config import EvaluationConfig, ModelConfig, TrackingConfig
from churnml.errors import ChurnmlError
from churnml.explain.contributions import explain_accounts
from churnml.explain.drivers import merged_keys, redundant_groups_of
from churnml.modeling.baselines import Baselines, fit_baselines_rows
from churnml.modeling.metrics import Evaluation, build_evaluation, compute_metrics, metrics_json, plot_tables
from churnml.modeling.model import (
    TrainedModel,
    _categorical_levels,
    fit_crossfit,
    fit_rows,
    unseen_as_missing,
    unseen_line,
)
from churnml.modeling.runs import log_training_run
from churnml.modeling.tracking import data_version
from churnml.names import TARGETS
from churnml.scoring.batch import risk_tier

SPEC_FILE = "tabular.json"
MODEL_DIR = "model"
METRICS_FILE = "metrics.json"
PLOTS_DIR = "plots"
POSITIVE_WORDS = ("yes", "true", "churned", "churn", "attrited", "y", "t")
# a text column with more distinct values than this share of rows (and at least ID_MIN_LEVELS) is an identifier
ID_LEVEL_SHARE = 0.5
ID_MIN_LEVELS = 50
NO_GROUP = "all"

log = logging.getLogger(__name__)


@dataclass
class TabularSpec:
    """How to read a one-row-per-account table (module docstring); saved beside the model as tabular.json."""

    label: str
    positive: str | None = None
    id: str | None = None
    date: str | None = None
    drop: list[str] = field(default_factory=list)
    categorical: list[str] = field(default_factory=list)
    arr: str | None = None
    health: dict[str, float] = field(default_factory=dict)
    target: str = "churn"
    folds: int = 5
    validation_fraction: float = 0.2
    test_fraction: float = 0.2
    seed: int = 0
    as_of: str = ""  # the as-of day written on rows without a date column (default: today, UTC)

    def check(self) -> None:
        """One-line errors for impossible options."""
        if self.target not in TARGETS:
            raise ChurnmlError(f"tabular: target {self.target!r} is not one of churn, expansion")
        if self.folds < 2:
            raise ChurnmlError(f"tabular: --folds must be at least 2, got {self.folds}")
        for name in ("validation_fraction", "test_fraction"):
            value = getattr(self, name)
            if not 0 < value < 1:
                raise ChurnmlError(f"tabular: {name} must lie strictly between 0 and 1, got {value}")

    def to_dict(self) -> dict[str, Any]:
        """JSON-friendly form."""
        return dataclasses.asdict(self)

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> TabularSpec:
        """Inverse of :meth:`to_dict`."""
        return cls(**data)


@dataclass
class TabularData:
    """A table made ready for the model code.

    Attributes:
        features: ``account_id``, ``cutoff`` (the row's date, or the as-of day) and the feature columns
            (numeric as float64, categorical as text), one row per labeled account.
        y: the 0/1 outcome of each row.
        columns: the feature columns, in table order.
        categories: levels of each categorical feature.
        arr: ARR per row (NaN without an ``arr`` column).
        counts: rows read, unlabeled rows left out, positives.
    """

    features: pd.DataFrame
    y: np.ndarray
    columns: list[str]
    categories: dict[str, list[str]]
    arr: np.ndarray
    counts: dict[str, int]


# ----------------------------------------------------------------------------------------------- reading


def read_table(path: Path) -> pd.DataFrame:
    """A CSV or Parquet file as a frame of text and numbers (CSV cells are kept as written, blanks missing)."""
    path = Path(path)
    if not path.is_file():
        raise ChurnmlError(f"{path}: no such file")
    suffixes = "".join(path.suffixes[-2:]).lower()
    try:
        if path.suffix.lower() == ".parquet":
            return pd.read_parquet(path)
        if ".csv" in suffixes or ".tsv" in suffixes or path.suffix.lower() == ".txt":
            sep = "\t" if ".tsv" in suffixes else ","
            return pd.read_csv(path, sep=sep, keep_default_na=False, na_values=[""], low_memory=False)
    except (OSError, ValueError) as exc:
        raise ChurnmlError(f"{path}: cannot read ({str(exc).splitlines()[0]})") from None
    raise ChurnmlError(f"{path}: expected a .csv, .csv.gz, .tsv or .parquet file")


def _require(frame: pd.DataFrame, names: list[str], option: str) -> None:
    missing = [n for n in names if n not in frame.columns]
    if missing:
        shown = ", ".join(map(str, frame.columns[:12])) + (" ..." if frame.shape[1] > 12 else "")
        raise ChurnmlError(
            f"{option}: no column {', '.join(map(repr, missing))} in the table (columns: {shown})"
        )


def _is_text(series: pd.Series) -> bool:
    return pd.api.types.is_string_dtype(series.dtype) or series.dtype == object


def map_label(values: pd.Series, name: str, positive: str | None) -> pd.Series:
    """The label as a nullable 0/1 series (see the module docstring for the rules)."""
    present = values.dropna()
    if _is_text(values):
        present = present.astype("str").str.strip()
        present = present[present != ""]
    if present.empty:
        raise ChurnmlError(f"label {name!r}: every value is missing")
    levels = sorted(pd.unique(present.astype("str")))
    if len(levels) == 1:
        raise ChurnmlError(
            f"label {name!r} has one class only (every one of {len(present):,} rows is {levels[0]!r}): "
            "a model needs both outcomes"
        )
    out = pd.Series(pd.NA, index=values.index, dtype="Int8")
    if positive is not None:
        if str(positive) not in levels:
            raise ChurnmlError(
                f"--positive {positive!r} is not a value of label {name!r} (values: {', '.join(map(repr, levels[:10]))})"
            )
        out[present.index] = (present.astype("str") == str(positive)).astype("int8").to_numpy()
    elif pd.api.types.is_bool_dtype(values.dtype) or set(levels) <= {"0", "1", "0.0", "1.0", "True", "False"}:
        numeric = present.astype("str").map({"0": 0, "1": 1, "0.0": 0, "1.0": 1, "True": 1, "False": 0})
        out[present.index] = numeric.astype("int8").to_numpy()
    else:
        words = [v for v in levels if v.lower() in POSITIVE_WORDS or v.lower().startswith("attrited")]
        if len(levels) != 2 or len(words) != 1:
            raise ChurnmlError(
                f"label {name!r} has values {', '.join(map(repr, levels[:6]))}"
                f"{' ...' if len(levels) > 6 else ''}: say which one is the event with --positive VALUE"
            )
        out[present.index] = (present.astype("str") == words[0]).astype("int8").to_numpy()
    known = out.dropna()
    if known.nunique() < 2:
        only = "positive" if int(known.iloc[0]) == 1 else "negative"
        raise ChurnmlError(
            f"label {name!r} has one class only ({len(known):,} {only} rows): a model needs both outcomes"
        )
    return out


def _cells(series: pd.Series) -> pd.Series:
    """The cells as stripped text, blank cells missing."""
    text = series.astype("str").where(series.notna()).str.strip()
    return text.where(text != "")


def _numbers(series: pd.Series, what: str, ids: pd.Series) -> pd.Series:
    """A column that must hold numbers, as float64: blank cells are missing (Telco's TotalCharges of new
    customers), ``true``/``false`` are 1/0; any other text is an error naming the column, the count and an
    account, not a silent missing value."""
    if pd.api.types.is_bool_dtype(series.dtype) or pd.api.types.is_numeric_dtype(series.dtype):
        return series.astype("float64")
    text = _cells(series)
    flags = text.str.lower().map({"true": 1.0, "false": 0.0})
    numbers = pd.to_numeric(text.where(flags.isna()), errors="coerce").fillna(flags)
    bad = text.notna() & numbers.isna()
    if bad.any():
        first = int(np.flatnonzero(bad.to_numpy())[0])
        raise ChurnmlError(
            f"{what}: {int(bad.sum())} cell(s) are not numbers, e.g. {text.iloc[first]!r} "
            f"(account {ids.iloc[first]!r}); a number or an empty cell is expected"
        )
    return numbers.astype("float64")


def _feature_column(series: pd.Series, name: str, forced_categorical: bool) -> tuple[pd.Series, bool]:
    """(the column as float64 or text, whether it is categorical)."""
    if forced_categorical:
        return series.astype("str").where(series.notna()), True
    if pd.api.types.is_bool_dtype(series.dtype):
        return series.astype("float64"), False
    if pd.api.types.is_numeric_dtype(series.dtype):
        return series.astype("float64"), False
    if pd.api.types.is_datetime64_any_dtype(series.dtype):
        raise ChurnmlError(f"column {name!r} holds dates: pass it as --date or --drop it")
    if not _is_text(series) and not isinstance(series.dtype, pd.CategoricalDtype):
        raise ChurnmlError(f"column {name!r} has dtype {series.dtype}: expected numbers or text")
    text = _cells(series)
    numbers = pd.to_numeric(text, errors="coerce")
    if text.notna().any() and numbers[text.notna()].notna().all():
        return numbers.astype("float64"), False
    n_levels = text.nunique()
    if n_levels >= ID_MIN_LEVELS and n_levels > ID_LEVEL_SHARE * text.notna().sum():
        raise ChurnmlError(
            f"column {name!r} is text with {n_levels:,} distinct values in {len(text):,} rows (an identifier?): "
            "pass it as --id or --drop it"
        )
    return text, True


def prepare_table(
    frame: pd.DataFrame,
    spec: TabularSpec,
    *,
    require_label: bool = True,
    model: TrainedModel | None = None,
) -> TabularData:
    """Map a raw table onto the model's input (module docstring).

    Args:
        frame: the table as read (:func:`read_table`).
        spec: which columns are the label, key, date, money; what to drop.
        require_label: False to read a table to score (the label column may be absent; every row kept).
        model: a trained model whose table this is: its categorical features are read as text and its
            other features as numbers, whatever this table's cells look like (a scoring batch whose
            codes happen to be all digits stays categorical); a category value it never saw is read as
            missing, with one warning line (:func:`churnml.modeling.model.unseen_as_missing`).

    Raises:
        ChurnmlError: one line naming the column and the rule broken.
    """
    spec.check()
    named = [c for c in (spec.id, spec.date, spec.arr) if c]
    _require(frame, named, "--id/--date/--arr")
    _require(frame, list(spec.drop), "--drop")
    _require(frame, list(spec.categorical), "--categorical")
    has_label = spec.label in frame.columns
    if require_label and not has_label:
        _require(frame, [spec.label], "--label")
    if spec.label in (spec.id, spec.date) or spec.label in spec.drop:
        raise ChurnmlError(f"--label {spec.label!r} is also given as --id, --date or --drop")
    if frame.empty:
        raise ChurnmlError("the table has no rows")

    reserved = {spec.label, spec.id, spec.date, *spec.drop}
    columns = [str(c) for c in frame.columns if c not in reserved]
    if not columns:
        raise ChurnmlError(
            "the table has no feature column left (everything is the label, key, date or dropped)"
        )
    _require(frame, list(spec.health), "--health")
    bad_health = [c for c in spec.health if c not in columns]
    if bad_health:
        raise ChurnmlError(f"--health: {', '.join(bad_health)} is not a feature column")

    y = map_label(frame[spec.label], spec.label, spec.positive) if has_label and require_label else None
    keep = y.notna().to_numpy() if y is not None else np.ones(len(frame), dtype=bool)
    table = frame.loc[keep]

    if spec.id:
        ids = table[spec.id].astype("str")
        if table[spec.id].isna().any():
            raise ChurnmlError(f"--id {spec.id!r}: {int(table[spec.id].isna().sum())} row(s) have no id")
        dup = ids[ids.duplicated()]
        if len(dup):
            raise ChurnmlError(
                f"--id {spec.id!r} is not unique: {len(dup):,} repeated value(s), e.g. {dup.iloc[0]!r}"
            )
    else:
        ids = pd.Series(np.flatnonzero(keep).astype(str), index=table.index)
    if spec.date:
        raw = table[spec.date]
        cutoff = pd.to_datetime(raw, errors="coerce", format="mixed")
        bad = raw.notna() & cutoff.isna() | raw.isna()
        if bad.any():
            example = raw[bad].iloc[0]
            raise ChurnmlError(
                f"--date {spec.date!r}: {int(bad.sum())} cell(s) are not dates, e.g. {example!r}"
            )
        if getattr(cutoff.dt, "tz", None) is not None:
            cutoff = cutoff.dt.tz_convert("UTC").dt.tz_localize(None)
        cutoff = cutoff.dt.normalize().astype("datetime64[us]")
    else:
        day = pd.Timestamp(spec.as_of or dt.datetime.now(dt.UTC).date().isoformat()).normalize()
        cutoff = pd.Series(day, index=table.index).astype("datetime64[us]")

    out: dict[str, Any] = {"account_id": pd.array(ids.to_numpy(), dtype="str"), "cutoff": cutoff.to_numpy()}
    categorical = set()
    if model is not None:
        _require(frame, list(model.features), "the model's features")
        columns = list(model.features)
    for col in columns:
        if model is not None and col not in model.categories:
            values, is_cat = _numbers(table[col], f"column {col!r}", ids), False
        else:
            forced = col in spec.categorical or (model is not None and col in model.categories)
            values, is_cat = _feature_column(table[col], col, forced)
        if is_cat:
            categorical.add(col)
            out[col] = pd.array(values.to_numpy(dtype=object), dtype="str")
        else:
            out[col] = values.to_numpy()
    for col in spec.health:
        if col in categorical:
            raise ChurnmlError(f"--health {col!r} is a categorical column; a health signal must be numeric")
    features = pd.DataFrame(out)
    if model is not None:  # scored, explained or evaluated: a new value does not stop the batch
        features, unseen = unseen_as_missing(features, {model.target: model})
        if unseen:
            log.warning("%s", unseen_line(unseen, "rows"))
    arr = (
        _numbers(table[spec.arr], f"--arr {spec.arr!r}", ids).to_numpy(float)
        if spec.arr
        else np.full(len(table), np.nan)
    )
    y_kept = y[keep].astype(int).to_numpy() if y is not None else np.zeros(len(table), int)
    counts = {
        "rows": len(frame),
        "unlabeled_rows_left_out": int((~keep).sum()),
        "labeled_rows": int(keep.sum()) if y is not None else 0,
        "positives": int(y_kept.sum()) if y is not None else 0,
    }
    return TabularData(
        features=features,
        y=y_kept,
        columns=columns,
        categories=_categorical_levels(features, columns),
        arr=arr,
        counts=counts,
    )


# ---------------------------------------------------------------------------------------------- protocol


def label_name(spec: TabularSpec) -> str:
    """The outcome's name recorded on the model: the label column and its positive value."""
    return f"{spec.label}=={spec.positive}" if spec.positive is not None else spec.label


def _stratified_holdout(y: np.ndarray, fraction: float, seed: int) -> tuple[np.ndarray, np.ndarray]:
    from sklearn.model_selection import train_test_split

    idx = np.arange(len(y))
    if min(np.bincount(y, minlength=2)) < 2:
        raise ChurnmlError("tabular: too few rows of the rarer class to carve a validation set (need 2)")
    train, valid = train_test_split(idx, test_size=fraction, stratify=y, random_state=seed)
    return np.sort(train), np.sort(valid)


def _latest_share(dates: np.ndarray, share: float) -> np.ndarray:
    """A mask of the rows of the latest dates holding about ``share`` of the rows (whole dates, at least one)."""
    days = np.sort(np.unique(dates))
    counts = pd.Series(dates).value_counts().reindex(days).to_numpy()
    from_end = np.cumsum(counts[::-1])
    k = int(np.searchsorted(from_end, share * len(dates)) + 1)
    k = min(max(k, 1), len(days) - 1) if len(days) > 1 else 1
    first = days[len(days) - k]
    return dates >= first


def time_split(dates: pd.Series, spec: TabularSpec) -> pd.Series:
    """``train`` / ``validation`` / ``test`` per row by date (module docstring)."""
    values = pd.to_datetime(dates).to_numpy()
    if len(np.unique(values)) < 3:
        raise ChurnmlError(
            f"--date {spec.date!r}: {len(np.unique(values))} distinct date(s); a time split needs at least 3 "
            "(leave out --date for stratified k-fold)"
        )
    test = _latest_share(values, spec.test_fraction)
    rest = ~test
    valid = np.zeros(len(values), dtype=bool)
    valid[rest] = _latest_share(values[rest], spec.validation_fraction)
    period = np.where(test, "test", np.where(valid, "validation", "train"))
    if not (period == "train").any():
        raise ChurnmlError(
            f"--date {spec.date!r}: no date is left for training after the test and validation sets"
        )
    return pd.Series(period, index=dates.index)


def _rows(data: TabularData, idx: np.ndarray) -> pd.DataFrame:
    return data.features.iloc[idx].assign(y=data.y[idx])


def _check_classes(y: np.ndarray, what: str) -> None:
    if not 0 < y.sum() < len(y):
        raise ChurnmlError(
            f"tabular: the {what} ({len(y):,} rows) has {int(y.sum())} positive(s); both outcomes are needed"
        )


def _fit(
    data: TabularData,
    train: np.ndarray,
    valid: np.ndarray,
    spec: TabularSpec,
    model_cfg: ModelConfig,
    evaluation_cfg: EvaluationConfig,
    info: dict[str, Any],
) -> tuple[TrainedModel, Baselines]:
    _check_classes(data.y[train], "training set")
    train_rows = _rows(data, train)
    if spec.date:
        _check_classes(data.y[valid], "validation set")
        valid_rows = _rows(data, valid)
        model = fit_rows(
            train_rows,
            valid_rows,
            spec.target,
            label_name(spec),
            data.columns,
            data.categories,
            model_cfg,
            info=info,
        )
    else:
        # no later period: every training row trains (inner folds choose and calibrate, then a refit);
        # the baselines keep the stratified carve-out below for their calibration
        model = fit_crossfit(
            _rows(data, np.sort(np.concatenate([train, valid]))),
            spec.target,
            label_name(spec),
            data.columns,
            data.categories,
            model_cfg,
            info=info,
        )
        valid_rows = _rows(data, valid)
    cfg = dataclasses.replace(
        evaluation_cfg,
        health_score=dataclasses.replace(evaluation_cfg.health_score, weights=dict(spec.health)),
    )
    return model, fit_baselines_rows(model, train_rows, valid_rows, cfg)


@dataclass
class TabularResult:
    """The evaluation protocol's outcome.

    Attributes:
        evaluation: metrics and curves of every model on the held-out rows (split ``test``: the pooled
            out-of-fold predictions, or the time split's test period).
        protocol: what was done, in words and numbers (kind, folds or dates, row counts).
        folds: per fold and model, the metrics of that fold's held-out rows (one "fold" for a time split).
    """

    evaluation: Evaluation
    protocol: dict[str, Any]
    folds: pd.DataFrame

    def document(self) -> dict[str, Any]:
        """The metrics JSON: ``metrics_json`` of the evaluation plus ``protocol`` and ``folds``."""
        doc = metrics_json(self.evaluation)
        doc["protocol"] = self.protocol
        doc["folds"] = json.loads(self.folds.to_json(orient="records"))
        return doc


def evaluate_table(
    data: TabularData, spec: TabularSpec, model_cfg: ModelConfig, evaluation_cfg: EvaluationConfig
) -> TabularResult:
    """Held-out predictions of the model and its baselines: stratified k-fold, or a time split with ``date``.

    Returns:
        The :class:`TabularResult`; every metric comes from :func:`churnml.modeling.metrics.build_evaluation`.
    """
    from sklearn.model_selection import StratifiedKFold

    n = len(data.y)
    parts: list[tuple[int, np.ndarray, np.ndarray, np.ndarray]] = []  # fold, train, valid, test
    if spec.date:
        period = time_split(data.features["cutoff"], spec).to_numpy()
        test, valid, train = (np.flatnonzero(period == p) for p in ("test", "validation", "train"))
        _check_classes(data.y[test], "test set")
        parts.append((0, train, valid, test))
        days = data.features["cutoff"]
        protocol = {
            "kind": "time_split",
            "date_column": spec.date,
            "train": _date_range(days.iloc[train]),
            "validation": _date_range(days.iloc[valid]),
            "test": _date_range(days.iloc[test]),
        }
    else:
        counts = np.bincount(data.y, minlength=2)
        if counts.min() < spec.folds:
            raise ChurnmlError(
                f"tabular: {counts.min()} row(s) of the rarer class, fewer than --folds={spec.folds}"
            )
        kfold = StratifiedKFold(n_splits=spec.folds, shuffle=True, random_state=spec.seed)
        for k, (rest, test) in enumerate(kfold.split(np.zeros(n), data.y)):
            inner_train, inner_valid = _stratified_holdout(
                data.y[rest], spec.validation_fraction, spec.seed + k
            )
            parts.append((k, rest[inner_train], rest[inner_valid], test))
        protocol = {"kind": "stratified_kfold", "folds": spec.folds, "seed": spec.seed}
    protocol |= {
        "validation_fraction": spec.validation_fraction,
        "validation_use": "early stopping and calibration, carved from each fold's training rows",
        **({"test_fraction": spec.test_fraction} if spec.date else {}),
        "rows": int(n),
        "positives": int(data.y.sum()),
        "features": len(data.columns),
        "categorical_features": sorted(data.categories),
    }

    pieces, fold_rows = [], []
    n_train: list[int] = []
    chosen: list[dict[str, Any]] = []
    tuned: list[dict[str, Any]] = []
    for k, train, valid, test in parts:
        model, baselines = _fit(data, train, valid, spec, model_cfg, evaluation_cfg, {"fold": k})
        n_train.append(len(train))
        chosen.append({"fold": k, **model.info["selection"]})
        if model.info.get("tuning"):  # the nested search's verdict in this fold (its trial history left out)
            tuned.append({"fold": k, **{a: b for a, b in model.info["tuning"].items() if a != "history"}})
        test_rows = data.features.iloc[test]
        predictions = {"lightgbm": model.predict_proba(test_rows), **baselines.predict_proba(test_rows)}
        base = _score_base(data, test, "test").assign(fold=k)
        for name, p in predictions.items():
            pieces.append(base.assign(model=name, score=p))
    scores = pd.concat(pieces, ignore_index=True)
    scores = scores[
        ["model", "split", "account_id", "cutoff", "y", "score", "arr", "segment", "touch_model", "fold"]
    ]
    evaluation = build_evaluation(
        scores.drop(columns="fold"), evaluation_cfg, spec.target, label_name(spec), int(np.mean(n_train))
    )
    for (k, name), part in scores.groupby(["fold", "model"], sort=True):
        values = compute_metrics(
            part["y"].to_numpy(float),
            part["score"].to_numpy(float),
            part["arr"].to_numpy(float),
            part["cutoff"].to_numpy(),
            evaluation_cfg,
        )
        fold_rows.append(
            {
                "fold": int(k),
                "model": name,
                "n": len(part),
                "positives": int(part["y"].sum()),
                **{m: (None if not math.isfinite(v) else v) for m, v in values.items()},
            }
        )
    protocol["selection"] = chosen
    if tuned:
        protocol["tuning"] = tuned
    return TabularResult(evaluation=evaluation, protocol=protocol, folds=pd.DataFrame(fold_rows))


def _date_range(days: pd.Series) -> dict[str, Any]:
    return {"from": str(days.min().date()), "to": str(days.max().date()), "rows": len(days)}


def _score_base(data: TabularData, idx: np.ndarray, split: str) -> pd.DataFrame:
    rows = data.features.iloc[idx]
    return pd.DataFrame(
        {
            "split": split,
            "account_id": rows["account_id"].to_numpy(),
            "cutoff": rows["cutoff"].to_numpy(),
            "y": data.y[idx].astype(int),
            "arr": data.arr[idx],
            "segment": NO_GROUP,
            "touch_model": NO_GROUP,
        }
    )


def fit_final(
    data: TabularData,
    spec: TabularSpec,
    model_cfg: ModelConfig,
    evaluation_cfg: EvaluationConfig,
    protocol: dict[str, Any] | None = None,
) -> TrainedModel:
    """The model to explain and score with: refit on every labeled row (validation carved as in the protocol)."""
    if spec.date:
        period = np.where(
            _latest_share(data.features["cutoff"].to_numpy(), spec.validation_fraction), "v", "t"
        )
        train, valid = np.flatnonzero(period == "t"), np.flatnonzero(period == "v")
    else:
        train, valid = _stratified_holdout(data.y, spec.validation_fraction, spec.seed)
    info = {
        "split": {"train": [], "validation": [], "test": []},
        "mode": "tabular",
        "tabular": spec.to_dict(),
        "protocol": protocol or {},
    }
    model, _ = _fit(data, train, valid, spec, model_cfg, evaluation_cfg, info)
    return model


# ---------------------------------------------------------------------------------------- saving, logging


def save_run(folder: Path, model: TrainedModel, spec: TabularSpec, result: TabularResult) -> Path:
    """Write ``folder/model/`` (the saved model), ``tabular.json``, ``metrics.json`` and ``plots/<curve>.csv``."""
    folder = Path(folder)
    model.save(folder / MODEL_DIR)
    (folder / SPEC_FILE).write_text(json.dumps(spec.to_dict(), indent=2) + "\n", encoding="utf-8")
    doc = result.document()
    (folder / METRICS_FILE).write_text(json.dumps(doc, indent=2, allow_nan=False) + "\n", encoding="utf-8")
    plots = folder / PLOTS_DIR
    plots.mkdir(parents=True, exist_ok=True)
    for name, table in plot_tables(result.evaluation).items():
        table.to_csv(plots / f"{name}.csv", index=False, float_format="%.6g")
    return folder


def load_run(folder: Path) -> tuple[TrainedModel, TabularSpec]:
    """The model and the table spec written by :func:`save_run`."""
    folder = Path(folder)
    if not (folder / SPEC_FILE).is_file():
        raise ChurnmlError(
            f"{folder}: not a tabular model folder ({SPEC_FILE} missing; run `churnml tabular train`)"
        )
    spec = TabularSpec.from_dict(json.loads((folder / SPEC_FILE).read_text(encoding="utf-8")))
    return TrainedModel.load(folder / MODEL_DIR), spec


def log_run(
    model: TrainedModel,
    result: TabularResult,
    data: TabularData,
    table: Path,
    params: dict[str, Any],
    tracking: TrackingConfig,
    evaluation_cfg: EvaluationConfig,
    *,
    root: Path | None = None,
) -> str:
    """Log the run to MLflow (experiment ``<experiment>-tabular``, never registered); returns the run id."""

    tabular_tracking = dataclasses.replace(
        tracking, experiment=f"{tracking.experiment}-tabular", register=False
    )
    run_id, _ = log_training_run(
        model,
        result.evaluation,
        {**params, "protocol": result.protocol},
        data_version(Path(table), root),
        input_example=data.features[model.features].head(5),
        evaluation_cfg=evaluation_cfg,
        tracking=tabular_tracking,
        root=root,
        run_name=f"tabular-{Path(table).name}",
    )
    return run_id


# -------------------------------------------------------------------------------- explaining and scoring


def explain_table(model: TrainedModel, data: TabularData, *, top_n: int | None = None) -> pd.DataFrame:
    """Exact TreeSHAP per row and feature (:func:`churnml.explain.contributions.explain_accounts`), with a reason per row.

    ``reason`` reads ``<feature> = <value>`` and the probability points it adds or removes; the event
    pipeline's worded reasons need its feature vocabulary, which an arbitrary table does not have.
    """

    out = explain_accounts(model, data.features, top_n=top_n)
    out["reason"] = _reason_texts(out, model.target)
    return out


def _reason_texts(rows: pd.DataFrame, target: str, also: pd.Series | None = None) -> pd.Series:
    """``<feature> = <value> (raises <target> risk by x points)``, naming the redundant copies it stands for."""
    points = rows["probability_points"].to_numpy(float) * 100
    values = rows["feature_value"].astype("object").where(rows["feature_value"].notna(), "missing")
    others = also.to_numpy() if also is not None else [()] * len(rows)
    copies = [f" (with {', '.join(o)})" if len(o) else "" for o in others]
    return pd.Series(
        [
            f"{f} = {v}{c} ({'raises' if p > 0 else 'lowers'} {target} risk by {abs(p):.1f} points)"
            for f, v, p, c in zip(rows["feature"].to_numpy(), values.to_numpy(), points, copies, strict=True)
        ],
        index=rows.index,
        dtype="str",
    )


def grouped_explanations(model: TrainedModel, explained: pd.DataFrame) -> pd.DataFrame:
    """One row per account and driver: a redundant group's rows summed into its strongest member's row.

    ``probability_points`` and ``shap_value`` are the group's sums (so they still add up to p - p0 and to
    the log-odds); ``feature`` and ``feature_value`` are the account's strongest member's (largest
    ``|shap_value|``); ``grouped_with`` lists the group's other members (empty for a lone feature).
    """
    key = merged_keys({f: f for f in model.features}, redundant_groups_of(model))
    members: dict[str, list[str]] = {}
    for f, k in key.items():
        members.setdefault(k, []).append(f)
    ex = explained.assign(_key=explained["feature"].map(key), _abs=explained["shap_value"].abs())
    keys = ["account_id", "as_of", "_key"]
    sums = ex.groupby(keys, sort=False)[["probability_points", "shap_value"]].sum()
    strongest = ex.sort_values("_abs", ascending=False, kind="stable").drop_duplicates(keys).set_index(keys)
    out = strongest.drop(columns=["probability_points", "shap_value"]).join(sums).reset_index()
    out["grouped_with"] = [
        tuple(m for m in members[k] if m != f) for k, f in zip(out["_key"], out["feature"], strict=True)
    ]
    return out.drop(columns=["_key", "_abs"])


def score_table(
    model: TrainedModel, data: TabularData, thresholds: dict[str, float], *, top: int = 3
) -> pd.DataFrame:
    """Probability, risk tier and the top drivers raising it, per row.

    Redundant features (``model.info["redundant_groups"]``: near-copies of one quantity, see
    :mod:`churnml.modeling.redundancy`) are one driver: their points summed, named by the account's strongest
    member, the others listed in ``grouped_with``.

    Returns:
        ``account_id``, ``as_of``, ``probability``, ``risk_tier``, ``top_reasons`` (JSON list of the
        ``top`` drivers with positive points: feature, value, probability_points, reason, and
        ``grouped_with`` for a group).
    """

    explained = grouped_explanations(model, explain_accounts(model, data.features))
    explained["reason"] = _reason_texts(explained, model.target, explained["grouped_with"])
    raising = explained[explained["probability_points"] > 0].sort_values(
        ["account_id", "probability_points"], ascending=[True, False], kind="stable"
    )
    raising = raising.groupby("account_id", sort=False).head(top)
    reasons = {
        account: json.dumps(
            [
                {
                    "feature": r.feature,
                    "value": r.feature_value,
                    "probability_points": round(float(r.probability_points), 6),
                    "reason": r.reason,
                }
                | ({"grouped_with": list(r.grouped_with)} if len(r.grouped_with) else {})
                for r in rows.itertuples()
            ]
        )
        for account, rows in raising.groupby("account_id", sort=False)
    }
    probability = model.predict_proba(data.features)
    ids = data.features["account_id"].astype("str")
    return pd.DataFrame(
        {
            "account_id": ids.to_numpy(),
            "as_of": data.features["cutoff"].to_numpy(),
            "probability": probability,
            "risk_tier": risk_tier(probability, thresholds),
            "top_reasons": pd.array([reasons.get(a, "[]") for a in ids], dtype="str"),
        }
    )
