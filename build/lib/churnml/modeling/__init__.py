"""Models: the out-of-time split, LightGBM training and calibration, baselines, metrics and the MLflow registry.

Owns :mod:`~churnml.modeling.model` (split, training, calibration, baselines, evaluation),
:mod:`~churnml.modeling.metrics` (every metric, computed once as tables) and
:mod:`~churnml.modeling.tracking` (the only module that imports mlflow). It may import features and the
layers below; it never scores accounts for the warehouse or explains them.
"""
