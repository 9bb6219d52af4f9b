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

#: Public name -> the kit module defining it. Imported on first use: this package's pytest
#: plugin (``fmtlbench.testing.plugin``) is loaded by every pytest session wherever fmtlbench
#: is installed, and the checks import torch (about 1.3 s).
_EXPORTS = {
    "ARCHS": "algorithms",
    "SCENARIOS": "algorithms",
    "check_algorithm": "algorithms",
    "check_algorithm_cell": "algorithms",
    "ContractError": "checks",
    "check_backbone": "checks",
    "check_component": "checks",
    "check_dataset": "datasets",
    "check_decoder": "checks",
    "check_executor": "executors",
    "check_params": "checks",
    "check_partitioner": "partitioners",
    "check_task_kind": "tasks",
    "open_twin": "datasets",
}

__all__ = sorted(_EXPORTS)


def __getattr__(name: str) -> object:
    if name not in _EXPORTS:
        raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
    import importlib

    return getattr(importlib.import_module(f"{__name__}.{_EXPORTS[name]}"), name)
