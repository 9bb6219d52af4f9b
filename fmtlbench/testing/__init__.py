"""The plugin author's test kit: contract checks any component runs against itself.

A plugin's own test suite calls these on its classes (or uses the ``fmtlbench_kit`` pytest
fixture, which this package registers as a pytest plugin through the ``pytest11`` entry point
of the fmtlbench distribution)::

    from fmtlbench.testing import check_algorithm, check_component
    from fmtlbench_myalgo.plugin import MyAlgo

    def test_contract(tmp_path):
        check_component(MyAlgo, "algorithm")
        check_algorithm(MyAlgo, tmp_path)

Every check raises ``ContractError`` (an ``AssertionError``, so pytest shows it as a failure)
with one message naming the component, the rule and the fix. The built-in components are
checked by the same functions in fmtlbench's own test suite.
"""

from __future__ import annotations

from fmtlbench.testing.algorithms import ARCHS, SCENARIOS, check_algorithm, check_algorithm_cell
from fmtlbench.testing.checks import (
    ContractError,
    check_backbone,
    check_component,
    check_decoder,
    check_params,
)
from fmtlbench.testing.tasks import check_task_kind

__all__ = [
    "ARCHS",
    "SCENARIOS",
    "ContractError",
    "check_algorithm",
    "check_algorithm_cell",
    "check_backbone",
    "check_component",
    "check_decoder",
    "check_params",
    "check_task_kind",
]
