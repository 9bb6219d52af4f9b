"""The data scenarios of the FMTL-Bench study, declared as data (SPEC section 3).

ST = single-task client, MT = multi-task client (all tasks of its dataset). Every client of a
dataset draws a disjoint share of that dataset's training split (see ``fmtlbench.partition``).
The case study "iid1 with K = 2, 4, 6, 8 clients" is ``iid1`` with ``--clients K``.
"""

from __future__ import annotations

from fmtlbench import hookimpl
from fmtlbench.scenario import ClientGroup, ScenarioSpec

NYUD = "nyudv2"
PASCAL = "pascal-context"

#: The four multi-task NYUD-v2 clients of iid1.
NYUD_MT = ClientGroup(dataset=NYUD, tasks="all", count=4)
#: The four single-task NYUD-v2 clients of niid2, in the study's order (semseg smallest and
#: depth largest once niid5 skews their sizes).
NYUD_ST = [
    ClientGroup(dataset=NYUD, tasks=[task]) for task in ("semseg", "normals", "edge", "depth")
]

SCENARIOS = [
    ScenarioSpec(
        name="iid1",
        title="SDMT",
        description="4 multi-task NYUD-v2 clients with equal shares (resize with --clients)",
        groups=[NYUD_MT],
    ),
    ScenarioSpec(
        name="niid2",
        title="SDST",
        description="4 single-task NYUD-v2 clients: semseg, normals, edge, depth",
        groups=NYUD_ST,
    ),
    ScenarioSpec(
        name="niid3",
        title="SDHT",
        description="the 4 single-task clients of niid2 + the 4 multi-task clients of iid1",
        groups=[*NYUD_ST, NYUD_MT],
    ),
    ScenarioSpec(
        name="niid4",
        title="UBSDMT",
        description="iid1 with quantity skew 1:2:3:4 (resize with --clients)",
        groups=[NYUD_MT.model_copy(update={"shares": "skew"})],
    ),
    ScenarioSpec(
        name="niid5",
        title="UBSDST",
        description="niid2 with quantity skew 1:2:3:4 (semseg smallest, depth largest)",
        groups=NYUD_ST,
        sizes="skew",
    ),
    ScenarioSpec(
        name="niid6",
        title="UBCDMT",
        description="the 4 multi-task NYUD-v2 clients of iid1 + 1 PASCAL-Context client "
        "with parts and normals",
        groups=[NYUD_MT, ClientGroup(dataset=PASCAL, tasks=["parts", "normals"])],
    ),
    ScenarioSpec(
        name="niid7",
        title="UBCDST",
        description="the 4 single-task NYUD-v2 clients of niid2 + 1 PASCAL-Context parts "
        "client + 1 PASCAL-Context normals client",
        groups=[
            *NYUD_ST,
            ClientGroup(dataset=PASCAL, tasks=["parts"]),
            ClientGroup(dataset=PASCAL, tasks=["normals"]),
        ],
    ),
]


@hookimpl
def register_scenarios() -> list[ScenarioSpec]:
    return SCENARIOS
