"""FedProx (Li et al., 2020): FedAvg with a proximal term that keeps local training near the
global model.

The term ``(mu/2) ||theta - theta_global||^2`` is computed on the client's live parameters, so
it has a real gradient ``mu (theta - theta_global)`` (the defect to avoid is computing it on
detached copies, which silently turns FedProx into FedAvg). The anchor shipped with each job is
the very tensor set the client received as its last payload, so the traffic accounting does
not count the global model twice. In round 1 the anchor is each client's starting point: the
model a real server would broadcast first (its bytes are counted once, in that round).
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

from pydantic import Field

from fmtlbench import hookimpl, lazy
from fmtlbench.components import Algorithm, AlgorithmParams, ClientInfo, Update
from fmtlbench.exchange import ExchangeView
from fmtlbench.maths import squared_distance, weighted_mean

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


class FedProx(Algorithm):
    """FedAvg plus a proximal term (mu/2)||theta - theta_global||^2 in local training."""

    name = "fedprox"
    Params = FedProxParams

    def setup(
        self,
        clients: Sequence[ClientInfo],
        states: Sequence[State],
        groups: Sequence[dict[str, str]],
    ) -> None:
        super().setup(clients, states, groups)
        self.anchors: list[State] = [
            {n: states[k][n] for n in self.exchanged_parameters(k)} for k in range(len(clients))
        ]

    def context(self, client: int) -> State:
        return self.anchors[client]

    def client_loss(self, view: ExchangeView, context: Any) -> torch.Tensor | None:
        if not context or self.params.mu == 0:
            return None
        return 0.5 * self.params.mu * squared_distance(view.parameters(), context)

    def aggregate(self, round: int, updates: Sequence[Update]) -> dict[int, State]:
        mean = weighted_mean([u.state for u in updates], self.weights(updates))
        payloads = {
            u.client: {n: mean[n] for n in self.exchanged_keys(u.client) if n in mean}
            for u in updates
        }
        for k, payload in payloads.items():
            self.anchors[k] = {n: payload[n] for n in self.exchanged_parameters(k) if n in payload}
        return payloads

    def state_dict(self) -> dict[str, Any]:
        return {"anchors": self.anchors}

    def load_state_dict(self, state: dict[str, Any]) -> None:
        self.anchors = list(state["anchors"])


@hookimpl
def register_algorithms() -> list[type[Algorithm]]:
    return [FedProx]
