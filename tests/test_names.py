"""Names: label columns follow target and horizon, and name their horizon back."""

from __future__ import annotations

import pytest

from churnml.errors import ChurnmlError
from churnml.names import TARGETS, label_column, label_columns, label_horizon


def test_label_column_follows_target_and_horizon():
    assert label_column("churn", 90) == "churned_within_90d"
    assert label_column("expansion", 30) == "expanded_within_30d"
    assert label_columns(60) == ["churned_within_60d", "expanded_within_60d", "contracted_within_60d"]
    with pytest.raises(ChurnmlError, match="unknown target"):
        label_column("upsell", 90)


@pytest.mark.parametrize("target", [*TARGETS, "contraction"])
def test_a_label_column_names_its_horizon(target):
    assert label_horizon(label_column(target, 31)) == 31


@pytest.mark.parametrize("column", ["churned_within_d", "churned_within_90", "renewed_within_90d", "y"])
def test_other_columns_are_not_label_columns(column):
    with pytest.raises(ChurnmlError, match="not a label column"):
        label_horizon(column)
