"""A client's local training: the phases of its schedule, AdamW, the task losses and the
algorithm's extra loss term.

The optimiser is created afresh for every phase of every round (client state is the model's
state dict only), so a client's memory between rounds is its parameters and nothing else.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence
from typing import Any

import torch

from fmtlbench.components import Phase
from fmtlbench.errors import ConfigError
from fmtlbench.losses import multitask_loss
from fmtlbench.model import MultiTaskModel
from fmtlbench.tasks import TaskSpec


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
) -> dict[str, float]:
    """Train ``model`` in place; returns mean losses per task (and ``total``) over all steps."""
    device = next(model.parameters()).device
    groups = model.groups()
    params = dict(model.named_parameters())
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
        optimiser = torch.optim.AdamW(trainable, lr=lr, weight_decay=weight_decay)
        for _ in range(phase.epochs if phase.epochs is not None else epochs):
            for batch in loader:
                targets = {t: batch[t].to(device) for t in specs}
                preds = model(batch["image"].to(device), list(specs))
                loss, parts = multitask_loss(specs, preds, targets)
                extra = extra_loss(model, context)
                if extra is not None:
                    loss = loss + extra
                    parts["extra"] = float(extra.detach())
                optimiser.zero_grad(set_to_none=True)
                loss.backward()
                optimiser.step()
                parts["total"] = float(loss.detach())
                for key, value in parts.items():
                    sums[key] = sums.get(key, 0.0) + value
                steps += 1
    for p in params.values():
        p.requires_grad_(True)
    model.train()
    return {k: v / max(steps, 1) for k, v in sums.items()}
