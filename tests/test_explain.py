"""Explanations: TreeSHAP equals brute-force Shapley values; additivity; probability points; global view; export."""

from __future__ import annotations

import math
from itertools import combinations

import lightgbm as lgb
import numpy as np
import pandas as pd
import pytest

from churnml.errors import ChurnmlError
from churnml.explain.contributions import (
    calibration_slope,
    explain_accounts,
    format_values,
    global_importance,
    iter_explanations,
    shap_contributions,
    summary_figures,
    summary_tables,
    write_explanations,
    write_global_view,
)


class StubModel:
    """The model protocol explanations rely on (what churnml.modeling.model.TrainedModel provides)."""

    def __init__(self, booster, features, categories, target="churn", knots=None):
        self.booster = booster
        self.features = list(features)
        self.categories = categories
        self.target = target
        # A monotone, piecewise-linear calibration map with flat stretches, like an isotonic one.
        self.knots = knots or (
            [-3.0, -1.0, -0.5, 0.0, 0.4, 1.5, 3.0],
            [0.01, 0.05, 0.05, 0.2, 0.35, 0.8, 0.95],
        )

    def prepare(self, frame):
        out = {}
        for col in self.features:
            if col in self.categories:
                out[col] = pd.Categorical(frame[col].astype("object"), categories=self.categories[col])
            else:
                out[col] = frame[col].to_numpy(dtype="float64", na_value=np.nan)
        return pd.DataFrame(out, index=frame.index)

    def predict_raw(self, frame):
        return np.asarray(self.booster.predict(self.prepare(frame), raw_score=True))

    def calibrate(self, raw):
        return np.interp(np.asarray(raw, dtype=float), *self.knots)

    def predict_proba(self, frame):
        return self.calibrate(self.predict_raw(frame))


def _fit(
    frame: pd.DataFrame, y: np.ndarray, categories: dict, rounds: int, leaves: int, target="churn"
) -> StubModel:
    model = StubModel(None, list(frame.columns), categories, target=target)
    params = {
        "objective": "binary",
        "num_leaves": leaves,
        "min_data_in_leaf": 8,
        "min_data_per_group": 5,
        "cat_smooth": 1.0,
        "learning_rate": 0.3,
        "verbose": -1,
        "seed": 1,
        "deterministic": True,
        "num_threads": 1,
    }
    model.booster = lgb.train(params, lgb.Dataset(model.prepare(frame), y), num_boost_round=rounds)
    return model


def _tiny_data(seed: int, nan_share: float = 0.0, categorical: bool = False, n: int = 400):
    rng = np.random.default_rng(seed)
    a = rng.normal(size=n)
    b = rng.normal(size=n)
    c = rng.integers(0, 5, size=n).astype(float)
    frame = pd.DataFrame({"a": a, "b": np.where(rng.random(n) < nan_share, np.nan, b), "c": c})
    logit = 1.2 * a - 0.8 * np.nan_to_num(frame["b"].to_numpy(), nan=1.5) + 0.4 * (c > 2) + a * (c > 1)
    categories = {}
    if categorical:
        d = rng.choice(["x", "y", "z", "w"], size=n)
        frame["d"] = d
        categories = {"d": ["w", "x", "y", "z"]}
        logit = logit + np.where(d == "x", 1.0, 0.0) - np.where(d == "z", 0.7, 0.0)
    y = (logit + rng.logistic(size=n) > 0).astype(int)
    return frame, y, categories


# ------------------------------------------------------------- brute-force Shapley (path-dependent values)


def _goes_left(node: dict, value: float) -> bool:
    if node["decision_type"] == "==":
        if math.isnan(value) or value < 0:
            return False
        return int(value) in {int(t) for t in str(node["threshold"]).split("||")}
    missing = node["missing_type"]
    if missing == "NaN" and math.isnan(value):
        return node["default_left"]
    if math.isnan(value):
        value = 0.0
    if missing == "Zero" and abs(value) <= 1e-35:
        return node["default_left"]
    return value <= node["threshold"]


def _count(node: dict) -> float:
    return node["leaf_count"] if "leaf_value" in node else node["internal_count"]


def _expected(node: dict, x: np.ndarray, known: frozenset) -> float:
    """E[tree(x) | x_S] the way TreeSHAP defines it: follow x on known features, else cover-weighted mean."""
    if "leaf_value" in node:
        return node["leaf_value"]
    left, right = node["left_child"], node["right_child"]
    if node["split_feature"] in known:
        return _expected(left if _goes_left(node, x[node["split_feature"]]) else right, x, known)
    lc, rc = _count(left), _count(right)
    return (lc * _expected(left, x, known) + rc * _expected(right, x, known)) / (lc + rc)


def _brute_force_shapley(booster: lgb.Booster, x: np.ndarray) -> tuple[np.ndarray, float]:
    trees = [t["tree_structure"] for t in booster.dump_model()["tree_info"]]
    m = len(x)

    def value(subset: frozenset) -> float:
        return sum(_expected(t, x, subset) for t in trees)

    phi = np.zeros(m)
    for i in range(m):
        others = [j for j in range(m) if j != i]
        for size in range(m):
            weight = math.factorial(size) * math.factorial(m - size - 1) / math.factorial(m)
            for subset in combinations(others, size):
                s = frozenset(subset)
                phi[i] += weight * (value(s | {i}) - value(s))
    return phi, value(frozenset())


def _numeric_matrix(model: StubModel, frame: pd.DataFrame) -> np.ndarray:
    x = model.prepare(frame)
    cols = [
        x[c].cat.codes.to_numpy(float) if c in model.categories else x[c].to_numpy(float)
        for c in model.features
    ]
    return np.column_stack(cols)


@pytest.mark.parametrize(
    ("seed", "nan_share", "categorical", "rounds", "leaves"),
    [(0, 0.0, False, 4, 4), (1, 0.25, False, 6, 6), (2, 0.15, True, 5, 5)],
    ids=["numeric", "with-missing", "with-categorical"],
)
def test_tree_shap_equals_brute_force_shapley_values(seed, nan_share, categorical, rounds, leaves):
    frame, y, categories = _tiny_data(seed, nan_share, categorical)
    model = _fit(frame, y, categories, rounds, leaves)
    phi, base = shap_contributions(model, frame.iloc[:25])
    xs = _numeric_matrix(model, frame.iloc[:25])
    used = {n["split_feature"] for n in _internal_nodes(model.booster)}
    assert used == set(range(len(model.features))), "every feature must be split on, or the test is weak"
    for row in range(25):
        expected_phi, expected_base = _brute_force_shapley(model.booster, xs[row])
        np.testing.assert_allclose(phi[row], expected_phi, rtol=0, atol=1e-9)
        assert base[row] == pytest.approx(expected_base, abs=1e-9)


def _internal_nodes(booster):
    stack = [t["tree_structure"] for t in booster.dump_model()["tree_info"]]
    while stack:
        node = stack.pop()
        if "leaf_value" not in node:
            yield node
            stack += [node["left_child"], node["right_child"]]


@pytest.mark.filterwarnings("ignore::PendingDeprecationWarning", "ignore::UserWarning")
def test_shap_library_tree_explainer_returns_the_same_numbers():
    import shap

    frame, y, categories = _tiny_data(3, 0.1, False)
    model = _fit(frame, y, categories, 10, 6)
    phi, base = shap_contributions(model, frame)
    explainer = shap.TreeExplainer(model.booster)
    np.testing.assert_allclose(explainer.shap_values(model.prepare(frame)), phi, atol=1e-9)


# --------------------------------------------------------------------------- explain_accounts on a table


@pytest.fixture(scope="module")
def portfolio():
    rng = np.random.default_rng(7)
    n = 600
    frame = pd.DataFrame(
        {
            "account_id": [f"A{i:04d}" for i in range(n)],
            "cutoff": pd.to_datetime(np.where(np.arange(n) % 2, "2025-06-01", "2025-07-01")).astype(
                "datetime64[us]"
            ),
            "usage_logins_sum_30d": rng.poisson(200, n).astype(float),
            "usage_logins_trend_30d": rng.normal(0, 0.3, n),
            "adoption_license_utilisation_30d": np.clip(rng.beta(4, 3, n), 0, 1),
            "support_high_priority_count_30d": rng.poisson(0.6, n).astype(float),
            "contract_days_to_renewal": rng.integers(1, 365, n).astype(float),
            "nps_score_latest": np.where(rng.random(n) < 0.3, np.nan, rng.integers(0, 11, n)).astype(float),
            "account_segment": pd.Series(rng.choice(["enterprise", "mid_market", "smb"], n), dtype="str"),
        }
    )
    logit = (
        -1.0
        - 2.5 * frame["usage_logins_trend_30d"]
        - 2.0 * frame["adoption_license_utilisation_30d"]
        + 0.8 * frame["support_high_priority_count_30d"]
        - 0.004 * frame["contract_days_to_renewal"]
        + (frame["account_segment"] == "smb") * 0.8
    )
    y = (logit + rng.logistic(size=n) > 0).astype(int).to_numpy()
    feats = [c for c in frame.columns if c not in ("account_id", "cutoff")]
    model = _fit(frame[feats], y, {"account_segment": ["enterprise", "mid_market", "smb"]}, 40, 8)
    return frame, model


def test_explanations_are_additive_for_every_row(portfolio):
    frame, model = portfolio
    long = explain_accounts(model, frame, chunk_rows=128)
    k = len(model.features)
    assert len(long) == len(frame) * k
    per_row = long.groupby(["account_id", "as_of"], sort=False)
    sums = per_row["shap_value"].sum()
    firsts = per_row[["base_value", "raw_score", "probability", "base_probability"]].first()
    raw = pd.Series(model.predict_raw(frame), index=pd.MultiIndex.from_frame(frame[["account_id", "cutoff"]]))
    raw.index.names = ["account_id", "as_of"]
    np.testing.assert_allclose(firsts["base_value"] + sums, raw.loc[sums.index], rtol=0, atol=1e-9)
    np.testing.assert_allclose(firsts["raw_score"], raw.loc[sums.index], rtol=0, atol=1e-9)
    # the probability points of a row add up to (calibrated probability - base rate), exactly
    pp = per_row["probability_points"].sum()
    np.testing.assert_allclose(pp, firsts["probability"] - firsts["base_probability"], rtol=0, atol=1e-12)
    proba = pd.Series(model.predict_proba(frame), index=raw.index)
    np.testing.assert_allclose(firsts["probability"], proba.loc[sums.index], atol=1e-12)


def test_probability_points_keep_the_sign_of_shap_values(portfolio):
    frame, model = portfolio
    long = explain_accounts(model, frame)
    nonzero = long["probability_points"] != 0
    assert nonzero.mean() > 0.5
    assert (
        np.sign(long.loc[nonzero, "probability_points"]) == np.sign(long.loc[nonzero, "shap_value"])
    ).all()


def test_output_shape_names_ranks_and_display_values(portfolio):
    frame, model = portfolio
    long = explain_accounts(model, frame.iloc[:50], top_n=3)
    assert list(long.columns) == [
        "account_id",
        "as_of",
        "target",
        "feature",
        "feature_value",
        "shap_value",
        "probability_points",
        "rank",
        "base_value",
        "raw_score",
        "base_probability",
        "probability",
    ]
    assert len(long) == 150
    assert (long["target"] == "churn").all()
    assert long.groupby("account_id")["rank"].apply(list).map(lambda r: r == [1, 2, 3]).all()
    full = explain_accounts(model, frame.iloc[:50])
    top = full.sort_values(["account_id", "rank"]).groupby("account_id").head(3).reset_index(drop=True)
    pd.testing.assert_frame_equal(long.sort_values(["account_id", "rank"]).reset_index(drop=True), top)
    # |shap| never increases with rank
    diffs = full.assign(a=full["shap_value"].abs()).groupby("account_id")["a"].diff().dropna()
    assert (diffs <= 0).all()
    # the value shown is the account's own value, as text (categories as themselves, missing as null)
    row = frame.iloc[3]
    shown = full[full["account_id"] == row["account_id"]].set_index("feature")["feature_value"]
    assert shown["account_segment"] == row["account_segment"]
    assert shown["contract_days_to_renewal"] == str(int(row["contract_days_to_renewal"]))
    nan_row = frame[frame["nps_score_latest"].isna()].iloc[0]
    nan_shown = full[(full["account_id"] == nan_row["account_id"]) & (full["feature"] == "nps_score_latest")]
    if len(nan_shown):
        assert nan_shown["feature_value"].isna().all()
    assert full["as_of"].dtype.kind == "M"


def test_chunking_and_streaming_do_not_change_results(portfolio):
    frame, model = portfolio
    a = explain_accounts(model, frame, chunk_rows=37, top_n=4)
    b = explain_accounts(model, frame, chunk_rows=10_000, top_n=4)
    pd.testing.assert_frame_equal(a, b)
    chunks = list(iter_explanations(model, frame, chunk_rows=100, top_n=4))
    assert len(chunks) == 6 and all(len(c) == 400 for c in chunks)
    pd.testing.assert_frame_equal(pd.concat(chunks, ignore_index=True), a)
    assert all(a[c].dtype == "str" for c in ("account_id", "target", "feature", "feature_value"))


def test_input_frame_is_not_mutated_and_missing_columns_fail(portfolio):
    frame, model = portfolio
    before = frame.copy()
    explain_accounts(model, frame.iloc[:20])
    pd.testing.assert_frame_equal(frame, before)
    with pytest.raises(ChurnmlError, match="missing column.*usage_logins_sum_30d"):
        explain_accounts(model, frame.drop(columns=["usage_logins_sum_30d"]))
    empty = explain_accounts(model, frame.iloc[:0])
    assert empty.empty and "probability_points" in empty.columns


def test_calibration_slope_secant_and_derivative_at_the_base():
    def g(r):
        return 1 / (1 + np.exp(-2 * np.asarray(r)))

    raw = np.array([1.0, -0.5, 0.3 + 1e-9, 0.3])
    slope, p, p0 = calibration_slope(g, raw, 0.3)
    assert slope[0] == pytest.approx((g(1.0) - g(0.3)) / 0.7, rel=1e-12)
    assert slope[1] == pytest.approx((g(-0.5) - g(0.3)) / -0.8, rel=1e-12)
    derivative = 2 * g(0.3) * (1 - g(0.3))
    assert slope[2] == pytest.approx(derivative, rel=1e-5)
    assert slope[3] == pytest.approx(derivative, rel=1e-5)
    np.testing.assert_allclose(p0, g(0.3))


def test_format_values_for_display():
    shown = format_values(np.array([3.0, 0.123456, 1234.567, np.nan, -2.0, np.inf]))
    assert list(shown) == ["3", "0.1235", "1234.6", None, "-2", "inf"]
    assert list(format_values(pd.Series(["smb", None], dtype="str"))) == ["smb", None]


# ---------------------------------------------------------------------------------------- global view


def test_global_importance_ranks_by_mean_absolute_shap(portfolio):
    frame, model = portfolio
    long = explain_accounts(model, frame)
    imp = global_importance(long)
    phi, _ = shap_contributions(model, frame)
    expected = pd.Series(np.abs(phi).mean(axis=0), index=model.features).sort_values(ascending=False)
    assert list(imp["feature"]) == list(expected.index)
    np.testing.assert_allclose(imp["mean_abs_shap"], expected.to_numpy(), rtol=1e-12)
    assert list(imp["rank"]) == list(range(1, len(expected) + 1))
    assert (imp["rows"] == len(frame)).all()
    # truncated explanations give lower bounds (absent = 0), never more
    trunc = global_importance(explain_accounts(model, frame, top_n=2)).set_index("feature")
    assert (
        trunc["mean_abs_shap"] <= imp.set_index("feature").loc[trunc.index, "mean_abs_shap"] + 1e-12
    ).all()


@pytest.mark.filterwarnings("ignore::PendingDeprecationWarning")
def test_summary_figures_tables_and_files(portfolio, tmp_path):
    frame, model = portfolio
    sample = frame.iloc[:200]
    tables = summary_tables(model, sample, dependence=3)
    assert tables["importance"]["mean_abs_shap"].is_monotonic_decreasing
    assert tables["dependence"]["feature"].nunique() == 3
    assert set(tables["dependence"]["feature"]) == set(tables["importance"]["feature"].head(3))
    figures = summary_figures(model, sample, dependence=3)
    top = tables["importance"]["feature"].head(3)
    assert set(figures) == {"summary", "importance", *(f"dependence_{f}" for f in top)}
    assert all(len(f.axes) >= 1 for f in figures.values())
    written = write_global_view(model, sample, tmp_path / "plots" / "explain", dependence=2)
    imp = pd.read_csv(tmp_path / "plots" / "explain" / "churn_importance.csv")
    assert list(imp.columns) == ["feature", "mean_abs_shap"] and len(imp) == len(model.features)
    assert (tmp_path / "plots" / "explain" / "churn_summary.png").stat().st_size > 5000
    assert all(p.exists() for p in written.values())
    # committed under plots/explain: the same bytes every run, whatever the global RNG did before
    np.random.seed(123)
    again = write_global_view(model, sample, tmp_path / "again", dependence=2)
    assert {k: p.read_bytes() for k, p in again.items()} == {k: p.read_bytes() for k, p in written.items()}


def test_write_explanations_parquet_and_csv_side_by_side(portfolio, tmp_path):
    frame, model = portfolio
    long = explain_accounts(model, frame.iloc[:10], top_n=2).assign(model_version="1")
    parquet, csv = write_explanations(long, tmp_path / "data" / "explanations.parquet")
    assert parquet.name == "explanations.parquet" and csv.name == "explanations.csv"
    pd.testing.assert_frame_equal(pd.read_parquet(parquet), long, check_dtype=False)
    back = pd.read_csv(csv)
    assert len(back) == len(long)
    np.testing.assert_allclose(back["shap_value"], long["shap_value"], rtol=1e-12)
