"""Dense-prediction tasks: their output shapes, metric directions and loss weights.

A task is data, not a component: every dataset names the tasks it labels with a ``TaskSpec``
so that decoders know how many channels to predict and evaluation knows which metric leads.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass

from fmtlbench.errors import ConfigError

#: Label value of pixels that carry no supervision (void labels, invalid depth, padding).
IGNORE = 255

#: Fixed per-task loss weights of the FMTL-Bench study (SPEC section 4).
LOSS_WEIGHTS: dict[str, float] = {
    "semseg": 1.0,
    "parts": 2.0,
    "saliency": 5.0,
    "normals": 10.0,
    "edge": 50.0,
    "depth": 1.0,
}

#: The metric that represents each task in tables and in delta-percent, and whether lower is better.
PRIMARY_METRIC: dict[str, tuple[str, bool]] = {
    "semseg": ("miou", False),
    "parts": ("miou", False),
    "depth": ("rmse", True),
    "normals": ("mean", True),
    "edge": ("loss", True),
    "saliency": ("maxf", False),
}

#: Metrics a run may choose as a task's primary instead of the default (config
#: ``training.metrics.primary``), with whether lower is better. Edge odsF is offered because
#: the study's edge loss measures calibration rather than edge placement; the loss stays the
#: default so that published Δ% numbers still match.
PRIMARY_CHOICES: dict[str, dict[str, bool]] = {"edge": {"odsf": False}}


def primary_metric(task: str, chosen: Mapping[str, str] | None = None) -> tuple[str, bool]:
    """(metric name, lower is better) of the metric that represents ``task`` in tables and
    Δ%: ``chosen[task]`` when a run picked one of ``PRIMARY_CHOICES``, else the default of
    ``PRIMARY_METRIC``. Every reader of primaries (engine, Δ%, leaderboard) goes through here.
    """
    default = PRIMARY_METRIC[task]
    name = (chosen or {}).get(task)
    if name is None or name == default[0]:
        return default
    options = PRIMARY_CHOICES.get(task, {})
    if name not in options:
        allowed = ", ".join([default[0], *options])
        raise ConfigError(f"task {task!r} cannot use {name!r} as its primary metric; use {allowed}")
    return name, options[name]


#: Scale at which tables print a metric (SPEC section 6: depth RMSE x 100; edge loss x 100 like
#: the study's starred columns). Display only: stored metric values are never scaled.
DISPLAY_SCALE: dict[tuple[str, str], float] = {("depth", "rmse"): 100.0, ("edge", "loss"): 100.0}


@dataclass(frozen=True)
class TaskSpec:
    """What a dataset says about one of its tasks.

    ``channels`` is the number of output channels a decoder head predicts (classes for
    segmentation tasks). ``classes`` is set for label-map tasks (semseg, parts) and ``None``
    otherwise. ``pos_weight`` is the positive-class weight of balanced BCE (edge, saliency).
    ``match_distance`` is the edge odsF matching tolerance as a fraction of the image diagonal
    (BSDS-style; it depends on the dataset's annotation, so the dataset declares it).

    Two fields are run settings, stamped in by ``build_federation`` from the config so that
    every evaluator (also in Ray workers) sees them: ``odsf_thresholds`` (0: no odsF/oisF) and
    ``chosen_primary`` (a ``PRIMARY_CHOICES`` metric replacing the default primary).
    """

    name: str
    channels: int
    classes: int | None = None
    pos_weight: float | None = None
    match_distance: float | None = None
    odsf_thresholds: int = 0
    chosen_primary: str | None = None

    @property
    def loss_weight(self) -> float:
        return LOSS_WEIGHTS[self.name]

    @property
    def primary(self) -> tuple[str, bool]:
        """(metric name, lower is better) of the metric that represents this task."""
        chosen = {self.name: self.chosen_primary} if self.chosen_primary else None
        return primary_metric(self.name, chosen)
