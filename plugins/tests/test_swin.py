"""The swin-t backbone: its feature pyramid, its size, its weights, and MD on top of it.

Features are checked against timm's own extractor called directly, parameter counts against
timm's classifier model and formulas from the layer shapes, loaded weights against the file they
came from and against timm's own pretrained loader. Swin-T costs ~0.4 s per batch-8 step here,
so every forward uses one or two images.
"""

from __future__ import annotations

import hashlib
import re
from pathlib import Path

import huggingface_hub.constants
import pytest
import timm
import torch
import torch.nn.functional as F
from fmtlbench_builtins.backbones.timm_backbone import ResNet18, SwinT, register_backbones
from fmtlbench_builtins.decoders.md import MultiDecoder
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
TIMM_NAME = "swin_tiny_patch4_window7_224"
TABLE = ".relative_position_bias_table"


def full_state(seed: int) -> dict[str, torch.Tensor]:
    """A state dict of timm's whole Swin-T classifier at 224 (window 7 everywhere)."""
    torch.manual_seed(seed)
    net = timm.create_model(TIMM_NAME, pretrained=False)
    return {k: v.clone() for k, v in net.state_dict().items()}


def extractor_name(key: str) -> str:
    """timm's classifier key -> its features_only key (``layers.0.`` -> ``layers_0.``)."""
    return re.sub(r"^layers\.(\d+)\.", r"layers_\1.", key)


def swin(resolution: tuple[int, int], **params: str) -> torch.nn.Module:
    return SwinT(SwinT.Params(**params)).build(resolution)


def test_registered_with_a_summary() -> None:
    assert register_backbones() == [ResNet18, SwinT]
    assert SwinT.name == "swin-t" and SwinT.summary()


@pytest.mark.parametrize("size", [(64, 80), (62, 70), (32, 32)])
def test_pyramid_is_timm_extractor_output_in_nchw(size: tuple[int, int]) -> None:
    torch.manual_seed(0)
    encoder = swin(size).eval()  # no stochastic depth: two passes must agree
    assert encoder.channels == [96, 192, 384, 768] and encoder.reductions == [4, 8, 16, 32]
    image = torch.randn(1, 3, *size)
    with torch.no_grad():
        got = encoder(image)
        # Independently: pad to a multiple of the 4-pixel patch, run timm, move channels.
        h, w = -(-size[0] // 4) * 4, -(-size[1] // 4) * 4
        padded = F.pad(image, (0, w - size[1], 0, h - size[0]))
        expected = [f.permute(0, 3, 1, 2) for f in encoder.body(padded)]
    side = (h // 4, w // 4)  # the patch grid; each later stage halves it, rounding up
    for level, (feature, reference) in enumerate(zip(got, expected, strict=True)):
        assert feature.shape == (1, encoder.channels[level], *side)
        assert torch.equal(feature, reference)
        side = (-(-side[0] // 2), -(-side[1] // 2))


def test_runs_at_a_resolution_other_than_built_for() -> None:
    encoder = swin((64, 80))
    with torch.no_grad():
        shapes = [tuple(f.shape) for f in encoder(torch.randn(1, 3, 48, 56))]
    assert shapes == [(1, 96, 12, 14), (1, 192, 6, 7), (1, 384, 3, 4), (1, 768, 2, 2)]


def test_encoder_size_is_timm_swin_t_without_classifier_and_final_norm() -> None:
    with torch.device("meta"):
        full = timm.create_model(TIMM_NAME, pretrained=False)
        encoder = swin((448, 576))  # every stage is at least 7 x 7: windows of 7 as at 224
    classifier = 768 * 1000 + 1000
    final_norm = 2 * 768
    expected = sum(p.numel() for p in full.parameters()) - classifier - final_norm
    assert sum(p.numel() for p in encoder.parameters()) == expected == 27_517_818
    assert abs(expected / 27.52e6 - 1) < 0.02


def md_task_params(channels: int) -> int:
    """One task's MD decoder on Swin-T from the layer shapes: widths = Swin channels, 1x1
    skips with bias, then stages of 2, 2 and 6 3x3 conv-BN layers (finest first), a 1x1 head."""
    w = [96, 192, 384, 768]
    convs = [2, 2, 6]
    skips = sum(c * c + c for c in w)
    stages = 0
    for i, n in enumerate(convs):
        stages += 9 * (w[i + 1] + w[i]) * w[i] + (n - 1) * 9 * w[i] * w[i] + n * 2 * w[i]
    return skips + stages + w[0] * channels + channels


def test_md_on_swin_matches_the_layer_formula_and_the_study() -> None:
    with torch.device("meta"):
        model = build_model(SwinT(), MultiDecoder(), NYUD, (448, 576))
    counts = count_parameters(model)
    decoder = counts["decoder"] + counts["task"]
    assert decoder == sum(md_task_params(s.channels) for s in NYUD.values())
    assert abs(decoder / 52.28e6 - 1) < 0.02
    assert abs((decoder + counts["encoder"]) / 79.80e6 - 1) < 0.02


def test_md_widths_follow_the_backbone_unless_set() -> None:
    with torch.device("meta"):
        model = build_model(SwinT(), MultiDecoder(), {"depth": NYUD["depth"]}, (64, 64))
        narrow = MultiDecoder(MultiDecoder.Params(widths=(8, 16, 32, 64), convs=1))
        small = build_model(SwinT(), narrow, {"depth": NYUD["depth"]}, (64, 64))
    branch = model.decoder["depth"]
    assert [s.out_channels for s in branch.skips] == [96, 192, 384, 768]
    assert [len(stage) for stage in branch.stages] == [2, 2, 6]
    assert [s.out_channels for s in small.decoder["depth"].skips] == [8, 16, 32, 64]
    assert [len(stage) for stage in small.decoder["depth"].stages] == [1, 1, 1]
    with pytest.raises(ConfigError, match="convs"):
        build_model(SwinT(), MultiDecoder(MultiDecoder.Params(convs=(2, 2))), NYUD, (32, 32))


def test_md_swin_forward_backward_on_a_size_not_divisible_by_the_patch() -> None:
    torch.manual_seed(0)
    model = build_model(SwinT(), MultiDecoder(), NYUD, (46, 58))
    out = model(torch.randn(1, 3, 46, 58))
    assert {t: tuple(o.shape) for t, o in out.items()} == {
        t: (1, s.channels, 46, 58) for t, s in NYUD.items()
    }
    sum((o * torch.randn_like(o)).sum() for o in out.values()).backward()
    assert all(p.grad is not None for p in model.parameters())
    assert model.encoder.body.patch_embed.proj.weight.grad.abs().sum() > 0


# --------------------------------------------------------------------------- weights
def assert_same_weights(encoder: torch.nn.Module, state: dict[str, torch.Tensor]) -> None:
    """Every extractor entry equals the file's entry of the same (renamed) name."""
    renamed = {extractor_name(k): v for k, v in state.items()}
    body = encoder.body.state_dict()
    assert body and all(torch.equal(body[k], renamed[k]) for k in body)


def test_classifier_checkpoint_loads_exactly_and_is_hashed(tmp_path: Path) -> None:
    state = full_state(3)
    path = tmp_path / "swin.pth"
    torch.save(state, path)
    encoder = swin((224, 224), weights=str(path))  # windows of 7, as in the file
    assert_same_weights(encoder, state)
    assert encoder.weights_sha256 == hashlib.sha256(path.read_bytes()).hexdigest()
    assert swin((32, 32)).weights_sha256 is None


def test_extractor_checkpoint_loads_exactly_at_a_small_resolution(tmp_path: Path) -> None:
    torch.manual_seed(4)
    state = swin((64, 64)).body.state_dict()
    path = tmp_path / "swin-64.safetensors"
    save_file(state, str(path))
    encoder = swin((64, 64), weights=str(path))
    assert_same_weights(encoder, state)
    assert encoder.weights_sha256 == hashlib.sha256(path.read_bytes()).hexdigest()


def test_classifier_checkpoint_at_a_small_resolution_resizes_only_the_bias_tables(
    tmp_path: Path,
) -> None:
    state = full_state(5)
    path = tmp_path / "swin.pth"
    torch.save(state, path)
    encoder = swin((64, 64), weights=str(path))  # stage windows 7, 7, 4, 2
    body = encoder.body.state_dict()
    renamed = {extractor_name(k): v for k, v in state.items()}
    resized = 0
    for key, value in body.items():
        if key.endswith(TABLE) and value.shape != renamed[key].shape:
            resized += 1
            window = encoder.body.get_submodule(key[: -len(TABLE)]).window_size
            assert value.shape == ((2 * window[0] - 1) * (2 * window[1] - 1), renamed[key].shape[1])
            # Offset (0, 0) sits at the centre of both tables and is interpolated exactly.
            centre = (window[0] - 1) * (2 * window[1] - 1) + window[1] - 1
            assert torch.allclose(value[centre], renamed[key][6 * 13 + 6])
        else:
            assert torch.equal(value, renamed[key]), key
    assert resized == 6 + 2  # the blocks of the last two stages


def test_wrong_missing_and_corrupt_files_give_clear_errors(tmp_path: Path) -> None:
    resnet = tmp_path / "resnet.pth"
    torch.save(ResNet18().build((32, 32)).body.state_dict(), resnet)
    with pytest.raises(ConfigError, match=r"resnet\.pth.*missing: patch_embed\.proj\.weight"):
        swin((32, 32), weights=str(resnet))
    with pytest.raises(ConfigError, match="nope.pth does not exist"):
        swin((32, 32), weights=str(tmp_path / "nope.pth"))
    corrupt = tmp_path / "corrupt.safetensors"
    corrupt.write_bytes(b"\x10\x00\x00\x00\x00\x00\x00\x00not json at all")
    with pytest.raises(ConfigError, match="corrupt.safetensors cannot be read"):
        swin((32, 32), weights=str(corrupt))


def test_timm_cache_weights_load_offline_like_a_file(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    # The layout huggingface_hub writes for timm's default Swin-T tag.
    monkeypatch.setattr(huggingface_hub.constants, "HF_HUB_CACHE", str(tmp_path))
    repo = tmp_path / "models--timm--swin_tiny_patch4_window7_224.ms_in1k"
    commit = "0123456789abcdef0123456789abcdef01234567"
    (repo / "refs").mkdir(parents=True)
    (repo / "refs" / "main").write_text(commit)
    snapshot = repo / "snapshots" / commit
    snapshot.mkdir(parents=True)
    state = full_state(6)
    save_file(state, str(snapshot / "model.safetensors"))
    cached = swin((64, 64), weights="timm")  # timm's own loader and checkpoint filter
    from_file = swin((64, 64), weights=str(snapshot / "model.safetensors"))
    assert cached.weights_sha256 == from_file.weights_sha256
    ours, timms = from_file.body.state_dict(), cached.body.state_dict()
    assert set(ours) == set(timms)
    assert all(torch.allclose(ours[k], timms[k]) for k in ours)


def test_one_task_swin_client_has_one_decoder() -> None:
    with torch.device("meta"):
        model: MultiTaskModel = build_model(
            SwinT(), MultiDecoder(), {"edge": NYUD["edge"]}, (32, 32)
        )
    assert list(model.decoder) == ["edge"]
    assert {
        model.decoder.task_of(k.partition(".")[2])
        for k in model.state_dict()
        if k.startswith("decoder.")
    } == {"edge"}
