"""Time-to-target: what a run spent until its Δ% first reached a target (SPEC section 6).

Costs are cumulative sums of the per-round metrics every run logs (step = round): bytes sent
up and down, wall time of local training, aggregation and evaluation, and codecarbon energy
and emissions when the run measured them. A cost a run did not log (or logged as NaN, i.e.
not measured) is reported as None rather than as zero.
"""

from __future__ import annotations

import math
from collections.abc import Mapping
from dataclasses import dataclass

from fmtlbench import metric_keys as keys

History = Mapping[str, Mapping[int, float]]

#: Cost name -> the per-round metrics whose sum it is.
COSTS: dict[str, tuple[str, ...]] = {
    "bytes": tuple(keys.traffic_total(d) for d in keys.DIRECTIONS),
    "seconds": tuple(keys.time(phase) for phase in ("train", "aggregate", "eval")),
    "kwh": (keys.energy("kwh"),),
    "co2_kg": (keys.energy("co2_kg"),),
}


@dataclass(frozen=True)
class Hit:
    """The first evaluated round whose Δ% reached the target, and the costs until then."""

    round: int
    delta: float
    bytes: float | None
    seconds: float | None
    kwh: float | None
    co2_kg: float | None


def cumulative(history: History, names: tuple[str, ...], upto: int) -> float | None:
    """Sum of the metrics ``names`` over the logged rounds <= ``upto``; None if a metric was
    never logged or is not finite (not measured)."""
    if any(name not in history for name in names):
        return None
    total = sum(v for name in names for step, v in history[name].items() if step <= upto)
    return float(total) if math.isfinite(total) else None


def time_to_target(curve: Mapping[int, float], history: History, target: float) -> Hit | None:
    """The first round (in round order) with Δ% >= ``target``, or None if never reached."""
    for r in sorted(curve):
        if curve[r] >= target:
            costs = {name: cumulative(history, names, r) for name, names in COSTS.items()}
            return Hit(round=r, delta=curve[r], **costs)
    return None


def totals(history: History) -> dict[str, float | None]:
    """Whole-run costs (all logged rounds)."""
    last = max((max(s) for s in history.values() if s), default=0)
    return {name: cumulative(history, names, last) for name, names in COSTS.items()}


def per_round(history: History, name: str) -> float | None:
    """Mean of metric ``name`` over the training rounds (step >= 1), or None."""
    values = [v for step, v in history.get(name, {}).items() if step >= 1]
    if not values:
        return None
    mean = sum(values) / len(values)
    return mean if math.isfinite(mean) else None
