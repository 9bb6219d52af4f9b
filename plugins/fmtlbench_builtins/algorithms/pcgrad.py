"""PCGrad at the server (after Yu et al., NeurIPS 2020), clients playing the role of tasks.

The server keeps the global model. Each round, client k's update is ``Delta_k = w_k - g`` over
the trainable parameters every client holds (the common global parameters; the global model is
what every client started the round from, so no update is measured against a stale base). For
each client, the other clients are visited in a random order and the component of its running
update that conflicts with another client's original update (negative inner product) is
projected away. The global parameters then move by the weighted mean of the projected updates,
``g <- g + sum_k p_k Delta~_k``: with no conflict this is exactly FedAvg's step, so the step size
stays meaningful (the paper's sum over tasks would grow with K; ``reduction="sum"`` gives the
paper's ``g <- g + sum_k Delta~_k``). The projections are done on
the K x K Gram matrix of the updates, never on K copies of the model.

The global model, the updates and the payloads are handled by
``fmtlbench.global_step.GlobalStepAlgorithm``; this module only computes the coefficients.
"""

from __future__ import annotations

import random
from typing import Literal

from pydantic import Field

from fmtlbench import hookimpl, lazy
from fmtlbench.components import Algorithm, AlgorithmParams
from fmtlbench.global_step import GlobalStepAlgorithm
from fmtlbench.maths import project_conflicts

torch = lazy.module("torch")


class PCGradParams(AlgorithmParams):
    """FedAvg's parameters plus the seed of the projection orders and the reduction."""

    seed: int = Field(
        0,
        ge=0,
        description="seed of the random projection orders; round r's orders depend only on "
        "(seed, r), so a resumed run repeats them",
    )
    reduction: Literal["mean", "sum"] = Field(
        "mean",
        description="how projected updates combine: 'mean' weights them by data share (FedAvg's "
        "step when nothing conflicts); 'sum' adds them unweighted, as in the PCGrad paper",
    )


class PCGrad(GlobalStepAlgorithm):
    """Server-side PCGrad: conflicting client updates projected apart, then applied globally."""

    name = "pcgrad"
    Params = PCGradParams

    def orders(self, round: int, k: int) -> list[list[int]]:
        """For each client, the others in a random order reproducible from (seed, round)."""
        rng = random.Random(f"{self.params.seed}:{round}")
        return [rng.sample([j for j in range(k) if j != i], k - 1) for i in range(k)]

    def coefficients(self, round: int, gram: torch.Tensor, weights: list[float]) -> torch.Tensor:
        projected = project_conflicts(gram, self.orders(round, len(weights)))
        if self.params.reduction == "sum":
            return torch.ones(len(weights), dtype=torch.float64) @ projected
        return torch.tensor(weights, dtype=torch.float64) @ projected


@hookimpl
def register_algorithms() -> list[type[Algorithm]]:
    return [PCGrad]
