"""Partition materialisation: disjoint, complete, proportional, hashed."""

from __future__ import annotations

from hypothesis import given, settings
from hypothesis import strategies as st

from fmtlbench.partition import share_counts


@given(
    total=st.integers(min_value=0, max_value=5000),
    shares=st.lists(st.floats(min_value=0.1, max_value=10), min_size=1, max_size=12),
)
@settings(max_examples=200, deadline=None)
def test_share_counts_sum_and_stay_within_one(total, shares):
    counts = share_counts(total, shares)
    assert sum(counts) == total
    weight = sum(shares)
    for count, share in zip(counts, shares, strict=True):
        assert abs(count - total * share / weight) < 1.0 + 1e-9


def test_share_counts_by_hand():
    assert share_counts(10, [1, 2, 3, 4]) == [1, 2, 3, 4]
    assert share_counts(11, [1, 1, 1, 1]) == [3, 3, 3, 2]
    assert share_counts(100, [1, 2, 3, 4]) == [10, 20, 30, 40]
