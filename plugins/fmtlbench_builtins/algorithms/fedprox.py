"""FedProx (Li et al., 2020): FedAvg with a proximal term that keeps local training near the
global model.

The term ``(mu/2) ||theta - theta_global||^2`` is computed on the client's live parameters, so
it has a real gradient ``mu (theta - theta_global)`` (the defect to avoid is computing it on
detached copies, which silently turns FedProx into FedAvg). The anchor shipped with each job is
the very tensor set the client received as its last payload, so the traffic accounting does
not count the global model twice. In round 1 the anchor is each client's starting point: the
model a real server would broadcast first (its bytes are counted once, in that round). Everything
else, including the refusal of clients without one global model, is FedAvg's.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

from pydantic import Field

from fmtlbench import hookimpl, lazy
from fmtlbench.components import Algorithm, AlgorithmParams, Update
from fmtlbench.exchange import ExchangeView
from fmtlbench.maths import squared_distance
from fmtlbench_builtins.algorithms.fedavg import FedAvg

torch = lazy.module("torch")

State = dict[str, "torch.Tensor"]


class FedProxParams(AlgorithmParams):
    """FedAvg's parameters plus the weight of the proximal term."""

    mu: float = Field(
        0.001,
        ge=0,
        description="weight mu of the proximal term (mu/2)||theta - theta_global||^2 "
        "(paper default 0.001; 0 gives FedAvg)",
    )


class FedProx(FedAvg):
    """FedAvg plus a proximal term (mu/2)||theta - theta_global||^2 in local training."""

    name = "fedprox"
    Params = FedProxParams
    server_state = ("anchors",)

    def on_setup(self) -> None:
        super().on_setup()
        self.anchors: list[State] = [
            self.anchor(k, self.initial[k]) for k in range(len(self.clients))
        ]

    def anchor(self, client: int, entries: State) -> State:
        """theta_global of ``client``: its exchanged parameters in ``entries``."""
        return {n: entries[n] for n in self.exchanged_parameters(client) if n in entries}

    def context(self, client: int) -> State:
        return self.anchors[client]

    def client_loss(self, view: ExchangeView, context: Any) -> torch.Tensor | None:
        if not context or self.params.mu == 0:
            return None
        return 0.5 * self.params.mu * squared_distance(view.parameters(), context)

    def aggregate(self, round: int, updates: Sequence[Update]) -> dict[int, State]:
        payloads = super().aggregate(round, updates)
        for k, payload in payloads.items():
            self.anchors[k] = self.anchor(k, payload)
        return payloads


@hookimpl
def register_algorithms() -> list[type[Algorithm]]:
    return [FedProx]
