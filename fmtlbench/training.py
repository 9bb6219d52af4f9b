"""A client's local training: the phases of its schedule, AdamW, the task losses and the
algorithm's extra loss term.

The optimiser is created afresh for every phase of every round (client state is the model's
state dict, plus whatever the task weighting carries, see ``fmtlbench.components.Weighting``),
so a client's memory between rounds is its parameters and nothing else.

The task weighting (``training.weighting``) decides what is differentiated: ``None`` (and every
single-task client) is the study's ``Σ_t q_t L_t``; a loss weighting returns another scalar; a
gradient weighting writes the gradients itself from the per-task losses. Learnable weighting
parameters (uncertainty weighting's log-variances) join the AdamW optimiser as a group of
their own without weight decay (a decayed log-variance would be pulled towards σ = 1).

The precision, memory-format and copy settings (``training.precision``, ``channels_last``,
``non_blocking``) are written for CUDA and run on the CPU too: bf16 and fp16 autocast both work
there. A channels-last model is turned back to the default format before it returns, so client
states keep one layout whatever the setting.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator, Mapping, Sequence
from contextlib import contextmanager
from typing import TYPE_CHECKING, Any

import torch

from fmtlbench.components import Phase, Weighting
from fmtlbench.errors import ConfigError
from fmtlbench.losses import task_losses, weighted_sum
from fmtlbench.model import MultiTaskModel
from fmtlbench.tasks import TaskSpec

if TYPE_CHECKING:
    from fmtlbench.config import TrainingConfig

#: ``training.precision`` -> autocast dtype (None: no autocast).
AUTOCAST = {"fp32": None, "bf16": torch.bfloat16, "fp16": torch.float16}


def step_settings(training: TrainingConfig) -> dict[str, Any]:
    """The keyword arguments of ``train_local`` that the run config's training section sets."""
    return {
        "precision": training.precision,
        "channels_last": training.channels_last,
        "non_blocking": training.non_blocking,
    }


@contextmanager
def memory_format(model: torch.nn.Module, channels_last: bool) -> Iterator[None]:
    """The model in channels-last format inside the block, back in the default one after."""
    if not channels_last:
        yield
        return
    model.to(memory_format=torch.channels_last)
    try:
        yield
    finally:
        model.to(memory_format=torch.contiguous_format)


def _frozen_stat_modules(
    model: torch.nn.Module, groups: Mapping[str, str], frozen: frozenset[str]
) -> list[torch.nn.Module]:
    """Modules holding buffers (BatchNorm running statistics) of a frozen group."""
    out = []
    for name, module in model.named_modules():
        own = [f"{name}.{b}" if name else b for b, _ in module.named_buffers(recurse=False)]
        if own and any(groups.get(key) in frozen for key in own):
            out.append(module)
    return out


ExtraLoss = Callable[[torch.nn.Module, Any], "torch.Tensor | None"]


def split_parameters(model: MultiTaskModel) -> dict[str, str | None]:
    """Every parameter name mapped to the one task it serves, or ``None`` when it is shared.

    Shared are the parameters every task's loss depends on: the encoder and whatever decoder
    entry its ``task_of`` gives no task. Under MD that is the encoder alone (each task's
    decoder body and head belong to that task); under TC (one decoder conditioned on the
    task) it is the encoder, the shared decoder and the task-embedding MLP, and only the
    per-task heads are specific. Gradient weightings combine the tasks' gradients of the
    shared parameters; a specific parameter receives its own task's gradient.
    """
    out: dict[str, str | None] = {}
    for name, _ in model.named_parameters():
        part, _, inner = name.partition(".")
        out[name] = model.decoder.task_of(inner) if part == "decoder" else None
    return out


def train_local(
    model: MultiTaskModel,
    loader: torch.utils.data.DataLoader,
    specs: Mapping[str, TaskSpec],
    phases: Sequence[Phase],
    epochs: int,
    lr: float,
    weight_decay: float,
    extra_loss: ExtraLoss,
    context: Any,
    *,
    precision: str = "fp32",
    channels_last: bool = False,
    non_blocking: bool = False,
    weighting: Weighting | None = None,
) -> dict[str, float]:
    """Train ``model`` in place; returns mean losses per task (and ``total``) over all steps.

    ``weighting`` is a ``Weighting`` already ``begin``-ed for this client, or ``None`` for the
    study's weighted sum. ``total`` is what was differentiated (for a gradient weighting, whose
    update is no gradient of one scalar, the study's weighted sum), plus the extra term.
    """
    with memory_format(model, channels_last):
        return _train(
            model, loader, specs, phases, epochs, lr, weight_decay, extra_loss, context,
            precision, channels_last, non_blocking, weighting,
        )  # fmt: skip


def _train(
    model: MultiTaskModel,
    loader: torch.utils.data.DataLoader,
    specs: Mapping[str, TaskSpec],
    phases: Sequence[Phase],
    epochs: int,
    lr: float,
    weight_decay: float,
    extra_loss: ExtraLoss,
    context: Any,
    precision: str,
    channels_last: bool,
    non_blocking: bool,
    weighting: Weighting | None,
) -> dict[str, float]:
    device = next(model.parameters()).device
    dtype = AUTOCAST[precision]
    layout = torch.channels_last if channels_last else torch.preserve_format
    groups = model.groups()
    params = dict(model.named_parameters())
    owners = split_parameters(model) if weighting is not None and weighting.gradient else {}
    sums: dict[str, float] = {}
    steps = 0
    model.train()
    for phase in phases:
        trainable = [p for name, p in params.items() if groups[name] not in phase.frozen]
        for name, p in params.items():
            p.requires_grad_(groups[name] not in phase.frozen)
        model.train()
        for module in _frozen_stat_modules(model, groups, phase.frozen):
            module.eval()  # frozen normalisation statistics must not drift either
        if not trainable:
            raise ConfigError(
                f"a local phase freezes every parameter group: {sorted(phase.frozen)}"
            )
        extras = weighting.parameters() if weighting is not None else []
        groups_ = [{"params": trainable}]
        if extras:
            groups_.append({"params": extras, "weight_decay": 0.0})
        optimiser = torch.optim.AdamW(groups_, lr=lr, weight_decay=weight_decay)
        # fp16 gradients underflow without scaling; a fresh scaler per phase, like the optimiser
        scaler = torch.amp.GradScaler(device.type, enabled=precision == "fp16")
        jacobian = weighting is not None and weighting.gradient
        if jacobian:
            trainable_names = [n for n, p in params.items() if p.requires_grad]
            shared = [params[n] for n in trainable_names if owners[n] is None]
            specific = [params[n] for n in trainable_names if owners[n] is not None]
        for _ in range(phase.epochs if phase.epochs is not None else epochs):
            if weighting is not None:
                weighting.epoch_start()
            epoch_sums: dict[str, float] = {}
            epoch_steps = 0
            for batch in loader:
                targets = {t: batch[t].to(device, non_blocking=non_blocking) for t in specs}
                image = batch["image"].to(device, non_blocking=non_blocking, memory_format=layout)
                with torch.autocast(device.type, dtype=dtype, enabled=dtype is not None):
                    preds = model(image, list(specs))
                    losses = task_losses(specs, preds, targets)
                    if weighting is None or jacobian:
                        loss = weighted_sum(specs, losses)
                    else:
                        loss = weighting.combine(losses)
                parts = {t: float(v.detach()) for t, v in losses.items()}
                extra = extra_loss(model, context)  # in fp32: proximal terms are small
                optimiser.zero_grad(set_to_none=True)
                if jacobian:
                    assert weighting is not None
                    weighting.backward(losses, shared, specific)
                    if extra is not None:
                        scaler.scale(extra).backward()
                if extra is not None:
                    loss = loss + extra
                    parts["extra"] = float(extra.detach())
                if not jacobian:
                    scaler.scale(loss).backward()
                scaler.step(optimiser)
                scaler.update()
                parts["total"] = float(loss.detach())
                for key, value in parts.items():
                    sums[key] = sums.get(key, 0.0) + value
                for task in specs:
                    epoch_sums[task] = epoch_sums.get(task, 0.0) + parts[task]
                epoch_steps += 1
                steps += 1
            if weighting is not None and epoch_steps:
                weighting.epoch_end({t: v / epoch_steps for t, v in epoch_sums.items()})
    for p in params.values():
        p.requires_grad_(True)
    model.train()
    return {k: v / max(steps, 1) for k, v in sums.items()}
