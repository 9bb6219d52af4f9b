"""CAGrad at the server (after Liu et al., NeurIPS 2021), clients playing the role of tasks.

The server keeps the global model g. Each round, client k's update is ``Delta_k = w_k - g`` over
the trainable parameters every client holds (measured against the global model all clients
started from, never a stale base). With the aggregation weights p, ``g0 = sum_k p_k Delta_k``
(FedAvg's step); CAGrad looks for the step within ``c |g0|`` of g0 that most improves the
worst-off client. Its dual gives simplex weights w minimising ``g_w . g0 + c |g0| |g_w|``
(``g_w = sum_k w_k Delta_k``), solved from the K x K Gram matrix of the updates, and the step is
``(g0 + c |g0| g_w / |g_w|) / (1 + c^2)``, the paper's rescaled update, applied to g. The signs
work out unchanged for updates instead of gradients: every quantity above is invariant to
flipping all vectors. ``c = 0`` gives exactly FedAvg's step.

Entries not every client holds (decoders of tasks only some clients have) and normalisation
statistics (not a descent direction) are averaged among their holders, as FedAvg does.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import torch
from pydantic import Field

from fmtlbench import hookimpl
from fmtlbench.components import Algorithm, AlgorithmParams, ClientInfo, Update
from fmtlbench.errors import IncompatibleError
from fmtlbench.maths import cagrad_coefficients, combine, common_keys, gram_of, weighted_mean
from fmtlbench.model import PARAMETER_GROUPS

State = dict[str, torch.Tensor]


class CAGradParams(AlgorithmParams):
    """FedAvg's parameters plus the radius of CAGrad's conflict-averse ball."""

    c: float = Field(
        0.4, ge=0, description="radius c of the ball |d - g0| <= c|g0| around the mean update"
    )


class CAGrad(Algorithm):
    """Server-side CAGrad: a conflict-averse step from the client updates, applied globally."""

    name = "cagrad"
    Params = CAGradParams

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

    def aggregate(self, round: int, updates: Sequence[Update]) -> dict[int, State]:
        states = [u.state for u in updates]
        weights = self.weights(updates)
        gram = gram_of(states, self.common, self.global_)
        step = cagrad_coefficients(gram, weights, self.params.c)
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
    return [CAGrad]
