"""Ditto (Li, Hu, Beirami and Smith, ICML 2021): fair and robust federated learning through
personalisation.

Each client keeps two models. The federated model ``w`` is trained and averaged exactly as
FedAvg trains and averages it. The personal model ``v_k`` never leaves the client; every round
it runs its own local epochs on

    F_k(v_k) + (lam / 2) ||v_k - w^t||^2

where ``w^t`` is the federated model the client received at the start of the round (over the
entries it exchanges: a parameter only this client holds has no federated counterpart and no
pull). ``lam = 0`` gives purely local personal models; large ``lam`` ties them to ``w``. P-FL
evaluates ``v_k`` (the run's tag ``pfl_model`` says ``personal``), G-FL the federated model.
"""

from __future__ import annotations

from typing import Any

from fmtlbench_builtins.algorithms.fedavg import FedAvg
from pydantic import Field

from fmtlbench import hookimpl, lazy
from fmtlbench.components import Algorithm, AlgorithmParams, Phase
from fmtlbench.exchange import ExchangeView
from fmtlbench.maths import squared_distance

torch = lazy.module("torch")

State = dict[str, "torch.Tensor"]


class DittoParams(AlgorithmParams):
    """FedAvg's parameters plus the pull of the personal models and their schedule."""

    lam: float = Field(
        0.1, ge=0, description="lambda of the pull (lambda/2)||v_k - w||^2 of the personal model"
    )
    personal_epochs: int | None = Field(
        None, ge=1, description="epochs of the personal model per round (default: the local E)"
    )


class Ditto(FedAvg):
    """FedAvg's federated model, and a personal model per client pulled toward it (Ditto)."""

    name = "ditto"
    Params = DittoParams
    personal = True
    server_state = ("received",)

    def on_setup(self) -> None:
        super().on_setup()
        #: w^t of every client: the federated parameters it holds at the start of the round.
        self.received: list[State] = [self.federated(k, e) for k, e in enumerate(self.initial)]

    def federated(self, client: int, entries: State) -> State:
        """The exchanged trainable parameters of ``client`` among ``entries``."""
        return {n: entries[n] for n in self.exchanged_parameters(client) if n in entries}

    def personal_phases(self, client: int) -> list[Phase]:
        return [Phase(epochs=self.params.personal_epochs)]

    def personal_context(self, client: int) -> State:
        return self.received[client]

    def personal_loss(self, view: ExchangeView, context: Any) -> torch.Tensor | None:
        if not context or self.params.lam == 0:
            return None
        return 0.5 * self.params.lam * squared_distance(view.parameters(), context)

    def aggregate(self, round: int, updates: Any) -> dict[int, State]:
        payloads = super().aggregate(round, updates)
        for k, payload in payloads.items():
            self.received[k] = self.federated(k, payload)
        return payloads


@hookimpl
def register_algorithms() -> list[type[Algorithm]]:
    return [Ditto]
