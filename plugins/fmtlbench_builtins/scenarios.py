"""The data scenarios of the FMTL-Bench study, declared as data (SPEC section 3)."""

from __future__ import annotations

from fmtlbench import hookimpl
from fmtlbench.scenario import ClientGroup, ScenarioSpec

SCENARIOS = [
    ScenarioSpec(
        name="iid1",
        title="SDMT",
        description="4 multi-task NYUD-v2 clients with equal shares",
        groups=[ClientGroup(dataset="nyudv2", tasks="all", count=4)],
    ),
]


@hookimpl
def register_scenarios():
    return SCENARIOS
