"""Streaming evaluation meters of dense-prediction tasks (SPEC section 6).

A meter is fed one batch at a time and pools over the whole evaluation set: it keeps sums,
counts, a confusion matrix or a histogram, never per-pixel values, so its memory does not grow
with the set (real test sets hold ~10^8 pixels). Pooling matters: the mean of per-batch mIoUs
or RMSEs is not the set's mIoU or RMSE, and depends on the batch size.

Units of ``compute()``: ``miou``, ``pixel_acc``, ``maxf``, ``iou`` and ``within_*`` in percent
(0-100); depth ``rmse`` in metres and ``abs_rel`` as a fraction; normals angles in degrees;
edge ``loss`` in nats; edge ``odsf``/``oisf`` in percent (``fmtlbench.edges``). A metric that
is undefined on what was seen (no valid pixel, no positive ground truth) is ``nan`` rather than
a made-up number.
"""

from __future__ import annotations

import math
from abc import ABC, abstractmethod
from typing import ClassVar

import torch
from torch import Tensor

from fmtlbench import edges
from fmtlbench.errors import ConfigError, DataError
from fmtlbench.losses import balance_weight, bce_terms, check_shapes
from fmtlbench.tasks import IGNORE, TaskSpec

NAN = float("nan")


class Meter(ABC):
    """Accumulates one task's metric state over batches; ``compute`` reads it out."""

    def __init__(self, spec: TaskSpec) -> None:
        self.spec = spec

    def update(self, pred: Tensor, target: Tensor) -> None:
        """Add one batch (shapes as for ``fmtlbench.losses.task_loss``)."""
        check_shapes(self.spec, pred, target)
        with torch.no_grad():
            self._accumulate(pred.detach(), target)

    @abstractmethod
    def _accumulate(self, pred: Tensor, target: Tensor) -> None: ...

    @abstractmethod
    def compute(self) -> dict[str, float]:
        """Metrics of everything seen so far."""


class SegmentationMeter(Meter):
    """mIoU and pixel accuracy from a confusion matrix (rows ground truth, columns argmax)."""

    def __init__(self, spec: TaskSpec) -> None:
        super().__init__(spec)
        if spec.classes is None:
            raise ConfigError(f"task {spec.name!r}: TaskSpec.classes must be set for mIoU")
        self.confusion = torch.zeros(spec.classes, spec.classes, dtype=torch.int64)

    def _accumulate(self, pred: Tensor, target: Tensor) -> None:
        c = self.confusion.shape[0]
        valid = target != IGNORE
        truth = target[valid].long()
        guess = pred.argmax(dim=1)[valid]
        if truth.numel() and (truth.min() < 0 or truth.max() >= c):
            raise DataError(
                f"task {self.spec.name!r}: label {int(truth.max())} outside 0..{c - 1} "
                f"(and not the ignore value {IGNORE})"
            )
        counts = torch.bincount(truth * c + guess, minlength=c * c)
        self.confusion += counts.reshape(c, c).cpu()

    def compute(self) -> dict[str, float]:
        conf = self.confusion.double()
        hits = conf.diag()
        union = conf.sum(dim=1) + conf.sum(dim=0) - hits
        # A class absent from both ground truth and prediction has an empty union: skip it
        # instead of counting an undefined 0/0 as either 0 or 1.
        seen = union > 0
        total = conf.sum()
        return {
            "miou": float((hits[seen] / union[seen]).mean() * 100) if seen.any() else NAN,
            "pixel_acc": float(hits.sum() / total * 100) if total > 0 else NAN,
        }


class DepthMeter(Meter):
    """Depth RMSE (metres) and mean absolute relative error, pooled over valid pixels."""

    def __init__(self, spec: TaskSpec) -> None:
        super().__init__(spec)
        self.squared = 0.0
        self.relative = 0.0
        self.count = 0

    def _accumulate(self, pred: Tensor, target: Tensor) -> None:
        valid = self.spec.kind.valid(target)
        truth = target[valid].double()
        err = pred[valid].double() - truth
        self.squared += float((err * err).sum())
        self.relative += float((err.abs() / truth).sum())
        self.count += int(valid.sum())

    def compute(self) -> dict[str, float]:
        if self.count == 0:
            return {"rmse": NAN, "abs_rel": NAN}
        return {
            "rmse": math.sqrt(self.squared / self.count),
            "abs_rel": self.relative / self.count,
        }


class NormalsMeter(Meter):
    """Angular error in degrees: mean, median, RMSE and the share of pixels under thresholds.

    Mean, RMSE and the threshold shares are exact (pooled sums and counts). The median comes
    from a histogram of ``BIN`` = 0.01° bins over [0°, 180°]: it is the midpoint of the centres
    of the bins holding the two middle ranks, so it lies within ``BIN / 2`` of the exact median.
    """

    BIN: ClassVar[float] = 0.01
    THRESHOLDS: ClassVar[tuple[float, ...]] = (11.25, 22.5, 30.0)

    def __init__(self, spec: TaskSpec) -> None:
        super().__init__(spec)
        self.bins = round(180 / self.BIN)
        self.histogram = torch.zeros(self.bins, dtype=torch.int64)
        self.total = 0.0
        self.squared = 0.0
        self.below = [0] * len(self.THRESHOLDS)

    def _accumulate(self, pred: Tensor, target: Tensor) -> None:
        valid = self.spec.kind.valid(target).squeeze(1)
        p = pred.double().movedim(1, -1)[valid]
        t = target.double().movedim(1, -1)[valid]
        # atan2(|p x t|, p . t) is accurate at every angle (acos loses ~0.02 degrees near 0)
        # and does not need unit vectors.
        angle = torch.rad2deg(torch.atan2(torch.linalg.cross(p, t).norm(dim=-1), (p * t).sum(-1)))
        angle = torch.where(p.norm(dim=-1) > 0, angle, torch.full_like(angle, 90.0))
        index = (angle / self.BIN).long().clamp(0, self.bins - 1)
        self.histogram += torch.bincount(index, minlength=self.bins).cpu()
        self.total += float(angle.sum())
        self.squared += float((angle * angle).sum())
        for i, limit in enumerate(self.THRESHOLDS):
            self.below[i] += int((angle < limit).sum())

    def _median(self, count: int) -> float:
        cumulative = self.histogram.cumsum(0)
        ranks = torch.tensor([(count + 1) // 2, count // 2 + 1], dtype=torch.int64)
        bins = torch.searchsorted(cumulative, ranks)  # first bin whose cumulative count >= rank
        return float((bins.double().mean() + 0.5) * self.BIN)

    def compute(self) -> dict[str, float]:
        count = int(self.histogram.sum())
        names = [f"within_{limit:g}".replace(".", "_") for limit in self.THRESHOLDS]
        if count == 0:
            return dict.fromkeys(["mean", "median", "rmse", *names], NAN)
        shares = {name: below / count * 100 for name, below in zip(names, self.below, strict=True)}
        return {
            "mean": self.total / count,
            "median": self._median(count),
            "rmse": math.sqrt(self.squared / count),
            **shares,
        }


class EdgeMeter(Meter):
    """The balanced BCE of ``fmtlbench.losses`` pooled over every valid pixel of the set, and
    BSDS odsF/oisF (``fmtlbench.edges``) when the task asks for them.

    The positive and negative log terms are summed separately so that, when the task has no
    fixed ``pos_weight``, the balance weight can be the negative fraction of the whole set.
    odsF/oisF are computed when ``spec.odsf_thresholds`` > 0 and the dataset declares a
    ``match_distance``; each image is matched as it arrives and only integer counts are kept.
    Unlabelled pixels count as neither edge nor prediction.
    """

    def __init__(self, spec: TaskSpec) -> None:
        super().__init__(spec)
        self.pos_terms = 0.0
        self.neg_terms = 0.0
        self.positives = 0.0
        self.count = 0
        self.counts: edges.EdgeCounts | None = None
        if spec.odsf_thresholds > 0 and spec.match_distance is not None and edges.available():
            self.counts = edges.EdgeCounts(
                edges.thresholds(spec.odsf_thresholds), spec.match_distance
            )

    def _accumulate(self, pred: Tensor, target: Tensor) -> None:
        valid = self.spec.kind.valid(target)
        y = target[valid].double()
        pos, neg = bce_terms(pred[valid].double(), y)
        self.pos_terms += float(pos.sum())
        self.neg_terms += float(neg.sum())
        self.positives += float(y.sum())
        self.count += int(valid.sum())
        if self.counts is not None:
            labelled = valid[:, 0]
            prob = torch.where(labelled, pred[:, 0].double().sigmoid(), 0.0).cpu().numpy()
            truth = (labelled & (target[:, 0] > 0.5)).cpu().numpy()
            for p, t in zip(prob, truth, strict=True):
                self.counts.add(p, t)

    def compute(self) -> dict[str, float]:
        out = {"loss": NAN}
        if self.count > 0:
            positives = torch.tensor(self.positives, dtype=torch.float64)
            w = float(balance_weight(self.spec.pos_weight, positives, torch.tensor(self.count)))
            out["loss"] = -(w * self.pos_terms + (1 - w) * self.neg_terms) / self.count
        if self.counts is not None:
            out["odsf"] = self.counts.ods()
            out["oisf"] = self.counts.ois()
        return out


class SaliencyMeter(Meter):
    """Maximum F-measure (β² = 0.3) over thresholds 0.01..0.99 and IoU at threshold 0.5.

    A pixel is predicted salient at threshold τ when σ(logit) >= τ; ground truth is salient
    when its label is > 0.5. Counts of predicted-salient pixels per threshold are pooled over
    the set (one histogram over threshold buckets each for salient and background pixels), and
    precision and recall are computed from the pooled counts.
    """

    BETA2: ClassVar[float] = 0.3
    #: Thresholds 0.01, 0.02, ..., 0.99 (computed as k / 100, exactly as numpy would).
    THRESHOLDS: ClassVar[Tensor] = torch.arange(1, 100, dtype=torch.float64) / 100
    IOU_AT: ClassVar[int] = 49  # index of threshold 0.50

    def __init__(self, spec: TaskSpec) -> None:
        super().__init__(spec)
        size = len(self.THRESHOLDS) + 1
        self.salient = torch.zeros(size, dtype=torch.int64)
        self.background = torch.zeros(size, dtype=torch.int64)

    def _accumulate(self, pred: Tensor, target: Tensor) -> None:
        valid = self.spec.kind.valid(target)
        prob = pred[valid].double().sigmoid()
        truth = target[valid] > 0.5
        # bucket b = number of thresholds <= prob: predicted salient at threshold k iff b > k.
        bucket = torch.bucketize(prob, self.THRESHOLDS.to(prob.device), right=True)
        size = len(self.salient)
        self.salient += torch.bincount(bucket[truth], minlength=size).cpu()
        self.background += torch.bincount(bucket[~truth], minlength=size).cpu()

    def compute(self) -> dict[str, float]:
        def above(hist: Tensor) -> Tensor:  # pixels predicted salient at each threshold
            return hist.flip(0).cumsum(0).flip(0)[1:].double()

        tp, fp = above(self.salient), above(self.background)
        positives = float(self.salient.sum())
        if positives == 0:
            return {"maxf": NAN, "iou": NAN}
        precision = torch.where(tp + fp > 0, tp / (tp + fp).clamp(min=1), torch.zeros_like(tp))
        recall = tp / positives
        denom = self.BETA2 * precision + recall
        f = torch.where(denom > 0, (1 + self.BETA2) * precision * recall / denom, 0.0)
        k = self.IOU_AT
        iou = tp[k] / (positives + fp[k])  # TP / (TP + FP + FN), FN = positives - TP
        return {"maxf": float(f.max() * 100), "iou": float(iou * 100)}


def make_meter(spec: TaskSpec) -> Meter:
    """A fresh meter for ``spec``'s task, as its task kind builds it."""
    return spec.kind.meter(spec)
