"""The resnet18 backbone and the MD decoder, together in the core multi-task model.

Counts are checked against formulas written out from the layer shapes, weights against the
file they came from, group tags against an independent walk of the modules.
"""

from __future__ import annotations

import hashlib
from collections import Counter
from pathlib import Path

import huggingface_hub.constants
import pytest
import timm
import torch
from fmtlbench_builtins.backbones.timm_backbone import ResNet18, register_backbones
from fmtlbench_builtins.decoders.md import MultiDecoder, register_decoders
from safetensors.torch import save_file

from fmtlbench.errors import ConfigError
from fmtlbench.model import MultiTaskModel, build_model, count_parameters
from fmtlbench.tasks import TaskSpec

NYUD = {
    "semseg": TaskSpec("semseg", 40, classes=40),
    "depth": TaskSpec("depth", 1),
    "normals": TaskSpec("normals", 3),
    "edge": TaskSpec("edge", 1, pos_weight=0.8),
}
ONE_TASK = {"normals": NYUD["normals"]}


def resnet_md(tasks: dict[str, TaskSpec], **backbone: str) -> MultiTaskModel:
    torch.manual_seed(0)
    return build_model(ResNet18(ResNet18.Params(**backbone)), MultiDecoder(), tasks, (64, 64))


@pytest.fixture(scope="module")
def nyud_model() -> MultiTaskModel:
    return resnet_md(NYUD)


@pytest.fixture(scope="module")
def one_task_model() -> MultiTaskModel:
    return resnet_md(ONE_TASK)


def test_hooks_register_the_components() -> None:
    assert ResNet18 in register_backbones() and register_decoders() == [MultiDecoder]
    assert ResNet18.name == "resnet18" and MultiDecoder.name == "md"
    assert ResNet18.summary() and MultiDecoder.summary()


@pytest.mark.parametrize("size", [(64, 64), (60, 76)])
@pytest.mark.parametrize("which", ["nyud_model", "one_task_model"])
def test_forward_backward(
    which: str, size: tuple[int, int], request: pytest.FixtureRequest
) -> None:
    model: MultiTaskModel = request.getfixturevalue(which)
    model.train().zero_grad()
    out = model(torch.randn(2, 3, *size))
    assert {t: tuple(o.shape) for t, o in out.items()} == {
        t: (2, spec.channels, *size) for t, spec in model.tasks.items()
    }
    norms = out["normals"].detach().pow(2).sum(dim=1).sqrt()
    assert torch.allclose(norms, torch.ones_like(norms), atol=1e-5)
    generator = torch.Generator().manual_seed(1)
    # A random linear loss: the squared norm of unit normals would have zero gradient.
    loss = sum((o * torch.randn(o.shape, generator=generator)).sum() for o in out.values())
    loss.backward()
    assert all(p.grad is not None for p in model.parameters())
    assert model.encoder.body.conv1.weight.grad.abs().sum() > 0
    for task in model.tasks:
        branch = model.decoder[task]
        assert branch.skips[0].weight.grad.abs().sum() > 0
        assert branch.skips[-1].weight.grad.abs().sum() > 0
        assert branch.head.weight.grad.abs().sum() > 0


def test_one_task_client_has_exactly_one_decoder(one_task_model: MultiTaskModel) -> None:
    assert list(one_task_model.decoder) == ["normals"]
    keys = [k for k in one_task_model.state_dict() if k.startswith("decoder.")]
    assert keys and all(k.startswith("decoder.normals.") for k in keys)


def test_groups_match_an_independent_walk(nyud_model: MultiTaskModel) -> None:
    tags = nyud_model.groups()
    assert set(tags) == set(nyud_model.state_dict())
    expected: Counter[str] = Counter()
    expected["encoder"] = len(list(nyud_model.encoder.named_parameters()))
    expected["encoder.stats"] = len(list(nyud_model.encoder.named_buffers()))
    expected["decoder.stats"] = len(list(nyud_model.decoder.named_buffers()))
    for name, _ in nyud_model.decoder.named_parameters():
        expected["task" if name.split(".")[1] == "head" else "decoder"] += 1
    assert Counter(tags.values()) == expected
    assert expected["task"] == 2 * len(NYUD)  # a weight and a bias per head
    assert tags["encoder.body.bn1.running_mean"] == "encoder.stats"
    assert tags["encoder.body.layer4.1.bn2.num_batches_tracked"] == "encoder.stats"
    assert tags["decoder.semseg.head.weight"] == "task"
    assert tags["decoder.edge.head.bias"] == "task"
    assert tags["decoder.depth.stages.0.0.norm.running_var"] == "decoder.stats"
    assert tags["decoder.depth.stages.0.0.norm.weight"] == "decoder"
    with pytest.raises(KeyError, match="parts"):
        nyud_model.decoder.group_of("parts.head.weight")
    # Every MD entry belongs to one task: the first segment of its key.
    for key in (k.partition(".")[2] for k in tags if k.startswith("decoder.")):
        assert nyud_model.decoder.task_of(key) == key.split(".")[0]
    with pytest.raises(KeyError, match="parts"):
        nyud_model.decoder.task_of("parts.head.weight")


def md_task_params(channels: int) -> int:
    """One task's MD decoder on resnet18, from the layer shapes (3 conv layers per stage)."""
    c = [64, 64, 128, 256, 512]  # resnet18 feature channels, finest first
    w = [64, 128, 256, 256, 512]  # decoder widths
    skips = sum(ci * wi + wi for ci, wi in zip(c, w, strict=True))  # 1x1 convs with bias
    stages = 0
    for i in range(4):  # stage i fuses scale i+1 into scale i
        first = 9 * (w[i + 1] + w[i]) * w[i]  # 3x3 on the concatenation, no bias
        rest = 2 * 9 * w[i] * w[i]  # two 3x3 w[i] -> w[i]
        stages += first + rest + 3 * 2 * w[i]  # three BNs (weight and bias)
    head = w[0] * channels + channels
    return skips + stages + head


def test_parameter_counts(nyud_model: MultiTaskModel) -> None:
    counts = count_parameters(nyud_model)
    assert counts["encoder"] == 11_176_512
    assert counts["task"] == sum(64 * s.channels + s.channels for s in NYUD.values())
    assert counts["decoder"] + counts["task"] == sum(
        md_task_params(s.channels) for s in NYUD.values()
    )
    per_task = {t: sum(p.numel() for p in nyud_model.decoder[t].parameters()) for t in NYUD}
    assert per_task == {t: md_task_params(s.channels) for t, s in NYUD.items()}
    decoder = counts["decoder"] + counts["task"]
    total = decoder + counts["encoder"]
    print(f"\nMD resnet18, 4 NYUD tasks: decoder {decoder:,}, total {total:,}")
    assert abs(decoder / 26.21e6 - 1) < 0.02 and abs(total / 37.39e6 - 1) < 0.02


def test_decoder_widths_must_match_the_scales() -> None:
    decoder = MultiDecoder(MultiDecoder.Params(widths=(64, 128, 256)))
    with pytest.raises(ConfigError, match="widths"):
        decoder.build([64, 64, 128, 256, 512], [2, 4, 8, 16, 32], NYUD)


# --------------------------------------------------------------------------- weights
def seeded_state(seed: int) -> dict[str, torch.Tensor]:
    """A full (classifier) timm resnet18 state dict with random weights and BN statistics."""
    torch.manual_seed(seed)
    net = timm.create_model("resnet18", pretrained=False)
    with torch.no_grad():
        for name, buf in net.named_buffers():
            if name.endswith(("running_mean", "running_var")):
                buf.copy_(torch.rand_like(buf) + 0.5)
    return {k: v.clone() for k, v in net.state_dict().items()}


def assert_loaded(model: MultiTaskModel, state: dict[str, torch.Tensor], path: Path) -> None:
    body = model.encoder.body.state_dict()
    assert set(body) == {k for k in state if not k.startswith("fc.")}
    assert all(torch.equal(body[k], state[k]) for k in body)
    assert model.encoder.weights_sha256 == hashlib.sha256(path.read_bytes()).hexdigest()


def test_weights_from_a_pth_file(tmp_path: Path) -> None:
    state = seeded_state(123)
    path = tmp_path / "r18.pth"
    torch.save(state, path)
    assert_loaded(resnet_md(ONE_TASK, weights=str(path)), state, path)
    assert resnet_md(ONE_TASK).encoder.weights_sha256 is None


def test_weights_from_a_features_only_safetensors_file(tmp_path: Path) -> None:
    state = {k: v for k, v in seeded_state(7).items() if not k.startswith("fc.")}
    path = tmp_path / "r18.safetensors"
    save_file(state, str(path))
    assert_loaded(resnet_md(ONE_TASK, weights=str(path)), state, path)


def test_missing_and_corrupt_weight_files_name_the_path(tmp_path: Path) -> None:
    missing = tmp_path / "nope.pth"
    with pytest.raises(ConfigError, match="nope.pth"):
        resnet_md(ONE_TASK, weights=str(missing))
    corrupt = tmp_path / "corrupt.pth"
    corrupt.write_bytes(torch.randint(0, 256, (4096,), dtype=torch.uint8).numpy().tobytes())
    with pytest.raises(ConfigError, match="corrupt.pth"):
        resnet_md(ONE_TASK, weights=str(corrupt))


def test_mismatching_weight_files_name_the_keys(tmp_path: Path) -> None:
    state = seeded_state(5)
    del state["layer2.0.conv1.weight"]
    path = tmp_path / "holey.pth"
    torch.save(state, path)
    with pytest.raises(ConfigError, match=r"holey\.pth.*missing: layer2\.0\.conv1\.weight"):
        resnet_md(ONE_TASK, weights=str(path))
    state = seeded_state(5)
    state["extra.weight"] = torch.zeros(1)
    state["conv1.weight"] = torch.zeros(8, 3, 7, 7)
    torch.save(state, path)
    with pytest.raises(ConfigError, match=r"unexpected: extra\.weight.*shape: conv1\.weight"):
        resnet_md(ONE_TASK, weights=str(path))


def test_timm_weights_missing_from_cache_fail_offline(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(huggingface_hub.constants, "HF_HUB_CACHE", str(tmp_path))
    with pytest.raises(ConfigError, match="not in the local Hugging Face cache"):
        resnet_md(ONE_TASK, weights="timm")


def test_timm_weights_load_from_the_cache_offline(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    # The cache layout huggingface_hub writes: refs/main names the snapshot holding the file.
    monkeypatch.setattr(huggingface_hub.constants, "HF_HUB_CACHE", str(tmp_path))
    offline_before = huggingface_hub.constants.HF_HUB_OFFLINE
    repo = tmp_path / "models--timm--resnet18.a1_in1k"
    commit = "0123456789abcdef0123456789abcdef01234567"
    (repo / "refs").mkdir(parents=True)
    (repo / "refs" / "main").write_text(commit)
    snapshot = repo / "snapshots" / commit
    snapshot.mkdir(parents=True)
    state = seeded_state(11)
    save_file(state, str(snapshot / "model.safetensors"))
    model = resnet_md(ONE_TASK, weights="timm")
    assert_loaded(model, state, snapshot / "model.safetensors")
    assert huggingface_hub.constants.HF_HUB_OFFLINE == offline_before
