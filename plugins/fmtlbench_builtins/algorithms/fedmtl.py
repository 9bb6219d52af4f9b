"""FedMTL: federated multi-task learning with a learned task relationship (Smith et al., 2017,
MOCHA), clients playing the role of tasks.

All client models W = [w_1 ... w_K] are coupled by ``lam * tr(W Omega W^T)``; MOCHA writes
``(lambda/2) tr(W Omega W^T)``, so ``lam`` here is half its lambda. Each round client i trains
its own model on its loss plus the part of the coupling that depends on it,
``lam * (Omega_ii |w_i|^2 + 2 sum_{j != i} Omega_ij <w_i, w_j>)``, whose gradient is the exact
partial gradient ``2 lam (W Omega)_i`` of the coupling (the other models are constants during
the round). For that it receives the other clients' models of the previous round: FedMTL's
download is K - 1 models per client per round, K times what FedAvg's minus the model the
client already holds, and the traffic accounting counts them.

Omega follows MOCHA's closed-form step (after Zhang & Yeung's multi-task relationship
learning): with ``A = W^T W``, the task covariance is ``Sigma = A^(1/2) / tr(A^(1/2))`` and
``Omega = Sigma^-1`` is the precision matrix; eigenvalues of A are floored (MOCHA uses 1e-7) so
that Omega stays finite when models coincide. Before any model is seen, Sigma = I / K as in
MOCHA. A and the coupling run over the trainable parameters every client holds; an entry only
some clients hold is coupled among its holders (the matching block of Omega). Clients keep
their own models: the server sends nothing back but the models of the others.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any, Literal

from pydantic import Field

from fmtlbench import hookimpl, lazy
from fmtlbench.components import (
    PARAMETER_GROUPS,
    SHARED_GROUPS,
    Algorithm,
    Params,
    Update,
)
from fmtlbench.errors import IncompatibleError
from fmtlbench.exchange import ExchangeView
from fmtlbench.maths import by_holders, common_keys, gram_of

torch = lazy.module("torch")

State = dict[str, "torch.Tensor"]


class FedMTLParams(Params):
    """Strength of the coupling and the eigenvalue floor of the relationship step."""

    share: Literal["all", "encoder"] = Field(
        "all", description="parameter groups coupled and sent: all, or the encoder only (-E)"
    )
    lam: float = Field(
        1e-4, ge=0, description="lam of the coupling lam * tr(W Omega W^T) (MOCHA's lambda / 2)"
    )
    floor: float = Field(
        1e-7,
        gt=0,
        description="floor of the eigenvalues of W^T W before Omega is computed (MOCHA's value)",
    )


def precision(gram: torch.Tensor, floor: float) -> torch.Tensor:
    """MOCHA's Omega from A = W^T W: the inverse of ``A^(1/2) / tr(A^(1/2))``."""
    values, vectors = torch.linalg.eigh(gram.to(torch.float64))
    root = values.clamp_min(floor).sqrt()
    return (vectors * (root.sum() / root)) @ vectors.T


class FedMTL(Algorithm):
    """Client models coupled by lam * tr(W Omega W^T), Omega learned as in MOCHA."""

    name = "fedmtl"
    Params = FedMTLParams
    server_state = ("models", "omega", "constants")

    def on_setup(self) -> None:
        self.models = [
            {n: entries[n] for n in self.exchanged_names(k)}
            for k, entries in enumerate(self.initial)
        ]
        self.common = common_keys(self.models)
        if not self.common:
            raise IncompatibleError(
                "fedmtl learns client relationships from parameters every client holds, and "
                f"these clients share none under share={self.params.share}; use local"
            )
        self.omega = torch.eye(len(self.models), dtype=torch.float64) * len(self.models)
        self.constants = self.rest_of_coupling(self.holder_grams())

    def holder_grams(self) -> dict[tuple[int, ...], torch.Tensor]:
        """Gram matrices of the models, one per set of clients holding the same entries."""
        return {
            holders: gram_of([self.models[j] for j in holders], names)
            for holders, names in by_holders(self.models).items()
        }

    def rest_of_coupling(self, grams: dict[tuple[int, ...], torch.Tensor]) -> list[float]:
        """Per client i, the terms of tr(W Omega W^T) without w_i: added to the client's term
        so that the loss it reports is the coupling's value, not a shifted one."""
        out = []
        for i in range(len(self.models)):
            total = 0.0
            for holders, gram in grams.items():
                keep = [a for a, j in enumerate(holders) if j != i]
                block = self.omega[[holders[a] for a in keep]][:, [holders[a] for a in keep]]
                total += float((block * gram[keep][:, keep]).sum())
            out.append(total)
        return out

    def exchanged_names(self, client: int) -> list[str]:
        shared = SHARED_GROUPS[self.params.share] & set(PARAMETER_GROUPS)
        return [n for n, group in self.groups[client].items() if group in shared]

    def context(self, client: int) -> dict[str, Any]:
        names = self.exchanged_names(client)
        others = {
            j: {n: model[n] for n in names if n in model}
            for j, model in enumerate(self.models)
            if j != client
        }
        return {
            "index": client,
            "omega": self.omega[client].clone(),
            "constant": torch.tensor(self.constants[client], dtype=torch.float64),
            "names": names,
            "models": others,
        }

    def client_loss(self, view: ExchangeView, context: Any) -> torch.Tensor | None:
        if context is None or self.params.lam == 0:
            return None
        omega = [float(v) for v in context["omega"]]
        pull = context.get("pull")
        if pull is None:  # the others are constant this round: combine them once
            pull = {}
            with torch.no_grad():
                for j, model in context["models"].items():
                    for n, tensor in model.items():
                        term = omega[j] * tensor
                        pull[n] = pull[n] + term if n in pull else term
            context["pull"] = pull
        live = view.parameters()
        own = omega[context["index"]]
        total = sum(
            own * (live[n] ** 2).sum() + (2 * (live[n] * pull[n]).sum() if n in pull else 0)
            for n in context["names"]
        )
        return self.params.lam * (total + float(context["constant"]))

    def aggregate(self, round: int, updates: Sequence[Update]) -> dict[int, State]:
        for update in updates:
            self.models[update.client] = dict(update.entries)
        grams = self.holder_grams()
        self.omega = precision(grams[tuple(range(len(self.models)))], self.params.floor)
        self.constants = self.rest_of_coupling(grams)
        return {}


@hookimpl
def register_algorithms() -> list[type[Algorithm]]:
    return [FedMTL]
