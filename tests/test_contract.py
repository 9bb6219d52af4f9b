"""The algorithm contract, checked on every registered algorithm, third-party ones included.

Each cell runs two real rounds (local training through the engine, the algorithm's context,
client loss and schedule, aggregation, payloads loaded into the clients, traffic accounting)
on tiny synthetic data, for both architectures and three scenarios: one dataset with
multi-task clients (iid1), single-task clients whose decoder bodies are exchanged (niid2), and
two datasets with different task sets (niid6). A cell passes when the run finishes with finite
losses and states and the algorithm's server state survives a checkpoint, or when setup
refuses the clients with a clear ``IncompatibleError``.

The encoder is a real but tiny conv pyramid registered for these tests only (in a registry of
their own): what is checked is the algorithms, and with a ResNet-18 encoder the server maths
over 11 M parameters would make the grid of cells too slow for the suite. The algorithms run
with ResNet-18 in the FedRep test, the end-to-end runs and ``benchmarks/grid.py``.
"""

from __future__ import annotations

import dataclasses
import math
from typing import Any

import pytest
import torch
from conftest import tiny_overrides
from pyramid import TinyPyramid

from fmtlbench import checkpoint
from fmtlbench.components import Algorithm, ClientInfo, Update
from fmtlbench.config import build_config
from fmtlbench.engine import Engine
from fmtlbench.errors import IncompatibleError
from fmtlbench.federation import Federation, build_federation
from fmtlbench.registry import build_registry

REGISTRY = build_registry()
REGISTRY.add("backbone", TinyPyramid, "tests/test_contract.py")
ALGORITHMS = REGISTRY.names("algorithm")
ARCHS = ("md", "tc")
SCENARIOS = ("iid1", "niid2", "niid6")
#: Decoder parameters that keep every decoder tiny (only those a decoder accepts are used).
TINY_DECODER = {"widths": [8, 8, 8, 8, 8], "convs": 1, "code_dim": 8, "mlp_layers": 1}
#: Twins small enough for one local step per client and round.
TWIN = {"twin_train": 24, "twin_test": 4, "twin_height": 48, "twin_width": 64}


_BUILT: dict[tuple[str, str], Federation] = {}


def federation(arch: str, scenario: str, tmp) -> Federation:
    """One federation per (arch, scenario), built once; cells attach their algorithm to it."""
    if (arch, scenario) not in _BUILT:
        decoder = REGISTRY.get("decoder", arch).Params.model_fields
        datasets = {g.dataset for g in REGISTRY.get("scenario", scenario).groups}
        config = build_config(
            None,
            tiny_overrides(
                tmp,
                scenario=scenario,
                algorithm={"name": "local"},
                backbone={"name": TinyPyramid.name},
                arch={
                    "name": arch,
                    "params": {k: v for k, v in TINY_DECODER.items() if k in decoder},
                },
                data={"datasets": {d: dict(TWIN) for d in datasets}},
                training={"rounds": 3, "eval_every": 100, "eval_initial": False},
            ),
        )
        _BUILT[arch, scenario] = build_federation(config, REGISTRY)
    return _BUILT[arch, scenario]


def attach(fed: Federation, algorithm: Algorithm) -> Federation:
    """A fresh copy of ``fed`` at its initial states, run by ``algorithm`` (what
    ``build_federation`` does after building the clients)."""
    clone = dataclasses.replace(fed, states=[dict(s) for s in fed.states])
    clone.attach(algorithm)
    return clone


def same(a: Any, b: Any) -> bool:
    """Deep equality with exact tensor comparison."""
    if isinstance(a, torch.Tensor):
        return isinstance(b, torch.Tensor) and a.shape == b.shape and torch.equal(a, b)
    if isinstance(a, dict):
        return isinstance(b, dict) and a.keys() == b.keys() and all(same(a[k], b[k]) for k in a)
    if isinstance(a, list | tuple):
        return len(a) == len(b) and all(same(x, y) for x, y in zip(a, b, strict=True))
    return a == b


def check_checkpoint(fed: Federation, infos: list[ClientInfo], initial: list) -> None:
    """The server state, saved and loaded into a fresh instance, reproduces what comes next."""
    algorithm = fed.algorithm
    # through the checkpoint's own format: every algorithm's state must survive it as data
    saved = checkpoint.decode(checkpoint.encode({"algorithm": algorithm.state_dict()}), "test")
    twin = type(algorithm)(algorithm.params)
    twin.setup(infos, initial, fed.groups)
    twin.load_state_dict(saved["algorithm"])
    for k in range(len(infos)):
        assert twin.exchanged_keys(k) == algorithm.exchanged_keys(k)
        assert twin.local_phases(k) == algorithm.local_phases(k)
        assert same(twin.context(k), algorithm.context(k)), f"context of client {k} differs"

    def round_three() -> list[Update]:
        return [
            Update(k, info.num_train, {n: fed.exchangeable(k)[n].clone() for n in keys})
            for k, info in enumerate(infos)
            for keys in [algorithm.exchanged_keys(k)]
        ]

    assert same(algorithm.aggregate(3, round_three()), twin.aggregate(3, round_three()))


@pytest.mark.parametrize("scenario", SCENARIOS)
@pytest.mark.parametrize("arch", ARCHS)
@pytest.mark.parametrize("name", ALGORITHMS)
def test_two_rounds_on_tiny_data(name: str, arch: str, scenario: str, tmp_path_factory) -> None:
    base = federation(arch, scenario, tmp_path_factory.getbasetemp())
    cls = REGISTRY.get("algorithm", name)
    try:
        fed = attach(base, cls(cls.Params()))
    except IncompatibleError as exc:  # a refusal is allowed, if it is one clear line
        message = str(exc)
        assert "\n" not in message and len(message) > 40, message
        return
    initial = [fed.exchangeable(k) for k in range(len(fed.clients))]
    engine = Engine(fed)
    for r in (1, 2):
        metrics = engine.run_round(r)
    losses = [v for k, v in metrics.items() if k.endswith("/train/total")]
    assert len(losses) == len(fed.clients) and all(math.isfinite(v) for v in losses)
    for state in fed.states:
        assert all(torch.isfinite(t).all() for t in state.values() if t.is_floating_point())
    sends = any(fed.algorithm.exchanged_keys(k) for k in range(len(fed.clients)))
    assert (metrics["comm/up_bytes"] > 0) == sends
    check_checkpoint(fed, [c.info for c in fed.clients], initial)


@pytest.mark.parametrize("name", ["pcgrad", "cagrad", "fedamp", "fedmtl", "matfl"])
def test_clients_with_nothing_in_common_are_refused_clearly(name: str) -> None:
    cls = REGISTRY.get("algorithm", name)
    infos = [ClientInfo(k, "toy", ("t",), 4) for k in range(2)]
    states = [{"encoder.a": torch.zeros(2)}, {"encoder.b": torch.zeros(2)}]
    groups = [{"encoder.a": "encoder"}, {"encoder.b": "encoder"}]
    with pytest.raises(IncompatibleError, match="use (fedavg|local)"):
        cls(cls.Params()).setup(infos, states, groups)
