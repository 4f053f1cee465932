"""Backtests: score past as-of dates as the models of that time would have, and record them as backtest runs.

Point in time, twice over:

- **Data.** Each as-of is scored by :func:`churnml.scoring.batch.score_accounts`, whose features see only rows
  dated before the as-of (:mod:`churnml.dataset.spine`); labels are never read at scoring time.
- **Models.** A model *exists* at an as-of when every label it was fitted or calibrated on had matured by
  then: its :func:`trained_through` date (the last train/validation cutoff + horizon + grace: the latest day
  any of its labels looked at, grace included, since a churn label waits for a late renewal) is on or
  before the as-of. With ``retrain="as_of"`` each as-of uses the latest registered version that existed
  then; when none did, a model is trained walk-forward as the pipeline would have trained it on that day
  (features up to the as-of, labels computed with the as-of as the data end, so only rows with
  ``cutoff + horizon + grace <= as_of`` are labeled) and used in memory as version ``backtest-<as_of>``.
  With ``retrain="fixed"`` the model chosen at the first as-of scores every later one (decay over time).

What the monitor needs about each version used (training end, test ROC-AUC, score reference) is kept as a
:class:`ModelCard`, written to ``<paths.models>/cards/<target>-<version>.json``.
"""

from __future__ import annotations

import copy
import json
import logging
import math
import re
from collections.abc import Callable, Mapping, Sequence
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

import pandas as pd

from churnml.config import Config, LabelsConfig, PathsConfig, SplitConfig, repo_root
from churnml.dataset.labels import build_labels
from churnml.dataset.spine import build_spine, data_range, to_cutoffs, training_cutoffs
from churnml.errors import ChurnmlError
from churnml.features.engine import build_features
from churnml.modeling.metrics import roc_auc
from churnml.modeling.model import TrainedModel, train_model
from churnml.modeling.registry import load_champion, model_versions
from churnml.modeling.split import Split, labeled_frame
from churnml.names import KEYS, TARGETS, label_column
from churnml.scoring.batch import score_accounts

log = logging.getLogger(__name__)

RETRAIN_MODES = ("as_of", "fixed")
CARDS_FOLDER = "cards"
WALK_FORWARD_PREFIX = "backtest-"
DAYS_PER_MONTH = 365.25 / 12
RUN_COLUMNS = [
    "as_of", "status", "run_id", "churn_model_version", "expansion_model_version", "churn_source",
    "expansion_source", "churn_trained_through", "expansion_trained_through", "months_since_training",
    "scores_rows", "score_psi", "drift_warnings", "reason",
]  # fmt: skip


# ------------------------------------------------------------------------------------------------ cards


@dataclass
class ModelCard:
    """What backtests and monitoring need to know about one model version, without the model itself.

    Attributes:
        target: ``churn`` or ``expansion``.
        version: registry version, or ``backtest-<as_of>`` for a walk-forward model.
        trained_through: the first day by which every label the model was fitted or calibrated on had
            matured (:func:`trained_through`); the model exists from then on.
        test_roc_auc: ROC-AUC on its own test period at training (NaN when unknown).
        test_n: rows of that test period (NaN when unknown).
        test_positives: positives among them (NaN when unknown).
        score_reference: decile ``edges`` and ``fractions`` of its calibrated score on the validation
            period (the reference of score PSI; empty when unknown).
        source: ``registry``, ``walk_forward`` or ``given``.
    """

    target: str
    version: str
    trained_through: pd.Timestamp
    test_roc_auc: float = math.nan
    test_n: float = math.nan
    test_positives: float = math.nan
    score_reference: dict[str, list[float]] = field(default_factory=dict)
    source: str = "given"

    def months_since_training(self, as_of: pd.Timestamp) -> float:
        """Months from :attr:`trained_through` to ``as_of`` (negative when used before it existed)."""
        return (pd.Timestamp(as_of) - self.trained_through).days / DAYS_PER_MONTH

    def to_dict(self) -> dict[str, Any]:
        """JSON-friendly form (dates ISO, NaN as null)."""
        out = asdict(self)
        out["trained_through"] = self.trained_through.date().isoformat()
        for name in ("test_roc_auc", "test_n", "test_positives"):
            value = float(getattr(self, name))
            out[name] = value if math.isfinite(value) else None
        return out

    @classmethod
    def from_dict(cls, data: Mapping[str, Any]) -> ModelCard:
        """Inverse of :meth:`to_dict`."""

        def number(name: str) -> float:
            value = data.get(name)
            return math.nan if value is None else float(value)

        return cls(
            target=str(data["target"]),
            version=str(data["version"]),
            trained_through=pd.Timestamp(data["trained_through"]).as_unit("us"),
            test_roc_auc=number("test_roc_auc"),
            test_n=number("test_n"),
            test_positives=number("test_positives"),
            score_reference={k: list(v) for k, v in (data.get("score_reference") or {}).items()},
            source=str(data.get("source", "given")),
        )


def trained_through(model: TrainedModel, labels: LabelsConfig) -> pd.Timestamp:
    """The first day by which every label the model was fitted or calibrated on had matured.

    That is the latest train or validation cutoff + horizon + grace: the latest day any of those labels
    looked at (the churn label waits ``grace`` days after the horizon for a late renewal). Test labels
    are not counted: they chose nothing in the model.

    Raises:
        ChurnmlError: when the model's horizon is not the configured one (its labels would mature on
            another schedule).
    """
    if model.label_column != label_column(model.target, labels.horizon_days):
        raise ChurnmlError(
            f"{model.target} model predicts {model.label_column}, but labels.horizon_days is {labels.horizon_days}"
        )
    split = model.split
    seen = [*split.train, *split.validation]
    if not seen:
        raise ChurnmlError(f"{model.target} model: its split records no train or validation cutoff")
    return max(seen) + pd.Timedelta(days=labels.horizon_days + labels.grace_days)


def card_of(
    model: TrainedModel,
    version: str,
    labels: LabelsConfig,
    *,
    test_roc_auc: float = math.nan,
    test_n: float = math.nan,
    test_positives: float = math.nan,
    source: str = "given",
) -> ModelCard:
    """The :class:`ModelCard` of a loaded model (test numbers as measured when it was evaluated)."""
    reference = model.distributions.get("score", {})
    return ModelCard(
        target=model.target,
        version=str(version),
        trained_through=trained_through(model, labels),
        test_roc_auc=float(test_roc_auc),
        test_n=float(test_n),
        test_positives=float(test_positives),
        score_reference={k: list(reference[k]) for k in ("edges", "fractions") if k in reference},
        source=source,
    )


def cards_dir(root: Path, paths: PathsConfig) -> Path:
    """Where cards are kept: ``<root>/<paths.models>/cards``."""
    return Path(root) / paths.models / CARDS_FOLDER


def _card_file(folder: Path, target: str, version: str) -> Path:
    safe = re.sub(r"[^A-Za-z0-9_.-]", "_", f"{target}-{version}")
    return Path(folder) / f"{safe}.json"


def save_card(card: ModelCard, folder: Path) -> Path:
    """Write ``folder/<target>-<version>.json``."""
    path = _card_file(folder, card.target, card.version)
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps(card.to_dict(), indent=1, allow_nan=False) + "\n", encoding="utf-8")
    return path


def load_card(folder: Path, target: str, version: str) -> ModelCard | None:
    """The card saved for a version, or None."""
    path = _card_file(folder, target, version)
    if not path.is_file():
        return None
    try:
        return ModelCard.from_dict(json.loads(path.read_text(encoding="utf-8")))
    except (json.JSONDecodeError, KeyError, TypeError, ValueError):
        raise ChurnmlError(f"{path}: not a model card; delete it and rerun the backtest") from None


# ------------------------------------------------------------------------------------------- candidates


@dataclass
class Candidate:
    """A model version a backtest may use from its :attr:`trained_through` day on.

    Attributes:
        target: ``churn`` or ``expansion``.
        version: its version.
        trained_through: the day it exists from (:func:`trained_through`).
        test_roc_auc: its test ROC-AUC at training (NaN when unknown).
        load: returns the model (called once, when first used).
        source: ``registry`` or ``given``.
        test_n: rows of its test period (NaN when unknown).
        test_positives: positives among them (NaN when unknown).
    """

    target: str
    version: str
    trained_through: pd.Timestamp
    test_roc_auc: float
    load: Callable[[], TrainedModel]
    source: str = "given"
    test_n: float = math.nan
    test_positives: float = math.nan


def candidate_of(
    model: TrainedModel,
    version: str,
    labels: LabelsConfig,
    test_roc_auc: float = math.nan,
    test_n: float = math.nan,
    test_positives: float = math.nan,
) -> Candidate:
    """A model in memory as a :class:`Candidate` (e.g. the one the evaluate stage just tested)."""
    return Candidate(
        target=model.target,
        version=str(version),
        trained_through=trained_through(model, labels),
        test_roc_auc=float(test_roc_auc),
        load=lambda: model,
        test_n=float(test_n),
        test_positives=float(test_positives),
    )


def registry_candidates(cfg: Config, root: Path) -> list[Candidate]:
    """Every registered version of both targets whose training run logged its split."""

    out: list[Candidate] = []
    grace = pd.Timedelta(days=cfg.labels.horizon_days + cfg.labels.grace_days)
    for target in TARGETS:
        for row in model_versions(target, root=root, cfg=cfg.tracking).itertuples(index=False):
            try:
                split = Split.from_dict(json.loads(row.split))
            except (json.JSONDecodeError, KeyError, TypeError, ValueError):
                log.warning(
                    "%s v%s: no split logged with its training run; not used by backtests",
                    target,
                    row.version,
                )
                continue
            seen = [*split.train, *split.validation]
            if not seen:
                continue

            def load(target: str = target, version: str = str(row.version)) -> TrainedModel:
                return load_champion(target, version, root=root, cfg=cfg.tracking)[0]

            out.append(
                Candidate(
                    target=target,
                    version=str(row.version),
                    trained_through=max(seen) + grace,
                    test_roc_auc=float(row.test_roc_auc),
                    load=load,
                    source="registry",
                    test_n=float(row.test_n),
                    test_positives=float(row.test_positives),
                )
            )
    return out


def _latest_existing(candidates: Sequence[Candidate], target: str, as_of: pd.Timestamp) -> Candidate | None:
    """The most recently trained candidate of a target that existed at ``as_of`` (later version on ties)."""
    existing = [c for c in candidates if c.target == target and c.trained_through <= as_of]
    if not existing:
        return None

    def order(c: Candidate) -> tuple:
        return (c.trained_through, int(c.version) if c.version.isdigit() else -1, c.version)

    return max(existing, key=order)


@dataclass(frozen=True)
class Choice:
    """The model an as-of uses: a candidate, or else the one trained walk-forward at :attr:`trained_at`."""

    candidate: Candidate | None
    trained_at: pd.Timestamp | None = None


def plan_models(
    days: Sequence[pd.Timestamp], candidates: Sequence[Candidate], retrain: str
) -> list[dict[str, Choice]]:
    """Per as-of, the model each target uses.

    ``as_of``: the latest candidate that existed at that as-of, else a walk-forward model trained at it.
    ``fixed``: the first as-of's choice for every as-of.
    """
    if retrain not in RETRAIN_MODES:
        raise ChurnmlError(f"--retrain {retrain!r}: expected one of {', '.join(RETRAIN_MODES)}")
    out: list[dict[str, Choice]] = []
    for as_of in days:
        if retrain == "fixed" and out:
            out.append(out[0])
            continue
        picks = {t: _latest_existing(candidates, t, as_of) for t in TARGETS}
        out.append({t: Choice(pick, None if pick is not None else as_of) for t, pick in picks.items()})
    return out


# ---------------------------------------------------------------------------------------------- as-ofs


def as_of_dates(start: Any, end: Any, every: str = "1mo") -> list[pd.Timestamp]:
    """As-of dates from ``start`` to ``end`` (both included when on the grid) every ``every``.

    Args:
        start: first as-of (a whole day).
        end: last as-of allowed.
        every: ``<n>d`` (days), ``<n>w`` (weeks) or ``<n>mo`` (calendar months from ``start``; a day of
            month past the month's end falls on its last day).

    Raises:
        ChurnmlError: on a bad step, a start after the end, or dates that are not whole days.
    """

    match = re.fullmatch(r"\s*(\d+)\s*(d|w|mo)\s*", str(every))
    if not match or int(match.group(1)) < 1:
        raise ChurnmlError(f"--every {every!r}: expected <n>d, <n>w or <n>mo with n >= 1 (e.g. 1mo)")
    n, unit = int(match.group(1)), match.group(2)
    first, last = to_cutoffs([start])[0], to_cutoffs([end])[0]
    if first > last:
        raise ChurnmlError(f"backtest: --from {first.date()} is after --to {last.date()}")
    out, k = [], 0
    while True:
        if unit == "mo":
            day = first + pd.DateOffset(months=n * k)
        else:
            day = first + pd.Timedelta(days=n * k * (7 if unit == "w" else 1))
        if day > last:
            break
        out.append(pd.Timestamp(day).as_unit("us"))
        k += 1
    return out


# ------------------------------------------------------------------------------------------ walk-forward


class _WalkForward:
    """Trains the model the pipeline would have trained at an as-of; features are built once, lazily."""

    def __init__(
        self, tables: Mapping[str, pd.DataFrame], cfg: Config, split: SplitConfig, last: pd.Timestamp
    ):
        self.tables, self.cfg, self.split, self.last = tables, cfg, split, last
        self._features: pd.DataFrame | None = None
        self._trained: dict[tuple[pd.Timestamp, str], tuple[TrainedModel, dict[str, float]]] = {}

    def features(self) -> pd.DataFrame:

        if self._features is None:
            # Each cutoff's features see only rows before it (build_features), so one table built on the
            # whole history serves every as-of: the rows of cutoffs <= as_of are what it would have built.
            cutoffs = [c for c in training_cutoffs(self.tables, self.cfg.spine) if c <= self.last]
            if not cutoffs:
                raise ChurnmlError(f"no training cutoff on or before {self.last.date()}")
            spine = build_spine(self.tables["subscriptions"], cutoffs)
            self._features = build_features(dict(self.tables), spine, self.cfg.features)
        return self._features

    def model(self, as_of: pd.Timestamp, target: str) -> tuple[TrainedModel, dict[str, float]]:
        """(model, its test numbers: test_roc_auc, test_n, test_positives) trained on what was known at ``as_of``."""

        key = (as_of, target)
        if key not in self._trained:
            features = self.features()
            features = features[features["cutoff"] <= as_of].reset_index(drop=True)
            # the labels as computed on that day: the as-of is the data end, so later rows stay unlabeled
            labels = build_labels(self.tables["subscriptions"], features[list(KEYS)], self.cfg.labels, as_of)
            horizon = self.cfg.labels.horizon_days
            try:
                model = train_model(features, labels, target, self.cfg.model, self.split, horizon)
            except ChurnmlError as exc:
                raise ChurnmlError(f"walk-forward {target} model at {as_of.date()}: {exc}") from None
            test = labeled_frame(features, labels, model.label_column)
            test = test[test["cutoff"].isin(model.split.test)]
            y = test["y"].to_numpy(float)
            numbers = {
                "test_roc_auc": roc_auc(y, model.predict_proba(test)),
                "test_n": float(len(y)),
                "test_positives": float(y.sum()),
            }
            self._trained[key] = (model, numbers)
        return self._trained[key]


# --------------------------------------------------------------------------------------------- backtest


@dataclass
class BacktestResult:
    """What a backtest scored and wrote.

    Attributes:
        runs: one row per as-of (:data:`RUN_COLUMNS`): status ``succeeded``, ``skipped`` (no model
            existed and none could be trained) or ``failed`` (scoring refused, e.g. an unseen category),
            with the reason.
        scores: every score row written (``churn_scores`` layout).
        cards: the card of every model version used, by (target, version).
    """

    runs: pd.DataFrame
    scores: pd.DataFrame
    cards: dict[tuple[str, str], ModelCard]


def _replay_config(cfg: Config) -> Config:
    """The config a backtest scores with: the drift guard reports but never stops a replay.

    A replay shows what the models would have scored; the monitor reports score PSI per as-of instead.
    """
    out = copy.deepcopy(cfg)
    out.scoring.drift.psi_fail = math.inf
    out.scoring.drift.feature_psi_fail = math.inf
    return out


def backtest(
    tables: Mapping[str, pd.DataFrame],
    cfg: Config,
    start: Any,
    end: Any,
    every: str = "1mo",
    *,
    root: Path | None = None,
    warehouse_url: str | None = None,
    retrain: str = "as_of",
    candidates: Sequence[Candidate] | None = None,
    split: SplitConfig | None = None,
    write: bool = True,
) -> BacktestResult:
    """Score every as-of from ``start`` to ``end`` as the models of that time would have.

    Args:
        tables: validated contract tables (the whole history; each as-of sees only rows before it).
        cfg: the whole configuration (features, labels, model, spine, scoring, warehouse, tracking, paths).
        start: first as-of.
        end: last as-of (at most the data end).
        every: the step between as-ofs (:func:`as_of_dates`).
        root: repository root (MLflow store, warehouse file, cards folder).
        warehouse_url: overrides ``cfg.warehouse``.
        retrain: ``as_of`` (each as-of: the latest version that existed then, else a walk-forward model)
            or ``fixed`` (the model chosen at the first as-of scores them all).
        candidates: the versions that may be used; default every registered version (MLflow registry).
        split: the out-of-time split of walk-forward training (default ``cfg.split``).
        write: False scores without writing runs, scores or cards.

    Returns:
        The :class:`BacktestResult`; runs are written to the warehouse with ``run_kind="backtest"``.

    Raises:
        ChurnmlError: on a bad mode or range, when ``fixed`` finds no model at the first as-of, or when
            no as-of could be scored.
    """

    if retrain not in RETRAIN_MODES:
        raise ChurnmlError(f"--retrain {retrain!r}: expected one of {', '.join(RETRAIN_MODES)}")
    root = Path(root or repo_root())
    days = as_of_dates(start, end, every)
    data_end = data_range(tables)[1]
    if days[-1] > data_end:
        raise ChurnmlError(f"backtest: --to {days[-1].date()} is after the data end {data_end.date()}")
    pool = list(candidates) if candidates is not None else registry_candidates(cfg, root)
    plan = plan_models(days, pool, retrain)
    walk = _WalkForward(tables, cfg, split or cfg.split, days[-1])
    replay = _replay_config(cfg)
    loaded: dict[tuple[str, str], TrainedModel] = {}
    cards: dict[tuple[str, str], ModelCard] = {}
    rows: list[dict[str, Any]] = []
    scores: list[pd.DataFrame] = []

    def choose(choice: Choice, target: str) -> tuple[TrainedModel, ModelCard]:
        pick = choice.candidate
        if pick is not None:
            key = (target, pick.version)
            if key not in loaded:
                loaded[key] = pick.load()
            card = card_of(
                loaded[key],
                pick.version,
                cfg.labels,
                test_roc_auc=pick.test_roc_auc,
                test_n=pick.test_n,
                test_positives=pick.test_positives,
                source=pick.source,
            )
            return loaded[key], card
        model, numbers = walk.model(choice.trained_at, target)
        version = f"{WALK_FORWARD_PREFIX}{choice.trained_at.date().isoformat()}"
        return model, card_of(model, version, cfg.labels, **numbers, source="walk_forward")

    for as_of, choices in zip(days, plan, strict=True):
        row: dict[str, Any] = dict.fromkeys(RUN_COLUMNS)
        row |= {"as_of": as_of, "status": "skipped", "reason": ""}
        try:
            chosen = {t: choose(choices[t], t) for t in TARGETS}
        except ChurnmlError as exc:
            if retrain == "fixed":
                raise ChurnmlError(
                    f"backtest --retrain fixed: no model at the first as-of {as_of.date()}: {exc}"
                ) from None
            log.warning("backtest %s skipped: %s", as_of.date(), exc)
            rows.append(row | {"reason": str(exc)})
            continue
        for target, (_, card) in chosen.items():
            cards[(target, card.version)] = card
            row |= {
                f"{target}_model_version": card.version,
                f"{target}_source": card.source,
                f"{target}_trained_through": card.trained_through,
            }
        row["months_since_training"] = chosen["churn"][1].months_since_training(as_of)
        models = {t: m for t, (m, _) in chosen.items()}
        versions = {t: c.version for t, (_, c) in chosen.items()}
        try:
            result = score_accounts(
                tables,
                replay,
                as_of=as_of,
                warehouse_url=warehouse_url,
                run_kind="backtest",
                root=root,
                load_model=lambda target, _ref, m=models, v=versions: (m[target], v[target]),
                write=write,
            )
        except ChurnmlError as exc:
            log.warning("backtest %s failed: %s", as_of.date(), exc)
            rows.append(row | {"status": "failed", "reason": str(exc)})
            continue
        drift = result.drift
        score_psi = drift.loc[(drift["target"] == "churn") & (drift["kind"] == "score"), "psi"]
        rows.append(
            row
            | {
                "status": "succeeded",
                "run_id": None if result.run is None else result.run.run_id,
                "scores_rows": len(result.scores),
                "score_psi": float(score_psi.iloc[0]) if len(score_psi) else math.nan,
                "drift_warnings": sum(w.startswith("drift warning") for w in result.warnings),
            }
        )
        scores.append(result.scores)
        log.info(
            "backtest %s: %d accounts, churn model %s (%s, %.1f months since training)",
            as_of.date(),
            len(result.scores),
            versions["churn"],
            chosen["churn"][1].source,
            row["months_since_training"],
        )
    runs = pd.DataFrame(rows, columns=RUN_COLUMNS)
    if not (runs["status"] == "succeeded").any():
        first = runs["reason"].iloc[0] if len(runs) else ""
        raise ChurnmlError(
            f"backtest: no as-of from {days[0].date()} to {days[-1].date()} could be scored ({first})"
        )
    if write:
        folder = cards_dir(root, cfg.paths)
        for card in cards.values():
            save_card(card, folder)
    all_scores = pd.concat(scores, ignore_index=True) if scores else pd.DataFrame()
    return BacktestResult(runs=runs, scores=all_scores, cards=cards)
