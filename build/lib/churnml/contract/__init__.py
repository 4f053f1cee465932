"""The data contract: the schema of every persisted table, their validation, and the I/O that checks them.

Owns the pandera schemas of the input tables (:mod:`~churnml.contract.schemas`: accounts, subscriptions,
usage and the optional ones) and of every table the pipeline persists (:mod:`~churnml.contract.tables`:
spine, labels, features, explanations, reasons, scores and the warehouse tables, with the column names other
layers take from them), the registry of every dvc.yaml output (:mod:`~churnml.contract.outputs`), the
validation that turns bad rows into one-line errors or a quarantine, and the reading and writing of table
folders, Parquet outputs (``read_output`` / ``write_output``) and JSON documents. It is the lowest layer above
``config``/``errors``: it imports nothing else from churnml, and every other layer reads and writes tables
through it.
"""
