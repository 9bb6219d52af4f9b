"""Δ% on hand-computed examples."""

from __future__ import annotations

import pytest

from fmtlbench.delta import delta_percent, primary_delta, primary_lower_is_better
from fmtlbench.errors import ConfigError


def test_all_higher_is_better() -> None:
    # +10% and -30% relative -> mean -10
    values = {"semseg": 55.0, "saliency": 56.0}
    reference = {"semseg": 50.0, "saliency": 80.0}
    lower = {"semseg": False, "saliency": False}
    assert delta_percent(values, reference, lower) == pytest.approx(-10.0)


def test_mixed_directions() -> None:
    # mIoU 40 vs 50: -20%; RMSE 0.6 vs 0.5 is 20% worse: -20% -> -20
    values = {"semseg": 40.0, "depth": 0.6}
    reference = {"semseg": 50.0, "depth": 0.5}
    lower = {"semseg": False, "depth": True}
    assert delta_percent(values, reference, lower) == pytest.approx(-20.0)


def test_lower_is_better_improvement_is_positive() -> None:
    assert delta_percent({"d": 0.4}, {"d": 0.5}, {"d": True}) == pytest.approx(20.0)


def test_unequal_weights() -> None:
    # (+10% * 3 + -20% * 1) / 4 = 2.5
    values = {"a": 1.1, "b": 0.8}
    reference = {"a": 1.0, "b": 1.0}
    lower = {"a": False, "b": False}
    assert delta_percent(values, reference, lower, {"a": 3.0, "b": 1.0}) == pytest.approx(2.5)


def test_only_keys_of_values_count() -> None:
    # The reference may hold more metrics than the run; the extra one is ignored.
    reference = {"a": 2.0, "b": 1.0}
    assert delta_percent({"a": 3.0}, reference, {"a": False, "b": False}) == pytest.approx(50.0)


@pytest.mark.parametrize(
    ("reference", "lower", "weights", "match"),
    [
        ({}, {"depth": True}, None, "'depth' has no reference"),
        ({"depth": 0.0}, {"depth": True}, None, "reference value of 'depth'"),
        ({"depth": 0.5}, {}, None, "'depth' has no lower_is_better"),
        ({"depth": 0.5}, {"depth": True}, {"other": 1.0}, "'depth' has no weight"),
        ({"depth": 0.5}, {"depth": True}, {"depth": 0.0}, "all weights are 0"),
    ],
)
def test_bad_input_is_named(reference, lower, weights, match) -> None:
    with pytest.raises(ConfigError, match=match):
        delta_percent({"depth": 0.6}, reference, lower, weights)


def test_primary_delta_uses_each_tasks_primary_metric() -> None:
    run = {"semseg": {"miou": 40.0, "pixel_acc": 99.0}, "depth": {"rmse": 0.6}}
    ref = {"semseg": {"miou": 50.0, "pixel_acc": 1.0}, "depth": {"rmse": 0.5}}
    assert primary_delta(run, ref) == pytest.approx(-20.0)
    assert primary_lower_is_better("normals") and not primary_lower_is_better("saliency")
    with pytest.raises(ConfigError, match="'depth' has no reference"):
        primary_delta(run, {"semseg": ref["semseg"]})
