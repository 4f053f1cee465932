"""Scoring: the nightly batch job, its Spark twin, backtests of past as-of dates, and the monitor of realised performance.

Owns :mod:`~churnml.scoring.batch`, :mod:`~churnml.scoring.spark`, :mod:`~churnml.scoring.backtest`,
:mod:`~churnml.scoring.monitor`, the tiers chosen on validation data (:mod:`~churnml.scoring.tiers`) and this
week's call list with the changes since the last scoring (:mod:`~churnml.scoring.calls`). It may import explain, modeling, features, the dataset, the warehouse and
the contract; the report reads what it writes, never the other way round.
"""
