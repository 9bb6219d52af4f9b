"""Model sizes: the study's four rows, FLOPs counted by hand, meta-device sizing, the command.

The SPEC section 4 numbers are typed in here from the study's table; FLOPs of a toy model are
written out from its layer shapes; meta-device counts are compared with a real CPU build.
"""

from __future__ import annotations

from collections.abc import Sequence

import pytest
import torch
from click.testing import CliRunner
from torch import Tensor, nn

from fmtlbench.cli import main
from fmtlbench.commands.models import parse_resolution
from fmtlbench.components import Backbone, Decoder
from fmtlbench.errors import ConfigError
from fmtlbench.model_table import (
    model_row,
    model_rows,
    parameter_breakdown,
    select_tasks,
    study_resolution,
)
from fmtlbench.registry import load_registry
from fmtlbench.tasks import TaskSpec

# SPEC section 4: (encoder, decoder, TC module, total) in millions, 4 NYUD tasks.
STUDY = {
    ("resnet18", "md"): (11.18, 26.21, 0.0, 37.39),
    ("resnet18", "tc"): (11.18, 7.09, 0.12, 18.39),
    ("swin-t", "md"): (27.52, 52.28, 0.0, 79.80),
    ("swin-t", "tc"): (27.52, 13.76, 0.12, 41.40),
}


def test_the_four_rows_of_the_study_within_two_percent() -> None:
    rows = model_rows(load_registry())  # defaults: both backbones x both archs, 4 NYUD tasks
    assert [(r.backbone, r.arch) for r in rows] == list(STUDY)
    for row in rows:
        encoder, decoder, module, total = STUDY[(row.backbone, row.arch)]
        assert row.tasks == ("semseg", "depth", "normals", "edge")
        assert row.resolution == (448, 576)
        assert abs(row.encoder / (encoder * 1e6) - 1) < 0.02, row
        assert abs(row.decoder / (decoder * 1e6) - 1) < 0.02, row
        assert abs(row.total / (total * 1e6) - 1) < 0.02, row
        # The module is 8 x Linear(120, 120) = 116,160 parameters, which the study prints as
        # 0.12 M: with two printed decimals, "within 2%" can only mean "prints the same".
        assert round(row.module / 1e6, 2) == module, row
        assert row.module == (8 * (120 * 120 + 120) if module else 0)
        assert row.flops > 0


def test_study_resolution_is_the_paper_crop() -> None:
    assert study_resolution("nyudv2") == (448, 576)


# --------------------------------------------------------------------------- by hand
class ToyEncoder(nn.Module):
    """One 3x3 stride-2 conv without bias, 3 -> 4 channels."""

    def __init__(self) -> None:
        super().__init__()
        self.conv = nn.Conv2d(3, 4, 3, stride=2, padding=1, bias=False)
        self.channels, self.reductions = [4], [2]

    def forward(self, image: Tensor) -> list[Tensor]:
        return [self.conv(image)]


class ToyDecoderModule(nn.Module):
    """A shared 1x1 conv 4 -> 4, a 'module' Linear(3, 4) and a 1x1 head per task."""

    def __init__(self, tasks: dict[str, TaskSpec]) -> None:
        super().__init__()
        self.shared = nn.Conv2d(4, 4, 1)
        self.embedding = nn.Linear(3, 4)
        self.heads = nn.ModuleDict({t: nn.Conv2d(4, s.channels, 1) for t, s in tasks.items()})

    def forward(self, features: list[Tensor], tasks: Sequence[str]) -> dict[str, Tensor]:
        bias = self.embedding(torch.ones(3, device=features[0].device)).view(1, 4, 1, 1)
        return {t: self.heads[t](self.shared(features[0]) + bias) for t in tasks}

    def group_of(self, key: str) -> str:
        return "task" if key.startswith(("heads.", "embedding.")) else "decoder"

    def task_of(self, key: str) -> str | None:
        return key.split(".")[1] if key.startswith("heads.") else None

    def is_conditioning(self, key: str) -> bool:
        return key.startswith("embedding.")


class ToyBackbone(Backbone):
    """Toy encoder."""

    name = "toy"

    def build(self, resolution: tuple[int, int]) -> nn.Module:
        return ToyEncoder()


class ToyDecoder(Decoder):
    """Toy decoder."""

    name = "toydec"

    def build(self, channels, reductions, tasks) -> nn.Module:
        return ToyDecoderModule(tasks)


TOY_TASKS = {"depth": TaskSpec("depth", 1), "semseg": TaskSpec("semseg", 5, classes=5)}


@pytest.mark.parametrize("device", ["cpu", "meta"])
def test_toy_parameters_and_flops_by_hand(device: str) -> None:
    row = model_row(ToyBackbone(), ToyDecoder(), TOY_TASKS, (8, 12), device=device)
    assert row.encoder == 3 * 4 * 9
    assert row.module == 3 * 4 + 4
    assert row.decoder == (4 * 4 + 4) + (4 * 1 + 1) + (4 * 5 + 5)
    assert row.total == row.encoder + row.decoder + row.module
    pixels = 4 * 6  # the stride-2 map of an 8 x 12 image
    encoder = 2 * 3 * 4 * 9 * pixels  # 2 FLOPs per multiply-add, bias adds not counted
    shared = 2 * 4 * 4 * pixels  # the shared 1x1 conv, run once per task
    embedding = 2 * 3 * 4  # the Linear(3, 4), run once per forward
    heads = 2 * 4 * (1 + 5) * pixels
    assert row.flops == encoder + 2 * shared + embedding + heads


def test_parameter_breakdown_without_a_conditioning_module() -> None:
    from fmtlbench.model import build_model

    class Plain(ToyDecoderModule):
        is_conditioning = None  # a decoder without a TC module

    class PlainDecoder(ToyDecoder):
        """Toy decoder without module."""

        name = "plain"

        def build(self, channels, reductions, tasks) -> nn.Module:
            return Plain(tasks)

    parts = parameter_breakdown(build_model(ToyBackbone(), PlainDecoder(), TOY_TASKS, (8, 8)))
    assert parts == {"encoder": 108, "decoder": 20 + 16 + 5 + 25, "module": 0}


@pytest.mark.parametrize(("backbone", "arch"), [("resnet18", "tc"), ("swin-t", "md")])
def test_meta_sizing_matches_a_real_cpu_build(backbone: str, arch: str) -> None:
    registry = load_registry()
    tasks = select_tasks(registry, "nyudv2", ["depth", "normals"])
    parts = [registry.get("backbone", backbone)(), registry.get("decoder", arch)(), tasks]
    meta = model_row(*parts, (32, 40), device="meta")
    cpu = model_row(*parts, (32, 40), device="cpu")
    assert meta == cpu


def test_task_and_resolution_errors_name_the_option() -> None:
    registry = load_registry()
    with pytest.raises(ConfigError, match="--tasks.*'parts'.*semseg, depth, normals, edge"):
        select_tasks(registry, "nyudv2", ["depth", "parts"])
    assert list(select_tasks(registry, "nyudv2", None)) == ["semseg", "depth", "normals", "edge"]
    assert parse_resolution("448x576") == (448, 576) and parse_resolution(" 64X80 ") == (64, 80)
    for bad in ("448", "8x8", "axb", "64x80x3"):
        with pytest.raises(ConfigError, match="--resolution"):
            parse_resolution(bad)


def test_command_prints_the_requested_rows() -> None:
    args = ["models", "table", "--backbone", "resnet18", "--arch", "md", "--arch", "tc"]
    result = CliRunner().invoke(main, [*args, "--tasks", "depth,edge", "--resolution", "64x80"])
    assert result.exit_code == 0, result.output
    registry = load_registry()
    rows = model_rows(registry, ["resnet18"], ["md", "tc"], "nyudv2", ["depth", "edge"], (64, 80))
    lines = [line for line in result.output.splitlines() if "resnet18" in line]
    assert len(lines) == 2
    for line, row in zip(lines, rows, strict=True):
        cells = [c.strip() for c in line.strip("│┃| ").split("│")]
        assert cells[:2] == ["resnet18", row.arch]
        assert cells[2:] == [
            f"{row.encoder / 1e6:.2f}",
            f"{row.decoder / 1e6:.2f}",
            f"{row.module / 1e6:.2f}" if row.module else "-",
            f"{row.total / 1e6:.2f}",
            f"{row.flops / 1e9:.2f}",
        ]
    assert "depth, edge at 64x80" in result.output
    bad = CliRunner().invoke(main, ["models", "table", "--resolution", "64"])
    assert bad.exit_code == 2 and "--resolution" in bad.output
