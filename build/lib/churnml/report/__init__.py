"""The portfolio report for CSMs: KPIs against their history, charts as inline SVG, and one self-contained HTML page.

Owns :mod:`~churnml.report.portfolio` and its templates. It reads what the scoring and monitor stages
wrote and may import any layer below; nothing imports it but the stages and the CLI.
"""
