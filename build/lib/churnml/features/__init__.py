"""Point-in-time features: the SQL definitions, the DuckDB engine that runs them, and the same SQL on Spark.

Owns the feature catalogue and families (:mod:`~churnml.features.sql`), :func:`churnml.features.engine.build_features`
(DuckDB) and :mod:`~churnml.features.spark` (the same definitions on Spark). It follows the spine's
point-in-time rule and may import the dataset and contract layers, never labels' consumers (models, scoring).
"""
