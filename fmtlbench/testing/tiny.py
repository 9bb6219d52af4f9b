"""Tiny stand-ins for the kit's runs: a conv pyramid backbone (4.5 k parameters, ResNet's
strides) and the sizes of a federation that trains one step per client and round in well under
a second, so the checks exercise the component under test and not a large encoder."""

from __future__ import annotations

from pathlib import Path

import torch
from pydantic import Field
from torch import nn

from fmtlbench.components import Backbone, Params

#: Decoder parameters that keep every decoder tiny (only those a decoder accepts are used).
TINY_DECODER = {"widths": [8, 8, 8, 8, 8], "convs": 1, "code_dim": 8, "mlp_layers": 1}
#: Synthetic twins small enough for one local step per client and round.
TWIN = {"twin_train": 24, "twin_test": 4, "twin_height": 48, "twin_width": 64}
#: Training and evaluation resolution of the kit's runs.
RESOLUTION = [32, 40]


class PyramidParams(Params):
    """Accepts the profile's ``weights`` setting; the pyramid always starts from scratch."""

    weights: str = Field("scratch", description="ignored: the pyramid has no pretrained weights")


class Pyramid(nn.Module):
    """Five stride-2 conv-BN-ReLU stages: a feature pyramid with ResNet's strides."""

    channels = [4, 8, 8, 16, 16]
    reductions = [2, 4, 8, 16, 32]

    def __init__(self) -> None:
        super().__init__()
        sizes = [3, *self.channels]
        self.stages = nn.ModuleList(
            nn.Sequential(
                nn.Conv2d(cin, cout, 3, stride=2, padding=1, bias=False),
                nn.BatchNorm2d(cout),
                nn.ReLU(),
            )
            for cin, cout in zip(sizes, sizes[1:], strict=False)
        )

    def forward(self, image: torch.Tensor) -> list[torch.Tensor]:
        out = []
        for stage in self.stages:
            image = stage(image)
            out.append(image)
        return out


class TinyPyramid(Backbone):
    """A tiny conv pyramid for fast contract checks."""

    name = "test-pyramid"
    Params = PyramidParams

    def build(self, resolution: tuple[int, int]) -> nn.Module:
        return Pyramid()


def overrides(workdir: Path, **extra: object) -> list[dict]:
    """Config fragments of a run small enough for a contract check."""
    fragments: list[dict] = [
        {
            "training": {
                "rounds": 2,
                "resolution": {"default": RESOLUTION},
                "eval_resolution": {"default": RESOLUTION},
            },
            "checkpoint_dir": str(Path(workdir) / "checkpoints"),
        }
    ]
    if extra:
        fragments.append(dict(extra))
    return fragments
