"""The modules of the task-conditioned (TC) architecture, described in ``tc``; kept apart so that
listing and validating the ``tc`` decoder does not import torch."""

from __future__ import annotations

import hashlib
from collections.abc import Mapping, Sequence
from typing import TYPE_CHECKING

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from fmtlbench.tasks import TaskSpec

if TYPE_CHECKING:  # pragma: no cover - typing only
    from .tc import TaskConditionedParams

#: Floor of the variance in instance norm, as in ``torch.nn.InstanceNorm2d``.
EPS = 1e-5


def task_code(task: str, dim: int) -> Tensor:
    """A fixed random code of length ``dim`` for ``task`` (about unit variance per entry).

    Seeded by a hash of the name, not by the task's position: clients with different task sets
    agree on every task's code, and runs on any machine get the same codes.
    """
    seed = int.from_bytes(hashlib.sha256(task.encode()).digest()[:8], "little") >> 1
    generator = torch.Generator(device="cpu").manual_seed(seed)
    return torch.randn(dim, generator=generator, device="cpu")


class TaskEmbedding(nn.Module):
    """Fixed task codes (a non-persistent buffer: never trained, never exchanged) and the MLP."""

    def __init__(self, tasks: Sequence[str], dim: int, layers: int) -> None:
        super().__init__()
        self.index = {task: i for i, task in enumerate(tasks)}
        codes = torch.stack([task_code(task, dim) for task in tasks])
        # Built on the default device so the module can be constructed on "meta" for counting.
        self.register_buffer("codes", codes.to(torch.get_default_device()), persistent=False)
        modules: list[nn.Module] = []
        for i in range(layers):
            linear = nn.Linear(dim, dim)
            if i < layers - 1:
                # He initialisation keeps the scale through the ReLUs of a deep, thin MLP;
                # PyTorch's default would shrink the embedding towards zero by the last layer.
                nn.init.kaiming_normal_(linear.weight, nonlinearity="relu")
                nn.init.zeros_(linear.bias)
                modules += [linear, nn.ReLU()]
            else:
                modules.append(linear)
        self.mlp = nn.Sequential(*modules)

    def forward(self, task: str) -> Tensor:
        return self.mlp(self.codes[self.index[task]])


class ModulatedConv(nn.Module):
    """3x3 conv, instance norm, task-dependent scale and shift, ReLU.

    The scale is ``1 + s`` so a zero embedding leaves plain instance norm. Statistics are
    computed here rather than with ``F.instance_norm``, which refuses 1 x 1 maps in training
    (small inputs reach such sizes at the coarsest stage).
    """

    def __init__(self, cin: int, cout: int, embed: int) -> None:
        super().__init__()
        self.conv = nn.Conv2d(cin, cout, kernel_size=3, padding=1, bias=False)
        self.affine = nn.Linear(embed, 2 * cout)

    def forward(self, x: Tensor, embedding: Tensor) -> Tensor:
        x = self.conv(x)
        var, mean = torch.var_mean(x, dim=(2, 3), keepdim=True, correction=0)
        x = (x - mean) * torch.rsqrt(var + EPS)
        scale, shift = self.affine(embedding).view(2, -1, 1, 1).unbind(0)
        return F.relu(x * (1 + scale) + shift)


class SharedDecoder(nn.Module):
    """The shared U-Net decoder, the task embedding and one 1x1 head per task."""

    def __init__(
        self,
        channels: Sequence[int],
        widths: Sequence[int],
        convs: Sequence[int],
        tasks: Mapping[str, TaskSpec],
        params: TaskConditionedParams,
    ) -> None:
        super().__init__()
        dim = params.code_dim
        self.skips = nn.ModuleList(
            nn.Conv2d(c, w, kernel_size=1) for c, w in zip(channels, widths, strict=True)
        )
        # stages[i] fuses the decoded scale i+1 with skip i and outputs widths[i] channels.
        self.stages = nn.ModuleList(
            nn.ModuleList(
                ModulatedConv(widths[i + 1] + widths[i] if j == 0 else widths[i], widths[i], dim)
                for j in range(convs[i])
            )
            for i in range(len(widths) - 1)
        )
        self.embedding = TaskEmbedding(list(tasks), dim, params.mlp_layers)
        self.heads = nn.ModuleDict(
            {
                name: nn.Conv2d(widths[0], spec.channels, kernel_size=1)
                for name, spec in tasks.items()
            }
        )
        self._keys = frozenset(self.state_dict())

    def forward(self, features: Sequence[Tensor], tasks: Sequence[str]) -> dict[str, Tensor]:
        """One pass of the decoder per task; outputs at the finest encoder stride (the model
        resizes them to the image: a 1x1 head commutes with bilinear resizing, so resizing
        the few output channels is the same as resizing the features, and cheaper)."""
        if len(features) != len(self.skips):
            raise ValueError(
                f"tc decoder expects {len(self.skips)} feature maps, got {len(features)}"
            )
        unknown = [t for t in tasks if t not in self.heads]
        if unknown:
            raise KeyError(f"tc decoder has no head for tasks {unknown} (has {list(self.heads)})")
        skips = [skip(f) for skip, f in zip(self.skips, features, strict=True)]
        return {task: self.heads[task](self._decode(skips, self.embedding(task))) for task in tasks}

    def _decode(self, skips: Sequence[Tensor], embedding: Tensor) -> Tensor:
        x = skips[-1]
        for i in reversed(range(len(self.stages))):
            # Resize to the skip's exact size: input sizes need not be divisible by the strides.
            x = F.interpolate(x, size=skips[i].shape[-2:], mode="bilinear", align_corners=False)
            x = torch.cat([x, skips[i]], dim=1)
            for layer in self.stages[i]:
                x = layer(x, embedding)
        return x

    def group_of(self, key: str) -> str:
        """``task`` for the heads and the task embedding's MLP, ``decoder`` for the rest."""
        self._check(key)
        return "task" if key.startswith(("heads.", "embedding.")) else "decoder"

    def task_of(self, key: str) -> str | None:
        """The head's task for head entries; ``None`` for everything shared by all tasks."""
        self._check(key)
        return key.split(".")[1] if key.startswith("heads.") else None

    def is_conditioning(self, key: str) -> bool:
        """Whether ``key`` belongs to the TC module (the MLP), counted apart in model tables."""
        self._check(key)
        return key.startswith("embedding.")

    def _check(self, key: str) -> None:
        if key not in self._keys:
            raise KeyError(f"{key!r} is not an entry of the tc decoder")
