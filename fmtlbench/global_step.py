"""Server-side methods that move one global model by a combination of the client updates.

PCGrad and CAGrad treat clients as tasks: the server keeps the global parameters g every client
starts its round from, measures each update ``Delta_k = w_k - g`` against exactly that base
(never a stale one), and moves g by ``sum_k a_k Delta_k`` with coefficients computed from the
K x K Gram matrix of the updates. Only the coefficients differ between the methods; the rest
lives here. Entries not every client holds and normalisation statistics (not a descent
direction) are averaged among their holders, as FedAvg does.
"""

from __future__ import annotations

from collections.abc import Sequence

from fmtlbench import lazy
from fmtlbench.components import Algorithm, Update
from fmtlbench.maths import combine, gram_of, weighted_mean

torch = lazy.module("torch")

State = dict[str, "torch.Tensor"]


class GlobalStepAlgorithm(Algorithm):
    """Base of algorithms whose server step is ``g <- g + sum_k a_k (w_k - g)``."""

    #: The global parameters g every client starts its round from.
    server_state = ("global_",)

    def coefficients(self, round: int, gram: torch.Tensor, weights: list[float]) -> torch.Tensor:
        """The K coefficients ``a_k`` of this round, from the updates' Gram matrix."""
        raise NotImplementedError

    def on_setup(self) -> None:
        self.common = self.common_parameters("combines client updates")
        uniform = [1.0 / len(self.initial)] * len(self.initial)
        self.global_ = weighted_mean(
            [{n: s[n] for n in self.common} for s in self.initial], uniform
        )

    def aggregate(self, round: int, updates: Sequence[Update]) -> dict[int, State]:
        # in client order, so per-client choices (PCGrad's projection orders) follow the client,
        # not its position in the list
        updates = sorted(updates, key=lambda u: u.client)
        states = [u.entries for u in updates]
        weights = self.weights(updates)
        gram = gram_of(states, self.common, self.global_)
        step = self.coefficients(round, gram, weights)
        self.global_ = combine(states, step, self.common, self.global_, self.global_)
        return self.payloads(updates, weights)

    def payloads(self, updates: Sequence[Update], weights: Sequence[float]) -> dict[int, State]:
        """The global parameters, and holder means of everything else, for every client."""
        common = set(self.common)
        rest = weighted_mean(
            [{n: v for n, v in u.entries.items() if n not in common} for u in updates], weights
        )
        table = {**rest, **self.global_}
        return {u.client: {n: table[n] for n in self.exchanged_names(u.client)} for u in updates}
