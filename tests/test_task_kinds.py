"""Task kinds: every built-in through the plugin authors' kit, the kit's failures on broken
toy kinds, and the study's numbers each built-in kind carries, written out by hand here."""

from __future__ import annotations

import dataclasses
import importlib.metadata
import math
from typing import ClassVar

import pytest
import torch
from click.testing import CliRunner

from fmtlbench.cli import main
from fmtlbench.components import TaskKind
from fmtlbench.losses import positive_l1
from fmtlbench.metrics import DepthMeter
from fmtlbench.registry import build_registry
from fmtlbench.tasks import IGNORE, TaskSpec, display_scale, kind_of, primary_metric
from fmtlbench.testing import ContractError, check_task_kind

INSTALLED = build_registry()


def void(target: torch.Tensor, seed: int = 3) -> torch.Tensor:
    """``target`` with about a fifth of its pixels void (all channels of a pixel together)."""
    generator = torch.Generator().manual_seed(seed)
    n, h, w = target.shape[0], target.shape[-2], target.shape[-1]
    mask = torch.rand(n, 1, h, w, generator=generator) < 0.2
    mask = mask[:, 0] if target.dim() == 3 else mask.expand_as(target)
    return torch.where(mask, torch.full_like(target, IGNORE), target)


def targets(spec: TaskSpec, n: int = 4, h: int = 12, w: int = 16) -> torch.Tensor:
    """A batch of labels of ``spec``'s form (as ``fmtlbench.sample`` returns them)."""
    g = torch.Generator().manual_seed(7)
    if spec.classes is not None:
        return void(torch.randint(0, spec.classes, (n, h, w), generator=g))
    if spec.channels == 3:  # unit vectors
        return void(torch.nn.functional.normalize(torch.randn(n, 3, h, w, generator=g), dim=1))
    if spec.pos_weight is not None or spec.match_distance is not None or spec.name == "saliency":
        return void((torch.rand(n, 1, h, w, generator=g) < 0.3).float())
    return void(torch.rand(n, 1, h, w, generator=g) * 5 + 0.5)  # positive readings


def specs() -> list[TaskSpec]:
    """Every task spec the installed datasets declare (each built-in kind at least once)."""
    out = {}
    for entry in INSTALLED.entries("dataset"):
        for spec in entry.obj.tasks.values():
            out.setdefault(spec.name, spec)
    return list(out.values())


@pytest.mark.parametrize("spec", specs(), ids=lambda s: s.name)
def test_every_built_in_kind_passes_the_kit(spec: TaskSpec, fmtlbench_kit) -> None:
    if spec.classes is not None:
        spec = dataclasses.replace(spec, classes=5, channels=5)  # a tiny confusion matrix
    fmtlbench_kit.task_kind(INSTALLED.get("task", spec.name), spec, targets(spec))


def test_every_built_in_kind_is_declared_by_a_dataset() -> None:
    assert {s.name for s in specs()} == set(INSTALLED.names("task"))


def test_the_study_numbers_carried_by_the_kinds() -> None:
    """SPEC sections 4 and 6, by hand: q_t, primaries and directions, the x100 display."""
    weights = {"semseg": 1, "parts": 2, "saliency": 5, "normals": 10, "edge": 50, "depth": 1}
    assert {t: kind_of(t).loss_weight for t in weights} == weights
    assert {t: primary_metric(t) for t in weights} == {
        "semseg": ("miou", False),
        "parts": ("miou", False),
        "depth": ("rmse", True),
        "normals": ("mean", True),
        "edge": ("loss", True),
        "saliency": ("maxf", False),
    }
    assert display_scale("depth", "rmse") == display_scale("edge", "loss") == 100.0
    assert display_scale("depth", "abs_rel") == display_scale("semseg", "miou") == 1.0
    assert TaskSpec("edge", channels=1, chosen_primary="odsf").primary == ("odsf", False)


def test_normals_flip_negates_x_and_keeps_void() -> None:
    label = torch.tensor([[[[0.6, IGNORE]], [[0.0, IGNORE]], [[0.8, IGNORE]]]])  # 1x3x1x2
    flipped = kind_of("normals").flip(label)
    assert flipped[0, :, 0, 0].tolist() == [IGNORE, IGNORE, IGNORE]
    assert flipped[0, :, 0, 1].tolist() == pytest.approx([-0.6, 0.0, 0.8])
    assert torch.equal(kind_of("depth").flip(label), label.flip(-1))


def test_normals_come_out_as_unit_vectors() -> None:
    out = kind_of("normals").activate(torch.tensor([[[[3.0]], [[0.0]], [[4.0]]]]))
    assert out.flatten().tolist() == pytest.approx([0.6, 0.0, 0.8])


def test_fmtlbench_list_tasks_names_each_kind_and_its_provider() -> None:
    result = CliRunner().invoke(main, ["list", "tasks"], env={"COLUMNS": "200"})
    assert result.exit_code == 0, result.output
    for name in ("semseg", "parts", "depth", "normals", "edge", "saliency"):
        assert f"│ {name}" in result.output
    assert f"tasks (fmtlbench {importlib.metadata.version('fmtlbench')})" in result.output


def test_an_unknown_task_is_one_clear_error() -> None:
    from fmtlbench.config import build_config, parse_assignment
    from fmtlbench.errors import FmtlbenchError

    with pytest.raises(FmtlbenchError, match="'albedo' is of no installed task kind.*semseg"):
        build_config(None, [parse_assignment("training.metrics.primary.albedo=x")])


# --------------------------------------------------------------------------- broken kinds
class Range(TaskKind):
    """A positive scalar map (a toy): L1 on positive readings, RMSE."""

    name = "range"
    metrics: ClassVar[dict[str, bool]] = {"rmse": True}
    primary = "rmse"

    def valid(self, target):
        return (target != IGNORE) & (target > 0)

    def loss(self, spec, pred, target):
        return positive_l1(spec, pred, target)

    def meter(self, spec):
        return RangeMeter(spec)


class RangeMeter(DepthMeter):
    """Depth's meter, with the toy's valid rule (the toy is not installed)."""

    def _accumulate(self, pred, target):
        valid = Range().valid(target)
        err = pred[valid].double() - target[valid].double()
        self.squared += float((err * err).sum())
        self.relative += 0.0
        self.count += int(valid.sum())

    def compute(self):
        return {"rmse": math.sqrt(self.squared / self.count) if self.count else math.nan}


class Backwards(Range):
    """RMSE declared higher-is-better."""

    name = "backwards"
    metrics: ClassVar[dict[str, bool]] = {"rmse": False}


class Leaks(Range):
    """A loss that also trains on void pixels."""

    name = "leaks"

    def loss(self, spec, pred, target):
        return (pred - target.clamp(max=10)).abs().mean()


class Drifts(Range):
    """A flip that shifts the values it mirrors."""

    name = "drifts"

    def flip(self, label):
        return torch.where(label == IGNORE, label, label + 0.5).flip(-1)


class PerBatch(Range):
    """A meter averaging per-batch RMSEs."""

    name = "perbatch"

    def meter(self, spec):
        class Mean(RangeMeter):
            def __init__(self, spec):
                super().__init__(spec)
                self.values = []

            def _accumulate(self, pred, target):
                valid = Range().valid(target)
                err = pred[valid] - target[valid]
                self.values.append(float(err.pow(2).mean().sqrt()))

            def compute(self):
                return {"rmse": sum(self.values) / len(self.values)}

        return Mean(spec)


class Unlisted(Range):
    """A primary the meter does not declare."""

    name = "unlisted"
    primary = "mae"


def range_spec(name: str) -> TaskSpec:
    return TaskSpec(name, channels=1)


def range_targets() -> torch.Tensor:
    return void(torch.rand(4, 1, 10, 12, generator=torch.Generator().manual_seed(1)) * 5 + 0.5)


def test_the_kit_accepts_a_correct_toy_kind() -> None:
    check_task_kind(Range, range_spec("range"), range_targets())


@pytest.mark.parametrize(
    "cls,message",
    [
        (Backwards, "higher is better: is the direction declared the wrong way round"),
        (Leaks, "gradient at pixels its valid rule excludes"),
        (Drifts, "flipping twice must give the labels back"),
        (PerBatch, "does not pool over batches"),
        (Unlisted, "primary 'mae' is not one of metrics"),
    ],
)
def test_the_kit_fails_broken_kinds_with_the_rule(cls: type, message: str) -> None:
    with pytest.raises(ContractError, match=message):
        check_task_kind(cls, range_spec(cls.name), range_targets())
