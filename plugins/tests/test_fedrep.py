"""FedRep: the head trains first with the body frozen (statistics included), then the body."""

from __future__ import annotations

import pytest
import torch
from fmtlbench_builtins.algorithms.fedrep import FedRep

from fmtlbench.components import ClientInfo, Phase
from fmtlbench.model import build_model
from fmtlbench.registry import load_registry
from fmtlbench.training import train_local


@pytest.fixture(scope="module")
def model():
    registry = load_registry()
    backbone_cls = registry.get("backbone", "resnet18")
    decoder_cls = registry.get("decoder", "md")
    tasks = registry.get("dataset", "nyudv2").tasks
    return build_model(
        backbone_cls(backbone_cls.Params(weights="scratch")),
        decoder_cls(decoder_cls.Params(widths=(8, 8, 8, 8, 8), convs=1)),
        {t: tasks[t] for t in ("depth", "edge")},
        (32, 32),
    )


def batches() -> list[dict[str, torch.Tensor]]:
    g = torch.Generator().manual_seed(0)
    return [
        {
            "image": torch.randn(4, 3, 32, 32, generator=g),
            "depth": torch.rand(4, 1, 32, 32, generator=g) + 0.5,
            "edge": (torch.rand(4, 1, 32, 32, generator=g) > 0.8).float(),
        }
        for _ in range(2)
    ]


def run(model, phase: Phase) -> tuple[dict, dict]:
    before = {k: v.clone() for k, v in model.state_dict().items()}
    train_local(model, batches(), model.tasks, [phase], 1, 1e-2, 1e-4, lambda m, c: None, None)
    return before, model.state_dict()


def changed(before: dict, after: dict, groups: dict, wanted: set[str]) -> dict[str, bool]:
    return {k: not torch.equal(before[k], after[k]) for k in before if groups[k] in wanted}


def test_head_phase_leaves_the_encoder_untouched_then_the_body_phase_trains_it(model):
    groups = model.groups()
    fedrep = FedRep()
    state = model.state_dict()
    fedrep.setup([ClientInfo(0, "nyudv2", ("depth", "edge"), 8)], [state], [groups])
    head, body = fedrep.local_phases(0)
    assert head.frozen == {"encoder", "encoder.stats"} and head.epochs == 1
    assert body.frozen == {"decoder", "decoder.stats", "task"} and body.epochs is None
    assert set(fedrep.exchanged_keys(0)) == {
        k for k, g in groups.items() if g in ("encoder", "encoder.stats")
    }

    before, after = run(model, head)
    encoder = changed(before, after, groups, {"encoder", "encoder.stats"})
    assert encoder and not any(encoder.values())  # weights and BN running statistics
    assert any(changed(before, after, groups, {"decoder"}).values())
    assert any(changed(before, after, groups, {"decoder.stats"}).values())
    assert all(changed(before, after, groups, {"task"}).values())

    before, after = run(model, Phase(epochs=1, frozen=body.frozen))
    assert not any(changed(before, after, groups, {"decoder", "decoder.stats", "task"}).values())
    assert any(changed(before, after, groups, {"encoder"}).values())
    assert any(changed(before, after, groups, {"encoder.stats"}).values())


def test_share_all_keeps_only_the_task_heads_local():
    fedrep = FedRep(FedRep.Params(share="all", head_epochs=2, body_epochs=3))
    groups = {"encoder.w": "encoder", "decoder.w": "decoder", "decoder.h": "task"}
    fedrep.setup([ClientInfo(0, "nyudv2", ("depth",), 8)], [{}], [groups])
    assert fedrep.exchanged_keys(0) == ["encoder.w", "decoder.w"]
    head, body = fedrep.local_phases(0)
    assert (head.epochs, body.epochs, body.frozen) == (2, 3, {"task"})
