"""Dense-prediction tasks: their output shapes, metric directions and loss weights.

A task is data, not a component: every dataset names the tasks it labels with a ``TaskSpec``
so that decoders know how many channels to predict and evaluation knows which metric leads.
"""

from __future__ import annotations

from dataclasses import dataclass

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

#: Scale at which tables print a metric (SPEC section 6: depth RMSE x 100; edge loss x 100 like
#: the study's starred columns). Display only: stored metric values are never scaled.
DISPLAY_SCALE: dict[tuple[str, str], float] = {("depth", "rmse"): 100.0, ("edge", "loss"): 100.0}


@dataclass(frozen=True)
class TaskSpec:
    """What a dataset says about one of its tasks.

    ``channels`` is the number of output channels a decoder head predicts (classes for
    segmentation tasks). ``classes`` is set for label-map tasks (semseg, parts) and ``None``
    otherwise. ``pos_weight`` is the positive-class weight of balanced BCE (edge, saliency).
    """

    name: str
    channels: int
    classes: int | None = None
    pos_weight: float | None = None

    @property
    def loss_weight(self) -> float:
        return LOSS_WEIGHTS[self.name]

    @property
    def primary(self) -> tuple[str, bool]:
        """(metric name, lower is better) of the metric that represents this task."""
        return PRIMARY_METRIC[self.name]
