"""The warehouse: transactional, idempotent writes of scores, explanations and run records (DuckDB or PostgreSQL).

Owns the output tables' backends and the writer (:mod:`~churnml.warehouse.store`). It may import only the
contract and config below it; it knows nothing of models or features, only of the rows it is handed.
"""
