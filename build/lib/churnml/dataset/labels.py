"""Churn, expansion and contraction labels per (account, cutoff), derived from the contract history.

Rules (``LabelsConfig``: horizon ``h``, grace ``g``, thresholds ``t_up`` / ``t_down``):

- A **churn event** of an account is the end date ``e`` of one of its subscriptions such that no
  subscription of the account is active on day ``e`` (``start_date <= e < end_date``) and none starts
  within ``[e, e + g]``. The label is contract-aware: an annual contract churns at its term end (its
  ``end_date``), however early its usage stopped; a renewal that starts late but within the grace period
  is not churn. ``churned_within_<h>d = 1`` iff a churn event lies in ``[cutoff, cutoff + h)``.
- **Levels** on a day: total MRR and total seats over the subscriptions active that day. The baseline is
  the level on ``cutoff - 1``.
- ``expanded_within_<h>d = 1`` iff not churned and, on some day of ``[cutoff, cutoff + h)`` with an active
  subscription, MRR or seats are at least ``(1 + t_up) x`` the baseline (and above it: going from a free
  plan to a paid one is expansion).
- ``contracted_within_<h>d = 1`` iff not churned and, on some such day, MRR is at most
  ``(1 - t_down) x`` the baseline (and below it). Days without any active subscription (the gap of a late
  renewal within the grace period) are no evidence of contraction, so only days with an active
  subscription count. Levels only change at start and end dates, so those are the days examined.
- Comparisons allow 1e-6 of rounding (10 -> 11 seats is +10%, although ``1.1 * 10`` is a hair above 11).
- A row is **labeled** only when ``cutoff + h + g <= data end`` (the grace period of a churn on the
  horizon's last day must be observable); otherwise all three labels are null: scored, never trained on.
"""

from __future__ import annotations

import pandas as pd

from churnml import names
from churnml.config import LabelsConfig
from churnml.dataset.spine import query_frames, to_cutoffs
from churnml.errors import ChurnmlError

TOLERANCE = 1e-6  # currency units or seats: absorbs float rounding at an exact threshold


def label_columns(cfg: LabelsConfig) -> list[str]:
    """The label column names for the configured horizon."""
    return names.label_columns(cfg.horizon_days)


def labels_sql(cfg: LabelsConfig, data_end: pd.Timestamp) -> str:
    """The label query (DuckDB dialect, portable to Spark) over ``label_subscriptions`` and ``label_spine``."""
    h, g = int(cfg.horizon_days), int(cfg.grace_days)
    up, down = float(cfg.expansion_threshold), float(cfg.contraction_threshold)
    churned, expanded, contracted = label_columns(cfg)
    end = pd.Timestamp(data_end).date().isoformat()
    return f"""
WITH churn_events AS (
  -- an end date with nothing active on it and nothing starting within the grace period
  SELECT DISTINCT e.account_id, e.end_date AS churn_date
  FROM label_subscriptions AS e
  WHERE e.end_date IS NOT NULL
    AND NOT EXISTS (
      SELECT 1 FROM label_subscriptions AS o
      WHERE o.account_id = e.account_id
        AND o.start_date <= e.end_date + {g}
        AND (o.end_date IS NULL OR o.end_date > e.end_date)
    )
),
churned AS (
  SELECT s.account_id, s.cutoff, MAX(CASE WHEN ce.churn_date IS NULL THEN 0 ELSE 1 END) AS churned
  FROM label_spine AS s
  LEFT JOIN churn_events AS ce
    ON ce.account_id = s.account_id AND ce.churn_date >= s.cutoff AND ce.churn_date < s.cutoff + {h}
  GROUP BY s.account_id, s.cutoff
),
days AS (
  -- levels change only at start and end dates: those in the horizon, the cutoff, and the baseline day
  SELECT account_id, cutoff, cutoff - 1 AS day, 1 AS is_baseline FROM label_spine
  UNION SELECT account_id, cutoff, cutoff AS day, 0 AS is_baseline FROM label_spine
  UNION
  SELECT s.account_id, s.cutoff, b.start_date AS day, 0 AS is_baseline
  FROM label_spine AS s JOIN label_subscriptions AS b
    ON b.account_id = s.account_id AND b.start_date > s.cutoff AND b.start_date < s.cutoff + {h}
  UNION
  SELECT s.account_id, s.cutoff, b.end_date AS day, 0 AS is_baseline
  FROM label_spine AS s JOIN label_subscriptions AS b
    ON b.account_id = s.account_id AND b.end_date > s.cutoff AND b.end_date < s.cutoff + {h}
),
levels AS (
  SELECT d.account_id, d.cutoff, d.day, d.is_baseline,
         COALESCE(SUM(b.mrr), 0) AS mrr,
         COALESCE(SUM(b.seats), 0) AS seats,
         COUNT(b.account_id) AS n_active
  FROM days AS d
  LEFT JOIN label_subscriptions AS b
    ON b.account_id = d.account_id AND b.start_date <= d.day AND (b.end_date IS NULL OR b.end_date > d.day)
  GROUP BY d.account_id, d.cutoff, d.day, d.is_baseline
),
moves AS (
  SELECT w.account_id, w.cutoff,
         MAX(CASE WHEN w.n_active > 0 AND (
                   (w.mrr > b.mrr AND w.mrr - b.mrr >= {up} * b.mrr - {TOLERANCE})
                OR (w.seats > b.seats AND w.seats - b.seats >= {up} * b.seats - {TOLERANCE}))
             THEN 1 ELSE 0 END) AS expanded,
         MAX(CASE WHEN w.n_active > 0 AND w.mrr < b.mrr AND b.mrr - w.mrr >= {down} * b.mrr - {TOLERANCE}
             THEN 1 ELSE 0 END) AS contracted
  FROM levels AS w
  JOIN levels AS b ON b.account_id = w.account_id AND b.cutoff = w.cutoff AND b.is_baseline = 1
  WHERE w.is_baseline = 0
  GROUP BY w.account_id, w.cutoff
)
SELECT s.row_id, s.account_id, s.cutoff,
       CASE WHEN s.cutoff + {h + g} <= DATE '{end}' THEN c.churned END AS {churned},
       CASE WHEN s.cutoff + {h + g} <= DATE '{end}'
            THEN CASE WHEN c.churned = 1 THEN 0 ELSE COALESCE(m.expanded, 0) END END AS {expanded},
       CASE WHEN s.cutoff + {h + g} <= DATE '{end}'
            THEN CASE WHEN c.churned = 1 THEN 0 ELSE COALESCE(m.contracted, 0) END END AS {contracted}
FROM label_spine AS s
JOIN churned AS c ON c.account_id = s.account_id AND c.cutoff = s.cutoff
LEFT JOIN moves AS m ON m.account_id = s.account_id AND m.cutoff = s.cutoff
"""


def build_labels(
    subscriptions: pd.DataFrame, spine: pd.DataFrame, cfg: LabelsConfig, data_end: pd.Timestamp | str
) -> pd.DataFrame:
    """Label every spine row: churned, expanded and contracted within the horizon (null when unlabeled).

    Args:
        subscriptions: the subscriptions table (validated).
        spine: (account_id, cutoff) rows, unique.
        cfg: label definitions.
        data_end: the first day with no data (:func:`churnml.dataset.spine.data_end`).

    Returns:
        account_id, cutoff and the three label columns (nullable Int8), in the spine's row order.
    """
    for col in ("account_id", "cutoff"):
        if col not in spine.columns:
            raise ChurnmlError(f"spine: missing column {col!r}")
    to_cutoffs(spine["cutoff"].unique())  # whole days only
    if spine.duplicated(["account_id", "cutoff"]).any():
        raise ChurnmlError("spine: duplicate (account_id, cutoff) rows")
    subs = pd.DataFrame(
        {
            "account_id": subscriptions["account_id"].astype(str),
            "start_date": pd.to_datetime(subscriptions["start_date"]).astype("datetime64[us]"),
            "end_date": pd.to_datetime(subscriptions["end_date"]).astype("datetime64[us]"),
            "mrr": subscriptions["mrr"].astype("float64"),
            "seats": subscriptions["seats"].astype("float64"),
        }
    )
    keys = pd.DataFrame(
        {
            "row_id": range(len(spine)),
            "account_id": spine["account_id"].astype(str).to_numpy(),
            "cutoff": pd.to_datetime(spine["cutoff"]).astype("datetime64[us]").to_numpy(),
        }
    )
    out = query_frames(
        f"SELECT * FROM ({labels_sql(cfg, pd.Timestamp(data_end))}) ORDER BY row_id",
        {
            "label_subscriptions": (
                subs,
                "account_id, CAST(start_date AS DATE) AS start_date, CAST(end_date AS DATE) AS end_date, mrr, seats",
            ),
            "label_spine": (keys, "row_id, account_id, CAST(cutoff AS DATE) AS cutoff"),
        },
    )
    frame = pd.DataFrame(
        {
            "account_id": out["account_id"].astype(str),
            "cutoff": pd.to_datetime(out["cutoff"]).astype("datetime64[us]"),
        }
    )
    for col in label_columns(cfg):
        frame[col] = out[col].astype("Int8")
    return frame
