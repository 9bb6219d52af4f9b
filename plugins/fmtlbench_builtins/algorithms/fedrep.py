"""FedRep (Collins et al., ICML 2021): a shared representation, personal heads.

Clients share the body (the representation) and keep their heads. Each round a client first
trains its head with the body frozen, for ``head_epochs``, then trains the body with the head
frozen, for ``body_epochs``; the server averages the bodies.

Local epochs (parameter ``body_epochs``): the paper runs a fixed number of head epochs and then
the body epochs the other methods run locally. Here, by default (``"rest"``), the body gets
what is left of the configured local epochs E once the head has had its own, ``E -
head_epochs``, so that FedRep trains for E epochs per round like every other method and
comparisons spend equal local compute. At least one body epoch always runs: when E <=
``head_epochs`` the body gets 1 and the round runs ``head_epochs + 1`` epochs (clamped rather
than refused, because the default E is 1 and the default head 1). ``"all"`` gives the body all
E epochs (``head_epochs + E`` in total, the paper's schedule and this module's earlier
behaviour); an integer fixes the body epochs. Every round logs ``algo/fedrep/extra_epochs``,
the most epochs any client ran beyond its E (0 when the totals are equal).
 The split follows ``share``:
``encoder`` (the default and the paper's setting) makes the encoder the body and the decoders
the heads; ``all`` makes every shared group but the task heads the body, so decoders that
clients hold in common (e.g. single-task decoder bodies) are averaged too. Frozen groups get no
gradient and their normalisation statistics stay fixed (``fmtlbench.training``).
"""

from __future__ import annotations

from typing import Annotated, Literal

from pydantic import Field

from fmtlbench import hookimpl, lazy
from fmtlbench.components import GROUPS, SHARED_GROUPS, Algorithm, AlgorithmParams, Phase
from fmtlbench_builtins.algorithms.fedavg import FedAvg

torch = lazy.module("torch")

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
    body_epochs: Annotated[int, Field(ge=1)] | Literal["rest", "all"] = Field(
        "rest",
        description="epochs training the body with the head frozen, after the head: rest "
        "(local epochs E - head_epochs, at least 1: E in total like the other methods), "
        "all (E, so head_epochs + E in total as in the paper), or a number",
    )


class FedRep(FedAvg):
    """Shared body averaged by the server; heads stay local, trained first with the body frozen."""

    name = "fedrep"
    Params = FedRepParams

    @property
    def body(self) -> frozenset[str]:
        return BODIES[self.params.share]

    def on_setup(self) -> None:
        """Nothing to refuse: clients average only the body entries they hold in common."""

    def exchanged_names(self, client: int) -> list[str]:
        return [n for n, group in self.groups[client].items() if group in self.body]

    def body_epochs(self, client: int) -> int:
        """Epochs of ``client``'s body phase under the ``body_epochs`` choice."""
        choice, total = self.params.body_epochs, self.clients[client].local_epochs
        if choice == "rest":
            return max(total - self.params.head_epochs, 1)
        return total if choice == "all" else choice

    def local_phases(self, client: int) -> list[Phase]:
        head = frozenset(GROUPS) - self.body
        return [
            Phase(epochs=self.params.head_epochs, frozen=self.body),
            Phase(epochs=self.body_epochs(client), frozen=head),
        ]

    def round_metrics(self) -> dict[str, float]:
        extra = (
            self.params.head_epochs + self.body_epochs(k) - c.local_epochs
            for k, c in enumerate(self.clients)
        )
        return {"extra_epochs": float(max(extra, default=0))}


@hookimpl
def register_algorithms() -> list[type[Algorithm]]:
    return [FedRep]
