"""Metric functions against hand-computed values; the evaluation tables and their JSON/CSV/figure views."""

from __future__ import annotations

import json
import math

import numpy as np
import pandas as pd
import pytest

from churnml.config import EvaluationConfig
from churnml.modeling.metrics import (
    METRICS,
    arr_captured_at_k,
    brier,
    build_evaluation,
    emp,
    figures,
    lift_at,
    load_evaluation,
    log_loss,
    metrics_json,
    n_top,
    plot_tables,
    pr_auc,
    recall_at,
    roc_auc,
    roc_auc_difference,
    top_weights,
    write_dvc_outputs,
)


def test_n_top_rounds_up_without_float_noise():
    assert n_top(10, 0.1) == 1
    assert n_top(30, 0.1) == 3  # 0.1 * 30 is 3.0000000000000004 in floating point
    assert n_top(25, 0.1) == 3
    assert n_top(5, 0.1) == 1
    assert n_top(0, 0.1) == 0


def test_top_weights_share_the_boundary_among_ties():
    w = top_weights(np.array([3.0, 2.0, 2.0, 1.0]), 2)
    assert w.tolist() == [1.0, 0.5, 0.5, 0.0]
    assert top_weights(np.array([1.0, 1.0, 1.0, 1.0]), 1).tolist() == [0.25] * 4
    assert top_weights(np.array([5.0, 4.0]), 3).tolist() == [1.0, 1.0]


def test_lift_and_recall_at_ten_percent_by_hand():
    # 10 accounts ranked 10..1; the positives sit at ranks 1 and 3. Top 10% = 1 account (a positive).
    score = np.arange(10, 0, -1, dtype=float)
    y = np.array([1, 0, 1, 0, 0, 0, 0, 0, 0, 0])
    assert recall_at(y, score, 0.1) == pytest.approx(1 / 2)
    # precision in the top 1 = 1; base rate = 2/10 -> lift 5
    assert lift_at(y, score, 0.1) == pytest.approx(5.0)
    # top 30% = 3 accounts holding both positives
    assert recall_at(y, score, 0.3) == pytest.approx(1.0)
    assert lift_at(y, score, 0.3) == pytest.approx((2 / 3) / 0.2)


def test_lift_of_a_constant_score_is_one_whatever_the_row_order():
    y = np.array([1, 0, 0, 0, 1, 0, 0, 0, 0, 0])
    assert lift_at(y, np.zeros(10), 0.1) == pytest.approx(1.0)
    assert recall_at(y[::-1], np.zeros(10), 0.1) == pytest.approx(0.1)


def test_arr_captured_at_k_by_hand_overall_and_per_period():
    y = np.array([1, 0, 1, 1])
    score = np.array([0.9, 0.8, 0.1, 0.5])
    arr = np.array([100.0, 1000.0, 50.0, 30.0])
    # top 2 = rows 0 and 1; churner ARR captured 100 of 100 + 50 + 30
    assert arr_captured_at_k(y, score, arr, 2) == pytest.approx(100 / 180)
    # two scoring runs of 2 accounts, capacity 1 each: run A picks row 0 (100), run B picks row 3 (30)
    period = np.array(["A", "A", "B", "B"])
    assert arr_captured_at_k(y, score, arr, 1, period) == pytest.approx(130 / 180)
    assert math.isnan(arr_captured_at_k(np.zeros(4), score, arr, 2))


def test_emp_on_a_tiny_example_derived_by_hand():
    # Three accounts, CLV 1000 each, offer d = 100, contact f = 50, gamma ~ Beta(1, 1) (uniform).
    # Ranked by score: churner, non-churner, churner. Profit of targeting the top j (before / N):
    #   j=0: 0;  j=1: 900g - 50;  j=2: 900g - 200;  j=3: 1800g - 250.
    # max: 0 on [0, 1/18], 900g - 50 on [1/18, 2/9], 1800g - 250 on [2/9, 1] (j=2 never wins).
    # integral = [450g^2 - 50g]_{1/18}^{2/9} + [900g^2 - 250g]_{2/9}^{1} = 12.5 + 650 + 100/9.
    expected = (12.5 + 650 + 100 / 9) / 3
    value = emp(
        np.array([1, 0, 1]),
        np.array([0.9, 0.5, 0.1]),
        np.array([1000.0, 1000.0, 1000.0]),
        offer_cost_fraction=0.1,
        contact_cost=50.0,
        alpha=1.0,
        beta=1.0,
    )
    assert value == pytest.approx(expected, rel=1e-12)


def _emp_brute_force(y, score, clv, d_frac, f, alpha, beta, grid=20001):
    from scipy.stats import beta as beta_dist

    order = np.argsort(-score, kind="stable")
    y, score, clv = y[order], score[order], clv[order]
    gain_slope = np.r_[0, np.cumsum(y * (clv - d_frac * clv))]
    cost = np.r_[0, np.cumsum(y * f + (1 - y) * (d_frac * clv + f))]
    cuts = [0] + [i for i in range(1, len(y)) if score[i] != score[i - 1]] + [len(y)]
    gammas = np.linspace(0, 1, grid)
    profit = np.max(gammas[:, None] * gain_slope[cuts][None, :] - cost[cuts][None, :], axis=1)
    density = beta_dist.pdf(gammas, alpha, beta)
    return np.trapezoid(profit * density, gammas) / len(y)


def test_emp_matches_brute_force_integration_with_heterogeneous_clv_and_ties():
    rng = np.random.default_rng(3)
    n = 400
    y = (rng.random(n) < 0.2).astype(float)
    score = np.round(rng.random(n) + 0.5 * y, 2)  # rounding makes ties
    clv = rng.lognormal(9, 1, n)
    exact = emp(y, score, clv, offer_cost_fraction=0.1, contact_cost=50.0, alpha=6.0, beta=14.0)
    assert exact == pytest.approx(_emp_brute_force(y, score, clv, 0.1, 50.0, 6.0, 14.0), rel=1e-4)
    assert exact > 0


def test_emp_rewards_a_better_ranking_and_is_never_negative():
    y = np.array([1, 1, 0, 0, 0, 0, 0, 0, 0, 0], dtype=float)
    clv = np.full(10, 1000.0)
    kwargs = {"offer_cost_fraction": 0.1, "contact_cost": 50.0, "alpha": 6.0, "beta": 14.0}
    perfect = emp(y, np.arange(10, 0, -1.0), clv, **kwargs)
    reversed_ = emp(y, np.arange(1, 11.0), clv, **kwargs)
    assert perfect > reversed_ >= 0


def test_roc_auc_is_the_pairwise_concordance_and_pr_auc_the_average_precision():
    rng = np.random.default_rng(0)
    y = (rng.random(200) < 0.3).astype(int)
    score = np.round(rng.random(200) + 0.4 * y, 1)  # ties count one half
    pos, neg = score[y == 1], score[y == 0]
    pairs = (pos[:, None] > neg[None, :]).mean() + 0.5 * (pos[:, None] == neg[None, :]).mean()
    assert roc_auc(y, score) == pytest.approx(pairs)
    # average precision by hand on a tie-free example: positives at ranks 1 and 3 -> (1/1 + 2/3) / 2
    assert pr_auc(np.array([1, 0, 1, 0]), np.array([4.0, 3.0, 2.0, 1.0])) == pytest.approx((1 + 2 / 3) / 2)
    assert math.isnan(roc_auc(np.ones(5), np.arange(5.0)))


def test_the_paired_roc_auc_difference_and_its_standard_error_agree_with_a_bootstrap():
    rng = np.random.default_rng(3)
    n = 600
    y = (rng.random(n) < 0.2).astype(int)
    shared = rng.normal(size=n)  # the two scores share noise: their AUCs are correlated
    a = y + shared + 0.5 * rng.normal(size=n)
    b = 0.7 * y + shared + 0.5 * rng.normal(size=n)
    diff, se = roc_auc_difference(y, a, b)
    assert diff == pytest.approx(roc_auc(y, a) - roc_auc(y, b), abs=1e-12)
    boot = []
    for _ in range(2000):
        i = rng.integers(0, n, n)
        boot.append(roc_auc(y[i], a[i]) - roc_auc(y[i], b[i]))
    assert se == pytest.approx(float(np.std(boot)), rel=0.1)
    # pairing matters: against a constant (AUC 0.5, no variance) each AUC's own standard error; as if the
    # two were independent, their difference would be far noisier than it is
    se_a, se_b = (roc_auc_difference(y, s, np.zeros(n))[1] for s in (a, b))
    assert se < 0.6 * math.hypot(se_a, se_b)
    # one score against itself: no difference and no noise; with one class: undefined
    assert roc_auc_difference(y, a, a) == (0.0, 0.0)
    assert all(math.isnan(v) for v in roc_auc_difference(np.ones(5), np.arange(5.0), np.arange(5.0)))


def test_log_loss_and_brier_by_hand():
    y = np.array([1, 0])
    p = np.array([0.8, 0.4])
    assert log_loss(y, p) == pytest.approx(-(math.log(0.8) + math.log(0.6)) / 2)
    assert brier(y, p) == pytest.approx((0.2**2 + 0.4**2) / 2)
    assert np.isfinite(log_loss(np.array([1]), np.array([0.0])))  # clipped, not infinite


# ------------------------------------------------------------------------------------------ tables


def _scores(with_oracle: bool, seed: int = 0) -> pd.DataFrame:
    rng = np.random.default_rng(seed)
    parts = []
    cutoffs = {
        "validation": pd.to_datetime(["2024-01-01", "2024-02-01"]),
        "test": pd.to_datetime(["2024-05-01", "2024-06-01"]),
    }
    n = 120
    segment = rng.choice(["enterprise", "mid_market", "smb"], n)
    touch = pd.Series(segment).map(
        {"enterprise": "high_touch", "mid_market": "low_touch", "smb": "tech_touch"}
    )
    arr = rng.lognormal(9, 1, n)
    models = ["lightgbm", "logistic", "health_score"] + (["oracle"] if with_oracle else [])
    for split, days in cutoffs.items():
        for day in days:
            truth = rng.random(n) * 0.4
            y = (rng.random(n) < truth).astype(int)
            for i, model in enumerate(models):
                noise = 0.0 if model == "oracle" else 0.1 * (i + 1)
                p = np.clip(truth + rng.normal(0, noise, n), 0.001, 0.999)
                parts.append(
                    pd.DataFrame(
                        {
                            "model": model,
                            "split": split,
                            "account_id": [f"A{j}" for j in range(n)],
                            "cutoff": day,
                            "y": y,
                            "score": p,
                            "arr": arr,
                            "segment": segment,
                            "touch_model": touch.to_numpy(),
                        }
                    )
                )
    return pd.concat(parts, ignore_index=True)


def _evaluation(with_oracle: bool = True):
    return build_evaluation(
        _scores(with_oracle), EvaluationConfig(csm_capacity_k=20), "churn", "churned_within_90d", 999
    )


def test_metrics_json_has_exactly_the_contract_keys():
    doc = metrics_json(_evaluation(with_oracle=True))
    assert set(doc) == {
        "test",
        "validation",
        "baselines",
        "oracle",
        "oracle_lift_ratio",
        "by_touch_tier",
        "by_segment",
        "n",
    }
    assert set(doc["test"]) == set(METRICS) == set(doc["validation"])
    assert set(doc["baselines"]) == {"logistic", "health_score"}
    assert all(set(b) == {"test"} and set(b["test"]) == set(METRICS) for b in doc["baselines"].values())
    assert set(doc["oracle"]) == {"test"} and set(doc["oracle"]["test"]) == set(METRICS)
    assert set(doc["by_touch_tier"]) == {"high_touch", "low_touch", "tech_touch"}
    assert set(doc["by_segment"]) == {"enterprise", "mid_market", "smb"}
    assert all(set(v) == set(METRICS) for v in doc["by_touch_tier"].values())
    assert set(doc["n"]) == {"train", "validation", "test", "test_positives"}
    assert doc["n"]["train"] == 999 and doc["n"]["test"] == 240
    ratio = (doc["test"]["roc_auc"] - 0.5) / (doc["oracle"]["test"]["roc_auc"] - 0.5)
    assert doc["oracle_lift_ratio"] == pytest.approx(ratio)
    json.dumps(doc, allow_nan=False)


def test_metrics_json_without_truth_has_no_oracle_keys_and_nan_is_null():
    scores = _scores(with_oracle=False)
    # a group with one class only: its AUC is undefined
    scores.loc[scores["segment"] == "enterprise", "y"] = 0
    doc = metrics_json(build_evaluation(scores, EvaluationConfig(), "churn", "churned_within_90d", 10))
    assert "oracle" not in doc and "oracle_lift_ratio" not in doc
    assert doc["by_segment"]["enterprise"]["roc_auc"] is None
    json.dumps(doc, allow_nan=False)


def test_metrics_table_rows_cover_every_model_split_and_group():
    ev = _evaluation()
    m = ev.metrics
    assert set(m["model"]) == {"lightgbm", "logistic", "health_score", "oracle"}
    assert set(m["split"]) == {"validation", "test"}
    assert set(m["group_kind"]) == {"all", "touch_model", "segment"}
    overall = m[(m["group_kind"] == "all")]
    assert len(overall) == 8 and (overall["n"] == 240).all()
    # the groups of a kind partition the rows
    tiers = m[(m["group_kind"] == "touch_model") & (m["model"] == "lightgbm") & (m["split"] == "test")]
    assert tiers["n"].sum() == 240
    # metrics_json reads the table: same number
    assert metrics_json(ev)["test"]["roc_auc"] == ev.metric("roc_auc")


def test_the_roc_table_and_the_roc_auc_metric_agree():
    ev = _evaluation()
    for model in ("lightgbm", "oracle"):
        curve = ev.curves["roc"][ev.curves["roc"]["model"] == model]
        area = np.trapezoid(curve["tpr"], curve["fpr"])
        assert area == pytest.approx(ev.metric("roc_auc", model=model), abs=1e-9)
    gains = plot_tables(ev)["gains"]
    at_10 = gains[(gains["model"] == "lightgbm") & np.isclose(gains["fraction_targeted"], 0.1)]
    assert at_10["fraction_captured"].iloc[0] == pytest.approx(ev.metric("recall_at_10pct"))


def test_calibration_table_has_equal_count_bins_per_model():
    cal = plot_tables(_evaluation())["calibration"]
    assert set(cal["model"]) == {"lightgbm", "logistic", "health_score", "oracle"}
    per_model = cal.groupby("model")["count"]
    assert (per_model.sum() == 240).all() and (per_model.count() == 10).all()


def test_dvc_outputs_and_figures_come_from_the_tables(tmp_path):
    ev = _evaluation()
    write_dvc_outputs(ev, tmp_path / "metrics" / "churn.json", tmp_path / "plots" / "churn")
    doc = json.loads((tmp_path / "metrics" / "churn.json").read_text())
    assert doc == json.loads(json.dumps(metrics_json(ev)))
    for name in ("roc", "pr", "calibration", "gains"):
        table = pd.read_csv(tmp_path / "plots" / "churn" / f"{name}.csv")
        assert "model" in table.columns and set(table["model"]) == set(ev.curves[name]["model"])
    figs = figures(ev)
    assert set(figs) == {"roc", "pr", "calibration", "gains"}
    # one line per model (plus the diagonal where drawn)
    assert len(figs["roc"].axes[0].lines) == 4 + 1
    assert len(figs["pr"].axes[0].lines) == 4


def test_evaluation_save_and_load_roundtrip(tmp_path):
    ev = _evaluation()
    ev.save(tmp_path / "evaluation")
    back = load_evaluation(tmp_path / "evaluation")
    assert metrics_json(back) == metrics_json(ev)
    pd.testing.assert_frame_equal(back.curves["roc"], ev.curves["roc"])
