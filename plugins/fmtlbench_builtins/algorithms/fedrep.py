"""FedRep (Collins et al., ICML 2021): a shared representation, personal heads.

Clients share the body (the representation) and keep their heads. Each round a client first
trains its head with the body frozen, for ``head_epochs``, then trains the body with the head
frozen, for ``body_epochs``; the server averages the bodies. The split follows ``share``:
``encoder`` (the default and the paper's setting) makes the encoder the body and the decoders
the heads; ``all`` makes every shared group but the task heads the body, so decoders that
clients hold in common (e.g. single-task decoder bodies) are averaged too. Frozen groups get no
gradient and their normalisation statistics stay fixed (``fmtlbench.training``).
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Literal

import torch
from pydantic import Field

from fmtlbench import hookimpl
from fmtlbench.components import GROUPS, SHARED_GROUPS, Algorithm, AlgorithmParams, Phase, Update
from fmtlbench.maths import weighted_mean

#: The body (shared representation) for each ``share`` choice; the rest is the head.
BODIES: dict[str, frozenset[str]] = {
    "encoder": SHARED_GROUPS["encoder"],
    "all": frozenset(GROUPS) - {"task"},
}


class FedRepParams(AlgorithmParams):
    """Which part is the shared body, and the local schedule."""

    share: Literal["all", "encoder"] = Field(
        "encoder",
        description="the shared body: the encoder (paper), or all groups except the task heads",
    )
    head_epochs: int = Field(
        1, ge=1, description="epochs training the head with the body frozen, first each round"
    )
    body_epochs: int | None = Field(
        None,
        ge=1,
        description="epochs training the body with the head frozen, after the head "
        "(None: the configured local epochs of the client's dataset)",
    )


class FedRep(Algorithm):
    """Shared body averaged by the server; heads stay local, trained first with the body frozen."""

    name = "fedrep"
    Params = FedRepParams

    @property
    def body(self) -> frozenset[str]:
        return BODIES[self.params.share]

    def exchanged_keys(self, client: int) -> list[str]:
        return [n for n, group in self.groups[client].items() if group in self.body]

    def local_phases(self, client: int) -> list[Phase]:
        head = frozenset(GROUPS) - self.body
        return [
            Phase(epochs=self.params.head_epochs, frozen=self.body),
            Phase(epochs=self.params.body_epochs, frozen=head),
        ]

    def aggregate(
        self, round: int, updates: Sequence[Update]
    ) -> dict[int, dict[str, torch.Tensor]]:
        mean = weighted_mean([u.state for u in updates], self.weights(updates))
        return {
            u.client: {n: mean[n] for n in self.exchanged_keys(u.client) if n in mean}
            for u in updates
        }


@hookimpl
def register_algorithms() -> list[type[Algorithm]]:
    return [FedRep]
