"""Evaluation of client models (G-FL and P-FL) and their summary over clients (SPEC section 6)."""

from __future__ import annotations

import math
import statistics
from collections.abc import Mapping, Sequence

import torch

from fmtlbench.metrics import make_meter
from fmtlbench.model import MultiTaskModel
from fmtlbench.tasks import TaskSpec

#: ``{task: {metric: value}}`` for one client on one evaluation set.
TaskMetrics = dict[str, dict[str, float]]


@torch.no_grad()
def evaluate(
    model: MultiTaskModel,
    loader: torch.utils.data.DataLoader,
    specs: Mapping[str, TaskSpec],
) -> TaskMetrics:
    """Metrics of ``model`` on every batch of ``loader`` for the tasks in ``specs``, pooled."""
    model.eval()
    device = next(model.parameters()).device
    meters = {t: make_meter(spec) for t, spec in specs.items()}
    for batch in loader:
        preds = model(batch["image"].to(device), list(specs))
        for task, meter in meters.items():
            meter.update(preds[task].cpu(), batch[task])  # meters accumulate on the CPU
    return {task: meter.compute() for task, meter in meters.items()}


def summarise(
    per_client: Sequence[tuple[str, TaskMetrics]],
) -> dict[str, dict[str, dict[str, tuple[float, float]]]]:
    """``{dataset: {task: {metric: (mean, std)}}}`` over the clients that hold each task.

    ``per_client`` lists (dataset, metrics) pairs. The std is the population std over clients
    (0 for a single client), matching "mean ± std over clients" of the study's tables.
    """
    pooled: dict[str, dict[str, dict[str, list[float]]]] = {}
    for dataset, metrics in per_client:
        for task, values in metrics.items():
            for metric, value in values.items():
                pooled.setdefault(dataset, {}).setdefault(task, {}).setdefault(metric, []).append(
                    value
                )
    return {
        ds: {task: {m: mean_std(v) for m, v in metrics.items()} for task, metrics in tasks.items()}
        for ds, tasks in pooled.items()
    }


def mean_std(values: Sequence[float]) -> tuple[float, float]:
    """Mean and population std over the clients whose metric is defined.

    A client's metric is NaN when its evaluation set has no valid pixel for the task (e.g. a
    PASCAL parts client whose local test images show no person); such clients are left out
    rather than turning the whole summary into NaN. No defined value gives (NaN, NaN).
    """
    finite = [v for v in values if math.isfinite(v)]
    if not finite:
        return math.nan, math.nan
    return statistics.fmean(finite), statistics.pstdev(finite)
