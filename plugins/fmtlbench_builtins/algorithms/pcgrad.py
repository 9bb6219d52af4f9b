"""PCGrad at the server (after Yu et al., NeurIPS 2020), clients playing the role of tasks.

The server keeps the global model. Each round, client k's update is ``Delta_k = w_k - g`` over
the trainable parameters every client holds (the common global parameters; the global model is
what every client started the round from, so no update is measured against a stale base). For
each client, the other clients are visited in a random order and the component of its running
update that conflicts with another client's original update (negative inner product) is
projected away. The global parameters then move by the weighted mean of the projected updates,
``g <- g + sum_k p_k Delta~_k``: with no conflict this is exactly FedAvg's step, so the step size
stays meaningful (the paper's sum over tasks would grow with K). The projections are done on
the K x K Gram matrix of the updates, never on K copies of the model.

Entries not every client holds (decoders of tasks only some clients have) and normalisation
statistics (not a descent direction) are averaged among their holders, as FedAvg does.
"""

from __future__ import annotations

import random
from collections.abc import Sequence
from typing import Any

import torch
from pydantic import Field

from fmtlbench import hookimpl
from fmtlbench.components import Algorithm, AlgorithmParams, ClientInfo, Update
from fmtlbench.errors import IncompatibleError
from fmtlbench.maths import combine, common_keys, gram_of, project_conflicts, weighted_mean
from fmtlbench.model import PARAMETER_GROUPS

State = dict[str, torch.Tensor]


class PCGradParams(AlgorithmParams):
    """FedAvg's parameters plus the seed of the projection orders."""

    seed: int = Field(
        0,
        ge=0,
        description="seed of the random projection orders; round r's orders depend only on "
        "(seed, r), so a resumed run repeats them",
    )


class PCGrad(Algorithm):
    """Server-side PCGrad: conflicting client updates projected apart, then applied globally."""

    name = "pcgrad"
    Params = PCGradParams

    def setup(
        self,
        clients: Sequence[ClientInfo],
        states: Sequence[State],
        groups: Sequence[dict[str, str]],
    ) -> None:
        super().setup(clients, states, groups)
        sent = [{n: states[k][n] for n in self.exchanged_keys(k)} for k in range(len(states))]
        self.common = [n for n in common_keys(sent) if self.groups[0][n] in PARAMETER_GROUPS]
        if not self.common:
            raise IncompatibleError(
                f"{self.name} combines client updates over parameters every client holds, and "
                f"these clients share none under share={self.params.share}; use fedavg"
            )
        uniform = [1.0 / len(sent)] * len(sent)
        self.global_ = weighted_mean([{n: s[n] for n in self.common} for s in sent], uniform)

    def orders(self, round: int, k: int) -> list[list[int]]:
        """For each client, the others in a random order reproducible from (seed, round)."""
        rng = random.Random(f"{self.params.seed}:{round}")
        return [rng.sample([j for j in range(k) if j != i], k - 1) for i in range(k)]

    def aggregate(self, round: int, updates: Sequence[Update]) -> dict[int, State]:
        states = [u.state for u in updates]
        weights = self.weights(updates)
        gram = gram_of(states, self.common, self.global_)
        projected = project_conflicts(gram, self.orders(round, len(states)))
        step = torch.tensor(weights, dtype=torch.float64) @ projected
        self.global_ = combine(states, step, self.common, self.global_, self.global_)
        return self.payloads(updates, weights)

    def payloads(self, updates: Sequence[Update], weights: Sequence[float]) -> dict[int, State]:
        """The global parameters, and holder means of everything else, for every client."""
        common = set(self.common)
        rest = weighted_mean(
            [{n: v for n, v in u.state.items() if n not in common} for u in updates], weights
        )
        table = {**rest, **self.global_}
        return {u.client: {n: table[n] for n in self.exchanged_keys(u.client)} for u in updates}

    def state_dict(self) -> dict[str, Any]:
        return {"global": self.global_}

    def load_state_dict(self, state: dict[str, Any]) -> None:
        self.global_ = dict(state["global"])


@hookimpl
def register_algorithms() -> list[type[Algorithm]]:
    return [PCGrad]
