"""The six task kinds of the FMTL-Bench study (SPEC sections 4 and 6), registered like any
third-party kind.

Each kind picks its loss and valid-pixel rule from ``fmtlbench.losses`` and its meter from
``fmtlbench.metrics``; the numbers (loss weights ``q_t``, primaries and their directions, the
x100 display of depth RMSE and edge loss) are the study's. torch is imported inside the
methods, so listing the kinds stays fast.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any, ClassVar

from fmtlbench import hookimpl
from fmtlbench.components import TaskKind
from fmtlbench.tasks import IGNORE, TaskSpec

if TYPE_CHECKING:  # pragma: no cover - typing only
    import numpy as np
    import torch


class SemanticSegmentation(TaskKind):
    """Semantic segmentation: per-pixel class ids, cross-entropy, mIoU."""

    name = "semseg"
    loss_weight = 1.0
    metrics: ClassVar[dict[str, bool]] = {"miou": False, "pixel_acc": False}
    primary = "miou"

    def loss(self, spec: TaskSpec, pred: torch.Tensor, target: torch.Tensor) -> torch.Tensor:
        from fmtlbench.losses import cross_entropy

        return cross_entropy(spec, pred, target)

    def meter(self, spec: TaskSpec) -> Any:
        from fmtlbench.metrics import SegmentationMeter

        return SegmentationMeter(spec)

    def picture(self, label: np.ndarray) -> np.ndarray:
        from fmtlbench.gallery import classes

        return classes(label)


class HumanParts(SemanticSegmentation):
    """Human part segmentation: per-pixel part ids (background included), cross-entropy, mIoU."""

    name = "parts"
    loss_weight = 2.0


class Depth(TaskKind):
    """Monocular depth in metres: L1 on pixels with a reading, RMSE."""

    name = "depth"
    loss_weight = 1.0
    metrics: ClassVar[dict[str, bool]] = {"rmse": True, "abs_rel": True}
    primary = "rmse"
    display_scale: ClassVar[dict[str, float]] = {"rmse": 100.0}

    def valid(self, target: torch.Tensor) -> torch.Tensor:
        from fmtlbench.losses import positive_valid

        return positive_valid(target)

    def loss(self, spec: TaskSpec, pred: torch.Tensor, target: torch.Tensor) -> torch.Tensor:
        from fmtlbench.losses import positive_l1

        return positive_l1(spec, pred, target)

    def meter(self, spec: TaskSpec) -> Any:
        from fmtlbench.metrics import DepthMeter

        return DepthMeter(spec)

    def picture(self, label: np.ndarray) -> np.ndarray:
        from fmtlbench.gallery import colour_map

        return colour_map(label)


class SurfaceNormals(TaskKind):
    """Surface normals as unit vectors: L1 between unit vectors, mean angular error."""

    name = "normals"
    loss_weight = 10.0
    metrics: ClassVar[dict[str, bool]] = {
        "mean": True,
        "median": True,
        "rmse": True,
        "within_11_25": False,
        "within_22_5": False,
        "within_30": False,
    }
    primary = "mean"

    def activate(self, logits: torch.Tensor) -> torch.Tensor:
        import torch.nn.functional as F

        return F.normalize(logits, p=2.0, dim=1)

    def valid(self, target: torch.Tensor) -> torch.Tensor:
        from fmtlbench.losses import vector_valid

        return vector_valid(target)

    def loss(self, spec: TaskSpec, pred: torch.Tensor, target: torch.Tensor) -> torch.Tensor:
        from fmtlbench.losses import unit_l1

        return unit_l1(spec, pred, target)

    def meter(self, spec: TaskSpec) -> Any:
        from fmtlbench.metrics import NormalsMeter

        return NormalsMeter(spec)

    def flip(self, label: torch.Tensor) -> torch.Tensor:
        """Mirrored, with the x component (channel 0, positive to the right) negated: the
        normal of a mirrored surface points the other way horizontally."""
        import torch

        out = label.flip(-1).clone()
        x = out[:, 0]
        out[:, 0] = torch.where(x == IGNORE, x, -x)
        return out

    def picture(self, label: np.ndarray) -> np.ndarray:
        from fmtlbench.gallery import vectors

        return vectors(label)


class BinaryMap(TaskKind):
    """What the binary-map kinds share: balanced BCE as the loss, grey levels as the picture
    (not registered itself: it has no metrics of its own)."""

    def loss(self, spec: TaskSpec, pred: torch.Tensor, target: torch.Tensor) -> torch.Tensor:
        from fmtlbench.losses import balanced_bce

        return balanced_bce(spec, pred, target)

    def picture(self, label: np.ndarray) -> np.ndarray:
        from fmtlbench.gallery import grey

        return grey(label)


class Edges(BinaryMap):
    """Edge detection: balanced BCE (the study's primary, x100 in tables); odsF/oisF beside it."""

    name = "edge"
    loss_weight = 50.0
    metrics: ClassVar[dict[str, bool]] = {"loss": True, "odsf": False, "oisf": False}
    primary = "loss"
    alternatives = ("odsf",)
    thresholded = frozenset({"odsf", "oisf"})
    display_scale: ClassVar[dict[str, float]] = {"loss": 100.0}

    def unavailable(self, metric: str) -> str | None:
        from fmtlbench import edges

        if metric in self.thresholded and not edges.available():
            return (
                f"needs pyEdgeEval, which is not installed: {edges.INSTALL_HINT}, or drop the "
                "setting to rank by the edge loss"
            )
        return None

    def meter(self, spec: TaskSpec) -> Any:
        from fmtlbench.metrics import EdgeMeter

        return EdgeMeter(spec)


class Saliency(BinaryMap):
    """Salient-object detection: balanced BCE, maximal F-measure."""

    name = "saliency"
    loss_weight = 5.0
    metrics: ClassVar[dict[str, bool]] = {"maxf": False, "iou": False}
    primary = "maxf"

    def meter(self, spec: TaskSpec) -> Any:
        from fmtlbench.metrics import SaliencyMeter

        return SaliencyMeter(spec)


@hookimpl
def register_tasks() -> list[type[TaskKind]]:
    return [SemanticSegmentation, HumanParts, Depth, SurfaceNormals, Edges, Saliency]
