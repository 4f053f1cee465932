"""The benchmark harness measures what it says: wall time, a timed section, and peak memory of a fresh process."""

from __future__ import annotations

import json
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "benchmarks"))

import harness  # noqa: E402
import run as bench_run  # noqa: E402


def test_peak_memory_and_timed_section_are_measured():
    code = (
        "import json, time; a = bytearray(300 * 1024 * 1024); a[::4096] = b'x' * len(a[::4096]);"
        "t = time.perf_counter(); time.sleep(0.05); print(json.dumps({'timed_s': time.perf_counter() - t}))"
    )
    measured = harness.measure_python(code, repeats=3)
    assert len(measured["runs_s"]) == 3
    assert 0.04 < measured["median_s"] < 1.0
    assert measured["peak_rss_mb"] > 290


def test_results_table_is_rendered_from_json(tmp_path):
    measured = {"median_s": 2.0, "runs_s": [1.9, 2.0, 2.2], "peak_rss_mb": 123.0}
    fig = harness.figure("generate 1k", "rows_per_s", 5e5, "rows/s", measured, {"accounts": 1000})
    (tmp_path / "x.json").write_text(
        json.dumps(
            {
                "benchmark": "x",
                "date": "2026-11-23T00:00:00",
                "machine": bench_run.machine(),
                "figures": [fig],
            }
        )
    )
    table = bench_run.render_table(tmp_path)
    assert "| x | generate 1k | 5e+05 rows/s | 2 (1.9, 2, 2.2) | 123 | accounts=1000 |" in table


def test_other_numbers_of_the_timed_line_are_collected_per_run():
    code = "import json, os; print(json.dumps({'timed_s': 0.1, 'step_s': 0.02 + 0.01 * (os.getpid() % 2)}))"
    measured = harness.measure_python(code, repeats=3, keys=["step_s"])
    assert len(measured["key_runs"]["step_s"]) == 3
    assert measured["keys"]["step_s"] in measured["key_runs"]["step_s"]
    assert all(v in (0.02, 0.03) for v in measured["key_runs"]["step_s"])
    try:
        harness.measure_python(code, repeats=1, keys=["absent_s"])
    except RuntimeError as exc:
        assert "absent_s" in str(exc)
    else:
        raise AssertionError("a key the command did not print must fail the measurement")


def test_each_dvc_stage_gets_its_own_peak_and_time(tmp_path):
    """A `dvc repro`'s stages are its children running `python pipelines/<stage>.py [--target T]`: each is
    measured on its own subtree, so the big stage's peak is not charged to the small one."""
    stage = tmp_path / "pipelines" / "alloc.py"
    stage.parent.mkdir()
    stage.write_text(
        "import sys, time; n = int(sys.argv[-1]); a = bytearray(n * 1024 * 1024);"
        "a[::4096] = b'x' * len(a[::4096]); time.sleep(0.6)"
    )
    py = sys.executable
    script = f"{py} pipelines/alloc.py --target big 200; {py} pipelines/alloc.py --target small 20"
    measured = harness.measure_command(["sh", "-c", script], repeats=1, cwd=tmp_path, stages=True)
    (stages,) = measured["stages"]
    assert set(stages) == {"alloc@big", "alloc@small"}
    assert stages["alloc@big"]["peak_rss_mb"] > 190
    assert stages["alloc@small"]["peak_rss_mb"] < 100
    assert all(0.3 < s["seconds"] < 5 for s in stages.values())
    assert measured["peak_rss_mb"] >= stages["alloc@big"]["peak_rss_mb"]


def test_the_gap_interval_separates_a_real_gap_from_chance():
    """quality.gap_interval: a model that ranks by the outcome is ahead beyond chance; two draws of noise are not
    told apart; a model against itself has no gap."""
    import numpy as np
    import pandas as pd
    import quality

    rng = np.random.default_rng(0)
    n = 600
    y = rng.integers(0, 2, n)
    rows = pd.DataFrame(
        {
            "account_id": np.repeat(np.arange(n // 3), 3),
            "y": y,
            "good": y + rng.normal(size=n),
            "noise": rng.normal(size=n),
            "more_noise": rng.normal(size=n),
        }
    )
    real = quality.gap_interval(rows, "good", "noise", 300)
    assert 0 < real[0] < real[1]
    chance = quality.gap_interval(rows, "noise", "more_noise", 300)
    assert chance[0] < 0 < chance[1]
    assert quality.gap_interval(rows, "noise", "noise", 50) == [0.0, 0.0]
    found = {"better_yardstick": "noise", "margin_roc_auc": -0.01, "holds": False}
    verdict = quality.unjudged(found, rows.rename(columns={"more_noise": "chosen"}), "no signal", 200)
    assert verdict["judged"] is False and verdict["gap_could_be_chance"] and verdict["why"] == "no signal"
