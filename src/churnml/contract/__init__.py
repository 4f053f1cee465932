"""The data contract: the schema of every persisted table, their validation, and the I/O that checks them.

Owns the pandera schemas of the input tables (accounts, subscriptions, usage and the optional ones), the
validation that turns bad rows into one-line errors or a quarantine, and the reading and writing of table
folders and Parquet files. It is the lowest layer above ``config``/``errors``: it imports nothing else from
churnml, and every other layer reads and writes tables through it.
"""
