"""Labels: every rule against a day-by-day brute-force loop, hand-built edge cases, and the simulator's truth."""

from __future__ import annotations

import pandas as pd
import pytest
import sqlglot
from sqlglot.errors import ErrorLevel

from churnml.config import LabelsConfig, SpineConfig
from churnml.dataset.labels import build_labels, label_columns, labels_sql
from churnml.dataset.spine import build_spine, data_end, training_cutoffs
from churnml.errors import ChurnmlError

T = pd.Timestamp
DAY = pd.Timedelta(days=1)
CHURN, EXPAND, CONTRACT = label_columns(LabelsConfig())


def oracle_labels(subscriptions: pd.DataFrame, spine: pd.DataFrame, cfg: LabelsConfig, end) -> pd.DataFrame:
    """Plain loops over accounts, subscriptions and every day of each horizon."""
    h, g = cfg.horizon_days, cfg.grace_days
    churn_col, expand_col, contract_col = label_columns(cfg)
    subs = {
        a: [(r.start_date, r.end_date, float(r.mrr), float(r.seats)) for r in frame.itertuples()]
        for a, frame in subscriptions.groupby("account_id")
    }

    def active(rows, day):
        return [r for r in rows if r[0] <= day and (pd.isna(r[1]) or r[1] > day)]

    def churn_events(rows):
        out = []
        for _, e, _, _ in rows:
            if pd.isna(e):
                continue
            covered = active(rows, e) or [r for r in rows if e <= r[0] <= e + g * DAY]
            if not covered:
                out.append(e)
        return out

    records = []
    for row in spine.itertuples():
        rows, c = subs.get(row.account_id, []), T(row.cutoff)
        if c + (h + g) * DAY > T(end):
            records.append((row.account_id, c, pd.NA, pd.NA, pd.NA))
            continue
        churned = any(c <= e < c + h * DAY for e in churn_events(rows))
        base = active(rows, c - DAY)
        b_mrr, b_seats = sum(r[2] for r in base), sum(r[3] for r in base)
        expanded = contracted = False
        for i in range(h):
            now = active(rows, c + i * DAY)
            if not now:
                continue
            mrr, seats = sum(r[2] for r in now), sum(r[3] for r in now)
            up, down = cfg.expansion_threshold, cfg.contraction_threshold
            if (mrr > b_mrr and mrr - b_mrr >= up * b_mrr - 1e-6) or (
                seats > b_seats and seats - b_seats >= up * b_seats - 1e-6
            ):
                expanded = True
            if mrr < b_mrr and b_mrr - mrr >= down * b_mrr - 1e-6:
                contracted = True
        records.append(
            (row.account_id, c, int(churned), int(expanded and not churned), int(contracted and not churned))
        )
    out = pd.DataFrame(records, columns=["account_id", "cutoff", churn_col, expand_col, contract_col])
    out = out.assign(account_id=out["account_id"].astype(str), cutoff=out["cutoff"].astype("datetime64[us]"))
    return out.astype({churn_col: "Int8", expand_col: "Int8", contract_col: "Int8"})


def _edge_labels(edge_tables, cutoffs, cfg=None):
    cfg = cfg or LabelsConfig()
    spine = build_spine(edge_tables["subscriptions"], cutoffs)
    end = data_end(edge_tables)
    return spine, build_labels(edge_tables["subscriptions"], spine, cfg, end), end


def _label(labels, account, cutoff, column):
    row = labels[(labels["account_id"] == account) & (labels["cutoff"] == T(cutoff))]
    assert len(row) == 1, (account, cutoff)
    return row[column].iloc[0]


def test_edge_cases(edge_tables):
    cutoffs = pd.date_range("2024-02-01", "2025-07-01", freq="MS")
    _, labels, _ = _edge_labels(edge_tables, cutoffs)
    # late renewal within grace: not churn, and the gap is not contraction
    assert _label(labels, "E1", "2024-04-01", CHURN) == 0
    assert _label(labels, "E1", "2024-04-01", CONTRACT) == 0
    # renewal 40 days after the end: churn on the end date
    assert _label(labels, "E2", "2024-04-01", CHURN) == 1
    assert _label(labels, "E2", "2024-03-01", CHURN) == 0  # 06-10 is outside [03-01, 05-30)
    # annual contract: churn at the term end (2025-01-01), not when usage stopped (May 2024)
    assert _label(labels, "E3", "2024-06-01", CHURN) == 0
    assert _label(labels, "E3", "2024-11-01", CHURN) == 1
    # an event exactly on the cutoff day is inside [cutoff, cutoff + horizon); on cutoff + horizon it is not
    assert _label(labels, "E4", "2024-06-01", CHURN) == 1
    assert _label(labels, "E4", "2024-03-01", CHURN) == 0  # [03-01, 05-30) ends before 06-01
    # expansion by seats only (10 -> 11 is exactly +10%), contraction by MRR (100 -> 85)
    assert _label(labels, "E5", "2024-06-01", EXPAND) == 1
    assert _label(labels, "E5", "2024-06-01", CONTRACT) == 0
    assert _label(labels, "E6", "2024-06-01", CONTRACT) == 1
    assert _label(labels, "E6", "2024-06-01", EXPAND) == 0
    assert _label(labels, "E7", "2024-06-01", CHURN) == 0
    # unlabeled near the data end (2025-07-01): cutoff + 90 + 30 days must not pass it
    assert _label(labels, "E7", "2025-03-01", CHURN) == 0
    for c in ("2025-04-01", "2025-07-01"):
        assert labels.loc[labels["cutoff"] == T(c), [CHURN, EXPAND, CONTRACT]].isna().all().all()


def test_event_on_the_horizon_boundary_is_outside(edge_tables):
    # E4 churns on 2024-06-01; a cutoff 90 days before sees it on cutoff + horizon: not in [c, c + 90)
    cutoff = T("2024-06-01") - 90 * DAY
    spine = pd.DataFrame({"account_id": ["E4", "E4"], "cutoff": [cutoff, cutoff + DAY]})
    labels = build_labels(edge_tables["subscriptions"], spine, LabelsConfig(), T("2025-07-01"))
    assert labels[CHURN].tolist() == [0, 1]


def test_edge_cases_match_brute_force(edge_tables):
    cutoffs = pd.date_range("2024-02-01", "2025-07-01", freq="SMS")
    for cfg in (LabelsConfig(), LabelsConfig(horizon_days=30, grace_days=10, expansion_threshold=0.5)):
        spine, labels, end = _edge_labels(edge_tables, cutoffs, cfg)
        pd.testing.assert_frame_equal(labels, oracle_labels(edge_tables["subscriptions"], spine, cfg, end))


def test_simulated_labels_match_brute_force(sim):
    tables, _ = sim
    cfg = LabelsConfig()
    cuts = training_cutoffs(tables, SpineConfig())
    spine = build_spine(tables["subscriptions"], cuts)
    end = data_end(tables)
    labels = build_labels(tables["subscriptions"], spine, cfg, end)
    pd.testing.assert_frame_equal(labels, oracle_labels(tables["subscriptions"], spine, cfg, end))
    labeled = labels.dropna()
    assert labeled[CHURN].sum() > 10 and labeled[EXPAND].sum() > 10 and labeled[CONTRACT].sum() > 0
    assert labels[CHURN].isna().sum() > 0


def test_churn_agrees_with_the_simulators_truth(sim):
    tables, truth = sim
    cuts = training_cutoffs(tables, SpineConfig())
    spine = build_spine(tables["subscriptions"], cuts)
    labels = build_labels(tables["subscriptions"], spine, LabelsConfig(), data_end(tables)).dropna()
    dates = truth["accounts"].set_index("account_id")["churn_date"]
    churn_date = pd.to_datetime(labels["account_id"].map(dates))
    expected = (churn_date >= labels["cutoff"]) & (churn_date < labels["cutoff"] + 90 * DAY)
    assert (labels[CHURN].astype(bool) == expected).all()
    assert expected.sum() > 10


def test_bad_spine_is_refused(edge_tables):
    spine = pd.DataFrame({"account_id": ["E1", "E1"], "cutoff": [T("2024-03-01")] * 2})
    with pytest.raises(ChurnmlError, match="duplicate"):
        build_labels(edge_tables["subscriptions"], spine, LabelsConfig(), T("2025-07-01"))
    with pytest.raises(ChurnmlError, match="start of a day"):
        build_labels(
            edge_tables["subscriptions"],
            pd.DataFrame({"account_id": ["E1"], "cutoff": [T("2024-03-01 06:00")]}),
            LabelsConfig(),
            T("2025-07-01"),
        )


def test_label_sql_transpiles_to_spark():
    spark = sqlglot.transpile(
        labels_sql(LabelsConfig(), T("2025-07-01")),
        read="duckdb",
        write="spark",
        unsupported_level=ErrorLevel.RAISE,
    )[0]
    assert "NOT EXISTS" in spark and sqlglot.parse_one(spark, read="spark") is not None
