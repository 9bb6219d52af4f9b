"""The set-up check behind ``--profile gpu-smoke``: one round per precision, timed.

A user with a GPU wants to know within a minute whether their set-up trains at the speed and
memory they expect at the paper's resolution, before committing hours to a sweep. Each
precision builds its own federation (same seed, same data) and runs one round through the
engine, untracked; the report is training images per second and peak memory: the device's
(``torch.cuda.max_memory_allocated``) on CUDA, the process's peak resident set on the CPU
(a high-water mark, so it never falls from one precision to the next).
"""

from __future__ import annotations

import resource
import sys
from collections.abc import Callable
from dataclasses import dataclass

import torch

from fmtlbench import metric_keys as keys
from fmtlbench.config import RunConfig
from fmtlbench.engine import Engine
from fmtlbench.federation import build_federation
from fmtlbench.registry import Registry


@dataclass(frozen=True)
class SmokeResult:
    precision: str
    images: int
    seconds: float
    peak_mb: float
    memory: str  # what peak_mb measures
    loss: float

    @property
    def images_per_second(self) -> float:
        return self.images / self.seconds if self.seconds > 0 else float("nan")

    def line(self) -> str:
        return (
            f"{self.precision:>5}: {self.images_per_second:8.1f} images/s "
            f"({self.images} images in {self.seconds:.1f} s), peak {self.memory} "
            f"{self.peak_mb:,.0f} MB, train loss {self.loss:.4g}"
        )


def _peak_rss_mb() -> float:
    peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    return peak / 2**20 if sys.platform == "darwin" else peak / 2**10  # bytes vs KiB


def smoke(
    config: RunConfig, registry: Registry, echo: Callable[[str], None] = print
) -> list[SmokeResult]:
    """One round of ``config`` per precision in ``config.smoke``; prints a line for each."""
    assert config.smoke is not None
    results = []
    for precision in config.smoke.precisions:
        training = config.training.model_copy(update={"precision": precision, "rounds": 1})
        fed = build_federation(config.model_copy(update={"training": training}), registry)
        cuda = fed.device.type == "cuda"
        if cuda:
            torch.cuda.reset_peak_memory_stats(fed.device)
        metrics = Engine(fed).run_round(1)
        images = sum(len(c.train.dataset) * c.epochs for c in fed.clients)
        peak = torch.cuda.max_memory_allocated(fed.device) / 2**20 if cuda else _peak_rss_mb()
        result = SmokeResult(
            precision,
            images,
            metrics[keys.time("train")],
            peak,
            f"{fed.device} memory" if cuda else "process RSS",
            metrics[keys.TRAIN_LOSS],
        )
        echo(result.line())
        results.append(result)
    return results
