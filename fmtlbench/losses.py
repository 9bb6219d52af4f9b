"""Training losses of dense-prediction tasks (SPEC section 4) and the rules they share.

Every task loss is unweighted and averaged over the *valid* pixels of the batch, so a batch
whose labels are mostly void does not get a smaller loss than a fully labelled one. A batch
without any valid pixel gives a loss of exactly 0 that is still connected to the prediction
(zero gradient, never NaN), so a training step on such a batch is harmless.

Which task uses which loss and which valid-pixel rule is its task kind's choice
(``TaskKind.loss`` and ``TaskKind.valid``, the built-ins in ``fmtlbench_builtins.tasks``); this
module holds the loss functions and pixel rules kinds pick from, and the entry points the
engine calls. The evaluation meters in ``fmtlbench.metrics`` ask the same ``valid`` rule, so
losses and metrics never disagree about what counts as a labelled pixel.
"""

from __future__ import annotations

from collections.abc import Mapping

import torch
import torch.nn.functional as F
from torch import Tensor

from fmtlbench.errors import ConfigError
from fmtlbench.tasks import IGNORE, TaskSpec


# --------------------------------------------------------------------------- valid pixels
def label_valid(target: Tensor) -> Tensor:
    """Pixels of a one-channel label map that are not ``IGNORE``."""
    return target != IGNORE


def positive_valid(target: Tensor) -> Tensor:
    """Valid where neither ``IGNORE`` nor 0 (the raw "no reading" value of range sensors).

    Loaders already turn 0 into ``IGNORE``; excluding 0 again costs nothing and keeps a
    relative error finite if a loader ever forgets.
    """
    return (target != IGNORE) & (target > 0)


def vector_valid(target: Tensor) -> Tensor:
    """N x 1 x H x W mask of pixels whose target vector is neither ``IGNORE`` nor zero."""
    ignored = (target == IGNORE).any(dim=1, keepdim=True)
    zero = (target == 0).all(dim=1, keepdim=True)
    return ~(ignored | zero)


def _masked_mean(values: Tensor, mask: Tensor) -> Tensor:
    """Mean of ``values`` over ``mask``; 0 (with a gradient path) when the mask is empty."""
    total = torch.where(mask, values, torch.zeros_like(values)).sum()
    return total / mask.sum().clamp(min=1)


# --------------------------------------------------------------------------- balanced BCE
def bce_terms(logits: Tensor, target: Tensor) -> tuple[Tensor, Tensor]:
    """Per-pixel ``y·log σ(x)`` and ``(1-y)·log(1-σ(x))`` computed with logsigmoid.

    ``log(1-σ(x)) = logsigmoid(-x)``, which stays finite for large logits where the naive
    formula would take the log of 0. The caller masks out ignored pixels.
    """
    return target * F.logsigmoid(logits), (1 - target) * F.logsigmoid(-logits)


def balance_weight(pos_weight: float | None, positives: Tensor, count: Tensor) -> Tensor:
    """Positive-class weight: the task's fixed ``pos_weight``, or else the fraction of
    negative pixels (so rare positives are up-weighted as much as they are rare)."""
    if pos_weight is not None:
        return torch.as_tensor(pos_weight, dtype=positives.dtype, device=positives.device)
    count = count.to(positives.dtype)
    return (count - positives) / count.clamp(min=1)


def balanced_bce(spec: TaskSpec, pred: Tensor, target: Tensor) -> Tensor:
    """``-(w·y·log σ(x) + (1-w)·(1-y)·log(1-σ(x)))`` averaged over valid pixels."""
    valid = label_valid(target)
    y = torch.where(valid, target, torch.zeros_like(target)).to(pred.dtype)
    pos, neg = bce_terms(pred, y)
    w = balance_weight(spec.pos_weight, y[valid].sum(), valid.sum())
    return -_masked_mean(w * pos + (1 - w) * neg, valid)


# --------------------------------------------------------------------------- other losses
def cross_entropy(spec: TaskSpec, pred: Tensor, target: Tensor) -> Tensor:
    """Pixel-wise cross-entropy over the classes, ignoring ``IGNORE`` labels."""
    valid = label_valid(target)
    per_pixel = F.cross_entropy(pred, target.long(), ignore_index=IGNORE, reduction="none")
    return _masked_mean(per_pixel, valid)


def positive_l1(spec: TaskSpec, pred: Tensor, target: Tensor) -> Tensor:
    """L1 distance (in the label's unit) on pixels with a positive reading."""
    valid = positive_valid(target)
    safe = torch.where(valid, target, pred.detach()).to(pred.dtype)
    return _masked_mean((pred - safe).abs(), valid)


def unit_l1(spec: TaskSpec, pred: Tensor, target: Tensor) -> Tensor:
    """L1 between unit prediction and unit target, mean over valid pixels and channels.

    The prediction is normalised again: idempotent (same value and gradient) for decoders that
    already normalise, and correct for any that forget.
    """
    valid = vector_valid(target)
    unit = F.normalize(pred, dim=1)
    safe = torch.where(valid, target, unit.detach()).to(pred.dtype)
    return _masked_mean((unit - safe).abs(), valid.expand_as(unit))


def check_shapes(spec: TaskSpec, pred: Tensor, target: Tensor) -> None:
    """Reject mismatched shapes, which would otherwise broadcast silently into a meaningless
    loss or metric (an N x H x W target against an N x 1 x H x W prediction gives N x N x H x W).

    Label-map tasks (``spec.classes`` set) expect an N x H x W target; the others a target of
    the prediction's shape. The prediction must have ``spec.channels`` channels.
    """
    n, c, h, w = pred.shape if pred.dim() == 4 else (None, None, None, None)
    expected = (n, h, w) if spec.classes is not None else (n, c, h, w)
    if pred.dim() != 4 or c != spec.channels or tuple(target.shape) != expected:
        raise ConfigError(
            f"task {spec.name!r}: prediction shape {tuple(pred.shape)} and target shape "
            f"{tuple(target.shape)} do not fit (prediction N x {spec.channels} x H x W, target "
            f"{'N x H x W' if spec.classes is not None else 'of the same shape'})"
        )


def task_loss(spec: TaskSpec, pred: Tensor, target: Tensor) -> Tensor:
    """Unweighted scalar loss of one task (see the module docstring for the conventions)."""
    check_shapes(spec, pred, target)
    return spec.kind.loss(spec, pred, target)


def task_losses(
    specs: Mapping[str, TaskSpec],
    preds: Mapping[str, Tensor],
    targets: Mapping[str, Tensor],
) -> dict[str, Tensor]:
    """The unweighted scalar loss of every task in ``preds``, in ``preds``' order."""
    if not preds:
        raise ConfigError("multitask_loss got no predictions: the model produced no task")
    out: dict[str, Tensor] = {}
    for task, pred in preds.items():
        for source, table in (("specs", specs), ("targets", targets)):
            if task not in table:
                raise ConfigError(f"multitask_loss: task {task!r} has a prediction but no {source}")
        out[task] = task_loss(specs[task], pred, targets[task])
    return out


def weighted_sum(specs: Mapping[str, TaskSpec], losses: Mapping[str, Tensor]) -> Tensor:
    """``Σ_t q_t · loss_t`` (``TaskSpec.loss_weight``) in the order of ``losses``: the study's
    loss, which the default task weighting must reproduce bit for bit."""
    total: Tensor | None = None
    for task, loss in losses.items():
        weighted = specs[task].loss_weight * loss
        total = weighted if total is None else total + weighted
    if total is None:
        raise ConfigError("multitask_loss got no predictions: the model produced no task")
    return total


def multitask_loss(
    specs: Mapping[str, TaskSpec],
    preds: Mapping[str, Tensor],
    targets: Mapping[str, Tensor],
) -> tuple[Tensor, dict[str, float]]:
    """``Σ_t q_t · loss_t`` (``TaskSpec.loss_weight``) over the tasks in ``preds``, and each
    unweighted ``loss_t`` as a float for logging (the weighted sum hides which task misbehaves)."""
    losses = task_losses(specs, preds, targets)
    return weighted_sum(specs, losses), {t: float(v.detach()) for t, v in losses.items()}
