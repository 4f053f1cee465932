"""Model selection on synthetic one-row-per-account tables whose structure is known: tabular mode against the two
yardsticks of `make bench-quality`, on the same folds (issue 19).

The shared datasets are few, and each has one structure. These tables each stress one thing a customer's table
may hold, so the recipe is judged beyond them:

- ``small``: 400 accounts, a weak additive signal (the logistic regression's home ground, little data);
- ``linear``: 1,500 accounts, an additive signal, noise columns, 10% missing in one column;
- ``interact``: 3,000 accounts, thresholds and interactions (trees' home ground) and a 200-level categorical of no
  signal (an owner or a sales rep);
- ``telecom``: 5,000 accounts shaped like the classic telecom churn table (a 51-level state, minutes and charges
  that are copies of each other, customer-service calls that matter past a threshold);
- ``imbalanced``: 8,000 accounts, 3% positives, mixed signal.

For each: the mean fold ROC-AUC of churnml's chosen model, ``plain_lgbm`` and ``plain_logistic``, per fold, the
model chosen in each fold and the verdict (:func:`quality.verdict`). Writes
benchmarks/results/selection/synthetic_tables.json (a folder of its own: the tables of `make bench` and
`make bench-quality` read the results folder's own files).

Usage: python benchmarks/selection.py [--only NAME ...]
"""

from __future__ import annotations

import argparse
import json
import sys
import time
import warnings
from pathlib import Path

import numpy as np
import pandas as pd

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE))


def _frame(x: np.ndarray, prefix: str) -> pd.DataFrame:
    return pd.DataFrame(x, columns=[f"{prefix}{i}" for i in range(x.shape[1])])


def _draw(rng: np.random.Generator, logit: np.ndarray) -> np.ndarray:
    return rng.random(len(logit)) < 1 / (1 + np.exp(-logit))


def small(seed: int = 4) -> pd.DataFrame:
    rng = np.random.default_rng(seed)
    x = rng.normal(size=(400, 6))
    y = _draw(rng, 0.6 * x[:, 0] - 0.4 * x[:, 1] - 1.2)
    return _frame(x, "u").assign(region=rng.choice(["n", "s", "e", "w"], 400), churn=np.where(y, "yes", "no"))


def linear(seed: int = 2) -> pd.DataFrame:
    rng = np.random.default_rng(seed)
    n, p = 1500, 12
    x = rng.normal(size=(n, p))
    beta = np.r_[rng.normal(0, 0.8, 6), np.zeros(p - 6)]
    y = _draw(rng, x @ beta - 1.8)
    frame = _frame(x, "x")
    frame.loc[rng.random(n) < 0.1, "x0"] = np.nan
    return frame.assign(plan=rng.choice(["basic", "pro", "ent"], n), churn=np.where(y, "yes", "no"))


def interact(seed: int = 3) -> pd.DataFrame:
    rng = np.random.default_rng(seed)
    n = 3000
    x = rng.normal(size=(n, 8))
    logit = -2 + 2.0 * (x[:, 0] > 1) * (x[:, 1] > 0) + 1.5 * np.sin(2 * x[:, 2]) + 1.0 * (x[:, 3] ** 2 > 2)
    y = _draw(rng, logit)
    reps = rng.choice([f"rep{i}" for i in range(200)], n)
    return _frame(x, "f").assign(rep=reps, churn=np.where(y, "yes", "no"))


def telecom(seed: int = 1) -> pd.DataFrame:
    rng = np.random.default_rng(seed)
    n = 5000
    states = [f"S{i:02d}" for i in range(51)]
    state = rng.choice(states, n)
    state_effect = pd.Series(rng.normal(0, 0.25, 51), index=states)
    intl, vm = rng.random(n) < 0.1, rng.random(n) < 0.27
    day, eve, night, intl_min = (
        rng.normal(m, s, n).clip(0) for m, s in ((180, 54), (200, 50), (200, 50), (10, 2.8))
    )
    intl_calls, service = rng.poisson(4.5, n), rng.poisson(1.56, n)
    logit = (
        -3.2
        + 3.0 * (day > 245)
        + 0.012 * (day + 0.45 * eve - 250).clip(0)
        + 2.6 * ((service >= 4) & (day < 180))
        + 0.5 * (service >= 4)
        + 2.2 * intl * ((intl_min > 13) | (intl_calls < 3))
        + 0.6 * intl
        - 1.0 * vm
        + state_effect[state].to_numpy()
    )
    y = _draw(rng, logit)
    return pd.DataFrame(
        {
            "state": state,
            "account_length": rng.integers(1, 240, n),
            "area_code": rng.choice(["408", "415", "510"], n, p=[0.25, 0.5, 0.25]),
            "international_plan": np.where(intl, "yes", "no"),
            "voice_mail_plan": np.where(vm, "yes", "no"),
            "number_vmail_messages": np.where(vm, rng.poisson(29, n), 0),
            "total_day_minutes": day.round(1),
            "total_day_calls": rng.poisson(100, n),
            "total_day_charge": (day * 0.17).round(2),
            "total_eve_minutes": eve.round(1),
            "total_eve_charge": (eve * 0.085).round(2),
            "total_night_minutes": night.round(1),
            "total_night_charge": (night * 0.045).round(2),
            "total_intl_minutes": intl_min.round(1),
            "total_intl_calls": intl_calls,
            "total_intl_charge": (intl_min * 0.27).round(2),
            "customer_service_calls": service,
            "churn": np.where(y, "yes", "no"),
        }
    )


def imbalanced(seed: int = 5) -> pd.DataFrame:
    rng = np.random.default_rng(seed)
    n = 8000
    x = rng.normal(size=(n, 10))
    y = _draw(rng, -4.3 + 0.9 * x[:, 0] + 0.7 * (x[:, 1] > 1) + 0.5 * x[:, 2] * x[:, 3])
    segment = rng.choice(["smb", "mid", "ent"], n, p=[0.6, 0.3, 0.1])
    return _frame(x, "v").assign(segment=segment, churn=np.where(y, "yes", "no"))


TABLES = {
    "small": small,
    "linear": linear,
    "interact": interact,
    "telecom": telecom,
    "imbalanced": imbalanced,
}


def run(name: str) -> dict:
    import quality

    from churnml.tabular import TabularSpec, evaluate_table, prepare_table

    table = TABLES[name]()
    table.insert(0, "account_id", np.arange(len(table)))
    spec = TabularSpec(label="churn", positive="yes", id="account_id", as_of="2026-01-01")
    t0 = time.perf_counter()
    data = prepare_table(table, spec)
    cfg = quality._config([])
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        result = evaluate_table(data, spec, cfg.model, cfg.evaluation)
    models = quality.tabular_metrics(result, data, spec)
    shown = ("chosen", "plain_lgbm", "plain_logistic")
    return {
        "table": name,
        "rows": len(table),
        "positives": int(data.y.sum()),
        "models": {
            m: {
                "roc_auc_fold_mean": round(models[m]["roc_auc_fold_mean"], 4),
                "roc_auc_per_fold": [round(v, 4) for v in models[m]["roc_auc_per_fold"]],
                "log_loss": round(models[m]["log_loss"], 4),
            }
            for m in shown
        },
        "chosen_per_fold": [c["chosen"] for c in result.protocol.get("selection", [])],
        "verdict": quality.verdict(models),
        "seconds": round(time.perf_counter() - t0, 1),
    }


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--only", nargs="*", choices=TABLES)
    parser.add_argument("--out", type=Path, default=HERE / "results" / "selection" / "synthetic_tables.json")
    args = parser.parse_args(argv)
    out = []
    for name in args.only or TABLES:
        out.append(run(name))
        v = out[-1]["verdict"]
        print(
            f"{name}: chosen {out[-1]['models']['chosen']['roc_auc_fold_mean']:.4f} against "
            f"{v['better_yardstick']} (margin {v['margin_roc_auc']:+.4f}, {v['folds_at_least_as_good']} of "
            f"{v['folds']} folds), chosen {out[-1]['chosen_per_fold']}",
            flush=True,
        )
    from quality import machine

    args.out.parent.mkdir(parents=True, exist_ok=True)
    document = {"date": time.strftime("%Y-%m-%d"), "machine": machine(), "tables": out}
    args.out.write_text(json.dumps(document, indent=2) + "\n")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
