"""FedProx: FedAvg's weighted mean plus a proximal term with a real gradient."""

from __future__ import annotations

import pytest
import torch
from fmtlbench_builtins.algorithms.fedavg import FedAvg
from fmtlbench_builtins.algorithms.fedprox import FedProx
from toy_clients import Live, make, updates

from fmtlbench import traffic


def three_clients() -> list[dict[str, torch.Tensor]]:
    return [
        {"encoder.w": torch.tensor([1.0, 2.0]), "encoder.bn.running_mean": torch.tensor([0.0])},
        {"encoder.w": torch.tensor([3.0, 6.0]), "encoder.bn.running_mean": torch.tensor([4.0])},
        {"encoder.w": torch.tensor([5.0, -2.0]), "encoder.bn.running_mean": torch.tensor([8.0])},
    ]


@pytest.mark.parametrize("cls", [FedAvg, FedProx])
def test_weighted_mean_by_sample_count(cls):
    states, sizes = three_clients(), [10, 30, 60]
    algorithm = make(cls, states, sizes, weighting="samples")
    payloads = algorithm.aggregate(1, updates(states, sizes))
    # 0.1 * (1, 2) + 0.3 * (3, 6) + 0.6 * (5, -2) = (4.0, 0.8); stats 0.3 * 4 + 0.6 * 8 = 6
    for k in range(3):
        assert torch.allclose(payloads[k]["encoder.w"], torch.tensor([4.0, 0.8]))
        assert payloads[k]["encoder.bn.running_mean"].item() == pytest.approx(6.0)
    uniform = make(cls, states).aggregate(1, updates(states))
    assert torch.allclose(uniform[0]["encoder.w"], torch.tensor([3.0, 2.0]))


def test_proximal_gradient_is_mu_times_distance_to_the_global_model():
    states = three_clients()
    fedprox = make(FedProx, states, mu=0.5)
    fedprox.aggregate(1, updates(states))
    anchor = fedprox.context(0)
    assert set(anchor) == {"encoder.w"}  # statistics have no gradient, so no anchor
    live = Live({"encoder.w": torch.tensor([7.0, -1.0])})
    loss = fedprox.client_loss(live.view(), anchor)
    loss.backward()
    theta, theta_global = torch.tensor([7.0, -1.0]), torch.tensor([3.0, 2.0])
    assert loss.item() == pytest.approx(0.25 * float(((theta - theta_global) ** 2).sum()))
    assert torch.allclose(live.p0.grad, 0.5 * (theta - theta_global))
    assert make(FedProx, states, mu=0.0).client_loss(live.view(), anchor) is None


def test_anchor_is_the_payload_itself_so_its_bytes_are_not_counted_twice():
    states = three_clients()
    fedprox = make(FedProx, states)
    first = fedprox.context(1)
    assert traffic.context_bytes(first, fedprox.groups[1], set()) == {"encoder": 8}
    payloads = fedprox.aggregate(1, updates(states))
    delivered = traffic.storage_ids(payloads[1])
    assert traffic.context_bytes(fedprox.context(1), fedprox.groups[1], delivered) == {}
    restored = make(FedProx, states)
    restored.load_state_dict(fedprox.state_dict())
    assert torch.equal(restored.context(2)["encoder.w"], fedprox.context(2)["encoder.w"])
