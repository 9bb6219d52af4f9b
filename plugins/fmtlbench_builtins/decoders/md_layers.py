"""The modules of the multi-decoder (MD) architecture, described in ``md``; kept apart so that
listing and validating the ``md`` decoder does not import torch."""

from __future__ import annotations

from collections.abc import Sequence

import torch
import torch.nn.functional as F
from torch import Tensor, nn


class ConvNormAct(nn.Sequential):
    """3x3 conv (no bias: BN follows), batch norm, ReLU."""

    def __init__(self, cin: int, cout: int) -> None:
        super().__init__()
        self.conv = nn.Conv2d(cin, cout, kernel_size=3, padding=1, bias=False)
        self.norm = nn.BatchNorm2d(cout)
        self.act = nn.ReLU(inplace=True)


class TaskDecoder(nn.Module):
    """One task's U-Net-like decoder over a feature pyramid (finest scale first)."""

    def __init__(
        self,
        channels: Sequence[int],
        widths: Sequence[int],
        convs: Sequence[int],
        finest: int,
        out: int,
    ) -> None:
        super().__init__()
        self.finest = finest
        self.skips = nn.ModuleList(
            nn.Conv2d(c, w, kernel_size=1) for c, w in zip(channels, widths, strict=True)
        )
        # stages[i] fuses the decoded scale i+1 with skip i and outputs widths[i] channels.
        self.stages = nn.ModuleList(
            nn.Sequential(
                ConvNormAct(widths[i + 1] + widths[i], widths[i]),
                *(ConvNormAct(widths[i], widths[i]) for _ in range(convs[i] - 1)),
            )
            for i in range(len(widths) - 1)
        )
        self.head = nn.Conv2d(widths[0], out, kernel_size=1)

    def forward(self, features: Sequence[Tensor]) -> Tensor:
        x = self.skips[-1](features[-1])
        for i in reversed(range(len(self.stages))):
            skip = self.skips[i](features[i])
            # Resize to the skip's exact size: input sizes need not be divisible by the strides.
            x = F.interpolate(x, size=skip.shape[-2:], mode="bilinear", align_corners=False)
            x = self.stages[i](torch.cat([x, skip], dim=1))
        if self.finest > 1:
            x = F.interpolate(x, scale_factor=self.finest, mode="bilinear", align_corners=False)
        return self.head(x)


class TaskDecoders(nn.ModuleDict):
    """One ``TaskDecoder`` per task, keyed by task name (state-dict keys ``<task>.<...>``)."""

    def __init__(self, decoders: dict[str, TaskDecoder], scales: int) -> None:
        super().__init__(decoders)
        self.scales = scales

    def forward(self, features: Sequence[Tensor], tasks: Sequence[str]) -> dict[str, Tensor]:
        if len(features) != self.scales:
            raise ValueError(f"md decoder expects {self.scales} feature maps, got {len(features)}")
        unknown = [t for t in tasks if t not in self]
        if unknown:
            raise KeyError(f"md decoder has no decoder for tasks {unknown} (has {list(self)})")
        return {task: self[task](features) for task in tasks}

    def group_of(self, key: str) -> str:
        """``task`` for the 1x1 heads, ``decoder`` for everything else of a task's decoder."""
        task, _, rest = key.partition(".")
        if task not in self or not rest:
            raise KeyError(f"{key!r} is not an entry of the md decoder (tasks {list(self)})")
        return "task" if rest.startswith("head.") else "decoder"

    def task_of(self, key: str) -> str:
        """Every entry belongs to one task: its first key segment."""
        task, _, rest = key.partition(".")
        if task not in self or not rest:
            raise KeyError(f"{key!r} is not an entry of the md decoder (tasks {list(self)})")
        return task
