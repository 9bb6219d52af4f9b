"""The algorithm base class: setup, declared server state, renamed members refused, the
holders helper, and FedProx and FedRep as FedAvg plus something."""

from __future__ import annotations

import pytest
import torch
from fmtlbench_builtins.algorithms.fedavg import FedAvg
from fmtlbench_builtins.algorithms.fedprox import FedProx
from fmtlbench_builtins.algorithms.fedrep import FedRep
from toy_clients import make, updates

from fmtlbench import checkpoint
from fmtlbench.components import Algorithm
from fmtlbench.errors import ConfigError
from fmtlbench.maths import by_holders


def states() -> list[dict[str, torch.Tensor]]:
    return [
        {"encoder.w": torch.tensor([1.0, 2.0]), "decoder.a": torch.tensor([3.0])},
        {"encoder.w": torch.tensor([5.0, 0.0]), "decoder.a": torch.tensor([1.0])},
        {"encoder.w": torch.tensor([0.0, 4.0]), "decoder.b": torch.tensor([2.0])},
    ]


def test_by_holders_groups_names_by_the_clients_holding_them() -> None:
    held = by_holders(states())
    assert held == {(0, 1, 2): ["encoder.w"], (0, 1): ["decoder.a"], (2,): ["decoder.b"]}


def test_setup_records_clients_and_initial_entries_then_calls_on_setup() -> None:
    calls = []

    class Probe(FedAvg):
        """Records what on_setup sees."""

        name = "probe"

        def on_setup(self) -> None:
            calls.append((len(self.clients), [sorted(e) for e in self.initial], self.holders))

    make(Probe, states())
    ((n, initial, holders),) = calls
    assert n == 3 and initial[2] == ["decoder.b", "encoder.w"]
    assert holders == {"encoder.w": 3, "decoder.a": 2, "decoder.b": 1}


@pytest.mark.parametrize("member", ["setup", "state_dict", "load_state_dict", "exchanged_keys"])
def test_defining_a_member_the_contract_no_longer_calls_is_refused(member: str) -> None:
    with pytest.raises(TypeError, match=f"defines {member}, which the algorithm contract"):
        type("Old", (FedAvg,), {member: lambda self, *a: None, "__doc__": "x", "name": "old"})


def test_declared_server_state_round_trips_through_a_checkpoint() -> None:
    prox = make(FedProx, states(), mu=0.1)
    prox.aggregate(1, updates([{n: v + 1 for n, v in s.items()} for s in states()]))
    saved = checkpoint.decode(checkpoint.encode({"a": prox.state_dict()}), "test")["a"]
    assert set(saved) == {"anchors"}
    fresh = make(FedProx, states(), mu=0.1)
    fresh.load_state_dict(saved)
    assert isinstance(fresh.anchors, list)
    for k in range(3):
        assert fresh.anchors[k].keys() == prox.anchors[k].keys()
        assert all(torch.equal(fresh.anchors[k][n], prox.anchors[k][n]) for n in prox.anchors[k])
    with pytest.raises(ConfigError, match=r"lacks \['anchors'\].*start the run afresh"):
        fresh.load_state_dict({})


def test_fedprox_sends_what_fedavg_sends_and_anchors_on_it() -> None:
    after = [{n: v * 2 + k for n, v in s.items()} for k, s in enumerate(states())]
    avg = make(FedAvg, states()).aggregate(1, updates(after))
    prox = make(FedProx, states(), mu=0.5)
    sent = prox.aggregate(1, updates(after))
    assert sent.keys() == avg.keys()
    for k in sent:
        assert sent[k].keys() == avg[k].keys()
        assert all(torch.equal(sent[k][n], avg[k][n]) for n in sent[k])
    # the anchor is the payload's parameters: the encoder mean of [2, 4], [11, 1], [2, 10]
    assert torch.equal(
        prox.anchors[0]["encoder.w"], torch.tensor([(2 + 11 + 2) / 3, (4 + 1 + 10) / 3])
    )
    assert isinstance(prox, FedAvg) and isinstance(make(FedRep, states()), FedAvg)


def test_fedrep_averages_only_its_body() -> None:
    after = [{n: v + 10 * k for n, v in s.items()} for k, s in enumerate(states())]
    sent = make(FedRep, states()).aggregate(1, updates(after))
    assert {k: sorted(p) for k, p in sent.items()} == {0: ["encoder.w"], 1: ["encoder.w"],
                                                       2: ["encoder.w"]}  # fmt: skip
    assert torch.equal(sent[0]["encoder.w"], torch.tensor([(1 + 15 + 20) / 3, (2 + 10 + 24) / 3]))


def test_the_base_needs_no_state_by_default() -> None:
    assert Algorithm.server_state == () and FedAvg.server_state == ()
    assert make(FedAvg, states()).state_dict() == {}
