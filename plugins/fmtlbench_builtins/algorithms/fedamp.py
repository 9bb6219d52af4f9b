"""FedAMP (Huang et al., AAAI 2021): attentive message passing between similar clients.

Each round the server builds for client i a personalised cloud model
``u_i = sum_j xi_ij w_j``: with the paper's attention function ``A(x) = 1 - exp(-x / sigma)``,
the off-diagonal weights are one gradient step of size alpha on the attention regulariser,
``xi_ij = alpha * A'(||w_i - w_j||^2) = (alpha / sigma) exp(-||w_i - w_j||^2 / sigma)``, and the
self-weight takes the rest, ``xi_ii = 1 - sum_{j != i} xi_ij``.

Departure from the paper (parameter ``clip``): the paper assumes alpha small enough for
``xi_ii >= 0`` (u_i a convex combination) and its formula is used as is with ``clip=False``,
letting ``xi_ii`` go negative (u_i then extrapolates away from w_i). By default (``clip=True``)
a row whose off-diagonal weights sum past 1 is scaled to sum to exactly 1 (``xi_ii = 0``), the
nearest convex combination. Every round logs ``algo/fedamp/clipped_rows`` (rows rescaled; 0
under ``clip=False``) and ``algo/fedamp/min_self_weight`` (the smallest ``xi_ii``: negative
exactly when the paper's formula leaves a row non-convex), so a run shows whether it mattered.
The client starts from u_i and adds ``(lambda / (2 alpha)) ||w - u_i||^2`` to its loss, on its
live parameters (a real gradient). Distances come from the K x K Gram matrix of the clients'
parameters that every client holds; entries only some clients hold (decoders of tasks others
lack) are combined among their holders with the same weights, renormalised.

Note on scale: ``exp(-||w_i - w_j||^2 / sigma)`` vanishes once models differ by more than a
few sigma in squared norm, which for millions of parameters happens after one round; FedAMP
then personalises fully (u_i = w_i). That is the method as published; raise ``sigma`` (with
``alpha``, which the weights are proportional to) to let distant clients attend to each other.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any, Literal

from pydantic import Field

from fmtlbench import hookimpl, lazy
from fmtlbench.components import Algorithm, Params, Update
from fmtlbench.exchange import ExchangeView
from fmtlbench.maths import (
    by_holders,
    gram_of,
    mix,
    squared_distance,
    squared_distances,
)

torch = lazy.module("torch")

State = dict[str, "torch.Tensor"]


class FedAMPParams(Params):
    """FedAMP's attention and proximal strengths (paper notation)."""

    share: Literal["all", "encoder"] = Field(
        "all", description="parameter groups exchanged: all, or the encoder only (-E variant)"
    )
    alpha: float = Field(
        1.0,
        gt=0,
        description="step size alpha_k: attention weights scale with it, and the "
        "client term is (lambda / (2 alpha))||w - u_i||^2",
    )
    lam: float = Field(15.0, ge=0, description="lambda, strength of the pull towards u_i")
    sigma: float = Field(
        1.0, gt=0, description="sigma of the attention function A(x) = 1 - exp(-x / sigma)"
    )
    clip: bool = Field(
        True,
        description="rescale a row whose attention to others sums past 1 so the self weight "
        "is 0 (False: the paper's xi_ii = 1 - sum of the others, which may go negative)",
    )


def attention(
    sq_dist: torch.Tensor, alpha: float, sigma: float, clip: bool = True
) -> tuple[torch.Tensor, int]:
    """The K x K message-passing weights xi from pairwise squared distances (rows sum to 1),
    and how many rows were clipped (off-diagonal sum past 1, rescaled to 1; none unless
    ``clip``)."""
    xi = (alpha / sigma) * torch.exp(-sq_dist.to(torch.float64) / sigma)
    xi.fill_diagonal_(0)
    off = xi.sum(dim=1, keepdim=True)
    over = (off > 1) if clip else torch.zeros_like(off, dtype=torch.bool)
    xi = torch.where(over, xi / off, xi)
    return xi + torch.diag(1 - xi.sum(dim=1)), int(over.sum())


class FedAMP(Algorithm):
    """Personalised cloud models by attention over model distances, plus a proximal pull."""

    name = "fedamp"
    Params = FedAMPParams
    server_state = ("anchors", "xi")

    def on_setup(self) -> None:
        self.common = self.common_parameters("measures client similarity", instead="local")
        self.anchors: list[State] = [
            {n: entries[n] for n in self.exchanged_parameters(k)}
            for k, entries in enumerate(self.initial)
        ]
        self.xi = torch.eye(len(self.clients), dtype=torch.float64)
        self.clipped = 0

    def context(self, client: int) -> State:
        return self.anchors[client]

    def client_loss(self, view: ExchangeView, context: Any) -> torch.Tensor | None:
        if not context or self.params.lam == 0:
            return None
        scale = self.params.lam / (2 * self.params.alpha)
        return scale * squared_distance(view.parameters(), context)

    def aggregate(self, round: int, updates: Sequence[Update]) -> dict[int, State]:
        states = [u.entries for u in updates]
        uniform = [1.0 / len(states)] * len(states)
        dist = squared_distances(gram_of(states, self.common, mean_weights=uniform))
        self.xi, self.clipped = attention(
            dist, self.params.alpha, self.params.sigma, self.params.clip
        )
        clouds = self.cloud_models(states)
        payloads = {u.client: clouds[i] for i, u in enumerate(updates)}
        for update in updates:
            k = update.client
            self.anchors[k] = {
                n: payloads[k][n] for n in self.exchanged_parameters(k) if n in payloads[k]
            }
        return payloads

    def round_metrics(self) -> dict[str, float]:
        return {
            "clipped_rows": float(self.clipped),
            "min_self_weight": float(self.xi.diagonal().min()),
        }

    def cloud_models(self, states: Sequence[State]) -> list[State]:
        """u_i for every client over every entry it sends, each entry combined among the
        clients holding it with their attention weights renormalised."""
        out: list[State] = [{} for _ in states]
        for holders, names in by_holders(states).items():
            block = self.xi[list(holders)][:, list(holders)]
            totals = block.sum(dim=1, keepdim=True)
            # a row left with no weight (xi_ii = 0 and no attended holder), or with a negative
            # total under the paper's unclipped formula, keeps its own entry
            block = torch.where(
                totals > 0,
                block / totals.clamp_min(1e-300),
                torch.eye(len(holders), dtype=block.dtype),
            )
            # a row that is exactly the identity's gives u_i = w_i (the usual case once models
            # are several sigma apart): the client's own tensors are that result, bit for bit,
            # so only the other rows are mixed
            own = (block == torch.eye(len(holders), dtype=block.dtype)).all(dim=1).tolist()
            for pos, keep in zip(holders, own, strict=True):
                if keep:
                    out[pos].update({n: states[pos][n] for n in names})
            rows = [i for i, keep in enumerate(own) if not keep]
            if rows:
                mixed = mix([states[j] for j in holders], block[rows], names)
                for i, cloud in zip(rows, mixed, strict=True):
                    out[holders[i]].update(cloud)
        return out


@hookimpl
def register_algorithms() -> list[type[Algorithm]]:
    return [FedAMP]
