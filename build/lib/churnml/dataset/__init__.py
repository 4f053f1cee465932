"""The dataset: the observation spine (which accounts at which cutoffs, and the point-in-time rule) and the labels.

Owns :mod:`~churnml.dataset.spine` and :mod:`~churnml.dataset.labels`. It reads validated contract tables
and may import the contract, never features, models or anything that scores.
"""
