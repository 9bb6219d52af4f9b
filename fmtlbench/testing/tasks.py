"""The task-kind contract, checked on a batch of labels the kind's author provides.

A kind cannot be exercised without labels of its own form, so ``check_task_kind`` takes a
``TaskSpec`` as a dataset would declare it and a small batch of targets as
``fmtlbench.sample`` would hand them over (label maps N x H x W int64, others N x C x H x W
float, ``IGNORE`` marking void pixels; include some). It then checks, with the kind's own
maths only (its methods are called directly, so a kind under development need not be
installed; built-in meters that ask ``spec.kind`` for the valid rule do need it installed):

- declarations: the primary, the alternatives, the thresholded metrics and the display
  scales name declared metrics; the loss weight is positive;
- the loss is a finite scalar, gives no gradient at pixels its ``valid`` rule excludes, and is
  exactly 0, still differentiable, on a batch without a valid pixel;
- the meter pools: fed the batch in two halves it reports what it reports fed at once, and it
  reports its primary;
- training helps in the declared direction: predictions optimised on the batch by the kind's
  own loss score better on the primary metric than the starting ones, as ``metrics`` says
  better is (a direction declared the wrong way round fails here);
- mirroring twice gives the labels back, void pixels mirrored with them;
- the gallery picture of a label is H x W x 3 in [0, 1].
"""

from __future__ import annotations

import math
from typing import Any

import torch

from fmtlbench.components import TaskKind
from fmtlbench.tasks import IGNORE, TaskSpec
from fmtlbench.testing.checks import ContractError, check_component

#: Optimiser steps of the "training helps" check: enough for a per-pixel fit of a tiny batch.
FIT_STEPS = 150


def _fail(kind: TaskKind, rule: str) -> None:
    raise ContractError(f"task kind {kind.name}: {rule}")


def _declarations(kind: TaskKind) -> None:
    metrics = kind.metrics
    if getattr(kind, "primary", None) not in metrics:
        _fail(kind, f"primary {getattr(kind, 'primary', None)!r} is not one of metrics {metrics}")
    for what, names in (
        ("alternatives", kind.alternatives),
        ("thresholded", kind.thresholded),
        ("display_scale", kind.display_scale),
    ):
        unknown = [n for n in names if n not in metrics]
        if unknown:
            _fail(kind, f"{what} names {unknown}, which are not in metrics {sorted(metrics)}")
    bad = {m: f for m, f in kind.display_scale.items() if not (f > 0 and math.isfinite(f))}
    if bad:
        _fail(kind, f"display_scale factors must be positive and finite, got {bad}")
    if not (kind.loss_weight > 0 and math.isfinite(kind.loss_weight)):
        _fail(kind, f"loss_weight must be positive and finite, got {kind.loss_weight}")


def _logits(spec: TaskSpec, target: torch.Tensor, seed: int = 0) -> torch.Tensor:
    n, h, w = target.shape[0], target.shape[-2], target.shape[-1]
    generator = torch.Generator().manual_seed(seed)
    return torch.randn(n, spec.channels, h, w, generator=generator)


def _loss(kind: TaskKind, spec: TaskSpec, logits: torch.Tensor, target: torch.Tensor) -> Any:
    from fmtlbench.losses import check_shapes

    pred = kind.activate(logits)
    check_shapes(spec, pred, target)
    return kind.loss(spec, pred, target)


def _gradients(kind: TaskKind, spec: TaskSpec, target: torch.Tensor) -> None:
    logits = _logits(spec, target).requires_grad_()
    loss = _loss(kind, spec, logits, target)
    if loss.dim() != 0 or not torch.isfinite(loss):
        _fail(kind, f"loss must be a finite scalar, got {loss!r}")
    loss.backward()
    valid = kind.valid(target)
    pixel_valid = valid.reshape(valid.shape[0], -1, *valid.shape[-2:]).any(dim=1)
    leaked = logits.grad.abs().sum(dim=1)[~pixel_valid]
    if leaked.numel() and float(leaked.max()) != 0.0:
        _fail(kind, "the loss has a gradient at pixels its valid rule excludes (void labels)")
    if float(logits.grad.abs().sum()) == 0.0:
        _fail(kind, "the loss has no gradient at all on a batch with valid pixels")
    void = torch.full_like(target, IGNORE)
    logits = _logits(spec, target).requires_grad_()
    empty = _loss(kind, spec, logits, void)
    if float(empty.detach()) != 0.0:
        _fail(kind, f"a batch without valid pixels must give a loss of exactly 0, got {empty}")
    empty.backward()
    if logits.grad is None or not torch.isfinite(logits.grad).all():
        _fail(kind, "the loss of a batch without valid pixels must stay differentiable (0 grad)")


def _scores(kind: TaskKind, spec: TaskSpec, batches: list[tuple]) -> dict[str, float]:
    meter = kind.meter(spec)
    for pred, target in batches:
        meter.update(pred, target)
    return meter.compute()


def _pooling(kind: TaskKind, spec: TaskSpec, target: torch.Tensor) -> dict[str, float]:
    pred = kind.activate(_logits(spec, target, seed=1))
    whole = _scores(kind, spec, [(pred, target)])
    unknown = sorted(set(whole) - set(kind.metrics))
    if unknown:
        _fail(kind, f"the meter reports {unknown}, which metrics does not declare")
    if kind.primary not in whole:
        _fail(kind, f"the meter does not report the primary {kind.primary!r}")
    half = target.shape[0] // 2
    split = _scores(kind, spec, [(pred[:half], target[:half]), (pred[half:], target[half:])])
    for name, value in whole.items():
        other = split.get(name, math.nan)
        if not (math.isclose(value, other, rel_tol=1e-6, abs_tol=1e-9) or value == other):
            _fail(
                kind,
                f"the meter does not pool over batches: {name} is {value} fed at once and "
                f"{other} fed in two halves (keep sums and counts, not per-batch means)",
            )
    return whole


def _direction(kind: TaskKind, spec: TaskSpec, target: torch.Tensor, before: dict) -> None:
    logits = _logits(spec, target, seed=1).requires_grad_()
    optimiser = torch.optim.Adam([logits], lr=0.1)
    for _ in range(FIT_STEPS):
        optimiser.zero_grad()
        _loss(kind, spec, logits, target).backward()
        optimiser.step()
    with torch.no_grad():
        after = _scores(kind, spec, [(kind.activate(logits), target)])
    metric, lower = kind.primary_metric()
    start, end = before[metric], after[metric]
    improved = end < start if lower else end > start
    if not improved:
        better = "lower" if lower else "higher"
        _fail(
            kind,
            f"fitting the batch with the kind's own loss moved the primary {metric} from "
            f"{start:.6g} to {end:.6g}, but metrics says {better} is better: is the direction "
            "declared the wrong way round, or do loss and meter disagree?",
        )


def _flip(kind: TaskKind, spec: TaskSpec, target: torch.Tensor) -> None:
    label = target.unsqueeze(1) if spec.classes is not None else target
    label = label[:1].float()
    once = kind.flip(label)
    if once.shape != label.shape:
        _fail(kind, f"flip changed the label's shape {tuple(label.shape)} to {tuple(once.shape)}")
    if not torch.equal(once == IGNORE, (label == IGNORE).flip(-1)):
        _fail(kind, "flip must mirror the void pixels with the labels and keep them void")
    if not torch.equal(kind.flip(once), label):
        _fail(kind, "flipping twice must give the labels back (a mirror is an involution)")


def _picture(kind: TaskKind, spec: TaskSpec, target: torch.Tensor) -> None:
    first = target[0]
    if spec.classes is not None:
        raw = first.numpy().astype("uint8")
    else:
        raw = first.movedim(0, -1).numpy() if first.shape[0] > 1 else first[0].numpy()
    picture = kind.picture(raw)
    if picture.shape != (*target.shape[-2:], 3):
        _fail(kind, f"picture must be H x W x 3, got {picture.shape}")
    if not (picture.min() >= 0 and picture.max() <= 1):
        _fail(kind, "picture values must lie in [0, 1]")


def check_task_kind(cls: type[TaskKind], spec: TaskSpec, target: torch.Tensor) -> None:
    """Run the task-kind contract (module docstring) on ``cls`` with a dataset's ``spec`` of
    a task of this kind and a batch of at least two ``target`` labels with some void pixels."""
    check_component(cls, "task")
    kind = cls()
    if spec.name != cls.name:
        raise ContractError(f"task kind {cls.name}: the spec is of task {spec.name!r}")
    if target.shape[0] < 2 or not bool((target == IGNORE).any()):
        raise ContractError(
            f"task kind {cls.name}: give at least two targets with some void pixels"
        )
    _declarations(kind)
    _gradients(kind, spec, target)
    before = _pooling(kind, spec, target)
    _direction(kind, spec, target, before)
    _flip(kind, spec, target)
    _picture(kind, spec, target)
