"""The persisted tables' schemas, the io layer that checks them, and the registry of every dvc.yaml output."""

from __future__ import annotations

import csv
import re
import subprocess
from pathlib import Path

import pandas as pd
import pytest
import yaml

from churnml.contract.io import read_document, read_output, write_document, write_output, write_table
from churnml.contract.outputs import DOCUMENTS, OUTPUTS, check_document, output_key
from churnml.contract.tables import OUTPUT_TABLES
from churnml.errors import ChurnmlError
from churnml.names import label_columns

ROOT = Path(__file__).resolve().parents[1]
DAY = pd.Timestamp("2024-03-01")


def tiny(table: str) -> pd.DataFrame:
    """Two valid rows of ``table``, in the types a stage produces (dates in [us], as the engines write them)."""
    day = pd.Series([DAY, DAY]).astype("datetime64[us]")
    ids = ["A1", "A2"]
    if table == "spine":
        return pd.DataFrame({"account_id": ids, "cutoff": day})
    if table == "labels":
        labels = {c: pd.array([1, None], dtype="Int8") for c in label_columns(90)}
        return pd.DataFrame({"account_id": ids, "cutoff": day, **labels})
    if table in ("features", "scoring_features"):
        return pd.DataFrame(
            {
                "account_id": ids,
                "cutoff": day,
                "account_segment": ["smb", "enterprise"],
                "usage_logins_sum_30d": [3.0, float("nan")],
            }
        )
    if table == "explanations":
        return pd.DataFrame(
            {
                "account_id": ids,
                "as_of": day,
                "target": "churn",
                "feature": "usage_logins_sum_30d",
                "feature_value": ["3", None],
                "shap_value": [0.2, -0.1],
                "probability_points": [0.02, -0.01],
                "rank": [1, 1],
                "base_value": -2.0,
                "raw_score": [-1.8, -2.1],
                "base_probability": 0.1,
                "probability": [0.12, 0.09],
                "model_version": "3",
                "reason": ["Logins down", "Logins up"],
            }
        )
    if table == "reasons":
        return pd.DataFrame(
            {
                "account_id": ids,
                "as_of": day,
                "target": "churn",
                "rank": [1, 1],
                "direction": ["raises", "context"],
                "driver": ["usage_logins", "contract_days_to_renewal"],
                "family": ["usage", "contract"],
                "probability_points": [0.02, -0.01],
                "reason": ["Logins down", "Renewal in 41 days"],
                "model_version": "3",
            }
        )
    if table in ("scores", "churn_scores"):
        frame = pd.DataFrame(
            {
                "account_id": ids,
                "as_of": day,
                "churn_model_version": "3",
                "expansion_model_version": "2",
                "churn_probability": [0.3, 0.05],
                "risk_tier": ["high", "low"],
                "expansion_probability": [0.1, 0.2],
                "arr": [1200.0, 600.0],
                "arr_at_risk": [360.0, 30.0],
                "segment": ["smb", "enterprise"],
                "touch_model": ["tech_touch", "high_touch"],
                "recommended_play": ["a", "b"],
                "top_reasons": "[]",
            }
        )
        if table == "churn_scores":
            frame = frame.assign(run_id="r1", scored_at=pd.Timestamp("2024-03-01 06:00"))
        return frame
    raise KeyError(table)


TINY_TABLES = [
    "spine",
    "labels",
    "features",
    "scoring_features",
    "explanations",
    "reasons",
    "scores",
    "churn_scores",
]


# ----------------------------------------------------------------------------------------------- schemas


@pytest.mark.parametrize("table", TINY_TABLES)
def test_tiny_table_round_trips_with_dates_coerced(table, tmp_path):
    path = tmp_path / f"{table}.parquet"
    write_output(tiny(table), path, table)
    back = read_output(path, table)
    expected = tiny(table)
    assert list(back.columns) == list(expected.columns)
    dates = [c for c in back.columns if c in ("cutoff", "as_of", "scored_at")]
    assert all(str(back[c].dtype) == "datetime64[ns]" for c in dates)
    pd.testing.assert_frame_equal(back, expected, check_dtype=False)


@pytest.mark.parametrize("table", TINY_TABLES)
def test_duplicated_key_fails_in_one_line_naming_it(table, tmp_path):
    spec = OUTPUT_TABLES[table]
    frame = tiny(table)
    frame = pd.concat([frame, frame.iloc[[0]]], ignore_index=True)
    with pytest.raises(ChurnmlError) as err:
        write_output(frame, tmp_path / "x.parquet", table)
    text = str(err.value)
    assert "\n" not in text
    assert f"{table}: column '{', '.join(spec.key)}' fails rule 'duplicate key'" in text
    assert "account_id=A1" in text and "x.parquet" in text
    assert not (tmp_path / "x.parquet").exists()


@pytest.mark.parametrize(
    ("table", "column"),
    [
        ("features", "usage_logins_sum_30d"),  # a feature matched by the schema's pattern
        ("explanations", "shap_value"),
        ("reasons", "probability_points"),
        ("scores", "churn_probability"),
        ("spine", "cutoff"),
    ],
)
def test_wrong_type_fails_naming_the_column(table, column, tmp_path):
    frame = tiny(table).astype({column: object})
    frame.loc[1, column] = "not a number"
    with pytest.raises(
        ChurnmlError, match=rf"column '{column}' fails rule 'type [^']+' in 1 row\(s\)"
    ) as err:
        write_output(frame, tmp_path / "x.parquet", table)
    assert "account_id=A2" in str(err.value) and "\n" not in str(err.value)


def test_features_keep_categoricals_as_text_and_the_rest_float():
    frame = tiny("features").assign(usage_logins_sum_30d=[3, 4], contract_plan=["pro", None])
    out = OUTPUT_TABLES["features"].schema.validate(frame)
    assert out["usage_logins_sum_30d"].dtype == "float64"
    assert pd.api.types.is_string_dtype(out["account_segment"]) and pd.api.types.is_string_dtype(
        out["contract_plan"]
    )
    assert out["contract_plan"].isna().tolist() == [False, True]


def test_labels_accept_any_horizon_but_need_churn_and_expansion(tmp_path):
    frame = tiny("spine").assign(**{c: pd.array([0, 1], dtype="Int8") for c in label_columns(30)})
    write_output(frame, tmp_path / "l.parquet", "labels")
    assert read_output(tmp_path / "l.parquet", "labels")[label_columns(30)].dtypes.eq("Int8").all()
    with pytest.raises(ChurnmlError, match="fails rule 'column present'"):
        write_output(frame.drop(columns=label_columns(30)[1]), tmp_path / "l.parquet", "labels")
    with pytest.raises(ChurnmlError, match=r"churned_within_30d' fails rule 'isin"):
        write_output(frame.assign(churned_within_30d=[0, 2]), tmp_path / "l.parquet", "labels")


def test_an_undeclared_or_missing_column_fails_naming_it(tmp_path):
    with pytest.raises(ChurnmlError, match=r"spine: column 'extra' fails rule 'declared column"):
        write_output(tiny("spine").assign(extra=1), tmp_path / "s.parquet", "spine")
    with pytest.raises(ChurnmlError, match=r"reasons: column 'direction' fails rule 'column present'"):
        write_output(tiny("reasons").drop(columns="direction"), tmp_path / "r.parquet", "reasons")


def test_scores_may_lack_the_run_columns_the_warehouse_fills():
    assert set(OUTPUT_TABLES["churn_scores"].columns) - set(tiny("scores").columns) == {"run_id", "scored_at"}
    with pytest.raises(ChurnmlError, match="column 'run_id' fails rule 'column present'"):
        write_output(tiny("scores"), Path("unused.parquet"), "churn_scores")


# -------------------------------------------------------------------------------------------------- io


def test_read_output_names_the_file_and_table_when_the_file_is_bad(tmp_path):
    path = tmp_path / "spine.parquet"
    with pytest.raises(ChurnmlError, match=r"spine.parquet: no such file \(table spine\)"):
        read_output(path, "spine")
    pd.concat([tiny("spine")] * 2).to_parquet(path)  # written behind the io layer's back
    with pytest.raises(
        ChurnmlError, match=r"^\S*spine.parquet: spine: column 'account_id, cutoff' fails rule"
    ):
        read_output(path, "spine")
    with pytest.raises(ChurnmlError, match="unknown output table 'nope'"):
        read_output(path, "nope")


def test_write_output_keeps_the_previous_file_when_the_frame_fails(tmp_path):
    path = tmp_path / "spine.parquet"
    write_output(tiny("spine"), path, "spine")
    with pytest.raises(ChurnmlError):
        write_output(pd.concat([tiny("spine")] * 2), path, "spine")
    assert len(read_output(path, "spine")) == 2
    assert [p.name for p in tmp_path.iterdir()] == ["spine.parquet"]


def test_write_table_checks_declared_tables_by_their_schema(tmp_path):
    with pytest.raises(ChurnmlError, match="declared column"):
        write_table(tiny("spine").assign(extra=1), tmp_path / "s.parquet", "spine")


def test_documents_name_the_first_missing_key(tmp_path):
    doc = {"as_of": "2024-03-01", "accounts": 3}
    write_document(doc, tmp_path / "explain.json", "explain_metrics")
    assert read_document(tmp_path / "explain.json", "explain_metrics") == doc
    test = dict.fromkeys(("roc_auc", "pr_auc", "log_loss", "brier"), 0.5)
    metrics = {
        "test": test,
        "validation": test,
        "baselines": {"logistic": {"test": test}, "health_score": {"test": test}},
        "by_touch_tier": {},
        "by_segment": {},
        "n": {"train": 1, "validation": 1, "test": 1, "test_positives": 1},
    }
    with pytest.raises(ChurnmlError, match=r"^target_metrics: missing key test\.lift_at_10pct$"):
        check_document(metrics, "target_metrics")
    with pytest.raises(ChurnmlError, match="m.json: registry_record: missing key data_version"):
        write_document({"target": "churn", "model": "x"}, tmp_path / "m.json", "registry_record")


# --------------------------------------------------------------------------------------------- registry


def _params() -> dict:
    return yaml.safe_load((ROOT / "params.yaml").read_text())


def _declared_outputs() -> list[tuple[str, str]]:
    """(stage, output as dvc.yaml writes it) for every outs/metrics/plots entry of every stage."""
    stages = yaml.safe_load((ROOT / "dvc.yaml").read_text())["stages"]
    found = []
    for name, stage in stages.items():
        body = stage.get("do", stage)
        for section in ("outs", "metrics", "plots"):
            for entry in body.get(section, []) or []:
                found += [(name, path) for path in ([entry] if isinstance(entry, str) else list(entry))]
    return found


def _resolve(declared: str, params: dict) -> list[str]:
    path = declared
    for key, value in params["paths"].items():
        path = path.replace(f"${{paths.{key}}}", str(value))
    items = params["model"]["targets"] if "${item}" in path else [None]
    return [path.replace("${item}", str(item)) for item in items]


def test_every_dvc_output_has_a_declared_schema_or_kind():
    outputs = _declared_outputs()
    assert len(outputs) > 10
    missing = [
        f"{stage}: {path} (key {output_key(path)!r})"
        for stage, path in outputs
        if output_key(path) not in OUTPUTS
    ]
    assert not missing, (
        "outputs without a schema or artifact kind in churnml.contract.outputs.OUTPUTS: " + "; ".join(missing)
    )


def test_registry_declares_nothing_dvc_does_not_write():
    keys = {output_key(path) for _, path in _declared_outputs()}
    assert set(OUTPUTS) - keys == set()


def test_every_registered_table_and_document_is_declared():
    for key, out in OUTPUTS.items():
        if out.kind in ("table", "table_csv"):
            assert out.table in OUTPUT_TABLES, key
        if out.kind == "document":
            assert out.document in DOCUMENTS, key
        if out.kind == "plots_folder":
            assert out.files, key


def test_the_walk_sees_what_dvc_sees():
    """Parsing dvc.yaml by hand must find exactly the outputs DVC resolves (same paths, nothing missed)."""
    from dvc.repo import Repo

    params = _params()
    ours = {p for _, path in _declared_outputs() for p in _resolve(path, params)}
    with Repo(str(ROOT)) as repo:
        theirs = {str(out.def_path) for stage in repo.index.stages for out in stage.outs}
    assert ours == theirs


def _key_paths(key: str, params: dict) -> list[str]:
    """The paths a registry key stands for (its first part a paths key or literal, <target> each target)."""
    head, _, rest = key.partition("/")
    head = str(params["paths"].get(head, head))
    path = f"{head}/{rest}" if rest else head
    targets = params["model"]["targets"] if "<target>" in path else [None]
    return [path.replace("<target>", str(t)) for t in targets]


def _plot_files(key: str, out, params: dict) -> dict[str, tuple[str, ...]]:
    files = {}
    for folder in _key_paths(key, params):
        for name, columns in out.files.items():
            for file in _key_paths(name, {**params, "paths": {}}):
                files[f"{folder}/{file}"] = columns
    return files


def _all_plot_files() -> dict[str, tuple[str, ...]]:
    params = _params()
    files = {}
    for key, out in OUTPUTS.items():
        if out.kind == "plots_folder":
            files.update(_plot_files(key, out, params))
    return files


def test_dvc_plot_definitions_draw_declared_columns():
    files = _all_plot_files()
    plots = yaml.safe_load((ROOT / "dvc.yaml").read_text()).get("plots", [])
    paths = _params()["paths"]
    for entry in plots:
        (declared, spec) = next(iter(entry.items()))
        path = re.sub(r"\$\{paths\.(\w+)\}", lambda m: str(paths[m.group(1)]), declared)
        assert path in files, f"dvc.yaml plots: {path} is in no declared plots folder"
        for axis in ("x", "y"):
            assert spec[axis] in files[path], (
                f"dvc.yaml plots: {path} draws {spec[axis]!r}, not a declared column"
            )


def _tracked(pattern: str) -> list[Path]:
    out = subprocess.run(["git", "ls-files", pattern], cwd=ROOT, capture_output=True, text=True, check=True)
    return [ROOT / p for p in out.stdout.split()]


def test_committed_plot_csvs_have_their_declared_columns():
    files = _all_plot_files()
    tracked = [p for p in _tracked("*.csv") if str(p.relative_to(ROOT)) in files]
    for path in tracked:
        with path.open(newline="") as handle:
            header = tuple(next(csv.reader(handle)))
        assert header == files[str(path.relative_to(ROOT))], path


def test_committed_metrics_documents_have_their_required_keys():
    params = _params()
    checked = 0
    for key, out in OUTPUTS.items():
        if out.kind != "document" or not key.startswith("metrics/"):
            continue
        for path in _key_paths(key, params):
            if (ROOT / path).is_file():
                read_document(ROOT / path, out.document)
                checked += 1
    assert checked or not _tracked("metrics/*.json")
