"""Features: every family against a brute-force loop, leakage (hypothesis), skipped families, Spark SQL."""

from __future__ import annotations

import math

import numpy as np
import pandas as pd
import pytest
import sqlglot
from hypothesis import given, settings
from hypothesis import strategies as st
from sqlglot.errors import ErrorLevel

from churnml.config import FeaturesConfig, SpineConfig
from churnml.dataset.spine import SPINE_SQL, build_spine, training_cutoffs
from churnml.errors import ChurnmlError
from churnml.features.catalogue import describe_feature, feature_families, feature_names, parse_feature
from churnml.features.engine import build_features, features_for_folder
from churnml.features.sql import CATEGORICAL
from churnml.features.steps import ALWAYS_PRESENT, all_steps
from churnml.survival.rows import design as survival_design

T = pd.Timestamp
DAY = pd.Timedelta(days=1)
CFG = FeaturesConfig()


# --------------------------------------------------------------------------------------------- the oracle


def _tok(value: str) -> str:
    return "".join(ch if ch.isalnum() else "_" for ch in value.lower()).strip("_")


def _records(frame: pd.DataFrame | None) -> dict[str, list[dict]]:
    """Rows per account as plain dicts (missing values as None), so the oracle is plain Python."""
    if frame is None:
        return {}
    out: dict[str, list[dict]] = {}
    for row in frame.astype(object).where(frame.notna(), None).to_dict("records"):
        out.setdefault(row["account_id"], []).append(row)
    return out


def _mean(values: list) -> float:
    return sum(values) / len(values) if values else np.nan


def oracle_features(tables: dict, rows: pd.DataFrame, cutoff_max, cfg: FeaturesConfig = CFG) -> pd.DataFrame:
    """Plain loop over the (account, cutoff) rows and over each account's rows of every table."""
    usage = tables["usage"]
    metrics = sorted(usage.loc[usage["date"] < cutoff_max, "metric"].unique())
    keys = [m for m in metrics if m.startswith(cfg.key_feature_prefix)] or metrics
    usage_start = usage.loc[(usage["date"] < cutoff_max) & (usage["value"] > 0), "date"].min()
    by_acc = {a: f for a, f in usage.groupby("account_id")}
    subs_by = _records(tables["subscriptions"])
    tickets, nps_by, acts = (
        _records(tables.get(n)) for n in ("support_tickets", "nps_responses", "csm_activities")
    )
    contacts_by, invoices_by = _records(tables.get("contacts")), _records(tables.get("invoices"))
    kinds = []
    if "csm_activities" in tables:
        csm = tables["csm_activities"]
        kinds = sorted(csm.loc[csm["occurred_at"] < cutoff_max, "kind"].unique())
    accounts = tables["accounts"].set_index("account_id")
    out = []
    for a, c in zip(rows["account_id"], rows["cutoff"], strict=True):
        c = T(c)
        f: dict = {"account_id": a, "cutoff": c}
        acc = accounts.loc[a]
        f.update(
            account_segment=acc["segment"],
            account_touch_model=acc["touch_model"],
            account_industry=acc["industry"],
            account_region=acc["region"],
        )
        ua = by_acc.get(a, usage.iloc[:0])
        ua = ua[ua["date"] < c]
        day_no = ((c - ua["date"]) / DAY).to_numpy()  # 1 = the day before the cutoff
        values, metric_of = ua["value"].to_numpy(), ua["metric"].to_numpy()

        def window(m, lo, hi=0, day_no=day_no, values=values, metric_of=metric_of):
            """Sum of metric m over the days [c - lo, c - hi)."""
            return values[(metric_of == m) & (day_no <= lo) & (day_no > hi)].sum()

        def running(s, day):
            return s["start_date"] <= day and (s["end_date"] is None or s["end_date"] > day)

        known = [s for s in subs_by[a] if s["start_date"] < c]
        current = [s for s in known if running(s, c - DAY)]
        before = [s for s in known if running(s, c - 91 * DAY)]
        first_start = min(s["start_date"] for s in known)
        seats_now, seats_before = sum(s["seats"] for s in current), sum(s["seats"] for s in before)
        mrr_now, mrr_before = sum(s["mrr"] for s in current), sum(s["mrr"] for s in before)

        # usage
        for m in metrics:
            t = _tok(m)
            for w in cfg.windows_days:
                f[f"usage_{t}_sum_{w}d"] = window(m, w)
            f[f"usage_{t}_mean_30d"] = window(m, 30) / 30
            prev = window(m, 60, 30)
            f[f"usage_{t}_trend_30d"] = window(m, 30) / prev - 1 if prev > 0 else np.nan
            pos = day_no[(metric_of == m) & (values > 0)]
            f[f"usage_{t}_days_since_last"] = pos.min() if len(pos) else np.nan
            weeks = np.array([window(m, 7 * (j + 1), 7 * j) for j in range(1, 13)])
            std = weeks.std(ddof=1)
            enough = first_start <= c - 91 * DAY
            f[f"usage_{t}_zscore_7d"] = (
                (window(m, 7) - weeks.mean()) / std if std > 1e-9 and enough else np.nan
            )
        # adoption
        active_sum = window(cfg.active_users_metric, 30) if cfg.active_users_metric in metrics else np.nan
        f["adoption_license_utilisation_30d"] = active_sum / 30 / seats_now if seats_now > 0 else np.nan
        f["adoption_breadth_30d"] = sum(window(m, 30) > 0 for m in keys)
        f["adoption_active_days_30d"] = len(set(day_no[(day_no <= 30) & (values > 0)]))
        # lifecycle
        used = day_no[np.isin(metric_of, keys) & (values > 0)]
        first_use = c - used.max() * DAY if len(used) else None
        tenure = (c - first_start).days
        f["lifecycle_tenure_days"] = tenure
        utilisation = (0.0 if math.isnan(active_sum) else active_sum) / 30 / seats_now if seats_now > 0 else 0
        if first_use is None or tenure < cfg.onboarding_days:
            stage = "onboarding"
        elif (seats_now > 0 and utilisation >= 0.9) or (seats_before > 0 and seats_now > seats_before):
            stage = "expansion"
        else:
            stage = "adoption"
        f["lifecycle_journey_stage"] = stage
        ttfv = (
            (first_use - first_start).days if first_use is not None and first_start >= usage_start else np.nan
        )
        f["lifecycle_time_to_first_value_days"] = ttfv
        f["lifecycle_first_value_reached"] = int(first_use is not None)
        # contract
        f.update(contract_mrr=mrr_now, contract_arr=12 * mrr_now, contract_seats=seats_now)
        main = max(current, key=lambda s: (s["mrr"], s["start_date"], s["subscription_id"]))
        f["contract_plan"], f["contract_billing_period"] = main["plan"], main["billing_period"]
        period, n = {"annual": 12, "semiannual": 6}.get(main["billing_period"], 1), 1
        while main["start_date"] + pd.DateOffset(months=n * period) < c:
            n += 1
        f["contract_days_to_renewal"] = (main["start_date"] + pd.DateOffset(months=n * period) - c).days
        renewals = upgrades = downgrades = 0
        for new in known:
            prev_rows = [
                p
                for p in subs_by[a]
                if p["subscription_id"] != new["subscription_id"]
                and p["end_date"] is not None
                and new["start_date"] - 30 * DAY <= p["end_date"] <= new["start_date"]
            ]
            if prev_rows:
                p = max(prev_rows, key=lambda s: (s["end_date"], s["mrr"], s["subscription_id"]))
                renewals += 1
                upgrades += int(new["mrr"] > p["mrr"])
                downgrades += int(new["mrr"] < p["mrr"])
        f.update(contract_renewals_count=renewals, contract_upgrades_count=upgrades)
        f["contract_downgrades_count"] = downgrades
        f["contract_mrr_change_90d"] = (mrr_now - mrr_before) / mrr_before if mrr_before > 0 else np.nan
        # support
        if "support_tickets" in tables:
            tk = [t for t in tickets.get(a, []) if t["created_at"] < c]
            f["support_tickets_count_30d"] = sum(t["created_at"] >= c - 30 * DAY for t in tk)
            f["support_tickets_count_90d"] = sum(t["created_at"] >= c - 90 * DAY for t in tk)
            f["support_high_priority_count_30d"] = sum(
                t["created_at"] >= c - 30 * DAY and t["priority"] in ("high", "urgent") for t in tk
            )
            done = [t for t in tk if t["resolved_at"] is not None and c - 90 * DAY <= t["resolved_at"] < c]
            hours = [(t["resolved_at"] - t["created_at"]).total_seconds() / 3600 for t in done]
            f["support_resolution_hours_mean_90d"] = _mean(hours)
            f["support_csat_mean_90d"] = _mean([t["csat"] for t in done if t["csat"] is not None])
            f["support_open_tickets_count"] = sum(
                t["resolved_at"] is None or t["resolved_at"] >= c for t in tk
            )
        if "nps_responses" in tables:
            nps = sorted(
                (r for r in nps_by.get(a, []) if r["responded_at"] < c),
                key=lambda r: (r["responded_at"], r["response_id"]),
                reverse=True,
            )
            f["nps_score_latest"] = nps[0]["score"] if nps else np.nan
            f["nps_score_change"] = nps[0]["score"] - nps[1]["score"] if len(nps) > 1 else np.nan
            f["nps_days_since_latest"] = (c - nps[0]["responded_at"].normalize()).days if nps else np.nan
        if "csm_activities" in tables:
            act = [r for r in acts.get(a, []) if r["occurred_at"] < c]
            recent = [r for r in act if r["occurred_at"] >= c - 90 * DAY]
            f["csm_touches_count_90d"] = len(recent)
            for k in kinds:
                f[f"csm_{_tok(k)}_count_90d"] = sum(r["kind"] == k for r in recent)
            last = max((r["occurred_at"] for r in act), default=None)
            f["csm_days_since_last_touch"] = (c - last.normalize()).days if last is not None else np.nan
        if "contacts" in tables:
            ct = [
                r
                for r in contacts_by.get(a, [])
                if r["role"] in ("sponsor", "champion") and r["start_date"] < c
            ]
            left = [r["end_date"] for r in ct if r["end_date"] is not None and r["end_date"] < c]
            f["contacts_sponsor_left_90d"] = int(any(d >= c - 90 * DAY for d in left))
            f["contacts_days_since_sponsor_left"] = (c - max(left)).days if left else np.nan
            f["contacts_champion_count"] = sum(r["end_date"] is None or r["end_date"] >= c for r in ct)
        if "invoices" in tables:
            iv = [r for r in invoices_by.get(a, []) if c - 180 * DAY <= r["due_date"] < c]
            f["invoices_overdue_count_90d"] = sum(
                r["due_date"] >= c - 90 * DAY and (r["paid_date"] is None or r["paid_date"] > r["due_date"])
                for r in iv
            )
            late = []
            for r in iv:
                paid = r["paid_date"] if r["paid_date"] is not None and r["paid_date"] < c else c
                late.append(max(0, (paid - r["due_date"]).days))
            f["invoices_days_late_mean_180d"] = _mean(late)
        out.append(f)
    return pd.DataFrame(out)


def assert_matches_oracle(got: pd.DataFrame, want: pd.DataFrame) -> None:
    """Same columns; categoricals equal; numbers equal to 1e-9 (both missing counts as equal)."""
    assert set(got.columns) == set(want.columns), set(got.columns) ^ set(want.columns)
    got = got.reset_index(drop=True)
    for col in want.columns:
        if col in ("account_id", *CATEGORICAL):
            assert got[col].astype(object).tolist() == want[col].astype(object).tolist(), col
        elif col == "cutoff":
            assert (got[col] == want[col]).all()
        else:
            np.testing.assert_allclose(
                got[col].to_numpy(float), want[col].to_numpy(float), rtol=1e-9, atol=1e-9, err_msg=col
            )


# ------------------------------------------------------------------------------------- simulated data


@pytest.fixture(scope="module")
def sim_features(sim):
    tables, _ = sim
    cuts = training_cutoffs(tables, SpineConfig())
    spine = build_spine(tables["subscriptions"], cuts)
    return tables, spine, cuts, build_features(tables, spine, CFG)


def test_every_family_matches_brute_force_on_simulated_data(sim_features):
    tables, spine, cuts, got = sim_features
    # the first and last cutoffs in full, and a deterministic sample of the rest
    pick = spine["cutoff"].isin([cuts[0], cuts[-1]]) | (np.arange(len(spine)) % 23 == 0)
    want = oracle_features(tables, spine[pick], cuts[-1])
    assert_matches_oracle(got[pick.to_numpy()], want)
    assert len(want) > 250
    # the comparison is not vacuous: the data moves (nearly) every numeric feature
    constant = [c for c in got.columns[2:] if c not in CATEGORICAL and got[c].nunique() <= 1]
    assert len(constant) <= 2, constant


@pytest.mark.parametrize("spacing", ["weekly", "irregular"])
def test_any_cutoff_spacing_matches_brute_force(sim, spacing):
    # the usage periods are cut from the cutoffs: weekly ones, and days apart next to gaps past the look-back
    tables, _ = sim
    monthly = training_cutoffs(tables, SpineConfig())
    if spacing == "weekly":
        cuts = list(pd.date_range(monthly[0], monthly[-1], freq="W-MON"))
    else:
        mid = monthly[len(monthly) // 2]
        cuts = [monthly[0], mid - 200 * DAY, mid, mid + DAY, mid + 3 * DAY, mid + 45 * DAY, monthly[-1]]
    spine = build_spine(tables["subscriptions"], cuts)
    got = build_features(tables, spine, CFG)
    pick = spine["cutoff"].isin([cuts[0], cuts[-1]]) | (np.arange(len(spine)) % 31 == 0)
    want = oracle_features(tables, spine[pick], cuts[-1])
    assert len(want) > 250
    assert_matches_oracle(got[pick.to_numpy()], want)


def test_contract_of_the_feature_table(sim_features):
    tables, spine, _, got = sim_features
    assert list(got.columns[:2]) == ["account_id", "cutoff"]
    assert got[["account_id", "cutoff"]].equals(spine.reset_index(drop=True))
    assert got["cutoff"].dtype == "datetime64[us]" and got["account_id"].dtype == "str"
    for col in got.columns[2:]:
        assert got[col].dtype == ("str" if col in CATEGORICAL else "float64"), col
    assert set(ALWAYS_PRESENT) <= set(got.columns)
    metrics, kinds = (
        sorted(tables["usage"]["metric"].unique()),
        sorted(tables["csm_activities"]["kind"].unique()),
    )
    assert list(got.columns[2:]) == feature_names(CFG, metrics=metrics, csm_kinds=kinds)
    assert got["contract_mrr"].gt(0).mean() > 0.9 and got["contract_days_to_renewal"].between(0, 366).all()


def test_account_partitions_give_the_same_features(sim_features, monkeypatch):
    import churnml.features.engine as engine

    tables, spine, _, got = sim_features
    assert engine._groups_per_pass("4GB") == 4_000_000_000 // engine.BYTES_PER_GROUP
    monkeypatch.setattr(engine, "BYTES_PER_GROUP", 1_000_000)  # 2,000 groups a pass under 2 GB: ~10 passes
    assert (
        len(engine._partitions(spine["account_id"].tolist(), len(spine), engine._groups_per_pass("2GB"))) > 5
    )
    pd.testing.assert_frame_equal(build_features(tables, spine, FeaturesConfig(memory_limit="2GB")), got)


def test_parquet_folder_gives_the_same_features(sim_features, tmp_path):
    tables, spine, cuts, got = sim_features
    for name, frame in tables.items():
        frame.to_parquet(tmp_path / f"{name}.parquet")
    some = cuts[-3:]
    from_folder = features_for_folder(tmp_path, some, FeaturesConfig(memory_limit="500MB", threads=1))
    expected = got[got["cutoff"].isin(some)].reset_index(drop=True)
    pd.testing.assert_frame_equal(from_folder, expected)


# --------------------------------------------------------------------------------------- edge cases


def _edge_full(edge_tables: dict) -> dict:
    """The edge tables plus one of each optional table, with events on and around 2024-06-01."""

    def ts(values):
        return pd.Series(pd.to_datetime(values, format="ISO8601"), dtype="datetime64[us]")

    tables = dict(edge_tables)
    tables["usage"] = pd.concat(
        [
            edge_tables["usage"],
            pd.DataFrame(
                {
                    "account_id": ["E1", "E1", "E1"],
                    "date": ts(["2024-05-31", "2024-06-01", "2024-03-02"]),
                    "metric": ["logins", "logins", "feature_reports"],
                    "value": [7.0, 1000.0, 2.0],
                }
            ),
        ],
        ignore_index=True,
    )
    tables["support_tickets"] = pd.DataFrame(
        {
            "ticket_id": ["T1", "T2", "T3", "T4"],
            "account_id": ["E1", "E1", "E1", "E1"],
            "created_at": ts(["2024-05-20 10:00", "2024-05-31 23:59", "2024-06-01 00:00", "2024-02-01"]),
            "resolved_at": ts(["2024-05-21 12:30", "2024-06-01 00:00", None, "2024-02-02"]),
            "priority": ["urgent", "low", "high", "high"],
            "category": ["bug"] * 4,
            "csat": [2.0, 5.0, None, 1.0],
        }
    )
    tables["nps_responses"] = pd.DataFrame(
        {
            "response_id": ["N1", "N2", "N3"],
            "account_id": ["E1", "E1", "E1"],
            "contact_id": ["C1", "C1", "C1"],
            "responded_at": ts(["2024-03-01 09:00", "2024-05-15 09:00", "2024-06-01 00:00"]),
            "score": pd.array([9, 4, 0], dtype="Int64"),
        }
    )
    tables["csm_activities"] = pd.DataFrame(
        {
            "activity_id": ["M1", "M2", "M3"],
            "account_id": ["E1", "E1", "E1"],
            "occurred_at": ts(["2024-05-30 15:00", "2024-01-10 10:00", "2024-06-01 08:00"]),
            "kind": ["qbr", "call", "Exec Briefing"],
            "csm_id": ["x"] * 3,
        }
    )
    tables["contacts"] = pd.DataFrame(
        {
            "contact_id": ["C1", "C2", "C3", "C4"],
            "account_id": ["E1", "E1", "E1", "E1"],
            "role": ["sponsor", "champion", "champion", "user"],
            "start_date": ts(["2024-01-01", "2024-01-01", "2024-06-01", "2024-01-01"]),
            "end_date": ts(["2024-05-31", "2024-06-01", None, "2024-05-01"]),
        }
    )
    tables["invoices"] = pd.DataFrame(
        {
            "invoice_id": ["I1", "I2", "I3", "I4"],
            "account_id": ["E1", "E1", "E1", "E1"],
            "issued_date": ts(["2024-04-01", "2024-05-01", "2024-05-01", "2024-05-15"]),
            "due_date": ts(["2024-04-30", "2024-05-20", "2024-05-31", "2024-06-01"]),
            "amount": [100.0] * 4,
            "paid_date": ts(["2024-04-29", "2024-05-25", "2024-06-01", None]),
        }
    )
    return tables


def test_edge_cases_on_the_cutoff_day(edge_tables):
    tables = _edge_full(edge_tables)
    spine = build_spine(tables["subscriptions"], ["2024-06-01", "2024-07-01", "2025-02-01"])
    got = build_features(tables, spine, CFG)
    assert_matches_oracle(got, oracle_features(tables, spine, T("2025-02-01")))
    e1 = got[(got["account_id"] == "E1") & (got["cutoff"] == T("2024-06-01"))].iloc[0]
    assert e1["usage_logins_sum_7d"] == 7.0  # the 1000 logins dated on the cutoff day are not seen
    assert e1["usage_logins_days_since_last"] == 1.0
    assert e1["support_tickets_count_30d"] == 2 and e1["support_open_tickets_count"] == 1  # T2 open at cutoff
    assert e1["support_high_priority_count_30d"] == 1 and e1["support_csat_mean_90d"] == 2.0
    assert e1["nps_score_latest"] == 4 and e1["nps_score_change"] == -5 and e1["nps_days_since_latest"] == 17
    assert e1["csm_qbr_count_90d"] == 1 and e1["csm_exec_briefing_count_90d"] == 0
    assert e1["contacts_sponsor_left_90d"] == 1 and e1["contacts_days_since_sponsor_left"] == 1
    assert e1["contacts_champion_count"] == 1  # C2 leaves on the cutoff day: not known yet; C3 not started
    assert e1["invoices_overdue_count_90d"] == 2  # I2 paid late, I3 unpaid as of the cutoff; I4 not due
    # annual contract E3: renewal is its term end (2025-01-01), whatever the usage did
    e3 = got[(got["account_id"] == "E3") & (got["cutoff"] == T("2024-06-01"))].iloc[0]
    assert e3["contract_days_to_renewal"] == (T("2025-01-01") - T("2024-06-01")).days
    assert e3["usage_logins_days_since_last"] == (T("2024-06-01") - T("2024-05-15")).days
    # E7 started on 2024-02-29: annual term ends are clamped to the month's end
    e7 = got[(got["account_id"] == "E7") & (got["cutoff"] == T("2025-02-01"))].iloc[0]
    assert e7["contract_days_to_renewal"] == (T("2025-02-28") - T("2025-02-01")).days


def test_a_semiannual_term_ends_every_six_months_from_its_start(edge_tables):
    """A 6-month term read as annual would put its term end 6 months late (ChurnSim's ``_biann`` plans)."""
    tables = _edge_full(edge_tables)
    subs = tables["subscriptions"]
    tables["subscriptions"] = subs.assign(
        billing_period=subs["billing_period"].mask(subs["account_id"] == "E7", "semiannual")
    )
    spine = build_spine(tables["subscriptions"], ["2024-06-01", "2024-07-01", "2025-02-01"])
    got = build_features(tables, spine, CFG)
    assert_matches_oracle(got, oracle_features(tables, spine, T("2025-02-01")))
    e7 = got[got["account_id"] == "E7"].set_index("cutoff")
    # started 2024-02-29: term ends 2024-08-29, 2025-02-28 (clamped), never 2025-02-28 seen from June 2024
    assert e7.loc[T("2024-06-01"), "contract_days_to_renewal"] == (T("2024-08-29") - T("2024-06-01")).days
    assert e7.loc[T("2025-02-01"), "contract_days_to_renewal"] == (T("2025-02-28") - T("2025-02-01")).days
    assert e7.loc[T("2024-06-01"), "contract_billing_period"] == "semiannual"


def test_optional_tables_absent_skip_their_families(edge_tables):
    spine = build_spine(edge_tables["subscriptions"], ["2024-06-01"])
    got = build_features(edge_tables, spine, CFG)
    families = set(feature_families(got.columns).values())
    assert families == {"account", "usage", "adoption", "lifecycle", "contract"}
    # the metric list comes from the data: E3 and E7 have logins and feature_reports, nothing else
    assert {parse_feature(c).metric for c in got.columns if c.startswith("usage_")} == {
        "logins",
        "feature_reports",
    }
    assert got["adoption_license_utilisation_30d"].isna().all()  # no active-users metric in this data
    only = build_features(edge_tables, spine, FeaturesConfig(families=["contract", "nps"]))
    assert set(feature_families(only.columns).values()) == {"contract"}
    with pytest.raises(ChurnmlError, match=r"features.families.*horoscope.*must be one of"):
        build_features(edge_tables, spine, FeaturesConfig(families=["usage", "horoscope"]))


def test_bad_inputs_are_refused(edge_tables, tmp_path):
    spine = build_spine(edge_tables["subscriptions"], ["2024-06-01"])
    with pytest.raises(ChurnmlError, match="required"):
        build_features({"accounts": edge_tables["accounts"]}, spine, CFG)
    with pytest.raises(ChurnmlError, match="duplicate"):
        build_features(edge_tables, pd.concat([spine, spine]), CFG)
    edge_tables["usage"].to_csv(tmp_path / "usage.csv", index=False)
    with pytest.raises(ChurnmlError, match="usage.csv"):
        build_features(tmp_path, spine, CFG)


# ------------------------------------------------------------------------------------------- leakage

CUTOFF = T("2024-06-01")


@pytest.fixture(scope="module")
def leak_base(edge_tables) -> tuple[dict, pd.DataFrame, pd.DataFrame]:
    """Every table with rows around CUTOFF, the spine at CUTOFF, and its features."""
    tables = _edge_full(edge_tables)
    spine = build_spine(tables["subscriptions"], [CUTOFF])
    return tables, spine, build_features(tables, spine, CFG)


# the cutoff day itself is the classic leak: draw it often
on_or_after = st.one_of(st.just(0), st.sampled_from([1, 7, 30, 90]), st.integers(0, 400)).map(
    lambda d: CUTOFF + d * DAY
)
accounts = st.sampled_from(["E1", "E3", "E5", "E7"])


def _add(frame: pd.DataFrame, row: dict) -> pd.DataFrame:
    return pd.concat([frame, pd.DataFrame([row]).astype(frame.dtypes.to_dict())], ignore_index=True)


@st.composite
def future_change(draw):
    """One change to a row dated on or after the cutoff, as (table, function of the frame)."""
    kind = draw(
        st.sampled_from(
            [
                "usage_add",
                "usage_edit",
                "usage_drop",
                "ticket",
                "resolve",
                "nps",
                "csm",
                "contact_leaves",
                "contact_joins",
                "invoice_paid",
                "invoice_new",
                "sub_starts",
                "sub_ends",
            ]
        )
    )
    day, acc = draw(on_or_after), draw(accounts)
    later = day + draw(st.integers(1, 400)) * DAY
    value = draw(st.floats(0, 1e4, allow_nan=False))
    if kind == "usage_add":
        metric = draw(st.sampled_from(["logins", "feature_reports", "brand_new_metric"]))
        return "usage", lambda f: _add(f, {"account_id": acc, "date": day, "metric": metric, "value": value})
    if kind == "usage_edit":
        return "usage", lambda f: f.assign(value=f["value"].where(f["date"] < CUTOFF, value))
    if kind == "usage_drop":
        return "usage", lambda f: f[(f["date"] < CUTOFF) | (f["account_id"] != acc)]
    if kind == "ticket":
        prio = draw(st.sampled_from(["low", "urgent"]))
        row = {
            "ticket_id": "TX",
            "account_id": acc,
            "created_at": day,
            "resolved_at": later,
            "priority": prio,
            "category": "bug",
            "csat": 1.0,
        }
        return "support_tickets", lambda f: _add(f, row)
    if kind == "resolve":  # tickets unresolved as of the cutoff get resolved later, with any CSAT

        def resolve(f):
            unknown = f["resolved_at"].isna() | (f["resolved_at"] >= CUTOFF)
            return f.assign(
                resolved_at=f["resolved_at"].mask(unknown, later), csat=f["csat"].mask(unknown, 1.0)
            )

        return "support_tickets", resolve
    if kind == "nps":
        row = {"response_id": "NX", "account_id": acc, "contact_id": "C1", "responded_at": day, "score": 0}
        return "nps_responses", lambda f: _add(f, row)
    if kind == "csm":
        row = {"activity_id": "MX", "account_id": acc, "occurred_at": day, "kind": "brand_new", "csm_id": "x"}
        return "csm_activities", lambda f: _add(f, row)
    if kind == "contact_leaves":  # anyone still there at the cutoff leaves on or after it
        return "contacts", lambda f: f.assign(
            end_date=f["end_date"].mask(f["end_date"].isna() | (f["end_date"] >= CUTOFF), day)
        )
    if kind == "contact_joins":
        row = {"contact_id": "CX", "account_id": acc, "role": "sponsor", "start_date": day, "end_date": later}
        return "contacts", lambda f: _add(f, row)
    if kind == "invoice_paid":  # invoices unpaid as of the cutoff get paid on or after it (or never)
        never = draw(st.booleans())
        return "invoices", lambda f: f.assign(
            paid_date=f["paid_date"].mask(
                f["paid_date"].isna() | (f["paid_date"] >= CUTOFF), pd.NaT if never else day
            )
        )
    if kind == "invoice_new":
        row = {
            "invoice_id": "IX",
            "account_id": acc,
            "issued_date": day - 40 * DAY,
            "due_date": day,
            "amount": 5.0,
            "paid_date": later,
        }
        return "invoices", lambda f: _add(f, row)
    if kind == "sub_starts":
        row = {
            "subscription_id": "SX",
            "account_id": acc,
            "plan": "max",
            "billing_period": "annual",
            "start_date": day,
            "end_date": pd.NaT,
            "mrr": value,
            "seats": 99,
        }
        return "subscriptions", lambda f: _add(f, row)
    # sub_ends: subscriptions running at the cutoff end on another day on or after it (or never)
    return "subscriptions", lambda f: f.assign(
        end_date=f["end_date"].mask(
            (f["end_date"].isna() | (f["end_date"] >= CUTOFF)) & (f["start_date"] < CUTOFF), later
        )
    )


@settings(max_examples=20, deadline=None)
@given(changes=st.lists(future_change(), min_size=1, max_size=3))
def test_rows_on_or_after_the_cutoff_never_change_its_features(leak_base, changes):
    tables, spine, before = leak_base
    changed = dict(tables)
    for table, change in changes:
        changed[table] = change(changed[table])
    after = build_features(changed, spine, CFG)
    pd.testing.assert_frame_equal(after, before)


def test_a_change_before_the_cutoff_is_seen(leak_base):
    """The leakage test can fail: the same kind of change one day before the cutoff moves features."""
    tables, spine, before = leak_base
    changed = dict(tables)
    changed["usage"] = _add(
        tables["usage"], {"account_id": "E7", "date": CUTOFF - DAY, "metric": "logins", "value": 50.0}
    )
    after = build_features(changed, spine, CFG)
    assert not after.equals(before)


@settings(max_examples=10, deadline=None)
@given(changes=st.lists(future_change(), min_size=1, max_size=3))
def test_rows_on_or_after_the_cutoff_never_change_its_survival_rows(leak_base, changes):
    """The survival model's account-month covariates (features, month, renewal month, contract rule) at a
    cutoff, for every month of the horizon, are blind to rows dated on or after it."""
    tables, spine, before = leak_base
    changed = dict(tables)
    for table, change in changes:
        changed[table] = change(changed[table])
    after = build_features(changed, spine, CFG)
    pd.testing.assert_frame_equal(survival_design(after, 12), survival_design(before, 12))


# --------------------------------------------------------------------------------- SQL and catalogue


def test_every_definition_transpiles_to_spark():
    steps = all_steps(CFG)
    assert {s.family for s in steps} >= set(CFG.families)
    for step in [*steps, type(steps[0])("spine", "spine", SPINE_SQL)]:
        spark = sqlglot.transpile(step.sql, read="duckdb", write="spark", unsupported_level=ErrorLevel.RAISE)[
            0
        ]
        assert sqlglot.parse_one(spark, read="spark") is not None, step.name
        assert "DATE_DIFF(" not in spark.upper() and "EPOCH" not in spark.upper(), step.name


def test_catalogue_explains_every_feature():
    names = feature_names(CFG)
    assert len(names) == len(set(names)) > 60
    for name in names:
        info = parse_feature(name)
        text = describe_feature(name)
        assert info.family == name.split("_")[0] and (text[0].isupper() or text[0].isdigit()), name
    info = parse_feature("usage_feature_dashboards_zscore_7d")
    assert (info.family, info.metric, info.agg, info.window_days) == (
        "usage",
        "feature_dashboards",
        "zscore",
        7,
    )
    assert parse_feature("usage_api_calls_days_since_last").window_days is None
    assert parse_feature("csm_qbr_count_90d").metric == "qbr"
    assert parse_feature("contract_seats").agg == "level"
    assert feature_families(["account_id", "cutoff", "nps_score_latest"]) == {"nps_score_latest": "nps"}
    with pytest.raises(ChurnmlError):
        parse_feature("weird_thing_30d")
