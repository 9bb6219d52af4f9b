"""Server-side PCGrad: projections of conflicting client updates, applied to the global model."""

from __future__ import annotations

import pytest
import torch
from fmtlbench_builtins.algorithms.pcgrad import PCGrad
from toy_clients import make, updates


def start() -> list[dict[str, torch.Tensor]]:
    common = {"encoder.w": torch.zeros(2), "encoder.bn.running_mean": torch.zeros(1)}
    return [{**common, "decoder.own": torch.tensor([5.0])}, dict(common)]


def upload(w, stat, own=None):
    out = {"encoder.w": torch.tensor(w), "encoder.bn.running_mean": torch.tensor([stat])}
    return out if own is None else {**out, "decoder.own": torch.tensor([own])}


def test_conflicting_updates_are_projected_and_applied_to_the_global_model():
    pcgrad = make(PCGrad, start())
    # round 1: d0 = (1, 0), d1 = (-1, 1) conflict -> (0.5, 0.5) and (0, 1); mean (0.25, 0.75)
    payloads = pcgrad.aggregate(
        1, updates([upload([1.0, 0.0], 2.0, 7.0), upload([-1.0, 1.0], 4.0)])
    )
    for k in (0, 1):
        assert torch.allclose(payloads[k]["encoder.w"], torch.tensor([0.25, 0.75]))
        assert payloads[k]["encoder.bn.running_mean"].item() == pytest.approx(3.0)  # averaged
    # an entry only client 0 holds never travels: it is neither requested nor sent back
    assert "decoder.own" not in pcgrad.exchanged_names(0)
    assert all("decoder.own" not in payload for payload in payloads.values())
    # round 2: updates are measured from the new global model, not from stale bases
    second = [upload([1.25, 0.75], 3.0, 7.0), upload([0.25, 1.75], 3.0)]
    payloads = pcgrad.aggregate(2, updates(second))  # (1, 0) and (0, 1): no conflict
    assert torch.allclose(payloads[1]["encoder.w"], torch.tensor([0.75, 1.25]))


def test_sum_reduction_adds_the_projected_updates_as_in_the_paper():
    pcgrad = make(PCGrad, start(), reduction="sum")
    # projected (0.5, 0.5) + (0, 1) = (0.5, 1.5), unweighted
    payloads = pcgrad.aggregate(
        1, updates([upload([1.0, 0.0], 2.0, 7.0), upload([-1.0, 1.0], 4.0)])
    )
    assert torch.allclose(payloads[0]["encoder.w"], torch.tensor([0.5, 1.5]))


def test_orders_are_random_but_reproducible_per_seed_and_round():
    pcgrad = make(PCGrad, [{"encoder.w": torch.zeros(1)}] * 6)
    first = pcgrad.orders(3, 6)
    assert first == pcgrad.orders(3, 6)
    assert all(sorted(order) == [j for j in range(6) if j != i] for i, order in enumerate(first))
    assert first != pcgrad.orders(4, 6)
    assert first != make(PCGrad, [{"encoder.w": torch.zeros(1)}] * 6, seed=1).orders(3, 6)


def test_server_state_survives_a_checkpoint():
    pcgrad = make(PCGrad, start())
    pcgrad.aggregate(1, updates([upload([1.0, 0.0], 2.0, 7.0), upload([-1.0, 1.0], 4.0)]))
    restored = make(PCGrad, start())
    restored.load_state_dict(pcgrad.state_dict())
    second = [upload([2.0, 0.0], 3.0, 7.0), upload([0.0, -3.0], 3.0)]
    a = pcgrad.aggregate(2, updates(second))
    b = restored.aggregate(2, updates(second))
    assert torch.equal(a[0]["encoder.w"], b[0]["encoder.w"])


def test_projection_orders_follow_the_client_not_its_position_in_the_list():
    # four clients in mutual conflict: the random visiting orders matter, so a list in another
    # order must still give every client the orders drawn for it
    deltas = [[1.0, 0.0, 0.2], [-0.8, 1.0, 0.0], [0.1, -0.9, 1.0], [-0.5, -0.4, -0.7]]
    zero = [{"encoder.w": torch.zeros(3)} for _ in deltas]
    sent = [{"encoder.w": torch.tensor(d)} for d in deltas]
    forward = make(PCGrad, zero).aggregate(1, updates(sent))
    backward = make(PCGrad, zero).aggregate(1, updates(sent)[::-1])
    assert not torch.allclose(forward[0]["encoder.w"], torch.tensor(deltas).mean(0))  # projected
    for k in range(4):
        assert torch.allclose(forward[k]["encoder.w"], backward[k]["encoder.w"], atol=1e-6)
