"""Δ% of a run against its reference: at the end, and at every evaluated round.

The reference side is always the reference run's *final* metrics (SPEC section 6), so a curve
shows how quickly a run approaches or passes what local training reaches in the end. Δ% is
computed over the task metrics both runs have (a PASCAL client's metrics cannot be compared
with an NYUD-only reference); ``comparable_keys`` says which were left out and why.
"""

from __future__ import annotations

import math
from collections.abc import Mapping

from fmtlbench.delta import delta_percent
from fmtlbench.leaderboard.records import Record
from fmtlbench.metric_keys import TaskMetric


def weight_of(key: TaskMetric, weights: Mapping[str, float]) -> float:
    """Task weight of ``key``: ``dataset/task`` if given, else ``task``, else 1."""
    for name in (key.task_label, key.task):
        if name in weights:
            return float(weights[name])
    return 1.0


def comparable_keys(
    record: Record, reference: Record, setting: str
) -> tuple[list[TaskMetric], dict[TaskMetric, str]]:
    """(keys usable for Δ%, {excluded key: reason}) of ``record`` in ``setting``."""
    keys, excluded = [], {}
    for key in record.keys(setting):
        ref = reference.final.get(key)
        if ref is None:
            excluded[key] = "not evaluated by the reference run"
        elif ref == 0 or not math.isfinite(ref):
            excluded[key] = f"reference value is {ref} (relative change undefined)"
        else:
            keys.append(key)
    return keys, excluded


def _delta(
    values: Mapping[TaskMetric, float],
    record: Record,
    reference: Record,
    weights: Mapping[str, float],
) -> float:
    return delta_percent(
        {str(k): v for k, v in values.items()},
        {str(k): reference.final[k] for k in values},
        {str(k): record.lower[k] for k in values},
        {str(k): weight_of(k, weights) for k in values},
    )


def final_delta(
    record: Record, reference: Record, setting: str, weights: Mapping[str, float]
) -> float | None:
    """Δ% of the run's final client-mean metrics, or None when nothing is comparable."""
    keys, _ = comparable_keys(record, reference, setting)
    if not keys:
        return None
    return _delta({k: record.final[k] for k in keys}, record, reference, weights)


def delta_curve(
    record: Record, reference: Record, setting: str, weights: Mapping[str, float]
) -> dict[int, float]:
    """{round: Δ%} at every round where all comparable metrics were logged (round 0 is the
    untrained model when the run evaluated it)."""
    keys, _ = comparable_keys(record, reference, setting)
    if not keys:
        return {}
    series = [record.history.get(str(k), {}) for k in keys]
    rounds = set(series[0]).intersection(*series[1:])
    return {
        r: _delta({k: s[r] for k, s in zip(keys, series, strict=True)}, record, reference, weights)
        for r in sorted(rounds)
    }
