"""The TC decoder, and every backbone x architecture on the clients of both datasets.

Counts are checked against formulas from the layer shapes, the modulated instance norm against
PyTorch's own ``instance_norm``, group tags against an independent walk, and local training
against one hand-made AdamW step on the summed weighted task losses.
"""

from __future__ import annotations

import copy
from collections import Counter

import pytest
import torch
import torch.nn.functional as F
from fmtlbench_builtins.backbones.timm_backbone import ResNet18, SwinT
from fmtlbench_builtins.decoders.md import MultiDecoder
from fmtlbench_builtins.decoders.tc import TaskConditioned, register_decoders
from fmtlbench_builtins.decoders.tc_layers import ModulatedConv, task_code

from fmtlbench.components import Phase
from fmtlbench.losses import task_loss
from fmtlbench.model import MultiTaskModel, build_model, count_parameters
from fmtlbench.tasks import TaskSpec
from fmtlbench.training import train_local

NYUD = {
    "semseg": TaskSpec("semseg", 40, classes=40),
    "depth": TaskSpec("depth", 1),
    "normals": TaskSpec("normals", 3),
    "edge": TaskSpec("edge", 1, pos_weight=0.8),
}
# PASCAL-Context's tasks as SPEC section 2 and 4 give them (written here by hand).
PASCAL = {
    "semseg": TaskSpec("semseg", 21, classes=21),
    "parts": TaskSpec("parts", 7, classes=7),
    "normals": TaskSpec("normals", 3),
    "edge": TaskSpec("edge", 1, pos_weight=0.95),
    "saliency": TaskSpec("saliency", 1),
}
CLIENTS = {
    "nyud-st": {"depth": NYUD["depth"]},
    "nyud-mt": NYUD,
    "pascal-st": {"parts": PASCAL["parts"]},
    "pascal-mt": PASCAL,
}


#: The study's task weights q_t (SPEC section 4), written out here, not read from the code.
STUDY_WEIGHTS = {"semseg": 1.0, "parts": 2.0, "saliency": 5.0, "normals": 10.0, "edge": 50.0,
                 "depth": 1.0}  # fmt: skip


def resnet_tc(tasks: dict[str, TaskSpec], size: tuple[int, int] = (32, 40)) -> MultiTaskModel:
    torch.manual_seed(0)
    return build_model(ResNet18(), TaskConditioned(), tasks, size)


def test_registered_with_a_summary() -> None:
    assert register_decoders() == [TaskConditioned]
    assert TaskConditioned.name == "tc" and TaskConditioned.summary()


def tc_decoder_params(channels: list[int], widths: list[int], convs: list[int]) -> int:
    """The shared decoder without heads and MLP, from the layer shapes: 1x1 skips with bias;
    per 3x3 conv (no bias) a Linear(120, 2 x width) giving its scale and shift."""
    skips = sum(c * w + w for c, w in zip(channels, widths, strict=True))
    stages = 0
    for i, n in enumerate(convs):
        w = widths[i]
        stages += 9 * (widths[i + 1] + w) * w + (n - 1) * 9 * w * w + n * (120 * 2 * w + 2 * w)
    return skips + stages


@pytest.mark.parametrize(
    ("backbone", "channels", "widths", "convs"),
    [
        (ResNet18, [64, 64, 128, 256, 512], [64, 128, 256, 256, 512], [3, 3, 3, 3]),
        (SwinT, [96, 192, 384, 768], [96, 192, 384, 768], [2, 2, 6]),
    ],
)
def test_parameter_counts_match_the_layer_formula(backbone, channels, widths, convs) -> None:
    with torch.device("meta"):
        model = build_model(backbone(), TaskConditioned(), NYUD, (448, 576))
    counts = count_parameters(model)
    heads = sum(widths[0] * s.channels + s.channels for s in NYUD.values())
    mlp = 8 * (120 * 120 + 120)
    assert counts["task"] == heads + mlp
    assert counts["decoder"] == tc_decoder_params(channels, widths, convs)
    assert not [k for k in model.state_dict() if k.startswith("decoder.") and "codes" in k]


def test_groups_task_of_and_module_match_an_independent_walk() -> None:
    model = resnet_tc(NYUD)
    tags = model.groups()
    assert set(tags) == set(model.state_dict())
    decoder_keys = [k.partition(".")[2] for k in tags if k.startswith("decoder.")]
    # No statistics (instance norm keeps none) and no codes (fixed, never exchanged).
    assert all(tags[f"decoder.{k}"] in ("decoder", "task") for k in decoder_keys)
    assert not any("codes" in k for k in decoder_keys)
    expected, owners, module = Counter(), {}, 0
    for name, param in model.decoder.named_parameters():
        first, second = name.split(".")[:2]
        expected["task" if first in ("heads", "embedding") else "decoder"] += 1
        owners[name] = second if first == "heads" else None
        module += param.numel() if first == "embedding" else 0
    assert Counter(tags[f"decoder.{k}"] for k in decoder_keys) == expected
    assert {k: model.decoder.task_of(k) for k in decoder_keys} == owners
    assert (
        sum(
            p.numel()
            for n, p in model.decoder.named_parameters()
            if model.decoder.is_conditioning(n)
        )
        == module
        == 8 * 14_520
    )
    assert model.decoder.task_of("heads.semseg.weight") == "semseg"
    assert tags["decoder.embedding.mlp.0.weight"] == "task"
    assert tags["decoder.stages.0.1.affine.weight"] == "decoder"
    with pytest.raises(KeyError, match="parts"):
        model.decoder.group_of("heads.parts.weight")


def test_task_codes_are_fixed_by_name_whatever_the_client_holds() -> None:
    one = resnet_tc({"depth": NYUD["depth"]}).decoder.embedding
    four = resnet_tc(NYUD).decoder.embedding
    depth = task_code("depth", 120)
    assert torch.equal(one.codes[one.index["depth"]], depth)
    assert torch.equal(four.codes[four.index["depth"]], depth)
    assert torch.equal(task_code("depth", 120), depth)  # deterministic
    assert not torch.allclose(task_code("edge", 120), depth)
    assert 0.5 < depth.std() < 1.5


def test_modulated_conv_is_instance_norm_scaled_and_shifted() -> None:
    torch.manual_seed(0)
    layer = ModulatedConv(5, 4, embed=120)
    x, e = torch.randn(2, 5, 6, 7), torch.randn(120)
    scale, shift = (layer.affine.weight @ e + layer.affine.bias).split(4)
    conv = F.conv2d(x, layer.conv.weight, padding=1)
    expected = F.relu(F.instance_norm(conv) * (1 + scale.view(1, 4, 1, 1)) + shift.view(1, 4, 1, 1))
    assert torch.allclose(layer(x, e), expected, atol=1e-5)
    # A 1 x 1 map normalises to 0 (training mode included): only the shift remains.
    single = layer.train()(torch.randn(2, 5, 1, 1), e)
    assert torch.allclose(single, F.relu(shift).view(1, 4, 1, 1).expand(2, 4, 1, 1))


def test_one_decoder_pass_per_task_conditioned_by_the_task() -> None:
    model = resnet_tc(NYUD).eval()
    with torch.no_grad():
        features = model.encoder(torch.randn(2, 3, 32, 40))
        together = model.decoder(features, list(NYUD))
        for task in NYUD:
            assert torch.allclose(model.decoder(features, [task])[task], together[task], atol=1e-6)
        # Give edge the depth head: the outputs still differ, through the embedding alone.
        model.decoder.heads["edge"].load_state_dict(model.decoder.heads["depth"].state_dict())
        depth, edge = (model.decoder(features, [t])[t] for t in ("depth", "edge"))
    assert depth.shape == edge.shape == (2, 1, 16, 20)  # finest encoder stride; model resizes
    assert (depth - edge).abs().mean() > 1e-3


def test_local_training_is_one_adamw_step_on_the_summed_task_losses() -> None:
    """TC runs the decoder once per task, but local training must still take a single
    optimiser step per batch on the weighted sum (not one step per task, which would also
    accumulate gradients across task passes)."""
    model = resnet_tc(NYUD)
    manual = copy.deepcopy(model)
    generator = torch.Generator().manual_seed(2)
    image = torch.randn(2, 3, 32, 40, generator=generator)
    targets = {
        "semseg": torch.randint(0, 40, (2, 32, 40), generator=generator),
        "depth": torch.rand(2, 1, 32, 40, generator=generator) + 0.5,
        "normals": F.normalize(torch.randn(2, 3, 32, 40, generator=generator), dim=1),
        "edge": (torch.rand(2, 1, 32, 40, generator=generator) > 0.8).float(),
    }
    steps: list[int] = []
    train_local(
        model,
        [{"image": image, **targets}],
        NYUD,
        [Phase()],
        1,
        1e-3,
        1e-4,
        lambda m, c: steps.append(1),
        None,
    )
    assert steps == [1]  # one forward (all tasks) and one step for the one batch
    # The same step by hand (the loss maths are checked in tests/test_losses.py).
    manual.train()
    total = sum(
        STUDY_WEIGHTS[t] * task_loss(NYUD[t], pred, targets[t]) for t, pred in manual(image).items()
    )
    optimiser = torch.optim.AdamW(manual.parameters(), lr=1e-3, weight_decay=1e-4)
    optimiser.zero_grad()
    total.backward()
    optimiser.step()
    got, want = model.state_dict(), manual.state_dict()
    assert all(torch.allclose(got[k].float(), want[k].float(), atol=1e-7) for k in got)
    before = resnet_tc(NYUD).state_dict()
    assert not torch.equal(
        got["decoder.embedding.mlp.0.weight"], before["decoder.embedding.mlp.0.weight"]
    )


@pytest.mark.parametrize("client", sorted(CLIENTS))
@pytest.mark.parametrize("arch", [MultiDecoder, TaskConditioned])
@pytest.mark.parametrize("backbone", [ResNet18, SwinT])
def test_forward_backward_every_backbone_arch_and_client(backbone, arch, client) -> None:
    tasks = CLIENTS[client]
    size = (32, 40) if backbone is ResNet18 else (32, 32)
    torch.manual_seed(0)
    model = build_model(backbone(), arch(), tasks, size).train()
    out = model(torch.randn(2, 3, *size))
    assert {t: tuple(o.shape) for t, o in out.items()} == {
        t: (2, s.channels, *size) for t, s in tasks.items()
    }
    if "normals" in out:
        norms = out["normals"].detach().norm(dim=1)
        assert torch.allclose(norms, torch.ones_like(norms), atol=1e-5)
    generator = torch.Generator().manual_seed(1)
    sum((o * torch.randn(o.shape, generator=generator)).sum() for o in out.values()).backward()
    missing = [n for n, p in model.named_parameters() if p.grad is None]
    assert not missing, missing[:5]
    tags = model.groups()
    for group in ("encoder", "decoder", "task"):
        grads = [p.grad.abs().sum() for n, p in model.named_parameters() if tags[n] == group]
        assert grads and sum(grads) > 0, group
    heads = {model.decoder.task_of(k.partition(".")[2]) for k in tags if tags[k] == "task"}
    assert heads - {None} == set(tasks)
