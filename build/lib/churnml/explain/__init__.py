"""Explanations: exact TreeSHAP contributions, probability points, and reasons in plain words for CSMs.

Owns :mod:`~churnml.explain.contributions` (SHAP values and points) and :mod:`~churnml.explain.reasons`
(drivers and their sentences). It may import modeling, features and below; it never writes the warehouse.
"""
