"""Nightly scoring as an operator runs it: fail fast, drift policy, partial exports, secrets, one transaction.

Models are trained once on a small simulated portfolio; the warehouse is a DuckDB file and, where marked, the
PostgreSQL of ``CHURNML_PG_URL`` (a fresh schema per test).
"""

from __future__ import annotations

import json
import logging
import time
import uuid

import pandas as pd
import pytest

from churnml.config import Config, ModelConfig, SimulatorConfig
from churnml.contract.validate import validate_tables
from churnml.errors import ChurnmlError
from churnml.names import TARGETS
from churnml.scoring.batch import drift_bound, score_accounts
from churnml.warehouse.store import Warehouse

from _env import require_postgres
from tables import fast_lgbm

VERSIONS = {"churn": "7", "expansion": "8"}


def small_config() -> Config:
    cfg = Config()
    cfg.model = ModelConfig(lgbm=fast_lgbm(n_estimators=40, early_stopping_rounds=10))
    cfg.features.threads = 1
    return cfg


@pytest.fixture(scope="module")
def trained():
    """(validated tables, models by target, config): 200 accounts over two years."""
    from churnml.dataset.labels import build_labels
    from churnml.dataset.spine import build_spine, data_range, training_cutoffs
    from churnml.features.engine import build_features
    from churnml.modeling.model import train_model
    from churnml.sources.simulate import simulate

    tables = validate_tables(simulate(SimulatorConfig(accounts=200, months=24, seed=11))[0]).tables
    cfg = small_config()
    spine = build_spine(tables["subscriptions"], training_cutoffs(tables, cfg.spine))
    features = build_features(tables, spine, cfg.features)
    labels = build_labels(tables["subscriptions"], spine, cfg.labels, data_range(tables)[1])
    models = {t: train_model(features, labels, t, cfg.model, cfg.split, 90) for t in TARGETS}
    return tables, models, cfg


def loader(models, calls: list | None = None):
    def load(target: str, ref: str):
        if calls is not None:
            calls.append((target, ref))
        if ref not in ("champion", VERSIONS[target]):
            raise ChurnmlError(f"model churnml-{target} has no version or alias {ref!r}")
        return models[target], VERSIONS[target]

    return load


@pytest.fixture(params=["duckdb", pytest.param("postgresql", marks=pytest.mark.postgres)])
def warehouse_url(request, tmp_path):
    if request.param == "duckdb":
        yield f"duckdb:///{tmp_path / 'wh.duckdb'}", ""
        return
    url = require_postgres()
    schema = f"churnml_test_{uuid.uuid4().hex[:12]}"
    yield url, schema
    import sqlalchemy as sa

    engine = sa.create_engine(url)
    with engine.begin() as conn:
        conn.execute(sa.text(f'DROP SCHEMA IF EXISTS "{schema}" CASCADE'))
    engine.dispose()


def _cfg(base: Config, schema: str) -> Config:
    cfg = Config(**{k: getattr(base, k) for k in base.__dataclass_fields__})
    cfg.warehouse = type(base.warehouse)(schema=schema)
    return cfg


# ---------------------------------------------------------------------------------------------- fail fast


def test_unknown_model_version_and_bad_warehouse_fail_before_feature_work(trained, tmp_path, monkeypatch):
    tables, models, base = trained
    import churnml.scoring.batch as batch

    def no_features(*args, **kwargs):
        raise AssertionError("feature work started before the checks")

    monkeypatch.setattr(batch, "build_features", no_features)
    cfg = _cfg(base, "")
    url = f"duckdb:///{tmp_path / 'wh.duckdb'}"
    with pytest.raises(ChurnmlError, match="no version or alias '99'"):
        score_accounts(tables, cfg, model_refs={"churn": "99"}, warehouse_url=url, load_model=loader(models))
    with pytest.raises(ChurnmlError, match="not a valid identifier"):
        bad = _cfg(base, "")
        bad.warehouse.scores_table = 'x"; drop table y; --'
        score_accounts(tables, bad, warehouse_url=url, load_model=loader(models))
    start = time.monotonic()
    with pytest.raises(ChurnmlError, match="cannot open") as info:
        score_accounts(
            tables,
            cfg,
            warehouse_url="postgresql+psycopg://u:pw123@127.0.0.1:1/nope",
            load_model=loader(models),
        )
    assert time.monotonic() - start < 15
    assert "pw123" not in str(info.value)
    assert "\n" not in str(info.value)


def test_an_as_of_before_the_data_says_so_in_one_line(trained, tmp_path):
    tables, models, base = trained
    with pytest.raises(ChurnmlError) as info:
        score_accounts(tables, _cfg(base, ""), as_of="2020-01-01", load_model=loader(models), write=False)
    message = str(info.value)
    assert "is not after the data start" in message and "\n" not in message and len(message) < 200


# ---------------------------------------------------------------------------------------------- drift


def test_drift_bounds_per_family_and_glob():
    from churnml.config import DriftConfig

    cfg = DriftConfig(feature_psi_fail=2.0, feature_psi_fail_by={"usage": 3.0, "usage_*_zscore_*": 10.0})
    assert drift_bound("usage_active_users_zscore_7d", "numeric", cfg) == 10.0
    assert drift_bound("usage_logins_sum_30d", "numeric", cfg) == 3.0
    assert drift_bound("contract_arr", "numeric", cfg) == 2.0
    assert drift_bound("score", "score", cfg) == cfg.psi_fail


def _drifted(tables):
    """The same portfolio with every account's logins multiplied by 50 (a unit change in the feed)."""
    usage = tables["usage"]
    return dict(tables, usage=usage.assign(value=usage["value"] * 50.0))


def test_drift_past_the_bound_stops_and_accept_drift_scores_and_records_it(trained, warehouse_url, caplog):
    tables, models, base = trained
    url, schema = warehouse_url
    cfg = _cfg(base, schema)
    drifted = _drifted(tables)
    with pytest.raises(ChurnmlError, match=r"past the fail threshold .*--accept-drift"):
        score_accounts(drifted, cfg, warehouse_url=url, load_model=loader(models))
    wh = Warehouse(url, schema=schema)
    assert wh.read_scores().empty

    caplog.set_level(logging.WARNING)
    result = score_accounts(drifted, cfg, warehouse_url=url, load_model=loader(models), accept_drift=True)
    lines = [r.getMessage() for r in caplog.records if r.getMessage().startswith("drift")]
    assert len(lines) == len(set(lines))  # each warning once
    assert lines[-1].startswith("drift: ") and "(accepted)" in lines[-1]  # then one summary line
    runs = wh.read_runs()
    assert bool(runs["drift_accepted"].iloc[-1]) is True
    table = json.loads(runs["drift"].iloc[-1])
    failed = [r for r in table if r["status"] == "fail"]
    assert failed and all({"target", "feature", "family", "psi", "bound"} <= set(r) for r in failed)
    assert len(wh.read_scores(result.as_of)) == len(result.scores)
    wh.close()


def test_a_category_value_the_models_never_saw_is_scored_as_missing_and_recorded(
    trained, warehouse_url, caplog
):
    """A nightly export where a few accounts moved to an industry the models never saw: one warning line, those
    accounts scored as if their industry were missing, recorded on the run, every other account as before. A
    new value for the whole book still stops the run: the column's shares are an input of the drift guard."""
    tables, models, base = trained
    url, schema = warehouse_url
    cfg = _cfg(base, schema)
    scored = score_accounts(tables, cfg, write=False, load_model=loader(models), accept_drift=True).scores
    moved = set(sorted(scored["account_id"])[:3])
    accounts = tables["accounts"]

    def industry(value):
        return dict(
            tables,
            accounts=accounts.assign(
                industry=accounts["industry"].mask(accounts["account_id"].isin(moved), value)
            ),
        )

    caplog.set_level(logging.WARNING)
    got = score_accounts(
        industry("agritech"), cfg, warehouse_url=url, load_model=loader(models), accept_drift=True
    )
    lines = [r.getMessage() for r in caplog.records if "never saw" in r.getMessage()]
    assert lines == [
        "category values the models never saw, scored as missing (retrain to learn them): "
        "account_industry 'agritech' (3 accounts)"
    ]
    blank = score_accounts(industry(None), cfg, write=False, load_model=loader(models), accept_drift=True)
    pd.testing.assert_frame_equal(
        got.scores.sort_values("account_id", ignore_index=True)[
            ["account_id", "churn_probability", "expansion_probability"]
        ],
        blank.scores.sort_values("account_id", ignore_index=True)[
            ["account_id", "churn_probability", "expansion_probability"]
        ],
    )
    wh = Warehouse(url, schema=schema)
    runs = wh.read_runs()
    assert json.loads(runs["unseen_categories"].iloc[-1]) == {"account_industry": {"agritech": 3}}
    wh.close()
    moved = set(scored["account_id"])
    whole = score_accounts(
        industry("agritech"), cfg, write=False, load_model=loader(models), accept_drift=True
    )
    row = whole.drift[whole.drift["feature"] == "account_industry"]
    assert (row["status"] == "fail").all() and len(row) == len(models)


# ---------------------------------------------------------------------------------------------- partial exports


def test_a_partial_export_keeps_the_other_accounts_scores_unless_replace_date(trained, warehouse_url):
    tables, models, base = trained
    url, schema = warehouse_url
    cfg = _cfg(base, schema)
    full = score_accounts(tables, cfg, warehouse_url=url, load_model=loader(models), accept_drift=True)
    accounts = sorted(full.scores["account_id"])
    keep = set(accounts[: len(accounts) // 2])
    partial = {
        name: (frame[frame["account_id"].isin(keep)] if "account_id" in frame.columns else frame)
        for name, frame in tables.items()
    }
    again = score_accounts(
        partial, cfg, as_of=full.as_of, warehouse_url=url, load_model=loader(models), accept_drift=True
    )
    wh = Warehouse(url, schema=schema)
    assert set(wh.read_scores(full.as_of)["account_id"]) == set(accounts)
    assert again.run.scores_rows == len(again.scores) < len(accounts)
    assert again.run.accounts_untouched == len(accounts) - len(again.scores)
    # the call list still reflects every account's latest score of the date: the left-out accounts' calls
    # are kept and ranked with the new ones, so it is the full run's list (the rescored rows are the same)
    listed = wh.read_call_list(full.as_of)
    left_out = set(full.call_list["account_id"]) - keep
    assert left_out and left_out <= set(listed["account_id"])
    assert list(listed["account_id"]) == list(full.call_list["account_id"])
    assert list(again.call_list["account_id"]) == list(full.call_list["account_id"])

    replaced = score_accounts(
        partial, cfg, as_of=full.as_of, warehouse_url=url, load_model=loader(models), accept_drift=True,
        replace_date=True,
    )  # fmt: skip
    assert set(wh.read_scores(full.as_of)["account_id"]) == set(replaced.scores["account_id"])
    # replacing the date drops the left-out accounts' scores, and so their calls
    assert set(wh.read_call_list(full.as_of)["account_id"]) <= keep
    runs = wh.read_runs()
    assert list(runs["accounts_untouched"]) == [0, len(accounts) - len(again.scores), 0]
    wh.close()


# ---------------------------------------------------------------------------------------------- secrets


@pytest.mark.postgres
def test_a_secret_in_the_query_string_appears_in_no_row_or_log(trained, caplog, tmp_path):
    tables, models, base = trained
    plain = require_postgres()
    schema = f"churnml_test_{uuid.uuid4().hex[:12]}"
    secret = "Qs3cretPW-" + uuid.uuid4().hex[:6]
    url = f"{plain}{'&' if '?' in plain else '?'}password={secret}"
    cfg = _cfg(base, schema)
    caplog.set_level(logging.DEBUG)
    try:
        score_accounts(tables, cfg, warehouse_url=url, load_model=loader(models), accept_drift=True)
        with pytest.raises(ChurnmlError) as info:  # a failing run: its error is recorded too
            score_accounts(tables, cfg, warehouse_url=url, load_model=loader(models), as_of="2099-01-01")
        assert secret not in str(info.value)
        wh = Warehouse(url, schema=schema)
        dumped = "\n".join(
            frame.to_csv() for frame in (wh.read_runs(), wh.read_scores(), wh.read_explanations())
        )
        assert len(wh.read_scores()) > 0
        assert secret not in dumped
        assert secret not in repr(wh) and secret not in wh.url
        assert secret not in caplog.text
        wh.close()
    finally:
        import sqlalchemy as sa

        engine = sa.create_engine(plain)
        with engine.begin() as conn:
            conn.execute(sa.text(f'DROP SCHEMA IF EXISTS "{schema}" CASCADE'))
        engine.dispose()


def test_a_secret_url_in_logged_params_never_reaches_the_mlflow_store(tmp_path):
    """Defence in depth behind the config's refusal: whatever the tracking module logs is redacted."""
    import mlflow

    from churnml.modeling.tracking import flatten_params

    secret = "Qs3cretPW-mlflow"
    cfg = Config()
    cfg.warehouse.url = f"postgresql+psycopg://scorer@db.internal/crm?sslmode=require&password={secret}"
    mlflow.set_tracking_uri(f"sqlite:///{tmp_path / 'mlflow.db'}")
    try:
        with mlflow.start_run():
            mlflow.log_params(flatten_params(cfg))
    finally:
        mlflow.set_tracking_uri("")
    stored = b"".join(p.read_bytes() for p in tmp_path.rglob("*") if p.is_file())
    assert b"db.internal" in stored  # the URL itself was logged ...
    assert secret.encode() not in stored  # ... without its password


# ---------------------------------------------------------------------------------------------- out of core


def test_scores_from_the_windowed_folder_read_equal_those_from_whole_frames(trained, warehouse_url, tmp_path):
    """A folder is checked in DuckDB and its usage read only in the look-back window (issue #20): the scores
    written equal those of the whole history held in pandas."""
    import pandas as pd

    from churnml.contract.io import write_folder
    from churnml.contract.sqlcheck import UsageScan
    from churnml.scoring.batch import load_tables

    tables, models, base = trained
    url, schema = warehouse_url
    cfg = _cfg(base, schema)
    write_folder(tables, tmp_path / "in")
    read = load_tables(tmp_path / "in", None, cfg.data)
    assert isinstance(read["usage"], UsageScan)
    want = score_accounts(tables, cfg, load_model=loader(models), accept_drift=True, write=False)
    got = score_accounts(read, cfg, warehouse_url=url, load_model=loader(models), accept_drift=True)
    key = ["account_id"]
    pd.testing.assert_frame_equal(
        got.scores.sort_values(key).reset_index(drop=True),
        want.scores.sort_values(key).reset_index(drop=True),
    )
    stored = Warehouse(url, schema=schema)
    assert len(stored.read_scores(got.as_of)) == len(want.scores)
    stored.close()


def test_a_folder_with_a_bad_usage_row_fails_in_one_line(trained, tmp_path):
    """Row rules run on every usage row (a 2099 date would move the as-of), the key on the window read."""
    import pandas as pd

    from churnml.contract.io import write_folder
    from churnml.scoring.batch import load_tables

    tables, models, base = trained
    usage = tables["usage"]
    late = usage.iloc[[0]].assign(date=pd.Timestamp("2099-01-01"))
    write_folder({**tables, "usage": pd.concat([usage, late], ignore_index=True)}, tmp_path / "late")
    with pytest.raises(ChurnmlError, match=r"usage: column 'date' fails rule 'date in plausible range"):
        load_tables(tmp_path / "late", None, base.data)
    dup = usage.sort_values("date").iloc[[-1]]
    write_folder({**tables, "usage": pd.concat([usage, dup], ignore_index=True)}, tmp_path / "dup")
    read = load_tables(tmp_path / "dup", None, base.data)
    with pytest.raises(
        ChurnmlError, match=r"usage: column 'account_id, date, metric' fails rule 'duplicate key'"
    ):
        score_accounts(read, base, load_model=loader(models), accept_drift=True, write=False)
