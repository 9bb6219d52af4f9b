"""Δ%: the single number that says how much better a run is than a reference (SPEC section 6).

    Δ% = 100 / Σ w_i · Σ_i w_i (−1)^{l_i} (M_i − M_ref,i) / M_ref,i

Each metric's relative change is signed so that positive always means "better" (l_i = 1 when
lower is better), which lets metrics of opposite directions and different units be averaged.
This module is plain Python (no torch) so that the leaderboard can use it on stored numbers.
"""

from __future__ import annotations

import math
from collections.abc import Mapping
from typing import TypeVar

from fmtlbench.errors import ConfigError
from fmtlbench.tasks import primary_metric

T = TypeVar("T")


def delta_percent(
    values: Mapping[str, float],
    reference: Mapping[str, float],
    lower_is_better: Mapping[str, bool],
    weights: Mapping[str, float] | None = None,
) -> float:
    """Δ% of ``values`` against ``reference`` over the keys of ``values``.

    ``weights`` defaults to equal weights; given weights need not sum to 1 (the formula
    normalises). A ``nan`` in ``values`` (e.g. a diverged run) gives ``nan``; a missing or
    zero reference is an error, because the relative change would be meaningless.
    """
    if not values:
        raise ConfigError("delta_percent: no metric values given")
    weighted = 0.0
    total_weight = 0.0
    for key, value in values.items():
        ref = _required(reference, key, "reference value")
        if ref == 0 or not math.isfinite(ref):
            raise ConfigError(f"delta_percent: reference value of {key!r} is {ref}; need non-zero")
        lower = _required(lower_is_better, key, "lower_is_better entry")
        w = 1.0 / len(values) if weights is None else float(_required(weights, key, "weight"))
        if w < 0 or not math.isfinite(w):
            raise ConfigError(f"delta_percent: weight of {key!r} is {w}; need a finite w >= 0")
        sign = -1.0 if lower else 1.0
        weighted += w * sign * (value - ref) / ref
        total_weight += w
    if total_weight == 0:
        raise ConfigError("delta_percent: all weights are 0")
    return 100.0 * weighted / total_weight


def _required(table: Mapping[str, T], key: str, what: str) -> T:
    """``table[key]``, or an error naming the missing key."""
    if key not in table:
        raise ConfigError(f"delta_percent: metric {key!r} has no {what}")
    return table[key]


def primary_of(task: str, chosen: Mapping[str, str] | None = None) -> tuple[str, bool]:
    """``tasks.primary_metric``: a task of no installed kind is a ``ConfigError``."""
    return primary_metric(task, chosen)


def primary_lower_is_better(task: str, chosen: Mapping[str, str] | None = None) -> bool:
    """Whether the primary metric of ``task`` (``tasks.primary_metric``) improves downwards."""
    return primary_of(task, chosen)[1]


def primary_delta(
    metrics: Mapping[str, Mapping[str, float]],
    reference: Mapping[str, Mapping[str, float]],
    weights: Mapping[str, float] | None = None,
    chosen: Mapping[str, str] | None = None,
) -> float:
    """Δ% over tasks from per-task metric dicts (``{task: meter.compute()}``), using each
    task's primary metric (``chosen`` as in ``training.metrics.primary``): the usual way a
    run is summarised in one number."""
    values: dict[str, float] = {}
    refs: dict[str, float] = {}
    lower: dict[str, bool] = {}
    for task, task_metrics in metrics.items():
        name, lower[task] = primary_of(task, chosen)
        if name not in task_metrics:
            raise ConfigError(f"primary_delta: task {task!r} lacks its primary metric {name!r}")
        values[task] = task_metrics[name]
        if task in reference and name in reference[task]:
            refs[task] = reference[task][name]
    return delta_percent(values, refs, lower, weights)
