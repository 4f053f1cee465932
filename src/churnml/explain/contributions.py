"""Per-account explanations: exact TreeSHAP contributions, probability points, and the global SHAP view.

Contributions are LightGBM's own exact TreeSHAP (``booster.predict(X, pred_contrib=True)``, the
tree-path-dependent algorithm of Lundberg et al. 2020 with node covers = training row counts). shap's
``TreeExplainer`` calls the same routine for a LightGBM booster, so both give identical numbers at identical
cost; tests check the values against brute-force Shapley values instead, which is what makes them trustworthy.
For every row, ``base_value + sum(shap_value) == raw_score`` (log-odds).

Probability points (the one rule, used everywhere a CSM sees "points"): with raw score ``f``, base value
``f0``, calibration map ``g`` (monotone, raw log-odds -> calibrated probability), ``p = g(f)`` and the base
rate ``p0 = g(f0)``, feature ``i`` with SHAP value ``phi_i`` gets

    pp_i = phi_i * (p - p0) / (f - f0)

the secant slope of ``g`` between the base and this account's score (when ``|f - f0| < 1e-6`` the central
numerical derivative of ``g`` at ``f0`` replaces it). Because ``g`` is monotone the slope is >= 0, so a point
keeps the sign of its SHAP value, and ``sum_i pp_i = p - p0`` exactly. Points are in probability units
(0.045 = 4.5 percentage points).

Where the points start: a model trained by churnml explains from the portfolio's average predicted
probability, ``p0`` = the mean calibrated probability of its calibration rows (the validation period; in
tabular mode all training rows), not from ``g`` of the booster's own base value (which with class weights
is the weighted mean log-odds). Its SHAP values are re-centred on those rows (:func:`portfolio_contributions`):
``f0`` becomes the log-odds that ``g`` maps to that mean, each feature's value moves by a constant, and
``base_value + sum(shap_value) == raw_score`` still holds. A logistic model is explained by its exact
linear SHAP values and a blend by the same weights of both (``TrainedModel.contributions``).
"""

from __future__ import annotations

from collections.abc import Callable, Iterator
from pathlib import Path
from typing import TYPE_CHECKING, Any, Protocol

import numpy as np
import pandas as pd

from churnml.contract.io import write_output
from churnml.contract.tables import EXPLANATIONS
from churnml.errors import ChurnmlError

if TYPE_CHECKING:
    import lightgbm as lgb
    import pyarrow as pa
    from matplotlib.figure import Figure

CHUNK_ROWS = 20_000
# Below this raw-score gap the secant slope is numerically meaningless: use g'(f0) instead.
TINY_SCORE_GAP = 1e-6
DERIVATIVE_STEP = 1e-3
# The explanations table of the contract, less the reason that with_reasons adds and the model version the
# caller that loaded the model adds (this module sees a model, not its registration).
EXPLANATION_COLUMNS = [c for c in EXPLANATIONS.columns if c not in ("reason", "model_version")]


class ExplainableModel(Protocol):
    """What explanations need from a trained model (``churnml.modeling.model.TrainedModel`` provides it)."""

    booster: lgb.Booster
    features: list[str]
    target: str

    def prepare(self, frame: pd.DataFrame) -> pd.DataFrame: ...

    def predict_raw(self, frame: pd.DataFrame) -> np.ndarray: ...

    def predict_proba(self, frame: pd.DataFrame) -> np.ndarray: ...

    def calibrate(self, raw_scores: np.ndarray) -> np.ndarray: ...


def _require_columns(frame: pd.DataFrame, columns: list[str], what: str) -> None:
    missing = [c for c in columns if c not in frame.columns]
    if missing:
        shown = ", ".join(missing[:5]) + (f" (+{len(missing) - 5} more)" if len(missing) > 5 else "")
        raise ChurnmlError(f"{what}: missing column(s) {shown}")


def shap_contributions(
    model: ExplainableModel, frame: pd.DataFrame, *, chunk_rows: int = CHUNK_ROWS, num_threads: int = 0
) -> tuple[np.ndarray, np.ndarray]:
    """Exact TreeSHAP contributions of every model feature for every row, computed in chunks.

    Args:
        model: A trained model (see :class:`ExplainableModel`).
        frame: Rows holding at least ``model.features``.
        chunk_rows: Rows per LightGBM call (bounds the memory of the dense contribution matrix).
        num_threads: LightGBM threads; 0 uses LightGBM's default.

    Returns:
        ``(phi, base)``: log-odds contributions, shape (rows, features) in ``model.features`` order, and the
        base value per row (LightGBM's expected raw score, the same for every row).
    """
    _require_columns(frame, list(model.features), "shap_contributions: feature frame")
    phis, bases = [], []
    for _, phi, base in _contribution_chunks(model, frame, chunk_rows, num_threads):
        phis.append(phi)
        bases.append(base)
    k = len(model.features)
    if not phis:
        return np.empty((0, k)), np.empty(0)
    return np.vstack(phis), np.concatenate(bases)


def _contribution_chunks(model: ExplainableModel, frame: pd.DataFrame, chunk_rows: int, num_threads: int):
    """Yield (start row, phi, base) per chunk; only one chunk's dense matrices are alive at a time."""
    if chunk_rows < 1:
        raise ChurnmlError(f"explain: chunk_rows must be >= 1, got {chunk_rows}")
    k = len(model.features)
    for start in range(0, len(frame), chunk_rows):
        x = model.prepare(frame.iloc[start : start + chunk_rows])
        own = getattr(model, "contributions", None)
        if own is not None:  # a TrainedModel: TreeSHAP, exact linear SHAP, or both for a blend
            phi, base = own(x, num_threads=num_threads)
            yield start, phi, base
            continue
        contrib = np.asarray(model.booster.predict(x, pred_contrib=True, num_threads=num_threads))
        if contrib.ndim != 2 or contrib.shape[1] != k + 1:
            raise ChurnmlError(
                f"explain: expected {k + 1} contribution columns for a binary model, got shape {contrib.shape}"
            )
        yield start, contrib[:, :k], contrib[:, k]


def _reference(model: ExplainableModel) -> dict[str, Any] | None:
    info = getattr(model, "info", None)
    return info.get("reference") if isinstance(info, dict) else None


def portfolio_contributions(
    model: ExplainableModel, phi: np.ndarray, base: np.ndarray
) -> tuple[np.ndarray, np.ndarray]:
    """SHAP values re-centred on the portfolio: base = the log-odds of the mean predicted probability.

    A model trained by churnml records (``model.info["reference"]``, see
    :func:`churnml.modeling.model.explanation_reference`) the mean calibrated probability of its
    calibration rows, the log-odds the calibration maps to it, and one offset per feature; subtracting the
    offsets keeps base + sum = log-odds per row and makes the base probability that mean. A model without
    it keeps its own base value.
    """
    ref = _reference(model)
    if not ref:
        return phi, base
    return phi - np.asarray(ref["offsets"], dtype=float), np.full(len(phi), float(ref["raw"]))


def calibration_slope(
    calibrate: Callable[[np.ndarray], np.ndarray], raw: np.ndarray, base: np.ndarray | float
) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """The slope that turns log-odds contributions into probability points (module docstring).

    Args:
        calibrate: The monotone map g from raw log-odds score to calibrated probability.
        raw: Raw scores f, one per row.
        base: Base values f0 (one per row, or one for all).

    Returns:
        ``(slope, p, p0)``: the secant slope (g(f) - g(f0)) / (f - f0), or g'(f0) where |f - f0| is tiny;
        the calibrated probability of each row; the base rate of each row.
    """
    raw = np.asarray(raw, dtype=float)
    base = np.broadcast_to(np.asarray(base, dtype=float), raw.shape)
    p = np.asarray(calibrate(raw), dtype=float)
    p0 = np.asarray(calibrate(base), dtype=float)
    gap = raw - base
    near = np.abs(gap) < TINY_SCORE_GAP
    slope = np.empty_like(raw)
    far = ~near
    slope[far] = (p[far] - p0[far]) / gap[far]
    if near.any():
        b = base[near]
        up = np.asarray(calibrate(b + DERIVATIVE_STEP), dtype=float)
        down = np.asarray(calibrate(b - DERIVATIVE_STEP), dtype=float)
        slope[near] = (up - down) / (2 * DERIVATIVE_STEP)
    return slope, p, p0


def probability_points(
    phi: np.ndarray, raw: np.ndarray, base: np.ndarray | float, calibrate: Callable[[np.ndarray], np.ndarray]
) -> np.ndarray:
    """Probability points of each contribution: ``phi * slope`` per row (module docstring); sums to p - p0."""
    slope, _, _ = calibration_slope(calibrate, raw, base)
    return np.asarray(phi, dtype=float) * slope[:, None]


def _text_array(values: np.ndarray | pd.Series) -> pa.Array:
    """Display text of feature values as an Arrow string array (null where missing).

    Whole numbers print without decimals, others with 1 decimal from 100 up and 4 significant digits below.
    Rounding happens on the float first (exactly the double nearest the shortened decimal), then Arrow's
    shortest round-trip cast prints it: no Python string per value.
    """
    import pyarrow as pa

    arr = np.asarray(values)
    if arr.dtype.kind not in "fiub":
        return pa.array([None if pd.isna(x) else str(x) for x in arr], type=pa.string())
    v = arr.astype(float)
    out = v.copy()
    finite = np.isfinite(v)
    frac = finite & (v != np.round(v))
    big = frac & (np.abs(v) >= 100)
    out[big] = np.round(v[big], 1)
    small = frac & ~big
    if small.any():
        sv = v[small]
        mag = np.floor(np.log10(np.abs(sv))).astype(int)
        res = np.empty_like(sv)
        for m in np.unique(mag):
            sel = mag == m
            res[sel] = np.round(sv[sel], 3 - int(m))
        out[small] = res
    return pa.array(out, mask=np.isnan(v)).cast(pa.string())


def format_values(values: np.ndarray | pd.Series) -> np.ndarray:
    """Feature values as display text: whole numbers without decimals, others to 4 significant digits
    (1 decimal from 100 up); missing values become None (null), so "missing" differs from any value."""
    return _text_array(values).to_numpy(zero_copy_only=False)


_STRING_COLUMNS = ("account_id", "target", "feature", "feature_value")


def _explain_chunks(
    model: ExplainableModel,
    features: pd.DataFrame,
    cutoff_col: str,
    keep: int,
    chunk_rows: int,
    num_threads: int,
) -> Iterator[dict[str, Any]]:
    """Per chunk, the long-form columns: numpy arrays, and Arrow arrays for the text columns."""
    import pyarrow as pa

    feats = list(model.features)
    feature_names = pa.array(feats, type=pa.string())
    target = pa.scalar(model.target, pa.string())
    for start, phi, base in _contribution_chunks(model, features, chunk_rows, num_threads):
        phi, base = portfolio_contributions(model, phi, base)
        chunk = features.iloc[start : start + len(phi)]
        raw = phi.sum(axis=1) + base
        slope, p, p0 = calibration_slope(model.calibrate, raw, base)
        n = len(phi)
        # Stable sort on -|phi| so ties keep the model's feature order (deterministic ranks).
        order = np.argsort(-np.abs(phi), axis=1, kind="stable")[:, :keep]
        rows = np.repeat(np.arange(n), keep)
        cols = order.ravel()
        shap_vals = phi[rows, cols]
        # Text of every value, feature-major (position j * n + i), then picked in long order: all in Arrow,
        # no Python string per value.
        texts = pa.concat_arrays([_text_array(chunk[f].to_numpy()) for f in feats])
        ids = pa.array(chunk["account_id"].astype("str").to_numpy(dtype=object), type=pa.string())
        yield {
            "account_id": ids.take(pa.array(rows)),
            "as_of": chunk[cutoff_col].to_numpy()[rows],
            "target": pa.repeat(target, n * keep),
            "feature": pa.DictionaryArray.from_arrays(pa.array(cols.astype(np.int32)), feature_names).cast(
                pa.string()
            ),
            "feature_value": texts.take(pa.array(cols.astype(np.int64) * n + rows)),
            "shap_value": shap_vals,
            "probability_points": shap_vals * slope[rows],
            "rank": np.tile(np.arange(1, keep + 1, dtype=np.int64), n),
            "base_value": base[rows],
            "raw_score": raw[rows],
            "base_probability": p0[rows],
            "probability": p[rows],
        }


def _frame(columns: dict[str, Any]) -> pd.DataFrame:
    """The long-form frame, sharing the given arrays (no copy)."""
    data = {c: _str_series(v) if c in _STRING_COLUMNS else v for c, v in columns.items()}
    return pd.DataFrame(data, copy=False)


def _keep(model: ExplainableModel, top_n: int | None) -> int:
    k = len(model.features)
    return k if top_n is None else max(0, min(int(top_n), k))


def iter_explanations(
    model: ExplainableModel,
    features: pd.DataFrame,
    *,
    cutoff_col: str = "cutoff",
    top_n: int | None = None,
    chunk_rows: int = CHUNK_ROWS,
    num_threads: int = 0,
) -> Iterator[pd.DataFrame]:
    """:func:`explain_accounts` one chunk of ``chunk_rows`` input rows at a time.

    Every row of an account-date lies in one chunk, so per-account work (e.g. :func:`churnml.explain.reasons.reasons_for`)
    can run chunk by chunk: 100k accounts x 80 features are 8M long rows (about 1 GB), a chunk of 20k accounts
    a fifth of that.
    """
    _require_columns(features, ["account_id", cutoff_col, *model.features], "explain_accounts: feature frame")
    for columns in _explain_chunks(model, features, cutoff_col, _keep(model, top_n), chunk_rows, num_threads):
        yield _frame(columns)


def explain_accounts(
    model: ExplainableModel,
    features: pd.DataFrame,
    *,
    cutoff_col: str = "cutoff",
    top_n: int | None = None,
    chunk_rows: int = CHUNK_ROWS,
    num_threads: int = 0,
) -> pd.DataFrame:
    """Explain every row of a feature table: one output row per (account, as-of, feature).

    Args:
        model: A trained model (see :class:`ExplainableModel`).
        features: The feature table: ``account_id``, the as-of column and at least ``model.features``.
        cutoff_col: The column holding each row's as-of date (written out as ``as_of``).
        top_n: Keep only the ``top_n`` features with the largest ``|shap_value|`` per row; None keeps all.
            Keep all when the output feeds :func:`churnml.explain.reasons.reasons_for` (drivers sum their members)
            or :func:`global_importance`; truncate for storage.
        chunk_rows: Rows per LightGBM call (the dense contribution matrix of one chunk is in memory).
        num_threads: LightGBM threads; 0 uses LightGBM's default.

    Returns:
        Long form, ordered by input row then rank: ``account_id``, ``as_of``, ``target``, ``feature``,
        ``feature_value`` (display text, null when missing), ``shap_value`` (log-odds), ``probability_points``
        (module docstring), ``rank`` (1 = largest ``|shap_value|`` of that row), and per row of the account
        ``base_value`` (log-odds f0), ``raw_score`` (f), ``base_probability`` (g(f0), the base rate) and
        ``probability`` (g(f), the calibrated probability).
    """
    import pyarrow as pa

    _require_columns(features, ["account_id", cutoff_col, *model.features], "explain_accounts: feature frame")
    keep = _keep(model, top_n)
    total = len(features) * keep
    if total == 0:
        return _empty_explanations()
    # Fill preallocated columns chunk by chunk: the peak is the result plus one chunk, not twice the result.
    out: dict[str, Any] = {}
    texts: dict[str, list] = {c: [] for c in _STRING_COLUMNS}
    pos = 0
    for columns in _explain_chunks(model, features, cutoff_col, keep, chunk_rows, num_threads):
        size = len(columns["shap_value"])
        for name, values in columns.items():
            if name in texts:
                texts[name].append(values)
                continue
            if name not in out:
                out[name] = np.empty(total, dtype=values.dtype)
            out[name][pos : pos + size] = values
        pos += size
    columns = {
        c: pa.chunked_array(texts[c], type=pa.string()) if c in texts else out[c] for c in EXPLANATION_COLUMNS
    }
    return _frame(columns)


def _str_series(arr: pa.Array | pa.ChunkedArray) -> pd.Series:
    """An Arrow string array as a pandas ``str`` column, without copying (``pd.Series(arr)`` copies)."""
    return pd.Series(pd.array(arr, dtype=pd.StringDtype("pyarrow", na_value=np.nan)))


def _empty_explanations() -> pd.DataFrame:
    dtypes = {
        "account_id": "str",
        "as_of": "datetime64[us]",
        "target": "str",
        "feature": "str",
        "feature_value": "str",
        "rank": "int64",
    }
    return pd.DataFrame({c: pd.Series(dtype=dtypes.get(c, "float64")) for c in EXPLANATION_COLUMNS})


def global_importance(explanations: pd.DataFrame) -> pd.DataFrame:
    """Mean absolute SHAP value per feature (and target) over the explained rows.

    Rows absent from a truncated (``top_n``) explanation count as 0, so on truncated input the means are
    lower bounds; explain with ``top_n=None`` for exact values.

    Returns:
        ``target``, ``feature``, ``mean_abs_shap`` (log-odds), ``mean_shap``, ``mean_abs_probability_points``,
        ``rows`` (explained rows of that target), ``rank`` (1 = most important), sorted by target and rank.
    """
    _require_columns(
        explanations,
        ["account_id", "as_of", "target", "feature", "shap_value", "probability_points"],
        "global_importance: explanations",
    )
    frame = explanations.assign(
        abs_shap=explanations["shap_value"].abs(), abs_pp=explanations["probability_points"].abs()
    )
    n_rows = frame.groupby("target")[["account_id", "as_of"]].apply(lambda g: len(g.drop_duplicates()))
    sums = frame.groupby(["target", "feature"], as_index=False)[["abs_shap", "shap_value", "abs_pp"]].sum()
    rows = sums["target"].map(n_rows).astype(float)
    out = pd.DataFrame(
        {
            "target": sums["target"],
            "feature": sums["feature"],
            "mean_abs_shap": sums["abs_shap"] / rows,
            "mean_shap": sums["shap_value"] / rows,
            "mean_abs_probability_points": sums["abs_pp"] / rows,
            "rows": rows.astype("int64"),
        }
    )
    out = out.sort_values(["target", "mean_abs_shap", "feature"], ascending=[True, False, True])
    out["rank"] = out.groupby("target").cumcount() + 1
    return out.reset_index(drop=True)


def _sample_explanation(model: ExplainableModel, x_sample: pd.DataFrame) -> Any:
    """A shap.Explanation for a sample, built from LightGBM's exact contributions (what TreeExplainer returns)."""
    import shap

    phi, base = shap_contributions(model, x_sample)
    x = model.prepare(x_sample)
    # Beeswarm colours need numbers: categoricals are shown by their codes.
    data = (
        np.column_stack(
            [
                x[c].cat.codes.to_numpy(dtype=float)
                if isinstance(x[c].dtype, pd.CategoricalDtype)
                else x[c].to_numpy(float)
                for c in model.features
            ]
        )
        if len(x)
        else np.empty((0, len(model.features)))
    )
    return shap.Explanation(values=phi, base_values=base, data=data, feature_names=list(model.features))


def _top_features(expl: Any, k: int) -> list[str]:
    mean_abs = np.abs(expl.values).mean(axis=0)
    order = np.argsort(-mean_abs, kind="stable")[:k]
    return [expl.feature_names[i] for i in order]


def summary_tables(
    model: ExplainableModel, x_sample: pd.DataFrame, *, dependence: int = 4
) -> dict[str, pd.DataFrame]:
    """The data behind :func:`summary_figures`, as tables for DVC plots.

    Returns:
        ``importance``: ``feature``, ``mean_abs_shap`` (sorted, largest first); ``dependence``: long form
        ``feature``, ``feature_value`` (number; category code for categoricals), ``shap_value`` for the top
        ``dependence`` features.
    """
    return _tables_from(_sample_explanation(model, x_sample), dependence)


def _tables_from(expl: Any, dependence: int) -> dict[str, pd.DataFrame]:
    mean_abs = np.abs(expl.values).mean(axis=0) if len(expl.values) else np.zeros(len(expl.feature_names))
    importance = (
        pd.DataFrame({"feature": expl.feature_names, "mean_abs_shap": mean_abs})
        .sort_values(["mean_abs_shap", "feature"], ascending=[False, True])
        .reset_index(drop=True)
    )
    dep = []
    for name in importance["feature"].head(dependence):
        i = expl.feature_names.index(name)
        dep.append(
            pd.DataFrame({"feature": name, "feature_value": expl.data[:, i], "shap_value": expl.values[:, i]})
        )
    dependence_table = (
        pd.concat(dep, ignore_index=True)
        if dep
        else pd.DataFrame({"feature": [], "feature_value": [], "shap_value": []})
    )
    return {"importance": importance, "dependence": dependence_table}


def summary_figures(
    model: ExplainableModel, x_sample: pd.DataFrame, *, max_display: int = 20, dependence: int = 4
) -> dict[str, Figure]:
    """Global SHAP figures for a sample of rows: a beeswarm summary, a bar summary, dependence plots.

    Args:
        model: A trained model.
        x_sample: Rows holding ``model.features`` (a few thousand are plenty).
        max_display: Features shown in the summaries.
        dependence: Dependence plots for this many top features.

    Returns:
        Figures by name: ``summary`` (beeswarm), ``importance`` (bar of mean |SHAP|), ``dependence_<feature>``.
        The caller saves them; they are already detached from pyplot's figure manager.
    """
    return _figures_from(_sample_explanation(model, x_sample), model.target, max_display, dependence)


def _figures_from(expl: Any, target: str, max_display: int, dependence: int) -> dict[str, Figure]:
    # shap's beeswarm shuffles and jitters with NumPy's global RNG: seed it for these figures (the same
    # picture every run, so the committed PNGs do not change bytes) and give the caller its state back
    state = np.random.get_state()
    np.random.seed(0)
    try:
        return _draw_figures(expl, target, max_display, dependence)
    finally:
        np.random.set_state(state)


def _draw_figures(expl: Any, target: str, max_display: int, dependence: int) -> dict[str, Figure]:
    import matplotlib.pyplot as plt
    import shap

    figures: dict[str, Figure] = {}
    fig, ax = plt.subplots(figsize=(9, 0.4 * min(max_display, len(expl.feature_names)) + 1.5))
    shap.plots.beeswarm(expl, max_display=max_display, ax=ax, show=False, plot_size=None)
    ax.set_title(f"{target}: impact of each feature on the log-odds score (one dot per account)")
    fig.tight_layout()
    figures["summary"] = fig
    fig, ax = plt.subplots(figsize=(9, 0.4 * min(max_display, len(expl.feature_names)) + 1.5))
    shap.plots.bar(expl, max_display=max_display, ax=ax, show=False)
    ax.set_title(f"{target}: mean |SHAP value| (log-odds)")
    fig.tight_layout()
    figures["importance"] = fig
    for name in _top_features(expl, dependence):
        fig, ax = plt.subplots(figsize=(7, 4.5))
        shap.plots.scatter(expl[:, name], ax=ax, show=False, hist=True)
        ax.set_title(f"{target}: dependence on {name}")
        fig.tight_layout()
        figures[f"dependence_{name}"] = fig
    for fig in figures.values():
        plt.close(fig)  # keep the Figure, drop pyplot's reference (no leak across calls)
    return figures


def write_global_view(
    model: ExplainableModel,
    x_sample: pd.DataFrame,
    out_dir: Path,
    *,
    max_display: int = 20,
    dependence: int = 4,
) -> dict[str, Path]:
    """Write the global view of one model: CSV tables for DVC plots and PNG figures.

    Files (``<target>`` is ``model.target``): ``<target>_importance.csv`` (feature, mean_abs_shap),
    ``<target>_dependence.csv`` (feature, feature_value, shap_value), ``<target>_summary.png``,
    ``<target>_importance.png``, ``<target>_dependence_<feature>.png``.

    Returns:
        Paths written, by name.
    """
    out_dir = Path(out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    expl = _sample_explanation(model, x_sample)
    written: dict[str, Path] = {}
    for name, table in _tables_from(expl, dependence).items():
        path = out_dir / f"{model.target}_{name}.csv"
        table.to_csv(path, index=False)
        written[name] = path
    for name, fig in _figures_from(expl, model.target, max_display, dependence).items():
        path = out_dir / f"{model.target}_{name}.png"
        # no "Software" (version) metadata: the bytes depend on the picture only
        fig.savefig(path, dpi=110, bbox_inches="tight", metadata={"Software": None})
        written[f"{name}_png"] = path
    return written


def write_explanations(explanations: pd.DataFrame, path: Path) -> tuple[Path, Path]:
    """Write explanations as Parquet and, side by side, CSV (same stem); each write is atomic.

    Returns:
        ``(parquet_path, csv_path)``.
    """
    path = Path(path)
    parquet = path if path.suffix == ".parquet" else path.with_suffix(".parquet")
    csv = parquet.with_suffix(".csv")
    write_output(explanations, parquet, "explanations")
    tmp = csv.with_name(f".{csv.name}.tmp")
    explanations.to_csv(tmp, index=False)
    tmp.replace(csv)
    return parquet, csv
