"""The component contract, checked by the plugin authors' test kit (``fmtlbench.testing``) on
every registered algorithm, backbone and decoder — the built-ins through exactly the checks a
third-party package runs on itself — and the kit's own failures on deliberately broken toy
plugins, so that a kit that stopped checking would fail here.

The algorithm cells use the kit's tiny conv pyramid encoder: what is checked is the
algorithms, and with a ResNet-18 encoder the server maths over 11 M parameters would make the
grid of cells too slow for the suite. The algorithms run with ResNet-18 in the FedRep test, the
end-to-end runs and ``benchmarks/grid.py``.
"""

from __future__ import annotations

from typing import Literal

import pytest
import torch
from pydantic import Field

from fmtlbench.components import Algorithm, AlgorithmParams, ClientInfo, Params
from fmtlbench.errors import IncompatibleError
from fmtlbench.registry import build_registry
from fmtlbench.testing import ARCHS, SCENARIOS, ContractError, check_algorithm_cell, check_params
from fmtlbench.testing.algorithms import kit_registry

REGISTRY = kit_registry()
ALGORITHMS = REGISTRY.names("algorithm")
INSTALLED = build_registry()


@pytest.mark.parametrize("scenario", SCENARIOS)
@pytest.mark.parametrize("arch", ARCHS)
@pytest.mark.parametrize("name", ALGORITHMS)
def test_algorithm_cell(name: str, arch: str, scenario: str, fmtlbench_kit) -> None:
    cls = REGISTRY.get("algorithm", name)
    check_algorithm_cell(cls, arch, scenario, fmtlbench_kit.workdir, REGISTRY)


@pytest.mark.parametrize(
    "kind,name",
    [(kind, n) for kind in ("algorithm", "backbone", "decoder", "partitioner", "executor",
                            "dataset", "weighting", "task") for n in INSTALLED.names(kind)],
)  # fmt: skip
def test_component_basics(kind: str, name: str, fmtlbench_kit) -> None:
    fmtlbench_kit.component(INSTALLED.get(kind, name), kind)


@pytest.mark.parametrize("name", INSTALLED.names("decoder"))
def test_decoder_shapes(name: str, fmtlbench_kit) -> None:
    fmtlbench_kit.decoder(INSTALLED.get("decoder", name))


def test_backbone_shapes(fmtlbench_kit) -> None:
    # resnet18 at 64 x 80 from scratch (no weights can be fetched here), and the kit's pyramid
    fmtlbench_kit.backbone(INSTALLED.get("backbone", "resnet18"))
    fmtlbench_kit.backbone(REGISTRY.get("backbone", "test-pyramid"))


@pytest.mark.parametrize("name", ["pcgrad", "cagrad", "fedamp", "fedmtl", "matfl"])
def test_clients_with_nothing_in_common_are_refused_clearly(name: str) -> None:
    cls = REGISTRY.get("algorithm", name)
    infos = [ClientInfo(k, "toy", ("t",), 4) for k in range(2)]
    states = [{"encoder.a": torch.zeros(2)}, {"encoder.b": torch.zeros(2)}]
    groups = [{"encoder.a": "encoder"}, {"encoder.b": "encoder"}]
    with pytest.raises(IncompatibleError, match="use (fedavg|local)"):
        cls(cls.Params()).setup(infos, states, groups)


# ----------------------------------------------------------------- the kit catches breakage
FedAvg = REGISTRY.get("algorithm", "fedavg")


class Leaky(FedAvg):
    """FedAvg that also sends every client an entry it does not exchange."""

    name = "leaky"

    def aggregate(self, round, updates):  # noqa: ANN001, ANN201
        payloads = super().aggregate(round, updates)
        for update in updates:
            payloads[update.client]["client.private"] = torch.zeros(1)
        return payloads


class Positional(FedAvg):
    """FedAvg whose payload for a client depends on the client's position in the list."""

    name = "positional"

    def aggregate(self, round, updates):  # noqa: ANN001, ANN201
        payloads = super().aggregate(round, updates)
        first = updates[0].client
        payloads[first] = {n: v + 1.0 if v.is_floating_point() else v
                           for n, v in payloads[first].items()}  # fmt: skip
        return payloads


class Forgetful(FedAvg):
    """FedAvg with a round counter that it leaves out of its checkpointed state."""

    name = "forgetful"

    def on_setup(self) -> None:
        super().on_setup()
        self.seen = 0

    def aggregate(self, round, updates):  # noqa: ANN001, ANN201
        self.seen += 1
        payloads = super().aggregate(round, updates)
        return {c: {n: v * self.seen if v.is_floating_point() else v for n, v in p.items()}
                for c, p in payloads.items()}  # fmt: skip


@pytest.mark.parametrize(
    "cls,message",
    [
        (Leaky, "entries it does not"),
        (Positional, "reverse order change the payloads"),
        (Forgetful, "not in state_dict"),
    ],
)
def test_the_kit_fails_broken_algorithms_with_the_rule(cls, message, fmtlbench_kit) -> None:
    with pytest.raises(ContractError, match=message):
        check_algorithm_cell(cls, "md", "iid1", fmtlbench_kit.workdir, kit_registry(cls))


class NoDefault(AlgorithmParams):
    """A parameter without a default."""

    mu: float


class Unbounded(AlgorithmParams):
    """A step size declared positive but checked by nobody... except its bound."""

    step: float = Field(0.1, gt=0)
    mode: Literal["a", "b"] = "a"


class Anything(Params):
    """A parameter of any type."""

    knob: object = None


@pytest.mark.parametrize(
    "model,message",
    [
        (NoDefault, "'mu' has no default"),
        (Anything, "'knob' set to an object of no parameter type"),
    ],
)
def test_the_kit_fails_bad_params(model: type, message: str) -> None:
    cls = type("Toy", (Algorithm,), {"__doc__": "A toy.", "name": "toy", "Params": model})
    with pytest.raises(ContractError, match=message):
        check_params(cls)


def test_the_kit_accepts_declared_bounds_and_checks_them() -> None:
    cls = type("Toy", (Algorithm,), {"__doc__": "A toy.", "name": "toy", "Params": Unbounded})
    check_params(cls)  # every bound holds, every bad value is rejected
    with pytest.raises(Exception, match="greater than 0"):
        Unbounded(step=0.0)  # the value the kit tried just outside gt=0 is indeed refused
