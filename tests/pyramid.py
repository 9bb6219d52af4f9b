"""A tiny conv pyramid backbone for tests whose subject is not the encoder (the algorithm
contract, resume exactness, the kill matrix), where ResNet-18's 11 M parameters would cost
most of the time.

It is also a plugin module with a ``register_backbones`` hook: tests that run the real CLI in a
subprocess install it the way any third-party plugin is found, by a ``.dist-info`` folder with
an ``fmtlbench`` entry point on the subprocess's path (``plugin_path``).
"""

from __future__ import annotations

from pathlib import Path

import torch
from pydantic import Field
from torch import nn

from fmtlbench import hookimpl
from fmtlbench.components import Backbone, Params


class PyramidParams(Params):
    """Accepts the profile's ``weights`` setting; the pyramid always starts from scratch."""

    weights: str = Field("scratch", description="ignored: the pyramid has no pretrained weights")


class Pyramid(nn.Module):
    """Five stride-2 conv-BN-ReLU stages: a feature pyramid with ResNet's strides, in 4.5 k
    parameters."""

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
    """A tiny conv pyramid for fast contract tests."""

    name = "test-pyramid"
    Params = PyramidParams

    def build(self, resolution: tuple[int, int]) -> nn.Module:
        return Pyramid()


@hookimpl
def register_backbones() -> list[type[Backbone]]:
    return [TinyPyramid]


def plugin_path(folder: Path) -> str:
    """A ``PYTHONPATH`` under which this module is an installed ``fmtlbench`` plugin: the
    tests folder (the module) and ``folder`` holding its distribution's metadata."""
    info = Path(folder) / "fmtlbench_test_pyramid-0.0.0.dist-info"
    info.mkdir(parents=True, exist_ok=True)
    (info / "METADATA").write_text(
        "Metadata-Version: 2.1\nName: fmtlbench-test-pyramid\nVersion: 0.0.0\n"
    )
    (info / "entry_points.txt").write_text("[fmtlbench]\ntest-pyramid = pyramid\n")
    return f"{Path(__file__).parent}:{folder}"
