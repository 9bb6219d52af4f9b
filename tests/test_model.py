"""The core multi-task model on tiny hand-written components (no built-in plugin involved).

Resizing and normalisation are checked against an independent numpy implementation, group tags
against a walk of the modules, parameter counts against layer shapes computed by hand.
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Sequence

import numpy as np
import pytest
import torch
from torch import Tensor, nn

from fmtlbench.components import GROUPS, Backbone, Decoder
from fmtlbench.errors import RegistryError
from fmtlbench.model import MultiTaskModel, build_model, count_parameters
from fmtlbench.tasks import TaskSpec

TASKS = {"depth": TaskSpec("depth", 1), "normals": TaskSpec("normals", 3)}


class TinyEncoder(nn.Module):
    """Two strided conv-BN stages: features at strides 2 and 4 with 4 and 6 channels."""

    def __init__(self) -> None:
        super().__init__()
        self.stem = nn.Sequential(nn.Conv2d(3, 4, 3, 2, 1, bias=False), nn.BatchNorm2d(4))
        self.down = nn.Sequential(nn.Conv2d(4, 6, 3, 2, 1, bias=False), nn.BatchNorm2d(6))
        self.channels, self.reductions = [4, 6], [2, 4]

    def forward(self, image: Tensor) -> list[Tensor]:
        fine = torch.relu(self.stem(image))
        return [fine, torch.relu(self.down(fine))]


class TinyDecoderModule(nn.ModuleDict):
    """Per task: a 1x1 conv + BN on the finest feature, then a 1x1 head; output at stride 2."""

    def __init__(self, tasks: dict[str, TaskSpec], tag: str = "decoder") -> None:
        super().__init__(
            {
                name: nn.ModuleDict(
                    {
                        "proj": nn.Sequential(nn.Conv2d(4, 5, 1), nn.BatchNorm2d(5)),
                        "head": nn.Conv2d(5, spec.channels, 1),
                    }
                )
                for name, spec in tasks.items()
            }
        )
        self.tag = tag

    def forward(self, features: list[Tensor], tasks: list[str]) -> dict[str, Tensor]:
        return {t: self[t]["head"](self[t]["proj"](features[0])) for t in tasks}

    def group_of(self, key: str) -> str:
        return "task" if ".head." in key else self.tag


class TinyBackbone(Backbone):
    """A two-stage toy encoder."""

    name = "tiny"

    def build(self, resolution: tuple[int, int]) -> nn.Module:
        return TinyEncoder()


class TinyDecoder(Decoder):
    """A one-layer toy decoder."""

    name = "tinydec"

    def build(
        self, channels: Sequence[int], reductions: Sequence[int], tasks: dict[str, TaskSpec]
    ) -> nn.Module:
        return TinyDecoderModule(tasks)


def bilinear_np(a: np.ndarray, height: int, width: int) -> np.ndarray:
    """Half-pixel bilinear resize of a (..., h, w) array, edges clamped, written loop by loop."""
    h, w = a.shape[-2:]
    out = np.zeros(a.shape[:-2] + (height, width))
    for i in range(height):
        y = max((i + 0.5) * h / height - 0.5, 0.0)
        y0 = int(np.floor(y))
        y1, fy = min(y0 + 1, h - 1), y - y0
        for j in range(width):
            x = max((j + 0.5) * w / width - 0.5, 0.0)
            x0 = int(np.floor(x))
            x1, fx = min(x0 + 1, w - 1), x - x0
            top = (1 - fx) * a[..., y0, x0] + fx * a[..., y0, x1]
            bottom = (1 - fx) * a[..., y1, x0] + fx * a[..., y1, x1]
            out[..., i, j] = (1 - fy) * top + fy * bottom
    return out


def tiny_model() -> MultiTaskModel:
    torch.manual_seed(0)
    return build_model(TinyBackbone(), TinyDecoder(), TASKS, (9, 11))


def test_bilinear_reference_matches_hand_values() -> None:
    # Row [0, 1] upsampled to 4 columns: sources -0.25 (clamped), 0.25, 0.75, 1.25 (clamped).
    got = bilinear_np(np.array([[0.0, 1.0], [2.0, 3.0]]), 4, 4)
    assert np.allclose(got[0], [0.0, 0.25, 0.75, 1.0])
    assert np.allclose(got[:, 0], [0.0, 0.5, 1.5, 2.0])


def test_forward_resizes_to_input_and_normalises_normals() -> None:
    model = tiny_model().eval()
    image = torch.randn(2, 3, 9, 11)  # stride-2 output is 5 x 6: must be resized to 9 x 11
    with torch.no_grad():
        raw = model.decoder(model.encoder(image), ["depth", "normals"])
        out = model(image)
    assert set(out) == {"depth", "normals"}
    depth = bilinear_np(raw["depth"].double().numpy(), 9, 11)
    assert out["depth"].shape == (2, 1, 9, 11)
    assert np.allclose(out["depth"].numpy(), depth, atol=1e-5)
    normals = bilinear_np(raw["normals"].double().numpy(), 9, 11)
    normals /= np.sqrt((normals**2).sum(axis=1, keepdims=True))
    assert np.allclose(out["normals"].numpy(), normals, atol=1e-5)
    assert np.allclose(np.linalg.norm(out["normals"].numpy(), axis=1), 1.0, atol=1e-5)


def test_forward_runs_only_requested_tasks() -> None:
    model = tiny_model()
    out = model(torch.randn(1, 3, 8, 8), tasks=["depth"])
    assert list(out) == ["depth"] and out["depth"].shape == (1, 1, 8, 8)
    with pytest.raises(ValueError, match="semseg"):
        model(torch.randn(1, 3, 8, 8), tasks=["semseg"])


def test_groups_tag_every_entry_like_an_independent_walk() -> None:
    model = tiny_model()
    tags = model.groups()
    assert set(tags) == set(model.state_dict())
    assert set(tags.values()) <= set(GROUPS)
    expected: Counter[str] = Counter()
    expected["encoder"] = len(list(model.encoder.named_parameters()))
    expected["encoder.stats"] = len(list(model.encoder.named_buffers()))
    expected["decoder.stats"] = len(list(model.decoder.named_buffers()))
    for name, _ in model.decoder.named_parameters():
        expected["task" if ".head." in name else "decoder"] += 1
    assert Counter(tags.values()) == expected
    assert tags["encoder.stem.1.running_mean"] == "encoder.stats"
    assert tags["encoder.stem.1.weight"] == "encoder"
    assert tags["decoder.depth.proj.1.num_batches_tracked"] == "decoder.stats"
    assert tags["decoder.normals.head.weight"] == "task"
    assert tags["decoder.normals.proj.0.weight"] == "decoder"


@pytest.mark.parametrize("tag", ["bogus", "encoder", "decoder.stats"])
def test_groups_reject_decoder_tags_outside_decoder_and_task(tag: str) -> None:
    model = MultiTaskModel(TinyEncoder(), TinyDecoderModule(TASKS, tag=tag), TASKS)
    with pytest.raises(RegistryError, match="proj"):
        model.groups()


def test_groups_reject_an_untagged_entry() -> None:
    model = tiny_model()
    model.temperature = nn.Parameter(torch.ones(1))
    with pytest.raises(RegistryError, match="temperature"):
        model.groups()


def test_build_model_rejects_backbone_without_pyramid_attributes() -> None:
    class Bare(Backbone):
        """Returns a module without channels/reductions."""

        name = "bare"

        def build(self, resolution: tuple[int, int]) -> nn.Module:
            return nn.Conv2d(3, 4, 1)

    with pytest.raises(RegistryError, match="bare"):
        build_model(Bare(), TinyDecoder(), TASKS, (8, 8))


def test_count_parameters_matches_layer_shapes() -> None:
    # encoder: conv 3->4 (3x3, no bias) 108 + BN(4) 8 + conv 4->6 (3x3, no bias) 216 + BN(6) 12
    encoder = 3 * 4 * 9 + 2 * 4 + 4 * 6 * 9 + 2 * 6
    # per task decoder: 1x1 conv 4->5 with bias 25 + BN(5) 10; heads 5*C + C for C = 1 and 3
    decoder = 2 * (4 * 5 + 5 + 2 * 5)
    task = (5 * 1 + 1) + (5 * 3 + 3)
    assert count_parameters(tiny_model()) == {"encoder": encoder, "decoder": decoder, "task": task}
