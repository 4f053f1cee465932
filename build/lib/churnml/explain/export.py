"""The explanations export: how many drivers per account and target the table and its CSV keep."""

TOP_FEATURES = 10  # drivers kept per account and target in the export
