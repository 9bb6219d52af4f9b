"""torchjd's aggregators at the server, clients playing the role of tasks.

Each algorithm here is a ``GlobalStepAlgorithm``, the base of the built-in PCGrad and CAGrad:
the server keeps the global model ``g``, takes client k's update ``Delta_k = w_k - g`` over the
parameters every client holds, and moves ``g <- g + sum_k a_k Delta_k``. The base hands us the
K x K Gram matrix ``J J^T`` of the updates (``J`` the K x D matrix of updates); torchjd's
aggregators are ``a(J J^T) @ J`` with ``a`` a *weighting* of the Gram matrix, so asking the
weighting for ``a`` and letting the base combine the updates is the same step as calling the
torchjd aggregator on ``J`` — without stacking K flattened copies of the model.

The preference vector of UPGrad, DualProj and Aligned-MTL defaults to the clients' weights
(``weighting``: uniform or by samples), so that when updates do not conflict the step is
FedAvg's; ``preference="torchjd"`` keeps torchjd's own default.
"""

from __future__ import annotations

from typing import Literal

import torch
from pydantic import Field
from torchjd import aggregation

from fmtlbench import hookimpl
from fmtlbench.components import Algorithm, AlgorithmParams
from fmtlbench.global_step import GlobalStepAlgorithm


class PreferenceParams(AlgorithmParams):
    """FedAvg's parameters plus where the preference vector comes from."""

    preference: Literal["weights", "torchjd"] = Field(
        "weights",
        description="preference vector: 'weights' uses the client weights (FedAvg's step when "
        "updates do not conflict); 'torchjd' leaves torchjd's default",
    )


class TorchJDAlgorithm(GlobalStepAlgorithm):
    """A GlobalStepAlgorithm whose coefficients are a torchjd weighting of the Gram matrix."""

    def weighting(self, weights: list[float]) -> aggregation.Weighting:
        """The torchjd weighting of this round (built afresh, so a resumed run repeats it)."""
        raise NotImplementedError

    def preference(self, weights: list[float]) -> torch.Tensor | None:
        if self.params.preference == "torchjd":
            return None
        return torch.tensor(weights, dtype=torch.float64)

    def coefficients(self, round: int, gram: torch.Tensor, weights: list[float]) -> torch.Tensor:
        gram = gram.to(torch.float64)
        return self.weighting(weights)(gram).to(torch.float64)


class UPGrad(TorchJDAlgorithm):
    """torchjd's UPGrad: each update projected onto the dual cone of all, then weighted."""

    name = "upgrad"
    Params = PreferenceParams

    def weighting(self, weights: list[float]) -> aggregation.Weighting:
        return aggregation.UPGradWeighting(pref_vector=self.preference(weights))


class DualProj(TorchJDAlgorithm):
    """torchjd's DualProj: the weighted mean of updates projected onto their dual cone."""

    name = "dualproj"
    Params = PreferenceParams

    def weighting(self, weights: list[float]) -> aggregation.Weighting:
        return aggregation.DualProjWeighting(pref_vector=self.preference(weights))


class AlignedMTLParams(PreferenceParams):
    """The preference vector plus Aligned-MTL's scale of the aligned updates."""

    scale_mode: Literal["min", "median", "rmse"] = Field(
        "min", description="how Aligned-MTL scales the aligned updates (torchjd's scale_mode)"
    )


class AlignedMTL(TorchJDAlgorithm):
    """torchjd's Aligned-MTL: updates made orthogonal and equal-norm through the Gram matrix."""

    name = "alignedmtl"
    Params = AlignedMTLParams

    def weighting(self, weights: list[float]) -> aggregation.Weighting:
        return aggregation.AlignedMTLWeighting(
            pref_vector=self.preference(weights), scale_mode=self.params.scale_mode
        )


class MGDAParams(AlgorithmParams):
    """FedAvg's parameters plus the stopping rule of MGDA's Frank-Wolfe solver."""

    epsilon: float = Field(1e-3, gt=0, description="MGDA's solver stops below this change")
    max_iters: int = Field(100, ge=1, description="MGDA's solver stops after this many steps")


class MGDA(TorchJDAlgorithm):
    """torchjd's MGDA: the minimum-norm point of the updates' convex hull."""

    name = "mgda"
    Params = MGDAParams

    def weighting(self, weights: list[float]) -> aggregation.Weighting:
        return aggregation.MGDAWeighting(
            epsilon=self.params.epsilon, max_iters=self.params.max_iters
        )


class NashMTLParams(AlgorithmParams):
    """FedAvg's parameters plus Nash-MTL's norm cap and solver steps."""

    max_norm: float = Field(1.0, gt=0, description="Nash-MTL caps the step's norm at this")
    optim_niter: int = Field(20, ge=1, description="Nash-MTL's convex-concave solver steps")


class NashMTL(TorchJDAlgorithm):
    """torchjd's Nash-MTL: the updates' Nash bargaining solution.

    torchjd exposes Nash-MTL as an aggregator of a matrix, not as a Gram weighting; its weights
    depend on the matrix only through ``J J^T``, so we give it the K x K factor ``M = V L^(1/2)``
    of the Gram matrix (``M M^T = J J^T``) and read the weights of the aggregator's weighting.
    A fresh aggregator every round keeps the step a function of the round's updates alone.
    """

    name = "nashmtl"
    Params = NashMTLParams

    def coefficients(self, round: int, gram: torch.Tensor, weights: list[float]) -> torch.Tensor:
        values, vectors = torch.linalg.eigh(gram.to(torch.float64))
        factor = vectors * values.clamp(min=0).sqrt()
        nash = aggregation.NashMTL(
            n_tasks=len(weights),
            max_norm=self.params.max_norm,
            optim_niter=self.params.optim_niter,
        )
        return nash.weighting(factor.to(torch.float32)).to(torch.float64)


@hookimpl
def register_algorithms() -> list[type[Algorithm]]:
    return [UPGrad, MGDA, DualProj, AlignedMTL, NashMTL]
