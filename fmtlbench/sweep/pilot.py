"""Cost estimate of a sweep from a measured pilot.

For every distinct model structure (architecture, backbone, dataset, tasks, resolutions, batch
size) the pilot times one local training step (forward, backward and an AdamW step on a batch
of the configured size at the training resolution) and one evaluation batch (no gradient, at
the evaluation resolution), on the run's device. A cell's cost is then the count of those steps
the cell will take — rounds x clients x local epochs x batches, and evaluations x test batches
— times the measured times. Data loading, aggregation and logging are not in it, so it is a
lower bound of the compute, which is what dominates at the study's sizes.
"""

from __future__ import annotations

import json
import math
import time
from dataclasses import dataclass, field
from typing import Any

#: How ``--dry-run`` says its cost column was obtained (one owner of the sentence).
METHOD = (
    "estimated from a measured pilot: one training step and one evaluation batch of each "
    "distinct model structure at the configured resolution and batch size, scaled by each "
    "cell's rounds x clients x local epochs x batches and its evaluations; data loading, "
    "aggregation and logging excluded"
)


@dataclass
class Pilot:
    """Measured seconds per training step and per evaluation batch, per model structure."""

    measured: dict[str, tuple[float, float]] = field(default_factory=dict)

    def cost(self, fed: Any) -> float:
        """Estimated seconds of compute of the run ``fed`` describes (measuring new
        structures on the way)."""
        from fmtlbench.config import TrainingConfig

        cfg = fed.config.training
        evaluations = sum(
            1 for r in range(1, cfg.rounds + 1) if r % cfg.eval_every == 0 or r == cfg.rounds
        ) + (1 if getattr(cfg, "eval_initial", False) else 0)
        total = 0.0
        for client in fed.clients:
            name = client.dataset.name
            step, evaluation = self.measure(
                fed,
                client.structure,
                tuple(TrainingConfig.per_dataset(cfg.resolution, name)),
                tuple(TrainingConfig.per_dataset(cfg.eval_resolution, name)),
            )
            eval_batches = len(client.test) + len(fed.global_tests[name])
            total += cfg.rounds * client.epochs * len(client.train) * step
            total += evaluations * eval_batches * evaluation
        return total

    def measure(self, fed: Any, structure, resolution, eval_resolution) -> tuple[float, float]:
        config = fed.config
        backbone = dict(config.backbone.params)
        backbone.pop("weights", None)  # same structure whatever it starts from
        key = json.dumps(
            [
                config.arch.name,
                config.arch.params,
                config.backbone.name,
                backbone,
                list(structure),
                resolution,
                eval_resolution,
                config.training.batch_size,
                str(fed.device),
            ],
            sort_keys=True,
            default=str,
        )
        if key not in self.measured:
            self.measured[key] = time_steps(
                fed.models[structure],
                resolution,
                eval_resolution,
                config.training.batch_size,
                fed.device,
            )
        return self.measured[key]


def time_steps(model, resolution, eval_resolution, batch: int, device) -> tuple[float, float]:
    """Seconds of one training step and one evaluation batch of ``model`` (state restored)."""
    import torch

    saved = {k: v.detach().clone() for k, v in model.state_dict().items()}
    optimiser = torch.optim.AdamW([p for p in model.parameters() if p.requires_grad], lr=1e-4)
    image = torch.randn(batch, 3, *resolution, device=device)
    model.train()
    start = time.perf_counter()
    outputs = model(image)
    loss = sum(out.float().mean() for out in outputs.values())
    loss.backward()
    optimiser.step()
    optimiser.zero_grad(set_to_none=True)
    _sync(device)
    step = time.perf_counter() - start
    model.eval()
    image = torch.randn(batch, 3, *eval_resolution, device=device)
    start = time.perf_counter()
    with torch.no_grad():
        model(image)
    _sync(device)
    evaluation = time.perf_counter() - start
    model.load_state_dict(saved)
    return step, evaluation


def _sync(device) -> None:
    import torch

    if getattr(device, "type", "cpu") == "cuda":
        torch.cuda.synchronize(device)


def duration(seconds: float | None) -> str:
    """``93784`` -> ``1d 2h``: a cost a reader takes in at a glance."""
    if seconds is None or math.isnan(seconds):
        return ""
    s = int(round(seconds))
    for unit, size, sub, subsize in (("d", 86400, "h", 3600), ("h", 3600, "m", 60)):
        if s >= size:
            return f"{s // size}{unit} {s % size // subsize}{sub}"
    return f"{s // 60}m {s % 60}s" if s >= 60 else f"{seconds:.1f}s"
