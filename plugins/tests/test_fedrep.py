"""FedRep: the head trains first with the body frozen (statistics included), then the body."""

from __future__ import annotations

import pytest
import torch
from fmtlbench_builtins.algorithms.fedrep import FedRep, FedRepParams

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


def setup(params: FedRepParams, epochs: int) -> FedRep:
    fedrep = FedRep(params)
    info = ClientInfo(0, "nyudv2", ("depth",), 8, local_epochs=epochs)
    fedrep.setup([info], [{}], [{"encoder.w": "encoder", "decoder.h": "task"}])
    return fedrep


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
    fedrep.setup([ClientInfo(0, "nyudv2", ("depth", "edge"), 8, 5)], [state], [groups])
    head, body = fedrep.local_phases(0)
    assert head.frozen == {"encoder", "encoder.stats"} and head.epochs == 1
    # E = 5 local epochs: head 1 + body 4, the same total as every other method
    assert body.frozen == {"decoder", "decoder.stats", "task"} and body.epochs == 4
    assert set(fedrep.exchanged_names(0)) == {
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
    fedrep = FedRep(FedRepParams(share="all", head_epochs=2, body_epochs=3))
    groups = {"encoder.w": "encoder", "decoder.w": "decoder", "decoder.h": "task"}
    fedrep.setup([ClientInfo(0, "nyudv2", ("depth",), 8)], [{}], [groups])
    assert fedrep.exchanged_names(0) == ["encoder.w", "decoder.w"]
    head, body = fedrep.local_phases(0)
    assert (head.epochs, body.epochs, body.frozen) == (2, 3, {"task"})


@pytest.mark.parametrize(
    ("body_epochs", "epochs", "phases", "extra"),
    [
        ("rest", 5, (1, 4), 0),  # the default: E in total
        ("rest", 3, (2, 1), 0),  # with head_epochs=2 below
        ("rest", 1, (1, 1), 1),  # E <= head_epochs: clamped to one body epoch, one extra
        ("all", 5, (1, 5), 1),  # the paper's schedule: head_epochs + E
        (3, 5, (1, 3), -1),  # a fixed number
    ],
)
def test_local_epochs_split_between_head_and_body(body_epochs, epochs, phases, extra):
    head_epochs = 2 if epochs == 3 else 1
    fedrep = setup(FedRepParams(head_epochs=head_epochs, body_epochs=body_epochs), epochs)
    assert tuple(p.epochs for p in fedrep.local_phases(0)) == phases
    assert fedrep.round_metrics() == {"extra_epochs": float(extra)}


def test_body_epochs_rejects_other_values():
    for bad in (0, "some", None):
        with pytest.raises(ValueError, match="body_epochs"):
            FedRepParams(body_epochs=bad)


@pytest.mark.parametrize(("body_epochs", "steps"), [("rest", 3), ("all", 1 + 3)])
def test_training_runs_the_scheduled_epochs(model, body_epochs, steps):
    """Counted where it happens: one extra-loss call per optimiser step, one batch an epoch."""
    fedrep = FedRep(FedRepParams(body_epochs=body_epochs))
    info = ClientInfo(0, "nyudv2", ("depth", "edge"), 8, local_epochs=3)
    fedrep.setup([info], [model.state_dict()], [model.groups()])
    calls = []
    phases = fedrep.local_phases(0)
    train_local(
        model, batches()[:1], model.tasks, phases, 3, 1e-2, 1e-4, lambda m, c: calls.append(1), None
    )
    assert len(calls) == steps
