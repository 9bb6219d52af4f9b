"""Local training only: the delta-percent reference."""

from __future__ import annotations

from collections.abc import Sequence

from fmtlbench import hookimpl
from fmtlbench.components import Algorithm, Params, Update


class Local(Algorithm):
    """Every client trains alone; nothing is exchanged (the reference of delta-percent)."""

    name = "local"
    Params = Params  # nothing is shared or weighted, so no parameters

    def exchanged_names(self, client: int) -> list[str]:
        return []

    def aggregate(self, round: int, updates: Sequence[Update]) -> dict[int, dict]:
        return {}


@hookimpl
def register_algorithms():
    return [Local]
